# svd_bench: randomized vs exact truncated SVD on a 4096 x 11008 error matrix (docs/quantizers.md).
add_executable(svd_bench EXCLUDE_FROM_ALL ${CMAKE_CURRENT_SOURCE_DIR}/bench/svd_bench.c)
target_link_libraries(svd_bench PRIVATE qr_src)
add_dependencies(bench svd_bench)

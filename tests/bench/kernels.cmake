# kernels_bench: W4A8 / W4A4 kernels and their corrections against OpenBLAS sgemv/sgemm on one
# thread, with the machine's memory bandwidth (docs/kernels.md). Built by the bench target only.
add_executable(kernels_bench EXCLUDE_FROM_ALL ${CMAKE_CURRENT_SOURCE_DIR}/bench/kernels_bench.c)
target_link_libraries(kernels_bench PRIVATE qr_src)
add_dependencies(bench kernels_bench)

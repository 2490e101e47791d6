# Benchmarks of `qrecon quantize` (tests/bench/quantize.sh drives them; never run by ctest).
add_executable(bench_quantize_grid EXCLUDE_FROM_ALL ${CMAKE_CURRENT_SOURCE_DIR}/bench/quantize_grid.c)
target_link_libraries(bench_quantize_grid PRIVATE qr_mpi)
add_dependencies(bench bench_quantize_grid)
add_executable(bench_write_rate EXCLUDE_FROM_ALL ${CMAKE_CURRENT_SOURCE_DIR}/bench/write_rate.c)
add_dependencies(bench bench_write_rate)

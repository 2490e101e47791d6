# Benchmarks of `qrecon quantize` (tests/bench/quantize.sh drives them; never run by ctest).
add_executable(bench_write_rate EXCLUDE_FROM_ALL ${CMAKE_CURRENT_SOURCE_DIR}/bench/write_rate.c)
add_dependencies(bench bench_write_rate)

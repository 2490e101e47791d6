# bench_io_safetensors: open + read-and-convert throughput of io/safetensors.c against memcpy, side
# by side (see the program's header). Built by `cmake --build <dir> --target bench`.
add_executable(bench_io_safetensors EXCLUDE_FROM_ALL ${CMAKE_CURRENT_SOURCE_DIR}/bench/io_safetensors_bench.c)
target_link_libraries(bench_io_safetensors PRIVATE qr_io)
add_dependencies(bench bench_io_safetensors)

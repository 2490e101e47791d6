# io_model_bench: qr_model_open cost next to reading every tensor (docs/models.md). Built by the
# bench target only, never run by ctest.
add_executable(io_model_bench EXCLUDE_FROM_ALL ${CMAKE_CURRENT_SOURCE_DIR}/bench/io_model_bench.c)
target_link_libraries(io_model_bench PRIVATE qr_io)
add_dependencies(bench io_model_bench)

# methods_bench: stage times and output errors of every method on synthetic 4096x4096 and
# 11008x4096 layers (docs/methods.md). Built by the bench target, never run by ctest.
add_executable(methods_bench EXCLUDE_FROM_ALL ${CMAKE_CURRENT_SOURCE_DIR}/bench/methods_bench.c)
target_link_libraries(methods_bench PRIVATE qr_src)
add_dependencies(bench methods_bench)

# methods_real: per-method held-out output error on the real layers of a small model (text through
# the float32 forward pass). Needs the jobs room for the model, tokenizer and windows.
add_executable(methods_real EXCLUDE_FROM_ALL ${CMAKE_CURRENT_SOURCE_DIR}/bench/methods_real.c)
target_link_libraries(methods_real PRIVATE qr_jobs)
add_dependencies(bench methods_real)

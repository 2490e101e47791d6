# forward_bench: forward-pass tokens/s, a batched window against a one-token-at-a-time loop with
# the KV cache, side by side in one run (docs/eval.md). Built by the bench target only.
add_executable(forward_bench EXCLUDE_FROM_ALL ${CMAKE_CURRENT_SOURCE_DIR}/bench/forward_bench.c)
target_link_libraries(forward_bench PRIVATE qr_io)
add_dependencies(bench forward_bench)

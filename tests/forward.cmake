# forward: the float32 Llama forward pass (src/llama.c), the tokenizer (src/tokenizer.c,
# io/tokenizer_bin.c) and token-id files (io/tokens.c) on the real models of ../shared/data.
# One program; each ctest case is one argv[1].
add_executable(test_forward forward/forward_test.c)
target_link_libraries(test_forward PRIVATE qr_test_util qr_io)
foreach(case generate_llama2c generate_hf hf_vs_llama2c kv_cache untied bf16 tokenizer_roundtrip
        tokenizer_reference tokenizer_unknown tokenizer_bad token_files slices_stories260K
        slices_babyllama105)
  add_test(NAME forward.${case} COMMAND test_forward ${case})
  set_tests_properties(forward.${case} PROPERTIES TIMEOUT ${QR_TEST_TIMEOUT} SKIP_RETURN_CODE 77
    ENVIRONMENT "QRECON_TEST_DATA=${QR_TEST_DATA};OPENBLAS_NUM_THREADS=1")
endforeach()
# The eval and generate subcommands end to end (JSON, 1 vs 2 ranks, exit codes).
qr_add_script_test(NAME forward.eval_cli SCRIPT forward/eval.sh)

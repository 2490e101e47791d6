# archs: Qwen2 (q/k/v biases) and Llama-3 (rope_scaling llama3) in the forward pass against a plain
# reference, and capture / quantize / eval end to end on synthetic Llama-2-, Llama-3- and
# Qwen2-shaped folders that carry a real tokenizer.json (built by the tokenizer tests' fixtures).
add_executable(test_archs archs/reference_forward.c)
target_link_libraries(test_archs PRIVATE qr_test_util qr_src)
foreach(case forward_qwen2 forward_llama3 forward_both)
  add_test(NAME archs.${case} COMMAND test_archs ${case})
  set_tests_properties(archs.${case} PROPERTIES TIMEOUT ${QR_TEST_TIMEOUT} ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
endforeach()
foreach(arch llama2 llama3 qwen2)
  qr_add_script_test(NAME archs.pipeline_${arch} SCRIPT archs/pipeline.sh
    ARGS ${arch} ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer/tokenizer_test.sh ${CMAKE_CURRENT_BINARY_DIR}/tokenizer-fixtures
         $<TARGET_FILE:tok_dump>)
  set_tests_properties(archs.pipeline_${arch} PROPERTIES LABELS "engine")
endforeach()

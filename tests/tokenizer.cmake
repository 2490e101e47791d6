# tokenizer: tokenizer.json (src/tokenizer_hf.c, io/tokenizer_json.c) against the reference
# @huggingface/tokenizers on real Llama-2 / Llama-3 vocabularies (built from npm packages into the
# build tree, never committed) and the texts in ../shared/data/text; and the errors.
add_executable(tok_dump tokenizer/tok_dump.c)
target_link_libraries(tok_dump PRIVATE qr_io)
foreach(case reference adversarial errors)
  qr_add_script_test(NAME tokenizer.${case} SCRIPT tokenizer/tokenizer_test.sh
    ARGS ${case} $<TARGET_FILE:tok_dump> ${CMAKE_CURRENT_BINARY_DIR}/tokenizer-fixtures)
endforeach()
# The reference run is mostly the JavaScript encoder (42 s); under the sanitizers the same C code
# runs in tokenizer.adversarial and archs.pipeline_*, so it runs in the release build only.
set_tests_properties(tokenizer.reference PROPERTIES LABELS "engine;no-sanitizer")

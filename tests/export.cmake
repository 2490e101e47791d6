# export: `qrecon export` (GGUF for llama.cpp, compressed-tensors + PEFT) and `generate --ckpt` on
# real stories260K checkpoints made by a fixture (capture + quantize: lqer W4A8 and W4A16, rtn
# W4A8 symmetric and asymmetric, all group 32).
#   export.formats  readers written from the published formats (tests/export/read_exports.py,
#                   stdlib Python) dequantize every module of model.gguf / lora.gguf and of the
#                   compressed-tensors folder / PEFT adapter to exactly the checkpoint's values;
#                   refusals (aser, group 64) exit 2 with one line; sampled generate is seeded
#   export.llama    llama.cpp itself (node-llama-cpp 3.22.1, installed once into a cache folder
#                   outside the repository by tools/setup.sh test, or here) scores the exports:
#                   float within 1e-3 nats/token of qrecon eval, W4A16 + adapter within 1e-5,
#                   W4A8 within the activation-quantization tolerance, the adapter lowers the NLL
#                   as the correction does, greedy generation agrees (docs/export.md)
add_executable(qr_test_ckpt_dump export/ckpt_dump.c)
target_link_libraries(qr_test_ckpt_dump PRIVATE qr_io)

set(QR_EXPORT_SCRATCH ${CMAKE_CURRENT_BINARY_DIR}/export-scratch)
qr_add_script_test(NAME export.setup SCRIPT export/setup.sh ARGS ${QR_EXPORT_SCRATCH})
set_tests_properties(export.setup PROPERTIES FIXTURES_SETUP export_ckpts)
qr_add_script_test(NAME export.formats SCRIPT export/formats.sh
                   ARGS ${QR_EXPORT_SCRATCH} $<TARGET_FILE:qr_test_ckpt_dump>)
set_tests_properties(export.formats PROPERTIES FIXTURES_REQUIRED export_ckpts)
qr_add_script_test(NAME export.llama SCRIPT export/llama.sh ARGS ${QR_EXPORT_SCRATCH} TIMEOUT 600)
set_tests_properties(export.llama PROPERTIES FIXTURES_REQUIRED export_ckpts
                     LABELS "engine;no-sanitizer")

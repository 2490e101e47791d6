# quantize: `qrecon quantize` end to end on the real stories260K (hf) with fixture calibration
# shards: determinism over 1..4 ranks, resume after kill -9 (while quantizing and while
# assembling), the job lock, parts made with other options, bad input on one rank, option checks.
add_executable(qr_test_make_calib quantize/make_calib.c)
target_link_libraries(qr_test_make_calib PRIVATE qr_io)
add_executable(qr_test_ckpt_compare quantize/ckpt_compare.c)
target_link_libraries(qr_test_ckpt_compare PRIVATE qr_io)

set(QR_QUANTIZE_TOOLS $<TARGET_FILE:qr_test_make_calib> $<TARGET_FILE:qr_test_ckpt_compare>)
foreach(case determinism resume lock options bad_input usage grid plan_agrees parts bits rtn_flag)
  qr_add_script_test(NAME quantize.${case} SCRIPT quantize/${case}.sh
                     ARGS ${QR_QUANTIZE_TOOLS} TIMEOUT 600)
endforeach()

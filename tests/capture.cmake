# capture: `qrecon capture` and the HDF5 calibration shards (io/calib_shard.c, jobs/cmd_capture.c)
# on the real models: layer-0 activations against an independent RMSNorm, the same rows from 1, 2
# and 3 ranks, byte-identical reruns, token-file input, float16 storage, refused bad input, the
# writer on synthetic rows; the capture pipelined over layer slices (1-4 ranks, bit-identical to
# one rank), quantize from it (the same checkpoint), resume after kill -9, version-1 shards.
add_executable(capture_check capture/capture_check.c)
target_link_libraries(capture_check PRIVATE qr_test_util qr_io)
foreach(case rmsnorm ranks determinism token_file f16 bad_input writer pipeline pipeline_quantize
        resume)
  qr_add_script_test(NAME capture.${case} SCRIPT capture/capture.sh
                     ARGS ${case} $<TARGET_FILE:capture_check> $<TARGET_FILE:qr_test_ckpt_compare>)
endforeach()
# Several calibration texts mixed by weight (jobs/text_mix.c).
qr_add_script_test(NAME capture.mix SCRIPT capture/mix.sh)

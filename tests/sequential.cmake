# sequential: `qrecon quantize --text` (capture and quantize in one job, layer by layer) on the
# real stories260K: resume after kill -9 gives the same checkpoint as an uninterrupted run; the
# first module input (layer 0 q/k/v, which sees the float model) matches the two-step path bit for
# bit; lanes (--grid 2x1) agree with one lane within 1e-9; usage errors.
foreach(case resume two_step)
  qr_add_script_test(NAME sequential.${case} SCRIPT sequential/${case}.sh
                     ARGS $<TARGET_FILE:qr_test_ckpt_compare> TIMEOUT 600)
endforeach()

# quant: the INT4 / activation quantizers, GPTQ, packing and quantized-layer storage (src/quant.h,
# src/qlayer.h).
foreach(case grid zero bound clip)
  qr_add_test(NAME quant.rtn_${case} SOURCES quant/test_rtn.c ARGS ${case})
endforeach()
foreach(case pack act qlayer)
  qr_add_test(NAME quant.${case} SOURCES quant/test_pack.c ARGS ${case})
endforeach()
foreach(case real synth diag ref)
  qr_add_test(NAME quant.gptq_${case} SOURCES quant/test_gptq.c ARGS ${case})
endforeach()

# kernels: the INT4 kernels (src/kernels): every SIMD path bit-identical to the reference, the
# reference and the corrections against float64, the whole-module path, the forced-kernel selector,
# the vectorized activation quantizer against the scalar rule.
foreach(case simd_exact ref_f64 lowrank module select actq)
  qr_add_test(NAME kernels.${case} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/kernels/test_kernels.c ARGS ${case})
endforeach()

# kernels: the INT4 kernels (src/kernels): every SIMD path bit-identical to the reference, the
# reference and the corrections against float64, the whole-module path, the forced-kernel selector.
foreach(case simd_exact ref_f64 lowrank module select)
  qr_add_test(NAME kernels.${case} SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/kernels/test_kernels.c ARGS ${case})
endforeach()

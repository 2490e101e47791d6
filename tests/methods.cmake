# methods: the reconstruction methods behind src/method.h, the shared corrections, the reference
# forward and the per-module metrics. One program, one ctest case per property.
foreach(case rank_monotone whitened_optimal srr_k0 srr_kstar serq_transform beat_rtn flrq_rank bits
             metrics metrics_fast errors odd_shapes serq_a4 aser_salient
             whitened_randomized flrq_calib_error determinism)
  qr_add_test(NAME methods.${case}
              SOURCES methods/test_methods.c methods/fixture.c ARGS ${case})
endforeach()

# The rule for default ranks and salient counts and the --bits budget (qr_method_resolve), on the
# real models' widths (read from their configs) and 7B shapes.
foreach(case shapes budget run)
  qr_add_test(NAME methods.auto_rule.${case} SOURCES methods/test_auto_rule.c LIBS qr_io
              ARGS ${case})
endforeach()

# JOINT (src/methods/joint.c): never above QERA-exact+GPTQ on the calibration objective
# (synthetic and real stories260K layers), bits under the budget and deterministic at A8 and A4,
# and smoothing that pays off at A4 with outlier channels; a search bounded by the module's size.
foreach(case calib budget a4 search)
  qr_add_test(NAME methods.joint.${case} SOURCES methods/test_joint.c methods/fixture.c LIBS qr_io
              ARGS ${case})
endforeach()

# eval: model-level quality of a quantized checkpoint against the float model (src/divergence.c,
# `qrecon eval --ckpt`, its sidecar CKPT.eval.json, and what `qrecon report` makes of it).
# eval.divergence: KL / NLL / top-1 of logit rows against hand cases and a plain loop (seeded).
qr_add_test(NAME eval.divergence SOURCES eval/test_divergence.c)

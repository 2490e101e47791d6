# eval: model-level quality of a quantized checkpoint against the float model (src/divergence.c,
# `qrecon eval --ckpt`, its sidecar CKPT.eval.json, and what `qrecon report` makes of it).
# eval.divergence: KL / NLL / top-1 of logit rows against hand cases and a plain loop (seeded).
qr_add_test(NAME eval.divergence SOURCES eval/test_divergence.c)
# eval.kl_real: eval --ckpt against the float model on stories260K and babyllama105 with two texts
# (TinyStories, WikiText-2), the sidecar CKPT.eval.json, and report's quality table and kl.svg.
qr_add_script_test(NAME eval.kl_real SCRIPT eval/kl_real.sh TIMEOUT 600)

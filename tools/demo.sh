#!/usr/bin/env bash
# demo.sh: the main job on the embedded default. Writes a small synthetic Llama-shaped model and
# inspects it. (Grows into the whole pipeline: synth -> capture -> quantize -> validate -> report
# -> eval.)
set -euo pipefail
qrecon=${1:-build/qrecon}
out=${QRECON_DEMO_OUT:-out/demo}
mkdir -p "$out"
echo "== qrecon synth: a small synthetic Llama-shaped model in $out/model"
"$qrecon" synth --out "$out/model"
echo "== qrecon inspect $out/model"
"$qrecon" inspect "$out/model"

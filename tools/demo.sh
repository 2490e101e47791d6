#!/usr/bin/env bash
# demo.sh [QRECON]: the whole pipeline on the embedded default, as `tools/setup.sh demo` runs it:
#   model -> capture -> quantize (2 ranks) -> validate -> report -> eval before and after.
# The model is the real stories260K when ../shared/data is beside the repository, else a small
# synthetic Llama-shaped model (`qrecon synth`) fed with seeded random token ids.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
qrecon=$(cd "$(dirname "${1:-build/qrecon}")" && pwd)/$(basename "${1:-build/qrecon}")
out=${QRECON_DEMO_OUT:-$here/out/demo}
method=${QRECON_DEMO_METHOD:-srr}
data=$here/../shared/data
mpirun=(mpiexec -n 2)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1
rm -rf "$out"
mkdir -p "$out"

if [ -d "$data/models/stories260K/hf" ]; then
    model=$data/models/stories260K/hf
    calib_input=(--text "$data/text/tinystories_train_sample.txt")
    eval_input=(--text "$data/text/tinystories_val_a.txt" --max-tokens 16384)
    seq=256 rank=4 group=32 tokens=16384
    echo "== model: stories260K (real, $model)"
else
    model=$out/model
    echo "== model: synthetic ($model)"
    "$qrecon" synth --out "$model"
    awk 'BEGIN { srand(7); for (i = 0; i < 40000; i++) printf "%d\n", 3 + int(rand() * 500) }' \
        >"$out/tokens.txt"
    calib_input=(--token-file "$out/tokens.txt")
    eval_input=(--token-file "$out/tokens.txt" --max-tokens 8192)
    seq=256 rank=8 group=64 tokens=16384
fi

echo "== qrecon inspect"
"$qrecon" inspect "$model"
echo "== qrecon capture (2 ranks): $tokens tokens in windows of $seq"
"${mpirun[@]}" "$qrecon" capture --model "$model" "${calib_input[@]}" --seq-len "$seq" \
    --tokens "$tokens" --out "$out/calib"
echo "== qrecon quantize (2 ranks): $method, W4A8, group $group, rank $rank"
"${mpirun[@]}" "$qrecon" quantize --model "$model" --calib "$out/calib" --out "$out/model-w4.h5" \
    --method "$method" --abits 8 --group "$group" --rank "$rank"
echo "== qrecon validate (2 ranks)"
"${mpirun[@]}" "$qrecon" validate "$out/model-w4.h5" --calib "$out/calib" \
    --json "$out/model-w4.h5.validate.json"
echo "== qrecon report"
"$qrecon" report "$out/model-w4.h5" --out "$out/report"
echo "== qrecon eval: float model, then the W4A8 checkpoint through the INT4 kernels"
before=$("$qrecon" --quiet eval --model "$model" "${eval_input[@]}" --seq-len "$seq" --json)
after=$("$qrecon" --quiet eval --model "$model" --ckpt "$out/model-w4.h5" "${eval_input[@]}" \
    --seq-len "$seq" --json)
ppl() { python3 -c 'import json,sys; print("%.4f" % json.loads(sys.argv[1])["perplexity"])' "$1"; }
echo
echo "report:                 $out/report/report.md (plots: $out/report/layers.svg)"
echo "perplexity, float:      $(ppl "$before")"
echo "perplexity, W4A8 $method: $(ppl "$after")"

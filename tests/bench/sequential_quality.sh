#!/usr/bin/env bash
# sequential_quality.sh BUILD_DIR [WORK] [METHODS] [MODELS]: the sequential mode (`quantize --text`) against
# the two-step path (capture, then quantize --calib) on the real stories260K and babyllama105, the
# same windows (16384 tokens of tinystories_train_sample in windows of 256; the last 10% held
# out), 2 ranks, W4A8, group 32, rank 4. For each method: perplexity through the INT4 kernels on
# tinystories_val_a (16384 tokens, `qrecon eval --ckpt`) and the mean over the 35 modules of the
# stored output error (report.csv's output_error: float activations, on the held-out rows each
# path saw: float-model inputs for two-step, quantized-model inputs for sequential). Prints one
# Markdown table (docs/quantize.md, "Sequential mode").
set -euo pipefail
build=$(cd "$1" && pwd)
work=${2:-/tmp/qrecon-sequential-quality}
methods=${3:-rtn gptq lqer qera-exact srr}
models=${4:-stories260K babyllama105}
data=$(cd "$(dirname "$0")/../../.." && pwd)/shared/data
[ -d "$data/models" ] || data=${QRECON_TEST_DATA:?no shared data}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1
q=$build/qrecon
mkdir -p "$work"
train=$data/text/tinystories_train_sample.txt
val=$data/text/tinystories_val_a.txt
ppl() { "$q" eval --model "$1" --ckpt "$2" --text "$val" --max-tokens 16384 --seq-len 256 "${@:3}" 2>&1 |
    sed -n 's/.*eval: NLL\/token .*, perplexity \([0-9.]*\).*/\1/p'; }
mean_err() {
    "$q" report "$1" --out "$1.report" >/dev/null
    awk -F, 'NR > 1 { s += $12; n++ } END { printf "%.4f", s / n }' "$1.report/report.csv"
}
echo "| model | method | ppl float | ppl two-step | ppl sequential | mean out_err two-step | mean out_err sequential |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for name in $models; do
    dir=$data/models/stories260K/hf
    [ "$name" = babyllama105 ] && dir=$data/models/babyllama105/hf-bf16-2shards
    extra=()
    [ "$name" = babyllama105 ] && extra=(--unknown-to-zero)
    in=(--text "$train" --seq-len 256 --tokens 16384 "${extra[@]}")
    mpiexec -n 2 "$q" capture --model "$dir" "${in[@]}" --out "$work/calib-$name" >/dev/null 2>&1
    float=$("$q" eval --model "$dir" --text "$val" --max-tokens 16384 --seq-len 256 "${extra[@]}" 2>&1 |
        sed -n 's/.*eval: NLL\/token .*, perplexity \([0-9.]*\).*/\1/p')
    for meth in $methods; do
        args=(--method "$meth" --abits 8 --group 32 --rank 4)
        [ "$meth" = gptq ] && args=(--method rtn --gptq --abits 8 --group 32)
        two=$work/$name-$meth-two.h5 seq=$work/$name-$meth-seq.h5
        rm -rf "$two" "$two.parts" "$seq" "$seq.parts"
        mpiexec -n 2 "$q" quantize --model "$dir" --calib "$work/calib-$name" --out "$two" \
            "${args[@]}" >/dev/null 2>&1
        mpiexec -n 2 "$q" quantize --model "$dir" "${in[@]}" --out "$seq" "${args[@]}" \
            >/dev/null 2>&1
        echo "| $name | $meth | $float | $(ppl "$dir" "$two" "${extra[@]}") |" \
            "$(ppl "$dir" "$seq" "${extra[@]}") | $(mean_err "$two") | $(mean_err "$seq") |"
    done
done

#!/bin/bash
# gptq_damp.sh: GPTQ's damping chosen by measurement (docs/methods.md, "GPTQ damping").
# For each shared model: capture TinyStories calibration, quantize RTN+GPTQ (group 32, W4A8) at
# several relative dampings, and measure perplexity through the INT4 kernels on calibration-like
# text (TinyStories validation) and on unlike text (WikiText-2 validation); float and plain RTN
# for reference. Usage: tests/bench/gptq_damp.sh BUILD_DIR [WORK_DIR] [damp values...]
set -euo pipefail
BIN=$(realpath "$1/qrecon")
WORK=${2:-/tmp/qrecon-gptq-damp}
shift $(($# > 1 ? 2 : 1))
DAMPS=${*:-0.001 0.01 0.03 0.1 0.3 1}
DATA=$(realpath "$(dirname "$0")/../../../shared/data")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1
mkdir -p "$WORK"
TEXTS="tinystories:$DATA/text/tinystories_val_a.txt wikitext2:$DATA/text/wikitext2_valid.txt"
ppl() { # ppl LOG -> perplexity
    sed -n "s/.*perplexity:* *\([0-9.]*\).*/\1/p" "$1" | tail -1
}
printf "%-14s %-14s %-10s %12s %12s\n" model setting damp tinystories wikitext2
for M in stories260K:hf babyllama105:hf-bf16-2shards; do
    name=${M%%:*}
    model=$DATA/models/$name/${M#*:}
    # babyllama105's vocabulary has no newline piece and no byte fallback
    unk=""
    [ "$name" = babyllama105 ] && unk=--unknown-to-zero
    w=$WORK/$name
    mkdir -p "$w"
    [ -d "$w/calib" ] || mpiexec -n 1 "$BIN" --quiet capture --model "$model" \
        --text "$DATA/text/tinystories_train_sample.txt" $unk --seq-len 256 --tokens 16384 \
        --out "$w/calib" >/dev/null
    run() { # run LABEL DAMP [quantize options...]: one row
        local label=$1 damp=$2 row=""
        shift 2
        local ck=""
        if [ "$label" != float ]; then
            ck="$w/$label-$damp.h5"
            [ -f "$ck" ] || mpiexec -n 1 "$BIN" --quiet quantize --model "$model" --calib "$w/calib" \
                --out "$ck" --group 32 --abits 8 "$@" >/dev/null
        fi
        for t in $TEXTS; do
            "$BIN" --quiet eval --model "$model" ${ck:+--ckpt "$ck"} --text "${t#*:}" $unk \
                --max-tokens 16384 --seq-len 256 >"$w/eval.log" 2>&1
            row="$row $(printf "%12s" "$(ppl "$w/eval.log")")"
        done
        printf "%-14s %-14s %-10s%s\n" "$name" "$label" "$damp" "$row"
    }
    run float -
    run rtn - --method rtn
    for d in $DAMPS; do
        run rtn+gptq "$d" --method rtn --gptq --gptq-damp "$d"
    done
done

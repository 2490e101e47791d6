#!/usr/bin/env bash
# grid_memory.sh BUILD_DIR [WORK] [METHOD...]: a module divided over a rank group's grid, measured
# side by side in one run: a synthetic layer of 2048 / 5504 (bf16, one layer, seven modules),
# 2048 calibration tokens in windows of 512 (1536 fit, 512 held out), rank 64, group 128, quantized
# with each METHOD (default: qera-exact srr rtn-gptq; NAME-gptq adds --gptq) at --grid 1x1 (1 rank), 2x1 and 1x2 (2 ranks) and
# 2x2 (4 ranks, oversubscribed on 2 cores). Prints per run the largest peak resident memory of any
# rank and the CPU seconds summed over the ranks (both from the job's own closing lines), their
# ratios to 1x1 (issue bounds: memory 2x1, 1x2 <= 0.6, 2x2 <= 0.35; CPU sum at 2x1 <= 1.3), and
# the plan's predictions the job printed beside them (bound: within 25%).
set -euo pipefail
build=$(cd "$1" && pwd)
work=${2:-/tmp/qrecon-grid-memory}
shift $(($# > 1 ? 2 : 1))
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(qera-exact srr rtn-gptq)
data=$(cd "$(dirname "$0")/../../.." && pwd)/shared/data
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1
q=$build/qrecon
mkdir -p "$work"
if [ ! -f "$work/model/config.json" ]; then
    "$q" synth --out "$work/model" --dim 2048 --hidden 5504 --layers 1 --heads 16 --kv-heads 16 \
        --vocab 512 --dtype bf16 --tokenizer "$data/models/stories260K/llama2c/tok512.bin" >/dev/null
fi
if [ ! -d "$work/calib" ]; then
    mpiexec -n 2 "$q" capture --model "$work/model" --text "$data/text/tinystories_train_sample.txt" \
        --seq-len 512 --tokens 2048 --out "$work/calib" >/dev/null
fi
mib() { sed -n 's/.*peak memory per rank \([0-9.]*\) MiB.*/\1/p' "$1"; }
cpu() { sed -n 's/.*CPU \([0-9.]*\) s summed.*/\1/p' "$1"; }
plan_mib() { sed -n 's/.*(plan \([0-9.]*\) MiB + \([0-9.]*\) MiB on its root).*/\1 \2/p' "$1" | awk '{print $1 + $2}'; }
plan_cpu() { sed -n 's/.*(plan \([0-9.]*\) s at [0-9.]* GFLOP.*/\1/p' "$1"; }
printf '%-11s %-5s %10s %7s %10s %11s %7s %10s\n' method grid "peak MiB" "x 1x1" "plan MiB" \
    "CPU s (sum)" "x 1x1" "plan CPU s"
for m in "${methods[@]}"; do
    for run in 1:1x1 2:2x1 2:1x2 4:2x2; do
        np=${run%%:*} grid=${run#*:} log=$work/$m-$grid.log
        rm -rf "$work/$m-$grid.h5" "$work/$m-$grid.h5.parts"
        args=(--method "${m%-gptq}")
        [ "$m" != "${m%-gptq}" ] && args+=(--gptq)
        mpiexec -n "$np" "$q" --progress lines quantize --model "$work/model" --calib "$work/calib" \
            --out "$work/$m-$grid.h5" "${args[@]}" --rank 64 --group 128 --grid "$grid" >"$log" 2>&1
        [ "$grid" = 1x1 ] && base_mib=$(mib "$log") && base_cpu=$(cpu "$log")
        printf '%-11s %-5s %10s %7.2f %10s %11s %7.2f %10s\n' "$m" "$grid" "$(mib "$log")" \
            "$(echo "$(mib "$log") / $base_mib" | bc -l)" "$(plan_mib "$log")" "$(cpu "$log")" \
            "$(echo "$(cpu "$log") / $base_cpu" | bc -l)" "$(plan_cpu "$log")"
    done
done

#!/bin/bash
# sweep.sh: submit a method x rank sweep as one job array (slurm/sweep.sbatch, one checkpoint per
# task) and a report job that compares the checkpoints once every task has succeeded.
#
#   slurm/sweep.sh --calib CALIB --model DIR --out DIR [--ranks N] [--sweep "rtn:0 lqer:8 srr:8"]
#                  [-- more quantize options]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
calib='' model='' out='' ranks=2 sweep="rtn:0 lqer:4 qera-exact:4 srr:4"
while [ $# -gt 0 ]; do
    case "$1" in
    --calib) calib=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --sweep) sweep=$2; shift 2 ;;
    --) shift; break ;;
    *) sed -n '2,7p' "$0"; exit 2 ;;
    esac
done
[ -n "$calib" ] && [ -n "$model" ] && [ -n "$out" ] || { sed -n '2,7p' "$0"; exit 2; }
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
export QRECON_BIN=${QRECON_BIN:-$(command -v qrecon || echo qrecon)}
read -r -a entries <<<"$sweep"
ckpts=()
for e in "${entries[@]}"; do ckpts+=("$out/${e%%:*}-r${e##*:}.h5"); done

array=$(QRECON_SWEEP="$sweep" QRECON_SLURM_DIR="$here" sbatch --parsable --export=ALL -n "$ranks" \
    --array=0-$((${#entries[@]} - 1)) -o "$out/logs/sweep-%A_%a.log" \
    "$here/sweep.sbatch" "$out" --model "$model" --calib "$calib" "$@")
report=$(sbatch --parsable --export=ALL -n 1 --dependency=afterok:"$array" \
    --kill-on-invalid-dep=yes -o "$out/logs/report-%j.log" \
    "$here/run.sbatch" report --out "$out/report" "${ckpts[@]}")
echo "array=$array report=$report"

#!/usr/bin/env bash
# sequential.sh BUILD_DIR [WORK] [TOKENS]: the sequential mode (`quantize --text`) against the
# two-step path (`capture` then `quantize --calib`) on a synthetic 7B-shaped slice: `qrecon synth
# --preset 7b --layers 2` (dim 4096, hidden 11008, 32/32 heads) with stories260K's 512-piece
# tokenizer, BF16; TOKENS (default 1024) tokens of tinystories_train_sample in windows of 256, the
# last 10% of the windows held out; lqer rank 16, group 128, W4A8; 2 ranks (one layer slice
# each). Run back to back in one invocation. Prints, per step, the wall time and the largest peak
# resident memory of any rank (each job's own closing line: getrusage maxrss, as the other
# benchmarks read it), the bytes the two-step path writes between its steps, the hidden states
# the sequential job holds per rank, and each checkpoint's mean stored output error.
set -euo pipefail
build=$(cd "$1" && pwd)
work=${2:-/tmp/qrecon-bench-sequential}
tokens=${3:-1024}
data=$(cd "$(dirname "$0")/../../.." && pwd)/shared/data
[ -d "$data/models" ] || data=${QRECON_TEST_DATA:?no shared data}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1
q=$build/qrecon
mkdir -p "$work"
if [ ! -f "$work/model/config.json" ]; then
    "$q" synth --out "$work/model" --preset 7b --layers 2 --dtype bf16 --vocab 512 \
        --tokenizer "$data/models/stories260K/llama2c/tok512.bin" >/dev/null
fi
in=(--text "$data/text/tinystories_train_sample.txt" --seq-len 256 --tokens "$tokens")
qopts=(--method lqer --rank 16 --group 128 --abits 8)
now() { date +%s.%N; }
# peak LOG: the largest "peak memory per rank X MiB" the job printed (quantize prints one per group)
peak() { sed -n 's/.*peak memory per rank \([0-9.]*\) MiB.*/\1/p' "$1" | sort -g | tail -1; }
mean_err() {
    "$q" report "$1" --out "$1.report" >/dev/null
    awk -F, 'NR > 1 { s += $12; n++ } END { printf "%.4f", s / n }' "$1.report/report.csv"
}
rm -rf "$work/calib" "$work/two.h5" "$work/two.h5.parts" "$work/seq.h5" "$work/seq.h5.parts"
echo "bench: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $tokens tokens, lqer rank 16"

t0=$(now)
mpiexec -n 2 "$q" capture --model "$work/model" "${in[@]}" --out "$work/calib" >"$work/log.capture" 2>&1
t1=$(now)
mpiexec -n 2 "$q" --progress lines quantize --model "$work/model" --calib "$work/calib" \
    --out "$work/two.h5" "${qopts[@]}" >"$work/log.two" 2>&1
t2=$(now)
mpiexec -n 2 "$q" --progress lines quantize --model "$work/model" "${in[@]}" \
    --out "$work/seq.h5" "${qopts[@]}" >"$work/log.seq" 2>&1
t3=$(now)

printf '%-22s %9s %15s\n' step "wall s" "peak MiB/rank"
printf '%-22s %9.1f %15s\n' "capture -n 2" "$(echo "$t1 - $t0" | bc)" "$(peak "$work/log.capture")"
printf '%-22s %9.1f %15s\n' "quantize --calib -n 2" "$(echo "$t2 - $t1" | bc)" "$(peak "$work/log.two")"
printf '%-22s %9.1f %15s\n' "two-step total" "$(echo "$t2 - $t0" | bc)" \
    "$(printf '%s\n%s\n' "$(peak "$work/log.capture")" "$(peak "$work/log.two")" | sort -g | tail -1)"
printf '%-22s %9.1f %15s\n' "sequential -n 2" "$(echo "$t3 - $t2" | bc)" "$(peak "$work/log.seq")"
echo "two-step: $(du -sb "$work/calib" | cut -f1) bytes of calibration shards written and read back"
sed -n 's/.*\(hidden states [0-9.]* MiB per rank\).*/sequential: \1 (one layer boundary of its windows)/p' "$work/log.seq"
sed -n 's/.*\(of which forward passes [0-9.]* s\).*/sequential: \1 (summed over the ranks)/p' "$work/log.seq"
echo "mean stored output error: two-step $(mean_err "$work/two.h5"), sequential $(mean_err "$work/seq.h5")"

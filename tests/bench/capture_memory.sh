#!/usr/bin/env bash
# capture_memory.sh BUILD_DIR [WORK] [TOKENS]: peak resident memory per rank of `qrecon capture` on
# a synthetic model of 1024 / 2816, 4 layers, vocabulary 512 (float32), with 1 rank (the whole
# model) and with 4 ranks (one layer slice each, hidden states passed group to group), TOKENS
# tokens (default 2048) in windows of 128. Prints each run's largest peak resident memory of any
# rank (the job's own closing line, getrusage maxrss), its time and pipeline figures, and the
# ratio 4 ranks / 1 rank (issue bound: <= 0.4); exits 1 when the ratio is above 0.4 or the two
# captures differ.
set -euo pipefail
build=$(cd "$1" && pwd)
work=${2:-/tmp/qrecon-capture-memory}
tokens=${3:-2048}
data=$(cd "$(dirname "$0")/../../.." && pwd)/shared/data
[ -d "$data/models" ] || data=${QRECON_TEST_DATA:?no shared data}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1
q=$build/qrecon
mkdir -p "$work"
if [ ! -f "$work/model/config.json" ]; then
    "$q" synth --out "$work/model" --dim 1024 --hidden 2816 --layers 4 --heads 8 --kv-heads 8 \
        --vocab 512 --dtype f32 --tokenizer "$data/models/stories260K/llama2c/tok512.bin" >/dev/null
fi
mib() { sed -n 's/.*peak memory per rank \([0-9.]*\) MiB.*/\1/p' "$1"; }
printf '%-6s %12s %8s  %s\n' ranks "peak MiB" "s" "pipeline"
for np in 1 4; do
    log=$work/n$np.log
    /usr/bin/time -f "%e" -o "$work/n$np.time" mpiexec -n "$np" "$q" capture --model "$work/model" \
        --text "$data/text/tinystories_train_sample.txt" --seq-len 128 --tokens "$tokens" \
        --out "$work/c$np" >"$log" 2>&1 || { cat "$log"; exit 1; }
    printf '%-6s %12s %8s  %s\n' "$np" "$(mib "$log")" "$(cat "$work/n$np.time")" \
        "$(sed -n 's/.*capture: pipeline of \(.*\) (max over ranks).*/\1/p' "$log")"
done
ratio=$(echo "$(mib "$work/n4.log") / $(mib "$work/n1.log")" | bc -l)
printf 'peak memory per rank, 4 ranks / 1 rank: %.3f (bound 0.4)\n' "$ratio"
if [ -x "$build/tests/capture_check" ]; then
    "$build/tests/capture_check" compare "$work/c1" "$work/c4" 0 >/dev/null ||
        { echo "FAIL: the 4-rank capture differs from the 1-rank capture"; exit 1; }
    echo "the 4-rank capture is bit-identical to the 1-rank capture"
fi
[ "$(echo "$ratio <= 0.4" | bc -l)" = 1 ] || { echo "FAIL: ratio above 0.4"; exit 1; }

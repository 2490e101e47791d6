#!/bin/bash
# quantize.sh BUILD_DIR [WORK_DIR]: the quantize benchmark (figures in docs/quantize.md).
#  1. a synthetic 7B-shaped slice: `qrecon synth --preset 7b --layers 2` (dim 4096, hidden 11008);
#  2. fixture calibration shards with outlier channels (tests/quantize/make_calib): 3 shards x 3
#     windows x 256 tokens = 2304 tokens; --holdout 0.1 keeps the last window, so 2048 tokens fit;
#  3. `quantize` (QR_BENCH_METHOD, default qera-approx) under mpiexec -n 1 and -n 2, back to back in this run: wall time ratio, identical
#     checkpoints, peak memory per rank against the largest module's working set;
#  4. the assembly's write rate against a plain sequential write of the same bytes.
# A module divided over a grid is measured by tests/bench/grid_memory.sh.
set -eu
build=$(cd "$1" && pwd)
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/qrecon-bench-quantize.XXXXXX")}
mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1
method=${QR_BENCH_METHOD:-qera-approx}
cmake --build "$build" --target qrecon qr_test_make_calib qr_test_ckpt_compare bench_write_rate >/dev/null
q=$build/qrecon
[ -f "$work/model/config.json" ] || "$q" synth --preset 7b --layers 2 --out "$work/model"
[ -d "$work/calib" ] || "$build/tests/qr_test_make_calib" "$work/model" "$work/calib" 3 3 256 7
echo "bench: $(nproc) cores, method $method, rank 32, group 128, work folder $work"
for np in 1 2; do
    rm -rf "$work/np$np.h5" "$work/np$np.h5.parts"
    t0=$(date +%s.%N)
    mpiexec -n $np "$q" --progress lines quantize --model "$work/model" --calib "$work/calib" \
        --out "$work/np$np.h5" --method "$method" --rank 32 --group 128 >"$work/log.np$np" 2>&1
    t1=$(date +%s.%N)
    wall[$np]=$(echo "$t1 - $t0" | bc)
    echo "  -n $np: ${wall[$np]} s"
    grep -E "peak memory|wrote|CPU time" "$work/log.np$np" | sed 's/^/    /'
    cpu[$np]=$(sed -n "s/.*CPU \([0-9.]*\) s summed.*/\1/p" "$work/log.np$np")
done
echo "speedup -n 2 / -n 1: wall $(echo "scale=2; ${wall[1]} / ${wall[2]}" | bc)x, busiest rank's CPU time $(echo "scale=2; ${cpu[1]} / ${cpu[2]}" | bc)x"
"$build/tests/qr_test_ckpt_compare" "$work/np1.h5" "$work/np2.h5"
bytes=$(stat -c %s "$work/np2.h5")
echo "checkpoint file: $bytes bytes; plain sequential write of the same bytes:"
"$build/tests/bench_write_rate" "$work/plain.bin" "$bytes" | sed 's/^/    /'

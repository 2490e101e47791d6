#!/bin/bash
# quantize.grid: rank groups on grids agree with 1x1 (LAPACK, one process) within GRID_REL_TOL
# relative on every module's effective weight and stored errors:
# - every method divided over the grid (statistics, weight, whitening, SVD and metrics
#   block-cyclic; serq and joint, whose default is --gptq, on whole rows) at 2x1 and 1x2 (-n 2) and
#   2x2 (-n 4); flrq also on a synthetic layer whose d_in of 688 takes its sketched output error,
#   with and without --gptq;
# - --gptq on grids of one column (2x1, 4x1; 1x2 works as 2x1), also with SERQ's and ASER's own
#   per-module factor of their transformed Gram, and ASER's one group per row (--group 0);
# - the exact SVD mode (PDGESVD) with two groups of 2x1 (-n 4).
source "$(dirname "$0")/common.sh"
# Waiting ranks yield the CPU: 4 ranks on 2 cores busy-polling through JOINT's many small
# collectives took 200 s instead of 24.
export OMPI_MCA_mpi_yield_when_idle=1
# Distributed sums are ordered differently from the serial ones: measured differences are about
# 1e-14 here and up to 5.9e-10 on a 2048 / 5504 layer whose Gram is rank-deficient (docs/distributed.md);
# 1e-9 is the tolerance the docs promise.
GRID_REL_TOL=1e-9
make_calib "$WORK/calib"
for m in rtn lqer qera-approx qera-exact srr aser serq flrq joint; do
    QOPTS=(--method $m --group 32 --rank 8 --seed 3)
    quantize 1 "$WORK/$m-1x1.h5" || { cat "$WORK/log.$m-1x1.h5"; fail "$m 1x1"; }
    runs=("2 2x1" "2 1x2" "4 2x2")
    [ $m = serq ] || [ $m = joint ] && runs=("2 2x1" "4 2x2") # 1x2 works as 2x1
    for run in "${runs[@]}"; do
        set -- $run
        quantize "$1" "$WORK/$m-$2.h5" --grid "$2" || { cat "$WORK/log.$m-$2.h5"; fail "$m -n $1 --grid $2"; }
        "$CKPT_COMPARE" "$WORK/$m-1x1.h5" "$WORK/$m-$2.h5" --rel $GRID_REL_TOL || fail "$m: grid $2 differs from 1x1"
    done
done
# GPTQ on grids of one column (each rank sweeps its rows, the input group's factor sent panel by
# panel), with the whitening of qera-exact beside it; a 1x2 group works as 2x1.
QOPTS=(--method qera-exact --gptq --group 32 --rank 8 --seed 3)
quantize 1 "$WORK/gptq-1x1.h5" || { cat "$WORK/log.gptq-1x1.h5"; fail "gptq 1x1"; }
for run in "2 2x1" "4 4x1" "2 1x2"; do
    set -- $run
    quantize "$1" "$WORK/gptq-$2.h5" --grid "$2" || { cat "$WORK/log.gptq-$2.h5"; fail "gptq -n $1 --grid $2"; }
    "$CKPT_COMPARE" "$WORK/gptq-1x1.h5" "$WORK/gptq-$2.h5" --rel $GRID_REL_TOL || fail "gptq: grid $2 differs from 1x1"
done
grep -q "works as 2x1" "$WORK/log.gptq-1x2.h5" || fail "gptq on 1x2: not laid out as 2x1"
grep -q "\-\-gptq runs on whole rows: each group of 2x2 ranks works as 4x1" "$WORK/log.joint-2x2.h5" || fail "joint on 2x2: not laid out as 4x1"
grep -q "serq runs on whole rows: each group of 2x2 ranks works as 4x1" "$WORK/log.serq-2x2.h5" || fail "serq on 2x2: not laid out as 4x1"
# SERQ and ASER with GPTQ on their own transformed Gram (SERQ's permuted row block by row block),
# with the clip search (its column weights: the transformed Gram's diagonal); ASER's default one
# group per row needs whole rows too.
against_1x1() { # against_1x1 TAG NP GRID: the run of QOPTS on GRID agrees with its 1x1 run
    quantize 1 "$WORK/$1-1x1.h5" || { cat "$WORK/log.$1-1x1.h5"; fail "$1 1x1"; }
    quantize "$2" "$WORK/$1-$3.h5" --grid "$3" || { cat "$WORK/log.$1-$3.h5"; fail "$1 -n $2 --grid $3"; }
    "$CKPT_COMPARE" "$WORK/$1-1x1.h5" "$WORK/$1-$3.h5" --rel $GRID_REL_TOL || fail "$1: grid $3 differs from 1x1"
}
QOPTS=(--method serq --gptq --clip --group 32 --seed 3)
against_1x1 serq-gptq-clip 4 2x2
# groups of 5 on 1x2: blocks of 65 columns, odd, so the gathered codes straddle bytes
QOPTS=(--method rtn --group 5 --seed 3)
against_1x1 rtn-odd-blocks 2 1x2
QOPTS=(--method aser --gptq --group 32 --rank 8 --seed 3)
against_1x1 aser-gptq 2 1x2
QOPTS=(--method aser --group 0 --rank 8 --seed 3)
against_1x1 aser-group0 2 1x2
QOPTS=(--method qera-exact --group 0 --rank 8 --seed 3)
against_1x1 qera-group0 2 1x2
grep -q "one group per row runs on whole rows: each group of 1x2 ranks works as 2x1" "$WORK/log.qera-group0-1x2.h5" ||
    fail "--group 0 on 1x2: not laid out as 2x1"
# FLRQ where d_in > 512 (the tiny synthetic layer's down_proj, 688): its output error through a
# sketch of the whitening factor, drawn on the grid in the serial order; its flexible ranks there
# are 0 to 8, so the BLC refits run too.
SAVED_MODEL=$MODEL
MODEL="$WORK/synth"
"$QRECON_BIN" synth --out "$MODEL" --layers 1 >/dev/null || fail "synth"
mv "$WORK/calib" "$WORK/calib-stories"
make_calib "$WORK/calib"
QOPTS=(--method flrq --group 32 --rank 8 --seed 3)
against_1x1 flrq-synth 4 2x2
grep -q "down_proj  flrq rank [1-8] " "$WORK/log.flrq-synth-2x2.h5" || fail "flrq-synth: down_proj kept no rank"
QOPTS=(--method flrq --gptq --group 32 --rank 8 --seed 3)
against_1x1 flrq-synth-gptq 2 1x2
rm -rf "$WORK/calib"
mv "$WORK/calib-stories" "$WORK/calib"
MODEL=$SAVED_MODEL
# The second real model (babyllama105, 128 / 352): the divided path at 2x1 and 2x2.
MODEL="$QRECON_TEST_DATA/models/babyllama105/hf-bf16-2shards"
make_calib "$WORK/calib-bl"
QOPTS=(--method qera-exact --group 32 --rank 8 --seed 3)
run_bl() { # run_bl NP OUT [options]
    local np=$1 out=$2
    shift 2
    "$MPIEXEC" -n "$np" "$QRECON_BIN" quantize --model "$MODEL" --calib "$WORK/calib-bl" \
        --out "$out" "${QOPTS[@]}" "$@" >"$out.log" 2>&1 || { cat "$out.log"; fail "babyllama105 $out"; }
}
run_bl 1 "$WORK/bl-1x1.h5"
for run in "2 2x1" "4 2x2"; do
    set -- $run
    run_bl "$1" "$WORK/bl-$2.h5" --grid "$2"
    "$CKPT_COMPARE" "$WORK/bl-1x1.h5" "$WORK/bl-$2.h5" --rel $GRID_REL_TOL || fail "babyllama105: grid $2 differs from 1x1"
done
# ASER and SERQ (with GPTQ: the permuted Gram over many row blocks) there: several row blocks per rank at 2x2 (352 rows, block 64).
for m in aser serq; do
    QOPTS=(--method $m --group 32 --rank 8 --seed 3)
    [ $m = serq ] && QOPTS+=(--gptq)
    run_bl 1 "$WORK/bl-$m-1x1.h5"
    run_bl 4 "$WORK/bl-$m-2x2.h5" --grid 2x2
    "$CKPT_COMPARE" "$WORK/bl-$m-1x1.h5" "$WORK/bl-$m-2x2.h5" --rel $GRID_REL_TOL || fail "babyllama105 $m: grid 2x2 differs from 1x1"
done
MODEL="$QRECON_TEST_DATA/models/stories260K/hf"
QOPTS=(--method qera-exact --group 32 --rank 8 --seed 3 --svd exact)
quantize 1 "$WORK/exact-1x1.h5" || { cat "$WORK/log.exact-1x1.h5"; fail "exact 1x1"; }
quantize 4 "$WORK/exact-2x1.h5" --grid 2x1 || { cat "$WORK/log.exact-2x1.h5"; fail "exact -n 4 --grid 2x1"; }
"$CKPT_COMPARE" "$WORK/exact-1x1.h5" "$WORK/exact-2x1.h5" --rel $GRID_REL_TOL || fail "PDGESVD mode differs from dgesdd"
echo "quantize.grid: 2x1, 1x2 and 2x2 agree with 1x1 within $GRID_REL_TOL"

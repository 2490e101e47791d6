#!/bin/bash
# quantize.grid: rank groups on grids agree with 1x1 (LAPACK, one process) within GRID_REL_TOL
# relative on every module's effective weight and stored errors:
# - the methods divided over the grid (rtn, lqer, qera-approx, qera-exact: statistics, weight,
#   whitening, SVD and metrics block-cyclic) at 2x1 and 1x2 (-n 2) and 2x2 (-n 4);
# - the others (srr here), where the group shares only the SVD and Cholesky, at 2x1;
# - the exact SVD mode (PDGESVD) with two groups of 2x1 (-n 4).
source "$(dirname "$0")/common.sh"
# Distributed sums are ordered differently from the serial ones: measured differences are about
# 1e-14 (effective weights) and 1e-15 (errors); 1e-10 leaves room for other BLAS builds.
GRID_REL_TOL=1e-10
make_calib "$WORK/calib"
for m in rtn lqer qera-approx qera-exact srr; do
    QOPTS=(--method $m --group 32 --rank 8 --seed 3)
    quantize 1 "$WORK/$m-1x1.h5" || { cat "$WORK/log.$m-1x1.h5"; fail "$m 1x1"; }
    runs=("2 2x1" "2 1x2" "4 2x2")
    [ $m = srr ] && runs=("2 2x1")
    for run in "${runs[@]}"; do
        set -- $run
        quantize "$1" "$WORK/$m-$2.h5" --grid "$2" || { cat "$WORK/log.$m-$2.h5"; fail "$m -n $1 --grid $2"; }
        "$CKPT_COMPARE" "$WORK/$m-1x1.h5" "$WORK/$m-$2.h5" --rel $GRID_REL_TOL || fail "$m: grid $2 differs from 1x1"
    done
done
grep -q "srr.*not yet divided over the grid" "$WORK/log.srr-2x1.h5" || fail "srr on a grid: no warning that the module is not divided"
QOPTS=(--method qera-exact --group 32 --rank 8 --seed 3 --svd exact)
quantize 1 "$WORK/exact-1x1.h5" || { cat "$WORK/log.exact-1x1.h5"; fail "exact 1x1"; }
quantize 4 "$WORK/exact-2x1.h5" --grid 2x1 || { cat "$WORK/log.exact-2x1.h5"; fail "exact -n 4 --grid 2x1"; }
"$CKPT_COMPARE" "$WORK/exact-1x1.h5" "$WORK/exact-2x1.h5" --rel $GRID_REL_TOL || fail "PDGESVD mode differs from dgesdd"
echo "quantize.grid: 2x1, 1x2 and 2x2 agree with 1x1 within $GRID_REL_TOL"

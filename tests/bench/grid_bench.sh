#!/usr/bin/env bash
# grid_bench.sh BUILD_DIR: in one run, best of 3 each (the machine is shared and noisy):
#  - grid 2x1 vs 1x1 (mpiexec -n 2 vs -n 1, one BLAS thread per rank) on an 11008x4096 randomized
#    truncated SVD at r = 64 and on a 4096 Cholesky, next to serial LAPACK;
#  - the capacity check: two independent 1x1 groups doing the same work at once under -n 2 (on two
#    free cores they take as long as one group alone);
#  - one rank with two BLAS threads (the ranks x threads trade-off);
#  - PDGESVD (1x1 and 2x1) vs dgesdd on 2000x1500 (one repeat).
set -eu
bench="${1:?usage: grid_bench.sh BUILD_DIR}/tests/grid_bench"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
out=$(mktemp)
# Ranks are pinned to cores (Open MPI's default for -n <= 2) and yield while they wait: on a shared,
# loaded machine a busy-polling rank burns the CPU its partner needs (measured 3-10x slower grid
# runs without). A single rank with 2 BLAS threads must not be pinned to one core.
run() { # label, ranks, threads, grid rows, args...
    local label=$1 np=$2 th=$3 p=$4 bind=core
    shift 4
    [ "$th" -gt 1 ] && bind=none
    OPENBLAS_NUM_THREADS=$th GRID_BENCH_P=$p OMPI_MCA_mpi_yield_when_idle=1 \
        mpiexec --bind-to $bind -n "$np" "$bench" "$@" | sed "s/^/$label /" | tee -a "$out"
}
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for job in "rsvd 11008 4096 64" "chol 4096"; do
    run n1 1 1 1 $job
    run n2 2 1 2 $job
    run n2cap 2 1 1 $job
    run n1t2 1 2 1 $job
done
run n1 1 1 1 pdgesvd 2000 1500 1
run n2 2 1 2 pdgesvd 2000 1500 1
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
t() { awk -v l="$1" -v w="$2" -v g="$3" '$1 == l && $2 == w && $0 ~ g { print $(NF-1) }' "$out"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
for w in rsvd chol; do
    echo "$w: speed-up of grid 2x1 over 1x1 = $(ratio "$(t n1 $w 'grid 1x1')" "$(t n2 $w 'grid 2x1')")"
    echo "$w: capacity, 2 x time(1x1 alone) / time(two 1x1 groups at once) = $(ratio "$(awk -v a="$(t n1 $w 'grid 1x1')" 'BEGIN{print 2*a}')" "$(t n2cap $w 'grid 1x1')")"
    echo "$w: LAPACK / grid 1x1 (ScaLAPACK on one rank) = $(ratio "$(t n1 $w lapack)" "$(t n1 $w 'grid 1x1')")"
    echo "$w: speed-up of LAPACK with 2 threads over 1 = $(ratio "$(t n1 $w lapack)" "$(t n1t2 $w lapack)")"
done
echo "pdgesvd 2000x1500: PDGESVD 1x1 / dgesdd = $(ratio "$(t n1 pdgesvd 'grid 1x1')" "$(t n1 dgesdd lapack)")"
echo "pdgesvd 2000x1500: PDGESVD 2x1 / dgesdd = $(ratio "$(t n2 pdgesvd 'grid 2x1')" "$(t n1 dgesdd lapack)")"
echo "pdgesvd 2000x1500: speed-up of PDGESVD 2x1 over 1x1 = $(ratio "$(t n1 pdgesvd 'grid 1x1')" "$(t n2 pdgesvd 'grid 2x1')")"
rm -f "$out"

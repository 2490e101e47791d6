#!/usr/bin/env bash
# grid_bench.sh BUILD_DIR: grid 2x1 vs 1x1 (mpiexec -n 2 vs -n 1, one BLAS thread per rank) on an
# 11008x4096 randomized truncated SVD at r = 64 and a 4096 Cholesky, one rank with two BLAS threads
# for the ranks x threads trade-off, and PDGESVD vs dgesdd on 2000x1500; all in one run, with
# ratios. Best of 3 for each (the machine is shared and noisy).
set -eu
bench="${1:?usage: grid_bench.sh BUILD_DIR}/tests/grid_bench"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
out=$(mktemp)
run() { # label, ranks, threads, args...
    local label=$1 np=$2 th=$3
    shift 3
    OPENBLAS_NUM_THREADS=$th mpiexec --bind-to none -n "$np" "$bench" "$@" | sed "s/^/$label /" | tee -a "$out"
}
run n1t1 1 1 rsvd 11008 4096 64
run n2t1 2 1 rsvd 11008 4096 64
run n1t2 1 2 rsvd 11008 4096 64
run n1t1 1 1 chol 4096
run n2t1 2 1 chol 4096
run n1t2 1 2 chol 4096
run n1t1 1 1 pdgesvd 2000 1500 1
run n2t1 2 1 pdgesvd 2000 1500 1
t() { awk -v l="$1" -v w="$2" -v g="$3" '$1 == l && $2 == w && $0 ~ g { print $(NF-1) }' "$out"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "rsvd 11008x4096 r=64: grid 1x1 / grid 2x1 (speed-up of 2 ranks) = $(ratio "$(t n1t1 rsvd 'grid 1x1')" "$(t n2t1 rsvd 'grid 2x1')")"
echo "rsvd 11008x4096 r=64: LAPACK 1 thread / grid 1x1 (ScaLAPACK overhead) = $(ratio "$(t n1t1 rsvd lapack)" "$(t n1t1 rsvd 'grid 1x1')")"
echo "rsvd 11008x4096 r=64: LAPACK 1 thread / LAPACK 2 threads = $(ratio "$(t n1t1 rsvd lapack)" "$(t n1t2 rsvd lapack)")"
echo "chol 4096: grid 1x1 / grid 2x1 = $(ratio "$(t n1t1 chol 'grid 1x1')" "$(t n2t1 chol 'grid 2x1')")"
echo "chol 4096: LAPACK 1 thread / grid 1x1 = $(ratio "$(t n1t1 chol lapack)" "$(t n1t1 chol 'grid 1x1')")"
echo "chol 4096: LAPACK 1 thread / LAPACK 2 threads = $(ratio "$(t n1t1 chol lapack)" "$(t n1t2 chol lapack)")"
echo "2000x1500: PDGESVD grid 1x1 / dgesdd = $(ratio "$(t n1t1 pdgesvd 'grid 1x1')" "$(t n1t1 dgesdd lapack)")"
echo "2000x1500: PDGESVD grid 2x1 / dgesdd = $(ratio "$(t n2t1 pdgesvd 'grid 2x1')" "$(t n1t1 dgesdd lapack)")"
echo "2000x1500: PDGESVD grid 1x1 / grid 2x1 = $(ratio "$(t n1t1 pdgesvd 'grid 1x1')" "$(t n2t1 pdgesvd 'grid 2x1')")"
rm -f "$out"

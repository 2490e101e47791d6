/* grid_bench.c: timings of the distributed linear algebra (mpi/pdla.h) on a grid of all the ranks
 * it runs on (N x 1), next to the serial LAPACK routine on rank 0 when run on one rank. Driven by
 * tests/bench/grid_bench.sh, which runs it under mpiexec -n 1 and -n 2 in one go and prints ratios.
 *
 * usage: mpiexec -n N grid_bench rsvd M N R | wrsvd M N R | chol N | gptq N | trmm M N |
 *        pdgesvd M N   [repeats]
 * (wrsvd: the whitened randomized SVD of A C, C the Cholesky factor of an SPD (N, N)).
 * Environment: GRID_BENCH_NB = block size, GRID_BENCH_P = grid rows (default N; the grid is
 * P x 1 and N / P groups run the same work at once, so P = 1 measures the machine's capacity).
 * Prints one line per measurement: "<what> <grid> best <seconds> s" (best of the repeats). */
#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/blacs.h"
#include "mpi/comm.h"
#include "mpi/pdla.h"
#include "src/linalg.h"
#include "src/methods/correction.h"
#include "src/rng.h"

static int rank_, size_;

static void die(const char *what)
{
    fprintf(stderr, "grid_bench: %s: %s\n", what, qr_errmsg());
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static void report(const char *what, const qr_grid *g, double best)
{
    if (rank_ == 0) {
        if (g) {
            printf("%s grid %dx%d best %.3f s\n", what, g->nprow, g->npcol, best);
        } else {
            printf("%s lapack best %.3f s\n", what, best);
        }
        fflush(stdout);
    }
}

/* A (m, n) seeded Gaussian on the group root only (others get NULL). */
static double *make_matrix(const qr_grid *g, int64_t m, int64_t n, uint64_t seed)
{
    qr_rng rng;
    double *A;
    if (g->group_rank != 0) {
        return NULL;
    }
    A = malloc((size_t)(m * n) * sizeof *A);
    if (!A) {
        die("out of memory");
    }
    qr_rng_seed(&rng, seed);
    for (int64_t i = 0; i < m * n; i++) {
        A[i] = qr_rng_normal(&rng);
    }
    return A;
}

/* On the group root: (B + Bᵀ) / 2 with |B| uniform, plus 2n I: symmetric and diagonally dominant
 * (SPD). */
static double *make_spd(const qr_grid *g, int64_t n)
{
    double *G = make_matrix(g, n, n, 3);
    if (G) {
        for (int64_t i = 0; i < n; i++) {
            for (int64_t j = 0; j < i; j++) {
                G[i * n + j] = G[j * n + i] = 0.5 * (fabs(G[i * n + j]) + fabs(G[j * n + i]));
            }
            G[i * n + i] = 2.0 * (double)n;
        }
    }
    return G;
}

/* The randomized SVD of A (m, n) seeded (qr_pdla_svd_truncated, and qr_svd_truncated on one
 * rank), or with whiten of A C, C the Cholesky factor of make_spd(n) (the scaled twins, the
 * serial one qr_scaled_svd's implicit path). */
static void bench_rsvd(const qr_grid *g, int64_t m, int64_t n, int64_t r, int reps, bool whiten)
{
    double *A = make_matrix(g, m, n, 1), *G = whiten ? make_spd(g, n) : NULL;
    double *U = malloc((size_t)(m * r) * sizeof *U), *S = malloc((size_t)r * sizeof *S);
    double *Vt = malloc((size_t)(r * n) * sizeof *Vt), best = 1e30, bestl = 1e30;
    qr_dmat *d = NULL, *C = NULL;
    qr_scaling sc = {n, NULL, G, 0.0, false};
    qr_svd_opts o;
    char what[96];
    qr_svd_opts_default(&o);
    o.mode = QR_SVD_RANDOMIZED;
    if (qr_dmat_create(g, m, n, &d) != QR_OK || qr_dmat_scatter(g, A, d) != QR_OK) {
        die("scatter");
    }
    if (whiten && (qr_dmat_create(g, n, n, &C) != QR_OK || qr_dmat_scatter(g, G, C) != QR_OK ||
                   qr_pdla_cholesky_damped(g, C, 0.0, NULL) != QR_OK ||
                   (size_ == 1 && qr_cholesky_damped(G, n, 0.0, NULL) != QR_OK))) {
        die("whitening factor");
    }
    for (int i = 0; i < reps; i++) {
        qr_rng rng;
        double t0;
        qr_rng_seed(&rng, 2);
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        if (qr_pdla_svd_truncated_scaled(g, d, C, r, &o, &rng, U, S, Vt) != QR_OK) {
            die("distributed randomized SVD");
        }
        best = fmin(best, MPI_Wtime() - t0);
        if (size_ == 1) {
            qr_rng_seed(&rng, 2);
            t0 = MPI_Wtime();
            if ((whiten ? qr_scaled_svd(A, m, n, &sc, r, &o, &rng, U, S, Vt)
                        : qr_svd_truncated(A, m, n, r, &o, &rng, U, S, Vt)) != QR_OK) {
                die("serial randomized SVD");
            }
            bestl = fmin(bestl, MPI_Wtime() - t0);
        }
    }
    snprintf(what, sizeof what, "%s %lldx%lld r=%lld", whiten ? "wrsvd" : "rsvd", (long long)m,
             (long long)n, (long long)r);
    report(what, g, best);
    if (size_ == 1) {
        report(what, NULL, bestl);
    }
    qr_dmat_free(&d);
    qr_dmat_free(&C);
    free(A), free(G), free(U), free(S), free(Vt);
}

static void bench_chol(const qr_grid *g, int64_t n, int reps)
{
    double *G = make_spd(g, n), best = 1e30, bestl = 1e30, damping = 0.0;
    qr_dmat *d = NULL;
    char what[64];
    if (qr_dmat_create(g, n, n, &d) != QR_OK) {
        die("create");
    }
    for (int i = 0; i < reps; i++) {
        double t0;
        if (qr_dmat_scatter(g, G, d) != QR_OK) {
            die("scatter");
        }
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        if (qr_pdla_cholesky_damped(g, d, 0.0, &damping) != QR_OK) {
            die("distributed Cholesky");
        }
        best = fmin(best, MPI_Wtime() - t0);
        if (size_ == 1) {
            double *C = malloc((size_t)(n * n) * sizeof *C);
            memcpy(C, G, (size_t)(n * n) * sizeof *C);
            t0 = MPI_Wtime();
            if (qr_cholesky_damped(C, n, 0.0, &damping) != QR_OK) {
                die("serial Cholesky");
            }
            bestl = fmin(bestl, MPI_Wtime() - t0);
            free(C);
        }
    }
    snprintf(what, sizeof what, "chol %lld", (long long)n);
    report(what, g, best);
    if (size_ == 1) {
        report(what, NULL, bestl);
    }
    qr_dmat_free(&d);
    free(G);
}

/* GPTQ's factor of an SPD (n, n) (qr_pdla_gptq_factor: damped Cholesky, inverse, Cholesky). */
static void bench_gptq(const qr_grid *g, int64_t n, int reps)
{
    double *G = make_spd(g, n), best = 1e30;
    qr_dmat *d = NULL;
    char what[64];
    if (qr_dmat_create(g, n, n, &d) != QR_OK) {
        die("create");
    }
    for (int i = 0; i < reps; i++) {
        double t0;
        if (qr_dmat_scatter(g, G, d) != QR_OK) {
            die("scatter");
        }
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        if (qr_pdla_gptq_factor(g, d, 0.01, NULL) != QR_OK) {
            die("distributed GPTQ factor");
        }
        best = fmin(best, MPI_Wtime() - t0);
    }
    snprintf(what, sizeof what, "gptq-factor %lld", (long long)n);
    report(what, g, best);
    qr_dmat_free(&d);
    free(G);
}

static void bench_pdgesvd(const qr_grid *g, int64_t m, int64_t n, int reps)
{
    int64_t k = m < n ? m : n;
    double *A = make_matrix(g, m, n, 4), best = 1e30, bestl = 1e30;
    double *S = malloc((size_t)k * sizeof *S);
    qr_dmat *d = NULL, *U = NULL, *Vt = NULL;
    char what[64];
    if (qr_dmat_create(g, m, n, &d) != QR_OK || qr_dmat_create(g, m, k, &U) != QR_OK ||
        qr_dmat_create(g, k, n, &Vt) != QR_OK || qr_dmat_scatter(g, A, d) != QR_OK) {
        die("scatter");
    }
    for (int i = 0; i < reps; i++) {
        double t0;
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        if (qr_pdla_svd(g, d, S, U, Vt) != QR_OK) {
            die("pdgesvd");
        }
        best = fmin(best, MPI_Wtime() - t0);
        if (size_ == 1) {
            double *Uf = malloc((size_t)(m * k) * sizeof *Uf);
            double *Vf = malloc((size_t)(k * n) * sizeof *Vf);
            t0 = MPI_Wtime();
            if (qr_svd(A, m, n, Uf, S, Vf) != QR_OK) {
                die("dgesdd");
            }
            bestl = fmin(bestl, MPI_Wtime() - t0);
            free(Uf);
            free(Vf);
        }
    }
    snprintf(what, sizeof what, "pdgesvd %lldx%lld", (long long)m, (long long)n);
    report(what, g, best);
    if (size_ == 1) {
        snprintf(what, sizeof what, "dgesdd %lldx%lld", (long long)m, (long long)n);
        report(what, NULL, bestl);
    }
    qr_dmat_free(&d);
    qr_dmat_free(&U);
    qr_dmat_free(&Vt);
    free(A);
    free(S);
}

/* A (m, n) := A L, L (n, n) lower triangular: the distributed product (qr_pdla_tri_right, SUMMA)
 * and, on one rank, the serial one (qr_tri_right, dtrmm) with their largest relative difference. */
static void bench_trmm(const qr_grid *g, int64_t m, int64_t n, int reps)
{
    double *A = make_matrix(g, m, n, 5), *L = make_matrix(g, n, n, 6), best = 1e30, bestl = 1e30;
    double *out = g->group_rank == 0 ? malloc((size_t)(m * n) * sizeof *out) : NULL;
    qr_dmat *d = NULL, *dl = NULL;
    char what[64];
    for (int64_t i = 0; L && i < n; i++) {
        for (int64_t j = i + 1; j < n; j++) {
            L[i * n + j] = 0.0;
        }
    }
    if (qr_dmat_create(g, m, n, &d) != QR_OK || qr_dmat_create(g, n, n, &dl) != QR_OK ||
        qr_dmat_scatter(g, L, dl) != QR_OK) {
        die("scatter");
    }
    for (int i = 0; i < reps; i++) {
        double t0;
        if (qr_dmat_scatter(g, A, d) != QR_OK) {
            die("scatter");
        }
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        if (qr_pdla_tri_right(g, d, dl, 0, 0) != QR_OK) {
            die("distributed triangular product");
        }
        best = fmin(best, MPI_Wtime() - t0);
        if (size_ == 1) {
            double *C = malloc((size_t)(m * n) * sizeof *C);
            memcpy(C, A, (size_t)(m * n) * sizeof *C);
            t0 = MPI_Wtime();
            if (qr_tri_right(C, m, n, L, false, false) != QR_OK) {
                die("serial triangular product");
            }
            bestl = fmin(bestl, MPI_Wtime() - t0);
            free(out);
            out = C;
        }
    }
    snprintf(what, sizeof what, "trmm %lldx%lld", (long long)m, (long long)n);
    report(what, g, best);
    if (size_ == 1) {
        double *D = malloc((size_t)(m * n) * sizeof *D), num = 0.0, den = 0.0;
        if (qr_dmat_gather(g, d, D) != QR_OK) {
            die("gather");
        }
        for (int64_t i = 0; i < m * n; i++) {
            num += (D[i] - out[i]) * (D[i] - out[i]);
            den += out[i] * out[i];
        }
        report(what, NULL, bestl);
        printf("%s relative difference (Frobenius) %.2e\n", what, sqrt(num / den));
        free(D);
    }
    qr_dmat_free(&d);
    qr_dmat_free(&dl);
    free(A);
    free(L);
    free(out);
}

int main(int argc, char **argv)
{
    qr_grid *g = NULL;
    const char *mode = argc > 1 ? argv[1] : "";
    MPI_Init(&argc, &argv);
    rank_ = qr_mpi_rank(MPI_COMM_WORLD);
    size_ = qr_mpi_size(MPI_COMM_WORLD);
    /* GRID_BENCH_NB sets the block size (default QR_GRID_DEFAULT_NB); GRID_BENCH_P the grid's
     * rows (default: all ranks in one P x 1 grid; 1 = independent 1x1 groups, a capacity check). */
    {
        const char *nb = getenv("GRID_BENCH_NB"), *p = getenv("GRID_BENCH_P");
        if (qr_grid_create(MPI_COMM_WORLD, p ? atoi(p) : size_, 1, nb ? atoi(nb) : 0, &g) !=
            QR_OK) {
            die("grid");
        }
    }
    if ((strcmp(mode, "rsvd") == 0 || strcmp(mode, "wrsvd") == 0) && argc >= 5) {
        bench_rsvd(g, atoll(argv[2]), atoll(argv[3]), atoll(argv[4]), argc > 5 ? atoi(argv[5]) : 3,
                   mode[0] == 'w');
    } else if (strcmp(mode, "chol") == 0 && argc >= 3) {
        bench_chol(g, atoll(argv[2]), argc > 3 ? atoi(argv[3]) : 3);
    } else if (strcmp(mode, "gptq") == 0 && argc >= 3) {
        bench_gptq(g, atoll(argv[2]), argc > 3 ? atoi(argv[3]) : 3);
    } else if (strcmp(mode, "trmm") == 0 && argc >= 4) {
        bench_trmm(g, atoll(argv[2]), atoll(argv[3]), argc > 4 ? atoi(argv[4]) : 3);
    } else if (strcmp(mode, "pdgesvd") == 0 && argc >= 4) {
        bench_pdgesvd(g, atoll(argv[2]), atoll(argv[3]), argc > 4 ? atoi(argv[4]) : 1);
    } else if (rank_ == 0) {
        fprintf(stderr, "usage: grid_bench rsvd M N R | wrsvd M N R | chol N | gptq N | trmm M N | "
                        "pdgesvd M N  "
                        "[repeats]\n");
    }
    qr_grid_free(&g);
    qr_blacs_shutdown();
    MPI_Finalize();
    return 0;
}

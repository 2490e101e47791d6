/* svd_bench.c: randomized vs exact truncated SVD (src/linalg.h) on a realistic error matrix, the
 * decomposition every low-rank method runs once per module. Built by the `bench` target only.
 *
 * The matrix A (m, n) (default 4096 x 11008, the shape of a 7B model's up/gate projection) is the
 * activation-scaled quantization error of a synthetic weight, as LQER/QERA decompose it:
 *   W = 0.02 * heavy-tailed noise + a rank-256 part with decaying strength (trained weights have
 *       a decaying spectrum),
 *   E = W - RTN_INT4(W, group 128, symmetric),
 *   A = E diag(s), s_j log-normal activation magnitudes (a few outlier channels dominate).
 * Its spectrum decays at the top and ends in a wide noise floor. For each rank r the bench times
 * the exact path (dgesdd, once: its cost does not depend on r) and the randomized path, and
 * reports the speed ratio and the error ratio ||A - A_r||_F (randomized) / (exact), all in one run.
 * Then, at r = 64, a small grid of oversampling p and power iterations q shows the trade-off.
 *
 * usage: svd_bench [m n [seed]]     (set OPENBLAS_NUM_THREADS to choose the BLAS threads) */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/linalg.h"
#include "src/quant.h"
#include "src/rng.h"

/* Randomized runs per setting; the best is reported (other builds share the cores). */
#define REPS 3

/* Wall-clock and process CPU seconds. On this shared 2-core machine other builds steal the core,
 * so single-thread ratios are reported in CPU time as well: they do not count time spent waiting.
 */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Randomized rank-r SVD with (p, q), best wall and CPU time of `reps` runs from the same seed. */
static int timed_randomized(const double *A, int64_t m, int64_t n, int64_t r, int p, int q,
                            int reps, double *wall, double *cpu, double *U, double *S, double *Vt)
{
    qr_svd_opts o;
    qr_svd_opts_default(&o);
    o.mode = QR_SVD_RANDOMIZED;
    o.oversample = p;
    o.power_iters = q;
    *wall = *cpu = INFINITY;
    for (int k = 0; k < reps; k++) {
        qr_rng rng;
        double w0 = now(), c0 = cpu_now(), w, c;
        qr_rng_seed(&rng, 7);
        if (qr_svd_truncated(A, m, n, r, &o, &rng, U, S, Vt) != QR_OK) {
            fprintf(stderr, "randomized SVD: %s\n", qr_errmsg());
            return 1;
        }
        w = now() - w0;
        c = cpu_now() - c0;
        *wall = w < *wall ? w : *wall;
        *cpu = c < *cpu ? c : *cpu;
    }
    return 0;
}

/* ||A - U diag(S) Vt||_F, with U (m, r), Vt (r, n); R (m, n) is scratch. */
static double residual(const double *A, int64_t m, int64_t n, const double *U, const double *S,
                       const double *Vt, int64_t r, double *R)
{
    double *US = malloc((size_t)(m * r) * sizeof *US);
    memcpy(R, A, (size_t)(m * n) * sizeof *R);
    for (int64_t i = 0; i < m; i++) {
        for (int64_t k = 0; k < r; k++) {
            US[i * r + k] = U[i * r + k] * S[k];
        }
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)r, -1.0, US, (int)r,
                Vt, (int)n, 1.0, R, (int)n);
    free(US);
    return qr_frobenius(R, m, n);
}

/* Optimal rank-r error (Eckart-Young) from the full spectrum S (k). */
static double exact_error(const double *S, int64_t k, int64_t r)
{
    double e = 0.0;
    for (int64_t i = r; i < k; i++) {
        e += S[i] * S[i];
    }
    return sqrt(e);
}

static int build_matrix(int64_t m, int64_t n, uint64_t seed, double *A)
{
    const int64_t k = 256;
    qr_rng rng;
    qr_wquant_opts o;
    qr_qweight q;
    double *P = malloc((size_t)(m * k) * sizeof *P), *Q = malloc((size_t)(k * n) * sizeof *Q);
    double *D = malloc((size_t)(m * n) * sizeof *D);
    qr_rng_seed(&rng, seed);
    for (int64_t i = 0; i < m * n; i++) {
        double z = qr_rng_normal(&rng), u = qr_rng_uniform(&rng) + 0.05;
        A[i] = 0.02 * z / sqrt(u);
    }
    for (int64_t i = 0; i < m * k; i++) {
        P[i] = qr_rng_normal(&rng);
    }
    for (int64_t c = 0; c < k; c++) {
        double strength = 0.5 * exp(-(double)c / 24.0) / sqrt((double)(m + n));
        for (int64_t j = 0; j < n; j++) {
            Q[c * n + j] = strength * qr_rng_normal(&rng);
        }
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0, P, (int)k,
                Q, (int)n, 1.0, A, (int)n);
    qr_wquant_opts_default(&o);
    if (qr_quantize_rtn(A, m, n, &o, NULL, &q) != QR_OK) {
        fprintf(stderr, "RTN: %s\n", qr_errmsg());
        return 1;
    }
    qr_qweight_dequantize_f64(&q, D);
    qr_qweight_free(&q);
    for (int64_t j = 0; j < n; j++) {
        Q[j] = exp(0.8 * qr_rng_normal(&rng)); /* reuse Q's first row as s (n) */
    }
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            A[i * n + j] = (A[i * n + j] - D[i * n + j]) * Q[j];
        }
    }
    free(P);
    free(Q);
    free(D);
    return 0;
}

int main(int argc, char **argv)
{
    int64_t m = argc > 2 ? atoll(argv[1]) : 4096, n = argc > 2 ? atoll(argv[2]) : 11008;
    uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
    static const int64_t ranks[] = {32, 64, 128};
    const int64_t rmax = 128, k = m < n ? m : n;
    const char *threads = getenv("OPENBLAS_NUM_THREADS");
    double *A = malloc((size_t)(m * n) * sizeof *A), *R = malloc((size_t)(m * n) * sizeof *R);
    double *Uf = malloc((size_t)(m * k) * sizeof *Uf); /* (m, k) */
    double *Vf = malloc((size_t)(k * n) * sizeof *Vf); /* (k, n) */
    double *U = malloc((size_t)(m * rmax) * sizeof *U), *S = malloc((size_t)rmax * sizeof *S);
    double *Vt = malloc((size_t)(rmax * n) * sizeof *Vt);
    double *Sfull = malloc((size_t)k * sizeof *Sfull);
    double w0, c0, w_exact, c_exact, norm;
    qr_svd_opts o;
    if (!A || !R || !Uf || !Vf || !U || !S || !Vt || !Sfull || m < 8 * rmax || n < 8 * rmax) {
        fprintf(stderr, "svd_bench: out of memory or matrix smaller than %lld x %lld\n",
                (long long)(8 * rmax), (long long)(8 * rmax));
        return 1;
    }
    if (build_matrix(m, n, seed, A)) {
        return 1;
    }
    norm = qr_frobenius(A, m, n);
    printf("svd_bench: A %lld x %lld (quantization error of a heavy-tailed weight, "
           "activation-scaled), seed %llu, OPENBLAS_NUM_THREADS=%s\n",
           (long long)m, (long long)n, (unsigned long long)seed, threads ? threads : "(unset)");

    /* Exact: one thin dgesdd, which is all qr_svd_truncated(EXACT) runs before keeping the first
     * r triplets; its cost does not depend on r, and its spectrum gives the optimal errors. */
    w0 = now();
    c0 = cpu_now();
    if (qr_svd(A, m, n, Uf, Sfull, Vf) != QR_OK) {
        fprintf(stderr, "exact SVD: %s\n", qr_errmsg());
        return 1;
    }
    w_exact = now() - w0;
    c_exact = cpu_now() - c0;
    qr_svd_opts_default(&o);
    printf("spectrum: s1 %.4g, s32 %.4g, s64 %.4g, s128 %.4g, s%lld %.4g; ||A||_F %.4g\n", Sfull[0],
           Sfull[31], Sfull[63], Sfull[127], (long long)k, Sfull[k - 1], norm);
    printf("exact (dgesdd): wall %.2f s, CPU %.2f s\n", w_exact, c_exact);
    printf("\nrandomized with the defaults p = %d, q = %d (best of %d runs)\n\n", o.oversample,
           o.power_iters, REPS);
    printf("| r | exact wall / CPU (s) | randomized wall / CPU (s) | speed ratio wall / CPU | "
           "error exact | error randomized | error ratio |\n|---|---|---|---|---|---|---|\n");
    for (size_t ri = 0; ri < sizeof ranks / sizeof ranks[0]; ri++) {
        int64_t r = ranks[ri];
        double w, c, e_rand, e_exact = exact_error(Sfull, k, r), e_exact_direct;
        /* The exact factors truncated to r: their residual must equal the Eckart-Young error. */
        {
            double *Ur = malloc((size_t)(m * r) * sizeof *Ur);
            for (int64_t i = 0; i < m; i++) {
                memcpy(Ur + i * r, Uf + i * k, (size_t)r * sizeof *Ur);
            }
            e_exact_direct = residual(A, m, n, Ur, Sfull, Vf, r, R);
            free(Ur);
        }
        if (fabs(e_exact_direct - e_exact) > 1e-8 * norm) {
            fprintf(stderr, "warning: exact truncated residual %.10g != Eckart-Young %.10g\n",
                    e_exact_direct, e_exact);
        }
        if (timed_randomized(A, m, n, r, o.oversample, o.power_iters, REPS, &w, &c, U, S, Vt)) {
            return 1;
        }
        e_rand = residual(A, m, n, U, S, Vt, r, R);
        printf("| %lld | %.1f / %.1f | %.2f / %.2f | %.1fx / %.1fx | %.6g | %.6g | %.5f |\n",
               (long long)r, w_exact, c_exact, w, c, w_exact / w, c_exact / c, e_exact, e_rand,
               e_rand / e_exact);
        fflush(stdout);
    }

    /* Oversampling / power iterations at r = 64. */
    {
        static const int grid[][2] = {{10, 0}, {10, 1}, {10, 2}, {20, 2}, {40, 2},
                                      {10, 3}, {20, 3}, {40, 3}, {10, 4}, {20, 4}};
        const int64_t r = 64;
        double e_exact = exact_error(Sfull, k, r);
        printf("\nr = 64: oversampling p and power iterations q (best of %d runs)\n\n| p | q | "
               "wall / CPU (s) | speed ratio wall / CPU | error ratio |\n|---|---|---|---|---|\n",
               REPS);
        for (size_t g = 0; g < sizeof grid / sizeof grid[0]; g++) {
            double w, c, e;
            if (timed_randomized(A, m, n, r, grid[g][0], grid[g][1], REPS, &w, &c, U, S, Vt)) {
                return 1;
            }
            e = residual(A, m, n, U, S, Vt, r, R);
            printf("| %d | %d | %.2f / %.2f | %.1fx / %.1fx | %.5f |\n", grid[g][0], grid[g][1], w,
                   c, w_exact / w, c_exact / c, e / e_exact);
            fflush(stdout);
        }
    }
    free(A);
    free(R);
    free(Uf);
    free(Vf);
    free(U);
    free(S);
    free(Vt);
    free(Sfull);
    return 0;
}

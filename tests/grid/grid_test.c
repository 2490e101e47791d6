/* grid_test.c: the BLACS grids and the distributed linear algebra (mpi/blacs.h, mpi/pdla.h) against
 * their serial LAPACK twins (src/linalg.h, src/stats.h), on seeded matrices whose sizes are not
 * multiples of the block size, for every grid shape whose size divides the job size (1x1, 2x1,
 * 1x2, 3x1, 1x3, 2x2, 4x1, 1x4), with several groups at once where the job is larger than the grid.
 *
 * usage: mpiexec -n N test_grid_<case>  scatter | cholesky | rsvd | pdgesvd | gram
 * Every rank checks what it holds; the failure count is summed over the job so every rank exits
 * with the same code. */
#include <cblas.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/blacs.h"
#include "mpi/comm.h"
#include "mpi/pdla.h"
#include "src/alloc.h"
#include "src/linalg.h"
#include "src/rng.h"
#include "src/stats.h"
#include "tests/test_util.h"

/* Distributed vs serial results of the same algorithm: both are backward stable and the inputs are
 * well conditioned, so they agree to a few hundred ulps; 1e-12 is the bar. */
#define TOL_REL 1e-12
/* Small block so that even 97-wide matrices spread over several process rows and columns. */
#define TEST_NB 16

/* Sizes that are not multiples of the block (the examples) and degenerate ones. */
static const int64_t SIZES[][2] = {{173, 97}, {97, 173}, {300, 257}, {1, 1}, {5, 40}};
#define N_SIZES (sizeof SIZES / sizeof SIZES[0])

static int world_rank;

/* Each group of a job with several groups works on its own matrices, so a message crossing groups
 * could not go unnoticed. */
#define GROUP_SEED(g) (1000u * (unsigned)(g)->group)

static void fill_normal(double *a, size_t n, uint64_t seed)
{
    qr_rng rng;
    qr_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        a[i] = qr_rng_normal(&rng);
    }
}

/* A (m, n) = G1 (m, k) diag(0.85^i) G2 (k, n): a seeded matrix with a decaying spectrum, so the
 * truncations below have clear gaps. */
static void make_decaying(double *A, int64_t m, int64_t n, uint64_t seed)
{
    int64_t k = m < n ? m : n;
    double *g1 = malloc((size_t)(m * k) * sizeof *g1), *g2 = malloc((size_t)(k * n) * sizeof *g2);
    fill_normal(g1, (size_t)(m * k), seed);
    fill_normal(g2, (size_t)(k * n), seed + 1);
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < k; j++) {
            g1[i * k + j] *= pow(0.85, (double)j);
        }
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0, g1, (int)k,
                g2, (int)n, 0.0, A, (int)n);
    free(g1);
    free(g2);
}

static double rel_diff(const double *a, const double *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* P (m, n) = U (m, r) diag(S) Vt (r, n). */
static void reconstruct(const double *U, const double *S, const double *Vt, int64_t m, int64_t n,
                        int64_t r, double *P)
{
    double *us = malloc((size_t)(m * r + 1) * sizeof *us);
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < r; j++) {
            us[i * r + j] = U[i * r + j] * S[j];
        }
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)r, 1.0, us, (int)r,
                Vt, (int)n, 0.0, P, (int)n);
    free(us);
}

/* ---- cases: each runs on one grid ---------------------------------------------------------------
 */

static void case_scatter(const qr_grid *g)
{
    for (size_t s = 0; s < N_SIZES; s++) {
        int64_t m = SIZES[s][0], n = SIZES[s][1];
        double *A = malloc((size_t)(m * n) * sizeof *A), *B = calloc((size_t)(m * n), sizeof *B);
        qr_dmat *d = NULL;
        fill_normal(A, (size_t)(m * n), 100 + s + GROUP_SEED(g));
        QR_EXPECT(qr_dmat_create(g, m, n, &d) == QR_OK, "create %lldx%lld: %s", (long long)m,
                  (long long)n, qr_errmsg());
        QR_EXPECT(qr_dmat_scatter(g, A, d) == QR_OK, "scatter: %s", qr_errmsg());
        /* Every local element must be the global element its indices name. */
        for (int lj = 0; lj < d->nloc; lj++) {
            for (int li = 0; li < d->mloc; li++) {
                int64_t gi = qr_dmat_global_row(g, li), gj = qr_dmat_global_col(g, lj);
                double v = d->data[(size_t)lj * (size_t)d->desc[QR_DESC_LLD] + (size_t)li];
                if (v != A[gi * n + gj]) {
                    QR_EXPECT(0,
                              "%lldx%lld grid %dx%d: local (%d, %d) = global (%lld, %lld) holds "
                              "%g, expected %g",
                              (long long)m, (long long)n, g->nprow, g->npcol, li, lj, (long long)gi,
                              (long long)gj, v, A[gi * n + gj]);
                    lj = d->nloc;
                    break;
                }
            }
        }
        QR_EXPECT(qr_dmat_allgather(g, d, B) == QR_OK, "allgather: %s", qr_errmsg());
        QR_EXPECT(memcmp(A, B, (size_t)(m * n) * sizeof *A) == 0,
                  "%lldx%lld grid %dx%d: scatter then gather does not give the matrix back",
                  (long long)m, (long long)n, g->nprow, g->npcol);
        qr_dmat_free(&d);
        free(A);
        free(B);
    }
}

/* G (n, n) = XᵀX / rows + shift I with X (2n, n) Gaussian. */
static void make_gram(double *G, int64_t n, double shift, uint64_t seed)
{
    int64_t rows = 2 * n;
    double *X = malloc((size_t)(rows * n) * sizeof *X);
    fill_normal(X, (size_t)(rows * n), seed);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)n, (int)rows,
                1.0 / (double)rows, X, (int)n, X, (int)n, 0.0, G, (int)n);
    for (int64_t i = 0; i < n; i++) {
        G[i * n + i] += shift;
    }
    free(X);
}

/* A op(L)^(-1) distributed vs serial for the four (transpose, inverse) cases; L (n, n) serial
 * and Ld distributed hold the same factor. */
static void tri_compare(const qr_grid *g, const qr_dmat *Ld, const double *L, int64_t n)
{
    const int64_t m = 61;
    double *A = malloc((size_t)(m * n) * sizeof *A), *As = malloc((size_t)(m * n) * sizeof *As);
    double *Ad = malloc((size_t)(m * n) * sizeof *Ad);
    qr_dmat *d = NULL;
    fill_normal(A, (size_t)(m * n), 600 + (uint64_t)n);
    QR_EXPECT(qr_dmat_create(g, m, n, &d) == QR_OK, "create: %s", qr_errmsg());
    for (int c = 0; c < 4 && d; c++) {
        int transpose = c & 1, inverse = c >> 1;
        double e;
        memcpy(As, A, (size_t)(m * n) * sizeof *A);
        QR_EXPECT(qr_tri_right(As, m, n, L, transpose, inverse) == QR_OK, "%s", qr_errmsg());
        QR_EXPECT(qr_dmat_scatter(g, A, d) == QR_OK, "scatter: %s", qr_errmsg());
        QR_EXPECT(qr_pdla_tri_right(g, d, Ld, transpose, inverse) == QR_OK, "%s", qr_errmsg());
        QR_EXPECT(qr_dmat_allgather(g, d, Ad) == QR_OK, "gather: %s", qr_errmsg());
        e = rel_diff(Ad, As, (size_t)(m * n));
        QR_EXPECT(e <= TOL_REL,
                  "A op(L)%s%s n=%lld grid %dx%d differs from the serial one by "
                  "%.3g (tolerance %g)",
                  transpose ? "T" : "", inverse ? "^-1" : "", (long long)n, g->nprow, g->npcol, e,
                  TOL_REL);
    }
    /* the thin solve: R (k, n) L^-1 with R whole on every rank, against dtrsm */
    for (int64_t k = 1; k <= 9 && d; k += 8) {
        memcpy(As, A, (size_t)(k * n) * sizeof *A);
        memcpy(Ad, A, (size_t)(k * n) * sizeof *A);
        QR_EXPECT(qr_tri_right(As, k, n, L, 0, 1) == QR_OK, "%s", qr_errmsg());
        QR_EXPECT(qr_pdla_thin_solve_right(g, Ld, Ad, k) == QR_OK, "%s", qr_errmsg());
        QR_EXPECT(rel_diff(Ad, As, (size_t)(k * n)) <= TOL_REL,
                  "R L^-1 (thin, k=%lld) n=%lld grid %dx%d differs from the serial one by %.3g "
                  "(tolerance %g)",
                  (long long)k, (long long)n, g->nprow, g->npcol, rel_diff(Ad, As, (size_t)(k * n)),
                  TOL_REL);
    }
    qr_dmat_free(&d);
    free(A), free(As), free(Ad);
}

/* Run serial and distributed damped Cholesky on G; compare factor (when compare_factor), damping,
 * residual, and status. */
static void cholesky_compare(const qr_grid *g, const double *G, int64_t n, const char *what,
                             int compare_factor, int expect_damped)
{
    double *Ls = malloc((size_t)(n * n) * sizeof *Ls), *Ld = malloc((size_t)(n * n) * sizeof *Ld);
    double ds = -1.0, dd = -2.0;
    qr_dmat *d = NULL;
    qr_status ss, sd;
    memcpy(Ls, G, (size_t)(n * n) * sizeof *Ls);
    ss = qr_cholesky_damped(Ls, n, 0.0, &ds);
    QR_EXPECT(qr_dmat_create(g, n, n, &d) == QR_OK, "create: %s", qr_errmsg());
    QR_EXPECT(qr_dmat_scatter(g, G, d) == QR_OK, "scatter: %s", qr_errmsg());
    sd = qr_pdla_cholesky_damped(g, d, 0.0, &dd);
    QR_EXPECT(sd == ss, "%s n=%lld grid %dx%d: status %s, serial %s (%s)", what, (long long)n,
              g->nprow, g->npcol, qr_status_name(sd), qr_status_name(ss), qr_errmsg());
    QR_EXPECT(qr_dmat_allgather(g, d, Ld) == QR_OK, "gather: %s", qr_errmsg());
    if (ss == QR_OK && sd == QR_OK) {
        double *R = malloc((size_t)(n * n) * sizeof *R), resid;
        QR_EXPECT(dd == ds, "%s n=%lld grid %dx%d: damping %.17g, serial %.17g", what, (long long)n,
                  g->nprow, g->npcol, dd, ds);
        QR_EXPECT((dd > 0.0) == (expect_damped != 0), "%s n=%lld: damping %g (expected %s)", what,
                  (long long)n, dd, expect_damped ? "> 0" : "none");
        if (compare_factor) {
            double e = rel_diff(Ld, Ls, (size_t)(n * n));
            QR_EXPECT(e <= TOL_REL,
                      "%s n=%lld grid %dx%d: factor differs from dpotrf by %.3g "
                      "(tolerance %g)",
                      what, (long long)n, g->nprow, g->npcol, e, TOL_REL);
            tri_compare(g, d, Ls, n);
        }
        /* L Lᵀ == G + damping I, and L is lower triangular. */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)n, 1.0, Ld,
                    (int)n, Ld, (int)n, 0.0, R, (int)n);
        for (int64_t i = 0; i < n; i++) {
            R[i * n + i] -= dd;
            for (int64_t j = i + 1; j < n; j++) {
                QR_EXPECT(Ld[i * n + j] == 0.0, "%s: upper entry (%lld, %lld) not zeroed", what,
                          (long long)i, (long long)j);
            }
        }
        resid = rel_diff(R, G, (size_t)(n * n));
        QR_EXPECT(resid <= TOL_REL,
                  "%s n=%lld grid %dx%d: |L Lt - (G + dI)| / |G| = %.3g "
                  "(tolerance %g)",
                  what, (long long)n, g->nprow, g->npcol, resid, TOL_REL);
        free(R);
    } else if (sd != QR_OK) {
        QR_EXPECT(memcmp(Ld, G, (size_t)(n * n) * sizeof *G) == 0,
                  "%s: a failed factorization must leave the input in place", what);
    }
    qr_dmat_free(&d);
    free(Ls);
    free(Ld);
}

static void case_cholesky(const qr_grid *g)
{
    static const int64_t ns[] = {173, 300, 257, 1};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        int64_t n = ns[t];
        double *G = malloc((size_t)(n * n) * sizeof *G), *E = malloc((size_t)(n * n) * sizeof *E);
        double *w = malloc((size_t)n * sizeof *w), mean = 0.0, shift;
        make_gram(G, n, 0.1, 200 + t + GROUP_SEED(g));
        cholesky_compare(g, G, n, "well-conditioned", 1, 0);
        /* Indefinite: shift so the smallest eigenvalue is -3e-5 x mean(diag): the tries with
         * damping 1e-8 .. 1e-5 fail and 1e-4 succeeds, on both sides. */
        if (n > 1) {
            memcpy(E, G, (size_t)(n * n) * sizeof *E);
            QR_EXPECT(qr_eigh(E, n, w) == QR_OK, "eigh: %s", qr_errmsg());
            for (int64_t i = 0; i < n; i++) {
                mean += G[i * n + i] / (double)n;
            }
            shift = (w[0] + 3e-5 * mean) / (1.0 + 3e-5);
            for (int64_t i = 0; i < n; i++) {
                G[i * n + i] -= shift;
            }
            cholesky_compare(g, G, n, "indefinite (damped)", 0, 1);
            /* Beyond repair: an off-diagonal entry 1e9 times the diagonal. */
            G[1 * n + 0] = G[0 * n + 1] = 1e9 * G[0];
            cholesky_compare(g, G, n, "beyond repair", 0, 1);
        }
        free(G);
        free(E);
        free(w);
    }
}

static void rsvd_whitened_compare(const qr_grid *g, int64_t m, int64_t n, int64_t r, uint64_t seed);

static void case_rsvd(const qr_grid *g)
{
    static const int64_t rs[] = {8, 4, 16, 1, 3};
    for (size_t s = 0; s < N_SIZES; s++) {
        int64_t m = SIZES[s][0], n = SIZES[s][1], k = m < n ? m : n, r = rs[s] < k ? rs[s] : k;
        for (int mode = QR_SVD_EXACT; mode <= QR_SVD_RANDOMIZED; mode++) {
            double *A = malloc((size_t)(m * n) * sizeof *A);
            double *Us = malloc((size_t)(m * r) * sizeof *Us),
                   *Ud = malloc((size_t)(m * r) * sizeof *Ud);
            double *Vs = malloc((size_t)(r * n) * sizeof *Vs),
                   *Vd = malloc((size_t)(r * n) * sizeof *Vd);
            double *Ss = malloc((size_t)r * sizeof *Ss), *Sd = malloc((size_t)r * sizeof *Sd);
            double *Ps = malloc((size_t)(m * n) * sizeof *Ps),
                   *Pd = malloc((size_t)(m * n) * sizeof *Pd);
            qr_svd_opts o;
            qr_rng rs_, rd_;
            qr_dmat *d = NULL;
            qr_svd_opts_default(&o);
            o.mode = (qr_svd_mode)mode;
            make_decaying(A, m, n, 300 + s + GROUP_SEED(g));
            qr_rng_for_name(&rs_, "model.layers.0.mlp.down_proj", 7);
            rd_ = rs_;
            QR_EXPECT(qr_svd_truncated(A, m, n, r, &o, &rs_, Us, Ss, Vs) == QR_OK, "serial: %s",
                      qr_errmsg());
            QR_EXPECT(qr_dmat_create(g, m, n, &d) == QR_OK, "create: %s", qr_errmsg());
            QR_EXPECT(qr_dmat_scatter(g, A, d) == QR_OK, "scatter: %s", qr_errmsg());
            QR_EXPECT(qr_pdla_svd_truncated(g, d, r, &o, &rd_, Ud, Sd, Vd) == QR_OK,
                      "distributed: %s", qr_errmsg());
            reconstruct(Us, Ss, Vs, m, n, r, Ps);
            reconstruct(Ud, Sd, Vd, m, n, r, Pd);
            {
                double eS = rel_diff(Sd, Ss, (size_t)r), eP = rel_diff(Pd, Ps, (size_t)(m * n));
                const char *name = mode == QR_SVD_EXACT ? "exact" : "randomized";
                QR_EXPECT(eS <= TOL_REL,
                          "%s %lldx%lld r=%lld grid %dx%d: singular values differ "
                          "by %.3g (tolerance %g)",
                          name, (long long)m, (long long)n, (long long)r, g->nprow, g->npcol, eS,
                          TOL_REL);
                QR_EXPECT(eP <= TOL_REL,
                          "%s %lldx%lld r=%lld grid %dx%d: rank-r product differs "
                          "by %.3g (tolerance %g)",
                          name, (long long)m, (long long)n, (long long)r, g->nprow, g->npcol, eP,
                          TOL_REL);
            }
            /* Both drew the same number of normals from the same stream. */
            QR_EXPECT(qr_rng_u64(&rs_) == qr_rng_u64(&rd_),
                      "the random stream advanced differently (serial vs distributed)");
            qr_dmat_free(&d);
            free(A), free(Us), free(Ud), free(Vs), free(Vd), free(Ss), free(Sd), free(Ps), free(Pd);
        }
        rsvd_whitened_compare(g, m, n, r, 700 + s + GROUP_SEED(g));
    }
    /* fewer rows than one block: the ranks of the other process rows hold none */
    rsvd_whitened_compare(g, TEST_NB / 2, 3 * TEST_NB + 5, 4, 800 + GROUP_SEED(g));
}

/* The whitened randomized SVD: the distributed one multiplies E and the factor C (from the
 * distributed damped Cholesky) without forming E C; the serial one runs on E C formed whole. */
static void rsvd_whitened_compare(const qr_grid *g, int64_t m, int64_t n, int64_t r, uint64_t seed)
{
    double *E = malloc((size_t)(m * n) * sizeof *E), *G = malloc((size_t)(n * n) * sizeof *G);
    double *U = malloc((size_t)(m * r) * 2 * sizeof *U), *S = malloc((size_t)r * 2 * sizeof *S);
    double *Vt = malloc((size_t)(r * n) * 2 * sizeof *Vt),
           *P = malloc((size_t)(m * n) * 2 * sizeof *P);
    double damping = 0.0;
    qr_svd_opts o;
    qr_rng rs, rd;
    qr_dmat *Ed = NULL, *Cd = NULL;
    qr_svd_opts_default(&o);
    o.mode = QR_SVD_RANDOMIZED;
    make_decaying(E, m, n, seed);
    make_gram(G, n, 0.1, seed + 1);
    QR_EXPECT(qr_dmat_create(g, m, n, &Ed) == QR_OK && qr_dmat_create(g, n, n, &Cd) == QR_OK,
              "create: %s", qr_errmsg());
    QR_EXPECT(qr_dmat_scatter(g, E, Ed) == QR_OK && qr_dmat_scatter(g, G, Cd) == QR_OK,
              "scatter: %s", qr_errmsg());
    QR_EXPECT(qr_pdla_cholesky_damped(g, Cd, 0.0, &damping) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(qr_dmat_allgather(g, Cd, G) == QR_OK, "gather: %s", qr_errmsg());
    qr_rng_for_name(&rs, "model.layers.0.self_attn.o_proj", 5);
    rd = rs;
    QR_EXPECT(qr_pdla_svd_truncated_scaled(g, Ed, Cd, r, &o, &rd, U + m * r, S + r, Vt + r * n) ==
                  QR_OK,
              "distributed: %s", qr_errmsg());
    QR_EXPECT(qr_tri_right(E, m, n, G, false, false) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(qr_svd_truncated(E, m, n, r, &o, &rs, U, S, Vt) == QR_OK, "serial: %s", qr_errmsg());
    reconstruct(U, S, Vt, m, n, r, P);
    reconstruct(U + m * r, S + r, Vt + r * n, m, n, r, P + m * n);
    {
        double eS = rel_diff(S + r, S, (size_t)r), eP = rel_diff(P + m * n, P, (size_t)(m * n));
        QR_EXPECT(eS <= TOL_REL && eP <= TOL_REL,
                  "whitened randomized %lldx%lld r=%lld grid %dx%d: singular values differ by "
                  "%.3g, rank-r product by %.3g (tolerance %g)",
                  (long long)m, (long long)n, (long long)r, g->nprow, g->npcol, eS, eP, TOL_REL);
    }
    QR_EXPECT(qr_rng_u64(&rs) == qr_rng_u64(&rd),
              "whitened: the random stream advanced differently (serial vs distributed)");
    qr_dmat_free(&Ed);
    qr_dmat_free(&Cd);
    free(E), free(G), free(U), free(S), free(Vt), free(P);
}

static void case_pdgesvd(const qr_grid *g)
{
    for (size_t s = 0; s < N_SIZES; s++) {
        int64_t m = SIZES[s][0], n = SIZES[s][1], k = m < n ? m : n;
        double *A = malloc((size_t)(m * n) * sizeof *A), *P = malloc((size_t)(m * n) * sizeof *P);
        double *U = malloc((size_t)(m * k) * sizeof *U), *Vt = malloc((size_t)(k * n) * sizeof *Vt);
        double *Sd = malloc((size_t)k * sizeof *Sd), *Ss = malloc((size_t)k * sizeof *Ss);
        qr_dmat *d = NULL, *Ud = NULL, *Vd = NULL;
        fill_normal(A, (size_t)(m * n), 400 + s + GROUP_SEED(g));
        QR_EXPECT(qr_svd(A, m, n, U, Ss, Vt) == QR_OK, "dgesdd: %s", qr_errmsg());
        QR_EXPECT(qr_dmat_create(g, m, n, &d) == QR_OK && qr_dmat_create(g, m, k, &Ud) == QR_OK &&
                      qr_dmat_create(g, k, n, &Vd) == QR_OK,
                  "create: %s", qr_errmsg());
        QR_EXPECT(qr_dmat_scatter(g, A, d) == QR_OK, "scatter: %s", qr_errmsg());
        QR_EXPECT(qr_pdla_svd(g, d, Sd, Ud, Vd) == QR_OK, "pdgesvd: %s", qr_errmsg());
        QR_EXPECT(qr_dmat_allgather(g, Ud, U) == QR_OK && qr_dmat_allgather(g, Vd, Vt) == QR_OK,
                  "gather: %s", qr_errmsg());
        reconstruct(U, Sd, Vt, m, n, k, P);
        {
            double eS = rel_diff(Sd, Ss, (size_t)k), eA = rel_diff(P, A, (size_t)(m * n));
            QR_EXPECT(eS <= TOL_REL,
                      "%lldx%lld grid %dx%d: PDGESVD singular values differ from "
                      "dgesdd by %.3g (tolerance %g)",
                      (long long)m, (long long)n, g->nprow, g->npcol, eS, TOL_REL);
            QR_EXPECT(eA <= TOL_REL,
                      "%lldx%lld grid %dx%d: |A - U S Vt| / |A| = %.3g "
                      "(tolerance %g)",
                      (long long)m, (long long)n, g->nprow, g->npcol, eA, TOL_REL);
        }
        /* Singular values only: the same values without factors. */
        QR_EXPECT(qr_pdla_svd(g, d, Ss, NULL, NULL) == QR_OK, "pdgesvd (values): %s", qr_errmsg());
        QR_EXPECT(rel_diff(Ss, Sd, (size_t)k) <= TOL_REL, "values-only PDGESVD differs");
        qr_dmat_free(&d);
        qr_dmat_free(&Ud);
        qr_dmat_free(&Vd);
        free(A), free(P), free(U), free(Vt), free(Sd), free(Ss);
    }
}

/* Gram and statistics reductions over the whole job (the world communicator), compared with one
 * serial accumulation and with themselves on repeated runs (bit for bit). Runs once, not per grid.
 */
static void case_gram(void)
{
    const int64_t rows = 1001, d = 97;
    int size = qr_mpi_size(MPI_COMM_WORLD);
    int64_t lo = rows * world_rank / size, hi = rows * (world_rank + 1) / size;
    float *X = malloc((size_t)(rows * d) * sizeof *X);
    double *ref = calloc((size_t)(d * d), sizeof *ref),
           *dx = malloc((size_t)(rows * d) * sizeof *dx);
    double *G1 = malloc((size_t)(d * d) * sizeof *G1), *G2 = malloc((size_t)(d * d) * sizeof *G2);
    qr_stats *sref = NULL, *s1 = NULL, *s2 = NULL;
    qr_rng rng;
    qr_rng_seed(&rng, 500);
    for (int64_t i = 0; i < rows * d; i++) {
        X[i] = (float)(qr_rng_normal(&rng) * (1.0 + (double)(i % d) / 10.0));
        dx[i] = (double)X[i];
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d, (int)d, (int)rows, 1.0, dx, (int)d,
                dx, (int)d, 0.0, ref, (int)d);
    for (int all = 0; all <= 1; all++) {
        QR_EXPECT(qr_pdla_gram_reduce(MPI_COMM_WORLD, X + lo * d, hi - lo, d, all, G1) == QR_OK,
                  "gram: %s", qr_errmsg());
        QR_EXPECT(qr_pdla_gram_reduce(MPI_COMM_WORLD, X + lo * d, hi - lo, d, all, G2) == QR_OK,
                  "gram: %s", qr_errmsg());
        if (world_rank == 0 || all) {
            double e = rel_diff(G1, ref, (size_t)(d * d));
            QR_EXPECT(e <= TOL_REL,
                      "Gram over %d ranks differs from the serial XtX by %.3g "
                      "(tolerance %g)",
                      size, e, TOL_REL);
            QR_EXPECT(memcmp(G1, G2, (size_t)(d * d) * sizeof *G1) == 0,
                      "Gram reduction is not bit-identical across repeated runs");
        }
    }
    /* Statistics: each rank adds its rows in two batches; serial adds the same batches in order. */
    if (qr_stats_create(d, &sref) != QR_OK || qr_stats_create(d, &s1) != QR_OK ||
        qr_stats_create(d, &s2) != QR_OK) {
        QR_EXPECT(0, "stats create: %s", qr_errmsg());
        goto done;
    }
    for (int r = 0; r < size; r++) {
        int64_t a = rows * r / size, b = rows * (r + 1) / size, mid = (a + b) / 2;
        qr_stats_add(sref, X + a * d, mid - a);
        qr_stats_add(sref, X + mid * d, b - mid);
        if (r == world_rank) {
            qr_stats_add(s1, X + a * d, mid - a);
            qr_stats_add(s1, X + mid * d, b - mid);
            qr_stats_add(s2, X + a * d, mid - a);
            qr_stats_add(s2, X + mid * d, b - mid);
        }
    }
    QR_EXPECT(qr_pdla_stats_reduce(MPI_COMM_WORLD, s1) == QR_OK, "stats: %s", qr_errmsg());
    QR_EXPECT(qr_pdla_stats_reduce(MPI_COMM_WORLD, s2) == QR_OK, "stats: %s", qr_errmsg());
    if (world_rank == 0) {
        QR_EXPECT(s1->count == rows && s1->n_batches == sref->n_batches,
                  "merged count %lld / batches %lld, expected %lld / %lld", (long long)s1->count,
                  (long long)s1->n_batches, (long long)rows, (long long)sref->n_batches);
        QR_EXPECT(rel_diff(s1->G, sref->G, (size_t)(d * d)) <= TOL_REL,
                  "merged Gram differs from the serial one by %.3g",
                  rel_diff(s1->G, sref->G, (size_t)(d * d)));
        QR_EXPECT(memcmp(s1->max_abs, sref->max_abs, (size_t)d * sizeof(double)) == 0 &&
                      memcmp(s1->batch_mean_abs_max, sref->batch_mean_abs_max,
                             (size_t)d * sizeof(double)) == 0,
                  "merged maxima differ from the serial ones");
        QR_EXPECT(rel_diff(s1->sum_abs, sref->sum_abs, (size_t)d) <= TOL_REL &&
                      rel_diff(s1->sum_sq, sref->sum_sq, (size_t)d) <= TOL_REL,
                  "merged sums differ from the serial ones");
        QR_EXPECT(memcmp(s1->G, s2->G, (size_t)(d * d) * sizeof(double)) == 0 &&
                      memcmp(s1->sum_sq, s2->sum_sq, (size_t)d * sizeof(double)) == 0 &&
                      memcmp(s1->sum_abs, s2->sum_abs, (size_t)d * sizeof(double)) == 0,
                  "statistics reduction is not bit-identical across repeated runs");
    }
done:
    qr_stats_free(&sref);
    qr_stats_free(&s1);
    qr_stats_free(&s2);
    free(X), free(ref), free(dx), free(G1), free(G2);
}

int main(int argc, char **argv)
{
    int size, failures = 0, total = 0;
    const char *which = argc > 1 ? argv[1] : "";
    char name[64];
    MPI_Init(&argc, &argv);
    world_rank = qr_mpi_rank(MPI_COMM_WORLD);
    size = qr_mpi_size(MPI_COMM_WORLD);
    snprintf(name, sizeof name, "grid.%s.np%d", which, size);
    if (strcmp(which, "gram") == 0) {
        case_gram();
    } else {
        void (*fn)(const qr_grid *) = strcmp(which, "scatter") == 0    ? case_scatter
                                      : strcmp(which, "cholesky") == 0 ? case_cholesky
                                      : strcmp(which, "rsvd") == 0     ? case_rsvd
                                      : strcmp(which, "pdgesvd") == 0  ? case_pdgesvd
                                                                       : NULL;
        QR_EXPECT(fn != NULL, "unknown case '%s'", which);
        for (int p = 1; fn && p <= size; p++) {
            for (int q = 1; p * q <= size; q++) {
                qr_grid *g = NULL;
                qr_status st = qr_grid_create(MPI_COMM_WORLD, p, q, TEST_NB, &g);
                if (size % (p * q) != 0) {
                    /* Every rank must refuse, with a message naming the grid and the job size. */
                    QR_EXPECT(st == QR_ERR_INPUT && strstr(qr_errmsg(), "divisible"),
                              "grid %dx%d on %d ranks: expected a refusal, found %s '%s'", p, q,
                              size, qr_status_name(st), qr_errmsg());
                    continue;
                }
                QR_EXPECT(st == QR_OK, "grid %dx%d: %s", p, q, qr_errmsg());
                if (st == QR_OK) {
                    fn(g);
                }
                qr_grid_free(&g);
            }
        }
    }
    if (strcmp(which, "scatter") == 0) {
        /* Once more with the default block size (64) on one size x 1 grid. */
        qr_grid *g = NULL;
        QR_EXPECT(qr_grid_create(MPI_COMM_WORLD, size, 1, 0, &g) == QR_OK && g->nb == 64,
                  "default grid: %s", qr_errmsg());
        if (g) {
            case_scatter(g);
        }
        qr_grid_free(&g);
    }
    failures = qr_test_failures;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    qr_blacs_shutdown();
    MPI_Finalize();
    if (total > 0 && failures == 0) {
        /* Another rank failed and said why; this one fails too so the exit codes agree. */
        if (world_rank == 0) {
            fprintf(stderr, "%s: %d check(s) failed on other ranks\n", name, total);
        }
        return 1;
    }
    return world_rank == 0 || failures > 0 ? qr_test_finish(name) : 0;
}

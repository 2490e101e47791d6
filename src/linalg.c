/* linalg.c: dense linear algebra on LAPACKE/CBLAS for the reconstruction methods (src/linalg.h).
 *
 * Our matrices are row-major; a row-major (m, n) buffer is the column-major (n, m) transpose, so
 * every LAPACK call here works on that transposed view in LAPACK's own column-major layout instead
 * of letting LAPACKE copy (and transpose) the whole matrix: that copy would double the memory of a
 * 4096 x 11008 SVD or an 11008 x 11008 Cholesky. */
#include "src/linalg.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/alloc.h"
#include "src/checked.h"

/* Narrow the sizes of one call to LAPACK ints; QR_ERR_INPUT naming the routine otherwise. */
static qr_status to_ints(const char *who, int64_t m, int64_t n, int *mi, int *ni)
{
    size_t mn;
    if (!qr_to_int(m, mi) || !qr_to_int(n, ni) || !qr_mul_size((size_t)m, (size_t)n, &mn)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: matrix size %lld x %lld out of range (expected each in 0..%d)", who,
                       (long long)m, (long long)n, (int)INT32_MAX);
    }
    return QR_OK;
}

static qr_status lapack_info(const char *routine, lapack_int info)
{
    if (info == 0) {
        return QR_OK;
    }
    if (info < 0) {
        return qr_fail(QR_ERR_INTERNAL, "%s: illegal argument %d", routine, (int)-info);
    }
    return qr_fail(QR_ERR_NUMERIC, "%s: did not converge (info %d)", routine, (int)info);
}

qr_status qr_svd(const double *A, int64_t m, int64_t n, double *U, double *S, double *Vt)
{
    qr_status st = QR_OK;
    int mi = 0, ni = 0, ki;
    double *work = NULL; /* (m, n): dgesdd overwrites its input */
    QR_TRY(to_ints("SVD", m, n, &mi, &ni));
    ki = mi < ni ? mi : ni;
    if (ki == 0) {
        return QR_OK;
    }
    QR_CHECK(qr_malloc(&work, (size_t)m * (size_t)n, sizeof *work, "SVD input copy"));
    memcpy(work, A, (size_t)m * (size_t)n * sizeof *work);
    /* Column-major view: B = Aᵀ (n, m) = U_B S Vt_B, so U = Vt_Bᵀ and Vt = U_Bᵀ; as buffers
     * U (m, k) row-major is Vt_B (k, m) column-major and Vt (k, n) row-major is U_B (n, k). */
    QR_CHECK(lapack_info(
        "dgesdd", LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', ni, mi, work, ni, S, Vt, ni, U, ki)));
done:
    free(work);
    return st;
}

void qr_svd_opts_default(qr_svd_opts *o)
{
    o->mode = QR_SVD_AUTO;
    o->oversample = 10;
    o->power_iters = 3;
}

qr_svd_mode qr_svd_path(const qr_svd_opts *o, int64_t m, int64_t n, int64_t r, int64_t *sketch)
{
    qr_svd_opts defaults;
    int64_t k = m < n ? m : n;
    int64_t p, l;
    qr_svd_mode mode;
    if (!o) {
        qr_svd_opts_default(&defaults);
        o = &defaults;
    }
    p = o->oversample > 0 ? o->oversample : 0;
    l = r + p < k ? r + p : k;
    mode = o->mode;
    if (mode == QR_SVD_AUTO) {
        /* Randomized pays off when the sketch is a small fraction of the spectrum. */
        mode = 8 * r <= k ? QR_SVD_RANDOMIZED : QR_SVD_EXACT;
    }
    if (l >= k) {
        mode = QR_SVD_EXACT; /* a full-width sketch is no cheaper than the exact SVD */
    }
    if (sketch) {
        *sketch = mode == QR_SVD_RANDOMIZED ? l : 0;
    }
    return mode;
}

qr_status qr_svd_check(const char *who, const qr_svd_opts *o, int64_t m, int64_t n, int64_t r)
{
    int64_t k = m < n ? m : n;
    if (r < 0 || r > k) {
        return qr_fail(QR_ERR_INPUT, "%s: rank (expected 0..%lld, found %lld)", who, (long long)k,
                       (long long)r);
    }
    if (o && (o->oversample < 0 || o->power_iters < 0 || o->mode < QR_SVD_AUTO ||
              o->mode > QR_SVD_RANDOMIZED)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: options (expected a known mode, oversample >= 0, power iterations >= "
                       "0, found mode %d, %d, %d)",
                       who, (int)o->mode, o->oversample, o->power_iters);
    }
    return QR_OK;
}

const char *qr_svd_mode_name(qr_svd_mode m)
{
    return m == QR_SVD_EXACT ? "exact" : m == QR_SVD_RANDOMIZED ? "randomized" : "auto";
}

qr_status qr_svd_mode_parse(const char *what, const char *name, qr_svd_mode *out)
{
    for (int m = QR_SVD_AUTO; m <= QR_SVD_RANDOMIZED; m++) {
        if (strcmp(name, qr_svd_mode_name((qr_svd_mode)m)) == 0) {
            *out = (qr_svd_mode)m;
            return QR_OK;
        }
    }
    return qr_fail(QR_ERR_INPUT, "%s: expected auto, exact or randomized, found '%s'", what, name);
}

/* Exact rank-r truncation: full thin SVD, then the leading r triplets. */
static qr_status svd_truncated_exact(const double *A, int64_t m, int64_t n, int64_t r, double *U,
                                     double *S, double *Vt)
{
    qr_status st = QR_OK;
    int64_t k = m < n ? m : n;
    double *Uf = NULL, *Sf = NULL, *Vtf = NULL; /* (m, k), (k), (k, n) */
    QR_CHECK(qr_malloc(&Uf, (size_t)m * (size_t)k, sizeof *Uf, "SVD U"));
    QR_CHECK(qr_malloc(&Sf, (size_t)k, sizeof *Sf, "SVD S"));
    QR_CHECK(qr_malloc(&Vtf, (size_t)k * (size_t)n, sizeof *Vtf, "SVD Vt"));
    QR_CHECK(qr_svd(A, m, n, Uf, Sf, Vtf));
    for (int64_t i = 0; i < m; i++) {
        memcpy(U + i * r, Uf + i * k, (size_t)r * sizeof *U);
    }
    memcpy(S, Sf, (size_t)r * sizeof *S);
    memcpy(Vt, Vtf, (size_t)r * (size_t)n * sizeof *Vt);
done:
    free(Uf);
    free(Sf);
    free(Vtf);
    return st;
}

/* Randomized range finder with power iterations, then an exact SVD of the small projection
 * (Halko, Martinsson, Tropp 2011, algorithms 4.4 and 5.1). l < min(m, n). */
static qr_status svd_truncated_randomized(const double *A, int64_t m, int64_t n, int64_t r,
                                          int64_t l, int q, qr_rng *rng, double *U, double *S,
                                          double *Vt)
{
    qr_status st = QR_OK;
    int mi = 0, ni = 0, li;
    double *Y = NULL;  /* (m, l): basis of the range of A */
    double *Z = NULL;  /* (n, l): n x l Gaussian test matrix, then basis of the range of Aᵀ */
    double *B = NULL;  /* (l, n) = Yᵀ A */
    double *Ub = NULL; /* (l, l) */
    double *Sb = NULL; /* (l) */
    double *Vb = NULL; /* (l, n) */
    QR_TRY(to_ints("randomized SVD", m, n, &mi, &ni));
    li = (int)l;
    QR_CHECK(qr_malloc(&Y, (size_t)m * (size_t)l, sizeof *Y, "randomized SVD sketch"));
    QR_CHECK(qr_malloc(&Z, (size_t)n * (size_t)l, sizeof *Z, "randomized SVD test matrix"));
    QR_CHECK(qr_malloc(&B, (size_t)l * (size_t)n, sizeof *B, "randomized SVD projection"));
    QR_CHECK(qr_malloc(&Ub, (size_t)l * (size_t)l, sizeof *Ub, "randomized SVD U_B"));
    QR_CHECK(qr_malloc(&Sb, (size_t)l, sizeof *Sb, "randomized SVD S_B"));
    QR_CHECK(qr_malloc(&Vb, (size_t)l * (size_t)n, sizeof *Vb, "randomized SVD Vt_B"));
    for (size_t i = 0; i < (size_t)n * (size_t)l; i++) {
        Z[i] = qr_rng_normal(rng);
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, mi, li, ni, 1.0, A, ni, Z, li, 0.0, Y,
                li);
    QR_CHECK(qr_orthonormalize(Y, m, l));
    for (int it = 0; it < q; it++) {
        /* Re-orthonormalise after every product: without it the columns collapse onto the top
         * singular vector and the small singular directions are lost to rounding. */
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ni, li, mi, 1.0, A, ni, Y, li, 0.0, Z,
                    li);
        QR_CHECK(qr_orthonormalize(Z, n, l));
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, mi, li, ni, 1.0, A, ni, Z, li, 0.0,
                    Y, li);
        QR_CHECK(qr_orthonormalize(Y, m, l));
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, li, ni, mi, 1.0, Y, li, A, ni, 0.0, B, ni);
    QR_CHECK(qr_svd(B, l, n, Ub, Sb, Vb));
    /* U = Y Ub[:, :r] */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, mi, (int)r, li, 1.0, Y, li, Ub, li, 0.0,
                U, (int)r);
    memcpy(S, Sb, (size_t)r * sizeof *S);
    memcpy(Vt, Vb, (size_t)r * (size_t)n * sizeof *Vt);
done:
    free(Y);
    free(Z);
    free(B);
    free(Ub);
    free(Sb);
    free(Vb);
    return st;
}

qr_status qr_svd_truncated(const double *A, int64_t m, int64_t n, int64_t r, const qr_svd_opts *o,
                           qr_rng *rng, double *U, double *S, double *Vt)
{
    int mi = 0, ni = 0;
    int64_t l = 0;
    qr_svd_opts defaults;
    qr_svd_opts_default(&defaults);
    if (!o) {
        o = &defaults;
    }
    QR_TRY(to_ints("truncated SVD", m, n, &mi, &ni));
    QR_TRY(qr_svd_check("truncated SVD", o, m, n, r));
    if (r == 0) {
        return QR_OK;
    }
    if (qr_svd_path(o, m, n, r, &l) == QR_SVD_EXACT) {
        return svd_truncated_exact(A, m, n, r, U, S, Vt);
    }
    if (!rng) {
        return qr_fail(QR_ERR_INPUT, "randomized SVD: no random stream given");
    }
    return svd_truncated_randomized(A, m, n, r, l, o->power_iters, rng, U, S, Vt);
}

qr_status qr_cholesky_damped(double *G, int64_t n, double lambda0, double *damping_used)
{
    qr_status st = QR_OK;
    int ni = 0;
    double *diag = NULL; /* (n): the input diagonal */
    double mean = 0.0;
    double lambda = lambda0;
    lapack_int info = 0;
    if (damping_used) {
        *damping_used = 0.0;
    }
    QR_TRY(to_ints("Cholesky", n, n, &ni, &ni));
    if (!(lambda0 >= 0.0) || !isfinite(lambda0)) {
        return qr_fail(QR_ERR_INPUT, "Cholesky: damping (expected finite >= 0, found %g)", lambda0);
    }
    if (n == 0) {
        return QR_OK;
    }
    QR_CHECK(qr_malloc(&diag, (size_t)n, sizeof *diag, "Cholesky diagonal"));
    /* Keep the strict lower triangle in the (unread) upper triangle, so a failed try can be undone
     * without a second n x n copy. */
    for (int64_t i = 0; i < n; i++) {
        diag[i] = G[i * n + i];
        if (!isfinite(diag[i])) {
            st = qr_fail(QR_ERR_INPUT, "Cholesky: diagonal %lld is not finite (found %g)",
                         (long long)i, diag[i]);
            goto done;
        }
        mean += diag[i];
        for (int64_t j = 0; j < i; j++) {
            G[j * n + i] = G[i * n + j];
        }
    }
    mean /= (double)n;
    if (!(mean > 0.0)) {
        mean = 1.0;
    }
    for (int t = 0; t < QR_CHOL_MAX_TRIES; t++) {
        double add = lambda * mean;
        for (int64_t i = 0; i < n; i++) {
            for (int64_t j = 0; j < i; j++) {
                G[i * n + j] = G[j * n + i];
            }
            G[i * n + i] = diag[i] + add;
        }
        /* Row-major lower L is column-major upper U = Lᵀ: G = Uᵀ U = L Lᵀ. */
        info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', ni, G, ni);
        if (info == 0) {
            for (int64_t i = 0; i < n; i++) {
                for (int64_t j = i + 1; j < n; j++) {
                    G[i * n + j] = 0.0;
                }
            }
            if (damping_used) {
                *damping_used = add;
            }
            goto done;
        }
        if (info < 0) {
            st = lapack_info("dpotrf", info);
            goto done;
        }
        lambda = (lambda > 0.0) ? lambda * 10.0 : QR_CHOL_LAMBDA0;
        if (lambda > QR_CHOL_LAMBDA_MAX * (1.0 + 1e-9)) {
            break;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < i; j++) {
            G[i * n + j] = G[j * n + i];
        }
        G[i * n + i] = diag[i];
    }
    st = qr_fail(QR_ERR_NUMERIC,
                 "Cholesky: matrix (%lld x %lld) is not positive semidefinite (still indefinite "
                 "with damping %g x mean diagonal %g; dpotrf info %d)",
                 (long long)n, (long long)n, lambda / 10.0, mean, (int)info);
done:
    free(diag);
    return st;
}

qr_status qr_tri_right(double *A, int64_t m, int64_t n, const double *L, bool transpose,
                       bool inverse)
{
    int mi = 0, ni = 0;
    QR_TRY(to_ints("triangular product", m, n, &mi, &ni));
    if (m == 0 || n == 0) {
        return QR_OK;
    }
    if (inverse) {
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, transpose ? CblasTrans : CblasNoTrans,
                    CblasNonUnit, mi, ni, 1.0, L, ni, A, ni);
    } else {
        cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, transpose ? CblasTrans : CblasNoTrans,
                    CblasNonUnit, mi, ni, 1.0, L, ni, A, ni);
    }
    return QR_OK;
}

qr_status qr_eigh(double *A, int64_t n, double *w)
{
    int ni = 0;
    QR_TRY(to_ints("eigendecomposition", n, n, &ni, &ni));
    if (n == 0) {
        return QR_OK;
    }
    /* The row-major lower triangle is the column-major upper one. The eigenvectors come back as
     * column-major columns, i.e. row-major rows; transpose so they are row-major columns. */
    QR_TRY(lapack_info("dsyevd", LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'U', ni, A, ni, w)));
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = i + 1; j < n; j++) {
            double t = A[i * n + j];
            A[i * n + j] = A[j * n + i];
            A[j * n + i] = t;
        }
    }
    return QR_OK;
}

qr_status qr_orthonormalize(double *A, int64_t m, int64_t n)
{
    qr_status st = QR_OK;
    int mi = 0, ni = 0;
    double *tau = NULL; /* (n) Householder scalars */
    QR_TRY(to_ints("orthonormalisation", m, n, &mi, &ni));
    if (m < n) {
        return qr_fail(QR_ERR_INPUT,
                       "orthonormalisation: matrix is wide (expected rows >= columns, found %lld x "
                       "%lld)",
                       (long long)m, (long long)n);
    }
    if (n == 0) {
        return QR_OK;
    }
    QR_CHECK(qr_malloc(&tau, (size_t)n, sizeof *tau, "QR Householder scalars"));
    /* Column-major view Aᵀ (n, m): its LQ factorization Aᵀ = L Q' is A = Q'ᵀ Lᵀ, a QR of A, and
     * the n x m Q' in column-major storage is exactly Q (m, n) row-major. */
    QR_CHECK(lapack_info("dgelqf", LAPACKE_dgelqf(LAPACK_COL_MAJOR, ni, mi, A, ni, tau)));
    QR_CHECK(lapack_info("dorglq", LAPACKE_dorglq(LAPACK_COL_MAJOR, ni, mi, ni, A, ni, tau)));
done:
    free(tau);
    return st;
}

double qr_frobenius(const double *A, int64_t m, int64_t n)
{
    double amax = 0.0, sum = 0.0;
    size_t count = (size_t)m * (size_t)n;
    for (size_t i = 0; i < count; i++) {
        double a = fabs(A[i]);
        amax = a > amax ? a : amax;
    }
    if (amax == 0.0 || !isfinite(amax)) {
        return amax;
    }
    for (size_t i = 0; i < count; i++) {
        double a = A[i] / amax;
        sum += a * a;
    }
    return amax * sqrt(sum);
}

double qr_blas_gflops(void)
{
    const int n = 512;
    double *A = malloc(3 * (size_t)n * (size_t)n * sizeof *A), best = 0.0;
    if (!A) {
        return 0.0;
    }
    for (size_t i = 0; i < 3 * (size_t)n * (size_t)n; i++) {
        A[i] = (double)(i % 7) - 3.0;
    }
    /* The best of 8 tries (a few ms each) in 3 rounds 20 ms apart: on a shared machine a rank can
     * lose its core for longer than one round, and one slow round set the plan's rate 30% low. */
    for (int k = 0; k < 24; k++) {
        struct timespec t0, t1, pause = {0, 20 * 1000 * 1000};
        double s;
        if (k > 0 && k % 8 == 0) {
            nanosleep(&pause, NULL);
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, A, n,
                    A + (size_t)n * n, n, 0.0, A + 2 * (size_t)n * n, n);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        best = s > 0 && 2.0 * n * n * n / s / 1e9 > best ? 2.0 * n * n * n / s / 1e9 : best;
    }
    free(A);
    return best;
}

/* The serial entry points (src/linalg.h). */

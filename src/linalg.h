/* linalg.h: the dense linear algebra of the reconstruction methods, on LAPACKE/CBLAS: thin SVD
 * (dgesdd), a rank-r truncated SVD (exact, or randomized with power iterations), Cholesky with
 * damping retried upward, triangular multiply/solve with the factor, symmetric eigendecomposition,
 * and QR orthonormalisation.
 *
 * All matrices are row-major float64; sizes are int64_t and narrowed to LAPACK int through
 * qr_to_int (QR_ERR_INPUT when a size does not fit). No MPI, no files, not collective. A LAPACK
 * failure on valid input is QR_ERR_NUMERIC with the routine and its info in the message. */
#ifndef QR_LINALG_H
#define QR_LINALG_H

#include <stdbool.h>
#include <stdint.h>

#include "src/rng.h"
#include "src/status.h"

typedef enum { QR_SVD_AUTO = 0, QR_SVD_EXACT, QR_SVD_RANDOMIZED } qr_svd_mode;

/* Thin SVD A (m, n) = U (m, k) diag(S) Vt (k, n), k = min(m, n), dgesdd; A is not modified.
 * S (k) is descending. */
qr_status qr_svd(const double *A, int64_t m, int64_t n, double *U, double *S, double *Vt);

typedef struct {
    qr_svd_mode mode;
    int oversample;  /* p: extra sketch columns (default 10) */
    int power_iters; /* q: power iterations (default 3) */
} qr_svd_opts;

/* AUTO, p = 10, q = 3 (see docs/quantizers.md for the measurements behind them). The one place
 * these defaults are written: the methods, the ScaLAPACK path and the plan all start from here. */
void qr_svd_opts_default(qr_svd_opts *o);

/* The one rule for the path of a rank-r truncated SVD of an (m, n) matrix (r > 0), used by the
 * serial and distributed SVDs and by the plan: AUTO is randomized when 8 r <= min(m, n); a sketch
 * l = min(r + p, min(m, n)) as wide as the spectrum runs the exact SVD instead. Returns
 * QR_SVD_EXACT or QR_SVD_RANDOMIZED; *sketch (may be NULL) gets l, or 0 on the exact path.
 * o NULL = the defaults. */
qr_svd_mode qr_svd_path(const qr_svd_opts *o, int64_t m, int64_t n, int64_t r, int64_t *sketch);

/* QR_ERR_INPUT, prefixed with `who`, unless 0 <= r <= min(m, n) and o (may be NULL) is valid. */
qr_status qr_svd_check(const char *who, const qr_svd_opts *o, int64_t m, int64_t n, int64_t r);

/* "auto", "exact", "randomized", and back (QR_ERR_INPUT naming `what` for another name). */
const char *qr_svd_mode_name(qr_svd_mode m);
qr_status qr_svd_mode_parse(const char *what, const char *name, qr_svd_mode *out);

/* Rank-r truncated SVD of A (m, n): U (m, r), S (r) descending, Vt (r, n); A is not modified.
 * The path is qr_svd_path's (exact: a full dgesdd, truncated). Randomized
 * (Halko, Martinsson, Tropp 2011, alg. 4.4): Gaussian test matrix Omega (n, l), l = min(r + p,
 * min(m, n)), drawn from rng row by row; Y = A Omega, then q times Y = A (Aᵀ Y), with a QR
 * re-orthonormalisation after every multiply; B = Qᵀ A (l, n), exact SVD of B, U = Q U_B, first r
 * kept.
 * o NULL = the defaults. rng may be NULL only for EXACT (and for AUTO when it picks exact).
 * 0 <= r <= min(m, n). */
qr_status qr_svd_truncated(const double *A, int64_t m, int64_t n, int64_t r, const qr_svd_opts *o,
                           qr_rng *rng, double *U, double *S, double *Vt);

/* Default first damping of qr_cholesky_damped, relative to mean(diag): small enough to leave a
 * well-conditioned Gram matrix (relative change 1e-8) practically unchanged. */
#define QR_CHOL_LAMBDA0 1e-8
/* Largest relative damping tried: a PSD matrix never needs as much as its mean diagonal (rounding
 * needs ~1e-12 of it), so a matrix that still fails is indefinite: bad input, not bad luck. */
#define QR_CHOL_LAMBDA_MAX 1.0
#define QR_CHOL_MAX_TRIES 12

/* Cholesky G = L Lᵀ of a symmetric PSD (n, n) matrix, in place (lower triangle = L, upper zeroed);
 * only the lower triangle of G is read. Try k adds lambda_k * mean(diag) * I with lambda_0 =
 * lambda0 and lambda_k = 10 lambda_{k-1}, at most QR_CHOL_MAX_TRIES tries and lambda_k <=
 * QR_CHOL_LAMBDA_MAX; lambda0 == 0 means the first try is undamped and the next ones start at
 * QR_CHOL_LAMBDA0. (mean(diag) <= 0 counts as 1.) *damping_used (may be NULL) gets the absolute
 * value added to the diagonal (0 when none). QR_ERR_NUMERIC when every try fails; G then holds
 * its input again (symmetrised: the upper triangle mirrors the lower). */
qr_status qr_cholesky_damped(double *G, int64_t n, double lambda0, double *damping_used);

/* A (m, n) := A op(L), or A op(L)^-1 when inverse; L (n, n) lower triangular (as left by
 * qr_cholesky_damped; the upper triangle is not read); op(L) = L, or Lᵀ when transpose.
 * Whitening: with G = L Lᵀ, E L is the whitened error and C L^-1 maps a correction back. */
qr_status qr_tri_right(double *A, int64_t m, int64_t n, const double *L, bool transpose,
                       bool inverse);

/* Symmetric eigendecomposition (dsyevd) of A (n, n) (lower triangle read): w (n) ascending, and A
 * is overwritten by the eigenvectors as COLUMNS: A[i * n + k] is component i of the eigenvector of
 * w[k] (row-major), so A_in = V diag(w) Vᵀ. */
qr_status qr_eigh(double *A, int64_t n, double *w);

/* Orthonormalise the columns of A (m, n), m >= n, in place: Householder QR (dgeqrf + dorgqr), Q
 * (m, n) overwrites A. */
qr_status qr_orthonormalize(double *A, int64_t m, int64_t n);

/* The float64 matrix-multiply rate of this process in GFLOP/s: the best of eight 512 x 512 x 512
 * dgemm calls (about 0.05 s). What the plan's time estimates assume when a job measures them. */
double qr_blas_gflops(void);

/* Frobenius norm of A (m, n) (scaled, so no overflow for large entries). */
double qr_frobenius(const double *A, int64_t m, int64_t n);

#endif

/* test_linalg.c: the dense linear algebra of src/linalg.h against plain references. Cases:
 *   svd          thin SVD reconstructs A (tall, wide, square) to 1e-12 relative; U, V orthonormal
 *   truncated    exact truncated SVD: residual equals the Eckart-Young error sqrt(sum_{i>r} s_i^2)
 *   randomized   randomized SVD within 1% of the optimal rank-r error on decaying spectra, and its
 *                top singular values match the exact ones
 *   cholesky     damping succeeds on a rank-deficient PSD matrix and is reported; none is added to
 *                a well-conditioned one; L Lᵀ = G + damping I
 *   tri          A L, A Lᵀ, A L^-1, A L^-T against naive loops
 *   eigh         A V = V diag(w), ascending w, V orthonormal
 *   qr           QᵀQ = I and Q Qᵀ A = A */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/linalg.h"
#include "src/rng.h"
#include "tests/test_util.h"

/* dgesdd's backward error is a small multiple of machine epsilon times the size; 1e-12 relative is
 * what the task demands and leaves room for 2000-wide matrices. */
#define SVD_RECON_TOL 1e-12
#define ORTHO_TOL 1e-12
/* The Eckart-Young identity computed two ways (residual vs. tail of S) agrees to rounding. */
#define EY_TOL 1e-9
/* The goal for the randomized SVD: at most 1% more residual than the optimum. */
#define RSVD_ERR_RATIO 1.01
/* Randomized singular values: the top half (well separated from sigma_{r+p}, so power iterations
 * converge fast) to 1e-3 relative; the ones near the cut, limited by the spectral gap, to 5%. */
#define RSVD_SIGMA_TOP_TOL 1e-3
#define RSVD_SIGMA_ALL_TOL 5e-2
/* Cholesky and triangular products: rounding of O(n) sums. */
#define FACTOR_TOL 1e-10

static double *rand_matrix(qr_rng *rng, int64_t m, int64_t n)
{
    double *A = malloc((size_t)(m * n) * sizeof *A);
    for (int64_t k = 0; k < m * n; k++) {
        A[k] = qr_rng_normal(rng);
    }
    return A;
}

/* max |(QᵀQ - I)_ij| for Q (m, k) with orthonormal columns. */
static double ortho_cols_err(const double *Q, int64_t m, int64_t k)
{
    double worst = 0.0;
    for (int64_t a = 0; a < k; a++) {
        for (int64_t b = 0; b < k; b++) {
            double s = 0.0;
            for (int64_t i = 0; i < m; i++) {
                s += Q[i * k + a] * Q[i * k + b];
            }
            s -= (a == b) ? 1.0 : 0.0;
            worst = fabs(s) > worst ? fabs(s) : worst;
        }
    }
    return worst;
}

/* max |(V Vᵀ - I)_ij| for V (k, n) with orthonormal rows. */
static double ortho_rows_err(const double *V, int64_t k, int64_t n)
{
    double worst = 0.0;
    for (int64_t a = 0; a < k; a++) {
        for (int64_t b = 0; b < k; b++) {
            double s = 0.0;
            for (int64_t j = 0; j < n; j++) {
                s += V[a * n + j] * V[b * n + j];
            }
            s -= (a == b) ? 1.0 : 0.0;
            worst = fabs(s) > worst ? fabs(s) : worst;
        }
    }
    return worst;
}

/* ||A - U diag(S) Vt||_F for a rank-r factorization. */
static double residual(const double *A, int64_t m, int64_t n, const double *U, const double *S,
                       const double *Vt, int64_t r)
{
    double *R = malloc((size_t)(m * n) * sizeof *R);
    double f;
    memcpy(R, A, (size_t)(m * n) * sizeof *R);
    for (int64_t i = 0; i < m; i++) {
        for (int64_t k = 0; k < r; k++) {
            double c = U[i * r + k] * S[k];
            for (int64_t j = 0; j < n; j++) {
                R[i * n + j] -= c * Vt[k * n + j];
            }
        }
    }
    f = qr_frobenius(R, m, n);
    free(R);
    return f;
}

static int case_svd(qr_rng *rng)
{
    static const int64_t shapes[][2] = {{50, 30}, {30, 50}, {64, 64}, {1, 17}, {211, 97}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t m = shapes[s][0], n = shapes[s][1], k = m < n ? m : n;
        double *A = rand_matrix(rng, m, n), *A0 = malloc((size_t)(m * n) * sizeof *A0);
        double *U = malloc((size_t)(m * k) * sizeof *U), *S = malloc((size_t)k * sizeof *S);
        double *Vt = malloc((size_t)(k * n) * sizeof *Vt);
        double rel;
        memcpy(A0, A, (size_t)(m * n) * sizeof *A);
        QR_REQUIRE(qr_svd(A, m, n, U, S, Vt) == QR_OK, "%s", qr_errmsg());
        QR_EXPECT(memcmp(A, A0, (size_t)(m * n) * sizeof *A) == 0, "%lldx%lld: A was modified",
                  (long long)m, (long long)n);
        rel = residual(A, m, n, U, S, Vt, k) / qr_frobenius(A, m, n);
        QR_EXPECT(rel <= SVD_RECON_TOL, "%lldx%lld: ||A - U S Vt|| / ||A|| = %.3e (max %.0e)",
                  (long long)m, (long long)n, rel, SVD_RECON_TOL);
        QR_EXPECT(ortho_cols_err(U, m, k) <= ORTHO_TOL, "%lldx%lld: U not orthonormal (%.3e)",
                  (long long)m, (long long)n, ortho_cols_err(U, m, k));
        QR_EXPECT(ortho_rows_err(Vt, k, n) <= ORTHO_TOL, "%lldx%lld: Vt not orthonormal (%.3e)",
                  (long long)m, (long long)n, ortho_rows_err(Vt, k, n));
        for (int64_t i = 1; i < k; i++) {
            QR_EXPECT(S[i] <= S[i - 1] && S[i] >= 0.0, "%lldx%lld: S not descending at %lld",
                      (long long)m, (long long)n, (long long)i);
        }
        printf("svd %lldx%lld: relative reconstruction error %.2e\n", (long long)m, (long long)n,
               rel);
        free(A);
        free(A0);
        free(U);
        free(S);
        free(Vt);
    }
    return 0;
}

/* A (m, n) = U diag(sigma) Vᵀ with random orthonormal U, V and the given spectrum. */
static double *with_spectrum(qr_rng *rng, int64_t m, int64_t n, const double *sigma)
{
    int64_t k = m < n ? m : n;
    double *P = rand_matrix(rng, m, k), *Q = rand_matrix(rng, n, k);
    double *A = calloc((size_t)(m * n), sizeof *A);
    if (qr_orthonormalize(P, m, k) != QR_OK || qr_orthonormalize(Q, n, k) != QR_OK) {
        fprintf(stderr, "orthonormalize: %s\n", qr_errmsg());
        exit(1);
    }
    for (int64_t i = 0; i < m; i++) {
        for (int64_t c = 0; c < k; c++) {
            double p = P[i * k + c] * sigma[c];
            for (int64_t j = 0; j < n; j++) {
                A[i * n + j] += p * Q[j * k + c];
            }
        }
    }
    free(P);
    free(Q);
    return A;
}

static int case_truncated(qr_rng *rng)
{
    static const int64_t shapes[][3] = {{120, 77, 10}, {77, 120, 30}, {90, 90, 89}, {40, 13, 13}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t m = shapes[s][0], n = shapes[s][1], r = shapes[s][2], k = m < n ? m : n;
        double *A = rand_matrix(rng, m, n);
        double *U = malloc((size_t)(m * r) * sizeof *U), *S = malloc((size_t)k * sizeof *S);
        double *Vt = malloc((size_t)(r * n) * sizeof *Vt);
        double *Uf = malloc((size_t)(m * k) * sizeof *Uf), *Sf = malloc((size_t)k * sizeof *Sf);
        double *Vf = malloc((size_t)(k * n) * sizeof *Vf);
        qr_svd_opts o;
        double tail = 0.0, res;
        qr_svd_opts_default(&o);
        o.mode = QR_SVD_EXACT;
        QR_REQUIRE(qr_svd(A, m, n, Uf, Sf, Vf) == QR_OK, "%s", qr_errmsg());
        QR_REQUIRE(qr_svd_truncated(A, m, n, r, &o, NULL, U, S, Vt) == QR_OK, "%s", qr_errmsg());
        for (int64_t i = r; i < k; i++) {
            tail += Sf[i] * Sf[i];
        }
        tail = sqrt(tail);
        res = residual(A, m, n, U, S, Vt, r);
        QR_EXPECT(fabs(res - tail) <= EY_TOL * qr_frobenius(A, m, n),
                  "%lldx%lld r %lld: residual %.12e, Eckart-Young error %.12e", (long long)m,
                  (long long)n, (long long)r, res, tail);
        for (int64_t i = 0; i < r; i++) {
            QR_EXPECT(S[i] == Sf[i], "%lldx%lld r %lld: S[%lld] %.17g differs from the full SVD",
                      (long long)m, (long long)n, (long long)r, (long long)i, S[i]);
        }
        free(A);
        free(U);
        free(S);
        free(Vt);
        free(Uf);
        free(Sf);
        free(Vf);
    }
    {
        double A[6] = {1, 2, 3, 4, 5, 6}, U[6], S[2], Vt[6];
        QR_EXPECT(qr_svd_truncated(A, 2, 3, 3, NULL, NULL, U, S, Vt) == QR_ERR_INPUT,
                  "rank 3 of a 2x3 matrix accepted");
    }
    return 0;
}

static int case_randomized(qr_rng *rng)
{
    /* m, n, r: wide and tall, no size a multiple of anything; 8 r <= min(m, n) so AUTO picks
     * the randomized path, which the test forces anyway. */
    static const int64_t shapes[][3] = {{301, 173, 8}, {173, 411, 16}, {517, 263, 32},
                                        {263, 517, 5}, {400, 401, 40}, {997, 129, 16}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int kind = 0; kind < 2; kind++) {
            int64_t m = shapes[s][0], n = shapes[s][1], r = shapes[s][2], k = m < n ? m : n;
            double *sigma = malloc((size_t)k * sizeof *sigma);
            double *A, opt = 0.0, res, worst_top = 0.0, worst_all = 0.0;
            double *U = malloc((size_t)(m * r) * sizeof *U), *S = malloc((size_t)r * sizeof *S);
            double *Vt = malloc((size_t)(r * n) * sizeof *Vt);
            qr_svd_opts o;
            qr_rng stream;
            /* kind 0: polynomial decay i^-1 (slow, the hard case for sketches); kind 1:
             * exponential decay plus a flat noise floor, like a quantization error. */
            for (int64_t i = 0; i < k; i++) {
                sigma[i] = kind == 0 ? 1.0 / (1.0 + (double)i) : exp(-0.1 * (double)i) + 0.02;
            }
            A = with_spectrum(rng, m, n, sigma);
            for (int64_t i = r; i < k; i++) {
                opt += sigma[i] * sigma[i];
            }
            opt = sqrt(opt);
            qr_svd_opts_default(&o);
            o.mode = QR_SVD_RANDOMIZED;
            qr_rng_seed(&stream, 1000 + s);
            QR_REQUIRE(qr_svd_truncated(A, m, n, r, &o, &stream, U, S, Vt) == QR_OK, "%s",
                       qr_errmsg());
            res = residual(A, m, n, U, S, Vt, r);
            for (int64_t i = 0; i < r; i++) {
                double e = fabs(S[i] - sigma[i]) / sigma[i];
                worst_all = e > worst_all ? e : worst_all;
                if (2 * i < r) {
                    worst_top = e > worst_top ? e : worst_top;
                }
            }
            printf("randomized %4lldx%-4lld r %2lld %-9s: error ratio %.6f, sigma rel. error: "
                   "top half %.1e, all %.1e\n",
                   (long long)m, (long long)n, (long long)r, kind ? "exp+floor" : "1/i", res / opt,
                   worst_top, worst_all);
            QR_EXPECT(res <= RSVD_ERR_RATIO * opt,
                      "%lldx%lld r %lld: randomized residual %.6e is %.4f x the optimum %.6e",
                      (long long)m, (long long)n, (long long)r, res, res / opt, opt);
            QR_EXPECT(worst_top <= RSVD_SIGMA_TOP_TOL && worst_all <= RSVD_SIGMA_ALL_TOL,
                      "%lldx%lld r %lld: singular values off by %.3e (top half), %.3e (all)",
                      (long long)m, (long long)n, (long long)r, worst_top, worst_all);
            QR_EXPECT(ortho_cols_err(U, m, r) <= ORTHO_TOL && ortho_rows_err(Vt, r, n) <= ORTHO_TOL,
                      "%lldx%lld r %lld: factors not orthonormal", (long long)m, (long long)n,
                      (long long)r);
            free(sigma);
            free(A);
            free(U);
            free(S);
            free(Vt);
        }
    }
    /* Same stream seed, same result: the randomized path is deterministic. */
    {
        double *A = rand_matrix(rng, 90, 70), U1[90 * 5], U2[90 * 5], S1[5], S2[5], V1[350],
               V2[350];
        qr_rng a, b;
        qr_rng_seed(&a, 5);
        qr_rng_seed(&b, 5);
        QR_REQUIRE(qr_svd_truncated(A, 90, 70, 5, NULL, &a, U1, S1, V1) == QR_OK, "%s",
                   qr_errmsg());
        QR_REQUIRE(qr_svd_truncated(A, 90, 70, 5, NULL, &b, U2, S2, V2) == QR_OK, "%s",
                   qr_errmsg());
        QR_EXPECT(memcmp(U1, U2, sizeof U1) == 0 && memcmp(S1, S2, sizeof S1) == 0 &&
                      memcmp(V1, V2, sizeof V1) == 0,
                  "two runs from the same seed differ");
        QR_EXPECT(qr_svd_truncated(A, 90, 70, 5, NULL, NULL, U1, S1, V1) == QR_ERR_INPUT,
                  "AUTO picked the randomized path (8 r <= 70) but accepted a NULL stream");
        free(A);
    }
    return 0;
}

static int case_cholesky(qr_rng *rng)
{
    /* Rank-deficient PSD: G = Xᵀ X with fewer rows than columns, and a zero channel. */
    const int64_t n = 60, rows = 25;
    double *X = rand_matrix(rng, rows, n);
    double *G = calloc((size_t)(n * n), sizeof *G), *G0 = malloc((size_t)(n * n) * sizeof *G0);
    double damping = -1.0, mean = 0.0, worst = 0.0;
    for (int64_t t = 0; t < rows; t++) {
        X[t * n + 11] = 0.0;
    }
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) {
            for (int64_t t = 0; t < rows; t++) {
                G[i * n + j] += X[t * n + i] * X[t * n + j];
            }
        }
        mean += G[i * n + i] / (double)n;
    }
    memcpy(G0, G, (size_t)(n * n) * sizeof *G);
    QR_REQUIRE(qr_cholesky_damped(G, n, 0.0, &damping) == QR_OK, "rank-deficient: %s", qr_errmsg());
    QR_EXPECT(damping > 0.0, "rank-deficient PSD factored with no damping (reported %g)", damping);
    QR_EXPECT(damping <= 1e-2 * mean, "damping %g is large for mean diagonal %g", damping, mean);
    printf("rank-deficient %lldx%lld (rank %lld): damping %.3e (%.1e x mean diagonal)\n",
           (long long)n, (long long)n, (long long)rows, damping, damping / mean);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) {
            double s = 0.0;
            if (j > i) {
                QR_EXPECT(G[i * n + j] == 0.0, "upper triangle (%lld, %lld) not zeroed",
                          (long long)i, (long long)j);
            }
            for (int64_t k = 0; k <= (i < j ? i : j); k++) {
                s += G[i * n + k] * G[j * n + k];
            }
            s -= G0[i * n + j] + (i == j ? damping : 0.0);
            worst = fabs(s) > worst ? fabs(s) : worst;
        }
    }
    QR_EXPECT(worst <= FACTOR_TOL * mean, "L Lᵀ differs from G + damping I by %.3e", worst);
    /* Well conditioned: no damping with lambda0 = 0, exactly LAPACK's factor otherwise. */
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) {
            G[i * n + j] = G0[i * n + j] + (i == j ? mean : 0.0);
        }
    }
    QR_REQUIRE(qr_cholesky_damped(G, n, 0.0, &damping) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(damping == 0.0, "a well-conditioned matrix got damping %g", damping);
    /* Indefinite beyond repair within the tries: G = -I. */
    for (int64_t k = 0; k < n * n; k++) {
        G[k] = (k % (n + 1) == 0) ? -1.0 : 0.0;
    }
    QR_EXPECT(qr_cholesky_damped(G, n, 1e-8, &damping) == QR_ERR_NUMERIC,
              "a negative definite matrix was factored");
    QR_EXPECT(G[0] == -1.0 && G[n + 1] == -1.0, "failed factorization did not restore G");
    free(X);
    free(G);
    free(G0);
    return 0;
}

static int case_tri(qr_rng *rng)
{
    const int64_t m = 17, n = 23;
    double *L = rand_matrix(rng, n, n), *A = rand_matrix(rng, m, n);
    double *B = malloc((size_t)(m * n) * sizeof *B), *C = malloc((size_t)(m * n) * sizeof *C);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) {
            if (j > i) {
                L[i * n + j] = 1e300; /* must not be read */
            } else if (j == i) {
                L[i * n + j] = 2.0 + fabs(L[i * n + j]);
            }
        }
    }
    for (int transpose = 0; transpose <= 1; transpose++) {
        double worst = 0.0;
        /* C = A op(L) naively, then check qr_tri_right forward and inverse. */
        for (int64_t i = 0; i < m; i++) {
            for (int64_t j = 0; j < n; j++) {
                double s = 0.0;
                for (int64_t k = 0; k < n; k++) {
                    /* op(L)_kj: L_kj (nonzero for k >= j), or Lᵀ_kj = L_jk (for k <= j) */
                    double lk =
                        transpose ? (k <= j ? L[j * n + k] : 0.0) : (k >= j ? L[k * n + j] : 0.0);
                    s += A[i * n + k] * lk;
                }
                C[i * n + j] = s;
            }
        }
        memcpy(B, A, (size_t)(m * n) * sizeof *B);
        QR_REQUIRE(qr_tri_right(B, m, n, L, transpose, false) == QR_OK, "%s", qr_errmsg());
        for (int64_t k = 0; k < m * n; k++) {
            worst = fmax(worst, fabs(B[k] - C[k]) / (1.0 + fabs(C[k])));
        }
        QR_REQUIRE(qr_tri_right(B, m, n, L, transpose, true) == QR_OK, "%s", qr_errmsg());
        for (int64_t k = 0; k < m * n; k++) {
            worst = fmax(worst, fabs(B[k] - A[k]) / (1.0 + fabs(A[k])));
        }
        QR_EXPECT(worst <= FACTOR_TOL, "transpose %d: A op(L) or its inverse off by %.3e",
                  transpose, worst);
    }
    free(L);
    free(A);
    free(B);
    free(C);
    return 0;
}

static int case_eigh(qr_rng *rng)
{
    const int64_t n = 41;
    double *X = rand_matrix(rng, n, n), *A = malloc((size_t)(n * n) * sizeof *A);
    double *V = malloc((size_t)(n * n) * sizeof *V), *w = malloc((size_t)n * sizeof *w);
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) {
            A[i * n + j] = X[i * n + j] + X[j * n + i];
        }
    }
    memcpy(V, A, (size_t)(n * n) * sizeof *V);
    QR_REQUIRE(qr_eigh(V, n, w) == QR_OK, "%s", qr_errmsg());
    for (int64_t k = 1; k < n; k++) {
        QR_EXPECT(w[k] >= w[k - 1], "eigenvalues not ascending at %lld", (long long)k);
    }
    /* A v_k = w_k v_k with v_k = column k. */
    for (int64_t k = 0; k < n; k++) {
        for (int64_t i = 0; i < n; i++) {
            double s = 0.0;
            for (int64_t j = 0; j < n; j++) {
                s += A[i * n + j] * V[j * n + k];
            }
            worst = fmax(worst, fabs(s - w[k] * V[i * n + k]));
        }
    }
    QR_EXPECT(worst <= FACTOR_TOL, "A V - V diag(w) up to %.3e (columns must be eigenvectors)",
              worst);
    QR_EXPECT(ortho_cols_err(V, n, n) <= ORTHO_TOL, "eigenvectors not orthonormal");
    free(X);
    free(A);
    free(V);
    free(w);
    return 0;
}

static int case_qr(qr_rng *rng)
{
    const int64_t m = 53, n = 19;
    double *A = rand_matrix(rng, m, n), *Q = malloc((size_t)(m * n) * sizeof *Q);
    double worst = 0.0;
    memcpy(Q, A, (size_t)(m * n) * sizeof *Q);
    QR_REQUIRE(qr_orthonormalize(Q, m, n) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(ortho_cols_err(Q, m, n) <= ORTHO_TOL, "Q not orthonormal (%.3e)",
              ortho_cols_err(Q, m, n));
    /* Same span: Q Qᵀ A = A. */
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            double s = 0.0;
            for (int64_t k = 0; k < n; k++) {
                double c = 0.0;
                for (int64_t t = 0; t < m; t++) {
                    c += Q[t * n + k] * A[t * n + j];
                }
                s += Q[i * n + k] * c;
            }
            worst = fmax(worst, fabs(s - A[i * n + j]));
        }
    }
    QR_EXPECT(worst <= FACTOR_TOL, "Q Qᵀ A differs from A by %.3e", worst);
    QR_EXPECT(qr_orthonormalize(Q, n, m) == QR_ERR_INPUT, "a wide matrix was accepted");
    free(A);
    free(Q);
    return 0;
}

int main(int argc, char **argv)
{
    qr_rng rng;
    const char *which = argc > 1 ? argv[1] : "";
    int rc;
    qr_rng_seed(&rng, 31337);
    if (strcmp(which, "svd") == 0) {
        rc = case_svd(&rng);
    } else if (strcmp(which, "truncated") == 0) {
        rc = case_truncated(&rng);
    } else if (strcmp(which, "randomized") == 0) {
        rc = case_randomized(&rng);
    } else if (strcmp(which, "cholesky") == 0) {
        rc = case_cholesky(&rng);
    } else if (strcmp(which, "tri") == 0) {
        rc = case_tri(&rng);
    } else if (strcmp(which, "eigh") == 0) {
        rc = case_eigh(&rng);
    } else if (strcmp(which, "qr") == 0) {
        rc = case_qr(&rng);
    } else {
        fprintf(stderr, "usage: %s svd|truncated|randomized|cholesky|tri|eigh|qr\n", argv[0]);
        return 2;
    }
    return rc ? rc : qr_test_finish(which);
}

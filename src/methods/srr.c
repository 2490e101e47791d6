/* srr.c: SRR (preserve, then quantize) on top of a base scaling S (LQER, QERA-approx or the
 * whitening factor of QERA-exact):
 *   1) L1 R1 = SVD_k(W S) S^-1: the top-k subspace of the scaled weight kept in full precision;
 *   2) Q = Q(W - L1 R1);  3) L2 R2 = SVD_{r-k}((W - L1 R1 - Q) S) S^-1;  L = [L1 L2], R = [R1; R2].
 * k is o->srr_k, or the k* rule (qr_srr_kstar) with one E_rand ~ U[-1,1] of W's shape drawn from
 * the module's stream, kept only when it beats the base method's own layer on the scaled
 * calibration error ||(W - W_eff) S||_F (keep_if_better_than_base). k = 0 runs exactly the base
 * method's code (same streams): bit for bit the same layer. Only the top-r singular values are
 * needed for rho_p, since the total is ||.||_F^2. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "src/methods/correction.h"

static double sum_sq(const double *A, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        s += A[i] * A[i];
    }
    return s;
}

/* Top-r singular values of the scaled random matrix E_rand S (E_rand (d_out, d_in) ~ U[-1,1]) and
 * its squared Frobenius norm. se (r). With a whitening S on the randomized SVD path, E_rand S is
 * not formed (that is an m n^2 / 2 product, the dearest step of SRR): the singular values come from
 * the implicit SVD and the total is its expectation E||E_rand C||_F^2 = (d_out / 3) ||C||_F^2 (the
 * entries have variance 1/3). One draw deviates from it by a relative standard deviation of at most
 * sqrt(2 / d_out) ||G'||_F / tr(G'), G' = C Cᵀ: about 1 / sqrt(d_out n_eff) with n_eff the
 * effective rank of G, so a few percent for small layers with few dominant channels, far less at d
 * >= 4096; the rule then weighs the drawn spectrum against the expected total (E_rand is a random
 * probe either way). */
static qr_status random_spectrum(const qr_method_opts *o, const qr_scaling *S, int64_t d_out,
                                 int64_t d_in, int64_t r, double *se, double *total)
{
    qr_status st = QR_OK;
    double *Er = NULL, *U = NULL, *Vt = NULL; /* (d_out, d_in), (d_out, r), (r, d_in) */
    qr_rng rng;
    QR_CHECK(qr_alloc_f64(&Er, d_out, d_in, "SRR random matrix"));
    QR_CHECK(qr_alloc_f64(&U, d_out, r, "SRR random U"));
    QR_CHECK(qr_alloc_f64(&Vt, r, d_in, "SRR random Vt"));
    qr_method_rng(o, "srr-random", &rng);
    for (int64_t i = 0; i < d_out * d_in; i++) {
        Er[i] = 2.0 * qr_rng_uniform(&rng) - 1.0;
    }
    if (qr_scaled_svd_implicit(S, d_out, d_in, r, &o->svd)) {
        *total = (double)d_out / 3.0 * sum_sq(S->chol, d_in * d_in);
        qr_method_rng(o, "srr-random-svd", &rng);
        QR_CHECK(qr_scaled_svd(Er, d_out, d_in, S, r, &o->svd, &rng, U, se, Vt));
        goto done;
    }
    QR_CHECK(qr_scaling_apply(S, Er, d_out, false));
    *total = sum_sq(Er, d_out * d_in);
    qr_method_rng(o, "srr-random-svd", &rng);
    QR_CHECK(qr_svd_truncated(Er, d_out, d_in, r, &o->svd, &rng, U, se, Vt));
done:
    free(Er);
    free(U);
    free(Vt);
    return st;
}

/* The k* rule is a heuristic (at small ranks it spends most of the rank on preservation): the
 * split it chose (in out, from L and R) is kept only when its scaled calibration error is below
 * the base method's own result (k = 0, the same random streams, so bit for bit the base layer),
 * which otherwise replaces it. D (d_out, d_in) is scratch. */
static qr_status keep_if_better_than_base(const qr_method_opts *o, const double *W, int64_t d_out,
                                          int64_t d_in, const qr_stats *calib, const qr_scaling *S,
                                          const double *L, const double *R, double *D,
                                          qr_qlayer *out, qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t r = o->rank;
    qr_qweight qb;
    double *Lb = NULL, *Rb = NULL, e_split = 0.0, e_base = 0.0, t0 = qr_now();
    memset(&qb, 0, sizeof qb);
    QR_CHECK(qr_scaled_error(S, W, &out->main, L, R, r, d_out, d_in, D, &e_split));
    QR_CHECK(qr_qer_step(o, W, d_out, d_in, calib->G, S, r, &qb, &Lb, &Rb, rep));
    QR_CHECK(qr_scaled_error(S, W, &qb, Lb, Rb, r, d_out, d_in, D, &e_base));
    if (e_base < e_split) {
        qr_qweight_free(&out->main);
        out->main = qb;
        memset(&qb, 0, sizeof qb);
        free(out->L);
        free(out->R);
        out->L = out->R = NULL;
        QR_CHECK(qr_qlayer_set_lowrank(out, Lb, Rb, r));
        rep->srr_k_used = 0;
    }
    rep->seconds[QR_STAGE_DECOMPOSE] += qr_now() - t0;
done:
    qr_qweight_free(&qb);
    free(Lb);
    free(Rb);
    return st;
}

static qr_status srr_run(const qr_method_opts *o, const double *W, int64_t d_out, int64_t d_in,
                         const qr_stats *calib, qr_qlayer *out, qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t r = o->rank, k = o->srr_k;
    qr_scaling S = {0};
    double *WS = NULL;             /* (d_out, d_in): W S, then W - L1 R1 */
    double *U = NULL;              /* (d_out, r) left singular vectors of W S */
    double *sw = NULL;             /* (r) singular values of W S */
    double *Vt = NULL;             /* (r, d_in) right singular vectors, then R1 = Vt S^-1 */
    double *se = NULL;             /* (r) singular values of E_rand S */
    double *L = NULL, *R = NULL;   /* (d_out, r), (r, d_in): the stored correction */
    double *L2 = NULL, *R2 = NULL; /* (d_out, r - k), (r - k, d_in) */
    qr_rng rng;
    double t0 = qr_now();

    QR_CHECK(qr_scaling_for_method(o->srr_base, calib, o->whiten_lambda0, &S));
    rep->damping = S.damping;
    rep->seconds[QR_STAGE_SCALE] += qr_now() - t0;
    if (r > 0 && k != 0) {
        t0 = qr_now();
        QR_CHECK(qr_alloc_f64(&WS, d_out, d_in, "SRR scaled weight"));
        QR_CHECK(qr_alloc_f64(&U, d_out, r, "SRR U"));
        QR_CHECK(qr_alloc_f64(&sw, r, 1, "SRR singular values"));
        QR_CHECK(qr_alloc_f64(&Vt, r, d_in, "SRR Vt"));
        memcpy(WS, W, (size_t)(d_out * d_in) * sizeof(double));
        QR_CHECK(qr_scaling_apply(&S, WS, d_out, false));
        qr_method_rng(o, "srr-preserve", &rng);
        QR_CHECK(qr_svd_truncated(WS, d_out, d_in, r, &o->svd, &rng, U, sw, Vt));
        if (k < 0) {
            double tw = sum_sq(WS, d_out * d_in), te = 0.0;
            QR_CHECK(qr_alloc_f64(&se, r, 1, "SRR random singular values"));
            QR_CHECK(random_spectrum(o, &S, d_out, d_in, r, se, &te));
            k = qr_srr_kstar(sw, tw, se, te, r);
        }
        rep->seconds[QR_STAGE_DECOMPOSE] += qr_now() - t0;
    }
    if (k < 0) {
        k = 0; /* r == 0: nothing to preserve */
    }
    rep->srr_k_used = rep->srr_k_rule = k;
    if (k == 0) {
        QR_CHECK(qr_qer_step(o, W, d_out, d_in, calib->G, &S, r, &out->main, &L, &R, rep));
        QR_CHECK(qr_qlayer_set_lowrank(out, L, R, r));
        goto done;
    }

    /* L1 = U_k Σ_k into L's first k columns, R1 = Vt_k S^-1, W - L1 R1 into WS. */
    t0 = qr_now();
    QR_CHECK(qr_alloc_f64(&L, d_out, r, "correction L"));
    QR_CHECK(qr_alloc_f64(&R, r, d_in, "correction R"));
    QR_CHECK(qr_scaling_apply(&S, Vt, k, true));
    for (int64_t i = 0; i < d_out; i++) {
        for (int64_t c = 0; c < k; c++) {
            L[i * r + c] = U[i * r + c] * sw[c];
        }
    }
    memcpy(R, Vt, (size_t)(k * d_in) * sizeof(double));
    memcpy(WS, W, (size_t)(d_out * d_in) * sizeof(double));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d_out, (int)d_in, (int)k, -1.0, L,
                (int)r, R, (int)d_in, 1.0, WS, (int)d_in);
    rep->seconds[QR_STAGE_OTHER] += qr_now() - t0;

    QR_CHECK(qr_qer_step(o, WS, d_out, d_in, calib->G, &S, r - k, &out->main, &L2, &R2, rep));
    for (int64_t i = 0; i < d_out; i++) {
        for (int64_t c = k; c < r; c++) {
            L[i * r + c] = L2[i * (r - k) + (c - k)];
        }
    }
    if (r > k) {
        memcpy(R + k * d_in, R2, (size_t)((r - k) * d_in) * sizeof(double));
    }
    QR_CHECK(qr_qlayer_set_lowrank(out, L, R, r));
    if (o->srr_k < 0) {
        QR_CHECK(keep_if_better_than_base(o, W, d_out, d_in, calib, &S, L, R, WS, out, rep));
    }
done:
    qr_scaling_free(&S);
    free(WS);
    free(U);
    free(sw);
    free(Vt);
    free(se);
    free(L);
    free(R);
    free(L2);
    free(R2);
    return st;
}

const qr_method_impl qr_method_srr = {"srr", QR_METHOD_SRR, true, srr_run};

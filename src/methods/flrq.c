/* flrq.c: FLRQ (flexible low-rank quantization).
 *
 * 1) Activation-aware scaling A = W diag(s), s_j = mean|x_j| clamped and centred (as LQER's).
 * 2) Flexible rank: rank-1 components one at a time from a Gaussian sketch (v = Aᵀ(AAᵀ)^it g,
 *    normalised after every multiply; u = A v / sigma; deflate A and repeat), up to r_max =
 *    min(o->rank, the memory budget 16 r (m + n) <= budget * 4 m n). The rank kept is the largest
 *    r <= r_max with 1 + 16 r (m + n) / (4 m n) <= (4 + log2(amax_0 / amax_r)) / 4, amax_r = max|W
 * - L_r R_r| (the residual the quantizer sees); 0 when no r qualifies. 3) BLC: the quantized part
 * is refit with a clip-ratio grid (every group's range times c), then the low-rank part is refit to
 * W - W_q (SVD of the scaled error), alternating o->flrq_blc_iters times; the pair with the lowest
 * output error on the calibration statistics is kept. That error is tr((W - W^) G (W - W^)ᵀ) = ||(W
 * - W^) Z||_F^2 with Z Zᵀ = G: Z is the Cholesky factor when d_in <= QR_FLRQ_EXACT_ERR_MAX_DIN,
 * else its Gaussian sketch Z = S Omega / sqrt(p) (p = QR_FLRQ_ERR_SKETCH; the same Omega for every
 * candidate, so their comparison is consistent). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/methods/correction.h"
#include "src/methods/flrq.h"

/* max |A_ij / s_j| over A (m, n); inv_s (n) = 1 / s. */
static double residual_amax(const double *A, int64_t m, int64_t n, const double *inv_s)
{
    double a = 0.0;
    for (int64_t i = 0; i < m; i++) {
        const double *row = A + i * n; /* (n) */
        for (int64_t j = 0; j < n; j++) {
            double v = fabs(row[j] * inv_s[j]);
            a = v > a ? v : a;
        }
    }
    return a;
}

/* Flexible-rank sketch: Lb (m, r_max) and Rb (r_max, n) in the scaled space; *rank gets the rank
 * chosen by the rule (<= the number of components found). */
static qr_status flexible_rank(const qr_method_opts *o, const double *W, int64_t m, int64_t n,
                               const double *s, int64_t r_max, double *Lb, double *Rb,
                               int64_t *rank)
{
    qr_status st = QR_OK;
    double *A = NULL;     /* (m, n) scaled residual */
    double *u = NULL;     /* (m) */
    double *v = NULL;     /* (n) */
    double *inv_s = NULL; /* (n) 1 / s */
    double amax0;
    qr_rng rng;
    *rank = 0;
    QR_CHECK(qr_alloc_f64(&A, m, n, "FLRQ residual"));
    QR_CHECK(qr_alloc_f64(&u, m, 1, "FLRQ sketch u"));
    QR_CHECK(qr_alloc_f64(&v, n, 1, "FLRQ sketch v"));
    QR_CHECK(qr_alloc_f64(&inv_s, n, 1, "FLRQ inverse scale"));
    for (int64_t j = 0; j < n; j++) {
        inv_s[j] = 1.0 / s[j];
    }
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            A[i * n + j] = W[i * n + j] * s[j];
        }
    }
    amax0 = residual_amax(A, m, n, inv_s);
    qr_method_rng(o, "flrq-sketch", &rng);
    for (int64_t c = 0; c < r_max; c++) {
        double sigma, nv, amax;
        for (int64_t i = 0; i < m; i++) {
            u[i] = qr_rng_normal(&rng);
        }
        cblas_dgemv(CblasRowMajor, CblasTrans, (int)m, (int)n, 1.0, A, (int)n, u, 1, 0.0, v, 1);
        for (int it = 0; it < o->flrq_sketch_iters; it++) {
            nv = cblas_dnrm2((int)n, v, 1);
            if (!(nv > 0.0)) {
                break;
            }
            cblas_dscal((int)n, 1.0 / nv, v, 1);
            cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)n, 1.0, A, (int)n, v, 1, 0.0, u,
                        1);
            cblas_dgemv(CblasRowMajor, CblasTrans, (int)m, (int)n, 1.0, A, (int)n, u, 1, 0.0, v, 1);
        }
        nv = cblas_dnrm2((int)n, v, 1);
        if (!(nv > 0.0) || !isfinite(nv)) {
            break; /* the residual is zero: nothing left to capture */
        }
        cblas_dscal((int)n, 1.0 / nv, v, 1);
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)n, 1.0, A, (int)n, v, 1, 0.0, u, 1);
        sigma = cblas_dnrm2((int)m, u, 1);
        if (!(sigma > 0.0) || !isfinite(sigma)) {
            break;
        }
        for (int64_t i = 0; i < m; i++) {
            Lb[i * r_max + c] = u[i]; /* sigma u */
        }
        memcpy(Rb + c * n, v, (size_t)n * sizeof(double));
        cblas_dger(CblasRowMajor, (int)m, (int)n, -1.0, u, 1, v, 1, A, (int)n);
        amax = residual_amax(A, m, n, inv_s);
        if (qr_flrq_rank_pays(c + 1, m, n, amax0, amax)) {
            *rank = c + 1;
        }
    }
done:
    free(A);
    free(u);
    free(v);
    free(inv_s);
    return st;
}

/* ||(W - Wq - Wr) Z||_F^2 with Z (n, p); D (m, n) and DZ (m, p) are scratch. Wr may be NULL. */
static double output_err(const double *W, const double *Wq, const double *Wr, const double *Z,
                         int64_t m, int64_t n, int64_t p, double *D, double *DZ)
{
    double e = 0.0;
    for (int64_t i = 0; i < m * n; i++) {
        D[i] = W[i] - Wq[i] - (Wr ? Wr[i] : 0.0);
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)p, (int)n, 1.0, D, (int)n,
                Z, (int)p, 0.0, DZ, (int)p);
    for (int64_t i = 0; i < m * p; i++) {
        e += DZ[i] * DZ[i];
    }
    return e;
}

/* Z (n, p) with Z Zᵀ = G exactly (p = n) or in expectation (p = QR_FLRQ_ERR_SKETCH). */
static qr_status error_factor(const qr_method_opts *o, const qr_stats *calib, double **Z,
                              int64_t *p)
{
    qr_status st = QR_OK;
    int64_t n = calib->d;
    qr_scaling C = {0};
    double *Om = NULL; /* (n, p) Gaussian */
    qr_rng rng;
    *Z = NULL;
    QR_CHECK(qr_scaling_whiten(calib->G, n, o->whiten_lambda0, &C));
    *p = qr_flrq_error_width(n);
    if (*p == n) {
        *Z = C.chol;
        C.chol = NULL;
        goto done;
    }
    QR_CHECK(qr_alloc_f64(&Om, n, *p, "FLRQ error sketch"));
    QR_CHECK(qr_alloc_f64(Z, n, *p, "FLRQ error factor"));
    qr_method_rng(o, "flrq-error", &rng);
    for (int64_t i = 0; i < n * *p; i++) {
        Om[i] = qr_rng_normal(&rng) / sqrt((double)*p);
    }
    /* Z = C Om with C lower triangular: dtrmm in place on Om. */
    cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, (int)n, (int)*p,
                1.0, C.chol, (int)n, Om, (int)*p);
    memcpy(*Z, Om, (size_t)(n * *p) * sizeof(double));
done:
    qr_scaling_free(&C);
    free(Om);
    if (st != QR_OK) {
        qr_free(Z);
    }
    return st;
}

static qr_status flrq_run(const qr_method_opts *o, const double *W, int64_t d_out, int64_t d_in,
                          const qr_stats *calib, qr_qlayer *out, qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t m = d_out, n = d_in, r_max, r = 0, p = 0;
    qr_scaling S = {0};
    double *ma = NULL;             /* (n) mean |x_j| */
    double *Lb = NULL, *Rb = NULL; /* (m, r_max), (r_max, n) sketch components */
    double *L = NULL, *R = NULL;   /* (m, r), (r, n) current low-rank pair */
    double *bL = NULL, *bR = NULL; /* (m, r), (r, n) best pair's factors */
    double *Wr = NULL;             /* (m, n) L R */
    double *T = NULL;              /* (m, n) W - Wr, then the error for the refit */
    double *Dq = NULL;             /* (m, n) dequantized candidate */
    double *Dcur = NULL;           /* (m, n) dequantized best candidate of this iteration */
    double *D = NULL, *DZ = NULL;  /* scratch of output_err: (m, n), (m, p) */
    double *Z = NULL;              /* (n, p) */
    qr_qweight cand = {0};
    double best = INFINITY, ref, t0 = qr_now();

    r_max = qr_flrq_max_rank(o, m, n);
    QR_CHECK(qr_alloc_f64(&ma, n, 1, "FLRQ activation scale"));
    qr_stats_mean_abs(calib, ma);
    QR_CHECK(qr_scaling_diag(ma, n, &S));
    QR_CHECK(error_factor(o, calib, &Z, &p));
    rep->seconds[QR_STAGE_SCALE] += qr_now() - t0;

    t0 = qr_now();
    if (r_max > 0) {
        QR_CHECK(qr_alloc_f64(&Lb, m, r_max, "FLRQ components L"));
        QR_CHECK(qr_alloc_f64(&Rb, r_max, n, "FLRQ components R"));
        QR_CHECK(flexible_rank(o, W, m, n, S.diag, r_max, Lb, Rb, &r));
    }
    QR_CHECK(qr_alloc_f64(&Wr, m, n, "FLRQ low-rank part"));
    memset(Wr, 0, (size_t)(m * n) * sizeof(double));
    if (r > 0) {
        QR_CHECK(qr_alloc_f64(&L, m, r, "FLRQ L"));
        QR_CHECK(qr_alloc_f64(&R, r, n, "FLRQ R"));
        QR_CHECK(qr_alloc_f64(&bL, m, r, "FLRQ best L"));
        QR_CHECK(qr_alloc_f64(&bR, r, n, "FLRQ best R"));
        for (int64_t i = 0; i < m; i++) {
            memcpy(L + i * r, Lb + i * r_max, (size_t)r * sizeof(double));
        }
        memcpy(R, Rb, (size_t)(r * n) * sizeof(double));
        QR_CHECK(qr_scaling_apply(&S, R, r, true));
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)r, 1.0, L,
                    (int)r, R, (int)n, 0.0, Wr, (int)n);
    }
    rep->seconds[QR_STAGE_DECOMPOSE] += qr_now() - t0;

    QR_CHECK(qr_alloc_f64(&T, m, n, "FLRQ quantizer input"));
    QR_CHECK(qr_alloc_f64(&Dq, m, n, "FLRQ candidate"));
    QR_CHECK(qr_alloc_f64(&Dcur, m, n, "FLRQ iteration best"));
    QR_CHECK(qr_alloc_f64(&D, m, n, "FLRQ error scratch"));
    QR_CHECK(qr_alloc_f64(&DZ, m, p, "FLRQ error scratch"));
    t0 = qr_now();
    memset(T, 0, (size_t)(m * n) * sizeof(double));
    ref = output_err(W, T, NULL, Z, m, n, p, D, DZ);
    rep->seconds[QR_STAGE_OTHER] += qr_now() - t0;

    for (int it = 0; it <= o->flrq_blc_iters; it++) {
        double it_best = INFINITY;
        int n_cand = o->gptq ? 1 : QR_FLRQ_CLIP_STEPS;
        if (it > 0) {
            qr_rng rng;
            if (r == 0) {
                break; /* no low-rank part to refit: the clip search already ran */
            }
            t0 = qr_now();
            for (int64_t i = 0; i < m * n; i++) {
                T[i] = W[i] - Dcur[i];
            }
            qr_method_rng(o, "flrq-blc", &rng);
            QR_CHECK(qr_corr_lowrank(T, m, n, &S, r, &o->svd, &rng, L, R, NULL));
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)r, 1.0, L,
                        (int)r, R, (int)n, 0.0, Wr, (int)n);
            rep->seconds[QR_STAGE_DECOMPOSE] += qr_now() - t0;
        }
        for (int64_t i = 0; i < m * n; i++) {
            T[i] = W[i] - Wr[i];
        }
        for (int c = 0; c < n_cand; c++) {
            double clip = qr_flrq_clip(c), e;
            t0 = qr_now();
            if (o->gptq) {
                QR_CHECK(qr_method_quantize(o, T, m, n, calib->G, &cand, Dq));
            } else {
                QR_CHECK(qr_quantize_fixed_clip(T, m, n, &o->wq, clip, &cand, Dq));
            }
            rep->seconds[QR_STAGE_QUANTIZE] += qr_now() - t0;
            t0 = qr_now();
            e = output_err(W, Dq, Wr, Z, m, n, p, D, DZ);
            if (e < it_best) {
                it_best = e;
                memcpy(Dcur, Dq, (size_t)(m * n) * sizeof(double));
            }
            if (e < best) {
                best = e;
                rep->clip_ratio = o->gptq ? 1.0 : clip;
                qr_qweight_free(&out->main);
                out->main = cand;
                memset(&cand, 0, sizeof cand);
                if (r > 0) {
                    memcpy(bL, L, (size_t)(m * r) * sizeof(double));
                    memcpy(bR, R, (size_t)(r * n) * sizeof(double));
                }
            }
            qr_qweight_free(&cand);
            rep->seconds[QR_STAGE_OTHER] += qr_now() - t0;
        }
    }
    rep->calib_out_err = ref > 0.0 ? sqrt(best / ref) : 0.0;
    QR_CHECK(qr_qlayer_set_lowrank(out, bL, bR, r));
done:
    qr_qweight_free(&cand);
    qr_scaling_free(&S);
    free(ma);
    free(Lb);
    free(Rb);
    free(L);
    free(R);
    free(bL);
    free(bR);
    free(Wr);
    free(T);
    free(Dq);
    free(Dcur);
    free(D);
    free(DZ);
    free(Z);
    return st;
}

const qr_method_impl qr_method_flrq = {"flrq", QR_METHOD_FLRQ, true, flrq_run};

int64_t qr_flrq_max_rank(const qr_method_opts *o, int64_t m, int64_t n)
{
    double mn = (double)m * (double)n;
    double budget_r = o->flrq_mem_budget * QR_FLRQ_WBITS * mn / (16.0 * (double)(m + n));
    return (double)o->rank > budget_r ? (int64_t)floor(budget_r) : o->rank;
}

bool qr_flrq_rank_pays(int64_t r, int64_t m, int64_t n, double amax0, double amax)
{
    double cost =
        1.0 + 16.0 * (double)r * (double)(m + n) / (QR_FLRQ_WBITS * (double)m * (double)n);
    double gain = (QR_FLRQ_WBITS + (amax > 0.0 ? log2(amax0 / amax) : INFINITY)) / QR_FLRQ_WBITS;
    return cost <= gain;
}

int64_t qr_flrq_error_width(int64_t n)
{
    return n <= QR_FLRQ_EXACT_ERR_MAX_DIN ? n : QR_FLRQ_ERR_SKETCH;
}

double qr_flrq_clip(int c)
{
    return 1.0 - QR_FLRQ_CLIP_STEP * (double)c;
}

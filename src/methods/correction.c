/* correction.c: building blocks shared by the methods (src/methods/correction.h): scalings, the
 * scaled low-rank correction, the main quantizer, Gram transforms, timing and random streams. */
#include "src/methods/correction.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/alloc.h"
#include "src/checked.h"
#include "src/linalg.h"
#include "src/stage.h"

qr_status qr_alloc_f64(double **p, int64_t n1, int64_t n2, const char *what)
{
    size_t n;
    if (n1 < 0 || n2 < 0 || !qr_mul_size((size_t)n1, (size_t)n2, &n)) {
        return qr_fail(QR_ERR_INPUT, "%s: size overflows (%lld x %lld)", what, (long long)n1,
                       (long long)n2);
    }
    return qr_malloc(p, n, sizeof(double), what);
}

void qr_method_rng(const qr_method_opts *o, const char *stage, qr_rng *rng)
{
    const char *name = o->module_name ? o->module_name : "module";
    qr_rng_for_name(rng, name, o->seed ^ qr_hash_str(stage));
}

void qr_scaling_free(qr_scaling *S)
{
    if (!S) {
        return;
    }
    free(S->diag);
    if (!S->borrowed) {
        free(S->chol);
    }
    memset(S, 0, sizeof *S);
}

qr_status qr_scaling_diag(const double *v, int64_t d, qr_scaling *S)
{
    double lo = INFINITY, hi = 0.0, c;
    memset(S, 0, sizeof *S);
    QR_TRY(qr_alloc_f64(&S->diag, d, 1, "diagonal scaling"));
    S->d = d;
    for (int64_t j = 0; j < d; j++) {
        double s = isfinite(v[j]) && v[j] > QR_SCALE_FLOOR ? v[j] : QR_SCALE_FLOOR;
        S->diag[j] = s;
        lo = s < lo ? s : lo;
        hi = s > hi ? s : hi;
    }
    /* Centring on 1 changes nothing in exact arithmetic (L R is scale invariant) but keeps E S
     * near the magnitude of E. */
    c = sqrt(lo * hi);
    for (int64_t j = 0; j < d; j++) {
        S->diag[j] /= c;
    }
    return QR_OK;
}

qr_status qr_scaling_lqer(const qr_stats *st, qr_scaling *S)
{
    return qr_scaling_diag(st->batch_mean_abs_max, st->d, S);
}

qr_status qr_scaling_qera_approx(const qr_stats *st, qr_scaling *S)
{
    qr_status st_ = QR_OK;
    double *v = NULL; /* (d) rms */
    QR_TRY(qr_alloc_f64(&v, st->d, 1, "QERA-approx scale"));
    qr_stats_rms(st, v);
    st_ = qr_scaling_diag(v, st->d, S);
    free(v);
    return st_;
}

qr_status qr_scaling_whiten(const double *G, int64_t d, double lambda0, qr_scaling *S)
{
    qr_status st = QR_OK;
    memset(S, 0, sizeof *S);
    QR_CHECK(qr_alloc_f64(&S->chol, d, d, "whitening factor"));
    memcpy(S->chol, G, (size_t)(d * d) * sizeof(double));
    S->d = d;
    QR_CHECK(qr_cholesky_damped(S->chol, d, lambda0, &S->damping));
done:
    if (st != QR_OK) {
        qr_scaling_free(S);
    }
    return st;
}

/* The whitening of st, factored once per input group (the statistics' cache). */
static qr_status whitening_cached(const qr_stats *st, double lambda0, qr_scaling *S)
{
    qr_stats_cache *c = st->cache;
    if (!c) {
        qr_stage_mark("whitening");
        return qr_scaling_whiten(st->G, st->d, lambda0, S);
    }
    if (!c->chol || c->lambda0 != lambda0) {
        qr_stage_mark("whitening");
        free(c->chol);
        c->chol = NULL;
        QR_TRY(qr_scaling_whiten(st->G, st->d, lambda0, S));
        c->chol = S->chol;
        c->lambda0 = lambda0;
        c->damping = S->damping;
        S->borrowed = true;
        return QR_OK;
    }
    memset(S, 0, sizeof *S);
    S->d = st->d;
    S->chol = c->chol;
    S->damping = c->damping;
    S->borrowed = true;
    return QR_OK;
}

qr_status qr_scaling_for_method(qr_method_id m, const qr_stats *st, double lambda0, qr_scaling *S)
{
    switch (m) {
    case QR_METHOD_LQER:
        return qr_scaling_lqer(st, S);
    case QR_METHOD_QERA_APPROX:
        return qr_scaling_qera_approx(st, S);
    case QR_METHOD_QERA_EXACT:
        return whitening_cached(st, lambda0, S);
    default:
        memset(S, 0, sizeof *S);
        return qr_fail(QR_ERR_INPUT,
                       "scaling: method %s has no input scaling (expected lqer, qera-approx or "
                       "qera-exact)",
                       qr_method_name(m));
    }
}

qr_status qr_scaling_apply(const qr_scaling *S, double *A, int64_t m, bool inverse)
{
    int64_t d = S->d;
    if (S->chol) {
        return qr_tri_right(A, m, d, S->chol, false, inverse);
    }
    if (S->diag) {
        for (int64_t i = 0; i < m; i++) {
            double *row = A + i * d; /* (d) */
            for (int64_t j = 0; j < d; j++) {
                row[j] = inverse ? row[j] / S->diag[j] : row[j] * S->diag[j];
            }
        }
    }
    return QR_OK;
}

/* Whether the truncated SVD of an (m, n) matrix at rank r takes the randomized path (the one rule,
 * qr_svd_path in src/linalg.h). */
static bool svd_is_randomized(const qr_svd_opts *o, int64_t m, int64_t n, int64_t r)
{
    return o->oversample >= 0 && o->power_iters >= 0 &&
           qr_svd_path(o, m, n, r, NULL) == QR_SVD_RANDOMIZED;
}

/* Randomized rank-r SVD of A = E C without forming A (E (m, n), C (n, n) lower triangular): the
 * range finder of src/linalg.h with every product by A split into a product by E (m n l) and a
 * triangular product by C (n^2 l / 2), instead of the m n^2 / 2 of forming E C. U (m, r), sv (r),
 * Vt (r, n). Requires svd_is_randomized(o, m, n, r). */
static qr_status svd_whitened_randomized(const double *E, int64_t m, int64_t n, const double *C,
                                         int64_t r, const qr_svd_opts *o, qr_rng *rng, double *U,
                                         double *sv, double *Vt)
{
    qr_status st = QR_OK;
    int64_t l = r + o->oversample;
    int mi = (int)m, ni = (int)n, li = (int)l;
    double *Y = NULL;  /* (m, l) basis of the range of A */
    double *Z = NULL;  /* (n, l) test matrix, then C times a basis of the range of Aᵀ */
    double *B = NULL;  /* (l, n) Yᵀ A */
    double *Ub = NULL; /* (l, l) */
    double *Sb = NULL; /* (l) */
    double *Vb = NULL; /* (l, n) */
    QR_CHECK(qr_alloc_f64(&Y, m, l, "whitened SVD sketch"));
    QR_CHECK(qr_alloc_f64(&Z, n, l, "whitened SVD test matrix"));
    QR_CHECK(qr_alloc_f64(&B, l, n, "whitened SVD projection"));
    QR_CHECK(qr_alloc_f64(&Ub, l, l, "whitened SVD U_B"));
    QR_CHECK(qr_alloc_f64(&Sb, l, 1, "whitened SVD S_B"));
    QR_CHECK(qr_alloc_f64(&Vb, l, n, "whitened SVD Vt_B"));
    for (int64_t i = 0; i < n * l; i++) {
        Z[i] = qr_rng_normal(rng);
    }
    for (int it = 0;; it++) {
        /* Y = E (C Z), orthonormalised */
        cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, ni, li, 1.0,
                    C, ni, Z, li);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, mi, li, ni, 1.0, E, ni, Z, li, 0.0,
                    Y, li);
        QR_CHECK(qr_orthonormalize(Y, m, l));
        if (it == o->power_iters) {
            break;
        }
        /* Z = Cᵀ (Eᵀ Y), orthonormalised: re-orthonormalising after every product keeps the
         * small singular directions from being lost to rounding. */
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ni, li, mi, 1.0, E, ni, Y, li, 0.0, Z,
                    li);
        cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, ni, li, 1.0, C,
                    ni, Z, li);
        QR_CHECK(qr_orthonormalize(Z, n, l));
    }
    /* B = (Yᵀ E) C */
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, li, ni, mi, 1.0, Y, li, E, ni, 0.0, B, ni);
    cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, li, ni, 1.0, C,
                ni, B, ni);
    QR_CHECK(qr_svd(B, l, n, Ub, Sb, Vb));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, mi, (int)r, li, 1.0, Y, li, Ub, li, 0.0,
                U, (int)r);
    memcpy(sv, Sb, (size_t)r * sizeof(double));
    memcpy(Vt, Vb, (size_t)(r * n) * sizeof(double));
done:
    free(Y);
    free(Z);
    free(B);
    free(Ub);
    free(Sb);
    free(Vb);
    return st;
}

bool qr_scaled_svd_implicit(const qr_scaling *S, int64_t m, int64_t n, int64_t r,
                            const qr_svd_opts *svd)
{
    return S->chol != NULL && svd_is_randomized(svd, m, n, r);
}

qr_status qr_scaled_svd(const double *A, int64_t m, int64_t n, const qr_scaling *S, int64_t r,
                        const qr_svd_opts *svd, qr_rng *rng, double *U, double *sv, double *Vt)
{
    qr_status st = QR_OK;
    double *AS = NULL; /* (m, n) A S when formed */
    int tmp;
    if (!qr_to_int(m, &tmp) || !qr_to_int(n, &tmp)) {
        return qr_fail(QR_ERR_INPUT, "scaled SVD: size does not fit a LAPACK int (%lld x %lld)",
                       (long long)m, (long long)n);
    }
    qr_stage_mark("SVD");
    if (rng && qr_scaled_svd_implicit(S, m, n, r, svd)) {
        return svd_whitened_randomized(A, m, n, S->chol, r, svd, rng, U, sv, Vt);
    }
    QR_CHECK(qr_alloc_f64(&AS, m, n, "scaled matrix"));
    memcpy(AS, A, (size_t)(m * n) * sizeof(double));
    QR_CHECK(qr_scaling_apply(S, AS, m, false));
    QR_CHECK(qr_svd_truncated(AS, m, n, r, svd, rng, U, sv, Vt));
done:
    free(AS);
    return st;
}

qr_status qr_corr_lowrank(const double *E, int64_t d_out, int64_t d_in, const qr_scaling *S,
                          int64_t r, const qr_svd_opts *svd, qr_rng *rng, double *L, double *R,
                          double *sigma)
{
    qr_status st = QR_OK;
    double *sv = NULL; /* (r) */
    if (r == 0) {
        return QR_OK;
    }
    if (r < 0 || r > d_out || r > d_in || S->d != d_in) {
        return qr_fail(QR_ERR_INPUT,
                       "low-rank correction: rank or scaling size (expected 0 <= r <= %lld and "
                       "scaling of %lld channels, found r = %lld, %lld channels)",
                       (long long)(d_out < d_in ? d_out : d_in), (long long)d_in, (long long)r,
                       (long long)S->d);
    }
    QR_CHECK(qr_alloc_f64(&sv, r, 1, "singular values"));
    QR_CHECK(qr_scaled_svd(E, d_out, d_in, S, r, svd, rng, L, sv, R));
    for (int64_t i = 0; i < d_out; i++) {
        for (int64_t k = 0; k < r; k++) {
            L[i * r + k] *= sv[k];
        }
    }
    QR_CHECK(qr_scaling_apply(S, R, r, true));
    if (sigma) {
        memcpy(sigma, sv, (size_t)r * sizeof(double));
    }
done:
    free(sv);
    return st;
}

qr_status qr_qlayer_set_lowrank(qr_qlayer *out, const double *L, const double *R, int64_t r)
{
    qr_status st = QR_OK;
    if (r == 0) {
        out->rank = 0;
        return QR_OK;
    }
    QR_CHECK(qr_malloc(&out->L, (size_t)(out->d_out * r), sizeof(float), "correction L"));
    QR_CHECK(qr_malloc(&out->R, (size_t)(r * out->d_in), sizeof(float), "correction R"));
    for (int64_t i = 0; i < out->d_out * r; i++) {
        out->L[i] = (float)L[i];
    }
    for (int64_t i = 0; i < r * out->d_in; i++) {
        out->R[i] = (float)R[i];
    }
    out->rank = r;
done:
    if (st != QR_OK) {
        free(out->L);
        free(out->R);
        out->L = NULL;
        out->R = NULL;
    }
    return st;
}

qr_status qr_method_quantize(const qr_method_opts *o, const double *W, int64_t d_out, int64_t d_in,
                             const double *H, qr_qweight *q, double *deq)
{
    qr_status st = QR_OK;
    double *cw = NULL; /* (d_in) diag(H): column weights of the clip search */
    qr_stage_mark("quantize");
    if (o->gptq) {
        if (!H) {
            return qr_fail(QR_ERR_INPUT, "%s: GPTQ needs calibration statistics (found none)",
                           o->module_name ? o->module_name : "module");
        }
        QR_CHECK(qr_quantize_gptq(W, d_out, d_in, H, &o->wq, q));
    } else {
        if (H && o->wq.clip_search) {
            QR_CHECK(qr_alloc_f64(&cw, d_in, 1, "clip column weights"));
            for (int64_t j = 0; j < d_in; j++) {
                cw[j] = H[j * d_in + j];
            }
        }
        QR_CHECK(qr_quantize_rtn(W, d_out, d_in, &o->wq, cw, q));
    }
    if (deq) {
        qr_qweight_dequantize_f64(q, deq);
    }
done:
    free(cw);
    return st;
}

qr_status qr_quantize_fixed_clip(const double *W, int64_t d_out, int64_t d_in,
                                 const qr_wquant_opts *wq, double clip, qr_qweight *q, double *deq)
{
    QR_TRY(qr_qweight_alloc(q, d_out, d_in, wq->group, wq->asym));
    for (int64_t i = 0; i < d_out; i++) {
        const double *row = W + i * d_in; /* (d_in) */
        for (int64_t g = 0; g < q->n_groups; g++) {
            int64_t j0 = g * q->group;
            int64_t n = (j0 + q->group <= d_in) ? q->group : d_in - j0;
            float scale;
            unsigned zero;
            qr_wquant_group_params(row + j0, n, wq->asym, clip, &scale, &zero);
            q->scales[i * q->n_groups + g] = scale;
            if (wq->asym) {
                q->zeros[i * q->n_groups + g] = (uint8_t)zero;
            }
            for (int64_t j = j0; j < j0 + n; j++) {
                unsigned code = qr_wquant_code(row[j], scale, zero, wq->asym);
                qr_qweight_set_code(q, i, j, code);
                if (deq) {
                    deq[i * d_in + j] = qr_wquant_decode(code, scale, zero, wq->asym);
                }
            }
        }
    }
    return QR_OK;
}

void qr_gram_transform(const double *G, int64_t d, const int32_t *perm, const float *s, double *Gt)
{
    for (int64_t a = 0; a < d; a++) {
        int64_t pa = perm ? perm[a] : a;
        double sa = s ? (double)s[a] : 1.0;
        for (int64_t b = 0; b < d; b++) {
            int64_t pb = perm ? perm[b] : b;
            double sb = s ? (double)s[b] : 1.0;
            Gt[a * d + b] = G[pa * d + pb] / (sa * sb);
        }
    }
}

qr_status qr_qer_step(const qr_method_opts *o, const double *Wm, int64_t d_out, int64_t d_in,
                      const double *H, const qr_scaling *S, int64_t r, qr_qweight *q, double **L,
                      double **R, qr_method_report *rep)
{
    qr_status st = QR_OK;
    double *E = NULL; /* (d_out, d_in): Wm - deq(Q) */
    qr_rng rng;
    double t0 = qr_now();
    *L = NULL;
    *R = NULL;
    QR_CHECK(qr_alloc_f64(&E, d_out, d_in, "quantization error"));
    QR_CHECK(qr_method_quantize(o, Wm, d_out, d_in, H, q, E));
    rep->seconds[QR_STAGE_QUANTIZE] += qr_now() - t0;
    t0 = qr_now();
    for (int64_t i = 0; i < d_out * d_in; i++) {
        E[i] = Wm[i] - E[i];
    }
    rep->seconds[QR_STAGE_OTHER] += qr_now() - t0;
    if (r > 0) {
        t0 = qr_now();
        QR_CHECK(qr_alloc_f64(L, d_out, r, "correction L"));
        QR_CHECK(qr_alloc_f64(R, r, d_in, "correction R"));
        qr_method_rng(o, "correction", &rng);
        QR_CHECK(qr_corr_lowrank(E, d_out, d_in, S, r, &o->svd, &rng, *L, *R, NULL));
        rep->seconds[QR_STAGE_DECOMPOSE] += qr_now() - t0;
    }
done:
    free(E);
    if (st != QR_OK) {
        qr_qweight_free(q);
        qr_free(L);
        qr_free(R);
    }
    return st;
}

qr_status qr_qer_run(qr_method_id base, const qr_method_opts *o, const double *W, int64_t d_out,
                     int64_t d_in, const qr_stats *calib, qr_qlayer *out, qr_method_report *rep)
{
    qr_status st = QR_OK;
    qr_scaling S = {0};
    double *L = NULL; /* (d_out, r) */
    double *R = NULL; /* (r, d_in) */
    double t0 = qr_now();
    QR_CHECK(qr_scaling_for_method(base, calib, o->whiten_lambda0, &S));
    rep->damping = S.damping;
    rep->seconds[QR_STAGE_SCALE] += qr_now() - t0;
    QR_CHECK(qr_qer_step(o, W, d_out, d_in, calib->G, &S, o->rank, &out->main, &L, &R, rep));
    QR_CHECK(qr_qlayer_set_lowrank(out, L, R, o->rank));
done:
    qr_scaling_free(&S);
    free(L);
    free(R);
    return st;
}

static int channel_score_desc(const void *a, const void *b)
{
    const qr_channel_score *x = a, *y = b;
    if (x->v != y->v) {
        return x->v > y->v ? -1 : 1;
    }
    return x->j < y->j ? -1 : (x->j > y->j);
}

void qr_channel_sort_desc(qr_channel_score *c, int64_t d)
{
    if (d > 1) {
        qsort(c, (size_t)d, sizeof *c, channel_score_desc);
    }
}

qr_status qr_scaled_error(const qr_scaling *S, const double *W, const qr_qweight *q,
                          const double *L, const double *R, int64_t r, int64_t d_out, int64_t d_in,
                          double *D, double *err)
{
    double s = 0.0;
    qr_qweight_dequantize_f64(q, D);
    for (int64_t i = 0; i < d_out * d_in; i++) {
        D[i] = W[i] - D[i];
    }
    if (r > 0) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d_out, (int)d_in, (int)r, -1.0,
                    L, (int)r, R, (int)d_in, 1.0, D, (int)d_in);
    }
    QR_TRY(qr_scaling_apply(S, D, d_out, false));
    for (int64_t i = 0; i < d_out * d_in; i++) {
        s += D[i] * D[i];
    }
    *err = s;
    return QR_OK;
}

void qr_smooth_factors(const double *W, int64_t d_out, int64_t d_in, const double *max_abs,
                       double alpha, double *wmax, float *s)
{
    for (int64_t j = 0; j < d_in; j++) {
        wmax[j] = 0.0;
    }
    for (int64_t i = 0; i < d_out; i++) {
        for (int64_t j = 0; j < d_in; j++) {
            double a = fabs(W[i * d_in + j]);
            wmax[j] = a > wmax[j] ? a : wmax[j];
        }
    }
    qr_smooth_from_maxima(max_abs, wmax, d_in, alpha, s);
}

void qr_smooth_from_maxima(const double *max_abs, const double *wmax, int64_t d_in, double alpha,
                           float *s)
{
    for (int64_t j = 0; j < d_in; j++) {
        double a = max_abs[j], v = 1.0;
        if (a > 0.0 && wmax[j] > 0.0) {
            v = pow(a, alpha) / pow(wmax[j], 1.0 - alpha);
        }
        v = v < QR_SMOOTH_MIN ? QR_SMOOTH_MIN : (v > QR_SMOOTH_MAX ? QR_SMOOTH_MAX : v);
        s[j] = (float)v;
    }
}

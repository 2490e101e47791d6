/* metrics.c: per-module error metrics (src/metrics.h). */
#include "src/metrics.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"
#include "src/checked.h"
#include "src/qlayer_ref.h"
#include "src/quant.h"

/* Y (n, d_out) = X Wᵀ in float64. */
static qr_status reference_output(const double *W, int64_t d_out, int64_t d_in, const float *X,
                                  int64_t n, double *Y)
{
    double *Xd = NULL; /* (n, d_in) */
    QR_TRY(qr_malloc(&Xd, (size_t)n * (size_t)d_in, sizeof *Xd, "metrics input"));
    for (int64_t i = 0; i < n * d_in; i++) {
        Xd[i] = (double)X[i];
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)d_out, (int)d_in, 1.0, Xd,
                (int)d_in, W, (int)d_in, 0.0, Y, (int)d_out);
    free(Xd);
    return QR_OK;
}

double qr_metrics_rel(double num, double den)
{
    return den > 0.0 ? sqrt(num / den) : (num > 0.0 ? INFINITY : 0.0);
}

static double rel_diff(const double *Y, const double *Yh, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = Y[i] - Yh[i];
        num += d * d;
        den += Y[i] * Y[i];
    }
    return qr_metrics_rel(num, den);
}

/* SQNR, bits and the method's stage times: the same for both paths. */
static void finish(const qr_qlayer *ql, const qr_method_report *rep, qr_metrics *m)
{
    m->sqnr_db = m->out_rel_err > 0.0 ? -20.0 * log10(m->out_rel_err) : INFINITY;
    m->bits_per_weight = ql->bits_per_weight;
    if (rep) {
        for (int s = 0; s < QR_STAGE_COUNT; s++) {
            m->seconds[s] = rep->seconds[s];
            m->seconds_total += rep->seconds[s];
        }
    }
}

static qr_status check_sizes(const qr_qlayer *ql, int64_t n)
{
    int tmp;
    if (n < 1 || !qr_to_int(n, &tmp) || !qr_to_int(ql->d_out, &tmp) || !qr_to_int(ql->d_in, &tmp) ||
        ql->d_out < 1 || ql->d_in < 1) {
        return qr_fail(QR_ERR_INPUT,
                       "metrics: sizes (expected n >= 1 and a >= 1 x 1 layer, found n = %lld, "
                       "%lld x %lld)",
                       (long long)n, (long long)ql->d_out, (long long)ql->d_in);
    }
    return QR_OK;
}

qr_status qr_metrics_output_error(const qr_qlayer *ql, const double *W, const float *X, int64_t n,
                                  int abits, int64_t agroup, double *rel)
{
    qr_status st = QR_OK;
    double *Y = NULL, *Yh = NULL; /* (n, d_out) */
    QR_TRY(check_sizes(ql, n));
    QR_CHECK(qr_malloc(&Y, (size_t)n * (size_t)ql->d_out, sizeof *Y, "metrics output"));
    QR_CHECK(qr_malloc(&Yh, (size_t)n * (size_t)ql->d_out, sizeof *Yh, "metrics output"));
    QR_CHECK(reference_output(W, ql->d_out, ql->d_in, X, n, Y));
    QR_CHECK(qr_qlayer_forward_ref(ql, X, n, abits, agroup, Yh));
    *rel = rel_diff(Y, Yh, n * ql->d_out);
done:
    free(Y);
    free(Yh);
    return st;
}

qr_status qr_metrics_compute(const qr_qlayer *ql, const double *W, const float *X, int64_t n,
                             int64_t agroup, const qr_method_report *rep, qr_metrics *m)
{
    qr_status st = QR_OK;
    int64_t d_out = ql->d_out, d_in = ql->d_in;
    double *Y = NULL, *Yh = NULL; /* (n, d_out) */
    double *We = NULL;            /* (d_out, d_in) effective weight */
    double num = 0.0, den = 0.0;
    memset(m, 0, sizeof *m);
    m->out_rel_err_a4g = NAN;
    QR_TRY(check_sizes(ql, n));
    if (agroup < 0) {
        return qr_fail(QR_ERR_INPUT, "metrics: activation group (expected >= 0, found %lld)",
                       (long long)agroup);
    }
    QR_CHECK(qr_malloc(&We, (size_t)d_out * (size_t)d_in, sizeof *We, "metrics effective weight"));
    QR_CHECK(qr_qlayer_effective_weight(ql, We));
    for (int64_t i = 0; i < d_out * d_in; i++) {
        double d = W[i] - We[i];
        num += d * d;
        den += W[i] * W[i];
    }
    m->weight_rel_err = qr_metrics_rel(num, den);
    free(We);
    We = NULL;

    QR_CHECK(qr_malloc(&Y, (size_t)n * (size_t)d_out, sizeof *Y, "metrics output"));
    QR_CHECK(qr_malloc(&Yh, (size_t)n * (size_t)d_out, sizeof *Yh, "metrics output"));
    QR_CHECK(reference_output(W, d_out, d_in, X, n, Y));
    QR_CHECK(qr_qlayer_forward_ref(ql, X, n, 0, 0, Yh));
    m->out_rel_err = rel_diff(Y, Yh, n * d_out);
    QR_CHECK(qr_qlayer_forward_ref(ql, X, n, 8, 0, Yh));
    m->out_rel_err_a8 = rel_diff(Y, Yh, n * d_out);
    QR_CHECK(qr_qlayer_forward_ref(ql, X, n, 4, 0, Yh));
    m->out_rel_err_a4 = rel_diff(Y, Yh, n * d_out);
    if (agroup > 0) {
        QR_CHECK(qr_qlayer_forward_ref(ql, X, n, 4, agroup, Yh));
        m->out_rel_err_a4g = rel_diff(Y, Yh, n * d_out);
    }
    finish(ql, rep, m);
done:
    free(Y);
    free(Yh);
    free(We);
    return st;
}

qr_status qr_metric_ref_init(qr_metric_ref *r, const double *W, int64_t d_out, int64_t d_in,
                             const float *X, int64_t n)
{
    qr_status st = QR_OK;
    float *Wf = NULL; /* (d_out, d_in) */
    int tmp;
    memset(r, 0, sizeof *r);
    if (n < 1 || d_out < 1 || d_in < 1 || !qr_to_int(n, &tmp) || !qr_to_int(d_out, &tmp) ||
        !qr_to_int(d_in, &tmp)) {
        return qr_fail(QR_ERR_INPUT,
                       "metrics: sizes (expected n >= 1 and a >= 1 x 1 layer, found n = %lld, "
                       "%lld x %lld)",
                       (long long)n, (long long)d_out, (long long)d_in);
    }
    QR_CHECK(qr_malloc(&Wf, (size_t)d_out * (size_t)d_in, sizeof *Wf, "metrics weight"));
    QR_CHECK(qr_malloc(&r->Y, (size_t)n * (size_t)d_out, sizeof *r->Y, "metrics output"));
    for (int64_t i = 0; i < d_out * d_in; i++) {
        Wf[i] = (float)W[i];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)d_out, (int)d_in, 1.0f, X,
                (int)d_in, Wf, (int)d_in, 0.0f, r->Y, (int)d_out);
    for (int64_t i = 0; i < n * d_out; i++) {
        r->y_sumsq += (double)r->Y[i] * (double)r->Y[i];
    }
    r->X = X;
    r->n = n;
    r->d_out = d_out;
    r->d_in = d_in;
done:
    free(Wf);
    if (st != QR_OK) {
        qr_metric_ref_free(r);
    }
    return st;
}

void qr_metric_ref_free(qr_metric_ref *r)
{
    if (r) {
        free(r->Y);
        memset(r, 0, sizeof *r);
    }
}

void qr_metric_rows_transform(const float *X, int64_t n, int64_t d, const int32_t *perm,
                              const float *smooth, int bits, int64_t agroup, double *tmp, float *T)
{
    for (int64_t t = 0; t < n; t++) {
        for (int64_t j = 0; j < d; j++) {
            int64_t src = perm ? perm[j] : j;
            double s = smooth ? (double)smooth[j] : 1.0;
            tmp[j] = (double)X[t * d + src] / s;
        }
        if (bits > 0) {
            qr_act_fake_quant(tmp, 1, d, bits, agroup); /* per token: one row at a time */
        }
        for (int64_t j = 0; j < d; j++) {
            T[t * d + j] = (float)tmp[j];
        }
    }
}

/* ||W - W_eff||² from W_t, with W_eff[:, perm[j]] = W_t[:, j] / smooth[j]. */
static double weight_err_sumsq(const qr_qlayer *ql, const double *W, const double *Wt)
{
    double num = 0.0;
    for (int64_t i = 0; i < ql->d_out; i++) {
        for (int64_t j = 0; j < ql->d_in; j++) {
            int64_t src = ql->perm ? ql->perm[j] : j;
            double s = ql->smooth ? (double)ql->smooth[j] : 1.0;
            double d = W[i * ql->d_in + src] - Wt[i * ql->d_in + j] / s;
            num += d * d;
        }
    }
    return num;
}

bool qr_metrics_wanted(int a, int64_t agroup, int width)
{
    static const int widths[4] = {0, 8, 4, 4};
    if (a == 3 && agroup <= 0) {
        return false;
    }
    return width == QR_METRICS_ALL || (a < 3 && widths[a] == width);
}

qr_status qr_metrics_fast(const qr_metric_ref *r, const qr_qlayer *ql, const double *W,
                          int64_t agroup, int width, const qr_method_report *rep, qr_metrics *m)
{
    static const int bits[4] = {0, 8, 4, 4};
    qr_status st = QR_OK;
    int64_t d_out = ql->d_out, d_in = ql->d_in, n = r->n;
    double *Wt = NULL, *tmp = NULL; /* (d_out, d_in), (d_in) */
    float *Wtf = NULL, *T = NULL, *Z = NULL;
    double *out[4] = {&m->out_rel_err, &m->out_rel_err_a8, &m->out_rel_err_a4, &m->out_rel_err_a4g};
    double den = 0.0;
    memset(m, 0, sizeof *m);
    m->out_rel_err_a4g = NAN;
    if (d_out != r->d_out || d_in != r->d_in || agroup < 0) {
        return qr_fail(QR_ERR_INPUT,
                       "metrics: layer %lld x %lld (agroup %lld) against reference outputs of "
                       "%lld x %lld (expected the same shape, agroup >= 0)",
                       (long long)d_out, (long long)d_in, (long long)agroup, (long long)r->d_out,
                       (long long)r->d_in);
    }
    QR_TRY(qr_qlayer_check(ql, "metrics"));
    QR_CHECK(qr_malloc(&Wt, (size_t)d_out * (size_t)d_in, sizeof *Wt, "metrics weight"));
    QR_CHECK(qr_malloc(&Wtf, (size_t)d_out * (size_t)d_in, sizeof *Wtf, "metrics weight"));
    QR_CHECK(qr_malloc(&tmp, (size_t)d_in, sizeof *tmp, "metrics rows"));
    QR_CHECK(qr_malloc(&T, (size_t)n * (size_t)d_in, sizeof *T, "metrics rows"));
    QR_CHECK(qr_malloc(&Z, (size_t)n * (size_t)d_out, sizeof *Z, "metrics output"));
    QR_CHECK(qr_qlayer_weight_t(ql, Wt));
    for (int64_t i = 0; i < d_out * d_in; i++) {
        Wtf[i] = (float)Wt[i];
        den += W[i] * W[i];
    }
    m->weight_rel_err = qr_metrics_rel(weight_err_sumsq(ql, W, Wt), den);
    for (int a = 0; a < 4; a++) {
        double num = 0.0;
        if (!qr_metrics_wanted(a, agroup, width)) {
            *out[a] = NAN;
            continue;
        }
        qr_metric_rows_transform(r->X, n, d_in, ql->perm, ql->smooth, bits[a], a == 3 ? agroup : 0,
                                 tmp, T);
        memcpy(Z, r->Y, (size_t)(n * d_out) * sizeof *Z);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)d_out, (int)d_in, -1.0f,
                    T, (int)d_in, Wtf, (int)d_in, 1.0f, Z, (int)d_out);
        for (int64_t i = 0; i < n * d_out; i++) {
            num += (double)Z[i] * (double)Z[i];
        }
        *out[a] = qr_metrics_rel(num, r->y_sumsq);
    }
    finish(ql, rep, m);
done:
    free(Wt);
    free(Wtf);
    free(tmp);
    free(T);
    free(Z);
    return st;
}

qr_status qr_metrics_calib_error(const double *W, const double *W_eff, const double *G,
                                 int64_t d_out, int64_t d_in, double *rel)
{
    qr_status st = QR_OK;
    double *D = NULL;  /* (d_out, d_in) W - W_eff */
    double *DG = NULL; /* (d_out, d_in) D G, then W G */
    double num = 0.0, den = 0.0;
    int tmp;
    if (d_out < 1 || d_in < 1 || !qr_to_int(d_out, &tmp) || !qr_to_int(d_in, &tmp)) {
        return qr_fail(QR_ERR_INPUT,
                       "calibration error: shape (expected >= 1 x 1, found %lld x %lld)",
                       (long long)d_out, (long long)d_in);
    }
    QR_CHECK(qr_malloc(&D, (size_t)d_out * (size_t)d_in, sizeof *D, "calibration error"));
    QR_CHECK(qr_malloc(&DG, (size_t)d_out * (size_t)d_in, sizeof *DG, "calibration error"));
    for (int64_t i = 0; i < d_out * d_in; i++) {
        D[i] = W[i] - W_eff[i];
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d_out, (int)d_in, (int)d_in, 1.0, D,
                (int)d_in, G, (int)d_in, 0.0, DG, (int)d_in);
    for (int64_t i = 0; i < d_out * d_in; i++) {
        num += DG[i] * D[i];
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d_out, (int)d_in, (int)d_in, 1.0, W,
                (int)d_in, G, (int)d_in, 0.0, DG, (int)d_in);
    for (int64_t i = 0; i < d_out * d_in; i++) {
        den += DG[i] * W[i];
    }
    num = num < 0.0 ? 0.0 : num; /* G is PSD: a negative value is rounding */
    *rel = qr_metrics_rel(num, den);
done:
    free(D);
    free(DG);
    return st;
}

/* stats.c: float64 activation statistics accumulated over row chunks and merged in a fixed order
 * (src/stats.h). */
#include "src/stats.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"
#include "src/checked.h"

qr_status qr_stats_create(int64_t d, qr_stats **out)
{
    qr_status st = QR_OK;
    qr_stats *s = NULL;
    size_t dd;
    int di;
    *out = NULL;
    if (d < 1 || !qr_to_int(d, &di) || !qr_mul_size((size_t)d, (size_t)d, &dd)) {
        return qr_fail(QR_ERR_INPUT, "statistics: channel count (expected 1..%d, found %lld)",
                       (int)INT32_MAX, (long long)d);
    }
    QR_CHECK(qr_calloc(&s, 1, sizeof *s, "statistics"));
    s->d = d;
    QR_CHECK(qr_calloc(&s->G, dd, sizeof *s->G, "statistics Gram matrix"));
    QR_CHECK(qr_calloc(&s->max_abs, (size_t)d, sizeof(double), "statistics max|x|"));
    QR_CHECK(qr_calloc(&s->sum_abs, (size_t)d, sizeof(double), "statistics sum|x|"));
    QR_CHECK(qr_calloc(&s->sum_sq, (size_t)d, sizeof(double), "statistics sum x^2"));
    QR_CHECK(
        qr_calloc(&s->batch_mean_abs_max, (size_t)d, sizeof(double), "statistics batch mean|x|"));
    QR_CHECK(qr_calloc(&s->cache, 1, sizeof *s->cache, "statistics cache"));
    *out = s;
    s = NULL;
done:
    qr_stats_free(&s);
    return st;
}

void qr_stats_free(qr_stats **s)
{
    if (!s || !*s) {
        return;
    }
    free((*s)->G);
    free((*s)->max_abs);
    free((*s)->sum_abs);
    free((*s)->sum_sq);
    free((*s)->batch_mean_abs_max);
    if ((*s)->cache) {
        free((*s)->cache->chol);
        free((*s)->cache);
    }
    free(*s);
    *s = NULL;
}

/* New rows change G: a cached factor no longer belongs to it. */
static void drop_cache(qr_stats *s)
{
    if (s->cache) {
        free(s->cache->chol);
        s->cache->chol = NULL;
    }
}

qr_status qr_stats_add(qr_stats *s, const float *X, int64_t n)
{
    qr_status st = QR_OK;
    int64_t d = s->d;
    int64_t chunk = n < QR_STATS_CHUNK_ROWS ? n : QR_STATS_CHUNK_ROWS;
    double *buf = NULL;  /* (chunk, d) float64 copy of the rows */
    double *babs = NULL; /* (d) this batch's sum |x_j| */
    if (n < 0) {
        return qr_fail(QR_ERR_INPUT, "statistics: row count (expected >= 0, found %lld)",
                       (long long)n);
    }
    if (n == 0) {
        return QR_OK;
    }
    drop_cache(s);
    /* Check everything first, so a bad batch leaves the accumulator as it was. */
    for (int64_t t = 0; t < n; t++) {
        for (int64_t j = 0; j < d; j++) {
            if (!isfinite(X[t * d + j])) {
                return qr_fail(QR_ERR_INPUT,
                               "statistics: activation (%lld, %lld) is not finite (expected a "
                               "finite value, found %g)",
                               (long long)t, (long long)j, (double)X[t * d + j]);
            }
        }
    }
    QR_CHECK(qr_malloc(&buf, (size_t)chunk * (size_t)d, sizeof *buf, "statistics chunk"));
    QR_CHECK(qr_calloc(&babs, (size_t)d, sizeof *babs, "statistics batch sums"));
    for (int64_t t0 = 0; t0 < n; t0 += chunk) {
        int64_t rows = (t0 + chunk <= n) ? chunk : n - t0;
        for (int64_t t = 0; t < rows; t++) {
            const float *x = X + (t0 + t) * d; /* (d) */
            double *y = buf + t * d;
            for (int64_t j = 0; j < d; j++) {
                double v = (double)x[j], a = fabs(v);
                y[j] = v;
                babs[j] += a;
                s->sum_sq[j] += v * v;
                s->max_abs[j] = a > s->max_abs[j] ? a : s->max_abs[j];
            }
        }
        /* G += bufᵀ buf; the lower triangle (row-major) only, mirrored below. */
        cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, (int)d, (int)rows, 1.0, buf, (int)d, 1.0,
                    s->G, (int)d);
    }
    for (int64_t i = 0; i < d; i++) {
        for (int64_t j = i + 1; j < d; j++) {
            s->G[i * d + j] = s->G[j * d + i];
        }
        double m = babs[i] / (double)n;
        s->sum_abs[i] += babs[i];
        s->batch_mean_abs_max[i] = m > s->batch_mean_abs_max[i] ? m : s->batch_mean_abs_max[i];
    }
    s->count += n;
    s->n_batches++;
done:
    free(buf);
    free(babs);
    return st;
}

qr_status qr_stats_merge(qr_stats *a, const qr_stats *b)
{
    drop_cache(a);
    int64_t d = a->d;
    if (b->d != d) {
        return qr_fail(QR_ERR_INPUT,
                       "statistics merge: channel counts differ (expected %lld, found %lld)",
                       (long long)d, (long long)b->d);
    }
    /* Element-wise sums and maxima: the same sequence of merges gives the same bits. */
    for (size_t i = 0; i < (size_t)d * (size_t)d; i++) {
        a->G[i] += b->G[i];
    }
    for (int64_t j = 0; j < d; j++) {
        a->sum_abs[j] += b->sum_abs[j];
        a->sum_sq[j] += b->sum_sq[j];
        a->max_abs[j] = b->max_abs[j] > a->max_abs[j] ? b->max_abs[j] : a->max_abs[j];
        a->batch_mean_abs_max[j] = b->batch_mean_abs_max[j] > a->batch_mean_abs_max[j]
                                       ? b->batch_mean_abs_max[j]
                                       : a->batch_mean_abs_max[j];
    }
    a->count += b->count;
    a->n_batches += b->n_batches;
    return QR_OK;
}

void qr_stats_mean_abs(const qr_stats *s, double *out)
{
    for (int64_t j = 0; j < s->d; j++) {
        out[j] = s->count > 0 ? s->sum_abs[j] / (double)s->count : 0.0;
    }
}

void qr_stats_rms(const qr_stats *s, double *out)
{
    for (int64_t j = 0; j < s->d; j++) {
        out[j] = s->count > 0 ? sqrt(s->sum_sq[j] / (double)s->count) : 0.0;
    }
}

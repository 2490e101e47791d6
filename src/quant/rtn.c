/* rtn.c: round-to-nearest INT4 weight quantization (src/quant.h) with the optional per-group clip
 * search, and the group-level building blocks GPTQ and the methods share. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "src/quant.h"
#include "src/quant/internal.h"

void qr_wquant_opts_default(qr_wquant_opts *o)
{
    o->group = 128;
    o->asym = false;
    o->clip_search = false;
    o->clip_steps = 20;
    o->clip_min = 0.5;
    o->gptq_damp = QR_GPTQ_DAMP_DEFAULT;
}

int64_t qr_quant_n_groups(int64_t d, int64_t group)
{
    if (group <= 0 || group >= d) {
        return 1;
    }
    return (d + group - 1) / group;
}

/* A scale as stored: float32, and never below FLT_MIN, so codes never divide by zero. */
static float stored_scale(double s)
{
    float f = (float)s;
    return (f >= FLT_MIN) ? f : FLT_MIN;
}

void qr_wquant_group_params(const double *w, int64_t n, bool asym, double clip, float *scale,
                            unsigned *zero)
{
    if (asym) {
        double lo = 0.0, hi = 0.0;
        for (int64_t j = 0; j < n; j++) {
            lo = w[j] < lo ? w[j] : lo;
            hi = w[j] > hi ? w[j] : hi;
        }
        lo *= clip;
        hi *= clip;
        *scale = stored_scale((hi - lo) / 15.0);
        double z = round(-lo / (double)*scale);
        *zero = (unsigned)(z < 0.0 ? 0.0 : (z > 15.0 ? 15.0 : z));
    } else {
        double amax = 0.0;
        for (int64_t j = 0; j < n; j++) {
            double a = fabs(w[j]);
            amax = a > amax ? a : amax;
        }
        *scale = stored_scale(clip * amax / 7.0);
        *zero = 8;
    }
}

unsigned qr_wquant_code(double w, float scale, unsigned zero, bool asym)
{
    double q = round(w / (double)scale);
    if (asym) {
        q += (double)zero;
        q = q < 0.0 ? 0.0 : (q > 15.0 ? 15.0 : q);
        return (unsigned)q;
    }
    q = q < -8.0 ? -8.0 : (q > 7.0 ? 7.0 : q);
    return (unsigned)(q + 8.0);
}

double qr_wquant_decode(unsigned code, float scale, unsigned zero, bool asym)
{
    return (double)scale * ((double)code - (asym ? (double)zero : 8.0));
}

void qr_qweight_dequantize_f64(const qr_qweight *q, double *out)
{
    for (int64_t i = 0; i < q->rows; i++) {
        for (int64_t j = 0; j < q->cols; j++) {
            out[i * q->cols + j] = qr_qweight_value(q, i, j);
        }
    }
}

/* Weighted squared error of one group (n values) under (scale, zero); cw NULL = unweighted. */
static double group_error(const double *w, const double *cw, int64_t n, float scale, unsigned zero,
                          bool asym)
{
    double e = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double r =
            w[j] - qr_wquant_decode(qr_wquant_code(w[j], scale, zero, asym), scale, zero, asym);
        e += (cw ? cw[j] : 1.0) * r * r;
    }
    return e;
}

/* Search the clip factor of one group (src/quant.h: factor 1.0 first, kept on ties); declared in
 * src/quant/internal.h for GPTQ. */
void qr_wquant_group_fit(const double *w, const double *cw, int64_t n, const qr_wquant_opts *o,
                         float *scale, unsigned *zero)
{
    double best;
    qr_wquant_group_params(w, n, o->asym, 1.0, scale, zero);
    if (!o->clip_search || o->clip_steps < 2) {
        return;
    }
    best = group_error(w, cw, n, *scale, *zero, o->asym);
    for (int k = 1; k < o->clip_steps; k++) {
        double clip = 1.0 - (double)k * (1.0 - o->clip_min) / (double)(o->clip_steps - 1);
        float s;
        unsigned z;
        double e;
        qr_wquant_group_params(w, n, o->asym, clip, &s, &z);
        e = group_error(w, cw, n, s, z, o->asym);
        if (e < best) {
            best = e;
            *scale = s;
            *zero = z;
        }
    }
}

/* Shared option checks of the weight quantizers (declared in src/quant/internal.h). */
qr_status qr_wquant_check(const double *W, int64_t d_out, int64_t d_in, const qr_wquant_opts *o,
                          const char *who)
{
    if (d_out < 1 || d_in < 1) {
        return qr_fail(QR_ERR_INPUT, "%s: bad weight shape (expected >= 1 x 1, found %lld x %lld)",
                       who, (long long)d_out, (long long)d_in);
    }
    if (o->group < 0) {
        return qr_fail(QR_ERR_INPUT, "%s: bad group size (expected 0 or > 0, found %lld)", who,
                       (long long)o->group);
    }
    if (o->clip_search && (o->clip_steps < 1 || !(o->clip_min > 0.0 && o->clip_min <= 1.0))) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: bad clip search (expected steps >= 1 and 0 < clip_min <= 1, found %d "
                       "and %g)",
                       who, o->clip_steps, o->clip_min);
    }
    for (int64_t i = 0; i < d_out; i++) {
        for (int64_t j = 0; j < d_in; j++) {
            if (!isfinite(W[i * d_in + j])) {
                return qr_fail(QR_ERR_INPUT,
                               "%s: weight (%lld, %lld) is not finite (expected a finite value, "
                               "found %g)",
                               who, (long long)i, (long long)j, W[i * d_in + j]);
            }
        }
    }
    return QR_OK;
}

qr_status qr_quantize_rtn(const double *W, int64_t d_out, int64_t d_in, const qr_wquant_opts *o,
                          const double *col_weight, qr_qweight *out)
{
    memset(out, 0, sizeof *out);
    QR_TRY(qr_wquant_check(W, d_out, d_in, o, "RTN"));
    if (col_weight) {
        for (int64_t j = 0; j < d_in; j++) {
            if (!(col_weight[j] >= 0.0) || !isfinite(col_weight[j])) {
                return qr_fail(QR_ERR_INPUT,
                               "RTN: column weight %lld (expected finite and >= 0, found %g)",
                               (long long)j, col_weight[j]);
            }
        }
    }
    QR_TRY(qr_qweight_alloc(out, d_out, d_in, o->group, o->asym));
    for (int64_t i = 0; i < d_out; i++) {
        const double *row = W + i * d_in; /* (d_in) */
        for (int64_t g = 0; g < out->n_groups; g++) {
            int64_t j0 = g * out->group;
            int64_t n = (j0 + out->group <= d_in) ? out->group : d_in - j0;
            float scale;
            unsigned zero;
            qr_wquant_group_fit(row + j0, col_weight ? col_weight + j0 : NULL, n, o, &scale, &zero);
            out->scales[i * out->n_groups + g] = scale;
            if (o->asym) {
                out->zeros[i * out->n_groups + g] = (uint8_t)zero;
            }
            for (int64_t j = j0; j < j0 + n; j++) {
                qr_qweight_set_code(out, i, j, qr_wquant_code(row[j], scale, zero, o->asym));
            }
        }
    }
    return QR_OK;
}

/* act.c: dynamic per-token symmetric activation quantization (src/quant.h), whole token or groups
 * of channels: the A8 / A4 side of W4A8 and W4A4. */
#include <float.h>
#include <math.h>

#include "src/quant.h"

/* Stored scale of a group whose largest magnitude is amax: float32, never below FLT_MIN. */
static float act_scale(double amax, int qmax)
{
    float f = (float)(amax / (double)qmax);
    return (f >= FLT_MIN) ? f : FLT_MIN;
}

static double clamp_code(double q, int qmax)
{
    return q < -qmax ? -qmax : (q > qmax ? qmax : q);
}

qr_status qr_act_quantize(const float *X, int64_t n, int64_t d, int bits, int64_t group,
                          int8_t *codes, float *scales)
{
    int qmax;
    int64_t gs, ng;
    if (bits != 8 && bits != 4) {
        return qr_fail(QR_ERR_INPUT, "activation quantization: bits (expected 4 or 8, found %d)",
                       bits);
    }
    if (n < 0 || d < 1 || group < 0) {
        return qr_fail(QR_ERR_INPUT,
                       "activation quantization: bad shape (expected n >= 0, d >= 1, group >= 0, "
                       "found %lld x %lld, group %lld)",
                       (long long)n, (long long)d, (long long)group);
    }
    qmax = (1 << (bits - 1)) - 1;
    gs = (group == 0 || group > d) ? d : group;
    ng = qr_quant_n_groups(d, gs);
    for (int64_t t = 0; t < n; t++) {
        const float *x = X + t * d; /* (d) */
        for (int64_t g = 0; g < ng; g++) {
            int64_t j0 = g * gs, j1 = (j0 + gs < d) ? j0 + gs : d;
            double amax = 0.0;
            float s;
            for (int64_t j = j0; j < j1; j++) {
                if (!isfinite(x[j])) {
                    return qr_fail(QR_ERR_INPUT,
                                   "activation quantization: value (%lld, %lld) is not finite "
                                   "(expected a finite value, found %g)",
                                   (long long)t, (long long)j, (double)x[j]);
                }
                amax = fabs((double)x[j]) > amax ? fabs((double)x[j]) : amax;
            }
            s = act_scale(amax, qmax);
            scales[t * ng + g] = s;
            for (int64_t j = j0; j < j1; j++) {
                codes[t * d + j] = (int8_t)clamp_code(round((double)x[j] / (double)s), qmax);
            }
        }
    }
    return QR_OK;
}

void qr_act_fake_quant(double *X, int64_t n, int64_t d, int bits, int64_t group)
{
    int qmax;
    int64_t gs, ng;
    if ((bits != 8 && bits != 4) || n < 1 || d < 1 || group < 0) {
        return;
    }
    qmax = (1 << (bits - 1)) - 1;
    gs = (group == 0 || group > d) ? d : group;
    ng = qr_quant_n_groups(d, gs);
    for (int64_t t = 0; t < n; t++) {
        double *x = X + t * d; /* (d) */
        for (int64_t g = 0; g < ng; g++) {
            int64_t j0 = g * gs, j1 = (j0 + gs < d) ? j0 + gs : d;
            double amax = 0.0, s;
            for (int64_t j = j0; j < j1; j++) {
                if (isfinite(x[j])) {
                    amax = fabs(x[j]) > amax ? fabs(x[j]) : amax;
                }
            }
            s = (double)act_scale(amax, qmax);
            for (int64_t j = j0; j < j1; j++) {
                if (isfinite(x[j])) {
                    x[j] = s * clamp_code(round(x[j] / s), qmax);
                }
            }
        }
    }
}

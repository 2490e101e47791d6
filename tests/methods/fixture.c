/* fixture.c: seeded inputs for the methods tests (see fixture.h). */
#include "tests/methods/fixture.h"

#include <math.h>
#include <stdlib.h>

#include "src/rng.h"

void mf_weight(uint64_t seed, int64_t d_out, int64_t d_in, double *W)
{
    qr_rng rng;
    qr_rng_seed(&rng, seed);
    for (int64_t i = 0; i < d_out; i++) {
        for (int64_t j = 0; j < d_in; j++) {
            double chi = 0.0;
            for (int k = 0; k < 5; k++) {
                double z = qr_rng_normal(&rng);
                chi += z * z;
            }
            W[i * d_in + j] = qr_rng_normal(&rng) / sqrt(chi / 5.0 + 1e-12) / sqrt((double)d_in) *
                              ((j % 16 == 3) ? 8.0 : 1.0);
        }
    }
}

void mf_acts(uint64_t structure_seed, uint64_t tokens_seed, int64_t n, int64_t d, float *X)
{
    int64_t q = d / 4 > 0 ? d / 4 : 1;
    double *M = malloc((size_t)(q * d) * sizeof *M); /* (q, d) */
    double *z = malloc((size_t)q * sizeof *z);       /* (q) */
    qr_rng rng;
    qr_rng_seed(&rng, structure_seed);
    for (int64_t i = 0; i < q * d; i++) {
        M[i] = qr_rng_normal(&rng) / sqrt((double)q);
    }
    qr_rng_seed(&rng, tokens_seed);
    for (int64_t t = 0; t < n; t++) {
        for (int64_t k = 0; k < q; k++) {
            z[k] = qr_rng_normal(&rng);
        }
        for (int64_t j = 0; j < d; j++) {
            double x = 0.3 * qr_rng_normal(&rng);
            for (int64_t k = 0; k < q; k++) {
                x += z[k] * M[k * d + j];
            }
            X[t * d + j] = (float)(x * ((j % 13 == 5) ? 20.0 : 1.0));
        }
    }
    free(M);
    free(z);
}

qr_status mf_stats(const float *X, int64_t n, int64_t d, qr_stats **out)
{
    QR_TRY(qr_stats_create(d, out));
    for (int64_t t = 0; t < n; t += 64) {
        int64_t b = (n - t < 64) ? n - t : 64;
        qr_status st = qr_stats_add(*out, X + t * d, b);
        if (st != QR_OK) {
            qr_stats_free(out);
            return st;
        }
    }
    return QR_OK;
}

double mf_out_err(const double *W, const double *W_eff, int64_t d_out, int64_t d_in, const float *X,
                  int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t t = 0; t < n; t++) {
        const float *x = X + t * d_in; /* (d_in) */
        for (int64_t i = 0; i < d_out; i++) {
            double y = 0.0, yh = 0.0;
            for (int64_t j = 0; j < d_in; j++) {
                y += W[i * d_in + j] * (double)x[j];
                yh += W_eff[i * d_in + j] * (double)x[j];
            }
            num += (y - yh) * (y - yh);
            den += y * y;
        }
    }
    return sqrt(num / den);
}

double *mf_effective(const qr_qlayer *ql)
{
    double *We = malloc((size_t)(ql->d_out * ql->d_in) * sizeof *We);
    if (We && qr_qlayer_effective_weight(ql, We) != QR_OK) {
        free(We);
        return NULL;
    }
    return We;
}

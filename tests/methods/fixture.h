/* fixture.h: seeded inputs for the methods tests: heavy-tailed weights with outlier input columns,
 * correlated activations with outlier channels, their statistics, and small helpers. */
#ifndef QR_TEST_METHODS_FIXTURE_H
#define QR_TEST_METHODS_FIXTURE_H

#include <stdint.h>

#include "src/method.h"
#include "src/stats.h"

/* W (d_out, d_in): Student-t-like values (normal / sqrt(chi2_5 / 5)) / sqrt(d_in), with every
 * 16th input column scaled x8 (outlier input channels of the weight). */
void mf_weight(uint64_t seed, int64_t d_out, int64_t d_in, double *W);

/* X (n, d) float32 activations: x = z M + 0.3 e with z (d/4) normal, a fixed mixing M (d/4, d)
 * from structure_seed (so calibration and held-out tokens share a distribution), e normal noise,
 * and channels j % 13 == 5 scaled x20 (activation outlier channels). tokens_seed picks the tokens.
 */
void mf_acts(uint64_t structure_seed, uint64_t tokens_seed, int64_t n, int64_t d, float *X);

/* Statistics of X (n, d) added in batches of 64 rows. */
qr_status mf_stats(const float *X, int64_t n, int64_t d, qr_stats **out);

/* Relative output error ||(W - W_eff) Xᵀ||_F / ||W Xᵀ||_F computed directly from X (n, d_in). */
double mf_out_err(const double *W, const double *W_eff, int64_t d_out, int64_t d_in, const float *X,
                  int64_t n);

/* Effective weight of a module into a new array (d_out, d_in); NULL on failure. */
double *mf_effective(const qr_qlayer *ql);

#endif

/* test_divergence.c: src/divergence.c against hand-computed cases and a plain double loop on
 * seeded logits (eval.divergence). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/divergence.h"
#include "src/llama.h"
#include "src/rng.h"
#include "tests/test_util.h"

/* Hand cases: a few roundings of exp/log in double, nothing else. */
#define TOL_EXACT 1e-15
/* Implementation against the plain loop (probabilities first, then sum p ln(p/q)): two ways of
 * rounding the same double sums over 512 terms of size <= 1; measured below 1e-15. */
#define TOL_NAIVE 1e-12
/* A constant shift of every logit leaves the distribution unchanged; what remains is rounding of
 * the shifted floats (ulp of 8 is 1e-6) over the logsumexp: bounded by 1e-9 here. */
#define TOL_SHIFT 1e-9

enum { VOCAB = 512, TOKENS = 64 };

/* KL(p || q) of two logit rows, probabilities first, the way one writes it down. */
static double naive_kl(const float *a, const float *b, int64_t n)
{
    double za = 0.0, zb = 0.0, kl = 0.0, ma = -INFINITY, mb = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        ma = fmax(ma, a[j]);
        mb = fmax(mb, b[j]);
    }
    for (int64_t j = 0; j < n; j++) {
        za += exp(a[j] - ma);
        zb += exp(b[j] - mb);
    }
    for (int64_t j = 0; j < n; j++) {
        double p = exp(a[j] - ma) / za, q = exp(b[j] - mb) / zb;
        kl += p > 0.0 ? p * log(p / q) : 0.0;
    }
    return kl;
}

static void hand_cases(void)
{
    /* p = (1/2, 1/2), q = (1, e) / (1 + e): KL = ln((1 + e) / 2) - 1/2. */
    const float ref[2] = {0.0f, 0.0f}, test[2] = {0.0f, 1.0f};
    qr_token_divergence t;
    double e = exp(1.0);
    qr_logits_divergence(ref, test, 2, 1, &t);
    QR_EXPECT(fabs(t.kl - (log((1.0 + e) / 2.0) - 0.5)) < TOL_EXACT, "2-token KL %.17g", t.kl);
    QR_EXPECT(fabs(t.nll_ref - log(2.0)) < TOL_EXACT, "nll_ref %.17g", t.nll_ref);
    QR_EXPECT(fabs(t.nll_test - (log(1.0 + e) - 1.0)) < TOL_EXACT, "nll_test %.17g", t.nll_test);
    QR_EXPECT(t.top1_same == 0, "argmax 0 (tie, lowest index) against 1");
    qr_logits_divergence(test, test, 2, 0, &t);
    QR_EXPECT(t.kl == 0.0 && t.top1_same == 1, "identical rows: KL %g top1 %d", t.kl, t.top1_same);
}

static void seeded_cases(void)
{
    float *a = malloc(sizeof(float) * VOCAB * TOKENS), *b = malloc(sizeof(float) * VOCAB * TOKENS);
    double kl[TOKENS], worst = 0.0;
    qr_divergence_sums s, s2;
    qr_divergence_summary sum;
    qr_rng rng;
    int same = 0;
    qr_rng_seed(&rng, 17);
    memset(&s, 0, sizeof s);
    for (int i = 0; i < VOCAB * TOKENS; i++) {
        a[i] = (float)(3.0 * qr_rng_normal(&rng));
        b[i] = a[i] + (float)(0.3 * qr_rng_normal(&rng));
    }
    for (int k = 0; k < TOKENS; k++) {
        const float *ak = a + (size_t)k * VOCAB, *bk = b + (size_t)k * VOCAB;
        int32_t target = (int32_t)(qr_rng_u64(&rng) % VOCAB);
        qr_token_divergence t, self;
        qr_logits_divergence(ak, bk, VOCAB, target, &t);
        worst = fmax(worst, fabs(t.kl - naive_kl(ak, bk, VOCAB)));
        QR_EXPECT(t.kl > 0.0, "token %d: KL %g of different rows not positive", k, t.kl);
        QR_EXPECT(t.nll_ref == qr_logits_nll(ak, VOCAB, target) &&
                      t.nll_test == qr_logits_nll(bk, VOCAB, target),
                  "token %d: NLL differs from qr_logits_nll", k);
        QR_EXPECT(t.top1_same == (qr_logits_argmax(ak, VOCAB) == qr_logits_argmax(bk, VOCAB)),
                  "token %d: top-1 differs from qr_logits_argmax", k);
        qr_logits_divergence(ak, ak, VOCAB, target, &self);
        QR_EXPECT(self.kl == 0.0 && self.top1_same == 1 && self.nll_ref == self.nll_test,
                  "token %d: a row against itself gives KL %g", k, self.kl);
        same += t.top1_same;
        kl[k] = t.kl;
        qr_divergence_add(&s, &t);
    }
    QR_EXPECT(worst < TOL_NAIVE, "largest |KL - plain loop| %.3g", worst);
    /* Shift invariance: b = a + 8 is the same distribution. */
    for (int i = 0; i < VOCAB; i++) {
        b[i] = a[i] + 8.0f;
    }
    {
        qr_token_divergence t;
        qr_logits_divergence(a, b, VOCAB, 0, &t);
        QR_EXPECT(fabs(t.kl) < TOL_SHIFT && t.top1_same, "shifted row: KL %.3g", t.kl);
    }
    /* Summary: merge of two halves is the sum; the figures are the plain ones. */
    memset(&s2, 0, sizeof s2);
    qr_divergence_merge(&s2, &s);
    qr_divergence_summarize(&s2, kl, TOKENS, &sum);
    QR_EXPECT(sum.tokens == TOKENS, "tokens %lld", (long long)sum.tokens);
    QR_EXPECT(fabs(sum.top1 - (double)same / TOKENS) < TOL_EXACT, "top1 %g", sum.top1);
    QR_EXPECT(sum.delta_nll == sum.nll_test - sum.nll_ref, "delta NLL is the difference");
    QR_EXPECT(fabs(sum.ppl_ref - exp(sum.nll_ref)) < TOL_EXACT * sum.ppl_ref, "ppl_ref");
    QR_EXPECT(kl[0] <= sum.kl_median && sum.kl_median <= sum.kl_p99 && sum.kl_p99 <= sum.kl_max &&
                  sum.kl_max == kl[TOKENS - 1],
              "order: min %g median %g p99 %g max %g", kl[0], sum.kl_median, sum.kl_p99,
              sum.kl_max);
    QR_EXPECT(fabs(sum.kl_median - 0.5 * (kl[TOKENS / 2 - 1] + kl[TOKENS / 2])) < TOL_EXACT,
              "median of an even count is the mean of the middle two");
    QR_EXPECT(sum.kl_mean_se > 0.0 && sum.delta_nll_se > 0.0, "standard errors");
    free(a);
    free(b);
}

static void percentiles(void)
{
    double v[101];
    const double four[4] = {1.0, 2.0, 3.0, 4.0};
    for (int i = 0; i <= 100; i++) {
        v[i] = i;
    }
    QR_EXPECT(qr_percentile_sorted(four, 4, 0.5) == 2.5, "median of 1..4");
    QR_EXPECT(qr_percentile_sorted(four, 4, 1.0) == 4.0, "max of 1..4");
    QR_EXPECT(qr_percentile_sorted(four, 4, 0.0) == 1.0, "min of 1..4");
    QR_EXPECT(fabs(qr_percentile_sorted(v, 101, 0.99) - 99.0) < TOL_EXACT, "p99 of 0..100");
    QR_EXPECT(qr_percentile_sorted(v, 1, 0.99) == 0.0, "one value");
}

int main(void)
{
    hand_cases();
    seeded_cases();
    percentiles();
    return qr_test_finish("eval.divergence");
}

/* divergence.c: KL divergence, NLL and top-1 agreement of two logit rows, and their summary. */
#include "src/divergence.h"

#include <math.h>
#include <stdlib.h>

void qr_logits_divergence(const float *ref, const float *test, int64_t vocab, int32_t target,
                          qr_token_divergence *out)
{
    double mr = ref[0], mt = test[0], sr = 0.0, st = 0.0, sd = 0.0, lse_r, lse_t;
    int64_t ar = 0, at = 0;
    for (int64_t j = 1; j < vocab; j++) {
        mr = ref[j] > mr ? ref[j] : mr;
        mt = test[j] > mt ? test[j] : mt;
        ar = ref[j] > ref[ar] ? j : ar;
        at = test[j] > test[at] ? j : at;
    }
    /* e_j = exp(a_j - max a): sum_j e_j (a_j - b_j) / sum_j e_j is E_p[a - b], and
     * ln p_j - ln q_j = (a_j - b_j) - (lse_a - lse_b), so KL = E_p[a - b] - (lse_a - lse_b). */
    for (int64_t j = 0; j < vocab; j++) {
        double e = exp((double)ref[j] - mr);
        sr += e;
        sd += e * ((double)ref[j] - (double)test[j]);
        st += exp((double)test[j] - mt);
    }
    lse_r = log(sr) + mr;
    lse_t = log(st) + mt;
    out->kl = sd / sr - (lse_r - lse_t);
    out->nll_ref = lse_r - (double)ref[target];
    out->nll_test = lse_t - (double)test[target];
    out->top1_same = ar == at;
}

void qr_divergence_add(qr_divergence_sums *s, const qr_token_divergence *t)
{
    double d = t->nll_test - t->nll_ref;
    s->n += 1.0;
    s->nll_ref += t->nll_ref;
    s->nll_test += t->nll_test;
    s->dnll_sq += d * d;
    s->kl += t->kl;
    s->kl_sq += t->kl * t->kl;
    s->top1 += t->top1_same ? 1.0 : 0.0;
}

void qr_divergence_merge(qr_divergence_sums *into, const qr_divergence_sums *from)
{
    into->n += from->n;
    into->nll_ref += from->nll_ref;
    into->nll_test += from->nll_test;
    into->dnll_sq += from->dnll_sq;
    into->kl += from->kl;
    into->kl_sq += from->kl_sq;
    into->top1 += from->top1;
}

double qr_percentile_sorted(const double *sorted, size_t n, double fraction)
{
    double p = fraction * (double)(n - 1), delta;
    size_t i = (size_t)p;
    if (i + 1 >= n) {
        return sorted[n - 1];
    }
    delta = p - (double)i;
    return (1.0 - delta) * sorted[i] + delta * sorted[i + 1];
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* sqrt((mean of squares - mean^2) / (n - 1)), NaN below 2 samples; 0 when rounding makes the
 * variance negative. */
static double std_error(double sum, double sum_sq, double n)
{
    double mean, var;
    if (n < 2.0) {
        return NAN;
    }
    mean = sum / n;
    var = sum_sq / n - mean * mean;
    return var > 0.0 ? sqrt(var / (n - 1.0)) : 0.0;
}

void qr_divergence_summarize(const qr_divergence_sums *s, double *kl, size_t n,
                             qr_divergence_summary *out)
{
    double dn = s->n > 0.0 ? s->n : NAN;
    out->tokens = (int64_t)s->n;
    out->nll_ref = s->nll_ref / dn;
    out->nll_test = s->nll_test / dn;
    out->ppl_ref = exp(out->nll_ref);
    out->ppl_test = exp(out->nll_test);
    out->delta_nll = out->nll_test - out->nll_ref;
    out->delta_nll_se = std_error(s->nll_test - s->nll_ref, s->dnll_sq, s->n);
    out->kl_mean = s->kl / dn;
    out->kl_mean_se = std_error(s->kl, s->kl_sq, s->n);
    out->top1 = s->top1 / dn;
    out->top1_se = s->n >= 2.0 ? sqrt(out->top1 * (1.0 - out->top1) / (s->n - 1.0)) : NAN;
    if (n == 0) {
        out->kl_median = out->kl_p99 = out->kl_max = NAN;
        return;
    }
    qsort(kl, n, sizeof *kl, cmp_double);
    out->kl_median = qr_percentile_sorted(kl, n, 0.5);
    out->kl_p99 = qr_percentile_sorted(kl, n, 0.99);
    out->kl_max = kl[n - 1];
}

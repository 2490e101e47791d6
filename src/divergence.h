/* divergence.h: how far a quantized model's next-token distributions are from the float model's
 * on the same tokens, the figures llama.cpp's perplexity tool prints with --kl-divergence: the KL
 * divergence per token (mean, median, 99th percentile, maximum), top-1 agreement, the NLL of both
 * and their difference (ΔNLL = ln(PPL(Q) / PPL(float))). Pure numerics: eval (jobs/cmd_eval.c)
 * runs both models and feeds their logits here (docs/eval.md).
 *
 * All arithmetic is in double: log-softmax by log-sum-exp with the row's maximum subtracted. */
#ifndef QR_DIVERGENCE_H
#define QR_DIVERGENCE_H

#include <stddef.h>
#include <stdint.h>

/* One scored token, reference (float model) against test (quantized model). */
typedef struct {
    double kl;       /* KL(P_ref || P_test) = sum_i p_ref,i (ln p_ref,i - ln p_test,i), nats;
                      * exactly 0 when the two logit rows are equal, and may be a rounding error
                      * (~1e-16 x the logits' size) below 0 when they are nearly equal */
    double nll_ref;  /* -ln p_ref(target): the same bits as qr_logits_nll (src/llama.h) */
    double nll_test; /* -ln p_test(target) */
    int top1_same;   /* 1 when the argmax (lowest index on ties, as qr_logits_argmax) agrees */
} qr_token_divergence;

/* Compare two logit rows (vocab each) for the token `target` (0 <= target < vocab). */
void qr_logits_divergence(const float *ref, const float *test, int64_t vocab, int32_t target,
                          qr_token_divergence *out);

/* Running sums over tokens. Only doubles (so an array of them reduces as MPI_DOUBLE, and partial
 * sums add in a fixed order whatever the number of ranks). */
typedef struct {
    double n;        /* tokens */
    double nll_ref;  /* sum of nll_ref */
    double nll_test; /* sum of nll_test */
    double dnll_sq;  /* sum of (nll_test - nll_ref)^2 */
    double kl;       /* sum of kl */
    double kl_sq;    /* sum of kl^2 */
    double top1;     /* tokens whose argmax agrees */
} qr_divergence_sums;
#define QR_DIVERGENCE_SUMS_DOUBLES 7

void qr_divergence_add(qr_divergence_sums *s, const qr_token_divergence *t);
void qr_divergence_merge(qr_divergence_sums *into, const qr_divergence_sums *from);

/* The figures of one text. Standard errors as llama.cpp gives them (sqrt of the sample variance
 * over n - 1 tokens); NaN with fewer than 2 tokens. */
typedef struct {
    int64_t tokens;
    double nll_ref, nll_test; /* mean NLL per token, nats */
    double ppl_ref, ppl_test; /* exp of those */
    double delta_nll;         /* nll_test - nll_ref, the same two numbers as above */
    double delta_nll_se;
    double kl_mean, kl_mean_se, kl_median, kl_p99, kl_max;
    double top1, top1_se; /* fraction of tokens whose argmax agrees */
} qr_divergence_summary;

/* Summarize: means from s, percentiles from the per-token KL values kl (n == s->n tokens, in any
 * order; sorted here in place). */
void qr_divergence_summarize(const qr_divergence_sums *s, double *kl, size_t n,
                             qr_divergence_summary *out);

/* The fraction-quantile (0 <= fraction <= 1) of sorted (n >= 1, ascending), interpolated linearly
 * between the two nearest order statistics at position fraction x (n - 1) (numpy's default and
 * llama.cpp's). */
double qr_percentile_sorted(const double *sorted, size_t n, double fraction);

#endif

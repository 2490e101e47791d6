/* test_stats.c: the activation statistics accumulator (src/stats.h). Cases:
 *   gram    G equals XᵀX computed naively; max|x|, mean|x|, rms, count and the per-batch mean
 *           maximum equal their definitions (more rows than one internal chunk)
 *   merge   accumulating split chunks separately and merging equals one pass over the whole,
 *           within 1e-12 relative
 *   repeat  the same merge order gives bit-identical results; bad input is refused */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/rng.h"
#include "src/stats.h"
#include "tests/test_util.h"

/* Float64 sums of float32 inputs in a different order: rounding only, far below 1e-12. */
#define STATS_TOL 1e-12

static const int64_t D = 37;
static const int64_t N = 1300; /* > 2 internal chunks of QR_STATS_CHUNK_ROWS */

static float *activations(qr_rng *rng, int64_t n, int64_t d)
{
    float *X = malloc((size_t)(n * d) * sizeof *X);
    for (int64_t k = 0; k < n * d; k++) {
        X[k] = (float)(qr_rng_normal(rng) * ((k % d) == 5 ? 30.0 : 1.0) + 0.3);
    }
    return X;
}

static double rel_diff(const double *a, const double *b, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t k = 0; k < n; k++) {
        num += (a[k] - b[k]) * (a[k] - b[k]);
        den += b[k] * b[k];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static int case_gram(qr_rng *rng)
{
    float *X = activations(rng, N, D);
    double *G = calloc((size_t)(D * D), sizeof *G);
    double mx[37] = {0}, ma[37] = {0}, ms[37] = {0}, bm[37] = {0}, got[37];
    const int64_t cuts[] = {0, 400, 1000, N}; /* three batches */
    qr_stats *s = NULL;
    QR_REQUIRE(qr_stats_create(D, &s) == QR_OK, "%s", qr_errmsg());
    for (int b = 0; b < 3; b++) {
        QR_REQUIRE(qr_stats_add(s, X + cuts[b] * D, cuts[b + 1] - cuts[b]) == QR_OK, "%s",
                   qr_errmsg());
        for (int64_t j = 0; j < D; j++) {
            double sum = 0.0;
            for (int64_t t = cuts[b]; t < cuts[b + 1]; t++) {
                sum += fabs((double)X[t * D + j]);
            }
            sum /= (double)(cuts[b + 1] - cuts[b]);
            bm[j] = sum > bm[j] ? sum : bm[j];
        }
    }
    QR_REQUIRE(qr_stats_add(s, X, 0) == QR_OK, "%s", qr_errmsg()); /* no-op, no batch */
    for (int64_t t = 0; t < N; t++) {
        for (int64_t i = 0; i < D; i++) {
            double xi = (double)X[t * D + i];
            for (int64_t j = 0; j < D; j++) {
                G[i * D + j] += xi * (double)X[t * D + j];
            }
            mx[i] = fabs(xi) > mx[i] ? fabs(xi) : mx[i];
            ma[i] += fabs(xi) / (double)N;
            ms[i] += xi * xi / (double)N;
        }
    }
    QR_EXPECT(s->count == N && s->n_batches == 3, "count %lld batches %lld (expected %lld, 3)",
              (long long)s->count, (long long)s->n_batches, (long long)N);
    QR_EXPECT(rel_diff(s->G, G, D * D) <= STATS_TOL, "G differs from naive XᵀX by %.3e",
              rel_diff(s->G, G, D * D));
    for (int64_t i = 0; i < D; i++) {
        for (int64_t j = 0; j < D; j++) {
            QR_EXPECT(s->G[i * D + j] == s->G[j * D + i], "G not symmetric at (%lld, %lld)",
                      (long long)i, (long long)j);
        }
    }
    QR_EXPECT(memcmp(s->max_abs, mx, sizeof mx) == 0, "max|x| differs");
    qr_stats_mean_abs(s, got);
    QR_EXPECT(rel_diff(got, ma, D) <= STATS_TOL, "mean|x| differs by %.3e", rel_diff(got, ma, D));
    for (int64_t j = 0; j < D; j++) {
        ms[j] = sqrt(ms[j]);
    }
    qr_stats_rms(s, got);
    QR_EXPECT(rel_diff(got, ms, D) <= STATS_TOL, "rms differs by %.3e", rel_diff(got, ms, D));
    QR_EXPECT(rel_diff(s->batch_mean_abs_max, bm, D) <= STATS_TOL,
              "batch mean|x| maximum differs by %.3e", rel_diff(s->batch_mean_abs_max, bm, D));
    qr_stats_free(&s);
    qr_stats_free(&s);
    QR_EXPECT(s == NULL, "qr_stats_free did not clear the pointer");
    free(X);
    free(G);
    return 0;
}

/* Accumulate X in pieces at `cuts` (n_cuts + 1 bounds), one accumulator each, merged in order. */
static qr_stats *split_merge(const float *X, const int64_t *cuts, int n_pieces)
{
    qr_stats *total = NULL;
    if (qr_stats_create(D, &total) != QR_OK) {
        return NULL;
    }
    for (int p = 0; p < n_pieces; p++) {
        qr_stats *part = NULL;
        if (qr_stats_create(D, &part) != QR_OK ||
            qr_stats_add(part, X + cuts[p] * D, cuts[p + 1] - cuts[p]) != QR_OK ||
            qr_stats_merge(total, part) != QR_OK) {
            qr_stats_free(&part);
            qr_stats_free(&total);
            return NULL;
        }
        qr_stats_free(&part);
    }
    return total;
}

static int case_merge(qr_rng *rng)
{
    float *X = activations(rng, N, D);
    const int64_t cuts[] = {0, 1, 77, 600, 601, 1299, N};
    const int64_t whole[] = {0, N};
    qr_stats *one = split_merge(X, whole, 1), *many = split_merge(X, cuts, 6);
    QR_REQUIRE(one && many, "%s", qr_errmsg());
    QR_EXPECT(many->count == N && many->n_batches == 6, "merged count %lld batches %lld",
              (long long)many->count, (long long)many->n_batches);
    QR_EXPECT(rel_diff(many->G, one->G, D * D) <= STATS_TOL, "merged G differs by %.3e",
              rel_diff(many->G, one->G, D * D));
    QR_EXPECT(rel_diff(many->sum_abs, one->sum_abs, D) <= STATS_TOL, "sum|x| differs by %.3e",
              rel_diff(many->sum_abs, one->sum_abs, D));
    QR_EXPECT(rel_diff(many->sum_sq, one->sum_sq, D) <= STATS_TOL, "sum x^2 differs by %.3e",
              rel_diff(many->sum_sq, one->sum_sq, D));
    QR_EXPECT(memcmp(many->max_abs, one->max_abs, (size_t)D * sizeof(double)) == 0,
              "max|x| differs after merging");
    /* The per-batch maximum depends on how rows were batched by definition, so it is checked
     * against the pieces, not against the single pass. */
    for (int64_t j = 0; j < D; j++) {
        double want = 0.0;
        for (int p = 0; p < 6; p++) {
            double sum = 0.0;
            for (int64_t t = cuts[p]; t < cuts[p + 1]; t++) {
                sum += fabs((double)X[t * D + j]);
            }
            sum /= (double)(cuts[p + 1] - cuts[p]);
            want = sum > want ? sum : want;
        }
        QR_EXPECT(fabs(many->batch_mean_abs_max[j] - want) <= STATS_TOL * want,
                  "channel %lld: batch mean|x| maximum %.17g (expected %.17g)", (long long)j,
                  many->batch_mean_abs_max[j], want);
    }
    qr_stats_free(&one);
    qr_stats_free(&many);
    free(X);
    return 0;
}

static int case_repeat(qr_rng *rng)
{
    float *X = activations(rng, N, D);
    const int64_t cuts[] = {0, 13, 500, 1024, N};
    qr_stats *a = split_merge(X, cuts, 4), *b = split_merge(X, cuts, 4), *c = NULL;
    QR_REQUIRE(a && b, "%s", qr_errmsg());
    QR_EXPECT(
        memcmp(a->G, b->G, (size_t)(D * D) * sizeof(double)) == 0 &&
            memcmp(a->sum_abs, b->sum_abs, (size_t)D * sizeof(double)) == 0 &&
            memcmp(a->sum_sq, b->sum_sq, (size_t)D * sizeof(double)) == 0 &&
            memcmp(a->batch_mean_abs_max, b->batch_mean_abs_max, (size_t)D * sizeof(double)) == 0,
        "two runs with the same merge order are not bit-identical");
    QR_REQUIRE(qr_stats_create(D + 1, &c) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(qr_stats_merge(a, c) == QR_ERR_INPUT, "merging different widths was accepted");
    X[7 * D + 3] = NAN;
    QR_EXPECT(qr_stats_add(a, X, N) == QR_ERR_INPUT, "a NaN activation was accepted");
    QR_EXPECT(a->count == N, "a refused batch changed the count (%lld)", (long long)a->count);
    qr_stats_free(&c);
    QR_EXPECT(qr_stats_create(0, &c) == QR_ERR_INPUT && c == NULL, "zero channels accepted");
    qr_stats_free(&a);
    qr_stats_free(&b);
    free(X);
    return 0;
}

int main(int argc, char **argv)
{
    qr_rng rng;
    const char *which = argc > 1 ? argv[1] : "";
    int rc;
    qr_rng_seed(&rng, 99);
    if (strcmp(which, "gram") == 0) {
        rc = case_gram(&rng);
    } else if (strcmp(which, "merge") == 0) {
        rc = case_merge(&rng);
    } else if (strcmp(which, "repeat") == 0) {
        rc = case_repeat(&rng);
    } else {
        fprintf(stderr, "usage: %s gram|merge|repeat\n", argv[0]);
        return 2;
    }
    return rc ? rc : qr_test_finish(which);
}

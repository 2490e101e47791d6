/* test_auto_rule.c: the one rule for default ranks and salient counts and for the --bits budget
 * (qr_method_resolve, src/method.h), on the real widths of stories260K and babyllama105 (read from
 * their configs: 64 / 172 and 128 / 352) and on 7B shapes (4096 / 11008).
 *
 *   test_auto_rule CASE      CASE: shapes | budget | run */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/model.h"
#include "src/method.h"
#include "src/modules.h"
#include "src/rng.h"
#include "src/stats.h"
#include "tests/test_util.h"

/* The methods that have a rank or salient channels. */
static const qr_method_id methods[] = {QR_METHOD_LQER, QR_METHOD_QERA_APPROX, QR_METHOD_QERA_EXACT,
                                       QR_METHOD_ASER, QR_METHOD_SERQ,        QR_METHOD_FLRQ,
                                       QR_METHOD_SRR};
#define N_METHODS (sizeof methods / sizeof methods[0])

typedef struct {
    int64_t d_out, d_in;
} shape;

/* Shapes of a model's modules (distinct), from its config; 0 when the shared data are absent. */
static size_t model_shapes(const char *rel, shape *out, size_t cap)
{
    char path[4096];
    const char *data = qr_test_data_dir();
    qr_model *m = NULL;
    qr_module *mods = NULL;
    size_t n = 0, k = 0;
    if (!data) {
        return 0;
    }
    snprintf(path, sizeof path, "%s/models/%s", data, rel);
    if (qr_model_open(path, &m) != QR_OK ||
        qr_modules_enumerate(qr_model_get_config(m), &mods, &n) != QR_OK) {
        fprintf(stderr, "%s: %s\n", path, qr_errmsg());
        qr_model_close(&m);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < k && !(out[j].d_out == mods[i].d_out && out[j].d_in == mods[i].d_in)) {
            j++;
        }
        if (j == k && k < cap) {
            out[k].d_out = mods[i].d_out;
            out[k].d_in = mods[i].d_in;
            k++;
        }
    }
    free(mods);
    qr_model_close(&m);
    return k;
}

static qr_method_opts resolved(qr_method_id m, int64_t group, double bits, int64_t d_out,
                               int64_t d_in, qr_status *st)
{
    qr_method_opts o, r;
    qr_method_opts_default(&o, m);
    if (group >= 0) {
        o.wq.group = group;
    }
    o.bits = bits;
    *st = qr_method_resolve(&o, "test", d_out, d_in, &r);
    return r;
}

/* The defaults on every real width: at least rank 1, ASER f <= r, SERQ k at most d_in / 32 (so the
 * side matrix costs at most 0.125 + 32 / d_in bit/w), and the papers' settings at 7B sizes. */
static void case_shapes(void)
{
    shape sh[32];
    size_t n = model_shapes("stories260K/hf", sh, 16);
    size_t nb = model_shapes("babyllama105/hf-bf16-2shards", sh + n, 16);
    int saw64 = 0, saw128 = 0;
    n += nb;
    for (size_t i = 0; i < n; i++) {
        saw64 |= sh[i].d_in == 64 && sh[i].d_out == 64;
        saw128 |= sh[i].d_in == 128 && sh[i].d_out == 128;
    }
    if (qr_test_data_dir()) {
        QR_EXPECT(saw64 && saw128, "expected 64 x 64 (stories260K) and 128 x 128 (babyllama105)");
    }
    sh[n++] = (shape){4096, 4096};
    sh[n++] = (shape){11008, 4096};
    sh[n++] = (shape){4096, 11008};
    for (size_t i = 0; i < n; i++) {
        int64_t m = sh[i].d_out, d = sh[i].d_in, dmin = m < d ? m : d;
        for (size_t k = 0; k < N_METHODS; k++) {
            qr_status st;
            qr_method_opts r = resolved(methods[k], -1, 0.0, m, d, &st);
            QR_EXPECT(st == QR_OK, "%lld x %lld: %s", (long long)m, (long long)d, qr_errmsg());
            QR_EXPECT(qr_method_check(&r, "test", m, d) == QR_OK, "%s", qr_errmsg());
            if (methods[k] == QR_METHOD_SERQ) {
                int64_t kmax = d / 32 > 1 ? d / 32 : 1;
                QR_EXPECT(r.n_salient >= 1 && r.n_salient <= kmax,
                          "serq %lld x %lld: k %lld (expected 1..%lld)", (long long)m, (long long)d,
                          (long long)r.n_salient, (long long)kmax);
                QR_EXPECT(r.rank == 0, "serq rank %lld", (long long)r.rank);
            } else {
                QR_EXPECT(r.rank >= 1 && r.rank <= dmin, "%s %lld x %lld: rank %lld",
                          qr_method_name(methods[k]), (long long)m, (long long)d,
                          (long long)r.rank);
            }
            if (methods[k] == QR_METHOD_ASER) {
                QR_EXPECT(r.n_salient >= 1 && r.n_salient <= r.rank,
                          "aser %lld x %lld: f %lld > r %lld", (long long)m, (long long)d,
                          (long long)r.n_salient, (long long)r.rank);
            }
        }
        /* The SERQ side matrix on a 128-wide model: a fraction of a bit, not ~9 bits per weight. */
        if (d == 128 && m == 128) {
            qr_status st;
            qr_method_opts r = resolved(QR_METHOD_SERQ, 32, 0.0, m, d, &st);
            QR_EXPECT(qr_method_bits_bound(&r, m, d) < 6.0, "serq 128 x 128: %.3f bit/w",
                      qr_method_bits_bound(&r, m, d));
        }
    }
    {
        qr_status st;
        QR_EXPECT(resolved(QR_METHOD_LQER, -1, 0, 4096, 4096, &st).rank == 32, "7B rank");
        QR_EXPECT(resolved(QR_METHOD_SRR, -1, 0, 11008, 4096, &st).rank == 46, "7B mlp rank");
        QR_EXPECT(resolved(QR_METHOD_ASER, -1, 0, 4096, 4096, &st).n_salient == 32, "7B aser f");
        QR_EXPECT(resolved(QR_METHOD_SERQ, -1, 0, 4096, 4096, &st).n_salient == 128, "7B serq k");
        QR_EXPECT(resolved(QR_METHOD_ASER, -1, 0, 64, 64, &st).n_salient == 1, "64 aser f");
        QR_EXPECT(resolved(QR_METHOD_ASER, -1, 0, 64, 64, &st).rank == 1, "64 aser r");
    }
}

/* Under --bits B every module stores at most B bits per weight, and one more rank (or salient
 * channel) would exceed B (the rule rounds down); a budget below the main matrix is refused, and
 * so is an explicit rank over the budget. */
static void case_budget(void)
{
    static const double budgets[] = {4.3, 4.5, 5.0, 5.25, 5.5, 6.0, 8.0};
    static const int64_t groups[] = {32, 128};
    shape sh[] = {{64, 64},   {32, 64},   {172, 64},    {64, 172},     {128, 128},
                  {352, 128}, {128, 352}, {4096, 4096}, {11008, 4096}, {4096, 11008}};
    size_t checked = 0, refused = 0;
    for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++) {
        int64_t m = sh[s].d_out, d = sh[s].d_in, dmin = m < d ? m : d;
        for (size_t k = 0; k < N_METHODS; k++) {
            for (size_t g = 0; g < 2; g++) {
                for (size_t b = 0; b < sizeof budgets / sizeof budgets[0]; b++) {
                    qr_status st;
                    double B = budgets[b];
                    qr_method_opts r = resolved(methods[k], groups[g], B, m, d, &st), up;
                    if (st != QR_OK) {
                        QR_EXPECT(st == QR_ERR_INPUT && strstr(qr_errmsg(), "below"), "%s",
                                  qr_errmsg());
                        refused++;
                        continue;
                    }
                    checked++;
                    QR_EXPECT(qr_method_check(&r, "test", m, d) == QR_OK, "%s", qr_errmsg());
                    QR_EXPECT(qr_method_bits_bound(&r, m, d) <= B * (1 + 1e-12),
                              "%s %lld x %lld g%lld --bits %g: %.6f", qr_method_name(methods[k]),
                              (long long)m, (long long)d, (long long)groups[g], B,
                              qr_method_bits_bound(&r, m, d));
                    up = r;
                    if (methods[k] == QR_METHOD_SERQ) {
                        up.n_salient++;
                    } else {
                        up.rank++;
                    }
                    if ((methods[k] == QR_METHOD_SERQ && r.n_salient < d) ||
                        (methods[k] != QR_METHOD_SERQ && r.rank < dmin)) {
                        QR_EXPECT(qr_method_bits_bound(&up, m, d) > B,
                                  "%s %lld x %lld --bits %g: not the largest that fits",
                                  qr_method_name(methods[k]), (long long)m, (long long)d, B);
                        /* one more is refused when given explicitly */
                        QR_EXPECT(qr_method_check(&up, "test", m, d) == QR_ERR_INPUT,
                                  "explicit value over --bits accepted");
                    }
                }
            }
        }
    }
    QR_EXPECT(checked > 100 && refused > 0, "checked %zu, refused %zu", checked, refused);
}

/* The stored bits of a real run equal the bound and stay under the budget. */
static void case_run(void)
{
    const int64_t m = 64, d = 172, nt = 512;
    double *W = NULL;
    float *X = NULL;
    qr_stats *st = NULL;
    qr_rng rng;
    qr_rng_seed(&rng, 7);
    W = malloc(sizeof *W * (size_t)(m * d));
    X = malloc(sizeof *X * (size_t)(nt * d));
    if (!W || !X || qr_stats_create(d, &st) != QR_OK) {
        QR_EXPECT(0, "setup");
        goto done;
    }
    for (int64_t i = 0; i < m * d; i++) {
        W[i] = qr_rng_normal(&rng) * 0.05;
    }
    for (int64_t i = 0; i < nt * d; i++) {
        X[i] = (float)(qr_rng_normal(&rng) * ((i % d) % 29 == 0 ? 20.0 : 1.0));
    }
    QR_EXPECT(qr_stats_add(st, X, nt) == QR_OK, "%s", qr_errmsg());
    for (size_t k = 0; k < N_METHODS; k++) {
        static const double budgets[] = {6.5, 7.5}; /* above ASER's and SERQ's base */
        for (size_t b = 0; b < 2; b++) {
            qr_method_opts o;
            qr_qlayer ql;
            qr_method_report rep;
            qr_method_opts_default(&o, methods[k]);
            o.wq.group = 32;
            o.bits = budgets[b];
            o.module_name = "test.mlp.down_proj";
            if (qr_method_run(&o, W, m, d, st, &ql, &rep) != QR_OK) {
                QR_EXPECT(0, "%s: %s", qr_method_name(methods[k]), qr_errmsg());
                continue;
            }
            QR_EXPECT(ql.bits_per_weight <= o.bits, "%s --bits %g: stored %.4f",
                      qr_method_name(methods[k]), o.bits, ql.bits_per_weight);
            if (methods[k] != QR_METHOD_FLRQ) {
                qr_method_opts r;
                QR_EXPECT(qr_method_resolve(&o, "test", m, d, &r) == QR_OK, "%s", qr_errmsg());
                QR_EXPECT(fabs(ql.bits_per_weight - qr_method_bits_bound(&r, m, d)) < 1e-9,
                          "%s: stored %.6f, rule %.6f", qr_method_name(methods[k]),
                          ql.bits_per_weight, qr_method_bits_bound(&r, m, d));
            }
            qr_qlayer_free(&ql);
        }
    }
done:
    free(W);
    free(X);
    qr_stats_free(&st);
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";
    if (strcmp(c, "shapes") == 0) {
        case_shapes();
    } else if (strcmp(c, "budget") == 0) {
        case_budget();
    } else if (strcmp(c, "run") == 0) {
        case_run();
    } else {
        fprintf(stderr, "usage: test_auto_rule shapes|budget|run\n");
        return 2;
    }
    return qr_test_finish(c);
}

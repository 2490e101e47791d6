/* test_joint.c: properties of JOINT (src/methods/joint.c), the GPTQ main matrix and whitened
 * correction fitted alternately, with A4 smoothing chosen per module.
 *
 *   test_joint CASE      CASE: calib | budget | a4 | search */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/model.h"
#include "src/method.h"
#include "src/metrics.h"
#include "src/stats.h"
#include "tests/methods/fixture.h"
#include "tests/test_util.h"

/* JOINT's first fit is QERA-exact+GPTQ's layer bit for bit and it keeps the best fit, so it is at
 * most that error; L and R are stored as float32 (relative rounding ~1e-7 of the error). */
#define TOL_SAME_FIT 1e-6
/* The alternation must buy something: on these layers at least this relative gain on one. */
#define MIN_GAIN 0.01

/* Calibration error (from G) of method m (GPTQ on) at rank r on W; -1 on failure. */
static double calib_err(qr_method_id m, int abits, const double *W, int64_t d_out, int64_t d_in,
                        const qr_stats *st, int64_t r, double bits, qr_qlayer *keep)
{
    qr_method_opts o;
    qr_qlayer ql;
    double *eff = NULL, e = -1.0;
    qr_method_opts_default(&o, m);
    o.gptq = true;
    o.wq.group = 32;
    o.rank = r;
    o.bits = bits;
    o.abits = abits;
    o.module_name = "model.layers.1.mlp.down_proj";
    if (qr_method_run(&o, W, d_out, d_in, st, &ql, NULL) != QR_OK) {
        fprintf(stderr, "%s: %s\n", qr_method_name(m), qr_errmsg());
        return -1.0;
    }
    eff = mf_effective(&ql);
    if (!eff || qr_metrics_calib_error(W, eff, st->G, d_out, d_in, &e) != QR_OK) {
        e = -1.0;
    }
    free(eff);
    if (keep) {
        *keep = ql;
    } else {
        qr_qlayer_free(&ql);
    }
    return e;
}

/* JOINT against QERA-exact+GPTQ and SRR+GPTQ on one layer: never above QERA-exact+GPTQ; returns
 * the relative gain over it. */
static double compare_layer(const char *what, const double *W, int64_t d_out, int64_t d_in,
                            const qr_stats *st, int64_t r)
{
    /* float activations: JOINT then chooses by the calibration objective alone */
    double ej = calib_err(QR_METHOD_JOINT, 0, W, d_out, d_in, st, r, 0.0, NULL);
    double eq = calib_err(QR_METHOD_QERA_EXACT, 8, W, d_out, d_in, st, r, 0.0, NULL);
    double es = calib_err(QR_METHOD_SRR, 8, W, d_out, d_in, st, r, 0.0, NULL);
    printf("%-34s %3lld x %-3lld r %lld: calibration error joint %.5f, qera-exact+gptq %.5f, "
           "srr+gptq %.5f\n",
           what, (long long)d_out, (long long)d_in, (long long)r, ej, eq, es);
    QR_EXPECT(ej >= 0.0 && eq > 0.0 && es > 0.0, "%s: a method failed", what);
    QR_EXPECT(ej <= eq * (1.0 + TOL_SAME_FIT), "%s: joint %.6g above qera-exact+gptq %.6g", what,
              ej, eq);
    return eq > 0.0 ? 1.0 - ej / eq : 0.0;
}

/* Seeded synthetic layers (outlier weight columns, correlated activations with outlier channels)
 * and real stories260K weights with the same activations. */
static void case_calib(void)
{
    static const int64_t shapes[][3] = {{64, 64, 4}, {96, 160, 8}, {172, 64, 5}};
    const char *data = qr_test_data_dir();
    double best_gain = 0.0;
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int64_t m = shapes[k][0], n = shapes[k][1], nc = 4 * n;
        double *W = malloc(sizeof *W * (size_t)(m * n));
        float *X = malloc(sizeof *X * (size_t)(nc * n));
        qr_stats *st = NULL;
        mf_weight(300 + k, m, n, W);
        mf_acts(310 + k, 320 + k, nc, n, X);
        QR_EXPECT(mf_stats(X, nc, n, &st) == QR_OK, "stats: %s", qr_errmsg());
        if (st) {
            double g = compare_layer("synthetic", W, m, n, st, shapes[k][2]);
            best_gain = g > best_gain ? g : best_gain;
        }
        qr_stats_free(&st);
        free(W);
        free(X);
    }
    if (data) {
        static const char *names[] = {"model.layers.0.self_attn.q_proj",
                                      "model.layers.2.mlp.down_proj"};
        char path[4096];
        qr_model *md = NULL;
        snprintf(path, sizeof path, "%s/models/stories260K/hf", data);
        QR_EXPECT(qr_model_open(path, &md) == QR_OK, "%s: %s", path, qr_errmsg());
        for (size_t k = 0; md && k < 2; k++) {
            char tn[256];
            int64_t m = k == 0 ? 64 : 64, n = k == 0 ? 64 : 172, nc = 4 * n;
            double *W = malloc(sizeof *W * (size_t)(m * n));
            float *X = malloc(sizeof *X * (size_t)(nc * n));
            qr_stats *st = NULL;
            snprintf(tn, sizeof tn, "%s.weight", names[k]);
            QR_EXPECT(qr_model_read_f64(md, tn, W, (size_t)(m * n)) == QR_OK, "%s: %s", tn,
                      qr_errmsg());
            mf_acts(330 + k, 340 + k, nc, n, X);
            QR_EXPECT(mf_stats(X, nc, n, &st) == QR_OK, "stats: %s", qr_errmsg());
            if (st) {
                double g = compare_layer(names[k], W, m, n, st, 4);
                best_gain = g > best_gain ? g : best_gain;
            }
            qr_stats_free(&st);
            free(W);
            free(X);
        }
        qr_model_close(&md);
    } else {
        printf("shared data absent: synthetic layers only\n");
    }
    QR_EXPECT(best_gain >= MIN_GAIN, "joint gains at most %.4f over qera-exact+gptq", best_gain);
}

/* Under --bits B, at A8 and A4: the stored bits stay <= B, the rank is the rule's (or, with a
 * smoothing vector, qr_joint_smooth_rank's), and two runs give the same layer (the smoothing
 * choice is deterministic). */
static void case_budget(void)
{
    static const int64_t shapes[][2] = {{32, 64}, {64, 172}, {128, 128}};
    static const double budgets[] = {5.75, 6.0, 7.0};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int64_t m = shapes[k][0], n = shapes[k][1], nc = 2 * n;
        double *W = malloc(sizeof *W * (size_t)(m * n));
        float *X = malloc(sizeof *X * (size_t)(nc * n));
        qr_stats *st = NULL;
        mf_weight(400 + k, m, n, W);
        mf_acts(410 + k, 420 + k, nc, n, X);
        QR_EXPECT(mf_stats(X, nc, n, &st) == QR_OK, "stats: %s", qr_errmsg());
        for (size_t b = 0; st && b < sizeof budgets / sizeof budgets[0]; b++) {
            for (int abits = 4; abits <= 8; abits += 4) {
                qr_method_opts o, r;
                qr_qlayer a, c;
                qr_method_opts_default(&o, QR_METHOD_JOINT);
                o.wq.group = 32;
                o.bits = budgets[b];
                o.abits = abits;
                o.module_name = "test.budget";
                QR_EXPECT(qr_method_resolve(&o, "test", m, n, &r) == QR_OK, "%s", qr_errmsg());
                QR_EXPECT(qr_method_bits_bound(&r, m, n) <= o.bits + 1e-9, "bound %.4f over %g",
                          qr_method_bits_bound(&r, m, n), o.bits);
                if (qr_method_run(&o, W, m, n, st, &a, NULL) != QR_OK ||
                    qr_method_run(&o, W, m, n, st, &c, NULL) != QR_OK) {
                    QR_EXPECT(0, "%lld x %lld --bits %g: %s", (long long)m, (long long)n, o.bits,
                              qr_errmsg());
                    continue;
                }
                QR_EXPECT(a.bits_per_weight <= o.bits + 1e-9, "%lld x %lld A%d: %.4f > %g",
                          (long long)m, (long long)n, abits, a.bits_per_weight, o.bits);
                QR_EXPECT(a.rank == (a.smooth ? qr_joint_smooth_rank(&r, m, n) : r.rank),
                          "A%d: rank %lld (rule %lld, with smoothing %lld), smoothing %s", abits,
                          (long long)a.rank, (long long)r.rank,
                          (long long)qr_joint_smooth_rank(&r, m, n), a.smooth ? "stored" : "none");
                QR_EXPECT(a.rank == c.rank && (!a.smooth) == (!c.smooth) &&
                              memcmp(a.main.packed, c.main.packed,
                                     (size_t)(m * qr_qweight_row_bytes(&a.main))) == 0 &&
                              (a.rank == 0 ||
                               memcmp(a.L, c.L, sizeof(float) * (size_t)(m * a.rank)) == 0),
                          "%lld x %lld A%d: two runs differ", (long long)m, (long long)n, abits);
                qr_qlayer_free(&a);
                qr_qlayer_free(&c);
            }
        }
        qr_stats_free(&st);
        free(W);
        free(X);
    }
}

/* At A4 with outlier activation channels (x20) JOINT smooths and its held-out A4 output error is
 * below QERA-exact+GPTQ's at the same budget. */
static void case_a4(void)
{
    enum { DO = 96, DI = 256, NC = 1024, NT = 512 };
    double *W = malloc(sizeof(double) * DO * DI);
    float *X = malloc(sizeof(float) * NC * DI), *Xt = malloc(sizeof(float) * NT * DI);
    qr_stats *st = NULL;
    qr_qlayer qj, qq;
    double ej = -1.0, eq = -1.0;
    const double bits = 5.5;
    mf_weight(111, DO, DI, W);
    mf_acts(112, 113, NC, DI, X);
    mf_acts(112, 114, NT, DI, Xt);
    QR_EXPECT(mf_stats(X, NC, DI, &st) == QR_OK, "stats: %s", qr_errmsg());
    if (st && calib_err(QR_METHOD_JOINT, 4, W, DO, DI, st, QR_AUTO, bits, &qj) >= 0.0) {
        if (calib_err(QR_METHOD_QERA_EXACT, 4, W, DO, DI, st, QR_AUTO, bits, &qq) >= 0.0) {
            QR_EXPECT(qr_metrics_output_error(&qj, W, Xt, NT, 4, 0, &ej) == QR_OK, "%s",
                      qr_errmsg());
            QR_EXPECT(qr_metrics_output_error(&qq, W, Xt, NT, 4, 0, &eq) == QR_OK, "%s",
                      qr_errmsg());
            printf("W4A4 held-out output error at %g bits: joint %.5f (rank %lld, %s), "
                   "qera-exact+gptq %.5f (rank %lld)\n",
                   bits, ej, (long long)qj.rank, qj.smooth ? "smoothed" : "not smoothed", eq,
                   (long long)qq.rank);
            QR_EXPECT(qj.smooth != NULL, "joint did not smooth at A4 with x20 outlier channels");
            QR_EXPECT(ej < eq, "joint at A4 (%.5g) not below qera-exact+gptq (%.5g)", ej, eq);
            QR_EXPECT(qj.bits_per_weight <= bits && qq.bits_per_weight <= bits, "bits %.4f %.4f",
                      qj.bits_per_weight, qq.bits_per_weight);
            qr_qlayer_free(&qq);
        }
        qr_qlayer_free(&qj);
    } else {
        QR_EXPECT(0, "joint failed at A4");
    }
    qr_stats_free(&st);
    free(W);
    free(X);
    free(Xt);
}

/* How much of its search JOINT runs (qr_joint_search): the whole search on the small models'
 * modules, a bounded one at 7B widths (at most max(QR_JOINT_MIN_SWEEPS, QR_JOINT_WORK / (m n²))
 * GPTQ sweeps), smoothing kept at A4 longest, never more work for a larger module. */
static void case_search(void)
{
    static const int64_t shapes[][2] = {{32, 64},      {64, 64},      {352, 128},    {128, 352},
                                        {1024, 1024},  {2048, 2048},  {2048, 5504},  {4096, 4096},
                                        {11008, 4096}, {4096, 11008}, {16384, 53248}};
    int prev[2] = {1 << 30, 1 << 30};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        for (int a = 0; a < 2; a++) {
            int abits = a ? 4 : 8, spaces, fits, sweeps;
            double m = (double)shapes[i][0], n = (double)shapes[i][1];
            qr_joint_search(abits, shapes[i][0], shapes[i][1], &spaces, &fits);
            sweeps = 2 * spaces * fits;
            QR_EXPECT(spaces >= 1 && spaces <= QR_JOINT_SPACES && fits >= 1 &&
                          fits <= QR_JOINT_MAX_FITS,
                      "%gx%g A%d: %d spaces, %d fits", m, n, abits, spaces, fits);
            QR_EXPECT(sweeps <= (QR_JOINT_WORK / (m * n * n) > QR_JOINT_MIN_SWEEPS
                                     ? QR_JOINT_WORK / (m * n * n)
                                     : QR_JOINT_MIN_SWEEPS),
                      "%gx%g A%d: %d sweeps over the work bound", m, n, abits, sweeps);
            QR_EXPECT(sweeps <= prev[a], "%gx%g A%d: %d sweeps, more than a smaller module's %d", m,
                      n, abits, sweeps, prev[a]);
            QR_EXPECT(spaces >= (a ? 2 : 1), "%gx%g A%d: %d spaces", m, n, abits, spaces);
            if (m * n <= 352 * 128) {
                QR_EXPECT(spaces == QR_JOINT_SPACES && fits == QR_JOINT_MAX_FITS,
                          "%gx%g: the small models get the full search (found %d spaces, %d fits)",
                          m, n, spaces, fits);
            }
            printf("%6.0f x %-6.0f A%d: %d space(s), %2d fit(s) per start, %3d sweeps\n", m, n,
                   abits, spaces, fits, sweeps);
            prev[a] = sweeps;
        }
    }
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";
    if (strcmp(c, "calib") == 0) {
        case_calib();
    } else if (strcmp(c, "budget") == 0) {
        case_budget();
    } else if (strcmp(c, "a4") == 0) {
        case_a4();
    } else if (strcmp(c, "search") == 0) {
        case_search();
    } else {
        fprintf(stderr, "usage: test_joint calib|budget|a4|search\n");
        return 2;
    }
    return qr_test_finish(c);
}

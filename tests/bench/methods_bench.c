/* methods_bench.c: stage times and output errors of every reconstruction method on synthetic
 * Llama-sized layers, single process (docs/methods.md).
 *
 * Weights come from src/synth.h (Student-t values, 1% outlier input columns x10..30, per-row
 * scales); calibration and held-out activations are generated here: x = z M + 0.3 e with z of
 * d/8 latent factors (correlated channels), plus 1% activation outlier channels x20. Statistics of
 * the calibration tokens are accumulated with src/stats.h; each method runs on them and the
 * metrics (src/metrics.h) are measured on the held-out tokens.
 *
 * usage: methods_bench [--shape DOUTxDIN]... [--tokens N] [--heldout N] [--rank R]
 *                      [--methods a,b,...] [--big-methods a,b,...] [--sweep]
 *                      [--whiten-compare]
 * --big-methods limits the methods timed on shapes with more than 2^24 weights (default: all but
 * flrq and rtn+gptq, the two slowest, to keep the whole run near 10 minutes on 2 shared cores;
 * "all" times every method).
 * --sweep runs the variants of the choices the papers leave open instead (ASER smoothing alpha and
 * salient count, whitening damping, SRR base and k, FLRQ BLC iterations).
 * --whiten-compare times the whitened rank-r SVD of E S two ways side by side: implicit (never
 * forming E S, src/methods/correction.c) and formed (E S by a triangular multiply, then
 * qr_svd_truncated), with the relative difference of their singular values. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/method.h"
#include "src/methods/correction.h"
#include "src/metrics.h"
#include "src/rng.h"
#include "src/stats.h"
#include "src/synth.h"

#define MAX_SHAPES 8
#define ACT_OUTLIER_FRAC 0.01
#define ACT_OUTLIER_SCALE 20.0

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* X (n, d) float32 activations: factors M (q, d) fixed by structure_seed, tokens by tokens_seed. */
static int make_acts(uint64_t structure_seed, uint64_t tokens_seed, int64_t n, int64_t d, float *X)
{
    int64_t q = d / 8;
    float *M = malloc(sizeof(float) * (size_t)(q * d)); /* (q, d) */
    float *Z = malloc(sizeof(float) * (size_t)(n * q)); /* (n, q) */
    float *cs = malloc(sizeof(float) * (size_t)d);      /* (d) channel scale */
    qr_rng rng;
    if (!M || !Z || !cs) {
        free(M);
        free(Z);
        free(cs);
        return 1;
    }
    qr_rng_seed(&rng, structure_seed);
    for (int64_t i = 0; i < q * d; i++) {
        M[i] = (float)(qr_rng_normal(&rng) / sqrt((double)q));
    }
    for (int64_t j = 0; j < d; j++) {
        cs[j] = qr_rng_uniform(&rng) < ACT_OUTLIER_FRAC ? (float)ACT_OUTLIER_SCALE : 1.0f;
    }
    qr_rng_seed(&rng, tokens_seed);
    for (int64_t i = 0; i < n * q; i++) {
        Z[i] = (float)qr_rng_normal(&rng);
    }
    for (int64_t i = 0; i < n * d; i++) {
        X[i] = (float)(0.3 * qr_rng_normal(&rng));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)d, (int)q, 1.0f, Z, (int)q,
                M, (int)d, 1.0f, X, (int)d);
    for (int64_t t = 0; t < n; t++) {
        for (int64_t j = 0; j < d; j++) {
            X[t * d + j] *= cs[j];
        }
    }
    free(M);
    free(Z);
    free(cs);
    return 0;
}

static int make_weight(int64_t d_out, int64_t d_in, double *W)
{
    qr_synth_tensor t;
    qr_synth_gen g;
    float *row = malloc(sizeof(float) * (size_t)d_in);
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "model.layers.0.bench_%lldx%lld.weight", (long long)d_out,
             (long long)d_in);
    snprintf(t.outlier_set, sizeof t.outlier_set, "residual");
    t.kind = QR_SYNTH_LINEAR;
    t.ndim = 2;
    t.rows = d_out;
    t.cols = d_in;
    if (!row || qr_synth_gen_init(&g, &t, 0) != QR_OK) {
        free(row);
        return 1;
    }
    for (int64_t i = 0; i < d_out; i++) {
        qr_synth_gen_rows(&g, i, 1, row);
        for (int64_t j = 0; j < d_in; j++) {
            W[i * d_in + j] = (double)row[j];
        }
    }
    qr_synth_gen_free(&g);
    free(row);
    return 0;
}

/* The --sweep variants: a label and a change to the defaults of one method. */
typedef struct {
    const char *label;
    qr_method_id method;
    double alpha;   /* ASER smooth_alpha (< 0: default) */
    int64_t f;      /* ASER n_salient (< 0: default) */
    double lambda0; /* whiten_lambda0 (< 0: default) */
    qr_method_id srr_base;
    int64_t srr_k; /* -2: default */
    int blc;       /* FLRQ BLC iterations (< 0: default) */
} variant;

static const variant sweep[] = {
    {"aser alpha 0.25", QR_METHOD_ASER, 0.25, -1, -1, QR_METHOD_COUNT, -2, -1},
    {"aser alpha 0.5", QR_METHOD_ASER, 0.5, -1, -1, QR_METHOD_COUNT, -2, -1},
    {"aser alpha 0.75", QR_METHOD_ASER, 0.75, -1, -1, QR_METHOD_COUNT, -2, -1},
    {"aser alpha 0.5 f 0", QR_METHOD_ASER, 0.5, 0, -1, QR_METHOD_COUNT, -2, -1},
    {"aser alpha 0.5 lambda0 1e-2", QR_METHOD_ASER, 0.5, -1, 1e-2, QR_METHOD_COUNT, -2, -1},
    {"qera-exact lambda0 1e-8", QR_METHOD_QERA_EXACT, -1, -1, 1e-8, QR_METHOD_COUNT, -2, -1},
    {"qera-exact lambda0 1e-4", QR_METHOD_QERA_EXACT, -1, -1, 1e-4, QR_METHOD_COUNT, -2, -1},
    {"qera-exact lambda0 1e-2", QR_METHOD_QERA_EXACT, -1, -1, 1e-2, QR_METHOD_COUNT, -2, -1},
    {"qera-exact lambda0 1e-1", QR_METHOD_QERA_EXACT, -1, -1, 1e-1, QR_METHOD_COUNT, -2, -1},
    {"srr lqer k*", QR_METHOD_SRR, -1, -1, -1, QR_METHOD_LQER, -1, -1},
    {"srr qera-approx k*", QR_METHOD_SRR, -1, -1, -1, QR_METHOD_QERA_APPROX, -1, -1},
    {"srr qera-exact k*", QR_METHOD_SRR, -1, -1, -1, QR_METHOD_QERA_EXACT, -1, -1},
    {"srr qera-exact k*, lambda0 1e-2", QR_METHOD_SRR, -1, -1, 1e-2, QR_METHOD_QERA_EXACT, -1, -1},
    {"flrq blc 0", QR_METHOD_FLRQ, -1, -1, -1, QR_METHOD_COUNT, -2, 0},
    {"flrq blc 2", QR_METHOD_FLRQ, -1, -1, -1, QR_METHOD_COUNT, -2, 2},
};

/* Time the whitened rank-r SVD of E S, implicit and formed, on E = W - RTN(W). */
static int whiten_compare(const double *W, int64_t m, int64_t n, const qr_stats *st, int64_t r)
{
    qr_wquant_opts wq;
    qr_qweight q;
    qr_scaling S;
    qr_svd_opts so;
    qr_rng rng;
    double *E = malloc(sizeof(double) * (size_t)(m * n)), *ES = NULL;
    double *U = malloc(sizeof(double) * (size_t)(m * r));
    double *Vt = malloc(sizeof(double) * (size_t)(r * n));
    double *s1 = malloc(sizeof(double) * (size_t)r), *s2 = malloc(sizeof(double) * (size_t)r);
    double t_imp, t_form, diff = 0.0;
    qr_wquant_opts_default(&wq);
    qr_svd_opts_default(&so);
    if (!E || !U || !Vt || !s1 || !s2 || qr_quantize_rtn(W, m, n, &wq, NULL, &q) != QR_OK ||
        qr_scaling_whiten(st->G, n, QR_CHOL_LAMBDA0, &S) != QR_OK) {
        fprintf(stderr, "methods_bench: whiten-compare setup: %s\n", qr_errmsg());
        return 1;
    }
    qr_qweight_dequantize_f64(&q, E);
    qr_qweight_free(&q);
    for (int64_t i = 0; i < m * n; i++) {
        E[i] = W[i] - E[i];
    }
    t_imp = now();
    qr_rng_seed(&rng, 1);
    if (qr_scaled_svd(E, m, n, &S, r, &so, &rng, U, s1, Vt) != QR_OK) {
        fprintf(stderr, "methods_bench: implicit: %s\n", qr_errmsg());
        return 1;
    }
    t_imp = now() - t_imp;
    t_form = now();
    ES = malloc(sizeof(double) * (size_t)(m * n));
    qr_rng_seed(&rng, 1);
    if (!ES) {
        return 1;
    }
    memcpy(ES, E, sizeof(double) * (size_t)(m * n));
    if (qr_scaling_apply(&S, ES, m, false) != QR_OK ||
        qr_svd_truncated(ES, m, n, r, &so, &rng, U, s2, Vt) != QR_OK) {
        fprintf(stderr, "methods_bench: formed: %s\n", qr_errmsg());
        return 1;
    }
    t_form = now() - t_form;
    for (int64_t k = 0; k < r; k++) {
        diff = fmax(diff, fabs(s1[k] - s2[k]) / s2[0]);
    }
    printf("| %lld x %lld | %lld | %.2f | %.2f | %.2fx | %.1e |\n", (long long)m, (long long)n,
           (long long)r, t_imp, t_form, t_form / t_imp, diff);
    qr_scaling_free(&S);
    free(E);
    free(ES);
    free(U);
    free(Vt);
    free(s1);
    free(s2);
    return 0;
}

static bool listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) {
            return true;
        }
        p = e ? e + 1 : NULL;
    }
    return false;
}

int main(int argc, char **argv)
{
    int64_t shapes[MAX_SHAPES][2] = {{4096, 4096}, {11008, 4096}};
    int n_shapes = 0, user_shapes = 0;
    int64_t n_cal = 2048, n_test = 256, rank = 32;
    const char *methods = NULL, *big_methods = "rtn,lqer,qera-approx,qera-exact,aser,serq,srr";
    bool do_sweep = false, do_whiten = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc && user_shapes < MAX_SHAPES) {
            long long a, b;
            if (sscanf(argv[++i], "%lldx%lld", &a, &b) != 2 || a < 1 || b < 1) {
                fprintf(stderr, "methods_bench: --shape (expected DOUTxDIN, found %s)\n", argv[i]);
                return 2;
            }
            shapes[user_shapes][0] = a;
            shapes[user_shapes][1] = b;
            user_shapes++;
        } else if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) {
            n_cal = atoll(argv[++i]);
        } else if (strcmp(argv[i], "--heldout") == 0 && i + 1 < argc) {
            n_test = atoll(argv[++i]);
        } else if (strcmp(argv[i], "--rank") == 0 && i + 1 < argc) {
            rank = atoll(argv[++i]);
        } else if (strcmp(argv[i], "--methods") == 0 && i + 1 < argc) {
            methods = argv[++i];
        } else if (strcmp(argv[i], "--whiten-compare") == 0) {
            do_whiten = true;
        } else if (strcmp(argv[i], "--sweep") == 0) {
            do_sweep = true;
        } else if (strcmp(argv[i], "--big-methods") == 0 && i + 1 < argc) {
            big_methods = strcmp(argv[i + 1], "all") == 0 ? NULL : argv[i + 1];
            i++;
        } else {
            fprintf(stderr, "methods_bench: unknown or incomplete option %s\n", argv[i]);
            return 2;
        }
    }
    n_shapes = user_shapes ? user_shapes : 2;
    if (n_cal < 1 || n_test < 1 || rank < 0) {
        fprintf(stderr, "methods_bench: bad --tokens, --heldout or --rank\n");
        return 2;
    }
    printf("methods_bench: %lld calibration tokens, %lld held-out, rank %lld, "
           "OPENBLAS_NUM_THREADS=%s\n",
           (long long)n_cal, (long long)n_test, (long long)rank,
           getenv("OPENBLAS_NUM_THREADS") ? getenv("OPENBLAS_NUM_THREADS") : "(unset)");
    for (int s = 0; s < n_shapes; s++) {
        int64_t d_out = shapes[s][0], d_in = shapes[s][1];
        bool big = (double)d_out * (double)d_in > (double)(1 << 24);
        double *W = malloc(sizeof(double) * (size_t)(d_out * d_in));
        float *Xc = malloc(sizeof(float) * (size_t)(n_cal * d_in));
        float *Xt = malloc(sizeof(float) * (size_t)(n_test * d_in));
        qr_stats *st = NULL;
        double t0;
        if (!W || !Xc || !Xt || make_weight(d_out, d_in, W) || make_acts(7, 8, n_cal, d_in, Xc) ||
            make_acts(7, 9, n_test, d_in, Xt) || qr_stats_create(d_in, &st) != QR_OK) {
            fprintf(stderr, "methods_bench: setup failed for %lldx%lld: %s\n", (long long)d_out,
                    (long long)d_in, qr_errmsg());
            return 1;
        }
        t0 = now();
        for (int64_t t = 0; t < n_cal; t += 256) {
            int64_t b = n_cal - t < 256 ? n_cal - t : 256;
            if (qr_stats_add(st, Xc + t * d_in, b) != QR_OK) {
                fprintf(stderr, "methods_bench: stats: %s\n", qr_errmsg());
                return 1;
            }
        }
        printf("\n## %lld x %lld (statistics of %lld tokens: %.2f s)\n\n", (long long)d_out,
               (long long)d_in, (long long)n_cal, now() - t0);
        if (do_whiten) {
            printf("| shape | r | implicit s | formed s | speed-up | max singular value diff |\n");
            printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
            if (whiten_compare(W, d_out, d_in, st, rank)) {
                return 1;
            }
            qr_stats_free(&st);
            free(W);
            free(Xc);
            free(Xt);
            continue;
        }
        printf(
            "| method | scale s | quantize s | decompose s | other s | total s | rank | bits/w | "
            "out err float | A8 | A4 | A4 g128 | SQNR dB |\n");
        printf(
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
            "---: |\n");
        fflush(stdout);
        int n_rows = do_sweep ? (int)(sizeof sweep / sizeof sweep[0]) : QR_METHOD_COUNT + 1;
        for (int m = 0; m < n_rows; m++) {
            /* m == QR_METHOD_COUNT: RTN with GPTQ as the extra row. */
            qr_method_id id = do_sweep               ? sweep[m].method
                              : m == QR_METHOD_COUNT ? QR_METHOD_RTN
                                                     : (qr_method_id)m;
            const char *label = do_sweep               ? sweep[m].label
                                : m == QR_METHOD_COUNT ? "rtn+gptq"
                                                       : qr_method_name(id);
            qr_method_opts o;
            qr_method_report rep;
            qr_qlayer ql;
            qr_metrics mt;
            double wall;
            char rank_s[48];
            if ((methods && !listed(methods, label)) ||
                (big && big_methods && !listed(big_methods, label))) {
                continue;
            }
            qr_method_opts_default(&o, id);
            o.gptq = !do_sweep && m == QR_METHOD_COUNT;
            o.rank = rank;
            if (do_sweep) {
                const variant *v = &sweep[m];
                o.smooth_alpha = v->alpha >= 0 ? v->alpha : o.smooth_alpha;
                o.n_salient = v->f >= 0 ? v->f : o.n_salient;
                o.whiten_lambda0 = v->lambda0 >= 0 ? v->lambda0 : o.whiten_lambda0;
                o.srr_base = v->srr_base != QR_METHOD_COUNT ? v->srr_base : o.srr_base;
                o.srr_k = v->srr_k >= -1 ? v->srr_k : o.srr_k;
                o.flrq_blc_iters = v->blc >= 0 ? v->blc : o.flrq_blc_iters;
            }
            o.module_name = "model.layers.0.mlp.up_proj";
            wall = now();
            if (qr_method_run(&o, W, d_out, d_in, st, &ql, &rep) != QR_OK) {
                fprintf(stderr, "methods_bench: %s: %s\n", label, qr_errmsg());
                return 1;
            }
            wall = now() - wall;
            if (qr_metrics_compute(&ql, W, Xt, n_test, 128, &rep, &mt) != QR_OK) {
                fprintf(stderr, "methods_bench: metrics of %s: %s\n", label, qr_errmsg());
                return 1;
            }
            if (id == QR_METHOD_SRR) {
                snprintf(rank_s, sizeof rank_s, "%lld (k=%lld)", (long long)rep.rank_used,
                         (long long)rep.srr_k_used);
            } else {
                snprintf(rank_s, sizeof rank_s, "%lld", (long long)rep.rank_used);
            }
            printf("| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %s | %.3f | %.4f | %.4f | %.4f | "
                   "%.4f | %.1f |\n",
                   label, rep.seconds[QR_STAGE_SCALE], rep.seconds[QR_STAGE_QUANTIZE],
                   rep.seconds[QR_STAGE_DECOMPOSE], rep.seconds[QR_STAGE_OTHER], wall, rank_s,
                   mt.bits_per_weight, mt.out_rel_err, mt.out_rel_err_a8, mt.out_rel_err_a4,
                   mt.out_rel_err_a4g, mt.sqnr_db);
            fflush(stdout);
            qr_qlayer_free(&ql);
        }
        qr_stats_free(&st);
        free(W);
        free(Xc);
        free(Xt);
    }
    return 0;
}

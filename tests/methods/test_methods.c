/* test_methods.c: properties of the reconstruction methods (src/method.h), the shared corrections
 * (src/methods/correction.h), the reference forward (src/qlayer_ref.h) and the metrics
 * (src/metrics.h). One program; the first argument picks the case (see main). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/linalg.h"
#include "src/method.h"
#include "src/methods/correction.h"
#include "src/metrics.h"
#include "src/qlayer_ref.h"
#include "src/quant.h"
#include "tests/methods/fixture.h"
#include "tests/test_util.h"

/* L and R are stored as float32: relative rounding 6e-8 per entry, summed over a few hundred
 * terms, so errors that are equal in exact arithmetic agree to about 1e-6. */
#define TOL_F32 1e-5
/* Comparisons done entirely in float64 (corrections before storage): rounding only. */
#define TOL_F64 1e-9
/* Whitening adds QR_CHOL_LAMBDA0 = 1e-8 relative damping to G: the optimum moves by about that. */
#define TOL_DAMPED 1e-6
/* The randomized SVD (AUTO at small ranks) is near-optimal but not nested exactly. */
#define TOL_RANDOMIZED 1e-2

static const qr_method_id qer_bases[3] = {QR_METHOD_LQER, QR_METHOD_QERA_APPROX,
                                          QR_METHOD_QERA_EXACT};

/* Run method m on W with options o; returns the effective weight (NULL on failure). */
static double *run_eff(const qr_method_opts *o, const double *W, int64_t d_out, int64_t d_in,
                       const qr_stats *st, qr_qlayer *ql, qr_method_report *rep)
{
    qr_status s = qr_method_run(o, W, d_out, d_in, st, ql, rep);
    if (s != QR_OK) {
        fprintf(stderr, "method %s failed: %s\n", qr_method_name(o->method), qr_errmsg());
        return NULL;
    }
    return mf_effective(ql);
}

/* Output error on calibration falls with rank for LQER and QERA, and full rank recovers W. */
static int test_rank(void)
{
    enum { DO = 48, DI = 64, NC = 512 };
    static const int64_t ranks[] = {0, 1, 2, 4, 8, 16, 32, 48};
    const int nr = (int)(sizeof ranks / sizeof ranks[0]);
    double *W = malloc(sizeof(double) * DO * DI);
    float *X = malloc(sizeof(float) * NC * DI);
    float *Xh = malloc(sizeof(float) * NC * DI);
    qr_stats *st = NULL;
    mf_weight(1, DO, DI, W);
    mf_acts(2, 3, NC, DI, X);
    mf_acts(2, 4, NC, DI, Xh);
    QR_REQUIRE(mf_stats(X, NC, DI, &st) == QR_OK, "stats: %s", qr_errmsg());
    for (int b = 0; b < 3; b++) {
        for (int mode = 0; mode < 2; mode++) {
            double prev = INFINITY, prev_h = INFINITY;
            double tol = mode == 0 ? TOL_F32 : TOL_RANDOMIZED;
            for (int i = 0; i < nr; i++) {
                qr_method_opts o;
                qr_qlayer ql;
                double *We, e, eh;
                qr_method_opts_default(&o, qer_bases[b]);
                o.wq.group = 32;
                o.rank = ranks[i];
                o.svd.mode = mode == 0 ? QR_SVD_EXACT : QR_SVD_AUTO;
                We = run_eff(&o, W, DO, DI, st, &ql, NULL);
                QR_REQUIRE(We, "%s rank %lld", qr_method_name(qer_bases[b]), (long long)ranks[i]);
                e = mf_out_err(W, We, DO, DI, X, NC);
                eh = mf_out_err(W, We, DO, DI, Xh, NC);
                QR_EXPECT(e <= prev * (1.0 + tol) + 1e-12,
                          "%s (%s SVD): calibration output error rose from %.9g to %.9g at rank "
                          "%lld",
                          qr_method_name(qer_bases[b]), mode == 0 ? "exact" : "auto", prev, e,
                          (long long)ranks[i]);
                QR_EXPECT(eh <= prev_h * (1.0 + tol) + 1e-12,
                          "%s (%s SVD): held-out output error rose from %.9g to %.9g at rank %lld",
                          qr_method_name(qer_bases[b]), mode == 0 ? "exact" : "auto", prev_h, eh,
                          (long long)ranks[i]);
                if (ranks[i] == DO) {
                    double num = 0.0, den = 0.0;
                    for (int64_t k = 0; k < DO * DI; k++) {
                        num += (W[k] - We[k]) * (W[k] - We[k]);
                        den += W[k] * W[k];
                    }
                    QR_EXPECT(sqrt(num / den) < TOL_F32,
                              "%s: full rank should reproduce W (relative weight error %.3g)",
                              qr_method_name(qer_bases[b]), sqrt(num / den));
                }
                prev = e;
                prev_h = eh;
                free(We);
                qr_qlayer_free(&ql);
            }
        }
    }
    qr_stats_free(&st);
    free(W);
    free(X);
    free(Xh);
    return qr_test_finish("methods.rank_monotone");
}

/* ||(E - L R) Xᵀ||_F for E (DO, DI), L (DO, r), R (r, DI), X (n, DI). */
static double corr_out_err(const double *E, const double *L, const double *R, int64_t d_out,
                           int64_t d_in, int64_t r, const float *X, int64_t n)
{
    double *D = malloc(sizeof(double) * (size_t)(d_out * d_in));
    double s = 0.0;
    for (int64_t i = 0; i < d_out; i++) {
        for (int64_t j = 0; j < d_in; j++) {
            double c = 0.0;
            for (int64_t k = 0; k < r; k++) {
                c += L[i * r + k] * R[k * d_in + j];
            }
            D[i * d_in + j] = E[i * d_in + j] - c;
        }
    }
    for (int64_t t = 0; t < n; t++) {
        for (int64_t i = 0; i < d_out; i++) {
            double y = 0.0;
            for (int64_t j = 0; j < d_in; j++) {
                y += D[i * d_in + j] * (double)X[t * d_in + j];
            }
            s += y * y;
        }
    }
    free(D);
    return sqrt(s);
}

/* The whitened correction is optimal on the calibration set. */
static int test_whitened(void)
{
    enum { DO = 24, DI = 40, NC = 300, R = 4, NRAND = 20 };
    double *W = malloc(sizeof(double) * DO * DI), *E = malloc(sizeof(double) * DO * DI);
    double *L = malloc(sizeof(double) * DO * R), *Rm = malloc(sizeof(double) * R * DI);
    double *B = malloc(sizeof(double) * DO * NC); /* E Xᵀ */
    double *U = malloc(sizeof(double) * DO * DO), *S = malloc(sizeof(double) * DO);
    double *Vt = malloc(sizeof(double) * DO * NC);
    float *X = malloc(sizeof(float) * NC * DI);
    qr_stats *st = NULL;
    qr_qweight q;
    qr_wquant_opts wq;
    qr_svd_opts so;
    qr_scaling sc;
    qr_rng rng;
    double e_white, opt = 0.0, e_base[3];

    mf_weight(11, DO, DI, W);
    mf_acts(12, 13, NC, DI, X);
    QR_REQUIRE(mf_stats(X, NC, DI, &st) == QR_OK, "stats: %s", qr_errmsg());
    qr_wquant_opts_default(&wq);
    wq.group = 8;
    QR_REQUIRE(qr_quantize_rtn(W, DO, DI, &wq, NULL, &q) == QR_OK, "rtn: %s", qr_errmsg());
    qr_qweight_dequantize_f64(&q, E);
    for (int i = 0; i < DO * DI; i++) {
        E[i] = W[i] - E[i];
    }
    qr_qweight_free(&q);
    qr_svd_opts_default(&so);
    so.mode = QR_SVD_EXACT;

    /* Brute force: the best rank-R approximation of E Xᵀ, by SVD. */
    for (int i = 0; i < DO; i++) {
        for (int t = 0; t < NC; t++) {
            double y = 0.0;
            for (int j = 0; j < DI; j++) {
                y += E[i * DI + j] * (double)X[t * DI + j];
            }
            B[i * NC + t] = y;
        }
    }
    QR_REQUIRE(qr_svd(B, DO, NC, U, S, Vt) == QR_OK, "svd: %s", qr_errmsg());
    for (int i = R; i < DO; i++) {
        opt += S[i] * S[i];
    }
    opt = sqrt(opt);

    QR_REQUIRE(qr_scaling_whiten(st->G, DI, QR_CHOL_LAMBDA0, &sc) == QR_OK, "%s", qr_errmsg());
    QR_REQUIRE(qr_corr_lowrank(E, DO, DI, &sc, R, &so, NULL, L, Rm, NULL) == QR_OK, "%s",
               qr_errmsg());
    qr_scaling_free(&sc);
    e_white = corr_out_err(E, L, Rm, DO, DI, R, X, NC);
    QR_EXPECT(fabs(e_white - opt) <= TOL_DAMPED * opt,
              "whitened correction %.12g differs from the brute-force optimum %.12g", e_white, opt);

    for (int b = 0; b < 2; b++) {
        QR_REQUIRE(qr_scaling_for_method(qer_bases[b], st, 0.0, &sc) == QR_OK, "%s", qr_errmsg());
        QR_REQUIRE(qr_corr_lowrank(E, DO, DI, &sc, R, &so, NULL, L, Rm, NULL) == QR_OK, "%s",
                   qr_errmsg());
        qr_scaling_free(&sc);
        e_base[b] = corr_out_err(E, L, Rm, DO, DI, R, X, NC);
        QR_EXPECT(e_white <= e_base[b] * (1.0 + TOL_F64),
                  "whitened %.12g worse than %s scaling %.12g", e_white,
                  qr_method_name(qer_bases[b]), e_base[b]);
    }
    qr_rng_seed(&rng, 99);
    for (int k = 0; k < NRAND; k++) {
        double v[DI], e;
        for (int j = 0; j < DI; j++) {
            v[j] = exp(2.0 * qr_rng_normal(&rng));
        }
        QR_REQUIRE(qr_scaling_diag(v, DI, &sc) == QR_OK, "%s", qr_errmsg());
        QR_REQUIRE(qr_corr_lowrank(E, DO, DI, &sc, R, &so, NULL, L, Rm, NULL) == QR_OK, "%s",
                   qr_errmsg());
        qr_scaling_free(&sc);
        e = corr_out_err(E, L, Rm, DO, DI, R, X, NC);
        QR_EXPECT(e_white <= e * (1.0 + TOL_F64),
                  "whitened %.12g worse than random scaling %d: %.12g", e_white, k, e);
    }

    /* The same through the methods (float32 L, R; each method quantizes W the same way). */
    for (int b = 0; b < 3; b++) {
        qr_method_opts o;
        qr_qlayer ql;
        double *We;
        qr_method_opts_default(&o, qer_bases[b]);
        o.wq = wq;
        o.rank = R;
        o.svd = so;
        We = run_eff(&o, W, DO, DI, st, &ql, NULL);
        QR_REQUIRE(We, "method run");
        e_base[b] = mf_out_err(W, We, DO, DI, X, NC);
        free(We);
        qr_qlayer_free(&ql);
    }
    QR_EXPECT(e_base[2] <= e_base[0] * (1.0 + TOL_F32) && e_base[2] <= e_base[1] * (1.0 + TOL_F32),
              "QERA-exact layer %.9g not <= LQER %.9g and QERA-approx %.9g on calibration",
              e_base[2], e_base[0], e_base[1]);
    {
        double ref = 0.0;
        for (int i = 0; i < DO; i++) {
            for (int t = 0; t < NC; t++) {
                double y = 0.0;
                for (int j = 0; j < DI; j++) {
                    y += W[i * DI + j] * (double)X[t * DI + j];
                }
                ref += y * y;
            }
        }
        QR_EXPECT(fabs(e_base[2] - opt / sqrt(ref)) <= TOL_F32 * opt / sqrt(ref),
                  "QERA-exact layer output error %.9g vs brute-force optimum %.9g", e_base[2],
                  opt / sqrt(ref));
    }
    qr_stats_free(&st);
    free(W);
    free(E);
    free(L);
    free(Rm);
    free(B);
    free(U);
    free(S);
    free(Vt);
    free(X);
    return qr_test_finish("methods.whitened_optimal");
}

static bool same_qweight(const qr_qweight *a, const qr_qweight *b)
{
    size_t nb = (size_t)(a->rows * qr_qweight_row_bytes(a));
    size_t ns = (size_t)(a->rows * a->n_groups);
    return a->rows == b->rows && a->cols == b->cols && a->group == b->group &&
           memcmp(a->packed, b->packed, nb) == 0 &&
           memcmp(a->scales, b->scales, ns * sizeof(float)) == 0;
}

/* SRR with k = 0 is its base method, bit for bit. */
static int test_srr_k0(void)
{
    enum { DO = 40, DI = 56, NC = 256 };
    double *W = malloc(sizeof(double) * DO * DI);
    float *X = malloc(sizeof(float) * NC * DI);
    qr_stats *st = NULL;
    mf_weight(21, DO, DI, W);
    mf_acts(22, 23, NC, DI, X);
    QR_REQUIRE(mf_stats(X, NC, DI, &st) == QR_OK, "stats: %s", qr_errmsg());
    for (int b = 0; b < 3; b++) {
        for (int gptq = 0; gptq < 2; gptq++) {
            qr_method_opts o;
            qr_qlayer base, srr;
            qr_method_report rep;
            qr_method_opts_default(&o, qer_bases[b]);
            o.wq.group = 16;
            o.rank = 4; /* 8 r <= min(d): the randomized SVD and its stream are used */
            o.gptq = gptq;
            o.module_name = "model.layers.0.mlp.up_proj";
            QR_REQUIRE(qr_method_run(&o, W, DO, DI, st, &base, NULL) == QR_OK, "%s", qr_errmsg());
            o.method = QR_METHOD_SRR;
            o.srr_base = qer_bases[b];
            o.srr_k = 0;
            QR_REQUIRE(qr_method_run(&o, W, DO, DI, st, &srr, &rep) == QR_OK, "%s", qr_errmsg());
            QR_EXPECT(rep.srr_k_used == 0, "k used %lld", (long long)rep.srr_k_used);
            QR_EXPECT(same_qweight(&base.main, &srr.main),
                      "SRR(k=0) on %s%s: main matrix differs from the base method's",
                      qr_method_name(qer_bases[b]), gptq ? " with GPTQ" : "");
            QR_EXPECT(base.rank == srr.rank &&
                          memcmp(base.L, srr.L, sizeof(float) * (size_t)(DO * base.rank)) == 0 &&
                          memcmp(base.R, srr.R, sizeof(float) * (size_t)(DI * base.rank)) == 0,
                      "SRR(k=0) on %s%s: L or R differs from the base method's",
                      qr_method_name(qer_bases[b]), gptq ? " with GPTQ" : "");
            qr_qlayer_free(&base);
            qr_qlayer_free(&srr);
        }
    }
    qr_stats_free(&st);
    free(W);
    free(X);
    return qr_test_finish("methods.srr_k0");
}

/* SRR on the whitening base with the randomized SVD: E_rand S is never formed and its total is the
 * expectation (d_out / 3) ||C||_F^2. Check that expectation against the realised total, and that
 * the method's k* is the rule applied to the spectra it computes. */
static int test_srr_kstar_whitened(void)
{
    enum { DO = 64, DI = 96, NC = 512, R = 6 };
    double *W = malloc(sizeof(double) * DO * DI), *WS = malloc(sizeof(double) * DO * DI);
    double *Er = malloc(sizeof(double) * DO * DI);
    double *U = malloc(sizeof(double) * DO * R), *Vt = malloc(sizeof(double) * R * DI);
    double sw[R], se[R], tw = 0.0, te = 0.0, te_exp = 0.0;
    float *X = malloc(sizeof(float) * NC * DI);
    qr_stats *st = NULL;
    qr_method_opts o;
    qr_method_report rep;
    qr_qlayer ql;
    qr_scaling sc;
    qr_rng rng;
    int64_t k;
    mf_weight(35, DO, DI, W);
    qr_rng_seed(&rng, 36);
    for (int c = 0; c < 4; c++) {
        double u[DO], v[DI], a = 3.0 / (double)(1 << c);
        for (int i = 0; i < DO; i++) {
            u[i] = qr_rng_normal(&rng) / sqrt((double)DO);
        }
        for (int j = 0; j < DI; j++) {
            v[j] = qr_rng_normal(&rng) / sqrt((double)DI);
        }
        for (int i = 0; i < DO; i++) {
            for (int j = 0; j < DI; j++) {
                W[i * DI + j] += a * u[i] * v[j];
            }
        }
    }
    mf_acts(37, 38, NC, DI, X);
    QR_REQUIRE(mf_stats(X, NC, DI, &st) == QR_OK, "stats: %s", qr_errmsg());
    qr_method_opts_default(&o, QR_METHOD_SRR);
    o.rank = R;
    o.svd.mode = QR_SVD_RANDOMIZED;
    o.module_name = "model.layers.2.self_attn.q_proj";
    QR_REQUIRE(qr_method_run(&o, W, DO, DI, st, &ql, &rep) == QR_OK, "srr: %s", qr_errmsg());
    QR_REQUIRE(qr_scaling_whiten(st->G, DI, o.whiten_lambda0, &sc) == QR_OK, "%s", qr_errmsg());
    QR_REQUIRE(qr_scaled_svd_implicit(&sc, DO, DI, R, &o.svd), "test design: implicit path");
    memcpy(WS, W, sizeof(double) * DO * DI);
    qr_scaling_apply(&sc, WS, DO, false);
    for (int i = 0; i < DO * DI; i++) {
        tw += WS[i] * WS[i];
    }
    qr_method_rng(&o, "srr-preserve", &rng);
    QR_REQUIRE(qr_svd_truncated(WS, DO, DI, R, &o.svd, &rng, U, sw, Vt) == QR_OK, "%s",
               qr_errmsg());
    qr_method_rng(&o, "srr-random", &rng);
    for (int i = 0; i < DO * DI; i++) {
        Er[i] = 2.0 * qr_rng_uniform(&rng) - 1.0;
    }
    qr_method_rng(&o, "srr-random-svd", &rng);
    QR_REQUIRE(qr_scaled_svd(Er, DO, DI, &sc, R, &o.svd, &rng, U, se, Vt) == QR_OK, "%s",
               qr_errmsg());
    for (int i = 0; i < DI * DI; i++) {
        te_exp += sc.chol[i] * sc.chol[i];
    }
    te_exp *= DO / 3.0;
    qr_scaling_apply(&sc, Er, DO, false);
    for (int i = 0; i < DO * DI; i++) {
        te += Er[i] * Er[i];
    }
    {
        /* ||E C||^2 = sum_i e_i G' e_iᵀ with G' = C Cᵀ: its relative standard deviation is at most
         * sqrt(2 / d_out) ||G'||_F / tr(G') (entries of variance 1/3, fourth moment 1/5); a few
         * outlier channels make that several percent here. Allow 4 standard deviations. */
        double fro = 0.0, tr = 0.0, sd;
        for (int a = 0; a < DI; a++) {
            for (int b = 0; b < DI; b++) {
                double g = 0.0;
                for (int c = 0; c < DI; c++) {
                    g += sc.chol[a * DI + c] * sc.chol[b * DI + c];
                }
                fro += g * g;
                tr += a == b ? g : 0.0;
            }
        }
        sd = sqrt(2.0 / DO) * sqrt(fro) / tr;
        QR_EXPECT(fabs(te - te_exp) <= 4.0 * sd * te_exp,
                  "E_rand S total %.6g vs its expectation %.6g (4 sd = %.3g relative)", te, te_exp,
                  4.0 * sd);
        printf("E_rand S total %.6g, expectation %.6g (relative sd bound %.3g)\n", te, te_exp, sd);
    }
    k = qr_srr_kstar(sw, tw, se, te_exp, R);
    QR_EXPECT(rep.srr_k_rule == k, "whitened SRR's rule chose k = %lld, the rule gives %lld",
              (long long)rep.srr_k_rule, (long long)k);
    QR_EXPECT(rep.srr_k_used == k || rep.srr_k_used == 0,
              "whitened SRR used k = %lld (expected the rule's %lld, or 0 for the base layer)",
              (long long)rep.srr_k_used, (long long)k);
    {
        /* The guard's promise: never above its base (qera-exact) on ||(W - W_eff) C||_F. */
        qr_method_opts ob = o;
        qr_method_report rb;
        qr_qlayer qb;
        double e[2] = {0.0, 0.0};
        ob.method = QR_METHOD_QERA_EXACT;
        QR_REQUIRE(qr_method_run(&ob, W, DO, DI, st, &qb, &rb) == QR_OK, "base: %s", qr_errmsg());
        for (int t = 0; t < 2; t++) {
            QR_REQUIRE(qr_qlayer_effective_weight(t ? &qb : &ql, WS) == QR_OK, "%s", qr_errmsg());
            for (int i = 0; i < DO * DI; i++) {
                WS[i] = W[i] - WS[i];
            }
            qr_scaling_apply(&sc, WS, DO, false);
            for (int i = 0; i < DO * DI; i++) {
                e[t] += WS[i] * WS[i];
            }
        }
        QR_EXPECT(e[0] <= e[1] * (1.0 + 1e-9), "SRR's scaled error %.6g above its base's %.6g",
                  e[0], e[1]);
        printf("whitened SRR: k* %lld, used %lld; scaled error %.6g, base %.6g\n",
               (long long)rep.srr_k_rule, (long long)rep.srr_k_used, e[0], e[1]);
        qr_qlayer_free(&qb);
    }
    qr_scaling_free(&sc);
    qr_qlayer_free(&ql);
    qr_stats_free(&st);
    free(W);
    free(WS);
    free(Er);
    free(U);
    free(Vt);
    free(X);
    return qr_test_finish("methods.srr_kstar");
}

/* The k* rule on hand-computed spectra, and the method's wiring of it. */
static int test_srr_kstar(void)
{
    /* Spectra chosen by hand (see docs/methods.md for the arithmetic):
     * W = [10, 1, 1, 1] (total 103), E = [1, 1, 1, 1] (4), r = 2: products 0.5, 0.0218, 0.0194 -> 2
     * W = [10, 1, 1, 1], E = [3, 1, 1, 1] (12): 0.1667, 0.00728, 0.0194 -> 1
     * W = [1, 1, 1, 1] (4), E = [3, 1, 1, 1]: 0.1667, 0.1875, 0.5 -> 0 */
    const double w1[2] = {10, 1}, e1[2] = {1, 1}, e2[2] = {3, 1}, w3[2] = {1, 1};
    enum { DO = 32, DI = 48, NC = 256, R = 6 };
    double *W = malloc(sizeof(double) * DO * DI), *WS = malloc(sizeof(double) * DO * DI);
    double *U = malloc(sizeof(double) * DO * DO), *Sv = malloc(sizeof(double) * DO);
    double *Vt = malloc(sizeof(double) * DO * DI);
    double sw[R], se[R], tw = 0.0, te = 0.0;
    float *X = malloc(sizeof(float) * NC * DI);
    qr_stats *st = NULL;
    qr_method_opts o;
    qr_method_report rep;
    qr_qlayer ql;
    qr_scaling sc;
    qr_rng rng;
    int64_t k;

    QR_EXPECT(qr_srr_kstar(w1, 103, e1, 4, 2) == 2, "case 1: k* = %lld, expected 2",
              (long long)qr_srr_kstar(w1, 103, e1, 4, 2));
    QR_EXPECT(qr_srr_kstar(w1, 103, e2, 12, 2) == 1, "case 2: k* = %lld, expected 1",
              (long long)qr_srr_kstar(w1, 103, e2, 12, 2));
    QR_EXPECT(qr_srr_kstar(w3, 4, e2, 12, 2) == 0, "case 3: k* = %lld, expected 0",
              (long long)qr_srr_kstar(w3, 4, e2, 12, 2));

    /* W with a decaying spectrum: heavy-tailed noise plus a geometric low-rank part. */
    mf_weight(31, DO, DI, W);
    qr_rng_seed(&rng, 32);
    for (int c = 0; c < 4; c++) {
        double u[DO], v[DI], a = 3.0 / (double)(1 << c);
        for (int i = 0; i < DO; i++) {
            u[i] = qr_rng_normal(&rng) / sqrt((double)DO);
        }
        for (int j = 0; j < DI; j++) {
            v[j] = qr_rng_normal(&rng) / sqrt((double)DI);
        }
        for (int i = 0; i < DO; i++) {
            for (int j = 0; j < DI; j++) {
                W[i * DI + j] += a * u[i] * v[j];
            }
        }
    }
    mf_acts(33, 34, NC, DI, X);
    QR_REQUIRE(mf_stats(X, NC, DI, &st) == QR_OK, "stats: %s", qr_errmsg());
    qr_method_opts_default(&o, QR_METHOD_SRR);
    o.srr_base = QR_METHOD_LQER;
    o.rank = R;
    o.svd.mode = QR_SVD_EXACT;
    o.wq.group = 16;
    o.module_name = "model.layers.1.self_attn.o_proj";
    QR_REQUIRE(qr_method_run(&o, W, DO, DI, st, &ql, &rep) == QR_OK, "srr: %s", qr_errmsg());

    /* The expected k*: same scaling, same E_rand stream, exact spectra. */
    QR_REQUIRE(qr_scaling_lqer(st, &sc) == QR_OK, "%s", qr_errmsg());
    memcpy(WS, W, sizeof(double) * DO * DI);
    qr_scaling_apply(&sc, WS, DO, false);
    for (int i = 0; i < DO * DI; i++) {
        tw += WS[i] * WS[i];
    }
    QR_REQUIRE(qr_svd(WS, DO, DI, U, Sv, Vt) == QR_OK, "%s", qr_errmsg());
    memcpy(sw, Sv, sizeof sw);
    qr_method_rng(&o, "srr-random", &rng);
    for (int i = 0; i < DO * DI; i++) {
        WS[i] = 2.0 * qr_rng_uniform(&rng) - 1.0;
    }
    qr_scaling_apply(&sc, WS, DO, false);
    for (int i = 0; i < DO * DI; i++) {
        te += WS[i] * WS[i];
    }
    QR_REQUIRE(qr_svd(WS, DO, DI, U, Sv, Vt) == QR_OK, "%s", qr_errmsg());
    memcpy(se, Sv, sizeof se);
    k = qr_srr_kstar(sw, tw, se, te, R);
    QR_EXPECT(rep.srr_k_rule == k,
              "SRR's rule chose k = %lld, the rule on exact spectra gives %lld",
              (long long)rep.srr_k_rule, (long long)k);
    QR_EXPECT(rep.srr_k_used == k || rep.srr_k_used == 0,
              "SRR used k = %lld (expected the rule's %lld, or 0 for the base layer)",
              (long long)rep.srr_k_used, (long long)k);
    QR_EXPECT(k > 0 && k < R, "test design: expected an interior k* for this spectrum, got %lld",
              (long long)k);
    QR_EXPECT(ql.rank == R, "SRR rank %lld, expected %d", (long long)ql.rank, R);
    qr_scaling_free(&sc);
    qr_qlayer_free(&ql);
    qr_stats_free(&st);
    free(W);
    free(WS);
    free(U);
    free(Sv);
    free(Vt);
    free(X);
    return test_srr_kstar_whitened();
}

/* SERQ: the module computed with permutation and smoothing equals the folded weight applied to the
 * untransformed input; and the permutation orders the channels by max|x| descending. */
static int test_serq(void)
{
    enum { DO = 64, DI = 96, NC = 256, K = 16 };
    double *W = malloc(sizeof(double) * DO * DI), *Y = malloc(sizeof(double) * NC * DO);
    float *X = malloc(sizeof(float) * NC * DI);
    qr_stats *st = NULL;
    qr_method_opts o;
    qr_qlayer ql;
    double *We, num = 0.0, den = 0.0;
    bool seen[DI] = {false};
    mf_weight(41, DO, DI, W);
    mf_acts(42, 43, NC, DI, X);
    QR_REQUIRE(mf_stats(X, NC, DI, &st) == QR_OK, "stats: %s", qr_errmsg());
    qr_method_opts_default(&o, QR_METHOD_SERQ);
    o.wq.group = 32;
    o.n_salient = K;
    We = run_eff(&o, W, DO, DI, st, &ql, NULL);
    QR_REQUIRE(We, "serq");
    QR_REQUIRE(ql.perm && ql.smooth && ql.n_salient == K, "SERQ must store perm, smooth, side");
    for (int j = 0; j < DI; j++) {
        QR_EXPECT(ql.perm[j] >= 0 && ql.perm[j] < DI && !seen[ql.perm[j]],
                  "perm is not a permutation at %d (%d)", j, (int)ql.perm[j]);
        if (ql.perm[j] >= 0 && ql.perm[j] < DI) {
            seen[ql.perm[j]] = true;
            QR_EXPECT(ql.smooth[j] == (float)st->max_abs[ql.perm[j]],
                      "smooth[%d] = %g, expected max|x| of channel %d = %g", j, ql.smooth[j],
                      (int)ql.perm[j], st->max_abs[ql.perm[j]]);
        }
        QR_EXPECT(j == 0 || ql.smooth[j] <= ql.smooth[j - 1], "smooth not descending at %d", j);
    }
    QR_REQUIRE(qr_qlayer_forward_ref(&ql, X, NC, 0, 0, Y) == QR_OK, "%s", qr_errmsg());
    for (int t = 0; t < NC; t++) {
        for (int i = 0; i < DO; i++) {
            double y = 0.0;
            for (int j = 0; j < DI; j++) {
                y += We[i * DI + j] * (double)X[t * DI + j];
            }
            num += (y - Y[t * DO + i]) * (y - Y[t * DO + i]);
            den += y * y;
        }
    }
    QR_EXPECT(sqrt(num / den) < TOL_F64,
              "SERQ output with perm/smooth differs from the folded weight's by %.3g",
              sqrt(num / den));
    free(We);
    qr_qlayer_free(&ql);
    qr_stats_free(&st);
    free(W);
    free(X);
    free(Y);
    return qr_test_finish("methods.serq_transform");
}

/* Every method beats RTN (same weight quantizer) on held-out tokens, float and A8 activations. */
static int test_beat_rtn(void)
{
    enum { DO = 96, DI = 128, NC = 1024, NT = 512 };
    double *W = malloc(sizeof(double) * DO * DI);
    float *X = malloc(sizeof(float) * NC * DI), *Xt = malloc(sizeof(float) * NT * DI);
    qr_stats *st = NULL;
    mf_weight(51, DO, DI, W);
    mf_acts(52, 53, NC, DI, X);
    mf_acts(52, 54, NT, DI, Xt);
    QR_REQUIRE(mf_stats(X, NC, DI, &st) == QR_OK, "stats: %s", qr_errmsg());
    for (int m = 1; m < QR_METHOD_COUNT; m++) {
        qr_method_opts o, ro;
        qr_qlayer ql, rq;
        qr_method_report rep;
        double e[2], er[2];
        qr_method_opts_default(&o, (qr_method_id)m);
        if (o.wq.group != 0) {
            o.wq.group = 32;
        }
        o.rank = 8;
        o.n_salient = (m == QR_METHOD_SERQ) ? 16 : 8;
        o.module_name = "model.layers.2.mlp.down_proj";
        qr_method_opts_default(&ro, QR_METHOD_RTN);
        ro.wq = o.wq;
        QR_REQUIRE(qr_method_run(&o, W, DO, DI, st, &ql, &rep) == QR_OK, "%s: %s",
                   qr_method_name((qr_method_id)m), qr_errmsg());
        QR_REQUIRE(qr_method_run(&ro, W, DO, DI, st, &rq, NULL) == QR_OK, "rtn: %s", qr_errmsg());
        for (int a = 0; a < 2; a++) {
            QR_REQUIRE(qr_metrics_output_error(&ql, W, Xt, NT, a ? 8 : 0, 0, &e[a]) == QR_OK, "%s",
                       qr_errmsg());
            QR_REQUIRE(qr_metrics_output_error(&rq, W, Xt, NT, a ? 8 : 0, 0, &er[a]) == QR_OK, "%s",
                       qr_errmsg());
            QR_EXPECT(e[a] < er[a], "%s (%s): held-out output error %.5g not below RTN's %.5g",
                      qr_method_name((qr_method_id)m), a ? "A8" : "float", e[a], er[a]);
        }
        printf("%-12s rank %2lld: float %.5f (RTN %.5f)  A8 %.5f (RTN %.5f)\n",
               qr_method_name((qr_method_id)m), (long long)rep.rank_used, e[0], er[0], e[1], er[1]);
        qr_qlayer_free(&ql);
        qr_qlayer_free(&rq);
    }
    qr_stats_free(&st);
    free(W);
    free(X);
    free(Xt);
    return qr_test_finish("methods.beat_rtn");
}

/* FLRQ gives layers with different spectra different ranks. */
static int test_flrq_rank(void)
{
    enum { D = 256, NC = 512 };
    double *Wflat = malloc(sizeof(double) * D * D), *Wspike = malloc(sizeof(double) * D * D);
    float *X = malloc(sizeof(float) * NC * D);
    qr_stats *st = NULL;
    qr_rng rng;
    int64_t rank[2];
    mf_weight(61, D, D, Wflat);
    memcpy(Wspike, Wflat, sizeof(double) * D * D);
    /* Three strong rank-1 components whose entries dwarf the noise's largest value. */
    qr_rng_seed(&rng, 62);
    for (int c = 0; c < 3; c++) {
        double u[D], v[D];
        for (int i = 0; i < D; i++) {
            u[i] = qr_rng_normal(&rng);
            v[i] = qr_rng_normal(&rng);
        }
        for (int i = 0; i < D; i++) {
            for (int j = 0; j < D; j++) {
                Wspike[i * D + j] += 1.0 * u[i] * v[j];
            }
        }
    }
    mf_acts(63, 64, NC, D, X);
    QR_REQUIRE(mf_stats(X, NC, D, &st) == QR_OK, "stats: %s", qr_errmsg());
    for (int l = 0; l < 2; l++) {
        qr_method_opts o;
        qr_qlayer ql;
        qr_method_report rep;
        qr_method_opts_default(&o, QR_METHOD_FLRQ);
        o.wq.group = 64;
        o.rank = 16;
        QR_REQUIRE(qr_method_run(&o, l ? Wspike : Wflat, D, D, st, &ql, &rep) == QR_OK, "%s",
                   qr_errmsg());
        rank[l] = rep.rank_used;
        printf("FLRQ %s layer: rank %lld, clip %.2f, calibration output error %.5f\n",
               l ? "spiked" : "flat", (long long)rep.rank_used, rep.clip_ratio, rep.calib_out_err);
        QR_EXPECT(rep.calib_out_err > 0.0 && rep.calib_out_err < 1.0,
                  "calibration output error %.3g out of range", rep.calib_out_err);
        qr_qlayer_free(&ql);
    }
    QR_EXPECT(rank[1] > rank[0],
              "FLRQ should give the spiked layer a higher rank than the flat one (found %lld and "
              "%lld)",
              (long long)rank[1], (long long)rank[0]);
    qr_stats_free(&st);
    free(Wflat);
    free(Wspike);
    free(X);
    return qr_test_finish("methods.flrq_rank");
}

/* bits_per_weight = packed codes + scales + zeros + 16-bit L, R + 32-bit smooth and perm. */
static int test_bits(void)
{
    enum { DO = 96, DI = 128, NC = 512 };
    double *W = malloc(sizeof(double) * DO * DI);
    float *X = malloc(sizeof(float) * NC * DI);
    qr_stats *st = NULL;
    const double mn = (double)DO * DI;
    mf_weight(71, DO, DI, W);
    mf_acts(72, 73, NC, DI, X);
    QR_REQUIRE(mf_stats(X, NC, DI, &st) == QR_OK, "stats: %s", qr_errmsg());
    for (int m = 0; m < QR_METHOD_COUNT; m++) {
        for (int asym = 0; asym < 2; asym++) {
            qr_method_opts o;
            qr_qlayer ql;
            qr_method_report rep;
            double g, expect;
            qr_method_opts_default(&o, (qr_method_id)m);
            if (o.wq.group != 0) {
                o.wq.group = 32;
            }
            o.wq.asym = asym;
            o.rank = 8;
            o.n_salient = 16;
            QR_REQUIRE(qr_method_run(&o, W, DO, DI, st, &ql, &rep) == QR_OK, "%s", qr_errmsg());
            g = o.wq.group ? (double)(DI / 32) : 1.0; /* groups per row */
            expect = 4.0 + (32.0 + (asym ? 4.0 : 0.0)) * g / DI;
            expect += 16.0 * (double)rep.rank_used * (DO + DI) / mn;
            if (m == QR_METHOD_SERQ) {
                expect += (4.0 * 16 * DO + (32.0 + (asym ? 4.0 : 0.0)) * DO) / mn; /* side */
                expect += 2 * 32.0 * DI / mn; /* smooth and perm */
            }
            if (m == QR_METHOD_ASER || (m == QR_METHOD_JOINT && ql.smooth)) {
                expect += 32.0 * DI / mn; /* smooth */
            }
            QR_EXPECT(fabs(ql.bits_per_weight - expect) < 1e-12,
                      "%s%s: bits per weight %.12g, expected %.12g",
                      qr_method_name((qr_method_id)m), asym ? " asym" : "", ql.bits_per_weight,
                      expect);
            QR_EXPECT(m == QR_METHOD_RTN || m == QR_METHOD_SERQ || m == QR_METHOD_FLRQ ||
                          rep.rank_used == 8,
                      "%s: rank used %lld, expected 8", qr_method_name((qr_method_id)m),
                      (long long)rep.rank_used);
            qr_qlayer_free(&ql);
        }
    }
    qr_stats_free(&st);
    free(W);
    free(X);
    return qr_test_finish("methods.bits");
}

/* The reference forward against a loop written out here (every term of the module present), and
 * the metrics against their definitions. */
static int test_metrics(void)
{
    enum { DO = 24, DI = 40, NC = 64, K = 8, R = 3, AG = 16 };
    double *W = malloc(sizeof(double) * DO * DI), *Y = malloc(sizeof(double) * NC * DO);
    double *M = malloc(sizeof(double) * DO * DI), *Ms = malloc(sizeof(double) * DO * K);
    float *X = malloc(sizeof(float) * NC * DI);
    qr_stats *st = NULL;
    qr_method_opts o;
    qr_qlayer ql;
    qr_rng rng;
    qr_metrics mt;
    double num = 0.0, den = 0.0, *We, ce;
    mf_weight(81, DO, DI, W);
    mf_acts(82, 83, NC, DI, X);
    QR_REQUIRE(mf_stats(X, NC, DI, &st) == QR_OK, "stats: %s", qr_errmsg());
    qr_method_opts_default(&o, QR_METHOD_SERQ);
    o.wq.group = 16;
    o.n_salient = K;
    QR_REQUIRE(qr_method_run(&o, W, DO, DI, st, &ql, NULL) == QR_OK, "%s", qr_errmsg());
    /* Attach a low-rank term so every part of the module is exercised. */
    ql.rank = R;
    ql.L = malloc(sizeof(float) * DO * R);
    ql.R = malloc(sizeof(float) * R * DI);
    qr_rng_seed(&rng, 84);
    for (int i = 0; i < DO * R; i++) {
        ql.L[i] = (float)(0.01 * qr_rng_normal(&rng));
    }
    for (int i = 0; i < R * DI; i++) {
        ql.R[i] = (float)qr_rng_normal(&rng);
    }
    QR_REQUIRE(qr_qlayer_forward_ref(&ql, X, NC, 8, AG, Y) == QR_OK, "%s", qr_errmsg());
    qr_qweight_dequantize_f64(&ql.main, M);
    qr_qweight_dequantize_f64(&ql.side, Ms);
    for (int t = 0; t < NC; t++) {
        double u[DI];
        for (int j = 0; j < DI; j++) {
            u[j] = (double)X[t * DI + ql.perm[j]] / (double)ql.smooth[j];
        }
        qr_act_fake_quant(u, 1, DI, 8, AG);
        for (int i = 0; i < DO; i++) {
            double y = 0.0;
            for (int j = 0; j < DI; j++) {
                y += M[i * DI + j] * u[j];
            }
            for (int j = 0; j < K; j++) {
                y += Ms[i * K + j] * u[j];
            }
            for (int c = 0; c < R; c++) {
                double ru = 0.0;
                for (int j = 0; j < DI; j++) {
                    ru += (double)ql.R[c * DI + j] * u[j];
                }
                y += (double)ql.L[i * R + c] * ru;
            }
            num += (y - Y[t * DO + i]) * (y - Y[t * DO + i]);
            den += y * y;
        }
    }
    QR_EXPECT(sqrt(num / den) < TOL_F64,
              "reference forward differs from the written-out loop: %.3g", sqrt(num / den));
    ql.bits_per_weight = qr_qlayer_bits_per_weight(&ql);

    QR_REQUIRE(qr_metrics_compute(&ql, W, X, NC, AG, NULL, &mt) == QR_OK, "%s", qr_errmsg());
    We = mf_effective(&ql);
    QR_REQUIRE(We, "effective weight");
    ce = mf_out_err(W, We, DO, DI, X, NC);
    QR_EXPECT(fabs(mt.out_rel_err - ce) <= TOL_F64 * ce, "float output error %.12g, direct %.12g",
              mt.out_rel_err, ce);
    QR_EXPECT(fabs(mt.sqnr_db + 20.0 * log10(mt.out_rel_err)) < 1e-12, "SQNR %.6g dB vs error %.6g",
              mt.sqnr_db, mt.out_rel_err);
    QR_EXPECT(isfinite(mt.out_rel_err_a4g) && mt.out_rel_err_a4 > 0.0 && mt.out_rel_err_a8 > 0.0,
              "A4/A8 errors missing (%g, %g, %g)", mt.out_rel_err_a8, mt.out_rel_err_a4,
              mt.out_rel_err_a4g);
    QR_EXPECT(mt.bits_per_weight == ql.bits_per_weight, "bits %g vs %g", mt.bits_per_weight,
              ql.bits_per_weight);
    QR_REQUIRE(qr_metrics_calib_error(W, We, st->G, DO, DI, &ce) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(fabs(ce - mt.out_rel_err) <= TOL_F64 * ce,
              "calibration error from G %.12g vs from X %.12g (same tokens)", ce, mt.out_rel_err);
    free(We);
    qr_qlayer_free(&ql);

    /* Weights already on the INT4 grid: RTN's weight error is exactly zero. */
    for (int i = 0; i < DO; i++) {
        for (int j = 0; j < DI; j++) {
            W[i * DI + j] = 0.125 * (double)((i + 3 * j) % 15 - 7);
        }
        W[i * DI] = 0.875; /* max |w| = 7 * 0.125 in every group of the row */
        W[i * DI + 16] = 0.875;
        W[i * DI + 32] = -0.875;
    }
    qr_method_opts_default(&o, QR_METHOD_RTN);
    o.wq.group = 16;
    QR_REQUIRE(qr_method_run(&o, W, DO, DI, NULL, &ql, NULL) == QR_OK, "%s", qr_errmsg());
    QR_REQUIRE(qr_metrics_compute(&ql, W, X, NC, 0, NULL, &mt) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(mt.weight_rel_err == 0.0 && mt.out_rel_err == 0.0 && isinf(mt.sqnr_db),
              "grid weights: weight error %g, output error %g, SQNR %g", mt.weight_rel_err,
              mt.out_rel_err, mt.sqnr_db);
    QR_EXPECT(isnan(mt.out_rel_err_a4g), "grouped A4 should be NaN when agroup = 0");
    qr_qlayer_free(&ql);
    qr_stats_free(&st);
    free(W);
    free(Y);
    free(M);
    free(Ms);
    free(X);
    return qr_test_finish("methods.metrics");
}

/* Relative accuracy of the float32 metrics against the float64 reference: float32 products round
 * each term to ~6e-8 and sums of d_in terms grow that like sqrt(d_in), so an error e (relative to
 * ||Y||) is known to ~1e-6 / e; measured here 7e-8 (errors >= 0.03). */
#define METRICS_FAST_TOL 1e-5

/* The fast path (float32, shared reference outputs) against qr_metrics_compute, every method with
 * its transform (SERQ's permutation, ASER's smoothing), every activation setting; an exact module
 * gives exactly zero. */
static int test_metrics_fast(void)
{
    enum { DO = 96, DI = 128, NC = 1024, NT = 256, AG = 32 };
    double *W = malloc(sizeof(double) * DO * DI), *We = malloc(sizeof(double) * DO * DI);
    float *X = malloc(sizeof(float) * NC * DI), *Xt = malloc(sizeof(float) * NT * DI);
    qr_stats *st = NULL;
    qr_metric_ref ref;
    double worst = 0.0;
    mf_weight(61, DO, DI, W);
    mf_acts(62, 63, NC, DI, X);
    mf_acts(62, 64, NT, DI, Xt);
    QR_REQUIRE(mf_stats(X, NC, DI, &st) == QR_OK, "stats: %s", qr_errmsg());
    QR_REQUIRE(qr_metric_ref_init(&ref, W, DO, DI, Xt, NT) == QR_OK, "%s", qr_errmsg());
    for (int m = 0; m < QR_METHOD_COUNT; m++) {
        qr_method_opts o;
        qr_qlayer ql;
        qr_metrics a, b;
        qr_method_opts_default(&o, (qr_method_id)m);
        o.rank = 8;
        o.n_salient = 8;
        o.module_name = "model.layers.1.self_attn.o_proj";
        QR_REQUIRE(qr_method_run(&o, W, DO, DI, st, &ql, NULL) == QR_OK, "%s: %s",
                   qr_method_name((qr_method_id)m), qr_errmsg());
        QR_REQUIRE(qr_metrics_compute(&ql, W, Xt, NT, AG, NULL, &a) == QR_OK, "%s", qr_errmsg());
        QR_REQUIRE(qr_metrics_fast(&ref, &ql, W, AG, QR_METRICS_ALL, NULL, &b) == QR_OK, "%s",
                   qr_errmsg());
        const double *ea = &a.out_rel_err, *eb = &b.out_rel_err;
        for (int k = -1; k < 4; k++) {
            double x = k < 0 ? a.weight_rel_err : ea[k], y = k < 0 ? b.weight_rel_err : eb[k];
            double d = fabs(x - y) / x;
            worst = d > worst ? d : worst;
            QR_EXPECT(d <= (k < 0 ? 1e-12 : METRICS_FAST_TOL),
                      "%s: metric %d: fast %.9g vs reference %.9g (relative %.2g)",
                      qr_method_name((qr_method_id)m), k, y, x, d);
        }
        QR_EXPECT(b.bits_per_weight == a.bits_per_weight, "%s: bits",
                  qr_method_name((qr_method_id)m));
        if (m == QR_METHOD_RTN) {
            /* The module's own effective weight as W: an exact module. */
            qr_metric_ref ex;
            QR_REQUIRE(qr_qlayer_effective_weight(&ql, We) == QR_OK, "%s", qr_errmsg());
            QR_REQUIRE(qr_metric_ref_init(&ex, We, DO, DI, Xt, NT) == QR_OK, "%s", qr_errmsg());
            QR_REQUIRE(qr_metrics_fast(&ex, &ql, We, 0, QR_METRICS_ALL, NULL, &b) == QR_OK, "%s",
                       qr_errmsg());
            QR_EXPECT(b.out_rel_err == 0.0 && b.weight_rel_err == 0.0 && isinf(b.sqnr_db),
                      "exact module: errors %g, %g, SQNR %g", b.out_rel_err, b.weight_rel_err,
                      b.sqnr_db);
            qr_metric_ref_free(&ex);
        }
        qr_qlayer_free(&ql);
    }
    printf("largest relative deviation of the float32 metrics: %.2e\n", worst);
    qr_metric_ref_free(&ref);
    qr_stats_free(&st);
    free(W);
    free(We);
    free(X);
    free(Xt);
    return qr_test_finish("methods.metrics_fast");
}

/* Shapes of the real small models: rows that group 32 does not divide (stories260K: 172), both
 * ways round, for every method; and GPTQ as the main quantizer where it applies. */
static int test_odd_shapes(void)
{
    static const int64_t shapes[2][2] = {{64, 172}, {172, 64}};
    for (int s = 0; s < 2; s++) {
        int64_t d_out = shapes[s][0], d_in = shapes[s][1], nc = 512, nt = 256;
        double *W = malloc(sizeof(double) * (size_t)(d_out * d_in));
        float *X = malloc(sizeof(float) * (size_t)(nc * d_in));
        float *Xt = malloc(sizeof(float) * (size_t)(nt * d_in));
        qr_stats *st = NULL;
        double e_rtn = 0.0;
        mf_weight(101 + (uint64_t)s, d_out, d_in, W);
        mf_acts(103, 104, nc, d_in, X);
        mf_acts(103, 105, nt, d_in, Xt);
        QR_REQUIRE(mf_stats(X, nc, d_in, &st) == QR_OK, "stats: %s", qr_errmsg());
        for (int m = 0; m < QR_METHOD_COUNT; m++) {
            for (int gptq = 0; gptq < 2; gptq++) {
                qr_method_opts o;
                qr_qlayer ql;
                qr_metrics mt;
                qr_method_opts_default(&o, (qr_method_id)m);
                o.wq.group = 32;
                o.rank = 4;
                o.n_salient = 8;
                o.gptq = gptq;
                o.module_name = "model.layers.4.mlp.down_proj";
                QR_REQUIRE(qr_method_run(&o, W, d_out, d_in, st, &ql, NULL) == QR_OK,
                           "%s%s on %lldx%lld: %s", qr_method_name((qr_method_id)m),
                           gptq ? "+gptq" : "", (long long)d_out, (long long)d_in, qr_errmsg());
                QR_REQUIRE(ql.main.n_groups == 6 || (d_in == 64 && ql.main.n_groups == 2),
                           "groups per row %lld", (long long)ql.main.n_groups);
                QR_REQUIRE(qr_metrics_compute(&ql, W, Xt, nt, 32, NULL, &mt) == QR_OK, "%s",
                           qr_errmsg());
                QR_EXPECT(isfinite(mt.out_rel_err) && isfinite(mt.out_rel_err_a4g) &&
                              mt.out_rel_err < 1.0,
                          "%s%s on %lldx%lld: output error %g", qr_method_name((qr_method_id)m),
                          gptq ? "+gptq" : "", (long long)d_out, (long long)d_in, mt.out_rel_err);
                if (m == QR_METHOD_RTN && !gptq) {
                    e_rtn = mt.out_rel_err;
                } else if (m != QR_METHOD_ASER) { /* ASER quantizes per channel: not comparable */
                    QR_EXPECT(mt.out_rel_err < e_rtn,
                              "%s%s on %lldx%lld: output error %.5g not below RTN's %.5g",
                              qr_method_name((qr_method_id)m), gptq ? "+gptq" : "",
                              (long long)d_out, (long long)d_in, mt.out_rel_err, e_rtn);
                }
                qr_qlayer_free(&ql);
            }
        }
        qr_stats_free(&st);
        free(W);
        free(X);
        free(Xt);
    }
    return qr_test_finish("methods.odd_shapes");
}

/* SERQ's claim: with outlier activation channels it holds up at A4, where the two-factor
 * corrections of LQER and QERA-exact act on badly quantized activations. */
static int test_serq_a4(void)
{
    enum { DO = 96, DI = 256, NC = 1024, NT = 512 };
    double *W = malloc(sizeof(double) * DO * DI);
    float *X = malloc(sizeof(float) * NC * DI), *Xt = malloc(sizeof(float) * NT * DI);
    qr_stats *st = NULL;
    double e[3];
    const qr_method_id ms[3] = {QR_METHOD_SERQ, QR_METHOD_LQER, QR_METHOD_QERA_EXACT};
    mf_weight(111, DO, DI, W);
    mf_acts(112, 113, NC, DI, X);
    mf_acts(112, 114, NT, DI, Xt);
    QR_REQUIRE(mf_stats(X, NC, DI, &st) == QR_OK, "stats: %s", qr_errmsg());
    for (int i = 0; i < 3; i++) {
        qr_method_opts o;
        qr_qlayer ql;
        qr_method_opts_default(&o, ms[i]);
        o.wq.group = 32;
        o.rank = 8;
        o.n_salient = 24; /* covers the 20 outlier channels of the fixture */
        QR_REQUIRE(qr_method_run(&o, W, DO, DI, st, &ql, NULL) == QR_OK, "%s", qr_errmsg());
        QR_REQUIRE(qr_metrics_output_error(&ql, W, Xt, NT, 4, 0, &e[i]) == QR_OK, "%s",
                   qr_errmsg());
        printf("%-11s W4A4 held-out output error %.5f\n", qr_method_name(ms[i]), e[i]);
        qr_qlayer_free(&ql);
    }
    QR_EXPECT(e[0] < e[1] && e[0] < e[2],
              "SERQ at A4 (%.5g) should beat LQER (%.5g) and QERA-exact (%.5g)", e[0], e[1], e[2]);
    qr_stats_free(&st);
    free(W);
    free(X);
    free(Xt);
    return qr_test_finish("methods.serq_a4");
}

/* ASER: the smoothing is SmoothQuant's, the f channels with the largest G_jj ||W_j||^2 are exactly
 * zero in the main matrix, and the whitened correction puts them back. */
static int test_aser_salient(void)
{
    enum { DO = 48, DI = 96, NC = 512, F = 6 };
    double *W = malloc(sizeof(double) * DO * DI), *M = malloc(sizeof(double) * DO * DI);
    float *X = malloc(sizeof(float) * NC * DI);
    double sal[DI];
    int order[DI];
    qr_stats *st = NULL;
    qr_method_opts o;
    qr_qlayer ql;
    mf_weight(121, DO, DI, W);
    mf_acts(122, 123, NC, DI, X);
    QR_REQUIRE(mf_stats(X, NC, DI, &st) == QR_OK, "stats: %s", qr_errmsg());
    qr_method_opts_default(&o, QR_METHOD_ASER);
    o.rank = 8;
    o.n_salient = F;
    QR_REQUIRE(qr_method_run(&o, W, DO, DI, st, &ql, NULL) == QR_OK, "%s", qr_errmsg());
    QR_REQUIRE(ql.smooth && !ql.perm && ql.rank == 8, "ASER stores smooth and L, R");
    for (int j = 0; j < DI; j++) {
        double wmax = 0.0, c = 0.0, expect;
        for (int i = 0; i < DO; i++) {
            wmax = fmax(wmax, fabs(W[i * DI + j]));
            c += W[i * DI + j] * W[i * DI + j];
        }
        expect = sqrt(st->max_abs[j]) / sqrt(wmax);
        QR_EXPECT(fabs(ql.smooth[j] - expect) <= 1e-6 * expect,
                  "smooth[%d] = %.9g, SmoothQuant alpha 0.5 gives %.9g", j, ql.smooth[j], expect);
        sal[j] = st->G[j * DI + j] * c;
        order[j] = j;
    }
    for (int a = 0; a < DI; a++) { /* selection sort by salience, descending */
        for (int b = a + 1; b < DI; b++) {
            if (sal[order[b]] > sal[order[a]]) {
                int t = order[a];
                order[a] = order[b];
                order[b] = t;
            }
        }
    }
    qr_qweight_dequantize_f64(&ql.main, M);
    for (int k = 0; k < DI; k++) {
        int j = order[k];
        double colmax = 0.0;
        for (int i = 0; i < DO; i++) {
            colmax = fmax(colmax, fabs(M[i * DI + j]));
        }
        QR_EXPECT((k < F) == (colmax == 0.0),
                  "channel %d (salience rank %d): main column max %g (zero expected iff rank < %d)",
                  j, k, colmax, F);
    }
    qr_qlayer_free(&ql);
    qr_stats_free(&st);
    free(W);
    free(M);
    free(X);
    return qr_test_finish("methods.aser_salient");
}

/* The whitened randomized SVD that never forms E S agrees with qr_svd_truncated on the formed
 * matrix (same algorithm, same draws: rounding only), and with a decaying spectrum it is within
 * 1% of the exact truncation's error. */
static int test_whitened_randomized(void)
{
    enum { DO = 96, DI = 128, NC = 512, R = 6 };
    double *E = malloc(sizeof(double) * DO * DI), *ES = malloc(sizeof(double) * DO * DI);
    double *U1 = malloc(sizeof(double) * DO * R), *V1 = malloc(sizeof(double) * R * DI);
    double *U2 = malloc(sizeof(double) * DO * R), *V2 = malloc(sizeof(double) * R * DI);
    double *Uf = malloc(sizeof(double) * DO * DO), *Vf = malloc(sizeof(double) * DO * DI);
    double s1[R], s2[R], sf[DO], tail = 0.0, got = 0.0;
    float *X = malloc(sizeof(float) * NC * DI);
    qr_stats *st = NULL;
    qr_scaling sc;
    qr_svd_opts so;
    qr_rng rng;
    mf_weight(131, DO, DI, E);
    qr_rng_seed(&rng, 132);
    for (int c = 0; c < 12; c++) { /* a decaying spectrum on top of the noise */
        double u[DO], v[DI], a = 4.0 / (1.0 + c);
        for (int i = 0; i < DO; i++) {
            u[i] = qr_rng_normal(&rng) / sqrt((double)DO);
        }
        for (int j = 0; j < DI; j++) {
            v[j] = qr_rng_normal(&rng) / sqrt((double)DI);
        }
        for (int i = 0; i < DO; i++) {
            for (int j = 0; j < DI; j++) {
                E[i * DI + j] += a * u[i] * v[j];
            }
        }
    }
    mf_acts(133, 134, NC, DI, X);
    QR_REQUIRE(mf_stats(X, NC, DI, &st) == QR_OK, "stats: %s", qr_errmsg());
    QR_REQUIRE(qr_scaling_whiten(st->G, DI, QR_CHOL_LAMBDA0, &sc) == QR_OK, "%s", qr_errmsg());
    qr_svd_opts_default(&so);
    so.mode = QR_SVD_RANDOMIZED;
    qr_rng_seed(&rng, 135);
    QR_REQUIRE(qr_scaled_svd(E, DO, DI, &sc, R, &so, &rng, U1, s1, V1) == QR_OK, "%s", qr_errmsg());
    memcpy(ES, E, sizeof(double) * DO * DI);
    QR_REQUIRE(qr_scaling_apply(&sc, ES, DO, false) == QR_OK, "%s", qr_errmsg());
    qr_rng_seed(&rng, 135);
    QR_REQUIRE(qr_svd_truncated(ES, DO, DI, R, &so, &rng, U2, s2, V2) == QR_OK, "%s", qr_errmsg());
    for (int k = 0; k < R; k++) {
        QR_EXPECT(fabs(s1[k] - s2[k]) <= TOL_F64 * s2[0],
                  "singular value %d: implicit %.15g, formed %.15g", k, s1[k], s2[k]);
    }
    QR_REQUIRE(qr_svd(ES, DO, DI, Uf, sf, Vf) == QR_OK, "%s", qr_errmsg());
    for (int k = R; k < DO; k++) {
        tail += sf[k] * sf[k];
    }
    for (int i = 0; i < DO; i++) { /* ||E S - U1 diag(s1) V1||_F^2 */
        for (int j = 0; j < DI; j++) {
            double a = ES[i * DI + j];
            for (int k = 0; k < R; k++) {
                a -= U1[i * R + k] * s1[k] * V1[k * DI + j];
            }
            got += a * a;
        }
    }
    QR_EXPECT(sqrt(got) <= (1.0 + TOL_RANDOMIZED) * sqrt(tail),
              "implicit randomized truncation error %.9g vs optimal %.9g", sqrt(got), sqrt(tail));
    qr_scaling_free(&sc);
    qr_stats_free(&st);
    free(E);
    free(ES);
    free(U1);
    free(V1);
    free(U2);
    free(V2);
    free(Uf);
    free(Vf);
    free(X);
    return qr_test_finish("methods.whitened_randomized");
}

/* FLRQ reports the calibration output error of the pair it kept: exactly (d_in <= 512) or from its
 * Gaussian sketch (p = 128) above. Both are checked against the error from G. */
static int test_flrq_calib_error(void)
{
    static const int64_t din[2] = {200, 640};
    for (int c = 0; c < 2; c++) {
        int64_t d_out = 64, d_in = din[c], nc = 1024;
        double *W = malloc(sizeof(double) * (size_t)(d_out * d_in)), *We, e;
        float *X = malloc(sizeof(float) * (size_t)(nc * d_in));
        qr_stats *st = NULL;
        qr_method_opts o;
        qr_method_report rep;
        qr_qlayer ql;
        /* Exact: float32 storage of L and R only. Sketched: the estimate of the squared error has a
         * relative standard deviation of sqrt(2/128) = 12.5%, about 6% on the norm; 25% is 4 sd. */
        double tol = c == 0 ? 1e-4 : 0.25;
        qr_rng rng;
        mf_weight(141 + (uint64_t)c, d_out, d_in, W);
        qr_rng_seed(&rng, 145);
        for (int k = 0; k < 2; k++) { /* a strong rank-2 part, so FLRQ keeps a low-rank term */
            double u[64];
            for (int i = 0; i < d_out; i++) {
                u[i] = qr_rng_normal(&rng);
            }
            for (int64_t j = 0; j < d_in; j++) {
                double v = qr_rng_normal(&rng);
                for (int i = 0; i < d_out; i++) {
                    W[i * d_in + j] += u[i] * v;
                }
            }
        }
        mf_acts(143, 144, nc, d_in, X);
        QR_REQUIRE(mf_stats(X, nc, d_in, &st) == QR_OK, "stats: %s", qr_errmsg());
        qr_method_opts_default(&o, QR_METHOD_FLRQ);
        o.wq.group = 32;
        o.rank = 8;
        QR_REQUIRE(qr_method_run(&o, W, d_out, d_in, st, &ql, &rep) == QR_OK, "%s", qr_errmsg());
        We = mf_effective(&ql);
        QR_REQUIRE(We, "effective weight");
        QR_REQUIRE(qr_metrics_calib_error(W, We, st->G, d_out, d_in, &e) == QR_OK, "%s",
                   qr_errmsg());
        QR_EXPECT(rep.rank_used > 0, "d_in %lld: test design expects a low-rank term (rank 0)",
                  (long long)d_in);
        QR_EXPECT(fabs(rep.calib_out_err - e) <= tol * e,
                  "d_in %lld: FLRQ reports calibration error %.6g, G gives %.6g (tolerance %g)",
                  (long long)d_in, rep.calib_out_err, e, tol);
        printf("d_in %lld: reported %.6f, from G %.6f, rank %lld, clip %.2f\n", (long long)d_in,
               rep.calib_out_err, e, (long long)rep.rank_used, rep.clip_ratio);
        free(We);
        qr_qlayer_free(&ql);
        qr_stats_free(&st);
        free(W);
        free(X);
    }
    return qr_test_finish("methods.flrq_calib_error");
}

static bool same_layer(const qr_qlayer *a, const qr_qlayer *b)
{
    int64_t din = a->d_in;
    return a->rank == b->rank && a->n_salient == b->n_salient && same_qweight(&a->main, &b->main) &&
           (a->n_salient == 0 || same_qweight(&a->side, &b->side)) &&
           (a->rank == 0 ||
            (memcmp(a->L, b->L, sizeof(float) * (size_t)(a->d_out * a->rank)) == 0 &&
             memcmp(a->R, b->R, sizeof(float) * (size_t)(a->rank * din)) == 0)) &&
           (!a->smooth) == (!b->smooth) &&
           (!a->smooth || memcmp(a->smooth, b->smooth, sizeof(float) * (size_t)din) == 0) &&
           (!a->perm) == (!b->perm) &&
           (!a->perm || memcmp(a->perm, b->perm, sizeof(int32_t) * (size_t)din) == 0);
}

/* A module's result depends only on its inputs, name and seed: two runs give the same bytes (what
 * lets the distributed quantizer give the same checkpoint for any number of ranks), and another
 * seed changes the randomized parts. */
static int test_determinism(void)
{
    enum { DO = 64, DI = 96, NC = 256 };
    double *W = malloc(sizeof(double) * DO * DI);
    float *X = malloc(sizeof(float) * NC * DI);
    qr_stats *st = NULL;
    mf_weight(151, DO, DI, W);
    mf_acts(152, 153, NC, DI, X);
    QR_REQUIRE(mf_stats(X, NC, DI, &st) == QR_OK, "stats: %s", qr_errmsg());
    for (int m = 0; m < QR_METHOD_COUNT; m++) {
        qr_method_opts o;
        qr_qlayer a, b, c;
        qr_method_opts_default(&o, (qr_method_id)m);
        if (o.wq.group != 0) {
            o.wq.group = 32;
        }
        o.rank = 4; /* 8 r <= 64: randomized SVDs, so the streams matter */
        o.n_salient = 8;
        o.module_name = "model.layers.0.self_attn.v_proj";
        QR_REQUIRE(qr_method_run(&o, W, DO, DI, st, &a, NULL) == QR_OK, "%s", qr_errmsg());
        QR_REQUIRE(qr_method_run(&o, W, DO, DI, st, &b, NULL) == QR_OK, "%s", qr_errmsg());
        QR_EXPECT(same_layer(&a, &b), "%s: two runs with the same inputs differ",
                  qr_method_name((qr_method_id)m));
        o.seed = 12345;
        QR_REQUIRE(qr_method_run(&o, W, DO, DI, st, &c, NULL) == QR_OK, "%s", qr_errmsg());
        if (m == QR_METHOD_LQER || m == QR_METHOD_QERA_EXACT || m == QR_METHOD_SRR ||
            m == QR_METHOD_JOINT) {
            QR_EXPECT(!same_layer(&a, &c),
                      "%s: another seed should change the randomized SVD's draws",
                      qr_method_name((qr_method_id)m));
        }
        if (m == QR_METHOD_RTN || m == QR_METHOD_SERQ) {
            QR_EXPECT(same_layer(&a, &c), "%s: draws nothing at random, yet the seed changed it",
                      qr_method_name((qr_method_id)m));
        }
        qr_qlayer_free(&a);
        qr_qlayer_free(&b);
        qr_qlayer_free(&c);
    }
    qr_stats_free(&st);
    free(W);
    free(X);
    return qr_test_finish("methods.determinism");
}

static bool msg_has(const char *s)
{
    return strstr(qr_errmsg(), s) != NULL;
}

/* Bad input is QR_ERR_INPUT with a message that says what was expected. */
static int test_errors(void)
{
    enum { DO = 8, DI = 16, NC = 32 };
    double W[DO * DI];
    float X[NC * DI];
    qr_stats *st = NULL, *st2 = NULL;
    qr_method_opts o;
    qr_qlayer ql;
    mf_weight(91, DO, DI, W);
    mf_acts(92, 93, NC, DI, X);
    QR_REQUIRE(mf_stats(X, NC, DI, &st) == QR_OK, "stats: %s", qr_errmsg());
    QR_REQUIRE(mf_stats(X, NC / 2, DI / 2, &st2) == QR_OK, "stats: %s", qr_errmsg());

    qr_method_opts_default(&o, QR_METHOD_LQER);
    o.rank = DO + 1;
    QR_EXPECT(qr_method_run(&o, W, DO, DI, st, &ql, NULL) == QR_ERR_INPUT && msg_has("rank"),
              "rank too large: %s", qr_errmsg());
    o.rank = 2;
    QR_EXPECT(qr_method_run(&o, W, DO, DI, NULL, &ql, NULL) == QR_ERR_INPUT &&
                  msg_has("calibration statistics"),
              "missing stats: %s", qr_errmsg());
    QR_EXPECT(qr_method_run(&o, W, DO, DI, st2, &ql, NULL) == QR_ERR_INPUT &&
                  msg_has("expected 16, found 8"),
              "channel mismatch: %s", qr_errmsg());
    qr_method_opts_default(&o, QR_METHOD_SRR);
    o.srr_base = QR_METHOD_SERQ;
    o.rank = 2;
    QR_EXPECT(qr_method_run(&o, W, DO, DI, st, &ql, NULL) == QR_ERR_INPUT && msg_has("serq"),
              "bad SRR base: %s", qr_errmsg());
    o.method = QR_METHOD_COUNT;
    QR_EXPECT(qr_method_run(&o, W, DO, DI, st, &ql, NULL) == QR_ERR_INPUT &&
                  msg_has("unknown method"),
              "unknown method: %s", qr_errmsg());
    qr_method_opts_default(&o, QR_METHOD_RTN);
    W[5] = NAN;
    QR_EXPECT(qr_method_run(&o, W, DO, DI, NULL, &ql, NULL) == QR_ERR_INPUT &&
                  msg_has("not finite"),
              "NaN weight: %s", qr_errmsg());
    QR_EXPECT(ql.main.packed == NULL && ql.L == NULL, "out must be empty after a failure");
    qr_stats_free(&st);
    qr_stats_free(&st2);
    return qr_test_finish("methods.errors");
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(void);
    } cases[] = {
        {"rank_monotone", test_rank},
        {"whitened_optimal", test_whitened},
        {"srr_k0", test_srr_k0},
        {"srr_kstar", test_srr_kstar},
        {"serq_transform", test_serq},
        {"beat_rtn", test_beat_rtn},
        {"flrq_rank", test_flrq_rank},
        {"bits", test_bits},
        {"metrics", test_metrics},
        {"metrics_fast", test_metrics_fast},
        {"errors", test_errors},
        {"odd_shapes", test_odd_shapes},
        {"serq_a4", test_serq_a4},
        {"aser_salient", test_aser_salient},
        {"whitened_randomized", test_whitened_randomized},
        {"flrq_calib_error", test_flrq_calib_error},
        {"determinism", test_determinism},
    };
    for (size_t i = 0; argc > 1 && i < sizeof cases / sizeof cases[0]; i++) {
        if (strcmp(argv[1], cases[i].name) == 0) {
            return cases[i].fn();
        }
    }
    fprintf(stderr, "usage: %s CASE (unknown case %s)\n", argv[0], argc > 1 ? argv[1] : "(none)");
    return 1;
}

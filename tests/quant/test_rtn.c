/* test_rtn.c: properties of RTN weight quantization (src/quant.h). One program, one case per run:
 *   grid   values already on the grid come back exactly (sym and asym, every group size, ragged)
 *   zero   scales never zero and no NaN for all-zero and denormal groups; bad input rejected
 *   bound  |W - deq(quant(W))| <= scale / 2 per element
 *   clip   the clip search never increases the weighted error of any group versus no clipping */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/quant.h"
#include "src/rng.h"
#include "tests/test_util.h"

/* float32 rounding of the scale moves a code by at most 15 * 2^-24 steps (< 1e-6 of a step). */
#define SCALE_ROUNDING_SLACK 1e-6

static const int64_t groups[] = {32, 64, 128, 0};
static const int64_t widths[] = {172, 64, 128, 300, 1};

/* W (rows, cols) with a heavy-tailed (Student-t like) distribution and a few outliers. */
static void heavy_tailed(qr_rng *rng, double *W, int64_t rows, int64_t cols)
{
    for (int64_t i = 0; i < rows * cols; i++) {
        double z = qr_rng_normal(rng);
        double u = qr_rng_uniform(rng) + 0.05;
        W[i] = 0.02 * z / sqrt(u);
    }
}

static int64_t group_len(const qr_qweight *q, int64_t g)
{
    int64_t j0 = g * q->group;
    return (j0 + q->group <= q->cols) ? q->group : q->cols - j0;
}

static int case_grid(qr_rng *rng)
{
    const int64_t rows = 9;
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
        int64_t cols = widths[wi];
        for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++) {
            for (int asym = 0; asym <= 1; asym++) {
                int64_t group = groups[gi];
                int64_t gs = (group == 0 || group > cols) ? cols : group;
                int64_t ng = qr_quant_n_groups(cols, group);
                double *W = calloc((size_t)(rows * cols), sizeof *W);
                double *D = calloc((size_t)(rows * cols), sizeof *D);
                float *want_scale = calloc((size_t)(rows * ng), sizeof *want_scale);
                qr_wquant_opts o;
                qr_qweight q;
                qr_wquant_opts_default(&o);
                o.group = group;
                o.asym = asym;
                /* Each group: a float scale and integer codes that include both ends of the
                 * range, so the quantizer's own max rule recovers exactly that scale. */
                for (int64_t i = 0; i < rows; i++) {
                    for (int64_t g = 0; g < ng; g++) {
                        int64_t j0 = g * gs, n = (j0 + gs <= cols) ? gs : cols - j0;
                        float s = (float)(0.001 + 0.1 * qr_rng_uniform(rng));
                        /* A one-element group pins the scale only with the zero point at an end. */
                        int z = (asym && n > 1) ? (int)(qr_rng_u64(rng) % 16) : 0;
                        want_scale[i * ng + g] = s;
                        for (int64_t j = 0; j < n; j++) {
                            int code;
                            if (asym) {
                                code = (int)(qr_rng_u64(rng) % 16);
                                if (j == n - 1) {
                                    code = 15;
                                } else if (j == 0) {
                                    code = 0;
                                }
                                W[i * cols + j0 + j] = (double)s * (double)(code - z);
                            } else {
                                code = (int)(qr_rng_u64(rng) % 15) - 7;
                                if (j == n - 1) {
                                    code = (i + g) % 2 ? 7 : -7;
                                }
                                W[i * cols + j0 + j] = (double)s * (double)code;
                            }
                        }
                    }
                }
                QR_REQUIRE(qr_quantize_rtn(W, rows, cols, &o, NULL, &q) == QR_OK, "RTN: %s",
                           qr_errmsg());
                qr_qweight_dequantize_f64(&q, D);
                int bad = 0;
                for (int64_t k = 0; k < rows * cols && !bad; k++) {
                    if (D[k] != W[k]) {
                        bad = 1;
                        QR_EXPECT(D[k] == W[k],
                                  "cols %lld group %lld %s: element %lld is %.17g after the round "
                                  "trip (expected exactly %.17g)",
                                  (long long)cols, (long long)group, asym ? "asym" : "sym",
                                  (long long)k, D[k], W[k]);
                    }
                }
                for (int64_t k = 0; k < rows * ng; k++) {
                    QR_EXPECT(q.scales[k] == want_scale[k],
                              "cols %lld group %lld %s: scale %lld is %.9g (expected %.9g)",
                              (long long)cols, (long long)group, asym ? "asym" : "sym",
                              (long long)k, q.scales[k], want_scale[k]);
                }
                QR_EXPECT(q.n_groups == ng && q.group == gs,
                          "cols %lld group %lld: layout (expected %lld groups of %lld, found %lld "
                          "of %lld)",
                          (long long)cols, (long long)group, (long long)ng, (long long)gs,
                          (long long)q.n_groups, (long long)q.group);
                qr_qweight_free(&q);
                free(W);
                free(D);
                free(want_scale);
            }
        }
    }
    return 0;
}

static int case_zero(qr_rng *rng)
{
    const int64_t rows = 4, cols = 172;
    double W[4 * 172];
    double D[4 * 172];
    qr_wquant_opts o;
    qr_qweight q;
    heavy_tailed(rng, W, rows, cols);
    memset(W, 0, (size_t)cols * sizeof *W); /* row 0: all zero */
    for (int64_t j = 64; j < 128; j++) {    /* row 1, group 1 (of 64): all zero */
        W[1 * cols + j] = 0.0;
    }
    for (int64_t j = 128; j < cols; j++) { /* row 2, ragged last group: denormals */
        W[2 * cols + j] = (j % 2 ? 1 : -1) * 1e-310;
    }
    for (int asym = 0; asym <= 1; asym++) {
        for (int clip = 0; clip <= 1; clip++) {
            qr_wquant_opts_default(&o);
            o.group = 64;
            o.asym = asym;
            o.clip_search = clip;
            QR_REQUIRE(qr_quantize_rtn(W, rows, cols, &o, NULL, &q) == QR_OK, "RTN: %s",
                       qr_errmsg());
            for (int64_t k = 0; k < rows * q.n_groups; k++) {
                QR_EXPECT(q.scales[k] > 0.0f && isfinite(q.scales[k]),
                          "%s clip %d: scale %lld is %g (expected finite and > 0)",
                          asym ? "asym" : "sym", clip, (long long)k, q.scales[k]);
            }
            qr_qweight_dequantize_f64(&q, D);
            for (int64_t k = 0; k < rows * cols; k++) {
                QR_EXPECT(isfinite(D[k]), "%s: element %lld dequantizes to %g",
                          asym ? "asym" : "sym", (long long)k, D[k]);
                if (W[k] == 0.0) {
                    QR_EXPECT(D[k] == 0.0, "%s: zero element %lld dequantizes to %g (expected 0)",
                              asym ? "asym" : "sym", (long long)k, D[k]);
                }
            }
            qr_qweight_free(&q);
        }
    }
    /* Bad input is refused with a message, and leaves the output empty. */
    W[5] = NAN;
    qr_wquant_opts_default(&o);
    QR_EXPECT(qr_quantize_rtn(W, rows, cols, &o, NULL, &q) == QR_ERR_INPUT,
              "a NaN weight was accepted");
    QR_EXPECT(strstr(qr_errmsg(), "not finite") != NULL, "message: %s", qr_errmsg());
    QR_EXPECT(q.packed == NULL && q.scales == NULL, "output not empty after a failure");
    W[5] = 0.0;
    o.group = -1;
    QR_EXPECT(qr_quantize_rtn(W, rows, cols, &o, NULL, &q) == QR_ERR_INPUT,
              "a negative group size was accepted");
    return 0;
}

static int case_bound(qr_rng *rng)
{
    const int64_t rows = 37;
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
        int64_t cols = widths[wi];
        double *W = malloc((size_t)(rows * cols) * sizeof *W);
        double *D = malloc((size_t)(rows * cols) * sizeof *D);
        heavy_tailed(rng, W, rows, cols);
        for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++) {
            for (int asym = 0; asym <= 1; asym++) {
                qr_wquant_opts o;
                qr_qweight q;
                double worst = 0.0; /* max error / scale */
                qr_wquant_opts_default(&o);
                o.group = groups[gi];
                o.asym = asym;
                QR_REQUIRE(qr_quantize_rtn(W, rows, cols, &o, NULL, &q) == QR_OK, "RTN: %s",
                           qr_errmsg());
                qr_qweight_dequantize_f64(&q, D);
                for (int64_t i = 0; i < rows; i++) {
                    for (int64_t j = 0; j < cols; j++) {
                        double s = q.scales[i * q.n_groups + j / q.group];
                        double e = fabs(W[i * cols + j] - D[i * cols + j]) / s;
                        worst = e > worst ? e : worst;
                    }
                }
                QR_EXPECT(worst <= 0.5 + SCALE_ROUNDING_SLACK,
                          "cols %lld group %lld %s: error up to %.9f scales (expected <= 0.5)",
                          (long long)cols, (long long)groups[gi], asym ? "asym" : "sym", worst);
                qr_qweight_free(&q);
            }
        }
        free(W);
        free(D);
    }
    return 0;
}

/* Weighted squared error of each group of q against W, into err (rows, n_groups). */
static void group_errors(const qr_qweight *q, const double *W, const double *cw, double *err)
{
    for (int64_t i = 0; i < q->rows; i++) {
        for (int64_t g = 0; g < q->n_groups; g++) {
            double e = 0.0;
            for (int64_t j = g * q->group; j < g * q->group + group_len(q, g); j++) {
                double r = W[i * q->cols + j] - qr_qweight_value(q, i, j);
                e += cw[j] * r * r;
            }
            err[i * q->n_groups + g] = e;
        }
    }
}

static int case_clip(qr_rng *rng)
{
    const int64_t rows = 48, cols = 172;
    double *W = malloc((size_t)(rows * cols) * sizeof *W);
    double *cw = malloc((size_t)cols * sizeof *cw);
    heavy_tailed(rng, W, rows, cols);
    for (int64_t j = 0; j < cols; j++) {
        double z = qr_rng_normal(rng);
        cw[j] = exp(2.0 * z); /* activation energy per channel: log-normal, a few dominant */
    }
    for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++) {
        for (int asym = 0; asym <= 1; asym++) {
            qr_wquant_opts o;
            qr_qweight plain, clipped;
            int64_t ng = qr_quant_n_groups(cols, groups[gi]);
            double *e0 = malloc((size_t)(rows * ng) * sizeof *e0);
            double *e1 = malloc((size_t)(rows * ng) * sizeof *e1);
            double t0 = 0.0, t1 = 0.0;
            qr_wquant_opts_default(&o);
            o.group = groups[gi];
            o.asym = asym;
            QR_REQUIRE(qr_quantize_rtn(W, rows, cols, &o, cw, &plain) == QR_OK, "RTN: %s",
                       qr_errmsg());
            o.clip_search = true;
            QR_REQUIRE(qr_quantize_rtn(W, rows, cols, &o, cw, &clipped) == QR_OK, "RTN: %s",
                       qr_errmsg());
            group_errors(&plain, W, cw, e0);
            group_errors(&clipped, W, cw, e1);
            for (int64_t k = 0; k < rows * ng; k++) {
                QR_EXPECT(e1[k] <= e0[k],
                          "group %lld %s: clip search raised the weighted error of group %lld "
                          "(%.17g > %.17g)",
                          (long long)groups[gi], asym ? "asym" : "sym", (long long)k, e1[k], e0[k]);
                t0 += e0[k];
                t1 += e1[k];
            }
            /* On heavy-tailed weights clipping must actually help (else the search is inert). */
            QR_EXPECT(t1 < t0, "group %lld %s: clip search gained nothing (%.6g vs %.6g)",
                      (long long)groups[gi], asym ? "asym" : "sym", t1, t0);
            printf("group %3lld %-4s weighted error: no clip %.6e, clip search %.6e (%.1f%%)\n",
                   (long long)groups[gi], asym ? "asym" : "sym", t0, t1, 100.0 * (t1 - t0) / t0);
            qr_qweight_free(&plain);
            qr_qweight_free(&clipped);
            free(e0);
            free(e1);
        }
    }
    free(W);
    free(cw);
    return 0;
}

int main(int argc, char **argv)
{
    qr_rng rng;
    const char *which = argc > 1 ? argv[1] : "";
    qr_rng_seed(&rng, 20261123);
    int rc = 0;
    if (strcmp(which, "grid") == 0) {
        rc = case_grid(&rng);
    } else if (strcmp(which, "zero") == 0) {
        rc = case_zero(&rng);
    } else if (strcmp(which, "bound") == 0) {
        rc = case_bound(&rng);
    } else if (strcmp(which, "clip") == 0) {
        rc = case_clip(&rng);
    } else {
        fprintf(stderr, "usage: %s grid|zero|bound|clip\n", argv[0]);
        return 2;
    }
    return rc ? rc : qr_test_finish(which);
}

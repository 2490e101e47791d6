/* metrics.h: per-module error metrics of a quantized module against its float64 weight: relative
 * weight error, relative output error on held-out tokens with float, A8 and A4 activations (per
 * token, and per group of channels), SQNR, bits per weight, and the method's stage times. The
 * output errors come from the reference forward (src/qlayer_ref.h). No MPI, no files. */
#ifndef QR_METRICS_H
#define QR_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "src/method.h"
#include "src/qlayer.h"
#include "src/status.h"

typedef struct {
    double weight_rel_err;  /* ||W - W_eff||_F / ||W||_F */
    double out_rel_err;     /* ||Y - Y^||_F / ||Y||_F, Y = X Wᵀ, float activations */
    double out_rel_err_a8;  /* ... with per-token INT8 activations of the transformed input */
    double out_rel_err_a4;  /* ... with per-token INT4 activations */
    double out_rel_err_a4g; /* ... with INT4 activations per group of agroup channels (NaN: off) */
    double sqnr_db;         /* -20 log10(out_rel_err) (infinite when the error is zero) */
    double bits_per_weight; /* ql->bits_per_weight */
    double seconds[QR_STAGE_COUNT]; /* the method's stage times (zero without a report) */
    double seconds_total;
} qr_metrics;

/* All metrics of ql (a module of weight W (d_out, d_in) float64) on held-out tokens X (n, d_in)
 * float32, n >= 1. agroup > 0 adds the grouped-A4 error (128 in SERQ's setting), 0 leaves it NaN.
 * rep may be NULL. Not collective. */
qr_status qr_metrics_compute(const qr_qlayer *ql, const double *W, const float *X, int64_t n,
                             int64_t agroup, const qr_method_report *rep, qr_metrics *m);

/* The fast path quantize uses (the function above is its float64 reference): float32 products,
 * and the reference output Y = X Wᵀ of the held-out rows computed once per module, shared by the
 * method's metrics and RTN's. Every setting's error is ||Y - T W_tᵀ|| / ||Y|| with T the
 * transformed (and per-token quantized) rows and W_t the module's weight in its transformed space
 * (qr_qlayer_weight_t); sums of squares in float64. Accuracy against the reference: docs/methods.md
 * ("Metrics"), checked by methods.metrics_fast. */
/* Held-out rows the metrics use by default (quantize --metric-rows): enough that a module's
 * relative output error is known to about 1% (docs/quantize.md, "Metrics on a sample of the
 * held-out rows"), few enough that the metrics cost a small part of a 7B module's statistics. */
#define QR_METRIC_ROWS_DEFAULT 256

typedef struct {
    const float *X; /* (n, d_in) held-out rows, borrowed */
    int64_t n, d_out, d_in;
    float *Y;       /* (n, d_out) X Wᵀ */
    double y_sumsq; /* ||Y||²_F */
} qr_metric_ref;

/* Y for W (d_out, d_in) on X (n, d_in); X must outlive r. Not collective. */
qr_status qr_metric_ref_init(qr_metric_ref *r, const double *W, int64_t d_out, int64_t d_in,
                             const float *X, int64_t n);
void qr_metric_ref_free(qr_metric_ref *r); /* NULL-safe; clears r */

/* The errors qr_metrics_fast measures: every setting, or one activation width (0 float, 8, 4; the
 * others are NaN), which is all the RTN comparison needs. */
#define QR_METRICS_ALL (-1)

/* qr_metrics_compute's figures through r (W is the weight r was made with), for `width`. */
qr_status qr_metrics_fast(const qr_metric_ref *r, const qr_qlayer *ql, const double *W,
                          int64_t agroup, int width, const qr_method_report *rep, qr_metrics *m);

/* sqrt(num / den), the relative error from sums of squares (infinite when only den is 0). */
double qr_metrics_rel(double num, double den);

/* Whether setting a (0 float, 1 A8, 2 A4, 3 grouped A4 when agroup > 0) is measured for width;
 * not collective. */
bool qr_metrics_wanted(int a, int64_t agroup, int width);

/* T (n, d) float32 := x[perm[j]] / smooth[j] of X's rows (perm, smooth may be NULL), per-token
 * fake-quantized to `bits` (0 = none) per group of `agroup` channels (0 = the whole row): the rule
 * of the reference forward. tmp holds d doubles. Not collective. */
void qr_metric_rows_transform(const float *X, int64_t n, int64_t d, const int32_t *perm,
                              const float *smooth, int bits, int64_t agroup, double *tmp, float *T);

/* Relative output error of ql on X (n, d_in) with one activation setting (abits 0, 4, 8). */
qr_status qr_metrics_output_error(const qr_qlayer *ql, const double *W, const float *X, int64_t n,
                                  int abits, int64_t agroup, double *rel);

/* Relative output error on the calibration set from its Gram matrix G (d_in, d_in):
 * sqrt(tr((W - W_eff) G (W - W_eff)ᵀ) / tr(W G Wᵀ)), W and W_eff (d_out, d_in). */
qr_status qr_metrics_calib_error(const double *W, const double *W_eff, const double *G,
                                 int64_t d_out, int64_t d_in, double *rel);

#endif

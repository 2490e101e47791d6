/* calib_holdout.h: which calibration rows a quantize job fits on and which it holds out for its
 * metrics, and the identity of a calibration set. Shared by `qrecon quantize` (which fits and
 * measures) and `qrecon validate` (which must re-measure on exactly the held-out rows), so the
 * rule lives in one place.
 *
 * Rule: the shards of a capture are concatenated in order into n_rows = windows x seq_len rows;
 * the LAST ceil(holdout x windows) whole windows are held out (none when holdout is 0) and the
 * windows before them are fitted on. The metrics use a sample of the held-out rows: at most
 * --metric-rows of them (QR_METRIC_ROWS_DEFAULT), spread evenly over every held-out window, the
 * same rows in quantize and validate. Not collective. */
#ifndef QR_IO_CALIB_HOLDOUT_H
#define QR_IO_CALIB_HOLDOUT_H

#include <stddef.h>
#include <stdint.h>

#include "io/calib_shard.h"
#include "src/metrics.h"
#include "src/status.h"

typedef struct {
    int64_t seq_len;
    int64_t n_rows, n_fit, n_ho; /* rows: all, fitting (first n_fit), held out (last n_ho) */
    int64_t n_metric;            /* the metrics' sample of the held-out rows (<= n_ho) */
} qr_calib_split;

/* Split the rows of set for a holdout fraction (0 <= holdout < 1). QR_ERR_INPUT naming the first
 * shard when the rows are not whole windows, or when no window would be left to fit. */
qr_status qr_calib_split_holdout(qr_calib_set *set, double holdout, qr_calib_split *sp);

/* The metrics' sample: n_metric = min(n_ho, cap) (cap 0: every held-out row); sample row k is the
 * held-out row floor(k * n_ho / n_metric). */
void qr_calib_split_sample(qr_calib_split *sp, int64_t cap);

/* The held-out row (0-based among the held-out rows) that sample row k is. */
int64_t qr_calib_sample_index(int64_t n_ho, int64_t n_metric, int64_t k);

/* Rows [k0, k0 + n) of the sample of key's rows into out (n, d) float32, in order. */
qr_status qr_calib_read_sample(qr_calib_set *set, const char *key, const qr_calib_split *sp,
                               int64_t k0, int64_t n, float *out);

/* 16 hex digits identifying a calibration set: FNV-1a over the capture's attributes (model, source,
 * dtype, shapes, seq_len, windows, encoding flags), not over how it is cut into shards or layer
 * slices, so every rank group of a job gets the same identity from its own shards, and two
 * captures of the same rows have the same identity. buf gets at most n bytes. */
void qr_calib_identity(qr_calib_set *set, char *buf, size_t n);

#endif

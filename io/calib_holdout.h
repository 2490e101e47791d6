/* calib_holdout.h: which calibration rows a quantize job fits on and which it holds out for its
 * metrics, and the identity of a calibration set. Shared by `qrecon quantize` (which fits and
 * measures) and `qrecon validate` (which must re-measure on exactly the held-out rows), so the
 * rule lives in one place.
 *
 * Rule: the shards of a capture are concatenated in order into n_rows = windows x seq_len rows;
 * the LAST ceil(holdout x windows) whole windows are held out (none when holdout is 0) and the
 * windows before them are fitted on. Not collective. */
#ifndef QR_IO_CALIB_HOLDOUT_H
#define QR_IO_CALIB_HOLDOUT_H

#include <stddef.h>
#include <stdint.h>

#include "io/calib_shard.h"
#include "src/status.h"

typedef struct {
    int64_t seq_len;
    int64_t n_rows, n_fit, n_ho; /* rows: all, fitting (first n_fit), held out (last n_ho) */
} qr_calib_split;

/* Split the rows of set for a holdout fraction (0 <= holdout < 1). QR_ERR_INPUT naming the first
 * shard when the rows are not whole windows, or when no window would be left to fit. */
qr_status qr_calib_split_holdout(qr_calib_set *set, double holdout, qr_calib_split *sp);

/* 16 hex digits identifying a calibration set: FNV-1a over the capture's attributes (model, source,
 * dtype, shapes, seq_len, windows, encoding flags), not over how it is cut into shards or layer
 * slices, so every rank group of a job gets the same identity from its own shards, and two
 * captures of the same rows have the same identity. buf gets at most n bytes. */
void qr_calib_identity(qr_calib_set *set, char *buf, size_t n);

#endif

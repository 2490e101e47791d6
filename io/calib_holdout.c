/* calib_holdout.c: the fit / held-out split of a calibration set and its identity
 * (io/calib_holdout.h). Moved here from jobs/quantize_run.c unchanged in behaviour, so quantize
 * and validate cannot disagree on which rows were held out. */
#include "io/calib_holdout.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>

qr_status qr_calib_split_holdout(qr_calib_set *set, double holdout, qr_calib_split *sp)
{
    const qr_calib_info *c0 = qr_calib_shard_info(qr_calib_set_shard(set, 0));
    int64_t windows = 0, ho_windows;
    sp->seq_len = c0->seq_len;
    sp->n_rows = qr_calib_set_rows(set);
    if (sp->seq_len < 1 || sp->n_rows % sp->seq_len != 0) {
        return qr_fail(QR_ERR_INPUT, "%s: %" PRId64 " rows are not whole windows of %" PRId64,
                       qr_calib_shard_path(qr_calib_set_shard(set, 0)), sp->n_rows, sp->seq_len);
    }
    windows = sp->n_rows / sp->seq_len;
    ho_windows = holdout > 0 ? (int64_t)ceil(holdout * (double)windows) : 0;
    if (windows - ho_windows < 1) {
        return qr_fail(QR_ERR_INPUT,
                       "--holdout %g: keeps %" PRId64 " of %" PRId64
                       " calibration windows, none left to fit (capture more windows or lower it)",
                       holdout, ho_windows, windows);
    }
    sp->n_fit = (windows - ho_windows) * sp->seq_len;
    sp->n_ho = ho_windows * sp->seq_len;
    sp->n_metric = sp->n_ho;
    return QR_OK;
}

void qr_calib_split_sample(qr_calib_split *sp, int64_t cap)
{
    sp->n_metric = cap > 0 && cap < sp->n_ho ? cap : sp->n_ho;
}

int64_t qr_calib_sample_index(int64_t n_ho, int64_t n_metric, int64_t k)
{
    return (int64_t)((__int128)k * n_ho / n_metric);
}

static int64_t sample_row(const qr_calib_split *sp, int64_t k)
{
    return sp->n_fit + qr_calib_sample_index(sp->n_ho, sp->n_metric, k);
}

qr_status qr_calib_read_sample(qr_calib_set *set, const char *key, const qr_calib_split *sp,
                               int64_t k0, int64_t n, float *out)
{
    int64_t rows, d;
    QR_TRY(qr_calib_set_shape(set, key, &rows, &d));
    /* Consecutive sample rows are read together: the whole sample is one read when it is every
     * held-out row. */
    for (int64_t k = k0, run; k < k0 + n; k += run) {
        int64_t r = sample_row(sp, k);
        for (run = 1; k + run < k0 + n && sample_row(sp, k + run) == r + run; run++) {
        }
        QR_TRY(qr_calib_set_read_rows(set, key, r, run, out + (k - k0) * d));
    }
    return QR_OK;
}

void qr_calib_identity(qr_calib_set *set, char *buf, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    char line[3 * QR_CALIB_STR_MAX + 512];
    /* The capture as a whole, not its shards: the same rows cut into other shards or layer slices
     * (or only some slices opened, as a quantize rank group does) have the same identity. */
    const qr_calib_info *ci = qr_calib_shard_info(qr_calib_set_shard(set, 0));
    snprintf(line, sizeof line,
             "%s|%s|%s|%d|%" PRId64 "|%" PRId64 "|%" PRId64 "|%" PRId64 "|%" PRId64 "|%" PRId64
             "|%" PRId64 "|%" PRId64 ";",
             ci->model_identity, ci->source, ci->source_kind, (int)ci->dtype, ci->dim,
             ci->hidden_dim, ci->q_dim, ci->n_layers, ci->seq_len, ci->total_windows,
             ci->add_dummy_prefix, ci->unknown_to_zero);
    for (const char *p = line; *p; p++) {
        h ^= (uint8_t)*p;
        h *= 1099511628211ull;
    }
    snprintf(buf, n, "%016" PRIx64, h);
}

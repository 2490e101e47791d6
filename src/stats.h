/* stats.h: the float64 activation statistics of one linear-layer input, accumulated over row chunks
 * (batches) of calibration activations and merged across shards and ranks in a fixed order.
 *
 * They feed every method: G = XᵀX (whitening, GPTQ, QERA-exact), per-channel max|x| (SERQ, ASER
 * smoothing), mean|x| (FLRQ, LQER via the per-batch maximum), mean x² (QERA-approx).
 * No MPI, no files, not collective; mpi/ sends the arrays and calls qr_stats_merge in rank order.
 */
#ifndef QR_STATS_H
#define QR_STATS_H

#include <stdint.h>

#include "src/status.h"

/* Factors derived from the statistics that every module reading this input shares (q/k/v,
 * gate/up): computed by the first module that needs them (src/methods) and reused by the others,
 * so a whitening Cholesky is factored once per input group. Owned by its qr_stats. */
typedef struct {
    double *chol;   /* (d, d) whitening factor of G with damping lambda0, or NULL */
    double lambda0; /* the first relative damping it was made with */
    double damping; /* the absolute damping it added */
} qr_stats_cache;

/* A plain struct: read the fields directly. Every array is owned by the struct and freed by
 * qr_stats_free; do not free or reallocate them. G is kept FULL symmetric (both triangles) after
 * every add and merge. */
typedef struct {
    int64_t d;                  /* channels */
    int64_t count;              /* rows (tokens) seen */
    int64_t n_batches;          /* qr_stats_add calls with n > 0 (merged: summed) */
    double *G;                  /* (d, d) row-major: sum over rows of x xᵀ */
    double *max_abs;            /* (d) max |x_j| (0 before any row) */
    double *sum_abs;            /* (d) sum |x_j| */
    double *sum_sq;             /* (d) sum x_j² */
    double *batch_mean_abs_max; /* (d) max over batches of the batch's mean |x_j| (LQER's s) */
    qr_stats_cache *cache;      /* shared derived factors (may be NULL: nothing is cached) */
} qr_stats;

/* Rows per internal dsyrk chunk: bounds the float64 copy to QR_STATS_CHUNK_ROWS * d doubles. */
#define QR_STATS_CHUNK_ROWS 512

/* Allocate an empty accumulator for d >= 1 channels. */
qr_status qr_stats_create(int64_t d, qr_stats **out);
void qr_stats_free(qr_stats **s); /* NULL-safe, clears the pointer */

/* Add one batch of rows X (n, d) float32. Each call with n > 0 is one batch for
 * batch_mean_abs_max; n == 0 is a no-op. Uses dsyrk on a float64 copy of the chunk.
 * QR_ERR_INPUT on non-finite values (naming the row and channel); s is then unchanged. */
qr_status qr_stats_add(qr_stats *s, const float *X, int64_t n);

/* a += b. The result depends only on the order of merges, not on timing: merging the same sequence
 * of accumulators in the same order gives bit-identical results. QR_ERR_INPUT when d differs. */
qr_status qr_stats_merge(qr_stats *a, const qr_stats *b);

/* Per-channel derived statistics into out (d); all zero when count == 0. */
void qr_stats_mean_abs(const qr_stats *s, double *out); /* sum_abs / count */
void qr_stats_rms(const qr_stats *s, double *out);      /* sqrt(sum_sq / count) */

#endif

/* progress.h: progress of long work (capture, quantize, validate, eval), printed by rank 0.
 *
 * On a terminal a live bar is redrawn in place; otherwise (a log file, a Slurm job) one line per
 * finished unit. Every line says done/total, elapsed time, ETA and the current item. --quiet
 * silences it; --json-log FILE also writes one JSON object per event for machines. */
#ifndef QR_PROGRESS_H
#define QR_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
    QR_PROGRESS_AUTO = 0, /* bar when stderr is a terminal, else lines */
    QR_PROGRESS_BAR,
    QR_PROGRESS_LINES,
    QR_PROGRESS_QUIET
} qr_progress_mode;

/* Process-wide settings, from the command line (jobs/). json_log may be NULL; the caller owns it.
 */
void qr_progress_configure(qr_progress_mode mode, FILE *json_log);

typedef struct qr_progress qr_progress;

/* Start a task of `total` units (e.g. 35 "modules"). Returns NULL only when out of memory, and
 * every function below accepts NULL, so progress never fails a job. */
qr_progress *qr_progress_begin(const char *task, int64_t total, const char *unit);

/* One unit finished: `item` (e.g. a module name) and a short free-form detail. `weight` is the
 * unit's share of the work (1 for equal units; e.g. flops), used for the ETA. */
void qr_progress_step(qr_progress *p, const char *item, double weight, const char *detail_fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Set the total work weight when units are unequal (default: total units x 1). */
void qr_progress_set_total_weight(qr_progress *p, double total_weight);

/* Finish: print the summary line (always printed unless quiet) and free. NULL-safe. */
void qr_progress_end(qr_progress **p, const char *summary_fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Seconds since an arbitrary fixed point (monotonic clock). */
double qr_now(void);

#endif

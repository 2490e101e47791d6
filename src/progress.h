/* progress.h: progress of long work (capture, quantize, validate, eval), printed by rank 0.
 *
 * On a terminal a live bar is redrawn in place, fitted to the terminal's width; otherwise (a log
 * file, a Slurm job) one line per finished unit. Every line says done/total, elapsed time, ETA and
 * the current item. --quiet silences it; --json-log FILE also writes one JSON object per event for
 * machines, with the step's fields as JSON fields and a wall-clock timestamp.
 *
 * src/ opens no file: where the bar goes (stderr, or the launcher's terminal under mpiexec) and how
 * wide that terminal is are given by jobs/ (qr_progress_set_terminal, jobs/progress_tty.c). */
#ifndef QR_PROGRESS_H
#define QR_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
    QR_PROGRESS_AUTO = 0, /* bar when a terminal is there (jobs/progress_tty.c), else lines */
    QR_PROGRESS_BAR,
    QR_PROGRESS_LINES,
    QR_PROGRESS_QUIET
} qr_progress_mode;

/* Process-wide settings, from the command line (jobs/). json_log may be NULL; the caller owns it.
 */
void qr_progress_configure(qr_progress_mode mode, FILE *json_log);
qr_progress_mode qr_progress_get_mode(void);

/* Where the bar is drawn: `out` (NULL: no terminal, lines on stderr instead) and its width in
 * columns, asked before every redraw (columns(ctx) <= 0: 80). The caller owns out. */
void qr_progress_set_terminal(FILE *out, int (*columns)(void *ctx), void *ctx);

typedef struct qr_progress qr_progress;

/* Start a task of `total` units (e.g. 35 "modules"). Returns NULL only when out of memory, and
 * every function below accepts NULL, so progress never fails a job. */
qr_progress *qr_progress_begin(const char *task, int64_t total, const char *unit);

/* One unit finished: `item` (e.g. a module name) and a short free-form detail. `weight` is the
 * unit's share of the work (1 for equal units; e.g. flops), used for the ETA. */
void qr_progress_step(qr_progress *p, const char *item, double weight, const char *detail_fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A step's named value: in the line as "label value unit" (label NULL: the value alone), in the
 * JSON event as "key": value. */
typedef enum { QR_PF_STR, QR_PF_NUM, QR_PF_INT } qr_progress_field_kind;
typedef struct {
    const char *key;   /* JSON field name */
    const char *label; /* text before the value in the line; NULL: none */
    qr_progress_field_kind kind;
    const char *s;    /* QR_PF_STR */
    double x;         /* QR_PF_NUM (printed %.4g, %.2f with unit "s"; NaN: null) */
    int64_t i;        /* QR_PF_INT */
    const char *unit; /* text after the value in the line; NULL: none */
} qr_progress_field;

/* The same as qr_progress_step, the detail given as fields. */
void qr_progress_step_fields(qr_progress *p, const char *item, double weight,
                             const qr_progress_field *fields, int n_fields);

/* Within the current unit: `stage` of `item` has started, `frac` (0..1) of the unit is done. The
 * bar is redrawn (the fill moves by frac of one unit's weight, the ETA is not changed); lines mode
 * prints nothing. */
void qr_progress_stage(qr_progress *p, const char *item, const char *stage, double frac);

/* Set the total work weight when units are unequal (default: total units x 1). */
void qr_progress_set_total_weight(qr_progress *p, double total_weight);

/* The caller prints each unit's result itself (validate's table rows): no line per step in lines
 * mode (the bar, the JSON events and the summary stay). */
void qr_progress_set_no_lines(qr_progress *p);

/* Erase a bar drawn on the terminal, so that the next text starts on a clean line; the next step
 * or stage redraws it. Called by the logger before every message. No-op when no bar is shown. */
void qr_progress_clear_line(void);

/* Finish: print the summary line (always printed unless quiet) and free. NULL-safe. */
void qr_progress_end(qr_progress **p, const char *summary_fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Seconds since an arbitrary fixed point (monotonic clock). */
double qr_now(void);

#endif

/* report_write.h: the report's outputs: Markdown, CSV and JSON tables, and SVG plots (output error
 * by layer per module type, one line per checkpoint; error against rank for a rank sweep). Every
 * file is written atomically. Not collective. */
#ifndef QR_IO_REPORT_WRITE_H
#define QR_IO_REPORT_WRITE_H

#include <stddef.h>
#include <stdio.h>

#include "src/report.h"
#include "src/status.h"

typedef struct {
    double max_err;      /* the --max-err threshold (0: none), shown in the text */
    double spike_factor; /* the neighbour rule, shown in the text */
    int window;
    size_t top;      /* worst modules listed per checkpoint */
    const char *act; /* which error is primary ("auto", "float", "a8", "a4") */
} qr_report_style;

/* Markdown: per-checkpoint summary, worst modules, the full per-module table of each checkpoint,
 * and a side-by-side comparison when there are several. `f` may be stdout. */
qr_status qr_report_write_md(FILE *f, const qr_report_ckpt *c, size_t n, const qr_report_style *s);
qr_status qr_report_write_md_file(const char *path, const qr_report_ckpt *c, size_t n,
                                  const qr_report_style *s);
/* CSV: one row per (checkpoint, module) with every stored number at full precision. */
qr_status qr_report_write_csv(const char *path, const qr_report_ckpt *c, size_t n);
/* JSON: {"checkpoints": [{"label", "path", "method", ..., "summary": {...}, "modules": [...]}]}. */
qr_status qr_report_write_json(const char *path, const qr_report_ckpt *c, size_t n);
/* SVG: one panel per module type, x = layer, y = primary output error (log), a line per checkpoint.
 */
qr_status qr_report_write_layers_svg(const char *path, const qr_report_ckpt *c, size_t n);
/* SVG: mean primary error against rank, a line per method, for checkpoints of one method at several
 * ranks. *written = 0 (and no file) when the inputs are not a rank sweep. */
qr_status qr_report_write_rank_svg(const char *path, const qr_report_ckpt *c, size_t n,
                                   int *written);

#endif

/* report_quality.h: the model-level quality of each checkpoint in `qrecon report`: KL divergence,
 * ΔNLL, perplexity and top-1 agreement against the float model, as `qrecon eval --ckpt` measured
 * them and left in the sidecar CKPT.eval.json (io/eval_sidecar.h). A report shows them when the
 * sidecar is there and belongs to the checkpoint's current bytes. Not collective. */
#ifndef QR_IO_REPORT_QUALITY_H
#define QR_IO_REPORT_QUALITY_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "src/report.h"
#include "src/status.h"

/* Fill c->quality from `<c->path>.eval.json` when it exists. A sidecar of other bytes (the
 * checkpoint was written again since) is left out with a warning; an unreadable one is
 * QR_ERR_INPUT naming it. */
qr_status qr_report_read_quality(qr_report_ckpt *c);

/* Markdown: one table row per (checkpoint, text), after the summary; nothing when no checkpoint
 * has figures. */
void qr_report_quality_md(FILE *f, const qr_report_ckpt *c, size_t n);

/* JSON: ck["quality"] = [{"name", "seq_len", "tokens_scored", "nll_per_token", ...}] (the names
 * of qr_eval_summary_to_json); nothing when c has no figures. */
void qr_report_quality_json(json_t *ck, const qr_report_ckpt *c);

/* SVG: mean KL divergence against rank, a line per (method, activation bits, text), for checkpoints
 * of a rank sweep that carry figures (x = the checkpoint's --rank, 0 for one whose modules use no
 * rank). *written = 0 (and no file) when no line has two ranks. */
qr_status qr_report_write_kl_svg(const char *path, const qr_report_ckpt *c, size_t n, int *written);

#endif

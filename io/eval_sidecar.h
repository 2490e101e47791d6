/* eval_sidecar.h: the model-level quality `qrecon eval --ckpt` measured, kept beside the
 * checkpoint as CKPT.eval.json so `qrecon report` can show it (docs/eval.md describes the file).
 *
 * The file is one JSON object: {"format": "qrecon-eval", "version": 1, "checkpoint",
 * "checkpoint_identity", "model", "method", "abits", "modules", "texts": [...]}, one entry per
 * text keyed by its file name ("name"), each with the figures of qr_eval_summary_to_json. A later
 * eval of the same checkpoint replaces the entries of the texts it ran and keeps the others; one of
 * a checkpoint whose bytes changed since (another identity) starts the list over. Not collective.
 */
#ifndef QR_IO_EVAL_SIDECAR_H
#define QR_IO_EVAL_SIDECAR_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "src/divergence.h"
#include "src/report.h"
#include "src/status.h"

#define QR_EVAL_SIDECAR_SUFFIX ".eval.json"
#define QR_EVAL_SIDECAR_FORMAT "qrecon-eval"
#define QR_EVAL_SIDECAR_VERSION 1
#define QR_EVAL_IDENTITY_MAX 32

/* The identity of a checkpoint file: "xxh3-" and 16 hex digits of XXH3 over every byte (a read of
 * the whole file). QR_ERR_INPUT naming the file when it cannot be read. */
qr_status qr_eval_file_identity(const char *path, char id[QR_EVAL_IDENTITY_MAX]);

/* Set the figures of s on obj under their one set of names: tokens_scored, nll_per_token and
 * perplexity (the quantized model), float_nll_per_token, float_perplexity, delta_nll,
 * delta_nll_se, kl_mean, kl_mean_se, kl_median, kl_p99, kl_max, top1_agreement,
 * top1_agreement_se (null where NaN). */
void qr_eval_summary_to_json(json_t *obj, const qr_divergence_summary *s);

/* Write path (atomically): head's members (checkpoint, model, method, ...), the format, version and
 * identity, and the texts: those of the file already at path when it is a sidecar of the same
 * identity, except the names `texts` has, then `texts` (an array of objects with "name").
 * *kept (may be NULL) gets the number of entries kept from the earlier file. */
qr_status qr_eval_sidecar_write(const char *path, const char *identity, const json_t *head,
                                const json_t *texts, size_t *kept);

/* Read the sidecar at path into *q (n entries, caller frees), checking that it belongs to the
 * checkpoint with this identity: *stale = true and nothing read when it does not. QR_ERR_INPUT
 * naming the file when it is not a qrecon-eval file. */
qr_status qr_eval_sidecar_read(const char *path, const char *identity, qr_report_quality **q,
                               size_t *n, bool *stale);

#endif

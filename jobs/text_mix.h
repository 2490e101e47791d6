/* text_mix.h: capture's calibration input from several texts (`capture --text A:0.7 --text B`):
 * each text is tokenized alone and cut into windows of L - 1 tokens (BOS comes first in each
 * window); the windows are taken from the texts in proportion to their weights (default equal)
 * and interleaved, window by window, by the largest remaining deficit (text i is due (k + 1)
 * w_i / sum(w) of the first k + 1 windows), so every stretch of windows, the held-out ones at
 * the end included, is a mix. A text that runs out leaves its share to the others.
 * docs/calibration.md, "Several texts". */
#ifndef QR_JOBS_TEXT_MIX_H
#define QR_JOBS_TEXT_MIX_H

#include <stddef.h>
#include <stdint.h>

#include "jobs/llama_job.h"

/* The mixed id stream: at most max_windows whole windows of seq_len - 1 ids each, in order, into
 * *ids (caller frees), *n ids; per_text (n_texts, may be NULL) gets the windows each text gave.
 * QR_ERR_INPUT as qr_llama_job_input for each text. Not collective. */
qr_status qr_text_mix_read(qr_llama_job *job, const qr_input_opts *opts, int64_t seq_len,
                           int64_t max_windows, int32_t **ids, size_t *n, int64_t *per_text);

/* The repeated --text values (FILE or FILE:W, W > 0; a suffix that is not a number is part of the
 * name) into in: texts, weights, n_texts, weighted, and text_path = the first. names holds the
 * paths without their suffix (QR_INPUT_MAX_TEXTS x 4096 bytes, kept by the caller). QR_ERR_INPUT
 * for a weight <= 0 or too long a path. Not collective (every rank parses alike). */
qr_status qr_text_mix_from_list(const qr_opt_list *l, char (*names)[4096], qr_input_opts *in);

/* "A:0.7,B:0.3" (weights normalised to sum 1) into buf, for the shards' source. */
void qr_text_mix_describe(const qr_input_opts *opts, char *buf, size_t size);

#endif

/* ckpt_check.h: a checkpoint's structure against its own header, before validate or report use it
 * (docs/hardening.md). */
#ifndef QR_IO_CKPT_CHECK_H
#define QR_IO_CKPT_CHECK_H

#include "io/checkpoint.h"
#include "src/status.h"

/* From the model config recorded in the checkpoint: every quantized module present (and no other),
 * with its shape; every module's datasets read in full (checksums, finite positive scales,
 * finite L, R and smooth); every copied tensor the config implies (embeddings, final and per-layer
 * norms, lm_head when untied, q/k/v biases for qwen2) present with its shape, float32, checksum
 * and finite values. QR_ERR_INPUT naming the file and the first problem. Presence and shapes are
 * checked whole; the reads are shared: part p of n_parts (0 <= p < n_parts) reads every
 * n_parts-th module and tensor, so n ranks that agree on the result read the file once between
 * them (part 0 of 1 reads it all). */
qr_status qr_ckpt_check(const qr_ckpt *c, const char *path, int part, int n_parts);

#endif

/* tokens.h: token-id files, the alternative to text as input of capture and eval.
 *
 * Two forms, chosen by the file name:
 *  - "*.txt": decimal ids separated by whitespace (spaces, tabs, newlines), e.g. "1 403 407 ...";
 *  - anything else: raw little-endian uint32 ids, 4 bytes each, no header (the file size must be a
 *    multiple of 4).
 * Every id is checked against the vocabulary size. Not collective. */
#ifndef QR_IO_TOKENS_H
#define QR_IO_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "src/status.h"

/* Largest token file accepted (256 Mi ids in raw form). */
#define QR_TOKENS_FILE_MAX ((size_t)1 << 30)

/* Read ids from path into *ids (allocated, caller frees), *n of them; each must be < n_vocab.
 * QR_ERR_INPUT naming the file, the id's index and the expected vs found value. */
qr_status qr_tokens_read(const char *path, int64_t n_vocab, int32_t **ids, size_t *n);

/* Write ids as raw little-endian uint32 (whole or not at all: written to path.tmp, renamed). */
qr_status qr_tokens_write_u32(const char *path, const int32_t *ids, size_t n);

#endif

/* tokenizer_bin.h: reader of llama2.c tokenizer.bin files into a qr_tokenizer (src/tokenizer.h).
 *
 * Format (little-endian): int32 max_token_length, then for each of the vocabulary's pieces:
 * float32 score, int32 length, `length` bytes. The file has no piece count; the vocabulary size
 * comes from the model, and the file must hold exactly that many pieces. Every length is checked
 * against the bytes left in the file and against max_token_length before anything is copied.
 * Not collective. */
#ifndef QR_IO_TOKENIZER_BIN_H
#define QR_IO_TOKENIZER_BIN_H

#include <stdint.h>

#include "src/status.h"
#include "src/tokenizer.h"

/* Largest tokenizer file accepted (a 256K-piece vocabulary takes about 4 MB). */
#define QR_TOKENIZER_BIN_MAX (64u * 1024u * 1024u)

/* Read path holding exactly n_vocab pieces. QR_ERR_INPUT naming the file, the piece and the
 * expected vs found value on any inconsistency. */
qr_status qr_tokenizer_bin_read(const char *path, int64_t n_vocab, qr_tokenizer **out);

#endif

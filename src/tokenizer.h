/* tokenizer.h: SentencePiece BPE encoding and decoding over an in-memory vocabulary, with the
 * behaviour of llama2.c's tokenizer (io/tokenizer_bin.h reads its tokenizer.bin files); or, built
 * by qr_tokenizer_create_hf, the pipeline of a Hugging Face tokenizer.json (src/tokenizer_hf.h,
 * read by io/tokenizer_json.h), behind the same encode / decode calls.
 *
 * What follows describes the llama2.c vocabulary; a tokenizer.json tokenizer follows its file
 * (normalizer, pre-tokenizer, BPE model, added tokens) and ignores add_dummy_prefix and
 * unknown_to_zero.
 *
 * Encoding: an optional dummy-prefix piece " " first (SentencePiece's add_dummy_prefix, as llama2.c
 * does); then each UTF-8 character (a lead byte and up to 3 continuation bytes) becomes its piece;
 * a character without a piece becomes one <0xXX> piece per byte when the vocabulary has byte
 * fallback (pieces "<0x00>".."<0xFF>" at ids 3..258), else it is an error, or id 0 (<unk>) when the
 * caller asks for that. Then the adjacent pair whose concatenation is a piece with the highest
 * score is merged, the leftmost on ties, until no pair merges (a heap makes this O(n log n) while
 * giving the same tokens as llama2.c's quadratic loop). BOS and EOS are never added here.
 *
 * Decoding: concatenates pieces; <0xXX> pieces become their byte; the first piece after BOS loses
 * one leading space (the dummy prefix); BOS (1) and EOS (2) decode to nothing. No files. */
#ifndef QR_TOKENIZER_H
#define QR_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/status.h"
#include "src/tokenizer_hf.h"

#define QR_TOKEN_UNK 0
#define QR_TOKEN_BOS 1
#define QR_TOKEN_EOS 2

typedef struct qr_tokenizer qr_tokenizer;

/* Build a tokenizer from n_vocab pieces (piece i is lens[i] bytes at pieces[i], any bytes) and
 * their merge scores. The pieces are copied. Duplicate pieces resolve to the lowest id. */
qr_status qr_tokenizer_create(int64_t n_vocab, const char *const *pieces, const int32_t *lens,
                              const float *scores, qr_tokenizer **out);
/* Build a tokenizer from a tokenizer.json's contents (src/tokenizer_hf.h). */
qr_status qr_tokenizer_create_hf(const qr_hf_spec *spec, qr_tokenizer **out);
void qr_tokenizer_free(qr_tokenizer **t); /* NULL-safe, clears the pointer */

/* BOS and EOS ids: 1 and 2 for a llama2.c vocabulary; tokenizer.json's (from tokenizer_config.json
 * or config.json), -1 when it has none (Qwen2 has no BOS). */
int32_t qr_tokenizer_bos(const qr_tokenizer *t);
int32_t qr_tokenizer_eos(const qr_tokenizer *t);
/* "llama2.c tokenizer.bin (SentencePiece BPE)", "tokenizer.json, byte-level BPE", ... */
const char *qr_tokenizer_kind(const qr_tokenizer *t);

int64_t qr_tokenizer_vocab_size(const qr_tokenizer *t);
/* True when ids 3..258 are the pieces "<0x00>".."<0xFF>". */
bool qr_tokenizer_has_byte_fallback(const qr_tokenizer *t);
/* Piece bytes of id (length in *len), or NULL when id is out of range. */
const char *qr_tokenizer_piece(const qr_tokenizer *t, int32_t id, size_t *len);
/* Merge score of id (0 when out of range); for writers that carry the vocabulary (export). */
float qr_tokenizer_score(const qr_tokenizer *t, int32_t id);

typedef struct {
    bool add_dummy_prefix; /* put the " " piece first (llama2.c and SentencePiece do) */
    bool unknown_to_zero;  /* a character with no piece and no byte fallback becomes id 0 */
    const char *source;    /* name of the text (a file path) for error messages; may be NULL */
} qr_encode_opts;

/* Encode len bytes of text. *tokens (allocated, caller frees) holds *n ids. A character the
 * vocabulary cannot encode is QR_ERR_INPUT naming the source, the byte offset and the byte,
 * unless opts->unknown_to_zero. An empty text gives no tokens (and no dummy prefix). */
qr_status qr_tokenizer_encode(const qr_tokenizer *t, const char *text, size_t len,
                              const qr_encode_opts *opts, int32_t **tokens, size_t *n);

/* Decode n ids into *text (allocated, NUL-terminated, caller frees; *len bytes without the NUL).
 * prev is the id before tokens[0] (QR_TOKEN_BOS to strip the dummy prefix, else -1). Ids outside
 * the vocabulary are QR_ERR_INPUT. */
qr_status qr_tokenizer_decode(const qr_tokenizer *t, const int32_t *tokens, size_t n, int32_t prev,
                              char **text, size_t *len);

#endif

/* tokenizer_hf.h: the encoding pipeline of a Hugging Face tokenizer.json with a BPE model, over
 * plain data that io/tokenizer_json.c reads from the file. Two families are covered:
 *
 *   SentencePiece-style BPE (Llama-2, Mistral, TinyLlama): normalizer Prepend("▁") + Replace(" " ->
 *   "▁") (or the Metaspace pre-tokenizer), no split, BPE over the characters with byte fallback
 *   (<0xXX> pieces) for characters outside the vocabulary.
 *   Byte-level BPE (Llama-3, Qwen2): optional NFC normalizer, Split pre-tokenizer with a regular
 *   expression (PCRE2 with UTF and UCP), then ByteLevel (bytes mapped to printable characters,
 * GPT-2's table), BPE over those characters, optionally ignore_merges (a whole pre-token in the
 * vocabulary is one token).
 *
 * The steps follow @huggingface/tokenizers (the JavaScript port of the Rust library), which the
 * tests compare against token for token: added tokens are matched first on the raw text (longest
 * match at each position), each remaining section is normalized, split again on normalized added
 * tokens, pre-tokenized and encoded; BPE merges the adjacent pair of lowest rank, the leftmost on
 * ties. Regular expressions are rewritten as that library does before compiling: \s and \S become
 * \p{White_Space} / \P{White_Space} (Rust's definition, not PCRE2's or JavaScript's), and letters
 * in a (?i:...) group match both ASCII cases only.
 *
 * Text must be valid UTF-8 (the library works on Unicode strings); invalid UTF-8 is QR_ERR_INPUT
 * naming the byte offset. No files. */
#ifndef QR_TOKENIZER_HF_H
#define QR_TOKENIZER_HF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/status.h"

typedef enum { QR_HF_NORM_PREPEND, QR_HF_NORM_REPLACE, QR_HF_NORM_NFC } qr_hf_norm_kind;

typedef struct {
    qr_hf_norm_kind kind;
    const char *a; /* PREPEND: the prefix; REPLACE: the string replaced */
    size_t a_len;
    const char *b; /* REPLACE: its replacement */
    size_t b_len;
} qr_hf_norm_op;

typedef enum { QR_HF_PRE_SPLIT, QR_HF_PRE_BYTE_LEVEL, QR_HF_PRE_METASPACE } qr_hf_pre_kind;
typedef enum { QR_HF_PREPEND_ALWAYS, QR_HF_PREPEND_FIRST, QR_HF_PREPEND_NEVER } qr_hf_prepend;

typedef struct {
    qr_hf_pre_kind kind;
    const char *pattern;     /* SPLIT: the regular expression (behavior Isolated, not inverted) */
    bool add_prefix_space;   /* BYTE_LEVEL */
    bool use_regex;          /* BYTE_LEVEL: split with GPT-2's pattern first */
    const char *replacement; /* METASPACE (NUL-terminated, usually "▁") */
    qr_hf_prepend prepend;   /* METASPACE */
} qr_hf_pre_op;

typedef struct {
    const char *content;
    size_t len;
    int32_t id;
    bool special, normalized, lstrip, rstrip;
} qr_hf_added;

/* Everything the pipeline needs; the strings are copied by qr_hf_create. */
typedef struct {
    int64_t n_vocab;          /* the BPE model's vocabulary entries */
    const char *const *vocab; /* (n_vocab) piece bytes */
    const size_t *vocab_lens; /* (n_vocab) */
    const int32_t *vocab_ids; /* (n_vocab) ids, each in [0, QR_HF_MAX_ID] */
    int64_t n_merges;         /* merges in rank order */
    const char *const *merge_left, *const *merge_right; /* (n_merges) */
    const size_t *merge_left_lens, *merge_right_lens;   /* (n_merges) */
    int64_t n_norm;
    const qr_hf_norm_op *norm; /* (n_norm) applied in order */
    int64_t n_pre;
    const qr_hf_pre_op *pre; /* (n_pre) applied in order */
    int64_t n_added;
    const qr_hf_added *added; /* (n_added) */
    const char *unk;          /* the model's unk_token, or NULL */
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t bos, eos; /* ids, -1 when the tokenizer has none */
} qr_hf_spec;

/* Largest token id accepted (the biggest vocabularies today hold about 256K pieces). */
#define QR_HF_MAX_ID ((1 << 24) - 1)

typedef struct qr_hf qr_hf;

/* Build the pipeline: index the vocabulary, resolve every merge to ids (both sides and their
 * concatenation must be in the vocabulary), compile the regular expressions. QR_ERR_INPUT naming
 * the entry on any inconsistency (the caller prefixes the file). */
qr_status qr_hf_create(const qr_hf_spec *spec, qr_hf **out);
void qr_hf_free(qr_hf **h); /* NULL-safe, clears the pointer */

/* One more than the largest id (vocabulary and added tokens). */
int64_t qr_hf_n_ids(const qr_hf *h);
int32_t qr_hf_bos(const qr_hf *h);
int32_t qr_hf_eos(const qr_hf *h);
bool qr_hf_byte_fallback(const qr_hf *h);
bool qr_hf_is_byte_level(const qr_hf *h);
/* The piece of id as written in tokenizer.json (NULL for an id without one). */
const char *qr_hf_piece(const qr_hf *h, int32_t id, size_t *len);

/* Encode len bytes of text without BOS/EOS (add_special_tokens = false). source names the text in
 * messages. */
qr_status qr_hf_encode(const qr_hf *h, const char *text, size_t len, const char *source,
                       int32_t **tokens, size_t *n);

/* Decode ids to text: byte-level pieces back to their bytes, or "▁" to " " and <0xXX> to bytes;
 * special added tokens are skipped; with strip_space (the SentencePiece family after BOS) one
 * leading space of the result is removed. */
qr_status qr_hf_decode(const qr_hf *h, const int32_t *tokens, size_t n, bool strip_space,
                       char **text, size_t *len);

#endif

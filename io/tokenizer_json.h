/* tokenizer_json.h: reader of Hugging Face tokenizer.json files (with a BPE model) into a
 * qr_tokenizer (src/tokenizer.h, pipeline in src/tokenizer_hf.h).
 *
 * Accepted: model BPE (vocab, merges as "a b" strings or ["a", "b"] pairs, byte_fallback, fuse_unk,
 * unk_token, ignore_merges; no dropout, no subword prefix/suffix); normalizer null, NFC, Prepend,
 * Replace (String pattern) or a Sequence of them; pre_tokenizer null, Split (Regex pattern,
 * behavior Isolated, not inverted), ByteLevel, Metaspace (split false) or a Sequence of them;
 * added_tokens. Anything else is refused by name (QR_ERR_INPUT naming the file and the key).
 *
 * BOS / EOS: tokenizer_config.json beside the file ("bos_token" / "eos_token", a string or an
 * object with "content"; null means none); when it is absent or lacks the key, config.json beside
 * the file ("bos_token_id" / "eos_token_id", the first of a list); then the SpecialToken before
 * $A in the post_processor's TemplateProcessing (BOS only). Not collective. */
#ifndef QR_IO_TOKENIZER_JSON_H
#define QR_IO_TOKENIZER_JSON_H

#include "src/status.h"
#include "src/tokenizer.h"

/* Largest tokenizer.json accepted (Llama-3's is 9 MB, Qwen2's 7 MB). */
#define QR_TOKENIZER_JSON_MAX ((uint64_t)256 << 20)

qr_status qr_tokenizer_json_read(const char *path, qr_tokenizer **out);

#endif

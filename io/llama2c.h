/* llama2c.h: llama2.c "v0" checkpoints (Karpathy's run.c format), memory-mapped and exposed under
 * the Hugging Face tensor names of io/model.h, so the rest of qrecon never sees the stacked layout.
 *
 * Layout (little-endian): 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len; a negative vocab_size means an untied classifier follows), then float32 arrays:
 *   token embedding (V, D), attention RMS (L, D), wq (L, D, D), wk (L, KV*hd, D), wv (L, KV*hd, D),
 *   wo (L, D, D), FFN RMS (L, D), w1 (L, H, D), w2 (L, D, H), w3 (L, H, D), final RMS (D),
 *   RoPE cos and sin tables (seq_len, hd/2) each (unused), and when untied the classifier (V, D).
 * hd = D / n_heads. Matrices are row-major (out, in). The file size must equal exactly what the
 * header implies. Rows stay as stored: q/k rows follow llama2.c's interleaved RoPE pairs (2i,
 * 2i+1). Not collective. */
#ifndef QR_IO_LLAMA2C_H
#define QR_IO_LLAMA2C_H

#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"
#include "src/model_config.h"
#include "src/status.h"

#define QR_L2C_HEADER_BYTES 28 /* 7 x int32 */

typedef struct qr_l2c_file qr_l2c_file;

/* Map and validate a v0 checkpoint. The config gets arch "llama2c", rope_style INTERLEAVED,
 * rms_eps 1e-5 and rope_theta 10000 (what run.c hard-codes), max_seq_len = seq_len. */
qr_status qr_l2c_open(const char *path, qr_l2c_file **out);
void qr_l2c_close(qr_l2c_file **f); /* NULL-safe, clears the pointer */

const qr_model_config *qr_l2c_config(const qr_l2c_file *f);
const char *qr_l2c_path(const qr_l2c_file *f);
uint64_t qr_l2c_file_size(const qr_l2c_file *f);
/* The first min(n, file size) bytes of the mapping (for identity hashes); *len gets the length. */
const void *qr_l2c_head_bytes(const qr_l2c_file *f, size_t n, size_t *len);

/* Tensors, F32, under Hugging Face names (lm_head.weight only when untied), sorted by name. The
 * qr_st_tensor descriptors point into the mapping and are owned by the handle, so qr_st_read_f32 /
 * qr_st_read_f64 read them like safetensors tensors. */
size_t qr_l2c_count(const qr_l2c_file *f);
const qr_st_tensor *qr_l2c_at(const qr_l2c_file *f, size_t i);
const qr_st_tensor *qr_l2c_find(const qr_l2c_file *f, const char *name); /* NULL if absent */

/* The exact file size a header implies (header, all arrays, RoPE tables, classifier when untied);
 * QR_ERR_INPUT naming `path` when a field is out of range or a product overflows. hdr holds the 7
 * int32 fields in file order. */
qr_status qr_l2c_expected_size(const int32_t hdr[7], const char *path, uint64_t *bytes);

#endif

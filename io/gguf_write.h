/* gguf_write.h: a streaming writer of GGUF version 3 files (the format llama.cpp loads), and the
 * ggml block encodings qrecon exports (docs/export.md).
 *
 * Layout written: "GGUF", u32 version 3, u64 tensor count, u64 key/value count; each key/value as
 * a string key (u64 length + bytes), a u32 value type and the value (arrays: u32 element type, u64
 * count, elements); each tensor's info as its name, u32 dims, u64 ne[dims] (ne[0] = the number of
 * columns: an [out, in] matrix is written with ne = [in, out], bytes unchanged), u32 ggml type and
 * a u64 offset relative to the data section; then zero padding to `general.alignment` (32), and the
 * data section, every tensor starting at a multiple of 32.
 *
 * Use: open, add key/values and tensor infos (kept in memory), then stream each tensor's bytes in
 * the order the tensors were added (qr_gguf_put), then finish. The file is written as path.tmp and
 * renamed into place only when every tensor is complete. Not collective. */
#ifndef QR_IO_GGUF_WRITE_H
#define QR_IO_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "src/qlayer.h"
#include "src/status.h"

#define QR_GGUF_ALIGNMENT 32
#define QR_GGML_QK 32 /* values per Q4_0 / Q4_1 block */

/* ggml tensor types (ggml.h numbering). */
typedef enum { QR_GGML_F32 = 0, QR_GGML_F16 = 1, QR_GGML_Q4_0 = 2, QR_GGML_Q4_1 = 3 } qr_ggml_type;

const char *qr_ggml_type_name(qr_ggml_type t);

/* Bytes of one row of ne0 values (ne0 a multiple of 32 for the block types), 0 when it is not. */
size_t qr_ggml_row_size(qr_ggml_type t, int64_t ne0);

typedef struct qr_gguf qr_gguf;

qr_status qr_gguf_open(const char *path, qr_gguf **out);

/* Key/values, in the order added. */
qr_status qr_gguf_kv_str(qr_gguf *g, const char *key, const char *value);
qr_status qr_gguf_kv_u32(qr_gguf *g, const char *key, uint32_t value);
qr_status qr_gguf_kv_f32(qr_gguf *g, const char *key, float value);
qr_status qr_gguf_kv_bool(qr_gguf *g, const char *key, int value);
/* n strings, string i being lens[i] bytes at strs[i] */
qr_status qr_gguf_kv_str_array(qr_gguf *g, const char *key, size_t n, const char *const *strs,
                               const size_t *lens);
qr_status qr_gguf_kv_f32_array(qr_gguf *g, const char *key, size_t n, const float *v);
qr_status qr_gguf_kv_i32_array(qr_gguf *g, const char *key, size_t n, const int32_t *v);

/* A tensor of `rows` rows of `cols` values (rows = 1 and ndim = 1 for a vector). */
qr_status qr_gguf_add_tensor(qr_gguf *g, const char *name, qr_ggml_type type, int ndim,
                             int64_t cols, int64_t rows);

/* Write the header (after the last add); then the data of tensor 0, 1, ... through put. */
qr_status qr_gguf_begin_data(qr_gguf *g);
/* Append bytes of the current tensor (any number of calls; a tensor ends at its byte count). */
qr_status qr_gguf_put(qr_gguf *g, const void *data, size_t n);

/* Check that every tensor is complete, fsync, rename path.tmp to path; frees. */
qr_status qr_gguf_finish(qr_gguf **g, uint64_t *bytes);
void qr_gguf_abort(qr_gguf **g); /* removes path.tmp; frees; NULL-safe */

/* ---- block encodings of a qrecon INT4 matrix (src/qlayer.h) -----------------------------------
 * Row `row` of q (q->group == 32, q->cols a multiple of 32) as ggml blocks of 32 values: Q4_0
 * (symmetric q: an f16 scale d then 16 bytes, byte j = nibble[j] | nibble[j + 16] << 4, value
 * d * (nibble - 8), so the nibble is the checkpoint's code unchanged) or Q4_1 (asymmetric q: f16
 * d, f16 m = -scale * zero, the same nibble layout, value d * nibble + m). out holds
 * qr_ggml_row_size bytes. The only change from the checkpoint is the F16 rounding of scale (and of
 * -scale * zero). */
void qr_gguf_encode_q4_row(const qr_qweight *q, int64_t row, uint8_t *out);

/* The value Q4_0 / Q4_1 gives element (row, j) of q after that F16 rounding. */
double qr_gguf_q4_value(const qr_qweight *q, int64_t row, int64_t j);

#endif

/* st_raw_write.h: a safetensors writer for any element type the format names (I32, I64, F32, ...),
 * for exports whose tensors are not float (compressed-tensors' packed INT4 codes and shapes).
 * io/safetensors.h writes the float model files; this writer only adds the integer types.
 *
 * Format (github.com/huggingface/safetensors): u64 little-endian header size N, N bytes of JSON
 * {"__metadata__": {...}, "<name>": {"dtype": "I32", "shape": [...], "data_offsets": [b, e]}, ...}
 * padded with spaces to a multiple of 8, then the data, offsets relative to its start. Tensors are
 * laid out in the order given; the file is written as path.tmp and renamed when complete. */
#ifndef QR_IO_ST_RAW_WRITE_H
#define QR_IO_ST_RAW_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "src/status.h"

typedef struct {
    char name[256];
    const char *dtype; /* "I32", "I64", "F32", "F16", "BF16", "U8", "I8" */
    int ndim;
    int64_t shape[4];
} qr_stw_entry;

/* Bytes per element of a dtype name, 0 when unknown. */
size_t qr_stw_dtype_size(const char *dtype);

typedef struct qr_stw qr_stw;

/* metadata: "__metadata__" string pairs (n_meta keys and values; may be 0). */
qr_status qr_stw_open(const char *path, const qr_stw_entry *entries, size_t n,
                      const char *const *meta_keys, const char *const *meta_values, size_t n_meta,
                      qr_stw **out);
/* Append bytes of the current tensor (a tensor ends when its byte count is reached). */
qr_status qr_stw_put(qr_stw *w, const void *data, size_t nbytes);
/* Check completeness, fsync, rename; frees. *bytes (may be NULL) gets the file size. */
qr_status qr_stw_finish(qr_stw **w, uint64_t *bytes);
void qr_stw_abort(qr_stw **w); /* removes path.tmp; frees; NULL-safe */

#endif

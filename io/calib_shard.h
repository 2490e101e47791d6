/* calib_shard.h: HDF5 calibration shards, written by `qrecon capture` and streamed by the
 * quantizer.
 *
 * A shard holds a contiguous range of capture windows (seq_len tokens each, BOS first). Datasets,
 * all 2-D with rows = tokens in window order, chunked by rows (one window per chunk unless a chunk
 * would pass QR_CALIB_CHUNK_MAX bytes), stored as float32 or float16 (IEEE binary16):
 *   layers.L.attn_in  (n_tokens, dim)         RMSNorm(x) before q/k/v of layer L
 *   layers.L.o_in     (n_tokens, q_dim)       attention output before o_proj
 *   layers.L.mlp_in   (n_tokens, dim)         RMSNorm(x) before gate/up
 *   layers.L.down_in  (n_tokens, hidden_dim)  silu(gate) * up before down_proj
 *   tokens            (n_tokens)              int32 token ids
 * Root attributes (every one always present) are the fields of qr_calib_info; docs/calibration.md
 * documents each. Files are written as NAME.tmp and renamed when complete, with no timestamps, so
 * the same input gives the same bytes. Serial HDF5 (one process per file); not collective. */
#ifndef QR_IO_CALIB_SHARD_H
#define QR_IO_CALIB_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/dtype.h"
#include "src/modules.h"
#include "src/status.h"

#define QR_CALIB_FORMAT "qrecon-calib"
#define QR_CALIB_VERSION 2 /* what the writer writes; the reader takes 1 and 2 */
/* Largest chunk: big enough that a chunk is one window for models up to d = 8192 at seq_len 2048
 * in float32, small enough for HDF5's 4 GiB chunk limit and a reader's buffer. */
#define QR_CALIB_CHUNK_MAX ((int64_t)64 << 20)
#define QR_CALIB_STR_MAX 4096

/* The root attributes of a shard. */
typedef struct {
    int64_t version;                       /* format version (QR_CALIB_VERSION) */
    char model_identity[QR_CALIB_STR_MAX]; /* qr_model_identity() of the source model */
    char model_path[QR_CALIB_STR_MAX];     /* the --model path as given */
    char source[QR_CALIB_STR_MAX];         /* the --text or --token-file path as given */
    char source_kind[16];                  /* "text" or "tokens" */
    qr_dtype dtype;                        /* QR_DTYPE_F32 or QR_DTYPE_F16 (attribute "dtype") */
    int64_t dim, hidden_dim, q_dim, n_layers, vocab_size;
    int64_t seq_len;          /* tokens per window, BOS included */
    int64_t n_tokens;         /* rows in this shard = n_windows * seq_len */
    int64_t n_windows;        /* windows in this shard */
    int64_t window_first;     /* global index of this shard's first window */
    int64_t total_windows;    /* windows over all shards of the capture */
    int64_t shard_index;      /* this shard's number (the rank that wrote it) */
    int64_t shard_count;      /* shards of the capture */
    int64_t add_dummy_prefix; /* 1 when text was encoded with the " " dummy prefix */
    int64_t unknown_to_zero;  /* 1 when unencodable characters became id 0 */
    /* Version 2: the shard holds the inputs of layers [layer_begin, layer_end) only (a capture
     * pipelined over layer slices writes one set of shards per slice); version 1: [0, n_layers).
     * shard_index / shard_count then number the shards of the slice. */
    int64_t layer_begin, layer_end;
} qr_calib_info;

/* "layers.L.<suffix>" for a layer and input kind (buf of QR_INPUT_KEY_MAX bytes). */
void qr_calib_key(char *buf, size_t size, int64_t layer, qr_input_kind kind);

/* ---- writing ------------------------------------------------------------------------------- */
typedef struct qr_calib_writer qr_calib_writer;

/* Create path.tmp with every dataset of info's shape (info->n_tokens rows) and the root attributes.
 * QR_ERR_INPUT when info is inconsistent (n_tokens != n_windows * seq_len, no window, bad dtype).
 */
qr_status qr_calib_writer_open(const char *path, const qr_calib_info *info, qr_calib_writer **out);

/* Write rows [row0, row0 + n) of the input (layer, kind), X (n, d) float32, d the key's width. */
qr_status qr_calib_writer_put(qr_calib_writer *w, int64_t layer, qr_input_kind kind, int64_t row0,
                              const float *X, int64_t n, int64_t d);
/* Write token ids (n) at rows [row0, row0 + n). */
qr_status qr_calib_writer_put_tokens(qr_calib_writer *w, int64_t row0, const int32_t *ids,
                                     int64_t n);
/* Bytes of activation and token data written so far (for throughput figures). */
uint64_t qr_calib_writer_bytes(const qr_calib_writer *w);
/* Check that every row of every dataset was written, close, fsync and rename onto path. Frees. */
qr_status qr_calib_writer_finish(qr_calib_writer **w);
/* Close and remove path.tmp; NULL-safe. */
void qr_calib_writer_abort(qr_calib_writer **w);

/* ---- reading one shard --------------------------------------------------------------------- */
typedef struct qr_calib_shard qr_calib_shard;

/* Open and validate a shard: format and version attributes, every attribute present, every
 * dataset present with the shape the attributes give. Errors name the file, the attribute or
 * dataset, expected vs found. */
qr_status qr_calib_shard_open(const char *path, qr_calib_shard **out);
void qr_calib_shard_close(qr_calib_shard **s); /* NULL-safe, clears the pointer */
const qr_calib_info *qr_calib_shard_info(const qr_calib_shard *s);
const char *qr_calib_shard_path(const qr_calib_shard *s);

/* The activation keys in canonical order (layer by layer: attn_in, o_in, mlp_in, down_in). */
size_t qr_calib_shard_key_count(const qr_calib_shard *s);
const char *qr_calib_shard_key(const qr_calib_shard *s, size_t i);
/* Shape of a key; QR_ERR_INPUT naming the file when the key is unknown. */
qr_status qr_calib_shard_shape(const qr_calib_shard *s, const char *key, int64_t *rows,
                               int64_t *cols);
/* dst (n, cols) = rows [r0, r0 + n) of key, converted to float32. */
qr_status qr_calib_shard_read_rows(qr_calib_shard *s, const char *key, int64_t r0, int64_t n,
                                   float *dst);
qr_status qr_calib_shard_read_tokens(qr_calib_shard *s, int64_t r0, int64_t n, int32_t *dst);

/* ---- reading a set of shards in order ------------------------------------------------------ */
typedef struct qr_calib_set qr_calib_set;

/* Open every shard-*.h5 of a capture folder in name order and check that they form one complete
 * capture: same model, shapes and seq_len, shard_index i at position i, shard_count equal to the
 * number of files, consecutive window ranges covering total_windows. A capture cut into layer
 * slices is one such complete set of shards per slice; the slices must cover every layer. */
qr_status qr_calib_set_open_dir(const char *dir, qr_calib_set **out);
/* The same, opening only the shards of the slices that hold layers [layer_begin, layer_end)
 * (chosen by file name, so a quantize rank group opens only its own layers' shards); those
 * slices must cover the range. A whole-model capture is opened whole. */
qr_status qr_calib_set_open_dir_layers(const char *dir, int64_t layer_begin, int64_t layer_end,
                                       qr_calib_set **out);
/* The layers the opened shards hold: [*layer_begin, *layer_end). */
void qr_calib_set_layers(const qr_calib_set *set, int64_t *layer_begin, int64_t *layer_end);
/* Shape of a key over the set: rows over all windows, cols its width; QR_ERR_INPUT naming the
 * folder's first shard when no opened shard holds the key. */
qr_status qr_calib_set_shape(const qr_calib_set *set, const char *key, int64_t *rows,
                             int64_t *cols);
/* Open the given shard files in the given order: same model, shapes and seq_len, window ranges in
 * increasing order without overlap (a subset of a capture is allowed). */
qr_status qr_calib_set_open_files(const char *const *paths, size_t n, qr_calib_set **out);
void qr_calib_set_close(qr_calib_set **set); /* NULL-safe, clears the pointer */
/* Every opened shard, slice by slice (each slice's shards in window order). */
size_t qr_calib_set_shard_count(const qr_calib_set *set);
qr_calib_shard *qr_calib_set_shard(const qr_calib_set *set, size_t i);
int64_t qr_calib_set_rows(const qr_calib_set *set); /* tokens over all shards */
/* dst (n, cols) = rows [r0, r0 + n) of key over the concatenation, in order, of the shards of the
 * slice that holds the key. */
qr_status qr_calib_set_read_rows(qr_calib_set *set, const char *key, int64_t r0, int64_t n,
                                 float *dst);

/* ---- the output folder of a capture ------------------------------------------------------- */
/* Check the shard files (shard-*.h5 and shard-*.h5.tmp) already in dir: QR_ERR_INPUT naming the
 * file when one is not a qrecon-calib shard or was captured from a model whose identity is not
 * `identity`; *n_found = how many shard files are there. A missing dir is fine (0 found). */
qr_status qr_calib_dir_check(const char *dir, const char *identity, size_t *n_found);
/* Remove the shard files (shard-*.h5, shard-*.h5.tmp) of dir, after qr_calib_dir_check. */
qr_status qr_calib_dir_clear(const char *dir);
/* The same, but the shard files whose paths (as qr_calib_slice_shard_name gives them) are in
 * keep (n_keep) stay: the complete shards a resumed capture keeps. */
qr_status qr_calib_dir_clear_except(const char *dir, const char *const *keep, size_t n_keep);
/* "DIR/shard-RRRRR.h5" for shard r. */
qr_status qr_calib_shard_name(char *buf, size_t size, const char *dir, int64_t r);
/* The name of shard r of the slice of layers [layer_begin, layer_end) of a model of n_layers:
 * "DIR/shard-RRRRR.h5" when the slice is the whole model, else "DIR/shard-lAAAAA-BBBBB-RRRRR.h5"
 * (A = layer_begin, B = layer_end, exclusive), so a reader picks a slice's shards by name. */
qr_status qr_calib_slice_shard_name(char *buf, size_t size, const char *dir, int64_t layer_begin,
                                    int64_t layer_end, int64_t n_layers, int64_t r);
/* The layer range a shard file name says ("shard-lAAAAA-BBBBB-RRRRR.h5"); false for the
 * whole-model name "shard-RRRRR.h5" (its range is in the file) and for other names. */
bool qr_calib_name_layers(const char *name, int64_t *layer_begin, int64_t *layer_end);

#endif

/* safetensors.h: memory-mapped, fully validated reading (and streaming writing) of safetensors
 * files, single or sharded through model.safetensors.index.json.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON {"name": {"dtype", "shape",
 * "data_offsets": [begin, end]}, "__metadata__": {...}}, then the data section. Everything is
 * checked at open, before any tensor is touched: N bounded (QR_ST_HEADER_MAX) and inside the file,
 * JSON well formed with no duplicate keys, known dtype, shape product x dtype size == end - begin
 * (overflow-checked), offsets inside the data section and not overlapping. Not collective. */
#ifndef QR_IO_SAFETENSORS_H
#define QR_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "src/dtype.h"
#include "src/status.h"

#define QR_ST_HEADER_MAX (100u * 1024u * 1024u) /* the limit the reference implementation uses */
#define QR_ST_MAX_DIMS 8
/* Most tensors one file's header may list: a 405B model has about 1,100 in all; 65,536 bounds the
 * parser's memory (about 150 MiB) against a crafted header (docs/limits.md). */
#define QR_ST_MAX_TENSORS 65536u

typedef struct {
    const char *name; /* owned by the file handle */
    qr_dtype dtype;
    int ndim;
    int64_t shape[QR_ST_MAX_DIMS];
    int64_t numel;
    size_t nbytes;
    const void *data; /* inside the mapping, nbytes long, any alignment */
    const char *path; /* the file that holds it (owned by the handle) */
} qr_st_tensor;

/* ---- one file -------------------------------------------------------------------------------- */
typedef struct qr_st_file qr_st_file;

qr_status qr_st_open(const char *path, qr_st_file **out);
void qr_st_close(qr_st_file **f); /* NULL-safe, clears the pointer */
size_t qr_st_count(const qr_st_file *f);
const qr_st_tensor *qr_st_at(const qr_st_file *f, size_t i);           /* in data-offset order */
const qr_st_tensor *qr_st_find(const qr_st_file *f, const char *name); /* NULL if absent */
const char *qr_st_path(const qr_st_file *f);
/* A string of the header's "__metadata__" object (e.g. "format"), or NULL when absent. */
const char *qr_st_metadata(const qr_st_file *f, const char *key);
/* Drop this process's mapping of bytes [data, data + bytes) of a tensor already read (rounded out
 * to whole pages): the pages stay in the page cache, a later access faults them back in, and the
 * process's resident set no longer counts them (each tensor is read once; the model readers of
 * io/model.h call it). Only for spans inside a read-only file mapping (safetensors, llama2.c). */
void qr_st_release(const void *data, size_t bytes);

/* ---- a model folder: model.safetensors, or model.safetensors.index.json and its shards ------- */
typedef struct qr_st_model qr_st_model;

/* Opens every shard named by the index (each once) and checks that each tensor the index names is
 * present in its shard, and that no shard holds a tensor the index does not name. `dir` may also be
 * a folder with one model.safetensors (preferred when both are present) or a .safetensors file. */
qr_status qr_st_model_open(const char *dir, qr_st_model **out);
void qr_st_model_close(qr_st_model **m);
size_t qr_st_model_count(const qr_st_model *m);
const qr_st_tensor *qr_st_model_at(const qr_st_model *m, size_t i); /* sorted by name */
const qr_st_tensor *qr_st_model_find(const qr_st_model *m, const char *name);
size_t qr_st_model_shard_count(const qr_st_model *m);
const char *qr_st_model_shard_path(const qr_st_model *m, size_t i);
/* The i-th open shard (sorted by file name); owned by the model. */
const qr_st_file *qr_st_model_shard(const qr_st_model *m, size_t i);

/* Convert a whole tensor to float32 / float64; n must equal t->numel. */
qr_status qr_st_read_f32(const qr_st_tensor *t, float *dst, size_t n);
qr_status qr_st_read_f64(const qr_st_tensor *t, double *dst, size_t n);
/* Convert elements [first, first + n) of the flattened tensor (e.g. a block of rows: first = row0 x
 * cols), so a tensor larger than memory can be streamed. QR_ERR_INTERNAL when out of range. */
qr_status qr_st_read_range_f32(const qr_st_tensor *t, int64_t first, size_t n, float *dst);
qr_status qr_st_read_range_f64(const qr_st_tensor *t, int64_t first, size_t n, double *dst);

/* ---- writing (synth, tests) ------------------------------------------------------------------ */
typedef struct {
    const char *name;
    qr_dtype dtype;
    int ndim;
    int64_t shape[QR_ST_MAX_DIMS];
} qr_st_entry;

typedef struct qr_st_writer qr_st_writer;

/* Write the header for `entries` (data laid out in the given order), then the caller streams each
 * tensor's bytes in that order with qr_st_writer_put. The file is written as path + ".tmp" and
 * renamed into place by qr_st_writer_finish only when every tensor is complete. */
qr_status qr_st_writer_open(const char *path, const qr_st_entry *entries, size_t n,
                            qr_st_writer **out);
/* Append `nbytes` of raw little-endian data for the current tensor (may be called several times
 * per tensor; a tensor ends when its byte count is reached). */
qr_status qr_st_writer_put(qr_st_writer *w, const void *data, size_t nbytes);
qr_status qr_st_writer_finish(qr_st_writer **w); /* fsync, rename; frees */
void qr_st_writer_abort(qr_st_writer **w);       /* removes the temporary file; frees; NULL-safe */

/* Write dir/model.safetensors.index.json: {"metadata": {"total_size": total_size}, "weight_map":
 * {tensors[i]: shards[i]}} (n entries; shard names are plain file names), atomically. */
qr_status qr_st_write_index(const char *dir, const char *const *tensors, const char *const *shards,
                            size_t n, uint64_t total_size);

#endif

/* checkpoint.h: the shared checkpoint, ONE HDF5 file holding a whole quantized model, written by
 * all ranks collectively from the per-module part files (io/part_file.h), and its reader.
 *
 * Layout (format "qrecon-ckpt", version 1; docs/checkpoint.md describes every field):
 *   /                root attributes: format, version, the job's attributes (method, wbits, abits,
 *                    group, rank, source model identity, model config JSON, options JSON, ...),
 *                    and `complete` = 1 written LAST, after every dataset
 *   /<module name>   one group per quantized module, named as in the source model
 *                    ("model.layers.0.self_attn.q_proj"), in model order (link creation order is
 *                    tracked): the qr_qlayer attributes and datasets of io/qlayer_h5.h, and the
 *                    module's metrics as attributes "metric.<key>"
 *   /tensors/<name>  every tensor that is not quantized (embeddings, norms, lm_head), float32, in
 *                    the source model's shape
 *
 * Writing: `<out>.tmp` is created by all ranks (MPI-IO driver, collective metadata reads and
 * writes), every rank creates every group, dataset and attribute in the same order, the rank that
 * owns a module or tensor writes its data and the others write an empty selection (collective
 * transfers); after the collective close rank 0 renames `<out>.tmp` to `<out>`. */
#ifndef QR_IO_CHECKPOINT_H
#define QR_IO_CHECKPOINT_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "io/h5util.h"
#include "src/qlayer.h"
#include "src/status.h"

#define QR_CKPT_FORMAT "qrecon-ckpt"
#define QR_CKPT_VERSION 1
#define QR_CKPT_TENSORS "tensors"

/* A non-quantized tensor to copy: its name and shape; the data come from read() on the owner. */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[8];
} qr_ckpt_tensor;

/* Read rows [row0, row0 + nrows) of tensor `name` (its first dimension) as float32 into dst (n
 * elements: nrows times the product of the other dimensions). Called on the tensor's owner rank,
 * one block of rows at a time, so no rank holds a whole float32 copy of an embedding. */
typedef qr_status (*qr_ckpt_read_fn)(void *ctx, const char *name, int64_t row0, int64_t nrows,
                                     float *dst, size_t n);

/* The root attributes a job writes, typed: one writer (qr_ckpt_header_write) and one reader
 * (qr_ckpt_header_read), so every consumer sees the same values. */
#define QR_CKPT_WBITS 4 /* INT4 main matrices: the only weight width qrecon writes */
typedef struct {
    char method[32];        /* qr_method_name() */
    int64_t wbits;          /* QR_CKPT_WBITS */
    int64_t abits;          /* activation bits the model runs with: 8, 4, or 0 = float */
    int64_t group;          /* weight group size, 0 = whole row */
    int64_t rank;           /* the --rank budget */
    char source_model[256]; /* identity of the source model */
    char calibration[64];   /* identity of the calibration shards */
    char writer[64];        /* "qrecon VERSION" */
} qr_ckpt_header;

/* Append the header's attributes to root, in their fixed order. */
qr_status qr_ckpt_header_write(const qr_ckpt_header *h, qr_kvlist *root);

/* Agree on a status across comm (the job's one helper, mpi/comm.h's qr_mpi_agree: io/ cannot
 * include mpi/, so the caller passes it in). */
typedef qr_status (*qr_ckpt_agree_fn)(MPI_Comm comm, qr_status local);

typedef struct {
    qr_ckpt_agree_fn agree;     /* required */
    const qr_kvlist *root;      /* root attributes besides format, version and complete */
    const char *model_config;   /* root attribute "model_config": JSON text (may be NULL) */
    const char *options;        /* root attribute "options": JSON text (may be NULL) */
    const char *const *modules; /* (n_modules) module names, in model order */
    const char *const *parts;   /* (n_modules) part file paths */
    size_t n_modules;
    const qr_ckpt_tensor *tensors; /* (n_tensors) */
    size_t n_tensors;
    qr_ckpt_read_fn read_tensor;
    void *read_ctx;
    /* Optional: called on every rank after module i is written (a test's crash point). */
    void (*after_module)(void *hook_ctx, size_t i);
    void *hook_ctx;
} qr_ckpt_spec;

/* Figures of an assembly on this rank. */
typedef struct {
    double seconds; /* whole assembly, from create to rename */
    uint64_t bytes; /* array bytes written by all ranks */
} qr_ckpt_stats;

/* Collective over comm: build out_path from the parts and tensors of spec. Module i and tensor i
 * are read and written by rank i % size. Every part is checked against its module name. On
 * success every rank returns QR_OK and out_path exists with complete = 1; on failure every rank
 * returns the same status and message and out_path is not created (a `<out>.tmp` may remain).
 * stats (may be NULL) gets the figures. */
qr_status qr_ckpt_assemble(MPI_Comm comm, const char *out_path, const qr_ckpt_spec *spec,
                           qr_ckpt_stats *stats);

/* ---- reading (serial, not collective) -----------------------------------------------------------
 */
typedef struct qr_ckpt qr_ckpt;

/* Open and check format, version and complete = 1. */
qr_status qr_ckpt_open(const char *path, qr_ckpt **out);
void qr_ckpt_close(qr_ckpt **c); /* NULL-safe, clears the pointer */

/* The typed job header of the root attributes; QR_ERR_INPUT naming the file and the attribute
 * when one is missing or out of range. */
qr_status qr_ckpt_header_read(const qr_ckpt *c, qr_ckpt_header *h);

/* Root attributes (all but the JSON texts, in name order); owned by the handle. */
const qr_kvlist *qr_ckpt_attrs(const qr_ckpt *c);
/* The JSON texts of the root attributes "model_config" and "options" ("" when absent); owned by
 * the handle. */
const char *qr_ckpt_model_config(const qr_ckpt *c);
const char *qr_ckpt_options(const qr_ckpt *c);

/* Quantized modules in model order. */
size_t qr_ckpt_module_count(const qr_ckpt *c);
const char *qr_ckpt_module_name(const qr_ckpt *c, size_t i);

/* Load one module (ql allocated here, free with qr_qlayer_free); metrics (may be NULL) gets its
 * "metric.*" attributes without the prefix. QR_ERR_INPUT naming the file when absent. */
qr_status qr_ckpt_load_module(const qr_ckpt *c, const char *name, qr_qlayer *ql,
                              qr_kvlist *metrics);

/* A module's shape from its attributes only (nothing else read); QR_ERR_INPUT naming the file
 * when the module is absent. */
qr_status qr_ckpt_module_shape(const qr_ckpt *c, const char *name, int64_t *d_out, int64_t *d_in);

/* Non-quantized tensors, in name order. */
size_t qr_ckpt_tensor_count(const qr_ckpt *c);
const char *qr_ckpt_tensor_name(const qr_ckpt *c, size_t i);
qr_status qr_ckpt_tensor_shape(const qr_ckpt *c, const char *name, int *ndim, int64_t shape[8]);
qr_status qr_ckpt_read_tensor(const qr_ckpt *c, const char *name, float *dst, size_t n);

#endif

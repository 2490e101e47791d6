/* export.h: what the two export formats of `qrecon export` share (jobs/cmd_export.c,
 * jobs/export_gguf.c, jobs/export_ct.c): the source (a quantized checkpoint of a model, or the
 * float model alone), its tensors and modules, and the figures of the summary line. */
#ifndef QR_JOBS_EXPORT_H
#define QR_JOBS_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/checkpoint.h"
#include "io/model.h"
#include "src/modules.h"
#include "src/progress.h"
#include "src/qlayer.h"
#include "src/status.h"
#include "src/tokenizer.h"

typedef enum {
    QR_EXPORT_PACKED = 0,
    QR_EXPORT_DEQUANT_F32,
    QR_EXPORT_DEQUANT_F16
} qr_export_dequant;

typedef struct {
    const char *ckpt_path; /* NULL: export the float model */
    const char *model_path;
    const char *out_dir;
    const char *tokenizer_path; /* NULL: the model's */
    qr_export_dequant dequant;  /* gguf only */

    qr_model *model;
    qr_ckpt *ckpt;       /* NULL for a float export */
    qr_model_config cfg; /* the model's */
    qr_module *mods;     /* (n_mods) in model order */
    size_t n_mods;
    qr_tokenizer *tok;
    char method[256]; /* "float" for a float export */
    int64_t group, abits;

    qr_progress *prog;
    /* figures for the summary */
    size_t n_tensors;
    uint64_t bytes;
    size_t n_fallback;        /* quantized modules written as dense float (width not x32) */
    double scale_f16_max_abs; /* max |W(f32 scales) - W(f16 scales)| over packed modules */
    double scale_f16_max_rel; /* ... divided by the module's max |W| */
    double lora_max_rank;     /* largest correction rank */
    size_t n_lora;            /* modules with a correction */
    char fallback_names[512]; /* the first few fallback modules, for the summary */
} qr_export;

/* A non-quantized tensor (HF name) as float32, n elements: from the checkpoint's /tensors, or
 * from the model for a float export. */
qr_status qr_export_tensor(const qr_export *e, const char *name, float *dst, size_t n);

/* Module i of the checkpoint (ql freed by the caller with qr_qlayer_free). */
qr_status qr_export_module(const qr_export *e, size_t i, qr_qlayer *ql);

/* The reason module ql (of the checkpoint) has no form in `format`, or NULL when it exports:
 * smoothing, permutation or a side matrix (aser, serq), or weights other than INT4. */
const char *qr_export_unsupported(const qr_qlayer *ql);

/* Row r of the exported q or k matrix is row qr_export_qk_row(...) of the source: identity for a
 * llama2.c model; for a Hugging Face model (half-split RoPE) the permutation back to adjacent
 * pairs, GGUF row h*hd + 2i + j = HF row h*hd + j*hd/2 + i. kind QR_MOD_Q or QR_MOD_K. */
int64_t qr_export_qk_row(const qr_model_config *cfg, qr_module_kind kind, int64_t r);

qr_status qr_export_gguf(qr_export *e);
qr_status qr_export_ct(qr_export *e);

#endif

/* ckpt_llama.h: a quantized shared checkpoint (io/checkpoint.h) plugged into the float32 forward
 * pass (src/llama.h), for `qrecon eval --ckpt`: every linear module becomes a qr_linear whose
 * apply() runs the checkpoint's module through the INT4 kernels' whole-module entry point
 * (qr_kmodule_forward: per-token A8 or A4 activations, as the checkpoint's abits say), and the
 * embeddings, norms and lm_head come from the checkpoint's /tensors. Not collective: each rank
 * attaches its own copy. */
#ifndef QR_IO_CKPT_LLAMA_H
#define QR_IO_CKPT_LLAMA_H

#include "io/model.h"
#include "src/llama.h"
#include "src/status.h"

typedef enum {
    QR_CKPT_RUN_KERNELS = 0, /* INT4 kernels (the active qr_kernel_select choice) */
    QR_CKPT_RUN_REFERENCE    /* float64 reference of each module (src/qlayer_ref.h), for checks */
} qr_ckpt_run_mode;

typedef struct qr_ckpt_llama qr_ckpt_llama;

/* Open ckpt_path, check that it was quantized from model m (its source_model identity) and has
 * every linear module of m's config, and rewire w (loaded from m by qr_llama_load): the non-
 * quantized tensors are overwritten from the checkpoint and each module's qr_linear gets apply /
 * ctx owned by *out. A checkpoint with float activations (abits 0) runs the dequantized effective
 * weight as a dense float32 matrix in both modes. *out must outlive every use of w and is freed
 * with qr_ckpt_llama_free (which leaves w's qr_linear pointing at freed contexts: free w too, or
 * reload it). QR_ERR_INPUT naming the file on a mismatch. */
qr_status qr_ckpt_llama_attach(const char *ckpt_path, const qr_model *m, qr_ckpt_run_mode mode,
                               qr_llama_weights *w, qr_ckpt_llama **out);

/* Activation bits the modules run with: 8, 4, or 0 (float). */
int qr_ckpt_llama_abits(const qr_ckpt_llama *q);
/* The checkpoint's method name ("lqer", ...). */
const char *qr_ckpt_llama_method(const qr_ckpt_llama *q);

void qr_ckpt_llama_free(qr_ckpt_llama **q); /* NULL-safe, clears the pointer */

#endif

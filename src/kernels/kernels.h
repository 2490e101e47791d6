/* kernels.h: the INT4 kernels: W4A8 / W4A4 matrix products on the checkpoint's packed layout
 * (src/qlayer.h), the correction paths (float or INT8 L·R, SERQ's 4-bit side matrix), and a
 * whole-module entry point applying a qr_qlayer to float activations.
 *
 * Every product is Y (n, rows) = A (n, cols) · Wᵀ for W a qr_qweight (rows, cols) and A the
 * per-token quantized activations (qr_qact). Integer arithmetic is exact: per "segment" (the
 * intersection of one weight group with one activation group) an int32 accumulation
 *     acc = sum_j (code_j - off) * x_j,   off = 8 (symmetric) or the zero point (asymmetric)
 * and then, segment by segment in column order, in float32 with one fused multiply-add:
 *     y = fmaf(w_scale[g] * x_scale[h], (float)acc, y).
 * Every implementation (portable C "ref", "avx2", "avx512" VNNI) computes the same integers and
 * the same float operations in the same order, so their outputs are bit-identical.
 *
 * Activations are stored as int8 codes for both A8 (-127..127) and A4 (-7..7): x86 has no 4-bit
 * dot product, so packed A4 would only add unpacking work to the same int8 instructions.
 *
 * Weights are used through a prepared copy (qr_kweight) in the kernels' own tile layout, made once
 * per module (docs/kernels.md). No MPI, no files, not collective, single-threaded. The kernel
 * choice (qr_kernel_select) is process-wide: set it at start-up, not while kernels run. */
#ifndef QR_KERNELS_H
#define QR_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "src/qlayer.h"
#include "src/status.h"

/* ---- choosing an implementation ----------------------------------------------------------- */

typedef enum { QR_KERNEL_REF = 0, QR_KERNEL_AVX2, QR_KERNEL_AVX512, QR_KERNEL_COUNT } qr_kernel_id;

/* Force an implementation: "ref", "avx2", "avx512", or "auto" (the best this CPU runs).
 * QR_ERR_INPUT for an unknown name or a path this CPU lacks (the message names the missing
 * instruction sets). The choice stays until the next call. */
qr_status qr_kernel_select(const char *name);

/* The implementation the kernels run now (auto-selected on first use if none was chosen). */
qr_kernel_id qr_kernel_active(void);

const char *qr_kernel_name(qr_kernel_id k);

/* Whether this CPU (minus the features hidden by qr_kernel_test_hide_cpu) runs path k. */
bool qr_kernel_cpu_has(qr_kernel_id k);

/* Test hook: pretend the CPU lacks the paths whose bit (1u << qr_kernel_id) is set in mask
 * (0 = hide nothing). "ref" cannot be hidden. Lets a test check that qr_kernel_select rejects a
 * path on a machine that has every instruction set. */
void qr_kernel_test_hide_cpu(unsigned mask);

/* ---- quantized activations ---------------------------------------------------------------- */

/* Per-token symmetric quantized activations (the rule of qr_act_quantize in src/quant.h). */
typedef struct {
    int64_t n, d;     /* tokens, channels */
    int bits;         /* 8 (codes -127..127) or 4 (codes -7..7, one per int8) */
    int64_t group;    /* channels per activation group; 0 = whole token */
    int64_t n_groups; /* per token: ceil(d / group), 1 for whole token */
    int8_t *codes;    /* (n, d) */
    float *scales;    /* (n, n_groups), never zero */
} qr_qact;

/* Allocate an empty qr_qact for (n, d) tokens; free with qr_qact_free. */
qr_status qr_qact_alloc(qr_qact *a, int64_t n, int64_t d, int bits, int64_t group);

/* Quantize X (a->n, a->d) float32 row-major into an allocated a, with a's bits and grouping.
 * The codes and scales are identical to qr_act_quantize's (src/quant.h); with the AVX-512 kernels
 * selected a vectorized implementation computes them. QR_ERR_INPUT for non-finite X. */
qr_status qr_qact_fill(qr_qact *a, const float *X);

/* Allocate *a and quantize X (n, d) float32 row-major into it (qr_qact_fill). */
qr_status qr_qact_quantize(qr_qact *a, const float *X, int64_t n, int64_t d, int bits,
                           int64_t group);

/* Xdeq (n, d) = codes * scale: the float activations every correction path multiplies. */
void qr_qact_dequantize(const qr_qact *a, float *Xdeq);

void qr_qact_free(qr_qact *a);

/* ---- prepared INT4 weights and the W4A8 / W4A4 product -------------------------------------- */

/* A qr_qweight re-laid for the kernels (opaque; docs/kernels.md describes the layout). It is made
 * for one activation grouping, because integer sums run over segments = weight group ∩ activation
 * group. It keeps a pointer to the source qr_qweight (the reference path reads it): the source
 * must stay alive and unchanged while the prepared copy is used. */
typedef struct qr_kweight qr_kweight;

/* Prepare W for activations grouped by act_group channels (0 = whole token). QR_ERR_INPUT for an
 * inconsistent W (shape, group count) or a segment too long for int32 accumulation. */
qr_status qr_kweight_prepare(const qr_qweight *W, int64_t act_group, qr_kweight **out);

/* Prepare W together with a SERQ side matrix (W.rows, k <= W.cols) that acts on the first k
 * channels of the same quantized activations: the product then computes
 * A · deq(W)ᵀ + A[:, 0..k-1] · deq(side)ᵀ in one pass over Y (bit-identical to two passes).
 * side may be NULL (= qr_kweight_prepare). Both matrices must outlive the prepared copy. */
qr_status qr_kweight_prepare_pair(const qr_qweight *W, const qr_qweight *side, int64_t act_group,
                                  qr_kweight **out);

/* NULL-safe; clears the pointer. */
void qr_kweight_free(qr_kweight **kw);

/* Y (n, W.rows) row-major (=, or += when accumulate) A[:, 0..W.cols-1] · deq(W)ᵀ with the active
 * implementation. A may have more channels than W has columns (the SERQ side matrix uses the
 * first k channels of the same quantized token). QR_ERR_INPUT when A is narrower than W or
 * grouped differently from what W was prepared for; QR_ERR_NOMEM for scratch space. */
qr_status qr_kernel_w4(const qr_kweight *W, const qr_qact *A, float *Y, bool accumulate);

/* As qr_kernel_w4 with a given implementation (tests and benchmarks compare them side by side);
 * QR_ERR_INPUT when the CPU lacks it. */
qr_status qr_kernel_w4_with(qr_kernel_id k, const qr_kweight *W, const qr_qact *A, float *Y,
                            bool accumulate);

/* ---- low-rank corrections: Y += (Xdeq · Rᵀ) · Lᵀ ----------------------------------------------
 */

/* Float path with two sgemm calls. L (d_out, rank), R (rank, d_in), Xdeq (n, d_in), Y (n, d_out),
 * all row-major float32. QR_ERR_INPUT when a size does not fit a BLAS int. */
qr_status qr_lowrank_apply_f32(const float *L, const float *R, int64_t d_out, int64_t d_in,
                               int64_t rank, const float *Xdeq, int64_t n, float *Y);

/* INT8 option: the factors are STORED as int8, quantized per row of R and per row of L,
 * symmetric, scale = max|row| / 127 (never zero); the products run on the same quantized
 * activations as the main product (details in src/kernels/lowrank.c). */
typedef struct {
    int64_t d_out, d_in, rank;
    int8_t *LqT; /* (rank, d_out): L quantized per row of L, stored transposed */
    float *sL;   /* (d_out) */
    int8_t *Rq;  /* (rank, d_in) */
    float *sR;   /* (rank) */
    float *LfT;  /* (rank, d_out) deq(Lq)ᵀ, made once for the many-token path */
    float *Rf;   /* (rank, d_in) deq(Rq) */
} qr_lowrank_i8;

/* Quantize L (d_out, rank) and R (rank, d_in) into out (allocated here; qr_lowrank_i8_free). */
qr_status qr_lowrank_i8_quantize(const float *L, const float *R, int64_t d_out, int64_t d_in,
                                 int64_t rank, qr_lowrank_i8 *out);

/* Y (n, d_out) += (deq(A) · deq(Rq)ᵀ) · deq(Lq)ᵀ. Few tokens: the int8 factors are read once per
 * token (a quarter of the float bytes; the product is memory bound there). Many tokens: sgemm on
 * the float copies of deq(Lq), deq(Rq) made by qr_lowrank_i8_quantize (dequantizing per call
 * cost more than the products: fresh pages for the copies on every call). */
qr_status qr_lowrank_i8_apply(const qr_lowrank_i8 *q, const qr_qact *A, float *Y);

void qr_lowrank_i8_free(qr_lowrank_i8 *q);

/* ---- a whole quantized module -----------------------------------------------------------------
 */

typedef struct {
    int abits;         /* 8 (W4A8) or 4 (W4A4) */
    int64_t act_group; /* activation group in channels; 0 = whole token */
    bool lowrank_int8; /* run L·R through the INT8 option instead of float */
} qr_kmodule_opts;

/* abits 8, whole-token activations, float L·R. */
void qr_kmodule_opts_default(qr_kmodule_opts *o);

/* A qr_qlayer prepared for the kernels. Borrows the qr_qlayer (it must outlive the module). */
typedef struct qr_kmodule qr_kmodule;

qr_status qr_kmodule_prepare(const qr_qlayer *ql, const qr_kmodule_opts *o, qr_kmodule **out);

/* Y (n, d_out) = the module applied to X (n, d_in), both row-major float32:
 * t = x[perm] / smooth; u = Qa(t) per token; y = main·u + side·u[0..k-1] + L·(R·deq(u)). */
qr_status qr_kmodule_forward(const qr_kmodule *m, const float *X, int64_t n, float *Y);

void qr_kmodule_free(qr_kmodule **m);

#endif

/* quant.h: the INT4 weight quantizers (round-to-nearest with optional clip search, and GPTQ) and
 * the per-token activation quantizers (INT8 / INT4, whole token or groups of channels).
 *
 * Every reconstruction method (src/methods/) builds its main matrix with these, and the metrics use
 * the activation quantizers to measure W4A8 / W4A4 output error. No MPI, no files, not collective.
 *
 * Weights (d_out, d_in), row-major float64, are quantized per group of `group` consecutive input
 * channels of one output row; the last group of a row is shorter when `group` does not divide d_in.
 * Symmetric:
 *     scale = clip * max|w| / 7,  q = clamp(round(w / scale), -8, 7),  w^ = scale * q
 * Asymmetric (lo = min(min w, 0), hi = max(max w, 0), so 0 is always on the grid):
 *     scale = clip * (hi - lo) / 15,  zero = clamp(round(-clip * lo / scale), 0, 15),
 *     q = clamp(round(w / scale) + zero, 0, 15),  w^ = scale * (q - zero)
 * round() is half away from zero. The scale is rounded to float32 (what the checkpoint stores)
 * BEFORE the codes are chosen, so w^ is exactly what a reader of the checkpoint computes. A scale
 * that would be zero or below FLT_MIN (an all-zero or denormal group) is raised to FLT_MIN: never
 * zero, and the error stays below scale / 2. Non-finite weights are rejected with QR_ERR_INPUT. */
#ifndef QR_QUANT_H
#define QR_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "src/qlayer.h"
#include "src/status.h"

typedef struct {
    int64_t group;    /* 32, 64, 128, ... or 0 = whole row; last group of a row may be shorter */
    bool asym;        /* asymmetric with zero point in 0..15, else symmetric -8..7 */
    bool clip_search; /* search a per-group shrink factor of the range */
    int clip_steps;   /* grid size from 1.0 down to clip_min (default 20) */
    double clip_min;  /* default 0.5 */
    double gptq_damp; /* GPTQ: lambda relative to mean(diag H), > 0 (QR_GPTQ_DAMP_DEFAULT) */
} qr_wquant_opts;

/* GPTQ's default relative damping; chosen by measurement (docs/methods.md, "GPTQ damping"). */
#define QR_GPTQ_DAMP_DEFAULT 0.001

/* group 128, symmetric, no clip search (clip_steps 20, clip_min 0.5 for when it is turned on),
 * GPTQ damping QR_GPTQ_DAMP_DEFAULT. */
void qr_wquant_opts_default(qr_wquant_opts *o);

/* RTN quantization of W (d_out, d_in). col_weight (d_in) weights each column in the clip search
 * (pass diag(XᵀX)); NULL = unweighted. The clip grid is clip_k = 1 - k (1 - clip_min) /
 * (clip_steps - 1), k = 0..clip_steps-1; clip 1.0 is always tried first and kept on ties, so the
 * search never increases the weighted error of a group. out is allocated here (qr_qweight_alloc)
 * and owned by the caller (qr_qweight_free); on failure it is left empty. */
qr_status qr_quantize_rtn(const double *W, int64_t d_out, int64_t d_in, const qr_wquant_opts *o,
                          const double *col_weight, qr_qweight *out);

/* GPTQ (Frantar et al. 2022): columns in natural order, blocks of 128 columns with lazy batched
 * updates, error feedback through the upper Cholesky factor of (H + lambda I)^-1 with lambda =
 * o->gptq_damp times mean diag(H) (raised tenfold while H does not factor). Group parameters (and
 * the clip factor when o->clip_search, weighted by diag(H)) are refit from the already-updated
 * weights at each group start. Columns with H_jj == 0 (dead inputs) are quantized from zero. H =
 * XᵀX (d_in, d_in), symmetric; W (d_out, d_in). out as for RTN. QR_ERR_NUMERIC when the damped H
 * still does not factor. */
qr_status qr_quantize_gptq(const double *W, int64_t d_out, int64_t d_in, const double *H,
                           const qr_wquant_opts *o, qr_qweight *out);

/* GPTQ's factor of a Hessian H (n, n), made once and used for any number of weights with that
 * input (JOINT's fits): U, the row-major upper factor of (H + lambda I)^-1 = Uᵀ U (dead channels,
 * H_jj == 0, set to 1 first), the clip-search column weights and the dead channels. */
typedef struct {
    double *U;     /* (n, n) */
    double *hdiag; /* (n) diag(H), 1 for a dead channel */
    uint8_t *dead; /* (n) 1: H_jj == 0, the channel's weights are quantized from zero */
    int64_t n;
} qr_gptq_factor;

/* The factor of H (n, n) with relative damping damp (qr_wquant_opts.gptq_damp), as
 * qr_quantize_gptq makes it; free with qr_gptq_factor_free. QR_ERR_NUMERIC as qr_quantize_gptq. */
qr_status qr_gptq_factor_make(const double *H, int64_t n, double damp, qr_gptq_factor *f);
void qr_gptq_factor_free(qr_gptq_factor *f); /* NULL-safe fields, resets */

/* qr_quantize_gptq with the factor already made (f->n == d_in): the same codes. */
qr_status qr_quantize_gptq_factored(const double *W, int64_t d_out, int64_t d_in,
                                    const qr_gptq_factor *f, const qr_wquant_opts *o,
                                    qr_qweight *out);

/* GPTQ's block of columns with lazy updates (its damping: qr_wquant_opts.gptq_damp). */
#define QR_GPTQ_BLOCK 128

/* Rows [b1, b2) of U (the upper factor of H^-1 = Uᵀ U), columns [b1, d_in): *panel points at
 * U[b1][b1], row i at *panel + (i - b1) * *ld. Only entries on or right of the diagonal are read.
 * Called once per block of columns, b1 ascending, with `mine` the caller's status so far (an
 * error on the first call: its buffers could not be had); returns the status to go on with (a
 * distributed provider agrees on it, so no rank is left waiting in the next panel). */
typedef qr_status (*qr_gptq_panel_fn)(void *ctx, qr_status mine, int64_t b1, int64_t b2,
                                      const double **panel, int64_t *ld);

/* GPTQ's column sweep over the rows of a weight given as Wt (d_in, m) (column j of W is row j of
 * Wt; updated in place), U's rows fetched block by block from `panel` (so U may live distributed,
 * each caller sweeping its own rows), hdiag (d_in) the clip-search column weights; out (m, d_in)
 * allocated by the caller. The rows are independent given U: a sweep over a subset of the rows
 * gives those rows of the sweep over all of them. */
qr_status qr_gptq_sweep(double *Wt, int64_t d_in, int64_t m, const double *hdiag,
                        const qr_wquant_opts *o, qr_gptq_panel_fn panel, void *ctx,
                        qr_qweight *out);

/* The diagonal GPTQ factors for input channel j: h itself, or 1 for a dead channel (h == 0),
 * whose weights are then quantized from zero. QR_ERR_INPUT when h is negative or not finite. */
qr_status qr_gptq_dead_channel(double h, int64_t j, double *used);

/* Per-token symmetric activation quantization of X (n, d) float32: bits 8 or 4; group 0 = whole
 * token, else groups of `group` channels (last shorter). codes (n, d) int8 in
 * [-(2^(b-1)-1), 2^(b-1)-1]; scales (n, n_groups) = max|x| / (2^(b-1)-1) as float32, never zero
 * (raised to FLT_MIN). QR_ERR_INPUT for other bit widths, negative sizes or non-finite X. */
qr_status qr_act_quantize(const float *X, int64_t n, int64_t d, int bits, int64_t group,
                          int8_t *codes, float *scales);

/* In place fake quantization (quantize + dequantize) of X (n, d) float64, same rule (the scale is
 * rounded to float32 as in qr_act_quantize). bits 0 = no-op; any other width than 4 or 8 is a
 * programming error and leaves X unchanged. Non-finite entries are left as they are. */
void qr_act_fake_quant(double *X, int64_t n, int64_t d, int bits, int64_t group);

/* Number of groups per row for a row of d channels: ceil(d / group), 1 when group is 0 or >= d. */
int64_t qr_quant_n_groups(int64_t d, int64_t group);

/* ---- building blocks (for methods that quantize special matrices) ---------------------------- */

/* Scale and zero point of one group of n values under shrink factor clip (1.0 = full range). */
void qr_wquant_group_params(const double *w, int64_t n, bool asym, double clip, float *scale,
                            unsigned *zero);

/* The 4-bit nibble (0..15) of value w under (scale, zero); symmetric nibbles hold q + 8. */
unsigned qr_wquant_code(double w, float scale, unsigned zero, bool asym);

/* The value a nibble stands for. */
double qr_wquant_decode(unsigned code, float scale, unsigned zero, bool asym);

/* Dequantize into float64 (rows, cols), row-major (qr_qweight_dequantize gives float32). */
void qr_qweight_dequantize_f64(const qr_qweight *q, double *out);

#endif

/* validate.h: the per-module checks behind `qrecon validate`: one quantized module (src/qlayer.h)
 * run through the INT4 kernels (src/kernels/kernels.h) on held-out calibration tokens, against
 *   (a) a float64 reference computed from the SAME dequantized checkpoint data and the SAME
 *       quantized activations: every integer group accumulation of the kernel must equal the
 *       reference's exactly, and every float output must lie within a rounding bound;
 *   (b) the ORIGINAL float64 weight: the relative output error with float, A8 and A4 activations,
 *       which the caller compares with the error the checkpoint stores.
 * No MPI, no files, not collective; uses the process-wide kernel choice (qr_kernel_select). */
#ifndef QR_VALIDATE_H
#define QR_VALIDATE_H

#include <stdint.h>

#include "src/qlayer.h"
#include "src/status.h"

/* Margin over the worst-case float32 rounding bound of the kernel's float operations: the bound
 * counts one unit roundoff (2^-24) per float operation on the path of an output (one fused
 * multiply-add per segment, the scale product, the float L·R sgemm terms); 4x absorbs the few
 * extra roundings (input transform, dequantized activations) it leaves out. */
#define QR_VALIDATE_FLOAT_MARGIN 4.0

/* Results of one activation setting (A8 or A4). */
typedef struct {
    int abits;              /* 8 or 4 */
    int64_t n_int;          /* integer accumulations compared (tokens x rows x groups, main+side) */
    int64_t int_mismatches; /* how many of them differ between kernel and reference */
    int64_t int_max_diff;   /* largest |kernel - reference| (0 = exact) */
    int64_t bad_token, bad_row, bad_group; /* first mismatch (-1 when none) */
    int bad_side;                          /* the first mismatch is in the SERQ side matrix */
    int64_t bad_expected, bad_found;
    double float_rel_diff; /* max over outputs of |y_kernel - y_f64| / m, m = sum of |terms| */
    double float_tol;      /* the bound float_rel_diff must stay within */
    double out_err;        /* ||Y_kernel - X Wᵀ||_F / ||X Wᵀ||_F */
} qr_validate_act;

typedef struct {
    double out_err_float; /* ||Y_ref - X Wᵀ|| / ||X Wᵀ||, float activations (float64 reference) */
    qr_validate_act act[2]; /* [0] A8, [1] A4 */
    double seconds;
} qr_validate_result;

/* Check ql against its original weight W (d_out, d_in) float64 on tokens X (n, d_in) float32,
 * n >= 1, with the active kernel. QR_ERR_INPUT on a malformed layer; mismatches are results, not
 * errors. */
qr_status qr_validate_module(const qr_qlayer *ql, const double *W, const float *X, int64_t n,
                             qr_validate_result *r);

/* Whether the kernel check (a) passed for one activation setting. */
int qr_validate_act_ok(const qr_validate_act *a);

#endif

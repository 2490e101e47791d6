/* qlayer.h: what quantizing one linear module produces, the contract between the quantizers and
 * methods (src/quant, src/methods), the INT4 kernels (src/kernels), and the part files and shared
 * checkpoint (io/).
 *
 * A linear module computes y = W x with W of shape (d_out, d_in), the layout of a Hugging Face
 * `*.weight`. A quantized module computes, for one token x (d_in):
 *
 *   t[j]  = x[perm[j]] / smooth[j]                 j = 0..d_in-1   (perm, smooth optional)
 *   u     = Qa(t)  (per-token activation quantization, or u = t in float mode)
 *   y     = deq(main) u  +  deq(side) u[0 .. n_salient-1]  +  L (R u)
 *
 * so every correction acts on the same (transformed, quantized) input as the main product. Without
 * perm, perm[j] = j; without smooth, smooth[j] = 1. */
#ifndef QR_QLAYER_H
#define QR_QLAYER_H

#include <stdbool.h>
#include <stdint.h>

#include "src/status.h"

/* An INT4 weight matrix (rows, cols) quantized in groups of `group` consecutive columns of one row;
 * the last group of a row is shorter when `group` does not divide `cols`.
 *
 * Packing (version 1): row-major, each row starts on a byte boundary and takes row_bytes =
 * ceil(cols / 2) bytes; column j of row i is in byte i * row_bytes + j / 2, in the LOW nibble when
 * j is even and the HIGH nibble when j is odd (an odd last column leaves a zero high nibble).
 * Symmetric: the nibble holds q + 8 for q in -8..7, value = scale * q.
 * Asymmetric: the nibble holds q in 0..15, value = scale * (q - zero), zero in 0..15. */
typedef struct {
    int64_t rows, cols;
    int64_t group;    /* columns per group (== cols for per-row quantization) */
    int64_t n_groups; /* per row: ceil(cols / group) */
    bool asym;
    uint8_t *packed; /* (rows, row_bytes) */
    float *scales;   /* (rows, n_groups), never zero */
    uint8_t *zeros;  /* (rows, n_groups), asymmetric only, else NULL */
} qr_qweight;

static inline int64_t qr_qweight_row_bytes(const qr_qweight *q)
{
    return (q->cols + 1) / 2;
}

/* The methods (one file each under src/methods/). The numbers are stored in checkpoints: append
 * only. */
typedef enum {
    QR_METHOD_RTN = 0,
    QR_METHOD_LQER = 1,
    QR_METHOD_QERA_APPROX = 2,
    QR_METHOD_QERA_EXACT = 3,
    QR_METHOD_ASER = 4,
    QR_METHOD_SERQ = 5,
    QR_METHOD_FLRQ = 6,
    QR_METHOD_SRR = 7,
    QR_METHOD_JOINT = 8,
    QR_METHOD_COUNT
} qr_method_id;

/* One quantized linear module. Owns every array; free with qr_qlayer_free(). */
typedef struct {
    qr_method_id method;
    int64_t d_out, d_in;
    qr_qweight main; /* (d_out, d_in), acting on the transformed input t */

    float *smooth; /* (d_in) or NULL: t[j] = x[perm[j]] / smooth[j] */
    int32_t *perm; /* (d_in) or NULL: a permutation of 0..d_in-1 */

    int64_t
        rank; /* low-rank correction L (d_out, rank) times R (rank, d_in), row-major; 0 = none */
    float *L;
    float *R;

    int64_t
        n_salient; /* SERQ side matrix: (d_out, n_salient) INT4, acting on t[0 .. n_salient-1] */
    qr_qweight side;

    double bits_per_weight; /* stored bits (weights, scales, zeros, corrections) / (d_out * d_in) */
} qr_qlayer;

/* Allocate the arrays of an empty quantized matrix (packed, scales, and zeros when asym). */
qr_status qr_qweight_alloc(qr_qweight *q, int64_t rows, int64_t cols, int64_t group, bool asym);
void qr_qweight_free(qr_qweight *q);

/* Store / read the 4-bit code of element (i, j) (the raw nibble 0..15). */
static inline void qr_qweight_set_code(qr_qweight *q, int64_t i, int64_t j, unsigned code)
{
    uint8_t *b = q->packed + i * qr_qweight_row_bytes(q) + j / 2;
    if (j & 1) {
        *b = (uint8_t)((*b & 0x0fu) | ((code & 0xfu) << 4));
    } else {
        *b = (uint8_t)((*b & 0xf0u) | (code & 0xfu));
    }
}

static inline unsigned qr_qweight_get_code(const qr_qweight *q, int64_t i, int64_t j)
{
    uint8_t b = q->packed[i * qr_qweight_row_bytes(q) + j / 2];
    return (j & 1) ? (unsigned)(b >> 4) : (unsigned)(b & 0x0fu);
}

/* Dequantized value of element (i, j). */
double qr_qweight_value(const qr_qweight *q, int64_t i, int64_t j);

/* Dequantize the whole matrix into out (rows, cols), row-major. */
void qr_qweight_dequantize(const qr_qweight *q, float *out);

void qr_qlayer_free(qr_qlayer *ql);

/* The structural checks every consumer of a quantized layer needs (the one layer check): shape
 * within a BLAS int, main matrix d_out x d_in, side matrix d_out x n_salient, L and R present for
 * rank > 0, permutation entries in range. QR_ERR_INPUT prefixed with `who`. */
qr_status qr_qlayer_check(const qr_qlayer *ql, const char *who);

/* The effective dense weight of the module in the ORIGINAL input space (d_out, d_in), float64:
 * W_eff[:, perm[j]] = (deq(main)[:, j] + side/L·R terms[:, j]) / smooth[j]. Used by references and
 * metrics (it is what the module computes with float activations). */
qr_status qr_qlayer_effective_weight(const qr_qlayer *ql, double *w_eff);

/* The same in the TRANSFORMED space (d_out, d_in): deq(main) + [deq(side) 0] + L·R, the matrix
 * that multiplies the (quantized) transformed input t. */
qr_status qr_qlayer_weight_t(const qr_qlayer *ql, double *w_t);

const char *qr_method_name(qr_method_id m);
/* Parse a method name ("rtn", "lqer", "qera-approx", "qera-exact", "aser", "serq", "flrq", "srr",
 * "joint");
 * returns QR_METHOD_COUNT when unknown. */
qr_method_id qr_method_parse(const char *name);

#endif

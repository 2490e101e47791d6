/* internal.h: what the kernel implementations share inside src/kernels: the prepared weight layout
 * and the signature of one implementation of the W4 product. Not part of the public API.
 *
 * Prepared layout. Columns are cut into segments (weight group ∩ activation group); each segment
 * is padded with zero codes to a multiple of QR_KCHUNK = 8 columns, so every SIMD step is whole.
 * Rows are padded to a multiple of QR_KROWS = 16 with zero codes and zero scales. For row block b
 * (16 rows) and chunk c (8 padded columns p = 8c .. 8c+7) the 64 bytes
 *     tiles[(b * n_chunks + c) * 64 + 4 r + i],  r = 0..15, i = 0..3
 * hold in the LOW nibble the code of (row 16b + r, padded column 8c + i) and in the HIGH nibble
 * the code of (row 16b + r, padded column 8c + 4 + i). One 512-bit load is one chunk: masking the
 * low nibbles gives 16 rows x 4 columns of unsigned bytes for one VNNI dot product, shifting gives
 * the next 4 columns. The codes are the raw nibbles (0..15), so the integer sum of a segment is
 * sum_j code_j x_j - off * sum_j x_j, with off = 8 (symmetric) or the zero point.
 *
 * A SERQ side matrix prepared with the main one (qr_kweight_prepare_pair) is more segments after
 * the main matrix's, over activation columns 0..k-1, in the same tiles: one pass over Y computes
 * main · u + side · u[0..k-1], with the same float operations as two passes. */
#ifndef QR_KERNELS_INTERNAL_H
#define QR_KERNELS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "src/kernels/kernels.h"

#define QR_KROWS 16 /* rows per block: one 512-bit vector of int32 lanes */
#define QR_KCHUNK 8 /* padded columns per 64-byte chunk */

struct qr_kweight {
    const qr_qweight *src; /* borrowed: the reference path reads the original packing */
    const qr_qweight
        *side; /* borrowed, or NULL: SERQ side matrix on the first side->cols channels */
    int64_t rows, cols, rows_p;
    int64_t act_group; /* activation grouping this layout was made for (0 = whole token) */
    bool asym; /* either matrix asymmetric: zeros_b holds every offset (8 for a symmetric one) */
    int64_t n_wgroups;   /* weight groups per row */
    int64_t n_seg;       /* segments per row */
    int64_t *seg_start;  /* (n_seg) first activation column of each segment */
    int64_t *seg_end;    /* (n_seg) one past its last column */
    int64_t *seg_pchunk; /* (n_seg + 1) first padded chunk of each segment, then n_chunks */
    uint8_t *seg_src;    /* (n_seg) 0: main matrix, 1: side matrix */
    int32_t *seg_wgroup; /* (n_seg) weight group within its matrix */
    int32_t *seg_sgroup; /* (n_seg) group index in scales_b / zeros_b */
    int32_t *seg_agroup; /* (n_seg) activation group of each segment */
    int64_t n_chunks;    /* padded columns / QR_KCHUNK */
    uint8_t *tiles;      /* (rows_p / 16, n_chunks, 64) as above */
    float *scales_b;     /* (rows_p / 16, n_wgroups, 16) weight scales by row block; padding 0 */
    uint8_t *zeros_b;    /* (rows_p / 16, n_wgroups, 16) zero points (asymmetric, else NULL) */
};

/* Activations laid out for one prepared weight: codes in padded columns, and per segment the sum
 * of the codes and the activation scale. */
typedef struct {
    int64_t n;
    int64_t kp;          /* padded columns = n_chunks * 8 */
    const int8_t *codes; /* (n, kp) zero in padding */
    const int32_t *xsum; /* (n, n_seg) sum of the segment's codes */
    const float *xs;     /* (n, n_seg) activation scale of the segment */
} qr_kact;

/* One implementation of Y (n, rows) (=, or += when accumulate) of the W4 product. The reference
 * reads W->src and A (the original codes); the SIMD paths read W's tiles and P. */
typedef void (*qr_w4_fn)(const qr_kweight *W, const qr_qact *A, const qr_kact *P, float *Y,
                         bool accumulate);

void qr_w4_ref(const qr_kweight *W, const qr_qact *A, const qr_kact *P, float *Y, bool accumulate);
void qr_w4_avx2(const qr_kweight *W, const qr_qact *A, const qr_kact *P, float *Y, bool accumulate);
void qr_w4_avx512(const qr_kweight *W, const qr_qact *A, const qr_kact *P, float *Y,
                  bool accumulate);

/* Lay out A for W: *P points into one block *storage (free with free()). */
qr_status qr_kact_make(const qr_kweight *W, const qr_qact *A, qr_kact *P, void **storage);

/* Index in scales_b / zeros_b of row block b, weight group g: a row block's scales are one
 * sequential stream, read in step with its tiles. */
static inline int64_t qr_kw_scale_index(const qr_kweight *W, int64_t b, int64_t g)
{
    return (b * W->n_wgroups + g) * QR_KROWS;
}

/* Activation group of column j for grouping `group` (0 = whole token). */
static inline int64_t qr_kact_group_of(int64_t j, int64_t group)
{
    return group > 0 ? j / group : 0;
}

#endif

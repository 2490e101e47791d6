/* kernel_ref.c: the portable C reference of the W4 product. It reads the checkpoint's own packing
 * (the qr_qweight behind the prepared copy) and the original activation codes, so the SIMD paths,
 * which read the prepared tiles, are checked against an independent reading of the same data.
 * It defines the arithmetic every path reproduces bit for bit (src/kernels/kernels.h). */
#include <math.h>

#include "src/kernels/internal.h"

void qr_w4_ref(const qr_kweight *W, const qr_qact *A, const qr_kact *P, float *Y, bool accumulate)
{
    const int64_t rows = W->rows;
    (void)P;
    for (int64_t t = 0; t < A->n; t++) {
        const int8_t *x = A->codes + t * A->d;          /* (d) */
        const float *xsc = A->scales + t * A->n_groups; /* (n_groups) */
        for (int64_t i = 0; i < rows; i++) {
            float y = accumulate ? Y[t * rows + i] : 0.0f;
            for (int64_t s = 0; s < W->n_seg; s++) {
                const qr_qweight *Q = W->seg_src[s] ? W->side : W->src;
                int64_t g = W->seg_wgroup[s];
                int32_t off = Q->asym ? (int32_t)Q->zeros[i * Q->n_groups + g] : 8;
                int32_t acc = 0;
                for (int64_t j = W->seg_start[s]; j < W->seg_end[s]; j++) {
                    acc += ((int32_t)qr_qweight_get_code(Q, i, j) - off) * (int32_t)x[j];
                }
                float sc = Q->scales[i * Q->n_groups + g] * xsc[W->seg_agroup[s]];
                y = fmaf(sc, (float)acc, y);
            }
            Y[t * rows + i] = y;
        }
    }
}

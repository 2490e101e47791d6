/* kernel_avx512.c: the AVX-512 VNNI path of the W4 product (built with a function target
 * attribute, so no special compile flags; dispatch.c runs it only where the CPU has it).
 *
 * VPDPBUSD multiplies UNSIGNED bytes by SIGNED bytes. The weights go in the unsigned operand as
 * their raw nibbles (0..15: q + 8, or q + zero for asymmetric groups); the activation codes
 * (-127..127) go in the signed operand, broadcast 4 at a time from memory. The offset is removed
 * once per segment: acc = sum(code * x) - off * sum(x), with sum(x) computed once per token.
 *
 * One block is 16 rows (one vector of int32 lanes, one row per lane) by up to 8 tokens: per
 * 64-byte chunk of tiles, one load, one shift and two masks unpack 16 rows x 8 columns, which
 * then feed 2 dot products per token. Tokens are processed in panels whose codes fit in L2, so at
 * many tokens a row block's tiles are reused from cache by every token block of the panel, and at
 * one token each weight byte is read once. */
#include <immintrin.h>
#include <string.h>

#include "src/kernels/internal.h"

#define QR_AVX512_TARGET __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))
#define QR_AVX512_TB 8              /* tokens per block: one int32 accumulator each */
#define QR_PANEL_BYTES (512 * 1024) /* activation codes per token panel: about half an L2 */

/* acc += dot products of the 16 x 4 unsigned bytes of w with the 4 signed bytes at p, broadcast.
 * Written as inline assembly because GCC 12 copies the accumulator around VPDPBUSD (two extra
 * register moves per product) and does not fold the broadcast into the instruction; the memory
 * form {1to16} makes the load and the dot product one instruction. */
QR_AVX512_TARGET static inline __attribute__((always_inline)) __m512i
dpbusd_bcast(__m512i acc, __m512i w, const int8_t *p)
{
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const int32_t *)p));
    return acc;
}

/* Rows 16b .. 16b+15 (masked at the end) for tokens t0 .. t0+T-1. Registers hold two int32
 * accumulators per token (low and high nibbles: 16 independent chains at T = 8, enough to hide
 * the dot product's latency) and one float sum per token for the whole row: updating Y in memory
 * once per segment instead cost 40% (a masked load right after a masked store to the same
 * address cannot be store-forwarded). */
QR_AVX512_TARGET static inline __attribute__((always_inline)) void
block(const qr_kweight *W, const qr_kact *P, int64_t b, int64_t t0, const int T, float *Y,
      bool accumulate)
{
    const uint8_t *wt = W->tiles + b * W->n_chunks * 64; /* (n_chunks, 64) */
    const int8_t *a = P->codes + t0 * P->kp;             /* (T, kp) */
    const int64_t r0 = b * QR_KROWS, nr = W->rows - r0 < QR_KROWS ? W->rows - r0 : QR_KROWS;
    const __mmask16 km = (__mmask16)((1u << nr) - 1u);
    const __m512i m0f = _mm512_set1_epi8(0x0f);
    __m512 f[QR_AVX512_TB];
    for (int t = 0; t < T; t++) {
        f[t] = accumulate ? _mm512_maskz_loadu_ps(km, Y + (t0 + t) * W->rows + r0)
                          : _mm512_setzero_ps();
    }
    for (int64_t s = 0; s < W->n_seg; s++) {
        int64_t g = W->seg_sgroup[s];
        __m512i off = _mm512_set1_epi32(8);
        if (W->asym) {
            off = _mm512_cvtepu8_epi32(_mm_loadu_si128(
                (const __m128i *)(const void *)(W->zeros_b + qr_kw_scale_index(W, b, g))));
        }
        /* the low-nibble accumulator starts at -off * sum(x), so it ends at the segment's sum */
        __m512i alo[QR_AVX512_TB], ahi[QR_AVX512_TB];
        for (int t = 0; t < T; t++) {
            alo[t] = _mm512_mullo_epi32(off, _mm512_set1_epi32(-P->xsum[(t0 + t) * W->n_seg + s]));
            ahi[t] = _mm512_setzero_si512();
        }
        for (int64_t c = W->seg_pchunk[s]; c < W->seg_pchunk[s + 1]; c++) {
            __m512i v = _mm512_load_si512((const void *)(wt + c * 64));
            __m512i lo = _mm512_and_si512(v, m0f);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m0f);
            const int8_t *ap = a + c * QR_KCHUNK;
            for (int t = 0; t < T; t++) {
                alo[t] = dpbusd_bcast(alo[t], lo, ap + t * P->kp);
                ahi[t] = dpbusd_bcast(ahi[t], hi, ap + t * P->kp + 4);
            }
        }
        __m512 ws = _mm512_loadu_ps(W->scales_b + qr_kw_scale_index(W, b, g));
        for (int t = 0; t < T; t++) {
            __m512 sc = _mm512_mul_ps(ws, _mm512_set1_ps(P->xs[(t0 + t) * W->n_seg + s]));
            __m512i acc = _mm512_add_epi32(alo[t], ahi[t]);
            f[t] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(acc), f[t]);
        }
    }
    for (int t = 0; t < T; t++) {
        _mm512_mask_storeu_ps(Y + (t0 + t) * W->rows + r0, km, f[t]);
    }
}

#define QR_BLOCK_T(T)                                                                              \
    QR_AVX512_TARGET static void block_##T(const qr_kweight *W, const qr_kact *P, int64_t b,       \
                                           int64_t t0, float *Y, bool accumulate)                  \
    {                                                                                              \
        block(W, P, b, t0, T, Y, accumulate);                                                      \
    }
QR_BLOCK_T(1)
QR_BLOCK_T(2)
QR_BLOCK_T(3)
QR_BLOCK_T(4)
QR_BLOCK_T(5)
QR_BLOCK_T(6)
QR_BLOCK_T(7)
QR_BLOCK_T(8)

typedef void (*block_fn)(const qr_kweight *, const qr_kact *, int64_t, int64_t, float *, bool);
static const block_fn blocks[QR_AVX512_TB + 1] = {
    NULL, block_1, block_2, block_3, block_4, block_5, block_6, block_7, block_8,
};

void qr_w4_avx512(const qr_kweight *W, const qr_qact *A, const qr_kact *P, float *Y,
                  bool accumulate)
{
    int64_t n_rb = W->rows_p / QR_KROWS;
    int64_t panel = QR_PANEL_BYTES / (P->kp > 0 ? P->kp : 1);
    (void)A;
    panel = panel < QR_AVX512_TB ? QR_AVX512_TB : panel / QR_AVX512_TB * QR_AVX512_TB;
    for (int64_t p0 = 0; p0 < P->n; p0 += panel) {
        int64_t p1 = p0 + panel < P->n ? p0 + panel : P->n;
        for (int64_t b = 0; b < n_rb; b++) {
            for (int64_t t0 = p0; t0 < p1; t0 += QR_AVX512_TB) {
                int64_t T = p1 - t0 < QR_AVX512_TB ? p1 - t0 : QR_AVX512_TB;
                blocks[T](W, P, b, t0, Y, accumulate);
            }
        }
    }
}

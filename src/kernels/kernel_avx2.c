/* kernel_avx2.c: the AVX2 path of the W4 product (function target attribute; dispatch.c runs it
 * only where the CPU has AVX2 and FMA).
 *
 * AVX2 has no byte dot product into int32, so each step is VPMADDUBSW (UNSIGNED bytes times
 * SIGNED bytes, adjacent pairs summed into int16) then VPMADDWD with ones (pairs of int16 into
 * int32). The weights are the unsigned operand as raw nibbles 0..15, the activation codes the
 * signed one, so a pair is at most 2 * 15 * 127 = 3810 and the sum of the low- and high-nibble
 * pairs (7620) cannot saturate int16. The offset is removed once per segment as in the AVX-512
 * path: acc = sum(code * x) - off * sum(x).
 *
 * The 16-row tiles are processed as two halves of 8 rows (one 256-bit vector of int32 lanes each),
 * 4 tokens at a time, with the same token panels as the AVX-512 path. */
#include <immintrin.h>
#include <string.h>

#include "src/kernels/internal.h"

#define QR_AVX2_TARGET __attribute__((target("avx2,fma")))
#define QR_AVX2_TB 4                /* tokens per block: one int32 accumulator each */
#define QR_PANEL_BYTES (512 * 1024) /* activation codes per token panel: about half an L2 */

static inline int32_t load_i32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Rows 16b + 8h .. 16b + 8h + 7 (h = half) for tokens t0 .. t0+T-1. As in the AVX-512 path the
 * float results stay in registers for the whole row (a store and reload of Y per segment would
 * stall on store forwarding), and each accumulator starts at -off * sum(x). */
QR_AVX2_TARGET static inline __attribute__((always_inline)) void
half_block(const qr_kweight *W, const qr_kact *P, int64_t b, int h, int64_t t0, const int T,
           float *Y, bool accumulate)
{
    const uint8_t *wt = W->tiles + b * W->n_chunks * 64 + 32 * h; /* (n_chunks, 64) */
    const int8_t *a = P->codes + t0 * P->kp;                      /* (T, kp) */
    const int64_t r0 = b * QR_KROWS + 8 * h, nr = W->rows - r0 < 8 ? W->rows - r0 : 8;
    const __m256i m0f = _mm256_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    float tmp[8];
    __m256 f[QR_AVX2_TB];
    for (int t = 0; t < T; t++) {
        f[t] = _mm256_setzero_ps();
        if (accumulate) {
            memset(tmp, 0, sizeof tmp);
            memcpy(tmp, Y + (t0 + t) * W->rows + r0, (size_t)nr * sizeof(float));
            f[t] = _mm256_loadu_ps(tmp);
        }
    }
    for (int64_t s = 0; s < W->n_seg; s++) {
        int64_t g = W->seg_sgroup[s];
        __m256i off = _mm256_set1_epi32(8);
        if (W->asym) {
            off = _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                (const __m128i *)(const void *)(W->zeros_b + qr_kw_scale_index(W, b, g) + 8 * h)));
        }
        __m256i acc[QR_AVX2_TB];
        for (int t = 0; t < T; t++) {
            acc[t] = _mm256_mullo_epi32(off, _mm256_set1_epi32(-P->xsum[(t0 + t) * W->n_seg + s]));
        }
        for (int64_t c = W->seg_pchunk[s]; c < W->seg_pchunk[s + 1]; c++) {
            __m256i v = _mm256_load_si256((const __m256i *)(const void *)(wt + c * 64));
            __m256i lo = _mm256_and_si256(v, m0f);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f);
            const int8_t *ap = a + c * QR_KCHUNK;
            for (int t = 0; t < T; t++) {
                __m256i xa = _mm256_set1_epi32(load_i32(ap + t * P->kp));
                __m256i xb = _mm256_set1_epi32(load_i32(ap + t * P->kp + 4));
                __m256i p16 =
                    _mm256_add_epi16(_mm256_maddubs_epi16(lo, xa), _mm256_maddubs_epi16(hi, xb));
                acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(p16, ones));
            }
        }
        __m256 ws = _mm256_loadu_ps(W->scales_b + qr_kw_scale_index(W, b, g) + 8 * h);
        for (int t = 0; t < T; t++) {
            __m256 sc = _mm256_mul_ps(ws, _mm256_set1_ps(P->xs[(t0 + t) * W->n_seg + s]));
            f[t] = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(acc[t]), f[t]);
        }
    }
    for (int t = 0; t < T; t++) {
        if (nr == 8) {
            _mm256_storeu_ps(Y + (t0 + t) * W->rows + r0, f[t]);
        } else {
            _mm256_storeu_ps(tmp, f[t]);
            memcpy(Y + (t0 + t) * W->rows + r0, tmp, (size_t)nr * sizeof(float));
        }
    }
}

#define QR_BLOCK_T(T)                                                                              \
    QR_AVX2_TARGET static void block_##T(const qr_kweight *W, const qr_kact *P, int64_t b, int h,  \
                                         int64_t t0, float *Y, bool accumulate)                    \
    {                                                                                              \
        half_block(W, P, b, h, t0, T, Y, accumulate);                                              \
    }
QR_BLOCK_T(1)
QR_BLOCK_T(2)
QR_BLOCK_T(3)
QR_BLOCK_T(4)

typedef void (*block_fn)(const qr_kweight *, const qr_kact *, int64_t, int, int64_t, float *, bool);
static const block_fn blocks[QR_AVX2_TB + 1] = {NULL, block_1, block_2, block_3, block_4};

void qr_w4_avx2(const qr_kweight *W, const qr_qact *A, const qr_kact *P, float *Y, bool accumulate)
{
    int64_t n_rb = W->rows_p / QR_KROWS;
    int64_t panel = QR_PANEL_BYTES / (P->kp > 0 ? P->kp : 1);
    (void)A;
    panel = panel < QR_AVX2_TB ? QR_AVX2_TB : panel / QR_AVX2_TB * QR_AVX2_TB;
    for (int64_t p0 = 0; p0 < P->n; p0 += panel) {
        int64_t p1 = p0 + panel < P->n ? p0 + panel : P->n;
        for (int64_t b = 0; b < n_rb; b++) {
            for (int h = 0; h < 2 && b * QR_KROWS + 8 * h < W->rows; h++) {
                for (int64_t t0 = p0; t0 < p1; t0 += QR_AVX2_TB) {
                    int64_t T = p1 - t0 < QR_AVX2_TB ? p1 - t0 : QR_AVX2_TB;
                    blocks[T](W, P, b, h, t0, Y, accumulate);
                }
            }
        }
    }
}

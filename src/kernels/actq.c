/* actq.c: per-token activation quantization for the kernels, vectorized with AVX-512 where the CPU
 * has it, with results identical to qr_act_quantize (src/quant.h), which defines the rule and
 * runs everywhere else. The scalar rule took 10 ms for 512 tokens of 4096 channels, a fifth of
 * the 4096 x 4096 W4A8 product.
 *
 * Identical means: amax = max|x| (exact in any precision), s = (float)(amax / qmax) computed in
 * double, raised to FLT_MIN; code = clamp(round(x / s), qmax) with x / s a double division and
 * round() half away from zero, done here as t = trunc(q), t += sign(q) where |q - t| >= 0.5 (the
 * difference is exact). Non-finite input is left to qr_act_quantize, which reports it. */
#include <float.h>
#include <immintrin.h>
#include <string.h>

#include "src/kernels/internal.h"
#include "src/quant.h"

#define QR_ACTQ_TARGET __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))

/* Quantize one group of len values; false (nothing written) when a value is not finite. */
QR_ACTQ_TARGET static bool quant_group(const float *x, int64_t len, int qmax, int8_t *codes,
                                       float *scale)
{
    __m512 vmax = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (int64_t j = 0; j < len; j += 16) {
        __mmask16 m = len - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (len - j)) - 1u);
        __m512 v = _mm512_maskz_loadu_ps(m, x + j);
        /* v - v is NaN exactly when v is NaN or infinite */
        bad |= _mm512_cmp_ps_mask(_mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_NEQ_UQ);
        vmax = _mm512_max_ps(vmax, _mm512_abs_ps(v));
    }
    if (bad) {
        return false;
    }
    double amax = (double)_mm512_reduce_max_ps(vmax);
    float s = (float)(amax / (double)qmax);
    s = s >= FLT_MIN ? s : FLT_MIN;
    *scale = s;
    const __m512d sd = _mm512_set1_pd((double)s);
    const __m512d half = _mm512_set1_pd(0.5), one = _mm512_set1_pd(1.0);
    const __m512d hi = _mm512_set1_pd((double)qmax), lo = _mm512_set1_pd(-(double)qmax);
    const __m512d sign_bit = _mm512_set1_pd(-0.0);
    for (int64_t j = 0; j < len; j += 8) {
        __mmask8 m = len - j >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (len - j)) - 1u);
        __m512d q = _mm512_div_pd(_mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, x + j)), sd);
        __m512d t = _mm512_roundscale_pd(q, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        __mmask8 up = _mm512_cmp_pd_mask(_mm512_abs_pd(_mm512_sub_pd(q, t)), half, _CMP_GE_OQ);
        __m512d step = _mm512_or_pd(one, _mm512_and_pd(q, sign_bit)); /* +-1 with q's sign */
        t = _mm512_mask_add_pd(t, up, t, step);
        t = _mm512_min_pd(_mm512_max_pd(t, lo), hi);
        _mm_mask_storeu_epi8(codes + j, m, _mm256_cvtepi32_epi8(_mm512_cvtpd_epi32(t)));
    }
    return true;
}

/* Whole tokens or groups with the vector path; false when any value is not finite. */
QR_ACTQ_TARGET static bool quantize_avx512(qr_qact *a, const float *X)
{
    int qmax = (1 << (a->bits - 1)) - 1;
    int64_t gs = a->group > 0 ? a->group : a->d;
    for (int64_t t = 0; t < a->n; t++) {
        for (int64_t g = 0; g < a->n_groups; g++) {
            int64_t j0 = g * gs, len = j0 + gs < a->d ? gs : a->d - j0;
            if (!quant_group(X + t * a->d + j0, len, qmax, a->codes + t * a->d + j0,
                             a->scales + t * a->n_groups + g)) {
                return false;
            }
        }
    }
    return true;
}

qr_status qr_qact_fill(qr_qact *a, const float *X)
{
    if (qr_kernel_active() == QR_KERNEL_AVX512 && quantize_avx512(a, X)) {
        return QR_OK;
    }
    return qr_act_quantize(X, a->n, a->d, a->bits, a->group, a->codes, a->scales);
}

/* dtype.c: dtype names, sizes and exact conversions to float. */
#include "src/dtype.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[QR_DTYPE_COUNT] = {
    [QR_DTYPE_INVALID] = {"INVALID", 0}, [QR_DTYPE_F32] = {"F32", 4}, [QR_DTYPE_F16] = {"F16", 2},
    [QR_DTYPE_BF16] = {"BF16", 2},       [QR_DTYPE_F64] = {"F64", 8},
};

size_t qr_dtype_size(qr_dtype dt)
{
    return (dt > 0 && dt < QR_DTYPE_COUNT) ? dtype_info[dt].size : 0;
}

const char *qr_dtype_name(qr_dtype dt)
{
    return (dt > 0 && dt < QR_DTYPE_COUNT) ? dtype_info[dt].name : "INVALID";
}

qr_dtype qr_dtype_parse(const char *name)
{
    for (int dt = 1; dt < QR_DTYPE_COUNT; dt++) {
        if (strcmp(name, dtype_info[dt].name) == 0) {
            return (qr_dtype)dt;
        }
    }
    return QR_DTYPE_INVALID;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

float qr_bf16_to_f32(uint16_t b)
{
    return f32_from_bits((uint32_t)b << 16);
}

/* Branch-free, so the array loops vectorize: all three cases are computed and one is selected by
 * masks (a ternary here compiles to a branch and stops the vectorizer). */
float qr_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t em = h & 0x7fffu;                  /* exponent and mantissa */
    uint32_t normal = (em << 13) + 0x38000000u; /* rebias 15 -> 127 */
    uint32_t infnan = normal + 0x38000000u; /* exponent 31 -> 255, payload kept: NaN stays NaN */
    float sub = (float)em * 0x1p-24f;       /* zero or subnormal: em x 2^-24, exact in float */
    uint32_t subbits, is_infnan = 0u - (uint32_t)(em >= 0x7c00u),
                      is_sub = 0u - (uint32_t)(em < 0x0400u);
    memcpy(&subbits, &sub, sizeof subbits);
    return f32_from_bits(sign | (infnan & is_infnan) | (subbits & is_sub) |
                         (normal & ~(is_infnan | is_sub)));
}

uint16_t qr_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) { /* NaN: force a quiet NaN with the same sign */
        return (uint16_t)((u >> 16) | 0x0040u);
    }
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

uint16_t qr_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) {
        return sign | 0x7e00u;
    }
    if (absu >= 0x477ff000u) { /* rounds to >= 65520: infinity */
        return sign | 0x7c00u;
    }
    if (absu < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        float a = f32_from_bits(absu);
        float scaled = a * 16777216.0f; /* 2^24: units of the smallest subnormal */
        return sign | (uint16_t)lrintf(scaled);
    }
    /* normal: rebias the exponent and round the 13 dropped mantissa bits to nearest even */
    uint32_t r = absu + 0xfffu + ((absu >> 13) & 1u);
    return sign | (uint16_t)((r - 0x38000000u) >> 13);
}

/* The loops below are one per dtype (no switch per element) so the compiler can keep them tight
 * and vectorize the BF16 one; they are the inner loop of every tensor read. */
void qr_convert_to_f32(qr_dtype dt, const void *src, size_t n, float *dst)
{
    const unsigned char *p = src;
    switch (dt) {
    case QR_DTYPE_F32:
        memcpy(dst, p, n * sizeof *dst);
        break;
    case QR_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t b;
            uint32_t u;
            memcpy(&b, p + 2 * i, 2);
            u = (uint32_t)b << 16;
            memcpy(&dst[i], &u, 4);
        }
        break;
    case QR_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = qr_f16_to_f32(h);
        }
        break;
    case QR_DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, p + 8 * i, 8);
            dst[i] = (float)v;
        }
        break;
    default:
        for (size_t i = 0; i < n; i++) {
            dst[i] = NAN;
        }
    }
}

void qr_convert_to_f64(qr_dtype dt, const void *src, size_t n, double *dst)
{
    const unsigned char *p = src;
    switch (dt) {
    case QR_DTYPE_F64:
        memcpy(dst, p, n * sizeof *dst);
        break;
    case QR_DTYPE_F32:
        for (size_t i = 0; i < n; i++) {
            float v;
            memcpy(&v, p + 4 * i, 4);
            dst[i] = v;
        }
        break;
    case QR_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t b;
            memcpy(&b, p + 2 * i, 2);
            dst[i] = qr_bf16_to_f32(b);
        }
        break;
    case QR_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = qr_f16_to_f32(h);
        }
        break;
    default:
        for (size_t i = 0; i < n; i++) {
            dst[i] = NAN;
        }
    }
}

void qr_convert_from_f32(qr_dtype dt, const float *src, size_t n, void *dst)
{
    unsigned char *p = dst;
    for (size_t i = 0; i < n; i++) {
        switch (dt) {
        case QR_DTYPE_F32:
            memcpy(p + 4 * i, &src[i], 4);
            break;
        case QR_DTYPE_F64: {
            double v = src[i];
            memcpy(p + 8 * i, &v, 8);
            break;
        }
        case QR_DTYPE_F16:
        case QR_DTYPE_BF16: {
            uint16_t h = dt == QR_DTYPE_F16 ? qr_f32_to_f16(src[i]) : qr_f32_to_bf16(src[i]);
            memcpy(p + 2 * i, &h, 2);
            break;
        }
        default:
            break;
        }
    }
}

size_t qr_first_nonfinite(qr_dtype dt, const void *src, size_t n)
{
    const unsigned char *p = src;
    switch (dt) {
    case QR_DTYPE_F32:
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)p[4 * i + 2] | (uint32_t)p[4 * i + 3] << 8;
            if ((u & 0x7f80u) == 0x7f80u) {
                return i;
            }
        }
        return n;
    case QR_DTYPE_F16:
    case QR_DTYPE_BF16: {
        unsigned mask = dt == QR_DTYPE_F16 ? 0x7c00u : 0x7f80u;
        for (size_t i = 0; i < n; i++) {
            unsigned u = (unsigned)p[2 * i] | (unsigned)p[2 * i + 1] << 8;
            if ((u & mask) == mask) {
                return i;
            }
        }
        return n;
    }
    case QR_DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            unsigned u = (unsigned)p[8 * i + 6] | (unsigned)p[8 * i + 7] << 8;
            if ((u & 0x7ff0u) == 0x7ff0u) {
                return i;
            }
        }
        return n;
    default:
        return n;
    }
}

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

float qr_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) { /* inf or NaN: keep the payload, so NaN stays NaN */
        return f32_from_bits(sign | 0x7f800000u | (mant << 13));
    }
    if (exp == 0) { /* zero or subnormal: value = mant * 2^-24, exact in float32 */
        float v = ldexpf((float)mant, -24);
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
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

void qr_convert_to_f32(qr_dtype dt, const void *src, size_t n, float *dst)
{
    const unsigned char *p = src;
    for (size_t i = 0; i < n; i++) {
        switch (dt) {
        case QR_DTYPE_F32: {
            float v;
            memcpy(&v, p + 4 * i, 4);
            dst[i] = v;
            break;
        }
        case QR_DTYPE_F64: {
            double v;
            memcpy(&v, p + 8 * i, 8);
            dst[i] = (float)v;
            break;
        }
        case QR_DTYPE_F16:
        case QR_DTYPE_BF16: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = dt == QR_DTYPE_F16 ? qr_f16_to_f32(h) : qr_bf16_to_f32(h);
            break;
        }
        default:
            dst[i] = NAN;
        }
    }
}

void qr_convert_to_f64(qr_dtype dt, const void *src, size_t n, double *dst)
{
    const unsigned char *p = src;
    if (dt == QR_DTYPE_F64) {
        memcpy(dst, p, n * sizeof *dst);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float v;
        qr_convert_to_f32(dt, p + i * qr_dtype_size(dt), 1, &v);
        dst[i] = v;
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

/* dtype.h: element types of model tensors and their conversion to float32 / float64.
 *
 * F16 is IEEE binary16; BF16 is the upper half of an IEEE binary32. Conversions are exact (every
 * F16 and BF16 value is representable in float32), keep NaN as NaN and keep infinities. */
#ifndef QR_DTYPE_H
#define QR_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    QR_DTYPE_INVALID = 0,
    QR_DTYPE_F32,
    QR_DTYPE_F16,
    QR_DTYPE_BF16,
    QR_DTYPE_F64,
    QR_DTYPE_COUNT
} qr_dtype;

/* Bytes per element, 0 for QR_DTYPE_INVALID. */
size_t qr_dtype_size(qr_dtype dt);

/* The safetensors spelling ("F32", "F16", "BF16", "F64"). */
const char *qr_dtype_name(qr_dtype dt);

/* Parse the safetensors spelling; QR_DTYPE_INVALID when unknown. */
qr_dtype qr_dtype_parse(const char *name);

float qr_f16_to_f32(uint16_t h);
float qr_bf16_to_f32(uint16_t b);
/* Round to nearest even; NaN stays NaN (quiet), overflow goes to infinity. */
uint16_t qr_f32_to_f16(float f);
uint16_t qr_f32_to_bf16(float f);

/* Convert n little-endian elements of dtype `dt` at `src` (any alignment) to float32 / float64. */
void qr_convert_to_f32(qr_dtype dt, const void *src, size_t n, float *dst);
void qr_convert_to_f64(qr_dtype dt, const void *src, size_t n, double *dst);

/* Index of the first NaN or infinity among n little-endian elements of a float dtype at src (any
 * alignment), read from the stored bits; n when every element is finite. */
size_t qr_first_nonfinite(qr_dtype dt, const void *src, size_t n);

/* Encode n float32 values as little-endian dtype `dt` at `dst` (any alignment; F16/BF16 round to
 * nearest even, F64 is exact). Used by writers (synth, tests). */
void qr_convert_from_f32(qr_dtype dt, const float *src, size_t n, void *dst);

#endif

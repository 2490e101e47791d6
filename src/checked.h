/* checked.h: overflow-checked size arithmetic and narrowing casts.
 *
 * Every size product computed from file contents goes through these before anything is allocated or
 * indexed; narrowing to a BLAS/LAPACK/ScaLAPACK `int` goes through qr_to_int(). */
#ifndef QR_CHECKED_H
#define QR_CHECKED_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* *out = a * b; false on overflow (then *out is left unchanged). */
static inline bool qr_mul_size(size_t a, size_t b, size_t *out)
{
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) {
        return false;
    }
    *out = r;
    return true;
}

/* *out = a + b; false on overflow. */
static inline bool qr_add_size(size_t a, size_t b, size_t *out)
{
    size_t r;
    if (__builtin_add_overflow(a, b, &r)) {
        return false;
    }
    *out = r;
    return true;
}

/* *out = a * b * c; false on overflow. */
static inline bool qr_mul3_size(size_t a, size_t b, size_t c, size_t *out)
{
    size_t ab;
    return qr_mul_size(a, b, &ab) && qr_mul_size(ab, c, out);
}

/* Narrow a non-negative size to int (for BLAS/LAPACK arguments); false if it does not fit. */
static inline bool qr_to_int(int64_t v, int *out)
{
    if (v < 0 || v > INT_MAX) {
        return false;
    }
    *out = (int)v;
    return true;
}

#endif

/* alloc.h: allocation with overflow-checked counts and a message that says what failed. */
#ifndef QR_ALLOC_H
#define QR_ALLOC_H

#include <stddef.h>

#include "src/status.h"

/* *out = zeroed storage for n elements of `size` bytes (what = name for the message). The caller
 * frees with free(). n == 0 gives a valid unique pointer. */
qr_status qr_calloc(void *out, size_t n, size_t size, const char *what);

/* As qr_calloc but not zeroed. */
qr_status qr_malloc(void *out, size_t n, size_t size, const char *what);

/* free(*p); *p = NULL. NULL-safe. */
void qr_free(void *p);

#endif

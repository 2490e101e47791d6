/* alloc.c: checked allocation. */
#include "src/alloc.h"

#include <stdlib.h>
#include <string.h>

#include "src/checked.h"

static qr_status alloc_impl(void *out, size_t n, size_t size, const char *what, int zero)
{
    size_t bytes;
    void *p;
    if (!qr_mul_size(n, size, &bytes)) {
        return qr_fail(QR_ERR_INPUT, "%s: size overflows (%zu elements of %zu bytes)", what, n,
                       size);
    }
    if (bytes == 0) {
        bytes = 1;
    }
    p = zero ? calloc(1, bytes) : malloc(bytes);
    if (!p) {
        return qr_fail(QR_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, bytes);
    }
    memcpy(out, &p, sizeof p);
    return QR_OK;
}

qr_status qr_calloc(void *out, size_t n, size_t size, const char *what)
{
    return alloc_impl(out, n, size, what, 1);
}

qr_status qr_malloc(void *out, size_t n, size_t size, const char *what)
{
    return alloc_impl(out, n, size, what, 0);
}

void qr_free(void *p)
{
    void *q;
    if (!p) {
        return;
    }
    memcpy(&q, p, sizeof q);
    free(q);
    q = NULL;
    memcpy(p, &q, sizeof q);
}

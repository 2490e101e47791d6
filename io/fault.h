/* fault.h: injected I/O failures for tests (docs/hardening.md).
 *
 * The writers ask qr_fault_hit() before each write, flush, close and rename of an output; it fires
 * (returns true, errno = ENOSPC) on the N-th operation of the armed kind, counted per process. It
 * is armed only by qr_fault_arm(), which only the test binary `qrecon_fault` calls (jobs/main.c
 * built with QRECON_FAULT_INJECTION, from the QRECON_FAULT environment variable); `qrecon` never
 * arms it and no library code reads the environment for it, so there it is one load and compare. */
#ifndef QR_IO_FAULT_H
#define QR_IO_FAULT_H

#include <stdbool.h>

typedef enum {
    QR_FAULT_WRITE,  /* a data write (write(2), a serial H5Dwrite, a space reservation) */
    QR_FAULT_FLUSH,  /* fsync, H5Fflush */
    QR_FAULT_CLOSE,  /* close, closing a shard */
    QR_FAULT_RENAME, /* rename into place */
    QR_FAULT_KIND_COUNT
} qr_fault_kind;

/* Fail the n-th (1-based) operation of `kind` from now on; n <= 0 disarms. */
void qr_fault_arm(qr_fault_kind kind, long n);
/* Parse "KIND:N" (write, flush, close, rename) and arm it; false when the text is malformed. */
bool qr_fault_arm_text(const char *text);
/* True (errno = ENOSPC) when this operation is the armed one. */
bool qr_fault_hit(qr_fault_kind kind);

#endif

/* fault.h: injected I/O failures for tests (docs/hardening.md).
 *
 * The writers ask qr_fault_hit() before each write, flush, close and rename of an output; it fires
 * (returns true, errno = ENOSPC) on the N-th operation of the armed kind, counted per process. In a
 * build without QRECON_FAULT_INJECTION (every release build) qr_fault_hit is a constant false and
 * nothing can arm it; in a test build only qr_fault_arm() arms it (jobs/main.c calls it from the
 * QRECON_FAULT environment variable there, and nowhere else). */
#ifndef QR_IO_FAULT_H
#define QR_IO_FAULT_H

#include <stdbool.h>

typedef enum {
    QR_FAULT_WRITE,  /* a data write (write(2), H5Dwrite, H5Awrite) */
    QR_FAULT_FLUSH,  /* fsync, H5Fflush */
    QR_FAULT_CLOSE,  /* close, H5Fclose */
    QR_FAULT_RENAME, /* rename into place */
    QR_FAULT_KIND_COUNT
} qr_fault_kind;

#ifdef QRECON_FAULT_INJECTION
/* Fail the n-th (1-based) operation of `kind` from now on; n <= 0 disarms. */
void qr_fault_arm(qr_fault_kind kind, long n);
/* Parse "KIND:N" (write, flush, close, rename) and arm it; false when the text is malformed. */
bool qr_fault_arm_text(const char *text);
bool qr_fault_hit(qr_fault_kind kind);
#else
static inline bool qr_fault_hit(qr_fault_kind kind)
{
    (void)kind;
    return false;
}
#endif

#endif

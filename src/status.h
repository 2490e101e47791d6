/* status.h: error statuses and the error message every fallible qrecon function reports through.
 *
 * Fallible functions return a qr_status; results go through out-pointers. The function that detects
 * a problem records one message with qr_fail(), worded "<file or tensor>: what is wrong (expected
 * X, found Y)"; callers propagate the status unchanged. jobs/ turns the status into the exit code.
 */
#ifndef QR_STATUS_H
#define QR_STATUS_H

#include <stdarg.h>
#include <stddef.h>

typedef enum {
    QR_OK = 0,
    QR_ERR_INPUT,      /* bad input or usage: a malformed file, a wrong option (exit 2) */
    QR_ERR_IO,         /* the system refused a read or write of a valid request (exit 1) */
    QR_ERR_NOMEM,      /* an allocation failed (exit 1) */
    QR_ERR_NUMERIC,    /* a factorization failed where the input was valid (exit 1) */
    QR_ERR_INTERNAL,   /* a broken invariant or a library error code (exit 1) */
    QR_STOPPED,        /* stopped on request at a safe point; the job can be resumed (exit 75) */
    QR_ERR_VALIDATION, /* a check ran to the end and found the data wrong: validate (exit 4) */
    QR_STATUS_COUNT
} qr_status;

/* Process exit codes. 75 is EX_TEMPFAIL from sysexits.h: "try again", which is what a resumable
 * stop means to a batch system. */
enum { QR_EXIT_OK = 0, QR_EXIT_INTERNAL = 1, QR_EXIT_INPUT = 2, QR_EXIT_STOPPED = 75 };

/* `qrecon validate` ran to the end and a module failed a check (the inputs were readable; the
 * checkpoint does not compute what it claims). Distinct from 1 and 2 so a pipeline can tell. */
enum { QR_EXIT_VALIDATION = 4 };

/* Longest recorded message, including the terminating NUL; longer ones are truncated. */
#define QR_ERRMSG_MAX 1024

/* Record a message for status st and return st. Not thread-safe: call from the main thread. */
qr_status qr_fail(qr_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
qr_status qr_failv(qr_status st, const char *fmt, va_list ap);

/* Replace the recorded message (used when an agreed error is received from another rank). */
void qr_set_errmsg(const char *msg);

/* s copied into buf (size bytes, truncated) with control characters replaced by '?', for printing
 * names read from files; returns buf. qr_fail() messages are sanitized the same way. */
const char *qr_printable(const char *s, char *buf, size_t size);

/* The message recorded by the last qr_fail(), or "" when none. */
const char *qr_errmsg(void);

void qr_clear_error(void);

const char *qr_status_name(qr_status st);

/* Exit code for a status (see the enum above). */
int qr_status_exit_code(qr_status st);

/* Propagate a failing status from the current function. */
#define QR_TRY(expr)                                                                               \
    do {                                                                                           \
        qr_status qr_try_st_ = (expr);                                                             \
        if (qr_try_st_ != QR_OK) {                                                                 \
            return qr_try_st_;                                                                     \
        }                                                                                          \
    } while (0)

/* Store a failing status in `st` and jump to the function's `done:` cleanup label. */
#define QR_CHECK(expr)                                                                             \
    do {                                                                                           \
        st = (expr);                                                                               \
        if (st != QR_OK) {                                                                         \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

#endif

/* status.c: the recorded error message behind qr_fail(). */
#include "src/status.h"

#include <stdio.h>
#include <string.h>

static char errmsg[QR_ERRMSG_MAX];

/* Control characters (C0, DEL) become '?': a message is one line, and names from files (tensor
 * names, paths) must not reach the terminal as escape sequences. */
static void sanitize(char *s)
{
    for (unsigned char *p = (unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            *p = '?';
        }
    }
}

qr_status qr_failv(qr_status st, const char *fmt, va_list ap)
{
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    sanitize(errmsg);
    return st;
}

const char *qr_printable(const char *s, char *buf, size_t size)
{
    if (size == 0) {
        return "";
    }
    snprintf(buf, size, "%s", s ? s : "");
    sanitize(buf);
    return buf;
}

qr_status qr_fail(qr_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qr_failv(st, fmt, ap);
    va_end(ap);
    return st;
}

void qr_set_errmsg(const char *msg)
{
    snprintf(errmsg, sizeof errmsg, "%s", msg ? msg : "");
    sanitize(errmsg);
}

const char *qr_errmsg(void)
{
    return errmsg;
}

void qr_clear_error(void)
{
    errmsg[0] = '\0';
}

const char *qr_status_name(qr_status st)
{
    static const char *const names[QR_STATUS_COUNT] = {
        [QR_OK] = "ok",
        [QR_ERR_INPUT] = "bad input",
        [QR_ERR_IO] = "I/O error",
        [QR_ERR_NOMEM] = "out of memory",
        [QR_ERR_NUMERIC] = "numerical failure",
        [QR_ERR_INTERNAL] = "internal error",
        [QR_STOPPED] = "stopped (resumable)",
        [QR_ERR_VALIDATION] = "validation failed",
    };
    if ((int)st < 0 || st >= QR_STATUS_COUNT) {
        return "unknown status";
    }
    return names[st];
}

int qr_status_exit_code(qr_status st)
{
    switch (st) {
    case QR_OK:
        return QR_EXIT_OK;
    case QR_ERR_INPUT:
        return QR_EXIT_INPUT;
    case QR_STOPPED:
        return QR_EXIT_STOPPED;
    case QR_ERR_VALIDATION:
        return QR_EXIT_VALIDATION;
    default:
        return QR_EXIT_INTERNAL;
    }
}

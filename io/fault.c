/* fault.c: injected I/O failures (see fault.h). */
#include "io/fault.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static long armed_at[QR_FAULT_KIND_COUNT]; /* 0 = disarmed */
static long seen[QR_FAULT_KIND_COUNT];

void qr_fault_arm(qr_fault_kind kind, long n)
{
    if (kind >= 0 && kind < QR_FAULT_KIND_COUNT) {
        armed_at[kind] = n > 0 ? n : 0;
        seen[kind] = 0;
    }
}

bool qr_fault_arm_text(const char *text)
{
    static const char *const names[QR_FAULT_KIND_COUNT] = {"write", "flush", "close", "rename"};
    const char *colon = strchr(text, ':');
    char *end = NULL;
    long n;
    if (!colon) {
        return false;
    }
    n = strtol(colon + 1, &end, 10);
    if (!end || *end != '\0' || n < 1) {
        return false;
    }
    for (int k = 0; k < QR_FAULT_KIND_COUNT; k++) {
        if ((size_t)(colon - text) == strlen(names[k]) &&
            strncmp(text, names[k], (size_t)(colon - text)) == 0) {
            qr_fault_arm((qr_fault_kind)k, n);
            return true;
        }
    }
    return false;
}

bool qr_fault_hit(qr_fault_kind kind)
{
    if (armed_at[kind] == 0) {
        return false;
    }
    if (++seen[kind] != armed_at[kind]) {
        return false;
    }
    errno = ENOSPC;
    return true;
}

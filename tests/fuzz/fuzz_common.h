/* fuzz_common.h: the readers take paths, so each harness writes its input to one scratch file per
 * process (under $TMPDIR) and reads it back. */
#ifndef QR_FUZZ_COMMON_H
#define QR_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Write data to a per-process file named suffix; returns its path (static storage) or NULL. */
static inline const char *fuzz_file(const char *suffix, const uint8_t *data, size_t size)
{
    static char path[512];
    const char *dir = getenv("TMPDIR");
    FILE *f;
    snprintf(path, sizeof path, "%s/qrecon-fuzz-%ld-%s", dir && *dir ? dir : "/tmp", (long)getpid(),
             suffix);
    f = fopen(path, "wb");
    if (!f) {
        return NULL;
    }
    if (size && fwrite(data, 1, size, f) != size) {
        fclose(f);
        return NULL;
    }
    fclose(f);
    return path;
}

#endif

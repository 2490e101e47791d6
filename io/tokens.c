/* tokens.c: token-id files (see tokens.h). */
#include "io/tokens.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "src/alloc.h"

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static qr_status parse_text(const char *path, const char *data, size_t size, int64_t n_vocab,
                            int32_t **ids, size_t *n)
{
    qr_status st = QR_OK;
    int32_t *out = NULL;
    size_t count = 0;
    const char *p = data, *end = data + size;
    /* At most one id per two bytes (a digit and a separator), plus one. */
    QR_CHECK(qr_malloc(&out, size / 2 + 1, sizeof *out, path));
    while (p < end) {
        char *stop = NULL;
        long long v;
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            p++;
            continue;
        }
        if (*p < '0' || *p > '9') {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: byte offset %zu: expected a decimal token id, found '%c' (0x%02X)",
                         path, (size_t)(p - data), *p >= 32 && *p < 127 ? *p : '?',
                         (unsigned char)*p);
            goto done;
        }
        errno = 0;
        v = strtoll(p, &stop, 10);
        if (errno || v >= n_vocab ||
            (stop < end && *stop != ' ' && *stop != '\t' && *stop != '\n' && *stop != '\r' &&
             *stop != '\0')) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: token %zu (byte offset %zu): expected an id in 0..%lld followed by "
                         "whitespace, found '%.20s'",
                         path, count, (size_t)(p - data), (long long)n_vocab - 1, p);
            goto done;
        }
        out[count++] = (int32_t)v;
        p = stop;
    }
    *ids = out;
    *n = count;
    out = NULL;
done:
    free(out);
    return st;
}

qr_status qr_tokens_read(const char *path, int64_t n_vocab, int32_t **ids, size_t *n)
{
    qr_status st = QR_OK;
    char *data = NULL;
    size_t size = 0, count;
    int32_t *out = NULL;
    *ids = NULL;
    *n = 0;
    QR_CHECK(qr_fs_read_all(path, QR_TOKENS_FILE_MAX, &data, &size));
    if (ends_with(path, ".txt")) {
        QR_CHECK(parse_text(path, data, size, n_vocab, ids, n));
        goto done;
    }
    if (size % 4 != 0) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: raw token file size is not a multiple of 4 (expected little-endian "
                     "uint32 ids, found %zu bytes; name text files *.txt)",
                     path, size);
        goto done;
    }
    count = size / 4;
    QR_CHECK(qr_malloc(&out, count, sizeof *out, path));
    for (size_t i = 0; i < count; i++) {
        const unsigned char *b = (const unsigned char *)data + 4 * i;
        uint32_t v =
            (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        if ((int64_t)v >= n_vocab) {
            st =
                qr_fail(QR_ERR_INPUT, "%s: token %zu: id out of range (expected 0..%lld, found %u)",
                        path, i, (long long)n_vocab - 1, (unsigned)v);
            goto done;
        }
        out[i] = (int32_t)v;
    }
    *ids = out;
    *n = count;
    out = NULL;
done:
    free(out);
    free(data);
    return st;
}

qr_status qr_tokens_write_u32(const char *path, const int32_t *ids, size_t n)
{
    qr_status st = QR_OK;
    unsigned char *buf = NULL;
    QR_CHECK(qr_malloc(&buf, n, 4, path));
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        buf[4 * i] = (unsigned char)(v & 0xff);
        buf[4 * i + 1] = (unsigned char)(v >> 8 & 0xff);
        buf[4 * i + 2] = (unsigned char)(v >> 16 & 0xff);
        buf[4 * i + 3] = (unsigned char)(v >> 24);
    }
    QR_CHECK(qr_fs_write_atomic(path, buf, n * 4));
done:
    free(buf);
    return st;
}

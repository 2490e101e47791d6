/* tokenizer_bin.c: llama2.c tokenizer.bin reader (see tokenizer_bin.h). */
#include "io/tokenizer_bin.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "src/alloc.h"

static int32_t read_i32(const unsigned char *p)
{
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t out;
    memcpy(&out, &v, sizeof out);
    return out;
}

static float read_f32(const unsigned char *p)
{
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float out;
    memcpy(&out, &v, sizeof out);
    return out;
}

qr_status qr_tokenizer_bin_read(const char *path, int64_t n_vocab, qr_tokenizer **out)
{
    qr_status st = QR_OK;
    char *data = NULL;
    size_t size = 0, off = 4;
    const char **pieces = NULL;
    int32_t *lens = NULL, max_len;
    float *scores = NULL;
    *out = NULL;
    if (n_vocab < 1 || n_vocab > INT32_MAX / 4) {
        return qr_fail(QR_ERR_INPUT, "%s: bad vocabulary size %lld", path, (long long)n_vocab);
    }
    QR_CHECK(qr_fs_read_all(path, QR_TOKENIZER_BIN_MAX, &data, &size));
    if (size < 4) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: too short for a tokenizer (expected at least 4 bytes, "
                     "found %zu)",
                     path, size);
        goto done;
    }
    max_len = read_i32((const unsigned char *)data);
    if (max_len < 1 || (size_t)max_len > size) {
        st = qr_fail(QR_ERR_INPUT, "%s: max_token_length out of range (expected 1..%zu, found %d)",
                     path, size, (int)max_len);
        goto done;
    }
    QR_CHECK(qr_calloc(&pieces, (size_t)n_vocab, sizeof *pieces, "tokenizer pieces"));
    QR_CHECK(qr_calloc(&lens, (size_t)n_vocab, sizeof *lens, "tokenizer lengths"));
    QR_CHECK(qr_calloc(&scores, (size_t)n_vocab, sizeof *scores, "tokenizer scores"));
    for (int64_t i = 0; i < n_vocab; i++) {
        const unsigned char *p = (const unsigned char *)data + off;
        if (size - off < 8) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: piece %lld: file ends inside its header (expected %lld pieces for "
                         "the model's vocabulary, %zu bytes left at offset %zu)",
                         path, (long long)i, (long long)n_vocab, size - off, off);
            goto done;
        }
        scores[i] = read_f32(p);
        lens[i] = read_i32(p + 4);
        off += 8;
        if (!isfinite(scores[i])) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: piece %lld: score is not finite (expected a finite merge score, "
                         "found %g)",
                         path, (long long)i, (double)scores[i]);
            goto done;
        }
        if (lens[i] < 0 || lens[i] > max_len || (size_t)lens[i] > size - off) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: piece %lld: bad length (expected 0..%d and within the %zu bytes "
                         "left, found %d)",
                         path, (long long)i, (int)max_len, size - off, (int)lens[i]);
            goto done;
        }
        pieces[i] = data + off;
        off += (size_t)lens[i];
    }
    if (off != size) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: %zu bytes after the last piece (expected exactly %lld pieces, the "
                     "model's vocabulary size)",
                     path, size - off, (long long)n_vocab);
        goto done;
    }
    st = qr_tokenizer_create(n_vocab, pieces, lens, scores, out);
    if (st != QR_OK) {
        char inner[QR_ERRMSG_MAX];
        snprintf(inner, sizeof inner, "%s", qr_errmsg()); /* qr_fail writes the same buffer */
        st = qr_fail(st, "%s: %s", path, inner);
    }
done:
    free(data);
    free(pieces);
    free(lens);
    free(scores);
    return st;
}

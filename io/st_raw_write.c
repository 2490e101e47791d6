/* st_raw_write.c: safetensors files of any element type (io/st_raw_write.h). */
#include "io/st_raw_write.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "src/alloc.h"
#include "src/checked.h"

struct qr_stw {
    char path[4096];
    qr_fs_stream out;
    uint64_t *sizes; /* (n) */
    size_t n, cur;
    uint64_t cur_written;
};

size_t qr_stw_dtype_size(const char *dtype)
{
    static const struct {
        const char *name;
        size_t size;
    } t[] = {{"F64", 8},  {"I64", 8}, {"F32", 4}, {"I32", 4}, {"F16", 2},
             {"BF16", 2}, {"I16", 2}, {"U8", 1},  {"I8", 1}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (strcmp(t[i].name, dtype) == 0) {
            return t[i].size;
        }
    }
    return 0;
}

static qr_status write_raw(qr_stw *w, const void *p, size_t n)
{
    return qr_fs_stream_write(&w->out, p, n);
}

static void skip_empty(qr_stw *w)
{
    while (w->cur < w->n && w->sizes[w->cur] == 0) {
        w->cur++;
    }
}

qr_status qr_stw_open(const char *path, const qr_stw_entry *entries, size_t n,
                      const char *const *meta_keys, const char *const *meta_values, size_t n_meta,
                      qr_stw **out)
{
    qr_status st = QR_OK;
    qr_stw *w = NULL;
    json_t *h = json_object(), *meta = json_object();
    char *text = NULL;
    uint64_t off = 0;
    *out = NULL;
    if (!h || !meta) {
        st = qr_fail(QR_ERR_NOMEM, "%s: out of memory for the header", path);
        goto done;
    }
    QR_CHECK(qr_calloc(&w, 1, sizeof *w, path));
    QR_CHECK(qr_calloc(&w->sizes, n + 1, sizeof *w->sizes, path));
    w->n = n;
    if (snprintf(w->path, sizeof w->path, "%s", path) >= (int)sizeof w->path) {
        st = qr_fail(QR_ERR_INPUT, "%s: path too long", path);
        goto done;
    }
    for (size_t i = 0; i < n_meta; i++) {
        json_object_set_new(meta, meta_keys[i], json_string(meta_values[i]));
    }
    json_object_set(h, "__metadata__", meta);
    for (size_t i = 0; i < n; i++) {
        const qr_stw_entry *e = &entries[i];
        size_t es = qr_stw_dtype_size(e->dtype), count = 1;
        json_t *t = json_object(), *shape = json_array(), *offs = json_array();
        for (int d = 0; d < e->ndim; d++) {
            if (e->shape[d] < 0 || !qr_mul_size(count, (size_t)e->shape[d], &count)) {
                count = SIZE_MAX;
            }
            json_array_append_new(shape, json_integer(e->shape[d]));
        }
        if (es == 0 || e->ndim < 0 || e->ndim > 4 || count == SIZE_MAX ||
            !qr_mul_size(count, es, &count)) {
            json_decref(t);
            json_decref(shape);
            json_decref(offs);
            st = qr_fail(QR_ERR_INPUT, "%s: tensor '%s' (dtype %s) has no safetensors form", path,
                         e->name, e->dtype);
            goto done;
        }
        w->sizes[i] = count;
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + count)));
        off += count;
        json_object_set_new(t, "dtype", json_string(e->dtype));
        json_object_set_new(t, "shape", shape);
        json_object_set_new(t, "data_offsets", offs);
        json_object_set_new(h, e->name, t);
    }
    text = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text) {
        st = qr_fail(QR_ERR_NOMEM, "%s: out of memory for the header", path);
        goto done;
    }
    QR_CHECK(qr_fs_stream_open(&w->out, w->path));
    {
        size_t len = strlen(text), padded = (len + 7) / 8 * 8;
        uint8_t le[8];
        for (int i = 0; i < 8; i++) {
            le[i] = (uint8_t)((uint64_t)padded >> (8 * i));
        }
        QR_CHECK(write_raw(w, le, 8));
        QR_CHECK(write_raw(w, text, len));
        QR_CHECK(write_raw(w, "        ", padded - len));
    }
    skip_empty(w);
    *out = w;
    w = NULL;
done:
    free(text);
    json_decref(meta);
    json_decref(h);
    qr_stw_abort(&w);
    return st;
}

qr_status qr_stw_put(qr_stw *w, const void *data, size_t nbytes)
{
    const uint8_t *p = data;
    while (nbytes > 0) {
        if (w->cur >= w->n) {
            return qr_fail(QR_ERR_INTERNAL, "%s: more data than the tensors hold", w->path);
        }
        uint64_t left = w->sizes[w->cur] - w->cur_written;
        size_t k = nbytes < left ? nbytes : (size_t)left;
        QR_TRY(write_raw(w, p, k));
        p += k;
        nbytes -= k;
        w->cur_written += k;
        if (w->cur_written == w->sizes[w->cur]) {
            w->cur++;
            w->cur_written = 0;
            skip_empty(w);
        }
    }
    return QR_OK;
}

static void free_stw(qr_stw *w)
{
    qr_fs_stream_abort(&w->out);
    free(w->sizes);
    free(w);
}

qr_status qr_stw_finish(qr_stw **wp, uint64_t *bytes)
{
    qr_stw *w = *wp;
    qr_status st = QR_OK;
    *wp = NULL;
    if (w->cur != w->n) {
        st = qr_fail(QR_ERR_INTERNAL, "%s: tensor %zu of %zu incomplete", w->path, w->cur, w->n);
        goto done;
    }
    QR_CHECK(qr_fs_stream_commit(&w->out));
    if (bytes) {
        *bytes = w->out.bytes;
    }
done:
    free_stw(w);
    return st;
}

void qr_stw_abort(qr_stw **wp)
{
    if (wp && *wp) {
        free_stw(*wp);
        *wp = NULL;
    }
}

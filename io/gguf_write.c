/* gguf_write.c: a streaming GGUF v3 writer and the Q4_0 / Q4_1 block encodings
 * (io/gguf_write.h). */
#include "io/gguf_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/dtype.h"

/* GGUF metadata value types. */
enum {
    GGUF_U32 = 4,
    GGUF_I32 = 5,
    GGUF_F32 = 6,
    GGUF_BOOL = 7,
    GGUF_STRING = 8,
    GGUF_ARRAY = 9,
};

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int failed; /* out of memory once: every later append is dropped, open reports it */
} buf;

typedef struct {
    char name[128];
    qr_ggml_type type;
    int ndim;
    int64_t cols, rows;
    uint64_t offset, nbytes;
} tinfo;

struct qr_gguf {
    char path[4096];
    qr_fs_stream out;
    buf kv;
    uint64_t n_kv;
    tinfo *t;
    size_t n_t, cap_t;
    uint64_t data_bytes; /* data section size so far (aligned offsets) */
    size_t cur;          /* tensor being written */
    uint64_t cur_written;
    int data_started;
};

const char *qr_ggml_type_name(qr_ggml_type t)
{
    switch (t) {
    case QR_GGML_F32:
        return "F32";
    case QR_GGML_F16:
        return "F16";
    case QR_GGML_Q4_0:
        return "Q4_0";
    case QR_GGML_Q4_1:
        return "Q4_1";
    }
    return "?";
}

size_t qr_ggml_row_size(qr_ggml_type t, int64_t ne0)
{
    if (ne0 <= 0) {
        return 0;
    }
    switch (t) {
    case QR_GGML_F32:
        return (size_t)ne0 * 4;
    case QR_GGML_F16:
        return (size_t)ne0 * 2;
    case QR_GGML_Q4_0:
        return ne0 % QR_GGML_QK ? 0 : (size_t)(ne0 / QR_GGML_QK) * 18;
    case QR_GGML_Q4_1:
        return ne0 % QR_GGML_QK ? 0 : (size_t)(ne0 / QR_GGML_QK) * 20;
    }
    return 0;
}

static void buf_put(buf *b, const void *data, size_t n)
{
    if (b->failed) {
        return;
    }
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) {
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void buf_u32(buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    buf_put(b, x, 4);
}

static void buf_u64(buf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++) {
        x[i] = (uint8_t)(v >> (8 * i));
    }
    buf_put(b, x, 8);
}

static void buf_str(buf *b, const char *s, size_t n)
{
    buf_u64(b, n);
    buf_put(b, s, n);
}

static void buf_f32(buf *b, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    buf_u32(b, u);
}

qr_status qr_gguf_open(const char *path, qr_gguf **out)
{
    qr_gguf *g = NULL;
    *out = NULL;
    QR_TRY(qr_calloc(&g, 1, sizeof *g, "GGUF writer"));
    if (snprintf(g->path, sizeof g->path, "%s", path) >= (int)sizeof g->path) {
        free(g);
        return qr_fail(QR_ERR_INPUT, "%s: path too long", path);
    }
    *out = g;
    return QR_OK;
}

static qr_status kv_head(qr_gguf *g, const char *key, uint32_t type)
{
    if (g->data_started) {
        return qr_fail(QR_ERR_INTERNAL, "%s: key '%s' added after the header", g->path, key);
    }
    buf_str(&g->kv, key, strlen(key));
    buf_u32(&g->kv, type);
    g->n_kv++;
    return QR_OK;
}

qr_status qr_gguf_kv_str(qr_gguf *g, const char *key, const char *value)
{
    QR_TRY(kv_head(g, key, GGUF_STRING));
    buf_str(&g->kv, value, strlen(value));
    return QR_OK;
}

qr_status qr_gguf_kv_u32(qr_gguf *g, const char *key, uint32_t value)
{
    QR_TRY(kv_head(g, key, GGUF_U32));
    buf_u32(&g->kv, value);
    return QR_OK;
}

qr_status qr_gguf_kv_f32(qr_gguf *g, const char *key, float value)
{
    QR_TRY(kv_head(g, key, GGUF_F32));
    buf_f32(&g->kv, value);
    return QR_OK;
}

qr_status qr_gguf_kv_bool(qr_gguf *g, const char *key, int value)
{
    uint8_t v = value ? 1 : 0;
    QR_TRY(kv_head(g, key, GGUF_BOOL));
    buf_put(&g->kv, &v, 1);
    return QR_OK;
}

qr_status qr_gguf_kv_str_array(qr_gguf *g, const char *key, size_t n, const char *const *strs,
                               const size_t *lens)
{
    QR_TRY(kv_head(g, key, GGUF_ARRAY));
    buf_u32(&g->kv, GGUF_STRING);
    buf_u64(&g->kv, n);
    for (size_t i = 0; i < n; i++) {
        buf_str(&g->kv, strs[i], lens[i]);
    }
    return QR_OK;
}

qr_status qr_gguf_kv_f32_array(qr_gguf *g, const char *key, size_t n, const float *v)
{
    QR_TRY(kv_head(g, key, GGUF_ARRAY));
    buf_u32(&g->kv, GGUF_F32);
    buf_u64(&g->kv, n);
    for (size_t i = 0; i < n; i++) {
        buf_f32(&g->kv, v[i]);
    }
    return QR_OK;
}

qr_status qr_gguf_kv_i32_array(qr_gguf *g, const char *key, size_t n, const int32_t *v)
{
    QR_TRY(kv_head(g, key, GGUF_ARRAY));
    buf_u32(&g->kv, GGUF_I32);
    buf_u64(&g->kv, n);
    for (size_t i = 0; i < n; i++) {
        buf_u32(&g->kv, (uint32_t)v[i]);
    }
    return QR_OK;
}

static uint64_t align_up(uint64_t x)
{
    return (x + QR_GGUF_ALIGNMENT - 1) / QR_GGUF_ALIGNMENT * QR_GGUF_ALIGNMENT;
}

qr_status qr_gguf_add_tensor(qr_gguf *g, const char *name, qr_ggml_type type, int ndim,
                             int64_t cols, int64_t rows)
{
    size_t row = qr_ggml_row_size(type, cols), nbytes;
    if (g->data_started) {
        return qr_fail(QR_ERR_INTERNAL, "%s: tensor '%s' added after the header", g->path, name);
    }
    if (row == 0 || rows <= 0 || (ndim != 1 && ndim != 2) || (ndim == 1 && rows != 1)) {
        return qr_fail(QR_ERR_INPUT, "%s: tensor '%s' of %lld x %lld has no %s form", g->path, name,
                       (long long)rows, (long long)cols, qr_ggml_type_name(type));
    }
    if (!qr_mul_size(row, (size_t)rows, &nbytes) || strlen(name) >= sizeof g->t[0].name) {
        return qr_fail(QR_ERR_INPUT, "%s: tensor '%s' too large or its name too long", g->path,
                       name);
    }
    if (g->n_t == g->cap_t) {
        size_t cap = g->cap_t ? 2 * g->cap_t : 64;
        tinfo *t = realloc(g->t, cap * sizeof *t);
        if (!t) {
            return qr_fail(QR_ERR_NOMEM, "%s: out of memory for tensor infos", g->path);
        }
        g->t = t;
        g->cap_t = cap;
    }
    tinfo *t = &g->t[g->n_t++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type;
    t->ndim = ndim;
    t->cols = cols;
    t->rows = rows;
    t->offset = align_up(g->data_bytes);
    t->nbytes = nbytes;
    g->data_bytes = t->offset + nbytes;
    return QR_OK;
}

static qr_status write_raw(qr_gguf *g, const void *p, size_t n)
{
    return qr_fs_stream_write(&g->out, p, n);
}

static qr_status write_zeros(qr_gguf *g, uint64_t n)
{
    static const uint8_t z[QR_GGUF_ALIGNMENT];
    while (n > 0) {
        size_t k = n > sizeof z ? sizeof z : (size_t)n;
        QR_TRY(write_raw(g, z, k));
        n -= k;
    }
    return QR_OK;
}

qr_status qr_gguf_begin_data(qr_gguf *g)
{
    qr_status st = QR_OK;
    buf h = {0};
    buf_put(&h, "GGUF", 4);
    buf_u32(&h, 3);
    buf_u64(&h, g->n_t);
    buf_u64(&h, g->n_kv);
    buf_put(&h, g->kv.p, g->kv.n);
    for (size_t i = 0; i < g->n_t; i++) {
        const tinfo *t = &g->t[i];
        buf_str(&h, t->name, strlen(t->name));
        buf_u32(&h, (uint32_t)t->ndim);
        buf_u64(&h, (uint64_t)t->cols);
        if (t->ndim == 2) {
            buf_u64(&h, (uint64_t)t->rows);
        }
        buf_u32(&h, (uint32_t)t->type);
        buf_u64(&h, t->offset);
    }
    if (h.failed || g->kv.failed) {
        st = qr_fail(QR_ERR_NOMEM, "%s: out of memory for the header", g->path);
        goto done;
    }
    QR_CHECK(qr_fs_stream_open(&g->out, g->path));
    g->data_started = 1;
    QR_CHECK(write_raw(g, h.p, h.n));
    QR_CHECK(write_zeros(g, align_up(h.n) - h.n));
    g->cur = 0;
    g->cur_written = 0;
done:
    free(h.p);
    return st;
}

qr_status qr_gguf_put(qr_gguf *g, const void *data, size_t n)
{
    const uint8_t *p = data;
    if (!g->data_started) {
        return qr_fail(QR_ERR_INTERNAL, "%s: data before the header", g->path);
    }
    while (n > 0) {
        if (g->cur >= g->n_t) {
            return qr_fail(QR_ERR_INTERNAL, "%s: more data than the tensors hold", g->path);
        }
        tinfo *t = &g->t[g->cur];
        uint64_t left = t->nbytes - g->cur_written;
        size_t k = n < left ? n : (size_t)left;
        QR_TRY(write_raw(g, p, k));
        p += k;
        n -= k;
        g->cur_written += k;
        if (g->cur_written == t->nbytes) {
            uint64_t end = t->offset + t->nbytes;
            uint64_t next = g->cur + 1 < g->n_t ? g->t[g->cur + 1].offset : end;
            QR_TRY(write_zeros(g, next - end));
            g->cur++;
            g->cur_written = 0;
        }
    }
    return QR_OK;
}

static void free_gguf(qr_gguf *g)
{
    qr_fs_stream_abort(&g->out);
    free(g->kv.p);
    free(g->t);
    free(g);
}

qr_status qr_gguf_finish(qr_gguf **gp, uint64_t *bytes)
{
    qr_gguf *g = *gp;
    qr_status st = QR_OK;
    *gp = NULL;
    if (!g->data_started) {
        QR_CHECK(qr_gguf_begin_data(g));
    }
    if (g->cur != g->n_t) {
        st = qr_fail(QR_ERR_INTERNAL, "%s: tensor %zu of %zu incomplete", g->path, g->cur, g->n_t);
        goto done;
    }
    QR_CHECK(qr_fs_stream_commit(&g->out));
    if (bytes) {
        *bytes = g->out.bytes;
    }
done:
    free_gguf(g);
    return st;
}

void qr_gguf_abort(qr_gguf **gp)
{
    if (gp && *gp) {
        free_gguf(*gp);
        *gp = NULL;
    }
}

/* ---- blocks ---------------------------------------------------------------------------------- */

static void put_f16(uint8_t *p, uint16_t h)
{
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* F16 of -scale * zero, the Q4_1 block minimum. */
static uint16_t q4_1_min(const qr_qweight *q, int64_t row, int64_t g)
{
    float s = q->scales[row * q->n_groups + g];
    float z = (float)q->zeros[row * q->n_groups + g];
    return qr_f32_to_f16(-(s * z));
}

void qr_gguf_encode_q4_row(const qr_qweight *q, int64_t row, uint8_t *out)
{
    size_t bsize = q->asym ? 20 : 18;
    for (int64_t g = 0; g < q->cols / QR_GGML_QK; g++) {
        uint8_t *b = out + (size_t)g * bsize;
        uint8_t *qs = b + (q->asym ? 4 : 2);
        put_f16(b, qr_f32_to_f16(q->scales[row * q->n_groups + g]));
        if (q->asym) {
            put_f16(b + 2, q4_1_min(q, row, g));
        }
        for (int j = 0; j < QR_GGML_QK / 2; j++) {
            unsigned lo = qr_qweight_get_code(q, row, g * QR_GGML_QK + j);
            unsigned hi = qr_qweight_get_code(q, row, g * QR_GGML_QK + j + QR_GGML_QK / 2);
            qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

double qr_gguf_q4_value(const qr_qweight *q, int64_t row, int64_t j)
{
    int64_t g = j / q->group;
    double d = qr_f16_to_f32(qr_f32_to_f16(q->scales[row * q->n_groups + g]));
    unsigned code = qr_qweight_get_code(q, row, j);
    if (q->asym) {
        return d * (double)code + (double)qr_f16_to_f32(q4_1_min(q, row, g));
    }
    return d * ((double)code - 8.0);
}

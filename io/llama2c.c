/* llama2c.c: the llama2.c v0 checkpoint reader. The header is checked field by field and the file
 * size must equal what it implies, byte for byte, before the file is mapped and sliced into
 * per-layer tensors under Hugging Face names. A wrong size is the one symptom of every export
 * mistake (wrong version, truncated copy, tied flag flipped), so its message gives expected vs
 * found bytes. */
#include "io/llama2c.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/config.h"
#include "src/alloc.h"
#include "src/checked.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "llama2c.c maps little-endian float32 arrays in place: a little-endian host is required"
#endif

/* llama2.c's newer exports (export.py --version 1/2) start with this magic ("ak42", LE). */
#define L2C_MAGIC_V1 0x616b3432
#define L2C_NAME_MAX 96
#define L2C_PER_LAYER 9 /* two norms, q, k, v, o, gate, up, down */

enum { H_DIM, H_HIDDEN, H_LAYERS, H_HEADS, H_KV_HEADS, H_VOCAB, H_SEQ, H_COUNT };
static const char *const header_names[H_COUNT] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                                  "n_kv_heads", "vocab_size", "seq_len"};

struct qr_l2c_file {
    char *path;
    unsigned char *map; /* (map_size) bytes, read-only */
    size_t map_size;
    qr_model_config cfg;
    size_t count;
    qr_st_tensor *tensors;       /* (count), sorted by name */
    char (*names)[L2C_NAME_MAX]; /* (count) name storage the tensors point into */
};

/* The float32 arrays after the header, in file order (the layout comment in llama2c.h). */
enum {
    A_EMB,
    A_RMS_ATT,
    A_WQ,
    A_WK,
    A_WV,
    A_WO,
    A_RMS_FFN,
    A_W1,
    A_W2,
    A_W3,
    A_RMS_FINAL,
    A_ROPE, /* cos and sin tables together */
    A_CLS,  /* 0 floats when tied */
    A_COUNT
};

static qr_status header_check(const int32_t hdr[H_COUNT], const char *path)
{
    const int64_t max[H_COUNT] = {QR_CONFIG_MAX_DIM,   QR_CONFIG_MAX_HIDDEN, QR_CONFIG_MAX_LAYERS,
                                  QR_CONFIG_MAX_HEADS, QR_CONFIG_MAX_HEADS,  QR_CONFIG_MAX_VOCAB,
                                  QR_CONFIG_MAX_SEQ};
    if ((uint32_t)hdr[0] == L2C_MAGIC_V1) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: a llama2.c version 1/2 export (magic \"ak42\"); qrecon reads the v0 "
                       "format (expected 7 int32 sizes at the start, found the magic)",
                       path);
    }
    for (int i = 0; i < H_COUNT; i++) {
        int64_t v = hdr[i];
        if (i == H_VOCAB && v < 0) {
            v = -v; /* negative = untied classifier */
        }
        if (v < 1 || v > max[i]) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: llama2.c header field %s is out of range (expected an integer in "
                           "[1, %" PRId64 "]%s, found %" PRId32 ")",
                           path, header_names[i], max[i], i == H_VOCAB ? " or its negative" : "",
                           hdr[i]);
        }
    }
    if (hdr[H_DIM] % hdr[H_HEADS] != 0) {
        return qr_fail(
            QR_ERR_INPUT,
            "%s: llama2.c header: n_heads must divide dim (expected a divisor of %" PRId32
            ", found %" PRId32 ")",
            path, hdr[H_DIM], hdr[H_HEADS]);
    }
    if (hdr[H_KV_HEADS] > hdr[H_HEADS] || hdr[H_HEADS] % hdr[H_KV_HEADS] != 0) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: llama2.c header: n_kv_heads must divide n_heads (expected a divisor of "
                       "%" PRId32 ", found %" PRId32 ")",
                       path, hdr[H_HEADS], hdr[H_KV_HEADS]);
    }
    if ((hdr[H_DIM] / hdr[H_HEADS]) % 2 != 0) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: llama2.c header: head size dim / n_heads must be even for RoPE (found "
                       "%" PRId32 ")",
                       path, hdr[H_DIM] / hdr[H_HEADS]);
    }
    return QR_OK;
}

/* Float counts of every array (counts) and their float offsets after the header (offs). The header
 * bounds keep each product below 2^56; the checked arithmetic turns any slip in those bounds into
 * an error rather than a wrap. */
static qr_status header_layout(const int32_t hdr[H_COUNT], const char *path, size_t counts[A_COUNT],
                               size_t offs[A_COUNT], size_t *total_floats)
{
    size_t d = (size_t)hdr[H_DIM], h = (size_t)hdr[H_HIDDEN], l = (size_t)hdr[H_LAYERS];
    size_t hd = d / (size_t)hdr[H_HEADS], kvd = hd * (size_t)hdr[H_KV_HEADS];
    size_t v = (size_t)(hdr[H_VOCAB] < 0 ? -(int64_t)hdr[H_VOCAB] : hdr[H_VOCAB]);
    size_t seq = (size_t)hdr[H_SEQ], off = 0;
    bool ok = qr_mul_size(v, d, &counts[A_EMB]) && qr_mul_size(l, d, &counts[A_RMS_ATT]) &&
              qr_mul3_size(l, d, d, &counts[A_WQ]) && qr_mul3_size(l, kvd, d, &counts[A_WK]) &&
              qr_mul3_size(l, kvd, d, &counts[A_WV]) && qr_mul3_size(l, d, d, &counts[A_WO]) &&
              qr_mul_size(l, d, &counts[A_RMS_FFN]) && qr_mul3_size(l, h, d, &counts[A_W1]) &&
              qr_mul3_size(l, d, h, &counts[A_W2]) && qr_mul3_size(l, h, d, &counts[A_W3]) &&
              qr_mul3_size(2, seq, hd / 2, &counts[A_ROPE]);
    counts[A_RMS_FINAL] = d;
    counts[A_CLS] = hdr[H_VOCAB] < 0 ? counts[A_EMB] : 0;
    for (int a = 0; ok && a < A_COUNT; a++) {
        offs[a] = off;
        ok = qr_add_size(off, counts[a], &off);
    }
    if (!ok) {
        return qr_fail(QR_ERR_INPUT, "%s: llama2.c header sizes overflow a size_t", path);
    }
    *total_floats = off;
    return QR_OK;
}

qr_status qr_l2c_expected_size(const int32_t hdr[7], const char *path, uint64_t *bytes)
{
    size_t counts[A_COUNT], offs[A_COUNT], floats = 0, total;
    QR_TRY(header_check(hdr, path));
    QR_TRY(header_layout(hdr, path, counts, offs, &floats));
    if (!qr_mul_size(floats, sizeof(float), &total) ||
        !qr_add_size(total, QR_L2C_HEADER_BYTES, &total)) {
        return qr_fail(QR_ERR_INPUT, "%s: llama2.c header sizes overflow a size_t", path);
    }
    *bytes = (uint64_t)total;
    return QR_OK;
}

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const qr_st_tensor *)a)->name, ((const qr_st_tensor *)b)->name);
}

/* Add one tensor: `rows` x `cols` floats (cols 0 = a vector of `rows`) at float offset `off`. */
static void add_tensor(qr_l2c_file *f, const char *name, size_t off, int64_t rows, int64_t cols)
{
    qr_st_tensor *t = &f->tensors[f->count];
    snprintf(f->names[f->count], L2C_NAME_MAX, "%s", name);
    t->name = f->names[f->count];
    t->dtype = QR_DTYPE_F32;
    t->ndim = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->numel = cols ? rows * cols : rows;
    t->nbytes = (size_t)t->numel * sizeof(float);
    t->data = f->map + QR_L2C_HEADER_BYTES + off * sizeof(float);
    t->path = f->path;
    f->count++;
}

/* Slice the stacked arrays into per-layer tensors. Offsets are float counts from the end of the
 * header; every one is inside the (already verified) file size. */
static void build_tensors(qr_l2c_file *f, const int32_t hdr[H_COUNT], const size_t offs[A_COUNT])
{
    int64_t d = hdr[H_DIM], h = hdr[H_HIDDEN], v = hdr[H_VOCAB] < 0 ? -hdr[H_VOCAB] : hdr[H_VOCAB];
    int64_t kvd = (d / hdr[H_HEADS]) * hdr[H_KV_HEADS];
    char name[L2C_NAME_MAX];
    /* Per layer: the stacked array, the Hugging Face name, and the (rows, cols) of one layer's
     * slice (cols 0 = a vector). w1 = gate_proj, w2 = down_proj, w3 = up_proj. */
    const struct {
        int array;
        const char *name;
        int64_t rows, cols;
    } per_layer[L2C_PER_LAYER] = {
        {A_RMS_ATT, "input_layernorm", d, 0}, {A_WQ, "self_attn.q_proj", d, d},
        {A_WK, "self_attn.k_proj", kvd, d},   {A_WV, "self_attn.v_proj", kvd, d},
        {A_WO, "self_attn.o_proj", d, d},     {A_RMS_FFN, "post_attention_layernorm", d, 0},
        {A_W1, "mlp.gate_proj", h, d},        {A_W2, "mlp.down_proj", d, h},
        {A_W3, "mlp.up_proj", h, d},
    };
    add_tensor(f, "model.embed_tokens.weight", offs[A_EMB], v, d);
    add_tensor(f, "model.norm.weight", offs[A_RMS_FINAL], d, 0);
    if (hdr[H_VOCAB] < 0) {
        add_tensor(f, "lm_head.weight", offs[A_CLS], v, d);
    }
    for (int64_t l = 0; l < hdr[H_LAYERS]; l++) {
        for (int k = 0; k < L2C_PER_LAYER; k++) {
            size_t rows = (size_t)per_layer[k].rows;
            size_t per = rows * (size_t)(per_layer[k].cols ? per_layer[k].cols : 1);
            snprintf(name, sizeof name, "model.layers.%" PRId64 ".%s.weight", l, per_layer[k].name);
            add_tensor(f, name, offs[per_layer[k].array] + (size_t)l * per, per_layer[k].rows,
                       per_layer[k].cols);
        }
    }
    qsort(f->tensors, f->count, sizeof *f->tensors, cmp_tensor);
}

qr_status qr_l2c_open(const char *path, qr_l2c_file **out)
{
    qr_status st = QR_OK;
    qr_l2c_file *f = NULL;
    int fd = -1;
    struct stat sb;
    int32_t hdr[H_COUNT];
    uint64_t expected = 0;
    size_t counts[A_COUNT], offs[A_COUNT], floats = 0, n_tensors;
    *out = NULL;
    fd = open(path, O_RDONLY);
    if (fd < 0) {
        return qr_fail(QR_ERR_INPUT, "%s: cannot open (%s)", path, strerror(errno));
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = qr_fail(QR_ERR_INPUT, "%s: expected a regular file", path);
        goto done;
    }
    if ((uint64_t)sb.st_size < QR_L2C_HEADER_BYTES) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: too short for a llama2.c header (expected at least %d bytes, found "
                     "%" PRIu64 ")",
                     path, QR_L2C_HEADER_BYTES, (uint64_t)sb.st_size);
        goto done;
    }
    if (pread(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr) {
        st = qr_fail(QR_ERR_IO, "%s: cannot read the header (%s)", path, strerror(errno));
        goto done;
    }
    QR_CHECK(qr_l2c_expected_size(hdr, path, &expected));
    if ((uint64_t)sb.st_size != expected) {
        /* The commonest export slip is the tied/untied sign: say so when the size fits it. */
        int32_t flipped[H_COUNT];
        uint64_t alt = 0;
        const char *hint = "";
        memcpy(flipped, hdr, sizeof flipped);
        flipped[H_VOCAB] = -hdr[H_VOCAB];
        if (qr_l2c_expected_size(flipped, path, &alt) == QR_OK && alt == (uint64_t)sb.st_size) {
            hint = "; the size fits the header with vocab_size negated: is the tied/untied "
                   "classifier flag flipped?";
        }
        st = qr_fail(QR_ERR_INPUT,
                     "%s: file size does not match its llama2.c v0 header (expected %" PRIu64
                     " bytes for dim %" PRId32 ", hidden_dim %" PRId32 ", n_layers %" PRId32
                     ", n_heads %" PRId32 ", n_kv_heads %" PRId32 ", vocab %" PRId32
                     " (%s classifier), seq_len %" PRId32 "; found %" PRIu64 " bytes%s)",
                     path, expected, hdr[H_DIM], hdr[H_HIDDEN], hdr[H_LAYERS], hdr[H_HEADS],
                     hdr[H_KV_HEADS], hdr[H_VOCAB] < 0 ? -hdr[H_VOCAB] : hdr[H_VOCAB],
                     hdr[H_VOCAB] < 0 ? "untied" : "tied", hdr[H_SEQ], (uint64_t)sb.st_size, hint);
        goto done;
    }
    QR_CHECK(header_layout(hdr, path, counts, offs, &floats));
    QR_CHECK(qr_calloc(&f, 1, sizeof *f, path));
    f->path = strdup(path);
    if (!f->path) {
        st = qr_fail(QR_ERR_NOMEM, "%s: cannot allocate the path", path);
        goto done;
    }
    f->map_size = (size_t)sb.st_size;
    f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        st = qr_fail(QR_ERR_IO, "%s: cannot map (%s)", path, strerror(errno));
        goto done;
    }
    n_tensors = 2 + (hdr[H_VOCAB] < 0) + (size_t)hdr[H_LAYERS] * L2C_PER_LAYER;
    QR_CHECK(qr_calloc(&f->tensors, n_tensors, sizeof *f->tensors, path));
    QR_CHECK(qr_calloc(&f->names, n_tensors, sizeof *f->names, path));
    build_tensors(f, hdr, offs);

    snprintf(f->cfg.arch, sizeof f->cfg.arch, "llama2c");
    f->cfg.dim = hdr[H_DIM];
    f->cfg.hidden_dim = hdr[H_HIDDEN];
    f->cfg.n_layers = hdr[H_LAYERS];
    f->cfg.n_heads = hdr[H_HEADS];
    f->cfg.n_kv_heads = hdr[H_KV_HEADS];
    f->cfg.head_dim = hdr[H_DIM] / hdr[H_HEADS];
    f->cfg.vocab_size = hdr[H_VOCAB] < 0 ? -(int64_t)hdr[H_VOCAB] : hdr[H_VOCAB];
    f->cfg.max_seq_len = hdr[H_SEQ];
    f->cfg.rms_eps = 1e-5;       /* run.c's rmsnorm constant */
    f->cfg.rope_theta = 10000.0; /* run.c's RoPE base */
    f->cfg.tied_embeddings = hdr[H_VOCAB] > 0;
    f->cfg.attn_bias = false;
    f->cfg.rope_style = QR_ROPE_INTERLEAVED;
    QR_CHECK(qr_config_validate(&f->cfg, path));
    *out = f;
    f = NULL;
done:
    if (fd >= 0) {
        close(fd);
    }
    qr_l2c_close(&f);
    return st;
}

void qr_l2c_close(qr_l2c_file **fp)
{
    qr_l2c_file *f;
    if (!fp || !*fp) {
        return;
    }
    f = *fp;
    if (f->map) {
        munmap(f->map, f->map_size);
    }
    free(f->tensors);
    free(f->names);
    free(f->path);
    free(f);
    *fp = NULL;
}

const qr_model_config *qr_l2c_config(const qr_l2c_file *f)
{
    return f ? &f->cfg : NULL;
}

const char *qr_l2c_path(const qr_l2c_file *f)
{
    return f ? f->path : NULL;
}

uint64_t qr_l2c_file_size(const qr_l2c_file *f)
{
    return f ? (uint64_t)f->map_size : 0;
}

const void *qr_l2c_head_bytes(const qr_l2c_file *f, size_t n, size_t *len)
{
    *len = f ? (n < f->map_size ? n : f->map_size) : 0;
    return f ? f->map : NULL;
}

size_t qr_l2c_count(const qr_l2c_file *f)
{
    return f ? f->count : 0;
}

const qr_st_tensor *qr_l2c_at(const qr_l2c_file *f, size_t i)
{
    return (f && i < f->count) ? &f->tensors[i] : NULL;
}

const qr_st_tensor *qr_l2c_find(const qr_l2c_file *f, const char *name)
{
    qr_st_tensor key;
    if (!f) {
        return NULL;
    }
    memset(&key, 0, sizeof key);
    key.name = name;
    return bsearch(&key, f->tensors, f->count, sizeof *f->tensors, cmp_tensor);
}

/* model.c: the unified view of a source model. It decides what a path holds (a Hugging Face folder
 * or a llama2.c checkpoint), opens it through io/safetensors or io/llama2c, and checks that every
 * tensor the config implies is present with the right shape and a float dtype, so that every later
 * stage can read tensors by name without checking again. */
#include "io/model.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "io/config.h"
#include "io/fs.h"
#include "io/llama2c.h"
#include "src/alloc.h"
#include "src/modules.h"

#define MODEL_PATH_MAX 4096
#define MODEL_NAME_MAX 128
/* llama2.c checkpoints have no header to hash, so the identity covers their first MiB (header,
 * embeddings) and IDENTITY_SAMPLES blocks of IDENTITY_SAMPLE_BYTES spread evenly to the last byte:
 * about 2 MiB read whatever the size, and every layer's weights of a small model are touched. */
#define IDENTITY_HEAD_BYTES ((uint64_t)1 << 20)
#define IDENTITY_SAMPLES 16
#define IDENTITY_SAMPLE_BYTES ((uint64_t)64 << 10)
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

struct qr_model {
    char *path;
    const char *format; /* static string */
    qr_model_config cfg;
    qr_st_model *st;  /* Hugging Face, or NULL */
    qr_l2c_file *l2c; /* llama2.c, or NULL */
    size_t count;
    const qr_st_tensor **tensors; /* (count), sorted by name, owned by st or l2c */
    size_t n_files;
    char **files;         /* (n_files) paths */
    uint64_t *file_sizes; /* (n_files) bytes */
    char *tokenizer;      /* NULL when none */
    char identity[24];    /* "xxh3-" and 16 hex digits: every byte of every file */
    char legacy[17];      /* the identity before 0.1 hardening: names, sizes, headers (FNV-1a) */
};

/* ---- small helpers --------------------------------------------------------------------------- */

static char *dup_str(const char *s)
{
    char *p = strdup(s);
    if (!p) {
        qr_fail(QR_ERR_NOMEM, "cannot allocate a copy of '%s'", s);
    }
    return p;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* The folder part of a file path ("." when none) into buf. */
static qr_status dir_name(const char *path, char *buf, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        return qr_fs_join(buf, size, ".", NULL);
    }
    if ((size_t)(slash - path) + 1 > size) {
        return qr_fail(QR_ERR_INPUT, "%s: path too long", path);
    }
    if (slash == path) {
        return qr_fs_join(buf, size, "/", NULL);
    }
    memcpy(buf, path, (size_t)(slash - path));
    buf[slash - path] = '\0';
    return QR_OK;
}

/* A tokenizer file in llama2.c format: tokenizer.bin or tok*.bin. */
static int is_tokenizer_name(const char *name)
{
    return ends_with(name, ".bin") && (starts_with(name, "tokenizer") || starts_with(name, "tok"));
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++) {
        free(names[i]);
    }
    free(names);
}

/* Names in `dir` ending in ".bin", sorted; tokenizer files go to *toks, the rest to *bins. Both
 * lists are allocated (entries too); free with free_names. */
static qr_status list_bins(const char *dir, char ***bins, size_t *n_bins, char ***toks,
                           size_t *n_toks)
{
    qr_status st = QR_OK;
    DIR *d = opendir(dir);
    struct dirent *e;
    char **lists[2] = {NULL, NULL};
    size_t counts[2] = {0, 0}, caps[2] = {0, 0};
    *bins = *toks = NULL;
    *n_bins = *n_toks = 0;
    if (!d) {
        return qr_fail(QR_ERR_INPUT, "%s: cannot list the folder (%s)", dir, strerror(errno));
    }
    while ((e = readdir(d)) != NULL) {
        int which;
        char **grown;
        if (!ends_with(e->d_name, ".bin") || e->d_name[0] == '.') {
            continue;
        }
        which = is_tokenizer_name(e->d_name) ? 1 : 0;
        if (counts[which] == caps[which]) {
            caps[which] = caps[which] ? 2 * caps[which] : 8;
            grown = realloc(lists[which], caps[which] * sizeof *grown);
            if (!grown) {
                st = qr_fail(QR_ERR_NOMEM, "%s: cannot allocate the file list", dir);
                goto done;
            }
            lists[which] = grown;
        }
        lists[which][counts[which]] = dup_str(e->d_name);
        if (!lists[which][counts[which]]) {
            st = QR_ERR_NOMEM;
            goto done;
        }
        counts[which]++;
    }
    for (int w = 0; w < 2; w++) {
        if (counts[w]) {
            qsort(lists[w], counts[w], sizeof *lists[w], cmp_str_ptr);
        }
    }
    *bins = lists[0], *n_bins = counts[0];
    *toks = lists[1], *n_toks = counts[1];
    lists[0] = lists[1] = NULL;
done:
    closedir(d);
    free_names(lists[0], counts[0]);
    free_names(lists[1], counts[1]);
    return st;
}

static qr_status add_file(qr_model *m, const char *path)
{
    char **files;
    uint64_t *sizes;
    uint64_t size = 0;
    QR_TRY(qr_fs_file_size(path, &size));
    files = realloc(m->files, (m->n_files + 1) * sizeof *files);
    if (!files) {
        return qr_fail(QR_ERR_NOMEM, "%s: cannot allocate the file list", path);
    }
    m->files = files;
    sizes = realloc(m->file_sizes, (m->n_files + 1) * sizeof *sizes);
    if (!sizes) {
        return qr_fail(QR_ERR_NOMEM, "%s: cannot allocate the file list", path);
    }
    m->file_sizes = sizes;
    m->files[m->n_files] = dup_str(path);
    if (!m->files[m->n_files]) {
        return QR_ERR_NOMEM;
    }
    m->file_sizes[m->n_files] = size;
    m->n_files++;
    return QR_OK;
}

/* ---- identity -------------------------------------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Hash bytes [off, off + n) of an open file, read in chunks. */
static qr_status hash_range(FILE *f, const char *path, uint64_t off, uint64_t n, uint64_t *h)
{
    unsigned char buf[1 << 16];
    if (fseeko(f, (off_t)off, SEEK_SET) != 0) {
        return qr_fail(QR_ERR_IO, "%s: cannot seek to byte %" PRIu64 " (%s)", path, off,
                       strerror(errno));
    }
    while (n > 0) {
        size_t want = n < sizeof buf ? (size_t)n : sizeof buf;
        if (fread(buf, 1, want, f) != want) {
            return qr_fail(QR_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
        }
        *h = fnv1a(*h, buf, want);
        n -= want;
    }
    return QR_OK;
}

/* The 8-byte little-endian header length at the start of a safetensors file. */
static qr_status st_header_length(FILE *f, const char *path, uint64_t *len)
{
    unsigned char b[8];
    *len = 0;
    if (fseeko(f, 0, SEEK_SET) != 0 || fread(b, 1, 8, f) != 8) {
        return qr_fail(QR_ERR_IO, "%s: cannot read the header length", path);
    }
    for (int i = 7; i >= 0; i--) {
        *len = (*len << 8) | b[i];
    }
    return QR_OK;
}

/* Hash what stands for a file's content: the 8-byte length and JSON header of a safetensors file
 * (its tensor table, which changes whenever the tensors do; the safetensors reader has checked that
 * it lies inside the file), config.json whole (bounded by its reader), and for a llama2.c
 * checkpoint the first MiB plus evenly spread samples. */
static qr_status hash_content(const char *path, uint64_t size, uint64_t *h)
{
    qr_status st = QR_OK;
    FILE *f = fopen(path, "rb");
    uint64_t len = 0;
    if (!f) {
        return qr_fail(QR_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    }
    if (ends_with(path, ".safetensors")) {
        QR_CHECK(st_header_length(f, path, &len));
        QR_CHECK(hash_range(f, path, 0, 8 + len, h));
    } else if (ends_with(path, ".json")) {
        QR_CHECK(hash_range(f, path, 0, size, h));
    } else {
        QR_CHECK(
            hash_range(f, path, 0, size < IDENTITY_HEAD_BYTES ? size : IDENTITY_HEAD_BYTES, h));
        if (size > IDENTITY_HEAD_BYTES + IDENTITY_SAMPLE_BYTES) {
            uint64_t last = size - IDENTITY_SAMPLE_BYTES; /* offset of the final block */
            for (uint64_t k = 0; k < IDENTITY_SAMPLES; k++) {
                uint64_t off =
                    IDENTITY_HEAD_BYTES + (last - IDENTITY_HEAD_BYTES) / (IDENTITY_SAMPLES - 1) * k;
                if (k == IDENTITY_SAMPLES - 1) {
                    off = last;
                }
                QR_CHECK(hash_range(f, path, off, IDENTITY_SAMPLE_BYTES, h));
            }
        }
    }
done:
    fclose(f);
    return st;
}

static qr_status compute_legacy_identity(qr_model *m);

/* XXH3 of a whole file, streamed in 1 MiB reads (the page cache then serves the weights' reads). */
static qr_status hash_file(XXH3_state_t *x, const char *path)
{
    qr_status st = QR_OK;
    unsigned char *buf = NULL;
    FILE *f = fopen(path, "rb");
    size_t n;
    if (!f) {
        return qr_fail(QR_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    }
    QR_CHECK(qr_malloc(&buf, (size_t)1 << 20, 1, "identity buffer"));
    while ((n = fread(buf, 1, (size_t)1 << 20, f)) > 0) {
        XXH3_64bits_update(x, buf, n);
    }
    if (ferror(f)) {
        st = qr_fail(QR_ERR_IO, "%s: cannot read (%s)", path, strerror(errno));
    }
done:
    free(buf);
    fclose(f);
    return st;
}

static qr_status compute_identity(qr_model *m)
{
    qr_status st = QR_OK;
    XXH3_state_t *x = XXH3_createState();
    if (!x || XXH3_64bits_reset(x) == XXH_ERROR) {
        XXH3_freeState(x);
        return qr_fail(QR_ERR_NOMEM, "%s: cannot set up the identity hash", m->path);
    }
    for (size_t i = 0; i < m->n_files && st == QR_OK; i++) {
        const char *name = base_name(m->files[i]);
        unsigned char size_le[8];
        for (int b = 0; b < 8; b++) {
            size_le[b] = (unsigned char)(m->file_sizes[i] >> (8 * b));
        }
        XXH3_64bits_update(x, name, strlen(name) + 1);
        XXH3_64bits_update(x, size_le, sizeof size_le);
        st = hash_file(x, m->files[i]);
    }
    if (st == QR_OK) {
        snprintf(m->identity, sizeof m->identity, "xxh3-%016" PRIx64,
                 (uint64_t)XXH3_64bits_digest(x));
    }
    XXH3_freeState(x);
    return st;
}

static qr_status compute_legacy_identity(qr_model *m)
{
    uint64_t h = FNV_OFFSET;
    for (size_t i = 0; i < m->n_files; i++) {
        const char *name = base_name(m->files[i]);
        unsigned char size_le[8];
        for (int b = 0; b < 8; b++) {
            size_le[b] = (unsigned char)(m->file_sizes[i] >> (8 * b));
        }
        h = fnv1a(h, name, strlen(name) + 1);
        h = fnv1a(h, size_le, sizeof size_le);
        QR_TRY(hash_content(m->files[i], m->file_sizes[i], &h));
    }
    snprintf(m->legacy, sizeof m->legacy, "%016" PRIx64, h);
    return QR_OK;
}

/* ---- tensor checks --------------------------------------------------------------------------- */

static void shape_text(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t used = 0;
    used += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++) {
        used += (size_t)snprintf(buf + used, size - used, "%s%" PRId64, i ? ", " : "", shape[i]);
    }
    if (used < size) {
        snprintf(buf + used, size - used, "]");
    }
}

/* The tensor `name` must exist with shape (rows, cols) (cols 0 = a vector of rows) and a float
 * dtype. `optional`: absence is fine, but a present tensor must still have the right shape. */
static qr_status expect_tensor(const qr_model *m, const char *name, int64_t rows, int64_t cols,
                               int optional)
{
    const qr_st_tensor *t = qr_model_tensor(m, name);
    int64_t want[2] = {rows, cols};
    int ndim = cols ? 2 : 1;
    char want_text[64], found_text[160];
    shape_text(want_text, sizeof want_text, ndim, want);
    if (!t) {
        if (optional) {
            return QR_OK;
        }
        return qr_fail(QR_ERR_INPUT, "%s: tensor '%s' is missing (expected shape %s)", m->path,
                       name, want_text);
    }
    if (t->ndim != ndim || t->shape[0] != rows || (ndim == 2 && t->shape[1] != cols)) {
        shape_text(found_text, sizeof found_text, t->ndim, t->shape);
        return qr_fail(QR_ERR_INPUT, "%s: tensor '%s' has the wrong shape (expected %s, found %s)",
                       t->path, name, want_text, found_text);
    }
    if (t->dtype != QR_DTYPE_F32 && t->dtype != QR_DTYPE_F16 && t->dtype != QR_DTYPE_BF16 &&
        t->dtype != QR_DTYPE_F64) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: tensor '%s' has a non-float dtype (expected F32, F16, BF16 or F64, "
                       "found %s)",
                       t->path, name, qr_dtype_name(t->dtype));
    }
    return QR_OK;
}

/* Every tensor the config implies: embeddings, final norm, the classifier when untied (checked
 * when present if tied), per layer the two norms and the seven linear modules (shapes from
 * qr_modules_enumerate, the one place they are defined), and the qwen2 q/k/v biases. Tensors the
 * config does not imply (e.g. rotary_emb.inv_freq of old exports) are allowed and left alone. */
static qr_status check_tensors(const qr_model *m)
{
    qr_status st = QR_OK;
    const qr_model_config *c = &m->cfg;
    qr_module *mods = NULL;
    size_t n_mods = 0;
    char name[MODEL_NAME_MAX];
    QR_CHECK(expect_tensor(m, "model.embed_tokens.weight", c->vocab_size, c->dim, 0));
    QR_CHECK(expect_tensor(m, "model.norm.weight", c->dim, 0, 0));
    QR_CHECK(expect_tensor(m, "lm_head.weight", c->vocab_size, c->dim, c->tied_embeddings));
    for (int64_t l = 0; l < c->n_layers; l++) {
        snprintf(name, sizeof name, "model.layers.%" PRId64 ".input_layernorm.weight", l);
        QR_CHECK(expect_tensor(m, name, c->dim, 0, 0));
        snprintf(name, sizeof name, "model.layers.%" PRId64 ".post_attention_layernorm.weight", l);
        QR_CHECK(expect_tensor(m, name, c->dim, 0, 0));
    }
    QR_CHECK(qr_modules_enumerate(c, &mods, &n_mods));
    for (size_t i = 0; i < n_mods; i++) {
        snprintf(name, sizeof name, "%s.weight", mods[i].name);
        QR_CHECK(expect_tensor(m, name, mods[i].d_out, mods[i].d_in, 0));
        if (c->attn_bias && mods[i].input == QR_INPUT_ATTN) {
            snprintf(name, sizeof name, "%s.bias", mods[i].name);
            QR_CHECK(expect_tensor(m, name, mods[i].d_out, 0, 0));
        }
    }
done:
    free(mods);
    return st;
}

/* No weight may be a NaN or an infinity: it would pass through every method and kernel into a
 * checkpoint (or a perplexity of nan). Checked on the stored bits of what is read (count elements
 * of t from element `first`), so commands that never read the weights (plan, inspect) do not pay;
 * the first one is named by file, tensor, row and column (element index for a vector). */
static qr_status check_span(const qr_st_tensor *t, const void *src, size_t count, size_t first)
{
    size_t k = qr_first_nonfinite(t->dtype, src, count);
    float v = 0.0f;
    int64_t cols;
    if (k == count) {
        return QR_OK;
    }
    cols = t->ndim >= 2 && t->shape[0] > 0 ? t->numel / t->shape[0] : 0;
    qr_convert_to_f32(t->dtype, (const unsigned char *)src + k * qr_dtype_size(t->dtype), 1, &v);
    k += first;
    if (cols > 0) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: tensor '%s': value at row %lld, column %lld is not finite (expected a "
                       "finite weight, found %g)",
                       t->path, t->name, (long long)((int64_t)k / cols),
                       (long long)((int64_t)k % cols), (double)v);
    }
    return qr_fail(
        QR_ERR_INPUT,
        "%s: tensor '%s': element %zu is not finite (expected a finite weight, found %g)", t->path,
        t->name, k, (double)v);
}

/* ---- opening --------------------------------------------------------------------------------- */

/* The tokenizer beside the model in `dir`: tokenizer.bin, else the first tok*.bin by name. */
static qr_status find_tokenizer(qr_model *m, const char *dir)
{
    qr_status st = QR_OK;
    char **bins = NULL, **toks = NULL;
    size_t n_bins = 0, n_toks = 0;
    char path[MODEL_PATH_MAX];
    const char *pick = NULL;
    QR_CHECK(list_bins(dir, &bins, &n_bins, &toks, &n_toks));
    for (size_t i = 0; i < n_toks && !pick; i++) {
        if (strcmp(toks[i], "tokenizer.bin") == 0) {
            pick = toks[i];
        }
    }
    if (!pick && n_toks) {
        pick = toks[0];
    }
    if (pick) {
        QR_CHECK(qr_fs_join(path, sizeof path, dir, pick));
        m->tokenizer = dup_str(path);
        if (!m->tokenizer) {
            st = QR_ERR_NOMEM;
        }
    }
done:
    free_names(bins, n_bins);
    free_names(toks, n_toks);
    return st;
}

/* A Hugging Face model: `dir` holds config.json; `st_path` is the folder or a .safetensors file. */
static qr_status open_hf(qr_model *m, const char *dir, const char *st_path)
{
    char config[MODEL_PATH_MAX];
    QR_TRY(qr_fs_join(config, sizeof config, dir, "config.json"));
    QR_TRY(qr_config_read(config, &m->cfg));
    QR_TRY(qr_st_model_open(st_path, &m->st));
    m->format = "safetensors";
    m->count = qr_st_model_count(m->st);
    QR_TRY(qr_calloc(&m->tensors, m->count, sizeof *m->tensors, m->path));
    for (size_t i = 0; i < m->count; i++) {
        m->tensors[i] = qr_st_model_at(m->st, i);
    }
    QR_TRY(add_file(m, config));
    for (size_t i = 0; i < qr_st_model_shard_count(m->st); i++) {
        QR_TRY(add_file(m, qr_st_model_shard_path(m->st, i)));
    }
    return find_tokenizer(m, dir);
}

static qr_status open_l2c(qr_model *m, const char *bin)
{
    char dir[MODEL_PATH_MAX];
    QR_TRY(qr_l2c_open(bin, &m->l2c));
    m->cfg = *qr_l2c_config(m->l2c);
    m->format = "llama2c";
    m->count = qr_l2c_count(m->l2c);
    QR_TRY(qr_calloc(&m->tensors, m->count, sizeof *m->tensors, m->path));
    for (size_t i = 0; i < m->count; i++) {
        m->tensors[i] = qr_l2c_at(m->l2c, i);
    }
    QR_TRY(add_file(m, bin));
    QR_TRY(dir_name(bin, dir, sizeof dir));
    return find_tokenizer(m, dir);
}

/* A folder without config.json: it must hold exactly one llama2.c checkpoint (*.bin other than the
 * tokenizer). */
static qr_status open_l2c_dir(qr_model *m, const char *dir)
{
    qr_status st = QR_OK;
    char **bins = NULL, **toks = NULL;
    size_t n_bins = 0, n_toks = 0;
    char path[MODEL_PATH_MAX];
    QR_CHECK(list_bins(dir, &bins, &n_bins, &toks, &n_toks));
    if (n_bins == 0) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: no model here (expected config.json with model.safetensors or "
                     "model.safetensors.index.json, or one llama2.c .bin checkpoint)",
                     dir);
        goto done;
    }
    if (n_bins > 1) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: more than one llama2.c checkpoint (expected one .bin besides the "
                     "tokenizer, found %zu: %s, %s%s); name the file instead",
                     dir, n_bins, bins[0], bins[1], n_bins > 2 ? ", ..." : "");
        goto done;
    }
    QR_CHECK(qr_fs_join(path, sizeof path, dir, bins[0]));
    QR_CHECK(open_l2c(m, path));
done:
    free_names(bins, n_bins);
    free_names(toks, n_toks);
    return st;
}

qr_status qr_model_open(const char *path, qr_model **out)
{
    qr_status st = QR_OK;
    qr_model *m = NULL;
    char buf[MODEL_PATH_MAX];
    *out = NULL;
    if (!qr_fs_exists(path)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: not found (expected a model folder or a llama2.c .bin checkpoint)",
                       path);
    }
    QR_CHECK(qr_calloc(&m, 1, sizeof *m, path));
    m->path = dup_str(path);
    if (!m->path) {
        st = QR_ERR_NOMEM;
        goto done;
    }
    if (qr_fs_is_dir(path)) {
        QR_CHECK(qr_fs_join(buf, sizeof buf, path, "config.json"));
        if (qr_fs_exists(buf)) {
            QR_CHECK(open_hf(m, path, path));
        } else {
            QR_CHECK(open_l2c_dir(m, path));
        }
    } else if (ends_with(path, ".safetensors")) {
        QR_CHECK(dir_name(path, buf, sizeof buf));
        QR_CHECK(open_hf(m, buf, path));
    } else if (ends_with(path, ".bin")) {
        QR_CHECK(open_l2c(m, path));
    } else {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: not a model (expected a folder, a llama2.c .bin checkpoint or a "
                     ".safetensors file with config.json beside it)",
                     path);
        goto done;
    }
    QR_CHECK(check_tensors(m));
    QR_CHECK(compute_legacy_identity(m));
    *out = m;
    m = NULL;
done:
    qr_model_close(&m);
    return st;
}

void qr_model_close(qr_model **mp)
{
    qr_model *m;
    if (!mp || !*mp) {
        return;
    }
    m = *mp;
    qr_st_model_close(&m->st);
    qr_l2c_close(&m->l2c);
    free(m->tensors);
    free_names(m->files, m->n_files);
    free(m->file_sizes);
    free(m->tokenizer);
    free(m->path);
    free(m);
    *mp = NULL;
}

/* ---- queries --------------------------------------------------------------------------------- */

const qr_model_config *qr_model_get_config(const qr_model *m)
{
    return m ? &m->cfg : NULL;
}

const char *qr_model_path(const qr_model *m)
{
    return m ? m->path : NULL;
}

const char *qr_model_tokenizer_path(const qr_model *m)
{
    return m ? m->tokenizer : NULL;
}

const char *qr_model_identity(const qr_model *m)
{
    if (!m) {
        return NULL;
    }
    if (m->identity[0] == '\0') {
        /* Computed when first asked (capture, quantize, validate, eval --ckpt, inspect): it reads
         * every byte, which commands that never read the weights (plan) should not pay. */
        qr_model *mm = (qr_model *)m;
        char saved[QR_ERRMSG_MAX];
        snprintf(saved, sizeof saved, "%s", qr_errmsg());
        if (compute_identity(mm) != QR_OK) {
            snprintf(mm->identity, sizeof mm->identity, "xxh3-unreadable");
        }
        qr_set_errmsg(saved);
    }
    return m->identity;
}

void qr_model_set_identity(qr_model *m, const char *identity)
{
    snprintf(m->identity, sizeof m->identity, "%s", identity);
}

bool qr_model_identity_matches(const qr_model *m, const char *stored)
{
    return m && stored &&
           (strcmp(stored, qr_model_identity(m)) == 0 || strcmp(stored, m->legacy) == 0);
}

const char *qr_model_format(const qr_model *m)
{
    return m ? m->format : NULL;
}

size_t qr_model_file_count(const qr_model *m)
{
    return m ? m->n_files : 0;
}

const char *qr_model_file_path(const qr_model *m, size_t i)
{
    return (m && i < m->n_files) ? m->files[i] : NULL;
}

uint64_t qr_model_file_size(const qr_model *m, size_t i)
{
    return (m && i < m->n_files) ? m->file_sizes[i] : 0;
}

size_t qr_model_tensor_count(const qr_model *m)
{
    return m ? m->count : 0;
}

const char *qr_model_tensor_name(const qr_model *m, size_t i)
{
    return (m && i < m->count) ? m->tensors[i]->name : NULL;
}

const qr_st_tensor *qr_model_tensor(const qr_model *m, const char *name)
{
    if (!m) {
        return NULL;
    }
    return m->st ? qr_st_model_find(m->st, name) : qr_l2c_find(m->l2c, name);
}

static qr_status find_or_fail(const qr_model *m, const char *name, const qr_st_tensor **t)
{
    *t = qr_model_tensor(m, name);
    if (!*t) {
        return qr_fail(QR_ERR_INPUT, "%s: tensor '%s' not found", m ? m->path : "(no model)", name);
    }
    return QR_OK;
}

qr_status qr_model_tensor_info(const qr_model *m, const char *name, qr_dtype *dtype, int *ndim,
                               int64_t shape[8])
{
    const qr_st_tensor *t;
    QR_TRY(find_or_fail(m, name, &t));
    if (dtype) {
        *dtype = t->dtype;
    }
    if (ndim) {
        *ndim = t->ndim;
    }
    if (shape) {
        for (int i = 0; i < 8; i++) {
            shape[i] = i < t->ndim ? t->shape[i] : 0;
        }
    }
    return QR_OK;
}

qr_status qr_model_read_f32(const qr_model *m, const char *name, float *dst, size_t n)
{
    const qr_st_tensor *t;
    QR_TRY(find_or_fail(m, name, &t));
    QR_TRY(qr_st_read_f32(t, dst, n));
    QR_TRY(check_span(t, t->data, (size_t)t->numel, 0));
    qr_st_release(t->data, t->nbytes); /* read once: not resident to the end */
    return QR_OK;
}

qr_status qr_model_read_f64(const qr_model *m, const char *name, double *dst, size_t n)
{
    const qr_st_tensor *t;
    QR_TRY(find_or_fail(m, name, &t));
    QR_TRY(qr_st_read_f64(t, dst, n));
    QR_TRY(check_span(t, t->data, (size_t)t->numel, 0));
    qr_st_release(t->data, t->nbytes);
    return QR_OK;
}

/* Locate rows [row0, row0 + nrows) of `name`: *src = their first byte, *count = their elements. */
static qr_status row_span(const qr_model *m, const char *name, int64_t row0, int64_t nrows,
                          size_t n, const void **src, size_t *count)
{
    const qr_st_tensor *t;
    int64_t rows, per_row = 1;
    QR_TRY(find_or_fail(m, name, &t));
    rows = t->ndim > 0 ? t->shape[0] : 1;
    for (int i = 1; i < t->ndim; i++) {
        per_row *= t->shape[i]; /* cannot overflow: the product is numel, checked by the reader */
    }
    if (row0 < 0 || nrows < 0 || row0 > rows || nrows > rows - row0) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: tensor '%s': rows [%" PRId64 ", %" PRId64 ") out of range (expected "
                       "within [0, %" PRId64 "))",
                       t->path, name, row0, row0 + nrows, rows);
    }
    if ((int64_t)n != nrows * per_row) {
        return qr_fail(QR_ERR_INTERNAL,
                       "%s: tensor '%s': read of %" PRId64 " rows into a buffer of the wrong size "
                       "(expected %" PRId64 " elements, found %zu)",
                       t->path, name, nrows, nrows * per_row, n);
    }
    *src = (const unsigned char *)t->data + (size_t)(row0 * per_row) * qr_dtype_size(t->dtype);
    *count = n;
    return QR_OK;
}

qr_status qr_model_read_rows_f32(const qr_model *m, const char *name, int64_t row0, int64_t nrows,
                                 float *dst, size_t n)
{
    const void *src = NULL;
    size_t count = 0;
    const qr_st_tensor *t = qr_model_tensor(m, name);
    QR_TRY(row_span(m, name, row0, nrows, n, &src, &count));
    QR_TRY(check_span(t, src, count,
                      (size_t)((const unsigned char *)src - (const unsigned char *)t->data) /
                          qr_dtype_size(t->dtype)));
    qr_convert_to_f32(t->dtype, src, count, dst);
    qr_st_release(src, count * qr_dtype_size(t->dtype));
    return QR_OK;
}

qr_status qr_model_read_rows_f64(const qr_model *m, const char *name, int64_t row0, int64_t nrows,
                                 double *dst, size_t n)
{
    const void *src = NULL;
    size_t count = 0;
    const qr_st_tensor *t = qr_model_tensor(m, name);
    QR_TRY(row_span(m, name, row0, nrows, n, &src, &count));
    QR_TRY(check_span(t, src, count,
                      (size_t)((const unsigned char *)src - (const unsigned char *)t->data) /
                          qr_dtype_size(t->dtype)));
    qr_convert_to_f64(t->dtype, src, count, dst);
    qr_st_release(src, count * qr_dtype_size(t->dtype));
    return QR_OK;
}

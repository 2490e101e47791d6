/* safetensors.c: the safetensors reader (one file, or a sharded folder through its index) and the
 * streaming writer. Every source model enters qrecon through here, so every byte of a header is
 * checked before a tensor pointer is handed out: the rest of the pipeline trusts qr_st_tensor.
 *
 * Reading maps the file read-only (MAP_PRIVATE); tensors point into the mapping and are converted
 * on request, one at a time, so a 405B shard costs address space, not memory. */
#define _DEFAULT_SOURCE /* madvise(MADV_DONTNEED): posix_madvise's is a no-op on Linux */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/fs.h"
#include "src/alloc.h"
#include "src/checked.h"

#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"
/* An index of a 405B model is about 100 KB; 64 MiB leaves room and still bounds a hostile file. */
#define ST_INDEX_MAX ((size_t)64 << 20)
#define ST_PATH_MAX 4096
#define ST_SHAPE_TEXT 160

struct qr_st_file {
    char *path;
    unsigned char *map; /* (map_size) bytes, read-only */
    size_t map_size;
    json_t *header;   /* the parsed header: owns the tensor names */
    json_t *metadata; /* borrowed from header: "__metadata__" or NULL */
    size_t count;
    qr_st_tensor *tensors;        /* (count), in data-offset order */
    const qr_st_tensor **by_name; /* (count), sorted by name */
};

struct qr_st_model {
    char *dir;
    size_t n_shards;
    qr_st_file **shards; /* (n_shards), sorted by file name */
    size_t count;
    const qr_st_tensor **sorted; /* (count), sorted by name */
};

/* One parsed header entry before the overlap check. */
typedef struct {
    qr_st_tensor t;
    uint64_t begin, end; /* relative to the data section */
} st_entry;

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) {
        memcpy(p, s, n);
    }
    return p;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    const qr_st_tensor *x = *(const qr_st_tensor *const *)a;
    const qr_st_tensor *y = *(const qr_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_entry_offset(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) {
        return x->begin < y->begin ? -1 : 1;
    }
    if (x->end != y->end) {
        return x->end < y->end ? -1 : 1;
    }
    return strcmp(x->t.name, y->t.name);
}

static const qr_st_tensor *find_sorted(const qr_st_tensor *const *sorted, size_t n,
                                       const char *name)
{
    qr_st_tensor key = {.name = name};
    const qr_st_tensor *kp = &key;
    const qr_st_tensor *const *hit;
    if (!sorted || !name) {
        return NULL;
    }
    hit = bsearch(&kp, sorted, n, sizeof *sorted, cmp_tensor_name);
    return hit ? *hit : NULL;
}

static void format_shape(char *buf, size_t size, json_t *shape)
{
    size_t used = 0, i;
    json_t *v;
    int n = snprintf(buf, size, "[");
    used = n > 0 ? (size_t)n : 0;
    json_array_foreach(shape, i, v)
    {
        n = snprintf(buf + used, size - used, "%s%" JSON_INTEGER_FORMAT, i ? ", " : "",
                     json_integer_value(v));
        if (n < 0 || (size_t)n >= size - used) {
            snprintf(buf + size - 5, 5, "...]");
            return;
        }
        used += (size_t)n;
    }
    snprintf(buf + used, size - used, "]");
}

/* Read one non-negative JSON integer into *out; false when v is not one. */
static int json_to_u64(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return 0;
    }
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

/* Validate one header entry `name` -> `v` and fill e (data pointer set later). */
static qr_status parse_entry(const char *path, const char *name, json_t *v, uint64_t data_size,
                             st_entry *e)
{
    json_t *dtype, *shape, *offsets, *dim;
    size_t i, numel = 1, nbytes;
    char shape_text[ST_SHAPE_TEXT];
    if (!json_is_object(v)) {
        return qr_fail(QR_ERR_INPUT, "%s: tensor '%s': header entry is not an object", path, name);
    }
    dtype = json_object_get(v, "dtype");
    shape = json_object_get(v, "shape");
    offsets = json_object_get(v, "data_offsets");
    if (!json_is_string(dtype)) {
        return qr_fail(QR_ERR_INPUT, "%s: tensor '%s': \"dtype\" missing or not a string", path,
                       name);
    }
    e->t.name = name;
    e->t.path = path;
    e->t.dtype = qr_dtype_parse(json_string_value(dtype));
    if (e->t.dtype == QR_DTYPE_INVALID) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: tensor '%s': unknown dtype (expected one of F32 F16 BF16 F64, found "
                       "'%s')",
                       path, name, json_string_value(dtype));
    }
    if (!json_is_array(shape)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: tensor '%s': \"shape\" missing or not a list (expected a list of "
                       "non-negative integers)",
                       path, name);
    }
    if (json_array_size(shape) > QR_ST_MAX_DIMS) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: tensor '%s': too many dimensions (expected at most %d, found %zu)",
                       path, name, QR_ST_MAX_DIMS, json_array_size(shape));
    }
    e->t.ndim = (int)json_array_size(shape);
    json_array_foreach(shape, i, dim)
    {
        uint64_t d;
        if (!json_to_u64(dim, &d) || d > (uint64_t)INT64_MAX) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: tensor '%s': shape entry %zu is not a non-negative integer "
                           "(expected a list of non-negative integers)",
                           path, name, i);
        }
        e->t.shape[i] = (int64_t)d;
    }
    format_shape(shape_text, sizeof shape_text, shape);
    for (i = 0; i < (size_t)e->t.ndim; i++) {
        if (!qr_mul_size(numel, (size_t)e->t.shape[i], &numel)) {
            return qr_fail(QR_ERR_INPUT, "%s: tensor '%s': element count of shape %s overflows",
                           path, name, shape_text);
        }
    }
    if (!qr_mul_size(numel, qr_dtype_size(e->t.dtype), &nbytes) || numel > (size_t)INT64_MAX) {
        return qr_fail(QR_ERR_INPUT, "%s: tensor '%s': byte count of shape %s overflows", path,
                       name, shape_text);
    }
    e->t.numel = (int64_t)numel;
    e->t.nbytes = nbytes;
    if (!json_is_array(offsets) || json_array_size(offsets) != 2 ||
        !json_to_u64(json_array_get(offsets, 0), &e->begin) ||
        !json_to_u64(json_array_get(offsets, 1), &e->end)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: tensor '%s': \"data_offsets\" must be two non-negative integers "
                       "[begin, end]",
                       path, name);
    }
    if (e->begin > e->end) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: tensor '%s': data_offsets begin after end (expected begin <= end, "
                       "found [%" PRIu64 ", %" PRIu64 "])",
                       path, name, e->begin, e->end);
    }
    if (e->end - e->begin != (uint64_t)nbytes) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: tensor '%s': shape %s of %s does not match data_offsets [%" PRIu64
                       ", %" PRIu64 "] (expected %zu bytes, found %" PRIu64 ")",
                       path, name, shape_text, qr_dtype_name(e->t.dtype), e->begin, e->end, nbytes,
                       e->end - e->begin);
    }
    if (e->end > data_size) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                       "] run past the end of the data section (expected end <= %" PRIu64
                       ", found %" PRIu64 "; truncated file?)",
                       path, name, e->begin, e->end, data_size, e->end);
    }
    return QR_OK;
}

static qr_status check_metadata(const char *path, json_t *meta)
{
    const char *key;
    json_t *v;
    if (!json_is_object(meta)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: \"__metadata__\" is not an object (expected an object of strings)",
                       path);
    }
    json_object_foreach(meta, key, v)
    {
        if (!json_is_string(v)) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: \"__metadata__\" entry '%s' is not a string (expected an object "
                           "of strings)",
                           path, key);
        }
    }
    return QR_OK;
}

/* Parse and validate the header of an open mapping; fills f->tensors and f->by_name. */
static qr_status parse_header(qr_st_file *f)
{
    qr_status st = QR_OK;
    uint64_t hlen = 0, data_size;
    json_error_t jerr;
    st_entry *entries = NULL;
    size_t n = 0, i;
    const char *key;
    json_t *v;
    if (f->map_size < 8) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: file too short for a safetensors header (expected at least 8 bytes, "
                       "found %zu)",
                       f->path, f->map_size);
    }
    for (i = 0; i < 8; i++) {
        hlen |= (uint64_t)f->map[i] << (8 * i);
    }
    if (hlen == 0) {
        return qr_fail(QR_ERR_INPUT, "%s: header length is 0 (expected a JSON header)", f->path);
    }
    if (hlen > QR_ST_HEADER_MAX) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: header longer than the limit (expected at most %u bytes, found "
                       "%" PRIu64 ")",
                       f->path, QR_ST_HEADER_MAX, hlen);
    }
    if (hlen > f->map_size - 8) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: header length past the end of the file (expected at most %zu bytes "
                       "after the length, found a header length of %" PRIu64 ")",
                       f->path, f->map_size - 8, hlen);
    }
    data_size = f->map_size - 8 - hlen;
    /* Every tensor entry is a JSON object, so the '{' count bounds the tensor count: refuse a
     * header that lists too many before the JSON parser spends memory on it. */
    for (i = 0, n = 0; i < (size_t)hlen; i++) {
        n += f->map[8 + i] == '{';
    }
    if (n > QR_ST_MAX_TENSORS + 2) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: header lists too many tensors (expected at most %u, found about %zu; "
                       "limits in docs/limits.md)",
                       f->path, QR_ST_MAX_TENSORS, n - 1);
    }
    n = 0;
    f->header = json_loadb((const char *)f->map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!f->header) {
        return qr_fail(QR_ERR_INPUT, "%s: malformed JSON header at line %d, column %d: %s", f->path,
                       jerr.line, jerr.column, jerr.text);
    }
    if (!json_is_object(f->header)) {
        return qr_fail(QR_ERR_INPUT, "%s: header is not a JSON object", f->path);
    }
    QR_CHECK(qr_calloc(&entries, json_object_size(f->header), sizeof *entries, f->path));
    json_object_foreach(f->header, key, v)
    {
        if (strcmp(key, "__metadata__") == 0) {
            QR_CHECK(check_metadata(f->path, v));
            f->metadata = v;
            continue;
        }
        QR_CHECK(parse_entry(f->path, key, v, data_size, &entries[n]));
        n++;
    }
    qsort(entries, n, sizeof *entries, cmp_entry_offset);
    for (i = 1; i < n; i++) {
        if (entries[i].begin < entries[i - 1].end) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                         "] overlap tensor '%s' at [%" PRIu64 ", %" PRIu64
                         "] (expected begin >= %" PRIu64 ")",
                         f->path, entries[i].t.name, entries[i].begin, entries[i].end,
                         entries[i - 1].t.name, entries[i - 1].begin, entries[i - 1].end,
                         entries[i - 1].end);
            goto done;
        }
    }
    QR_CHECK(qr_calloc(&f->tensors, n, sizeof *f->tensors, f->path));
    QR_CHECK(qr_calloc(&f->by_name, n, sizeof *f->by_name, f->path));
    for (i = 0; i < n; i++) {
        f->tensors[i] = entries[i].t;
        f->tensors[i].data = f->map + 8 + hlen + entries[i].begin;
        f->by_name[i] = &f->tensors[i];
    }
    f->count = n;
    qsort(f->by_name, n, sizeof *f->by_name, cmp_tensor_name);
done:
    free(entries);
    return st;
}

qr_status qr_st_open(const char *path, qr_st_file **out)
{
    qr_status st = QR_OK;
    qr_st_file *f = NULL;
    struct stat sb;
    int fd = -1;
    *out = NULL;
    QR_CHECK(qr_calloc(&f, 1, sizeof *f, path));
    f->path = dup_str(path);
    if (!f->path) {
        st = qr_fail(QR_ERR_NOMEM, "%s: cannot allocate the path", path);
        goto done;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = qr_fail(QR_ERR_INPUT, "%s: cannot open (%s)", path, strerror(errno));
        goto done;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = qr_fail(QR_ERR_INPUT, "%s: not a regular file (expected a safetensors file)", path);
        goto done;
    }
    f->map_size = (size_t)sb.st_size;
    if (f->map_size >= 8) {
        void *m = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            st = qr_fail(QR_ERR_IO, "%s: cannot map %zu bytes (%s)", path, f->map_size,
                         strerror(errno));
            goto done;
        }
        f->map = m;
    }
    QR_CHECK(parse_header(f));
    *out = f;
    f = NULL;
done:
    if (fd >= 0) {
        close(fd);
    }
    qr_st_close(&f);
    return st;
}

void qr_st_release(const void *data, size_t bytes)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)data & ~(page - 1),
              hi = ((uintptr_t)data + bytes + page - 1) & ~(page - 1);
    if (bytes > 0) { /* read-only private file pages: nothing is lost (advice, so not checked) */
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
}

void qr_st_close(qr_st_file **fp)
{
    qr_st_file *f;
    if (!fp || !*fp) {
        return;
    }
    f = *fp;
    if (f->map) {
        munmap(f->map, f->map_size);
    }
    json_decref(f->header);
    free(f->tensors);
    free(f->by_name);
    free(f->path);
    free(f);
    *fp = NULL;
}

size_t qr_st_count(const qr_st_file *f)
{
    return f ? f->count : 0;
}

const qr_st_tensor *qr_st_at(const qr_st_file *f, size_t i)
{
    return (f && i < f->count) ? &f->tensors[i] : NULL;
}

const qr_st_tensor *qr_st_find(const qr_st_file *f, const char *name)
{
    return f ? find_sorted(f->by_name, f->count, name) : NULL;
}

const char *qr_st_path(const qr_st_file *f)
{
    return f ? f->path : NULL;
}

const char *qr_st_metadata(const qr_st_file *f, const char *key)
{
    return (f && f->metadata) ? json_string_value(json_object_get(f->metadata, key)) : NULL;
}

/* ---- model folders --------------------------------------------------------------------------- */

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A shard name must be a plain file name inside the folder. */
static int plain_file_name(const char *s)
{
    return s[0] != '\0' && strchr(s, '/') == NULL && strchr(s, '\\') == NULL &&
           strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static qr_status model_collect(qr_st_model *m)
{
    size_t total = 0, k = 0;
    for (size_t s = 0; s < m->n_shards; s++) {
        total += qr_st_count(m->shards[s]);
    }
    QR_TRY(qr_calloc(&m->sorted, total, sizeof *m->sorted, m->dir));
    for (size_t s = 0; s < m->n_shards; s++) {
        for (size_t i = 0; i < qr_st_count(m->shards[s]); i++) {
            m->sorted[k++] = qr_st_at(m->shards[s], i);
        }
    }
    m->count = total;
    qsort(m->sorted, total, sizeof *m->sorted, cmp_tensor_name);
    for (size_t i = 1; i < total; i++) {
        if (strcmp(m->sorted[i]->name, m->sorted[i - 1]->name) == 0) {
            return qr_fail(QR_ERR_INPUT, "%s: tensor '%s' is stored twice (in %s and %s)", m->dir,
                           m->sorted[i]->name, m->sorted[i - 1]->path, m->sorted[i]->path);
        }
    }
    return QR_OK;
}

static qr_status model_open_index(qr_st_model *m, const char *index_path)
{
    qr_status st = QR_OK;
    char *text = NULL;
    size_t size = 0, n_names = 0;
    json_t *root = NULL, *map, *v;
    json_error_t jerr;
    const char **names = NULL; /* (json_object_size(map)) distinct shard names, sorted */
    const char *key;
    char shard_path[ST_PATH_MAX];
    QR_CHECK(qr_fs_read_all(index_path, ST_INDEX_MAX, &text, &size));
    root = json_loadb(text, size, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        st = qr_fail(QR_ERR_INPUT, "%s: malformed JSON at line %d, column %d: %s", index_path,
                     jerr.line, jerr.column, jerr.text);
        goto done;
    }
    map = json_object_get(root, "weight_map");
    if (!json_is_object(map) || json_object_size(map) == 0) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: \"weight_map\" missing or empty (expected an object {tensor: shard "
                     "file})",
                     index_path);
        goto done;
    }
    QR_CHECK(qr_calloc(&names, json_object_size(map), sizeof *names, index_path));
    json_object_foreach(map, key, v)
    {
        const char *shard = json_string_value(v);
        size_t j;
        if (!shard || !plain_file_name(shard)) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: tensor '%s': shard must be a plain file name in the folder "
                         "(found %s%s%s)",
                         index_path, key, shard ? "'" : "a non-string", shard ? shard : "",
                         shard ? "'" : "");
            goto done;
        }
        for (j = 0; j < n_names && strcmp(names[j], shard) != 0; j++) {
        }
        if (j == n_names) {
            names[n_names++] = shard;
        }
    }
    qsort(names, n_names, sizeof *names, cmp_str_ptr);
    QR_CHECK(qr_calloc(&m->shards, n_names, sizeof *m->shards, index_path));
    for (size_t s = 0; s < n_names; s++) {
        QR_CHECK(qr_fs_join(shard_path, sizeof shard_path, m->dir, names[s]));
        if (!qr_fs_exists(shard_path)) {
            st = qr_fail(QR_ERR_INPUT, "%s: shard '%s' named by the index is not found (%s)",
                         index_path, names[s], shard_path);
            goto done;
        }
        QR_CHECK(qr_st_open(shard_path, &m->shards[s]));
        m->n_shards = s + 1;
    }
    /* Every tensor the index names is in its shard ... */
    json_object_foreach(map, key, v)
    {
        const char *shard = json_string_value(v);
        const char **hit = bsearch(&shard, names, n_names, sizeof *names, cmp_str_ptr);
        const qr_st_file *f = m->shards[hit - names];
        if (!qr_st_find(f, key)) {
            st = qr_fail(QR_ERR_INPUT, "%s: tensor '%s' named by the index is missing", f->path,
                         key);
            goto done;
        }
    }
    /* ... and every tensor of a shard is mapped to that shard. */
    for (size_t s = 0; s < m->n_shards; s++) {
        const qr_st_file *f = m->shards[s];
        for (size_t i = 0; i < f->count; i++) {
            const char *mapped = json_string_value(json_object_get(map, f->tensors[i].name));
            if (!mapped) {
                st = qr_fail(QR_ERR_INPUT, "%s: tensor '%s' is not named by the index %s", f->path,
                             f->tensors[i].name, index_path);
                goto done;
            }
            if (strcmp(mapped, names[s]) != 0) {
                st = qr_fail(QR_ERR_INPUT,
                             "%s: tensor '%s' is mapped by the index to another shard (expected "
                             "'%s', found it in '%s')",
                             f->path, f->tensors[i].name, mapped, names[s]);
                goto done;
            }
        }
    }
    QR_CHECK(model_collect(m));
done:
    free(names);
    json_decref(root);
    free(text);
    return st;
}

qr_status qr_st_model_open(const char *dir, qr_st_model **out)
{
    qr_status st = QR_OK;
    qr_st_model *m = NULL;
    char single[ST_PATH_MAX], index[ST_PATH_MAX];
    *out = NULL;
    if (!qr_fs_exists(dir)) {
        return qr_fail(QR_ERR_INPUT, "%s: not found (expected a safetensors model folder)", dir);
    }
    QR_CHECK(qr_calloc(&m, 1, sizeof *m, dir));
    m->dir = dup_str(dir);
    if (!m->dir) {
        st = qr_fail(QR_ERR_NOMEM, "%s: cannot allocate the path", dir);
        goto done;
    }
    if (!qr_fs_is_dir(dir)) { /* a single .safetensors file given directly */
        QR_CHECK(qr_calloc(&m->shards, 1, sizeof *m->shards, dir));
        QR_CHECK(qr_st_open(dir, &m->shards[0]));
        m->n_shards = 1;
        QR_CHECK(model_collect(m));
    } else {
        QR_CHECK(qr_fs_join(single, sizeof single, dir, ST_SINGLE_NAME));
        QR_CHECK(qr_fs_join(index, sizeof index, dir, ST_INDEX_NAME));
        if (qr_fs_exists(single)) { /* as transformers does, the single file wins */
            QR_CHECK(qr_calloc(&m->shards, 1, sizeof *m->shards, dir));
            QR_CHECK(qr_st_open(single, &m->shards[0]));
            m->n_shards = 1;
            QR_CHECK(model_collect(m));
        } else if (qr_fs_exists(index)) {
            QR_CHECK(model_open_index(m, index));
        } else {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: no safetensors model here (expected %s or %s in the folder)", dir,
                         ST_SINGLE_NAME, ST_INDEX_NAME);
            goto done;
        }
    }
    *out = m;
    m = NULL;
done:
    qr_st_model_close(&m);
    return st;
}

void qr_st_model_close(qr_st_model **mp)
{
    qr_st_model *m;
    if (!mp || !*mp) {
        return;
    }
    m = *mp;
    for (size_t s = 0; s < m->n_shards; s++) {
        qr_st_close(&m->shards[s]);
    }
    free(m->shards);
    free(m->sorted);
    free(m->dir);
    free(m);
    *mp = NULL;
}

size_t qr_st_model_count(const qr_st_model *m)
{
    return m ? m->count : 0;
}

const qr_st_tensor *qr_st_model_at(const qr_st_model *m, size_t i)
{
    return (m && i < m->count) ? m->sorted[i] : NULL;
}

const qr_st_tensor *qr_st_model_find(const qr_st_model *m, const char *name)
{
    return m ? find_sorted(m->sorted, m->count, name) : NULL;
}

size_t qr_st_model_shard_count(const qr_st_model *m)
{
    return m ? m->n_shards : 0;
}

const char *qr_st_model_shard_path(const qr_st_model *m, size_t i)
{
    return (m && i < m->n_shards) ? m->shards[i]->path : NULL;
}

const qr_st_file *qr_st_model_shard(const qr_st_model *m, size_t i)
{
    return (m && i < m->n_shards) ? m->shards[i] : NULL;
}

/* ---- conversion ------------------------------------------------------------------------------ */

static qr_status check_count(const qr_st_tensor *t, size_t n)
{
    if ((int64_t)n != t->numel) {
        return qr_fail(QR_ERR_INTERNAL,
                       "%s: tensor '%s': read into a buffer of the wrong size (expected %" PRId64
                       " elements, found %zu)",
                       t->path, t->name, t->numel, n);
    }
    return QR_OK;
}

qr_status qr_st_read_f32(const qr_st_tensor *t, float *dst, size_t n)
{
    QR_TRY(check_count(t, n));
    qr_convert_to_f32(t->dtype, t->data, n, dst);
    return QR_OK;
}

qr_status qr_st_read_f64(const qr_st_tensor *t, double *dst, size_t n)
{
    QR_TRY(check_count(t, n));
    qr_convert_to_f64(t->dtype, t->data, n, dst);
    return QR_OK;
}

static qr_status check_range(const qr_st_tensor *t, int64_t first, size_t n)
{
    if (first < 0 || first > t->numel || n > (size_t)(t->numel - first)) {
        return qr_fail(QR_ERR_INTERNAL,
                       "%s: tensor '%s': read of elements [%" PRId64 ", +%zu) out of range "
                       "(expected within %" PRId64 " elements)",
                       t->path, t->name, first, n, t->numel);
    }
    return QR_OK;
}

qr_status qr_st_read_range_f32(const qr_st_tensor *t, int64_t first, size_t n, float *dst)
{
    QR_TRY(check_range(t, first, n));
    qr_convert_to_f32(
        t->dtype, (const unsigned char *)t->data + (size_t)first * qr_dtype_size(t->dtype), n, dst);
    return QR_OK;
}

qr_status qr_st_read_range_f64(const qr_st_tensor *t, int64_t first, size_t n, double *dst)
{
    QR_TRY(check_range(t, first, n));
    qr_convert_to_f64(
        t->dtype, (const unsigned char *)t->data + (size_t)first * qr_dtype_size(t->dtype), n, dst);
    return QR_OK;
}

/* ---- writing --------------------------------------------------------------------------------- */

struct qr_st_writer {
    char *path;
    char *tmp;
    FILE *fp;
    size_t n;
    char **names;    /* (n) copies, for messages */
    uint64_t *sizes; /* (n) bytes per tensor */
    size_t cur;      /* tensor being written */
    uint64_t cur_done;
};

/* Writer I/O buffer: large sequential writes, few system calls. */
#define ST_WRITE_BUFFER ((size_t)1 << 20)

static void writer_free(qr_st_writer *w)
{
    if (!w) {
        return;
    }
    if (w->names) {
        for (size_t i = 0; i < w->n; i++) {
            free(w->names[i]);
        }
    }
    free(w->names);
    free(w->sizes);
    free(w->path);
    free(w->tmp);
    free(w);
}

/* Build the JSON header for `entries` laid out in order; sizes[i] = bytes of entry i. */
static qr_status build_header(const char *path, const qr_st_entry *entries, size_t n,
                              uint64_t *sizes, char **text)
{
    qr_status st = QR_OK;
    json_t *root = json_object(), *meta = json_object();
    uint64_t offset = 0;
    if (!root || !meta || json_object_set_new(meta, "format", json_string("pt")) != 0 ||
        json_object_set(root, "__metadata__", meta) != 0) {
        st = qr_fail(QR_ERR_NOMEM, "%s: cannot build the header", path);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const qr_st_entry *e = &entries[i];
        size_t numel = 1, nbytes;
        json_t *obj, *shape;
        if (!e->name || strcmp(e->name, "__metadata__") == 0 || e->ndim < 0 ||
            e->ndim > QR_ST_MAX_DIMS || qr_dtype_size(e->dtype) == 0) {
            st = qr_fail(QR_ERR_INTERNAL,
                         "%s: entry %zu: bad tensor description (name %s, dtype %s, ndim %d)", path,
                         i, e->name ? e->name : "(null)", qr_dtype_name(e->dtype), e->ndim);
            goto done;
        }
        if (json_object_get(root, e->name)) {
            st = qr_fail(QR_ERR_INTERNAL, "%s: tensor '%s' listed twice", path, e->name);
            goto done;
        }
        for (int d = 0; d < e->ndim; d++) {
            if (e->shape[d] < 0 || !qr_mul_size(numel, (size_t)e->shape[d], &numel)) {
                st = qr_fail(QR_ERR_INTERNAL, "%s: tensor '%s': bad shape", path, e->name);
                goto done;
            }
        }
        if (!qr_mul_size(numel, qr_dtype_size(e->dtype), &nbytes) || offset + nbytes < offset ||
            offset + nbytes > (uint64_t)INT64_MAX) {
            st = qr_fail(QR_ERR_INTERNAL, "%s: tensor '%s': size overflows", path, e->name);
            goto done;
        }
        sizes[i] = nbytes;
        obj = json_object();
        shape = json_array();
        if (!obj || !shape) {
            json_decref(obj);
            json_decref(shape);
            st = qr_fail(QR_ERR_NOMEM, "%s: cannot build the header", path);
            goto done;
        }
        for (int d = 0; d < e->ndim; d++) {
            json_array_append_new(shape, json_integer(e->shape[d]));
        }
        json_object_set_new(obj, "dtype", json_string(qr_dtype_name(e->dtype)));
        json_object_set_new(obj, "shape", shape);
        json_object_set_new(obj, "data_offsets",
                            json_pack("[II]", (json_int_t)offset, (json_int_t)(offset + nbytes)));
        if (json_object_set_new(root, e->name, obj) != 0) {
            st = qr_fail(QR_ERR_NOMEM, "%s: cannot build the header", path);
            goto done;
        }
        offset += nbytes;
    }
    *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!*text) {
        st = qr_fail(QR_ERR_NOMEM, "%s: cannot serialize the header", path);
    }
done:
    json_decref(meta);
    json_decref(root);
    return st;
}

static qr_status writer_write(qr_st_writer *w, const void *data, size_t nbytes)
{
    if (nbytes && fwrite(data, 1, nbytes, w->fp) != nbytes) {
        return qr_fail(QR_ERR_IO, "%s: write failed (%s)", w->tmp, strerror(errno));
    }
    return QR_OK;
}

qr_status qr_st_writer_open(const char *path, const qr_st_entry *entries, size_t n,
                            qr_st_writer **out)
{
    qr_status st = QR_OK;
    qr_st_writer *w = NULL;
    char *header = NULL;
    size_t hlen, padded;
    unsigned char le[8];
    static const char spaces[8] = "        ";
    *out = NULL;
    QR_CHECK(qr_calloc(&w, 1, sizeof *w, path));
    QR_CHECK(qr_calloc(&w->names, n, sizeof *w->names, path));
    w->n = n;
    QR_CHECK(qr_calloc(&w->sizes, n, sizeof *w->sizes, path));
    w->path = dup_str(path);
    QR_CHECK(qr_malloc(&w->tmp, strlen(path) + 5, 1, path));
    if (!w->path) {
        st = qr_fail(QR_ERR_NOMEM, "%s: cannot allocate the path", path);
        goto done;
    }
    snprintf(w->tmp, strlen(path) + 5, "%s.tmp", path);
    QR_CHECK(build_header(path, entries, n, w->sizes, &header));
    for (size_t i = 0; i < n; i++) {
        w->names[i] = dup_str(entries[i].name);
        if (!w->names[i]) {
            st = qr_fail(QR_ERR_NOMEM, "%s: cannot allocate tensor names", path);
            goto done;
        }
    }
    /* As the reference writer does: pad the header with spaces so the data starts 8-aligned. */
    hlen = strlen(header);
    padded = (hlen + 7) / 8 * 8;
    w->fp = fopen(w->tmp, "wb");
    if (!w->fp) {
        st = qr_fail(QR_ERR_IO, "%s: cannot create (%s)", w->tmp, strerror(errno));
        goto done;
    }
    setvbuf(w->fp, NULL, _IOFBF, ST_WRITE_BUFFER);
    for (int i = 0; i < 8; i++) {
        le[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    }
    QR_CHECK(writer_write(w, le, 8));
    QR_CHECK(writer_write(w, header, hlen));
    QR_CHECK(writer_write(w, spaces, padded - hlen));
    while (w->cur < w->n && w->sizes[w->cur] == 0) { /* zero-size tensors need no data */
        w->cur++;
    }
    *out = w;
    w = NULL;
done:
    free(header);
    qr_st_writer_abort(&w);
    return st;
}

qr_status qr_st_writer_put(qr_st_writer *w, const void *data, size_t nbytes)
{
    const unsigned char *p = data;
    while (nbytes > 0) {
        uint64_t left;
        size_t take;
        if (w->cur >= w->n) {
            return qr_fail(QR_ERR_INTERNAL,
                           "%s: more data than the header declares (%zu bytes too many)", w->path,
                           nbytes);
        }
        left = w->sizes[w->cur] - w->cur_done;
        take = nbytes < left ? nbytes : (size_t)left;
        QR_TRY(writer_write(w, p, take));
        p += take;
        nbytes -= take;
        w->cur_done += take;
        if (w->cur_done == w->sizes[w->cur]) {
            w->cur_done = 0;
            w->cur++;
            while (w->cur < w->n && w->sizes[w->cur] == 0) {
                w->cur++;
            }
        }
    }
    return QR_OK;
}

qr_status qr_st_writer_finish(qr_st_writer **wp)
{
    qr_status st = QR_OK;
    qr_st_writer *w = wp ? *wp : NULL;
    FILE *fp;
    if (!w) {
        return qr_fail(QR_ERR_INTERNAL, "safetensors writer: finish without an open writer");
    }
    if (w->cur < w->n) {
        st = qr_fail(QR_ERR_INTERNAL,
                     "%s: tensor '%s' incomplete (expected %" PRIu64 " bytes, found %" PRIu64 ")",
                     w->path, w->names[w->cur], w->sizes[w->cur], w->cur_done);
        goto done;
    }
    fp = w->fp;
    w->fp = NULL;
    if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
        st = qr_fail(QR_ERR_IO, "%s: cannot flush (%s)", w->tmp, strerror(errno));
        fclose(fp);
        goto done;
    }
    if (fclose(fp) != 0) {
        st = qr_fail(QR_ERR_IO, "%s: cannot close (%s)", w->tmp, strerror(errno));
        goto done;
    }
    if (rename(w->tmp, w->path) != 0) {
        st = qr_fail(QR_ERR_IO, "%s: cannot rename into place (%s)", w->path, strerror(errno));
        goto done;
    }
    st = qr_fs_sync_parent(w->path);
    writer_free(w);
    *wp = NULL;
    return st;
done:
    qr_st_writer_abort(wp);
    return st;
}

void qr_st_writer_abort(qr_st_writer **wp)
{
    qr_st_writer *w;
    if (!wp || !*wp) {
        return;
    }
    w = *wp;
    if (w->fp) {
        fclose(w->fp);
    }
    if (w->tmp) {
        unlink(w->tmp);
    }
    writer_free(w);
    *wp = NULL;
}

qr_status qr_st_write_index(const char *dir, const char *const *tensors, const char *const *shards,
                            size_t n, uint64_t total_size)
{
    qr_status st = QR_OK;
    char path[ST_PATH_MAX];
    json_t *root = NULL, *map = NULL;
    char *text = NULL;
    QR_CHECK(qr_fs_join(path, sizeof path, dir, ST_INDEX_NAME));
    root = json_object();
    map = json_object();
    if (!root || !map ||
        json_object_set_new(root, "metadata",
                            json_pack("{sI}", "total_size", (json_int_t)total_size)) != 0 ||
        json_object_set(root, "weight_map", map) != 0) {
        st = qr_fail(QR_ERR_NOMEM, "%s: cannot build the index", path);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (!plain_file_name(shards[i]) || json_object_get(map, tensors[i])) {
            st = qr_fail(QR_ERR_INTERNAL, "%s: bad entry %zu (tensor '%s', shard '%s')", path, i,
                         tensors[i], shards[i]);
            goto done;
        }
        if (json_object_set_new(map, tensors[i], json_string(shards[i])) != 0) {
            st = qr_fail(QR_ERR_NOMEM, "%s: cannot build the index", path);
            goto done;
        }
    }
    text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!text) {
        st = qr_fail(QR_ERR_NOMEM, "%s: cannot serialize the index", path);
        goto done;
    }
    QR_CHECK(qr_fs_write_atomic(path, text, strlen(text)));
done:
    free(text);
    json_decref(map);
    json_decref(root);
    return st;
}

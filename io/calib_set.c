/* calib_set.c: several calibration shards read as one in shard-file order (the quantize and
 * validate readers), and the checks and listing of a capture's output folder. The single-shard
 * reader and the writer are io/calib_shard.c; this file uses only their public API. */
#include "io/calib_shard.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/fs.h"
#include "src/alloc.h"
#include "src/checked.h"

/* ---- sets of shards ----------------------------------------------------------------------------
 */

/* One layer slice of a capture: its shards in window order. A whole-model capture is one slice. */
typedef struct {
    int64_t layer_begin, layer_end;
    qr_calib_shard **shards; /* (n) */
    size_t n;
    int64_t *row_start; /* (n + 1) first global row of each shard; row_start[n] = total */
} calib_slice;

struct qr_calib_set {
    calib_slice *slices; /* (n_slices) in layer order */
    size_t n_slices;
    size_t n_shards; /* over all slices */
};

static qr_status same_capture(const qr_calib_shard *a, const qr_calib_shard *b)
{
    const qr_calib_info *x = qr_calib_shard_info(a), *y = qr_calib_shard_info(b);
    if (strcmp(x->model_identity, y->model_identity) != 0) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: captured from another model than %s (expected identity %s, found %s)",
                       qr_calib_shard_path(b), qr_calib_shard_path(a), x->model_identity,
                       y->model_identity);
    }
    if (x->dim != y->dim || x->hidden_dim != y->hidden_dim || x->q_dim != y->q_dim ||
        x->n_layers != y->n_layers || x->seq_len != y->seq_len) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: shape differs from %s (expected dim %lld, hidden %lld, layers %lld, "
                       "seq_len %lld; found %lld, %lld, %lld, %lld)",
                       qr_calib_shard_path(b), qr_calib_shard_path(a), (long long)x->dim,
                       (long long)x->hidden_dim, (long long)x->n_layers, (long long)x->seq_len,
                       (long long)y->dim, (long long)y->hidden_dim, (long long)y->n_layers,
                       (long long)y->seq_len);
    }
    return QR_OK;
}

static void slice_close(calib_slice *sl)
{
    for (size_t i = 0; sl->shards && i < sl->n; i++) {
        qr_calib_shard_close(&sl->shards[i]);
    }
    free(sl->shards);
    free(sl->row_start);
    memset(sl, 0, sizeof *sl);
}

/* Open the n shards of one slice (complete: one whole capture of every window). */
static qr_status slice_build(const char *const *paths, size_t n, bool complete, calib_slice *sl)
{
    qr_status st = QR_OK;
    memset(sl, 0, sizeof *sl);
    if (n == 0) {
        return qr_fail(QR_ERR_INPUT, "calibration: no shard given (expected at least one)");
    }
    QR_CHECK(qr_calloc(&sl->shards, n, sizeof *sl->shards, "calibration set"));
    QR_CHECK(qr_calloc(&sl->row_start, n + 1, sizeof *sl->row_start, "calibration set"));
    sl->n = n;
    for (size_t i = 0; i < n; i++) {
        const qr_calib_info *in;
        QR_CHECK(qr_calib_shard_open(paths[i], &sl->shards[i]));
        in = qr_calib_shard_info(sl->shards[i]);
        if (i == 0) {
            sl->layer_begin = in->layer_begin;
            sl->layer_end = in->layer_end;
        } else {
            const qr_calib_info *prev = qr_calib_shard_info(sl->shards[i - 1]);
            int64_t next_window = prev->window_first + prev->n_windows;
            QR_CHECK(same_capture(sl->shards[0], sl->shards[i]));
            if (in->layer_begin != sl->layer_begin || in->layer_end != sl->layer_end) {
                st = qr_fail(QR_ERR_INPUT,
                             "%s: holds layers [%lld, %lld), not those of %s (expected [%lld, "
                             "%lld))",
                             paths[i], (long long)in->layer_begin, (long long)in->layer_end,
                             paths[0], (long long)sl->layer_begin, (long long)sl->layer_end);
                goto done;
            }
            if (complete ? in->window_first != next_window : in->window_first < next_window) {
                st = qr_fail(QR_ERR_INPUT,
                             "%s: window range does not follow %s (expected first window %s%lld, "
                             "found %lld)",
                             paths[i], paths[i - 1], complete ? "" : ">= ", (long long)next_window,
                             (long long)in->window_first);
                goto done;
            }
        }
        if (complete && (in->shard_index != (int64_t)i || in->shard_count != (int64_t)n)) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: not shard %zu of a %zu-shard capture (found shard %lld of %lld; "
                         "stale or missing shards in the folder?)",
                         paths[i], i, n, (long long)in->shard_index, (long long)in->shard_count);
            goto done;
        }
        if (__builtin_add_overflow(sl->row_start[i], in->n_tokens, &sl->row_start[i + 1])) {
            st = qr_fail(QR_ERR_INPUT, "%s: rows over all shards overflow (found %lld more rows)",
                         paths[i], (long long)in->n_tokens);
            goto done;
        }
    }
    if (complete) {
        const qr_calib_info *first = qr_calib_shard_info(sl->shards[0]),
                            *last = qr_calib_shard_info(sl->shards[n - 1]);
        if (first->window_first != 0 ||
            last->window_first + last->n_windows != last->total_windows) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: shards do not cover the capture (expected windows 0..%lld, found "
                         "%lld..%lld)",
                         paths[0], (long long)last->total_windows - 1,
                         (long long)first->window_first,
                         (long long)(last->window_first + last->n_windows - 1));
            goto done;
        }
    }
done:
    if (st != QR_OK) {
        slice_close(sl);
    }
    return st;
}

/* Append a slice to set, checking it against the slices already there: the same capture, the
 * same rows, layers following on. */
static qr_status set_add(qr_calib_set *set, const char *const *paths, size_t n, bool complete)
{
    calib_slice sl, *grown;
    QR_TRY(slice_build(paths, n, complete, &sl));
    if (set->n_slices > 0) {
        const calib_slice *prev = &set->slices[set->n_slices - 1];
        qr_status st = same_capture(set->slices[0].shards[0], sl.shards[0]);
        if (st == QR_OK && sl.row_start[sl.n] != prev->row_start[prev->n]) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: %lld rows, another capture than %s (%lld rows; stale shards in the "
                         "folder?)",
                         paths[0], (long long)sl.row_start[sl.n],
                         qr_calib_shard_path(prev->shards[0]), (long long)prev->row_start[prev->n]);
        }
        if (st == QR_OK && sl.layer_begin != prev->layer_end) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: holds layers [%lld, %lld) (expected the slice that starts at layer "
                         "%lld, after %s; missing or stale shards in the folder?)",
                         paths[0], (long long)sl.layer_begin, (long long)sl.layer_end,
                         (long long)prev->layer_end, qr_calib_shard_path(prev->shards[0]));
        }
        if (st != QR_OK) {
            slice_close(&sl);
            return st;
        }
    }
    grown = realloc(set->slices, (set->n_slices + 1) * sizeof *grown);
    if (!grown) {
        slice_close(&sl);
        return qr_fail(QR_ERR_NOMEM, "calibration set: out of memory");
    }
    set->slices = grown;
    set->slices[set->n_slices++] = sl;
    set->n_shards += sl.n;
    return QR_OK;
}

static qr_status set_build(const char *const *paths, size_t n, bool complete, qr_calib_set **out)
{
    qr_status st = QR_OK;
    qr_calib_set *set = NULL;
    *out = NULL;
    QR_TRY(qr_calloc(&set, 1, sizeof *set, "calibration set"));
    QR_CHECK(set_add(set, paths, n, complete));
    *out = set;
    set = NULL;
done:
    qr_calib_set_close(&set);
    return st;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names in dir that start with "shard-" and end with suffix, sorted; caller frees each and the
 * array. */
static qr_status list_shards(const char *dir, const char *suffix, char ***names, size_t *n)
{
    qr_status st = QR_OK;
    DIR *d = opendir(dir);
    struct dirent *e;
    char **list = NULL;
    size_t count = 0, cap = 0, sl = strlen(suffix);
    *names = NULL;
    *n = 0;
    if (!d) {
        return errno == ENOENT
                   ? QR_OK
                   : qr_fail(QR_ERR_INPUT, "%s: cannot list folder (%s)", dir, strerror(errno));
    }
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 6 + sl || strncmp(e->d_name, "shard-", 6) != 0 ||
            strcmp(e->d_name + len - sl, suffix) != 0) {
            continue;
        }
        if (count == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            char **nl = realloc(list, ncap * sizeof *nl);
            if (!nl) {
                st = qr_fail(QR_ERR_NOMEM, "%s: out of memory listing shards", dir);
                goto done;
            }
            list = nl;
            cap = ncap;
        }
        if (!(list[count] = strdup(e->d_name))) {
            st = qr_fail(QR_ERR_NOMEM, "%s: out of memory listing shards", dir);
            goto done;
        }
        count++;
    }
    if (count > 1) { /* qsort(NULL, 0, ...) is undefined */
        qsort(list, count, sizeof *list, cmp_str);
    }
    *names = list;
    *n = count;
    list = NULL;
    count = 0;
done:
    for (size_t i = 0; i < count; i++) {
        free(list[i]);
    }
    free(list);
    closedir(d);
    return st;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
}

/* The slice a shard file name belongs to: its layer range from the name, or [-1, -1) for the
 * whole-model name shard-RRRRR.h5. */
static void name_slice(const char *name, int64_t *l0, int64_t *l1)
{
    if (!qr_calib_name_layers(name, l0, l1)) {
        *l0 = *l1 = -1;
    }
}

/* Open the slices of dir that hold layers of [layer_begin, layer_end) (all slices when all, then
 * checked to cover every layer). */
static qr_status open_dir(const char *dir, int64_t layer_begin, int64_t layer_end, bool all,
                          qr_calib_set **out)
{
    qr_status st = QR_OK;
    char **names = NULL, **paths = NULL;
    size_t n = 0;
    qr_calib_set *set = NULL;
    *out = NULL;
    if (!qr_fs_is_dir(dir)) {
        return qr_fail(QR_ERR_INPUT, "%s: not a folder (expected a capture folder of shards)", dir);
    }
    QR_TRY(list_shards(dir, ".h5", &names, &n));
    if (n == 0) {
        st = qr_fail(QR_ERR_INPUT, "%s: no shard-*.h5 files (expected a capture folder)", dir);
        goto done;
    }
    QR_CHECK(qr_calloc(&paths, n, sizeof *paths, "shard paths"));
    for (size_t i = 0; i < n; i++) {
        QR_CHECK(qr_malloc(&paths[i], QR_CALIB_STR_MAX, 1, "shard path"));
        QR_CHECK(qr_fs_join(paths[i], QR_CALIB_STR_MAX, dir, names[i]));
    }
    QR_CHECK(qr_calloc(&set, 1, sizeof *set, "calibration set"));
    /* Names sort whole-model shards first, then slice by slice in layer order, each slice's shards
     * in index order: every run of one slice's names is one slice. */
    for (size_t i = 0; i < n;) {
        int64_t a, b, c, d;
        size_t j = i + 1;
        name_slice(names[i], &a, &b);
        while (j < n && (name_slice(names[j], &c, &d), c == a && d == b)) {
            j++;
        }
        if (a < 0 && j < n) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: holds both whole-model shards (%s) and layer-slice shards (%s) "
                         "(expected one capture; remove the stale ones)",
                         dir, names[i], names[j]);
            goto done;
        }
        /* a slice outside the asked layers is not opened at all */
        if (a < 0 || all || (a < layer_end && b > layer_begin)) {
            QR_CHECK(set_add(set, (const char *const *)paths + i, j - i, true));
        }
        i = j;
    }
    if (all && set->n_slices > 0) {
        layer_begin = 0;
        layer_end = qr_calib_shard_info(set->slices[0].shards[0])->n_layers;
    }
    if (set->n_slices == 0 || set->slices[0].layer_begin > layer_begin ||
        set->slices[set->n_slices - 1].layer_end < layer_end) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: no complete set of shards for layers [%lld, %lld) (expected the "
                     "capture's layer slices to cover them)",
                     dir, (long long)layer_begin, (long long)layer_end);
        goto done;
    }
    *out = set;
    set = NULL;
done:
    qr_calib_set_close(&set);
    if (paths) {
        free_names(paths, n);
    }
    free_names(names, n);
    return st;
}

qr_status qr_calib_set_open_dir_layers(const char *dir, int64_t layer_begin, int64_t layer_end,
                                       qr_calib_set **out)
{
    return open_dir(dir, layer_begin, layer_end, false, out);
}

qr_status qr_calib_set_open_dir(const char *dir, qr_calib_set **out)
{
    return open_dir(dir, 0, 0, true, out);
}

qr_status qr_calib_set_open_files(const char *const *paths, size_t n, qr_calib_set **out)
{
    return set_build(paths, n, false, out);
}

void qr_calib_set_close(qr_calib_set **pset)
{
    qr_calib_set *set;
    if (!pset || !*pset) {
        return;
    }
    set = *pset;
    for (size_t i = 0; set->slices && i < set->n_slices; i++) {
        slice_close(&set->slices[i]);
    }
    free(set->slices);
    free(set);
    *pset = NULL;
}

size_t qr_calib_set_shard_count(const qr_calib_set *set)
{
    return set->n_shards;
}

qr_calib_shard *qr_calib_set_shard(const qr_calib_set *set, size_t i)
{
    for (size_t k = 0; k < set->n_slices; k++) {
        if (i < set->slices[k].n) {
            return set->slices[k].shards[i];
        }
        i -= set->slices[k].n;
    }
    return NULL;
}

int64_t qr_calib_set_rows(const qr_calib_set *set)
{
    return set->slices[0].row_start[set->slices[0].n];
}

void qr_calib_set_layers(const qr_calib_set *set, int64_t *layer_begin, int64_t *layer_end)
{
    *layer_begin = set->slices[0].layer_begin;
    *layer_end = set->slices[set->n_slices - 1].layer_end;
}

/* The slice holding key's layer (keys are "layers.L.<kind>"); NULL when none. */
static calib_slice *key_slice(const qr_calib_set *set, const char *key)
{
    long long l = -1;
    if (sscanf(key, "layers.%lld.", &l) != 1) {
        return NULL;
    }
    for (size_t k = 0; k < set->n_slices; k++) {
        if (l >= set->slices[k].layer_begin && l < set->slices[k].layer_end) {
            return &set->slices[k];
        }
    }
    return NULL;
}

qr_status qr_calib_set_shape(const qr_calib_set *set, const char *key, int64_t *rows, int64_t *cols)
{
    calib_slice *sl = key_slice(set, key);
    int64_t r = 0;
    if (!sl) {
        int64_t a, b;
        qr_calib_set_layers(set, &a, &b);
        return qr_fail(QR_ERR_INPUT, "%s: no dataset %s in the opened shards (layers %lld..%lld)",
                       qr_calib_shard_path(set->slices[0].shards[0]), key, (long long)a,
                       (long long)b - 1);
    }
    QR_TRY(qr_calib_shard_shape(sl->shards[0], key, &r, cols));
    *rows = sl->row_start[sl->n];
    return QR_OK;
}

qr_status qr_calib_set_read_rows(qr_calib_set *set, const char *key, int64_t r0, int64_t n,
                                 float *dst)
{
    int64_t rows = 0, cols = 0, total = qr_calib_set_rows(set);
    calib_slice *sl = key_slice(set, key);
    if (!sl) {
        return qr_calib_set_shape(set, key, &rows, &cols); /* the error */
    }
    QR_TRY(qr_calib_shard_shape(sl->shards[0], key, &rows, &cols));
    if (n < 0 || r0 < 0 || r0 > total - n) {
        return qr_fail(QR_ERR_INPUT,
                       "calibration set: key %s: rows %lld..%lld out of range (%lld rows over %zu "
                       "shards)",
                       key, (long long)r0, (long long)(r0 + n - 1), (long long)total, sl->n);
    }
    for (size_t i = 0; i < sl->n && n > 0; i++) {
        int64_t lo = sl->row_start[i], hi = sl->row_start[i + 1];
        int64_t take;
        if (r0 >= hi) {
            continue;
        }
        take = hi - r0 < n ? hi - r0 : n;
        QR_TRY(qr_calib_shard_read_rows(sl->shards[i], key, r0 - lo, take, dst));
        dst += take * cols;
        r0 += take;
        n -= take;
    }
    return QR_OK;
}

/* ---- the output folder -------------------------------------------------------------------------
 */

qr_status qr_calib_shard_name(char *buf, size_t size, const char *dir, int64_t r)
{
    char name[32];
    snprintf(name, sizeof name, "shard-%05lld.h5", (long long)r);
    return qr_fs_join(buf, size, dir, name);
}

qr_status qr_calib_slice_shard_name(char *buf, size_t size, const char *dir, int64_t layer_begin,
                                    int64_t layer_end, int64_t n_layers, int64_t r)
{
    char name[64];
    if (layer_begin == 0 && layer_end == n_layers) {
        return qr_calib_shard_name(buf, size, dir, r);
    }
    snprintf(name, sizeof name, "shard-l%05lld-%05lld-%05lld.h5", (long long)layer_begin,
             (long long)layer_end, (long long)r);
    return qr_fs_join(buf, size, dir, name);
}

bool qr_calib_name_layers(const char *name, int64_t *layer_begin, int64_t *layer_end)
{
    long long a = -1, b = -1, r = -1;
    int used = 0;
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (sscanf(base, "shard-l%5lld-%5lld-%5lld.h5%n", &a, &b, &r, &used) != 3 ||
        base[used] != '\0' || a < 0 || b <= a || r < 0) {
        return false;
    }
    *layer_begin = a;
    *layer_end = b;
    return true;
}

qr_status qr_calib_dir_check(const char *dir, const char *identity, size_t *n_found)
{
    qr_status st = QR_OK;
    char **names = NULL;
    size_t n = 0;
    char path[QR_CALIB_STR_MAX];
    qr_calib_shard *s = NULL;
    *n_found = 0;
    if (qr_fs_exists(dir) && !qr_fs_is_dir(dir)) {
        return qr_fail(QR_ERR_INPUT, "%s: exists and is not a folder (expected a capture folder)",
                       dir);
    }
    QR_TRY(list_shards(dir, ".h5", &names, &n));
    for (size_t i = 0; i < n; i++) {
        QR_CHECK(qr_fs_join(path, sizeof path, dir, names[i]));
        st = qr_calib_shard_open(path, &s);
        if (st != QR_OK) {
            char inner[QR_ERRMSG_MAX];
            snprintf(inner, sizeof inner, "%s", qr_errmsg()); /* qr_fail reuses the buffer */
            st = qr_fail(QR_ERR_INPUT,
                         "%s: the output folder holds a file that is not a readable calibration "
                         "shard (%s); remove it or choose another --out",
                         dir, inner);
            goto done;
        }
        if (strcmp(qr_calib_shard_info(s)->model_identity, identity) != 0) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: holds shards of another model (expected identity %s, found %s from "
                         "%s); remove them or choose another --out",
                         path, identity, qr_calib_shard_info(s)->model_identity,
                         qr_calib_shard_info(s)->model_path);
            goto done;
        }
        qr_calib_shard_close(&s);
    }
    *n_found = n;
done:
    qr_calib_shard_close(&s);
    free_names(names, n);
    return st;
}

qr_status qr_calib_dir_clear(const char *dir)
{
    return qr_calib_dir_clear_except(dir, NULL, 0);
}

qr_status qr_calib_dir_clear_except(const char *dir, const char *const *keep, size_t n_keep)
{
    static const char *const suffixes[] = {".h5", ".h5.tmp"};
    char path[QR_CALIB_STR_MAX];
    for (size_t k = 0; k < 2; k++) {
        char **names = NULL;
        size_t n = 0;
        QR_TRY(list_shards(dir, suffixes[k], &names, &n));
        for (size_t i = 0; i < n; i++) {
            qr_status st = qr_fs_join(path, sizeof path, dir, names[i]);
            bool kept = false;
            for (size_t j = 0; st == QR_OK && j < n_keep; j++) {
                kept = kept || strcmp(keep[j], path) == 0;
            }
            if (st == QR_OK && !kept && unlink(path) != 0 && errno != ENOENT) {
                st = qr_fail(QR_ERR_IO, "%s: cannot remove old shard (%s)", path, strerror(errno));
            }
            if (st != QR_OK) {
                free_names(names, n);
                return st;
            }
        }
        free_names(names, n);
    }
    return QR_OK;
}

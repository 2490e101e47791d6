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

struct qr_calib_set {
    qr_calib_shard **shards; /* (n) */
    size_t n;
    int64_t *row_start; /* (n + 1) first global row of each shard; row_start[n] = total */
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

static qr_status set_build(const char *const *paths, size_t n, bool complete, qr_calib_set **out)
{
    qr_status st = QR_OK;
    qr_calib_set *set = NULL;
    *out = NULL;
    if (n == 0) {
        return qr_fail(QR_ERR_INPUT, "calibration: no shard given (expected at least one)");
    }
    QR_TRY(qr_calloc(&set, 1, sizeof *set, "calibration set"));
    QR_CHECK(qr_calloc(&set->shards, n, sizeof *set->shards, "calibration set"));
    QR_CHECK(qr_calloc(&set->row_start, n + 1, sizeof *set->row_start, "calibration set"));
    set->n = n;
    for (size_t i = 0; i < n; i++) {
        const qr_calib_info *in;
        QR_CHECK(qr_calib_shard_open(paths[i], &set->shards[i]));
        in = qr_calib_shard_info(set->shards[i]);
        if (i > 0) {
            const qr_calib_info *prev = qr_calib_shard_info(set->shards[i - 1]);
            int64_t next_window = prev->window_first + prev->n_windows;
            QR_CHECK(same_capture(set->shards[0], set->shards[i]));
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
        set->row_start[i + 1] = set->row_start[i] + in->n_tokens;
    }
    if (complete) {
        const qr_calib_info *first = qr_calib_shard_info(set->shards[0]),
                            *last = qr_calib_shard_info(set->shards[n - 1]);
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

qr_status qr_calib_set_open_dir(const char *dir, qr_calib_set **out)
{
    qr_status st = QR_OK;
    char **names = NULL, **paths = NULL;
    size_t n = 0;
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
    st = set_build((const char *const *)paths, n, true, out);
done:
    if (paths) {
        free_names(paths, n);
    }
    free_names(names, n);
    return st;
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
    for (size_t i = 0; set->shards && i < set->n; i++) {
        qr_calib_shard_close(&set->shards[i]);
    }
    free(set->shards);
    free(set->row_start);
    free(set);
    *pset = NULL;
}

size_t qr_calib_set_shard_count(const qr_calib_set *set)
{
    return set->n;
}

qr_calib_shard *qr_calib_set_shard(const qr_calib_set *set, size_t i)
{
    return i < set->n ? set->shards[i] : NULL;
}

int64_t qr_calib_set_rows(const qr_calib_set *set)
{
    return set->row_start[set->n];
}

qr_status qr_calib_set_read_rows(qr_calib_set *set, const char *key, int64_t r0, int64_t n,
                                 float *dst)
{
    int64_t rows = 0, cols = 0, total = qr_calib_set_rows(set);
    QR_TRY(qr_calib_shard_shape(set->shards[0], key, &rows, &cols));
    if (n < 0 || r0 < 0 || r0 > total - n) {
        return qr_fail(QR_ERR_INPUT,
                       "calibration set: key %s: rows %lld..%lld out of range (%lld rows over %zu "
                       "shards)",
                       key, (long long)r0, (long long)(r0 + n - 1), (long long)total, set->n);
    }
    for (size_t i = 0; i < set->n && n > 0; i++) {
        int64_t lo = set->row_start[i], hi = set->row_start[i + 1];
        int64_t take;
        if (r0 >= hi) {
            continue;
        }
        take = hi - r0 < n ? hi - r0 : n;
        QR_TRY(qr_calib_shard_read_rows(set->shards[i], key, r0 - lo, take, dst));
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
    static const char *const suffixes[] = {".h5", ".h5.tmp"};
    char path[QR_CALIB_STR_MAX];
    for (size_t k = 0; k < 2; k++) {
        char **names = NULL;
        size_t n = 0;
        QR_TRY(list_shards(dir, suffixes[k], &names, &n));
        for (size_t i = 0; i < n; i++) {
            qr_status st = qr_fs_join(path, sizeof path, dir, names[i]);
            if (st == QR_OK && unlink(path) != 0 && errno != ENOENT) {
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

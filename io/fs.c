/* fs.c: file-system helpers. */
#define _GNU_SOURCE /* fallocate(FALLOC_FL_KEEP_SIZE) */
#include "io/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/fault.h"
#include "src/alloc.h"

qr_status qr_fs_file_size(const char *path, uint64_t *size)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        return qr_fail(QR_ERR_INPUT, "%s: cannot open (%s)", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode)) {
        return qr_fail(QR_ERR_INPUT, "%s: expected a regular file", path);
    }
    *size = (uint64_t)sb.st_size;
    return QR_OK;
}

qr_status qr_fs_read_all(const char *path, size_t max_bytes, char **data, size_t *size)
{
    qr_status st = QR_OK;
    uint64_t fsize = 0;
    char *buf = NULL;
    FILE *f = NULL;
    QR_CHECK(qr_fs_file_size(path, &fsize));
    if (fsize > max_bytes) {
        st = qr_fail(QR_ERR_INPUT, "%s: file too large (expected at most %zu bytes, found %llu)",
                     path, max_bytes, (unsigned long long)fsize);
        goto done;
    }
    QR_CHECK(qr_malloc(&buf, (size_t)fsize + 1, 1, path));
    f = fopen(path, "rb");
    if (!f || fread(buf, 1, (size_t)fsize, f) != (size_t)fsize) {
        st = qr_fail(QR_ERR_INPUT, "%s: cannot read (%s)", path, strerror(errno));
        goto done;
    }
    buf[fsize] = '\0';
    *data = buf;
    *size = (size_t)fsize;
    buf = NULL;
done:
    if (f) {
        fclose(f);
    }
    free(buf);
    return st;
}

int qr_fs_is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int qr_fs_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

qr_status qr_fs_mkdirs(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) {
        return qr_fail(QR_ERR_INPUT, "%s: bad folder path", path);
    }
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                return qr_fail(QR_ERR_IO, "%s: cannot create folder (%s)", buf, strerror(errno));
            }
            *p = '/';
        }
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
        return qr_fail(QR_ERR_IO, "%s: cannot create folder (%s)", buf, strerror(errno));
    }
    if (!qr_fs_is_dir(buf)) {
        return qr_fail(QR_ERR_INPUT, "%s: exists and is not a folder", buf);
    }
    return QR_OK;
}

qr_status qr_fs_sync_parent(const char *path)
{
    char buf[4096];
    int fd, rc;
    QR_TRY(qr_fs_join(buf, sizeof buf, path, NULL));
    fd = open(dirname(buf), O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        return qr_fail(QR_ERR_IO, "%s: cannot open its folder (%s)", path, strerror(errno));
    }
    rc = fsync(fd);
    if (rc != 0 && errno != EINVAL) { /* EINVAL: the folder's file system cannot sync folders */
        int err = errno;
        close(fd);
        return qr_fail(QR_ERR_IO, "%s: cannot flush its folder (%s)", path, strerror(err));
    }
    close(fd);
    return QR_OK;
}

/* 16 hex digits that another user cannot guess: from /dev/urandom, else time and pid mixed. */
static void random_suffix(char out[17])
{
    uint64_t r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &r, sizeof r) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r ^= (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)ts.tv_sec ^
             (uint64_t)getpid() << 32;
    }
    if (fd >= 0) {
        close(fd);
    }
    snprintf(out, 17, "%016llx", (unsigned long long)r);
}

qr_status qr_fs_create_temp(const char *path, char *tmp, size_t tmpsize, int *fd)
{
    *fd = -1;
    for (int attempt = 0; attempt < 16; attempt++) {
        char suffix[17];
        random_suffix(suffix);
        QR_TRY(qr_fs_join(tmp, tmpsize, path, NULL));
        if (strlen(tmp) + 6 + strlen(suffix) >= tmpsize) {
            return qr_fail(QR_ERR_INPUT, "%s: path too long for its temporary file (limit %zu)",
                           path, tmpsize - 24);
        }
        strcat(tmp, ".tmp.");
        strcat(tmp, suffix);
        /* O_EXCL: never an existing file; O_NOFOLLOW: never through a planted link. */
        *fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (*fd >= 0) {
            return QR_OK;
        }
        if (errno != EEXIST) {
            return qr_fail(QR_ERR_IO, "%s: cannot create (%s)", tmp, strerror(errno));
        }
    }
    return qr_fail(QR_ERR_IO, "%s: cannot create a temporary file beside it", path);
}

qr_status qr_fs_write_atomic(const char *path, const void *data, size_t size)
{
    char tmp[4096];
    const char *p = data;
    size_t done = 0;
    int fd;
    QR_TRY(qr_fs_create_temp(path, tmp, sizeof tmp, &fd));
    while (done < size) {
        ssize_t w = qr_fault_hit(QR_FAULT_WRITE) ? -1 : write(fd, p + done, size - done);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            int err = w < 0 ? errno : ENOSPC;
            close(fd);
            unlink(tmp);
            return qr_fail(QR_ERR_IO, "%s: write failed (%s)", tmp, strerror(err));
        }
        done += (size_t)w;
    }
    if (qr_fault_hit(QR_FAULT_FLUSH) || fsync(fd) != 0) {
        int err = errno;
        close(fd);
        unlink(tmp);
        return qr_fail(QR_ERR_IO, "%s: cannot flush (%s)", tmp, strerror(err));
    }
    if (qr_fault_hit(QR_FAULT_CLOSE) || close(fd) != 0) {
        unlink(tmp);
        return qr_fail(QR_ERR_IO, "%s: cannot close (%s)", tmp, strerror(errno));
    }
    if (qr_fault_hit(QR_FAULT_RENAME) || rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return qr_fail(QR_ERR_IO, "%s: cannot rename into place (%s)", path, strerror(err));
    }
    return qr_fs_sync_parent(path);
}

qr_status qr_fs_stream_open(qr_fs_stream *s, const char *path)
{
    int fd;
    memset(s, 0, sizeof *s);
    QR_TRY(qr_fs_join(s->path, sizeof s->path, path, NULL));
    QR_TRY(qr_fs_create_temp(path, s->tmp, sizeof s->tmp, &fd));
    s->f = fdopen(fd, "wb");
    if (!s->f) {
        int err = errno;
        close(fd);
        unlink(s->tmp);
        return qr_fail(QR_ERR_IO, "%s: cannot open for writing (%s)", s->tmp, strerror(err));
    }
    return QR_OK;
}

qr_status qr_fs_stream_write(qr_fs_stream *s, const void *data, size_t size)
{
    if (size && (qr_fault_hit(QR_FAULT_WRITE) || fwrite(data, 1, size, s->f) != size)) {
        return qr_fail(QR_ERR_IO, "%s: write failed (%s)", s->tmp, strerror(errno));
    }
    s->bytes += size;
    return QR_OK;
}

qr_status qr_fs_stream_commit(qr_fs_stream *s)
{
    FILE *f = s->f;
    int err;
    if (qr_fault_hit(QR_FAULT_FLUSH) || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        return qr_fail(QR_ERR_IO, "%s: cannot flush (%s)", s->tmp, strerror(errno));
    }
    s->f = NULL; /* fclose releases the stream even when it fails */
    if (fclose(f) != 0 || qr_fault_hit(QR_FAULT_CLOSE)) {
        err = errno;
        unlink(s->tmp);
        return qr_fail(QR_ERR_IO, "%s: cannot close (%s)", s->tmp, strerror(err));
    }
    if (qr_fault_hit(QR_FAULT_RENAME) || rename(s->tmp, s->path) != 0) {
        err = errno;
        unlink(s->tmp);
        return qr_fail(QR_ERR_IO, "%s: cannot rename into place (%s)", s->path, strerror(err));
    }
    return qr_fs_sync_parent(s->path);
}

void qr_fs_stream_abort(qr_fs_stream *s)
{
    if (s->f) {
        fclose(s->f);
        s->f = NULL;
        unlink(s->tmp);
    }
}

qr_status qr_fs_stage_dir(const char *out, char *staging, size_t size)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        char suffix[17];
        random_suffix(suffix);
        int n = snprintf(staging, size, "%s.tmp.%s", out, suffix);
        if (n < 0 || (size_t)n >= size) {
            return qr_fail(QR_ERR_INPUT, "%s: path too long for its staging folder", out);
        }
        if (mkdir(staging, 0700) == 0) {
            return QR_OK;
        }
        if (errno != EEXIST) {
            return qr_fail(QR_ERR_IO, "%s: cannot create (%s)", staging, strerror(errno));
        }
    }
    return qr_fail(QR_ERR_IO, "%s: cannot create a staging folder beside it", out);
}

/* The files moved and folders made so far by a publish, so that a failed one can take them back
 * (in reverse order: a folder after the files in it). */
typedef struct {
    char (*paths)[4096];
    size_t n, cap;
} moved_list;

static qr_status remember(moved_list *moved, const char *path)
{
    if (moved->n == moved->cap) {
        size_t cap = moved->cap ? 2 * moved->cap : 16;
        void *p = realloc(moved->paths, cap * sizeof *moved->paths);
        if (!p) {
            return qr_fail(QR_ERR_NOMEM, "%s: out of memory", path);
        }
        moved->paths = p;
        moved->cap = cap;
    }
    snprintf(moved->paths[moved->n++], sizeof moved->paths[0], "%s", path);
    return QR_OK;
}

static qr_status publish_into(const char *from, const char *to, moved_list *moved)
{
    qr_status st = QR_OK;
    DIR *d = opendir(from);
    struct dirent *ent;
    if (!d) {
        return qr_fail(QR_ERR_IO, "%s: cannot open (%s)", from, strerror(errno));
    }
    if (mkdir(to, 0755) == 0) {
        QR_CHECK(remember(moved, to));
    } else if (errno != EEXIST) {
        st = qr_fail(QR_ERR_IO, "%s: cannot create (%s)", to, strerror(errno));
        goto done;
    }
    while ((ent = readdir(d)) != NULL) {
        char src[4096], dst[4096];
        struct stat sb;
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) {
            continue;
        }
        QR_CHECK(qr_fs_join(src, sizeof src, from, ent->d_name));
        QR_CHECK(qr_fs_join(dst, sizeof dst, to, ent->d_name));
        if (lstat(src, &sb) != 0) {
            st = qr_fail(QR_ERR_IO, "%s: cannot stat (%s)", src, strerror(errno));
            goto done;
        }
        if (S_ISDIR(sb.st_mode)) {
            QR_CHECK(publish_into(src, dst, moved));
            continue;
        }
        if (qr_fault_hit(QR_FAULT_RENAME) || rename(src, dst) != 0) {
            st = qr_fail(QR_ERR_IO, "%s: cannot rename into place (%s)", dst, strerror(errno));
            goto done;
        }
        QR_CHECK(remember(moved, dst));
    }
    st = qr_fs_sync_parent(to);
done:
    closedir(d);
    return st;
}

qr_status qr_fs_publish_dir(const char *staging, const char *out)
{
    moved_list moved = {0};
    qr_status st;
    if (!qr_fs_exists(out)) { /* the whole folder in one rename */
        if (qr_fault_hit(QR_FAULT_RENAME) || rename(staging, out) != 0) {
            return qr_fail(QR_ERR_IO, "%s: cannot rename into place (%s)", out, strerror(errno));
        }
        return qr_fs_sync_parent(out);
    }
    st = publish_into(staging, out, &moved);
    if (st != QR_OK) {
        for (size_t i = moved.n; i-- > 0;) {
            remove(moved.paths[i]);
        }
    } else {
        qr_fs_discard_dir(staging);
    }
    free(moved.paths);
    return st;
}

static int discard_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (type == FTW_DP) {
        rmdir(path);
    } else if (type == FTW_F) {
        unlink(path);
    }
    return 0;
}

void qr_fs_discard_dir(const char *staging)
{
    if (staging && staging[0]) {
        nftw(staging, discard_entry, 8, FTW_DEPTH | FTW_PHYS);
    }
}

qr_status qr_fs_join(char *buf, size_t bufsize, const char *dir, const char *name)
{
    int n = name ? snprintf(buf, bufsize, "%s/%s", dir, name) : snprintf(buf, bufsize, "%s", dir);
    if (n < 0 || (size_t)n >= bufsize) {
        return qr_fail(QR_ERR_INPUT, "%s%s%s: path too long (limit %zu bytes)", dir,
                       name ? "/" : "", name ? name : "", bufsize - 1);
    }
    return QR_OK;
}

qr_status qr_fs_reserve(const char *path, uint64_t bytes, bool keep_size)
{
    int fd, rc;
    if (bytes > (uint64_t)INT64_MAX) {
        return qr_fail(QR_ERR_INPUT, "%s: cannot reserve %llu bytes", path,
                       (unsigned long long)bytes);
    }
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return qr_fail(QR_ERR_IO, "%s: cannot open to reserve space (%s)", path, strerror(errno));
    }
    if (qr_fault_hit(QR_FAULT_WRITE)) {
        rc = ENOSPC;
    } else if (keep_size) {
        rc = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bytes) == 0 ? 0 : errno;
    } else {
        rc = posix_fallocate(fd, 0, (off_t)bytes);
    }
    close(fd);
    if (rc == EINVAL || rc == EOPNOTSUPP || rc == ENOSYS) {
        return QR_OK; /* the file system cannot reserve: the writes themselves will tell */
    }
    if (rc != 0) {
        return qr_fail(QR_ERR_IO, "%s: cannot reserve %.1f MiB for the output (%s)", path,
                       (double)bytes / 1048576.0, strerror(rc));
    }
    return QR_OK;
}

/* The absolute, symlink-free form of path into buf (PATH_MAX): realpath when it exists, else the
 * real path of its folder plus its last name. False when not even the folder exists. */
static bool canonical(const char *path, char *buf)
{
    char dir[PATH_MAX], base[PATH_MAX], real_dir[PATH_MAX];
    const char *slash;
    if (realpath(path, buf)) {
        return true;
    }
    if (strlen(path) >= sizeof dir) {
        return false;
    }
    slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
        snprintf(base, sizeof base, "%s", path);
    } else {
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path) + (slash == path), path);
        snprintf(base, sizeof base, "%s", slash + 1);
    }
    if (!realpath(dir, real_dir)) {
        return false;
    }
    return snprintf(buf, PATH_MAX, "%s%s%s", real_dir, strcmp(real_dir, "/") == 0 ? "" : "/",
                    base) < PATH_MAX;
}

/* a is b or lies under b. */
static bool under(const char *a, const char *b)
{
    size_t n = strlen(b);
    return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/' || strcmp(b, "/") == 0);
}

qr_status qr_fs_check_output(const char *what, const char *out, qr_out_kind kind,
                             const char *const *inputs, size_t n_inputs)
{
    char out_c[PATH_MAX], in_c[PATH_MAX], parent[PATH_MAX];
    char *slash;
    if (!out || out[0] == '\0') {
        return qr_fail(QR_ERR_INPUT, "%s: empty path (expected a %s to write)", what,
                       kind == QR_OUT_FILE ? "file" : "folder");
    }
    if (kind == QR_OUT_FILE && qr_fs_is_dir(out)) {
        return qr_fail(QR_ERR_INPUT, "%s %s: is a folder (expected the path of a file to write)",
                       what, out);
    }
    if (kind == QR_OUT_DIR && qr_fs_exists(out) && !qr_fs_is_dir(out)) {
        return qr_fail(QR_ERR_INPUT, "%s %s: exists and is not a folder", what, out);
    }
    if (!canonical(out, out_c)) {
        return qr_fail(QR_ERR_INPUT, "%s %s: its folder does not exist (%s)", what, out,
                       strerror(errno));
    }
    snprintf(parent, sizeof parent, "%s", out_c);
    slash = strrchr(parent, '/');
    if (slash) {
        slash[slash == parent ? 1 : 0] = '\0';
    }
    if (kind == QR_OUT_DIR && qr_fs_is_dir(out_c)) {
        snprintf(parent, sizeof parent, "%s", out_c); /* an existing folder is written into */
    }
    if (!qr_fs_is_dir(parent) || access(parent, W_OK | X_OK) != 0) {
        return qr_fail(QR_ERR_INPUT, "%s %s: folder %s is missing or not writable (%s)", what, out,
                       parent, strerror(errno ? errno : ENOTDIR));
    }
    for (size_t i = 0; i < n_inputs; i++) {
        if (!inputs[i] || inputs[i][0] == '\0' || !realpath(inputs[i], in_c)) {
            continue; /* an input that does not exist is its reader's error */
        }
        if (strcmp(out_c, in_c) == 0) {
            return qr_fail(QR_ERR_INPUT, "%s %s: is also an input (%s); choose another output",
                           what, out, inputs[i]);
        }
        if (under(out_c, in_c)) {
            return qr_fail(QR_ERR_INPUT,
                           "%s %s: lies inside the input %s; choose an output outside it", what,
                           out, inputs[i]);
        }
        if (under(in_c, out_c)) {
            return qr_fail(QR_ERR_INPUT,
                           "%s %s: holds the input %s; choose an output that is not its parent",
                           what, out, inputs[i]);
        }
    }
    return QR_OK;
}

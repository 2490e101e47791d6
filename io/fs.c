/* fs.c: file-system helpers. */
#include "io/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    int fd;
    snprintf(buf, sizeof buf, "%s", path);
    fd = open(dirname(buf), O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        return qr_fail(QR_ERR_IO, "%s: cannot open its folder (%s)", path, strerror(errno));
    }
    fsync(fd);
    close(fd);
    return QR_OK;
}

qr_status qr_fs_write_atomic(const char *path, const void *data, size_t size)
{
    char tmp[4096];
    const char *p = data;
    size_t done = 0;
    int fd;
    QR_TRY(qr_fs_join(tmp, sizeof tmp, path, NULL));
    if (strlen(tmp) + 5 > sizeof tmp) {
        return qr_fail(QR_ERR_INPUT, "%s: path too long", path);
    }
    strcat(tmp, ".tmp");
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        return qr_fail(QR_ERR_IO, "%s: cannot create (%s)", tmp, strerror(errno));
    }
    while (done < size) {
        ssize_t w = write(fd, p + done, size - done);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            int err = errno;
            close(fd);
            unlink(tmp);
            return qr_fail(QR_ERR_IO, "%s: write failed (%s)", tmp, strerror(err));
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return qr_fail(QR_ERR_IO, "%s: cannot flush (%s)", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return qr_fail(QR_ERR_IO, "%s: cannot rename into place (%s)", path, strerror(errno));
    }
    return qr_fs_sync_parent(path);
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

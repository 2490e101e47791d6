/* part_file.c: per-module part files (io/part_file.h). */
#include "io/part_file.h"

#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "io/fs.h"
#include "src/alloc.h"

void qr_part_info_free(qr_part_info *info)
{
    if (!info) {
        return;
    }
    qr_kvlist_free(&info->options);
    qr_kvlist_free(&info->metrics);
    memset(info, 0, sizeof *info);
}

qr_status qr_part_dir(const char *out, char *buf, size_t n)
{
    int w = snprintf(buf, n, "%s.parts", out);
    if (w < 0 || (size_t)w >= n) {
        return qr_fail(QR_ERR_INPUT, "%s.parts: path too long (limit %zu bytes)", out, n - 1);
    }
    return QR_OK;
}

qr_status qr_part_path(const char *out, const char *module, char *buf, size_t n)
{
    int w = snprintf(buf, n, "%s.parts/%s.h5", out, module);
    if (w < 0 || (size_t)w >= n) {
        return qr_fail(QR_ERR_INPUT, "%s.parts/%s.h5: path too long (limit %zu bytes)", out, module,
                       n - 1);
    }
    return QR_OK;
}

/* Write every kv of l as "<prefix><key>". */
static qr_status write_prefixed(hid_t obj, const char *prefix, const qr_kvlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        qr_kv kv = l->items[i];
        int w = snprintf(kv.key, sizeof kv.key, "%s%s", prefix, l->items[i].key);
        if (w < 0 || (size_t)w >= sizeof kv.key) {
            return qr_fail(QR_ERR_INPUT, "attribute '%s%s': name too long (limit %d bytes)", prefix,
                           l->items[i].key, QR_KV_KEY_MAX - 1);
        }
        QR_TRY(qr_h5_attr_write(obj, &kv));
    }
    return QR_OK;
}

/* The part is built in memory (HDF5's core driver, no backing store) and its file image written
 * with qr_fs_write_atomic: HDF5 never touches the disk, so a full disk fails in our own write, with
 * no HDF5 file left half closed (HDF5 1.10 crashes at library shutdown after a failed flush or
 * close of a file on disk). A module's part is small enough to hold twice in memory. */
qr_status qr_part_write(const char *path, const char *module, const qr_kvlist *options,
                        const qr_kvlist *metrics, const qr_qlayer *ql)
{
    qr_status st = QR_OK;
    qr_qlayer_layout lay;
    hid_t fcpl = -1, fapl = -1, file = -1;
    void *image = NULL;
    ssize_t size = 0;
    qr_h5_quiet();
    qr_qlayer_layout_of(ql, &lay);
    fcpl = H5Pcreate(H5P_FILE_CREATE);
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fcpl < 0 || fapl < 0 || H5Pset_obj_track_times(fcpl, 0) < 0 ||
        H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) < 0) {
        st = qr_fail(QR_ERR_INTERNAL, "%s: cannot set up file properties", path);
        goto done;
    }
    file = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl); /* in memory: path is only its name */
    if (file < 0) {
        st = qr_fail(QR_ERR_NOMEM, "%s: cannot create the part in memory", path);
        goto done;
    }
    QR_CHECK(qr_h5_attr_write_str(file, "format", QR_PART_FORMAT));
    QR_CHECK(qr_h5_attr_write_int(file, "version", QR_PART_VERSION));
    QR_CHECK(qr_h5_attr_write_str(file, "module", module));
    QR_CHECK(write_prefixed(file, QR_PART_OPT_PREFIX, options));
    QR_CHECK(write_prefixed(file, QR_PART_METRIC_PREFIX, metrics));
    st = qr_h5_qlayer_write(file, &lay, ql, H5P_DEFAULT);
    if (st != QR_OK) {
        char inner[QR_ERRMSG_MAX];
        snprintf(inner, sizeof inner, "%s", qr_errmsg()); /* qr_fail reuses the buffer */
        st = qr_fail(st, "%s: %s", path, inner);
        goto done;
    }
    if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0 || (size = H5Fget_file_image(file, NULL, 0)) <= 0) {
        st = qr_fail(QR_ERR_INTERNAL, "%s: cannot finish the part in memory", path);
        goto done;
    }
    QR_CHECK(qr_malloc(&image, (size_t)size, 1, "part file image"));
    if (H5Fget_file_image(file, image, (size_t)size) != size) {
        st = qr_fail(QR_ERR_INTERNAL, "%s: cannot copy the part's image", path);
        goto done;
    }
done:
    if (file >= 0 && H5Fclose(file) < 0 && st == QR_OK) {
        st = qr_fail(QR_ERR_INTERNAL, "%s: cannot close the part in memory", path);
    }
    if (fapl >= 0) {
        H5Pclose(fapl);
    }
    if (fcpl >= 0) {
        H5Pclose(fcpl);
    }
    if (st == QR_OK) {
        st = qr_fs_write_atomic(path, image, (size_t)size);
    }
    free(image);
    return st;
}

/* Split the root attributes into options and metrics; the rest are the header and the layout. */
static qr_status split_attrs(const qr_kvlist *all, qr_part_info *info)
{
    size_t lo = strlen(QR_PART_OPT_PREFIX), lm = strlen(QR_PART_METRIC_PREFIX);
    for (size_t i = 0; i < all->n; i++) {
        qr_kv kv = all->items[i];
        qr_kvlist *dst = NULL;
        size_t skip = 0;
        if (strncmp(kv.key, QR_PART_OPT_PREFIX, lo) == 0) {
            dst = &info->options;
            skip = lo;
        } else if (strncmp(kv.key, QR_PART_METRIC_PREFIX, lm) == 0) {
            dst = &info->metrics;
            skip = lm;
        }
        if (dst) {
            memmove(kv.key, kv.key + skip, strlen(kv.key + skip) + 1);
            QR_TRY(qr_kv_set(dst, &kv));
        }
    }
    return QR_OK;
}

/* Open path and read its info; *file stays open for the caller on success. */
static qr_status open_part(const char *path, qr_part_info *info, hid_t *file)
{
    qr_status st = QR_OK;
    char format[64];
    int64_t version = 0;
    qr_kvlist all = {0};
    memset(info, 0, sizeof *info);
    qr_h5_quiet();
    if (H5Fis_hdf5(path) <= 0) {
        return qr_fail(QR_ERR_INPUT, "%s: not a readable HDF5 file", path);
    }
    *file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*file < 0) {
        return qr_fail(QR_ERR_INPUT, "%s: cannot open as HDF5", path);
    }
    QR_CHECK(qr_h5_attr_read_str(*file, "format", path, format, sizeof format));
    if (strcmp(format, QR_PART_FORMAT) != 0) {
        st = qr_fail(QR_ERR_INPUT, "%s: not a part file (expected format '%s', found '%s')", path,
                     QR_PART_FORMAT, format);
        goto done;
    }
    QR_CHECK(qr_h5_attr_read_int(*file, "version", path, &version));
    if (version != QR_PART_VERSION) {
        st = qr_fail(QR_ERR_INPUT, "%s: unsupported part version (expected %d, found %lld)", path,
                     QR_PART_VERSION, (long long)version);
        goto done;
    }
    QR_CHECK(qr_h5_attr_read_str(*file, "module", path, info->module, sizeof info->module));
    QR_CHECK(qr_h5_qlayer_read_layout(*file, path, &info->layout));
    QR_CHECK(qr_h5_attrs_read_all(*file, path, NULL, &all));
    QR_CHECK(split_attrs(&all, info));
done:
    qr_kvlist_free(&all);
    if (st != QR_OK) {
        H5Fclose(*file);
        *file = -1;
        qr_part_info_free(info);
    }
    return st;
}

/* The arrays are read too: a part is reused (resume) or assembled only when every dataset matches
 * its checksum and passes the value checks of qr_h5_qlayer_read; info->layout then carries the
 * checksums, which the assembly shares with every rank. */
qr_status qr_part_read_info(const char *path, qr_part_info *info)
{
    qr_qlayer ql;
    QR_TRY(qr_part_read(path, info, &ql));
    qr_qlayer_layout_of(&ql, &info->layout);
    qr_qlayer_free(&ql);
    return QR_OK;
}

qr_status qr_part_read(const char *path, qr_part_info *info, qr_qlayer *ql)
{
    qr_status st;
    qr_part_info local;
    hid_t file = -1;
    memset(ql, 0, sizeof *ql);
    QR_TRY(open_part(path, &local, &file));
    st = qr_h5_qlayer_read(file, path, ql);
    H5Fclose(file);
    if (st == QR_OK && info) {
        *info = local;
    } else {
        qr_part_info_free(&local);
    }
    return st;
}

qr_status qr_part_check(const qr_part_info *info, const char *path, const char *module,
                        int64_t d_out, int64_t d_in, const qr_kvlist *options)
{
    char want[QR_KV_STR_MAX + 8], got[QR_KV_STR_MAX + 8];
    if (strcmp(info->module, module) != 0) {
        return qr_fail(QR_ERR_INPUT, "%s: part of another module (expected '%s', found '%s')", path,
                       module, info->module);
    }
    if (info->layout.d_out != d_out || info->layout.d_in != d_in) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: module shape differs (expected %lld x %lld, found %lld x %lld)", path,
                       (long long)d_out, (long long)d_in, (long long)info->layout.d_out,
                       (long long)info->layout.d_in);
    }
    for (size_t i = 0; i < options->n; i++) {
        const qr_kv *e = &options->items[i];
        const qr_kv *f = qr_kv_find(&info->options, e->key);
        if (!f) {
            qr_kv_format(e, want, sizeof want);
            return qr_fail(QR_ERR_INPUT,
                           "%s: made with other options: option '%s' is missing (expected %s); "
                           "remove the part or rerun with its options",
                           path, e->key, want);
        }
        if (!qr_kv_equal(e, f)) {
            qr_kv_format(e, want, sizeof want);
            qr_kv_format(f, got, sizeof got);
            return qr_fail(QR_ERR_INPUT,
                           "%s: made with other options: option '%s' differs (expected %s, found "
                           "%s); remove the part or rerun with its options",
                           path, e->key, want, got);
        }
    }
    for (size_t i = 0; i < info->options.n; i++) {
        if (!qr_kv_find(options, info->options.items[i].key)) {
            qr_kv_format(&info->options.items[i], got, sizeof got);
            return qr_fail(QR_ERR_INPUT,
                           "%s: made with other options: option '%s' is not one of this job's "
                           "(found %s)",
                           path, info->options.items[i].key, got);
        }
    }
    return QR_OK;
}

/* checkpoint.c: the shared checkpoint: collective assembly from part files with parallel HDF5, and
 * a serial reader (io/checkpoint.h). */
#include "io/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/fault.h"
#include "io/fs.h"
#include "io/part_file.h"
#include "io/qlayer_h5.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/progress.h"

/* Bytes of rows per collective write of a copied tensor, and the owner's staging buffer: far below
 * MPI-IO's 2 GiB requests, and small next to a rank's working set (32 MiB: an embedding of 405B is
 * 254 such blocks). */
#define QR_CKPT_TENSOR_BLOCK_BYTES ((size_t)32 << 20)

/* ---- sharing what the owners read: layouts and metrics of every module -------------------------
 */

typedef struct {
    qr_qlayer_layout layout;
    qr_kvlist metrics;
} module_info;

/* Record of one module on the wire: layout, metric count, metrics. */
static qr_status pack_info(const module_info *m, char **buf, size_t *len, size_t *cap)
{
    uint64_t n = m->metrics.n;
    size_t need = sizeof m->layout + sizeof n + n * sizeof(qr_kv);
    if (*len + need > *cap) {
        size_t c = 2 * (*len + need);
        char *b = realloc(*buf, c);
        if (!b) {
            return qr_fail(QR_ERR_NOMEM, "checkpoint: cannot grow the module table to %zu bytes",
                           c);
        }
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, &m->layout, sizeof m->layout);
    memcpy(*buf + *len + sizeof m->layout, &n, sizeof n);
    if (n) {
        memcpy(*buf + *len + sizeof m->layout + sizeof n, m->metrics.items, n * sizeof(qr_kv));
    }
    *len += need;
    return QR_OK;
}

/* Owners read the part headers of their modules; then every rank gets every module's info. */
static qr_status share_infos(MPI_Comm comm, const qr_ckpt_spec *spec, module_info *infos)
{
    qr_status st = QR_OK;
    int rank = 0, size = 1, mylen_i = 0, total = 0;
    char *mine = NULL, *all = NULL;
    size_t len = 0, cap = 0;
    int *counts = NULL, *displs = NULL;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    for (size_t i = (size_t)rank; i < spec->n_modules && st == QR_OK; i += (size_t)size) {
        qr_part_info info;
        st = qr_part_read_info(spec->parts[i], &info);
        if (st == QR_OK && strcmp(info.module, spec->modules[i]) != 0) {
            st = qr_fail(QR_ERR_INPUT, "%s: part of another module (expected '%s', found '%s')",
                         spec->parts[i], spec->modules[i], info.module);
        }
        if (st == QR_OK) {
            module_info m = {info.layout, info.metrics};
            st = pack_info(&m, &mine, &len, &cap);
        }
        qr_part_info_free(&info);
    }
    if (st == QR_OK && !qr_to_int((int64_t)len, &mylen_i)) {
        st = qr_fail(QR_ERR_INPUT, "checkpoint: module table too large (%zu bytes)", len);
    }
    QR_CHECK(spec->agree(comm, st));
    QR_CHECK(qr_calloc(&counts, (size_t)size, sizeof(int), "checkpoint counts"));
    QR_CHECK(qr_calloc(&displs, (size_t)size, sizeof(int), "checkpoint displacements"));
    if (MPI_Allgather(&mylen_i, 1, MPI_INT, counts, 1, MPI_INT, comm) != MPI_SUCCESS) {
        st = qr_fail(QR_ERR_INTERNAL, "checkpoint: MPI_Allgather failed");
        goto done;
    }
    for (int r = 0; r < size; r++) {
        if (total > INT_MAX - counts[r]) {
            st = qr_fail(QR_ERR_INPUT, "checkpoint: module table exceeds 2 GiB");
            goto done;
        }
        displs[r] = total;
        total += counts[r];
    }
    QR_CHECK(qr_malloc(&all, (size_t)total + 1, 1, "checkpoint module table"));
    if (MPI_Allgatherv(mine ? mine : "", mylen_i, MPI_BYTE, all, counts, displs, MPI_BYTE, comm) !=
        MPI_SUCCESS) {
        st = qr_fail(QR_ERR_INTERNAL, "checkpoint: MPI_Allgatherv failed");
        goto done;
    }
    for (int r = 0; r < size; r++) {
        size_t off = (size_t)displs[r];
        for (size_t i = (size_t)r; i < spec->n_modules; i += (size_t)size) {
            uint64_t n;
            memcpy(&infos[i].layout, all + off, sizeof infos[i].layout);
            memcpy(&n, all + off + sizeof infos[i].layout, sizeof n);
            off += sizeof infos[i].layout + sizeof n;
            for (uint64_t k = 0; k < n; k++) {
                qr_kv kv;
                memcpy(&kv, all + off, sizeof kv);
                off += sizeof kv;
                QR_CHECK(qr_kv_set(&infos[i].metrics, &kv));
            }
        }
    }
done:
    free(mine);
    free(all);
    free(counts);
    free(displs);
    return st;
}

/* ---- writing -----------------------------------------------------------------------------------
 */

static qr_status write_metrics(hid_t g, const qr_kvlist *metrics)
{
    for (size_t i = 0; i < metrics->n; i++) {
        qr_kv kv = metrics->items[i];
        int w =
            snprintf(kv.key, sizeof kv.key, "%s%s", QR_PART_METRIC_PREFIX, metrics->items[i].key);
        if (w < 0 || (size_t)w >= sizeof kv.key) {
            return qr_fail(QR_ERR_INPUT, "metric '%s': name too long", metrics->items[i].key);
        }
        QR_TRY(qr_h5_attr_write(g, &kv));
    }
    return QR_OK;
}

static qr_status write_module(MPI_Comm comm, hid_t file, hid_t dxpl, const qr_ckpt_spec *spec,
                              size_t i, const module_info *info, int owner)
{
    qr_status st = QR_OK;
    qr_qlayer ql;
    hid_t gcpl = -1, g = -1;
    char where[512];
    memset(&ql, 0, sizeof ql);
    if (owner) {
        st = qr_part_read(spec->parts[i], NULL, &ql);
        if (st == QR_OK) {
            qr_qlayer_layout lay;
            qr_qlayer_layout_of(&ql, &lay);
            if (memcmp(&lay, &info->layout, sizeof lay) != 0) {
                st = qr_fail(QR_ERR_INPUT, "%s: changed while the checkpoint was assembled",
                             spec->parts[i]);
            }
        }
    }
    QR_CHECK(spec->agree(comm, st));
    snprintf(where, sizeof where, "module '%s'", spec->modules[i]);
    gcpl = qr_h5_gcpl_plain();
    g = gcpl >= 0 ? H5Gcreate2(file, spec->modules[i], H5P_DEFAULT, gcpl, H5P_DEFAULT) : -1;
    if (g < 0) {
        st = qr_fail(QR_ERR_IO, "%s: cannot create its group", where);
    }
    QR_CHECK(spec->agree(comm, st));
    QR_CHECK(qr_h5_qlayer_write_coll(g, &info->layout, owner ? &ql : NULL, dxpl, comm));
    QR_CHECK(spec->agree(comm, write_metrics(g, &info->metrics)));
done:
    if (g >= 0) {
        H5Gclose(g);
    }
    if (gcpl >= 0) {
        H5Pclose(gcpl);
    }
    qr_qlayer_free(&ql);
    return st;
}

/* Create /tensors/<name> and write it in row blocks (every rank makes the same calls): the owner
 * reads, checksums and writes one block at a time, so it never holds the whole float32 tensor (an
 * embedding of 405B is 8 GiB in float32); the checksum attribute follows the data. */
static qr_status write_tensor(MPI_Comm comm, hid_t tg, hid_t dxpl, const qr_ckpt_spec *spec,
                              size_t i, int owner)
{
    qr_status st = QR_OK;
    const qr_ckpt_tensor *t = &spec->tensors[i];
    hsize_t dims[8], start[8] = {0}, count[8];
    size_t n = 1, row = 1, rows_per_block;
    float *data = NULL;
    void *hash = NULL;
    hid_t dcpl = -1, space = -1, ds = -1;
    uint64_t sum = 0;
    int root = 0, nranks = 1;
    MPI_Comm_size(comm, &nranks);
    root = (int)(i % (size_t)nranks); /* the owner, as qr_ckpt_assemble deals the tensors */
    if (t->ndim < 1 || t->ndim > 8) {
        return qr_fail(QR_ERR_INPUT, "tensor '%s': unsupported rank %d", t->name, t->ndim);
    }
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0 || !qr_mul_size(n, (size_t)t->shape[d], &n)) {
            return qr_fail(QR_ERR_INPUT, "tensor '%s': bad shape", t->name);
        }
        dims[d] = (hsize_t)t->shape[d];
        count[d] = dims[d];
        if (d > 0) {
            row *= (size_t)t->shape[d];
        }
    }
    rows_per_block = row ? QR_CKPT_TENSOR_BLOCK_BYTES / (row * sizeof(float)) : dims[0];
    if (rows_per_block < 1) {
        rows_per_block = 1;
    }
    if (rows_per_block > dims[0]) {
        rows_per_block = dims[0] > 0 ? dims[0] : 1;
    }
    if (owner) {
        st = qr_malloc(&data, rows_per_block * (row ? row : 1), sizeof(float), t->name);
        if (st == QR_OK && !(hash = qr_h5_checksum_begin())) {
            st = QR_ERR_NOMEM;
        }
    }
    dcpl = qr_h5_dcpl_plain();
    space = H5Screate_simple(t->ndim, dims, NULL);
    ds = (dcpl >= 0 && space >= 0)
             ? H5Dcreate2(tg, t->name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)
             : -1;
    if (ds < 0 && st == QR_OK) {
        st = qr_fail(QR_ERR_IO, "tensor '%s': cannot create its dataset", t->name);
    }
    QR_CHECK(spec->agree(comm, st));
    for (hsize_t r0 = 0; r0 < dims[0] || (dims[0] == 0 && r0 == 0); r0 += rows_per_block) {
        hsize_t nr = dims[0] - r0 < rows_per_block ? dims[0] - r0 : rows_per_block;
        hid_t fsel = H5Scopy(space), msel = -1;
        herr_t rc;
        if (owner && nr > 0) {
            st = spec->read_tensor(spec->read_ctx, t->name, (int64_t)r0, (int64_t)nr, data,
                                   (size_t)nr * row);
            if (st == QR_OK) {
                qr_h5_checksum_add(hash, data, (size_t)nr * row * sizeof(float));
            }
        }
        st = spec->agree(comm, st); /* every rank writes, or none */
        if (st != QR_OK) {
            H5Sclose(fsel);
            goto done;
        }
        start[0] = r0;
        count[0] = nr;
        if (owner && nr > 0) {
            msel = H5Screate_simple(t->ndim, count, NULL);
            rc = H5Sselect_hyperslab(fsel, H5S_SELECT_SET, start, NULL, count, NULL);
        } else {
            msel = H5Screate_simple(t->ndim, dims, NULL);
            rc = H5Sselect_none(fsel);
            rc = rc < 0 ? rc : H5Sselect_none(msel);
        }
        if (rc >= 0) {
            rc = H5Dwrite(ds, H5T_NATIVE_FLOAT, msel, fsel, dxpl,
                          owner && nr > 0 ? (const void *)data : (const void *)&rows_per_block);
        }
        H5Sclose(msel);
        H5Sclose(fsel);
        if (rc < 0) {
            st = qr_fail(QR_ERR_IO, "tensor '%s': collective write failed", t->name);
        }
        QR_CHECK(spec->agree(comm, st));
        if (dims[0] == 0) {
            break;
        }
    }
    if (owner) {
        sum = qr_h5_checksum_end(hash);
        hash = NULL;
    }
    MPI_Bcast(&sum, 1, MPI_UINT64_T, root, comm); /* the attribute is written by every rank */
    st = qr_h5_checksum_write(ds, t->name, sum);
    QR_CHECK(spec->agree(comm, st)); /* every rank leaves together: no rank waits in the next */
done:
    if (hash) {
        (void)qr_h5_checksum_end(hash);
    }
    if (ds >= 0) {
        H5Dclose(ds);
    }
    if (space >= 0) {
        H5Sclose(space);
    }
    if (dcpl >= 0) {
        H5Pclose(dcpl);
    }
    free(data);
    return st;
}

static qr_status fsync_file(const char *path)
{
    int fd = open(path, O_RDONLY);
    int rc;
    if (fd < 0) {
        return qr_fail(QR_ERR_IO, "%s: cannot reopen to flush (%s)", path, strerror(errno));
    }
    rc = fsync(fd);
    close(fd);
    if (rc != 0) {
        return qr_fail(QR_ERR_IO, "%s: fsync failed (%s)", path, strerror(errno));
    }
    return QR_OK;
}

/* An upper bound of the checkpoint's size: array data plus generous room for HDF5's metadata (64
 * KiB per module, 8 KiB per tensor, 1 MiB for the root). */
static uint64_t reserve_bytes(const qr_ckpt_spec *spec, const module_info *infos)
{
    uint64_t bytes = (uint64_t)1 << 20;
    for (size_t i = 0; i < spec->n_modules; i++) {
        bytes += qr_qlayer_layout_bytes(&infos[i].layout) + ((uint64_t)64 << 10);
    }
    for (size_t i = 0; i < spec->n_tensors; i++) {
        uint64_t n = 4;
        for (int d = 0; d < spec->tensors[i].ndim; d++) {
            n *= (uint64_t)spec->tensors[i].shape[d];
        }
        bytes += n + ((uint64_t)8 << 10);
    }
    return bytes;
}

/* The file, opened by every rank with the MPI-IO driver; *file < 0 on failure (not agreed). */
static qr_status create_file(MPI_Comm comm, const char *tmp, hid_t *file, hid_t *dxpl)
{
    qr_status st = QR_OK;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fcpl = H5Pcreate(H5P_FILE_CREATE);
    *dxpl = H5Pcreate(H5P_DATASET_XFER);
    *file = -1;
    if (fapl < 0 || fcpl < 0 || *dxpl < 0 || H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) < 0 ||
        H5Pset_all_coll_metadata_ops(fapl, 1) < 0 || H5Pset_coll_metadata_write(fapl, 1) < 0 ||
        H5Pset_obj_track_times(fcpl, 0) < 0 ||
        H5Pset_link_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) < 0 ||
        H5Pset_dxpl_mpio(*dxpl, H5FD_MPIO_COLLECTIVE) < 0) {
        st = qr_fail(QR_ERR_INTERNAL, "%s: cannot set up parallel HDF5 properties", tmp);
    } else if ((*file = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl)) < 0) {
        st = qr_fail(QR_ERR_IO, "%s: cannot create (parallel HDF5)", tmp);
    }
    if (fcpl >= 0) {
        H5Pclose(fcpl);
    }
    if (fapl >= 0) {
        H5Pclose(fapl);
    }
    return st;
}

/* Root attributes: format, version, the job's header, the JSON texts (not agreed). */
static qr_status write_root(hid_t file, const qr_ckpt_spec *spec)
{
    QR_TRY(qr_h5_attr_write_str(file, "format", QR_CKPT_FORMAT));
    QR_TRY(qr_h5_attr_write_int(file, "version", QR_CKPT_VERSION));
    if (spec->root) {
        QR_TRY(qr_h5_attrs_write(file, spec->root));
    }
    if (spec->model_config) {
        QR_TRY(qr_h5_attr_write_str(file, "model_config", spec->model_config));
    }
    if (spec->options) {
        QR_TRY(qr_h5_attr_write_str(file, "options", spec->options));
    }
    return QR_OK;
}

/* Every module, then every copied tensor under /tensors; agreed after each. */
static qr_status write_contents(MPI_Comm comm, const char *tmp, hid_t file, hid_t dxpl,
                                const qr_ckpt_spec *spec, const module_info *infos, uint64_t *bytes)
{
    qr_status st = QR_OK;
    int rank = 0, size = 1;
    hid_t tg = -1, gcpl = -1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    for (size_t i = 0; i < spec->n_modules; i++) {
        QR_CHECK(spec->agree(comm, write_module(comm, file, dxpl, spec, i, &infos[i],
                                                (int)(i % (size_t)size) == rank)));
        *bytes += qr_qlayer_layout_bytes(&infos[i].layout);
        if (spec->after_module) {
            spec->after_module(spec->hook_ctx, i);
        }
    }
    gcpl = qr_h5_gcpl_plain();
    tg = gcpl >= 0 ? H5Gcreate2(file, QR_CKPT_TENSORS, H5P_DEFAULT, gcpl, H5P_DEFAULT) : -1;
    if (tg < 0) {
        st = qr_fail(QR_ERR_IO, "%s: cannot create group '%s'", tmp, QR_CKPT_TENSORS);
    }
    QR_CHECK(spec->agree(comm, st));
    for (size_t i = 0; i < spec->n_tensors; i++) {
        uint64_t n = 1;
        QR_CHECK(spec->agree(
            comm, write_tensor(comm, tg, dxpl, spec, i, (int)(i % (size_t)size) == rank)));
        for (int d = 0; d < spec->tensors[i].ndim; d++) {
            n *= (uint64_t)spec->tensors[i].shape[d];
        }
        *bytes += 4 * n;
    }
done:
    if (tg >= 0) {
        H5Gclose(tg);
    }
    if (gcpl >= 0) {
        H5Pclose(gcpl);
    }
    return st;
}

/* Rank 0: make the closed `<out>.tmp` durable and rename it into place (not agreed). */
static qr_status publish(const char *tmp, const char *out_path)
{
    QR_TRY(fsync_file(tmp));
    if (qr_fault_hit(QR_FAULT_RENAME) || rename(tmp, out_path) != 0) {
        return qr_fail(QR_ERR_IO, "%s: cannot rename into place (%s)", out_path, strerror(errno));
    }
    return qr_fs_sync_parent(out_path);
}

qr_status qr_ckpt_assemble(MPI_Comm comm, const char *out_path, const qr_ckpt_spec *spec,
                           qr_ckpt_stats *stats)
{
    qr_status st = QR_OK;
    int rank = 0;
    char tmp[4096];
    module_info *infos = NULL;
    hid_t dxpl = -1, file = -1;
    uint64_t bytes = 0;
    double t0 = qr_now();
    MPI_Comm_rank(comm, &rank);
    qr_h5_quiet();
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", out_path) >= sizeof tmp) {
        st = qr_fail(QR_ERR_INPUT, "%s: path too long", out_path);
    }
    QR_CHECK(spec->agree(comm, st));
    QR_CHECK(qr_calloc(&infos, spec->n_modules + 1, sizeof *infos, "checkpoint module table"));
    QR_CHECK(share_infos(comm, spec, infos));
    QR_CHECK(spec->agree(comm, create_file(comm, tmp, &file, &dxpl)));
    /* A full disk is found here, by rank 0, not in a collective HDF5 write (a hang). */
    QR_CHECK(spec->agree(comm, rank == 0 ? qr_fs_reserve(tmp, reserve_bytes(spec, infos), false)
                                         : QR_OK));
    QR_CHECK(spec->agree(comm, write_root(file, spec)));
    QR_CHECK(write_contents(comm, tmp, file, dxpl, spec, infos, &bytes));
    /* `complete` last: a reader that finds it knows every dataset before it was written. */
    QR_CHECK(spec->agree(comm, qr_h5_attr_write_int(file, "complete", 1)));
    if (qr_fault_hit(QR_FAULT_FLUSH) || H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) {
        st = qr_fail(QR_ERR_IO, "%s: flush failed", tmp);
    }
    QR_CHECK(spec->agree(comm, st));
done:
    if (file >= 0 && H5Fclose(file) < 0 && st == QR_OK) {
        st = qr_fail(QR_ERR_IO, "%s: close failed", tmp);
    }
    if (dxpl >= 0) {
        H5Pclose(dxpl);
    }
    if (infos) {
        for (size_t i = 0; i < spec->n_modules; i++) {
            qr_kvlist_free(&infos[i].metrics);
        }
        free(infos);
    }
    st = spec->agree(comm, st);
    if (st == QR_OK) {
        st = spec->agree(comm, rank == 0 ? publish(tmp, out_path) : QR_OK);
    }
    if (st != QR_OK && rank == 0) {
        unlink(tmp); /* nothing half written is left beside the output */
    }
    if (stats) {
        stats->seconds = qr_now() - t0;
        stats->bytes = bytes;
    }
    return st;
}

/* ---- reading -----------------------------------------------------------------------------------
 */

struct qr_ckpt {
    char path[4096];
    hid_t file;
    qr_kvlist attrs;
    char *model_config, *options;
    char **modules;
    size_t n_modules;
    char **tensors;
    size_t n_tensors;
};

typedef struct {
    char ***names;
    size_t *n;
    size_t cap;
    int skip_tensors;
    qr_status st;
} list_ctx;

static herr_t list_cb(hid_t loc, const char *name, const H5L_info_t *info, void *data)
{
    list_ctx *ctx = data;
    char *copy;
    (void)loc;
    (void)info;
    if (ctx->skip_tensors && strcmp(name, QR_CKPT_TENSORS) == 0) {
        return 0;
    }
    if (*ctx->n == ctx->cap) {
        size_t cap = ctx->cap ? 2 * ctx->cap : 64;
        char **p = realloc(*ctx->names, cap * sizeof *p);
        if (!p) {
            ctx->st = qr_fail(QR_ERR_NOMEM, "checkpoint: cannot list %zu names", cap);
            return -1;
        }
        *ctx->names = p;
        ctx->cap = cap;
    }
    copy = strdup(name);
    if (!copy) {
        ctx->st = qr_fail(QR_ERR_NOMEM, "checkpoint: cannot copy a name");
        return -1;
    }
    (*ctx->names)[(*ctx->n)++] = copy;
    return 0;
}

static qr_status list_links(hid_t loc, H5_index_t index, int skip_tensors, const char *where,
                            char ***names, size_t *n)
{
    list_ctx ctx = {names, n, 0, skip_tensors, QR_OK};
    hsize_t idx = 0;
    if (H5Literate(loc, index, H5_ITER_INC, &idx, list_cb, &ctx) < 0) {
        return ctx.st != QR_OK ? ctx.st
                               : qr_fail(QR_ERR_INPUT, "%s: cannot list its groups", where);
    }
    return QR_OK;
}

qr_status qr_ckpt_open(const char *path, qr_ckpt **out)
{
    qr_status st = QR_OK;
    qr_ckpt *c = NULL;
    char format[64];
    int64_t version = 0, complete = 0;
    hid_t tg = -1;
    *out = NULL;
    qr_h5_quiet();
    QR_CHECK(qr_calloc(&c, 1, sizeof *c, "checkpoint handle"));
    c->file = -1;
    snprintf(c->path, sizeof c->path, "%s", path);
    if (H5Fis_hdf5(path) <= 0) {
        st = qr_fail(QR_ERR_INPUT, "%s: not a readable HDF5 file", path);
        goto done;
    }
    c->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (c->file < 0) {
        st = qr_fail(QR_ERR_INPUT, "%s: cannot open as HDF5", path);
        goto done;
    }
    QR_CHECK(qr_h5_attr_read_str(c->file, "format", path, format, sizeof format));
    if (strcmp(format, QR_CKPT_FORMAT) != 0) {
        st = qr_fail(QR_ERR_INPUT, "%s: not a qrecon checkpoint (expected format '%s', found '%s')",
                     path, QR_CKPT_FORMAT, format);
        goto done;
    }
    QR_CHECK(qr_h5_attr_read_int(c->file, "version", path, &version));
    if (version != QR_CKPT_VERSION) {
        st = qr_fail(QR_ERR_INPUT, "%s: unsupported checkpoint version (expected %d, found %lld)",
                     path, QR_CKPT_VERSION, (long long)version);
        goto done;
    }
    if (!qr_h5_attr_exists(c->file, "complete")) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: incomplete checkpoint (attribute 'complete' missing: the writer stopped "
                     "before the end; rerun the job to finish it)",
                     path);
        goto done;
    }
    QR_CHECK(qr_h5_attr_read_int(c->file, "complete", path, &complete));
    if (complete != 1) {
        st = qr_fail(QR_ERR_INPUT, "%s: incomplete checkpoint (expected complete = 1, found %lld)",
                     path, (long long)complete);
        goto done;
    }
    {
        static const char *const texts[] = {"model_config", "options", NULL};
        QR_CHECK(qr_h5_attrs_read_all(c->file, path, texts, &c->attrs));
        if (qr_h5_attr_exists(c->file, "model_config")) {
            QR_CHECK(qr_h5_attr_read_text(c->file, "model_config", path, &c->model_config));
        }
        if (qr_h5_attr_exists(c->file, "options")) {
            QR_CHECK(qr_h5_attr_read_text(c->file, "options", path, &c->options));
        }
    }
    QR_CHECK(list_links(c->file, H5_INDEX_CRT_ORDER, 1, path, &c->modules, &c->n_modules));
    if (H5Lexists(c->file, QR_CKPT_TENSORS, H5P_DEFAULT) > 0) {
        tg = H5Gopen2(c->file, QR_CKPT_TENSORS, H5P_DEFAULT);
        if (tg < 0) {
            st = qr_fail(QR_ERR_INPUT, "%s: '%s' is not a group", path, QR_CKPT_TENSORS);
            goto done;
        }
        QR_CHECK(list_links(tg, H5_INDEX_NAME, 0, path, &c->tensors, &c->n_tensors));
    }
done:
    if (tg >= 0) {
        H5Gclose(tg);
    }
    if (st != QR_OK) {
        qr_ckpt_close(&c);
    }
    *out = c;
    return st;
}

void qr_ckpt_close(qr_ckpt **c)
{
    if (!c || !*c) {
        return;
    }
    if ((*c)->file >= 0) {
        H5Fclose((*c)->file);
    }
    qr_kvlist_free(&(*c)->attrs);
    free((*c)->model_config);
    free((*c)->options);
    for (size_t i = 0; i < (*c)->n_modules; i++) {
        free((*c)->modules[i]);
    }
    for (size_t i = 0; i < (*c)->n_tensors; i++) {
        free((*c)->tensors[i]);
    }
    free((*c)->modules);
    free((*c)->tensors);
    free(*c);
    *c = NULL;
}

const qr_kvlist *qr_ckpt_attrs(const qr_ckpt *c)
{
    return &c->attrs;
}

const char *qr_ckpt_model_config(const qr_ckpt *c)
{
    return c->model_config ? c->model_config : "";
}

const char *qr_ckpt_options(const qr_ckpt *c)
{
    return c->options ? c->options : "";
}

size_t qr_ckpt_module_count(const qr_ckpt *c)
{
    return c->n_modules;
}

const char *qr_ckpt_module_name(const qr_ckpt *c, size_t i)
{
    return i < c->n_modules ? c->modules[i] : NULL;
}

size_t qr_ckpt_tensor_count(const qr_ckpt *c)
{
    return c->n_tensors;
}

const char *qr_ckpt_tensor_name(const qr_ckpt *c, size_t i)
{
    return i < c->n_tensors ? c->tensors[i] : NULL;
}

/* Module `name`'s group, *g (close it), and "FILE: module 'NAME'" in where for messages. */
static qr_status open_module(const qr_ckpt *c, const char *name, char *where, size_t size, hid_t *g)
{
    snprintf(where, size, "%s: module '%s'", c->path, name);
    if (strcmp(name, QR_CKPT_TENSORS) == 0 || H5Lexists(c->file, name, H5P_DEFAULT) <= 0) {
        return qr_fail(QR_ERR_INPUT, "%s: no such module", where);
    }
    *g = H5Gopen2(c->file, name, H5P_DEFAULT);
    if (*g < 0) {
        return qr_fail(QR_ERR_INPUT, "%s: not a group", where);
    }
    return QR_OK;
}

qr_status qr_ckpt_module_shape(const qr_ckpt *c, const char *name, int64_t *d_out, int64_t *d_in)
{
    qr_status st = QR_OK;
    char where[4096 + 128];
    hid_t g = -1;
    QR_TRY(open_module(c, name, where, sizeof where, &g));
    QR_CHECK(qr_h5_attr_read_int(g, "d_out", where, d_out));
    QR_CHECK(qr_h5_attr_read_int(g, "d_in", where, d_in));
done:
    H5Gclose(g);
    return st;
}

qr_status qr_ckpt_load_module(const qr_ckpt *c, const char *name, qr_qlayer *ql, qr_kvlist *metrics)
{
    qr_status st = QR_OK;
    char where[4096 + 128];
    qr_kvlist all = {0};
    hid_t g = -1;
    size_t lp = strlen(QR_PART_METRIC_PREFIX);
    memset(ql, 0, sizeof *ql);
    QR_TRY(open_module(c, name, where, sizeof where, &g));
    QR_CHECK(qr_h5_qlayer_read(g, where, ql));
    if (metrics) {
        QR_CHECK(qr_h5_attrs_read_all(g, where, NULL, &all));
        for (size_t i = 0; i < all.n; i++) {
            if (strncmp(all.items[i].key, QR_PART_METRIC_PREFIX, lp) == 0) {
                qr_kv kv = all.items[i];
                memmove(kv.key, kv.key + lp, strlen(kv.key + lp) + 1);
                QR_CHECK(qr_kv_set(metrics, &kv));
            }
        }
    }
done:
    qr_kvlist_free(&all);
    H5Gclose(g);
    if (st != QR_OK) {
        qr_qlayer_free(ql);
    }
    return st;
}

static qr_status open_tensor(const qr_ckpt *c, const char *name, hid_t *ds, char *where, size_t wn)
{
    hid_t tg;
    snprintf(where, wn, "%s: tensor '%s'", c->path, name);
    if (H5Lexists(c->file, QR_CKPT_TENSORS, H5P_DEFAULT) <= 0) {
        return qr_fail(QR_ERR_INPUT, "%s: no tensors group", where);
    }
    tg = H5Gopen2(c->file, QR_CKPT_TENSORS, H5P_DEFAULT);
    if (tg < 0 || H5Lexists(tg, name, H5P_DEFAULT) <= 0) {
        if (tg >= 0) {
            H5Gclose(tg);
        }
        return qr_fail(QR_ERR_INPUT, "%s: no such tensor", where);
    }
    *ds = H5Dopen2(tg, name, H5P_DEFAULT);
    H5Gclose(tg);
    if (*ds < 0) {
        return qr_fail(QR_ERR_INPUT, "%s: not a dataset", where);
    }
    return QR_OK;
}

qr_status qr_ckpt_tensor_shape(const qr_ckpt *c, const char *name, int *ndim, int64_t shape[8])
{
    char where[4096 + 128];
    hsize_t dims[8];
    hid_t ds = -1, space;
    int nd;
    QR_TRY(open_tensor(c, name, &ds, where, sizeof where));
    space = H5Dget_space(ds);
    nd = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (nd < 1 || nd > 8) {
        if (space >= 0) {
            H5Sclose(space);
        }
        H5Dclose(ds);
        return qr_fail(QR_ERR_INPUT, "%s: unsupported rank %d", where, nd);
    }
    H5Sget_simple_extent_dims(space, dims, NULL);
    *ndim = nd;
    for (int d = 0; d < nd; d++) {
        shape[d] = (int64_t)dims[d];
    }
    H5Sclose(space);
    H5Dclose(ds);
    return QR_OK;
}

qr_status qr_ckpt_read_tensor(const qr_ckpt *c, const char *name, float *dst, size_t n)
{
    char where[4096 + 128];
    int ndim = 0;
    int64_t shape[8];
    size_t count = 1;
    hid_t ds = -1;
    herr_t rc;
    QR_TRY(qr_ckpt_tensor_shape(c, name, &ndim, shape));
    for (int d = 0; d < ndim; d++) {
        count *= (size_t)shape[d];
    }
    if (count != n) {
        return qr_fail(QR_ERR_INPUT, "%s: tensor '%s' has %zu elements (expected %zu)", c->path,
                       name, count, n);
    }
    QR_TRY(open_tensor(c, name, &ds, where, sizeof where));
    rc = H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst);
    if (rc < 0) {
        H5Dclose(ds);
        return qr_fail(QR_ERR_IO, "%s: read failed", where);
    }
    rc = qr_h5_checksum_verify(ds, c->path, name, dst, n * sizeof(float)) == QR_OK ? 0 : -1;
    H5Dclose(ds);
    return rc < 0 ? QR_ERR_INPUT : QR_OK;
}

/* ---- the typed header ---------------------------------------------------------------------------
 */

qr_status qr_ckpt_header_write(const qr_ckpt_header *h, qr_kvlist *root)
{
    /* Attribute order is part of the file's bytes: keep it. */
    QR_TRY(qr_kv_set_str(root, "method", h->method));
    QR_TRY(qr_kv_set_int(root, "wbits", h->wbits));
    QR_TRY(qr_kv_set_int(root, "abits", h->abits));
    QR_TRY(qr_kv_set_int(root, "group", h->group));
    QR_TRY(qr_kv_set_int(root, "rank", h->rank));
    QR_TRY(qr_kv_set_str(root, "source_model", h->source_model));
    QR_TRY(qr_kv_set_str(root, "calibration", h->calibration));
    return qr_kv_set_str(root, "writer", h->writer);
}

static qr_status header_int(const qr_ckpt *c, const char *key, int64_t *out)
{
    const qr_kv *kv = qr_kv_find(&c->attrs, key);
    if (!kv || kv->type != QR_KV_INT) {
        return qr_fail(QR_ERR_INPUT, "%s: root attribute '%s' (expected an integer, found %s)",
                       c->path, key, kv ? "another type" : "none");
    }
    *out = kv->i;
    return QR_OK;
}

static qr_status header_str(const qr_ckpt *c, const char *key, char *out, size_t n)
{
    const qr_kv *kv = qr_kv_find(&c->attrs, key);
    size_t len;
    if (!kv || kv->type != QR_KV_STRING) {
        return qr_fail(QR_ERR_INPUT, "%s: root attribute '%s' (expected a string, found %s)",
                       c->path, key, kv ? "another type" : "none");
    }
    len = strlen(kv->s);
    if (len >= n) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: root attribute '%s' (expected at most %zu bytes, found %zu)", c->path,
                       key, n - 1, len);
    }
    memcpy(out, kv->s, len + 1);
    return QR_OK;
}

qr_status qr_ckpt_header_read(const qr_ckpt *c, qr_ckpt_header *h)
{
    memset(h, 0, sizeof *h);
    QR_TRY(header_str(c, "method", h->method, sizeof h->method));
    QR_TRY(header_int(c, "wbits", &h->wbits));
    QR_TRY(header_int(c, "abits", &h->abits));
    QR_TRY(header_int(c, "group", &h->group));
    QR_TRY(header_int(c, "rank", &h->rank));
    QR_TRY(header_str(c, "source_model", h->source_model, sizeof h->source_model));
    QR_TRY(header_str(c, "calibration", h->calibration, sizeof h->calibration));
    QR_TRY(header_str(c, "writer", h->writer, sizeof h->writer));
    if (h->wbits != QR_CKPT_WBITS) {
        return qr_fail(QR_ERR_INPUT, "%s: root attribute 'wbits' (expected %d, found %lld)",
                       c->path, QR_CKPT_WBITS, (long long)h->wbits);
    }
    if (h->abits != 0 && h->abits != 4 && h->abits != 8) {
        return qr_fail(QR_ERR_INPUT, "%s: root attribute 'abits' (expected 0, 4 or 8, found %lld)",
                       c->path, (long long)h->abits);
    }
    if (qr_method_parse(h->method) == QR_METHOD_COUNT) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: root attribute 'method' (expected a known method, found "
                       "'%s')",
                       c->path, h->method);
    }
    return QR_OK;
}

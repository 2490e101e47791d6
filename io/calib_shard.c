/* calib_shard.c: HDF5 calibration shards (see calib_shard.h and docs/calibration.md). */
#include "io/calib_shard.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/config.h"
#include "io/fault.h"
#include "io/fs.h"
#include "io/h5util.h"
#include "src/alloc.h"
#include "src/checked.h"

#define N_KINDS QR_INPUT_KIND_COUNT

/* Integer root attributes and where they live in qr_calib_info, in the order they are written. */
typedef struct {
    const char *name;
    size_t offset;
} int_attr;

static const int_attr int_attrs[] = {
    {"version", offsetof(qr_calib_info, version)},
    {"dim", offsetof(qr_calib_info, dim)},
    {"hidden_dim", offsetof(qr_calib_info, hidden_dim)},
    {"q_dim", offsetof(qr_calib_info, q_dim)},
    {"n_layers", offsetof(qr_calib_info, n_layers)},
    {"vocab_size", offsetof(qr_calib_info, vocab_size)},
    {"seq_len", offsetof(qr_calib_info, seq_len)},
    {"n_tokens", offsetof(qr_calib_info, n_tokens)},
    {"n_windows", offsetof(qr_calib_info, n_windows)},
    {"window_first", offsetof(qr_calib_info, window_first)},
    {"total_windows", offsetof(qr_calib_info, total_windows)},
    {"shard_index", offsetof(qr_calib_info, shard_index)},
    {"shard_count", offsetof(qr_calib_info, shard_count)},
    {"add_dummy_prefix", offsetof(qr_calib_info, add_dummy_prefix)},
    {"unknown_to_zero", offsetof(qr_calib_info, unknown_to_zero)},
};
#define N_INT_ATTRS (sizeof int_attrs / sizeof int_attrs[0])

static int64_t *info_int(qr_calib_info *info, size_t i)
{
    return (int64_t *)((char *)info + int_attrs[i].offset);
}

void qr_calib_key(char *buf, size_t size, int64_t layer, qr_input_kind kind)
{
    snprintf(buf, size, "layers.%lld.%s", (long long)layer, qr_input_kind_suffix(kind));
}

static int64_t key_width(const qr_calib_info *info, qr_input_kind kind)
{
    switch (kind) {
    case QR_INPUT_O:
        return info->q_dim;
    case QR_INPUT_DOWN:
        return info->hidden_dim;
    default:
        return info->dim;
    }
}

static size_t elem_size(qr_dtype dt)
{
    return dt == QR_DTYPE_F16 ? 2 : 4;
}

/* IEEE binary16 little-endian as an HDF5 type (HDF5 1.10 has no predefined one). */
static hid_t make_f16_type(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0 || H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 ||
        H5Tset_ebias(t, 15) < 0) {
        if (t >= 0) {
            H5Tclose(t);
        }
        return -1;
    }
    return t;
}

/* QR_ERR_INPUT naming the file, dataset, row and column of the first non-finite value of X (rows
 * from r0, width d): an activation that is NaN or infinite would poison every statistic. */
static qr_status check_finite(const char *path, const char *key, int64_t r0, int64_t d,
                              const float *X, size_t count)
{
    for (size_t j = 0; j < count; j++) {
        if (!isfinite(X[j])) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: dataset %s: value at row %lld, column %lld is not finite "
                           "(expected a finite activation, found %g)",
                           path, key, (long long)(r0 + (int64_t)(j / (size_t)d)),
                           (long long)(j % (size_t)d), (double)X[j]);
        }
    }
    return QR_OK;
}

/* Consistency of the shape fields (shared by writer and reader); path names the file. Every
 * field is bounded (docs/hardening.md) before any sum or product of them is formed, so a crafted
 * shard cannot overflow the arithmetic below or ask for an absurd allocation. */
static qr_status check_info(const char *path, const qr_calib_info *in)
{
    int64_t rows_per_window = in->seq_len;
    if (in->dim < 1 || in->dim > QR_CONFIG_MAX_DIM || in->hidden_dim < 1 ||
        in->hidden_dim > QR_CONFIG_MAX_HIDDEN || in->q_dim < 1 ||
        in->q_dim > QR_CONFIG_MAX_HIDDEN || in->n_layers < 1 ||
        in->n_layers > QR_CONFIG_MAX_LAYERS || in->vocab_size < 1 ||
        in->vocab_size > QR_CONFIG_MAX_VOCAB || in->seq_len < 2 ||
        in->seq_len > QR_CONFIG_MAX_SEQ || in->n_windows < 1 || in->window_first < 0 ||
        in->total_windows < 1 || in->window_first > in->total_windows - in->n_windows ||
        in->shard_count < 1 || in->shard_index < 0 || in->shard_index >= in->shard_count ||
        in->layer_begin < 0 || in->layer_begin >= in->layer_end || in->layer_end > in->n_layers) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: inconsistent shard attributes (dim %lld, hidden_dim %lld, q_dim %lld, "
                       "n_layers %lld, vocab_size %lld, seq_len %lld, windows %lld from %lld of "
                       "%lld, shard %lld of %lld, layers [%lld, %lld); limits in "
                       "docs/hardening.md)",
                       path, (long long)in->dim, (long long)in->hidden_dim, (long long)in->q_dim,
                       (long long)in->n_layers, (long long)in->vocab_size, (long long)in->seq_len,
                       (long long)in->n_windows, (long long)in->window_first,
                       (long long)in->total_windows, (long long)in->shard_index,
                       (long long)in->shard_count, (long long)in->layer_begin,
                       (long long)in->layer_end);
    }
    if (in->n_windows > INT64_MAX / rows_per_window ||
        in->n_tokens != in->n_windows * rows_per_window) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: attribute n_tokens disagrees with the windows (expected n_windows %lld "
                       "x seq_len %lld, found %lld)",
                       path, (long long)in->n_windows, (long long)in->seq_len,
                       (long long)in->n_tokens);
    }
    if (in->dtype != QR_DTYPE_F32 && in->dtype != QR_DTYPE_F16) {
        return qr_fail(QR_ERR_INPUT, "%s: attribute dtype: expected f32 or f16", path);
    }
    return QR_OK;
}

/* ---- attributes --------------------------------------------------------------------------------
 */

static qr_status write_attrs(hid_t file, const char *path, const qr_calib_info *info)
{
    qr_calib_info copy = *info;
    copy.version = QR_CALIB_VERSION;
    QR_TRY(qr_h5_attr_write_str(file, "format", QR_CALIB_FORMAT));
    for (size_t i = 0; i < N_INT_ATTRS; i++) {
        QR_TRY(qr_h5_attr_write_int(file, int_attrs[i].name, *info_int(&copy, i)));
    }
    QR_TRY(qr_h5_attr_write_int(file, "layer_begin", info->layer_begin));
    QR_TRY(qr_h5_attr_write_int(file, "layer_end", info->layer_end));
    QR_TRY(qr_h5_attr_write_str(file, "dtype", info->dtype == QR_DTYPE_F16 ? "f16" : "f32"));
    QR_TRY(qr_h5_attr_write_str(file, "model_identity", info->model_identity));
    QR_TRY(qr_h5_attr_write_str(file, "model_path", info->model_path));
    QR_TRY(qr_h5_attr_write_str(file, "source", info->source));
    QR_TRY(qr_h5_attr_write_str(file, "source_kind", info->source_kind));
    return QR_OK;
}

/* Read the format attribute and the rest; QR_ERR_INPUT when it is not a version-1 or -2 shard. */
static qr_status read_attrs(hid_t file, const char *path, qr_calib_info *info)
{
    char format[64], dtype[16];
    memset(info, 0, sizeof *info);
    QR_TRY(qr_h5_attr_read_str(file, "format", path, format, sizeof format));
    if (strcmp(format, QR_CALIB_FORMAT) != 0) {
        return qr_fail(QR_ERR_INPUT, "%s: attribute format: expected '%s', found '%s'", path,
                       QR_CALIB_FORMAT, format);
    }
    for (size_t i = 0; i < N_INT_ATTRS; i++) {
        QR_TRY(qr_h5_attr_read_int(file, int_attrs[i].name, path, info_int(info, i)));
    }
    if (info->version == 1) { /* before layer slices: every layer */
        info->layer_begin = 0;
        info->layer_end = info->n_layers;
    } else if (info->version == 2) {
        QR_TRY(qr_h5_attr_read_int(file, "layer_begin", path, &info->layer_begin));
        QR_TRY(qr_h5_attr_read_int(file, "layer_end", path, &info->layer_end));
    } else {
        return qr_fail(QR_ERR_INPUT,
                       "%s: attribute version: expected 1 or 2 (the calibration shard versions "
                       "this qrecon reads), found %lld; capture again with this qrecon",
                       path, (long long)info->version);
    }
    QR_TRY(qr_h5_attr_read_str(file, "dtype", path, dtype, sizeof dtype));
    if (strcmp(dtype, "f32") == 0) {
        info->dtype = QR_DTYPE_F32;
    } else if (strcmp(dtype, "f16") == 0) {
        info->dtype = QR_DTYPE_F16;
    } else {
        return qr_fail(QR_ERR_INPUT, "%s: attribute dtype: expected f32 or f16, found '%s'", path,
                       dtype);
    }
    QR_TRY(qr_h5_attr_read_str(file, "model_identity", path, info->model_identity,
                               sizeof info->model_identity));
    QR_TRY(
        qr_h5_attr_read_str(file, "model_path", path, info->model_path, sizeof info->model_path));
    QR_TRY(qr_h5_attr_read_str(file, "source", path, info->source, sizeof info->source));
    QR_TRY(qr_h5_attr_read_str(file, "source_kind", path, info->source_kind,
                               sizeof info->source_kind));
    return check_info(path, info);
}

/* ---- writer ------------------------------------------------------------------------------------
 */

struct qr_calib_writer {
    char path[QR_CALIB_STR_MAX];
    char tmp[QR_CALIB_STR_MAX + 8];
    qr_calib_info info;
    hid_t file;
    hid_t f16;          /* the binary16 type, or -1 */
    hid_t *dsets;       /* (n_keys) activation datasets of the layers held, canonical order */
    size_t n_keys;      /* (layer_end - layer_begin) * 4 */
    hid_t tokens;       /* (n_tokens) int32 */
    int64_t *rows_done; /* (n_keys + 1) rows written per dataset, tokens last */
    uint16_t *conv;     /* (conv_cap) binary16 staging for f16 shards */
    size_t conv_cap;
    uint64_t bytes;
};

static qr_status create_dataset(qr_calib_writer *w, const char *name, int rank, int64_t width,
                                hid_t type, hid_t *out)
{
    qr_status st = QR_OK;
    hsize_t dims[2] = {(hsize_t)w->info.n_tokens, (hsize_t)width};
    hsize_t chunk[2] = {(hsize_t)w->info.seq_len, (hsize_t)width};
    int64_t row_bytes = width * (rank == 2 ? (int64_t)elem_size(w->info.dtype) : 4);
    hid_t space = -1, dcpl = -1;
    /* One window per chunk so a reader streams whole windows, unless that is too big. */
    if ((int64_t)chunk[0] * row_bytes > QR_CALIB_CHUNK_MAX) {
        chunk[0] =
            (hsize_t)(QR_CALIB_CHUNK_MAX / row_bytes > 0 ? QR_CALIB_CHUNK_MAX / row_bytes : 1);
    }
    space = H5Screate_simple(rank, dims, NULL);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    /* No timestamps and no fill pass: the same capture gives the same bytes, and every row is
     * written by the capture anyway. */
    if (space < 0 || dcpl < 0 || H5Pset_chunk(dcpl, rank, chunk) < 0 ||
        H5Pset_obj_track_times(dcpl, 0) < 0 || H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0 ||
        (*out = H5Dcreate2(w->file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0) {
        st = qr_fail(QR_ERR_IO, "%s: cannot create dataset %s (%lld x %lld)", w->tmp, name,
                     (long long)dims[0], (long long)width);
    }
    if (dcpl >= 0) {
        H5Pclose(dcpl);
    }
    if (space >= 0) {
        H5Sclose(space);
    }
    return st;
}

/* An upper bound of a shard's size: every row of every dataset, whole last chunks, and room for
 * HDF5's metadata (4 KiB per dataset and 1 MiB). Reserved before any HDF5 write, so a full disk is
 * found in qr_fs_reserve, not in HDF5 (which crashes at shutdown after a failed flush). The
 * attributes were checked by check_info, so nothing here overflows. */
static uint64_t shard_bytes(const qr_calib_info *in)
{
    uint64_t rows = (uint64_t)in->n_tokens + (uint64_t)in->seq_len; /* a partial last chunk */
    uint64_t width = 2 * (uint64_t)in->dim + (uint64_t)in->q_dim + (uint64_t)in->hidden_dim;
    uint64_t layers = (uint64_t)(in->layer_end - in->layer_begin);
    uint64_t keys = layers * N_KINDS + 1;
    return rows * (width * layers * elem_size(in->dtype) + 4) + keys * 4096 + ((uint64_t)1 << 20);
}

qr_status qr_calib_writer_open(const char *path, const qr_calib_info *info, qr_calib_writer **out)
{
    qr_status st = QR_OK;
    qr_calib_writer *w = NULL;
    hid_t fcpl = -1;
    size_t n_keys;
    qr_calib_info in = *info;
    *out = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);          /* errors are reported through qr_fail */
    if (in.layer_begin == 0 && in.layer_end == 0) { /* not set: the whole model */
        in.layer_end = in.n_layers;
    }
    info = &in;
    QR_TRY(check_info(path, info));
    if (strlen(path) >= QR_CALIB_STR_MAX) {
        return qr_fail(QR_ERR_INPUT, "%s: path too long", path);
    }
    QR_TRY(qr_calloc(&w, 1, sizeof *w, "calibration writer"));
    w->file = w->f16 = w->tokens = -1;
    w->info = *info;
    w->info.version = QR_CALIB_VERSION;
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    n_keys = (size_t)(info->layer_end - info->layer_begin) * N_KINDS;
    w->n_keys = n_keys;
    QR_CHECK(qr_malloc(&w->dsets, n_keys, sizeof *w->dsets, "calibration datasets"));
    for (size_t i = 0; i < n_keys; i++) {
        w->dsets[i] = -1;
    }
    QR_CHECK(qr_calloc(&w->rows_done, n_keys + 1, sizeof *w->rows_done, "calibration rows"));
    if (info->dtype == QR_DTYPE_F16 && (w->f16 = make_f16_type()) < 0) {
        st = qr_fail(QR_ERR_INTERNAL, "%s: cannot build the float16 HDF5 type", path);
        goto done;
    }
    fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (fcpl < 0 || H5Pset_obj_track_times(fcpl, 0) < 0 ||
        (w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT)) < 0) {
        st = qr_fail(QR_ERR_IO, "%s: cannot create HDF5 file", w->tmp);
        goto done;
    }
    QR_CHECK(qr_fs_reserve(w->tmp, shard_bytes(&w->info), true));
    QR_CHECK(write_attrs(w->file, w->tmp, &w->info));
    for (int64_t l = info->layer_begin; l < info->layer_end; l++) {
        for (int k = 0; k < N_KINDS; k++) {
            char key[QR_INPUT_KEY_MAX];
            qr_calib_key(key, sizeof key, l, (qr_input_kind)k);
            QR_CHECK(create_dataset(w, key, 2, key_width(info, (qr_input_kind)k),
                                    w->f16 >= 0 ? w->f16 : H5T_IEEE_F32LE,
                                    &w->dsets[(l - info->layer_begin) * N_KINDS + k]));
        }
    }
    QR_CHECK(create_dataset(w, "tokens", 1, 1, H5T_STD_I32LE, &w->tokens));
    *out = w;
    w = NULL;
done:
    if (fcpl >= 0) {
        H5Pclose(fcpl);
    }
    qr_calib_writer_abort(&w);
    return st;
}

/* Write n rows of width d at row0 of dset from buf (memory type mtype). */
static qr_status write_rows(qr_calib_writer *w, hid_t dset, const char *name, int rank,
                            int64_t row0, int64_t n, int64_t d, hid_t mtype, const void *buf)
{
    qr_status st = QR_OK;
    hsize_t start[2] = {(hsize_t)row0, 0}, count[2] = {(hsize_t)n, (hsize_t)d};
    hid_t fspace = H5Dget_space(dset), mspace = H5Screate_simple(rank, count, NULL);
    if (fspace < 0 || mspace < 0 ||
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        qr_fault_hit(QR_FAULT_WRITE) ||
        H5Dwrite(dset, mtype, mspace, fspace, H5P_DEFAULT, buf) < 0) {
        st = qr_fail(QR_ERR_IO, "%s: dataset %s: cannot write rows %lld..%lld", w->tmp, name,
                     (long long)row0, (long long)(row0 + n - 1));
    }
    if (mspace >= 0) {
        H5Sclose(mspace);
    }
    if (fspace >= 0) {
        H5Sclose(fspace);
    }
    return st;
}

qr_status qr_calib_writer_put(qr_calib_writer *w, int64_t layer, qr_input_kind kind, int64_t row0,
                              const float *X, int64_t n, int64_t d)
{
    char key[QR_INPUT_KEY_MAX];
    size_t idx, count;
    const void *buf = X;
    hid_t mtype = H5T_NATIVE_FLOAT;
    if (layer < w->info.layer_begin || layer >= w->info.layer_end || kind < 0 || kind >= N_KINDS) {
        return qr_fail(QR_ERR_INTERNAL, "%s: no dataset for layer %lld input %d", w->tmp,
                       (long long)layer, (int)kind);
    }
    qr_calib_key(key, sizeof key, layer, kind);
    if (d != key_width(&w->info, kind) || n < 1 || row0 < 0 || row0 + n > w->info.n_tokens) {
        return qr_fail(QR_ERR_INTERNAL,
                       "%s: dataset %s: rows %lld..%lld of width %lld do not fit (expected rows "
                       "below %lld, width %lld)",
                       w->tmp, key, (long long)row0, (long long)(row0 + n - 1), (long long)d,
                       (long long)w->info.n_tokens, (long long)key_width(&w->info, kind));
    }
    idx = (size_t)((layer - w->info.layer_begin) * N_KINDS + kind);
    count = (size_t)n * (size_t)d; /* bounded by the dataset's size, which exists */
    QR_TRY(check_finite(w->path, key, row0, d, X, count));
    if (w->f16 >= 0) {
        if (count > w->conv_cap) {
            qr_free(&w->conv);
            w->conv_cap = 0;
            QR_TRY(qr_malloc(&w->conv, count, sizeof *w->conv, "float16 staging"));
            w->conv_cap = count;
        }
        for (size_t i = 0; i < count; i++) {
            w->conv[i] = qr_f32_to_f16(X[i]);
            if ((w->conv[i] & 0x7c00u) == 0x7c00u) { /* finite in float32, infinite in float16 */
                return qr_fail(QR_ERR_INPUT,
                               "%s: dataset %s: value at row %lld, column %lld overflows float16 "
                               "(found %g; capture with --dtype f32)",
                               w->path, key, (long long)(row0 + (int64_t)(i / (size_t)d)),
                               (long long)(i % (size_t)d), (double)X[i]);
            }
        }
        buf = w->conv;
        mtype = w->f16;
    }
    QR_TRY(write_rows(w, w->dsets[idx], key, 2, row0, n, d, mtype, buf));
    w->rows_done[idx] += n;
    w->bytes += count * elem_size(w->info.dtype);
    return QR_OK;
}

qr_status qr_calib_writer_put_tokens(qr_calib_writer *w, int64_t row0, const int32_t *ids,
                                     int64_t n)
{
    size_t idx = w->n_keys;
    if (n < 1 || row0 < 0 || row0 + n > w->info.n_tokens) {
        return qr_fail(QR_ERR_INTERNAL,
                       "%s: dataset tokens: rows %lld..%lld do not fit (%lld rows)", w->tmp,
                       (long long)row0, (long long)(row0 + n - 1), (long long)w->info.n_tokens);
    }
    QR_TRY(write_rows(w, w->tokens, "tokens", 1, row0, n, 1, H5T_NATIVE_INT32, ids));
    w->rows_done[idx] += n;
    w->bytes += (uint64_t)n * 4;
    return QR_OK;
}

uint64_t qr_calib_writer_bytes(const qr_calib_writer *w)
{
    return w->bytes;
}

/* Close every HDF5 handle of w; false when HDF5 reports a failure (e.g. a failed flush). */
static bool close_handles(qr_calib_writer *w)
{
    bool ok = true;
    size_t n_keys = w->n_keys;
    for (size_t i = 0; w->dsets && i < n_keys; i++) {
        if (w->dsets[i] >= 0 && H5Dclose(w->dsets[i]) < 0) {
            ok = false;
        }
        w->dsets[i] = -1;
    }
    if (w->tokens >= 0 && H5Dclose(w->tokens) < 0) {
        ok = false;
    }
    w->tokens = -1;
    if (w->f16 >= 0) {
        H5Tclose(w->f16);
    }
    w->f16 = -1;
    if (w->file >= 0 && H5Fclose(w->file) < 0) {
        ok = false;
    }
    w->file = -1;
    return ok;
}

static void writer_free(qr_calib_writer *w)
{
    free(w->dsets);
    free(w->rows_done);
    free(w->conv);
    free(w);
}

qr_status qr_calib_writer_finish(qr_calib_writer **pw)
{
    qr_status st = QR_OK;
    qr_calib_writer *w = *pw;
    size_t n_keys = w->n_keys;
    int fd;
    struct stat sb;
    for (size_t i = 0; i <= n_keys; i++) {
        if (w->rows_done[i] != w->info.n_tokens) {
            char key[QR_INPUT_KEY_MAX] = "tokens";
            if (i < n_keys) {
                qr_calib_key(key, sizeof key, w->info.layer_begin + (int64_t)(i / N_KINDS),
                             (qr_input_kind)(i % N_KINDS));
            }
            st = qr_fail(QR_ERR_INTERNAL,
                         "%s: dataset %s incomplete (expected %lld rows written, found %lld)",
                         w->tmp, key, (long long)w->info.n_tokens, (long long)w->rows_done[i]);
            goto done;
        }
    }
    if (qr_fault_hit(QR_FAULT_CLOSE) || !close_handles(w)) {
        st = qr_fail(QR_ERR_IO, "%s: closing the HDF5 file failed", w->tmp);
        goto done;
    }
    fd = open(w->tmp, O_RDWR);
    /* Truncating to its own size returns the blocks reserved past the end (qr_fs_reserve). */
    if (fd < 0 || (fstat(fd, &sb) == 0 && ftruncate(fd, sb.st_size) != 0) ||
        qr_fault_hit(QR_FAULT_FLUSH) || fsync(fd) != 0) {
        st = qr_fail(QR_ERR_IO, "%s: cannot flush (%s)", w->tmp, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        goto done;
    }
    close(fd);
    if (qr_fault_hit(QR_FAULT_RENAME) || rename(w->tmp, w->path) != 0) {
        st = qr_fail(QR_ERR_IO, "%s: cannot rename into place (%s)", w->path, strerror(errno));
        goto done;
    }
    QR_CHECK(qr_fs_sync_parent(w->path));
    writer_free(w);
    *pw = NULL;
    return QR_OK;
done:
    qr_calib_writer_abort(pw);
    return st;
}

void qr_calib_writer_abort(qr_calib_writer **pw)
{
    qr_calib_writer *w;
    if (!pw || !*pw) {
        return;
    }
    w = *pw;
    close_handles(w);
    unlink(w->tmp);
    writer_free(w);
    *pw = NULL;
}

/* ---- reader ------------------------------------------------------------------------------------
 */

struct qr_calib_shard {
    char path[QR_CALIB_STR_MAX];
    qr_calib_info info;
    hid_t file;
    hid_t *dsets; /* (n_keys) canonical order */
    char (*keys)[QR_INPUT_KEY_MAX];
    size_t n_keys;
    hid_t tokens;
    uint16_t *conv; /* binary16 staging for f16 shards */
    size_t conv_cap;
    uint64_t file_size;    /* bytes of the file on disk */
    uint64_t stored_bytes; /* bytes the datasets declare, summed as they are opened */
};

/* Open dataset name and check its type and shape (rows, width) (rank 1 when width == 0). */
static qr_status open_dataset(qr_calib_shard *s, const char *name, int64_t width, bool is_int,
                              hid_t *out)
{
    qr_status st = QR_OK;
    hid_t d = -1, type = -1, space = -1;
    hsize_t dims[2] = {0, 0};
    int rank = width > 0 ? 2 : 1, found_rank;
    if (H5Lexists(s->file, name, H5P_DEFAULT) <= 0 ||
        (d = H5Dopen2(s->file, name, H5P_DEFAULT)) < 0) {
        return qr_fail(QR_ERR_INPUT, "%s: dataset %s missing (expected %s)", s->path, name,
                       is_int ? "the token ids" : "a layer input");
    }
    type = H5Dget_type(d);
    space = H5Dget_space(d);
    found_rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (found_rank != rank) {
        st = qr_fail(QR_ERR_INPUT, "%s: dataset %s: expected %d dimension(s), found %d", s->path,
                     name, rank, found_rank);
        goto done;
    }
    H5Sget_simple_extent_dims(space, dims, NULL);
    if ((int64_t)dims[0] != s->info.n_tokens || (rank == 2 && (int64_t)dims[1] != width)) {
        st =
            qr_fail(QR_ERR_INPUT, "%s: dataset %s: expected shape (%lld, %lld), found (%llu, %llu)",
                    s->path, name, (long long)s->info.n_tokens, (long long)width,
                    (unsigned long long)dims[0], (unsigned long long)dims[1]);
        goto done;
    }
    /* Every row must be stored: a crafted shard may declare rows whose chunks were never
     * allocated (HDF5 would read its fill value) or a file shorter than its datasets. */
    {
        size_t want = 0;
        size_t esize = is_int ? 4 : elem_size(s->info.dtype);
        if (!qr_mul3_size((size_t)s->info.n_tokens, (size_t)(width > 0 ? width : 1), esize,
                          &want) ||
            (uint64_t)H5Dget_storage_size(d) < (uint64_t)want || (uint64_t)want > s->file_size) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: dataset %s: %lld rows declared but not stored (expected %zu bytes, "
                         "found %llu stored in a file of %llu bytes)",
                         s->path, name, (long long)s->info.n_tokens, want,
                         (unsigned long long)H5Dget_storage_size(d),
                         (unsigned long long)s->file_size);
            goto done;
        }
        s->stored_bytes += want;
    }
    if (is_int) {
        if (H5Tget_class(type) != H5T_INTEGER || H5Tget_size(type) != 4) {
            st = qr_fail(QR_ERR_INPUT, "%s: dataset %s: expected 32-bit integers", s->path, name);
            goto done;
        }
    } else if (H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != elem_size(s->info.dtype)) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: dataset %s: expected %s floats as the dtype attribute says, found a "
                     "%zu-byte type",
                     s->path, name, s->info.dtype == QR_DTYPE_F16 ? "16-bit" : "32-bit",
                     H5Tget_size(type));
        goto done;
    }
    *out = d;
    d = -1;
done:
    if (space >= 0) {
        H5Sclose(space);
    }
    if (type >= 0) {
        H5Tclose(type);
    }
    if (d >= 0) {
        H5Dclose(d);
    }
    return st;
}

qr_status qr_calib_shard_open(const char *path, qr_calib_shard **out)
{
    qr_status st = QR_OK;
    qr_calib_shard *s = NULL;
    *out = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (strlen(path) >= QR_CALIB_STR_MAX) {
        return qr_fail(QR_ERR_INPUT, "%s: path too long", path);
    }
    QR_TRY(qr_calloc(&s, 1, sizeof *s, "calibration shard"));
    s->file = s->tokens = -1;
    snprintf(s->path, sizeof s->path, "%s", path);
    if (!qr_fs_exists(path)) {
        st = qr_fail(QR_ERR_INPUT, "%s: no such calibration shard", path);
        goto done;
    }
    QR_CHECK(qr_fs_file_size(path, &s->file_size));
    if (H5Fis_hdf5(path) <= 0 || (s->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        st = qr_fail(QR_ERR_INPUT, "%s: not an HDF5 file (expected a qrecon-calib shard)", path);
        goto done;
    }
    QR_CHECK(read_attrs(s->file, path, &s->info));
    if (!qr_mul_size((size_t)(s->info.layer_end - s->info.layer_begin), N_KINDS, &s->n_keys)) {
        st = qr_fail(QR_ERR_INPUT, "%s: attribute n_layers too large", path);
        goto done;
    }
    QR_CHECK(qr_malloc(&s->dsets, s->n_keys, sizeof *s->dsets, "calibration datasets"));
    for (size_t i = 0; i < s->n_keys; i++) {
        s->dsets[i] = -1;
    }
    QR_CHECK(qr_calloc(&s->keys, s->n_keys, sizeof *s->keys, "calibration keys"));
    for (size_t i = 0; i < s->n_keys; i++) {
        qr_input_kind kind = (qr_input_kind)(i % N_KINDS);
        qr_calib_key(s->keys[i], sizeof s->keys[i], s->info.layer_begin + (int64_t)(i / N_KINDS),
                     kind);
        QR_CHECK(open_dataset(s, s->keys[i], key_width(&s->info, kind), false, &s->dsets[i]));
    }
    QR_CHECK(open_dataset(s, "tokens", 0, true, &s->tokens));
    if (s->stored_bytes > s->file_size) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: datasets declare more bytes than the file holds (expected at most %llu, "
                     "found %llu; truncated or crafted shard?)",
                     path, (unsigned long long)s->file_size, (unsigned long long)s->stored_bytes);
        goto done;
    }
    *out = s;
    s = NULL;
done:
    qr_calib_shard_close(&s);
    return st;
}

void qr_calib_shard_close(qr_calib_shard **ps)
{
    qr_calib_shard *s;
    if (!ps || !*ps) {
        return;
    }
    s = *ps;
    for (size_t i = 0; s->dsets && i < s->n_keys; i++) {
        if (s->dsets[i] >= 0) {
            H5Dclose(s->dsets[i]);
        }
    }
    if (s->tokens >= 0) {
        H5Dclose(s->tokens);
    }
    if (s->file >= 0) {
        H5Fclose(s->file);
    }
    free(s->dsets);
    free(s->keys);
    free(s->conv);
    free(s);
    *ps = NULL;
}

const qr_calib_info *qr_calib_shard_info(const qr_calib_shard *s)
{
    return &s->info;
}

const char *qr_calib_shard_path(const qr_calib_shard *s)
{
    return s->path;
}

size_t qr_calib_shard_key_count(const qr_calib_shard *s)
{
    return s->n_keys;
}

const char *qr_calib_shard_key(const qr_calib_shard *s, size_t i)
{
    return i < s->n_keys ? s->keys[i] : NULL;
}

static qr_status find_key(const qr_calib_shard *s, const char *key, size_t *idx)
{
    for (size_t i = 0; i < s->n_keys; i++) {
        if (strcmp(s->keys[i], key) == 0) {
            *idx = i;
            return QR_OK;
        }
    }
    return qr_fail(QR_ERR_INPUT,
                   "%s: no dataset %s (expected layers.L.{attn_in,o_in,mlp_in,down_in} with L in "
                   "%lld..%lld, the layers this shard holds)",
                   s->path, key, (long long)s->info.layer_begin, (long long)s->info.layer_end - 1);
}

qr_status qr_calib_shard_shape(const qr_calib_shard *s, const char *key, int64_t *rows,
                               int64_t *cols)
{
    size_t i = 0;
    QR_TRY(find_key(s, key, &i));
    *rows = s->info.n_tokens;
    *cols = key_width(&s->info, (qr_input_kind)(i % N_KINDS));
    return QR_OK;
}

static qr_status read_slab(const qr_calib_shard *s, hid_t dset, const char *name, int rank,
                           int64_t r0, int64_t n, int64_t d, hid_t mtype, void *buf)
{
    qr_status st = QR_OK;
    hsize_t start[2] = {(hsize_t)r0, 0}, count[2] = {(hsize_t)n, (hsize_t)d};
    hid_t fspace = H5Dget_space(dset), mspace = H5Screate_simple(rank, count, NULL);
    if (fspace < 0 || mspace < 0 ||
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(dset, mtype, mspace, fspace, H5P_DEFAULT, buf) < 0) {
        st = qr_fail(QR_ERR_IO, "%s: dataset %s: cannot read rows %lld..%lld", s->path, name,
                     (long long)r0, (long long)(r0 + n - 1));
    }
    if (mspace >= 0) {
        H5Sclose(mspace);
    }
    if (fspace >= 0) {
        H5Sclose(fspace);
    }
    return st;
}

qr_status qr_calib_shard_read_rows(qr_calib_shard *s, const char *key, int64_t r0, int64_t n,
                                   float *dst)
{
    qr_status st = QR_OK;
    size_t i = 0, count;
    int64_t d;
    hid_t type = -1;
    QR_TRY(find_key(s, key, &i));
    d = key_width(&s->info, (qr_input_kind)(i % N_KINDS));
    if (n < 0 || r0 < 0 || r0 > s->info.n_tokens - n) {
        return qr_fail(QR_ERR_INPUT, "%s: dataset %s: rows %lld..%lld out of range (%lld rows)",
                       s->path, key, (long long)r0, (long long)(r0 + n - 1),
                       (long long)s->info.n_tokens);
    }
    if (n == 0) {
        return QR_OK;
    }
    count = (size_t)n * (size_t)d;
    if (s->info.dtype == QR_DTYPE_F32) {
        QR_TRY(read_slab(s, s->dsets[i], key, 2, r0, n, d, H5T_NATIVE_FLOAT, dst));
        return check_finite(s->path, key, r0, d, dst, count);
    }
    if (count > s->conv_cap) {
        qr_free(&s->conv);
        s->conv_cap = 0;
        QR_TRY(qr_malloc(&s->conv, count, sizeof *s->conv, "float16 staging"));
        s->conv_cap = count;
    }
    /* Read the stored binary16 bits as they are and widen them here (exact). */
    type = H5Dget_type(s->dsets[i]);
    if (type < 0) {
        return qr_fail(QR_ERR_IO, "%s: dataset %s: cannot read its type", s->path, key);
    }
    QR_CHECK(read_slab(s, s->dsets[i], key, 2, r0, n, d, type, s->conv));
    for (size_t j = 0; j < count; j++) {
        dst[j] = qr_f16_to_f32(s->conv[j]);
    }
    QR_CHECK(check_finite(s->path, key, r0, d, dst, count));
done:
    H5Tclose(type);
    return st;
}

qr_status qr_calib_shard_read_tokens(qr_calib_shard *s, int64_t r0, int64_t n, int32_t *dst)
{
    if (n < 0 || r0 < 0 || r0 > s->info.n_tokens - n) {
        return qr_fail(QR_ERR_INPUT, "%s: dataset tokens: rows %lld..%lld out of range (%lld rows)",
                       s->path, (long long)r0, (long long)(r0 + n - 1),
                       (long long)s->info.n_tokens);
    }
    if (n == 0) {
        return QR_OK;
    }
    return read_slab(s, s->tokens, "tokens", 1, r0, n, 1, H5T_NATIVE_INT32, dst);
}

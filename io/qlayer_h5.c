/* qlayer_h5.c: a quantized module as HDF5 attributes and datasets (io/qlayer_h5.h). */
#include "io/qlayer_h5.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5util.h"
#include "src/alloc.h"
#include "src/checked.h"

/* Checksums of packed, scales and zeros (0 when symmetric) into sums[0..2]. */
static void qweight_sums(const qr_qweight *q, uint64_t *sums)
{
    size_t n_scales = (size_t)q->rows * (size_t)((q->cols + q->group - 1) / q->group);
    sums[0] = qr_h5_checksum(q->packed, (size_t)q->rows * (size_t)((q->cols + 1) / 2));
    sums[1] = qr_h5_checksum(q->scales, n_scales * sizeof(float));
    sums[2] = q->asym ? qr_h5_checksum(q->zeros, n_scales) : 0;
}

void qr_qlayer_layout_of(const qr_qlayer *ql, qr_qlayer_layout *lay)
{
    memset(lay, 0, sizeof *lay);
    lay->method = (int32_t)ql->method;
    lay->d_out = ql->d_out;
    lay->d_in = ql->d_in;
    lay->rank = ql->rank;
    lay->n_salient = ql->n_salient;
    lay->main_group = ql->main.group;
    lay->main_asym = ql->main.asym;
    lay->side_group = ql->n_salient > 0 ? ql->side.group : 0;
    lay->side_asym = ql->n_salient > 0 ? ql->side.asym : 0;
    lay->has_smooth = ql->smooth != NULL;
    lay->has_perm = ql->perm != NULL;
    lay->bits_per_weight = ql->bits_per_weight;
    qweight_sums(&ql->main, &lay->sums[QR_SUM_MAIN_PACKED]);
    if (ql->smooth) {
        lay->sums[QR_SUM_SMOOTH] = qr_h5_checksum(ql->smooth, (size_t)ql->d_in * sizeof(float));
    }
    if (ql->perm) {
        lay->sums[QR_SUM_PERM] = qr_h5_checksum(ql->perm, (size_t)ql->d_in * sizeof(int32_t));
    }
    if (ql->rank > 0) {
        lay->sums[QR_SUM_L] =
            qr_h5_checksum(ql->L, (size_t)ql->d_out * (size_t)ql->rank * sizeof(float));
        lay->sums[QR_SUM_R] =
            qr_h5_checksum(ql->R, (size_t)ql->rank * (size_t)ql->d_in * sizeof(float));
    }
    if (ql->n_salient > 0) {
        qweight_sums(&ql->side, &lay->sums[QR_SUM_SIDE_PACKED]);
    }
}

static int64_t ceil_div(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

static uint64_t qweight_bytes(int64_t rows, int64_t cols, int64_t group, int asym)
{
    uint64_t ng = (uint64_t)ceil_div(cols, group);
    uint64_t b = (uint64_t)rows * (uint64_t)ceil_div(cols, 2) + (uint64_t)rows * ng * 4;
    return asym ? b + (uint64_t)rows * ng : b;
}

uint64_t qr_qlayer_layout_bytes(const qr_qlayer_layout *lay)
{
    uint64_t b = qweight_bytes(lay->d_out, lay->d_in, lay->main_group, lay->main_asym);
    b += lay->has_smooth ? (uint64_t)lay->d_in * 4 : 0;
    b += lay->has_perm ? (uint64_t)lay->d_in * 4 : 0;
    b += (uint64_t)lay->rank * (uint64_t)(lay->d_out + lay->d_in) * 4;
    if (lay->n_salient > 0) {
        b += qweight_bytes(lay->d_out, lay->n_salient, lay->side_group, lay->side_asym);
    }
    return b;
}

/* ---- writing -----------------------------------------------------------------------------------
 */

static hid_t group_create(hid_t loc, const char *name)
{
    hid_t gcpl = qr_h5_gcpl_plain();
    hid_t g = -1;
    if (gcpl >= 0) {
        g = H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    }
    if (gcpl >= 0) {
        H5Pclose(gcpl);
    }
    return g;
}

/* One step of a write: on a parallel file (comm not MPI_COMM_NULL) every rank learns whether any
 * rank failed, so all leave together instead of one rank waiting in the next collective call
 * while another has left (a disk-full hang); on a serial file the status as it is. */
#define STEP(expr)                                                                                 \
    do {                                                                                           \
        st = (expr);                                                                               \
        if (comm != MPI_COMM_NULL) {                                                               \
            st = qr_h5_agree(comm, st);                                                            \
        }                                                                                          \
        if (st != QR_OK) {                                                                         \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

static qr_status qweight_write(hid_t loc, const char *name, int64_t rows, int64_t cols,
                               int64_t group, int asym, const qr_qweight *q, hid_t dxpl,
                               MPI_Comm comm, const uint64_t *sums)
{
    qr_status st = QR_OK;
    hsize_t packed_dims[2] = {(hsize_t)rows, (hsize_t)ceil_div(cols, 2)};
    hsize_t scale_dims[2] = {(hsize_t)rows, (hsize_t)ceil_div(cols, group)};
    hid_t g = group_create(loc, name);
    STEP(g < 0 ? qr_fail(QR_ERR_IO, "group '%s': cannot create it", name) : QR_OK);
    STEP(qr_h5_attr_write_int(g, "group", group));
    STEP(qr_h5_attr_write_int(g, "asym", asym ? 1 : 0));
    STEP(qr_h5_dataset_write(g, "packed", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, packed_dims,
                             q ? q->packed : NULL, dxpl, sums[0]));
    STEP(qr_h5_dataset_write(g, "scales", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, scale_dims,
                             q ? q->scales : NULL, dxpl, sums[1]));
    if (asym) {
        STEP(qr_h5_dataset_write(g, "zeros", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, scale_dims,
                                 q ? q->zeros : NULL, dxpl, sums[2]));
    }
done:
    if (g >= 0) {
        H5Gclose(g);
    }
    return st;
}

qr_status qr_h5_qlayer_write_coll(hid_t loc, const qr_qlayer_layout *lay, const qr_qlayer *ql,
                                  hid_t dxpl, MPI_Comm comm)
{
    qr_status st = QR_OK;
    hsize_t vec[1] = {(hsize_t)lay->d_in};
    hsize_t l_dims[2] = {(hsize_t)lay->d_out, (hsize_t)lay->rank};
    hsize_t r_dims[2] = {(hsize_t)lay->rank, (hsize_t)lay->d_in};
    STEP(qr_h5_attr_write_str(loc, "method", qr_method_name((qr_method_id)lay->method)));
    STEP(qr_h5_attr_write_int(loc, "d_out", lay->d_out));
    STEP(qr_h5_attr_write_int(loc, "d_in", lay->d_in));
    STEP(qr_h5_attr_write_int(loc, "rank", lay->rank));
    STEP(qr_h5_attr_write_int(loc, "n_salient", lay->n_salient));
    STEP(qr_h5_attr_write_double(loc, "bits_per_weight", lay->bits_per_weight));
    STEP(qweight_write(loc, "main", lay->d_out, lay->d_in, lay->main_group, lay->main_asym,
                       ql ? &ql->main : NULL, dxpl, comm, &lay->sums[QR_SUM_MAIN_PACKED]));
    if (lay->has_smooth) {
        STEP(qr_h5_dataset_write(loc, "smooth", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, vec,
                                 ql ? ql->smooth : NULL, dxpl, lay->sums[QR_SUM_SMOOTH]));
    }
    if (lay->has_perm) {
        STEP(qr_h5_dataset_write(loc, "perm", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, vec,
                                 ql ? ql->perm : NULL, dxpl, lay->sums[QR_SUM_PERM]));
    }
    if (lay->rank > 0) {
        STEP(qr_h5_dataset_write(loc, "L", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, l_dims,
                                 ql ? ql->L : NULL, dxpl, lay->sums[QR_SUM_L]));
        STEP(qr_h5_dataset_write(loc, "R", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, r_dims,
                                 ql ? ql->R : NULL, dxpl, lay->sums[QR_SUM_R]));
    }
    if (lay->n_salient > 0) {
        STEP(qweight_write(loc, "side", lay->d_out, lay->n_salient, lay->side_group, lay->side_asym,
                           ql ? &ql->side : NULL, dxpl, comm, &lay->sums[QR_SUM_SIDE_PACKED]));
    }
done:
    return st;
}

qr_status qr_h5_qlayer_write(hid_t loc, const qr_qlayer_layout *lay, const qr_qlayer *ql,
                             hid_t dxpl)
{
    return qr_h5_qlayer_write_coll(loc, lay, ql, dxpl, MPI_COMM_NULL);
}

/* ---- reading -----------------------------------------------------------------------------------
 */

static qr_status expect_dims(hid_t loc, const char *name, const char *where, int ndim, int64_t d0,
                             int64_t d1)
{
    hsize_t dims[2] = {0, 0};
    QR_TRY(qr_h5_dataset_dims(loc, name, where, ndim, dims));
    if ((int64_t)dims[0] != d0 || (ndim == 2 && (int64_t)dims[1] != d1)) {
        if (ndim == 1) {
            return qr_fail(QR_ERR_INPUT, "%s: dataset '%s' has shape (%llu) (expected (%lld))",
                           where, name, (unsigned long long)dims[0], (long long)d0);
        }
        return qr_fail(QR_ERR_INPUT,
                       "%s: dataset '%s' has shape (%llu, %llu) (expected (%lld, %lld))", where,
                       name, (unsigned long long)dims[0], (unsigned long long)dims[1],
                       (long long)d0, (long long)d1);
    }
    return QR_OK;
}

static bool has_link(hid_t loc, const char *name)
{
    return H5Lexists(loc, name, H5P_DEFAULT) > 0;
}

/* Group `name` under loc: its attributes and dataset shapes for a (rows, cols) INT4 matrix. */
static qr_status qweight_read_layout(hid_t loc, const char *name, const char *where, int64_t rows,
                                     int64_t cols, int64_t *group, int32_t *asym)
{
    qr_status st = QR_OK;
    char w[512];
    int64_t a = 0;
    hid_t g;
    if (!has_link(loc, name)) {
        return qr_fail(QR_ERR_INPUT, "%s: group '%s' is missing", where, name);
    }
    g = H5Gopen2(loc, name, H5P_DEFAULT);
    if (g < 0) {
        return qr_fail(QR_ERR_INPUT, "%s: '%s' is not a group", where, name);
    }
    snprintf(w, sizeof w, "%s/%s", where, name);
    QR_CHECK(qr_h5_attr_read_int(g, "group", w, group));
    QR_CHECK(qr_h5_attr_read_int(g, "asym", w, &a));
    if (*group < 1 || *group > cols || (a != 0 && a != 1)) {
        st =
            qr_fail(QR_ERR_INPUT,
                    "%s: bad quantization parameters (expected group in [1, %lld] and asym 0 or 1, "
                    "found group %lld, asym %lld)",
                    w, (long long)cols, (long long)*group, (long long)a);
        goto done;
    }
    *asym = (int32_t)a;
    QR_CHECK(expect_dims(g, "packed", w, 2, rows, ceil_div(cols, 2)));
    QR_CHECK(expect_dims(g, "scales", w, 2, rows, ceil_div(cols, *group)));
    if (a) {
        QR_CHECK(expect_dims(g, "zeros", w, 2, rows, ceil_div(cols, *group)));
    } else if (has_link(g, "zeros")) {
        st = qr_fail(QR_ERR_INPUT, "%s: dataset 'zeros' present but asym is 0", w);
    }
done:
    H5Gclose(g);
    return st;
}

qr_status qr_h5_qlayer_read_layout(hid_t loc, const char *where, qr_qlayer_layout *lay)
{
    char method[64];
    qr_method_id m;
    int64_t max_rank;
    memset(lay, 0, sizeof *lay);
    QR_TRY(qr_h5_attr_read_str(loc, "method", where, method, sizeof method));
    m = qr_method_parse(method);
    if (m == QR_METHOD_COUNT) {
        return qr_fail(QR_ERR_INPUT, "%s: unknown method '%s'", where, method);
    }
    lay->method = (int32_t)m;
    QR_TRY(qr_h5_attr_read_int(loc, "d_out", where, &lay->d_out));
    QR_TRY(qr_h5_attr_read_int(loc, "d_in", where, &lay->d_in));
    QR_TRY(qr_h5_attr_read_int(loc, "rank", where, &lay->rank));
    QR_TRY(qr_h5_attr_read_int(loc, "n_salient", where, &lay->n_salient));
    QR_TRY(qr_h5_attr_read_double(loc, "bits_per_weight", where, &lay->bits_per_weight));
    /* Bound the shapes so every later size product fits comfortably in 64 bits. */
    if (lay->d_out < 1 || lay->d_in < 1 || lay->d_out > (1 << 24) || lay->d_in > (1 << 24)) {
        return qr_fail(
            QR_ERR_INPUT,
            "%s: bad module shape (expected 1 <= d_out, d_in <= 2^24, found %lld x %lld)", where,
            (long long)lay->d_out, (long long)lay->d_in);
    }
    max_rank = lay->d_out < lay->d_in ? lay->d_out : lay->d_in;
    if (lay->rank < 0 || lay->rank > max_rank || lay->n_salient < 0 || lay->n_salient > lay->d_in) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: bad correction size (expected rank in [0, %lld] and n_salient in [0, "
                       "%lld], found rank %lld, n_salient %lld)",
                       where, (long long)max_rank, (long long)lay->d_in, (long long)lay->rank,
                       (long long)lay->n_salient);
    }
    QR_TRY(qweight_read_layout(loc, "main", where, lay->d_out, lay->d_in, &lay->main_group,
                               &lay->main_asym));
    lay->has_smooth = has_link(loc, "smooth");
    lay->has_perm = has_link(loc, "perm");
    if (lay->has_smooth) {
        QR_TRY(expect_dims(loc, "smooth", where, 1, lay->d_in, 0));
    }
    if (lay->has_perm) {
        QR_TRY(expect_dims(loc, "perm", where, 1, lay->d_in, 0));
    }
    if (lay->rank > 0) {
        QR_TRY(expect_dims(loc, "L", where, 2, lay->d_out, lay->rank));
        QR_TRY(expect_dims(loc, "R", where, 2, lay->rank, lay->d_in));
    } else if (has_link(loc, "L") || has_link(loc, "R")) {
        return qr_fail(QR_ERR_INPUT, "%s: datasets L/R present but rank is 0", where);
    }
    if (lay->n_salient > 0) {
        QR_TRY(qweight_read_layout(loc, "side", where, lay->d_out, lay->n_salient, &lay->side_group,
                                   &lay->side_asym));
    } else if (has_link(loc, "side")) {
        return qr_fail(QR_ERR_INPUT, "%s: group 'side' present but n_salient is 0", where);
    }
    return QR_OK;
}

/* Read dataset `name` whole into buf (n bytes) and check it against its stored checksum. */
static qr_status ds_read(hid_t loc, const char *name, const char *where, hid_t mtype, void *buf,
                         size_t n)
{
    qr_status st = QR_OK;
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    herr_t rc = ds >= 0 ? H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : -1;
    if (rc < 0) {
        st = qr_fail(QR_ERR_IO, "%s: cannot read dataset '%s'", where, name);
    } else {
        st = qr_h5_checksum_verify(ds, where, name, buf, n);
    }
    if (ds >= 0) {
        H5Dclose(ds);
    }
    return st;
}

static qr_status qweight_read(hid_t loc, const char *name, const char *where, int64_t rows,
                              int64_t cols, int64_t group, int asym, qr_qweight *q)
{
    qr_status st = QR_OK;
    char w[512];
    size_t n_scales = (size_t)rows * (size_t)ceil_div(cols, group);
    hid_t g = H5Gopen2(loc, name, H5P_DEFAULT);
    if (g < 0) {
        return qr_fail(QR_ERR_INPUT, "%s: cannot open group '%s'", where, name);
    }
    snprintf(w, sizeof w, "%s/%s", where, name);
    QR_CHECK(qr_qweight_alloc(q, rows, cols, group, asym));
    QR_CHECK(ds_read(g, "packed", w, H5T_NATIVE_UINT8, q->packed,
                     (size_t)rows * (size_t)ceil_div(cols, 2)));
    QR_CHECK(ds_read(g, "scales", w, H5T_NATIVE_FLOAT, q->scales, n_scales * sizeof(float)));
    for (size_t i = 0; i < n_scales; i++) {
        if (!(isfinite(q->scales[i]) && q->scales[i] > 0.0f)) {
            st = qr_fail(QR_ERR_INPUT, "%s: scales[%zu] is not a finite positive number (found %g)",
                         w, i, (double)q->scales[i]);
            goto done;
        }
    }
    if (asym) {
        QR_CHECK(ds_read(g, "zeros", w, H5T_NATIVE_UINT8, q->zeros, n_scales));
        for (size_t i = 0; i < n_scales; i++) {
            if (q->zeros[i] > 15) {
                st = qr_fail(QR_ERR_INPUT, "%s: zeros[%zu] out of range (expected 0..15, found %u)",
                             w, i, (unsigned)q->zeros[i]);
                goto done;
            }
        }
    }
done:
    H5Gclose(g);
    return st;
}

qr_status qr_h5_qlayer_read(hid_t loc, const char *where, qr_qlayer *ql)
{
    qr_status st = QR_OK;
    qr_qlayer_layout lay;
    size_t n_l = 0, n_r = 0;
    uint8_t *seen = NULL;
    memset(ql, 0, sizeof *ql);
    QR_TRY(qr_h5_qlayer_read_layout(loc, where, &lay));
    ql->method = (qr_method_id)lay.method;
    ql->d_out = lay.d_out;
    ql->d_in = lay.d_in;
    ql->rank = lay.rank;
    ql->n_salient = lay.n_salient;
    ql->bits_per_weight = lay.bits_per_weight;
    QR_CHECK(qweight_read(loc, "main", where, lay.d_out, lay.d_in, lay.main_group, lay.main_asym,
                          &ql->main));
    if (lay.has_smooth) {
        QR_CHECK(qr_malloc(&ql->smooth, (size_t)lay.d_in, sizeof(float), "smooth"));
        QR_CHECK(ds_read(loc, "smooth", where, H5T_NATIVE_FLOAT, ql->smooth,
                         (size_t)lay.d_in * sizeof(float)));
        for (int64_t j = 0; j < lay.d_in; j++) {
            if (!(isfinite(ql->smooth[j]) && ql->smooth[j] != 0.0f)) {
                st = qr_fail(QR_ERR_INPUT, "%s: smooth[%lld] is not finite and nonzero (found %g)",
                             where, (long long)j, (double)ql->smooth[j]);
                goto done;
            }
        }
    }
    if (lay.has_perm) {
        QR_CHECK(qr_malloc(&ql->perm, (size_t)lay.d_in, sizeof(int32_t), "perm"));
        QR_CHECK(ds_read(loc, "perm", where, H5T_NATIVE_INT32, ql->perm,
                         (size_t)lay.d_in * sizeof(int32_t)));
        QR_CHECK(qr_calloc(&seen, (size_t)lay.d_in, 1, "perm check"));
        for (int64_t j = 0; j < lay.d_in; j++) {
            int32_t p = ql->perm[j];
            if (p < 0 || p >= lay.d_in || seen[p]) {
                st = qr_fail(QR_ERR_INPUT,
                             "%s: perm is not a permutation of 0..%lld (perm[%lld] = %d)", where,
                             (long long)lay.d_in - 1, (long long)j, (int)p);
                goto done;
            }
            seen[p] = 1;
        }
    }
    if (lay.rank > 0) {
        if (!qr_mul_size((size_t)lay.d_out, (size_t)lay.rank, &n_l) ||
            !qr_mul_size((size_t)lay.rank, (size_t)lay.d_in, &n_r)) {
            st = qr_fail(QR_ERR_INPUT, "%s: correction size overflows", where);
            goto done;
        }
        QR_CHECK(qr_malloc(&ql->L, n_l, sizeof(float), "L"));
        QR_CHECK(qr_malloc(&ql->R, n_r, sizeof(float), "R"));
        QR_CHECK(ds_read(loc, "L", where, H5T_NATIVE_FLOAT, ql->L, n_l * sizeof(float)));
        QR_CHECK(ds_read(loc, "R", where, H5T_NATIVE_FLOAT, ql->R, n_r * sizeof(float)));
    }
    if (lay.n_salient > 0) {
        QR_CHECK(qweight_read(loc, "side", where, lay.d_out, lay.n_salient, lay.side_group,
                              lay.side_asym, &ql->side));
    }
done:
    free(seen);
    if (st != QR_OK) {
        qr_qlayer_free(ql);
    }
    return st;
}

/* ---- comparison --------------------------------------------------------------------------------
 */

static bool same_bytes(const void *a, const void *b, size_t n)
{
    if (!a || !b) {
        return a == b;
    }
    return memcmp(a, b, n) == 0;
}

static bool qweight_equal(const qr_qweight *a, const qr_qweight *b)
{
    size_t n_scales, n_packed;
    if (a->rows != b->rows || a->cols != b->cols || a->group != b->group ||
        a->n_groups != b->n_groups || a->asym != b->asym) {
        return false;
    }
    if (a->rows == 0) {
        return true;
    }
    n_scales = (size_t)(a->rows * a->n_groups);
    n_packed = (size_t)(a->rows * qr_qweight_row_bytes(a));
    return same_bytes(a->packed, b->packed, n_packed) &&
           same_bytes(a->scales, b->scales, n_scales * sizeof(float)) &&
           (!a->asym || same_bytes(a->zeros, b->zeros, n_scales));
}

bool qr_qlayer_equal(const qr_qlayer *a, const qr_qlayer *b, const char **what)
{
    const char *diff = NULL;
    size_t d_in = (size_t)a->d_in;
    if (a->method != b->method || a->d_out != b->d_out || a->d_in != b->d_in ||
        a->rank != b->rank || a->n_salient != b->n_salient) {
        diff = "method or shape";
    } else if (memcmp(&a->bits_per_weight, &b->bits_per_weight, sizeof(double)) != 0) {
        diff = "bits_per_weight";
    } else if (!qweight_equal(&a->main, &b->main)) {
        diff = "main";
    } else if (!same_bytes(a->smooth, b->smooth, d_in * sizeof(float))) {
        diff = "smooth";
    } else if (!same_bytes(a->perm, b->perm, d_in * sizeof(int32_t))) {
        diff = "perm";
    } else if (a->rank > 0 &&
               (!same_bytes(a->L, b->L, (size_t)(a->d_out * a->rank) * sizeof(float)) ||
                !same_bytes(a->R, b->R, (size_t)(a->rank * a->d_in) * sizeof(float)))) {
        diff = "L or R";
    } else if (a->n_salient > 0 && !qweight_equal(&a->side, &b->side)) {
        diff = "side";
    }
    if (what) {
        *what = diff;
    }
    return diff == NULL;
}

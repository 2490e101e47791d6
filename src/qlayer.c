/* qlayer.c: storage of quantized INT4 matrices and quantized modules (src/qlayer.h): allocation,
 * element access, dequantization, the effective dense weight, and method names. */
#include "src/qlayer.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"
#include "src/checked.h"

qr_status qr_qweight_alloc(qr_qweight *q, int64_t rows, int64_t cols, int64_t group, bool asym)
{
    qr_status st = QR_OK;
    size_t n_scales;
    size_t n_packed;
    memset(q, 0, sizeof *q);
    if (rows < 0 || cols < 1 || group < 0) {
        return qr_fail(QR_ERR_INPUT,
                       "quantized matrix: bad shape (expected rows >= 0, cols >= 1, group >= 0, "
                       "found %lld x %lld, group %lld)",
                       (long long)rows, (long long)cols, (long long)group);
    }
    q->rows = rows;
    q->cols = cols;
    q->group = (group == 0 || group > cols) ? cols : group;
    q->n_groups = (cols + q->group - 1) / q->group;
    q->asym = asym;
    if (!qr_mul_size((size_t)rows, (size_t)q->n_groups, &n_scales) ||
        !qr_mul_size((size_t)rows, (size_t)qr_qweight_row_bytes(q), &n_packed)) {
        memset(q, 0, sizeof *q);
        return qr_fail(QR_ERR_INPUT, "quantized matrix: size overflows (%lld x %lld)",
                       (long long)rows, (long long)cols);
    }
    QR_CHECK(qr_calloc(&q->packed, n_packed, 1, "quantized matrix codes"));
    QR_CHECK(qr_calloc(&q->scales, n_scales, sizeof(float), "quantized matrix scales"));
    if (asym) {
        QR_CHECK(qr_calloc(&q->zeros, n_scales, 1, "quantized matrix zero points"));
    }
done:
    if (st != QR_OK) {
        qr_qweight_free(q);
    }
    return st;
}

void qr_qweight_free(qr_qweight *q)
{
    if (!q) {
        return;
    }
    free(q->packed);
    free(q->scales);
    free(q->zeros);
    memset(q, 0, sizeof *q);
}

double qr_qweight_value(const qr_qweight *q, int64_t i, int64_t j)
{
    int64_t g = i * q->n_groups + j / q->group;
    double code = (double)qr_qweight_get_code(q, i, j);
    double scale = (double)q->scales[g];
    if (q->asym) {
        return scale * (code - (double)q->zeros[g]);
    }
    return scale * (code - 8.0);
}

void qr_qweight_dequantize(const qr_qweight *q, float *out)
{
    for (int64_t i = 0; i < q->rows; i++) {
        for (int64_t j = 0; j < q->cols; j++) {
            out[i * q->cols + j] = (float)qr_qweight_value(q, i, j);
        }
    }
}

void qr_qlayer_free(qr_qlayer *ql)
{
    if (!ql) {
        return;
    }
    qr_qweight_free(&ql->main);
    qr_qweight_free(&ql->side);
    free(ql->smooth);
    free(ql->perm);
    free(ql->L);
    free(ql->R);
    memset(ql, 0, sizeof *ql);
}

static qr_status check_parts(const qr_qlayer *ql)
{
    int64_t d_out = ql->d_out, d_in = ql->d_in;
    if (ql->main.rows != d_out || ql->main.cols != d_in) {
        return qr_fail(QR_ERR_INPUT,
                       "quantized layer: main matrix shape (expected %lld x %lld, found %lld x "
                       "%lld)",
                       (long long)d_out, (long long)d_in, (long long)ql->main.rows,
                       (long long)ql->main.cols);
    }
    if (ql->n_salient < 0 || ql->n_salient > d_in ||
        (ql->n_salient > 0 && (ql->side.rows != d_out || ql->side.cols != ql->n_salient))) {
        return qr_fail(QR_ERR_INPUT,
                       "quantized layer: side matrix shape (expected %lld x %lld, found %lld x "
                       "%lld)",
                       (long long)d_out, (long long)ql->n_salient, (long long)ql->side.rows,
                       (long long)ql->side.cols);
    }
    if (ql->rank < 0 || (ql->rank > 0 && (!ql->L || !ql->R))) {
        return qr_fail(QR_ERR_INPUT, "quantized layer: rank %lld without L and R factors",
                       (long long)ql->rank);
    }
    return QR_OK;
}

qr_status qr_qlayer_weight_t(const qr_qlayer *ql, double *w_t)
{
    int64_t d_out = ql->d_out, d_in = ql->d_in, r = ql->rank;
    qr_status st = QR_OK;
    double *Ld = NULL, *Rd = NULL; /* (d_out, r), (r, d_in) */
    QR_TRY(check_parts(ql));
    for (int64_t i = 0; i < d_out; i++) {
        double *row = w_t + i * d_in;
        for (int64_t j = 0; j < d_in; j++) {
            row[j] = qr_qweight_value(&ql->main, i, j);
        }
        for (int64_t j = 0; j < ql->n_salient; j++) {
            row[j] += qr_qweight_value(&ql->side, i, j);
        }
    }
    if (r > 0) { /* L R by dgemm: a scalar loop of d_out d_in r was most of the metrics' time */
        QR_CHECK(qr_malloc(&Ld, (size_t)(d_out * r), sizeof *Ld, "effective weight L"));
        QR_CHECK(qr_malloc(&Rd, (size_t)(r * d_in), sizeof *Rd, "effective weight R"));
        for (int64_t i = 0; i < d_out * r; i++) {
            Ld[i] = (double)ql->L[i];
        }
        for (int64_t i = 0; i < r * d_in; i++) {
            Rd[i] = (double)ql->R[i];
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d_out, (int)d_in, (int)r, 1.0,
                    Ld, (int)r, Rd, (int)d_in, 1.0, w_t, (int)d_in);
    }
done:
    free(Ld);
    free(Rd);
    return st;
}

qr_status qr_qlayer_effective_weight(const qr_qlayer *ql, double *w_eff)
{
    int64_t d_out = ql->d_out, d_in = ql->d_in;
    qr_status st = QR_OK;
    double *row = NULL; /* (d_in): one row in the transformed space t */
    QR_TRY(qr_qlayer_weight_t(ql, w_eff));
    if (!ql->perm && !ql->smooth) {
        return QR_OK;
    }
    QR_CHECK(qr_malloc(&row, (size_t)d_in, sizeof *row, "effective weight row"));
    for (int64_t i = 0; i < d_out; i++) {
        memcpy(row, w_eff + i * d_in, (size_t)d_in * sizeof *row);
        for (int64_t j = 0; j < d_in; j++) {
            int64_t src = ql->perm ? ql->perm[j] : j;
            double s = ql->smooth ? (double)ql->smooth[j] : 1.0;
            if (src < 0 || src >= d_in) {
                st = qr_fail(QR_ERR_INPUT,
                             "quantized layer: permutation entry %lld out of range (expected "
                             "0..%lld, found %lld)",
                             (long long)j, (long long)(d_in - 1), (long long)src);
                goto done;
            }
            w_eff[i * d_in + src] = row[j] / s;
        }
    }
done:
    free(row);
    return st;
}

static const char *const method_names[QR_METHOD_COUNT] = {
    [QR_METHOD_RTN] = "rtn",
    [QR_METHOD_LQER] = "lqer",
    [QR_METHOD_QERA_APPROX] = "qera-approx",
    [QR_METHOD_QERA_EXACT] = "qera-exact",
    [QR_METHOD_ASER] = "aser",
    [QR_METHOD_SERQ] = "serq",
    [QR_METHOD_FLRQ] = "flrq",
    [QR_METHOD_SRR] = "srr",
    [QR_METHOD_JOINT] = "joint",
};

const char *qr_method_name(qr_method_id m)
{
    if ((int)m < 0 || m >= QR_METHOD_COUNT) {
        return "unknown";
    }
    return method_names[m];
}

qr_method_id qr_method_parse(const char *name)
{
    if (!name) {
        return QR_METHOD_COUNT;
    }
    for (int m = 0; m < QR_METHOD_COUNT; m++) {
        if (strcmp(name, method_names[m]) == 0) {
            return (qr_method_id)m;
        }
    }
    return QR_METHOD_COUNT;
}

qr_status qr_qlayer_check(const qr_qlayer *ql, const char *who)
{
    int tmp;
    if (ql->d_out < 1 || ql->d_in < 1 || !qr_to_int(ql->d_out, &tmp) ||
        !qr_to_int(ql->d_in, &tmp)) {
        return qr_fail(QR_ERR_INPUT, "%s: bad shape (expected >= 1 x 1, found %lld x %lld)", who,
                       (long long)ql->d_out, (long long)ql->d_in);
    }
    if (ql->main.rows != ql->d_out || ql->main.cols != ql->d_in || !ql->main.packed) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: main matrix shape (expected %lld x %lld, found %lld x %lld)", who,
                       (long long)ql->d_out, (long long)ql->d_in, (long long)ql->main.rows,
                       (long long)ql->main.cols);
    }
    if (ql->n_salient < 0 || ql->n_salient > ql->d_in ||
        (ql->n_salient > 0 && (ql->side.rows != ql->d_out || ql->side.cols != ql->n_salient))) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: side matrix shape (expected %lld x %lld, found %lld x %lld)", who,
                       (long long)ql->d_out, (long long)ql->n_salient, (long long)ql->side.rows,
                       (long long)ql->side.cols);
    }
    if (ql->rank < 0 || ql->rank > ql->d_in || (ql->rank > 0 && (!ql->L || !ql->R))) {
        return qr_fail(QR_ERR_INPUT, "%s: rank %lld without L and R factors", who,
                       (long long)ql->rank);
    }
    for (int64_t j = 0; ql->perm && j < ql->d_in; j++) {
        if (ql->perm[j] < 0 || ql->perm[j] >= ql->d_in) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: permutation entry %lld out of range (expected 0..%lld, found %lld)",
                           who, (long long)j, (long long)(ql->d_in - 1), (long long)ql->perm[j]);
        }
    }
    return QR_OK;
}

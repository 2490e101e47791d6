/* lowrank.c: the low-rank correction Y += (Xdeq · Rᵀ) · Lᵀ of the quantized modules, in float32
 * (two BLAS calls) or with INT8 factors (integer dot products), both on the same quantized
 * activations as the main INT4 product.
 *
 * INT8 option. R (rank, d_in) and L (d_out, rank) are quantized per row, symmetric, scale =
 * max|row| / 127. Then per token:
 *     z_k = sR_k * sum_h xs_h * sum_{j in group h} Rq_kj x_j      (exact int32 per group)
 *     zq = round(z / sz), sz = max|z| / 127                        (z quantized per token)
 *     y_o += sL_o * sz * sum_k Lq_ok zq_k                          (exact int32)
 * so both products run on int8 data (a quarter of the float bytes, which is what matters at few
 * tokens, where the product is memory bound). Error: each of the three roundings adds a relative
 * error of about 1/254 of the row's largest magnitude per element; measured figures are in
 * docs/kernels.md. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"
#include "src/checked.h"
#include "src/kernels/internal.h"

qr_status qr_lowrank_apply_f32(const float *L, const float *R, int64_t d_out, int64_t d_in,
                               int64_t rank, const float *Xdeq, int64_t n, float *Y)
{
    qr_status st = QR_OK;
    float *Z = NULL; /* (n, rank) = Xdeq · Rᵀ */
    size_t nz;
    int in, ir, io, ik;
    if (rank == 0 || n == 0 || d_out == 0) {
        return QR_OK;
    }
    if (!qr_to_int(n, &in) || !qr_to_int(rank, &ir) || !qr_to_int(d_out, &io) ||
        !qr_to_int(d_in, &ik) || !qr_mul_size((size_t)n, (size_t)rank, &nz)) {
        return qr_fail(QR_ERR_INPUT,
                       "low-rank correction: size does not fit a BLAS int (%lld tokens, %lld x "
                       "%lld, rank %lld)",
                       (long long)n, (long long)d_out, (long long)d_in, (long long)rank);
    }
    QR_TRY(qr_malloc(&Z, nz, sizeof *Z, "low-rank product"));
    if (n == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, ir, ik, 1.0f, R, ik, Xdeq, 1, 0.0f, Z, 1);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, io, ir, 1.0f, L, ir, Z, 1, 1.0f, Y, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, in, ir, ik, 1.0f, Xdeq, ik, R, ik,
                    0.0f, Z, ir);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, in, io, ir, 1.0f, Z, ir, L, ir, 1.0f,
                    Y, io);
    }
    free(Z);
    return st;
}

/* Symmetric int8 of one row of n values: codes and the scale max|v| / 127 (never zero). */
static float quantize_row_i8(const float *v, int64_t n, int8_t *q)
{
    float amax = 0.0f, s;
    for (int64_t j = 0; j < n; j++) {
        amax = fabsf(v[j]) > amax ? fabsf(v[j]) : amax;
    }
    s = amax / 127.0f;
    s = s >= FLT_MIN ? s : FLT_MIN;
    for (int64_t j = 0; j < n; j++) {
        float c = roundf(v[j] / s);
        q[j] = (int8_t)(c > 127.0f ? 127.0f : (c < -127.0f ? -127.0f : c));
    }
    return s;
}

qr_status qr_lowrank_i8_quantize(const float *L, const float *R, int64_t d_out, int64_t d_in,
                                 int64_t rank, qr_lowrank_i8 *out)
{
    qr_status st = QR_OK;
    size_t nl, nr;
    memset(out, 0, sizeof *out);
    if (d_out < 0 || d_in < 1 || rank < 0 || !qr_mul_size((size_t)d_out, (size_t)rank, &nl) ||
        !qr_mul_size((size_t)rank, (size_t)d_in, &nr)) {
        return qr_fail(QR_ERR_INPUT,
                       "low-rank correction: bad shape (expected d_out >= 0, d_in >= 1, rank >= "
                       "0, found %lld x %lld, rank %lld)",
                       (long long)d_out, (long long)d_in, (long long)rank);
    }
    out->d_out = d_out;
    out->d_in = d_in;
    out->rank = rank;
    QR_CHECK(qr_malloc(&out->Lq, nl, 1, "INT8 L"));
    QR_CHECK(qr_malloc(&out->sL, (size_t)d_out, sizeof(float), "INT8 L scales"));
    QR_CHECK(qr_malloc(&out->Rq, nr, 1, "INT8 R"));
    QR_CHECK(qr_malloc(&out->sR, (size_t)rank, sizeof(float), "INT8 R scales"));
    for (int64_t o = 0; o < d_out; o++) {
        out->sL[o] = quantize_row_i8(L + o * rank, rank, out->Lq + o * rank);
    }
    for (int64_t k = 0; k < rank; k++) {
        out->sR[k] = quantize_row_i8(R + k * d_in, d_in, out->Rq + k * d_in);
    }
done:
    if (st != QR_OK) {
        qr_lowrank_i8_free(out);
    }
    return st;
}

void qr_lowrank_i8_free(qr_lowrank_i8 *q)
{
    if (!q) {
        return;
    }
    free(q->Lq);
    free(q->sL);
    free(q->Rq);
    free(q->sR);
    memset(q, 0, sizeof *q);
}

/* Exact int32 dot product of two int8 vectors (|sum| <= 127^2 n; n <= 2^17 keeps it in int32).
 * Cloned for AVX2 so the widening multiply-add is vectorized 16 lanes wide where the CPU has it. */
__attribute__((target_clones("avx2", "default"))) static int32_t dot_i8(const int8_t *a,
                                                                        const int8_t *b, int64_t n)
{
    int32_t acc = 0;
    for (int64_t j = 0; j < n; j++) {
        acc += (int32_t)a[j] * (int32_t)b[j];
    }
    return acc;
}

/* Longest int8 dot product whose int32 sum cannot overflow: 127 * 127 * 2^17 < 2^31. */
#define QR_DOT_I8_MAX (INT64_C(1) << 17)

qr_status qr_lowrank_i8_apply(const qr_lowrank_i8 *q, const qr_qact *A, float *Y)
{
    qr_status st = QR_OK;
    float *z = NULL;   /* (rank) one token's R product */
    int8_t *zq = NULL; /* (rank) z quantized */
    int64_t gs;
    if (q->rank == 0 || A->n == 0 || q->d_out == 0) {
        return QR_OK;
    }
    if (A->d != q->d_in) {
        return qr_fail(QR_ERR_INPUT,
                       "INT8 low-rank correction: activation width (expected %lld, found %lld)",
                       (long long)q->d_in, (long long)A->d);
    }
    gs = (A->group == 0 || A->group >= A->d) ? A->d : A->group;
    if (gs > QR_DOT_I8_MAX || q->rank > QR_DOT_I8_MAX) {
        return qr_fail(QR_ERR_INPUT,
                       "INT8 low-rank correction: dot product too long for int32 (expected at "
                       "most %lld, found %lld)",
                       (long long)QR_DOT_I8_MAX, (long long)(gs > q->rank ? gs : q->rank));
    }
    QR_CHECK(qr_malloc(&z, (size_t)q->rank, sizeof *z, "INT8 low-rank product"));
    QR_CHECK(qr_malloc(&zq, (size_t)q->rank, 1, "INT8 low-rank product"));
    for (int64_t t = 0; t < A->n; t++) {
        const int8_t *x = A->codes + t * A->d;         /* (d_in) */
        const float *xs = A->scales + t * A->n_groups; /* (n_groups) */
        float *y = Y + t * q->d_out;                   /* (d_out) */
        for (int64_t k = 0; k < q->rank; k++) {
            const int8_t *r = q->Rq + k * q->d_in; /* (d_in) */
            float zk = 0.0f;
            for (int64_t h = 0; h < A->n_groups; h++) {
                int64_t j0 = h * gs, len = (j0 + gs < A->d ? gs : A->d - j0);
                zk += xs[h] * (float)dot_i8(r + j0, x + j0, len);
            }
            z[k] = q->sR[k] * zk;
        }
        float sz = quantize_row_i8(z, q->rank, zq);
        for (int64_t o = 0; o < q->d_out; o++) {
            y[o] += (q->sL[o] * sz) * (float)dot_i8(q->Lq + o * q->rank, zq, q->rank);
        }
    }
done:
    free(z);
    free(zq);
    return st;
}

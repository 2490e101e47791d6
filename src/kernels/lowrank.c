/* lowrank.c: the low-rank correction Y += (Xdeq · Rᵀ) · Lᵀ of the quantized modules, in float32
 * (two BLAS calls) or from INT8 factors, both on the same quantized activations as the main INT4
 * product.
 *
 * INT8 option. R (rank, d_in) and L (d_out, rank) are stored as int8 per row, symmetric, scale =
 * max|row| / 127; the product is (Xdeq · deq(Rq)ᵀ) · deq(Lq)ᵀ, so its only error against the
 * float factors is the two int8 roundings (about 1/254 of a row's largest magnitude per element;
 * measured figures in docs/kernels.md). It runs two ways with the same result up to float
 * summation order:
 *   few tokens (n < QR_LR_I8_GEMM_MIN): per token, z_k = sR_k * sum_h xs_h * (Rq_k · x)_h with
 *     exact int32 sums per activation group h, then y += sL ∘ (LqT z), reading 1 byte per factor
 *     element: at few tokens the correction is memory bound, and int8 is a quarter of the bytes;
 *   many tokens: sgemm on float copies of deq(Lq) and deq(Rq) made once at quantization (the
 *     same values; dequantizing per call cost 2-3x the products themselves, mostly page faults
 *     on the fresh copies), compute bound there and faster than these int8 loops. */
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

/* Symmetric int8 of n values at stride `stride`: codes q[j * qstride] and the scale
 * max|v| / 127 (never zero). */
static float quantize_row_i8(const float *v, int64_t n, int64_t stride, int8_t *q, int64_t qstride)
{
    float amax = 0.0f, s;
    for (int64_t j = 0; j < n; j++) {
        amax = fabsf(v[j * stride]) > amax ? fabsf(v[j * stride]) : amax;
    }
    s = amax / 127.0f;
    s = s >= FLT_MIN ? s : FLT_MIN;
    for (int64_t j = 0; j < n; j++) {
        float c = roundf(v[j * stride] / s);
        q[j * qstride] = (int8_t)(c > 127.0f ? 127.0f : (c < -127.0f ? -127.0f : c));
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
    QR_CHECK(qr_malloc(&out->LqT, nl, 1, "INT8 L"));
    QR_CHECK(qr_malloc(&out->sL, (size_t)d_out, sizeof(float), "INT8 L scales"));
    QR_CHECK(qr_malloc(&out->Rq, nr, 1, "INT8 R"));
    QR_CHECK(qr_malloc(&out->sR, (size_t)rank, sizeof(float), "INT8 R scales"));
    QR_CHECK(qr_malloc(&out->LfT, nl, sizeof(float), "dequantized INT8 L"));
    QR_CHECK(qr_malloc(&out->Rf, nr, sizeof(float), "dequantized INT8 R"));
    for (int64_t o = 0; o < d_out; o++) {
        out->sL[o] = quantize_row_i8(L + o * rank, rank, 1, out->LqT + o, d_out);
    }
    for (int64_t k = 0; k < rank; k++) {
        out->sR[k] = quantize_row_i8(R + k * d_in, d_in, 1, out->Rq + k * d_in, 1);
    }
    for (int64_t k = 0; k < rank; k++) {
        for (int64_t o = 0; o < d_out; o++) {
            out->LfT[k * d_out + o] = out->sL[o] * (float)out->LqT[k * d_out + o];
        }
        for (int64_t j = 0; j < d_in; j++) {
            out->Rf[k * d_in + j] = out->sR[k] * (float)out->Rq[k * d_in + j];
        }
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
    free(q->LqT);
    free(q->sL);
    free(q->Rq);
    free(q->sR);
    free(q->LfT);
    free(q->Rf);
    memset(q, 0, sizeof *q);
}

/* Exact int32 dot product of two int8 vectors (|sum| <= 127^2 n; n <= 2^17 keeps it in int32).
 * Cloned so the widening multiply-add is vectorized as wide as the CPU allows. */
__attribute__((target_clones("arch=skylake-avx512", "avx2", "default"))) static int32_t
dot_i8(const int8_t *a, const int8_t *b, int64_t n)
{
    int32_t acc = 0;
    for (int64_t j = 0; j < n; j++) {
        acc += (int32_t)a[j] * (int32_t)b[j];
    }
    return acc;
}

/* y[o] += a * q[o] for o < n: one column of Lq (a row of LqT) times one z_k. Element-wise, so the
 * compiler vectorizes it (int8 widened to float) without reordering any sum. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
axpy_i8(float *y, float a, const int8_t *q, int64_t n)
{
    for (int64_t o = 0; o < n; o++) {
        y[o] += a * (float)q[o];
    }
}

/* Longest int8 dot product whose int32 sum cannot overflow: 127 * 127 * 2^17 < 2^31. */
#define QR_DOT_I8_MAX (INT64_C(1) << 17)
/* From this many tokens on, sgemm on the float copies beats the per-token int8 loops (measured at
 * 16 tokens, 4096 x 4096, rank 64: about 1.1 ms for the int8 loops, 0.5 ms for sgemm). */
#define QR_LR_I8_GEMM_MIN 8

/* Many tokens: Z = Xd · Rfᵀ and Y += Z · LfT with sgemm on the float copies. */
static qr_status apply_gemm(const qr_lowrank_i8 *q, const qr_qact *A, float *Y)
{
    qr_status st = QR_OK;
    float *Xd = NULL, *Z = NULL; /* (n, d_in), (n, rank) */
    size_t nx, nz;
    int in, ir, io, ik;
    if (!qr_mul_size((size_t)A->n, (size_t)A->d, &nx) ||
        !qr_mul_size((size_t)A->n, (size_t)q->rank, &nz) || !qr_to_int(A->n, &in) ||
        !qr_to_int(q->rank, &ir) || !qr_to_int(q->d_out, &io) || !qr_to_int(q->d_in, &ik)) {
        return qr_fail(
            QR_ERR_INPUT,
            "INT8 low-rank correction: size does not fit a BLAS int (%lld tokens, %lld x "
            "%lld, rank %lld)",
            (long long)A->n, (long long)q->d_out, (long long)q->d_in, (long long)q->rank);
    }
    QR_CHECK(qr_malloc(&Xd, nx, sizeof *Xd, "dequantized activations"));
    QR_CHECK(qr_malloc(&Z, nz, sizeof *Z, "low-rank product"));
    qr_qact_dequantize(A, Xd);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, in, ir, ik, 1.0f, Xd, ik, q->Rf, ik, 0.0f,
                Z, ir);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, in, io, ir, 1.0f, Z, ir, q->LfT, io,
                1.0f, Y, io);
done:
    free(Xd);
    free(Z);
    return st;
}

qr_status qr_lowrank_i8_apply(const qr_lowrank_i8 *q, const qr_qact *A, float *Y)
{
    qr_status st = QR_OK;
    float *z = NULL;   /* (rank) one token's R product */
    float *acc = NULL; /* (d_out) one token's LqT z */
    int64_t gs;
    if (q->rank == 0 || A->n == 0 || q->d_out == 0) {
        return QR_OK;
    }
    if (A->d != q->d_in) {
        return qr_fail(QR_ERR_INPUT,
                       "INT8 low-rank correction: activation width (expected %lld, found %lld)",
                       (long long)q->d_in, (long long)A->d);
    }
    if (A->n >= QR_LR_I8_GEMM_MIN) {
        return apply_gemm(q, A, Y);
    }
    gs = (A->group == 0 || A->group >= A->d) ? A->d : A->group;
    if (gs > QR_DOT_I8_MAX) {
        return qr_fail(QR_ERR_INPUT,
                       "INT8 low-rank correction: activation group too long for int32 sums "
                       "(expected at most %lld, found %lld)",
                       (long long)QR_DOT_I8_MAX, (long long)gs);
    }
    QR_CHECK(qr_malloc(&z, (size_t)q->rank, sizeof *z, "INT8 low-rank product"));
    QR_CHECK(qr_malloc(&acc, (size_t)q->d_out, sizeof *acc, "INT8 low-rank product"));
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
        memset(acc, 0, (size_t)q->d_out * sizeof *acc);
        for (int64_t k = 0; k < q->rank; k++) {
            axpy_i8(acc, z[k], q->LqT + k * q->d_out, q->d_out);
        }
        for (int64_t o = 0; o < q->d_out; o++) {
            y[o] += q->sL[o] * acc[o];
        }
    }
done:
    free(z);
    free(acc);
    return st;
}

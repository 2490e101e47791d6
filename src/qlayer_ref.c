/* qlayer_ref.c: the float64 reference forward of a quantized module (src/qlayer_ref.h). The
 * quantized matrices are dequantized to float64 and applied with dgemm, which is exact up to
 * float64 rounding; the activation quantization is the one of src/quant.h. */
#include "src/qlayer_ref.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"
#include "src/checked.h"
#include "src/quant.h"

static qr_status check_layer(const qr_qlayer *ql, int abits, int64_t agroup)
{
    QR_TRY(qr_qlayer_check(ql, "quantized layer"));
    if (abits != 0 && abits != 4 && abits != 8) {
        return qr_fail(QR_ERR_INPUT,
                       "reference forward: activation bits (expected 0, 4 or 8, found %d)", abits);
    }
    if (agroup < 0) {
        return qr_fail(QR_ERR_INPUT,
                       "reference forward: activation group (expected >= 0, found %lld)",
                       (long long)agroup);
    }
    return QR_OK;
}

qr_status qr_qlayer_forward_ref(const qr_qlayer *ql, const float *X, int64_t n, int abits,
                                int64_t agroup, double *Y)
{
    qr_status st = QR_OK;
    int64_t d_out = ql->d_out, d_in = ql->d_in, k = ql->n_salient, r = ql->rank;
    double *T = NULL;  /* (n, d_in) transformed, then quantized input */
    double *M = NULL;  /* (d_out, d_in) deq(main), later reused */
    double *Ms = NULL; /* (d_out, k) deq(side) */
    double *Lf = NULL; /* (d_out, r) */
    double *Rf = NULL; /* (r, d_in) */
    double *RU = NULL; /* (n, r) u Rᵀ */
    int in, idout, idin;
    QR_TRY(check_layer(ql, abits, agroup));
    if (n < 0 || !qr_to_int(n, &in)) {
        return qr_fail(QR_ERR_INPUT,
                       "reference forward: token count (expected 0..2^31, found %lld)",
                       (long long)n);
    }
    if (n == 0) {
        return QR_OK;
    }
    idout = (int)d_out;
    idin = (int)d_in;
    QR_CHECK(qr_malloc(&T, (size_t)n * (size_t)d_in, sizeof *T, "reference input"));
    for (int64_t t = 0; t < n; t++) {
        for (int64_t j = 0; j < d_in; j++) {
            int64_t src = ql->perm ? ql->perm[j] : j;
            double s = ql->smooth ? (double)ql->smooth[j] : 1.0;
            T[t * d_in + j] = (double)X[t * d_in + src] / s;
        }
    }
    qr_act_fake_quant(T, n, d_in, abits, agroup);

    QR_CHECK(qr_malloc(&M, (size_t)d_out * (size_t)d_in, sizeof *M, "reference main matrix"));
    qr_qweight_dequantize_f64(&ql->main, M);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, in, idout, idin, 1.0, T, idin, M, idin,
                0.0, Y, idout);
    if (k > 0) {
        QR_CHECK(qr_malloc(&Ms, (size_t)d_out * (size_t)k, sizeof *Ms, "reference side matrix"));
        qr_qweight_dequantize_f64(&ql->side, Ms);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, in, idout, (int)k, 1.0, T, idin, Ms,
                    (int)k, 1.0, Y, idout);
    }
    if (r > 0) {
        QR_CHECK(qr_malloc(&Lf, (size_t)d_out * (size_t)r, sizeof *Lf, "reference L"));
        QR_CHECK(qr_malloc(&Rf, (size_t)r * (size_t)d_in, sizeof *Rf, "reference R"));
        QR_CHECK(qr_malloc(&RU, (size_t)n * (size_t)r, sizeof *RU, "reference R u"));
        for (int64_t i = 0; i < d_out * r; i++) {
            Lf[i] = (double)ql->L[i];
        }
        for (int64_t i = 0; i < r * d_in; i++) {
            Rf[i] = (double)ql->R[i];
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, in, (int)r, idin, 1.0, T, idin, Rf,
                    idin, 0.0, RU, (int)r);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, in, idout, (int)r, 1.0, RU, (int)r, Lf,
                    (int)r, 1.0, Y, idout);
    }
done:
    free(T);
    free(M);
    free(Ms);
    free(Lf);
    free(Rf);
    free(RU);
    return st;
}

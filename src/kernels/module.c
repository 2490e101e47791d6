/* module.c: one quantized linear module (src/qlayer.h) run through the kernels, the way inference
 * runs it: transform the input (permutation, smoothing), quantize it per token once, then the
 * INT4 main product and SERQ's INT4 side matrix on the first k channels of the SAME quantized
 * token (one pass, src/kernels/internal.h), and the low-rank correction on the same quantized
 * activations. */
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"
#include "src/checked.h"
#include "src/kernels/internal.h"

struct qr_kmodule {
    const qr_qlayer *ql; /* borrowed */
    qr_kmodule_opts o;
    qr_kweight *main;  /* main matrix, with the side matrix's segments when there is one */
    qr_lowrank_i8 lr8; /* INT8 factors when o.lowrank_int8 and rank > 0 */
};

void qr_kmodule_opts_default(qr_kmodule_opts *o)
{
    o->abits = 8;
    o->act_group = 0;
    o->lowrank_int8 = false;
}

static qr_status check_layer(const qr_qlayer *ql, const qr_kmodule_opts *o)
{
    if (o->abits != 8 && o->abits != 4) {
        return qr_fail(QR_ERR_INPUT, "kernel module: activation bits (expected 4 or 8, found %d)",
                       o->abits);
    }
    return qr_qlayer_check(ql, "kernel module");
}

qr_status qr_kmodule_prepare(const qr_qlayer *ql, const qr_kmodule_opts *o, qr_kmodule **out)
{
    qr_status st = QR_OK;
    qr_kmodule *m = NULL;
    qr_kmodule_opts def;
    *out = NULL;
    if (!o) {
        qr_kmodule_opts_default(&def);
        o = &def;
    }
    QR_TRY(check_layer(ql, o));
    QR_TRY(qr_calloc(&m, 1, sizeof *m, "kernel module"));
    m->ql = ql;
    m->o = *o;
    QR_CHECK(qr_kweight_prepare_pair(&ql->main, ql->n_salient > 0 ? &ql->side : NULL, o->act_group,
                                     &m->main));
    if (ql->rank > 0 && o->lowrank_int8) {
        QR_CHECK(qr_lowrank_i8_quantize(ql->L, ql->R, ql->d_out, ql->d_in, ql->rank, &m->lr8));
    }
    *out = m;
    m = NULL;
done:
    qr_kmodule_free(&m);
    return st;
}

void qr_kmodule_free(qr_kmodule **m)
{
    if (!m || !*m) {
        return;
    }
    qr_kweight_free(&(*m)->main);
    qr_lowrank_i8_free(&(*m)->lr8);
    free(*m);
    *m = NULL;
}

qr_status qr_kmodule_forward(const qr_kmodule *m, const float *X, int64_t n, float *Y)
{
    qr_status st = QR_OK;
    const qr_qlayer *ql = m->ql;
    int64_t d_in = ql->d_in;
    float *T = NULL; /* (n, d_in): transformed input t, later the dequantized u */
    qr_qact A = {0};
    size_t nt;
    if (n < 0 || !qr_mul_size((size_t)n, (size_t)d_in, &nt)) {
        return qr_fail(QR_ERR_INPUT, "kernel module: token count (expected >= 0, found %lld)",
                       (long long)n);
    }
    if (n == 0) {
        return QR_OK;
    }
    QR_CHECK(qr_malloc(&T, nt, sizeof *T, "transformed activations"));
    for (int64_t t = 0; t < n; t++) {
        for (int64_t j = 0; j < d_in; j++) {
            float v = X[t * d_in + (ql->perm ? ql->perm[j] : j)];
            T[t * d_in + j] = ql->smooth ? v / ql->smooth[j] : v;
        }
    }
    QR_CHECK(qr_qact_quantize(&A, T, n, d_in, m->o.abits, m->o.act_group));
    QR_CHECK(qr_kernel_w4(m->main, &A, Y, false)); /* main + side in one pass */
    if (ql->rank > 0) {
        if (m->o.lowrank_int8) {
            QR_CHECK(qr_lowrank_i8_apply(&m->lr8, &A, Y));
        } else {
            qr_qact_dequantize(&A, T);
            QR_CHECK(qr_lowrank_apply_f32(ql->L, ql->R, ql->d_out, d_in, ql->rank, T, n, Y));
        }
    }
done:
    free(T);
    qr_qact_free(&A);
    return st;
}

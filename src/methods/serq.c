/* serq.c: SERQ (salient-channel error reconstruction). Static activation flattening s_j = max|x_j|
 * (t = x / s, W~ = W diag(s)), input channels ordered by s descending (the offline permutation),
 * the k most salient channels form a side matrix R = Q4(W~[:, :k]) quantized per row, and the main
 * matrix is Q(W~ with the salient columns replaced by W~_s - deq(R)). Inference reuses the same
 * quantized activations: y = deq(main) Qa(t) + deq(R) Qa(t)[:k]. No SVD. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"
#include "src/methods/correction.h"

static qr_status serq_run(const qr_method_opts *o, const double *W, int64_t d_out, int64_t d_in,
                          const qr_stats *calib, qr_qlayer *out, qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t k = o->n_salient < d_in ? o->n_salient : d_in;
    double *Wt = NULL;           /* (d_out, d_in) permuted, flattened weight W~ */
    double *Ws = NULL;           /* (d_out, k) its salient columns, then deq of the side matrix */
    double *Gt = NULL;           /* (d_in, d_in) Gram matrix of t, or NULL when not needed */
    qr_channel_score *rk = NULL; /* (d_in) channels by flattening factor */
    double t0 = qr_now();

    QR_CHECK(qr_malloc(&rk, (size_t)d_in, sizeof *rk, "SERQ channel order"));
    QR_CHECK(qr_malloc(&out->smooth, (size_t)d_in, sizeof(float), "SERQ smoothing vector"));
    QR_CHECK(qr_malloc(&out->perm, (size_t)d_in, sizeof(int32_t), "SERQ permutation"));
    for (int64_t j = 0; j < d_in; j++) {
        float s = (float)calib->max_abs[j];
        /* A channel that never fired (or underflows in float32) is left unscaled. */
        rk[j].j = j;
        rk[j].v = (s > 0.0f && isfinite(s)) ? (double)s : 1.0;
    }
    qr_channel_sort_desc(rk, d_in);
    for (int64_t j = 0; j < d_in; j++) {
        out->perm[j] = (int32_t)rk[j].j;
        out->smooth[j] = (float)rk[j].v;
    }
    QR_CHECK(qr_alloc_f64(&Wt, d_out, d_in, "SERQ flattened weight"));
    for (int64_t i = 0; i < d_out; i++) {
        for (int64_t j = 0; j < d_in; j++) {
            Wt[i * d_in + j] = W[i * d_in + out->perm[j]] * (double)out->smooth[j];
        }
    }
    if (o->gptq || o->wq.clip_search) {
        QR_CHECK(qr_alloc_f64(&Gt, d_in, d_in, "SERQ transformed Gram matrix"));
        qr_gram_transform(calib->G, d_in, out->perm, out->smooth, Gt);
    }
    rep->n_salient_used = k;
    rep->seconds[QR_STAGE_SCALE] += qr_now() - t0;

    if (k > 0) {
        qr_wquant_opts side = o->wq;
        double *cw = NULL; /* (k) clip weights of the side matrix: diag(Gt)[:k] */
        t0 = qr_now();
        side.group = 0; /* one group per row: the paper quantizes R per row */
        QR_CHECK(qr_alloc_f64(&Ws, d_out, k, "SERQ salient columns"));
        for (int64_t i = 0; i < d_out; i++) {
            memcpy(Ws + i * k, Wt + i * d_in, (size_t)k * sizeof(double));
        }
        if (Gt && side.clip_search) {
            st = qr_alloc_f64(&cw, k, 1, "SERQ side clip weights");
            for (int64_t j = 0; st == QR_OK && j < k; j++) {
                cw[j] = Gt[j * d_in + j];
            }
        }
        if (st == QR_OK) {
            st = qr_quantize_rtn(Ws, d_out, k, &side, cw, &out->side);
        }
        free(cw);
        QR_CHECK(st);
        out->n_salient = k;
        qr_qweight_dequantize_f64(&out->side, Ws);
        for (int64_t i = 0; i < d_out; i++) {
            for (int64_t j = 0; j < k; j++) {
                Wt[i * d_in + j] -= Ws[i * k + j];
            }
        }
        rep->seconds[QR_STAGE_QUANTIZE] += qr_now() - t0;
    }
    t0 = qr_now();
    QR_CHECK(qr_method_quantize(o, Wt, d_out, d_in, Gt, &out->main, NULL));
    rep->seconds[QR_STAGE_QUANTIZE] += qr_now() - t0;
done:
    free(Wt);
    free(Ws);
    free(Gt);
    free(rk);
    return st;
}

const qr_method_impl qr_method_serq = {"serq", QR_METHOD_SERQ, true, serq_run};

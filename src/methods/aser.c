/* aser.c: ASER (activation smoothing and error reconstruction). SmoothQuant smoothing
 * s_j = max|x_j|^alpha / max_i|W_ij|^(1-alpha) moves activation outliers into the weights
 * (t = x / s, W~ = W diag(s)); the f most salient channels of W~ are zeroed before quantization,
 * so their whole weight falls into E = W~ - Q; the whitened correction (QERA-exact on the smoothed
 * input, G~ = diag(1/s) G diag(1/s)) recovers E at rank r. Salience of channel j is its diagonal
 * share of the calibration output energy, G_jj ||W[:, j]||^2 (invariant under the smoothing); the
 * paper's rule is not public, docs/methods.md says why this one. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"
#include "src/methods/correction.h"

static qr_status aser_run(const qr_method_opts *o, const double *W, int64_t d_out, int64_t d_in,
                          const qr_stats *calib, qr_qlayer *out, qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t f = o->n_salient < d_in ? o->n_salient : d_in;
    double *Ws = NULL;           /* (d_out, d_in) smoothed weight W~ */
    double *Wz = NULL;           /* (d_out, d_in) W~ with the salient columns zeroed */
    double *Gt = NULL;           /* (d_in, d_in) smoothed Gram matrix */
    double *wmax = NULL;         /* (d_in) max_i |W_ij| */
    qr_channel_score *rk = NULL; /* (d_in) channels by salience */
    qr_scaling S = {0};
    double *L = NULL, *R = NULL; /* (d_out, r), (r, d_in) */
    double t0 = qr_now();

    QR_CHECK(qr_alloc_f64(&Ws, d_out, d_in, "ASER smoothed weight"));
    QR_CHECK(qr_alloc_f64(&Gt, d_in, d_in, "ASER smoothed Gram matrix"));
    QR_CHECK(qr_calloc(&wmax, (size_t)d_in, sizeof *wmax, "ASER column maxima"));
    QR_CHECK(qr_malloc(&rk, (size_t)d_in, sizeof *rk, "ASER salience"));
    QR_CHECK(qr_malloc(&out->smooth, (size_t)d_in, sizeof(float), "ASER smoothing vector"));
    qr_smooth_factors(W, d_out, d_in, calib->max_abs, o->smooth_alpha, wmax, out->smooth);
    for (int64_t i = 0; i < d_out; i++) {
        for (int64_t j = 0; j < d_in; j++) {
            Ws[i * d_in + j] = W[i * d_in + j] * (double)out->smooth[j];
        }
    }
    qr_gram_transform(calib->G, d_in, NULL, out->smooth, Gt);
    for (int64_t j = 0; j < d_in; j++) {
        double c = 0.0;
        for (int64_t i = 0; i < d_out; i++) {
            c += W[i * d_in + j] * W[i * d_in + j];
        }
        rk[j].j = j;
        rk[j].v = calib->G[j * d_in + j] * c;
    }
    qr_channel_sort_desc(rk, d_in);
    QR_CHECK(qr_scaling_whiten(Gt, d_in, o->whiten_lambda0, &S));
    rep->damping = S.damping;
    rep->n_salient_used = f;
    rep->seconds[QR_STAGE_SCALE] += qr_now() - t0;

    t0 = qr_now();
    QR_CHECK(qr_alloc_f64(&Wz, d_out, d_in, "ASER weight without salient channels"));
    memcpy(Wz, Ws, (size_t)(d_out * d_in) * sizeof(double));
    for (int64_t k = 0; k < f; k++) {
        for (int64_t i = 0; i < d_out; i++) {
            Wz[i * d_in + rk[k].j] = 0.0;
        }
    }
    rep->seconds[QR_STAGE_OTHER] += qr_now() - t0;
    /* Quantize Wz, but take the error against Ws: the zeroed channels land in E whole. */
    {
        qr_rng rng;
        double *E = Wz; /* reused: (d_out, d_in) */
        t0 = qr_now();
        QR_CHECK(qr_method_quantize(o, Wz, d_out, d_in, Gt, &out->main, E));
        rep->seconds[QR_STAGE_QUANTIZE] += qr_now() - t0;
        t0 = qr_now();
        for (int64_t i = 0; i < d_out * d_in; i++) {
            E[i] = Ws[i] - E[i];
        }
        rep->seconds[QR_STAGE_OTHER] += qr_now() - t0;
        if (o->rank > 0) {
            t0 = qr_now();
            QR_CHECK(qr_alloc_f64(&L, d_out, o->rank, "correction L"));
            QR_CHECK(qr_alloc_f64(&R, o->rank, d_in, "correction R"));
            qr_method_rng(o, "correction", &rng);
            QR_CHECK(qr_corr_lowrank(E, d_out, d_in, &S, o->rank, &o->svd, &rng, L, R, NULL));
            rep->seconds[QR_STAGE_DECOMPOSE] += qr_now() - t0;
        }
    }
    QR_CHECK(qr_qlayer_set_lowrank(out, L, R, o->rank));
done:
    free(Ws);
    free(Wz);
    free(Gt);
    free(wmax);
    free(rk);
    free(L);
    free(R);
    qr_scaling_free(&S);
    return st;
}

const qr_method_impl qr_method_aser = {"aser", QR_METHOD_ASER, true, aser_run};

/* grid_aser.c: ASER (src/methods/aser.c) on the grid. */
#include <stdlib.h>
#include <string.h>

#include "mpi/comm.h"
#include "mpi/grid_module_internal.h"
#include "mpi/pdla.h"
#include "src/alloc.h"
#include "src/methods/correction.h"
#include "src/progress.h"

/* ASER (src/methods/aser.c) on the grid. The column maxima and squared norms of W are reduced over
 * the process rows (each column's entries sit in one process column; the others add zeros), W~ =
 * W diag(s) and G~ = diag(1/s) G diag(1/s) are local scalings of copies (G is the input group's),
 * the salient columns of W~ are zeroed locally, the rest quantized locally (or by GPTQ with the
 * module's own factor of G~), and E = W~ - deq corrected through the Cholesky factor of G~. On
 * return W_eff = deq(main) in the smoothed space; smooth (n) on every rank. */
qr_status qr_grid_aser(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                       const qr_dmat *W, int64_t r, qr_qweight *qloc, qr_dmat *W_eff, double *L,
                       double *R, float *smooth, qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t n = W->n, f = o->n_salient < n ? o->n_salient : n;
    size_t lld = qr_dmat_lld(W), count = qr_dmat_local_count(W);
    double *wmax = NULL, *cn = NULL, *cw = NULL; /* (n) column max |W|, ||W[:, j]||², diag(G~) */
    qr_channel_score *rk = NULL;                 /* (n) channels by salience */
    qr_dmat *Ws = NULL, *Gt = NULL, *F = NULL, *E = NULL;
    qr_grid_scaling S = {NULL, NULL};
    qr_grid_hessian H = {NULL, NULL};
    double t0 = qr_now();
    if (!s->G) { /* qr_dstats_finish keeps G for it (qr_dstats_keeps_gram) */
        return qr_fail(QR_ERR_INPUT, "aser: needs the input group's Gram (found none)");
    }
    st = qr_malloc(&wmax, (size_t)n, sizeof *wmax, "ASER column maxima");
    if (st == QR_OK) {
        st = qr_malloc(&cn, (size_t)n, sizeof *cn, "ASER column norms");
    }
    if (st == QR_OK) {
        st = qr_malloc(&cw, (size_t)n, sizeof *cw, "ASER Hessian diagonal");
    }
    if (st == QR_OK) {
        st = qr_malloc(&rk, (size_t)n, sizeof *rk, "ASER salience");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    qr_grid_column_stats(g, W, wmax, cn);
    qr_smooth_from_maxima(s->max_abs, wmax, n, o->smooth_alpha, smooth);
    for (int64_t j = 0; j < n; j++) {
        rk[j].j = j;
        rk[j].v = s->gram_diag[j] * cn[j];
    }
    qr_channel_sort_desc(rk, n);
    QR_CHECK(qr_grid_smooth_space(g, o, W, s, smooth, cw, &Ws, &Gt, &F));
    /* the serial method factors G~ whether or not it corrects (and reports the damping) */
    QR_CHECK(qr_pdla_cholesky_damped(g, Gt, o->whiten_lambda0, &rep->damping));
    S.chol = Gt;
    rep->n_salient_used = f;
    rep->seconds[QR_STAGE_SCALE] += qr_now() - t0;

    /* Wz = W~ without the salient columns, in E's place: quantized, then E = W~ - deq */
    t0 = qr_now();
    QR_CHECK(qr_grid_dmat_copy(g, Ws, &E));
    for (int64_t k = 0; k < f; k++) {
        cn[rk[k].j] = -1.0; /* marks a salient column */
    }
    for (int lj = 0; lj < E->nloc; lj++) {
        if (cn[qr_dmat_global_col(g, lj)] == -1.0) {
            memset(E->data + (size_t)lj * lld, 0, (size_t)E->mloc * sizeof *E->data);
        }
    }
    H.gptq = F;
    H.diag = cw;
    QR_CHECK(qr_grid_quantize(g, o, &H, E, 0.0, qloc, W_eff, NULL));
    for (size_t i = 0; i < count; i++) { /* the error of W~ itself, salient columns included */
        E->data[i] = Ws->data[i] - W_eff->data[i];
    }
    qr_dmat_free(&Ws);
    qr_dmat_free(&F);
    rep->seconds[QR_STAGE_QUANTIZE] += qr_now() - t0;
    if (r > 0) {
        QR_CHECK(qr_grid_correction(g, o, &S, "correction", E, r, L, R, rep));
    }
done:
    free(wmax);
    free(cn);
    free(cw);
    free(rk);
    qr_dmat_free(&Ws);
    qr_dmat_free(&Gt);
    qr_dmat_free(&F);
    qr_dmat_free(&E);
    return st;
}

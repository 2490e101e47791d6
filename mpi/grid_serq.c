/* grid_serq.c: SERQ (src/methods/serq.c) on a grid of one column. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/comm.h"
#include "mpi/grid_module_internal.h"
#include "mpi/pdla.h"
#include "src/alloc.h"
#include "src/methods/correction.h"
#include "src/progress.h"

/* SERQ's permuted, flattened Gram G_t[a][b] = G[perm a][perm b] / (s_a s_b) (lower triangle of G
 * read) as a new distributed matrix, on a grid of one column: row block by row block, every rank
 * puts the entries its rows of G hold into a buffer (each entry has exactly one contributor) that
 * is summed to the block's owner. */
static qr_status serq_gram(const qr_grid *g, const qr_dmat *G, const int32_t *perm,
                           const int64_t *inv, const float *smooth, qr_dmat **out)
{
    qr_status st = QR_OK;
    int64_t n = G->n, nb = g->nb;
    size_t lld = qr_dmat_lld(G);
    double *buf = NULL; /* (nb, n) one row block of G_t */
    st = qr_dmat_create(g, n, n, out);
    if (st == QR_OK) {
        st = qr_malloc(&buf, (size_t)(nb * n), sizeof *buf, "SERQ permuted Gram rows");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    for (int64_t a0 = 0, b = 0; a0 < n; a0 += nb, b++) {
        int64_t nr = n - a0 < nb ? n - a0 : nb;
        int owner = (int)(b % g->nprow); /* group rank of process row b % P on a P x 1 grid */
        memset(buf, 0, (size_t)(nr * n) * sizeof *buf);
        for (int64_t ai = 0; ai < nr; ai++) {
            int64_t a = a0 + ai, pa = perm[a];
            double sa = (double)smooth[a];
            double *row = buf + ai * n; /* (n) */
            for (int li = 0; li < G->mloc; li++) {
                int64_t gi = qr_dmat_global_row(g, li);
                if (gi == pa) { /* G[pa][c], c <= pa */
                    for (int64_t c = 0; c <= pa; c++) {
                        int64_t bb = inv[c];
                        row[bb] = G->data[(size_t)c * lld + (size_t)li] / (sa * (double)smooth[bb]);
                    }
                } else if (gi > pa) { /* G[pa][gi] = G[gi][pa] */
                    int64_t bb = inv[gi];
                    row[bb] = G->data[(size_t)pa * lld + (size_t)li] / (sa * (double)smooth[bb]);
                }
            }
        }
        QR_CHECK(qr_mpi_check(MPI_Reduce(g->group_rank == owner ? MPI_IN_PLACE : buf, buf,
                                         (int)(nr * n), MPI_DOUBLE, MPI_SUM, owner, g->comm),
                              "MPI_Reduce (SERQ permuted Gram)"));
        if (g->group_rank == owner) {
            qr_dmat_fill_rows(g, *out, a0, nr, buf);
        }
    }
done:
    free(buf);
    if (st != QR_OK) {
        qr_dmat_free(out);
    }
    return st;
}

/* SERQ (src/methods/serq.c) on a grid of one column, where every rank holds whole rows: the order
 * and flattening from the reduced per-channel maxima (the same on every rank), W_t = W[:, perm]
 * diag(s) local to each rank's rows, the side matrix (m, k) quantized per row locally into sideloc
 * and its error folded into the main matrix, quantized locally (or by GPTQ with the module's own
 * factor of G_t). On return W_eff = deq(main) + deq(side) in the permuted, flattened space; perm
 * and smooth (n) on every rank. */
qr_status qr_grid_serq(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                       const qr_dmat *W, qr_qweight *qloc, qr_qweight *sideloc, qr_dmat *W_eff,
                       float *smooth, int32_t *perm, qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t n = W->n, m = W->mloc, k = o->n_salient < n ? o->n_salient : n;
    size_t lld = qr_dmat_lld(W);
    double *cw = NULL, *ws = NULL; /* (n) diag(G_t); (m, k) the salient columns, then deq(side) */
    int64_t *inv = NULL;           /* (n) inverse permutation */
    qr_channel_score *rk = NULL;   /* (n) channels by flattening factor */
    qr_dmat *Wt = NULL, *F = NULL;
    qr_grid_hessian H = {NULL, NULL};
    double t0 = qr_now();
    memset(sideloc, 0, sizeof *sideloc);
    if (o->gptq && !s->G) { /* qr_dstats_finish keeps G for it (qr_dstats_keeps_gram) */
        return qr_fail(QR_ERR_INPUT, "serq: --gptq needs the input group's Gram (found none)");
    }
    st = qr_malloc(&cw, (size_t)n, sizeof *cw, "SERQ Hessian diagonal");
    if (st == QR_OK) {
        st = qr_malloc(&inv, (size_t)n, sizeof *inv, "SERQ inverse permutation");
    }
    if (st == QR_OK) {
        st = qr_malloc(&rk, (size_t)n, sizeof *rk, "SERQ channel order");
    }
    if (st == QR_OK) {
        st = qr_malloc(&ws, (size_t)(m * k) + 1, sizeof *ws, "SERQ salient columns");
    }
    if (st == QR_OK) {
        st = qr_dmat_create(g, W->m, n, &Wt);
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    for (int64_t j = 0; j < n; j++) {
        float v = (float)s->max_abs[j];
        rk[j].j = j; /* a channel that never fired (or underflows in float32) is left unscaled */
        rk[j].v = (v > 0.0f && isfinite(v)) ? (double)v : 1.0;
    }
    qr_channel_sort_desc(rk, n);
    for (int64_t j = 0; j < n; j++) {
        perm[j] = (int32_t)rk[j].j;
        smooth[j] = (float)rk[j].v;
        inv[perm[j]] = j;
        cw[j] = s->gram_diag[perm[j]] / ((double)smooth[j] * (double)smooth[j]);
    }
    for (int64_t j = 0; j < n; j++) { /* one grid column: every column is local */
        for (int64_t li = 0; li < m; li++) {
            Wt->data[(size_t)j * lld + (size_t)li] =
                W->data[(size_t)perm[j] * lld + (size_t)li] * (double)smooth[j];
        }
    }
    if (o->gptq) {
        QR_CHECK(serq_gram(g, s->G, perm, inv, smooth, &F));
        QR_CHECK(qr_grid_module_gptq_factor(g, o, F, cw));
    }
    rep->n_salient_used = k;
    rep->seconds[QR_STAGE_SCALE] += qr_now() - t0;
    t0 = qr_now();
    if (k > 0 && m > 0) {
        qr_wquant_opts side = o->wq;
        side.group = 0; /* one group per row */
        for (int64_t li = 0; li < m; li++) {
            for (int64_t j = 0; j < k; j++) {
                ws[li * k + j] = Wt->data[(size_t)j * lld + (size_t)li];
            }
        }
        st = qr_quantize_rtn(ws, m, k, &side, side.clip_search ? cw : NULL, sideloc);
        if (st == QR_OK) {
            qr_qweight_dequantize_f64(sideloc, ws);
            for (int64_t li = 0; li < m; li++) {
                for (int64_t j = 0; j < k; j++) {
                    Wt->data[(size_t)j * lld + (size_t)li] -= ws[li * k + j];
                }
            }
        }
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    H.gptq = F;
    H.diag = cw;
    QR_CHECK(qr_grid_quantize(g, o, &H, Wt, 0.0, qloc, W_eff, NULL));
    for (int64_t li = 0; li < m; li++) {
        for (int64_t j = 0; j < k; j++) {
            W_eff->data[(size_t)j * lld + (size_t)li] += ws[li * k + j];
        }
    }
    rep->seconds[QR_STAGE_QUANTIZE] += qr_now() - t0;
done:
    if (st != QR_OK) {
        qr_qweight_free(sideloc);
    }
    free(cw);
    free(ws);
    free(inv);
    free(rk);
    qr_dmat_free(&Wt);
    qr_dmat_free(&F);
    return st;
}

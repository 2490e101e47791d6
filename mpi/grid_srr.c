/* grid_srr.c: SRR (src/methods/srr.c) on the grid: the top-k subspace of W S kept (its truncated
 * SVD distributed), the residual quantized locally and corrected with the remaining rank; k* from
 * the spectra of W S and of a random matrix drawn in the serial order. */
#include <stdlib.h>
#include <string.h>

#include "mpi/comm.h"
#include "mpi/grid_module_internal.h"
#include "mpi/pdla.h"
#include "src/alloc.h"
#include "src/methods/correction.h"
#include "src/progress.h"

/* SRR's k* probe (src/methods/srr.c random_spectrum): the top-r singular values of E_rand S, with
 * E_rand ~ U[-1, 1] drawn from the module's stream in row-major order (every rank draws the whole
 * stream and keeps its entries), and the squared norm of E_rand S (for a whitening factor on the
 * randomized path its expectation (m / 3) ||C||_F², as the serial method takes it). */
static qr_status srr_probe(const qr_grid *g, const qr_method_opts *o, const qr_grid_scaling *S,
                           int64_t m, int64_t n, int64_t r, double *se, double *total)
{
    qr_status st = QR_OK;
    qr_dmat *Er = NULL;
    double *U = NULL, *Vt = NULL; /* (m, r), (r, n) */
    bool implicit = S->chol && qr_svd_path(&o->svd, m, n, r, NULL) == QR_SVD_RANDOMIZED;
    qr_rng rng;
    st = qr_dmat_create(g, m, n, &Er);
    if (st == QR_OK) {
        st = qr_malloc(&U, (size_t)(m * r), sizeof *U, "SRR random U");
    }
    if (st == QR_OK) {
        st = qr_malloc(&Vt, (size_t)(r * n), sizeof *Vt, "SRR random Vt");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    qr_method_rng(o, "srr-random", &rng);
    for (int64_t i = 0, li = 0; i < m; i++) {
        bool mine = li < Er->mloc && qr_dmat_global_row(g, (int)li) == i;
        for (int64_t j = 0, lj = 0; j < n; j++) {
            double v = 2.0 * qr_rng_uniform(&rng) - 1.0;
            if (mine && lj < Er->nloc && qr_dmat_global_col(g, (int)lj) == j) {
                Er->data[(size_t)lj * qr_dmat_lld(Er) + (size_t)li] = v;
                lj++;
            }
        }
        li += mine;
    }
    if (implicit) {
        total[0] = qr_dmat_local_sumsq(S->chol, NULL);
        MPI_Allreduce(MPI_IN_PLACE, total, 1, MPI_DOUBLE, MPI_SUM, g->comm);
        total[0] *= (double)m / 3.0;
    } else {
        QR_CHECK(qr_grid_scaling_apply(g, S, Er, 0));
        total[0] = qr_dmat_local_sumsq(Er, NULL);
        MPI_Allreduce(MPI_IN_PLACE, total, 1, MPI_DOUBLE, MPI_SUM, g->comm);
    }
    qr_method_rng(o, "srr-random-svd", &rng);
    QR_CHECK(qr_pdla_svd_truncated_scaled(g, Er, implicit ? S->chol : NULL, r, &o->svd, &rng, U, se,
                                          Vt));
done:
    qr_dmat_free(&Er);
    free(U);
    free(Vt);
    return st;
}

/* src/methods/srr.c keep_if_better_than_base on the grid: the k* split (qloc, W_eff, L, R) is
 * replaced by the base method's own layer when that has the lower scaled calibration error. D is
 * the only m x n scratch (the base layer's W_eff is rebuilt from its codes when it wins). */
static qr_status srr_keep_if_better(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                                    const qr_grid_scaling *S, const qr_dmat *W, qr_qweight *qloc,
                                    qr_dmat *W_eff, double *L, double *R, qr_dmat *D,
                                    qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t m = W->m, n = W->n, r = o->rank;
    size_t count = qr_dmat_local_count(W);
    qr_qweight qb;
    double *Lb = NULL, *Rb = NULL, e_split = 0.0, e_base = 0.0, t0 = qr_now();
    memset(&qb, 0, sizeof qb);
    for (size_t i = 0; i < count; i++) {
        D->data[i] = W->data[i] - W_eff->data[i];
    }
    QR_CHECK(qr_grid_scaled_error(g, S, L, R, r, D, &e_split));
    st = qr_malloc(&Lb, (size_t)(m * r), sizeof *Lb, "SRR base L");
    if (st == QR_OK) {
        st = qr_malloc(&Rb, (size_t)(r * n), sizeof *Rb, "SRR base R");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    QR_CHECK(qr_grid_qer_step(g, o, s, S, W, r, &qb, D, Lb, Rb, rep)); /* D = the base's W_eff */
    for (size_t i = 0; i < count; i++) {
        D->data[i] = W->data[i] - D->data[i];
    }
    QR_CHECK(qr_grid_scaled_error(g, S, Lb, Rb, r, D, &e_base));
    if (e_base < e_split) {
        qr_qweight_free(qloc);
        *qloc = qb;
        memset(&qb, 0, sizeof qb);
        QR_CHECK(qr_mpi_agree(g->comm, qr_grid_dequantize(qloc, W_eff)));
        memcpy(L, Lb, (size_t)(m * r) * sizeof *L);
        memcpy(R, Rb, (size_t)(r * n) * sizeof *R);
        rep->srr_k_used = 0;
    }
    rep->seconds[QR_STAGE_DECOMPOSE] += qr_now() - t0;
done:
    qr_qweight_free(&qb);
    free(Lb);
    free(Rb);
    return st;
}

qr_status qr_grid_srr(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                      const qr_grid_scaling *S, const qr_dmat *W, qr_qweight *qloc, qr_dmat *W_eff,
                      double *L, double *R, qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t m = W->m, n = W->n, r = o->rank, k = o->srr_k;
    qr_dmat *WS = NULL;                       /* W S, then W - L1 R1 */
    double *U = NULL, *sw = NULL, *Vt = NULL; /* (m, r), (r), (r, n) of W S */
    double *se = NULL, *L2 = NULL, *R2 = NULL, t0 = qr_now();
    if (r > 0 && k != 0) {
        double tw = 0.0, te = 0.0;
        st = qr_malloc(&U, (size_t)(m * r), sizeof *U, "SRR U");
        if (st == QR_OK) {
            st = qr_malloc(&sw, (size_t)r, sizeof *sw, "SRR singular values");
        }
        if (st == QR_OK) {
            st = qr_malloc(&Vt, (size_t)(r * n), sizeof *Vt, "SRR Vt");
        }
        if (st == QR_OK) {
            st = qr_malloc(&se, (size_t)r, sizeof *se, "SRR random singular values");
        }
        QR_CHECK(qr_mpi_agree(g->comm, st));
        QR_CHECK(qr_grid_dmat_copy(g, W, &WS));
        QR_CHECK(qr_grid_scaling_apply(g, S, WS, 0)); /* the serial method forms W S too */
        tw = qr_dmat_local_sumsq(WS, NULL);
        MPI_Allreduce(MPI_IN_PLACE, &tw, 1, MPI_DOUBLE, MPI_SUM, g->comm);
        {
            qr_rng rng;
            qr_method_rng(o, "srr-preserve", &rng);
            QR_CHECK(qr_pdla_svd_truncated(g, WS, r, &o->svd, &rng, U, sw, Vt));
        }
        if (k < 0) {
            QR_CHECK(srr_probe(g, o, S, m, n, r, se, &te));
            k = qr_srr_kstar(sw, tw, se, te, r);
        }
        rep->seconds[QR_STAGE_DECOMPOSE] += qr_now() - t0;
    }
    k = k < 0 ? 0 : k;
    rep->srr_k_used = rep->srr_k_rule = k;
    if (k == 0) {
        QR_CHECK(qr_grid_qer_step(g, o, s, S, W, r, qloc, W_eff, L, R, rep));
        goto done;
    }
    /* L1 = U_k Σ_k, R1 = Vt_k S^-1, W - L1 R1 into WS. */
    QR_CHECK(qr_grid_scaling_unapply_rows(g, S, Vt, k, n));
    for (int64_t i = 0; i < m; i++) {
        for (int64_t c = 0; c < k; c++) {
            L[i * r + c] = U[i * r + c] * sw[c];
        }
    }
    memcpy(R, Vt, (size_t)(k * n) * sizeof *R);
    memcpy(WS->data, W->data, qr_dmat_local_count(W) * sizeof *W->data);
    QR_CHECK(qr_mpi_agree(g->comm, qr_grid_add_product(g, L, r, R, k, -1.0, WS)));
    st = qr_malloc(&L2, (size_t)(m * (r - k)) + 1, sizeof *L2, "SRR L2");
    if (st == QR_OK) {
        st = qr_malloc(&R2, (size_t)((r - k) * n) + 1, sizeof *R2, "SRR R2");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    QR_CHECK(qr_grid_qer_step(g, o, s, S, WS, r - k, qloc, W_eff, L2, R2, rep));
    for (int64_t i = 0; i < m; i++) {
        for (int64_t c = k; c < r; c++) {
            L[i * r + c] = L2[i * (r - k) + (c - k)];
        }
    }
    memcpy(R + k * n, R2, (size_t)((r - k) * n) * sizeof *R);
    if (o->srr_k < 0) {
        QR_CHECK(srr_keep_if_better(g, o, s, S, W, qloc, W_eff, L, R, WS, rep));
    }
done:
    qr_dmat_free(&WS);
    free(U);
    free(sw);
    free(Vt);
    free(se);
    free(L2);
    free(R2);
    return st;
}

/* grid_metrics.c: a module's held-out metrics on a rank group's grid (mpi/grid_module.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/comm.h"
#include "mpi/grid_module.h"
#include "mpi/scalapack_decl.h"
#include "src/alloc.h"
#include "src/quant.h"

static void pgemm_nt(double alpha, const qr_dmat *A, const qr_dmat *B, double beta, qr_dmat *C)
{
    int mi = (int)C->m, ni = (int)C->n, ki = (int)A->n, one = 1;
    pdgemm_("N", "T", &mi, &ni, &ki, &alpha, A->data, &one, &one, A->desc, B->data, &one, &one,
            B->desc, &beta, C->data, &one, &one, C->desc);
}

static double rel(double num, double den)
{
    return den > 0.0 ? sqrt(num / den) : (num > 0.0 ? INFINITY : 0.0);
}

/* Xa := the per-token quantized held-out rows (bits, agroup), block by block from h->rows. */
static qr_status quantized_rows(const qr_grid *g, const qr_grid_held *h, int bits, int64_t agroup,
                                qr_dmat *Xa)
{
    int64_t d = h->X->n, off = 0, r0, n;
    double *buf = NULL; /* (nb, d) */
    QR_TRY(qr_malloc(&buf, (size_t)g->nb * (size_t)d, sizeof *buf, "quantized held-out rows"));
    for (int64_t b = 0; (n = qr_grid_row_block(g, h->X->m, b, &r0)) > 0; b++) {
        for (int64_t i = 0; i < n * d; i++) {
            buf[i] = (double)h->rows[(off + (i / d)) * d + i % d];
        }
        qr_act_fake_quant(buf, n, d, bits, agroup);
        qr_dmat_fill_rows(g, Xa, r0, n, buf);
        off += n;
    }
    free(buf);
    return QR_OK;
}

qr_status qr_grid_metrics(const qr_grid *g, const qr_dmat *W, const qr_dmat *W_eff,
                          const qr_grid_held *h, qr_metrics *m)
{
    static const int bits[4] = {0, 8, 4, 4};
    qr_status st = QR_OK;
    qr_dmat *Y = NULL, *Z = NULL; /* (n_ho, d_out) */
    qr_dmat *Xa = NULL;           /* (n_ho, d_in): the quantized rows of one setting */
    double sums[2],
        *out[4] = {&m->out_rel_err, &m->out_rel_err_a8, &m->out_rel_err_a4, &m->out_rel_err_a4g};
    memset(m, 0, sizeof *m);
    m->out_rel_err_a4g = NAN;
    st = qr_dmat_create(g, h->X->m, W->m, &Y);
    if (st == QR_OK) {
        st = qr_dmat_create(g, h->X->m, W->m, &Z);
    }
    if (st == QR_OK) {
        st = qr_dmat_create(g, h->X->m, h->X->n, &Xa);
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    sums[0] = qr_dmat_local_sumsq(W, W_eff);
    sums[1] = qr_dmat_local_sumsq(W, NULL);
    MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, g->comm);
    m->weight_rel_err = rel(sums[0], sums[1]);
    pgemm_nt(1.0, h->X, W, 0.0, Y);
    sums[1] = qr_dmat_local_sumsq(Y, NULL);
    MPI_Allreduce(MPI_IN_PLACE, &sums[1], 1, MPI_DOUBLE, MPI_SUM, g->comm);
    for (int a = 0; a < 4; a++) {
        if (a == 3 && h->agroup <= 0) {
            continue;
        }
        if (a > 0) {
            QR_CHECK(
                qr_mpi_agree(g->comm, quantized_rows(g, h, bits[a], a == 3 ? h->agroup : 0, Xa)));
        }
        memcpy(Z->data, Y->data, qr_dmat_local_count(Y) * sizeof *Z->data);
        pgemm_nt(-1.0, a == 0 ? h->X : Xa, W_eff, 1.0, Z);
        sums[0] = qr_dmat_local_sumsq(Z, NULL);
        MPI_Allreduce(MPI_IN_PLACE, sums, 1, MPI_DOUBLE, MPI_SUM, g->comm);
        *out[a] = rel(sums[0], sums[1]);
    }
    m->sqnr_db = m->out_rel_err > 0.0 ? -20.0 * log10(m->out_rel_err) : INFINITY;
done:
    qr_dmat_free(&Y);
    qr_dmat_free(&Z);
    qr_dmat_free(&Xa);
    return st;
}

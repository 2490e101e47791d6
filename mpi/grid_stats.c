/* grid_stats.c: one layer input's statistics on a rank group's grid (mpi/grid_module.h): each
 * rank's own calibration rows, the Gram reduced block by block to its owners, the per-channel
 * vectors whole on every rank, and the whitening factor once per input group. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/comm.h"
#include "mpi/grid_module.h"
#include "mpi/pdla.h"
#include "src/alloc.h"
#include "src/stage.h"
#include "src/quant.h"

void qr_dmat_fill_rows(const qr_grid *g, qr_dmat *d, int64_t row0, int64_t nrows,
                       const double *rows)
{
    for (int li = 0; li < d->mloc; li++) {
        int64_t gi = qr_dmat_global_row(g, li);
        if (gi < row0 || gi >= row0 + nrows) {
            continue;
        }
        for (int lj = 0; lj < d->nloc; lj++) {
            d->data[(size_t)lj * qr_dmat_lld(d) + (size_t)li] =
                rows[(gi - row0) * d->n + qr_dmat_global_col(g, lj)];
        }
    }
}

qr_status qr_dstats_create(const qr_grid *g, int64_t d, qr_dstats **out)
{
    qr_status st = QR_OK;
    qr_dstats *s = NULL;
    *out = NULL;
    QR_CHECK(qr_calloc(&s, 1, sizeof *s, "distributed statistics"));
    s->d = d;
    QR_CHECK(qr_dmat_create(g, d, d, &s->G));
    QR_CHECK(qr_calloc(&s->max_abs, (size_t)d, sizeof(double), "statistics max |x|"));
    QR_CHECK(qr_calloc(&s->sum_abs, (size_t)d, sizeof(double), "statistics sum |x|"));
    QR_CHECK(qr_calloc(&s->sum_sq, (size_t)d, sizeof(double), "statistics sum x^2"));
    QR_CHECK(qr_calloc(&s->batch_mean_abs_max, (size_t)d, sizeof(double), "statistics LQER s"));
    *out = s;
    s = NULL;
done:
    qr_dstats_free(&s);
    return st;
}

void qr_dstats_free(qr_dstats **s)
{
    if (!s || !*s) {
        return;
    }
    qr_dmat_free(&(*s)->G);
    qr_dmat_free(&(*s)->chol);
    qr_dmat_free(&(*s)->gptq);
    free((*s)->gram_diag);
    free((*s)->max_abs);
    free((*s)->sum_abs);
    free((*s)->sum_sq);
    free((*s)->batch_mean_abs_max);
    free(*s);
    *s = NULL;
}

/* Per-channel sums of rows X (n, d) into acc (4 d: sum |x|, sum x², max |x|, and the largest
 * batch mean |x| over the whole batches of `batch` rows); the first non-finite value is named. */
static qr_status channel_sums(const double *X, int64_t n, int64_t d, int64_t batch, double *acc)
{
    for (int64_t b0 = 0; b0 < n; b0 += batch) {
        int64_t nb = n - b0 < batch ? n - b0 : batch;
        for (int64_t j = 0; j < d; j++) {
            double sa = 0.0;
            for (int64_t i = b0; i < b0 + nb; i++) {
                double v = X[i * d + j], a = fabs(v);
                if (!isfinite(v)) {
                    return qr_fail(QR_ERR_INPUT,
                                   "statistics: activation (%lld, %lld) is not finite (expected a "
                                   "finite value, found %g)",
                                   (long long)i, (long long)j, v);
                }
                sa += a;
                acc[d + j] += v * v;
                acc[2 * d + j] = a > acc[2 * d + j] ? a : acc[2 * d + j];
            }
            acc[j] += sa;
            acc[3 * d + j] = sa / (double)nb > acc[3 * d + j] ? sa / (double)nb : acc[3 * d + j];
        }
    }
    return QR_OK;
}

/* G += Xᵀ X summed over the group: each rank multiplies its own rows block column by block column
 * (lower blocks only), and one reduce-scatter per block column sends every nb x nb block to the
 * rank that owns it, so no rank holds more of G than its blocks and one panel. C, Cs and blk hold
 * (d, nb) each. */
static qr_status gram_add(const qr_grid *g, qr_dstats *s, const double *X, int64_t n, double *C,
                          double *Cs, double *blk, int *counts)
{
    int64_t d = s->d, nb = g->nb;
    int size = g->nprow * g->npcol;
    for (int64_t bj = 0; bj * nb < d; bj++) {
        int64_t c0 = bj * nb, w = d - c0 < nb ? d - c0 : nb, h = d - c0, off = 0, got = 0;
        int pc = (int)(bj % g->npcol);
        if (n > 0) {
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)h, (int)w, (int)n, 1.0,
                        X + c0, (int)d, X + c0, (int)d, 0.0, C, (int)w);
        } else {
            memset(C, 0, (size_t)(h * w) * sizeof *C);
        }
        /* the blocks in the order of their owners' ranks (pr * Q + pc, pr ascending) */
        memset(counts, 0, (size_t)size * sizeof *counts);
        for (int pr = 0; pr < g->nprow; pr++) {
            for (int64_t bi = bj; bi * nb < d; bi++) {
                int64_t r0 = bi * nb, bh = d - r0 < nb ? d - r0 : nb;
                if (bi % g->nprow != pr) {
                    continue;
                }
                memcpy(Cs + off, C + (r0 - c0) * w, (size_t)(bh * w) * sizeof *C);
                off += bh * w;
                counts[pr * g->npcol + pc] += (int)(bh * w);
            }
        }
        MPI_Reduce_scatter(Cs, blk, counts, MPI_DOUBLE, MPI_SUM, g->comm);
        if (g->mycol != pc) {
            continue;
        }
        /* this rank's blocks of the column, bi ascending: local rows (bi / P) nb + i */
        for (int64_t bi = bj; bi * nb < d; bi++) {
            int64_t r0 = bi * nb, bh = d - r0 < nb ? d - r0 : nb;
            if (bi % g->nprow != g->myrow) {
                continue;
            }
            for (int64_t j = 0; j < w; j++) {
                double *col = s->G->data + (size_t)((bj / g->npcol) * nb + j) * qr_dmat_lld(s->G);
                for (int64_t i = 0; i < bh; i++) {
                    col[(bi / g->nprow) * nb + i] += blk[got + i * w + j];
                }
            }
            got += bh * w;
        }
    }
    return QR_OK;
}

qr_status qr_dstats_add_rows(const qr_grid *g, qr_dstats *s, const float *rows, int64_t n,
                             int64_t batch)
{
    qr_status st = QR_OK;
    int64_t d = s->d, nb = g->nb;
    double *X = NULL, *acc = NULL, *C = NULL, *Cs = NULL,
           *blk = NULL; /* (n, d), (4 d), 3 (d, nb) */
    int *sizes = NULL;  /* (P Q) */
    int64_t counts[2] = {n, n > 0 ? (n + batch - 1) / batch : 0};
    st = qr_malloc(&X, (size_t)(n > 0 ? n : 1) * (size_t)d, sizeof *X, "calibration rows");
    if (st == QR_OK) {
        st = qr_calloc(&acc, 4 * (size_t)d, sizeof *acc, "batch statistics");
    }
    if (st == QR_OK) {
        st = qr_malloc(&C, (size_t)d * (size_t)nb, sizeof *C, "Gram panel");
    }
    if (st == QR_OK) {
        st = qr_malloc(&Cs, (size_t)d * (size_t)nb, sizeof *Cs, "Gram panel");
    }
    if (st == QR_OK) {
        st = qr_malloc(&blk, (size_t)d * (size_t)nb, sizeof *blk, "Gram blocks");
    }
    if (st == QR_OK) {
        st = qr_calloc(&sizes, (size_t)(g->nprow * g->npcol), sizeof *sizes, "Gram counts");
    }
    if (st == QR_OK) {
        for (int64_t i = 0; i < n * d; i++) {
            X[i] = (double)rows[i];
        }
        st = channel_sums(X, n, d, batch, acc);
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    MPI_Allreduce(MPI_IN_PLACE, acc, 2 * (int)d, MPI_DOUBLE, MPI_SUM, g->comm);
    MPI_Allreduce(MPI_IN_PLACE, acc + 2 * d, 2 * (int)d, MPI_DOUBLE, MPI_MAX, g->comm);
    MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INT64_T, MPI_SUM, g->comm);
    QR_CHECK(gram_add(g, s, X, n, C, Cs, blk, sizes));
    for (int64_t j = 0; j < d; j++) {
        s->sum_abs[j] += acc[j];
        s->sum_sq[j] += acc[d + j];
        s->max_abs[j] = acc[2 * d + j] > s->max_abs[j] ? acc[2 * d + j] : s->max_abs[j];
        s->batch_mean_abs_max[j] =
            acc[3 * d + j] > s->batch_mean_abs_max[j] ? acc[3 * d + j] : s->batch_mean_abs_max[j];
    }
    s->count += counts[0];
    s->n_batches += counts[1];
done:
    free(X);
    free(acc);
    free(C);
    free(Cs);
    free(blk);
    free(sizes);
    return st;
}

/* GPTQ's factor of the input group: from a copy of G when the whitening factors G too, else in
 * G's place (nothing else needs G then: the clip search and the scalings read the vectors). */
static qr_status gptq_factor(const qr_grid *g, qr_dstats *s, bool keep_gram, double damp)
{
    qr_status st = QR_OK;
    if (keep_gram) {
        st = qr_dmat_create(g, s->d, s->d, &s->gptq);
        QR_TRY(qr_mpi_agree(g->comm, st));
        memcpy(s->gptq->data, s->G->data, qr_dmat_local_count(s->G) * sizeof *s->G->data);
    } else {
        s->gptq = s->G;
        s->G = NULL;
    }
    for (int lj = 0; lj < s->gptq->nloc && st == QR_OK; lj++) {
        int64_t j = qr_dmat_global_col(g, lj);
        double used;
        st = qr_gptq_dead_channel(s->gram_diag[j], j, &used);
        for (int li = 0; st == QR_OK && li < s->gptq->mloc; li++) {
            if (qr_dmat_global_row(g, li) == j) {
                s->gptq->data[(size_t)lj * qr_dmat_lld(s->gptq) + li] = used;
            }
        }
    }
    QR_TRY(qr_mpi_agree(g->comm, st));
    return qr_pdla_gptq_factor(g, s->gptq, damp, NULL);
}

bool qr_dstats_keeps_gram(const qr_method_opts *o)
{
    return o->method == QR_METHOD_ASER || (o->method == QR_METHOD_SERQ && o->gptq);
}

qr_status qr_dstats_finish(const qr_grid *g, qr_dstats *s, const qr_method_opts *o)
{
    qr_status st = qr_calloc(&s->gram_diag, (size_t)s->d, sizeof(double), "Gram diagonal");
    bool whiten;
    QR_TRY(qr_mpi_agree(g->comm, st));
    for (int64_t j = 0; j < s->d; j++) { /* the diagonal entries this rank holds */
        int64_t bj = j / g->nb;
        if (bj % g->nprow == g->myrow && bj % g->npcol == g->mycol) {
            int64_t li = (bj / g->nprow) * g->nb + j % g->nb,
                    lj = (bj / g->npcol) * g->nb + j % g->nb;
            s->gram_diag[j] = s->G->data[(size_t)lj * qr_dmat_lld(s->G) + (size_t)li];
        }
    }
    MPI_Allreduce(MPI_IN_PLACE, s->gram_diag, (int)s->d, MPI_DOUBLE, MPI_SUM, g->comm);
    /* QR_AUTO: each module's rank comes from its shape (qr_method_resolve); factor for them all */
    whiten = (o->rank > 0 || o->rank == QR_AUTO) &&
             (o->method == QR_METHOD_QERA_EXACT ||
              (o->method == QR_METHOD_SRR && o->srr_base == QR_METHOD_QERA_EXACT));
    /* ASER and SERQ run GPTQ on their own transformed Gram, factored per module from G */
    if (o->gptq && o->method != QR_METHOD_ASER && o->method != QR_METHOD_SERQ) {
        qr_stage_mark("GPTQ factor");
        QR_TRY(gptq_factor(g, s, whiten, o->wq.gptq_damp));
    }
    if (!whiten) {
        if (!qr_dstats_keeps_gram(o)) { /* the clip search and the scalings read the vectors */
            qr_dmat_free(&s->G);
        }
        return QR_OK;
    }
    qr_stage_mark("whitening");
    QR_TRY(qr_pdla_cholesky_damped(g, s->G, o->whiten_lambda0, &s->chol_damping));
    s->chol = s->G;
    s->G = NULL;
    return QR_OK;
}

int64_t qr_grid_row_block(const qr_grid *g, int64_t m, int64_t b, int64_t *r0)
{
    int64_t blk = b * g->nprow + g->myrow;
    *r0 = blk * g->nb;
    return *r0 >= m ? 0 : (m - *r0 < g->nb ? m - *r0 : g->nb);
}

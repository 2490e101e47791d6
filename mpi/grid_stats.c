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
#include "src/methods/joint.h"
#include "src/stage.h"
#include "src/quant.h"

void qr_dmat_fill_rows(const qr_grid *g, qr_dmat *d, int64_t row0, int64_t nrows,
                       const double *rows)
{
    /* the local rows of [row0, row0 + nrows) are contiguous: local order follows global order */
    int li0 = qr_dmat_extent(row0, g->nb, g->myrow, g->nprow),
        li1 = qr_dmat_extent(row0 + nrows, g->nb, g->myrow, g->nprow);
    /* QR_TILE local columns at a time (qr_dmat_rows_put) */
    for (int lj0 = 0; lj0 < d->nloc; lj0 += QR_TILE) {
        int jw = d->nloc - lj0 < QR_TILE ? d->nloc - lj0 : QR_TILE;
        int64_t gj[QR_TILE];
        for (int j = 0; j < jw; j++) {
            gj[j] = qr_dmat_global_col(g, lj0 + j);
        }
        for (int li = li0; li < li1; li++) {
            const double *row = rows + (qr_dmat_global_row(g, li) - row0) * d->n;
            for (int j = 0; j < jw; j++) {
                d->data[(size_t)(lj0 + j) * qr_dmat_lld(d) + (size_t)li] = row[gj[j]];
            }
        }
    }
}

qr_status qr_dstats_create(const qr_grid *g, int64_t d, int64_t total, int64_t batch,
                           qr_dstats **out)
{
    qr_status st = QR_OK;
    qr_dstats *s = NULL;
    *out = NULL;
    QR_CHECK(qr_calloc(&s, 1, sizeof *s, "distributed statistics"));
    s->d = d;
    s->total = total;
    s->batch = batch > 0 ? batch : 1;
    QR_CHECK(qr_dmat_create(g, d, d, &s->G));
    QR_CHECK(qr_calloc(&s->max_abs, (size_t)d, sizeof(double), "statistics max |x|"));
    QR_CHECK(qr_calloc(&s->sum_abs, (size_t)d, sizeof(double), "statistics sum |x|"));
    QR_CHECK(qr_calloc(&s->sum_sq, (size_t)d, sizeof(double), "statistics sum x^2"));
    QR_CHECK(qr_calloc(&s->batch_mean_abs_max, (size_t)d, sizeof(double), "statistics LQER s"));
    QR_CHECK(qr_calloc(&s->open.sum, (size_t)d, sizeof(double), "statistics batch sum"));
    for (int k = 0; k < 2; k++) {
        QR_CHECK(qr_calloc(&s->part[k].sum, (size_t)d, sizeof(double), "statistics batch part"));
        s->part[k].index = -1;
    }
    s->open.index = -1;
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
    free((*s)->open.sum);
    free((*s)->part[0].sum);
    free((*s)->part[1].sum);
    free(*s);
    *s = NULL;
}

int64_t qr_dstats_share(const qr_grid *g, int64_t total, int64_t *row0)
{
    int64_t per = (int64_t)g->nprow * g->npcol;
    *row0 = total * g->group_rank / per;
    return total * (g->group_rank + 1) / per - *row0;
}

/* Rows in batch k: `batch`, the last one shorter. */
static int64_t batch_rows(const qr_dstats *s, int64_t k)
{
    int64_t r0 = k * s->batch;
    return s->total - r0 < s->batch ? s->total - r0 : s->batch;
}

/* The open batch is done on this rank: its mean |x| into the running maximum when this rank held
 * all of it, else kept as a part for qr_dstats_finish. */
static void close_batch(qr_dstats *s)
{
    qr_dstats_batch *b = &s->open;
    if (b->index < 0) {
        return;
    }
    if (b->from_start && b->rows == batch_rows(s, b->index)) {
        for (int64_t j = 0; j < s->d; j++) {
            double mean = b->sum[j] / (double)b->rows;
            s->batch_mean_abs_max[j] =
                mean > s->batch_mean_abs_max[j] ? mean : s->batch_mean_abs_max[j];
        }
    } else {
        qr_dstats_batch *p = s->part[0].index < 0 ? &s->part[0] : &s->part[1];
        double *sum = p->sum;
        p->sum = b->sum;
        b->sum = sum;
        p->index = b->index;
        p->rows = b->rows;
    }
    memset(b->sum, 0, (size_t)s->d * sizeof *b->sum);
    b->index = -1;
    b->rows = 0;
}

/* Per-channel sums of rows [row0, row0 + n) X (n, d) into s's local vectors, row by row (the
 * channels inner: contiguous), |x| into the open batch; the first non-finite value is named. */
static qr_status channel_sums(qr_dstats *s, const double *X, int64_t row0, int64_t n)
{
    int64_t d = s->d;
    for (int64_t i = 0; i < n; i++) {
        const double *x = X + i * d;
        int64_t k = (row0 + i) / s->batch;
        if (k != s->open.index) {
            close_batch(s);
            s->open.index = k;
            s->open.from_start = (row0 + i) % s->batch == 0;
        }
        for (int64_t j = 0; j < d; j++) {
            if (!isfinite(x[j])) {
                return qr_fail(QR_ERR_INPUT,
                               "statistics: activation (%lld, %lld) is not finite (expected a "
                               "finite value, found %g)",
                               (long long)(row0 + i), (long long)j, x[j]);
            }
        }
        for (int64_t j = 0; j < d; j++) {
            double a = fabs(x[j]);
            s->open.sum[j] += a;
            s->sum_abs[j] += a;
            s->sum_sq[j] += x[j] * x[j];
            s->max_abs[j] = a > s->max_abs[j] ? a : s->max_abs[j];
        }
        s->open.rows++;
    }
    s->count += n;
    return QR_OK;
}

int64_t qr_grid_gram_panel(int64_t d, int nb, int ranks)
{
    /* QR_GRID_GRAM_PANEL_COLS wide when two panels fit in a quarter of this rank's share of G
     * (d² / ranks), else as wide as they fit; never under QR_GRID_GRAM_PANEL_BYTES */
    int64_t share = d / (8 * (int64_t)(ranks > 0 ? ranks : 1));
    int64_t cols = share < QR_GRID_GRAM_PANEL_COLS ? share : QR_GRID_GRAM_PANEL_COLS;
    int64_t budget = (int64_t)(QR_GRID_GRAM_PANEL_BYTES / (sizeof(double) * (size_t)d));
    int64_t blocks = (cols > budget ? cols : budget) / nb;
    return (blocks < 1 ? 1 : blocks) * nb;
}

/* G += Xᵀ X summed over the group: each rank multiplies its own rows one panel of block columns
 * at a time (qr_grid_gram_panel wide: a narrow product packs all of X again for few columns),
 * lower blocks only: dsyrk for the panel's diagonal part, dgemm below it, column-major like G's
 * local part, so every block moves a column at a time. One reduce-scatter per panel sends every
 * nb x nb block to the rank that owns it, so no rank holds more of G than its blocks and two
 * panels. C and Cs hold (d, panel) each; the diagonal blocks are kept whole. */
static qr_status gram_add(const qr_grid *g, qr_dstats *s, const double *X, int64_t n, double *C,
                          double *Cs, int *counts)
{
    int64_t d = s->d, nb = g->nb, pw = qr_grid_gram_panel(d, g->nb, g->nprow * g->npcol);
    int size = g->nprow * g->npcol;
    for (int64_t c0 = 0; c0 < d; c0 += pw) {
        int64_t w = d - c0 < pw ? d - c0 : pw, h = d - c0, off = 0, got = 0;
        int64_t b0 = c0 / nb, b1 = (c0 + w + nb - 1) / nb; /* the panel's block columns */
        if (n > 0) { /* C (h, w) column-major; X (n, d) row-major is Xᵀ (d, n) column-major */
            cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, (int)w, (int)n, 1.0, X + c0,
                        (int)d, 0.0, C, (int)h);
            if (h > w) {
                cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)(h - w), (int)w, (int)n,
                            1.0, X + c0 + w, (int)d, X + c0, (int)d, 0.0, C + w, (int)h);
            }
            for (int64_t j0 = 0; j0 < w; j0 += nb) { /* the diagonal blocks' upper triangles */
                for (int64_t j = j0; j < j0 + nb && j < w; j++) {
                    for (int64_t i = j0; i < j; i++) {
                        C[j * h + i] = C[i * h + j];
                    }
                }
            }
        } else {
            memset(C, 0, (size_t)(h * w) * sizeof *C);
        }
        /* the blocks in the order of their owners' ranks (pr * Q + pc), then bj, bi ascending */
        memset(counts, 0, (size_t)size * sizeof *counts);
        for (int p = 0; p < size; p++) {
            int pr = p / g->npcol, pc = p % g->npcol;
            for (int64_t bj = b0; bj < b1; bj++) {
                int64_t bw = (bj + 1) * nb < c0 + w ? nb : c0 + w - bj * nb;
                for (int64_t bi = bj; bi * nb < d && bj % g->npcol == pc; bi++) {
                    int64_t r0 = bi * nb, bh = d - r0 < nb ? d - r0 : nb;
                    if (bi % g->nprow != pr) {
                        continue;
                    }
                    for (int64_t j = 0; j < bw; j++) { /* the block column-major */
                        memcpy(Cs + off + j * bh, C + (bj * nb - c0 + j) * h + (r0 - c0),
                               (size_t)bh * sizeof *C);
                    }
                    off += bh * bw;
                    counts[p] += (int)(bh * bw);
                }
            }
        }
        QR_TRY(qr_mpi_check(MPI_Reduce_scatter(Cs, C, counts, MPI_DOUBLE, MPI_SUM, g->comm),
                            "MPI_Reduce_scatter (Gram)"));
        /* this rank's blocks, in the order packed: local rows (bi / P) nb + i, columns
         * (bj / Q) nb + j */
        for (int64_t bj = b0; bj < b1; bj++) {
            int64_t bw = (bj + 1) * nb < c0 + w ? nb : c0 + w - bj * nb;
            if (bj % g->npcol != g->mycol) {
                continue;
            }
            for (int64_t bi = bj; bi * nb < d; bi++) {
                int64_t r0 = bi * nb, bh = d - r0 < nb ? d - r0 : nb;
                if (bi % g->nprow != g->myrow) {
                    continue;
                }
                for (int64_t j = 0; j < bw; j++) {
                    double *col = s->G->data +
                                  (size_t)((bj / g->npcol) * nb + j) * qr_dmat_lld(s->G) +
                                  (size_t)((bi / g->nprow) * nb);
                    const double *in = C + got + j * bh;
                    for (int64_t i = 0; i < bh; i++) {
                        col[i] += in[i];
                    }
                }
                got += bh * bw;
            }
        }
    }
    return QR_OK;
}

qr_status qr_dstats_add_rows(const qr_grid *g, qr_dstats *s, const float *rows, int64_t row0,
                             int64_t n)
{
    qr_status st = QR_OK;
    int64_t d = s->d, pw = qr_grid_gram_panel(d, g->nb, g->nprow * g->npcol);
    double *X = NULL, *C = NULL, *Cs = NULL; /* (n, d), 2 (d, panel) */
    int *sizes = NULL;                       /* (P Q) */
    st = qr_malloc(&X, (size_t)(n > 0 ? n : 1) * (size_t)d, sizeof *X, "calibration rows");
    if (st == QR_OK) {
        st = qr_malloc(&C, (size_t)d * (size_t)pw, sizeof *C, "Gram panel");
    }
    if (st == QR_OK) {
        st = qr_malloc(&Cs, (size_t)d * (size_t)pw, sizeof *Cs, "Gram panel blocks");
    }
    if (st == QR_OK) {
        st = qr_calloc(&sizes, (size_t)(g->nprow * g->npcol), sizeof *sizes, "Gram counts");
    }
    if (st == QR_OK) {
        for (int64_t i = 0; i < n * d; i++) {
            X[i] = (double)rows[i];
        }
        st = channel_sums(s, X, row0, n);
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    QR_CHECK(gram_add(g, s, X, n, C, Cs, sizes));
done:
    free(X);
    free(C);
    free(Cs);
    free(sizes);
    return st;
}

/* The per-channel vectors summed (or maximised) over the group, once after the last rows. A batch
 * that straddles ranks has its |x| sums added over the ranks that hold a piece (every rank learns
 * which batches those are), so its mean is the serial one up to the order of the sums. */
static qr_status reduce_vectors(const qr_grid *g, qr_dstats *s)
{
    qr_status st = QR_OK;
    int per = g->nprow * g->npcol;
    int64_t d = s->d, mine[2], *parts = NULL, count = s->count; /* parts: (P Q, 2) */
    double *sum = NULL;                                         /* (d) */
    close_batch(s);
    mine[0] = s->part[0].index;
    mine[1] = s->part[1].index;
    st = qr_malloc(&parts, 2 * (size_t)per, sizeof *parts, "statistics batch parts");
    if (st == QR_OK) {
        st = qr_malloc(&sum, (size_t)d, sizeof *sum, "statistics batch sum");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    QR_CHECK(qr_mpi_check(MPI_Allgather(mine, 2, MPI_INT64_T, parts, 2, MPI_INT64_T, g->comm),
                          "MPI_Allgather (statistics batch parts)"));
    /* each straddling batch once, in the order the ranks name them (the same on every rank) */
    for (int t = 0; t < 2 * per; t++) {
        int64_t k = parts[t];
        bool first = k >= 0;
        for (int u = 0; u < t && first; u++) {
            first = parts[u] != k;
        }
        if (!first) {
            continue;
        }
        memset(sum, 0, (size_t)d * sizeof *sum);
        for (int p = 0; p < 2; p++) {
            if (s->part[p].index == k) {
                memcpy(sum, s->part[p].sum, (size_t)d * sizeof *sum);
            }
        }
        QR_CHECK(
            qr_mpi_check(MPI_Allreduce(MPI_IN_PLACE, sum, (int)d, MPI_DOUBLE, MPI_SUM, g->comm),
                         "MPI_Allreduce (statistics batch)"));
        for (int64_t j = 0; j < d; j++) {
            double mean = sum[j] / (double)batch_rows(s, k);
            s->batch_mean_abs_max[j] =
                mean > s->batch_mean_abs_max[j] ? mean : s->batch_mean_abs_max[j];
        }
    }
    QR_CHECK(
        qr_mpi_check(MPI_Allreduce(MPI_IN_PLACE, s->sum_abs, (int)d, MPI_DOUBLE, MPI_SUM, g->comm),
                     "MPI_Allreduce (statistics sum |x|)"));
    QR_CHECK(
        qr_mpi_check(MPI_Allreduce(MPI_IN_PLACE, s->sum_sq, (int)d, MPI_DOUBLE, MPI_SUM, g->comm),
                     "MPI_Allreduce (statistics sum x^2)"));
    QR_CHECK(
        qr_mpi_check(MPI_Allreduce(MPI_IN_PLACE, s->max_abs, (int)d, MPI_DOUBLE, MPI_MAX, g->comm),
                     "MPI_Allreduce (statistics max |x|)"));
    QR_CHECK(qr_mpi_check(
        MPI_Allreduce(MPI_IN_PLACE, s->batch_mean_abs_max, (int)d, MPI_DOUBLE, MPI_MAX, g->comm),
        "MPI_Allreduce (statistics batch mean)"));
    QR_CHECK(qr_mpi_check(MPI_Allreduce(&count, &s->count, 1, MPI_INT64_T, MPI_SUM, g->comm),
                          "MPI_Allreduce (statistics rows)"));
    s->n_batches = (s->count + s->batch - 1) / s->batch;
done:
    free(parts);
    free(sum);
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
    for (int64_t j = 0; j < s->d && st == QR_OK; j++) {
        double used, *e = qr_dmat_diag_entry(g, s->gptq, j);
        st = qr_gptq_dead_channel(s->gram_diag[j], j, &used);
        if (e && st == QR_OK) {
            *e = used;
        }
    }
    QR_TRY(qr_mpi_agree(g->comm, st));
    return qr_pdla_gptq_factor(g, s->gptq, damp, NULL);
}

qr_stats qr_dstats_view(const qr_dstats *s)
{
    qr_stats v = {s->d,       s->count,   s->n_batches, NULL,
                  s->max_abs, s->sum_abs, s->sum_sq,    s->batch_mean_abs_max};
    return v;
}

bool qr_dstats_keeps_gram(const qr_method_opts *o, int64_t d_out, int64_t d_in)
{
    return o->method == QR_METHOD_ASER || (o->method == QR_METHOD_SERQ && o->gptq) ||
           (o->method == QR_METHOD_JOINT && qr_joint_smooths(o, d_out, d_in));
}

qr_status qr_dstats_finish(const qr_grid *g, qr_dstats *s, const qr_method_opts *o, bool keep_gram)
{
    qr_status st = qr_calloc(&s->gram_diag, (size_t)s->d, sizeof(double), "Gram diagonal");
    bool whiten;
    QR_TRY(qr_mpi_agree(g->comm, st));
    QR_TRY(reduce_vectors(g, s));
    for (int64_t j = 0; j < s->d; j++) { /* the diagonal entries this rank holds */
        const double *e = qr_dmat_diag_entry(g, s->G, j);
        s->gram_diag[j] = e ? *e : 0.0;
    }
    MPI_Allreduce(MPI_IN_PLACE, s->gram_diag, (int)s->d, MPI_DOUBLE, MPI_SUM, g->comm);
    /* QR_AUTO: each module's rank comes from its shape (qr_method_resolve); factor for them all */
    whiten = ((o->rank > 0 || o->rank == QR_AUTO) &&
              (o->method == QR_METHOD_QERA_EXACT ||
               (o->method == QR_METHOD_SRR && o->srr_base == QR_METHOD_QERA_EXACT))) ||
             o->method == QR_METHOD_FLRQ || /* FLRQ's output error is measured through it */
             o->method == QR_METHOD_JOINT;
    /* ASER and SERQ run GPTQ on their own transformed Gram, factored per module from G */
    if (o->gptq && o->method != QR_METHOD_ASER && o->method != QR_METHOD_SERQ) {
        qr_stage_mark("GPTQ factor");
        QR_TRY(gptq_factor(g, s, whiten || keep_gram, o->wq.gptq_damp));
    }
    if (!whiten) {
        if (!keep_gram) { /* the clip search and the scalings read the vectors */
            qr_dmat_free(&s->G);
        }
        return QR_OK;
    }
    qr_stage_mark("whitening");
    if (keep_gram) { /* JOINT's smoothed spaces transform G itself */
        QR_TRY(qr_mpi_agree(g->comm, qr_dmat_create(g, s->d, s->d, &s->chol)));
        memcpy(s->chol->data, s->G->data, qr_dmat_local_count(s->G) * sizeof *s->G->data);
    } else {
        s->chol = s->G;
        s->G = NULL;
    }
    return qr_pdla_cholesky_damped(g, s->chol, o->whiten_lambda0, &s->chol_damping);
}

int64_t qr_grid_row_block(const qr_grid *g, int64_t m, int64_t b, int64_t *r0)
{
    int64_t blk = b * g->nprow + g->myrow;
    *r0 = blk * g->nb;
    return *r0 >= m ? 0 : (m - *r0 < g->nb ? m - *r0 : g->nb);
}

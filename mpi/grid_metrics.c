/* grid_metrics.c: a module's held-out metrics on a rank group's grid (mpi/grid_module.h). Every
 * rank holds the held-out sample whole and multiplies it by its own blocks of the weight: the
 * products divide like the weight, and no rank holds an m x n matrix. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/comm.h"
#include "mpi/grid_module.h"
#include "src/alloc.h"

/* Global index of local row/column l of a block-cyclic dimension (first block on process 0). */
static int64_t global_index(int64_t l, int nb, int p, int nprocs)
{
    return ((l / nb) * nprocs + p) * nb + l % nb;
}

/* Columns of rows (n, d) that this rank's blocks hold, into out (n, nloc). */
static void local_columns(const qr_grid *g, const qr_dmat *A, const float *rows, int64_t n,
                          int64_t d, float *out)
{
    for (int64_t t = 0; t < n; t++) {
        for (int lj = 0; lj < A->nloc; lj++) {
            out[t * A->nloc + lj] = rows[t * d + global_index(lj, g->nb, g->mycol, g->npcol)];
        }
    }
}

/* out (mloc, nloc) column-major float32 copy of A's local part (leading dimension mloc). */
static void local_float(const qr_dmat *A, float *out)
{
    for (int lj = 0; lj < A->nloc; lj++) {
        for (int li = 0; li < A->mloc; li++) {
            out[(size_t)lj * A->mloc + li] = (float)A->data[(size_t)lj * qr_dmat_lld(A) + li];
        }
    }
}

/* Z (n, mloc) = beta Z + alpha Xloc Aᵀ over this rank's blocks, then summed over the process row
 * so every rank of it holds its rows' whole products. */
static void partial_product(const qr_dmat *A, const float *Af, const float *Xloc, int64_t n,
                            float alpha, float beta, MPI_Comm row, float *Z)
{
    if (A->mloc > 0 && n > 0) {
        if (A->nloc > 0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, A->mloc, A->nloc, alpha,
                        Xloc, A->nloc, Af, A->mloc, beta, Z, A->mloc);
        } else if (beta == 0.0f) {
            memset(Z, 0, (size_t)n * (size_t)A->mloc * sizeof *Z);
        }
    }
    if (row != MPI_COMM_NULL) {
        MPI_Allreduce(MPI_IN_PLACE, Z, (int)(n * A->mloc), MPI_FLOAT, MPI_SUM, row);
    }
}

/* Σ Z² of this rank's rows, counted once per process row (its column 0), summed over the group. */
static double group_sumsq(const qr_grid *g, const float *Z, int64_t count)
{
    double s = 0.0;
    if (g->mycol == 0) {
        for (int64_t i = 0; i < count; i++) {
            s += (double)Z[i] * (double)Z[i];
        }
    }
    MPI_Allreduce(MPI_IN_PLACE, &s, 1, MPI_DOUBLE, MPI_SUM, g->comm);
    return s;
}

qr_status qr_grid_metric_ref_init(const qr_grid *g, const qr_dmat *W, const qr_grid_held *h,
                                  qr_grid_metric_ref *ref)
{
    qr_status st = QR_OK;
    float *Wf = NULL, *Xloc = NULL;
    size_t ny = (size_t)h->n * (size_t)(W->mloc > 0 ? W->mloc : 1);
    memset(ref, 0, sizeof *ref);
    ref->row = g->npcol > 1 ? g->row : MPI_COMM_NULL;
    st = qr_malloc(&ref->Y, ny, sizeof *ref->Y, "metrics output");
    if (st == QR_OK) {
        st = qr_malloc(&Wf,
                       (size_t)(W->mloc > 0 ? W->mloc : 1) * (size_t)(W->nloc > 0 ? W->nloc : 1),
                       sizeof *Wf, "metrics weight");
    }
    if (st == QR_OK && g->npcol > 1) {
        st = qr_malloc(&Xloc, (size_t)h->n * (size_t)(W->nloc > 0 ? W->nloc : 1), sizeof *Xloc,
                       "metrics rows");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    local_float(W, Wf);
    if (Xloc) {
        local_columns(g, W, h->X, h->n, h->d, Xloc);
    }
    partial_product(W, Wf, Xloc ? Xloc : h->X, h->n, 1.0f, 0.0f, ref->row, ref->Y);
    ref->y_sumsq = group_sumsq(g, ref->Y, h->n * W->mloc);
done:
    free(Wf);
    free(Xloc);
    if (st != QR_OK) {
        qr_grid_metric_ref_free(ref);
    }
    return st;
}

void qr_grid_metric_ref_free(qr_grid_metric_ref *ref)
{
    if (!ref) {
        return;
    }
    free(ref->Y);
    memset(ref, 0, sizeof *ref);
    ref->row = MPI_COMM_NULL;
}

/* One pass over this rank's blocks: sums[0] = ||W - W_eff||², sums[1] = ||W||² (the columns
 * permuted or not, the same sum), and Wtf the float32 copy of W_t (leading dimension mloc);
 * W_eff[:, perm[j]] = W_t[:, j] / smooth[j] (with a permutation every column is local: Q = 1). */
static void weight_pass(const qr_grid *g, const qr_dmat *W, const qr_dmat *W_t, const int32_t *perm,
                        const float *smooth, float *Wtf, double *sums)
{
    sums[0] = sums[1] = 0.0;
    for (int lj = 0; lj < W->nloc; lj++) {
        int64_t j = global_index(lj, g->nb, g->mycol, g->npcol);
        const double *w = W->data + (size_t)(perm ? perm[j] : lj) * qr_dmat_lld(W);
        const double *t = W_t->data + (size_t)lj * qr_dmat_lld(W_t);
        float *out = Wtf + (size_t)lj * (size_t)W_t->mloc;
        double sc = smooth ? (double)smooth[j] : 1.0, e = 0.0, a = 0.0;
        for (int li = 0; li < W->mloc; li++) {
            double d = w[li] - t[li] / sc;
            e += d * d;
            a += w[li] * w[li];
            out[li] = (float)t[li];
        }
        sums[0] += e;
        sums[1] += a;
    }
}

/* T (n, d) = the held-out rows transformed (qr_metric_rows_transform), whole on every rank: each
 * rank of the process column transforms its share of the rows, then they are gathered. */
static qr_status transform_rows(const qr_grid *g, const qr_grid_held *h, const int32_t *perm,
                                const float *smooth, int bits, int64_t agroup, double *tmp,
                                float *T)
{
    int P = g->nprow, *all = NULL;
    int64_t t0 = h->n * g->myrow / P, t1 = h->n * (g->myrow + 1) / P;
    qr_status st = QR_OK;
    qr_metric_rows_transform(h->X + t0 * h->d, t1 - t0, h->d, perm, smooth, bits, agroup, tmp,
                             T + t0 * h->d);
    if (P == 1) {
        return QR_OK;
    }
    st = qr_malloc(&all, 2 * (size_t)P, sizeof *all, "metrics row counts");
    QR_TRY(qr_mpi_agree(g->comm, st));
    for (int p = 0; p < P; p++) { /* counts, then offsets */
        int64_t a = h->n * p / P, b = h->n * (p + 1) / P;
        all[p] = (int)((b - a) * h->d);
        all[P + p] = (int)(a * h->d);
    }
    st =
        qr_mpi_check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, T, all, all + P, MPI_FLOAT, g->col),
                     "MPI_Allgatherv (metrics rows)");
    free(all);
    return st;
}

qr_status qr_grid_metrics(const qr_grid *g, const qr_grid_metric_ref *ref, const qr_grid_held *h,
                          int width, const qr_dmat *W, const qr_dmat *W_t, const int32_t *perm,
                          const float *smooth, qr_metrics *m)
{
    static const int bits[4] = {0, 8, 4, 4};
    qr_status st = QR_OK;
    int64_t n = h->n, d = h->d, mloc = W_t->mloc > 0 ? W_t->mloc : 1;
    int64_t nloc = W_t->nloc > 0 ? W_t->nloc : 1;
    float *Wtf = NULL, *T = NULL, *Tloc = NULL, *Z = NULL;
    double *tmp = NULL, sums[2];
    double *out[4] = {&m->out_rel_err, &m->out_rel_err_a8, &m->out_rel_err_a4, &m->out_rel_err_a4g};
    memset(m, 0, sizeof *m);
    m->out_rel_err_a4g = NAN;
    if (perm && g->npcol > 1) {
        return qr_fail(QR_ERR_INPUT,
                       "grid metrics: a permutation needs whole rows (a P x 1 grid, "
                       "found Q = %d)",
                       g->npcol);
    }
    st = qr_malloc(&Wtf, (size_t)mloc * (size_t)nloc, sizeof *Wtf, "metrics weight");
    if (st == QR_OK) {
        st = qr_malloc(&T, (size_t)n * (size_t)d, sizeof *T, "metrics rows");
    }
    if (st == QR_OK && g->npcol > 1) { /* one process column: every column is local, in order */
        st = qr_malloc(&Tloc, (size_t)n * (size_t)nloc, sizeof *Tloc, "metrics rows");
    }
    if (st == QR_OK) {
        st = qr_malloc(&Z, (size_t)n * (size_t)mloc, sizeof *Z, "metrics output");
    }
    if (st == QR_OK) {
        st = qr_malloc(&tmp, (size_t)d, sizeof *tmp, "metrics rows");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    weight_pass(g, W, W_t, perm, smooth, Wtf, sums);
    MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, g->comm);
    m->weight_rel_err = qr_metrics_rel(sums[0], sums[1]);
    for (int a = 0; a < 4; a++) {
        if (!qr_metrics_wanted(a, h->agroup, width)) {
            *out[a] = NAN;
            continue;
        }
        /* The rows are transformed and quantized per token, so whole: each rank of a process
         * column does its share of them, gathered over the column (n·d / P work a rank against
         * the n·d·m / (P·Q) of its products). */
        QR_CHECK(transform_rows(g, h, perm, smooth, bits[a], a == 3 ? h->agroup : 0, tmp, T));
        if (Tloc) {
            local_columns(g, W_t, T, n, d, Tloc);
        }
        if (W_t->mloc > 0) {
            memcpy(Z, ref->Y, (size_t)(n * W_t->mloc) * sizeof *Z);
        }
        /* Z = Y - T W_tᵀ: the row sum of the partial -T W_tᵀ plus Y once (Y is already summed,
         * so only column 0 adds it before the sum). */
        if (g->mycol != 0 && W_t->mloc > 0) {
            memset(Z, 0, (size_t)(n * W_t->mloc) * sizeof *Z);
        }
        partial_product(W_t, Wtf, Tloc ? Tloc : T, n, -1.0f, 1.0f, ref->row, Z);
        *out[a] = qr_metrics_rel(group_sumsq(g, Z, n * W_t->mloc), ref->y_sumsq);
    }
    m->sqnr_db = m->out_rel_err > 0.0 ? -20.0 * log10(m->out_rel_err) : INFINITY;
done:
    free(Wtf);
    free(T);
    free(Tloc);
    free(Z);
    free(tmp);
    return st;
}

/* blacs.c: rank groups as BLACS grids, block-cyclic descriptors, and the row-major <-> block-cyclic
 * scatter and gather (mpi/blacs.h).
 *
 * Scatter and gather go through the group root with plain MPI point-to-point messages, one per
 * process, each holding that process's whole local part already in its column-major order: simple
 * and correct first. The root's staging allocation is agreed on before any message moves, so a
 * failure there is the same error on every rank instead of a hang. */
#include "mpi/blacs.h"

#include <stdlib.h>
#include <string.h>

#include "mpi/comm.h"
#include "src/alloc.h"
#include "src/checked.h"

/* Message tag of the scatter/gather traffic (any fixed value: the group communicator is ours). */
#define GRID_TAG 7301

qr_status qr_grid_create(MPI_Comm world, int p, int q, int nb, qr_grid **out)
{
    qr_status st = QR_OK;
    qr_grid *g = NULL;
    int wrank = qr_mpi_rank(world), wsize = qr_mpi_size(world);
    int per = 0, nprow = 0, npcol = 0;
    *out = NULL;
    if (p < 1 || q < 1 || !qr_to_int((int64_t)p * (int64_t)q, &per)) {
        return qr_fail(QR_ERR_INPUT, "grid: shape (expected P >= 1 and Q >= 1, found %dx%d)", p, q);
    }
    if (wsize % per != 0) {
        return qr_fail(QR_ERR_INPUT,
                       "--grid %dx%d: the number of ranks must be divisible by P*Q = %d (found %d "
                       "ranks)",
                       p, q, per, wsize);
    }
    if (nb < 0) {
        return qr_fail(QR_ERR_INPUT, "grid: block size (expected >= 1, found %d)", nb);
    }
    QR_CHECK(qr_calloc(&g, 1, sizeof *g, "grid"));
    g->comm = g->row = g->col = MPI_COMM_NULL;
    g->ctxt = -1;
    g->sys_handle = -1;
    g->nb = nb > 0 ? nb : QR_GRID_DEFAULT_NB;
    g->group = wrank / per;
    g->n_groups = wsize / per;
    /* Key = world rank keeps the world order inside each group. */
    QR_CHECK(qr_mpi_check(MPI_Comm_split(world, g->group, wrank, &g->comm), "MPI_Comm_split"));
    g->group_rank = qr_mpi_rank(g->comm);
    g->sys_handle = Csys2blacs_handle(g->comm);
    g->ctxt = g->sys_handle;
    Cblacs_gridinit(&g->ctxt, "Row", p, q);
    Cblacs_gridinfo(g->ctxt, &nprow, &npcol, &g->myrow, &g->mycol);
    if (nprow != p || npcol != q || g->myrow < 0 || g->mycol < 0 ||
        Cblacs_pnum(g->ctxt, g->myrow, g->mycol) != g->group_rank ||
        g->myrow * q + g->mycol != g->group_rank) {
        st = qr_fail(
            QR_ERR_INTERNAL,
            "grid: BLACS made an unexpected %dx%d grid (expected %dx%d with this rank %d at "
            "(%d, %d), found it at (%d, %d))",
            nprow, npcol, p, q, g->group_rank, g->group_rank / q, g->group_rank % q, g->myrow,
            g->mycol);
        goto done;
    }
    g->nprow = p;
    g->npcol = q;
    QR_CHECK(qr_mpi_check(MPI_Comm_split(g->comm, g->myrow, g->mycol, &g->row),
                          "MPI_Comm_split (process row)"));
    QR_CHECK(qr_mpi_check(MPI_Comm_split(g->comm, g->mycol, g->myrow, &g->col),
                          "MPI_Comm_split (process column)"));
    *out = g;
    g = NULL;
done:
    qr_grid_free(&g);
    return st;
}

void qr_grid_free(qr_grid **g)
{
    if (!g || !*g) {
        return;
    }
    if ((*g)->ctxt >= 0 && (*g)->myrow >= 0) {
        Cblacs_gridexit((*g)->ctxt);
    }
    if ((*g)->sys_handle >= 0) {
        Cfree_blacs_system_handle((*g)->sys_handle);
    }
    if ((*g)->row != MPI_COMM_NULL) {
        MPI_Comm_free(&(*g)->row);
    }
    if ((*g)->col != MPI_COMM_NULL) {
        MPI_Comm_free(&(*g)->col);
    }
    if ((*g)->comm != MPI_COMM_NULL) {
        MPI_Comm_free(&(*g)->comm);
    }
    free(*g);
    *g = NULL;
}

void qr_blacs_shutdown(void)
{
    /* 1 = MPI stays up: main() calls MPI_Finalize itself. */
    Cblacs_exit(1);
}

/* Local extent of `n` global indices for process coordinate `iproc` of `nprocs`. */
int qr_dmat_extent(int64_t n, int nb, int iproc, int nprocs)
{
    int ni = (int)n, zero = 0;
    return numroc_(&ni, &nb, &iproc, &zero, &nprocs);
}

qr_status qr_dmat_create(const qr_grid *g, int64_t m, int64_t n, qr_dmat **out)
{
    qr_status st = QR_OK;
    qr_dmat *a = NULL;
    int mi = 0, ni = 0, lld, info = 0, zero = 0;
    size_t count = 0;
    *out = NULL;
    if (!qr_to_int(m, &mi) || !qr_to_int(n, &ni)) {
        return qr_fail(QR_ERR_INPUT,
                       "distributed matrix: size %lld x %lld out of range (expected each in 0..%d)",
                       (long long)m, (long long)n, (int)INT32_MAX);
    }
    QR_CHECK(qr_calloc(&a, 1, sizeof *a, "distributed matrix"));
    a->m = m;
    a->n = n;
    a->mloc = qr_dmat_extent(mi, g->nb, g->myrow, g->nprow);
    a->nloc = qr_dmat_extent(ni, g->nb, g->mycol, g->npcol);
    lld = a->mloc > 1 ? a->mloc : 1;
    if (!qr_mul_size((size_t)lld, (size_t)a->nloc, &count) || count > (size_t)INT32_MAX) {
        st = qr_fail(QR_ERR_INPUT,
                     "distributed matrix %lld x %lld: local part %d x %d too large for one "
                     "message (expected at most %d elements)",
                     (long long)m, (long long)n, a->mloc, a->nloc, (int)INT32_MAX);
        goto done;
    }
    descinit_(a->desc, &mi, &ni, &g->nb, &g->nb, &zero, &zero, &g->ctxt, &lld, &info);
    if (info != 0) {
        st = qr_fail(QR_ERR_INTERNAL, "descinit: illegal argument %d for a %d x %d matrix", -info,
                     mi, ni);
        goto done;
    }
    QR_CHECK(qr_calloc(&a->data, count, sizeof *a->data, "distributed matrix local part"));
    *out = a;
    a = NULL;
done:
    qr_dmat_free(&a);
    return st;
}

size_t qr_dmat_local_count(const qr_dmat *a)
{
    return (size_t)a->desc[QR_DESC_LLD] * (size_t)a->nloc;
}

double qr_dmat_local_sumsq(const qr_dmat *a, const qr_dmat *b)
{
    double s = 0.0;
    for (int lj = 0; lj < a->nloc; lj++) {
        for (int li = 0; li < a->mloc; li++) {
            size_t k = (size_t)lj * qr_dmat_lld(a) + li;
            double v = b ? a->data[k] - b->data[k] : a->data[k];
            s += v * v;
        }
    }
    return s;
}

void qr_dmat_free(qr_dmat **a)
{
    if (!a || !*a) {
        return;
    }
    free((*a)->data);
    free(*a);
    *a = NULL;
}

int64_t qr_dmat_global_index(int l, int nb, int iproc, int nprocs)
{
    return ((int64_t)(l / nb) * nprocs + iproc) * nb + l % nb;
}

int64_t qr_dmat_global_row(const qr_grid *g, int li)
{
    return qr_dmat_global_index(li, g->nb, g->myrow, g->nprow);
}

int64_t qr_dmat_global_col(const qr_grid *g, int lj)
{
    return qr_dmat_global_index(lj, g->nb, g->mycol, g->npcol);
}

/* Row-major rows <-> column-major columns in tiles of QR_TILE columns: the columns are read (or
 * written) contiguously, and each row's QR_TILE entries share a cache line. One column at a time
 * strode the rows instead, which alias in the cache when the row length is a power of two. */
void qr_dmat_rows_get(const qr_dmat *d, int64_t r0, int64_t nr, double *rows)
{
    int64_t nloc = d->nloc;
    size_t lld = qr_dmat_lld(d);
    for (int64_t j0 = 0; j0 < nloc; j0 += QR_TILE) {
        int64_t jw = nloc - j0 < QR_TILE ? nloc - j0 : QR_TILE;
        const double *col = d->data + (size_t)j0 * lld + (size_t)r0;
        for (int64_t i = 0; i < nr; i++) {
            for (int64_t j = 0; j < jw; j++) {
                rows[i * nloc + j0 + j] = col[(size_t)j * lld + (size_t)i];
            }
        }
    }
}

void qr_dmat_rows_put(qr_dmat *d, int64_t r0, int64_t nr, const double *rows)
{
    int64_t nloc = d->nloc;
    size_t lld = qr_dmat_lld(d);
    for (int64_t j0 = 0; j0 < nloc; j0 += QR_TILE) {
        int64_t jw = nloc - j0 < QR_TILE ? nloc - j0 : QR_TILE;
        double *col = d->data + (size_t)j0 * lld + (size_t)r0;
        for (int64_t i = 0; i < nr; i++) {
            for (int64_t j = 0; j < jw; j++) {
                col[(size_t)j * lld + (size_t)i] = rows[i * nloc + j0 + j];
            }
        }
    }
}

double *qr_dmat_diag_entry(const qr_grid *g, const qr_dmat *a, int64_t j)
{
    int64_t bj = j / g->nb, off = j % g->nb;
    if (bj % g->nprow != g->myrow || bj % g->npcol != g->mycol) {
        return NULL;
    }
    return a->data + (size_t)((bj / g->npcol) * g->nb + off) * qr_dmat_lld(a) +
           (size_t)((bj / g->nprow) * g->nb + off);
}

/* Pack the part of the row-major A (m, n) that process (pr, pc) holds into buf (mloc, nloc),
 * column-major. */
static void pack_part(const qr_grid *g, int64_t n, int pr, int pc, int mloc, int nloc,
                      const double *A, double *buf)
{
    for (int lj = 0; lj < nloc; lj++) {
        int64_t gj = qr_dmat_global_index(lj, g->nb, pc, g->npcol);
        double *col = buf + (size_t)lj * (size_t)mloc;
        for (int li = 0; li < mloc; li++) {
            col[li] = A[qr_dmat_global_index(li, g->nb, pr, g->nprow) * n + gj];
        }
    }
}

/* The inverse of pack_part: write process (pr, pc)'s part buf (mloc, nloc) into A (m, n). */
static void unpack_part(const qr_grid *g, int64_t n, int pr, int pc, int mloc, int nloc,
                        const double *buf, double *A)
{
    for (int lj = 0; lj < nloc; lj++) {
        int64_t gj = qr_dmat_global_index(lj, g->nb, pc, g->npcol);
        const double *col = buf + (size_t)lj * (size_t)mloc;
        for (int li = 0; li < mloc; li++) {
            A[qr_dmat_global_index(li, g->nb, pr, g->nprow) * n + gj] = col[li];
        }
    }
}

/* Staging buffer on the root, large enough for the part of process (0, 0), the largest one. */
static qr_status root_buffer(const qr_grid *g, const qr_dmat *d, double **buf)
{
    int mmax = qr_dmat_extent((int)d->m, g->nb, 0, g->nprow);
    int nmax = qr_dmat_extent((int)d->n, g->nb, 0, g->npcol);
    return qr_malloc(buf, (size_t)mmax * (size_t)nmax, sizeof **buf, "scatter/gather buffer");
}

qr_status qr_dmat_scatter(const qr_grid *g, const double *A, qr_dmat *d)
{
    qr_status st = QR_OK;
    double *buf = NULL; /* (mloc, nloc) column-major part of one process */
    int per = g->nprow * g->npcol;
    if (g->group_rank == 0) {
        st = root_buffer(g, d, &buf);
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    if (g->group_rank != 0) {
        /* The local part is contiguous: lld == mloc whenever the part is not empty. */
        int count = d->mloc * d->nloc;
        if (count > 0) {
            QR_CHECK(qr_mpi_check(
                MPI_Recv(d->data, count, MPI_DOUBLE, 0, GRID_TAG, g->comm, MPI_STATUS_IGNORE),
                "MPI_Recv (scatter)"));
        }
        goto done;
    }

    for (int r = 0; r < per; r++) {
        int pr = r / g->npcol, pc = r % g->npcol;
        int mloc = qr_dmat_extent((int)d->m, g->nb, pr, g->nprow);
        int nloc = qr_dmat_extent((int)d->n, g->nb, pc, g->npcol);
        if (mloc * nloc == 0) {
            continue;
        }
        if (r == 0) {
            pack_part(g, d->n, pr, pc, mloc, nloc, A, d->data);
            continue;
        }
        pack_part(g, d->n, pr, pc, mloc, nloc, A, buf);
        QR_CHECK(qr_mpi_check(MPI_Send(buf, mloc * nloc, MPI_DOUBLE, r, GRID_TAG, g->comm),
                              "MPI_Send (scatter)"));
    }
done:
    free(buf);
    return st;
}

qr_status qr_dmat_gather(const qr_grid *g, const qr_dmat *d, double *A)
{
    qr_status st = QR_OK;
    double *buf = NULL; /* (mloc, nloc) column-major part of one process */
    int per = g->nprow * g->npcol;
    if (g->group_rank == 0) {
        st = root_buffer(g, d, &buf);
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    if (g->group_rank != 0) {
        int count = d->mloc * d->nloc;
        if (count > 0) {
            QR_CHECK(qr_mpi_check(MPI_Send(d->data, count, MPI_DOUBLE, 0, GRID_TAG, g->comm),
                                  "MPI_Send (gather)"));
        }
        goto done;
    }

    for (int r = 0; r < per; r++) {
        int pr = r / g->npcol, pc = r % g->npcol;
        int mloc = qr_dmat_extent((int)d->m, g->nb, pr, g->nprow);
        int nloc = qr_dmat_extent((int)d->n, g->nb, pc, g->npcol);
        if (mloc * nloc == 0) {
            continue;
        }
        if (r == 0) {
            unpack_part(g, d->n, pr, pc, mloc, nloc, d->data, A);
            continue;
        }
        QR_CHECK(qr_mpi_check(
            MPI_Recv(buf, mloc * nloc, MPI_DOUBLE, r, GRID_TAG, g->comm, MPI_STATUS_IGNORE),
            "MPI_Recv (gather)"));
        unpack_part(g, d->n, pr, pc, mloc, nloc, buf, A);
    }
done:
    free(buf);
    return st;
}

qr_status qr_dmat_allgather(const qr_grid *g, const qr_dmat *d, double *A)
{
    size_t count = (size_t)d->m * (size_t)d->n;
    QR_TRY(qr_dmat_gather(g, d, A));
    /* Broadcast in pieces that fit an int count. */
    for (size_t off = 0; off < count; off += (size_t)INT32_MAX) {
        size_t len = count - off < (size_t)INT32_MAX ? count - off : (size_t)INT32_MAX;
        QR_TRY(qr_mpi_check(MPI_Bcast(A + off, (int)len, MPI_DOUBLE, 0, g->comm),
                            "MPI_Bcast (allgather)"));
    }
    return QR_OK;
}

void qr_dmat_fill_local(const qr_grid *g, qr_dmat *d, const double *A)
{
    pack_part(g, d->n, g->myrow, g->mycol, d->mloc, d->nloc, A, d->data);
}

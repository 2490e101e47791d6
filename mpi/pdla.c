/* pdla.c: the distributed linear algebra of one rank group (mpi/pdla.h): Cholesky, GPTQ's factor,
 * triangular products and the fixed-order reductions; the SVDs are in mpi/pdla_svd.c.
 *
 * Each routine follows its serial twin in src/linalg.c step by step, so the two can be compared to
 * rounding: the same damping sequence, the same random stream, the same Householder
 * orthonormalisation (PDGEQRF + PDORGQR build the same reflectors as the serial dgelqf/dorglq on
 * the transposed view). Small results (the (l, n) projection's SVD, the damping) are computed once
 * and broadcast, so every rank of a group returns the same bits. */
#include "mpi/pdla.h"
#include "mpi/pdla_internal.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/comm.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/quant.h"

/* Largest element count of one MPI message here: 2^22 doubles = 32 MiB, so the reduction's receive
 * buffer stays small next to the d x d matrices it sums. */
#define PDLA_PIECE ((size_t)1 << 22)

/* Rows per float64 conversion chunk in qr_pdla_gram_reduce (same bound as src/stats.h). */
#define PDLA_GRAM_CHUNK 512

qr_status qr_pdla_scalapack_info(const char *routine, int info)
{
    if (info == 0) {
        return QR_OK;
    }
    if (info < 0) {
        return qr_fail(QR_ERR_INTERNAL, "%s: illegal argument %d", routine, -info);
    }
    return qr_fail(QR_ERR_NUMERIC, "%s: failed (info %d)", routine, info);
}

qr_status qr_pdla_agree_info(MPI_Comm comm, int *info)
{
    int mine = *info, hi = 0, lo = 0;
    QR_TRY(qr_mpi_check(MPI_Allreduce(&mine, &hi, 1, MPI_INT, MPI_MAX, comm), "MPI_Allreduce"));
    QR_TRY(qr_mpi_check(MPI_Allreduce(&mine, &lo, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce"));
    *info = lo < 0 ? lo : hi;
    return QR_OK;
}

/* ---- Cholesky -----------------------------------------------------------------------------------
 */

/* Columns (rows) one step of the panel algorithms below takes: QR_PDLA_SUMMA_WIDTH rounded down
 * to whole blocks, at least one. */
static int64_t step_width(const qr_grid *g)
{
    int blocks = QR_PDLA_SUMMA_WIDTH / g->nb;
    return (int64_t)g->nb * (blocks > 1 ? blocks : 1);
}

/* Local rows (or columns) of this process before global block `blk`: the blocks blk' < blk it
 * owns (blk' = iproc + t nprocs) times nb, clipped to the local extent. */
static int local_before(int64_t blk, int nb, int iproc, int nprocs, int extent)
{
    int64_t owned = blk > iproc ? (blk - 1 - iproc) / nprocs + 1 : 0;
    int64_t l = owned * nb;
    return l < extent ? (int)l : extent;
}

/* Local index of global index i on the process that owns it (block-cyclic, first block on 0). */
static int64_t local_index(int64_t i, int nb, int nprocs)
{
    return (i / nb) / nprocs * nb + i % nb;
}

/* Step 3 of potrf_lower: every process row's solved panel rows mine (rows, w), column-major,
 * gathered over the process column into all (one piece per process row, counts / displs its
 * elements), then the rows this rank's local columns right of the panel meet copied into lcol
 * (nloc, w), column-major. */
static qr_status gather_solved(const qr_grid *g, const qr_dmat *G, int64_t k0, int64_t w,
                               const double *mine, int rows, double *all, int *counts, int *displs,
                               double *lcol)
{
    int64_t n = G->m;
    int nb = g->nb, P = g->nprow, at = 0;
    int lc2 = qr_dmat_extent(k0 + w, nb, g->mycol, g->npcol);
    for (int p = 0; p < P; p++) {
        counts[p] = (qr_dmat_extent(n, nb, p, P) - qr_dmat_extent(k0 + w, nb, p, P)) * (int)w;
        displs[p] = at;
        at += counts[p];
    }
    QR_TRY(qr_mpi_check(
        MPI_Allgatherv(mine, rows * (int)w, MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, g->col),
        "MPI_Allgatherv (Cholesky panel)"));
    for (int lj = lc2; lj < G->nloc; lj += nb) { /* a block's nb columns: one process row's */
        int64_t gj = qr_dmat_global_col(g, lj);
        int p = (int)((gj / nb) % P), rp = counts[p] / (int)w;
        int bw = G->nloc - lj < nb ? G->nloc - lj : nb;
        const double *src =
            all + displs[p] + local_index(gj, nb, P) - qr_dmat_extent(k0 + w, nb, p, P);
        for (int64_t c = 0; c < w; c++) {
            memcpy(lcol + c * G->nloc + lj, src + c * rp, (size_t)bw * sizeof *lcol);
        }
    }
    return QR_OK;
}

/* Right-looking blocked Cholesky of the lower triangle of G in place, in panels of
 * QR_PDLA_SUMMA_WIDTH columns (a multiple of the layout's nb). ScaLAPACK's PDPOTRF runs its
 * trailing updates through PB-BLAS in nb-sized pieces, at about a third of OpenBLAS's dpotrf on
 * one rank here (tests/bench/grid_bench chol). Each step: the diagonal block (w x w) summed to
 * every rank (each entry from its one owner) and factored there; each process row's panel rows
 * below it summed over the process row (when Q > 1) and solved by its ranks, A_ik L_kk^-T
 * ((n - k) w² / P flops a rank); the solved rows gathered over the process column; then each rank
 * keeps its own entries and updates its trailing lower part, QR_PDLA_SUMMA_WIDTH local columns a
 * dgemm of inner dimension w. *info as LAPACK: 0, or the first global column (1-based) whose
 * pivot is not positive; the same on every rank. The upper triangle is left undefined. */
static qr_status potrf_lower(const qr_grid *g, qr_dmat *G, int *info)
{
    qr_status st = QR_OK;
    int64_t n = G->m, kw = step_width(g);
    int nb = g->nb, P = g->nprow, mloc = G->mloc;
    size_t lld = qr_dmat_lld(G);
    double *dblk = NULL; /* (w, w): the diagonal block, then L_kk */
    double *mine = NULL; /* (rows, w): this rank's panel rows below the block */
    double *all = NULL;  /* every process row's solved rows, its (rows, w) one after another */
    double *lcol = NULL; /* (nloc, w): the solved rows at this rank's local columns */
    int *counts = NULL, *displs = NULL; /* (P) */
    *info = 0;
    if (g->nprow * g->npcol == 1) { /* the whole matrix is local: LAPACK's own blocking */
        *info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (int)n, G->data, (int)lld);
        return QR_OK;
    }
    st = qr_malloc(&dblk, (size_t)(kw * kw), sizeof *dblk, "Cholesky diagonal block");
    if (st == QR_OK) {
        st = qr_malloc(&mine, (size_t)(mloc > 0 ? mloc : 1) * (size_t)kw, sizeof *mine,
                       "Cholesky panel rows");
    }
    if (st == QR_OK) {
        st = qr_malloc(&all, (size_t)n * (size_t)kw, sizeof *all, "Cholesky panel");
    }
    if (st == QR_OK) {
        st = qr_malloc(&lcol, (size_t)(G->nloc > 0 ? G->nloc : 1) * (size_t)kw, sizeof *lcol,
                       "Cholesky panel columns");
    }
    if (st == QR_OK) {
        st = qr_malloc(&counts, (size_t)P, sizeof *counts, "Cholesky counts");
    }
    if (st == QR_OK) {
        st = qr_malloc(&displs, (size_t)P, sizeof *displs, "Cholesky offsets");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    for (int64_t k0 = 0; k0 < n; k0 += kw) {
        int64_t w = n - k0 < kw ? n - k0 : kw;
        int lr = qr_dmat_extent(k0, nb, g->myrow, P);             /* first local row */
        int lc = qr_dmat_extent(k0, nb, g->mycol, g->npcol);      /* first local column */
        int lr2 = qr_dmat_extent(k0 + w, nb, g->myrow, P);        /* rows below the block */
        int lc2 = qr_dmat_extent(k0 + w, nb, g->mycol, g->npcol); /* columns right of it */
        int rows = mloc - lr2, rc = 0;
        /* 1. the diagonal block to every rank, factored there */
        memset(dblk, 0, (size_t)(w * w) * sizeof *dblk);
        for (int lj = lc; lj < lc2; lj++) {
            int64_t c = qr_dmat_global_col(g, lj) - k0;
            for (int li = lr; li < lr2; li++) {
                dblk[c * w + qr_dmat_global_row(g, li) - k0] = G->data[(size_t)lj * lld + li];
            }
        }
        QR_CHECK(qr_mpi_check(
            MPI_Allreduce(MPI_IN_PLACE, dblk, (int)(w * w), MPI_DOUBLE, MPI_SUM, g->comm),
            "MPI_Allreduce (Cholesky diagonal block)"));
        rc = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (int)w, dblk, (int)w);
        if (rc != 0) {
            *info = rc > 0 ? (int)(k0 + rc) : rc;
            goto done;
        }
        for (int lj = lc; lj < lc2; lj++) { /* this rank's entries of L_kk */
            int64_t c = qr_dmat_global_col(g, lj) - k0;
            for (int li = lr; li < lr2; li++) {
                G->data[(size_t)lj * lld + li] = dblk[c * w + qr_dmat_global_row(g, li) - k0];
            }
        }
        if (k0 + w == n) {
            break;
        }
        /* 2. this process row's panel rows, whole (summed over the row), solved */
        if (g->npcol > 1) {
            memset(mine, 0, (size_t)rows * (size_t)w * sizeof *mine);
        }
        for (int lj = lc; lj < lc2; lj++) {
            int64_t c = qr_dmat_global_col(g, lj) - k0;
            memcpy(mine + c * rows, G->data + (size_t)lj * lld + lr2, (size_t)rows * sizeof *mine);
        }
        if (g->npcol > 1 && rows > 0) {
            QR_CHECK(qr_mpi_check(
                MPI_Allreduce(MPI_IN_PLACE, mine, rows * (int)w, MPI_DOUBLE, MPI_SUM, g->row),
                "MPI_Allreduce (Cholesky panel rows)"));
        }
        if (rows > 0) {
            cblas_dtrsm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, rows,
                        (int)w, 1.0, dblk, (int)w, mine, rows);
        }
        for (int lj = lc; lj < lc2; lj++) { /* this rank's entries of the solved panel */
            int64_t c = qr_dmat_global_col(g, lj) - k0;
            memcpy(G->data + (size_t)lj * lld + lr2, mine + c * rows, (size_t)rows * sizeof *mine);
        }
        /* 3. every process row's solved rows to every rank of the process column */
        QR_CHECK(gather_solved(g, G, k0, w, mine, rows, all, counts, displs, lcol));
        /* 4. the trailing lower part, A_ij -= L_ik L_jkᵀ: kw local columns a product (a narrow
         * one packs its rows again for few columns); the rows start at the columns' first
         * diagonal block, so a few upper blocks get products too (they are not part of the
         * factor: qr_pdla_cholesky_damped zeroes them) */
        for (int lj = lc2; lj < G->nloc; lj += (int)kw) {
            int64_t gblk = qr_dmat_global_col(g, lj) / nb;
            int bw = G->nloc - lj < kw ? G->nloc - lj : (int)kw;
            int r0 = local_before(gblk, nb, g->myrow, P, mloc);
            r0 = r0 > lr2 ? r0 : lr2;
            if (mloc > r0) {
                cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, mloc - r0, bw, (int)w, -1.0,
                            mine + (r0 - lr2), rows, lcol + lj, G->nloc, 1.0,
                            G->data + (size_t)lj * lld + r0, (int)lld);
            }
        }
    }
done:
    free(dblk);
    free(mine);
    free(all);
    free(lcol);
    free(counts);
    free(displs);
    return st;
}

qr_status qr_pdla_cholesky_damped(const qr_grid *g, qr_dmat *G, double lambda0,
                                  double *damping_used)
{
    qr_status st = QR_OK;
    double *diag = NULL;  /* (n) the input diagonal, the same on every rank */
    double *saved = NULL; /* this rank's local part of the input, to undo a failed try */
    double mean = 0.0, lambda = lambda0, add = 0.0;
    int64_t n = G->m;
    int ni = (int)G->m, info = 0;
    size_t count = qr_dmat_local_count(G);
    if (damping_used) {
        *damping_used = 0.0;
    }
    if (G->m != G->n) {
        return qr_fail(QR_ERR_INPUT,
                       "distributed Cholesky: matrix is not square (found %lld x %lld)",
                       (long long)G->m, (long long)G->n);
    }
    if (!(lambda0 >= 0.0) || !isfinite(lambda0)) {
        return qr_fail(QR_ERR_INPUT,
                       "distributed Cholesky: damping (expected finite >= 0, found %g)", lambda0);
    }
    if (n == 0) {
        return QR_OK;
    }
    st = qr_calloc(&diag, (size_t)n, sizeof *diag, "Cholesky diagonal");
    if (st == QR_OK) {
        st = qr_malloc(&saved, count, sizeof *saved, "Cholesky input copy");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    memcpy(saved, G->data, count * sizeof *saved);
    /* Each diagonal entry lives on exactly one rank; the others add zeros, so the sum is exact and
     * every rank gets the serial routine's diagonal bit for bit. */
    for (int64_t j = 0; j < n; j++) {
        const double *e = qr_dmat_diag_entry(g, G, j);
        diag[j] = e ? *e : 0.0;
    }
    QR_CHECK(qr_mpi_check(MPI_Allreduce(MPI_IN_PLACE, diag, ni, MPI_DOUBLE, MPI_SUM, g->comm),
                          "MPI_Allreduce (Cholesky diagonal)"));
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(diag[i])) {
            st = qr_fail(QR_ERR_INPUT,
                         "distributed Cholesky: diagonal %lld is not finite (found %g)",
                         (long long)i, diag[i]);
            goto done;
        }
        mean += diag[i];
    }
    mean /= (double)n;
    if (!(mean > 0.0)) {
        mean = 1.0;
    }
    for (int t = 0; t < QR_CHOL_MAX_TRIES; t++) {
        add = lambda * mean;
        if (t > 0) { /* a failed try left a partial factor */
            memcpy(G->data, saved, count * sizeof *saved);
        }
        for (int64_t j = 0; j < n; j++) {
            double *e = qr_dmat_diag_entry(g, G, j);
            if (e) {
                *e = diag[j] + add;
            }
        }
        QR_CHECK(potrf_lower(g, G, &info));
        if (info == 0) {
            for (int lj = 0; lj < G->nloc; lj++) { /* the local rows above the diagonal */
                int above = qr_dmat_extent(qr_dmat_global_col(g, lj), g->nb, g->myrow, g->nprow);
                memset(G->data + (size_t)lj * qr_dmat_lld(G), 0, (size_t)above * sizeof(double));
            }
            if (damping_used) {
                *damping_used = add;
            }
            goto done;
        }
        if (info < 0) {
            st = qr_fail(QR_ERR_INTERNAL, "distributed Cholesky: illegal argument %d", -info);
            goto done;
        }
        lambda = (lambda > 0.0) ? lambda * 10.0 : QR_CHOL_LAMBDA0;
    }
    memcpy(G->data, saved, count * sizeof *saved);
    st = qr_fail(QR_ERR_NUMERIC,
                 "distributed Cholesky: matrix (%lld x %lld) not positive definite after %d tries "
                 "(damping up "
                 "to %g x mean diagonal %g; info %d)",
                 (long long)n, (long long)n, QR_CHOL_MAX_TRIES, lambda / 10.0, mean, info);
done:
    free(diag);
    free(saved);
    return st;
}

/* X := the lower triangle of Xᵀ X in place, X (n, n) lower triangular (entries above the diagonal
 * read as zeros): LAPACK's LAUUM, which PDPOTRI runs after PDTRTRI, by steps over the block rows
 * of X like trmm_right_lower. Out[i, j] = sum over k >= i of X[k, i] X[k, j] (j <= i): row i of X
 * is read only at its own step, so it is copied to the panel and zeroed there, and Out accumulates
 * in X's place. Each step sums the panel X[k0 : k0 + w, 0 : k0 + w] to every rank (one allreduce,
 * every entry from its owner) and adds its product to the local lower blocks of the leading
 * k0 + w rows and columns, QR_PDLA_SUMMA_WIDTH local columns a dgemm. The upper triangle is left
 * undefined. */
static qr_status lauum_lower(const qr_grid *g, qr_dmat *X)
{
    qr_status st = QR_OK;
    int64_t n = X->m, nb = g->nb, kw = step_width(g);
    size_t lld = qr_dmat_lld(X);
    double *panel = NULL; /* (w, c1) the step's rows of X, column-major, ld w */
    double *lrow = NULL;  /* (kw, mloc) the panel at this rank's local rows' indices */
    double *lcol = NULL;  /* (kw, nloc) the panel at this rank's local columns */
    st = qr_malloc(&panel, (size_t)kw * (size_t)n, sizeof *panel, "LAUUM panel");
    if (st == QR_OK) {
        st = qr_malloc(&lrow, (size_t)kw * (size_t)(X->mloc > 0 ? X->mloc : 1), sizeof *lrow,
                       "LAUUM panel rows");
    }
    if (st == QR_OK) {
        st = qr_malloc(&lcol, (size_t)kw * (size_t)(X->nloc > 0 ? X->nloc : 1), sizeof *lcol,
                       "LAUUM panel columns");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    for (int64_t k0 = 0; k0 < n; k0 += kw) {
        int64_t w = n - k0 < kw ? n - k0 : kw, c1 = k0 + w; /* rows [k0, c1), columns [0, c1) */
        int lr0 = qr_dmat_extent(k0, (int)nb, g->myrow, g->nprow);
        int lr1 = qr_dmat_extent(c1, (int)nb, g->myrow, g->nprow);
        int lc1 = qr_dmat_extent(c1, (int)nb, g->mycol, g->npcol);
        /* 1. the panel to every rank, then its rows zeroed in place: Out's rows from here on */
        memset(panel, 0, (size_t)(w * c1) * sizeof *panel);
        for (int lj = 0; lj < lc1; lj++) {
            int64_t gj = qr_dmat_global_col(g, lj);
            double *col = X->data + (size_t)lj * lld;
            for (int li = lr0; li < lr1; li++) {
                int64_t gi = qr_dmat_global_row(g, li);
                panel[gj * w + (gi - k0)] = gj > gi ? 0.0 : col[li];
            }
            memset(col + lr0, 0, (size_t)(lr1 - lr0) * sizeof *col);
        }
        QR_CHECK(qr_mpi_check(
            MPI_Allreduce(MPI_IN_PLACE, panel, (int)(w * c1), MPI_DOUBLE, MPI_SUM, g->comm),
            "MPI_Allreduce (LAUUM panel)"));
        /* 2. Out[i, j] += panel[:, i]ᵀ panel[:, j] on the local lower blocks with i, j < c1 */
        for (int li = 0; li < lr1; li++) {
            memcpy(lrow + (size_t)li * (size_t)w, panel + qr_dmat_global_row(g, li) * w,
                   (size_t)w * sizeof *lrow);
        }
        for (int lj = 0; lj < lc1; lj++) {
            memcpy(lcol + (size_t)lj * (size_t)w, panel + qr_dmat_global_col(g, lj) * w,
                   (size_t)w * sizeof *lcol);
        }
        for (int lj = 0; lj < lc1; lj += (int)kw) {
            int64_t gblk = qr_dmat_global_col(g, lj) / nb;
            int bw = lc1 - lj < kw ? lc1 - lj : (int)kw;
            int r0 = local_before(gblk, (int)nb, g->myrow, g->nprow, X->mloc);
            if (lr1 > r0) {
                cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, lr1 - r0, bw, (int)w, 1.0,
                            lrow + (size_t)r0 * (size_t)w, (int)w, lcol + (size_t)lj * (size_t)w,
                            (int)w, 1.0, X->data + (size_t)lj * lld + r0, (int)lld);
            }
        }
    }
done:
    free(panel);
    free(lrow);
    free(lcol);
    return st;
}

qr_status qr_pdla_gptq_factor(const qr_grid *g, qr_dmat *H, double damp, double *damping_used)
{
    int ni = (int)H->m, one = 1, info = 0;
    if (H->m == 0) {
        return QR_OK;
    }
    QR_TRY(qr_pdla_cholesky_damped(g, H, damp, damping_used));
    /* PDPOTRI is PDTRTRI then PDLAUUM; the LAUUM here runs at dgemm speed */
    pdtrtri_("L", "N", &ni, H->data, &one, &one, H->desc, &info, 1, 1);
    QR_TRY(qr_pdla_agree_info(g->comm, &info));
    if (info == 0) {
        QR_TRY(lauum_lower(g, H));
    }
    if (info != 0) {
        return qr_fail(QR_ERR_NUMERIC, "GPTQ: inverting the Hessian failed (pdpotri info %d)",
                       info);
    }
    QR_TRY(potrf_lower(g, H, &info));
    if (info != 0) {
        return qr_fail(QR_ERR_NUMERIC,
                       "GPTQ: the inverse Hessian is not positive definite (info %d)", info);
    }
    return QR_OK;
}

/* A := A L in place, L (n, n) lower triangular (its upper triangle not read), by SUMMA: step by
 * step, a panel of A's block columns K goes along the process rows and L's block rows K (their
 * upper triangle zeroed) along the process columns, and every rank adds the panel's product to
 * its local columns J <= K. Out[:, J] = sum over K >= J of A[:, K] L[K, J]: column K of A is
 * read only at its own step, so it is copied to the panel and zeroed there, and Out accumulates
 * in A's place. One dgemm a step of inner dimension QR_PDLA_SUMMA_WIDTH; ScaLAPACK's PDTRMM runs
 * nb-wide PB-BLAS pieces at about a third of that. */
static qr_status trmm_right_lower(const qr_grid *g, qr_dmat *A, const qr_dmat *L)
{
    qr_status st = QR_OK;
    int64_t n = A->n, nb = g->nb, kw = step_width(g);
    size_t lld = qr_dmat_lld(A), llld = qr_dmat_lld(L);
    double *ap = NULL; /* (mloc, kw) A's panel, column-major */
    double *lp = NULL; /* (nloc, kw) L's panel transposed: each block row contiguous */
    st = qr_malloc(&ap, (size_t)(A->mloc > 0 ? A->mloc : 1) * (size_t)kw, sizeof *ap,
                   "triangular product panel");
    if (st == QR_OK) {
        st = qr_malloc(&lp, (size_t)kw * (size_t)(L->nloc > 0 ? L->nloc : 1), sizeof *lp,
                       "triangular product factor panel");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    for (int64_t k0 = 0; k0 < n; k0 += kw) {
        int64_t w = n - k0 < kw ? n - k0 : kw;
        int ncols = qr_dmat_extent(k0 + w, (int)nb, g->mycol, g->npcol); /* local J < k0 + w */
        for (int64_t b = k0; b < k0 + w; b += nb) {
            int64_t bw = k0 + w - b < nb ? k0 + w - b : nb, blk = b / nb;
            int pc = (int)(blk % g->npcol), pr = (int)(blk % g->nprow);
            double *a = ap + (size_t)(b - k0) * (size_t)A->mloc;
            double *l = lp + (size_t)(b - k0) * (size_t)L->nloc;
            if (g->mycol == pc) { /* A's block column: to the panel, zeroed in place */
                int lj = qr_dmat_extent(b, (int)nb, g->mycol, g->npcol);
                for (int64_t j = 0; j < bw; j++) {
                    double *col = A->data + (size_t)(lj + j) * lld;
                    memcpy(a + j * A->mloc, col, (size_t)A->mloc * sizeof *a);
                    memset(col, 0, (size_t)A->mloc * sizeof *col);
                }
            }
            if (A->mloc > 0) {
                QR_CHECK(qr_mpi_check(MPI_Bcast(a, (int)(bw * A->mloc), MPI_DOUBLE, pc, g->row),
                                      "MPI_Bcast (triangular product panel)"));
            }
            if (g->myrow == pr) { /* L's block row, entries above the diagonal as zeros */
                int li = qr_dmat_extent(b, (int)nb, g->myrow, g->nprow);
                for (int lj = 0; lj < L->nloc; lj++) {
                    int64_t gj = qr_dmat_global_col(g, lj);
                    const double *col = L->data + (size_t)lj * llld + (size_t)li;
                    for (int64_t i = 0; i < bw; i++) {
                        l[(size_t)i * (size_t)L->nloc + (size_t)lj] = gj > b + i ? 0.0 : col[i];
                    }
                }
            }
            if (L->nloc > 0) {
                QR_CHECK(qr_mpi_check(MPI_Bcast(l, (int)(bw * L->nloc), MPI_DOUBLE, pr, g->col),
                                      "MPI_Bcast (triangular product factor panel)"));
            }
        }
        if (A->mloc > 0 && ncols > 0) {
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, A->mloc, ncols, (int)w, 1.0, ap,
                        A->mloc, lp, L->nloc, 1.0, A->data, (int)lld);
        }
    }
done:
    free(ap);
    free(lp);
    return st;
}

qr_status qr_pdla_thin_solve_right(const qr_grid *g, const qr_dmat *L, double *R, int64_t k)
{
    qr_status st = QR_OK;
    int64_t n = L->n, nb = g->nb, nblk = (n + nb - 1) / nb;
    int mloc = L->mloc, ki = (int)k;
    size_t lld = qr_dmat_lld(L);
    double *Xl = NULL;  /* (k, mloc): the solved R at the global rows of L's local rows */
    double *buf = NULL; /* (k, nb) the sum of the solved blocks' products, then (nb, nb) L_JJ */
    double *blk = NULL; /* (k, nb): the block being solved */
    if (k == 0 || n == 0) {
        return QR_OK;
    }
    st = qr_calloc(&Xl, (size_t)k * (size_t)(mloc > 0 ? mloc : 1), sizeof *Xl, "solve rows");
    if (st == QR_OK) {
        st = qr_malloc(&buf, (size_t)((k + nb) * nb), sizeof *buf, "solve block sums");
    }
    if (st == QR_OK) {
        st = qr_malloc(&blk, (size_t)(k * nb), sizeof *blk, "solve block");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    for (int64_t J = nblk - 1; J >= 0; J--) {
        int64_t j0 = J * nb, bw = n - j0 < nb ? n - j0 : nb;
        double *D = buf + k * bw; /* L_JJ, (bw, bw) */
        memset(buf, 0, (size_t)((k + bw) * bw) * sizeof *buf);
        if (J % g->npcol == g->mycol) { /* Σ_{I > J} X_I L_IJ over this rank's rows I */
            const double *col = L->data + (size_t)((J / g->npcol) * nb) * lld;
            int ls = qr_dmat_extent(j0 + bw, (int)nb, g->myrow, g->nprow);
            if (mloc > ls) {
                cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, ki, (int)bw, mloc - ls, 1.0,
                            Xl + (size_t)ls * (size_t)k, ki, col + ls, (int)lld, 0.0, buf, ki);
            }
            if (J % g->nprow == g->myrow) {
                for (int64_t j = 0; j < bw; j++) {
                    memcpy(D + j * bw, col + (size_t)j * lld + (size_t)((J / g->nprow) * nb),
                           (size_t)bw * sizeof *D);
                }
            }
        }
        QR_CHECK(qr_mpi_check(
            MPI_Allreduce(MPI_IN_PLACE, buf, (int)((k + bw) * bw), MPI_DOUBLE, MPI_SUM, g->comm),
            "MPI_Allreduce (thin solve)"));
        for (int64_t j = 0; j < bw; j++) { /* X_J = (R_J - Σ) L_JJ^-1, column-major (k, bw) */
            for (int64_t c = 0; c < k; c++) {
                blk[j * k + c] = R[c * n + j0 + j] - buf[j * k + c];
            }
        }
        cblas_dtrsm(CblasColMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, ki, (int)bw,
                    1.0, D, (int)bw, blk, ki);
        for (int64_t j = 0; j < bw; j++) {
            for (int64_t c = 0; c < k; c++) {
                R[c * n + j0 + j] = blk[j * k + c];
            }
        }
        if (J % g->nprow == g->myrow) { /* its rows are local here */
            memcpy(Xl + (size_t)((J / g->nprow) * nb) * (size_t)k, blk,
                   (size_t)(k * bw) * sizeof *Xl);
        }
    }
done:
    free(Xl);
    free(buf);
    free(blk);
    return st;
}

qr_status qr_pdla_tri_right(const qr_grid *g, qr_dmat *A, const qr_dmat *L, int transpose,
                            int inverse)
{
    int mi = (int)A->m, ni = (int)A->n, one = 1;
    double alpha = 1.0;
    const char *op = transpose ? "T" : "N";
    if (L->m != A->n || L->n != A->n) {
        return qr_fail(QR_ERR_INPUT,
                       "distributed triangular product: factor is %lld x %lld (expected %lld x "
                       "%lld for a %lld x %lld matrix)",
                       (long long)L->m, (long long)L->n, (long long)A->n, (long long)A->n,
                       (long long)A->m, (long long)A->n);
    }
    if (A->m == 0 || A->n == 0) {
        return QR_OK;
    }
    if (inverse) {
        pdtrsm_("R", "L", op, "N", &mi, &ni, &alpha, L->data, &one, &one, L->desc, A->data, &one,
                &one, A->desc);
    } else if (!transpose) {
        return trmm_right_lower(g, A, L);
    } else {
        pdtrmm_("R", "L", op, "N", &mi, &ni, &alpha, L->data, &one, &one, L->desc, A->data, &one,
                &one, A->desc);
    }
    return QR_OK;
}

/* ---- fixed-order reductions ---------------------------------------------------------------------
 */

static qr_status send_doubles(const double *x, size_t count, int dest, int tag, MPI_Comm comm)
{
    for (size_t off = 0; off < count; off += PDLA_PIECE) {
        size_t len = count - off < PDLA_PIECE ? count - off : PDLA_PIECE;
        QR_TRY(qr_mpi_check(MPI_Send(x + off, (int)len, MPI_DOUBLE, dest, tag, comm), "MPI_Send"));
    }
    return QR_OK;
}

/* Receive count doubles in pieces; acc += piece when add is nonzero, else acc = piece. */
static qr_status recv_doubles(double *acc, double *piece, size_t count, int src, int tag,
                              MPI_Comm comm, int add)
{
    for (size_t off = 0; off < count; off += PDLA_PIECE) {
        size_t len = count - off < PDLA_PIECE ? count - off : PDLA_PIECE;
        QR_TRY(qr_mpi_check(MPI_Recv(add ? piece : acc + off, (int)len, MPI_DOUBLE, src, tag, comm,
                                     MPI_STATUS_IGNORE),
                            "MPI_Recv"));
        if (add) {
            for (size_t i = 0; i < len; i++) {
                acc[off + i] += piece[i];
            }
        }
    }
    return QR_OK;
}

qr_status qr_pdla_bcast_doubles(double *x, size_t count, MPI_Comm comm)
{
    for (size_t off = 0; off < count; off += PDLA_PIECE) {
        size_t len = count - off < PDLA_PIECE ? count - off : PDLA_PIECE;
        QR_TRY(qr_mpi_check(MPI_Bcast(x + off, (int)len, MPI_DOUBLE, 0, comm), "MPI_Bcast"));
    }
    return QR_OK;
}

/* Agree that every rank passed the same d (QR_ERR_INPUT naming both values otherwise). */
static qr_status agree_dim(MPI_Comm comm, int64_t d, const char *what)
{
    long long mine = d, lo = 0, hi = 0;
    QR_TRY(
        qr_mpi_check(MPI_Allreduce(&mine, &lo, 1, MPI_LONG_LONG, MPI_MIN, comm), "MPI_Allreduce"));
    QR_TRY(
        qr_mpi_check(MPI_Allreduce(&mine, &hi, 1, MPI_LONG_LONG, MPI_MAX, comm), "MPI_Allreduce"));
    if (lo != hi) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: channel counts differ between ranks (found %lld and %lld)", what, lo,
                       hi);
    }
    return QR_OK;
}

qr_status qr_pdla_gram_reduce(MPI_Comm comm, const float *X_local, int64_t n_local, int64_t d,
                              int all_ranks, double *G)
{
    qr_status st = QR_OK;
    int rank = qr_mpi_rank(comm), size = qr_mpi_size(comm);
    int di = 0;
    size_t dd = 0;
    double *acc = NULL;   /* (d, d) this rank's running sum; the caller's G where it has one */
    double *own = NULL;   /* acc when the caller gave no G */
    double *chunk = NULL; /* (PDLA_GRAM_CHUNK, d) float64 rows */
    double *piece = NULL; /* (PDLA_PIECE) receive buffer */
    QR_TRY(agree_dim(comm, d, "Gram reduction"));
    if (d < 1 || !qr_to_int(d, &di) || !qr_mul_size((size_t)d, (size_t)d, &dd) || n_local < 0) {
        st = qr_fail(QR_ERR_INPUT,
                     "Gram reduction: sizes (expected d in 1..%d and rows >= 0, found "
                     "d %lld, rows %lld)",
                     (int)INT32_MAX, (long long)d, (long long)n_local);
    }
    if (st == QR_OK && (rank == 0 || all_ranks) && !G) {
        st = qr_fail(QR_ERR_INTERNAL, "Gram reduction: no output matrix on rank %d", rank);
    }
    if (st == QR_OK && !((rank == 0 || all_ranks) && G)) {
        st = qr_calloc(&own, dd, sizeof *own, "Gram partial sum");
    }
    acc = own ? own : G;
    if (st == QR_OK) {
        memset(acc, 0, dd * sizeof *acc);
        st = qr_malloc(&chunk, (size_t)PDLA_GRAM_CHUNK * (size_t)d, sizeof *chunk, "Gram rows");
    }
    if (st == QR_OK) {
        st = qr_malloc(&piece, PDLA_PIECE, sizeof *piece, "Gram receive buffer");
    }
    QR_CHECK(qr_mpi_agree(comm, st));
    for (int64_t r0 = 0; r0 < n_local; r0 += PDLA_GRAM_CHUNK) {
        int rows = (int)(n_local - r0 < PDLA_GRAM_CHUNK ? n_local - r0 : PDLA_GRAM_CHUNK);
        for (size_t i = 0; i < (size_t)rows * (size_t)d; i++) {
            chunk[i] = (double)X_local[(size_t)r0 * (size_t)d + i];
        }
        /* Row-major lower triangle of G += chunkᵀ chunk. */
        cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, di, rows, 1.0, chunk, di, 1.0, acc, di);
    }
    for (int64_t i = 0; i < d; i++) {
        for (int64_t j = i + 1; j < d; j++) {
            acc[i * d + j] = acc[j * d + i];
        }
    }
    /* Binary tree: at step s, rank r (r % 2s == 0) adds rank r + s. */
    for (int s = 1; s < size; s <<= 1) {
        if (rank % (2 * s) == 0) {
            if (rank + s < size) {
                QR_CHECK(recv_doubles(acc, piece, dd, rank + s, s, comm, 1));
            }
        } else {
            QR_CHECK(send_doubles(acc, dd, rank - s, s, comm));
            break;
        }
    }
    if (all_ranks) {
        QR_CHECK(qr_pdla_bcast_doubles(acc, dd, comm));
    }
done:
    free(own);
    free(chunk);
    free(piece);
    return st;
}

/* The per-channel arrays of a stats accumulator, in the order they travel. */
static void stats_vectors(qr_stats *s, double *v[4])
{
    v[0] = s->max_abs;
    v[1] = s->sum_abs;
    v[2] = s->sum_sq;
    v[3] = s->batch_mean_abs_max;
}

qr_status qr_pdla_stats_reduce(MPI_Comm comm, qr_stats *s)
{
    qr_status st = QR_OK;
    int rank = qr_mpi_rank(comm), size = qr_mpi_size(comm);
    qr_stats *other = NULL;
    size_t dd = (size_t)s->d * (size_t)s->d;
    double *v[4];
    QR_TRY(agree_dim(comm, s->d, "statistics reduction"));
    if (rank % 2 == 0 && rank + 1 < size) {
        st = qr_stats_create(s->d, &other);
    }
    QR_CHECK(qr_mpi_agree(comm, st));
    for (int step = 1; step < size; step <<= 1) {
        if (rank % (2 * step) == 0) {
            int64_t counts[2];
            if (rank + step >= size) {
                continue;
            }
            QR_CHECK(qr_mpi_check(
                MPI_Recv(counts, 2, MPI_INT64_T, rank + step, step, comm, MPI_STATUS_IGNORE),
                "MPI_Recv (statistics counts)"));
            other->count = counts[0];
            other->n_batches = counts[1];
            QR_CHECK(recv_doubles(other->G, NULL, dd, rank + step, step, comm, 0));
            stats_vectors(other, v);
            for (int k = 0; k < 4; k++) {
                QR_CHECK(recv_doubles(v[k], NULL, (size_t)s->d, rank + step, step, comm, 0));
            }
            QR_CHECK(qr_stats_merge(s, other));
        } else {
            int64_t counts[2] = {s->count, s->n_batches};
            QR_CHECK(qr_mpi_check(MPI_Send(counts, 2, MPI_INT64_T, rank - step, step, comm),
                                  "MPI_Send (statistics counts)"));
            QR_CHECK(send_doubles(s->G, dd, rank - step, step, comm));
            stats_vectors(s, v);
            for (int k = 0; k < 4; k++) {
                QR_CHECK(send_doubles(v[k], (size_t)s->d, rank - step, step, comm));
            }
            break;
        }
    }
done:
    qr_stats_free(&other);
    return st;
}

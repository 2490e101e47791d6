/* pdla_svd.c: the distributed truncated and full SVDs of one rank group (mpi/pdla.h), the
 * randomized one with its whitened products; the twins of src/linalg.c's, compared to rounding. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/comm.h"
#include "mpi/pdla.h"
#include "mpi/pdla_internal.h"
#include "src/alloc.h"

/* ---- SVD ----------------------------------------------------------------------------------------
 */

/* Orthonormalise the columns of the distributed Y (m, l), m >= l, in place: PDGEQRF + PDORGQR. */
static qr_status porthonormalize(const qr_grid *g, qr_dmat *Y)
{
    qr_status st = QR_OK;
    int mi = (int)Y->m, li = (int)Y->n, one = 1, info = 0, lwork = -1, lw2 = 0;
    double query = 0.0;
    double *tau = NULL;  /* (local columns) Householder scalars */
    double *work = NULL; /* ScaLAPACK workspace */
    st =
        qr_malloc(&tau, (size_t)(Y->nloc > 0 ? Y->nloc : 1), sizeof *tau, "QR Householder scalars");
    QR_CHECK(qr_mpi_agree(g->comm, st));
    pdgeqrf_(&mi, &li, Y->data, &one, &one, Y->desc, tau, &query, &lwork, &info);
    QR_CHECK(qr_pdla_scalapack_info("pdgeqrf (workspace query)", info));
    lwork = (int)query;
    lw2 = -1;
    pdorgqr_(&mi, &li, &li, Y->data, &one, &one, Y->desc, tau, &query, &lw2, &info);
    QR_CHECK(qr_pdla_scalapack_info("pdorgqr (workspace query)", info));
    lw2 = (int)query;
    lwork = lwork > lw2 ? lwork : lw2;
    lwork = lwork > 1 ? lwork : 1;
    st = qr_malloc(&work, (size_t)lwork, sizeof *work, "QR workspace");
    QR_CHECK(qr_mpi_agree(g->comm, st));
    pdgeqrf_(&mi, &li, Y->data, &one, &one, Y->desc, tau, work, &lwork, &info);
    QR_CHECK(qr_pdla_agree_info(g->comm, &info));
    QR_CHECK(qr_pdla_scalapack_info("pdgeqrf", info));
    pdorgqr_(&mi, &li, &li, Y->data, &one, &one, Y->desc, tau, work, &lwork, &info);
    QR_CHECK(qr_pdla_agree_info(g->comm, &info));
    QR_CHECK(qr_pdla_scalapack_info("pdorgqr", info));
done:
    free(tau);
    free(work);
    return st;
}

/* C = op(A) op(B) with PDGEMM; sizes from C and the inner dimension k. */
static void pgemm(const char *ta, const char *tb, int64_t k, const qr_dmat *A, const qr_dmat *B,
                  qr_dmat *C)
{
    int mi = (int)C->m, ni = (int)C->n, ki = (int)k, one = 1;
    double alpha = 1.0, beta = 0.0;
    pdgemm_(ta, tb, &mi, &ni, &ki, &alpha, A->data, &one, &one, A->desc, B->data, &one, &one,
            B->desc, &beta, C->data, &one, &one, C->desc);
}

/* Rank-r truncation of PDGESVD: full thin SVD, then the leading r triplets gathered to every rank.
 * The first r columns of U (m, k) (rows of Vt (k, n)) are, in the same block-cyclic layout, the
 * leading local columns (rows) of each rank's part: global indices grow with local ones. So they
 * are copied locally into (m, r) and (r, n) matrices and only those are gathered. */
static qr_status psvd_truncated_exact(const qr_grid *g, const qr_dmat *A, int64_t r, double *U,
                                      double *S, double *Vt)
{
    qr_status st = QR_OK;
    int64_t m = A->m, n = A->n, k = m < n ? m : n;
    qr_dmat *Ud = NULL, *Vd = NULL; /* (m, k), (k, n) from PDGESVD */
    qr_dmat *Ur = NULL, *Vr = NULL; /* (m, r), (r, n) leading parts */
    double *Sf = NULL;              /* (k) */
    st = qr_dmat_create(g, m, k, &Ud);
    if (st == QR_OK) {
        st = qr_dmat_create(g, k, n, &Vd);
    }
    if (st == QR_OK) {
        st = qr_dmat_create(g, m, r, &Ur);
    }
    if (st == QR_OK) {
        st = qr_dmat_create(g, r, n, &Vr);
    }
    if (st == QR_OK) {
        st = qr_malloc(&Sf, (size_t)k, sizeof *Sf, "SVD singular values");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    QR_CHECK(qr_pdla_svd(g, A, Sf, Ud, Vd));
    /* Same mloc and leading dimension: the leading Ur->nloc local columns, contiguous. */
    memcpy(Ur->data, Ud->data, qr_dmat_local_count(Ur) * sizeof *Ur->data);
    for (int lj = 0; lj < Vr->nloc; lj++) {
        memcpy(Vr->data + (size_t)lj * (size_t)Vr->desc[QR_DESC_LLD],
               Vd->data + (size_t)lj * (size_t)Vd->desc[QR_DESC_LLD],
               (size_t)Vr->mloc * sizeof *Vr->data);
    }
    QR_CHECK(qr_dmat_allgather(g, Ur, U));
    QR_CHECK(qr_dmat_allgather(g, Vr, Vt));
    memcpy(S, Sf, (size_t)r * sizeof *S);
done:
    qr_dmat_free(&Ud);
    qr_dmat_free(&Vd);
    qr_dmat_free(&Ur);
    qr_dmat_free(&Vr);
    free(Sf);
    return st;
}

/* The whitening factor C (n, n) lower, distributed, times a thin operand whole on every rank,
 * summed over the group into the thin result, whole too: ScaLAPACK's PDTRMM on an (n, l) operand
 * runs its nb-wide pieces at a fraction of a local product, and the thin operands are small (an
 * allgather and an allreduce of n x l). Each rank multiplies its own blocks of C on and below the
 * block diagonal (entries above the diagonal are zero, as qr_pdla_cholesky_damped leaves them) by
 * the rows or columns of the operand they meet, one dgemm per local block column:
 *   THIN_CX  F (n, l) row-major = C X,  X (n, l) row-major;
 *   THIN_CTX F (n, l) row-major = Cᵀ X, X (n, l) row-major;
 *   THIN_XC  F (l, n) row-major = X C,  X (l, n) row-major (= (Cᵀ Xᵀ)ᵀ). */
typedef enum { THIN_CX, THIN_CTX, THIN_XC } thin_op;

static qr_status thin_product(const qr_grid *g, const qr_dmat *C, thin_op op, int64_t l,
                              const double *X, double *F)
{
    qr_status st = QR_OK;
    int64_t n = C->n, mloc = C->mloc;
    size_t lld = qr_dmat_lld(C);
    double *T = NULL; /* (mloc, l) column-major: C X at the local rows, or X at them */
    st = qr_calloc(&T, (size_t)(mloc > 0 ? mloc : 1) * (size_t)l, sizeof *T, "thin product rows");
    QR_TRY(qr_mpi_agree(g->comm, st));
    memset(F, 0, (size_t)(n * l) * sizeof *F);
    for (int li = 0; op != THIN_CX && li < mloc; li++) { /* X's rows (columns) at C's local rows */
        int64_t gi = qr_dmat_global_row(g, li);
        for (int64_t k = 0; k < l; k++) {
            T[(size_t)k * (size_t)mloc + (size_t)li] =
                op == THIN_CTX ? X[gi * l + k] : X[k * n + gi];
        }
    }
    for (int lj0 = 0; lj0 < C->nloc; lj0 += g->nb) {
        int64_t j0 = qr_dmat_global_col(g, lj0);
        int bw = C->nloc - lj0 < g->nb ? C->nloc - lj0 : g->nb;
        int ls = qr_dmat_extent(j0, g->nb, g->myrow, g->nprow); /* local rows on or below */
        const double *c = C->data + (size_t)lj0 * lld + (size_t)ls;
        if (ls >= mloc) {
            continue;
        }
        if (op == THIN_CX) { /* T[ls:, :] += C[ls:, blk] X[blk, :] */
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)(mloc - ls), (int)l, bw, 1.0,
                        c, (int)lld, X + j0 * l, (int)l, 1.0, T + ls, (int)mloc);
        } else if (op == THIN_CTX) { /* F[blk, :]ᵀ += T[ls:, :]ᵀ C[ls:, blk] */
            cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)l, bw, (int)(mloc - ls), 1.0,
                        T + ls, (int)mloc, c, (int)lld, 1.0, F + j0 * l, (int)l);
        } else { /* F[:, blk]ᵀ += C[ls:, blk]ᵀ T[ls:, :] */
            cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, bw, (int)l, (int)(mloc - ls), 1.0,
                        c, (int)lld, T + ls, (int)mloc, 1.0, F + j0, (int)n);
        }
    }
    for (int li = 0; op == THIN_CX && li < mloc; li++) {
        int64_t gi = qr_dmat_global_row(g, li);
        for (int64_t k = 0; k < l; k++) {
            F[gi * l + k] = T[(size_t)k * (size_t)mloc + (size_t)li];
        }
    }
    free(T);
    return qr_mpi_check(MPI_Allreduce(MPI_IN_PLACE, F, (int)(n * l), MPI_DOUBLE, MPI_SUM, g->comm),
                        "MPI_Allreduce (thin product)");
}

/* D (the distributed thin matrix) := op applied to it, through thin_product; X and F are staging
 * of D's size. */
static qr_status thin_apply(const qr_grid *g, const qr_dmat *C, thin_op op, qr_dmat *D, double *X,
                            double *F)
{
    QR_TRY(qr_dmat_allgather(g, D, X));
    QR_TRY(thin_product(g, C, op, op == THIN_XC ? D->m : D->n, X, F));
    qr_dmat_fill_local(g, D, F);
    return QR_OK;
}

/* Products with the operator A = E C (C (n, n) lower triangular, or the identity when NULL)
 * without forming it: out = A Z (Z (n, l) is overwritten by C Z), out = Aᵀ Y, out = Yᵀ A. X and F
 * are staging of max(m, n) x l. */
static qr_status op_apply(const qr_grid *g, const qr_dmat *E, const qr_dmat *C, qr_dmat *Z,
                          qr_dmat *out, double *X, double *F)
{
    if (C) {
        QR_TRY(thin_apply(g, C, THIN_CX, Z, X, F));
    }
    pgemm("N", "N", E->n, E, Z, out);
    return QR_OK;
}

static qr_status op_apply_t(const qr_grid *g, const qr_dmat *E, const qr_dmat *C, const qr_dmat *Y,
                            qr_dmat *out, double *X, double *F)
{
    pgemm("T", "N", E->m, E, Y, out);
    return C ? thin_apply(g, C, THIN_CTX, out, X, F) : QR_OK;
}

static qr_status op_project(const qr_grid *g, const qr_dmat *E, const qr_dmat *C, const qr_dmat *Y,
                            qr_dmat *B, double *X, double *F)
{
    pgemm("T", "N", E->m, Y, E, B);
    return C ? thin_apply(g, C, THIN_XC, B, X, F) : QR_OK;
}

static qr_status psvd_truncated_randomized(const qr_grid *g, const qr_dmat *A, const qr_dmat *C,
                                           int64_t r, int64_t l, int q, qr_rng *rng, double *U,
                                           double *S, double *Vt)
{
    qr_status st = QR_OK;
    int64_t m = A->m, n = A->n;
    qr_dmat *Y = NULL;   /* (m, l): basis of the range of A */
    qr_dmat *Z = NULL;   /* (n, l): the Gaussian test matrix, then a basis of the range of Aᵀ */
    qr_dmat *B = NULL;   /* (l, n) = Yᵀ A */
    qr_dmat *Ubd = NULL; /* (l, r): U_B[:, :r] */
    qr_dmat *Ud = NULL;  /* (m, r) = Y U_B[:, :r] */
    double *full = NULL; /* (max(n, m) * l) row-major staging: Omega, B, U_B[:, :r] */
    double *Ub = NULL;   /* (l, l) */
    double *Sb = NULL;   /* (l) */
    double *Vb = NULL;   /* (l, n) */
    double *F = NULL;    /* (max(n, m) * l) the whitened products' result, whole (C only) */
    size_t stage = (size_t)(m > n ? m : n) * (size_t)l;
    st = qr_dmat_create(g, m, l, &Y);
    if (st == QR_OK) {
        st = qr_dmat_create(g, n, l, &Z);
    }
    if (st == QR_OK) {
        st = qr_dmat_create(g, l, n, &B);
    }
    if (st == QR_OK) {
        st = qr_dmat_create(g, l, r, &Ubd);
    }
    if (st == QR_OK) {
        st = qr_dmat_create(g, m, r, &Ud);
    }
    if (st == QR_OK) {
        st = qr_malloc(&full, stage, sizeof *full, "randomized SVD staging");
    }
    if (st == QR_OK) {
        st = qr_malloc(&Ub, (size_t)l * (size_t)l, sizeof *Ub, "randomized SVD U_B");
    }
    if (st == QR_OK) {
        st = qr_malloc(&Sb, (size_t)l, sizeof *Sb, "randomized SVD S_B");
    }
    if (st == QR_OK) {
        st = qr_malloc(&Vb, (size_t)l * (size_t)n, sizeof *Vb, "randomized SVD Vt_B");
    }
    if (st == QR_OK && C) {
        st = qr_malloc(&F, stage, sizeof *F, "randomized SVD whitened products");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    /* Omega (n, l) drawn row by row exactly as the serial routine draws it. */
    for (size_t i = 0; i < (size_t)n * (size_t)l; i++) {
        full[i] = qr_rng_normal(rng);
    }
    qr_dmat_fill_local(g, Z, full);
    QR_CHECK(op_apply(g, A, C, Z, Y, full, F));
    QR_CHECK(porthonormalize(g, Y));
    for (int it = 0; it < q; it++) {
        /* Re-orthonormalise after every product, as the serial routine does. */
        QR_CHECK(op_apply_t(g, A, C, Y, Z, full, F));
        QR_CHECK(porthonormalize(g, Z));
        QR_CHECK(op_apply(g, A, C, Z, Y, full, F));
        QR_CHECK(porthonormalize(g, Y));
    }
    QR_CHECK(op_project(g, A, C, Y, B, full, F));
    /* The small SVD once, on the group root, then broadcast: every rank returns the same bits. */
    QR_CHECK(qr_dmat_gather(g, B, full));
    if (g->group_rank == 0) {
        st = qr_svd(full, l, n, Ub, Sb, Vb);
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    QR_CHECK(qr_pdla_bcast_doubles(Ub, (size_t)l * (size_t)l, g->comm));
    QR_CHECK(qr_pdla_bcast_doubles(Sb, (size_t)l, g->comm));
    QR_CHECK(qr_pdla_bcast_doubles(Vb, (size_t)l * (size_t)n, g->comm));
    for (int64_t i = 0; i < l; i++) {
        memcpy(full + i * r, Ub + i * l, (size_t)r * sizeof *full);
    }
    qr_dmat_fill_local(g, Ubd, full);
    pgemm("N", "N", l, Y, Ubd, Ud);
    QR_CHECK(qr_dmat_allgather(g, Ud, U));
    memcpy(S, Sb, (size_t)r * sizeof *S);
    memcpy(Vt, Vb, (size_t)r * (size_t)n * sizeof *Vt);
done:
    qr_dmat_free(&Y);
    qr_dmat_free(&Z);
    qr_dmat_free(&B);
    qr_dmat_free(&Ubd);
    qr_dmat_free(&Ud);
    free(full);
    free(Ub);
    free(Sb);
    free(Vb);
    free(F);
    return st;
}

qr_status qr_pdla_svd_truncated(const qr_grid *g, const qr_dmat *A, int64_t r, const qr_svd_opts *o,
                                qr_rng *rng, double *U, double *S, double *Vt)
{
    return qr_pdla_svd_truncated_scaled(g, A, NULL, r, o, rng, U, S, Vt);
}

qr_status qr_pdla_svd_truncated_scaled(const qr_grid *g, const qr_dmat *E, const qr_dmat *C,
                                       int64_t r, const qr_svd_opts *o, qr_rng *rng, double *U,
                                       double *S, double *Vt)
{
    qr_status st = QR_OK;
    qr_svd_opts defaults;
    qr_dmat *EC = NULL;
    int64_t l = 0;
    qr_svd_opts_default(&defaults);
    if (!o) {
        o = &defaults;
    }
    QR_TRY(qr_svd_check("distributed truncated SVD", o, E->m, E->n, r));
    if (r == 0) {
        return QR_OK;
    }
    if (qr_svd_path(o, E->m, E->n, r, &l) == QR_SVD_RANDOMIZED) {
        if (!rng) {
            return qr_fail(QR_ERR_INPUT, "distributed randomized SVD: no random stream given");
        }
        return psvd_truncated_randomized(g, E, C, r, l, o->power_iters, rng, U, S, Vt);
    }
    if (!C) {
        return psvd_truncated_exact(g, E, r, U, S, Vt);
    }
    /* The exact path needs E C itself. */
    QR_TRY(qr_mpi_agree(g->comm, qr_dmat_create(g, E->m, E->n, &EC)));
    memcpy(EC->data, E->data, qr_dmat_local_count(E) * sizeof *EC->data);
    QR_CHECK(qr_pdla_tri_right(g, EC, C, 0, 0));
    st = psvd_truncated_exact(g, EC, r, U, S, Vt);
done:
    qr_dmat_free(&EC);
    return st;
}

qr_status qr_pdla_svd(const qr_grid *g, const qr_dmat *A, double *S, qr_dmat *U, qr_dmat *Vt)
{
    qr_status st = QR_OK;
    int mi = (int)A->m, ni = (int)A->n, one = 1, info = 0, lwork = -1;
    int64_t k = A->m < A->n ? A->m : A->n;
    double query = 0.0, dummy = 0.0;
    qr_dmat *work_a = NULL; /* PDGESVD destroys its input */
    double *work = NULL;
    const char *jobu = U ? "V" : "N", *jobvt = Vt ? "V" : "N";
    /* Without U or Vt, PDGESVD does not touch them; A's descriptor stands in. */
    double *u_data = U ? U->data : &dummy, *vt_data = Vt ? Vt->data : &dummy;
    const int *u_desc = U ? U->desc : A->desc, *vt_desc = Vt ? Vt->desc : A->desc;
    if ((U && (U->m != A->m || U->n != k)) || (Vt && (Vt->m != k || Vt->n != A->n))) {
        return qr_fail(QR_ERR_INPUT,
                       "pdgesvd: factor shapes (expected U %lld x %lld and Vt %lld x %lld, found "
                       "%lld x %lld and %lld x %lld)",
                       (long long)A->m, (long long)k, (long long)k, (long long)A->n,
                       (long long)(U ? U->m : A->m), (long long)(U ? U->n : k),
                       (long long)(Vt ? Vt->m : k), (long long)(Vt ? Vt->n : A->n));
    }
    if (k == 0) {
        return QR_OK;
    }
    st = qr_dmat_create(g, A->m, A->n, &work_a);
    QR_CHECK(qr_mpi_agree(g->comm, st));
    memcpy(work_a->data, A->data, qr_dmat_local_count(A) * sizeof *A->data);
    pdgesvd_(jobu, jobvt, &mi, &ni, work_a->data, &one, &one, work_a->desc, S, u_data, &one, &one,
             u_desc, vt_data, &one, &one, vt_desc, &query, &lwork, &info, 1, 1);
    QR_CHECK(qr_pdla_agree_info(g->comm, &info));
    QR_CHECK(qr_pdla_scalapack_info("pdgesvd (workspace query)", info));
    if (!(query >= 1.0 && query < (double)INT32_MAX)) {
        st = qr_fail(QR_ERR_INPUT,
                     "pdgesvd: workspace of %g doubles out of range for a %d x %d "
                     "matrix",
                     query, mi, ni);
    }
    lwork = st == QR_OK ? (int)query : 1;
    if (st == QR_OK) {
        st = qr_malloc(&work, (size_t)lwork, sizeof *work, "pdgesvd workspace");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    pdgesvd_(jobu, jobvt, &mi, &ni, work_a->data, &one, &one, work_a->desc, S, u_data, &one, &one,
             u_desc, vt_data, &one, &one, vt_desc, work, &lwork, &info, 1, 1);
    QR_CHECK(qr_pdla_agree_info(g->comm, &info));
    if (info == (int)k + 1) {
        st = qr_fail(QR_ERR_NUMERIC,
                     "pdgesvd: singular values differ between the processes of the %dx%d grid "
                     "(info %d: heterogeneous arithmetic)",
                     g->nprow, g->npcol, info);
        goto done;
    }
    QR_CHECK(qr_pdla_scalapack_info("pdgesvd", info));
    /* Every process computes S; take the root's, so every rank returns the same bits. */
    QR_CHECK(qr_pdla_bcast_doubles(S, (size_t)k, g->comm));
done:
    qr_dmat_free(&work_a);
    free(work);
    return st;
}

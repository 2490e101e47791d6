/* grid_flrq.c: FLRQ (src/methods/flrq.c) divided over the grid.
 *
 * What is divided, what is replicated, and why:
 *   the scaled residual A = W diag(s) of the rank-1 sketches, and every m x n matrix of the BLC
 *     alternation (W - L R, the candidates' dequantized values, their error), live block-cyclic:
 *     each sketch product A v or Aᵀ u is a local gemv whose (m) or (n) result is summed over the
 *     group, the deflation and the residual's max |entry| are local;
 *   the sketch vectors u (m) and v (n), the components L (m, r_max) and R (r_max, n) and the scale
 *     s (n) are whole on every rank: vectors and thin matrices (r_max <= the budget's 0.05 m n /
 *     (m + n)), drawn from the module's stream in the serial order, so every rank takes the same
 *     branch;
 *   the output-error factor Z (n, p), Z Zᵀ = G, is formed once as Zᵀ = Omegaᵀ Cᵀ on the grid
 *     (PDTRMM with the input group's whitening factor C; Omega = I when p = n <= 512) and each rank
 *     keeps the rows of Z at its own columns: a candidate's error ||D Z||² is one local product
 *     (mloc, nloc) x (nloc, p) summed over the process row;
 *   the candidates are quantized locally with the fixed clip ratio (groups never straddle ranks),
 *     or by the grid's GPTQ; the refits are the grid's correction (the distributed randomized SVD).
 * Only this rank's codes of the iteration's and the overall best candidate are kept (their values
 * are rebuilt from the codes when needed), so the module holds W, L R, W - L R and the candidate
 * (in the caller's W_eff): four distributed m x n matrices where the serial method holds six. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/comm.h"
#include "mpi/grid_module_internal.h"
#include "mpi/pdla.h"
#include "src/alloc.h"
#include "src/methods/correction.h"
#include "src/methods/flrq.h"
#include "src/progress.h"
#include "src/stage.h"

/* The sketch's products on the local blocks, whole vectors in and out. */
typedef struct {
    const qr_grid *g;
    qr_dmat *A;          /* (m, n) the scaled residual */
    double *xloc, *yloc; /* (max(mloc, nloc)) staging */
} sketch_ops;

/* y (m) := A x (x (n)), or y (n) := Aᵀ x (x (m)) when trans: local gemv, summed over the group. */
static qr_status sketch_mul(const sketch_ops *k, int trans, const double *x, double *y)
{
    const qr_grid *g = k->g;
    const qr_dmat *A = k->A;
    int in = trans ? A->mloc : A->nloc, out = trans ? A->nloc : A->mloc;
    int64_t ny = trans ? A->n : A->m;
    for (int l = 0; l < in; l++) {
        k->xloc[l] = x[trans ? qr_dmat_global_row(g, l) : qr_dmat_global_col(g, l)];
    }
    memset(y, 0, (size_t)ny * sizeof *y);
    if (A->mloc > 0 && A->nloc > 0) {
        cblas_dgemv(CblasColMajor, trans ? CblasTrans : CblasNoTrans, A->mloc, A->nloc, 1.0,
                    A->data, (int)qr_dmat_lld(A), k->xloc, 1, 0.0, k->yloc, 1);
        for (int l = 0; l < out; l++) {
            y[trans ? qr_dmat_global_col(g, l) : qr_dmat_global_row(g, l)] = k->yloc[l];
        }
    }
    return qr_mpi_check(MPI_Allreduce(MPI_IN_PLACE, y, (int)ny, MPI_DOUBLE, MPI_SUM, g->comm),
                        "MPI_Allreduce (FLRQ sketch)");
}

/* max |A_ij / s_j| over the group; inv_s (n) = 1 / s. */
static double residual_amax(const qr_grid *g, const qr_dmat *A, const double *inv_s)
{
    double a = 0.0;
    for (int lj = 0; lj < A->nloc; lj++) {
        double is = inv_s[qr_dmat_global_col(g, lj)];
        const double *col = A->data + (size_t)lj * qr_dmat_lld(A);
        for (int li = 0; li < A->mloc; li++) {
            double v = fabs(col[li] * is);
            a = v > a ? v : a;
        }
    }
    MPI_Allreduce(MPI_IN_PLACE, &a, 1, MPI_DOUBLE, MPI_MAX, g->comm);
    return a;
}

/* flrq.c's flexible_rank on the grid: Lb (m, r_max) and Rb (r_max, n) in the scaled space, *rank
 * the rank chosen by the rule. */
static qr_status flexible_rank(const qr_grid *g, const qr_method_opts *o, const qr_dmat *W,
                               const double *s, int64_t r_max, double *Lb, double *Rb,
                               int64_t *rank)
{
    qr_status st = QR_OK;
    int64_t m = W->m, n = W->n;
    double *u = NULL, *v = NULL, *inv_s = NULL; /* (m), (n), (n) */
    double amax0;
    sketch_ops k = {g, NULL, NULL, NULL};
    int most = W->mloc > W->nloc ? W->mloc : W->nloc;
    qr_rng rng;
    *rank = 0;
    st = qr_malloc(&u, (size_t)m, sizeof *u, "FLRQ sketch u");
    if (st == QR_OK) {
        st = qr_malloc(&v, (size_t)n, sizeof *v, "FLRQ sketch v");
    }
    if (st == QR_OK) {
        st = qr_malloc(&inv_s, (size_t)n, sizeof *inv_s, "FLRQ inverse scale");
    }
    if (st == QR_OK) {
        st = qr_malloc(&k.xloc, (size_t)most + 1, sizeof *k.xloc, "FLRQ local vector");
    }
    if (st == QR_OK) {
        st = qr_malloc(&k.yloc, (size_t)most + 1, sizeof *k.yloc, "FLRQ local vector");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    QR_CHECK(qr_grid_dmat_copy(g, W, &k.A));
    for (int64_t j = 0; j < n; j++) {
        inv_s[j] = 1.0 / s[j];
    }
    for (int lj = 0; lj < k.A->nloc; lj++) {
        double c = s[qr_dmat_global_col(g, lj)];
        double *col = k.A->data + (size_t)lj * qr_dmat_lld(k.A);
        for (int li = 0; li < k.A->mloc; li++) {
            col[li] *= c;
        }
    }
    amax0 = residual_amax(g, k.A, inv_s);
    qr_method_rng(o, "flrq-sketch", &rng);
    for (int64_t c = 0; c < r_max; c++) {
        double sigma, nv;
        for (int64_t i = 0; i < m; i++) {
            u[i] = qr_rng_normal(&rng);
        }
        QR_CHECK(sketch_mul(&k, 1, u, v));
        for (int it = 0; it < o->flrq_sketch_iters; it++) {
            nv = cblas_dnrm2((int)n, v, 1);
            if (!(nv > 0.0)) {
                break;
            }
            cblas_dscal((int)n, 1.0 / nv, v, 1);
            QR_CHECK(sketch_mul(&k, 0, v, u));
            QR_CHECK(sketch_mul(&k, 1, u, v));
        }
        nv = cblas_dnrm2((int)n, v, 1);
        if (!(nv > 0.0) || !isfinite(nv)) {
            break; /* the residual is zero: nothing left to capture */
        }
        cblas_dscal((int)n, 1.0 / nv, v, 1);
        QR_CHECK(sketch_mul(&k, 0, v, u));
        sigma = cblas_dnrm2((int)m, u, 1);
        if (!(sigma > 0.0) || !isfinite(sigma)) {
            break;
        }
        for (int64_t i = 0; i < m; i++) {
            Lb[i * r_max + c] = u[i]; /* sigma u */
        }
        memcpy(Rb + c * n, v, (size_t)n * sizeof *v);
        for (int li = 0; li < k.A->mloc; li++) {
            k.xloc[li] = u[qr_dmat_global_row(g, li)];
        }
        for (int lj = 0; lj < k.A->nloc; lj++) {
            k.yloc[lj] = v[qr_dmat_global_col(g, lj)];
        }
        if (k.A->mloc > 0 && k.A->nloc > 0) {
            cblas_dger(CblasColMajor, k.A->mloc, k.A->nloc, -1.0, k.xloc, 1, k.yloc, 1, k.A->data,
                       (int)qr_dmat_lld(k.A));
        }
        if (qr_flrq_rank_pays(c + 1, m, n, amax0, residual_amax(g, k.A, inv_s))) {
            *rank = c + 1;
        }
    }
done:
    qr_dmat_free(&k.A);
    free(u);
    free(v);
    free(inv_s);
    free(k.xloc);
    free(k.yloc);
    return st;
}

/* The rows of Z (n, p), Z Zᵀ = G, at this rank's columns: Zloc (nloc, p) column-major. Zᵀ =
 * Omegaᵀ Cᵀ on the grid (Omega (n, p) drawn in the serial order, or I when p = n), gathered. */
static qr_status error_factor(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                              int64_t nloc, int64_t p, double *Zloc)
{
    qr_status st = QR_OK;
    int64_t n = s->d;
    qr_dmat *Zt = NULL; /* (p, n) */
    double *all = NULL; /* (p, n) row-major, whole */
    qr_rng rng;
    st = qr_dmat_create(g, p, n, &Zt);
    if (st == QR_OK) {
        st = qr_malloc(&all, (size_t)(p * n), sizeof *all, "FLRQ error factor");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    memset(Zt->data, 0, qr_dmat_local_count(Zt) * sizeof *Zt->data);
    if (p == n) {
        for (int64_t j = 0; j < n; j++) {
            double *e = qr_dmat_diag_entry(g, Zt, j);
            if (e) {
                *e = 1.0;
            }
        }
    } else { /* Omega[i][k] for i < n, k < p in stream order, kept where Zt[k][i] is local */
        qr_method_rng(o, "flrq-error", &rng);
        for (int64_t i = 0, lj = 0; i < n; i++) {
            bool col = lj < Zt->nloc && qr_dmat_global_col(g, (int)lj) == i;
            for (int64_t k = 0, li = 0; k < p; k++) {
                double x = qr_rng_normal(&rng) / sqrt((double)p);
                if (col && li < Zt->mloc && qr_dmat_global_row(g, (int)li) == k) {
                    Zt->data[(size_t)lj * qr_dmat_lld(Zt) + (size_t)li] = x;
                    li++;
                }
            }
            lj += col;
        }
    }
    QR_CHECK(qr_pdla_tri_right(g, Zt, s->chol, 1, 0));
    QR_CHECK(qr_dmat_allgather(g, Zt, all));
    for (int64_t k = 0; k < p; k++) {
        for (int lj = 0; lj < nloc; lj++) {
            Zloc[k * nloc + lj] = all[k * n + qr_dmat_global_col(g, lj)];
        }
    }
done:
    qr_dmat_free(&Zt);
    free(all);
    return st;
}

/* ||D Z||_F² over the group: the local product D_loc Zloc (mloc, p) summed over the process row,
 * its squares over the group. DZ (mloc, p) is scratch. */
static double output_err(const qr_grid *g, const qr_dmat *D, const double *Zloc, int64_t p,
                         double *DZ)
{
    double e = 0.0;
    size_t cnt = (size_t)D->mloc * (size_t)p;
    if (D->mloc > 0 && D->nloc > 0) {
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, D->mloc, (int)p, D->nloc, 1.0,
                    D->data, (int)qr_dmat_lld(D), Zloc, D->nloc, 0.0, DZ, D->mloc);
    } else {
        memset(DZ, 0, cnt * sizeof *DZ);
    }
    if (g->npcol > 1 && cnt > 0) {
        MPI_Allreduce(MPI_IN_PLACE, DZ, (int)cnt, MPI_DOUBLE, MPI_SUM, g->row);
    }
    for (size_t i = 0; g->mycol == 0 && i < cnt; i++) {
        e += DZ[i] * DZ[i];
    }
    MPI_Allreduce(MPI_IN_PLACE, &e, 1, MPI_DOUBLE, MPI_SUM, g->comm);
    return e;
}

/* A copy of this rank's codes (the candidate kept). */
static qr_status qweight_copy(const qr_qweight *a, qr_qweight *b)
{
    qr_qweight_free(b);
    if (!a->packed) {
        return QR_OK;
    }
    QR_TRY(qr_qweight_alloc(b, a->rows, a->cols, a->group, a->asym));
    memcpy(b->packed, a->packed, (size_t)(a->rows * qr_qweight_row_bytes(a)));
    memcpy(b->scales, a->scales, (size_t)(a->rows * a->n_groups) * sizeof *a->scales);
    if (a->zeros) {
        memcpy(b->zeros, a->zeros, (size_t)(a->rows * a->n_groups));
    }
    return QR_OK;
}

/* A (m, n) := B - A on the local blocks. */
static void sub_from(const qr_dmat *B, qr_dmat *A)
{
    for (size_t i = 0; i < qr_dmat_local_count(A); i++) {
        A->data[i] = B->data[i] - A->data[i];
    }
}

/* The flexible-rank sketch's pair: *r components kept (at most qr_flrq_max_rank), *L (m, r) and
 * *R (r, n) whole (NULL when r = 0; R back in W's space, R S^-1), and *Wr = L R distributed. */
static qr_status initial_pair(const qr_grid *g, const qr_method_opts *o, const qr_dmat *W,
                              const qr_grid_scaling *S, int64_t *r, double **L, double **R,
                              qr_dmat **Wr)
{
    qr_status st = QR_OK;
    int64_t m = W->m, n = W->n, r_max = qr_flrq_max_rank(o, m, n), k;
    double *Lb = NULL, *Rb = NULL; /* (m, r_max), (r_max, n) sketch components */
    qr_stage_mark("FLRQ sketch");
    *r = 0;
    if (r_max > 0) {
        st = qr_malloc(&Lb, (size_t)(m * r_max), sizeof *Lb, "FLRQ components L");
        if (st == QR_OK) {
            st = qr_malloc(&Rb, (size_t)(r_max * n), sizeof *Rb, "FLRQ components R");
        }
        QR_CHECK(qr_mpi_agree(g->comm, st));
        QR_CHECK(flexible_rank(g, o, W, S->diag, r_max, Lb, Rb, r));
    }
    QR_CHECK(qr_mpi_agree(g->comm, qr_dmat_create(g, m, n, Wr)));
    memset((*Wr)->data, 0, qr_dmat_local_count(*Wr) * sizeof *(*Wr)->data);
    if ((k = *r) > 0) {
        st = qr_malloc(L, (size_t)(m * k), sizeof **L, "FLRQ L");
        if (st == QR_OK) {
            st = qr_malloc(R, (size_t)(k * n), sizeof **R, "FLRQ R");
        }
        QR_CHECK(qr_mpi_agree(g->comm, st));
        for (int64_t i = 0; i < m; i++) {
            memcpy(*L + i * k, Lb + i * r_max, (size_t)k * sizeof **L);
        }
        memcpy(*R, Rb, (size_t)(k * n) * sizeof **R);
        QR_CHECK(qr_grid_scaling_unapply_rows(g, S, *R, k, n));
        QR_CHECK(qr_mpi_agree(g->comm, qr_grid_add_product(g, *L, k, *R, k, 1.0, *Wr)));
    }
done:
    free(Lb);
    free(Rb);
    return st;
}

qr_status qr_grid_flrq(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                       const qr_dmat *W, qr_qweight *qloc, qr_dmat *W_eff, double *bL, double *bR,
                       qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t m = W->m, n = W->n, r = 0, p = qr_flrq_error_width(n), nloc = W->nloc;
    qr_stats view = qr_dstats_view(s);
    qr_scaling S = {0};
    qr_grid_scaling Sg = {NULL, NULL};
    qr_grid_hessian H = {s->gptq, s->gram_diag};
    double *ma = NULL;               /* (n) mean |x_j| */
    double *L = NULL, *R = NULL;     /* (m, r), (r, n) current low-rank pair */
    double *Zloc = NULL, *DZ = NULL; /* (nloc, p) the rows of Z at the local columns; (mloc, p) */
    qr_dmat *Wr = NULL;              /* L R */
    qr_dmat *T = NULL;               /* W - L R (the quantizer's input), the refit's error */
    qr_qweight cand, itq;            /* this rank's codes: the candidate, the iteration's best */
    double best = INFINITY, ref, t0 = qr_now();
    memset(&cand, 0, sizeof cand);
    memset(&itq, 0, sizeof itq);
    memset(qloc, 0, sizeof *qloc);
    if (!s->chol) { /* qr_dstats_finish factors G for FLRQ */
        return qr_fail(QR_ERR_INPUT, "flrq: needs the input group's whitening factor (found none)");
    }
    qr_stage_mark("FLRQ scale");
    st = qr_malloc(&ma, (size_t)n, sizeof *ma, "FLRQ activation scale");
    if (st == QR_OK) {
        st = qr_malloc(&Zloc, (size_t)(nloc * p) + 1, sizeof *Zloc, "FLRQ error factor rows");
    }
    if (st == QR_OK) {
        st = qr_malloc(&DZ, (size_t)W->mloc * (size_t)p + 1, sizeof *DZ, "FLRQ error scratch");
    }
    if (st == QR_OK) {
        qr_stats_mean_abs(&view, ma);
        st = qr_scaling_diag(ma, n, &S);
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    Sg.diag = S.diag;
    QR_CHECK(error_factor(g, o, s, nloc, p, Zloc));
    rep->damping = s->chol_damping;
    rep->seconds[QR_STAGE_SCALE] += qr_now() - t0;

    t0 = qr_now();
    QR_CHECK(initial_pair(g, o, W, &Sg, &r, &L, &R, &Wr));
    rep->seconds[QR_STAGE_DECOMPOSE] += qr_now() - t0;

    t0 = qr_now();
    QR_CHECK(qr_mpi_agree(g->comm, qr_dmat_create(g, m, n, &T)));
    ref = output_err(g, W, Zloc, p, DZ);
    rep->seconds[QR_STAGE_OTHER] += qr_now() - t0;

    for (int it = 0; it <= o->flrq_blc_iters; it++) {
        double it_best = INFINITY;
        int n_cand = o->gptq ? 1 : QR_FLRQ_CLIP_STEPS;
        if (it > 0) {
            if (r == 0) {
                break; /* no low-rank part to refit: the clip search already ran */
            }
            t0 = qr_now();
            QR_CHECK(qr_mpi_agree(g->comm, qr_grid_dequantize(&itq, T)));
            sub_from(W, T);
            QR_CHECK(qr_grid_correction(g, o, &Sg, "flrq-blc", T, r, L, R, rep));
            memset(Wr->data, 0, qr_dmat_local_count(Wr) * sizeof *Wr->data);
            QR_CHECK(qr_mpi_agree(g->comm, qr_grid_add_product(g, L, r, R, r, 1.0, Wr)));
            rep->seconds[QR_STAGE_DECOMPOSE] += qr_now() - t0;
        }
        for (size_t i = 0; i < qr_dmat_local_count(T); i++) {
            T->data[i] = W->data[i] - Wr->data[i];
        }
        for (int c = 0; c < n_cand; c++) {
            double clip = o->gptq ? 0.0 : qr_flrq_clip(c), e;
            t0 = qr_now();
            qr_qweight_free(&cand);
            QR_CHECK(qr_grid_quantize(g, o, &H, T, clip, &cand, W_eff, NULL));
            rep->seconds[QR_STAGE_QUANTIZE] += qr_now() - t0;
            t0 = qr_now();
            sub_from(T, W_eff); /* W - deq - L R */
            e = output_err(g, W_eff, Zloc, p, DZ);
            if (e < it_best) {
                it_best = e;
                QR_CHECK(qr_mpi_agree(g->comm, qweight_copy(&cand, &itq)));
            }
            if (e < best) {
                best = e;
                rep->clip_ratio = o->gptq ? 1.0 : clip;
                qr_qweight_free(qloc);
                *qloc = cand;
                memset(&cand, 0, sizeof cand);
                if (r > 0) {
                    memcpy(bL, L, (size_t)(m * r) * sizeof *L);
                    memcpy(bR, R, (size_t)(r * n) * sizeof *R);
                }
            }
            rep->seconds[QR_STAGE_OTHER] += qr_now() - t0;
        }
    }
    QR_CHECK(qr_mpi_agree(g->comm, qr_grid_dequantize(qloc, W_eff)));
    rep->calib_out_err = ref > 0.0 ? sqrt(best / ref) : 0.0;
    rep->rank_used = r;
done:
    if (st != QR_OK) {
        qr_qweight_free(qloc);
    }
    qr_qweight_free(&cand);
    qr_qweight_free(&itq);
    qr_scaling_free(&S);
    qr_dmat_free(&Wr);
    qr_dmat_free(&T);
    free(ma);
    free(L);
    free(R);
    free(Zloc);
    free(DZ);
    return st;
}

/* grid_module.c: a module divided over a rank group's grid (mpi/grid_module.h). */
#include "mpi/grid_module.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/comm.h"
#include "mpi/pdla.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/methods/correction.h"
#include "src/progress.h"
#include "src/quant.h"
#include "src/stage.h"

int qr_grid_block_for_group(int64_t group, int q)
{
    /* With one grid column every rank holds whole rows: any block size keeps groups whole, and
     * ScaLAPACK's factorizations run best with small blocks (PDPOTRF of 4096 on 2x1: 1.5 s at 64,
     * 3.7 s at 128, 4.2 s at 256; tests/bench/grid_bench chol). */
    if (group <= 0 || q == 1) {
        return QR_GRID_DEFAULT_NB;
    }
    if (group >= QR_GRID_DEFAULT_NB) {
        return (int)group;
    }
    return (int)(group * ((QR_GRID_DEFAULT_NB + group - 1) / group));
}

void qr_grid_layout(const qr_method_opts *o, const int grid[2], int layout[2])
{
    /* GPTQ's sweep and SERQ's column permutation need whole rows; so does one group per row for
     * ASER (its default) */
    bool rows =
        o->gptq || o->method == QR_METHOD_SERQ || (o->method == QR_METHOD_ASER && o->wq.group <= 0);
    layout[0] = rows ? grid[0] * grid[1] : grid[0];
    layout[1] = rows ? 1 : grid[1];
}

bool qr_grid_method_supported(const qr_method_opts *o, int q, const char **why)
{
    qr_method_id m = o->method;
    *why = NULL;
    if (m != QR_METHOD_RTN && m != QR_METHOD_LQER && m != QR_METHOD_QERA_APPROX &&
        m != QR_METHOD_QERA_EXACT && m != QR_METHOD_SRR && m != QR_METHOD_ASER &&
        m != QR_METHOD_SERQ) {
        *why = "the method is not yet divided over the grid";
    } else if (m == QR_METHOD_SERQ && q > 1) {
        *why = "SERQ's column permutation needs whole rows on a rank (a grid of P x 1)";
    } else if (o->gptq && q > 1) {
        *why = "GPTQ's column sweep needs whole rows on a rank (a grid of P x 1)";
    } else if (o->wq.group <= 0 && q > 1) {
        *why = "one group per row (--group 0) needs whole rows on a rank (a grid of P x 1)";
    } else if (o->wq.group > INT32_MAX / 2) {
        *why = "the group is too large for a block size";
    }
    return *why == NULL;
}

/* ---- the module --------------------------------------------------------------------------------
 */

/* This rank's blocks of W quantized with the group's options into qloc (mloc, nloc), the clip
 * search weighting column j by colw[j] (n, whole; diag of the Hessian); W_eff gets
 * the dequantized values and E (unless NULL; it may be W itself) = W - deq. Groups never straddle
 * ranks (the block size is a multiple of the group), so the local quantization is the global one
 * restricted to the blocks. */
static qr_status quantize_local(const qr_grid *g, const qr_method_opts *o, const double *colw,
                                const qr_dmat *W, qr_qweight *qloc, qr_dmat *W_eff, qr_dmat *E)
{
    qr_status st = QR_OK;
    int64_t nloc = W->nloc, rows = QR_GRID_QUANT_CHUNK / (nloc > 0 ? nloc : 1);
    double *w = NULL, *dq = NULL, *cw = NULL; /* (rows, nloc) row-major: W, deq; (nloc) */
    qr_qweight qc;                            /* the chunk's quantized rows */
    qr_stage_mark("quantize");
    memset(qloc, 0, sizeof *qloc);
    memset(&qc, 0, sizeof qc);
    if (W->mloc == 0 || nloc == 0) {
        return QR_OK;
    }
    rows = rows < 1 ? 1 : (rows > W->mloc ? W->mloc : rows);
    QR_CHECK(
        qr_qweight_alloc(qloc, W->mloc, nloc, o->wq.group > 0 ? o->wq.group : nloc, o->wq.asym));
    QR_CHECK(qr_malloc(&w, (size_t)(rows * nloc), sizeof *w, "local weight rows"));
    QR_CHECK(qr_malloc(&dq, (size_t)(rows * nloc), sizeof *dq, "local dequantized rows"));
    if (o->wq.clip_search) {
        QR_CHECK(qr_malloc(&cw, (size_t)nloc, sizeof *cw, "clip column weights"));
        for (int lj = 0; lj < nloc; lj++) {
            cw[lj] = colw[qr_dmat_global_col(g, lj)];
        }
    }
    /* Row by row the quantization is independent: a chunk of rows at a time keeps two small
     * staging buffers instead of a row-major copy of the whole local part. */
    for (int64_t r0 = 0; r0 < W->mloc; r0 += rows) {
        int64_t nr = W->mloc - r0 < rows ? W->mloc - r0 : rows;
        size_t rb = (size_t)qr_qweight_row_bytes(qloc), ng = (size_t)qloc->n_groups;
        qr_dmat_rows_get(W, r0, nr, w);
        QR_CHECK(qr_quantize_rtn(w, nr, nloc, &o->wq, cw, &qc));
        memcpy(qloc->packed + (size_t)r0 * rb, qc.packed, (size_t)nr * rb);
        memcpy(qloc->scales + (size_t)r0 * ng, qc.scales, (size_t)nr * ng * sizeof *qc.scales);
        if (qc.zeros) {
            memcpy(qloc->zeros + (size_t)r0 * ng, qc.zeros, (size_t)nr * ng);
        }
        qr_qweight_dequantize_f64(&qc, dq);
        qr_qweight_free(&qc);
        qr_dmat_rows_put(W_eff, r0, nr, dq);
    }
    for (size_t k = 0; E && k < qr_dmat_local_count(W); k++) { /* in the local layout: no copy */
        E->data[k] = W->data[k] - W_eff->data[k];
    }
done:
    qr_qweight_free(&qc);
    free(w);
    free(dq);
    free(cw);
    return st;
}
/* GPTQ's panel on the grid: rows [b1, b2) of U = L2ᵀ, i.e. columns [b1, b2) of the input group's
 * distributed L2 from row b1 down, summed to every rank (the ranks that do not hold a piece add
 * zeros), row-major (b2 - b1, n - b1). */
typedef struct {
    const qr_grid *g;
    const qr_dmat *L2;
    double *buf; /* (QR_GPTQ_BLOCK, n) */
} gptq_panels;

static qr_status gptq_panel(void *ctx, qr_status mine, int64_t b1, int64_t b2, const double **panel,
                            int64_t *ld)
{
    gptq_panels *p = ctx;
    const qr_dmat *L2 = p->L2;
    int64_t w = b2 - b1, n = L2->n, cols = n - b1;
    QR_TRY(qr_mpi_agree(p->g->comm, mine));
    memset(p->buf, 0, (size_t)(w * cols) * sizeof *p->buf);
    for (int lj = 0; lj < L2->nloc; lj++) {
        int64_t gj = qr_dmat_global_col(p->g, lj);
        if (gj < b1 || gj >= b2) {
            continue;
        }
        for (int li = 0; li < L2->mloc; li++) {
            int64_t gi = qr_dmat_global_row(p->g, li);
            if (gi >= gj) { /* U[gj][gi] = L2[gi][gj], on or right of U's diagonal */
                p->buf[(gj - b1) * cols + (gi - b1)] =
                    L2->data[(size_t)lj * qr_dmat_lld(L2) + (size_t)li];
            }
        }
    }
    QR_TRY(qr_mpi_check(
        MPI_Allreduce(MPI_IN_PLACE, p->buf, (int)(w * cols), MPI_DOUBLE, MPI_SUM, p->g->comm),
        "MPI_Allreduce (GPTQ panel)"));
    *panel = p->buf;
    *ld = cols;
    return QR_OK;
}

/* GPTQ on a grid of one column (every rank holds whole rows): each rank sweeps its own rows, the
 * factor (the input group's, or ASER's / SERQ's of their transformed Gram; Hessian diagonal gdiag)
 * arriving panel by panel (qr_gptq_sweep: the rows are independent given U). Outputs as
 * quantize_local's. */
static qr_status gptq_local(const qr_grid *g, const qr_method_opts *o, const qr_dmat *factor,
                            const double *gdiag, const qr_dmat *W, qr_qweight *qloc, qr_dmat *W_eff,
                            qr_dmat *E)
{
    qr_status st = QR_OK;
    int64_t n = W->n, m = W->mloc;
    double *Wt = NULL, *hdiag = NULL; /* (n, m): Wᵀ, then the dequantized rows (m, n); (n) */
    gptq_panels p = {g, factor, NULL};
    qr_stage_mark("quantize");
    memset(qloc, 0, sizeof *qloc);
    st = qr_qweight_alloc(qloc, m, n, o->wq.group > 0 ? o->wq.group : n, o->wq.asym);
    if (st == QR_OK) {
        st = qr_malloc(&Wt, (size_t)(n * (m > 0 ? m : 1)), sizeof *Wt, "GPTQ local weights");
    }
    if (st == QR_OK) {
        st = qr_malloc(&hdiag, (size_t)n, sizeof *hdiag, "GPTQ Hessian diagonal");
    }
    if (st == QR_OK) {
        st = qr_malloc(&p.buf, (size_t)QR_GPTQ_BLOCK * (size_t)n, sizeof *p.buf, "GPTQ panel");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    for (int64_t j = 0; j < n; j++) { /* the local part is column-major: Wt row j is column j */
        (void)qr_gptq_dead_channel(gdiag[j], j, &hdiag[j]); /* checked by the factor */
        for (int64_t li = 0; li < m; li++) {
            Wt[j * m + li] = hdiag[j] == gdiag[j] ? W->data[(size_t)j * qr_dmat_lld(W) + li] : 0.0;
        }
    }
    QR_CHECK(qr_gptq_sweep(Wt, n, m, hdiag, &o->wq, gptq_panel, &p, qloc));
    qr_qweight_dequantize_f64(qloc, Wt); /* the sweep is done with Wt */
    qr_dmat_rows_put(W_eff, 0, m, Wt);
    for (size_t k = 0; E && k < qr_dmat_local_count(W); k++) {
        E->data[k] = W->data[k] - W_eff->data[k];
    }
done:
    if (st != QR_OK) {
        qr_qweight_free(qloc);
    }
    free(Wt);
    free(hdiag);
    free(p.buf);
    return st;
}

/* The input scaling S of a base method on the grid: a diagonal (lqer, qera-approx, whole on every
 * rank) or the input group's whitening factor (qera-exact, distributed). */
typedef struct {
    double *diag;        /* (n) or NULL */
    const qr_dmat *chol; /* (n, n) lower, or NULL */
} grid_scaling;

static qr_status scaling_make(const qr_grid *g, qr_method_id base, const qr_dstats *s,
                              grid_scaling *S, qr_method_report *rep)
{
    qr_stats view = {s->d,       s->count,   s->n_batches, NULL,
                     s->max_abs, s->sum_abs, s->sum_sq,    s->batch_mean_abs_max};
    qr_scaling sc = {0};
    qr_status st = QR_OK;
    memset(S, 0, sizeof *S);
    if (base == QR_METHOD_QERA_EXACT) {
        S->chol = s->chol; /* the input group's (qr_dstats_finish) */
        rep->damping = s->chol_damping;
        return QR_OK;
    }
    st = base == QR_METHOD_LQER ? qr_scaling_lqer(&view, &sc) : qr_scaling_qera_approx(&view, &sc);
    S->diag = sc.diag; /* taken over */
    return qr_mpi_agree(g->comm, st);
}

/* A (m, n) := A S, or A S^-1 when inverse (local column scaling, or PDTRMM / PDTRSM). */
static qr_status scaling_apply(const qr_grid *g, const grid_scaling *S, qr_dmat *A, int inverse)
{
    if (S->chol) {
        return qr_pdla_tri_right(g, A, S->chol, 0, inverse);
    }
    for (int lj = 0; lj < A->nloc; lj++) {
        double c = S->diag[qr_dmat_global_col(g, lj)];
        for (int li = 0; li < A->mloc; li++) {
            A->data[(size_t)lj * qr_dmat_lld(A) + li] =
                inverse ? A->data[(size_t)lj * qr_dmat_lld(A) + li] / c
                        : A->data[(size_t)lj * qr_dmat_lld(A) + li] * c;
        }
    }
    return QR_OK;
}

/* R (k, n), whole on every rank, := R S^-1. */
static qr_status scaling_unapply_rows(const qr_grid *g, const grid_scaling *S, double *R, int64_t k,
                                      int64_t n)
{
    if (S->diag) {
        for (int64_t i = 0; i < k; i++) {
            for (int64_t j = 0; j < n; j++) {
                R[i * n + j] /= S->diag[j];
            }
        }
        return QR_OK;
    }
    return qr_pdla_thin_solve_right(g, S->chol, R, k);
}

/* Rank-r truncated SVD of A S from `stage`'s stream: U (m, r) and sv (r) and Vt (r, n) on every
 * rank. Whitened: A C is never formed, every product goes through A and C; a diagonal scaling
 * scales A's local columns in place. */
static qr_status scaled_svd(const qr_grid *g, const qr_method_opts *o, const grid_scaling *S,
                            const char *stage, qr_dmat *A, int64_t r, double *U, double *sv,
                            double *Vt)
{
    qr_rng rng;
    if (!S->chol) {
        QR_TRY(scaling_apply(g, S, A, 0));
    }
    qr_method_rng(o, stage, &rng);
    return qr_pdla_svd_truncated_scaled(g, A, S->chol, r, &o->svd, &rng, U, sv, Vt);
}

/* The scaled error's correction: L (m, r) and R (r, n) on every rank, as qr_corr_lowrank. A
 * diagonal scaling overwrites E by E S. */
static qr_status correction(const qr_grid *g, const qr_method_opts *o, const grid_scaling *S,
                            qr_dmat *E, int64_t r, double *L, double *R, qr_method_report *rep)
{
    qr_status st = QR_OK;
    double *sv = NULL; /* (r) */
    double t0 = qr_now();
    qr_stage_mark("SVD");
    QR_TRY(qr_mpi_agree(g->comm, qr_malloc(&sv, (size_t)r, sizeof *sv, "singular values")));
    QR_CHECK(scaled_svd(g, o, S, "correction", E, r, L, sv, R));
    for (int64_t i = 0; i < E->m; i++) {
        for (int64_t k = 0; k < r; k++) {
            L[i * r + k] *= sv[k];
        }
    }
    QR_CHECK(scaling_unapply_rows(g, S, R, r, E->n));
    rep->seconds[QR_STAGE_DECOMPOSE] += qr_now() - t0;
done:
    free(sv);
    return st;
}

/* A += alpha L[:, :k] R[:k, :] on the local blocks (L (m, ldl) with row stride ldl, R (k, n)). */
static qr_status add_product(const qr_grid *g, const double *L, int64_t ldl, const double *R,
                             int64_t k, double alpha, qr_dmat *A)
{
    int64_t n = A->n;
    double *Lb = NULL, *Rb = NULL; /* (mloc, k) and (k, nloc), column-major */
    qr_status st = QR_OK;
    if (k == 0 || A->mloc == 0 || A->nloc == 0) {
        return QR_OK;
    }
    QR_CHECK(qr_malloc(&Lb, (size_t)A->mloc * (size_t)k, sizeof *Lb, "local L"));
    QR_CHECK(qr_malloc(&Rb, (size_t)k * (size_t)A->nloc, sizeof *Rb, "local R"));
    for (int li = 0; li < A->mloc; li++) {
        int64_t i = qr_dmat_global_row(g, li);
        for (int64_t c = 0; c < k; c++) {
            Lb[(size_t)c * (size_t)A->mloc + li] = L[i * ldl + c];
        }
    }
    for (int lj = 0; lj < A->nloc; lj++) {
        int64_t j = qr_dmat_global_col(g, lj);
        for (int64_t c = 0; c < k; c++) {
            Rb[(size_t)lj * (size_t)k + c] = R[c * n + j];
        }
    }
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, A->mloc, A->nloc, (int)k, alpha, Lb,
                A->mloc, Rb, (int)k, 1.0, A->data, (int)qr_dmat_lld(A));
done:
    free(Lb);
    free(Rb);
    return st;
}

/* W_eff += L R on the local blocks (L and R rounded to float32 as stored): one local dgemm. */
static qr_status add_lowrank(const qr_grid *g, const qr_qlayer *q, qr_dmat *We)
{
    int64_t r = q->rank, n = We->n;
    double *Lb = NULL, *Rb = NULL; /* (mloc, r) and (r, nloc), column-major */
    qr_status st = QR_OK;
    if (r == 0 || We->mloc == 0 || We->nloc == 0) {
        return QR_OK;
    }
    QR_CHECK(qr_malloc(&Lb, (size_t)We->mloc * (size_t)r, sizeof *Lb, "local L"));
    QR_CHECK(qr_malloc(&Rb, (size_t)r * (size_t)We->nloc, sizeof *Rb, "local R"));
    for (int li = 0; li < We->mloc; li++) {
        int64_t i = qr_dmat_global_row(g, li);
        for (int64_t k = 0; k < r; k++) {
            Lb[(size_t)k * (size_t)We->mloc + li] = (double)q->L[i * r + k];
        }
    }
    for (int lj = 0; lj < We->nloc; lj++) {
        int64_t j = qr_dmat_global_col(g, lj);
        for (int64_t k = 0; k < r; k++) {
            Rb[(size_t)lj * (size_t)r + k] = (double)q->R[k * n + j];
        }
    }
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, We->mloc, We->nloc, (int)r, 1.0, Lb,
                We->mloc, Rb, (int)r, 1.0, We->data, (int)qr_dmat_lld(We));
done:
    free(Lb);
    free(Rb);
    return st;
}
/* Place the local quantized blocks of process (pr, pc) (packed codes (mloc, nloc), two per byte
 * as qr_qweight packs them, scales and zeros (mloc, local groups)) into the whole matrix q on the
 * root. A block of even width starts on a byte in both (every block but the last of a row is nb
 * wide), so with an even nb each block's codes are one copy. */
static void place_blocks(const qr_grid *g, int pr, int pc, int mloc, int nloc, int64_t lgroup,
                         const uint8_t *packed, const float *scales, const uint8_t *zeros,
                         qr_qweight *q)
{
    int64_t ngl = nloc > 0 ? (nloc + lgroup - 1) / lgroup : 0, rb = (nloc + 1) / 2;
    for (int li = 0; li < mloc; li++) {
        int64_t i = qr_dmat_global_index(li, g->nb, pr, g->nprow);
        const uint8_t *row = packed + (size_t)li * (size_t)rb;
        for (int lj0 = 0; lj0 < nloc; lj0 += g->nb) {
            int64_t gj0 = qr_dmat_global_index(lj0, g->nb, pc, g->npcol);
            int bw = nloc - lj0 < g->nb ? nloc - lj0 : g->nb;
            if (g->nb % 2 == 0) {
                memcpy(q->packed + i * qr_qweight_row_bytes(q) + gj0 / 2, row + lj0 / 2,
                       (size_t)(bw + 1) / 2);
                continue;
            }
            for (int j = 0; j < bw; j++) {
                int lj = lj0 + j;
                qr_qweight_set_code(q, i, gj0 + j, (lj & 1) ? row[lj / 2] >> 4 : row[lj / 2] & 15u);
            }
        }
        for (int64_t k = 0; k < ngl; k++) {
            int64_t G = qr_dmat_global_index((int)(k * lgroup), g->nb, pc, g->npcol) / q->group;
            q->scales[i * q->n_groups + G] = scales[li * ngl + k];
            if (q->zeros) {
                q->zeros[i * q->n_groups + G] = zeros[li * ngl + k];
            }
        }
    }
}

/* Gather every rank's quantized blocks into the whole main matrix on the group root (one rank's
 * blocks at a time, so the root holds the INT4 result and one staging buffer). */
static qr_status gather_qweight(const qr_grid *g, const qr_wquant_opts *wq, int64_t m, int64_t n,
                                const qr_qweight *qloc, qr_qweight *q)
{
    qr_status st = QR_OK;
    int mmax = qr_dmat_extent(m, g->nb, 0, g->nprow), nmax = qr_dmat_extent(n, g->nb, 0, g->npcol);
    qr_stage_mark("gather");
    int64_t lgroup = wq->group > 0 && wq->group < n ? wq->group : n;
    int64_t ngmax = (nmax + lgroup - 1) / lgroup;
    size_t nc = (size_t)mmax * (size_t)((nmax + 1) / 2), ns = (size_t)mmax * (size_t)ngmax;
    uint8_t *packed = NULL, *zeros = NULL;
    float *scales = NULL;
    st = qr_malloc(&packed, nc + 1, 1, "gathered codes");
    if (st == QR_OK) {
        st = qr_calloc(&zeros, ns + 1, 1, "gathered zeros");
    }
    if (st == QR_OK) {
        st = qr_malloc(&scales, ns + 1, sizeof *scales, "gathered scales");
    }
    if (st == QR_OK && g->group_rank == 0) {
        st = qr_qweight_alloc(q, m, n, wq->group > 0 ? wq->group : n, wq->asym);
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    for (int p = 0; p < g->nprow * g->npcol; p++) {
        int pr = p / g->npcol, pc = p % g->npcol;
        int mloc = qr_dmat_extent(m, g->nb, pr, g->nprow),
            nloc = qr_dmat_extent(n, g->nb, pc, g->npcol);
        int64_t ngl = nloc > 0 ? (nloc + lgroup - 1) / lgroup : 0;
        int cnt = mloc * ((nloc + 1) / 2), scnt = (int)(mloc * ngl);
        const uint8_t *codes = packed;
        const float *sc = scales;
        const uint8_t *ze = zeros;
        if (p == g->group_rank && mloc > 0 && nloc > 0) { /* its own blocks: as they are */
            codes = qloc->packed;
            sc = qloc->scales;
            ze = qloc->zeros ? qloc->zeros : zeros;
        }
        if (p != 0 && g->group_rank == p) {
            MPI_Send(codes, cnt, MPI_UINT8_T, 0, 1, g->comm);
            MPI_Send(sc, scnt, MPI_FLOAT, 0, 2, g->comm);
            MPI_Send(ze, scnt, MPI_UINT8_T, 0, 3, g->comm);
        } else if (p != 0 && g->group_rank == 0) {
            MPI_Recv(packed, cnt, MPI_UINT8_T, p, 1, g->comm, MPI_STATUS_IGNORE);
            MPI_Recv(scales, scnt, MPI_FLOAT, p, 2, g->comm, MPI_STATUS_IGNORE);
            MPI_Recv(zeros, scnt, MPI_UINT8_T, p, 3, g->comm, MPI_STATUS_IGNORE);
        }
        if (g->group_rank == 0) {
            place_blocks(g, pr, pc, mloc, nloc, lgroup, codes, sc, ze, q);
        }
    }
done:
    free(packed);
    free(zeros);
    free(scales);
    return st;
}

/* What the main quantization weighs columns by: GPTQ's factor (or NULL without --gptq) and the
 * Hessian's diagonal (n, whole on every rank; the clip search's column weights). */
typedef struct {
    const qr_dmat *gptq;
    const double *diag;
} grid_hessian;

/* qr_method_quantize on the grid: Wm's local blocks by GPTQ (collective: its panels are summed
 * over the group) or RTN into qloc, W_eff := deq, and E := Wm - deq unless E is NULL. */
static qr_status quantize_step(const qr_grid *g, const qr_method_opts *o, const grid_hessian *H,
                               const qr_dmat *Wm, qr_qweight *qloc, qr_dmat *W_eff, qr_dmat *E)
{
    if (o->gptq) {
        return gptq_local(g, o, H->gptq, H->diag, Wm, qloc, W_eff, E);
    }
    return qr_mpi_agree(g->comm, quantize_local(g, o, H->diag, Wm, qloc, W_eff, E));
}

/* The QER step of the methods (qr_qer_step): quantize Wm locally into qloc, W_eff := deq, and
 * with r > 0 the rank-r correction of E = Wm - deq under S into L (m, r) and R (r, n). */
static qr_status qer_step(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                          const grid_scaling *S, const qr_dmat *Wm, int64_t r, qr_qweight *qloc,
                          qr_dmat *W_eff, double *L, double *R, qr_method_report *rep)
{
    qr_status st = QR_OK;
    qr_dmat *E = NULL; /* (m, n): Wm - deq, when there is a correction to fit to it */
    double t0 = qr_now();
    grid_hessian H = {s->gptq, s->gram_diag};
    if (r > 0) {
        QR_TRY(qr_mpi_agree(g->comm, qr_dmat_create(g, Wm->m, Wm->n, &E)));
    }
    QR_CHECK(quantize_step(g, o, &H, Wm, qloc, W_eff, E));
    rep->seconds[QR_STAGE_QUANTIZE] += qr_now() - t0;
    if (r > 0) {
        QR_CHECK(correction(g, o, S, E, r, L, R, rep));
    }
done:
    qr_dmat_free(&E);
    return st;
}

/* A copy of the distributed A. */
static qr_status dmat_copy(const qr_grid *g, const qr_dmat *A, qr_dmat **out)
{
    QR_TRY(qr_mpi_agree(g->comm, qr_dmat_create(g, A->m, A->n, out)));
    memcpy((*out)->data, A->data, qr_dmat_local_count(A) * sizeof *A->data);
    return QR_OK;
}

/* SRR's k* probe (src/methods/srr.c random_spectrum): the top-r singular values of E_rand S, with
 * E_rand ~ U[-1, 1] drawn from the module's stream in row-major order (every rank draws the whole
 * stream and keeps its entries), and the squared norm of E_rand S (for a whitening factor on the
 * randomized path its expectation (m / 3) ||C||_F², as the serial method takes it). */
static qr_status srr_probe(const qr_grid *g, const qr_method_opts *o, const grid_scaling *S,
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
        QR_CHECK(scaling_apply(g, S, Er, 0));
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

/* ||(D_in - L R) S||_F² over the group, D (= W - W_eff on entry) overwritten (src/methods/srr.c
 * scaled_error). */
static qr_status srr_scaled_error(const qr_grid *g, const grid_scaling *S, const double *L,
                                  const double *R, int64_t r, qr_dmat *D, double *err)
{
    QR_TRY(qr_mpi_agree(g->comm, add_product(g, L, r, R, r, -1.0, D)));
    QR_TRY(scaling_apply(g, S, D, 0));
    *err = qr_dmat_local_sumsq(D, NULL);
    MPI_Allreduce(MPI_IN_PLACE, err, 1, MPI_DOUBLE, MPI_SUM, g->comm);
    return QR_OK;
}

/* src/methods/srr.c keep_if_better_than_base on the grid: the k* split (qloc, W_eff, L, R) is
 * replaced by the base method's own layer when that has the lower scaled calibration error. D is
 * the only m x n scratch (the base layer's W_eff is rebuilt from its codes when it wins). */
static qr_status srr_keep_if_better(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                                    const grid_scaling *S, const qr_dmat *W, qr_qweight *qloc,
                                    qr_dmat *W_eff, double *L, double *R, qr_dmat *D,
                                    qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t m = W->m, n = W->n, r = o->rank;
    size_t count = qr_dmat_local_count(W), lld = qr_dmat_lld(W);
    qr_qweight qb;
    double *Lb = NULL, *Rb = NULL, e_split = 0.0, e_base = 0.0, t0 = qr_now();
    memset(&qb, 0, sizeof qb);
    for (size_t i = 0; i < count; i++) {
        D->data[i] = W->data[i] - W_eff->data[i];
    }
    QR_CHECK(srr_scaled_error(g, S, L, R, r, D, &e_split));
    st = qr_malloc(&Lb, (size_t)(m * r), sizeof *Lb, "SRR base L");
    if (st == QR_OK) {
        st = qr_malloc(&Rb, (size_t)(r * n), sizeof *Rb, "SRR base R");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    QR_CHECK(qer_step(g, o, s, S, W, r, &qb, D, Lb, Rb, rep)); /* D = the base's W_eff */
    for (size_t i = 0; i < count; i++) {
        D->data[i] = W->data[i] - D->data[i];
    }
    QR_CHECK(srr_scaled_error(g, S, Lb, Rb, r, D, &e_base));
    if (e_base < e_split) {
        qr_qweight_free(qloc);
        *qloc = qb;
        memset(&qb, 0, sizeof qb);
        for (int lj = 0; lj < W->nloc; lj++) {
            for (int li = 0; li < W->mloc; li++) {
                W_eff->data[(size_t)lj * lld + (size_t)li] = qr_qweight_value(qloc, li, lj);
            }
        }
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

/* SRR (src/methods/srr.c) on the grid: the top-k subspace of W S kept, the residual quantized and
 * corrected with the remaining rank. L (m, r), R (r, n) on every rank. */
static qr_status srr(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                     const grid_scaling *S, const qr_dmat *W, qr_qweight *qloc, qr_dmat *W_eff,
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
        QR_CHECK(dmat_copy(g, W, &WS));
        QR_CHECK(scaling_apply(g, S, WS, 0)); /* the serial method forms W S too */
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
        QR_CHECK(qer_step(g, o, s, S, W, r, qloc, W_eff, L, R, rep));
        goto done;
    }
    /* L1 = U_k Σ_k, R1 = Vt_k S^-1, W - L1 R1 into WS. */
    QR_CHECK(scaling_unapply_rows(g, S, Vt, k, n));
    for (int64_t i = 0; i < m; i++) {
        for (int64_t c = 0; c < k; c++) {
            L[i * r + c] = U[i * r + c] * sw[c];
        }
    }
    memcpy(R, Vt, (size_t)(k * n) * sizeof *R);
    memcpy(WS->data, W->data, qr_dmat_local_count(W) * sizeof *W->data);
    QR_CHECK(qr_mpi_agree(g->comm, add_product(g, L, r, R, k, -1.0, WS)));
    st = qr_malloc(&L2, (size_t)(m * (r - k)) + 1, sizeof *L2, "SRR L2");
    if (st == QR_OK) {
        st = qr_malloc(&R2, (size_t)((r - k) * n) + 1, sizeof *R2, "SRR R2");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    QR_CHECK(qer_step(g, o, s, S, WS, r - k, qloc, W_eff, L2, R2, rep));
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

/* ---- ASER and SERQ: a smoothed (and for SERQ permuted) weight, per-module Hessians ------------
 */

/* GPTQ's factor of a module's own transformed Gram Ht (ASER's G~, SERQ's permuted G_t; lower
 * triangle read, factored in place), diag its diagonal: dead channels set to 1 first, as the
 * input group's factor (grid_stats.c) and the serial GPTQ do. */
static qr_status module_gptq_factor(const qr_grid *g, const qr_method_opts *o, qr_dmat *Ht,
                                    const double *diag)
{
    qr_status st = QR_OK;
    for (int64_t j = 0; j < Ht->n && st == QR_OK; j++) {
        double used, *e = qr_dmat_diag_entry(g, Ht, j);
        st = qr_gptq_dead_channel(diag[j], j, &used);
        if (e && st == QR_OK) {
            *e = used;
        }
    }
    QR_TRY(qr_mpi_agree(g->comm, st));
    return qr_pdla_gptq_factor(g, Ht, o->wq.gptq_damp, NULL);
}

/* ASER (src/methods/aser.c) on the grid. The column maxima and squared norms of W are reduced over
 * the process rows (each column's entries sit in one process column; the others add zeros), W~ =
 * W diag(s) and G~ = diag(1/s) G diag(1/s) are local scalings of copies (G is the input group's),
 * the salient columns of W~ are zeroed locally, the rest quantized locally (or by GPTQ with the
 * module's own factor of G~), and E = W~ - deq corrected through the Cholesky factor of G~. On
 * return W_eff = deq(main) in the smoothed space; smooth (n) on every rank. */
static qr_status aser(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                      const qr_dmat *W, int64_t r, qr_qweight *qloc, qr_dmat *W_eff, double *L,
                      double *R, float *smooth, qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t n = W->n, f = o->n_salient < n ? o->n_salient : n;
    size_t lld = qr_dmat_lld(W), count = qr_dmat_local_count(W);
    double *wmax = NULL, *cn = NULL, *cw = NULL; /* (n) column max |W|, ||W[:, j]||², diag(G~) */
    qr_channel_score *rk = NULL;                 /* (n) channels by salience */
    qr_dmat *Ws = NULL, *Gt = NULL, *F = NULL, *E = NULL;
    grid_scaling S = {NULL, NULL};
    grid_hessian H = {NULL, NULL};
    double t0 = qr_now();
    if (!s->G) { /* qr_dstats_finish keeps G for it (qr_dstats_keeps_gram) */
        return qr_fail(QR_ERR_INPUT, "aser: needs the input group's Gram (found none)");
    }
    st = qr_calloc(&wmax, (size_t)n, sizeof *wmax, "ASER column maxima");
    if (st == QR_OK) {
        st = qr_calloc(&cn, (size_t)n, sizeof *cn, "ASER column norms");
    }
    if (st == QR_OK) {
        st = qr_malloc(&cw, (size_t)n, sizeof *cw, "ASER Hessian diagonal");
    }
    if (st == QR_OK) {
        st = qr_malloc(&rk, (size_t)n, sizeof *rk, "ASER salience");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    for (int lj = 0; lj < W->nloc; lj++) {
        int64_t j = qr_dmat_global_col(g, lj);
        for (int li = 0; li < W->mloc; li++) {
            double w = W->data[(size_t)lj * lld + (size_t)li], a = fabs(w);
            wmax[j] = a > wmax[j] ? a : wmax[j];
            cn[j] += w * w;
        }
    }
    MPI_Allreduce(MPI_IN_PLACE, wmax, (int)n, MPI_DOUBLE, MPI_MAX, g->comm);
    MPI_Allreduce(MPI_IN_PLACE, cn, (int)n, MPI_DOUBLE, MPI_SUM, g->comm);
    qr_smooth_from_maxima(s->max_abs, wmax, n, o->smooth_alpha, smooth);
    for (int64_t j = 0; j < n; j++) {
        cw[j] = s->gram_diag[j] / ((double)smooth[j] * (double)smooth[j]);
        rk[j].j = j;
        rk[j].v = s->gram_diag[j] * cn[j];
    }
    qr_channel_sort_desc(rk, n);
    QR_CHECK(dmat_copy(g, W, &Ws));
    QR_CHECK(dmat_copy(g, s->G, &Gt));
    for (int lj = 0; lj < W->nloc; lj++) {
        double c = (double)smooth[qr_dmat_global_col(g, lj)];
        for (int li = 0; li < W->mloc; li++) {
            Ws->data[(size_t)lj * lld + (size_t)li] *= c;
        }
    }
    for (int lj = 0; lj < Gt->nloc; lj++) {
        double sb = (double)smooth[qr_dmat_global_col(g, lj)];
        for (int li = 0; li < Gt->mloc; li++) {
            double sa = (double)smooth[qr_dmat_global_row(g, li)];
            size_t k = (size_t)lj * qr_dmat_lld(Gt) + (size_t)li;
            Gt->data[k] = Gt->data[k] / (sa * sb);
        }
    }
    if (o->gptq) {
        QR_CHECK(dmat_copy(g, Gt, &F));
        QR_CHECK(module_gptq_factor(g, o, F, cw));
    }
    /* the serial method factors G~ whether or not it corrects (and reports the damping) */
    QR_CHECK(qr_pdla_cholesky_damped(g, Gt, o->whiten_lambda0, &rep->damping));
    S.chol = Gt;
    rep->n_salient_used = f;
    rep->seconds[QR_STAGE_SCALE] += qr_now() - t0;

    /* Wz = W~ without the salient columns, in E's place: quantized, then E = W~ - deq */
    t0 = qr_now();
    QR_CHECK(dmat_copy(g, Ws, &E));
    for (int64_t k = 0; k < f; k++) {
        cn[rk[k].j] = -1.0; /* marks a salient column */
    }
    for (int lj = 0; lj < E->nloc; lj++) {
        if (cn[qr_dmat_global_col(g, lj)] == -1.0) {
            memset(E->data + (size_t)lj * lld, 0, (size_t)E->mloc * sizeof *E->data);
        }
    }
    H.gptq = F;
    H.diag = cw;
    QR_CHECK(quantize_step(g, o, &H, E, qloc, W_eff, NULL));
    for (size_t i = 0; i < count; i++) { /* the error of W~ itself, salient columns included */
        E->data[i] = Ws->data[i] - W_eff->data[i];
    }
    qr_dmat_free(&Ws);
    qr_dmat_free(&F);
    rep->seconds[QR_STAGE_QUANTIZE] += qr_now() - t0;
    if (r > 0) {
        QR_CHECK(correction(g, o, &S, E, r, L, R, rep));
    }
done:
    free(wmax);
    free(cn);
    free(cw);
    free(rk);
    qr_dmat_free(&Ws);
    qr_dmat_free(&Gt);
    qr_dmat_free(&F);
    qr_dmat_free(&E);
    return st;
}

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
static qr_status serq(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
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
    grid_hessian H = {NULL, NULL};
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
        QR_CHECK(module_gptq_factor(g, o, F, cw));
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
    QR_CHECK(quantize_step(g, o, &H, Wt, qloc, W_eff, NULL));
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

qr_status qr_grid_method_run(const qr_grid *g, const qr_method_opts *oin, const qr_dmat *W,
                             qr_dstats *s, qr_qlayer *root_ql, qr_grid_result *res)
{
    qr_status st = QR_OK;
    qr_method_opts ro; /* oin with QR_AUTO resolved for this module (the same on every rank) */
    const qr_method_opts *o = &ro;
    int64_t m = W->m, n = W->n, r;
    qr_method_id base = oin->method == QR_METHOD_SRR ? oin->srr_base : oin->method;
    qr_qweight qloc, sideloc; /* this rank's blocks of the main and SERQ's side matrix */
    grid_scaling S = {NULL, NULL};
    double *L = NULL, *R = NULL; /* (m, r), (r, n) on every rank */
    qr_qlayer ql;                /* every rank: L and R; the root also main */
    bool smoothed;               /* ASER and SERQ: W_eff comes back in the transformed space */
    double t0 = qr_now();
    memset(&qloc, 0, sizeof qloc);
    memset(&sideloc, 0, sizeof sideloc);
    memset(&ql, 0, sizeof ql);
    if (root_ql) {
        memset(root_ql, 0, sizeof *root_ql);
    }
    memset(res, 0, sizeof *res);
    QR_TRY(qr_method_resolve(oin, oin->module_name ? oin->module_name : "module", m, n, &ro));
    r = o->method == QR_METHOD_RTN || o->method == QR_METHOD_SERQ ? 0 : o->rank;
    smoothed = o->method == QR_METHOD_ASER || o->method == QR_METHOD_SERQ;
    ql.method = o->method;
    ql.d_out = m;
    ql.d_in = n;
    res->rep.srr_k_used = res->rep.srr_k_rule = -1;
    res->rep.clip_ratio = 1.0;
    res->rep.calib_out_err = -1.0;
    st = qr_method_check(o, o->module_name ? o->module_name : "module", m, n);
    if (st == QR_OK) {
        st = qr_dmat_create(g, m, n, &res->W_eff);
    }
    if (st == QR_OK && r > 0) {
        st = qr_malloc(&L, (size_t)(m * r), sizeof *L, "correction L");
    }
    if (st == QR_OK && r > 0) {
        st = qr_malloc(&R, (size_t)(r * n), sizeof *R, "correction R");
    }
    if (st == QR_OK && smoothed) {
        st = qr_malloc(&res->smooth, (size_t)n, sizeof *res->smooth, "smoothing vector");
    }
    if (st == QR_OK && o->method == QR_METHOD_SERQ) {
        st = qr_malloc(&res->perm, (size_t)n, sizeof *res->perm, "channel permutation");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    if (r > 0 && !smoothed) {
        QR_CHECK(scaling_make(g, base, s, &S, &res->rep));
    }
    res->rep.seconds[QR_STAGE_SCALE] += qr_now() - t0;
    if (o->method == QR_METHOD_ASER) {
        QR_CHECK(aser(g, o, s, W, r, &qloc, res->W_eff, L, R, res->smooth, &res->rep));
    } else if (o->method == QR_METHOD_SERQ) {
        QR_CHECK(serq(g, o, s, W, &qloc, &sideloc, res->W_eff, res->smooth, res->perm, &res->rep));
    } else if (o->method == QR_METHOD_SRR) {
        QR_CHECK(srr(g, o, s, &S, W, &qloc, res->W_eff, L, R, &res->rep));
    } else {
        QR_CHECK(qer_step(g, o, s, &S, W, r, &qloc, res->W_eff, L, R, &res->rep));
    }
    if (r > 0) {
        QR_CHECK(qr_mpi_agree(g->comm, qr_qlayer_set_lowrank(&ql, L, R, r)));
    }
    QR_CHECK(qr_mpi_agree(g->comm, add_lowrank(g, &ql, res->W_eff)));
    res->rep.rank_used = ql.rank;
    if (!root_ql) { /* measured only: no part to write */
        goto done;
    }
    QR_CHECK(gather_qweight(g, &o->wq, m, n, &qloc, &ql.main));
    if (o->method == QR_METHOD_SERQ && res->rep.n_salient_used > 0) {
        qr_wquant_opts side = o->wq;
        side.group = 0;
        QR_CHECK(gather_qweight(g, &side, m, res->rep.n_salient_used, &sideloc, &ql.side));
        ql.n_salient = res->rep.n_salient_used;
    }
    if (g->group_rank == 0 && smoothed) {
        st = qr_malloc(&ql.smooth, (size_t)n, sizeof *ql.smooth, "smoothing vector");
        if (st == QR_OK && res->perm) {
            st = qr_malloc(&ql.perm, (size_t)n, sizeof *ql.perm, "channel permutation");
        }
        if (st == QR_OK) {
            memcpy(ql.smooth, res->smooth, (size_t)n * sizeof *ql.smooth);
            if (res->perm) {
                memcpy(ql.perm, res->perm, (size_t)n * sizeof *ql.perm);
            }
        }
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    if (g->group_rank == 0) {
        ql.bits_per_weight = qr_qlayer_bits_per_weight(&ql);
        *root_ql = ql;
        memset(&ql, 0, sizeof ql);
    }
done:
    qr_qweight_free(&qloc);
    qr_qweight_free(&sideloc);
    qr_qlayer_free(&ql);
    free(S.diag);
    free(L);
    free(R);
    if (st != QR_OK) {
        if (root_ql) {
            qr_qlayer_free(root_ql);
        }
        qr_grid_result_free(res);
    }
    return st;
}

void qr_grid_result_free(qr_grid_result *res)
{
    qr_dmat_free(&res->W_eff);
    qr_free(&res->smooth);
    qr_free(&res->perm);
}

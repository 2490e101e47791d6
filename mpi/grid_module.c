/* grid_module.c: a module divided over a rank group's grid (mpi/grid_module.h). */
#include "mpi/grid_module.h"
#include "mpi/grid_module_internal.h"

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

const char *qr_grid_layout(const qr_method_opts *o, const int grid[2], int layout[2])
{
    const char *why = NULL; /* what needs whole rows on a rank */
    if (o->gptq) {
        why = "--gptq"; /* GPTQ's column sweep */
    } else if (o->method == QR_METHOD_SERQ) {
        why = "serq"; /* its column permutation */
    } else if (o->wq.group <= 0 || o->wq.group > INT32_MAX / 2) {
        why = "one group per row"; /* (or a group too wide for a block size) */
    }
    layout[0] = why ? grid[0] * grid[1] : grid[0];
    layout[1] = why ? 1 : grid[1];
    return layout[1] == grid[1] ? NULL : why;
}

/* ---- the module --------------------------------------------------------------------------------
 */

/* This rank's blocks of W quantized with the group's options into qloc (mloc, nloc), the clip
 * search weighting column j by colw[j] (n, whole; diag of the Hessian), or with every group's
 * range shrunk by the fixed factor clip when clip > 0 (qr_quantize_fixed_clip); W_eff gets
 * the dequantized values and E (unless NULL; it may be W itself) = W - deq. Groups never straddle
 * ranks (the block size is a multiple of the group), so the local quantization is the global one
 * restricted to the blocks. */
static qr_status quantize_local(const qr_grid *g, const qr_method_opts *o, const double *colw,
                                const qr_dmat *W, double clip, qr_qweight *qloc, qr_dmat *W_eff,
                                qr_dmat *E)
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
    if (o->wq.clip_search && clip <= 0.0) {
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
        if (clip > 0.0) {
            QR_CHECK(qr_quantize_fixed_clip(w, nr, nloc, &o->wq, clip, &qc, NULL));
        } else {
            QR_CHECK(qr_quantize_rtn(w, nr, nloc, &o->wq, cw, &qc));
        }
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

qr_status qr_grid_dequantize(const qr_qweight *qloc, qr_dmat *A)
{
    int64_t rows = QR_GRID_QUANT_CHUNK / (A->nloc > 0 ? A->nloc : 1);
    double *buf = NULL; /* (rows, nloc) row-major */
    if (A->mloc == 0 || A->nloc == 0) {
        return QR_OK;
    }
    rows = rows < 1 ? 1 : (rows > A->mloc ? A->mloc : rows);
    QR_TRY(qr_malloc(&buf, (size_t)(rows * A->nloc), sizeof *buf, "dequantized rows"));
    for (int64_t r0 = 0; r0 < A->mloc; r0 += rows) { /* a view of the chunk's rows */
        qr_qweight v = *qloc;
        v.rows = A->mloc - r0 < rows ? A->mloc - r0 : rows;
        v.packed += (size_t)r0 * (size_t)qr_qweight_row_bytes(qloc);
        v.scales += (size_t)r0 * (size_t)qloc->n_groups;
        v.zeros = v.zeros ? v.zeros + (size_t)r0 * (size_t)qloc->n_groups : NULL;
        qr_qweight_dequantize_f64(&v, buf);
        qr_dmat_rows_put(A, r0, v.rows, buf);
    }
    free(buf);
    return QR_OK;
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

static qr_status scaling_make(const qr_grid *g, qr_method_id base, const qr_dstats *s,
                              qr_grid_scaling *S, qr_method_report *rep)
{
    qr_stats view = qr_dstats_view(s);
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

qr_status qr_grid_scaling_apply(const qr_grid *g, const qr_grid_scaling *S, qr_dmat *A, int inverse)
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

qr_status qr_grid_scaling_unapply_rows(const qr_grid *g, const qr_grid_scaling *S, double *R,
                                       int64_t k, int64_t n)
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
static qr_status scaled_svd(const qr_grid *g, const qr_method_opts *o, const qr_grid_scaling *S,
                            const char *stage, qr_dmat *A, int64_t r, double *U, double *sv,
                            double *Vt)
{
    qr_rng rng;
    if (!S->chol) {
        QR_TRY(qr_grid_scaling_apply(g, S, A, 0));
    }
    qr_method_rng(o, stage, &rng);
    return qr_pdla_svd_truncated_scaled(g, A, S->chol, r, &o->svd, &rng, U, sv, Vt);
}

qr_status qr_grid_correction(const qr_grid *g, const qr_method_opts *o, const qr_grid_scaling *S,
                             const char *stage, qr_dmat *E, int64_t r, double *L, double *R,
                             qr_method_report *rep)
{
    qr_status st = QR_OK;
    double *sv = NULL; /* (r) */
    double t0 = qr_now();
    qr_stage_mark("SVD");
    QR_TRY(qr_mpi_agree(g->comm, qr_malloc(&sv, (size_t)r, sizeof *sv, "singular values")));
    QR_CHECK(scaled_svd(g, o, S, stage, E, r, L, sv, R));
    for (int64_t i = 0; i < E->m; i++) {
        for (int64_t k = 0; k < r; k++) {
            L[i * r + k] *= sv[k];
        }
    }
    QR_CHECK(qr_grid_scaling_unapply_rows(g, S, R, r, E->n));
    rep->seconds[QR_STAGE_DECOMPOSE] += qr_now() - t0;
done:
    free(sv);
    return st;
}

qr_status qr_grid_add_product(const qr_grid *g, const double *L, int64_t ldl, const double *R,
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

qr_status qr_grid_quantize(const qr_grid *g, const qr_method_opts *o, const qr_grid_hessian *H,
                           const qr_dmat *Wm, double clip, qr_qweight *qloc, qr_dmat *W_eff,
                           qr_dmat *E)
{
    if (o->gptq && clip <= 0.0) {
        return gptq_local(g, o, H->gptq, H->diag, Wm, qloc, W_eff, E);
    }
    return qr_mpi_agree(g->comm, quantize_local(g, o, H->diag, Wm, clip, qloc, W_eff, E));
}

qr_status qr_grid_qer_step(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                           const qr_grid_scaling *S, const qr_dmat *Wm, int64_t r, qr_qweight *qloc,
                           qr_dmat *W_eff, double *L, double *R, qr_method_report *rep)
{
    qr_status st = QR_OK;
    qr_dmat *E = NULL; /* (m, n): Wm - deq, when there is a correction to fit to it */
    double t0 = qr_now();
    qr_grid_hessian H = {s->gptq, s->gram_diag};
    if (r > 0) {
        QR_TRY(qr_mpi_agree(g->comm, qr_dmat_create(g, Wm->m, Wm->n, &E)));
    }
    QR_CHECK(qr_grid_quantize(g, o, &H, Wm, 0.0, qloc, W_eff, E));
    rep->seconds[QR_STAGE_QUANTIZE] += qr_now() - t0;
    if (r > 0) {
        QR_CHECK(qr_grid_correction(g, o, S, "correction", E, r, L, R, rep));
    }
done:
    qr_dmat_free(&E);
    return st;
}

qr_status qr_grid_dmat_copy(const qr_grid *g, const qr_dmat *A, qr_dmat **out)
{
    QR_TRY(qr_mpi_agree(g->comm, qr_dmat_create(g, A->m, A->n, out)));
    memcpy((*out)->data, A->data, qr_dmat_local_count(A) * sizeof *A->data);
    return QR_OK;
}

qr_status qr_grid_scaled_error(const qr_grid *g, const qr_grid_scaling *S, const double *L,
                               const double *R, int64_t r, qr_dmat *D, double *err)
{
    QR_TRY(qr_mpi_agree(g->comm, qr_grid_add_product(g, L, r, R, r, -1.0, D)));
    QR_TRY(qr_grid_scaling_apply(g, S, D, 0));
    *err = qr_dmat_local_sumsq(D, NULL);
    MPI_Allreduce(MPI_IN_PLACE, err, 1, MPI_DOUBLE, MPI_SUM, g->comm);
    return QR_OK;
}

/* GPTQ's factor of a module's own transformed Gram Ht (ASER's G~, SERQ's permuted G_t; lower
 * triangle read, factored in place), diag its diagonal: dead channels set to 1 first, as the
 * input group's factor (grid_stats.c) and the serial GPTQ do. */
qr_status qr_grid_module_gptq_factor(const qr_grid *g, const qr_method_opts *o, qr_dmat *Ht,
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

void qr_grid_column_stats(const qr_grid *g, const qr_dmat *W, double *wmax, double *norms)
{
    memset(wmax, 0, (size_t)W->n * sizeof *wmax);
    if (norms) {
        memset(norms, 0, (size_t)W->n * sizeof *norms);
    }
    for (int lj = 0; lj < W->nloc; lj++) {
        int64_t j = qr_dmat_global_col(g, lj);
        const double *col = W->data + (size_t)lj * qr_dmat_lld(W);
        for (int li = 0; li < W->mloc; li++) {
            double a = fabs(col[li]);
            wmax[j] = a > wmax[j] ? a : wmax[j];
            if (norms) {
                norms[j] += col[li] * col[li];
            }
        }
    }
    MPI_Allreduce(MPI_IN_PLACE, wmax, (int)W->n, MPI_DOUBLE, MPI_MAX, g->comm);
    if (norms) {
        MPI_Allreduce(MPI_IN_PLACE, norms, (int)W->n, MPI_DOUBLE, MPI_SUM, g->comm);
    }
}

qr_status qr_grid_smooth_space(const qr_grid *g, const qr_method_opts *o, const qr_dmat *W,
                               const qr_dstats *s, const float *sv, double *cw, qr_dmat **Wt,
                               qr_dmat **Gt, qr_dmat **F)
{
    *F = NULL;
    for (int64_t j = 0; j < W->n; j++) {
        cw[j] = s->gram_diag[j] / ((double)sv[j] * (double)sv[j]);
    }
    QR_TRY(qr_grid_dmat_copy(g, W, Wt));
    QR_TRY(qr_grid_dmat_copy(g, s->G, Gt));
    for (int lj = 0; lj < W->nloc; lj++) {
        double c = (double)sv[qr_dmat_global_col(g, lj)];
        double *col = (*Wt)->data + (size_t)lj * qr_dmat_lld(*Wt);
        for (int li = 0; li < W->mloc; li++) {
            col[li] *= c;
        }
    }
    for (int lj = 0; lj < (*Gt)->nloc; lj++) {
        double sb = (double)sv[qr_dmat_global_col(g, lj)];
        double *col = (*Gt)->data + (size_t)lj * qr_dmat_lld(*Gt);
        for (int li = 0; li < (*Gt)->mloc; li++) {
            col[li] /= (double)sv[qr_dmat_global_row(g, li)] * sb;
        }
    }
    if (o->gptq) {
        QR_TRY(qr_grid_dmat_copy(g, *Gt, F));
        QR_TRY(qr_grid_module_gptq_factor(g, o, *F, cw));
    }
    return QR_OK;
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
    qr_grid_scaling S = {NULL, NULL};
    double *L = NULL, *R = NULL; /* (m, r), (r, n) on every rank */
    qr_qlayer ql;                /* every rank: L and R; the root also main */
    bool smoothed; /* ASER and SERQ always store a smoothing vector (JOINT may: its own) */
    bool qer;      /* LQER, QERA and SRR: a correction under the base method's scaling */
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
    qer = base == QR_METHOD_LQER || base == QR_METHOD_QERA_APPROX || base == QR_METHOD_QERA_EXACT;
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
    if (r > 0 && qer) {
        QR_CHECK(scaling_make(g, base, s, &S, &res->rep));
    }
    res->rep.seconds[QR_STAGE_SCALE] += qr_now() - t0;
    if (o->method == QR_METHOD_ASER) {
        QR_CHECK(qr_grid_aser(g, o, s, W, r, &qloc, res->W_eff, L, R, res->smooth, &res->rep));
    } else if (o->method == QR_METHOD_SERQ) {
        QR_CHECK(qr_grid_serq(g, o, s, W, &qloc, &sideloc, res->W_eff, res->smooth, res->perm,
                              &res->rep));
    } else if (o->method == QR_METHOD_FLRQ) {
        QR_CHECK(qr_grid_flrq(g, o, s, W, &qloc, res->W_eff, L, R, &res->rep));
        r = res->rep.rank_used; /* its flexible rank, at most o->rank */
    } else if (o->method == QR_METHOD_JOINT) {
        QR_CHECK(qr_grid_joint(g, o, s, W, &qloc, res->W_eff, L, R, &res->smooth, &res->rep));
        r = res->rep.rank_used;
    } else if (o->method == QR_METHOD_SRR) {
        QR_CHECK(qr_grid_srr(g, o, s, &S, W, &qloc, res->W_eff, L, R, &res->rep));
    } else {
        QR_CHECK(qr_grid_qer_step(g, o, s, &S, W, r, &qloc, res->W_eff, L, R, &res->rep));
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
    if (g->group_rank == 0 && res->smooth) {
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

/* grid_joint.c: JOINT (src/methods/joint.c) divided over the grid.
 *
 * The same search as the serial method, on distributed matrices: in each input space (unsmoothed,
 * then the SmoothQuant strengths qr_joint_search allows) two starts of fits, each fit a
 * quantization of W - L R (the grid's GPTQ, its factor arriving panel by panel, or local RTN), the
 * whitened rank-r correction of W - deq (the distributed randomized SVD through the space's
 * Cholesky factor) and the objective ||(W - deq - L R) C||² (PDTRMM, summed over the group).
 * A candidate is this rank's codes and L, R (thin, whole on every rank). The unsmoothed space
 * uses the input group's whitening and GPTQ factors; a smoothed one scales copies of W and G
 * locally (the column maxima reduced over the group) and factors its own Gram, as ASER does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/comm.h"
#include "mpi/grid_module_internal.h"
#include "mpi/pdla.h"
#include "src/alloc.h"
#include "src/methods/correction.h"
#include "src/methods/joint.h"
#include "src/progress.h"
#include "src/stage.h"

/* One input space: its weight, GPTQ factor and Hessian diagonal, whitening factor. */
typedef struct {
    const qr_dmat *W;
    qr_grid_hessian H;
    qr_grid_scaling S;
    int64_t r;
    qr_dmat *Wm, *D; /* (m, n) scratch */
    int fits_max;
} space;

/* One fit from L0 R0 (NULL: none), as joint.c's joint_fit. */
static qr_status fit(const qr_grid *g, const qr_method_opts *o, const space *sp, const double *L0,
                     const double *R0, qr_joint_pair *p, qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t m = sp->W->m, n = sp->W->n, r = sp->r;
    double t0 = qr_now();
    memcpy(sp->Wm->data, sp->W->data, qr_dmat_local_count(sp->W) * sizeof *sp->W->data);
    if (L0 && r > 0) {
        QR_TRY(qr_mpi_agree(g->comm, qr_grid_add_product(g, L0, r, R0, r, -1.0, sp->Wm)));
    }
    rep->seconds[QR_STAGE_OTHER] += qr_now() - t0;
    t0 = qr_now();
    QR_TRY(qr_grid_quantize(g, o, &sp->H, sp->Wm, 0.0, &p->q, sp->D, NULL));
    rep->seconds[QR_STAGE_QUANTIZE] += qr_now() - t0;
    t0 = qr_now();
    for (size_t i = 0; i < qr_dmat_local_count(sp->D); i++) { /* W - deq */
        sp->D->data[i] = sp->W->data[i] - sp->D->data[i];
    }
    if (r > 0) {
        st = qr_malloc(&p->L, (size_t)(m * r), sizeof *p->L, "correction L");
        if (st == QR_OK) {
            st = qr_malloc(&p->R, (size_t)(r * n), sizeof *p->R, "correction R");
        }
        QR_TRY(qr_mpi_agree(g->comm, st));
        /* the whitened path leaves D as it is */
        QR_TRY(qr_grid_correction(g, o, &sp->S, "correction", sp->D, r, p->L, p->R, rep));
    }
    QR_TRY(qr_grid_scaled_error(g, &sp->S, p->L, p->R, r, sp->D, &p->err));
    rep->seconds[QR_STAGE_DECOMPOSE] += qr_now() - t0;
    return QR_OK;
}

/* fit as the chain's callback. */
typedef struct {
    const qr_grid *g;
    const qr_method_opts *o;
    const space *sp;
    qr_method_report *rep;
} fit_ctx;

static qr_status fit_step(void *ctx, const double *L0, const double *R0, qr_joint_pair *p)
{
    const fit_ctx *c = ctx;
    return fit(c->g, c->o, c->sp, L0, R0, p, c->rep);
}

/* Both starts in one space (the second from the whitened rank-r part of W itself). */
static qr_status space_fit(const qr_grid *g, const qr_method_opts *o, const space *sp,
                           qr_joint_pair *best, qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t m = sp->W->m, n = sp->W->n;
    double *L0 = NULL, *R0 = NULL;
    fit_ctx c = {g, o, sp, rep};
    QR_CHECK(qr_joint_chain(fit_step, &c, sp->fits_max, sp->r, NULL, NULL, best));
    if (sp->r > 0) {
        double t0 = qr_now();
        st = qr_malloc(&L0, (size_t)(m * sp->r), sizeof *L0, "preserved L");
        if (st == QR_OK) {
            st = qr_malloc(&R0, (size_t)(sp->r * n), sizeof *R0, "preserved R");
        }
        QR_CHECK(qr_mpi_agree(g->comm, st));
        memcpy(sp->D->data, sp->W->data, qr_dmat_local_count(sp->W) * sizeof *sp->W->data);
        QR_CHECK(qr_grid_correction(g, o, &sp->S, "joint-preserve", sp->D, sp->r, L0, R0, rep));
        rep->seconds[QR_STAGE_DECOMPOSE] += qr_now() - t0;
        QR_CHECK(qr_joint_chain(fit_step, &c, sp->fits_max, sp->r, L0, R0, best));
    }
done:
    free(L0);
    free(R0);
    return st;
}

/* ||A||_F² over the group. */
static double sumsq(const qr_grid *g, const qr_dmat *A)
{
    double s = qr_dmat_local_sumsq(A, NULL);
    MPI_Allreduce(MPI_IN_PLACE, &s, 1, MPI_DOUBLE, MPI_SUM, g->comm);
    return s;
}

/* The candidate smoothed with strength alpha and rank rs against *best (total estimated error
 * *best_total); on a win *smooth holds its vector (allocated here). sp brings the scratch. */
static qr_status try_smooth(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                            const qr_dmat *W, double alpha, int64_t rs, space sp,
                            qr_joint_pair *best, double *best_total, float **smooth,
                            qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t n = W->n;
    qr_dmat *Wt = NULL, *Gt = NULL, *F = NULL;
    double *wmax = NULL, *cw = NULL, total, damping = 0.0, t0 = qr_now();
    float *sv = NULL;
    qr_joint_pair cand = {.err = INFINITY};
    qr_stats view = qr_dstats_view(s);
    qr_stage_mark("JOINT smoothing");
    st = qr_malloc(&wmax, (size_t)n, sizeof *wmax, "JOINT column maxima");
    if (st == QR_OK) {
        st = qr_malloc(&cw, (size_t)n, sizeof *cw, "JOINT Hessian diagonal");
    }
    if (st == QR_OK) {
        st = qr_malloc(&sv, (size_t)n, sizeof *sv, "JOINT smoothing vector");
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    qr_grid_column_stats(g, W, wmax, NULL);
    qr_smooth_from_maxima(s->max_abs, wmax, n, alpha, sv);
    QR_CHECK(qr_grid_smooth_space(g, o, W, s, sv, cw, &Wt, &Gt, &F));
    QR_CHECK(qr_pdla_cholesky_damped(g, Gt, o->whiten_lambda0, &damping));
    rep->seconds[QR_STAGE_SCALE] += qr_now() - t0;
    sp.W = Wt;
    sp.H.gptq = F;
    sp.H.diag = cw;
    sp.S.diag = NULL;
    sp.S.chol = Gt;
    sp.r = rs;
    QR_CHECK(space_fit(g, o, &sp, &cand, rep));
    total = cand.err + qr_joint_act_noise(&view, sv, n, sumsq(g, Wt), o->abits);
    if (total < *best_total) {
        *best_total = total;
        qr_joint_pair_free(best);
        *best = cand;
        memset(&cand, 0, sizeof cand);
        free(*smooth);
        *smooth = sv;
        sv = NULL;
        rep->damping = damping;
    }
done:
    qr_joint_pair_free(&cand);
    qr_dmat_free(&Wt);
    qr_dmat_free(&Gt);
    qr_dmat_free(&F);
    free(wmax);
    free(cw);
    free(sv);
    return st;
}

qr_status qr_grid_joint(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                        const qr_dmat *W, qr_qweight *qloc, qr_dmat *W_eff, double *L, double *R,
                        float **smooth, qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t m = W->m, n = W->n, rs = qr_joint_smooth_rank(o, m, n), r;
    qr_joint_pair best = {.err = INFINITY};
    space sp = {W, {s->gptq, s->gram_diag}, {NULL, s->chol}, o->rank, NULL, NULL, 1};
    qr_stats view = qr_dstats_view(s);
    double best_total;
    int spaces;
    memset(qloc, 0, sizeof *qloc);
    *smooth = NULL;
    if (!s->chol || (!s->G && qr_joint_smooths(o, m, n))) { /* qr_dstats_finish keeps them */
        return qr_fail(QR_ERR_INPUT,
                       "joint: needs the input group's Gram and whitening factor (found none)");
    }
    qr_joint_search(o->abits, m, n, &spaces, &sp.fits_max);
    rep->damping = s->chol_damping;
    st = qr_dmat_create(g, m, n, &sp.Wm);
    if (st == QR_OK) {
        st = qr_dmat_create(g, m, n, &sp.D);
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    QR_CHECK(space_fit(g, o, &sp, &best, rep));
    best_total = best.err;
    if (rs >= 0) {
        best_total += qr_joint_act_noise(&view, NULL, n, sumsq(g, W), o->abits);
        for (int a = 0; a + 1 < spaces; a++) {
            QR_CHECK(
                try_smooth(g, o, s, W, qr_joint_alpha(a), rs, sp, &best, &best_total, smooth, rep));
        }
    }
    r = *smooth ? rs : o->rank;
    if (r > 0) {
        memcpy(L, best.L, (size_t)(m * r) * sizeof *L);
        memcpy(R, best.R, (size_t)(r * n) * sizeof *R);
    }
    rep->rank_used = r;
    *qloc = best.q;
    memset(&best.q, 0, sizeof best.q);
    QR_CHECK(qr_mpi_agree(g->comm, qr_grid_dequantize(qloc, W_eff)));
done:
    if (st != QR_OK) {
        qr_qweight_free(qloc);
        qr_free(smooth);
    }
    qr_joint_pair_free(&best);
    qr_dmat_free(&sp.Wm);
    qr_dmat_free(&sp.D);
    return st;
}

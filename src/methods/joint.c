/* joint.c: JOINT, qrecon's own method: the main matrix and the low-rank correction fitted jointly
 * to one objective, the calibration output error ||(W - deq(Q) - L R) S||_F (G = S Sᵀ).
 *
 * GPTQ (H = G) and the whitened rank-r SVD each minimise that objective given the other term, so
 * they are alternated: Q = GPTQ(W - L R), L R = whitened rank-r fit of W - deq(Q), from two
 * starts (L R = 0, which makes the first pair exactly QERA-exact with GPTQ; and L R = the
 * whitened rank-r part of W itself, SRR's full preservation), each for at most fits_max fits
 * while its objective falls; the pair with the lowest objective is kept, so JOINT is never above
 * QERA-exact+GPTQ on the calibration objective.
 *
 * The same fit runs in SmoothQuant-smoothed input spaces (alpha in joint_alphas; the smoothing
 * vector is paid for out of the rank under a budget, qr_joint_smooth_rank), and each module keeps
 * the candidate with the lowest estimated output error at its activation width (o->abits): the
 * (smoothing-invariant) weight objective plus the activation rounding noise,
 * count * peak² / (12 qmax²) * ||W~||²_F, with peak² the estimated squared largest |t_j| of a
 * token (act_noise). Smoothing moves activation range into the weights, which matters most at A4,
 * but it also changes the weight grid (as AWQ's scaling does), which pays at A8 as well. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"
#include "src/methods/correction.h"
#include "src/methods/joint.h"
#include "src/stage.h"

/* A token's largest squared |t_j|, estimated as this many times the largest channel mean square
 * (a peak of twice the rms of the strongest channel), capped by the calibration set's max². */
#define JOINT_PEAK_FACTOR 4.0

/* SmoothQuant strengths tried besides no smoothing in the full search (0.5 and 0.75 alone measured
 * worse at A4; 0.5 first: a search of 2 spaces tries it alone). Against 3 fits per start, 10
 * lowered the KL in 6 of the 8 cells of the equal-bits benchmark (docs/methods.md); large modules
 * run a smaller search (qr_joint_search). */
static const double joint_alphas[] = {0.5, 0.25, 0.75, 1.0};
_Static_assert(sizeof joint_alphas / sizeof joint_alphas[0] + 1 == QR_JOINT_SPACES,
               "QR_JOINT_SPACES counts the unsmoothed space and every strength");

/* The space of one candidate: the (smoothed) weight, its Gram matrix and whitening factor. */
typedef struct {
    const double *W;         /* (d_out, d_in) */
    const double *H;         /* (d_in, d_in) Gram matrix of the transformed input */
    const qr_gptq_factor *F; /* with --gptq: GPTQ's factor of H, made once for the space's fits */
    const qr_scaling *S;
    int64_t r;
    double *Wm, *D; /* (d_out, d_in) scratch */
    int fits_max;   /* fits per start (qr_joint_search) */
} joint_space;

/* One fit from L0 R0 (NULL: none): Q = quantize(W - L0 R0), then the whitened rank-r fit of
 * W - deq(Q) and the objective, into *p. */
static qr_status joint_fit(const qr_method_opts *o, const joint_space *sp, int64_t d_out,
                           int64_t d_in, const double *L0, const double *R0, qr_joint_pair *p,
                           qr_method_report *rep)
{
    qr_status st = QR_OK;
    int64_t r = sp->r;
    qr_rng rng;
    double t0 = qr_now();
    memcpy(sp->Wm, sp->W, (size_t)(d_out * d_in) * sizeof(double));
    if (L0 && r > 0) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d_out, (int)d_in, (int)r, -1.0,
                    L0, (int)r, R0, (int)d_in, 1.0, sp->Wm, (int)d_in);
    }
    rep->seconds[QR_STAGE_OTHER] += qr_now() - t0;
    t0 = qr_now();
    if (sp->F) {
        qr_stage_mark("quantize");
        QR_CHECK(qr_quantize_gptq_factored(sp->Wm, d_out, d_in, sp->F, &o->wq, &p->q));
        qr_qweight_dequantize_f64(&p->q, sp->D);
    } else {
        QR_CHECK(qr_method_quantize(o, sp->Wm, d_out, d_in, sp->H, &p->q, sp->D));
    }
    rep->seconds[QR_STAGE_QUANTIZE] += qr_now() - t0;
    t0 = qr_now();
    for (int64_t i = 0; i < d_out * d_in; i++) {
        sp->D[i] = sp->W[i] - sp->D[i];
    }
    if (r > 0) {
        QR_CHECK(qr_alloc_f64(&p->L, d_out, r, "correction L"));
        QR_CHECK(qr_alloc_f64(&p->R, r, d_in, "correction R"));
        qr_method_rng(o, "correction", &rng);
        QR_CHECK(qr_corr_lowrank(sp->D, d_out, d_in, sp->S, r, &o->svd, &rng, p->L, p->R, NULL));
    }
    QR_CHECK(qr_scaled_error(sp->S, sp->W, &p->q, p->L, p->R, r, d_out, d_in, sp->D, &p->err));
    rep->seconds[QR_STAGE_DECOMPOSE] += qr_now() - t0;
done:
    return st;
}

/* joint_fit as the chain's callback. */
typedef struct {
    const qr_method_opts *o;
    const joint_space *sp;
    int64_t d_out, d_in;
    qr_method_report *rep;
} fit_ctx;

static qr_status fit_step(void *ctx, const double *L0, const double *R0, qr_joint_pair *p)
{
    const fit_ctx *c = ctx;
    return joint_fit(c->o, c->sp, c->d_out, c->d_in, L0, R0, p, c->rep);
}

/* Both starts in one space: the best pair into *best. */
static qr_status joint_space_fit(const qr_method_opts *o, const joint_space *sp, int64_t d_out,
                                 int64_t d_in, qr_joint_pair *best, qr_method_report *rep)
{
    qr_status st = QR_OK;
    double *L0 = NULL, *R0 = NULL;
    fit_ctx c = {o, sp, d_out, d_in, rep};
    qr_rng rng;
    QR_CHECK(qr_joint_chain(fit_step, &c, sp->fits_max, sp->r, NULL, NULL, best));
    if (sp->r > 0) {
        double t0 = qr_now();
        QR_CHECK(qr_alloc_f64(&L0, d_out, sp->r, "preserved L"));
        QR_CHECK(qr_alloc_f64(&R0, sp->r, d_in, "preserved R"));
        qr_method_rng(o, "joint-preserve", &rng);
        QR_CHECK(qr_corr_lowrank(sp->W, d_out, d_in, sp->S, sp->r, &o->svd, &rng, L0, R0, NULL));
        rep->seconds[QR_STAGE_DECOMPOSE] += qr_now() - t0;
        QR_CHECK(qr_joint_chain(fit_step, &c, sp->fits_max, sp->r, L0, R0, best));
    }
done:
    free(L0);
    free(R0);
    return st;
}

/* The estimated activation rounding noise through Wt (d_out, d_in), qr_joint_act_noise. */
static double act_noise(const qr_stats *calib, const float *s, const double *Wt, int64_t d_out,
                        int64_t d_in, int abits)
{
    double w2 = 0.0;
    for (int64_t i = 0; i < d_out * d_in; i++) {
        w2 += Wt[i] * Wt[i];
    }
    return qr_joint_act_noise(calib, s, d_in, w2, abits);
}

/* The smoothed candidate with strength alpha and rank rs, against *best (total estimated
 * error *best_total); on a win out->smooth holds its vector (allocated here). */
static qr_status joint_try_smooth(const qr_method_opts *o, const double *W, int64_t d_out,
                                  int64_t d_in, const qr_stats *calib, double alpha, int64_t rs,
                                  joint_space sp, qr_joint_pair *best, double *best_total,
                                  qr_qlayer *out, qr_method_report *rep)
{
    qr_status st = QR_OK;
    double *Wt = NULL, *Gt = NULL, *wmax = NULL, total, t0 = qr_now();
    float *s = NULL;
    qr_scaling S = {0};
    qr_gptq_factor F = {0};
    qr_joint_pair cand = {.err = INFINITY};
    QR_CHECK(qr_alloc_f64(&Wt, d_out, d_in, "JOINT smoothed weight"));
    QR_CHECK(qr_alloc_f64(&Gt, d_in, d_in, "JOINT smoothed Gram matrix"));
    QR_CHECK(qr_alloc_f64(&wmax, d_in, 1, "JOINT column maxima"));
    QR_CHECK(qr_malloc(&s, (size_t)d_in, sizeof *s, "JOINT smoothing vector"));
    qr_smooth_factors(W, d_out, d_in, calib->max_abs, alpha, wmax, s);
    for (int64_t i = 0; i < d_out; i++) {
        for (int64_t j = 0; j < d_in; j++) {
            Wt[i * d_in + j] = W[i * d_in + j] * (double)s[j];
        }
    }
    qr_gram_transform(calib->G, d_in, NULL, s, Gt);
    QR_CHECK(qr_scaling_whiten(Gt, d_in, o->whiten_lambda0, &S));
    if (o->gptq) {
        QR_CHECK(qr_gptq_factor_make(Gt, d_in, o->wq.gptq_damp, &F));
    }
    rep->seconds[QR_STAGE_SCALE] += qr_now() - t0;
    sp.W = Wt;
    sp.H = Gt;
    sp.F = o->gptq ? &F : NULL;
    sp.S = &S;
    sp.r = rs;
    QR_CHECK(joint_space_fit(o, &sp, d_out, d_in, &cand, rep));
    total = cand.err + act_noise(calib, s, Wt, d_out, d_in, o->abits);
    if (total < *best_total) {
        *best_total = total;
        qr_joint_pair_free(best);
        *best = cand;
        memset(&cand, 0, sizeof cand);
        free(out->smooth);
        out->smooth = s;
        s = NULL;
        rep->damping = S.damping;
    }
done:
    qr_joint_pair_free(&cand);
    qr_gptq_factor_free(&F);
    qr_scaling_free(&S);
    free(Wt);
    free(Gt);
    free(wmax);
    free(s);
    return st;
}

static qr_status joint_run(const qr_method_opts *o, const double *W, int64_t d_out, int64_t d_in,
                           const qr_stats *calib, qr_qlayer *out, qr_method_report *rep)
{
    qr_status st = QR_OK;
    qr_scaling S = {0};
    qr_joint_pair best = {.err = INFINITY};
    qr_gptq_factor F = {0};
    joint_space sp = {W, calib->G, NULL, NULL, o->rank, NULL, NULL, 1};
    double t0 = qr_now(), best_total;
    int64_t rs = qr_joint_smooth_rank(o, d_out, d_in);
    int spaces;
    qr_joint_search(o->abits, d_out, d_in, &spaces, &sp.fits_max);
    QR_CHECK(qr_scaling_for_method(QR_METHOD_QERA_EXACT, calib, o->whiten_lambda0, &S));
    rep->damping = S.damping;
    if (o->gptq) {
        QR_CHECK(qr_gptq_factor_make(calib->G, d_in, o->wq.gptq_damp, &F));
        sp.F = &F;
    }
    rep->seconds[QR_STAGE_SCALE] += qr_now() - t0;
    QR_CHECK(qr_alloc_f64(&sp.Wm, d_out, d_in, "JOINT target"));
    QR_CHECK(qr_alloc_f64(&sp.D, d_out, d_in, "JOINT error"));
    sp.S = &S;
    QR_CHECK(joint_space_fit(o, &sp, d_out, d_in, &best, rep));
    best_total = best.err;
    if (rs >= 0) {
        best_total += act_noise(calib, NULL, W, d_out, d_in, o->abits);
        for (int a = 0; a + 1 < spaces; a++) {
            QR_CHECK(joint_try_smooth(o, W, d_out, d_in, calib, qr_joint_alpha(a), rs, sp, &best,
                                      &best_total, out, rep));
        }
    }
    out->main = best.q;
    memset(&best.q, 0, sizeof best.q);
    QR_CHECK(qr_qlayer_set_lowrank(out, best.L, best.R, out->smooth ? rs : o->rank));
done:
    qr_joint_pair_free(&best);
    qr_gptq_factor_free(&F);
    qr_scaling_free(&S);
    free(sp.Wm);
    free(sp.D);
    return st;
}

const qr_method_impl qr_method_joint = {"joint", QR_METHOD_JOINT, true, joint_run};

double qr_joint_alpha(int a)
{
    return joint_alphas[a];
}

double qr_joint_act_noise(const qr_stats *calib, const float *s, int64_t d_in, double w2, int abits)
{
    double qmax = abits == 4 ? 7.0 : 127.0;
    double peak_max = 0.0, ms_max = 0.0, peak2, n = calib->count > 0 ? calib->count : 1;
    if (abits != 4 && abits != 8) {
        return 0.0;
    }
    for (int64_t j = 0; j < d_in; j++) {
        double sj = s ? (double)s[j] : 1.0, a = calib->max_abs[j] / sj;
        double ms = calib->sum_sq[j] / n / (sj * sj);
        peak_max = a * a > peak_max ? a * a : peak_max;
        ms_max = ms > ms_max ? ms : ms_max;
    }
    peak2 = JOINT_PEAK_FACTOR * ms_max < peak_max ? JOINT_PEAK_FACTOR * ms_max : peak_max;
    return n * peak2 / (12.0 * qmax * qmax) * w2;
}

void qr_joint_pair_free(qr_joint_pair *p)
{
    qr_qweight_free(&p->q);
    free(p->L);
    free(p->R);
    memset(p, 0, sizeof *p);
    p->err = INFINITY;
}

qr_status qr_joint_chain(qr_joint_fit_fn fit, void *ctx, int fits_max, int64_t r, const double *L0,
                         const double *R0, qr_joint_pair *best)
{
    qr_status st = QR_OK;
    qr_joint_pair cur = {.err = INFINITY}, nw = {.err = INFINITY};
    for (int k = 0; k < fits_max; k++) {
        QR_CHECK(fit(ctx, k == 0 ? L0 : cur.L, k == 0 ? R0 : cur.R, &nw));
        if (!(nw.err < cur.err)) {
            break;
        }
        qr_joint_pair_free(&cur);
        cur = nw;
        memset(&nw, 0, sizeof nw);
        nw.err = INFINITY;
        if (r == 0) {
            break; /* no correction to alternate with */
        }
    }
    if (cur.err < best->err) { /* the chain's best competes with *best */
        qr_joint_pair_free(best);
        *best = cur;
        memset(&cur, 0, sizeof cur);
    }
done:
    qr_joint_pair_free(&nw);
    qr_joint_pair_free(&cur);
    return st;
}

bool qr_joint_smooths(const qr_method_opts *o, int64_t d_out, int64_t d_in)
{
    qr_method_opts ro;
    int spaces, fits;
    if (qr_method_resolve(o, "joint", d_out, d_in, &ro) != QR_OK) {
        return false; /* the module is refused before it runs */
    }
    qr_joint_search(ro.abits, d_out, d_in, &spaces, &fits);
    return spaces > 1 && qr_joint_smooth_rank(&ro, d_out, d_in) >= 0;
}

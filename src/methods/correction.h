/* correction.h: the building blocks the methods in src/methods/ share, written once: input-space
 * scalings (LQER, QERA-approx, whitening), the scaled low-rank correction, the main-matrix
 * quantizer, Gram-matrix transforms, stage timing and per-stage random streams. Internal to
 * src/methods/ and its tests; not a public API of qrecon. */
#ifndef QR_METHODS_CORRECTION_H
#define QR_METHODS_CORRECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/alloc.h"
#include "src/method.h"
#include "src/progress.h"

/* Lower clamp of LQER/QERA/FLRQ activation scales (the L²QER paper's 1e-4). */
#define QR_SCALE_FLOOR 1e-4

/* A scaling S of the input space (d): diagonal, or the lower Cholesky factor of a Gram matrix
 * (whitening). Owns its arrays; free with qr_scaling_free. */
typedef struct {
    int64_t d;
    double *diag;   /* (d) positive, or NULL */
    double *chol;   /* (d, d) lower triangular (upper zero), or NULL */
    double damping; /* absolute damping added to the Gram diagonal (whitening only) */
    bool borrowed;  /* chol belongs to the statistics' cache: qr_scaling_free leaves it */
} qr_scaling;

void qr_scaling_free(qr_scaling *S);

/* Diagonal scaling from per-channel magnitudes v (d): clamp at QR_SCALE_FLOOR, then divide by
 * sqrt(min * max) so the scale is centred on 1 (L²QER). */
qr_status qr_scaling_diag(const double *v, int64_t d, qr_scaling *S);

/* LQER: v = per-batch mean |x_j|, running max over batches. QERA-approx: v = rms of x_j. */
qr_status qr_scaling_lqer(const qr_stats *st, qr_scaling *S);
qr_status qr_scaling_qera_approx(const qr_stats *st, qr_scaling *S);

/* Whitening: S = Cholesky factor of G (d, d) (copied), damped per qr_cholesky_damped(lambda0). */
qr_status qr_scaling_whiten(const double *G, int64_t d, double lambda0, qr_scaling *S);

/* The scaling of base method m (LQER, QERA_APPROX or QERA_EXACT) from untransformed statistics.
 * The whitening factor is borrowed from st->cache when it holds one for lambda0, else computed and
 * left there for the next module of the same input. */
qr_status qr_scaling_for_method(qr_method_id m, const qr_stats *st, double lambda0, qr_scaling *S);

/* A (m, d) := A S, or A S^-1 when inverse. */
qr_status qr_scaling_apply(const qr_scaling *S, double *A, int64_t m, bool inverse);

/* Rank-r truncated SVD of A S (A (m, n)): U (m, r), sv (r), Vt (r, n). For a whitening S on the
 * randomized path (svd options and rank as qr_svd_truncated decides) A S is never formed: every
 * product goes through A and the triangular factor (m n l + n^2 l instead of m n^2 / 2 work);
 * otherwise A S is formed and qr_svd_truncated runs on it. rng as for qr_svd_truncated. */
qr_status qr_scaled_svd(const double *A, int64_t m, int64_t n, const qr_scaling *S, int64_t r,
                        const qr_svd_opts *svd, qr_rng *rng, double *U, double *sv, double *Vt);

/* Whether qr_scaled_svd takes the implicit path for these arguments (given an rng). */
bool qr_scaled_svd_implicit(const qr_scaling *S, int64_t m, int64_t n, int64_t r,
                            const qr_svd_opts *svd);

/* The rank-r correction of E (d_out, d_in) under S: with the truncated SVD E S ≈ U Σ Vt,
 * L = U Σ (d_out, r) and R = Vt S^-1 (r, d_in), so L R minimises ||(E - L R) S||_F over rank r
 * (for whitening: the output error on the calibration set). sigma (r) may be NULL. r == 0 is a
 * no-op. rng: the stream for a randomized SVD. */
qr_status qr_corr_lowrank(const double *E, int64_t d_out, int64_t d_in, const qr_scaling *S,
                          int64_t r, const qr_svd_opts *svd, qr_rng *rng, double *L, double *R,
                          double *sigma);

/* Store L (d_out, r) and R (r, d_in) float64 into out->L, out->R (float32, allocated here) and
 * set out->rank = r. r == 0 leaves them NULL. */
qr_status qr_qlayer_set_lowrank(qr_qlayer *out, const double *L, const double *R, int64_t r);

/* Quantize the main weight W (d_out, d_in) with o->wq: GPTQ with H (d_in, d_in) when o->gptq,
 * else RTN (clip search weighted by diag(H) when H is given). deq (d_out, d_in) may be NULL, else
 * it receives the dequantized matrix in float64. */
qr_status qr_method_quantize(const qr_method_opts *o, const double *W, int64_t d_out, int64_t d_in,
                             const double *H, qr_qweight *q, double *deq);

/* RTN of W (d_out, d_in) with every group's range shrunk by the fixed factor clip (FLRQ's BLC).
 * q is allocated here; deq (d_out, d_in) may be NULL, else it gets the dequantized values. */
qr_status qr_quantize_fixed_clip(const double *W, int64_t d_out, int64_t d_in,
                                 const qr_wquant_opts *wq, double clip, qr_qweight *q, double *deq);

/* Gram matrix of the transformed input t_j = x_perm[j] / s_j: Gt (d, d) from G (d, d); perm and s
 * may be NULL (identity, ones). */
void qr_gram_transform(const double *G, int64_t d, const int32_t *perm, const float *s, double *Gt);

/* The module's random stream for one stage: seeded from o->module_name, o->seed and the stage
 * name, so stages do not shift each other's draws. */
void qr_method_rng(const qr_method_opts *o, const char *stage, qr_rng *rng);

/* A channel and its score, for ordering channels by salience (ASER, SERQ). */
typedef struct {
    int64_t j;
    double v;
} qr_channel_score;

/* Sort (d) channel scores by score descending, ties by ascending channel, so the order never
 * depends on the sort's internals. */
void qr_channel_sort_desc(qr_channel_score *c, int64_t d);

/* Allocate n doubles (what = name for the message), not zeroed. */
qr_status qr_alloc_f64(double **p, int64_t n1, int64_t n2, const char *what);

/* One QER step: quantize Wm (d_out, d_in) per o (H (d_in, d_in) for GPTQ / clip weights, may be
 * NULL), E = Wm - deq(Q), and the rank-r correction of E under S from the "correction" stream.
 * Fills q; *L (d_out, r) and *R (r, d_in) are allocated here (NULL when r == 0), caller frees.
 * Stage times are added to rep. */
qr_status qr_qer_step(const qr_method_opts *o, const double *Wm, int64_t d_out, int64_t d_in,
                      const double *H, const qr_scaling *S, int64_t r, qr_qweight *q, double **L,
                      double **R, qr_method_report *rep);

/* The whole of LQER / QERA-approx / QERA-exact (base): scaling from calib, then qr_qer_step with
 * rank o->rank, stored into out. */
qr_status qr_qer_run(qr_method_id base, const qr_method_opts *o, const double *W, int64_t d_out,
                     int64_t d_in, const qr_stats *calib, qr_qlayer *out, qr_method_report *rep);

/* ||(W - deq(q) - L R) S||_F² (L (d_out, r), R (r, d_in); r may be 0): the scaled calibration
 * error the whitened correction, GPTQ and SRR's check minimise. D (d_out, d_in) is scratch. */
qr_status qr_scaled_error(const qr_scaling *S, const double *W, const qr_qweight *q,
                          const double *L, const double *R, int64_t r, int64_t d_out, int64_t d_in,
                          double *D, double *err);

/* Smoothing factors are kept in this range so a dead channel or column cannot blow up W~. */
#define QR_SMOOTH_MIN 1e-5
#define QR_SMOOTH_MAX 1e5

/* SmoothQuant's smoothing of W (d_out, d_in): s_j = max_abs_j^alpha / max_i|W_ij|^(1-alpha)
 * (1 for a channel with no activation or an all-zero column), clamped to [QR_SMOOTH_MIN,
 * QR_SMOOTH_MAX], as float32 (the stored value, the one to use everywhere). wmax (d_in) receives
 * max_i |W_ij|. ASER and JOINT. */
void qr_smooth_factors(const double *W, int64_t d_out, int64_t d_in, const double *max_abs,
                       double alpha, double *wmax, float *s);

/* The rule of qr_smooth_factors from the column maxima wmax (d_in) already known (a grid reduces
 * them over its process rows): s (d_in) float32. */
void qr_smooth_from_maxima(const double *max_abs, const double *wmax, int64_t d_in, double alpha,
                           float *s);

#endif

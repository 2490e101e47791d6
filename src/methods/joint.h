/* joint.h: JOINT's rules, shared by the method (src/methods/joint.c) and its twin on a grid
 * (mpi/grid_joint.c), so both search the same spaces and rank their candidates alike. */
#ifndef QR_METHODS_JOINT_H
#define QR_METHODS_JOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "src/method.h"
#include "src/qlayer.h"
#include "src/stats.h"
#include "src/status.h"

/* A candidate: the main matrix's codes (on a grid: this rank's blocks) and the correction. */
typedef struct {
    qr_qweight q;
    double *L, *R; /* (d_out, r), (r, d_in), whole */
    double err;    /* ||(W - deq(q) - L R) C||_F², C the space's whitening factor */
} qr_joint_pair;

void qr_joint_pair_free(qr_joint_pair *p); /* frees and resets: err = INFINITY */

/* One fit from L0 R0 (NULL: none) into *p (empty on entry): Q = quantize(W - L0 R0), the whitened
 * rank-r fit of W - deq(Q), and the objective. */
typedef qr_status (*qr_joint_fit_fn)(void *ctx, const double *L0, const double *R0,
                                     qr_joint_pair *p);

/* One start: fit while the objective falls, at most fits_max fits (one when r == 0: nothing to
 * alternate with); the chain's best pair replaces *best when lower (the other is freed). The
 * serial method and its grid twin run this one search. */
qr_status qr_joint_chain(qr_joint_fit_fn fit, void *ctx, int fits_max, int64_t r, const double *L0,
                         const double *R0, qr_joint_pair *best);

/* Whether JOINT searches a smoothed space on a module (d_out, d_in) with options o (QR_AUTO
 * resolved here): the smoothing vector fits (qr_joint_smooth_rank >= 0) and the search has more
 * than the unsmoothed space (qr_joint_search). Only then does it need G itself. */
bool qr_joint_smooths(const qr_method_opts *o, int64_t d_out, int64_t d_in);

/* The a-th SmoothQuant strength JOINT tries besides no smoothing, a = 0 .. QR_JOINT_SPACES - 2
 * (0.5 first: a search of two spaces tries it alone). */
double qr_joint_alpha(int a);

/* The estimated rounding noise of per-token abits-bit activations (src/quant/act.c: largest code
 * qmax = 2^(abits-1) - 1) of the smoothed input t = x / s (s NULL: ones) through a weight of
 * squared Frobenius norm w2: count * peak² / (12 qmax²) * w2, peak² a token's largest squared
 * |t_j| (4 times the largest channel mean square, capped by the calibration set's max²); 0 for
 * float activations. */
double qr_joint_act_noise(const qr_stats *calib, const float *s, int64_t d_in, double w2,
                          int abits);

#endif

/* flrq.h: FLRQ's rules, shared by the method (src/methods/flrq.c) and its twin on a grid
 * (mpi/grid_flrq.c), so both choose the same rank, clip ratios and error factor. */
#ifndef QR_METHODS_FLRQ_H
#define QR_METHODS_FLRQ_H

#include <stdbool.h>
#include <stdint.h>

#include "src/method.h"

/* Bits per weight of the main matrix the rank rule weighs the correction against. */
#define QR_FLRQ_WBITS 4.0
/* Above this d_in the exact error evaluation (d_out d_in^2 per candidate) costs more than the
 * whole rest of the method, so it is sketched. */
#define QR_FLRQ_EXACT_ERR_MAX_DIN 512
/* Sketch width of the output-error evaluation: relative standard error about sqrt(2/p) = 12% on
 * the absolute value, far less on differences between candidates (common Omega). */
#define QR_FLRQ_ERR_SKETCH 128
/* BLC clip grid: c = 1.0, 0.95, ..., 0.80 (the range shrink factors tried per refit). */
#define QR_FLRQ_CLIP_STEPS 5
#define QR_FLRQ_CLIP_STEP 0.05

/* The most rank-1 components the sketch looks for on a module (m, n) = (d_out, d_in): o->rank,
 * at most the memory budget 16 r (m + n) <= o->flrq_mem_budget * 4 m n. */
int64_t qr_flrq_max_rank(const qr_method_opts *o, int64_t m, int64_t n);

/* Whether rank r pays for itself: 1 + 16 r (m + n) / (4 m n) <= (4 + log2(amax0 / amax)) / 4,
 * amax0 and amax the largest |entry| of the weight and of its residual after r components. */
bool qr_flrq_rank_pays(int64_t r, int64_t m, int64_t n, double amax0, double amax);

/* Columns of the output-error factor Z for d_in = n: n (exact) up to QR_FLRQ_EXACT_ERR_MAX_DIN,
 * else QR_FLRQ_ERR_SKETCH. */
int64_t qr_flrq_error_width(int64_t n);

/* The c-th clip ratio of the BLC grid, c = 0 .. QR_FLRQ_CLIP_STEPS - 1. */
double qr_flrq_clip(int c);

#endif

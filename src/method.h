/* method.h: the error-reconstruction methods behind one interface.
 *
 * A method turns one linear module's float64 weight W (d_out, d_in) and the statistics of its
 * calibration input (src/stats.h) into a quantized module (src/qlayer.h): INT4 main matrix, and
 * where the method has them a smoothing vector, a channel permutation, a low-rank correction L·R or
 * a salient side matrix. Every method lives in one file under src/methods/ and exposes one
 * `const qr_method_impl qr_method_<name>`; the table in method.c lists them, so a new method is one
 * file and one table line. What each method computes: ../shared/METHODS.md and docs/methods.md.
 *
 * No MPI, no files, not collective. Random draws come from the module's own stream (seeded from
 * module_name and seed), so results do not depend on how modules are spread over ranks. */
#ifndef QR_METHOD_H
#define QR_METHOD_H

#include <stdbool.h>
#include <stdint.h>

#include "src/linalg.h"
#include "src/qlayer.h"
#include "src/quant.h"
#include "src/stats.h"
#include "src/status.h"

/* Stages timed in qr_method_report.seconds. */
typedef enum {
    QR_STAGE_SCALE = 0, /* scaling, smoothing, whitening factor, salient channel choice */
    QR_STAGE_QUANTIZE,  /* the INT4 quantizers (main and side matrices, clip searches) */
    QR_STAGE_DECOMPOSE, /* SVDs, sketches, rank choice */
    QR_STAGE_OTHER,     /* error matrices, copies, output-error evaluation */
    QR_STAGE_COUNT
} qr_method_stage;

const char *qr_method_stage_name(qr_method_stage s); /* "scale", "quantize", "decompose", "other" */

typedef struct {
    qr_method_id method;
    qr_wquant_opts wq;     /* main weight quantizer */
    bool gptq;             /* GPTQ instead of RTN for the main weight (see docs/methods.md) */
    int64_t rank;          /* r (LQER/QERA/ASER/SRR; FLRQ: the maximum); QR_AUTO: the rule */
    int64_t n_salient;     /* ASER f, SERQ k; QR_AUTO: the rule (qr_method_resolve) */
    double bits;           /* budget: bits per weight of every module at most this (0: none) */
    double smooth_alpha;   /* ASER SmoothQuant alpha (default 0.5) */
    qr_method_id srr_base; /* SRR scaling: LQER, QERA_APPROX or QERA_EXACT */
    int64_t srr_k;         /* SRR preserved rank; -1: the k* rule */
    double
        flrq_mem_budget;   /* FLRQ: L,R bits at most this fraction of the INT4 weight bits (0.20) */
    int flrq_sketch_iters; /* FLRQ: power iterations of each rank-1 sketch (paper 2) */
    int flrq_blc_iters;    /* FLRQ: BLC alternations after the first fit (default 2) */
    double whiten_lambda0; /* first relative damping of the whitening Cholesky (QR_CHOL_LAMBDA0) */
    qr_svd_opts svd;       /* truncated SVD of every decomposition */
    int abits;             /* activation bits the module will run with: 8, 4, 0 = float (JOINT) */
    uint64_t seed;         /* user seed */
    const char
        *module_name; /* seeds the module's random stream (qr_rng_for_name); NULL = "module" */
} qr_method_opts;

/* rank or n_salient derived from the module's shape and the bits budget (qr_method_resolve). */
#define QR_AUTO (-1)
/* The correction's share of the bits per weight when no budget is given: 0.25 bit/w, which is
 * rank 32 at 4096 x 4096 (the papers' setting). */
#define QR_AUTO_EXTRA_BITS 0.25

/* The method `quantize` and `plan` use when none is named. */
#define QR_METHOD_DEFAULT QR_METHOD_SRR

/* Defaults for method m (the one place they are written): group-128 symmetric RTN main weight
 * (ASER: per-channel, group 0), rank and n_salient QR_AUTO, no bits budget, alpha 0.5, SRR on
 * QERA-exact with the k* rule, FLRQ budget 0.20 with 2 sketch iterations and 2 BLC alternations,
 * default SVD options (qr_svd_opts_default), seed 0; GPTQ main matrices only for JOINT; abits 8. */
void qr_method_opts_default(qr_method_opts *o, qr_method_id m);

/* The one rule for QR_AUTO values and the bits budget, for a module of shape (m, n) = (d_out,
 * d_in). base = bits per weight of the main matrix (4 per code, 32 per scale, 4 per zero point)
 * plus the smoothing vector (ASER, SERQ) and the permutation (SERQ), 32 / m each; extra = B - base
 * under a budget B (o->bits > 0; QR_ERR_INPUT when B < base), else QR_AUTO_EXTRA_BITS.
 *   rank (LQER, QERA, ASER, SRR; FLRQ's maximum): r = floor(extra m n / (16 (m + n))), at most
 *     min(m, n); without a budget at least 1;
 *   ASER f: min(r, max(1, floor(n / 128))) (never more zeroed channels than the rank carries);
 *   SERQ k: without a budget max(1, floor(n / 32)); under a budget the most the side matrix fits,
 *     floor((extra n - 32 - 4 asym) / 4), within 0..n.
 * Values that are not QR_AUTO are kept. *out = *o with rank and n_salient resolved (rank 0 for
 * RTN and SERQ, which store no low-rank term). Not a check: qr_method_check refuses the rest. */
qr_status qr_method_resolve(const qr_method_opts *o, const char *who, int64_t d_out, int64_t d_in,
                            qr_method_opts *out);

/* The bits per weight a module of shape (d_out, d_in) stores at most with resolved options o:
 * as qr_qlayer_bits_per_weight, with FLRQ at its maximum rank and SERQ's k clamped to d_in. */
double qr_method_bits_bound(const qr_method_opts *o, int64_t d_out, int64_t d_in);

/* Check o against a module of shape (d_out, d_in) without running anything (QR_AUTO values
 * resolved first; a budget the resolved module would exceed is refused): the same checks
 * qr_method_run makes first, so a job can refuse a bad option before its first module. `who`
 * names the module in the message. */
qr_status qr_method_check(const qr_method_opts *o, const char *who, int64_t d_out, int64_t d_in);

/* What one run measured and chose. */
typedef struct {
    double seconds[QR_STAGE_COUNT]; /* wall seconds per stage */
    int64_t rank_used;              /* columns of L (FLRQ: the flexible rank) */
    int64_t srr_k_used;             /* SRR: preserved rank k (-1 for other methods) */
    int64_t srr_k_rule;             /* SRR: the k the rule (or --srr-k) chose; srr_k_used is it,
                                     * or 0 when the base method's layer was better (-1: other) */
    int64_t n_salient_used;         /* ASER: zeroed channels; SERQ: side-matrix channels */
    double damping;                 /* absolute damping added to diag(G) for whitening (0: none) */
    double clip_ratio;              /* FLRQ: the BLC clip ratio kept (1.0 for other methods) */
    double calib_out_err;           /* FLRQ: relative output error on calibration (else -1) */
} qr_method_report;

/* A method's entry in the table. run gets validated arguments, an out with method, d_out and d_in
 * set and everything else zero, and a report zeroed except srr_k_used = srr_k_rule = -1,
 * clip_ratio = 1 and
 * calib_out_err = -1; it adds its stage times to rep->seconds. On failure qr_method_run frees
 * whatever run allocated in out. Sizes were checked to fit a BLAS int, so methods may narrow
 * d_out, d_in and ranks with a plain cast. */
typedef qr_status (*qr_method_run_fn)(const qr_method_opts *o, const double *W, int64_t d_out,
                                      int64_t d_in, const qr_stats *calib, qr_qlayer *out,
                                      qr_method_report *rep);
typedef struct {
    const char *name; /* as qr_method_name() */
    qr_method_id id;
    bool needs_stats; /* calib must be given (RTN needs it only for GPTQ or a clip search) */
    qr_method_run_fn run;
} qr_method_impl;

/* The table entry of method m, NULL when there is none. */
const qr_method_impl *qr_method_lookup(qr_method_id m);

/* Quantize one module with method o->method on this process (a module divided over a grid runs
 * mpi/grid_module.h's twin). W (d_out, d_in) float64 row-major; calib: statistics
 * of this module's calibration input (d == d_in; may be NULL only for plain RTN). Fills *out (owned
 * by the caller, free with qr_qlayer_free; zeroed on failure) including bits_per_weight; rep may be
 * NULL. Not collective. QR_ERR_INPUT for bad shapes or options. */
qr_status qr_method_run(const qr_method_opts *o, const double *W, int64_t d_out, int64_t d_in,
                        const qr_stats *calib, qr_qlayer *out, qr_method_report *rep);

/* Bits stored for a quantized matrix: 4 per code, 32 per float32 scale, 4 per zero point. */
double qr_qweight_bits(const qr_qweight *q);

/* Stored bits of a module divided by d_out * d_in: main and side matrices (qr_qweight_bits),
 * L and R at 16 bits per entry (float16-equivalent, though held as float32 in memory), the
 * smoothing vector at 32 bits and the permutation at 32 bits per entry. */
double qr_qlayer_bits_per_weight(const qr_qlayer *ql);

/* SRR's k* rule: k* = argmin_{0<=k<=r} rho_k(SW) rho_{r-k}(S E_rand), with rho_p = 1 -
 * sum_{i<=p} sigma_i^2 / total. sw, se (r): the top-r singular values (descending) of the scaled
 * weight and of the scaled random matrix; sw_total, se_total: their squared Frobenius norms. The
 * smallest k wins ties. */
/* JOINT (resolved options o, a module (d_out, d_in)): the rank it keeps when it also stores a
 * smoothing vector (32 / d_out bits per weight more), the most that fits the budget o->bits, at
 * most o->rank; o->rank without a budget; -1 when the vector itself does not fit. */
int64_t qr_joint_smooth_rank(const qr_method_opts *o, int64_t d_out, int64_t d_in);
/* The input spaces JOINT's full search fits in: unsmoothed and four SmoothQuant strengths. */
#define QR_JOINT_SPACES 5
/* Most fits per start (each a GPTQ sweep and a whitened SVD; a start stops when its objective
 * stops falling): the full search's cap. */
#define QR_JOINT_MAX_FITS 10
/* The fits per start the plan counts for JOINT, in tenths of the start's cap (a start stops when
 * its objective stops falling): measured means 8.2 of 10 on stories260K and 5.1 of 10 on
 * babyllama105; 0.8 of caps of 3 to 5 fit the 2048 / 5504 bench (tests/bench/grid_memory.sh). */
#define QR_JOINT_FITS_TENTHS 8
/* JOINT's work bound, in d_out·d_in² units (one GPTQ sweep of a module costs one): the search gets
 * QR_JOINT_WORK / (d_out d_in²) sweeps, at least QR_JOINT_MIN_SWEEPS, at most the full search's
 * (QR_JOINT_SPACES × 2 starts × QR_JOINT_MAX_FITS = 100). 4 × 4096³: four sweeps at 4096 × 4096,
 * the full search up to about 1400 × 1400. */
#ifndef QR_JOINT_WORK /* a compile-time override measures the bounded search on small models */
#define QR_JOINT_WORK (4.0 * 4096.0 * 4096.0 * 4096.0)
#endif
#define QR_JOINT_MIN_SWEEPS 4

/* How much of its search JOINT runs on a module (d_out, d_in) at activation width abits: the
 * input spaces (1: unsmoothed; 2: and alpha 0.5; QR_JOINT_SPACES: every strength) and the most
 * fits per start, from the work bound above: the full search on small modules, four GPTQ sweeps
 * (about four times QERA-exact+GPTQ) at 7B widths. Smoothing is kept at A4 down to 2 spaces,
 * dropped first at A8 (where it gained a few percent on the small models). */
void qr_joint_search(int abits, int64_t d_out, int64_t d_in, int *spaces, int *fits);

int64_t qr_srr_kstar(const double *sw, double sw_total, const double *se, double se_total,
                     int64_t r);

#endif

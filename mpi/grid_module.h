/* grid_module.h: one module's statistics, quantization, correction and metrics divided over the P x
 * Q grid of a rank group (`quantize --grid PxQ`), so that no rank holds an n x n or m x n matrix
 * whole (../shared/SCALE.md, docs/distributed.md).
 *
 * Every matrix lives block-cyclic on the grid (mpi/blacs.h) with a block size that is a multiple of
 * the weight quantization group, so a group never straddles two ranks and the main quantization is
 * local to each rank's blocks:
 *   statistics   the calibration windows split over the ranks (each reads only its own); G = XᵀX
 *                from each rank's rows panel by panel, every nb x nb block reduced to the rank
 *                that owns it; the per-channel vectors (length n) kept whole on every rank
 *   scaling      LQER / QERA-approx diagonal scales from those vectors; QERA-exact whitening by
 *                Cholesky of G, computed once per input group and reused by its modules
 *   correction   E = W - deq(Q) local; E S by PDTRMM or a local column scaling; the randomized SVD
 *                (PDGEMM, PDGEQRF); R = Vt S^-1 by PDTRSM; L (m, r) and R (r, n) are small and end
 *                up on every rank
 *   metrics      the held-out sample on every rank times its own weight blocks (float32),
 *                partial outputs summed over a process row, norms reduced
 * The group root finally holds the module's INT4 codes (m n / 2 bytes, gathered to write its part)
 * and never a float copy of an m x n matrix.
 *
 * Methods on this path: rtn (round to nearest, optional clip search), lqer, qera-approx,
 * qera-exact, srr, aser (its smoothed weight and Gram local scalings, its own whitening factor per
 * module), serq (on whole rows: its column permutation is local there), flrq (its sketches'
 * products local, their vectors summed; its output error through the input group's whitening
 * factor) and joint (its fits on distributed matrices, a smoothed space's Gram factored per
 * module), each with or without --gptq: every method, on the layout qr_grid_layout gives. The
 * statistics live in mpi/grid_stats.c, the module's shared steps in
 * mpi/grid_module.c (mpi/grid_module_internal.h), the methods in mpi/grid_<method>.c, the metrics
 * in mpi/grid_metrics.c.
 * Every function is collective over the grid's communicator unless it says otherwise. */
#ifndef QR_MPI_GRID_MODULE_H
#define QR_MPI_GRID_MODULE_H

#include <stdbool.h>
#include <stdint.h>

#include "mpi/blacs.h"
#include "src/method.h"
#include "src/metrics.h"
#include "src/qlayer.h"
#include "src/status.h"

/* The grid block size for weight groups of `group` columns on a grid of q columns: with q > 1 a
 * multiple of the group (so a group never straddles two ranks), at least QR_GRID_DEFAULT_NB;
 * with q == 1, QR_GRID_DEFAULT_NB (rows are whole on every rank). */
int qr_grid_block_for_group(int64_t group, int q);

/* The grid a group of grid[0] x grid[1] ranks is laid out as for options o: GPTQ's column sweep,
 * SERQ's column permutation and one group per row (--group 0) need whole rows on a rank, so
 * there a P x Q group works as (P·Q) x 1; otherwise P x Q. Returns what needs whole rows ("--gptq",
 * "serq", "one group per row") when the layout differs from grid, else NULL. Not collective. */
const char *qr_grid_layout(const qr_method_opts *o, const int grid[2], int layout[2]);

/* The batch (calibration window) this rank is summing |x| over, and the batches it holds only
 * part of: the group's rows are split without regard to batches, so a batch may straddle ranks;
 * its mean |x| needs the partial sums of every rank that holds a piece (qr_dstats_finish). */
typedef struct {
    int64_t index;   /* the batch, -1: none */
    int64_t rows;    /* its rows summed here */
    bool from_start; /* this rank holds its first row */
    double *sum;     /* (d) sum |x_j| over those rows */
} qr_dstats_batch;

/* Calibration rows each rank holds at once while accumulating the statistics (its share comes
 * in rounds), and the float64 bytes of one panel of the Gram (qr_grid_gram_panel). */
#define QR_GRID_STATS_ROUND_BYTES ((size_t)64 << 20)
#define QR_GRID_GRAM_PANEL_BYTES ((size_t)8 << 20)
/* The panel width at which the Gram's products run near a single dsyrk's rate: a narrower panel
 * packs all of X again for few columns (128 columns ran at 70% of it, 256 at 80%, 384 and 512
 * at 85-90%). */
#define QR_GRID_GRAM_PANEL_COLS 512

/* Local weights the grid's RTN quantizes at once: about 256 KiB of float64 rows, so a chunk's rows
 * and its dequantized copy stay in cache between the copies in and out of the local part. */
#define QR_GRID_QUANT_CHUNK 32768

/* Columns of G one product forms on a group of `ranks` (a multiple of nb; at least nb):
 * QR_GRID_GRAM_PANEL_COLS while two (d, panel) float64 panels fit in a quarter of the rank's
 * share of G (the statistics must not raise the rank's peak), at least QR_GRID_GRAM_PANEL_BYTES
 * of them. Not collective. */
int64_t qr_grid_gram_panel(int64_t d, int nb, int ranks);

/* Statistics of one layer input, distributed. */
typedef struct {
    int64_t d, count, n_batches;
    int64_t batch, total;       /* rows per batch, rows over the group (the batches' bounds) */
    qr_dstats_batch open;       /* the batch being summed */
    qr_dstats_batch part[2];    /* the batches this rank holds only part of (the first, the last) */
    qr_dmat *G;                 /* (d, d): sum x xᵀ, lower triangle */
    double *max_abs, *sum_abs;  /* (d) whole on every rank */
    double *sum_sq;             /* (d) */
    double *batch_mean_abs_max; /* (d) max over batches of the batch's mean |x_j| */
    double *gram_diag;          /* (d) diag(G), after qr_dstats_finish */
    qr_dmat *chol;              /* (d, d) the whitening factor (G factored in place), or NULL */
    double chol_damping;        /* absolute damping the factorization added to diag(G) */
    qr_dmat *gptq; /* (d, d) GPTQ's factor L2 (U = L2ᵀ, qr_pdla_gptq_factor), or NULL */
} qr_dstats;

/* Empty statistics of d channels over `total` rows in batches of `batch` (the last may be
 * shorter). Not collective, but every rank of the group makes the same call. */
qr_status qr_dstats_create(const qr_grid *g, int64_t d, int64_t total, int64_t batch,
                           qr_dstats **out);
void qr_dstats_free(qr_dstats **s); /* not collective; NULL-safe, clears the pointer */

/* This rank's share of the `total` rows: [*row0, *row0 + count), contiguous, rank by rank in
 * group order, the counts differing by at most one. Not collective. */
int64_t qr_dstats_share(const qr_grid *g, int64_t total, int64_t *row0);

/* Add calibration rows: every rank passes rows [row0, row0 + n) of the group's total (n, d)
 * float32, n may be 0; each rank's rows are read once, by it alone, in increasing row order.
 * Collective (every rank makes the same number of calls): G's blocks are reduced to their owners
 * block by block. The per-channel sums stay local until qr_dstats_finish. */
qr_status qr_dstats_add_rows(const qr_grid *g, qr_dstats *s, const float *rows, int64_t row0,
                             int64_t n);

/* After the last rows: the per-channel vectors reduced to every rank (a batch's mean |x| from the
 * partial sums of the ranks that share it), diag(G) on every rank; with --gptq GPTQ's factor, and
 * when o's method whitens the whitening factor, each computed once for every module of the input
 * group. The factorizations take G's place (no other step of this path needs G itself; GPTQ factors
 * a copy when the whitening needs G too), so G is NULL afterwards, except for the methods that
 * transform G per module: keep_gram, qr_dstats_keeps_gram of any module of the input group. */
qr_status qr_dstats_finish(const qr_grid *g, qr_dstats *s, const qr_method_opts *o, bool keep_gram);

/* The per-channel vectors as serial statistics (no G), for the scalings and rules that read
 * only them; valid while s lives. Not collective. */
qr_stats qr_dstats_view(const qr_dstats *s);

/* Whether a module (d_out, d_in) needs G itself after qr_dstats_finish: ASER scales a copy of it,
 * JOINT one for every smoothed space it searches (qr_joint_smooths), SERQ with --gptq permutes
 * one. Not collective. */
bool qr_dstats_keeps_gram(const qr_method_opts *o, int64_t d_out, int64_t d_in);

/* The b-th row block this rank's grid row holds of a matrix with m rows: its rows [*r0, *r0 + n),
 * n returned (0 past the last block). Not collective. */
int64_t qr_grid_row_block(const qr_grid *g, int64_t m, int64_t b, int64_t *r0);

/* Fill this rank's part of d from rows [row0, row0 + nrows) of the logical matrix, given as full
 * rows (nrows, d->n) row-major; rows this rank does not hold are skipped. Not collective. */
void qr_dmat_fill_rows(const qr_grid *g, qr_dmat *d, int64_t row0, int64_t nrows,
                       const double *rows);

/* Held-out rows on the grid: the metrics' sample (io/calib_holdout.h, a few hundred rows) whole
 * on every rank: each rank multiplies them by its own blocks of the weight, so the products are
 * divided like the weight and only the (n, local rows) partial outputs of a process row are
 * summed (none on P x 1 grids). */
typedef struct {
    float *X;       /* (n, d) float32, on every rank */
    int64_t n, d;   /* n = 0: no held-out rows */
    int64_t agroup; /* channel group of the grouped-A4 metric (0: off) */
} qr_grid_held;

/* The module's reference outputs on this rank: Y = X Wᵀ for its rows of W, computed once and
 * shared by the method's metrics and RTN's. */
typedef struct {
    float *Y;       /* (n, mloc) summed over the process row */
    double y_sumsq; /* ||X Wᵀ||² over the group */
    MPI_Comm row;   /* the grid's process row (Q > 1; not owned), else MPI_COMM_NULL */
} qr_grid_metric_ref;

/* What a distributed module run leaves on every rank. */
typedef struct {
    qr_dmat *W_eff; /* (m, n) deq(main) + side + L R, distributed, in the module's transformed
                       space (ASER, SERQ: W_eff[:, perm[j]] = this[:, j] / smooth[j]) */
    qr_method_report rep;
    float *smooth; /* (n) ASER and SERQ: the module's smoothing vector, on every rank; else NULL */
    int32_t *perm; /* (n) SERQ: its channel permutation, on every rank; else NULL */
} qr_grid_result;

/* Quantize the distributed weight W (m, n) with o (on its qr_grid_layout) and statistics s; the
 * group root gets the whole module in *root_ql (INT4 codes, scales, L, R; other ranks get an empty
 * one; root_ql NULL: nothing is gathered, the module is only measured through res), every rank
 * gets res. o->module_name seeds the random streams as qr_method_run does, so the result agrees
 * with the serial one to rounding. */
qr_status qr_grid_method_run(const qr_grid *g, const qr_method_opts *o, const qr_dmat *W,
                             qr_dstats *s, qr_qlayer *root_ql, qr_grid_result *res);

void qr_grid_result_free(qr_grid_result *res); /* not collective */

qr_status qr_grid_metric_ref_init(const qr_grid *g, const qr_dmat *W, const qr_grid_held *h,
                                  qr_grid_metric_ref *ref);
void qr_grid_metric_ref_free(qr_grid_metric_ref *ref); /* not collective; NULL-safe */

/* qr_metrics_fast on the grid: W (m, n) the weight ref was made with, W_t (m, n) the module's
 * weight in its transformed space (deq(main) + side + L R), perm and smooth (n, on every rank;
 * NULL: none; a permutation needs Q = 1) the transform. The float, A8, A4 and grouped-A4 errors
 * from the rows transformed and quantized per token (the rule of the reference forward), float32
 * products, sums of squares in float64 reduced over the group. bits_per_weight and the stage
 * times come from the caller. */
qr_status qr_grid_metrics(const qr_grid *g, const qr_grid_metric_ref *ref, const qr_grid_held *h,
                          int width, const qr_dmat *W, const qr_dmat *W_t, const int32_t *perm,
                          const float *smooth, qr_metrics *m);

#endif

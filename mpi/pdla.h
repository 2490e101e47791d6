/* pdla.h: distributed dense linear algebra for one rank group (a P x Q grid, mpi/blacs.h), built on
 * ScaLAPACK, each routine the distributed twin of a serial one in src/linalg.h or src/stats.h:
 *
 *   qr_pdla_cholesky_damped   blocked Cholesky, serial damping rule (qr_cholesky_damped)
 *   qr_pdla_tri_right         A op(L) or A op(L)^-1, PDTRMM/PDTRSM    (qr_tri_right)
 *   qr_pdla_gram_reduce       XᵀX from row blocks on many ranks      (dsyrk, fixed-order sum)
 *   qr_pdla_stats_reduce      merge per-rank statistics in rank order (qr_stats_merge)
 *   qr_pdla_svd_truncated     randomized (PDGEMM, PDGEQRF/PDORGQR) or exact (PDGESVD) rank-r SVD
 *                             (qr_svd_truncated)
 *   qr_pdla_svd               full thin SVD by PDGESVD, the reference mode (qr_svd)
 *
 * Every routine is collective over the group's communicator; every rank of the group must pass the
 * same sizes and options, and gets the same status. ScaLAPACK `info` codes are checked at the call
 * and become a qr_status whose message names the routine. */
#ifndef QR_MPI_PDLA_H
#define QR_MPI_PDLA_H

#include <mpi.h>
#include <stdint.h>

#include "mpi/blacs.h"
#include "src/linalg.h"
#include "src/rng.h"
#include "src/stats.h"
#include "src/status.h"

/* Cholesky G = L Lᵀ of the symmetric (n, n) distributed matrix G, in place: on success the lower
 * triangle holds L and the strict upper triangle is zero; only the lower triangle is read. The
 * damping rule is exactly qr_cholesky_damped's: try k adds lambda_k * mean(diag) * I with
 * lambda_0 = lambda0 (0 = first try undamped, then QR_CHOL_LAMBDA0) and lambda_k = 10 lambda_{k-1},
 * at most QR_CHOL_MAX_TRIES tries. *damping_used (may be NULL) gets the absolute value added to the
 * diagonal, the same on every rank. QR_ERR_NUMERIC when every try fails; G then holds its input. */
qr_status qr_pdla_cholesky_damped(const qr_grid *g, qr_dmat *G, double lambda0,
                                  double *damping_used);

/* GPTQ's factor (the distributed twin of src/quant/gptq.c's): H (n, n) symmetric, lower triangle
 * read, dead channels already set to 1 on the diagonal, becomes L2 lower with (H + damping I)^-1 =
 * L2 L2ᵀ, so GPTQ's upper factor U is L2ᵀ: damped Cholesky (damp: the
 * relative damping, qr_wquant_opts.gptq_damp), PDPOTRI, Cholesky.
 * Entries above the diagonal are left undefined. QR_ERR_NUMERIC as the serial routine. */
qr_status qr_pdla_gptq_factor(const qr_grid *g, qr_dmat *H, double damp, double *damping_used);

/* Columns one step of the distributed A L multiplies by (a multiple of the block size, at least
 * one block): the output is read and written once a step, so a narrow step is bound by memory, not
 * by the flops. Its two panels hold (mloc + nloc) x this many doubles. */
#define QR_PDLA_SUMMA_WIDTH 256

/* The distributed twin of qr_tri_right: A (m, n) := A op(L), or A op(L)^-1 when inverse, with L
 * (n, n) lower triangular as left by qr_pdla_cholesky_damped (its upper triangle is not read) and
 * op(L) = L, or Lᵀ when transpose (A L by SUMMA, the others by PDTRMM / PDTRSM). Whitening: E L is
 * the whitened error. */
qr_status qr_pdla_tri_right(const qr_grid *g, qr_dmat *A, const qr_dmat *L, int transpose,
                            int inverse);

/* R (k, n) row-major, whole and the same on every rank, := R L^-1 with L (n, n) lower triangular
 * distributed (its upper triangle is not read): the correction's R = Vt C^-1. Block columns from
 * the last: each rank multiplies the solved blocks at its local rows by its blocks of L's block
 * column, one allreduce of (k + nb) x nb a block (the diagonal block rides along), every rank
 * solves the block. For a thin R this replaces PDTRSM on a distributed copy and its gather. */
qr_status qr_pdla_thin_solve_right(const qr_grid *g, const qr_dmat *L, double *R, int64_t k);

/* Collective over comm (any communicator, e.g. a group's or the world's): G (d, d) = sum over the
 * ranks of X_rᵀ X_r, where X_r (n_local, d) float32 row-major is this rank's block of rows (n_local
 * may be 0). Each rank forms its part with dsyrk in float64; the parts are summed along a fixed
 * binary tree of ranks (rank r adds r + 2^s at step s), so repeated runs on the same blocks give
 * bit-identical results. G (full symmetric, row-major) is written on rank 0 only, or on every rank
 * when all_ranks is nonzero; elsewhere it may be NULL. */
qr_status qr_pdla_gram_reduce(MPI_Comm comm, const float *X_local, int64_t n_local, int64_t d,
                              int all_ranks, double *G);

/* Collective over comm: merge every rank's statistics into rank 0's `s` along the same fixed tree
 * as qr_pdla_gram_reduce (qr_stats_merge at each step), so the result depends only on what each
 * rank accumulated, not on timing. On ranks other than 0, `s` is left in an unspecified state.
 * Every rank's s->d must be equal (QR_ERR_INPUT naming both otherwise). */
qr_status qr_pdla_stats_reduce(MPI_Comm comm, qr_stats *s);

/* Rank-r truncated SVD of the distributed A (m, n), the distributed twin of qr_svd_truncated with
 * the same options, mode choice (AUTO: randomized when 8 r <= min(m, n)) and random stream use: the
 * Gaussian test matrix (n, l) is drawn from rng row by row on every rank, so for the same rng state
 * the result does not depend on the grid and matches the serial routine to rounding. Randomized:
 * Y = A Omega by PDGEMM, q power iterations Z = Aᵀ Y, Y = A Z with a PDGEQRF + PDORGQR
 * re-orthonormalisation after every product, B = Yᵀ A (l, n) by PDGEMM, gathered to every rank and
 * decomposed there by dgesdd (qr_svd), U = Y U_B[:, :r] by PDGEMM. Exact: PDGESVD, truncated.
 * A is not modified. On return U (m, r), S (r) descending and Vt (r, n), all row-major, are the
 * same on every rank of the group (they are small: r columns). rng is advanced identically on every
 * rank; it may be NULL only when the exact path runs. */
qr_status qr_pdla_svd_truncated(const qr_grid *g, const qr_dmat *A, int64_t r, const qr_svd_opts *o,
                                qr_rng *rng, double *U, double *S, double *Vt);

/* The same for A = E C with C (n, n) lower triangular (the whitening factor; NULL = identity),
 * without forming E C on the randomized path: every product by A is a product by E and a
 * triangular product by C (PDTRMM), m n l + n² l / 2 work instead of the m n² / 2 of E C. E is not
 * modified. */
qr_status qr_pdla_svd_truncated_scaled(const qr_grid *g, const qr_dmat *E, const qr_dmat *C,
                                       int64_t r, const qr_svd_opts *o, qr_rng *rng, double *U,
                                       double *S, double *Vt);

/* Thin SVD A (m, n) = U (m, k) diag(S) Vt (k, n), k = min(m, n), by PDGESVD (QR iteration). A is
 * not modified. S (k) descending on every rank. U and Vt are distributed matrices of those shapes
 * made on the same grid, or NULL when not wanted. QR_ERR_NUMERIC when PDGESVD does not converge. */
qr_status qr_pdla_svd(const qr_grid *g, const qr_dmat *A, double *S, qr_dmat *U, qr_dmat *Vt);

#endif

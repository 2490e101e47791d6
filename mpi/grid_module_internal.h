/* grid_module_internal.h: the steps the methods share on the grid (mpi/grid_module.c) and the
 * methods' own files (mpi/grid_srr.c, grid_aser.c, grid_serq.c, grid_flrq.c, grid_joint.c); not
 * part of the interface. Every function is collective over the grid's communicator unless it
 * says otherwise; matrices are distributed (qr_dmat), vectors and L, R whole on every rank. */
#ifndef QR_MPI_GRID_MODULE_INTERNAL_H
#define QR_MPI_GRID_MODULE_INTERNAL_H

#include "mpi/grid_module.h"

/* The input scaling S of a correction: a diagonal (n, whole on every rank) or a lower triangular
 * whitening factor (n, n, distributed); exactly one is set. */
typedef struct {
    double *diag;
    const qr_dmat *chol;
} qr_grid_scaling;

/* What the main quantization weighs columns by: GPTQ's factor (or NULL without --gptq) and the
 * Hessian's diagonal (n, whole on every rank; the clip search's column weights). */
typedef struct {
    const qr_dmat *gptq;
    const double *diag;
} qr_grid_hessian;

/* A (m, n) := A S, or A S^-1 when inverse (local column scaling, or PDTRMM / PDTRSM). */
qr_status qr_grid_scaling_apply(const qr_grid *g, const qr_grid_scaling *S, qr_dmat *A,
                                int inverse);

/* R (k, n), whole on every rank, := R S^-1. */
qr_status qr_grid_scaling_unapply_rows(const qr_grid *g, const qr_grid_scaling *S, double *R,
                                       int64_t k, int64_t n);

/* qr_method_quantize on the grid: Wm's local blocks by GPTQ (its panels are summed over the group)
 * or RTN into qloc, W_eff := deq, and E := Wm - deq unless E is NULL. clip > 0: RTN with every
 * group's range shrunk by that fixed factor instead (FLRQ's BLC; qr_quantize_fixed_clip). */
qr_status qr_grid_quantize(const qr_grid *g, const qr_method_opts *o, const qr_grid_hessian *H,
                           const qr_dmat *Wm, double clip, qr_qweight *qloc, qr_dmat *W_eff,
                           qr_dmat *E);

/* A's local blocks := deq(qloc), this rank's quantized blocks (not collective). */
qr_status qr_grid_dequantize(const qr_qweight *qloc, qr_dmat *A);

/* The scaled error's rank-r correction from `stage`'s random stream, as qr_corr_lowrank: L (m, r)
 * and R (r, n) on every rank. A diagonal scaling overwrites E by E S. */
qr_status qr_grid_correction(const qr_grid *g, const qr_method_opts *o, const qr_grid_scaling *S,
                             const char *stage, qr_dmat *E, int64_t r, double *L, double *R,
                             qr_method_report *rep);

/* The QER step of the methods (qr_qer_step): quantize Wm locally into qloc, W_eff := deq, and
 * with r > 0 the rank-r correction of E = Wm - deq under S into L (m, r) and R (r, n). */
qr_status qr_grid_qer_step(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                           const qr_grid_scaling *S, const qr_dmat *Wm, int64_t r, qr_qweight *qloc,
                           qr_dmat *W_eff, double *L, double *R, qr_method_report *rep);

/* A += alpha L[:, :k] R[:k, :] on the local blocks (L (m, ldl) with row stride ldl, R (k, n));
 * not collective. */
qr_status qr_grid_add_product(const qr_grid *g, const double *L, int64_t ldl, const double *R,
                              int64_t k, double alpha, qr_dmat *A);

/* ||(D - L R) S||_F² over the group (qr_scaled_error with D = W - deq on entry), D overwritten:
 * the objective the whitened correction, GPTQ, SRR's check and JOINT minimise. */
qr_status qr_grid_scaled_error(const qr_grid *g, const qr_grid_scaling *S, const double *L,
                               const double *R, int64_t r, qr_dmat *D, double *err);

/* A copy of the distributed A. */
qr_status qr_grid_dmat_copy(const qr_grid *g, const qr_dmat *A, qr_dmat **out);

/* GPTQ's factor of a module's own transformed Gram Ht (lower triangle read, factored in place),
 * diag its diagonal: dead channels set to 1 first, as the input group's factor does. */
qr_status qr_grid_module_gptq_factor(const qr_grid *g, const qr_method_opts *o, qr_dmat *Ht,
                                     const double *diag);

/* wmax (n) := max_i |W_ij| and, unless NULL, norms (n) := ||W[:, j]||², over the group (a column's
 * entries sit in one process column; the others add zeros). Zeroed here. */
void qr_grid_column_stats(const qr_grid *g, const qr_dmat *W, double *wmax, double *norms);

/* A smoothed input space (ASER, JOINT) from the smoothing vector sv (n): *Wt = W diag(sv) and
 * *Gt = diag(1/sv) G diag(1/sv) as scaled copies (local), cw (n) := diag(*Gt), and with --gptq
 * *F = GPTQ's factor of *Gt (else NULL). */
qr_status qr_grid_smooth_space(const qr_grid *g, const qr_method_opts *o, const qr_dmat *W,
                               const qr_dstats *s, const float *sv, double *cw, qr_dmat **Wt,
                               qr_dmat **Gt, qr_dmat **F);

/* The methods with a file of their own. Each fills qloc (this rank's blocks of the main matrix)
 * and W_eff = deq(main) (+ side) in the module's transformed space, and L (m, r), R (r, n) when
 * the method has a correction; o is resolved (qr_method_resolve). */
qr_status qr_grid_srr(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                      const qr_grid_scaling *S, const qr_dmat *W, qr_qweight *qloc, qr_dmat *W_eff,
                      double *L, double *R, qr_method_report *rep);
qr_status qr_grid_aser(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                       const qr_dmat *W, int64_t r, qr_qweight *qloc, qr_dmat *W_eff, double *L,
                       double *R, float *smooth, qr_method_report *rep);
qr_status qr_grid_serq(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                       const qr_dmat *W, qr_qweight *qloc, qr_qweight *sideloc, qr_dmat *W_eff,
                       float *smooth, int32_t *perm, qr_method_report *rep);
/* FLRQ: L and R get its flexible rank's columns and rows (rep->rank_used <= o->rank), packed as
 * (m, rank_used) and (rank_used, n). */
qr_status qr_grid_flrq(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                       const qr_dmat *W, qr_qweight *qloc, qr_dmat *W_eff, double *L, double *R,
                       qr_method_report *rep);

/* JOINT: L and R get the kept pair's rank (rep->rank_used: o->rank, or the smoothed spaces' rank,
 * qr_joint_smooth_rank) packed; *smooth its smoothing vector (n, allocated here) when a smoothed
 * space won, else NULL (W_eff is then in the smoothed space). */
qr_status qr_grid_joint(const qr_grid *g, const qr_method_opts *o, const qr_dstats *s,
                        const qr_dmat *W, qr_qweight *qloc, qr_dmat *W_eff, double *L, double *R,
                        float **smooth, qr_method_report *rep);

#endif

/* quantize_grid.h: the part of the quantize job that divides one input group's modules over the
 * P x Q grid of a rank group (mpi/grid_module.h): every rank reads only the calibration rows and
 * weight rows of its grid row's blocks, and the group root gets each module whole to write its
 * part. Used by jobs/quantize_run.c for the option sets qr_grid_method_supported accepts. */
#ifndef QR_JOBS_QUANTIZE_GRID_H
#define QR_JOBS_QUANTIZE_GRID_H

#include "io/calib_holdout.h"
#include "io/model.h"
#include "mpi/grid_module.h"
#include "src/method.h"
#include "src/metrics.h"
#include "src/modules.h"

/* One layer input on the grid: its statistics and held-out rows. */
typedef struct {
    qr_dstats *stats;
    qr_grid_held held; /* held.X NULL without a holdout */
    double seconds;    /* reading and accumulating */
} qr_grid_input;

/* Collective over the grid: stream the fitting windows of key (d columns) into distributed
 * statistics, finish them for method o (the whitening factor once for the whole input group; G
 * itself kept when keep_gram, qr_dstats_finish), and read the held-out rows. */
qr_status qr_grid_input_open(const qr_grid *g, qr_calib_set *set, const char *key, int64_t d,
                             const qr_calib_split *sp, const qr_method_opts *o, bool keep_gram,
                             int64_t agroup, qr_grid_input *in);
void qr_grid_input_close(qr_grid_input *in); /* not collective */

/* One quantized module of a grid run. */
typedef struct {
    qr_qlayer ql;         /* on the group root (empty elsewhere) */
    qr_metrics met;       /* on every rank, when there are held-out rows */
    qr_method_report rep; /* on every rank */
} qr_grid_module_out;

/* Collective over the grid: read module m's weight (each rank its blocks) and quantize it from in
 * with o (module_name set by the caller) into *out; with rtn (else NULL) quantize the same weight
 * with it too and measure it on the same reference outputs at rtn->abits only into *rtn_out, whose
 * layer stays empty (nothing gathered: run rtn as o to store it). *has_metrics: there were
 * held-out rows. Free the outputs' layers with qr_qlayer_free. */
qr_status qr_grid_module_run(const qr_grid *g, const qr_model *model, const qr_module *m,
                             const qr_method_opts *o, const qr_method_opts *rtn, qr_grid_input *in,
                             qr_grid_module_out *out, qr_grid_module_out *rtn_out,
                             int *has_metrics);

#endif

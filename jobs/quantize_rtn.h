/* quantize_rtn.h: "never silently worse than RTN". For every module, quantize also runs plain
 * round-to-nearest with the job's weight quantizer (group, asym, clip search; no GPTQ, no
 * correction) and measures it with the same held-out metrics; a module whose method error (at the
 * job's activation width: A8, A4 or float) is above RTN's is flagged in the part, the checkpoint
 * and quantize's output, and with --fallback-rtn RTN's module is stored in its place. Both quantize
 * paths: the serial one (the module whole on a process) and the grid one (jobs/quantize_grid.h,
 * each rank's weight blocks measured on the held-out sample). docs/quantize.md, "Never silently
 * worse than RTN". */
#ifndef QR_JOBS_QUANTIZE_RTN_H
#define QR_JOBS_QUANTIZE_RTN_H

#include <stdbool.h>
#include <stdint.h>

#include "io/h5util.h"
#include "jobs/quantize_grid.h"
#include "src/method.h"
#include "src/metrics.h"
#include "src/stats.h"

typedef struct {
    int abits;     /* the activation width compared (8, 4; 0 = float) */
    bool fallback; /* --fallback-rtn: store RTN's module where the method is worse */
    bool (*force)(void *ctx, const char *module); /* test hook: true counts the module as worse
                                                     (QRECON_TEST_WORSE_THAN_RTN); NULL: off */
    void *ctx;
} qr_rtn_policy;

typedef struct {
    int compared;       /* 1: RTN was measured (held-out rows and a method other than plain RTN) */
    double rtn_err[3];  /* RTN's held-out output error: float, A8, A4 (NaN when not compared) */
    double method_err;  /* the method's at the compared width */
    double rtn_cmp_err; /* RTN's at the compared width */
    int worse;          /* 1: method_err > rtn_cmp_err (0 when not compared) */
    int fallback;       /* 1: the module stored is RTN's */
} qr_rtn_cmp;

/* Serial: the held-out metrics of the method's module *ql (report *rep) for weight W (d_out,
 * d_in), when n_ho > 0 (held (n_ho, d_in) float32), then RTN's on the same rows (the reference
 * outputs computed once for both); with the policy's fallback and a worse method, *ql, *met and
 * the report's rank/salient become RTN's. No held-out rows: nothing measured or compared. Not
 * collective. */
qr_status qr_quantize_measure(const qr_rtn_policy *pol, const qr_method_opts *o, const double *W,
                              const qr_module *m, const qr_stats *stats, const float *held,
                              int64_t n_ho, int64_t agroup, qr_qlayer *ql, qr_metrics *met,
                              qr_method_report *rep, qr_rtn_cmp *cmp);

/* rtn := the RTN options the comparison uses for method options o; whether o needs the
 * comparison (plain RTN compared with itself is itself). */
bool qr_rtn_opts(const qr_method_opts *o, qr_method_opts *rtn);

/* The same judgement on the grid, from the method's and RTN's results of qr_grid_module_run (ran:
 * RTN was run and measured): whether RTN's module is to be stored. Not collective: every rank
 * holds the same metrics, so every rank judges alike. */
bool qr_rtn_compare_grid(const qr_rtn_policy *pol, const qr_module *m, bool ran,
                         const qr_grid_module_out *out, const qr_grid_module_out *rtn,
                         qr_rtn_cmp *cmp);

/* On a fallback: *out takes RTN's module (rtn: RTN run with its codes gathered; rtn->ql moved),
 * its metrics, and the report of a stored RTN module. Not collective. */
void qr_rtn_take_grid(const qr_grid *g, qr_grid_module_out *out, qr_grid_module_out *rtn);

/* The comparison as metric keys of the module's part (rtn_output_error, rtn_output_error_a8,
 * rtn_output_error_a4, method_output_error, worse_than_rtn, fallback_rtn; -1 / NaN when not
 * compared). */
qr_status qr_rtn_cmp_kv(const qr_rtn_cmp *cmp, qr_kvlist *l);

/* Rank 0, after the checkpoint is written: one line per module of ckpt_path flagged worse than
 * RTN, and the count. */
qr_status qr_rtn_summary_print(const char *ckpt_path);

#endif

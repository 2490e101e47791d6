/* report.h: the per-module error report of one or more checkpoints: rows of stored metrics, the
 * flags that point at the modules that hurt, and per-checkpoint summaries. Pure data and
 * arithmetic: reading checkpoints is io/report_read.h, writing tables and plots io/report_write.h.
 */
#ifndef QR_REPORT_H
#define QR_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "src/divergence.h"
#include "src/modules.h"
#include "src/status.h"

enum {
    QR_REPORT_OVER = 1u << 0,   /* primary error above --max-err */
    QR_REPORT_SPIKE = 1u << 1,  /* well above the same module type in the neighbouring layers */
    QR_REPORT_KERNEL = 1u << 2, /* the kernel check of `qrecon validate` failed */
    QR_REPORT_RTN = 1u << 3     /* quantize measured the method worse than RTN on this module */
};

/* Kernel check state from the validation file (absent: not validated). */
typedef enum { QR_CHECK_UNKNOWN = 0, QR_CHECK_PASS, QR_CHECK_FAIL } qr_check_state;

typedef struct {
    char name[QR_MODULE_NAME_MAX]; /* "model.layers.3.self_attn.q_proj" */
    int64_t layer;                 /* -1 when the name has no layer index */
    char kind[24];                 /* "q_proj" */
    int64_t d_out, d_in;
    char method[64];
    int64_t rank_used, salient_used;
    double bits_per_weight;
    double weight_err, out_err, out_err_a8, out_err_a4, sqnr_db; /* as stored; NaN when absent */
    double seconds; /* wall time on its group (metric.seconds_wall; older checkpoints: the method's
                       stages + calibration statistics) */
    int worse_than_rtn; /* quantize's RTN comparison: 1 worse, 0 not, -1 not measured (older) */
    int fallback_rtn;   /* 1: the module stored is RTN's (--fallback-rtn) */
    double rtn_err;     /* RTN's held-out error at the checkpoint's activation width (NaN: none) */
    double method_err;  /* the method's at the same width, before any fallback (NaN: none) */
    qr_check_state kernel_check;
    double primary; /* the error flags and plots use (see qr_report_primary) */
    unsigned flags;
} qr_report_row;

/* Model-level quality of a checkpoint on one text: what `qrecon eval --ckpt` measured against the
 * float model (its sidecar CKPT.eval.json, io/eval_sidecar.h). */
typedef struct {
    char name[256]; /* the text's file name, without folder */
    int64_t seq_len;
    qr_divergence_summary s;
} qr_report_quality;

typedef struct {
    char label[64]; /* file name without folder and extension */
    char path[4096];
    char method[64];
    int64_t wbits, abits, group, rank;
    int validated;       /* a validation file was found */
    qr_report_row *rows; /* (n_rows), model order */
    size_t n_rows;
    qr_report_quality *quality; /* (n_quality) from CKPT.eval.json; NULL when there is none */
    size_t n_quality;
} qr_report_ckpt;

/* mean_bits is weighted by each module's parameters (d_out d_in): the model's bits per weight. */
typedef struct {
    size_t modules, flagged, kernel_pass, kernel_fail;
    size_t rtn_compared, worse_than_rtn, fallback_rtn; /* RTN comparison: measured, worse, kept */
    double mean_err, max_err, mean_bits, total_seconds;
    const qr_report_row *worst;
} qr_report_summary;

/* Which stored error is primary: "auto" = the checkpoint's activation setting (abits 8 -> A8,
 * 4 -> A4, else float), or "float", "a8", "a4". QR_ERR_INPUT for anything else. */
qr_status qr_report_set_primary(qr_report_ckpt *c, const char *act);

/* Split "model.layers.L.block.kind" into layer and kind (layer -1 and the last component
 * otherwise). */
void qr_report_parse_name(const char *name, int64_t *layer, char *kind, size_t kind_size);

/* Set the flags of every row: OVER when primary > max_err (max_err <= 0: off); SPIKE when primary
 * > spike_factor x the median primary of the same kind within `window` layers on either side
 * (spike_factor <= 0: off); KERNEL when the kernel check failed; RTN when quantize measured the
 * method worse than RTN (whether or not RTN's module was then stored). */
void qr_report_flag(qr_report_ckpt *c, double max_err, double spike_factor, int window);

void qr_report_summarize(const qr_report_ckpt *c, qr_report_summary *s);

void qr_report_ckpt_free(qr_report_ckpt *c);

#endif

/* cmd_report.c: `qrecon report CKPT [CKPT ...]`: per-module error tables and plots of one or more
 * checkpoints, from the metrics they store and the validation results beside them. Rank 0 reads and
 * writes; the other ranks only agree on the status. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/fs.h"
#include "io/report_quality.h"
#include "io/report_read.h"
#include "io/report_write.h"
#include "jobs/cli.h"
#include "jobs/options.h"
#include "src/alloc.h"
#include "src/log.h"

static const qr_cmd_doc doc = {
    "report",
    "qrecon report CKPT [CKPT ...] [--out DIR] [--md FILE] [--csv FILE] [--json FILE]\n"
    "                     [--svg FILE] [--rank-svg FILE] [--kl-svg FILE]\n"
    "                     [--act auto|float|a8|a4]\n"
    "                     [--max-err X] [--spike F] [--window L] [--top N]",
    "One row per quantized module (layer, module, shape, method, rank or salient channels,\n"
    "bits per weight, weight error, output error with float / A8 / A4 activations, SQNR,\n"
    "kernel check, seconds), the numbers stored in each checkpoint. The kernel check comes\n"
    "from CKPT.validate.json (written by `qrecon validate --json`) when it exists. Several\n"
    "checkpoints are shown side by side. Model-level quality against the float model (KL\n"
    "divergence, dNLL, perplexity, top-1 agreement) comes from CKPT.eval.json (written by\n"
    "`qrecon eval --ckpt`) when it exists. Without output options the Markdown goes to stdout.\n",
    NULL,
};

typedef struct {
    const char *out_dir, *md, *csv, *json, *svg, *rank_svg, *kl_svg;
    double max_err, spike;
    int64_t window, top;
    const char *act;
    char **ckpts; /* (n_ckpts) the operands */
    int n_ckpts;
} report_opts;

static qr_status parse_act(const char *opt, const char *value, void *dst)
{
    if (strcmp(value, "auto") != 0 && strcmp(value, "float") != 0 && strcmp(value, "a8") != 0 &&
        strcmp(value, "a4") != 0) {
        return qr_fail(QR_ERR_INPUT, "%s: expected auto, float, a8 or a4, found '%s'", opt, value);
    }
    *(const char **)dst = value;
    return QR_OK;
}

#define OPT(f) offsetof(report_opts, f)
static const qr_opt report_rows[] = {
    {"out", QR_OPT_STR, OPT(out_dir), "DIR",
     "write DIR/report.md, report.csv, report.json, layers.svg, and\n"
     "rank.svg (and kl.svg, with eval figures) when the checkpoints form\n"
     "a rank sweep"},
    {"md", QR_OPT_STR, OPT(md), "FILE", "write the Markdown report to FILE"},
    {"csv", QR_OPT_STR, OPT(csv), "FILE", "write the per-module table as CSV to FILE"},
    {"json", QR_OPT_STR, OPT(json), "FILE", "write the per-module results as JSON to FILE"},
    {"svg", QR_OPT_STR, OPT(svg), "FILE", "write the error-per-layer plot to FILE"},
    {"rank-svg", QR_OPT_STR, OPT(rank_svg), "FILE",
     "write the error-against-rank plot of a rank sweep to FILE"},
    {"kl-svg", QR_OPT_STR, OPT(kl_svg), "FILE",
     "write the KL-divergence-against-rank plot of a rank sweep (from the\n"
     "checkpoints' CKPT.eval.json) to FILE"},
    {"act", QR_OPT_CUSTOM, OPT(act), "MODE",
     "which output error flags and plots use: auto (each checkpoint's\n"
     "activation bits), float, a8, a4",
     "auto", .parse = parse_act},
    {"max-err", QR_OPT_DOUBLE, OPT(max_err), "X", "flag modules whose error exceeds X", "off",
     .dmin = 0.0, .dmax = 1e300},
    {"spike", QR_OPT_DOUBLE, OPT(spike), "F",
     "flag modules above F x the median of the same module type in the\n"
     "neighbouring layers; 0 = off",
     .dmin = 0.0, .dmax = 1e300},
    {"window", QR_OPT_INT, OPT(window), "L", "neighbouring layers on each side for --spike",
     .imin = 1, .imax = 1000},
    {"top", QR_OPT_INT, OPT(top), "N", "worst modules listed per checkpoint", .imin = 0,
     .imax = 100000},
};
#undef OPT

static qr_status parse(int argc, char **argv, report_opts *o, bool *help)
{
    qr_opt_result res;
    qr_opt_table tables[] = {QR_OPT_TABLE(report_rows, o, "options (defaults in parentheses)")};
    memset(o, 0, sizeof *o);
    o->act = "auto";
    o->spike = 2.0;
    o->window = 2;
    o->top = 5;
    QR_TRY(qr_opts_parse(&doc, tables, 1, -1, argc, argv, &res));
    *help = res.help;
    if (res.help) {
        return QR_OK;
    }
    if (res.n_positional < 1) {
        return qr_cli_usage_error("report", "expected at least one checkpoint");
    }
    o->ckpts = res.positional;
    o->n_ckpts = res.n_positional;
    return QR_OK;
}

/* The report's files: each written under "<path>.part" first and renamed into place only when
 * all are written, so a failure leaves none of them half made or mixed with an earlier run's. */
enum { OUT_MD, OUT_CSV, OUT_JSON, OUT_SVG, OUT_RANK_SVG, OUT_KL_SVG, N_OUT_KINDS };
typedef struct {
    char path[4096];
    int kind;
    bool staged;
} report_out;

static qr_status write_one(const report_out *out, const char *path, qr_report_ckpt *cks, size_t n,
                           const qr_report_style *style, int *sweep, int *kl_sweep)
{
    switch (out->kind) {
    case OUT_MD:
        return qr_report_write_md_file(path, cks, n, style);
    case OUT_CSV:
        return qr_report_write_csv(path, cks, n);
    case OUT_JSON:
        return qr_report_write_json(path, cks, n);
    case OUT_SVG:
        return qr_report_write_layers_svg(path, cks, n);
    case OUT_KL_SVG:
        return qr_report_write_kl_svg(path, cks, n, kl_sweep);
    default:
        return qr_report_write_rank_svg(path, cks, n, sweep);
    }
}

/* The outputs the options ask for, in order. */
static qr_status list_outputs(const report_opts *o, report_out *outs, size_t *n_outs)
{
    static const char *const dir_names[] = {"report.md",  "report.csv", "report.json",
                                            "layers.svg", "rank.svg",   "kl.svg"};
    const char *files[] = {o->md, o->csv, o->json, o->svg, o->rank_svg, o->kl_svg};
    *n_outs = 0;
    for (int k = 0; o->out_dir && k < N_OUT_KINDS; k++) {
        outs[*n_outs].kind = k;
        QR_TRY(qr_fs_join(outs[(*n_outs)++].path, sizeof outs[0].path, o->out_dir, dir_names[k]));
    }
    for (int k = 0; k < N_OUT_KINDS; k++) {
        if (files[k]) {
            outs[*n_outs].kind = k;
            snprintf(outs[(*n_outs)++].path, sizeof outs[0].path, "%s", files[k]);
        }
    }
    return QR_OK;
}

/* "<path>.part" into part (4104 bytes; path is at most 4095). */
static void part_name(const char *path, char *part)
{
    size_t len = strlen(path);
    memcpy(part, path, len);
    memcpy(part + len, ".part", 6);
}

/* Write every output staged, then rename them all into place; on failure remove the staged ones. */
static qr_status write_outputs(const report_opts *o, qr_report_ckpt *cks, size_t n,
                               const qr_report_style *style)
{
    qr_status st = QR_OK;
    report_out outs[2 * N_OUT_KINDS];
    size_t n_outs = 0;
    int sweep = 0, kl_sweep = 0;
    char part[4096 + 8];
    memset(outs, 0, sizeof outs);
    QR_TRY(list_outputs(o, outs, &n_outs));
    if (o->out_dir) {
        QR_TRY(qr_fs_mkdirs(o->out_dir));
    }
    for (size_t i = 0; i < n_outs && st == QR_OK; i++) {
        part_name(outs[i].path, part);
        st = write_one(&outs[i], part, cks, n, style, &sweep, &kl_sweep);
        outs[i].staged = st == QR_OK;
    }
    for (size_t i = 0; i < n_outs; i++) {
        part_name(outs[i].path, part);
        if (st != QR_OK || !outs[i].staged) {
            unlink(part);
        } else if (access(part, F_OK) != 0) {
            continue; /* nothing to write (rank.svg of checkpoints that are not a rank sweep) */
        } else if (rename(part, outs[i].path) != 0) {
            st = qr_fail(QR_ERR_IO, "%s: cannot rename into place (%s)", outs[i].path,
                         strerror(errno));
        }
    }
    QR_TRY(st);
    if (o->out_dir) {
        printf("report: %s/report.md (also report.csv, report.json, layers.svg%s%s)\n", o->out_dir,
               sweep ? ", rank.svg" : "", kl_sweep ? ", kl.svg" : "");
    } else if (o->rank_svg && !sweep) {
        QR_WARN("--rank-svg: the checkpoints are not a rank sweep of one method; no plot");
    }
    if (!o->out_dir && o->kl_svg && !kl_sweep) {
        QR_WARN("--kl-svg: no rank sweep of one method with eval figures; no plot");
    }
    return QR_OK;
}

/* Rank 0's work: read every checkpoint, flag, write the outputs. */
static qr_status run_report(const report_opts *o)
{
    size_t n = (size_t)o->n_ckpts, done = 0;
    qr_report_style style = {o->max_err, o->spike, (int)o->window, (size_t)o->top, o->act};
    qr_report_ckpt *cks = NULL;
    qr_status st = QR_OK;
    QR_CHECK(qr_calloc(&cks, n, sizeof *cks, "checkpoints"));
    for (; done < n; done++) {
        QR_CHECK(qr_report_read(o->ckpts[done], NULL, &cks[done]));
        qr_report_set_primary(&cks[done], o->act); /* --act was checked by parse() */
        qr_report_flag(&cks[done], style.max_err, style.spike_factor, style.window);
    }
    for (size_t k = 0; k < n; k++) {
        QR_CHECK(qr_report_read_quality(&cks[k])); /* CKPT.eval.json (io/report_quality.h) */
    }
    if (!o->out_dir && !o->md && !o->csv && !o->json && !o->svg && !o->rank_svg && !o->kl_svg) {
        QR_CHECK(qr_report_write_md(stdout, cks, n, &style));
    } else {
        QR_CHECK(write_outputs(o, cks, n, &style));
    }
done:
    for (size_t k = 0; k < done && cks; k++) {
        qr_report_ckpt_free(&cks[k]);
    }
    free(cks);
    return st;
}

/* Every output before any work: not a checkpoint read, not inside or above one (io/fs.h). */
static qr_status check_outputs(const report_opts *o)
{
    const char *what[] = {"--md", "--csv", "--json", "--svg", "--rank-svg", "--kl-svg"};
    const char *files[] = {o->md, o->csv, o->json, o->svg, o->rank_svg, o->kl_svg};
    const char *const *ckpts = (const char *const *)o->ckpts;
    if (o->out_dir) {
        QR_TRY(qr_fs_check_output("--out", o->out_dir, QR_OUT_DIR, ckpts, (size_t)o->n_ckpts));
    }
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (files[i]) {
            QR_TRY(qr_fs_check_output(what[i], files[i], QR_OUT_FILE, ckpts, (size_t)o->n_ckpts));
        }
    }
    return QR_OK;
}

qr_status qr_cmd_report(int argc, char **argv)
{
    report_opts o;
    bool help = false;
    QR_TRY(parse(argc, argv, &o, &help));
    if (help) {
        return QR_OK;
    }
    QR_TRY(check_outputs(&o));
    return qr_log_rank() == 0 ? run_report(&o) : QR_OK;
}

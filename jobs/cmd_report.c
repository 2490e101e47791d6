/* cmd_report.c: `qrecon report CKPT [CKPT ...]`: per-module error tables and plots of one or more
 * checkpoints, from the metrics they store and the validation results beside them. Rank 0 reads and
 * writes; the other ranks only agree on the status. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "io/report_read.h"
#include "io/report_write.h"
#include "jobs/cli.h"
#include "src/alloc.h"
#include "src/log.h"

static const char report_help[] =
    "usage: qrecon report CKPT [CKPT ...] [--out DIR] [--md FILE] [--csv FILE] [--json FILE]\n"
    "                     [--svg FILE] [--rank-svg FILE] [--act auto|float|a8|a4]\n"
    "                     [--max-err X] [--spike F] [--window L] [--top N]\n"
    "\n"
    "One row per quantized module (layer, module, shape, method, rank or salient channels,\n"
    "bits per weight, weight error, output error with float / A8 / A4 activations, SQNR,\n"
    "kernel check, seconds), the numbers stored in each checkpoint. The kernel check comes\n"
    "from CKPT.validate.json (written by `qrecon validate --json`) when it exists. Several\n"
    "checkpoints are shown side by side. Without output options the Markdown goes to stdout.\n"
    "\n"
    "  --out DIR        write DIR/report.md, report.csv, report.json, layers.svg, and\n"
    "                   rank.svg when the checkpoints form a rank sweep\n"
    "  --md/--csv/--json/--svg/--rank-svg FILE   write one output to FILE\n"
    "  --act MODE       which output error flags and plots use: auto (each checkpoint's\n"
    "                   activation bits), float, a8, a4 (default auto)\n"
    "  --max-err X      flag modules whose error exceeds X (default: off)\n"
    "  --spike F        flag modules above F x the median of the same module type in the\n"
    "                   neighbouring layers (default 2; 0 = off)\n"
    "  --window L       neighbouring layers on each side for --spike (default 2)\n"
    "  --top N          worst modules listed per checkpoint (default 5)\n";

typedef struct {
    const char *out_dir, *md, *csv, *json, *svg, *rank_svg, *act;
    qr_report_style style;
} report_opts;

static qr_status parse(int argc, char **argv, report_opts *o, int *help)
{
    static const struct option longopts[] = {{"out", required_argument, 0, 'o'},
                                             {"md", required_argument, 0, 'm'},
                                             {"csv", required_argument, 0, 'c'},
                                             {"json", required_argument, 0, 'j'},
                                             {"svg", required_argument, 0, 's'},
                                             {"rank-svg", required_argument, 0, 'r'},
                                             {"act", required_argument, 0, 'a'},
                                             {"max-err", required_argument, 0, 'x'},
                                             {"spike", required_argument, 0, 'p'},
                                             {"window", required_argument, 0, 'w'},
                                             {"top", required_argument, 0, 't'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    int c;
    int64_t v;
    memset(o, 0, sizeof *o);
    o->act = "auto";
    o->style = (qr_report_style){0.0, 2.0, 2, 5, "auto"};
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            o->out_dir = optarg;
            break;
        case 'm':
            o->md = optarg;
            break;
        case 'c':
            o->csv = optarg;
            break;
        case 'j':
            o->json = optarg;
            break;
        case 's':
            o->svg = optarg;
            break;
        case 'r':
            o->rank_svg = optarg;
            break;
        case 'a':
            if (strcmp(optarg, "auto") != 0 && strcmp(optarg, "float") != 0 &&
                strcmp(optarg, "a8") != 0 && strcmp(optarg, "a4") != 0) {
                return qr_fail(QR_ERR_INPUT, "--act: expected auto, float, a8 or a4, found '%s'",
                               optarg);
            }
            o->act = o->style.act = optarg;
            break;
        case 'x':
            QR_TRY(qr_cli_double("--max-err", optarg, 0.0, 1e300, &o->style.max_err));
            break;
        case 'p':
            QR_TRY(qr_cli_double("--spike", optarg, 0.0, 1e300, &o->style.spike_factor));
            break;
        case 'w':
            QR_TRY(qr_cli_int("--window", optarg, 1, 1000, &v));
            o->style.window = (int)v;
            break;
        case 't':
            QR_TRY(qr_cli_int("--top", optarg, 0, 100000, &v));
            o->style.top = (size_t)v;
            break;
        case 'h':
            *help = 1;
            return QR_OK;
        default:
            return qr_cli_usage_error("report",
                                      optopt ? "an option is missing its value" : "unknown option");
        }
    }
    if (optind >= argc) {
        return qr_cli_usage_error("report", "expected at least one checkpoint");
    }
    return QR_OK;
}

/* Rank 0's work: read every checkpoint, flag, write the outputs. */
static qr_status run_report(int argc, char **argv, const report_opts *o)
{
    size_t n = (size_t)(argc - optind), done = 0;
    qr_report_ckpt *cks = NULL;
    qr_status st = QR_OK;
    char path[4096];
    QR_CHECK(qr_calloc(&cks, n, sizeof *cks, "checkpoints"));
    for (; done < n; done++) {
        QR_CHECK(qr_report_read(argv[optind + (int)done], NULL, &cks[done]));
        qr_report_set_primary(&cks[done], o->act); /* --act was checked by parse() */
        qr_report_flag(&cks[done], o->style.max_err, o->style.spike_factor, o->style.window);
    }
    if (o->out_dir) {
        int sweep = 0;
        QR_CHECK(qr_fs_mkdirs(o->out_dir));
        QR_CHECK(qr_fs_join(path, sizeof path, o->out_dir, "report.md"));
        QR_CHECK(qr_report_write_md_file(path, cks, n, &o->style));
        QR_CHECK(qr_fs_join(path, sizeof path, o->out_dir, "report.csv"));
        QR_CHECK(qr_report_write_csv(path, cks, n));
        QR_CHECK(qr_fs_join(path, sizeof path, o->out_dir, "report.json"));
        QR_CHECK(qr_report_write_json(path, cks, n));
        QR_CHECK(qr_fs_join(path, sizeof path, o->out_dir, "layers.svg"));
        QR_CHECK(qr_report_write_layers_svg(path, cks, n));
        QR_CHECK(qr_fs_join(path, sizeof path, o->out_dir, "rank.svg"));
        QR_CHECK(qr_report_write_rank_svg(path, cks, n, &sweep));
        printf("report: %s/report.md (also report.csv, report.json, layers.svg%s)\n", o->out_dir,
               sweep ? ", rank.svg" : "");
    }
    if (o->md) {
        QR_CHECK(qr_report_write_md_file(o->md, cks, n, &o->style));
    }
    if (o->csv) {
        QR_CHECK(qr_report_write_csv(o->csv, cks, n));
    }
    if (o->json) {
        QR_CHECK(qr_report_write_json(o->json, cks, n));
    }
    if (o->svg) {
        QR_CHECK(qr_report_write_layers_svg(o->svg, cks, n));
    }
    if (o->rank_svg) {
        int sweep = 0;
        QR_CHECK(qr_report_write_rank_svg(o->rank_svg, cks, n, &sweep));
        if (!sweep) {
            QR_WARN("--rank-svg: the checkpoints are not a rank sweep of one method; no plot");
        }
    }
    if (!o->out_dir && !o->md && !o->csv && !o->json && !o->svg && !o->rank_svg) {
        QR_CHECK(qr_report_write_md(stdout, cks, n, &o->style));
    }
done:
    for (size_t k = 0; k < done && cks; k++) {
        qr_report_ckpt_free(&cks[k]);
    }
    free(cks);
    return st;
}

qr_status qr_cmd_report(int argc, char **argv)
{
    report_opts o;
    int help = 0;
    QR_TRY(parse(argc, argv, &o, &help));
    if (help) {
        qr_cli_print_help(report_help);
        return QR_OK;
    }
    return qr_log_rank() == 0 ? run_report(argc, argv, &o) : QR_OK;
}

/* cmd_quantize.c: `qrecon quantize`: options and help of the distributed quantize job
 * (jobs/quantize_run.h does the work). Every rank parses the same command line, so a usage error is
 * the same message everywhere. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "jobs/cli.h"
#include "jobs/quantize_run.h"
#include "jobs/stop.h"
#include "src/method.h"

static const char quantize_help[] =
    "usage: mpiexec -n N qrecon quantize --model DIR --calib DIR --out FILE.h5 [options]\n"
    "\n"
    "Quantize every linear module of a Llama-family model to INT4 with an error-reconstruction\n"
    "method, distributed over MPI ranks, and write ONE shared checkpoint (parallel HDF5).\n"
    "Layers are cut into contiguous slices, one per rank group (the plan, `qrecon plan`); each\n"
    "finished module is written to FILE.h5.parts/<module>.h5, so rerunning the same command\n"
    "after a kill or a time limit only does the missing modules, then reassembles.\n"
    "\n"
    "required:\n"
    "  --model DIR        source model (Hugging Face folder or llama2.c checkpoint)\n"
    "  --calib DIR        calibration shards (shard-*.h5 from `qrecon capture`)\n"
    "  --out FILE         the shared checkpoint to write (parts in FILE.parts/)\n"
    "options (defaults in parentheses):\n"
    "  --method M         rtn, lqer, qera-approx, qera-exact, aser, serq, flrq, srr (srr)\n"
    "  --wbits N          weight bits; only 4 is supported (4)\n"
    "  --abits N          activation bits the model will run with: 8, 4, or 16 = float (8)\n"
    "  --group N          weight group size along d_in, 0 = one group per row (128; aser: 0)\n"
    "  --asym             asymmetric weight groups with zero points (symmetric)\n"
    "  --clip             search a per-group clipping factor (off)\n"
    "  --rank N           low-rank budget r (32)\n"
    "  --salient K        salient channels: aser f (32), serq k (128)\n"
    "  --gptq             GPTQ instead of round-to-nearest for the main weight (off)\n"
    "  --svd MODE         auto, exact or randomized truncated SVD (auto)\n"
    "  --seed N           seed of every random stream (0)\n"
    "  --holdout F        fraction of calibration windows held out for the metrics: the last\n"
    "                     ceil(F x windows) windows across the shards in order (0.1)\n"
    "  --grid PxQ         ranks per group as a BLACS grid; N must be a multiple of P x Q (1x1)\n"
    "  -h, --help         this text\n"
    "\n"
    "Exit codes: 0 done, 2 bad input (including parts made with other options and an output\n"
    "locked by another job), 75 stopped by SIGUSR1/SIGTERM (rerun to resume), 1 internal error.\n";

enum {
    OPT_MODEL = 256,
    OPT_CALIB,
    OPT_OUT,
    OPT_METHOD,
    OPT_WBITS,
    OPT_ABITS,
    OPT_GROUP,
    OPT_ASYM,
    OPT_CLIP,
    OPT_RANK,
    OPT_SALIENT,
    OPT_GPTQ,
    OPT_SVD,
    OPT_SEED,
    OPT_HOLDOUT,
    OPT_GRID,
    OPT_COUNT
};

qr_status qr_cmd_quantize(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, OPT_MODEL},
        {"calib", required_argument, NULL, OPT_CALIB},
        {"out", required_argument, NULL, OPT_OUT},
        {"method", required_argument, NULL, OPT_METHOD},
        {"wbits", required_argument, NULL, OPT_WBITS},
        {"abits", required_argument, NULL, OPT_ABITS},
        {"group", required_argument, NULL, OPT_GROUP},
        {"asym", no_argument, NULL, OPT_ASYM},
        {"clip", no_argument, NULL, OPT_CLIP},
        {"rank", required_argument, NULL, OPT_RANK},
        {"salient", required_argument, NULL, OPT_SALIENT},
        {"gptq", no_argument, NULL, OPT_GPTQ},
        {"svd", required_argument, NULL, OPT_SVD},
        {"seed", required_argument, NULL, OPT_SEED},
        {"holdout", required_argument, NULL, OPT_HOLDOUT},
        {"grid", required_argument, NULL, OPT_GRID},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* Values are collected first: the method decides the defaults the other options override. */
    const char *val[OPT_COUNT] = {0};
    char what[256];
    qr_quantize_job job;
    qr_method_id method;
    int64_t v;
    int c;
    memset(&job, 0, sizeof job);
    optind = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == 'h') {
            qr_cli_print_help(quantize_help);
            return QR_OK;
        }
        if (c == ':') {
            snprintf(what, sizeof what, "option '%s' is missing its value", argv[optind - 1]);
            return qr_cli_usage_error("quantize", what);
        }
        if (c == '?' || c < OPT_MODEL || c >= OPT_COUNT) {
            snprintf(what, sizeof what, "unknown option '%s'", argv[optind - 1]);
            return qr_cli_usage_error("quantize", what);
        }
        val[c] = optarg ? optarg : "";
    }
    if (optind < argc) {
        snprintf(what, sizeof what, "unexpected argument '%s'", argv[optind]);
        return qr_cli_usage_error("quantize", what);
    }
    if (!val[OPT_MODEL] || !val[OPT_CALIB] || !val[OPT_OUT]) {
        return qr_cli_usage_error("quantize", "--model, --calib and --out are required");
    }
    job.model_path = val[OPT_MODEL];
    job.calib_dir = val[OPT_CALIB];
    job.out_path = val[OPT_OUT];
    method = qr_method_parse(val[OPT_METHOD] ? val[OPT_METHOD] : "srr");
    if (method == QR_METHOD_COUNT) {
        return qr_fail(QR_ERR_INPUT,
                       "--method: expected rtn, lqer, qera-approx, qera-exact, aser, serq, flrq or "
                       "srr, found '%s'",
                       val[OPT_METHOD]);
    }
    qr_method_opts_default(&job.method, method);
    job.wbits = 4;
    job.grid_p = job.grid_q = 1;
    job.holdout = 0.1;
    job.agroup = 128;
    if (val[OPT_WBITS]) {
        QR_TRY(qr_cli_int("--wbits", val[OPT_WBITS], 4, 4, &v));
        job.wbits = (int)v;
    }
    if (val[OPT_ABITS]) {
        QR_TRY(qr_cli_int("--abits", val[OPT_ABITS], 4, 16, &v));
        if (v != 4 && v != 8 && v != 16) {
            return qr_fail(QR_ERR_INPUT, "--abits: expected 4, 8 or 16, found '%s'",
                           val[OPT_ABITS]);
        }
        job.method.abits = v == 16 ? 0 : (int)v;
    }
    if (val[OPT_GROUP]) {
        QR_TRY(qr_cli_int("--group", val[OPT_GROUP], 0, 1 << 20, &job.method.wq.group));
    }
    job.method.wq.asym = val[OPT_ASYM] != NULL;
    job.method.wq.clip_search = val[OPT_CLIP] != NULL;
    job.method.gptq = val[OPT_GPTQ] != NULL;
    if (val[OPT_RANK]) {
        QR_TRY(qr_cli_int("--rank", val[OPT_RANK], 0, 1 << 20, &job.method.rank));
    }
    if (val[OPT_SALIENT]) {
        QR_TRY(qr_cli_int("--salient", val[OPT_SALIENT], 0, 1 << 20, &job.method.n_salient));
    }
    if (val[OPT_SVD]) {
        const char *s = val[OPT_SVD];
        job.method.svd.mode = strcmp(s, "auto") == 0    ? QR_SVD_AUTO
                              : strcmp(s, "exact") == 0 ? QR_SVD_EXACT
                                                        : QR_SVD_RANDOMIZED;
        if (strcmp(s, "auto") != 0 && strcmp(s, "exact") != 0 && strcmp(s, "randomized") != 0) {
            return qr_fail(QR_ERR_INPUT, "--svd: expected auto, exact or randomized, found '%s'",
                           s);
        }
    }
    if (val[OPT_SEED]) {
        QR_TRY(qr_cli_int("--seed", val[OPT_SEED], 0, INT64_MAX, &v));
        job.method.seed = (uint64_t)v;
    }
    if (val[OPT_HOLDOUT]) {
        QR_TRY(qr_cli_double("--holdout", val[OPT_HOLDOUT], 0.0, 0.9, &job.holdout));
    }
    if (val[OPT_GRID]) {
        QR_TRY(qr_cli_grid("--grid", val[OPT_GRID], &job.grid_p, &job.grid_q));
    }
    qr_stop_install();
    job.stop = qr_stop_flag();
    return qr_quantize_run(MPI_COMM_WORLD, &job);
}

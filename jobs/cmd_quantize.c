/* cmd_quantize.c: `qrecon quantize`: the option table and help of the distributed quantize job
 * (jobs/quantize_run.h does the work). Every rank parses the same command line, so a usage error is
 * the same message everywhere. */
#include <stddef.h>
#include <string.h>

#include "io/fs.h"
#include "jobs/method_options.h"
#include "jobs/cli.h"
#include "jobs/llama_job.h"
#include "jobs/quantize_run.h"
#include "jobs/sequential_run.h"
#include "jobs/stop.h"
#include "jobs/test_hooks.h"
#include "mpi/comm.h"

static const qr_cmd_doc doc = {
    "quantize",
    "mpiexec -n N qrecon quantize --model DIR (--calib DIR | --text FILE | --token-file FILE)\n"
    "       --out FILE.h5 [options]",
    "Quantize every linear module of a Llama-family model to INT4 with an error-reconstruction\n"
    "method, distributed over MPI ranks, and write ONE shared checkpoint (parallel HDF5).\n"
    "Layers are cut into contiguous slices, one per rank group (the plan, `qrecon plan`); each\n"
    "finished module is written to FILE.h5.parts/<module>.h5, so rerunning the same command\n"
    "after a kill or a time limit only does the missing modules, then reassembles. Every option\n"
    "is checked against every module's shape before the first module runs.\n"
    "\n"
    "Sequential mode (--text or --token-file instead of --calib): capture and quantize in one\n"
    "job, layer by layer, with no calibration shards. The windows are capture's (--seq-len,\n"
    "--tokens); each module input's statistics are accumulated as the windows pass, its modules\n"
    "are quantized, and the hidden states go on through the QUANTIZED layer (Q + L*R), so later\n"
    "layers are calibrated on what they will see. Rank group g holds only its slice's weights\n"
    "and the hidden states of its windows (split over the P*Q ranks of a group as capture\n"
    "splits them); the methods run on each group's first rank. A rerun resumes from the parts\n"
    "(docs/quantize.md).\n",
    "Exit codes: 0 done, 2 bad input (including parts made with other options and an output\n"
    "locked by another job), 75 stopped by SIGUSR1/SIGTERM (rerun to resume), 1 internal error.\n",
};

/* --abits 16 means float activations, stored as 0. */
static qr_status parse_abits(const char *opt, const char *value, void *dst)
{
    if (strcmp(value, "4") != 0 && strcmp(value, "8") != 0 && strcmp(value, "16") != 0) {
        return qr_fail(QR_ERR_INPUT, "%s: expected 4, 8 or 16, found '%s'", opt, value);
    }
    *(int *)dst = strcmp(value, "16") == 0 ? 0 : (int)(value[0] - '0');
    return QR_OK;
}

#define JOB(f) offsetof(qr_quantize_job, f)
static const qr_opt required_rows[] = {
    {"model", QR_OPT_STR, JOB(model_path), "DIR",
     "source model (Hugging Face folder or llama2.c checkpoint)", .required = true},
    {"calib", QR_OPT_STR, JOB(calib_dir), "DIR",
     "calibration shards from `qrecon capture` (or --text: sequential mode)"},
    {"out", QR_OPT_STR, JOB(out_path), "FILE",
     "the shared checkpoint to write (parts in FILE.parts/)", .required = true},
};
static const qr_opt job_rows[] = {
    {"abits", QR_OPT_CUSTOM, JOB(abits), "N",
     "activation bits the model will run with: 8, 4, or 16 = float", "8", .parse = parse_abits},
    {"holdout", QR_OPT_DOUBLE, JOB(holdout), "F",
     "fraction of calibration windows held out for the metrics: the last\n"
     "ceil(F x windows) windows across the shards in order",
     .dmin = 0.0, .dmax = 0.9},
    {"metric-rows", QR_OPT_INT, JOB(metric_rows), "N",
     "held-out rows the per-module metrics use, spread evenly over the held-out\n"
     "windows (0: all of them; the count is stored in the checkpoint)",
     .imin = 0, .imax = INT64_C(1) << 40},
    {"fallback-rtn", QR_OPT_FLAG, JOB(fallback_rtn), NULL,
     "store round-to-nearest's module (same group) wherever the method's held-out\n"
     "error at --abits is above RTN's; every such module is flagged either way (off)"},
    {"grid", QR_OPT_CUSTOM, JOB(grid), "PxQ",
     "ranks per group as a BLACS grid; N must be a multiple of P x Q", "1x1",
     .parse = qr_opt_parse_grid},
    {"keep-parts", QR_OPT_FLAG, JOB(keep_parts), NULL,
     "keep FILE.parts/ after the checkpoint is assembled and verified (default:\n"
     "its part files, lock and folder are removed then)"},
    {"force", QR_OPT_FLAG, JOB(force), NULL,
     "start over: remove the existing parts of this output's modules first (a\n"
     "lock held by a live job still refuses; nothing else in FILE.parts/ is touched)"},
};
#undef JOB

/* The command line: the job, and the sequential mode's input (capture's input rows). */
typedef struct {
    qr_quantize_job job;
    qr_llama_cli in; /* --text, --token-file, --unknown-to-zero, --seq-len; --tokenizer below */
    int64_t tokens;
} quantize_cli;

#define CLI(f) offsetof(quantize_cli, f)
static const qr_opt seq_rows[] = {
    {"tokens", QR_OPT_INT, CLI(tokens), "T", "tokens to run: floor(T / seq-len) windows at most",
     .imin = 1, .imax = INT64_MAX / 2},
    {"tokenizer", QR_OPT_STR, CLI(in.input.tokenizer_path), "FILE",
     "tokenizer.json or llama2.c tokenizer.bin", "the model's"},
};
#undef CLI

static void init_job(void *vcli, qr_method_id m)
{
    quantize_cli *c = vcli;
    memset(c, 0, sizeof *c);
    qr_quantize_job_default(&c->job, m);
    c->in.seq_len = 256; /* capture's defaults */
    c->tokens = 65536;
}

/* Sequential mode: the job from the command line (jobs/sequential_run.h). */
static qr_status run_sequential(const quantize_cli *c)
{
    qr_sequential_job sj;
    memset(&sj, 0, sizeof sj);
    sj.q = c->job;
    sj.input = c->in.input;
    sj.seq_len = c->in.seq_len;
    sj.tokens = c->tokens;
    QR_TRY(qr_mpi_agree(
        MPI_COMM_WORLD,
        qr_fs_check_output("--out", sj.q.out_path, QR_OUT_FILE,
                           (const char *[]){sj.q.model_path, sj.input.text_path,
                                            sj.input.token_path, sj.input.tokenizer_path},
                           4)));
    qr_stop_install();
    sj.q.stop = qr_stop_flag();
    qr_test_hooks_install(&sj.q);
    return qr_sequential_run(MPI_COMM_WORLD, &sj, NULL);
}

qr_status qr_cmd_quantize(int argc, char **argv)
{
    quantize_cli c;
    qr_quantize_job *job = &c.job;
    qr_opt_result res;
    qr_opt_table tables[] = {
        QR_OPT_TABLE(required_rows, &c.job, "required"),
        qr_method_opt_table(&c.job.method, "method (defaults in parentheses)"),
        QR_OPT_TABLE(job_rows, &c.job, "job"),
        qr_llama_input_opt_table(&c.in, "sequential mode (instead of --calib)"),
        QR_OPT_TABLE(seq_rows, &c, NULL),
    };
    QR_TRY(qr_opts_parse_with_method(&doc, tables, 5, 0, argc, argv, init_job, &c, &c.job.method,
                                     &res));
    if (res.help) {
        return QR_OK;
    }
    job->method.abits = job->abits; /* a method may fit the activation width (JOINT at A4) */
    if (!!job->calib_dir + !!c.in.input.text_path + !!c.in.input.token_path != 1) {
        return qr_cli_usage_error("quantize",
                                  "expected exactly one of --calib, --text and --token-file");
    }
    if (!job->calib_dir) {
        return run_sequential(&c);
    }
    QR_TRY(qr_mpi_agree(MPI_COMM_WORLD,
                        qr_fs_check_output("--out", job->out_path, QR_OUT_FILE,
                                           (const char *[]){job->model_path, job->calib_dir}, 2)));
    qr_stop_install();
    job->stop = qr_stop_flag();
    qr_test_hooks_install(job);
    return qr_quantize_run(MPI_COMM_WORLD, job, NULL);
}

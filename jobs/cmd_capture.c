/* cmd_capture.c: `qrecon capture`: run text (or token ids) through the float32 model in windows
 * and write the input of every linear-module group to HDF5 calibration shards (io/calib_shard.h,
 * docs/calibration.md). The options; the job, pipelined over layer slices, is jobs/capture_run.c.
 */
#include <mpi.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "jobs/capture_run.h"
#include "jobs/cli.h"
#include "jobs/llama_job.h"
#include "jobs/stop.h"
#include "jobs/text_mix.h"
#include "jobs/test_hooks.h"
#include "mpi/comm.h"

static const qr_cmd_doc doc = {
    "capture",
    "qrecon capture --model DIR (--text FILE | --token-file FILE) --out CALIB_DIR [options]",
    "Cut the input into windows of N tokens, each starting with BOS (id 1): the whole text is\n"
    "tokenized once (with the \" \" dummy prefix, as llama2.c does), and window w holds BOS and\n"
    "tokens w*(N-1) .. (w+1)*(N-1)-1. Only whole windows are kept, at most T tokens in all\n"
    "(floor(T / N) windows). Each window runs through the float32 model and the input of every\n"
    "linear-module group of every layer is written to HDF5 shards in CALIB_DIR.\n"
    "\n"
    "The R ranks form R/(P*Q) groups of P*Q ranks, and the layers are cut into the slices a\n"
    "quantize job of R ranks and --grid PxQ plans (qrecon plan shows them): group g loads only "
    "its\n"
    "slice's weights, receives the hidden states of B windows at a time from group g-1, runs its\n"
    "layers and sends them on; within a group, rank j captures windows [j*W/(P*Q),\n"
    "(j+1)*W/(P*Q)). Each rank writes its slice's inputs for its windows to its own shard:\n"
    "shard-RRRRR.h5 when one group holds every layer, else shard-lAAAAA-BBBBB-RRRRR.h5 (layers\n"
    "A..B-1). Complete shards of the same capture already in CALIB_DIR are kept (a killed capture\n"
    "reruns only what is missing); other shards of the same model are replaced; shards of another\n"
    "model are refused. The same input and options give the same bytes.\n",
    "Exit codes: 0 done, 2 bad input, 75 stopped by SIGUSR1/SIGTERM (rerun to finish; complete\n"
    "shards are kept), 1 internal error.\n",
};

typedef struct {
    qr_llama_cli in; /* --model, --tokenizer, --text, --token-file, --unknown-to-zero, --seq-len */
    char text_names[QR_INPUT_MAX_TEXTS][4096]; /* --text FILE:W paths without their weight */
    const char *out;
    int64_t tokens;
    qr_dtype dtype;
    int grid[2];
    int64_t micro_batch;
} capture_opts;

static qr_status parse_dtype(const char *opt, const char *value, void *dst)
{
    if (strcmp(value, "f32") == 0) {
        *(qr_dtype *)dst = QR_DTYPE_F32;
    } else if (strcmp(value, "f16") == 0) {
        *(qr_dtype *)dst = QR_DTYPE_F16;
    } else {
        return qr_fail(QR_ERR_INPUT, "%s: expected f32 or f16, found '%s'", opt, value);
    }
    return QR_OK;
}

#define OPT(f) offsetof(capture_opts, f)
static const qr_opt capture_rows[] = {
    {"out", QR_OPT_STR, OPT(out), "CALIB_DIR", "folder for the shards (created)"},
    {"tokens", QR_OPT_INT, OPT(tokens), "T", "tokens to capture over all ranks", .imin = 1,
     .imax = INT64_MAX / 2},
    {"dtype", QR_OPT_CUSTOM, OPT(dtype), "f32|f16", "storage type of the activations", "f32",
     .parse = parse_dtype},
    {"grid", QR_OPT_CUSTOM, OPT(grid), "PxQ",
     "ranks per group, as quantize's --grid (1x1: one layer slice per rank;\n"
     "Rx1 with R ranks: every rank holds every layer)",
     "1x1", .parse = qr_opt_parse_grid},
    {"micro-batch", QR_OPT_INT, OPT(micro_batch), "B", "windows per message between groups",
     .imin = 1, .imax = INT32_MAX},
};
#undef OPT

static qr_status parse(int argc, char **argv, capture_opts *o, bool *help)
{
    qr_opt_result res;
    qr_opt_table tables[] = {
        qr_llama_model_opt_table(&o->in, "options (defaults in parentheses)"),
        qr_llama_inputs_opt_table(&o->in, NULL), /* --text repeatable: mixed (jobs/text_mix.h) */
        QR_OPT_TABLE(capture_rows, o, NULL),
    };
    memset(o, 0, sizeof *o);
    o->in.seq_len = 256;
    o->tokens = 65536;
    o->dtype = QR_DTYPE_F32;
    o->grid[0] = o->grid[1] = 1;
    o->micro_batch = 1;
    QR_TRY(qr_opts_parse(&doc, tables, 3, 0, argc, argv, &res));
    *help = res.help;
    QR_TRY(qr_text_mix_from_list(&o->in.texts, o->text_names, &o->in.input));
    if (!res.help && (!o->in.model_path || !o->out || !qr_input_one_source(&o->in.input))) {
        return qr_cli_usage_error(
            "capture", "expected --model, --out and exactly one of --text, --token-file");
    }
    return QR_OK;
}

qr_status qr_cmd_capture(int argc, char **argv)
{
    capture_opts o;
    bool help = false;
    qr_capture_job job;
    QR_TRY(parse(argc, argv, &o, &help));
    if (help) {
        return QR_OK;
    }
    qr_capture_job_default(&job);
    job.model_path = o.in.model_path;
    job.input = o.in.input;
    job.out_dir = o.out;
    job.seq_len = o.in.seq_len;
    job.tokens = o.tokens;
    job.dtype = o.dtype;
    job.grid[0] = o.grid[0];
    job.grid[1] = o.grid[1];
    job.micro_batch = o.micro_batch;
    job.stop = qr_stop_flag();
    QR_TRY(qr_mpi_agree(
        MPI_COMM_WORLD,
        qr_fs_check_output("--out", o.out, QR_OUT_DIR,
                           (const char *[]){o.in.model_path, o.in.input.text_path,
                                            o.in.input.token_path, o.in.input.tokenizer_path},
                           4)));
    qr_test_hooks_install_capture(&job);
    return qr_capture_run(MPI_COMM_WORLD, &job, NULL);
}

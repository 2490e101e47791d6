/* cmd_capture.c: `qrecon capture`: run text (or token ids) through the float32 model in windows
 * and write the input of every linear-module group to HDF5 calibration shards, one per rank
 * (io/calib_shard.h, docs/calibration.md). Collective: every rank loads the model and tokenizes
 * the same input, then captures its own contiguous range of windows into its own shard. */
#include <mpi.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/calib_shard.h"
#include "io/fs.h"
#include "jobs/cli.h"
#include "jobs/llama_job.h"
#include "jobs/stop.h"
#include "mpi/comm.h"
#include "src/alloc.h"
#include "src/log.h"
#include "src/progress.h"

static const qr_cmd_doc doc = {
    "capture",
    "qrecon capture --model DIR (--text FILE | --token-file FILE) --out CALIB_DIR [options]",
    "Cut the input into windows of N tokens, each starting with BOS (id 1): the whole text is\n"
    "tokenized once (with the \" \" dummy prefix, as llama2.c does), and window w holds BOS and\n"
    "tokens w*(N-1) .. (w+1)*(N-1)-1. Only whole windows are kept, at most T tokens in all\n"
    "(floor(T / N) windows). Each window runs through the float32 model and the input of every\n"
    "linear-module group of every layer is written to CALIB_DIR/shard-RRRRR.h5, one shard per MPI\n"
    "rank: rank r of R captures windows [r*W/R, (r+1)*W/R). Shards of the same model already in\n"
    "CALIB_DIR are replaced; shards of another model are refused. The same input and options give\n"
    "the same bytes.\n",
    "Exit codes: 0 done, 2 bad input, 75 stopped by SIGUSR1/SIGTERM (rerun to capture from the\n"
    "start), 1 internal error.\n",
};

typedef struct {
    qr_llama_cli in; /* --model, --tokenizer, --text, --token-file, --unknown-to-zero, --seq-len */
    const char *out;
    int64_t tokens;
    qr_dtype dtype;
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
};
#undef OPT

static qr_status parse(int argc, char **argv, capture_opts *o, bool *help)
{
    qr_opt_result res;
    qr_opt_table tables[] = {
        qr_llama_model_opt_table(&o->in, "options (defaults in parentheses)"),
        qr_llama_input_opt_table(&o->in, NULL),
        QR_OPT_TABLE(capture_rows, o, NULL),
    };
    memset(o, 0, sizeof *o);
    o->in.seq_len = 256;
    o->tokens = 65536;
    o->dtype = QR_DTYPE_F32;
    QR_TRY(qr_opts_parse(&doc, tables, 3, 0, argc, argv, &res));
    *help = res.help;
    if (!res.help && (!o->in.model_path || !o->out || !qr_input_one_source(&o->in.input))) {
        return qr_cli_usage_error(
            "capture", "expected --model, --out and exactly one of --text, --token-file");
    }
    return QR_OK;
}

/* What every rank holds during the capture. */
typedef struct {
    capture_opts o;
    int rank, nranks;
    qr_llama_job job;
    qr_llama_state *state;
    qr_calib_writer *writer;
    qr_progress *prog;
    int32_t *ids;    /* (n_ids) the whole input, no BOS */
    int32_t *window; /* (seq_len) */
    size_t n_ids;
    int64_t n_windows, w0, w1; /* all windows; this rank's are [w0, w1) */
    char shard[QR_CALIB_STR_MAX];
    double elapsed; /* this rank's capture loop */
    uint64_t bytes; /* written to this rank's shard */
} capture_run;

/* The hook: every layer input of the window goes to its dataset at the window's rows. */
typedef struct {
    qr_calib_writer *w;
    int64_t row0; /* first row of the current window in this shard */
    qr_status st; /* the first write failure; later inputs are skipped */
} capture_ctx;

static void on_input(void *vctx, int64_t layer, qr_input_kind kind, const float *X, int64_t n,
                     int64_t d)
{
    capture_ctx *ctx = vctx;
    if (ctx->st == QR_OK) {
        ctx->st = qr_calib_writer_put(ctx->w, layer, kind, ctx->row0, X, n, d);
    }
}

/* Open: the model and the input, then the window count. Every rank reads the same files, so every
 * rank meets the same error. */
static qr_status phase_open(capture_run *r)
{
    const capture_opts *o = &r->o;
    int64_t L = o->in.seq_len, by_text, by_budget;
    QR_TRY(qr_llama_job_open(o->in.model_path, &r->job));
    if (L > r->job.w.cfg.max_seq_len) {
        return qr_fail(QR_ERR_INPUT,
                       "--seq-len: longer than the model's maximum context (expected at most %lld "
                       "for %s, found %lld)",
                       (long long)r->job.w.cfg.max_seq_len, o->in.model_path, (long long)L);
    }
    QR_TRY(qr_llama_job_input(&r->job, &o->in.input, &r->ids, &r->n_ids));
    by_text = (int64_t)(r->n_ids / (size_t)(L - 1));
    by_budget = o->tokens / L;
    r->n_windows = by_text < by_budget ? by_text : by_budget;
    if (r->n_windows < 1) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: not enough for one window (expected at least %lld tokens after "
                       "BOS and --tokens >= --seq-len %lld; found %zu tokens, --tokens %lld)",
                       qr_input_source_path(&o->in.input), (long long)L - 1, (long long)L, r->n_ids,
                       (long long)o->tokens);
    }
    if (r->n_windows < r->nranks) {
        return qr_fail(QR_ERR_INPUT,
                       "capture: %lld window(s) for %d ranks (expected at least one window per "
                       "rank; raise --tokens or use fewer ranks)",
                       (long long)r->n_windows, r->nranks);
    }
    r->w0 = (int64_t)r->rank * r->n_windows / r->nranks;
    r->w1 = (int64_t)(r->rank + 1) * r->n_windows / r->nranks;
    return QR_OK;
}

/* Rank 0 says so when the input is shorter than --tokens asks for. */
static void warn_short_input(const capture_run *r)
{
    const capture_opts *o = &r->o;
    if (r->rank == 0 && r->n_windows * o->in.seq_len + o->in.seq_len <= o->tokens) {
        QR_WARN("capture: %s gives %zu tokens, enough for %lld windows (%lld tokens), fewer than "
                "--tokens %lld",
                qr_input_source_path(&o->in.input), r->n_ids, (long long)r->n_windows,
                (long long)(r->n_windows * o->in.seq_len), (long long)o->tokens);
    }
}

/* Check: rank 0 prepares the folder: create it, refuse shards of another model, drop old shards of
 * this one (a capture with fewer ranks must not leave stale shards behind). */
static qr_status phase_check_out(const capture_run *r)
{
    const char *out = r->o.out;
    size_t found = 0;
    if (r->rank != 0) {
        return QR_OK;
    }
    QR_TRY(qr_fs_mkdirs(out));
    QR_TRY(qr_calib_dir_check(out, qr_model_identity(r->job.model), &found));
    if (found > 0) {
        QR_INFO("capture: replacing %zu shard(s) of the same model in %s", found, out);
    }
    return qr_calib_dir_clear(out);
}

/* The attributes of this rank's shard. */
static void shard_info(const capture_run *r, qr_calib_info *info)
{
    const qr_model_config *c = &r->job.w.cfg;
    const capture_opts *o = &r->o;
    const qr_input_opts *in = &o->in.input;
    memset(info, 0, sizeof *info);
    snprintf(info->model_identity, sizeof info->model_identity, "%s",
             qr_model_identity(r->job.model));
    snprintf(info->model_path, sizeof info->model_path, "%s", o->in.model_path);
    snprintf(info->source, sizeof info->source, "%s", qr_input_source_path(in));
    snprintf(info->source_kind, sizeof info->source_kind, "%s", qr_input_source_kind(in));
    info->dtype = o->dtype;
    info->dim = c->dim;
    info->hidden_dim = c->hidden_dim;
    info->q_dim = c->n_heads * c->head_dim;
    info->n_layers = c->n_layers;
    info->vocab_size = c->vocab_size;
    info->seq_len = o->in.seq_len;
    info->n_windows = r->w1 - r->w0;
    info->n_tokens = (r->w1 - r->w0) * o->in.seq_len;
    info->window_first = r->w0;
    info->total_windows = r->n_windows;
    info->shard_index = r->rank;
    info->shard_count = r->nranks;
    info->add_dummy_prefix = in->text_path ? 1 : 0;
    info->unknown_to_zero = in->text_path && in->unknown_to_zero ? 1 : 0;
}

/* Open this rank's shard writer, the forward-pass state and the window buffer. */
static qr_status phase_open_shard(capture_run *r)
{
    qr_calib_info info;
    int64_t L = r->o.in.seq_len;
    shard_info(r, &info);
    QR_TRY(qr_calib_shard_name(r->shard, sizeof r->shard, r->o.out, r->rank));
    QR_TRY(qr_calib_writer_open(r->shard, &info, &r->writer));
    QR_TRY(qr_llama_state_open(&r->job.w.cfg, L, L, &r->state));
    return qr_malloc(&r->window, (size_t)L, sizeof *r->window, "capture window");
}

/* Windows [b, end) through the model, every layer input to the shard. */
static qr_status capture_block(capture_run *r, int64_t b, int64_t end)
{
    int64_t L = r->o.in.seq_len;
    for (int64_t w = b; w < end; w++) {
        capture_ctx ctx = {r->writer, (w - r->w0) * L, QR_OK};
        int64_t len = 0;
        qr_window_tokens(r->ids, r->n_ids, L, w, r->job.bos, r->window, &len);
        QR_TRY(qr_llama_forward(&r->job.w, r->state, r->window, len, 0, NULL, on_input, &ctx));
        QR_TRY(ctx.st);
        QR_TRY(qr_calib_writer_put_tokens(r->writer, ctx.row0, r->window, len));
    }
    return QR_OK;
}

/* Run: this rank's windows in about 20 blocks (one progress line each on rank 0), then finish the
 * shard. A stop request ends the capture after the current block. */
static qr_status phase_run(capture_run *r)
{
    volatile sig_atomic_t *stop = qr_stop_flag();
    int64_t L = r->o.in.seq_len, block = (r->w1 - r->w0 + 19) / 20;
    double t0 = qr_now();
    if (r->rank == 0) {
        QR_INFO("capture: %s, %lld windows of %lld tokens over %d rank(s) from %zu input tokens",
                r->o.in.model_path, (long long)r->n_windows, (long long)L, r->nranks, r->n_ids);
        r->prog = qr_progress_begin("capture", (r->w1 - r->w0 + block - 1) / block, "blocks");
    }
    for (int64_t b = r->w0; b < r->w1; b += block) {
        int64_t end = b + block < r->w1 ? b + block : r->w1;
        double tb = qr_now(), dt, mb;
        uint64_t bytes_before = qr_calib_writer_bytes(r->writer);
        QR_TRY(capture_block(r, b, end));
        if (*stop) {
            return qr_fail(QR_STOPPED,
                           "capture: stopped by signal %d after window %lld; run the "
                           "same command again to capture from the start",
                           (int)*stop, (long long)end - 1);
        }
        dt = qr_now() - tb;
        mb = (double)(qr_calib_writer_bytes(r->writer) - bytes_before) / 1e6;
        qr_progress_step(r->prog, "windows", (double)(end - b),
                         "windows %lld..%lld: %.0f tokens/s, %.1f MB/s written", (long long)b,
                         (long long)end - 1, (double)((end - b) * L) / dt, mb / dt);
    }
    r->bytes = qr_calib_writer_bytes(r->writer);
    QR_TRY(qr_calib_writer_finish(&r->writer));
    r->elapsed = qr_now() - t0;
    return QR_OK;
}

/* Rank 0's summary: the slowest rank's time and the bytes of every shard. Collective. */
static qr_status phase_summary(capture_run *r)
{
    double max_elapsed = 0.0, tokens = (double)(r->n_windows * r->o.in.seq_len);
    uint64_t all_bytes = 0;
    QR_TRY(qr_mpi_check(
        MPI_Reduce(&r->elapsed, &max_elapsed, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD),
        "MPI_Reduce"));
    QR_TRY(
        qr_mpi_check(MPI_Reduce(&r->bytes, &all_bytes, 1, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD),
                     "MPI_Reduce"));
    if (r->rank == 0) {
        qr_progress_end(&r->prog,
                        "capture: %lld windows x %lld = %.0f tokens in %.2f s: %.0f tokens/s, "
                        "%.1f MB written (%.1f MB/s) to %d shard(s) in %s",
                        (long long)r->n_windows, (long long)r->o.in.seq_len, tokens, max_elapsed,
                        tokens / max_elapsed, (double)all_bytes / 1e6,
                        (double)all_bytes / 1e6 / max_elapsed, r->nranks, r->o.out);
    }
    return QR_OK;
}

static void phase_close(capture_run *r)
{
    qr_progress_end(&r->prog, "capture: failed");
    qr_calib_writer_abort(&r->writer);
    qr_llama_state_close(&r->state);
    free(r->window);
    free(r->ids);
    qr_llama_job_close(&r->job);
}

qr_status qr_cmd_capture(int argc, char **argv)
{
    qr_status st = QR_OK;
    capture_run r;
    bool help = false;
    memset(&r, 0, sizeof r);
    r.rank = qr_mpi_rank(MPI_COMM_WORLD);
    r.nranks = qr_mpi_size(MPI_COMM_WORLD);
    QR_TRY(parse(argc, argv, &r.o, &help));
    if (help) {
        return QR_OK;
    }
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, phase_open(&r)));
    warn_short_input(&r);
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, phase_check_out(&r)));
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, phase_open_shard(&r)));
    if ((st = qr_mpi_agree(MPI_COMM_WORLD, phase_run(&r))) != QR_OK) {
        /* Another rank failed: a capture is whole or absent, so drop this rank's shard too. */
        unlink(r.shard);
        goto done;
    }
    st = phase_summary(&r);
done:
    phase_close(&r);
    return st;
}

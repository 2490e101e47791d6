/* cmd_capture.c: `qrecon capture`: run text (or token ids) through the float32 model in windows
 * and write the input of every linear-module group to HDF5 calibration shards, one per rank
 * (io/calib_shard.h, docs/calibration.md). Collective: every rank loads the model and tokenizes
 * the same input, then captures its own contiguous range of windows into its own shard. */
#include <getopt.h>
#include <mpi.h>
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

static const char help[] =
    "usage: qrecon capture --model DIR (--text FILE | --token-file FILE) --out CALIB_DIR\n"
    "                      [--seq-len N] [--tokens T] [--dtype f32|f16] [--unknown-to-zero]\n"
    "                      [--tokenizer FILE]\n"
    "\n"
    "Cut the input into windows of N tokens, each starting with BOS (id 1): the whole text is\n"
    "tokenized once (with the \" \" dummy prefix, as llama2.c does), and window w holds BOS and\n"
    "tokens w*(N-1) .. (w+1)*(N-1)-1. Only whole windows are kept, at most T tokens in all\n"
    "(floor(T / N) windows). Each window runs through the float32 model and the input of every\n"
    "linear-module group of every layer is written to CALIB_DIR/shard-RRRRR.h5, one shard per MPI\n"
    "rank: rank r of R captures windows [r*W/R, (r+1)*W/R). Shards of the same model already in\n"
    "CALIB_DIR are replaced; shards of another model are refused. The same input and options give\n"
    "the same bytes.\n"
    "\n"
    "  --model DIR        Hugging Face folder or llama2.c checkpoint\n"
    "  --text FILE        UTF-8 text, encoded with the model's tokenizer\n"
    "  --token-file FILE  token ids instead of text: raw little-endian uint32, or decimal ids\n"
    "                     separated by whitespace when the name ends in .txt\n"
    "  --out CALIB_DIR    folder for the shards (created)\n"
    "  --seq-len N        window length in tokens, BOS included (default 256, at most the\n"
    "                     model's maximum)\n"
    "  --tokens T         tokens to capture over all ranks (default 65536)\n"
    "  --dtype f32|f16    storage type of the activations (default f32)\n"
    "  --unknown-to-zero  encode characters the vocabulary lacks as id 0 (<unk>) instead of\n"
    "                     refusing the text (for vocabularies without byte fallback)\n"
    "  --tokenizer FILE   llama2.c tokenizer.bin (default: the one beside the model)\n";

typedef struct {
    const char *model, *text, *token_file, *out, *tokenizer;
    int64_t seq_len, tokens;
    qr_dtype dtype;
    bool unknown_to_zero;
} capture_opts;

static qr_status parse(int argc, char **argv, capture_opts *o, bool *help_only)
{
    static const struct option longopts[] = {{"model", required_argument, NULL, 'm'},
                                             {"text", required_argument, NULL, 'x'},
                                             {"token-file", required_argument, NULL, 'k'},
                                             {"out", required_argument, NULL, 'o'},
                                             {"seq-len", required_argument, NULL, 's'},
                                             {"tokens", required_argument, NULL, 'n'},
                                             {"dtype", required_argument, NULL, 'd'},
                                             {"unknown-to-zero", no_argument, NULL, 'u'},
                                             {"tokenizer", required_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int c;
    memset(o, 0, sizeof *o);
    o->seq_len = 256;
    o->tokens = 65536;
    o->dtype = QR_DTYPE_F32;
    *help_only = false;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            o->model = optarg;
            break;
        case 'x':
            o->text = optarg;
            break;
        case 'k':
            o->token_file = optarg;
            break;
        case 'o':
            o->out = optarg;
            break;
        case 's':
            QR_TRY(qr_cli_int("--seq-len", optarg, 2, INT32_MAX, &o->seq_len));
            break;
        case 'n':
            QR_TRY(qr_cli_int("--tokens", optarg, 1, INT64_MAX / 2, &o->tokens));
            break;
        case 'd':
            if (strcmp(optarg, "f32") == 0) {
                o->dtype = QR_DTYPE_F32;
            } else if (strcmp(optarg, "f16") == 0) {
                o->dtype = QR_DTYPE_F16;
            } else {
                return qr_fail(QR_ERR_INPUT, "--dtype: expected f32 or f16, found '%s'", optarg);
            }
            break;
        case 'u':
            o->unknown_to_zero = true;
            break;
        case 't':
            o->tokenizer = optarg;
            break;
        case 'h':
            *help_only = true;
            return QR_OK;
        case ':':
            return qr_cli_usage_error("capture", "an option is missing its value");
        default:
            return qr_cli_usage_error("capture", "unknown option");
        }
    }
    if (optind != argc) {
        return qr_cli_usage_error("capture", "unexpected argument");
    }
    if (!o->model || !o->out || (!o->text == !o->token_file)) {
        return qr_cli_usage_error(
            "capture", "expected --model, --out and exactly one of --text, --token-file");
    }
    return QR_OK;
}

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

/* Rank 0 prepares the folder: create it, refuse shards of another model, drop old shards of this
 * one (a capture with fewer ranks must not leave stale shards behind). */
static qr_status prepare_out(const char *out, const char *identity)
{
    size_t found = 0;
    QR_TRY(qr_fs_mkdirs(out));
    QR_TRY(qr_calib_dir_check(out, identity, &found));
    if (found > 0) {
        QR_INFO("capture: replacing %zu shard(s) of the same model in %s", found, out);
    }
    return qr_calib_dir_clear(out);
}

qr_status qr_cmd_capture(int argc, char **argv)
{
    qr_status st = QR_OK;
    capture_opts o;
    bool help_only = false;
    qr_llama_job job;
    qr_llama_state *state = NULL;
    qr_calib_writer *writer = NULL;
    qr_progress *prog = NULL;
    int32_t *ids = NULL, *window = NULL;
    size_t n_ids = 0;
    int64_t n_windows = 0, w0 = 0, w1 = 0, block;
    int rank = qr_mpi_rank(MPI_COMM_WORLD), nranks = qr_mpi_size(MPI_COMM_WORLD);
    char shard[QR_CALIB_STR_MAX] = "";
    double t0 = 0.0, elapsed = 0.0, max_elapsed = 0.0;
    uint64_t bytes = 0, all_bytes = 0;
    volatile sig_atomic_t *stop = qr_stop_flag();
    memset(&job, 0, sizeof job);

    st = qr_mpi_agree(MPI_COMM_WORLD, parse(argc, argv, &o, &help_only));
    if (st != QR_OK || help_only) {
        if (help_only) {
            qr_cli_print_help(help);
        }
        return st;
    }
    /* Every rank loads the model and reads the same input, so every rank meets the same error. */
    st = qr_llama_job_open(o.model, &job);
    if (st == QR_OK && o.seq_len > job.w.cfg.max_seq_len) {
        st = qr_fail(QR_ERR_INPUT,
                     "--seq-len: longer than the model's maximum context (expected at most %lld "
                     "for %s, found %lld)",
                     (long long)job.w.cfg.max_seq_len, o.model, (long long)o.seq_len);
    }
    if (st == QR_OK) {
        qr_input_opts in = {o.text, o.token_file, o.tokenizer, o.unknown_to_zero};
        st = qr_llama_job_input(&job, &in, &ids, &n_ids);
    }
    if (st == QR_OK) {
        int64_t by_text = (int64_t)(n_ids / (size_t)(o.seq_len - 1));
        int64_t by_budget = o.tokens / o.seq_len;
        n_windows = by_text < by_budget ? by_text : by_budget;
        if (n_windows < 1) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: not enough for one window (expected at least %lld tokens after "
                         "BOS and --tokens >= --seq-len %lld; found %zu tokens, --tokens %lld)",
                         o.text ? o.text : o.token_file, (long long)o.seq_len - 1,
                         (long long)o.seq_len, n_ids, (long long)o.tokens);
        } else if (n_windows < nranks) {
            st = qr_fail(QR_ERR_INPUT,
                         "capture: %lld window(s) for %d ranks (expected at least one window per "
                         "rank; raise --tokens or use fewer ranks)",
                         (long long)n_windows, nranks);
        }
    }
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, st));
    if (rank == 0 && n_windows * o.seq_len + o.seq_len <= o.tokens) {
        QR_WARN("capture: %s gives %zu tokens, enough for %lld windows (%lld tokens), fewer than "
                "--tokens %lld",
                o.text ? o.text : o.token_file, n_ids, (long long)n_windows,
                (long long)(n_windows * o.seq_len), (long long)o.tokens);
    }
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD,
                          rank == 0 ? prepare_out(o.out, qr_model_identity(job.model)) : QR_OK));

    w0 = (int64_t)rank * n_windows / nranks;
    w1 = (int64_t)(rank + 1) * n_windows / nranks;
    {
        const qr_model_config *c = &job.w.cfg;
        qr_calib_info info;
        memset(&info, 0, sizeof info);
        snprintf(info.model_identity, sizeof info.model_identity, "%s",
                 qr_model_identity(job.model));
        snprintf(info.model_path, sizeof info.model_path, "%s", o.model);
        snprintf(info.source, sizeof info.source, "%s", o.text ? o.text : o.token_file);
        snprintf(info.source_kind, sizeof info.source_kind, "%s", o.text ? "text" : "tokens");
        info.dtype = o.dtype;
        info.dim = c->dim;
        info.hidden_dim = c->hidden_dim;
        info.q_dim = c->n_heads * c->head_dim;
        info.n_layers = c->n_layers;
        info.vocab_size = c->vocab_size;
        info.seq_len = o.seq_len;
        info.n_windows = w1 - w0;
        info.n_tokens = (w1 - w0) * o.seq_len;
        info.window_first = w0;
        info.total_windows = n_windows;
        info.shard_index = rank;
        info.shard_count = nranks;
        info.add_dummy_prefix = o.text ? 1 : 0;
        info.unknown_to_zero = o.text && o.unknown_to_zero ? 1 : 0;
        st = qr_calib_shard_name(shard, sizeof shard, o.out, rank);
        if (st == QR_OK) {
            st = qr_calib_writer_open(shard, &info, &writer);
        }
        if (st == QR_OK) {
            st = qr_llama_state_open(c, o.seq_len, o.seq_len, &state);
        }
        if (st == QR_OK) {
            st = qr_malloc(&window, (size_t)o.seq_len, sizeof *window, "capture window");
        }
    }
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, st));

    /* About 20 progress lines per rank-0 shard, one per block of windows. */
    block = (w1 - w0 + 19) / 20;
    if (rank == 0) {
        QR_INFO("capture: %s, %lld windows of %lld tokens over %d rank(s) from %zu input tokens",
                o.model, (long long)n_windows, (long long)o.seq_len, nranks, n_ids);
        prog = qr_progress_begin("capture", (w1 - w0 + block - 1) / block, "blocks");
    }
    t0 = qr_now();
    for (int64_t b = w0; b < w1 && st == QR_OK; b += block) {
        int64_t end = b + block < w1 ? b + block : w1;
        double tb = qr_now();
        uint64_t bytes_before = qr_calib_writer_bytes(writer);
        for (int64_t w = b; w < end && st == QR_OK; w++) {
            capture_ctx ctx = {writer, (w - w0) * o.seq_len, QR_OK};
            int64_t len = 0;
            qr_window_tokens(ids, n_ids, o.seq_len, w, window, &len);
            st = qr_llama_forward(&job.w, state, window, len, 0, NULL, on_input, &ctx);
            if (st == QR_OK) {
                st = ctx.st;
            }
            if (st == QR_OK) {
                st = qr_calib_writer_put_tokens(writer, ctx.row0, window, len);
            }
        }
        if (st == QR_OK && *stop) {
            st = qr_fail(QR_STOPPED,
                         "capture: stopped by signal %d after window %lld; run the "
                         "same command again to capture from the start",
                         (int)*stop, (long long)end - 1);
        }
        if (st == QR_OK) {
            double dt = qr_now() - tb;
            double mb = (double)(qr_calib_writer_bytes(writer) - bytes_before) / 1e6;
            qr_progress_step(prog, "windows", (double)(end - b),
                             "windows %lld..%lld: %.0f tokens/s, %.1f MB/s written", (long long)b,
                             (long long)end - 1, (double)((end - b) * o.seq_len) / dt, mb / dt);
        }
    }
    if (st == QR_OK) {
        bytes = qr_calib_writer_bytes(writer);
        st = qr_calib_writer_finish(&writer);
    }
    elapsed = qr_now() - t0;
    if ((st = qr_mpi_agree(MPI_COMM_WORLD, st)) != QR_OK) {
        /* Another rank failed: a capture is whole or absent, so drop this rank's shard too. */
        unlink(shard);
        goto done;
    }
    MPI_Reduce(&elapsed, &max_elapsed, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(&bytes, &all_bytes, 1, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        double tokens = (double)(n_windows * o.seq_len);
        qr_progress_end(&prog,
                        "capture: %lld windows x %lld = %.0f tokens in %.2f s: %.0f tokens/s, "
                        "%.1f MB written (%.1f MB/s) to %d shard(s) in %s",
                        (long long)n_windows, (long long)o.seq_len, tokens, max_elapsed,
                        tokens / max_elapsed, (double)all_bytes / 1e6,
                        (double)all_bytes / 1e6 / max_elapsed, nranks, o.out);
    }
done:
    qr_progress_end(&prog, "capture: failed");
    qr_calib_writer_abort(&writer);
    qr_llama_state_close(&state);
    free(window);
    free(ids);
    qr_llama_job_close(&job);
    return st;
}

/* cmd_eval.c: `qrecon eval`: negative log-likelihood per token and perplexity of a model over a
 * text, in non-overlapping windows that start with BOS (docs/eval.md). Collective: windows are
 * spread over the ranks in contiguous ranges; the per-window sums are gathered and added in window
 * order, so the result does not depend on the number of ranks. The model's linear modules are
 * qr_linear, so a quantized model is evaluated by swapping those and nothing else. */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/ckpt_llama.h"
#include "jobs/cli.h"
#include "jobs/llama_job.h"
#include "mpi/comm.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/kernels/kernels.h"
#include "src/log.h"
#include "src/progress.h"

static const char help[] =
    "usage: qrecon eval --model DIR (--text FILE | --token-file FILE) [--seq-len N]\n"
    "                   [--max-tokens T] [--unknown-to-zero] [--tokenizer FILE] [--json]\n"
    "                   [--ckpt CKPT [--kernel auto|ref|avx2|avx512] [--ckpt-reference]]\n"
    "\n"
    "NLL per token (natural log) and perplexity exp(NLL) of the model over the text. The text is\n"
    "tokenized once (with the \" \" dummy prefix, as llama2.c does) into m tokens; window w is "
    "BOS\n"
    "followed by tokens w*(N-1) .. (w+1)*(N-1)-1 (the last window may be shorter), and every text\n"
    "token is predicted once, from BOS and the tokens before it in its window. BOS itself is not\n"
    "scored.\n"
    "\n"
    "  --model DIR        Hugging Face folder or llama2.c checkpoint\n"
    "  --text FILE        UTF-8 text, encoded with the model's tokenizer\n"
    "  --token-file FILE  token ids instead of text (raw little-endian uint32, or decimal *.txt)\n"
    "  --seq-len N        window length, BOS included (default: the model's context, at most "
    "2048)\n"
    "  --max-tokens T     score at most the first T text tokens (default: all)\n"
    "  --unknown-to-zero  encode characters the vocabulary lacks as id 0 (<unk>)\n"
    "  --tokenizer FILE   llama2.c tokenizer.bin (default: the one beside the model)\n"
    "  --json             print one JSON object instead of text\n"
    "  --ckpt CKPT        evaluate the quantized checkpoint of this model: every linear module\n"
    "                     through the INT4 kernels with the checkpoint's activation bits,\n"
    "                     embeddings and norms from the checkpoint (docs/validate.md)\n"
    "  --kernel K         kernel path for --ckpt (default auto: the best this CPU runs)\n"
    "  --ckpt-reference   run --ckpt's modules through the float64 reference instead of the\n"
    "                     kernels (same quantized activations; for checking the kernels)\n";

/* Default window cap: long contexts cost memory for the logits (N x vocab floats per rank). */
#define QR_EVAL_DEFAULT_SEQ_MAX 2048

typedef struct {
    const char *model, *text, *token_file, *tokenizer;
    const char *ckpt, *kernel; /* --ckpt (NULL: the float model), --kernel */
    bool ckpt_reference;
    int64_t seq_len; /* 0: default */
    int64_t max_tokens;
    bool unknown_to_zero, json;
} eval_opts;

static qr_status parse(int argc, char **argv, eval_opts *o, bool *help_only)
{
    static const struct option longopts[] = {{"model", required_argument, NULL, 'm'},
                                             {"text", required_argument, NULL, 'x'},
                                             {"token-file", required_argument, NULL, 'k'},
                                             {"seq-len", required_argument, NULL, 's'},
                                             {"max-tokens", required_argument, NULL, 'n'},
                                             {"unknown-to-zero", no_argument, NULL, 'u'},
                                             {"tokenizer", required_argument, NULL, 't'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"ckpt", required_argument, NULL, 'c'},
                                             {"kernel", required_argument, NULL, 'K'},
                                             {"ckpt-reference", no_argument, NULL, 'R'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int c;
    memset(o, 0, sizeof *o);
    o->max_tokens = INT64_MAX;
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
        case 's':
            QR_TRY(qr_cli_int("--seq-len", optarg, 2, INT32_MAX, &o->seq_len));
            break;
        case 'n':
            QR_TRY(qr_cli_int("--max-tokens", optarg, 1, INT64_MAX, &o->max_tokens));
            break;
        case 'u':
            o->unknown_to_zero = true;
            break;
        case 't':
            o->tokenizer = optarg;
            break;
        case 'j':
            o->json = true;
            break;
        case 'c':
            o->ckpt = optarg;
            break;
        case 'K':
            o->kernel = optarg;
            break;
        case 'R':
            o->ckpt_reference = true;
            break;
        case 'h':
            *help_only = true;
            return QR_OK;
        case ':':
            return qr_cli_usage_error("eval", "an option is missing its value");
        default:
            return qr_cli_usage_error("eval", "unknown option");
        }
    }
    if (optind != argc) {
        return qr_cli_usage_error("eval", "unexpected argument");
    }
    if (!o->ckpt && (o->kernel || o->ckpt_reference)) {
        return qr_cli_usage_error("eval", "--kernel and --ckpt-reference need --ckpt");
    }
    if (!o->model || (!o->text == !o->token_file)) {
        return qr_cli_usage_error("eval",
                                  "expected --model and exactly one of --text, --token-file");
    }
    return QR_OK;
}

/* What runs the linear modules: "float32" (the source model) or the checkpoint's path. */
static void describe_modules(const eval_opts *o, const qr_ckpt_llama *qm, char *buf, size_t n)
{
    if (!qm) {
        snprintf(buf, n, "float32");
    } else if (qr_ckpt_llama_abits(qm) == 0) {
        snprintf(buf, n, "%s W4A16 (dequantized float32 weights)", qr_ckpt_llama_method(qm));
    } else {
        snprintf(buf, n, "%s W4A%d through %s", qr_ckpt_llama_method(qm), qr_ckpt_llama_abits(qm),
                 o->ckpt_reference ? "the float64 reference" : qr_kernel_name(qr_kernel_active()));
    }
}

static void print_result(const eval_opts *o, const qr_ckpt_llama *qm, int64_t seq_len,
                         int64_t n_windows, int64_t scored, double nll, double seconds, int nranks)
{
    char modules[160];
    describe_modules(o, qm, modules, sizeof modules);
    double ppl = exp(nll);
    if (o->json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:i}", "model",
                              o->model, "input", o->text ? o->text : o->token_file, "input_kind",
                              o->text ? "text" : "tokens", "seq_len", (json_int_t)seq_len,
                              "windows", (json_int_t)n_windows, "tokens_scored", (json_int_t)scored,
                              "nll_per_token", nll, "perplexity", ppl, "seconds", seconds,
                              "tokens_per_s", (double)scored / seconds, "ranks", nranks);
        if (j && o->ckpt) {
            json_object_set_new(j, "ckpt", json_string(o->ckpt));
            json_object_set_new(j, "abits", json_integer(qr_ckpt_llama_abits(qm)));
            json_object_set_new(j, "modules", json_string(modules));
        }
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
        if (s) {
            printf("%s\n", s);
        }
        free(s);
        json_decref(j);
    } else {
        printf("eval: %s on %s\n", o->model, o->text ? o->text : o->token_file);
        if (o->ckpt) {
            printf("  checkpoint: %s, %s\n", o->ckpt, modules);
        }
        printf("  windows: %lld of %lld tokens (BOS + %lld), %lld tokens scored\n",
               (long long)n_windows, (long long)seq_len, (long long)seq_len - 1, (long long)scored);
        printf("  NLL/token: %.4f nats   perplexity: %.4f\n", nll, ppl);
        printf("  time: %.2f s (%.0f tokens/s over %d rank(s))\n", seconds,
               (double)scored / seconds, nranks);
    }
    fflush(stdout);
}

qr_status qr_cmd_eval(int argc, char **argv)
{
    qr_status st = QR_OK;
    eval_opts o;
    bool help_only = false;
    qr_llama_job job;
    qr_ckpt_llama *qm = NULL; /* --ckpt: owns the quantized modules job.w runs */
    qr_llama_state *state = NULL;
    qr_progress *prog = NULL;
    int32_t *ids = NULL, *window = NULL;
    float *logits = NULL;
    double *sums = NULL, *all = NULL; /* (n_windows) NLL sum per window, this rank / all */
    size_t n_ids = 0, n_logits = 0;
    int64_t L = 0, vocab = 0, n_windows = 0, w0, w1, scored;
    int rank = qr_mpi_rank(MPI_COMM_WORLD), nranks = qr_mpi_size(MPI_COMM_WORLD);
    double t0, nll = 0.0, elapsed;
    memset(&job, 0, sizeof job);

    st = qr_mpi_agree(MPI_COMM_WORLD, parse(argc, argv, &o, &help_only));
    if (st != QR_OK || help_only) {
        if (help_only) {
            qr_cli_print_help(help);
        }
        return st;
    }
    st = qr_llama_job_open(o.model, &job);
    if (st == QR_OK && o.ckpt) {
        st = qr_kernel_select(o.kernel ? o.kernel : "auto");
        if (st == QR_OK) {
            st = qr_ckpt_llama_attach(
                o.ckpt, job.model, o.ckpt_reference ? QR_CKPT_RUN_REFERENCE : QR_CKPT_RUN_KERNELS,
                &job.w, &qm);
        }
    }
    if (st == QR_OK) {
        const qr_model_config *c = &job.w.cfg;
        vocab = c->vocab_size;
        L = o.seq_len ? o.seq_len
                      : (c->max_seq_len < QR_EVAL_DEFAULT_SEQ_MAX ? c->max_seq_len
                                                                  : QR_EVAL_DEFAULT_SEQ_MAX);
        if (L > c->max_seq_len || L < 2) {
            st = qr_fail(QR_ERR_INPUT,
                         "--seq-len: outside the model's context (expected 2..%lld for %s, found "
                         "%lld)",
                         (long long)c->max_seq_len, o.model, (long long)L);
        }
    }
    if (st == QR_OK) {
        qr_input_opts in = {o.text, o.token_file, o.tokenizer, o.unknown_to_zero};
        st = qr_llama_job_input(&job, &in, &ids, &n_ids);
    }
    if (st == QR_OK) {
        if ((int64_t)n_ids > o.max_tokens) {
            n_ids = (size_t)o.max_tokens;
        }
        n_windows = ((int64_t)n_ids + L - 2) / (L - 1);
        if (n_windows > INT32_MAX) {
            st = qr_fail(QR_ERR_INPUT, "eval: %lld windows exceed an MPI count (raise --seq-len)",
                         (long long)n_windows);
        }
    }
    if (st == QR_OK) {
        st = qr_mul_size((size_t)L, (size_t)vocab, &n_logits)
                 ? qr_malloc(&logits, n_logits, sizeof *logits, "eval logits")
                 : qr_fail(QR_ERR_INPUT, "eval: logits of %lld x %lld overflow", (long long)L,
                           (long long)vocab);
    }
    if (st == QR_OK) {
        st = qr_calloc(&sums, (size_t)n_windows, sizeof *sums, "eval sums");
    }
    if (st == QR_OK) {
        st = qr_calloc(&all, (size_t)n_windows, sizeof *all, "eval sums");
    }
    if (st == QR_OK) {
        st = qr_malloc(&window, (size_t)L, sizeof *window, "eval window");
    }
    if (st == QR_OK) {
        st = qr_llama_state_open(&job.w.cfg, L, L, &state);
    }
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, st));

    w0 = (int64_t)rank * n_windows / nranks;
    w1 = (int64_t)(rank + 1) * n_windows / nranks;
    if (rank == 0) {
        prog = qr_progress_begin("eval", w1 - w0, "windows");
    }
    t0 = qr_now();
    for (int64_t w = w0; w < w1 && st == QR_OK; w++) {
        int64_t len = 0;
        double sum = 0.0;
        qr_window_tokens(ids, n_ids, L, w, window, &len);
        st = qr_llama_forward(&job.w, state, window, len, 0, logits, NULL, NULL);
        for (int64_t i = 0; st == QR_OK && i + 1 < len; i++) {
            sum += qr_logits_nll(logits + i * vocab, vocab, window[i + 1]);
        }
        sums[w] = sum;
        if (st == QR_OK) {
            qr_progress_step(prog, "window", 1.0, "NLL/token %.4f", sum / (double)(len - 1));
        }
    }
    elapsed = qr_now() - t0;
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, st));
    /* Each window's sum is nonzero on one rank only, so the reduction is exact; the total is then
     * added in window order, the same for any number of ranks. */
    QR_CHECK(
        qr_mpi_check(MPI_Allreduce(sums, all, (int)n_windows, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
                     "MPI_Allreduce"));
    {
        double max_elapsed = 0.0;
        QR_CHECK(qr_mpi_check(
            MPI_Allreduce(&elapsed, &max_elapsed, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD),
            "MPI_Allreduce"));
        elapsed = max_elapsed;
    }
    for (int64_t w = 0; w < n_windows; w++) {
        nll += all[w];
    }
    scored = (int64_t)n_ids;
    nll /= (double)scored;
    qr_progress_end(&prog, "eval: NLL/token %.4f, perplexity %.4f", nll, exp(nll));
    if (rank == 0) {
        print_result(&o, qm, L, n_windows, scored, nll, elapsed, nranks);
    }
done:
    qr_progress_end(&prog, "eval: failed");
    qr_llama_state_close(&state);
    free(window);
    free(logits);
    free(sums);
    free(all);
    free(ids);
    qr_llama_job_close(&job);
    qr_ckpt_llama_free(&qm);
    return st;
}

/* cmd_eval.c: `qrecon eval`: negative log-likelihood per token and perplexity of a model over a
 * text, in non-overlapping windows that start with BOS (docs/eval.md). Collective: windows are
 * spread over the ranks in contiguous ranges; the per-window sums are gathered and added in window
 * order, so the result does not depend on the number of ranks. The model's linear modules are
 * qr_linear, so a quantized model is evaluated by swapping those and nothing else. */
#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/ckpt_llama.h"
#include "jobs/cli.h"
#include "jobs/kernel_options.h"
#include "jobs/llama_job.h"
#include "mpi/comm.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/kernels/kernels.h"
#include "src/log.h"
#include "src/progress.h"

/* Default window cap: long contexts cost memory for the logits (N x vocab floats per rank). */
#define QR_EVAL_DEFAULT_SEQ_MAX 2048

static const qr_cmd_doc doc = {
    "eval",
    "qrecon eval --model DIR (--text FILE | --token-file FILE) [options]\n"
    "                   [--ckpt CKPT [--kernel auto|ref|avx2|avx512] [--ckpt-reference]]",
    "NLL per token (natural log) and perplexity exp(NLL) of the model over the text. The text is\n"
    "tokenized once (with the \" \" dummy prefix, as llama2.c does) into m tokens; window w is "
    "BOS\n"
    "followed by tokens w*(N-1) .. (w+1)*(N-1)-1 (the last window may be shorter), and every text\n"
    "token is predicted once, from BOS and the tokens before it in its window. BOS itself is not\n"
    "scored. Without --seq-len, a model whose context is shorter than the default runs windows of\n"
    "its whole context.\n",
    NULL,
};

typedef struct {
    qr_llama_cli in; /* --model, --tokenizer, --text, --token-file, --unknown-to-zero, --seq-len */
    bool seq_len_given;
    const char *ckpt;   /* NULL: the float model */
    const char *kernel; /* for --ckpt */
    bool ckpt_reference, json;
    int64_t max_tokens;
} eval_opts;

#define OPT(f) offsetof(eval_opts, f)
static const qr_opt eval_rows[] = {
    {"max-tokens", QR_OPT_INT, OPT(max_tokens), "T", "score at most the first T text tokens", "all",
     .imin = 1, .imax = INT64_MAX},
    {"json", QR_OPT_FLAG, OPT(json), NULL, "print one JSON object instead of text"},
    {"ckpt", QR_OPT_STR, OPT(ckpt), "CKPT",
     "evaluate the quantized checkpoint of this model: every linear module\n"
     "through the INT4 kernels (--kernel) with the checkpoint's activation bits,\n"
     "embeddings and norms from the checkpoint (docs/validate.md)"},
    {"ckpt-reference", QR_OPT_FLAG, OPT(ckpt_reference), NULL,
     "run --ckpt's modules through the float64 reference instead of the\n"
     "kernels (same quantized activations; for checking the kernels)"},
};
#undef OPT

static qr_status parse(int argc, char **argv, eval_opts *o, bool *help)
{
    qr_opt_result res;
    qr_opt_table tables[] = {
        qr_llama_model_opt_table(&o->in, "options (defaults in parentheses)"),
        qr_llama_input_opt_table(&o->in, NULL),
        QR_OPT_TABLE(eval_rows, o, NULL),
        qr_kernel_opt_table(&o->kernel, NULL),
    };
    size_t n_tables = sizeof tables / sizeof tables[0];
    memset(o, 0, sizeof *o);
    o->in.seq_len = QR_EVAL_DEFAULT_SEQ_MAX;
    o->max_tokens = INT64_MAX;
    o->kernel = "auto";
    QR_TRY(qr_opts_parse(&doc, tables, n_tables, 0, argc, argv, &res));
    *help = res.help;
    if (res.help) {
        return QR_OK;
    }
    o->seq_len_given = qr_opts_given(tables, n_tables, &res, "seq-len");
    if (!o->ckpt && (o->ckpt_reference || qr_opts_given(tables, n_tables, &res, "kernel"))) {
        return qr_cli_usage_error("eval", "--kernel and --ckpt-reference need --ckpt");
    }
    if (!o->in.model_path || !qr_input_one_source(&o->in.input)) {
        return qr_cli_usage_error("eval",
                                  "expected --model and exactly one of --text, --token-file");
    }
    return QR_OK;
}

/* What every rank holds during the evaluation. */
typedef struct {
    eval_opts o;
    int rank, nranks;
    qr_llama_job job;
    qr_ckpt_llama *qm; /* --ckpt: owns the quantized modules job.w runs */
    qr_llama_state *state;
    qr_progress *prog;
    int32_t *ids;    /* (n_ids) the input, no BOS */
    int32_t *window; /* (L) */
    float *logits;   /* (L, vocab) */
    double *sums;    /* (n_windows) NLL sum per window, this rank's windows */
    double *all;     /* (n_windows) every rank's */
    size_t n_ids;
    int64_t L, vocab, n_windows, w0, w1;
    double elapsed, nll; /* the slowest rank's time; NLL per token */
} eval_run;

/* What runs the linear modules: "float32" (the source model) or the checkpoint's path. */
static void describe_modules(const eval_run *r, char *buf, size_t n)
{
    const qr_ckpt_llama *qm = r->qm;
    if (!qm) {
        snprintf(buf, n, "float32");
    } else if (qr_ckpt_llama_abits(qm) == 0) {
        snprintf(buf, n, "%s W4A16 (dequantized float32 weights)", qr_ckpt_llama_method(qm));
    } else {
        snprintf(buf, n, "%s W4A%d through %s", qr_ckpt_llama_method(qm), qr_ckpt_llama_abits(qm),
                 r->o.ckpt_reference ? "the float64 reference"
                                     : qr_kernel_name(qr_kernel_active()));
    }
}

static void print_json(const eval_run *r, const char *modules, int64_t scored)
{
    const eval_opts *o = &r->o;
    const qr_input_opts *in = &o->in.input;
    json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:i}", "model",
                          o->in.model_path, "input", qr_input_source_path(in), "input_kind",
                          qr_input_source_kind(in), "seq_len", (json_int_t)r->L, "windows",
                          (json_int_t)r->n_windows, "tokens_scored", (json_int_t)scored,
                          "nll_per_token", r->nll, "perplexity", exp(r->nll), "seconds", r->elapsed,
                          "tokens_per_s", (double)scored / r->elapsed, "ranks", r->nranks);
    char *s;
    if (j && o->ckpt) {
        json_object_set_new(j, "ckpt", json_string(o->ckpt));
        json_object_set_new(j, "abits", json_integer(qr_ckpt_llama_abits(r->qm)));
        json_object_set_new(j, "modules", json_string(modules));
    }
    s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    if (s) {
        printf("%s\n", s);
    }
    free(s);
    json_decref(j);
}

/* Write: rank 0 prints the result, as text or JSON. */
static void phase_write(const eval_run *r)
{
    const eval_opts *o = &r->o;
    int64_t scored = (int64_t)r->n_ids;
    char modules[160];
    if (r->rank != 0) {
        return;
    }
    describe_modules(r, modules, sizeof modules);
    if (o->json) {
        print_json(r, modules, scored);
    } else {
        printf("eval: %s on %s\n", o->in.model_path, qr_input_source_path(&o->in.input));
        if (o->ckpt) {
            printf("  checkpoint: %s, %s\n", o->ckpt, modules);
        }
        printf("  windows: %lld of %lld tokens (BOS + %lld), %lld tokens scored\n",
               (long long)r->n_windows, (long long)r->L, (long long)r->L - 1, (long long)scored);
        printf("  NLL/token: %.4f nats   perplexity: %.4f\n", r->nll, exp(r->nll));
        printf("  time: %.2f s (%.0f tokens/s over %d rank(s))\n", r->elapsed,
               (double)scored / r->elapsed, r->nranks);
    }
    fflush(stdout);
}

/* Open: the model, the checkpoint's modules in place of its linear modules (--ckpt), and the
 * window length. */
static qr_status phase_open(eval_run *r)
{
    const eval_opts *o = &r->o;
    const qr_model_config *c;
    QR_TRY(qr_llama_job_open(o->in.model_path, &r->job));
    if (o->ckpt) {
        QR_TRY(qr_kernel_select(o->kernel));
        QR_TRY(qr_ckpt_llama_attach(o->ckpt, r->job.model,
                                    o->ckpt_reference ? QR_CKPT_RUN_REFERENCE : QR_CKPT_RUN_KERNELS,
                                    &r->job.w, &r->qm));
    }
    c = &r->job.w.cfg;
    r->vocab = c->vocab_size;
    r->L = o->in.seq_len;
    if (!o->seq_len_given && r->L > c->max_seq_len) {
        r->L = c->max_seq_len;
    }
    if (r->L > c->max_seq_len || r->L < 2) {
        return qr_fail(QR_ERR_INPUT,
                       "--seq-len: outside the model's context (expected 2..%lld for %s, found "
                       "%lld)",
                       (long long)c->max_seq_len, o->in.model_path, (long long)r->L);
    }
    return QR_OK;
}

/* Check: read the input, count the windows, and allocate what the windows need. */
static qr_status phase_check(eval_run *r)
{
    size_t n_logits = 0;
    QR_TRY(qr_llama_job_input(&r->job, &r->o.in.input, &r->ids, &r->n_ids));
    if ((int64_t)r->n_ids > r->o.max_tokens) {
        r->n_ids = (size_t)r->o.max_tokens;
    }
    r->n_windows = ((int64_t)r->n_ids + r->L - 2) / (r->L - 1);
    if (r->n_windows > INT32_MAX) {
        return qr_fail(QR_ERR_INPUT, "eval: %lld windows exceed an MPI count (raise --seq-len)",
                       (long long)r->n_windows);
    }
    if (!qr_mul_size((size_t)r->L, (size_t)r->vocab, &n_logits)) {
        return qr_fail(QR_ERR_INPUT, "eval: logits of %lld x %lld overflow", (long long)r->L,
                       (long long)r->vocab);
    }
    QR_TRY(qr_malloc(&r->logits, n_logits, sizeof *r->logits, "eval logits"));
    QR_TRY(qr_calloc(&r->sums, (size_t)r->n_windows, sizeof *r->sums, "eval sums"));
    QR_TRY(qr_calloc(&r->all, (size_t)r->n_windows, sizeof *r->all, "eval sums"));
    QR_TRY(qr_malloc(&r->window, (size_t)r->L, sizeof *r->window, "eval window"));
    QR_TRY(qr_llama_state_open(&r->job.w.cfg, r->L, r->L, &r->state));
    r->w0 = (int64_t)r->rank * r->n_windows / r->nranks;
    r->w1 = (int64_t)(r->rank + 1) * r->n_windows / r->nranks;
    return QR_OK;
}

/* Run: this rank's windows, the NLL sum of each. */
static qr_status phase_run(eval_run *r)
{
    double t0 = qr_now();
    if (r->rank == 0) {
        r->prog = qr_progress_begin("eval", r->w1 - r->w0, "windows");
    }
    for (int64_t w = r->w0; w < r->w1; w++) {
        int64_t len = 0;
        double sum = 0.0;
        qr_window_tokens(r->ids, r->n_ids, r->L, w, r->job.bos, r->window, &len);
        QR_TRY(qr_llama_forward(&r->job.w, r->state, r->window, len, 0, r->logits, NULL, NULL));
        for (int64_t i = 0; i + 1 < len; i++) {
            sum += qr_logits_nll(r->logits + i * r->vocab, r->vocab, r->window[i + 1]);
        }
        r->sums[w] = sum;
        qr_progress_step(r->prog, "window", 1.0, "NLL/token %.4f", sum / (double)(len - 1));
    }
    r->elapsed = qr_now() - t0;
    return QR_OK;
}

/* Gather: every window's sum and the slowest rank's time. Each window's sum is nonzero on one rank
 * only, so the reduction is exact; the total is then added in window order, the same for any
 * number of ranks. Collective. */
static qr_status phase_gather(eval_run *r)
{
    double max_elapsed = 0.0;
    QR_TRY(qr_mpi_check(
        MPI_Allreduce(r->sums, r->all, (int)r->n_windows, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
        "MPI_Allreduce"));
    QR_TRY(qr_mpi_check(
        MPI_Allreduce(&r->elapsed, &max_elapsed, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD),
        "MPI_Allreduce"));
    r->elapsed = max_elapsed;
    r->nll = 0.0;
    for (int64_t w = 0; w < r->n_windows; w++) {
        r->nll += r->all[w];
    }
    r->nll /= (double)r->n_ids;
    qr_progress_end(&r->prog, "eval: NLL/token %.4f, perplexity %.4f", r->nll, exp(r->nll));
    return QR_OK;
}

static void phase_close(eval_run *r)
{
    qr_progress_end(&r->prog, "eval: failed");
    qr_llama_state_close(&r->state);
    free(r->window);
    free(r->logits);
    free(r->sums);
    free(r->all);
    free(r->ids);
    qr_llama_job_close(&r->job);
    qr_ckpt_llama_free(&r->qm);
}

qr_status qr_cmd_eval(int argc, char **argv)
{
    qr_status st = QR_OK;
    eval_run r;
    bool help = false;
    memset(&r, 0, sizeof r);
    r.rank = qr_mpi_rank(MPI_COMM_WORLD);
    r.nranks = qr_mpi_size(MPI_COMM_WORLD);
    QR_TRY(parse(argc, argv, &r.o, &help));
    if (help) {
        return QR_OK;
    }
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, phase_open(&r)));
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, phase_check(&r)));
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, phase_run(&r)));
    QR_CHECK(phase_gather(&r));
    phase_write(&r);
done:
    phase_close(&r);
    return st;
}

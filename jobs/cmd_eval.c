/* cmd_eval.c: `qrecon eval`: negative log-likelihood per token and perplexity of a model over one
 * or more texts, in non-overlapping windows that start with BOS (docs/eval.md). With --ckpt the
 * float model runs on the same windows too, and every token's distributions are compared (KL
 * divergence, top-1 agreement, ΔNLL: src/divergence.h); the figures also go to a sidecar
 * CKPT.eval.json that `qrecon report` reads. Collective: windows are spread over the ranks in
 * contiguous ranges; the per-window sums are gathered and added in window order and the per-token
 * KL values gathered in token order, so the result does not depend on the number of ranks. The
 * model's linear modules are qr_linear, so a quantized model is evaluated by swapping those and
 * nothing else. */
#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/ckpt_llama.h"
#include "io/eval_sidecar.h"
#include "io/fs.h"
#include "io/llama_load.h"
#include "jobs/cli.h"
#include "jobs/kernel_options.h"
#include "jobs/llama_job.h"
#include "mpi/comm.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/divergence.h"
#include "src/kernels/kernels.h"
#include "src/log.h"
#include "src/progress.h"

/* Default window cap: long contexts cost memory for the logits (N x vocab floats per rank). */
#define QR_EVAL_DEFAULT_SEQ_MAX 2048

static const qr_cmd_doc doc = {
    "eval",
    "qrecon eval --model DIR (--text FILE [--text FILE ...] | --token-file FILE) [options]\n"
    "                   [--ckpt CKPT [--kernel auto|ref|avx2|avx512] [--ckpt-reference]\n"
    "                    [--sidecar FILE|none]]",
    "NLL per token (natural log) and perplexity exp(NLL) of the model over the text. The text is\n"
    "tokenized once (with the \" \" dummy prefix, as llama2.c does) into m tokens; window w is "
    "BOS\n"
    "followed by tokens w*(N-1) .. (w+1)*(N-1)-1 (the last window may be shorter), and every text\n"
    "token is predicted once, from BOS and the tokens before it in its window. BOS itself is not\n"
    "scored. Without --seq-len, a model whose context is shorter than the default runs windows of\n"
    "its whole context. With --ckpt the float model runs on the same windows as well, and eval\n"
    "also reports, per token against the float model: the KL divergence KL(P_float || P_ckpt)\n"
    "(mean, median, 99th percentile, max), top-1 agreement, and dNLL = NLL(ckpt) - NLL(float),\n"
    "as llama.cpp's perplexity --kl-divergence does; the figures go to CKPT.eval.json too.\n"
    "Each --text is evaluated and reported on its own.\n",
    NULL,
};

typedef struct {
    qr_llama_cli in; /* --model, --tokenizer, --text (repeatable), --token-file, --unknown-to-zero,
                        --seq-len */
    bool seq_len_given, sidecar_given;
    const char *ckpt;    /* NULL: the float model */
    const char *kernel;  /* for --ckpt */
    const char *sidecar; /* for --ckpt: NULL = CKPT.eval.json, "none" = no file */
    bool ckpt_reference, json;
    int64_t max_tokens;
} eval_opts;

#define OPT(f) offsetof(eval_opts, f)
static const qr_opt eval_rows[] = {
    {"max-tokens", QR_OPT_INT, OPT(max_tokens), "T",
     "score at most the first T tokens of each input", "all", .imin = 1, .imax = INT64_MAX},
    {"json", QR_OPT_FLAG, OPT(json), NULL,
     "print one JSON object per input (one per line) instead of text"},
    {"ckpt", QR_OPT_STR, OPT(ckpt), "CKPT",
     "evaluate the quantized checkpoint of this model: every linear module\n"
     "through the INT4 kernels (--kernel) with the checkpoint's activation bits,\n"
     "embeddings and norms from the checkpoint (docs/validate.md), against\n"
     "the float model on the same tokens"},
    {"ckpt-reference", QR_OPT_FLAG, OPT(ckpt_reference), NULL,
     "run --ckpt's modules through the float64 reference instead of the\n"
     "kernels (same quantized activations; for checking the kernels)"},
    {"sidecar", QR_OPT_STR, OPT(sidecar), "FILE",
     "with --ckpt: write every input's figures as JSON to FILE (atomically),\n"
     "keeping the other texts an earlier eval of the same checkpoint wrote\n"
     "there; `qrecon report` reads CKPT.eval.json; none = no file",
     "CKPT.eval.json"},
};
#undef OPT

static qr_status parse(int argc, char **argv, eval_opts *o, bool *help)
{
    qr_opt_result res;
    qr_opt_table tables[] = {
        qr_llama_model_opt_table(&o->in, "options (defaults in parentheses)"),
        qr_llama_inputs_opt_table(&o->in, NULL),
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
    o->sidecar_given = o->sidecar != NULL;
    if (!o->ckpt && (o->ckpt_reference || o->sidecar_given ||
                     qr_opts_given(tables, n_tables, &res, "kernel"))) {
        return qr_cli_usage_error("eval", "--kernel, --ckpt-reference and --sidecar need --ckpt");
    }
    if (!o->in.model_path || (o->in.texts.n > 0) == (o->in.input.token_path != NULL)) {
        return qr_cli_usage_error(
            "eval", "expected --model and either --text (one or more) or --token-file");
    }
    return QR_OK;
}

/* What every rank holds during the evaluation. */
typedef struct {
    eval_opts o;
    int rank, nranks;
    qr_llama_job job;    /* the float model (job.w) and its tokenizer */
    qr_llama_weights wq; /* --ckpt: the model again, its modules run by the checkpoint */
    qr_ckpt_llama *qm;   /* --ckpt: owns the quantized modules wq runs */
    qr_llama_state *state;
    qr_progress *prog;
    int32_t *window; /* (L) */
    float *logits;   /* (L, vocab) the evaluated model: the checkpoint with --ckpt, else float */
    float *logits_f; /* (L, vocab) --ckpt: the float model */
    int64_t L, vocab;
    char sidecar[4096]; /* "" = none */
    json_t *results;    /* rank 0: one object per input done */
    /* The input being evaluated. */
    qr_input_opts input;
    int32_t *ids; /* (n_ids) the input, no BOS */
    size_t n_ids;
    int64_t n_windows, w0, w1;
    qr_divergence_sums *sums, *all; /* (n_windows) per window: this rank's, every rank's */
    double *kl;                     /* (this rank's tokens) --ckpt: KL per token */
    double *kl_all;                 /* (n_ids) rank 0, --ckpt: every token's, in order */
    double elapsed;                 /* the slowest rank's time */
    qr_divergence_summary sum;
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

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The input's results as one JSON object (NULL when out of memory). */
static json_t *result_json(const eval_run *r, const char *modules)
{
    const eval_opts *o = &r->o;
    const qr_input_opts *in = &r->input;
    int64_t scored = (int64_t)r->n_ids;
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:i}", "name",
                          base_name(qr_input_source_path(in)), "model", o->in.model_path, "input",
                          qr_input_source_path(in), "input_kind", qr_input_source_kind(in),
                          "seq_len", (json_int_t)r->L, "windows", (json_int_t)r->n_windows,
                          "tokens_scored", (json_int_t)scored, "nll_per_token", r->sum.nll_test,
                          "perplexity", r->sum.ppl_test, "seconds", r->elapsed, "tokens_per_s",
                          (double)scored / r->elapsed, "ranks", r->nranks);
    if (j && o->ckpt) {
        json_object_set_new(j, "ckpt", json_string(o->ckpt));
        json_object_set_new(j, "abits", json_integer(qr_ckpt_llama_abits(r->qm)));
        json_object_set_new(j, "modules", json_string(modules));
        qr_eval_summary_to_json(j, &r->sum);
    }
    return j;
}

static void print_text(const eval_run *r, const char *modules)
{
    const eval_opts *o = &r->o;
    const qr_divergence_summary *s = &r->sum;
    int64_t scored = (int64_t)r->n_ids;
    printf("eval: %s on %s\n", o->in.model_path, qr_input_source_path(&r->input));
    if (o->ckpt) {
        printf("  checkpoint: %s, %s\n", o->ckpt, modules);
    }
    printf("  windows: %lld of %lld tokens (BOS + %lld), %lld tokens scored\n",
           (long long)r->n_windows, (long long)r->L, (long long)r->L - 1, (long long)scored);
    printf("  NLL/token: %.4f nats   perplexity: %.4f\n", s->nll_test, s->ppl_test);
    if (o->ckpt) {
        printf("  float model: NLL/token %.4f   perplexity %.4f   dNLL %+.5f +- %.5f\n", s->nll_ref,
               s->ppl_ref, s->delta_nll, s->delta_nll_se);
        printf("  KL divergence from float: mean %.6f +- %.6f   median %.6f   p99 %.6f   max "
               "%.6f\n",
               s->kl_mean, s->kl_mean_se, s->kl_median, s->kl_p99, s->kl_max);
        printf("  top-1 agreement: %.3f %% +- %.3f %%\n", 100.0 * s->top1, 100.0 * s->top1_se);
    }
    printf("  time: %.2f s (%.0f tokens/s over %d rank(s))\n", r->elapsed,
           (double)scored / r->elapsed, r->nranks);
}

/* Write: rank 0 prints the input's result, as text or JSON, and keeps it for the sidecar. */
static qr_status phase_write(eval_run *r)
{
    char modules[160];
    json_t *j;
    char *s;
    if (r->rank != 0) {
        return QR_OK;
    }
    describe_modules(r, modules, sizeof modules);
    j = result_json(r, modules);
    if (!j || json_array_append_new(r->results, j) != 0) {
        return qr_fail(QR_ERR_NOMEM, "eval: cannot encode the results");
    }
    if (r->o.json) {
        s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
        if (!s) {
            return qr_fail(QR_ERR_NOMEM, "eval: cannot encode the results");
        }
        printf("%s\n", s);
        free(s);
    } else {
        print_text(r, modules);
    }
    fflush(stdout);
    return QR_OK;
}

/* The sidecar's path and check, before any work: --sidecar must be writable (exit 2 otherwise);
 * the default CKPT.eval.json is skipped with a warning when its folder is not. */
static qr_status check_sidecar(eval_run *r)
{
    const eval_opts *o = &r->o;
    const char *inputs[QR_OPT_LIST_MAX + 4];
    size_t n = 0;
    qr_status st;
    if (!o->ckpt || (o->sidecar && strcmp(o->sidecar, "none") == 0)) {
        return QR_OK;
    }
    if (o->sidecar) {
        snprintf(r->sidecar, sizeof r->sidecar, "%s", o->sidecar);
    } else if (snprintf(r->sidecar, sizeof r->sidecar, "%s%s", o->ckpt, QR_EVAL_SIDECAR_SUFFIX) >=
               (int)sizeof r->sidecar) {
        return qr_fail(QR_ERR_INPUT, "%s: path too long for its sidecar", o->ckpt);
    }
    inputs[n++] = o->in.model_path;
    inputs[n++] = o->ckpt;
    inputs[n++] = o->in.input.token_path;
    for (int k = 0; k < o->in.texts.n; k++) {
        inputs[n++] = o->in.texts.v[k];
    }
    st = qr_fs_check_output("--sidecar", r->sidecar, QR_OUT_FILE, inputs, n);
    if (st != QR_OK && !o->sidecar_given) {
        QR_WARN("eval: not writing the figures beside the checkpoint: %s", qr_errmsg());
        qr_clear_error();
        r->sidecar[0] = '\0';
        return QR_OK;
    }
    return st;
}

/* Open: the model, a second copy with the checkpoint's modules (--ckpt), and the window length
 * and buffers every input shares. */
static qr_status phase_open(eval_run *r)
{
    const eval_opts *o = &r->o;
    const qr_model_config *c;
    size_t n_logits = 0;
    QR_TRY(check_sidecar(r));
    QR_TRY(qr_llama_job_open(o->in.model_path, &r->job));
    if (o->ckpt) {
        QR_TRY(qr_kernel_select(o->kernel));
        QR_TRY(qr_llama_load(r->job.model, &r->wq));
        QR_TRY(qr_ckpt_llama_attach(o->ckpt, r->job.model,
                                    o->ckpt_reference ? QR_CKPT_RUN_REFERENCE : QR_CKPT_RUN_KERNELS,
                                    &r->wq, &r->qm));
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
    if (!qr_mul_size((size_t)r->L, (size_t)r->vocab, &n_logits)) {
        return qr_fail(QR_ERR_INPUT, "eval: logits of %lld x %lld overflow", (long long)r->L,
                       (long long)r->vocab);
    }
    QR_TRY(qr_malloc(&r->logits, n_logits, sizeof *r->logits, "eval logits"));
    if (o->ckpt) {
        QR_TRY(qr_malloc(&r->logits_f, n_logits, sizeof *r->logits_f, "eval float logits"));
    }
    QR_TRY(qr_malloc(&r->window, (size_t)r->L, sizeof *r->window, "eval window"));
    QR_TRY(qr_llama_state_open(c, r->L, r->L, &r->state));
    r->results = json_array();
    return r->results ? QR_OK : qr_fail(QR_ERR_NOMEM, "eval: out of memory");
}

/* First token (in text order) of window w, clipped to the input. */
static size_t window_first(const eval_run *r, int64_t w)
{
    size_t t = (size_t)w * (size_t)(r->L - 1);
    return t < r->n_ids ? t : r->n_ids;
}

/* Check: read input k, count its windows, and allocate what they need. */
static qr_status phase_check(eval_run *r, int k)
{
    size_t n_mine;
    r->input = r->o.in.input;
    if (r->o.in.texts.n > 0) {
        r->input.text_path = r->o.in.texts.v[k];
    }
    QR_TRY(qr_llama_job_input(&r->job, &r->input, &r->ids, &r->n_ids));
    if ((int64_t)r->n_ids > r->o.max_tokens) {
        r->n_ids = (size_t)r->o.max_tokens;
    }
    r->n_windows = ((int64_t)r->n_ids + r->L - 2) / (r->L - 1);
    if (r->n_windows > INT32_MAX / QR_DIVERGENCE_SUMS_DOUBLES || r->n_ids > INT32_MAX) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: %zu tokens in %lld windows exceed an MPI count (use --max-tokens)",
                       qr_input_source_path(&r->input), r->n_ids, (long long)r->n_windows);
    }
    r->w0 = (int64_t)r->rank * r->n_windows / r->nranks;
    r->w1 = (int64_t)(r->rank + 1) * r->n_windows / r->nranks;
    n_mine = window_first(r, r->w1) - window_first(r, r->w0);
    QR_TRY(qr_calloc(&r->sums, (size_t)r->n_windows, sizeof *r->sums, "eval sums"));
    QR_TRY(qr_calloc(&r->all, (size_t)r->n_windows, sizeof *r->all, "eval sums"));
    if (r->qm) {
        QR_TRY(qr_calloc(&r->kl, n_mine + 1, sizeof *r->kl, "eval KL"));
        if (r->rank == 0) {
            QR_TRY(qr_calloc(&r->kl_all, r->n_ids + 1, sizeof *r->kl_all, "eval KL"));
        }
    }
    return QR_OK;
}

/* The tokens of window w (len, BOS first) against the logits of both models. */
static void score_window(eval_run *r, int64_t w, int64_t len)
{
    size_t first = window_first(r, w) - window_first(r, r->w0);
    for (int64_t i = 0; i + 1 < len; i++) {
        const float *lq = r->logits + i * r->vocab;
        qr_token_divergence d;
        if (r->qm) {
            qr_logits_divergence(r->logits_f + i * r->vocab, lq, r->vocab, r->window[i + 1], &d);
            r->kl[first + (size_t)i] = d.kl;
        } else {
            d.nll_ref = d.nll_test = qr_logits_nll(lq, r->vocab, r->window[i + 1]);
            d.kl = 0.0;
            d.top1_same = 1;
        }
        qr_divergence_add(&r->sums[w], &d);
    }
}

/* Run: this rank's windows through the float model and (--ckpt) the checkpoint. */
static qr_status phase_run(eval_run *r)
{
    double t0 = qr_now();
    if (r->rank == 0) {
        r->prog = qr_progress_begin("eval", r->w1 - r->w0, "windows");
    }
    for (int64_t w = r->w0; w < r->w1; w++) {
        int64_t len = 0;
        qr_window_tokens(r->ids, r->n_ids, r->L, w, r->job.bos, r->window, &len);
        if (r->qm) {
            QR_TRY(
                qr_llama_forward(&r->job.w, r->state, r->window, len, 0, r->logits_f, NULL, NULL));
        }
        QR_TRY(qr_llama_forward(r->qm ? &r->wq : &r->job.w, r->state, r->window, len, 0, r->logits,
                                NULL, NULL));
        score_window(r, w, len);
        qr_progress_step(r->prog, "window", 1.0, "NLL/token %.4f",
                         r->sums[w].nll_test / (double)(len - 1));
    }
    r->elapsed = qr_now() - t0;
    return QR_OK;
}

/* Every rank's per-token KL values to rank 0, in token order. Collective. */
static qr_status gather_kl(eval_run *r)
{
    int *counts = NULL, *displs = NULL;
    int n_mine = (int)(window_first(r, r->w1) - window_first(r, r->w0));
    qr_status st = QR_OK;
    QR_CHECK(qr_calloc(&counts, (size_t)r->nranks, sizeof *counts, "eval counts"));
    QR_CHECK(qr_calloc(&displs, (size_t)r->nranks, sizeof *displs, "eval counts"));
    for (int p = 0; p < r->nranks; p++) {
        int64_t w0 = (int64_t)p * r->n_windows / r->nranks;
        int64_t w1 = (int64_t)(p + 1) * r->n_windows / r->nranks;
        displs[p] = (int)window_first(r, w0);
        counts[p] = (int)(window_first(r, w1) - window_first(r, w0));
    }
    QR_CHECK(qr_mpi_check(MPI_Gatherv(r->kl, n_mine, MPI_DOUBLE, r->kl_all, counts, displs,
                                      MPI_DOUBLE, 0, MPI_COMM_WORLD),
                          "MPI_Gatherv"));
done:
    free(counts);
    free(displs);
    return st;
}

/* Gather: every window's sums and the slowest rank's time. Each window's sums are nonzero on one
 * rank only, so the reduction is exact; the totals are then added in window order, the same for
 * any number of ranks. Rank 0 summarizes. Collective. */
static qr_status phase_gather(eval_run *r)
{
    double max_elapsed = 0.0;
    qr_divergence_sums total;
    QR_TRY(
        qr_mpi_check(MPI_Allreduce(r->sums, r->all, (int)r->n_windows * QR_DIVERGENCE_SUMS_DOUBLES,
                                   MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
                     "MPI_Allreduce"));
    QR_TRY(qr_mpi_check(
        MPI_Allreduce(&r->elapsed, &max_elapsed, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD),
        "MPI_Allreduce"));
    r->elapsed = max_elapsed;
    if (r->qm) {
        QR_TRY(gather_kl(r));
    }
    memset(&total, 0, sizeof total);
    for (int64_t w = 0; w < r->n_windows; w++) {
        qr_divergence_merge(&total, &r->all[w]);
    }
    qr_divergence_summarize(&total, r->kl_all, r->qm && r->rank == 0 ? r->n_ids : 0, &r->sum);
    if (r->qm) {
        qr_progress_end(&r->prog, "eval: NLL/token %.4f, perplexity %.4f; KL mean %.5f, top-1 %.4f",
                        r->sum.nll_test, r->sum.ppl_test, r->sum.kl_mean, r->sum.top1);
    } else {
        qr_progress_end(&r->prog, "eval: NLL/token %.4f, perplexity %.4f", r->sum.nll_test,
                        r->sum.ppl_test);
    }
    return QR_OK;
}

/* The arrays of one input. */
static void free_input(eval_run *r)
{
    free(r->ids);
    free(r->sums);
    free(r->all);
    free(r->kl);
    free(r->kl_all);
    r->ids = NULL;
    r->sums = r->all = NULL;
    r->kl = r->kl_all = NULL;
    r->n_ids = 0;
}

/* Sidecar: rank 0 writes every input's figures beside the checkpoint (or to --sidecar). */
static qr_status phase_sidecar(const eval_run *r)
{
    char id[QR_EVAL_IDENTITY_MAX], modules[160];
    json_t *head;
    size_t kept = 0;
    qr_status st;
    if (r->rank != 0 || !r->sidecar[0]) {
        return QR_OK;
    }
    QR_TRY(qr_eval_file_identity(r->o.ckpt, id));
    describe_modules(r, modules, sizeof modules);
    head = json_pack("{s:s, s:s, s:s, s:i, s:s}", "checkpoint", r->o.ckpt, "model",
                     r->o.in.model_path, "method", qr_ckpt_llama_method(r->qm), "abits",
                     qr_ckpt_llama_abits(r->qm), "modules", modules);
    if (!head) {
        return qr_fail(QR_ERR_NOMEM, "%s: out of memory", r->sidecar);
    }
    st = qr_eval_sidecar_write(r->sidecar, id, head, r->results, &kept);
    json_decref(head);
    QR_TRY(st);
    QR_INFO("eval: figures of %zu input(s) in %s%s", json_array_size(r->results), r->sidecar,
            kept ? " (with the other texts of an earlier eval)" : "");
    return QR_OK;
}

static void phase_close(eval_run *r)
{
    qr_progress_end(&r->prog, "eval: failed");
    free_input(r);
    qr_llama_state_close(&r->state);
    free(r->window);
    free(r->logits);
    free(r->logits_f);
    json_decref(r->results);
    qr_llama_job_close(&r->job);
    qr_llama_weights_free(&r->wq);
    qr_ckpt_llama_free(&r->qm);
}

qr_status qr_cmd_eval(int argc, char **argv)
{
    qr_status st = QR_OK;
    eval_run r;
    bool help = false;
    int n_inputs;
    memset(&r, 0, sizeof r);
    r.rank = qr_mpi_rank(MPI_COMM_WORLD);
    r.nranks = qr_mpi_size(MPI_COMM_WORLD);
    QR_TRY(parse(argc, argv, &r.o, &help));
    if (help) {
        return QR_OK;
    }
    n_inputs = r.o.in.texts.n > 0 ? r.o.in.texts.n : 1;
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, phase_open(&r)));
    for (int k = 0; k < n_inputs; k++) {
        QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, phase_check(&r, k)));
        QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, phase_run(&r)));
        QR_CHECK(phase_gather(&r));
        QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, phase_write(&r)));
        free_input(&r);
    }
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, phase_sidecar(&r)));
done:
    phase_close(&r);
    return st;
}

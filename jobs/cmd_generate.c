/* cmd_generate.c: `qrecon generate`: greedy or sampled decoding from BOS (and an optional prompt)
 * with the float32 forward pass and its KV cache, or with a quantized checkpoint's modules through
 * the INT4 kernels (--ckpt, as `eval --ckpt`); prints the decoded text. A quick check that a model
 * loads and runs correctly (stories260K starts "Once upon a time, there was a little girl named
 * Lily."). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/ckpt_llama.h"
#include "jobs/cli.h"
#include "jobs/llama_job.h"
#include "jobs/kernel_options.h"
#include "jobs/options.h"
#include "src/alloc.h"
#include "src/kernels/kernels.h"
#include "src/log.h"
#include "src/rng.h"

typedef struct {
    qr_llama_cli in; /* --model, --tokenizer */
    const char *prompt, *ckpt, *kernel;
    int64_t steps, top_k, seed;
    double temperature;
    bool ids;
} generate_cli;

static const qr_cmd_doc doc = {
    "generate",
    "qrecon generate --model DIR [--prompt TEXT] [--steps N] [--tokenizer FILE]\n"
    "                       [--ckpt CKPT [--kernel auto|ref|avx2|avx512]]\n"
    "                       [--temperature T [--top-k K] [--seed S]] [--ids]",
    "Decoding from BOS, or from BOS + the prompt, for up to N new tokens (at most the model's\n"
    "context), stopping early when the model emits BOS or EOS: greedy (the argmax at every step),\n"
    "or sampled with --temperature. Runs the float32 model, or with --ckpt every linear module of\n"
    "the quantized checkpoint through the INT4 kernels with its activation bits (as eval --ckpt).\n"
    "Prints the prompt and the continuation as text on stdout (docs/export.md).\n",
    NULL,
};

#define CLI(f) offsetof(generate_cli, f)
static const qr_opt generate_rows[] = {
    {"prompt", QR_OPT_STR, CLI(prompt), "TEXT", "text to continue (the model's tokenizer)", "none"},
    {"steps", QR_OPT_INT, CLI(steps), "N", "new tokens to generate", .imin = 1, .imax = INT32_MAX},
    {"ckpt", QR_OPT_STR, CLI(ckpt), "CKPT",
     "run this quantized checkpoint of the model through the INT4 kernels", "none"},
    {"temperature", QR_OPT_DOUBLE, CLI(temperature), "T",
     "sample from softmax(logits / T); 0 = greedy", .dmin = 0.0, .dmax = 1e6},
    {"top-k", QR_OPT_INT, CLI(top_k), "K", "sample among the K most likely tokens; 0 = all",
     .imin = 0, .imax = INT32_MAX},
    {"seed", QR_OPT_INT, CLI(seed), "S", "seed of the sampler: the same seed, the same text",
     .imin = 0, .imax = INT64_MAX},
    {"ids", QR_OPT_FLAG, CLI(ids), NULL, "also print the generated token ids on a second line"},
};
#undef CLI

/* The next token: the argmax, or a draw from softmax(logits / temperature) over the top_k most
 * likely tokens (all when top_k is 0), in double precision. */
static int32_t next_token(const float *logits, int64_t vocab, double temperature, int64_t top_k,
                          qr_rng *rng, double *p)
{
    double mx = -INFINITY, sum = 0.0, u, acc = 0.0, cut = -INFINITY;
    if (temperature <= 0.0) {
        return qr_logits_argmax(logits, vocab);
    }
    if (top_k > 0 && top_k < vocab) {
        /* the k-th largest logit: k passes over the vocabulary are fine for sampling */
        double prev = INFINITY;
        for (int64_t k = 0; k < top_k; k++) {
            double best = -INFINITY;
            for (int64_t i = 0; i < vocab; i++) {
                if ((double)logits[i] < prev && (double)logits[i] > best) {
                    best = logits[i];
                }
            }
            prev = best;
        }
        cut = prev;
    }
    for (int64_t i = 0; i < vocab; i++) {
        mx = fmax(mx, (double)logits[i]);
    }
    for (int64_t i = 0; i < vocab; i++) {
        p[i] = (double)logits[i] >= cut ? exp(((double)logits[i] - mx) / temperature) : 0.0;
        sum += p[i];
    }
    u = qr_rng_uniform(rng) * sum;
    for (int64_t i = 0; i < vocab; i++) {
        acc += p[i];
        if (p[i] > 0.0 && u < acc) {
            return (int32_t)i;
        }
    }
    return qr_logits_argmax(logits, vocab);
}

qr_status qr_cmd_generate(int argc, char **argv)
{
    qr_status st = QR_OK;
    const char *model_path = NULL, *prompt = NULL, *tok_path = NULL, *ckpt = NULL, *kernel = NULL;
    double temperature = 0.0;
    int64_t top_k = 0, seed = 0;
    bool print_ids = false;
    double *probs = NULL;
    qr_ckpt_llama *qm = NULL;
    qr_rng rng;
    int64_t steps = 256, n_seq = 0, max_pos, vocab;
    int32_t *seq = NULL, *prompt_ids = NULL;
    size_t n_prompt = 0, text_len = 0;
    float *logits = NULL;
    char *text = NULL;
    qr_llama_job job;
    qr_llama_state *state = NULL;
    generate_cli cli;
    qr_opt_result res;
    qr_opt_table tables[] = {
        qr_llama_model_opt_table(&cli.in, "options (defaults in parentheses)"),
        QR_OPT_TABLE(generate_rows, &cli, NULL),
        qr_kernel_opt_table(&cli.kernel, NULL),
    };
    memset(&job, 0, sizeof job);
    memset(&cli, 0, sizeof cli);
    cli.steps = 256;
    cli.kernel = "auto";
    QR_TRY(qr_opts_parse(&doc, tables, 3, 0, argc, argv, &res));
    if (res.help) {
        return QR_OK;
    }
    if (!cli.in.model_path) {
        return qr_cli_usage_error("generate", "expected --model DIR");
    }
    model_path = cli.in.model_path;
    prompt = cli.prompt;
    tok_path = cli.in.input.tokenizer_path;
    ckpt = cli.ckpt;
    kernel = qr_opts_given(tables, 3, &res, "kernel") ? cli.kernel : NULL;
    steps = cli.steps;
    top_k = cli.top_k;
    seed = cli.seed;
    temperature = cli.temperature;
    print_ids = cli.ids;
    if (kernel && !ckpt) {
        return qr_fail(QR_ERR_INPUT, "--kernel: needs --ckpt");
    }
    QR_CHECK(qr_llama_job_open(model_path, &job));
    if (ckpt) {
        QR_CHECK(qr_kernel_select(kernel ? kernel : "auto"));
        QR_CHECK(qr_ckpt_llama_attach(ckpt, job.model, QR_CKPT_RUN_KERNELS, &job.w, &qm));
    }
    qr_rng_seed(&rng, (uint64_t)seed);
    QR_CHECK(qr_llama_job_tokenizer(&job, tok_path));
    vocab = job.w.cfg.vocab_size;
    if (prompt && *prompt) {
        qr_encode_opts eo = {true, false, "--prompt"};
        QR_CHECK(qr_tokenizer_encode(job.tok, prompt, strlen(prompt), &eo, &prompt_ids, &n_prompt));
    }
    max_pos = job.w.cfg.max_seq_len;
    if ((int64_t)n_prompt + 1 >= max_pos) {
        st = qr_fail(QR_ERR_INPUT,
                     "--prompt: %zu tokens leave no room in the model's context of "
                     "%lld positions",
                     n_prompt, (long long)max_pos);
        goto done;
    }
    if (steps > max_pos - 1 - (int64_t)n_prompt) {
        steps = max_pos - 1 - (int64_t)n_prompt;
    }
    QR_CHECK(qr_calloc(&seq, (size_t)max_pos, sizeof *seq, "generated tokens"));
    QR_CHECK(qr_calloc(&probs, (size_t)vocab, sizeof *probs, "sampling probabilities"));
    QR_CHECK(qr_calloc(&logits, (size_t)(n_prompt + 1) * (size_t)vocab, sizeof *logits, "logits"));
    QR_CHECK(qr_llama_state_open(&job.w.cfg, (int64_t)n_prompt + 1, max_pos, &state));
    seq[0] = job.bos;
    if (n_prompt > 0) { /* memcpy from NULL is undefined even for 0 bytes */
        memcpy(seq + 1, prompt_ids, n_prompt * sizeof *seq);
    }
    n_seq = (int64_t)n_prompt + 1;
    /* The prompt runs as one block; then one token per step through the KV cache. */
    QR_CHECK(qr_llama_forward(&job.w, state, seq, n_seq, 0, logits, NULL, NULL));
    for (int64_t s = 0; s < steps; s++) {
        const float *last = s == 0 ? logits + (n_seq - 1) * vocab : logits;
        int32_t next = next_token(last, vocab, temperature, top_k, &rng, probs);
        if (next == job.bos || next == qr_tokenizer_eos(job.tok)) {
            break;
        }
        seq[n_seq++] = next;
        if (s + 1 < steps) {
            QR_CHECK(
                qr_llama_forward(&job.w, state, &seq[n_seq - 1], 1, n_seq - 1, logits, NULL, NULL));
        }
    }
    QR_CHECK(qr_tokenizer_decode(job.tok, seq + 1, (size_t)(n_seq - 1), job.bos, &text, &text_len));
    if (qr_log_rank() == 0) {
        fwrite(text, 1, text_len, stdout);
        fputc('\n', stdout);
        if (print_ids) {
            for (int64_t i = 1 + (int64_t)n_prompt; i < n_seq; i++) {
                printf("%s%d", i > 1 + (int64_t)n_prompt ? " " : "", (int)seq[i]);
            }
            fputc('\n', stdout);
        }
        fflush(stdout);
    }
done:
    free(probs);
    free(text);
    free(logits);
    free(seq);
    free(prompt_ids);
    qr_llama_state_close(&state);
    qr_llama_job_close(&job);
    qr_ckpt_llama_free(&qm);
    return st;
}

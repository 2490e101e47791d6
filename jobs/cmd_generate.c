/* cmd_generate.c: `qrecon generate`: greedy decoding from BOS (and an optional prompt) with the
 * float32 forward pass and its KV cache; prints the decoded text. A quick check that a model loads
 * and runs correctly (stories260K starts "Once upon a time, there was a little girl named Lily.").
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/cli.h"
#include "jobs/llama_job.h"
#include "src/alloc.h"
#include "src/log.h"

static const qr_cmd_doc doc = {
    "generate",
    "qrecon generate --model DIR [--prompt TEXT] [--steps N] [--tokenizer FILE]",
    "Greedy decoding (argmax at every step) from BOS, or from BOS + the prompt, for up to N new\n"
    "tokens (at most the model's context), stopping early when the model emits BOS or EOS.\n"
    "Prints the prompt and the continuation as text on stdout.\n",
    NULL,
};

typedef struct {
    qr_llama_cli in; /* --model, --tokenizer */
    const char *prompt;
    int64_t steps;
} generate_opts;

#define OPT(f) offsetof(generate_opts, f)
static const qr_opt generate_rows[] = {
    {"prompt", QR_OPT_STR, OPT(prompt), "TEXT",
     "text to continue (encoded with the model's tokenizer)"},
    {"steps", QR_OPT_INT, OPT(steps), "N", "new tokens to generate", .imin = 1, .imax = INT32_MAX},
};
#undef OPT

static qr_status parse(int argc, char **argv, generate_opts *o, bool *help)
{
    qr_opt_result res;
    qr_opt_table tables[] = {
        qr_llama_model_opt_table(&o->in, "options (defaults in parentheses)"),
        QR_OPT_TABLE(generate_rows, o, NULL),
    };
    memset(o, 0, sizeof *o);
    o->steps = 256;
    QR_TRY(qr_opts_parse(&doc, tables, 2, 0, argc, argv, &res));
    *help = res.help;
    if (!res.help && !o->in.model_path) {
        return qr_cli_usage_error("generate", "expected --model DIR");
    }
    return QR_OK;
}

qr_status qr_cmd_generate(int argc, char **argv)
{
    qr_status st = QR_OK;
    generate_opts o;
    bool help = false;
    int64_t steps, n_seq = 0, max_pos, vocab;
    int32_t *seq = NULL, *prompt_ids = NULL;
    size_t n_prompt = 0, text_len = 0;
    float *logits = NULL;
    char *text = NULL;
    qr_llama_job job;
    qr_llama_state *state = NULL;
    memset(&job, 0, sizeof job);
    QR_TRY(parse(argc, argv, &o, &help));
    if (help) {
        return QR_OK;
    }
    steps = o.steps;
    QR_CHECK(qr_llama_job_open(o.in.model_path, &job));
    QR_CHECK(qr_llama_job_tokenizer(&job, o.in.input.tokenizer_path));
    vocab = job.w.cfg.vocab_size;
    if (o.prompt && *o.prompt) {
        qr_encode_opts eo = {true, false, "--prompt"};
        QR_CHECK(
            qr_tokenizer_encode(job.tok, o.prompt, strlen(o.prompt), &eo, &prompt_ids, &n_prompt));
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
    QR_CHECK(qr_calloc(&logits, (size_t)(n_prompt + 1) * (size_t)vocab, sizeof *logits, "logits"));
    QR_CHECK(qr_llama_state_open(&job.w.cfg, (int64_t)n_prompt + 1, max_pos, &state));
    seq[0] = QR_TOKEN_BOS;
    if (n_prompt > 0) { /* memcpy from NULL is undefined even for 0 bytes */
        memcpy(seq + 1, prompt_ids, n_prompt * sizeof *seq);
    }
    n_seq = (int64_t)n_prompt + 1;
    /* The prompt runs as one block; then one token per step through the KV cache. */
    QR_CHECK(qr_llama_forward(&job.w, state, seq, n_seq, 0, logits, NULL, NULL));
    for (int64_t s = 0; s < steps; s++) {
        const float *last = s == 0 ? logits + (n_seq - 1) * vocab : logits;
        int32_t next = qr_logits_argmax(last, vocab);
        if (next == QR_TOKEN_BOS || next == QR_TOKEN_EOS) {
            break;
        }
        seq[n_seq++] = next;
        if (s + 1 < steps) {
            QR_CHECK(
                qr_llama_forward(&job.w, state, &seq[n_seq - 1], 1, n_seq - 1, logits, NULL, NULL));
        }
    }
    QR_CHECK(
        qr_tokenizer_decode(job.tok, seq + 1, (size_t)(n_seq - 1), QR_TOKEN_BOS, &text, &text_len));
    if (qr_log_rank() == 0) {
        fwrite(text, 1, text_len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
done:
    free(text);
    free(logits);
    free(seq);
    free(prompt_ids);
    qr_llama_state_close(&state);
    qr_llama_job_close(&job);
    return st;
}

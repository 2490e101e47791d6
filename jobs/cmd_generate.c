/* cmd_generate.c: `qrecon generate`: greedy or sampled decoding from BOS (and an optional prompt)
 * with the float32 forward pass and its KV cache, or with a quantized checkpoint's modules through
 * the INT4 kernels (--ckpt, as `eval --ckpt`); prints the decoded text. A quick check that a model
 * loads and runs correctly (stories260K starts "Once upon a time, there was a little girl named
 * Lily."). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/ckpt_llama.h"
#include "jobs/cli.h"
#include "jobs/llama_job.h"
#include "src/alloc.h"
#include "src/kernels/kernels.h"
#include "src/log.h"
#include "src/rng.h"

static const char help[] =
    "usage: qrecon generate --model DIR [--prompt TEXT] [--steps N] [--tokenizer FILE]\n"
    "                       [--ckpt CKPT [--kernel auto|ref|avx2|avx512]]\n"
    "                       [--temperature T [--top-k K] [--seed S]] [--ids]\n"
    "\n"
    "Greedy decoding (argmax at every step) from BOS, or from BOS + the prompt, for up to N new\n"
    "tokens (default 256, at most the model's context), stopping early when the model emits BOS "
    "or\n"
    "EOS. Prints the prompt and the continuation as text on stdout.\n"
    "\n"
    "  --model DIR       Hugging Face folder or llama2.c checkpoint\n"
    "  --prompt TEXT     text to continue (encoded with the model's tokenizer)\n"
    "  --steps N         new tokens to generate (default 256)\n"
    "  --tokenizer FILE  llama2.c tokenizer.bin (default: the one beside the model)\n"
    "  --ckpt CKPT       run the quantized checkpoint of this model: every linear module through\n"
    "                    the INT4 kernels with the checkpoint's activation bits (as eval --ckpt)\n"
    "  --kernel K        kernel path for --ckpt (default auto: the best this CPU runs)\n"
    "  --temperature T   sample from softmax(logits / T) instead of the argmax (default 0 =\n"
    "                    greedy)\n"
    "  --top-k K         sample among the K most likely tokens only (default 0 = all)\n"
    "  --seed S          seed of the sampler (default 0); the same seed gives the same text\n"
    "  --ids             also print the generated token ids (one line, after the text)\n";

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
    static const struct option longopts[] = {{"model", required_argument, NULL, 'm'},
                                             {"prompt", required_argument, NULL, 'p'},
                                             {"steps", required_argument, NULL, 's'},
                                             {"tokenizer", required_argument, NULL, 't'},
                                             {"ckpt", required_argument, NULL, 'c'},
                                             {"kernel", required_argument, NULL, 'K'},
                                             {"temperature", required_argument, NULL, 'T'},
                                             {"top-k", required_argument, NULL, 'k'},
                                             {"seed", required_argument, NULL, 'S'},
                                             {"ids", no_argument, NULL, 'i'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
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
    int c;
    memset(&job, 0, sizeof job);
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            model_path = optarg;
            break;
        case 'p':
            prompt = optarg;
            break;
        case 's':
            QR_CHECK(qr_cli_int("--steps", optarg, 1, INT32_MAX, &steps));
            break;
        case 't':
            tok_path = optarg;
            break;
        case 'c':
            ckpt = optarg;
            break;
        case 'K':
            kernel = optarg;
            break;
        case 'T':
            QR_CHECK(qr_cli_double("--temperature", optarg, 0.0, 1e6, &temperature));
            break;
        case 'k':
            QR_CHECK(qr_cli_int("--top-k", optarg, 0, INT32_MAX, &top_k));
            break;
        case 'S':
            QR_CHECK(qr_cli_int("--seed", optarg, 0, INT64_MAX, &seed));
            break;
        case 'i':
            print_ids = true;
            break;
        case 'h':
            qr_cli_print_help(help);
            return QR_OK;
        case ':':
            return qr_cli_usage_error("generate", "an option is missing its value");
        default:
            return qr_cli_usage_error("generate", "unknown option");
        }
    }
    if (!model_path || optind != argc) {
        return qr_cli_usage_error("generate", "expected --model DIR and no other arguments");
    }
    if (kernel && !ckpt) {
        return qr_cli_usage_error("generate", "--kernel needs --ckpt");
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
    seq[0] = QR_TOKEN_BOS;
    if (n_prompt > 0) { /* memcpy from NULL is undefined even for 0 bytes */
        memcpy(seq + 1, prompt_ids, n_prompt * sizeof *seq);
    }
    n_seq = (int64_t)n_prompt + 1;
    /* The prompt runs as one block; then one token per step through the KV cache. */
    QR_CHECK(qr_llama_forward(&job.w, state, seq, n_seq, 0, logits, NULL, NULL));
    for (int64_t s = 0; s < steps; s++) {
        const float *last = s == 0 ? logits + (n_seq - 1) * vocab : logits;
        int32_t next = next_token(last, vocab, temperature, top_k, &rng, probs);
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

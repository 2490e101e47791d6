/* forward_bench.c: forward-pass throughput, the whole window in one batched call against a plain
 * one-token-at-a-time loop through the KV cache, measured side by side in one run (alternating
 * repetitions, median of each) on the real models and on a larger synthetic Llama shape.
 *
 * usage: forward_bench [REPS]   (QRECON_TEST_DATA names the shared data folder)
 * Built by the bench target only; docs/eval.md lists the figures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/fs.h"
#include "io/llama_load.h"
#include "io/model.h"
#include "io/tokenizer_bin.h"
#include "src/llama.h"
#include "src/progress.h"
#include "src/rng.h"
#include "src/tokenizer.h"

/* CPU seconds of this process: steadier than wall time when other jobs share the cores. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds per window of the batched and the token-by-token pass over `window` (n). */
static int measure(const char *label, const qr_llama_weights *w, const int32_t *window, int64_t n,
                   int reps)
{
    qr_llama_state *s = NULL;
    float *logits = NULL;
    double *tb = calloc((size_t)reps, sizeof *tb), *tt = calloc((size_t)reps, sizeof *tt);
    double cb = 0.0, ct = 0.0; /* CPU seconds of all repetitions, batched / token loop */
    int64_t V = w->cfg.vocab_size;
    if (!tb || !tt || !(logits = malloc((size_t)n * (size_t)V * sizeof *logits)) ||
        qr_llama_state_open(&w->cfg, n, n, &s) != QR_OK) {
        fprintf(stderr, "%s: setup failed: %s\n", label, qr_errmsg());
        return 1;
    }
    for (int r = -1; r < reps; r++) { /* r = -1 warms up both paths */
        double t0 = qr_now(), c0 = cpu_now(), c1, c2;
        if (qr_llama_forward(w, s, window, n, 0, logits, NULL, NULL) != QR_OK) {
            fprintf(stderr, "%s: %s\n", label, qr_errmsg());
            return 1;
        }
        double t1 = qr_now();
        c1 = cpu_now();
        for (int64_t i = 0; i < n; i++) {
            /* The plain loop: one token per call, logits of every position as a decoder would. */
            if (qr_llama_forward(w, s, &window[i], 1, i, logits, NULL, NULL) != QR_OK) {
                fprintf(stderr, "%s: %s\n", label, qr_errmsg());
                return 1;
            }
        }
        double t2 = qr_now();
        c2 = cpu_now();
        if (r >= 0) {
            tb[r] = t1 - t0;
            tt[r] = t2 - t1;
            cb += c1 - c0;
            ct += c2 - c1;
        }
    }
    qsort(tb, (size_t)reps, sizeof *tb, cmp_double);
    qsort(tt, (size_t)reps, sizeof *tt, cmp_double);
    printf("| %s | %lld | %.0f | %.0f | %.1fx | %.0f | %.0f | %.1fx |\n", label, (long long)n,
           (double)n / tb[reps / 2], (double)n / tt[reps / 2], tt[reps / 2] / tb[reps / 2],
           (double)n * reps / cb, (double)n * reps / ct, ct / cb);
    fflush(stdout);
    free(tb);
    free(tt);
    free(logits);
    qr_llama_state_close(&s);
    return 0;
}

static int real_model(const char *data, const char *rel, const char *label, bool unk_zero, int reps)
{
    char path[4096], text_path[4096];
    qr_model *m = NULL;
    qr_llama_weights w;
    qr_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0, nt = 0;
    int32_t *ids = NULL, *window = NULL;
    int64_t n;
    qr_encode_opts eo = {true, unk_zero, "text"};
    int rc = 1;
    memset(&w, 0, sizeof w);
    snprintf(path, sizeof path, "%s/%s", data, rel);
    snprintf(text_path, sizeof text_path, "%s/text/tinystories_val_a.txt", data);
    if (qr_model_open(path, &m) != QR_OK || qr_llama_load(m, &w) != QR_OK ||
        qr_tokenizer_bin_read(qr_model_tokenizer_path(m), w.cfg.vocab_size, &tok) != QR_OK ||
        qr_fs_read_all(text_path, 1u << 30, &text, &len) != QR_OK ||
        qr_tokenizer_encode(tok, text, len, &eo, &ids, &nt) != QR_OK) {
        fprintf(stderr, "%s: %s\n", label, qr_errmsg());
        goto done;
    }
    n = w.cfg.max_seq_len;
    window = malloc((size_t)n * sizeof *window);
    if (!window || (int64_t)nt < n) {
        fprintf(stderr, "%s: text too short\n", label);
        goto done;
    }
    window[0] = QR_TOKEN_BOS;
    memcpy(window + 1, ids, (size_t)(n - 1) * sizeof *ids);
    rc = measure(label, &w, window, n, reps);
done:
    free(window);
    free(ids);
    free(text);
    qr_tokenizer_free(&tok);
    qr_llama_weights_free(&w);
    qr_model_close(&m);
    return rc;
}

/* A Llama shape where the linear layers dominate (d = 1024, 4 layers), seeded random weights. */
static int synthetic(int reps)
{
    qr_model_config c;
    qr_llama_weights w;
    qr_rng rng;
    int32_t window[512];
    int rc;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "llama");
    c.dim = 1024;
    c.hidden_dim = 2816;
    c.n_layers = 4;
    c.n_heads = 16;
    c.n_kv_heads = 8;
    c.head_dim = 64;
    c.vocab_size = 4096;
    c.max_seq_len = 512;
    c.rms_eps = 1e-5;
    c.rope_theta = 10000.0;
    c.tied_embeddings = true;
    c.rope_style = QR_ROPE_HALF_SPLIT;
    if (qr_llama_weights_alloc(&c, &w) != QR_OK) {
        fprintf(stderr, "synthetic: %s\n", qr_errmsg());
        return 1;
    }
    qr_rng_seed(&rng, 7);
    for (int64_t i = 0; i < w.arena_floats; i++) {
        w.arena[i] = (float)(0.05 * qr_rng_normal(&rng));
    }
    for (int64_t l = 0; l < c.n_layers; l++) {
        for (int64_t j = 0; j < c.dim; j++) {
            w.layers[l].attn_norm[j] = 1.0f;
            w.layers[l].ffn_norm[j] = 1.0f;
        }
    }
    for (int i = 0; i < 512; i++) {
        window[i] = (int32_t)(qr_rng_u64(&rng) % (uint64_t)c.vocab_size);
    }
    rc = measure("synthetic d=1024 L=4 (16 heads, 8 kv)", &w, window, 512, reps);
    qr_llama_weights_free(&w);
    return rc;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    const char *data = getenv("QRECON_TEST_DATA");
    const char *core = getenv("OPENBLAS_CORETYPE");
    int rc = 0;
    if (reps < 1) {
        reps = 1;
    }
    if (!data) {
        data = "/work/shared/data";
    }
    printf("forward pass, float32, one thread expected (OPENBLAS_NUM_THREADS=%s, "
           "OPENBLAS_CORETYPE=%s), median of %d\n\n",
           getenv("OPENBLAS_NUM_THREADS") ? getenv("OPENBLAS_NUM_THREADS") : "unset",
           core ? core : "default", reps);
    printf("| model | window | batched tokens/s | token-by-token tokens/s | speed-up | batched "
           "tokens/CPU-s | token-by-token tokens/CPU-s | CPU speed-up |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    rc |= real_model(data, "models/stories260K/llama2c", "stories260K", false, reps);
    rc |= real_model(data, "models/babyllama105/llama2c", "babyllama105", true, reps);
    rc |= synthetic(reps);
    return rc;
}

/* forward_test.c: the float32 Llama forward pass, the tokenizer and token files, on the real models
 * of ../shared/data. One program; argv[1] selects the case (see tests/forward.cmake). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "io/llama_load.h"
#include "io/model.h"
#include "io/tokenizer_bin.h"
#include "io/tokens.h"
#include "src/llama.h"
#include "src/tokenizer.h"
#include "tests/test_util.h"

/* The same weights in two layouts give logits that differ only by float32 rounding in a different
 * summation order (q/k rows permuted): measured 2.3e-5 on logits of magnitude ~10; the issue's
 * bound is 1e-4. */
#define LOGIT_TOL_LAYOUT 1e-4
/* Token-by-token decoding (sgemv, one query at a time) against the batched window (sgemm): the same
 * sums in another order, float32 rounding only. */
#define LOGIT_TOL_KV_CACHE 1e-4
/* BF16 weights against the F32 originals: bf16 keeps 8 bits of mantissa, so per-token NLL moves by
 * up to a few percent; the mean over a window must stay within 0.05 nats. */
#define NLL_TOL_BF16 0.05

static const char *data_dir;
static char path_buf[4][4096];

static const char *data_path(int slot, const char *rel)
{
    snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", data_dir, rel);
    return path_buf[slot];
}

static const char *EXPECTED_STORY =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";

/* Open a model and load its weights; returns 0 on success. */
static int load(const char *rel, qr_model **m, qr_llama_weights *w)
{
    if (qr_model_open(data_path(0, rel), m) != QR_OK || qr_llama_load(*m, w) != QR_OK) {
        fprintf(stderr, "cannot load %s: %s\n", rel, qr_errmsg());
        return 1;
    }
    return 0;
}

static int read_text(char **text, size_t *len)
{
    if (qr_fs_read_all(data_path(1, "text/tinystories_val_a.txt"), 1u << 30, text, len) != QR_OK) {
        fprintf(stderr, "cannot read the validation text: %s\n", qr_errmsg());
        return 1;
    }
    return 0;
}

/* BOS + the first n-1 tokens of the validation text under tok512. */
static int first_window(int32_t *window, int64_t n)
{
    qr_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0, nt = 0;
    int32_t *ids = NULL;
    qr_encode_opts eo = {true, false, "val text"};
    int rc = 1;
    if (read_text(&text, &len) ||
        qr_tokenizer_bin_read(data_path(2, "models/stories260K/llama2c/tok512.bin"), 512, &tok) !=
            QR_OK ||
        qr_tokenizer_encode(tok, text, len, &eo, &ids, &nt) != QR_OK || (int64_t)nt < n - 1) {
        fprintf(stderr, "cannot build a window: %s\n", qr_errmsg());
        goto done;
    }
    window[0] = QR_TOKEN_BOS;
    memcpy(window + 1, ids, (size_t)(n - 1) * sizeof *ids);
    rc = 0;
done:
    free(ids);
    free(text);
    qr_tokenizer_free(&tok);
    return rc;
}

static int test_generate(const char *rel)
{
    qr_model *m = NULL;
    qr_llama_weights w;
    qr_llama_state *s = NULL;
    qr_tokenizer *tok = NULL;
    int32_t seq[64];
    float logits[512];
    char *text = NULL;
    size_t len = 0;
    int64_t n = 1;
    memset(&w, 0, sizeof w);
    QR_REQUIRE(load(rel, &m, &w) == 0, "model %s must load", rel);
    QR_REQUIRE(w.cfg.vocab_size == 512, "stories260K has 512 tokens, found %lld",
               (long long)w.cfg.vocab_size);
    QR_REQUIRE(qr_model_tokenizer_path(m) != NULL, "%s must carry its tokenizer", rel);
    QR_REQUIRE(qr_tokenizer_bin_read(qr_model_tokenizer_path(m), 512, &tok) == QR_OK, "%s",
               qr_errmsg());
    QR_REQUIRE(qr_llama_state_open(&w.cfg, 1, 64, &s) == QR_OK, "%s", qr_errmsg());
    seq[0] = QR_TOKEN_BOS;
    while (n < 64) {
        QR_REQUIRE(qr_llama_forward(&w, s, &seq[n - 1], 1, n - 1, logits, NULL, NULL) == QR_OK,
                   "%s", qr_errmsg());
        seq[n++] = qr_logits_argmax(logits, 512);
    }
    QR_REQUIRE(qr_tokenizer_decode(tok, seq + 1, (size_t)n - 1, QR_TOKEN_BOS, &text, &len) == QR_OK,
               "%s", qr_errmsg());
    QR_EXPECT(strncmp(text, EXPECTED_STORY, strlen(EXPECTED_STORY)) == 0,
              "greedy text from BOS with %s:\n  expected to start: %s\n  found:             %s",
              rel, EXPECTED_STORY, text);
    free(text);
    qr_tokenizer_free(&tok);
    qr_llama_state_close(&s);
    qr_llama_weights_free(&w);
    qr_model_close(&m);
    return qr_test_finish("forward.generate");
}

/* Run a whole window; logits (n, vocab). */
static int run_window(const qr_llama_weights *w, const int32_t *tokens, int64_t n, float *logits)
{
    qr_llama_state *s = NULL;
    qr_status st = qr_llama_state_open(&w->cfg, n, n, &s);
    if (st == QR_OK) {
        st = qr_llama_forward(w, s, tokens, n, 0, logits, NULL, NULL);
    }
    qr_llama_state_close(&s);
    if (st != QR_OK) {
        fprintf(stderr, "forward pass failed: %s\n", qr_errmsg());
    }
    return st != QR_OK;
}

static int test_hf_vs_llama2c(void)
{
    enum { N = 512, V = 512 };
    qr_model *ma = NULL, *mb = NULL;
    qr_llama_weights wa, wb;
    int32_t *window = malloc(N * sizeof *window);
    float *la = malloc((size_t)N * V * sizeof *la), *lb = malloc((size_t)N * V * sizeof *lb);
    double worst = 0.0;
    int64_t where = 0;
    memset(&wa, 0, sizeof wa);
    memset(&wb, 0, sizeof wb);
    QR_REQUIRE(window && la && lb, "out of memory");
    QR_REQUIRE(load("models/stories260K/llama2c", &ma, &wa) == 0, "llama2c folder must load");
    QR_REQUIRE(load("models/stories260K/hf", &mb, &wb) == 0, "hf folder must load");
    QR_EXPECT(wa.cfg.rope_style == QR_ROPE_INTERLEAVED && wb.cfg.rope_style == QR_ROPE_HALF_SPLIT,
              "expected interleaved RoPE for llama2.c and half-split for HF, found %d and %d",
              (int)wa.cfg.rope_style, (int)wb.cfg.rope_style);
    QR_REQUIRE(first_window(window, N) == 0, "the text window must build");
    QR_REQUIRE(run_window(&wa, window, N, la) == 0 && run_window(&wb, window, N, lb) == 0,
               "both forward passes must run");
    for (int64_t i = 0; i < (int64_t)N * V; i++) {
        double d = fabs((double)la[i] - lb[i]);
        if (d > worst || isnan(d)) {
            worst = isnan(d) ? INFINITY : d;
            where = i;
        }
    }
    printf("max |logit difference| HF vs llama2.c over %d positions: %.3g\n", N, worst);
    QR_EXPECT(
        worst <= LOGIT_TOL_LAYOUT,
        "logits differ at position %lld token %lld (expected at most %g, found %.3g: %g vs %g)",
        (long long)(where / V), (long long)(where % V), LOGIT_TOL_LAYOUT, worst, (double)la[where],
        (double)lb[where]);
    free(window);
    free(la);
    free(lb);
    qr_llama_weights_free(&wa);
    qr_llama_weights_free(&wb);
    qr_model_close(&ma);
    qr_model_close(&mb);
    return qr_test_finish("forward.hf_vs_llama2c");
}

/* The batched window and the token-by-token loop through the KV cache give the same logits; a
 * block split in two (pos0 > 0 with n > 1) does too. */
static int test_kv_cache(void)
{
    enum { N = 200, V = 512 };
    qr_model *m = NULL;
    qr_llama_weights w;
    qr_llama_state *s = NULL;
    int32_t window[N];
    float *batch = malloc((size_t)N * V * sizeof *batch);
    float *step = malloc((size_t)N * V * sizeof *step);
    double worst_step = 0.0, worst_split = 0.0;
    memset(&w, 0, sizeof w);
    QR_REQUIRE(batch && step, "out of memory");
    QR_REQUIRE(load("models/stories260K/hf", &m, &w) == 0, "model must load");
    QR_REQUIRE(first_window(window, N) == 0, "the text window must build");
    QR_REQUIRE(run_window(&w, window, N, batch) == 0, "batched pass must run");
    QR_REQUIRE(qr_llama_state_open(&w.cfg, N, N, &s) == QR_OK, "%s", qr_errmsg());
    for (int64_t i = 0; i < N; i++) {
        QR_REQUIRE(qr_llama_forward(&w, s, &window[i], 1, i, step + i * V, NULL, NULL) == QR_OK,
                   "%s", qr_errmsg());
    }
    for (int64_t i = 0; i < (int64_t)N * V; i++) {
        double d = fabs((double)batch[i] - step[i]);
        worst_step = d > worst_step || isnan(d) ? (isnan(d) ? INFINITY : d) : worst_step;
    }
    /* Blocks of 77 and 123 tokens continuing through the cache. */
    QR_REQUIRE(qr_llama_forward(&w, s, window, 77, 0, step, NULL, NULL) == QR_OK, "%s",
               qr_errmsg());
    QR_REQUIRE(qr_llama_forward(&w, s, window + 77, N - 77, 77, step + 77 * V, NULL, NULL) == QR_OK,
               "%s", qr_errmsg());
    for (int64_t i = 0; i < (int64_t)N * V; i++) {
        double d = fabs((double)batch[i] - step[i]);
        worst_split = d > worst_split || isnan(d) ? (isnan(d) ? INFINITY : d) : worst_split;
    }
    printf("max |logit difference|: token-by-token %.3g, split blocks %.3g\n", worst_step,
           worst_split);
    QR_EXPECT(worst_step <= LOGIT_TOL_KV_CACHE,
              "token-by-token logits differ from the batched window (expected at most %g, found "
              "%.3g)",
              LOGIT_TOL_KV_CACHE, worst_step);
    QR_EXPECT(worst_split <= LOGIT_TOL_KV_CACHE,
              "split-block logits differ from the batched window (expected at most %g, found %.3g)",
              LOGIT_TOL_KV_CACHE, worst_split);
    /* A block past the cache and an id outside the vocabulary are input errors. */
    QR_EXPECT(qr_llama_forward(&w, s, window, 2, N - 1, step, NULL, NULL) == QR_ERR_INPUT,
              "a block past the cache must be refused");
    window[3] = 512;
    QR_EXPECT(qr_llama_forward(&w, s, window, 4, 0, step, NULL, NULL) == QR_ERR_INPUT &&
                  strstr(qr_errmsg(), "outside the vocabulary") != NULL,
              "token id 512 must be refused with a clear message, found: %s", qr_errmsg());
    free(batch);
    free(step);
    qr_llama_state_close(&s);
    qr_llama_weights_free(&w);
    qr_model_close(&m);
    return qr_test_finish("forward.kv_cache");
}

/* The untied classifier path: the same weights with lm_head = a copy of the embedding give the same
 * logits bit for bit, and scaling that copy scales the logits (so the copy is what is used). */
static int test_untied(void)
{
    enum { N = 64, V = 512 };
    qr_model *m = NULL;
    qr_llama_weights w, u;
    qr_model_config cfg;
    int32_t window[N];
    float *a = malloc((size_t)N * V * sizeof *a), *b = malloc((size_t)N * V * sizeof *b);
    double worst = 0.0;
    memset(&w, 0, sizeof w);
    memset(&u, 0, sizeof u);
    QR_REQUIRE(a && b, "out of memory");
    QR_REQUIRE(load("models/stories260K/hf", &m, &w) == 0, "model must load");
    QR_REQUIRE(w.cfg.tied_embeddings, "stories260K is tied");
    cfg = w.cfg;
    cfg.tied_embeddings = false;
    QR_REQUIRE(qr_llama_weights_alloc(&cfg, &u) == QR_OK, "%s", qr_errmsg());
    QR_REQUIRE(u.arena_floats == w.arena_floats + V * cfg.dim,
               "an untied model holds one more (vocab, dim) matrix (expected %lld floats, found "
               "%lld)",
               (long long)(w.arena_floats + V * cfg.dim), (long long)u.arena_floats);
    QR_REQUIRE(u.classifier.W != u.embedding, "untied classifier must have its own storage");
    /* Same arena layout up to the classifier, which comes last. */
    memcpy(u.arena, w.arena, (size_t)w.arena_floats * sizeof *w.arena);
    memcpy((float *)u.classifier.W, w.embedding, (size_t)V * (size_t)cfg.dim * sizeof(float));
    QR_REQUIRE(first_window(window, N) == 0, "the text window must build");
    QR_REQUIRE(run_window(&w, window, N, a) == 0 && run_window(&u, window, N, b) == 0,
               "both passes must run");
    QR_EXPECT(memcmp(a, b, (size_t)N * V * sizeof *a) == 0,
              "untied logits with lm_head = embedding differ from the tied ones");
    for (int64_t i = 0; i < (int64_t)V * cfg.dim; i++) {
        ((float *)u.classifier.W)[i] *= 2.0f;
    }
    QR_REQUIRE(run_window(&u, window, N, b) == 0, "the pass must run");
    for (int64_t i = 0; i < (int64_t)N * V; i++) {
        double d = fabs(2.0 * a[i] - b[i]);
        worst = d > worst ? d : worst;
    }
    QR_EXPECT(worst == 0.0, "doubling lm_head must double the logits (found a difference %.3g)",
              worst);
    free(a);
    free(b);
    qr_llama_weights_free(&u);
    qr_llama_weights_free(&w);
    qr_model_close(&m);
    return qr_test_finish("forward.untied");
}

/* babyllama105 in BF16 against its F32 llama2.c original: mean NLL over a window agrees. */
static int test_bf16(void)
{
    enum { N = 256, V = 105 };
    qr_model *ma = NULL, *mb = NULL;
    qr_llama_weights wa, wb;
    qr_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0, nt = 0;
    int32_t *ids = NULL, window[N];
    float *la = malloc((size_t)N * V * sizeof *la), *lb = malloc((size_t)N * V * sizeof *lb);
    double na = 0.0, nb = 0.0;
    qr_encode_opts eo = {true, true, "val text"};
    memset(&wa, 0, sizeof wa);
    memset(&wb, 0, sizeof wb);
    QR_REQUIRE(la && lb, "out of memory");
    QR_REQUIRE(load("models/babyllama105/llama2c", &ma, &wa) == 0, "llama2c model must load");
    QR_REQUIRE(load("models/babyllama105/hf-bf16-2shards", &mb, &wb) == 0, "bf16 model must load");
    QR_REQUIRE(read_text(&text, &len) == 0, "text must read");
    QR_REQUIRE(qr_tokenizer_bin_read(qr_model_tokenizer_path(ma), V, &tok) == QR_OK, "%s",
               qr_errmsg());
    QR_REQUIRE(qr_tokenizer_encode(tok, text, len, &eo, &ids, &nt) == QR_OK && nt >= N, "%s",
               qr_errmsg());
    window[0] = QR_TOKEN_BOS;
    memcpy(window + 1, ids, (N - 1) * sizeof *ids);
    QR_REQUIRE(run_window(&wa, window, N, la) == 0 && run_window(&wb, window, N, lb) == 0,
               "both forward passes must run");
    for (int64_t i = 0; i + 1 < N; i++) {
        na += qr_logits_nll(la + i * V, V, window[i + 1]);
        nb += qr_logits_nll(lb + i * V, V, window[i + 1]);
    }
    na /= N - 1;
    nb /= N - 1;
    printf("babyllama105 mean NLL over one window: f32 %.4f, bf16 %.4f\n", na, nb);
    QR_EXPECT(fabs(na - nb) <= NLL_TOL_BF16 && na < 3.0,
              "bf16 and f32 NLL disagree (expected within %g and below 3 nats, found %.4f vs %.4f)",
              NLL_TOL_BF16, na, nb);
    free(ids);
    free(text);
    free(la);
    free(lb);
    qr_tokenizer_free(&tok);
    qr_llama_weights_free(&wa);
    qr_llama_weights_free(&wb);
    qr_model_close(&ma);
    qr_model_close(&mb);
    return qr_test_finish("forward.bf16");
}

static int test_roundtrip(void)
{
    qr_tokenizer *tok = NULL;
    char *text = NULL, *back = NULL;
    size_t len = 0, nt = 0, blen = 0;
    int32_t *ids = NULL;
    qr_encode_opts eo = {true, false, "val text"};
    QR_REQUIRE(read_text(&text, &len) == 0, "text must read");
    QR_REQUIRE(qr_tokenizer_bin_read(data_path(2, "models/stories260K/llama2c/tok512.bin"), 512,
                                     &tok) == QR_OK,
               "%s", qr_errmsg());
    QR_EXPECT(qr_tokenizer_has_byte_fallback(tok), "tok512 has byte fallback at ids 3..258");
    QR_REQUIRE(qr_tokenizer_encode(tok, text, len, &eo, &ids, &nt) == QR_OK, "%s", qr_errmsg());
    QR_REQUIRE(qr_tokenizer_decode(tok, ids, nt, QR_TOKEN_BOS, &back, &blen) == QR_OK, "%s",
               qr_errmsg());
    printf("tok512: %zu bytes -> %zu tokens (%.2f bytes/token)\n", len, nt, (double)len / nt);
    QR_EXPECT(ids[0] != 3 + ' ', "the text must not start with a byte-fallback space");
    {
        size_t first = 0, common = blen < len ? blen : len;
        while (first < common && back[first] == text[first]) {
            first++;
        }
        QR_EXPECT(blen == len && first == len,
                  "decode(encode(text)) != text (lengths %zu vs %zu; first difference at byte %zu)",
                  blen, len, first);
    }
    free(back);
    free(ids);
    free(text);
    qr_tokenizer_free(&tok);
    return qr_test_finish("forward.tokenizer_roundtrip");
}

/* ---- a plain reference BPE: llama2.c's quadratic merge loop over an independently read vocab ---
 */
typedef struct {
    char **piece;
    int *len;
    float *score;
    int n;
} ref_vocab;

static int ref_read(const char *path, int n, ref_vocab *v)
{
    FILE *f = fopen(path, "rb");
    int maxlen;
    if (!f || fread(&maxlen, 4, 1, f) != 1) {
        return 1;
    }
    v->n = n;
    v->piece = calloc((size_t)n, sizeof *v->piece);
    v->len = calloc((size_t)n, sizeof *v->len);
    v->score = calloc((size_t)n, sizeof *v->score);
    for (int i = 0; i < n; i++) {
        if (fread(&v->score[i], 4, 1, f) != 1 || fread(&v->len[i], 4, 1, f) != 1) {
            fclose(f);
            return 1;
        }
        v->piece[i] = calloc((size_t)v->len[i] + 1, 1);
        if (fread(v->piece[i], 1, (size_t)v->len[i], f) != (size_t)v->len[i]) {
            fclose(f);
            return 1;
        }
    }
    fclose(f);
    return 0;
}

static int ref_lookup(const ref_vocab *v, const char *s, int n)
{
    for (int i = 0; i < v->n; i++) {
        if (v->len[i] == n && memcmp(v->piece[i], s, (size_t)n) == 0) {
            return i;
        }
    }
    return -1;
}

static int ref_encode(const ref_vocab *v, const char *text, int len, int *out)
{
    int n = 0;
    char buf[64];
    out[n++] = ref_lookup(v, " ", 1);
    for (int i = 0; i < len;) {
        int cl = 1, id;
        while (i + cl < len && cl < 4 && ((unsigned char)text[i + cl] & 0xc0) == 0x80) {
            cl++;
        }
        id = ref_lookup(v, text + i, cl);
        if (id >= 0) {
            out[n++] = id;
        } else {
            for (int j = 0; j < cl; j++) {
                out[n++] = (unsigned char)text[i + j] + 3;
            }
        }
        i += cl;
    }
    for (;;) {
        float best = -1e10f;
        int best_id = -1, best_i = -1;
        for (int i = 0; i + 1 < n; i++) {
            int la = v->len[out[i]], lb = v->len[out[i + 1]], id;
            if (la + lb >= (int)sizeof buf) {
                continue;
            }
            memcpy(buf, v->piece[out[i]], (size_t)la);
            memcpy(buf + la, v->piece[out[i + 1]], (size_t)lb);
            id = ref_lookup(v, buf, la + lb);
            if (id >= 0 && v->score[id] > best) {
                best = v->score[id];
                best_id = id;
                best_i = i;
            }
        }
        if (best_i < 0) {
            break;
        }
        out[best_i] = best_id;
        memmove(out + best_i + 1, out + best_i + 2, (size_t)(n - best_i - 2) * sizeof *out);
        n--;
    }
    return n;
}

static int test_reference(void)
{
    enum { PREFIX = 2500 };
    const char *tpath = data_path(2, "models/stories260K/llama2c/tok512.bin");
    qr_tokenizer *tok = NULL;
    ref_vocab v = {0};
    char *text = NULL;
    size_t len = 0, nt = 0;
    int32_t *ids = NULL;
    int *ref = malloc((PREFIX + 2) * sizeof *ref), nref;
    qr_encode_opts eo = {true, false, "val text"};
    QR_REQUIRE(ref && read_text(&text, &len) == 0 && len > PREFIX, "text must read");
    QR_REQUIRE(ref_read(tpath, 512, &v) == 0, "reference reader must read %s", tpath);
    QR_REQUIRE(qr_tokenizer_bin_read(tpath, 512, &tok) == QR_OK, "%s", qr_errmsg());
    /* Prefixes of several lengths, cut at arbitrary bytes (also inside UTF-8 characters). */
    for (int cut = 1; cut <= PREFIX; cut = cut < 48 ? cut + 1 : cut * 2) {
        int mismatch = -1;
        nref = ref_encode(&v, text, cut, ref);
        QR_REQUIRE(qr_tokenizer_encode(tok, text, (size_t)cut, &eo, &ids, &nt) == QR_OK, "%s",
                   qr_errmsg());
        for (int i = 0; i < nref && i < (int)nt; i++) {
            if (ref[i] != ids[i]) {
                mismatch = i;
                break;
            }
        }
        QR_EXPECT((int)nt == nref && mismatch < 0,
                  "prefix of %d bytes: heap BPE gives %zu tokens, the reference %d; first "
                  "differing token %d",
                  cut, nt, nref, mismatch);
        free(ids);
        ids = NULL;
    }
    for (int i = 0; i < v.n; i++) {
        free(v.piece[i]);
    }
    free(v.piece);
    free(v.len);
    free(v.score);
    free(ref);
    free(text);
    qr_tokenizer_free(&tok);
    return qr_test_finish("forward.tokenizer_reference");
}

/* babyllama105 has no byte fallback: a newline is an error by default and id 0 on request. */
static int test_unknown(void)
{
    qr_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    const char *text = "Hi.\nBob";
    qr_encode_opts strict = {true, false, "sample.txt"}, lenient = {true, true, "sample.txt"};
    QR_REQUIRE(qr_tokenizer_bin_read(data_path(2, "models/babyllama105/llama2c/tokenizer.bin"), 105,
                                     &tok) == QR_OK,
               "%s", qr_errmsg());
    QR_EXPECT(!qr_tokenizer_has_byte_fallback(tok), "babyllama105 has no byte fallback");
    QR_EXPECT(qr_tokenizer_encode(tok, text, strlen(text), &strict, &ids, &n) == QR_ERR_INPUT,
              "an unencodable newline must be an input error");
    QR_EXPECT(strstr(qr_errmsg(), "sample.txt") && strstr(qr_errmsg(), "0x0A") &&
                  strstr(qr_errmsg(), "offset 3"),
              "the message must name the source, the byte and its offset, found: %s", qr_errmsg());
    free(ids);
    ids = NULL;
    QR_REQUIRE(qr_tokenizer_encode(tok, text, strlen(text), &lenient, &ids, &n) == QR_OK, "%s",
               qr_errmsg());
    /* " " H i . <unk> B o b: character level, no merges. */
    QR_EXPECT(n == 8 && ids[4] == QR_TOKEN_UNK && ids[0] == 3,
              "expected 8 ids with <unk> at 4 and the dummy prefix first, found %zu ids", n);
    free(ids);
    qr_tokenizer_free(&tok);
    return qr_test_finish("forward.tokenizer_unknown");
}

/* Malformed tokenizer.bin files are refused with the piece and the expected vs found value. */
static int test_bad_tokenizer(void)
{
    const char *dir = qr_test_tmpdir("forward-badtok");
    char path[4096];
    qr_tokenizer *tok = NULL;
    struct {
        const char *name;
        unsigned char bytes[32];
        size_t size;
        int64_t vocab;
        const char *expect;
    } cases[] = {
        {"short", {1, 0}, 2, 1, "too short"},
        {"maxlen", {0, 0, 0, 0}, 4, 1, "max_token_length"},
        {"trunc", {4, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 'a'}, 13, 1, "bad length"},
        {"neglen", {4, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, 12, 1, "bad length"},
        {"toolong", {1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 'a', 'b'}, 14, 1, "bad length"},
        {"fewer", {1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 'a'}, 13, 2, "ends inside"},
        {"more", {1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 'a', 9}, 14, 1, "after the last piece"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f;
        qr_status st;
        snprintf(path, sizeof path, "%s/%s.bin", dir, cases[i].name);
        f = fopen(path, "wb");
        QR_REQUIRE(f && fwrite(cases[i].bytes, 1, cases[i].size, f) == cases[i].size, "write %s",
                   path);
        fclose(f);
        st = qr_tokenizer_bin_read(path, cases[i].vocab, &tok);
        QR_EXPECT(st == QR_ERR_INPUT && strstr(qr_errmsg(), cases[i].expect) &&
                      strstr(qr_errmsg(), path),
                  "%s: expected an input error mentioning '%s' and the file, found status %d: %s",
                  cases[i].name, cases[i].expect, (int)st, qr_errmsg());
        qr_tokenizer_free(&tok);
    }
    return qr_test_finish("forward.tokenizer_bad");
}

static int test_token_files(void)
{
    const char *dir = qr_test_tmpdir("forward-tokens");
    char raw[4096], txt[4096];
    int32_t ids[5] = {1, 0, 511, 42, 7}, *back = NULL;
    size_t n = 0;
    FILE *f;
    snprintf(raw, sizeof raw, "%s/ids.u32", dir);
    snprintf(txt, sizeof txt, "%s/ids.txt", dir);
    QR_REQUIRE(qr_tokens_write_u32(raw, ids, 5) == QR_OK, "%s", qr_errmsg());
    QR_REQUIRE(qr_tokens_read(raw, 512, &back, &n) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(n == 5 && memcmp(back, ids, sizeof ids) == 0, "raw ids must read back (found %zu)",
              n);
    free(back);
    back = NULL;
    QR_EXPECT(qr_tokens_read(raw, 511, &back, &n) == QR_ERR_INPUT && strstr(qr_errmsg(), "token 2"),
              "id 511 with a 511-token vocabulary must be refused naming token 2, found: %s",
              qr_errmsg());
    f = fopen(txt, "w");
    QR_REQUIRE(f != NULL, "create %s", txt);
    fputs("1 0\n511\t42  7\n", f);
    fclose(f);
    QR_REQUIRE(qr_tokens_read(txt, 512, &back, &n) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(n == 5 && memcmp(back, ids, sizeof ids) == 0, "text ids must read back (found %zu)",
              n);
    free(back);
    back = NULL;
    f = fopen(txt, "w");
    fputs("1 2 x3\n", f);
    fclose(f);
    QR_EXPECT(qr_tokens_read(txt, 512, &back, &n) == QR_ERR_INPUT &&
                  strstr(qr_errmsg(), "offset 4"),
              "a non-digit must be refused naming its offset, found: %s", qr_errmsg());
    f = fopen(raw, "wb");
    fputs("abcdef", f);
    fclose(f);
    QR_EXPECT(qr_tokens_read(raw, 512, &back, &n) == QR_ERR_INPUT &&
                  strstr(qr_errmsg(), "multiple of 4"),
              "a 6-byte raw file must be refused, found: %s", qr_errmsg());
    return qr_test_finish("forward.token_files");
}

/* Hook for test_slices: copies every layer input, in pass order, into a growing buffer. */
typedef struct {
    float *buf;
    size_t used, cap;
} input_log;

static void log_input(void *vctx, int64_t layer, qr_input_kind kind, const float *X, int64_t n,
                      int64_t d)
{
    input_log *lg = vctx;
    size_t k = (size_t)(n * d);
    (void)layer;
    (void)kind;
    if (lg->used + k > lg->cap) {
        size_t cap = (lg->used + k) * 2;
        float *nb = realloc(lg->buf, cap * sizeof *nb);
        if (!nb) {
            return; /* the comparison below then fails on the length */
        }
        lg->buf = nb;
        lg->cap = cap;
    }
    memcpy(lg->buf + lg->used, X, k * sizeof *X);
    lg->used += k;
}

/* The whole model against the same model cut into slices (each loaded alone, embedding only in
 * the first, no head anywhere) chained by qr_llama_embed + qr_llama_forward_layers: every layer
 * input and the final hidden state must be the same bits, for every cut into 1..n_layers slices
 * of consecutive layers (two cuts per slice count: even, and one layer first). */
static int test_slices(const char *rel)
{
    qr_model *m = NULL;
    qr_llama_weights whole;
    int32_t window[96];
    int64_t n = 96, dim, L;
    float *x_whole = NULL, *x = NULL;
    input_log a = {0}, b = {0};
    qr_llama_state *s = NULL;
    int rc = 1;
    QR_REQUIRE(first_window(window, n) == 0, "window");
    QR_REQUIRE(load(rel, &m, &whole) == 0, "load");
    dim = whole.cfg.dim;
    L = whole.cfg.n_layers;
    for (int64_t i = 0; i < n; i++) { /* tok512's ids folded into a smaller vocabulary */
        window[i] = (int32_t)(window[i] % whole.cfg.vocab_size);
    }
    x_whole = calloc((size_t)(n * dim), sizeof *x_whole);
    x = calloc((size_t)(n * dim), sizeof *x);
    QR_REQUIRE(x_whole && x, "alloc");
    QR_REQUIRE(qr_llama_state_open(&whole.cfg, n, n, &s) == QR_OK, "%s", qr_errmsg());
    QR_REQUIRE(qr_llama_embed(&whole, window, n, 0, x_whole) == QR_OK, "%s", qr_errmsg());
    QR_REQUIRE(qr_llama_forward_layers(&whole, s, x_whole, n, 0, 0, L, log_input, &a) == QR_OK,
               "%s", qr_errmsg());
    qr_llama_state_close(&s);
    {
        /* qr_llama_forward gives the same layer inputs as the pieces */
        input_log c = {0};
        QR_REQUIRE(qr_llama_state_open(&whole.cfg, n, n, &s) == QR_OK, "%s", qr_errmsg());
        QR_REQUIRE(qr_llama_forward(&whole, s, window, n, 0, NULL, log_input, &c) == QR_OK, "%s",
                   qr_errmsg());
        QR_REQUIRE(c.used == a.used && memcmp(c.buf, a.buf, a.used * sizeof *a.buf) == 0,
                   "%s: qr_llama_forward and embed + forward_layers differ", rel);
        free(c.buf);
        qr_llama_state_close(&s);
    }
    for (int64_t k = 1; k <= L; k++) {
        for (int shape = 0; shape < 2; shape++) {
            b.used = 0;
            for (int64_t g = 0; g < k; g++) {
                /* shape 0: even cut; shape 1: the first slice one layer, the rest even */
                int64_t l0 =
                    shape == 0 ? g * L / k : (g == 0 ? 0 : 1 + (g - 1) * (L - 1) / (k - 1));
                int64_t l1 =
                    shape == 0 ? (g + 1) * L / k : (g == 0 ? 1 : 1 + g * (L - 1) / (k - 1));
                qr_llama_weights w;
                if (k == 1 && shape == 1) {
                    l1 = L;
                }
                QR_REQUIRE(qr_llama_load_slice(m, l0, l1, g == 0, false, &w) == QR_OK, "%s",
                           qr_errmsg());
                QR_REQUIRE(w.arena_floats < whole.arena_floats || k == 1,
                           "slice [%lld, %lld) holds as much as the model", (long long)l0,
                           (long long)l1);
                if (g == 0) {
                    QR_REQUIRE(qr_llama_embed(&w, window, n, 0, x) == QR_OK, "%s", qr_errmsg());
                } else {
                    QR_REQUIRE(qr_llama_embed(&w, window, n, 0, x) != QR_OK,
                               "a slice without the embedding embedded");
                }
                QR_REQUIRE(qr_llama_state_open_layers(&w.cfg, n, n, l0, l1, &s) == QR_OK, "%s",
                           qr_errmsg());
                QR_REQUIRE(qr_llama_forward_layers(&w, s, x, n, 0, l0, l1, log_input, &b) == QR_OK,
                           "%s", qr_errmsg());
                qr_llama_state_close(&s);
                qr_llama_weights_free(&w);
            }
            QR_REQUIRE(memcmp(x, x_whole, (size_t)(n * dim) * sizeof *x) == 0,
                       "%s: %lld slices (cut %d): final hidden states differ", rel, (long long)k,
                       shape);
            QR_REQUIRE(b.used == a.used && memcmp(b.buf, a.buf, a.used * sizeof *a.buf) == 0,
                       "%s: %lld slices (cut %d): layer inputs differ", rel, (long long)k, shape);
        }
    }
    printf("%s: %lld layers, every cut into slices gives the whole model's bits\n", rel,
           (long long)L);
    rc = 0;
    qr_llama_weights_free(&whole);
    qr_model_close(&m);
    free(a.buf);
    free(b.buf);
    free(x);
    free(x_whole);
    return rc;
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";
    if (!(data_dir = qr_test_data_dir())) {
        return 77;
    }
    if (strcmp(c, "generate_llama2c") == 0) {
        return test_generate("models/stories260K/llama2c");
    }
    if (strcmp(c, "generate_hf") == 0) {
        return test_generate("models/stories260K/hf");
    }
    if (strcmp(c, "hf_vs_llama2c") == 0) {
        return test_hf_vs_llama2c();
    }
    if (strcmp(c, "kv_cache") == 0) {
        return test_kv_cache();
    }
    if (strcmp(c, "untied") == 0) {
        return test_untied();
    }
    if (strcmp(c, "bf16") == 0) {
        return test_bf16();
    }
    if (strcmp(c, "tokenizer_roundtrip") == 0) {
        return test_roundtrip();
    }
    if (strcmp(c, "tokenizer_reference") == 0) {
        return test_reference();
    }
    if (strcmp(c, "tokenizer_unknown") == 0) {
        return test_unknown();
    }
    if (strcmp(c, "tokenizer_bad") == 0) {
        return test_bad_tokenizer();
    }
    if (strcmp(c, "slices_stories260K") == 0) {
        return test_slices("models/stories260K/llama2c");
    }
    if (strcmp(c, "slices_babyllama105") == 0) {
        return test_slices("models/babyllama105/llama2c");
    }
    if (strcmp(c, "token_files") == 0) {
        return test_token_files();
    }
    fprintf(stderr, "unknown case '%s'\n", c);
    return 1;
}

/* real.c (tests io_model.real_stories, io_model.real_babyllama): the llama2.c checkpoint and the
 * Hugging Face folder of one real model hold the same tensors.
 *
 * Hugging Face's Llama conversion permutes the rows of q_proj and k_proj so that RoPE can rotate
 * pairs (i, i + hd/2) instead of llama2.c's adjacent pairs (2i, 2i+1). Within each head h (rows
 * h*hd .. h*hd + hd - 1), for i < hd/2:
 *     HF row h*hd + i          = llama2.c row h*hd + 2i
 *     HF row h*hd + hd/2 + i   = llama2.c row h*hd + 2i + 1
 * (q uses n_heads heads, k uses n_kv_heads). This test checks that mapping and also that the two
 * plausible wrong ones (no permutation, and the inverse permutation) do not match, so it can tell.
 *
 * stories260K (F32 in both) must match exactly. babyllama105's HF folder is BF16: each value must
 * be the llama2.c float32 rounded to BF16 (round to nearest even, qr_f32_to_bf16). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/model.h"
#include "tests/test_util.h"

/* BF16 keeps 8 significant bits: |a - bf16(a)| <= 2^-8 |a| under round-to-nearest. Used only to
 * report how far an element is off when exact rounding does not match. */
#define BF16_REL_TOL (1.0 / 256.0)

/* Row of the llama2.c (interleaved) layout that HF row r comes from. */
static int64_t l2c_row_of_hf(int64_t r, int64_t hd)
{
    int64_t h = r / hd, j = r % hd, half = hd / 2;
    return h * hd + (j < half ? 2 * j : 2 * (j - half) + 1);
}

/* The inverse map, applied the wrong way round (to show the test tells the two apart). */
static int64_t hf_row_of_l2c(int64_t r, int64_t hd)
{
    int64_t h = r / hd, j = r % hd, half = hd / 2;
    return h * hd + (j % 2 == 0 ? j / 2 : half + j / 2);
}

/* Whether hf value b is a's stored form: equal for F32, a rounded to BF16 for BF16. */
static int same_value(float a, float b, qr_dtype hf_dtype)
{
    if (hf_dtype == QR_DTYPE_BF16) {
        return qr_bf16_to_f32(qr_f32_to_bf16(a)) == b;
    }
    return a == b;
}

/* Compare tensor `name`: HF rows against llama2.c rows mapped by `map` (NULL = identity). Returns
 * the number of mismatching elements; *worst gets the largest |a - b| / |a| among them. */
static size_t compare(const float *l2c, const float *hf, int64_t rows, int64_t cols,
                      qr_dtype hf_dtype, int64_t hd, int64_t (*map)(int64_t, int64_t),
                      double *worst)
{
    size_t bad = 0;
    *worst = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t src = map ? map(r, hd) : r;
        for (int64_t c = 0; c < cols; c++) {
            float a = l2c[src * cols + c], b = hf[r * cols + c];
            if (!same_value(a, b, hf_dtype)) {
                double rel = fabs((double)a - (double)b) / (fabs((double)a) + 1e-30);
                bad++;
                *worst = rel > *worst ? rel : *worst;
            }
        }
    }
    return bad;
}

static int run(const char *l2c_path, const char *hf_path, qr_dtype want_dtype)
{
    qr_model *a = NULL, *b = NULL;
    const qr_model_config *ca, *cb;
    float *x = NULL, *y = NULL;
    size_t checked = 0, permuted = 0;
    QR_REQUIRE(qr_model_open(l2c_path, &a) == QR_OK, "open %s: %s", l2c_path, qr_errmsg());
    QR_REQUIRE(qr_model_open(hf_path, &b) == QR_OK, "open %s: %s", hf_path, qr_errmsg());
    ca = qr_model_get_config(a);
    cb = qr_model_get_config(b);
    QR_EXPECT(ca->dim == cb->dim && ca->hidden_dim == cb->hidden_dim &&
                  ca->n_layers == cb->n_layers && ca->n_heads == cb->n_heads &&
                  ca->n_kv_heads == cb->n_kv_heads && ca->head_dim == cb->head_dim &&
                  ca->vocab_size == cb->vocab_size && ca->max_seq_len == cb->max_seq_len &&
                  ca->tied_embeddings == cb->tied_embeddings,
              "configs differ between %s and %s", l2c_path, hf_path);
    QR_EXPECT(ca->rope_style == QR_ROPE_INTERLEAVED && cb->rope_style == QR_ROPE_HALF_SPLIT,
              "rope styles: llama2.c interleaved, HF half-split");
    QR_EXPECT(qr_model_tensor_count(a) == qr_model_tensor_count(b),
              "tensor counts differ: %zu (llama2.c) vs %zu (HF)", qr_model_tensor_count(a),
              qr_model_tensor_count(b));
    QR_EXPECT(qr_model_tokenizer_path(a) && qr_model_tokenizer_path(b),
              "both folders ship a tokenizer");
    QR_EXPECT(strcmp(qr_model_identity(a), qr_model_identity(b)) != 0,
              "different files must have different identities");
    for (size_t i = 0; i < qr_model_tensor_count(a); i++) {
        const char *name = qr_model_tensor_name(a, i);
        qr_dtype da, db;
        int na = 0, nb = 0;
        int64_t sa[8], sb[8], rows, cols;
        int is_q = strstr(name, "q_proj.weight") != NULL;
        int is_k = strstr(name, "k_proj.weight") != NULL;
        double worst = 0.0;
        size_t bad, n;
        QR_EXPECT(strcmp(name, qr_model_tensor_name(b, i)) == 0, "tensor %zu: %s vs %s", i, name,
                  qr_model_tensor_name(b, i));
        QR_REQUIRE(qr_model_tensor_info(a, name, &da, &na, sa) == QR_OK, "%s", qr_errmsg());
        QR_REQUIRE(qr_model_tensor_info(b, name, &db, &nb, sb) == QR_OK, "%s", qr_errmsg());
        QR_EXPECT(da == QR_DTYPE_F32, "%s: llama2.c is F32", name);
        QR_EXPECT(db == want_dtype, "%s: expected HF dtype %s, found %s", name,
                  qr_dtype_name(want_dtype), qr_dtype_name(db));
        QR_EXPECT(na == nb && sa[0] == sb[0] && sa[1] == sb[1], "%s: shapes differ", name);
        rows = sa[0];
        cols = na == 2 ? sa[1] : 1;
        n = (size_t)rows * (size_t)cols;
        QR_REQUIRE((x = malloc(n * sizeof *x)) && (y = malloc(n * sizeof *y)), "out of memory");
        QR_REQUIRE(qr_model_read_f32(a, name, x, n) == QR_OK, "%s", qr_errmsg());
        QR_REQUIRE(qr_model_read_f32(b, name, y, n) == QR_OK, "%s", qr_errmsg());
        bad = compare(x, y, rows, cols, db, ca->head_dim, (is_q || is_k) ? l2c_row_of_hf : NULL,
                      &worst);
        QR_EXPECT(bad == 0,
                  "%s: %zu of %zu elements differ (worst relative error %.3g, BF16 "
                  "bound %.3g)",
                  name, bad, n, worst, BF16_REL_TOL);
        if (is_q || is_k) {
            double w2 = 0.0;
            size_t plain = compare(x, y, rows, cols, db, ca->head_dim, NULL, &w2);
            size_t inverse = compare(x, y, rows, cols, db, ca->head_dim, hf_row_of_l2c, &w2);
            QR_EXPECT(plain > 0 && inverse > 0,
                      "%s: the unpermuted (%zu mismatches) or inverse-permuted (%zu) rows also "
                      "match, so this check cannot tell the mapping",
                      name, plain, inverse);
            permuted++;
        }
        checked += n;
        free(x);
        free(y);
        x = y = NULL;
    }
    QR_EXPECT(permuted == (size_t)(2 * ca->n_layers), "expected %lld q/k tensors, found %zu",
              (long long)(2 * ca->n_layers), permuted);
    printf("%s vs %s: %zu tensors, %zu elements compared (%s)\n", l2c_path, hf_path,
           qr_model_tensor_count(a), checked,
           want_dtype == QR_DTYPE_BF16 ? "BF16 rounding of float32" : "exactly equal");
    qr_model_close(&a);
    qr_model_close(&b);
    return 0;
}

int main(int argc, char **argv)
{
    const char *data = qr_test_data_dir();
    char l2c[4200], hf[4200];
    int bf16;
    if (argc != 2 || (strcmp(argv[1], "stories") != 0 && strcmp(argv[1], "babyllama") != 0)) {
        fprintf(stderr, "usage: %s stories|babyllama\n", argv[0]);
        return 1;
    }
    if (!data) {
        return 77;
    }
    bf16 = strcmp(argv[1], "babyllama") == 0;
    snprintf(l2c, sizeof l2c, "%s/models/%s/llama2c", data, bf16 ? "babyllama105" : "stories260K");
    snprintf(hf, sizeof hf, "%s/models/%s", data,
             bf16 ? "babyllama105/hf-bf16-2shards" : "stories260K/hf");
    if (run(l2c, hf, bf16 ? QR_DTYPE_BF16 : QR_DTYPE_F32) != 0) {
        return 1;
    }
    return qr_test_finish(bf16 ? "io_model.real_babyllama" : "io_model.real_stories");
}

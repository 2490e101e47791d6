/* modules.c (test io_model.modules): module enumeration from a model shape: count, order, names,
 * shapes (with GQA and an explicit head_dim), shared calibration inputs, and bad shapes refused. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/modules.h"
#include "tests/test_util.h"

static qr_model_config stories_config(void)
{
    qr_model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "llama");
    c.dim = 64, c.hidden_dim = 172, c.n_layers = 5, c.n_heads = 8, c.n_kv_heads = 4;
    c.head_dim = 8, c.vocab_size = 512, c.max_seq_len = 512, c.rms_eps = 1e-5;
    c.rope_theta = 10000.0;
    return c;
}

static void check_stories(void)
{
    qr_model_config c = stories_config();
    qr_module *m = NULL;
    size_t n = 0;
    static const int64_t want_out[7] = {64, 32, 32, 64, 172, 172, 64};
    static const int64_t want_in[7] = {64, 64, 64, 64, 64, 64, 172};
    static const char *const want_input[7] = {"attn_in", "attn_in", "attn_in", "o_in",
                                              "mlp_in",  "mlp_in",  "down_in"};
    QR_EXPECT(qr_modules_enumerate(&c, &m, &n) == QR_OK, "enumerate failed: %s", qr_errmsg());
    QR_EXPECT(n == 35, "expected 35 modules for 5 layers, found %zu", n);
    for (size_t i = 0; m && i < n; i++) {
        int k = (int)(i % 7);
        char name[96], key[48];
        snprintf(name, sizeof name, "model.layers.%zu.%s.%s", i / 7, k < 4 ? "self_attn" : "mlp",
                 qr_module_kind_name((qr_module_kind)k));
        snprintf(key, sizeof key, "layers.%zu.%s", i / 7, want_input[k]);
        QR_EXPECT(strcmp(m[i].name, name) == 0, "module %zu: expected name %s, found %s", i, name,
                  m[i].name);
        QR_EXPECT(m[i].layer == (int64_t)(i / 7), "module %zu: expected layer %zu, found %lld", i,
                  i / 7, (long long)m[i].layer);
        QR_EXPECT(m[i].d_out == want_out[k] && m[i].d_in == want_in[k],
                  "%s: expected shape %lld x %lld, found %lld x %lld", m[i].name,
                  (long long)want_out[k], (long long)want_in[k], (long long)m[i].d_out,
                  (long long)m[i].d_in);
        QR_EXPECT(strcmp(m[i].input_key, key) == 0, "%s: expected input %s, found %s", m[i].name,
                  key, m[i].input_key);
    }
    /* q/k/v share one input key, gate/up another; o and down each have their own. */
    for (size_t l = 0; m && l < 5; l++) {
        qr_module *b = &m[l * 7];
        QR_EXPECT(strcmp(b[0].input_key, b[1].input_key) == 0 &&
                      strcmp(b[1].input_key, b[2].input_key) == 0 && b[0].input == b[2].input,
                  "layer %zu: q/k/v should share one input (%s, %s, %s)", l, b[0].input_key,
                  b[1].input_key, b[2].input_key);
        QR_EXPECT(strcmp(b[4].input_key, b[5].input_key) == 0 && b[4].input == b[5].input,
                  "layer %zu: gate/up should share one input (%s, %s)", l, b[4].input_key,
                  b[5].input_key);
        QR_EXPECT(strcmp(b[3].input_key, b[0].input_key) != 0 &&
                      strcmp(b[6].input_key, b[4].input_key) != 0 &&
                      strcmp(b[3].input_key, b[6].input_key) != 0,
                  "layer %zu: o and down must have inputs of their own", l);
    }
    free(m);
}

/* Mistral-Nemo-like: head_dim given and heads x head_dim != hidden_size, so q/o are not square. */
static void check_explicit_head_dim(void)
{
    qr_model_config c = stories_config();
    qr_module *m = NULL;
    size_t n = 0;
    c.dim = 5120, c.hidden_dim = 14336, c.n_layers = 2, c.n_heads = 32, c.n_kv_heads = 8;
    c.head_dim = 128;
    QR_EXPECT(qr_modules_enumerate(&c, &m, &n) == QR_OK, "enumerate failed: %s", qr_errmsg());
    QR_EXPECT(n == 14, "expected 14 modules for 2 layers, found %zu", n);
    if (m) {
        QR_EXPECT(m[0].d_out == 4096 && m[0].d_in == 5120,
                  "q: expected 4096 x 5120, found %lld x %lld", (long long)m[0].d_out,
                  (long long)m[0].d_in);
        QR_EXPECT(m[1].d_out == 1024, "k: expected d_out 1024, found %lld", (long long)m[1].d_out);
        QR_EXPECT(m[3].d_out == 5120 && m[3].d_in == 4096,
                  "o: expected 5120 x 4096, found %lld x %lld", (long long)m[3].d_out,
                  (long long)m[3].d_in);
    }
    free(m);
}

static void check_bad(void)
{
    qr_model_config c = stories_config();
    qr_module *m = NULL;
    size_t n = 0;
    c.n_layers = 0;
    QR_EXPECT(qr_modules_enumerate(&c, &m, &n) == QR_ERR_INPUT, "0 layers: expected QR_ERR_INPUT");
    QR_EXPECT(strstr(qr_errmsg(), "layers 0") != NULL, "message should give the layer count: %s",
              qr_errmsg());
    free(m);
    m = NULL;
    /* heads x head_dim overflows int64: refused, not wrapped. */
    c = stories_config();
    c.n_heads = INT64_MAX / 2, c.head_dim = 4;
    QR_EXPECT(qr_modules_enumerate(&c, &m, &n) == QR_ERR_INPUT,
              "overflowing heads x head_dim: expected QR_ERR_INPUT");
    free(m);
    m = NULL;
    c = stories_config();
    c.n_kv_heads = 0;
    QR_EXPECT(qr_modules_enumerate(&c, &m, &n) == QR_ERR_INPUT,
              "0 kv heads: expected QR_ERR_INPUT");
    free(m);
}

int main(void)
{
    check_stories();
    check_explicit_head_dim();
    check_bad();
    return qr_test_finish("io_model.modules");
}

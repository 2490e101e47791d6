/* ckpt_check.c: a checkpoint's structure against its header (io/ckpt_check.h). */
#include "io/ckpt_check.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/modules.h"

/* The model config JSON the quantizer recorded (jobs/quantize_run.c config_json). */
static qr_status parse_config(const qr_ckpt *c, const char *path, qr_model_config *cfg)
{
    json_error_t err;
    const char *text = qr_ckpt_model_config(c);
    json_t *o = text ? json_loads(text, 0, &err) : NULL;
    json_int_t v[8] = {0};
    int tied = 0, bias = 0;
    const char *arch = NULL;
    memset(cfg, 0, sizeof *cfg);
    if (!o || json_unpack(o, "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b}", "arch", &arch,
                          "dim", &v[0], "hidden_dim", &v[1], "n_layers", &v[2], "n_heads", &v[3],
                          "n_kv_heads", &v[4], "head_dim", &v[5], "vocab_size", &v[6],
                          "tied_embeddings", &tied, "attn_bias", &bias) != 0) {
        json_decref(o);
        return qr_fail(QR_ERR_INPUT,
                       "%s: root attribute model_config missing or malformed (expected the JSON "
                       "model config a qrecon quantize writes)",
                       path);
    }
    snprintf(cfg->arch, sizeof cfg->arch, "%s", arch);
    cfg->dim = v[0];
    cfg->hidden_dim = v[1];
    cfg->n_layers = v[2];
    cfg->n_heads = v[3];
    cfg->n_kv_heads = v[4];
    cfg->head_dim = v[5];
    cfg->vocab_size = v[6];
    cfg->max_seq_len = 2;
    cfg->rms_eps = 1e-5;
    cfg->rope_theta = 1e4;
    cfg->tied_embeddings = tied;
    cfg->attn_bias = bias;
    json_decref(o);
    return qr_config_validate(cfg, path);
}

static qr_status check_finite(const char *path, const char *name, const char *what, const float *x,
                              size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            return qr_fail(QR_ERR_INPUT, "%s: %s %s[%zu] is not finite (found %g)", path, name,
                           what, i, (double)x[i]);
        }
    }
    return QR_OK;
}

/* Present always; read in full (checksums, scales, zeros, perm, finite L and R) when `read`. */
static qr_status check_module(const qr_ckpt *c, const char *path, const qr_module *m, bool read)
{
    qr_status st = QR_OK;
    qr_qlayer ql;
    int64_t d_out, d_in;
    QR_TRY(qr_ckpt_module_shape(c, m->name, &d_out, &d_in));
    if (d_out != m->d_out || d_in != m->d_in) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: module '%s' has shape %lld x %lld (expected %lld x %lld from the "
                       "checkpoint's model config)",
                       path, m->name, (long long)d_out, (long long)d_in, (long long)m->d_out,
                       (long long)m->d_in);
    }
    if (!read) {
        return QR_OK;
    }
    QR_TRY(qr_ckpt_load_module(c, m->name, &ql, NULL)); /* checksums, scales, zeros, perm */
    if (ql.rank > 0) {
        QR_CHECK(check_finite(path, m->name, "L", ql.L, (size_t)ql.d_out * (size_t)ql.rank));
        QR_CHECK(check_finite(path, m->name, "R", ql.R, (size_t)ql.rank * (size_t)ql.d_in));
    }
done:
    qr_qlayer_free(&ql);
    return st;
}

static bool has_tensor(const qr_ckpt *c, const char *name)
{
    for (size_t i = 0; i < qr_ckpt_tensor_count(c); i++) {
        if (strcmp(qr_ckpt_tensor_name(c, i), name) == 0) {
            return true;
        }
    }
    return false;
}

/* Tensor `name` present (unless optional) with shape (rows) or (rows, cols); when `read`, read
 * (checksum) and finite. */
static qr_status check_tensor(const qr_ckpt *c, const char *path, const char *name, int64_t rows,
                              int64_t cols, bool optional, bool read)
{
    qr_status st = QR_OK;
    int ndim = 0, want = cols ? 2 : 1;
    int64_t shape[8] = {0};
    size_t n = 0;
    float *x = NULL;
    if (!has_tensor(c, name)) {
        return optional ? QR_OK
                        : qr_fail(QR_ERR_INPUT,
                                  "%s: tensor '%s' is missing (expected it from the checkpoint's "
                                  "model config)",
                                  path, name);
    }
    QR_TRY(qr_ckpt_tensor_shape(c, name, &ndim, shape));
    if (ndim != want || shape[0] != rows || (cols && shape[1] != cols)) {
        char want_text[64], found_text[64];
        snprintf(want_text, sizeof want_text, cols ? "(%lld, %lld)" : "(%lld)", (long long)rows,
                 (long long)cols);
        snprintf(found_text, sizeof found_text, ndim >= 2 ? "(%lld, %lld%s)" : "(%lld)",
                 (long long)shape[0], (long long)shape[1], ndim > 2 ? ", ..." : "");
        return qr_fail(QR_ERR_INPUT, "%s: tensor '%s' has the wrong shape (expected %s, found %s)",
                       path, name, want_text, found_text);
    }
    if (!read) {
        return QR_OK;
    }
    if (!qr_mul_size((size_t)rows, (size_t)(cols ? cols : 1), &n)) {
        return qr_fail(QR_ERR_INPUT, "%s: tensor '%s': size overflows", path, name);
    }
    QR_TRY(qr_malloc(&x, n, sizeof *x, name));
    QR_CHECK(qr_ckpt_read_tensor(c, name, x, n)); /* checksum */
    QR_CHECK(check_finite(path, name, "value", x, n));
done:
    free(x);
    return st;
}

qr_status qr_ckpt_check(const qr_ckpt *c, const char *path, int part, int n_parts)
{
    qr_status st = QR_OK;
    qr_model_config cfg;
    qr_module *mods = NULL;
    size_t n_mods = 0, k = 0;
    char name[QR_MODULE_NAME_MAX + 64];
    /* Every part checks what is present and its shape; the reads go round-robin. */
#define MINE() ((int)(k++ % (size_t)n_parts) == part)
    QR_TRY(parse_config(c, path, &cfg));
    QR_TRY(qr_modules_enumerate(&cfg, &mods, &n_mods));
    if (qr_ckpt_module_count(c) != n_mods) {
        st =
            qr_fail(QR_ERR_INPUT,
                    "%s: %zu quantized module(s) (expected %zu from the checkpoint's model config: "
                    "%lld layers x 7)",
                    path, qr_ckpt_module_count(c), n_mods, (long long)cfg.n_layers);
        goto done;
    }
    for (size_t i = 0; i < n_mods; i++) {
        QR_CHECK(check_module(c, path, &mods[i], MINE()));
        if (cfg.attn_bias && mods[i].input == QR_INPUT_ATTN) {
            snprintf(name, sizeof name, "%s.bias", mods[i].name);
            QR_CHECK(check_tensor(c, path, name, mods[i].d_out, 0, false, MINE()));
        }
    }
    QR_CHECK(
        check_tensor(c, path, "model.embed_tokens.weight", cfg.vocab_size, cfg.dim, false, MINE()));
    QR_CHECK(check_tensor(c, path, "model.norm.weight", cfg.dim, 0, false, MINE()));
    QR_CHECK(check_tensor(c, path, "lm_head.weight", cfg.vocab_size, cfg.dim, cfg.tied_embeddings,
                          MINE()));
    for (int64_t l = 0; l < cfg.n_layers; l++) {
        snprintf(name, sizeof name, "model.layers.%" PRId64 ".input_layernorm.weight", l);
        QR_CHECK(check_tensor(c, path, name, cfg.dim, 0, false, MINE()));
        snprintf(name, sizeof name, "model.layers.%" PRId64 ".post_attention_layernorm.weight", l);
        QR_CHECK(check_tensor(c, path, name, cfg.dim, 0, false, MINE()));
    }
#undef MINE
done:
    free(mods);
    return st;
}

/* synth.c: seeded synthetic Llama weights (see synth.h for the structure and why). */
#include "src/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"
#include "src/checked.h"
#include "src/modules.h"
#include "src/rng.h"

qr_status qr_synth_check_config(const qr_model_config *cfg)
{
    if (cfg->dim <= 0 || cfg->hidden_dim <= 0 || cfg->n_layers <= 0 || cfg->n_heads <= 0 ||
        cfg->n_kv_heads <= 0 || cfg->vocab_size <= 0 || cfg->max_seq_len <= 0) {
        return qr_fail(QR_ERR_INPUT,
                       "synth: sizes must be positive (dim %lld, hidden %lld, layers %lld, heads "
                       "%lld, kv heads %lld, vocab %lld, seq len %lld)",
                       (long long)cfg->dim, (long long)cfg->hidden_dim, (long long)cfg->n_layers,
                       (long long)cfg->n_heads, (long long)cfg->n_kv_heads,
                       (long long)cfg->vocab_size, (long long)cfg->max_seq_len);
    }
    if (cfg->dim % cfg->n_heads != 0) {
        return qr_fail(QR_ERR_INPUT,
                       "synth: --heads must divide --dim (expected a divisor of %lld, found %lld)",
                       (long long)cfg->dim, (long long)cfg->n_heads);
    }
    if (cfg->n_heads % cfg->n_kv_heads != 0) {
        return qr_fail(QR_ERR_INPUT,
                       "synth: --kv-heads must divide --heads (expected a divisor of %lld, found "
                       "%lld)",
                       (long long)cfg->n_heads, (long long)cfg->n_kv_heads);
    }
    if (cfg->head_dim != cfg->dim / cfg->n_heads || cfg->head_dim % 2 != 0) {
        return qr_fail(QR_ERR_INPUT,
                       "synth: head dimension dim / heads must be even for RoPE (found %lld / "
                       "%lld = %lld)",
                       (long long)cfg->dim, (long long)cfg->n_heads,
                       (long long)(cfg->dim / cfg->n_heads));
    }
    return QR_OK;
}

static void set_tensor(qr_synth_tensor *t, const char *name, qr_synth_kind kind, int ndim,
                       int64_t rows, int64_t cols, const char *outlier_set)
{
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->kind = kind;
    t->ndim = ndim;
    t->rows = rows;
    t->cols = cols;
    snprintf(t->outlier_set, sizeof t->outlier_set, "%s", outlier_set ? outlier_set : "");
}

qr_status qr_synth_plan(const qr_model_config *cfg, qr_synth_tensor **out, size_t *n)
{
    qr_status st = QR_OK;
    qr_module *mods = NULL;
    qr_synth_tensor *ts = NULL;
    size_t n_mods = 0, count, k = 0;
    char name[QR_SYNTH_NAME_MAX];
    QR_CHECK(qr_synth_check_config(cfg));
    QR_CHECK(qr_modules_enumerate(cfg, &mods, &n_mods));
    /* embed + per layer (2 norms + 7 linear + 3 biases) + final norm + lm_head */
    if (!qr_mul_size((size_t)cfg->n_layers, cfg->attn_bias ? 12 : 9, &count) ||
        !qr_add_size(count, 3, &count)) {
        st = qr_fail(QR_ERR_INPUT, "synth: too many layers (%lld)", (long long)cfg->n_layers);
        goto done;
    }
    QR_CHECK(qr_calloc(&ts, count, sizeof *ts, "synth tensor list"));
    set_tensor(&ts[k++], "model.embed_tokens.weight", QR_SYNTH_EMBED, 2, cfg->vocab_size, cfg->dim,
               NULL);
    for (int64_t l = 0; l < cfg->n_layers; l++) {
        for (int kind = 0; kind < QR_MOD_KIND_COUNT; kind++) {
            const qr_module *m = &mods[l * QR_MOD_KIND_COUNT + kind];
            int residual = kind != QR_MOD_O && kind != QR_MOD_DOWN;
            if (kind == QR_MOD_Q || kind == QR_MOD_GATE) {
                snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l,
                         kind == QR_MOD_Q ? "input_layernorm" : "post_attention_layernorm");
                set_tensor(&ts[k++], name, QR_SYNTH_NORM, 1, 1, cfg->dim, NULL);
            }
            snprintf(name, sizeof name, "%s.weight", m->name);
            set_tensor(&ts[k++], name, QR_SYNTH_LINEAR, 2, m->d_out, m->d_in,
                       residual ? "residual" : name);
            if (cfg->attn_bias && kind == QR_MOD_V) {
                for (int b = QR_MOD_Q; b <= QR_MOD_V; b++) {
                    const qr_module *mb = &mods[l * QR_MOD_KIND_COUNT + b];
                    snprintf(name, sizeof name, "%s.bias", mb->name);
                    set_tensor(&ts[k++], name, QR_SYNTH_BIAS, 1, 1, mb->d_out, NULL);
                }
            }
        }
    }
    set_tensor(&ts[k++], "model.norm.weight", QR_SYNTH_NORM, 1, 1, cfg->dim, NULL);
    if (!cfg->tied_embeddings) {
        set_tensor(&ts[k++], "lm_head.weight", QR_SYNTH_EMBED, 2, cfg->vocab_size, cfg->dim, NULL);
    }
    *out = ts;
    *n = k;
    ts = NULL;
done:
    free(mods);
    free(ts);
    return st;
}

qr_status qr_synth_gen_init(qr_synth_gen *g, const qr_synth_tensor *t, uint64_t seed)
{
    qr_status st = QR_OK;
    qr_rng rng;
    int64_t *idx = NULL; /* (cols) column permutation for drawing the outlier set */
    memset(g, 0, sizeof *g);
    g->t = *t;
    g->seed = seed;
    qr_rng_for_name(&rng, t->name, seed);
    g->row_key = qr_rng_u64(&rng) ^ ((uint64_t)t->rows * 0x9e3779b97f4a7c15ull) ^
                 ((uint64_t)t->cols * 0xbf58476d1ce4e5b9ull);
    if (t->kind != QR_SYNTH_LINEAR) {
        return QR_OK;
    }
    QR_CHECK(qr_malloc(&g->col_scale, (size_t)t->cols, sizeof *g->col_scale, t->name));
    QR_CHECK(qr_malloc(&idx, (size_t)t->cols, sizeof *idx, t->name));
    for (int64_t j = 0; j < t->cols; j++) {
        g->col_scale[j] = 1.0f;
        idx[j] = j;
    }
    {
        /* The set depends on its name and the width only, so modules sharing "residual" agree. */
        int64_t n_out = (int64_t)llround(QR_SYNTH_OUTLIER_FRAC * (double)t->cols);
        qr_rng_for_name(&rng, t->outlier_set, seed ^ (uint64_t)t->cols);
        if (n_out < 1) {
            n_out = 1;
        }
        for (int64_t i = 0; i < n_out && i < t->cols; i++) { /* partial Fisher-Yates */
            int64_t j = i + (int64_t)(qr_rng_uniform(&rng) * (double)(t->cols - i));
            int64_t tmp = idx[i];
            idx[i] = idx[j];
            idx[j] = tmp;
            g->col_scale[idx[i]] =
                (float)(QR_SYNTH_OUTLIER_MIN +
                        (QR_SYNTH_OUTLIER_MAX - QR_SYNTH_OUTLIER_MIN) * qr_rng_uniform(&rng));
        }
    }
done:
    free(idx);
    if (st != QR_OK) {
        qr_synth_gen_free(g);
    }
    return st;
}

void qr_synth_gen_free(qr_synth_gen *g)
{
    if (g) {
        qr_free(&g->col_scale);
    }
}

float qr_synth_col_scale(const qr_synth_gen *g, int64_t j)
{
    return g->col_scale ? g->col_scale[j] : 1.0f;
}

/* Two uniforms on (-1, 1) from one 64-bit draw, 24 bits each: float precision is all the weights
 * keep, and one draw per pair halves the generator cost. */
static void uniform_pair(qr_rng *rng, float *u, float *v)
{
    uint64_t b = qr_rng_u64(rng);
    *u = (float)(b >> 40) * 0x1.0p-23f - 1.0f;
    *v = (float)((b >> 16) & 0xffffffu) * 0x1.0p-23f - 1.0f;
}

/* Two independent standard normals by Marsaglia's polar method (no trigonometry). */
static void normal_pair(qr_rng *rng, float *a, float *b)
{
    float u, v, w, f;
    do {
        uniform_pair(rng, &u, &v);
        w = u * u + v * v;
    } while (w >= 1.0f || w == 0.0f);
    f = sqrtf(-2.0f * logf(w) / w);
    *a = u * f;
    *b = v * f;
}

/* Student-t with `dof` degrees of freedom by Bailey's polar method (one draw per accepted pair). */
static float student_t(qr_rng *rng, float dof)
{
    float u, v, w;
    do {
        uniform_pair(rng, &u, &v);
        w = u * u + v * v;
    } while (w >= 1.0f || w == 0.0f);
    return u * sqrtf(dof * (expf(-2.0f / dof * logf(w)) - 1.0f) / w);
}

/* Fill o[0..n) with mean + std * N(0, 1). */
static void fill_normal(qr_rng *rng, float *o, int64_t n, float mean, float std)
{
    for (int64_t j = 0; j < n; j += 2) {
        float a, b;
        normal_pair(rng, &a, &b);
        o[j] = mean + std * a;
        if (j + 1 < n) {
            o[j + 1] = mean + std * b;
        }
    }
}

void qr_synth_gen_rows(const qr_synth_gen *g, int64_t row0, int64_t nrows, float *out)
{
    const qr_synth_tensor *t = &g->t;
    /* Student-t variance is dof / (dof - 2): rescale to unit variance, then to 1/sqrt(d_in). */
    const double lin_scale =
        sqrt((QR_SYNTH_T_DOF - 2.0) / QR_SYNTH_T_DOF) / sqrt((double)(t->cols > 0 ? t->cols : 1));
    for (int64_t r = 0; r < nrows; r++) {
        int64_t row = row0 + r;
        float *o = out + r * t->cols; /* (cols) */
        qr_rng rng;
        qr_rng_seed(&rng, g->row_key + (uint64_t)(row + 1) * 0x9e3779b97f4a7c15ull);
        switch (t->kind) {
        case QR_SYNTH_EMBED:
            fill_normal(&rng, o, t->cols, 0.0f, (float)QR_SYNTH_EMBED_STD);
            break;
        case QR_SYNTH_NORM:
            fill_normal(&rng, o, t->cols, 1.0f, (float)QR_SYNTH_NORM_STD);
            break;
        case QR_SYNTH_BIAS:
            fill_normal(&rng, o, t->cols, 0.0f, (float)QR_SYNTH_BIAS_STD);
            break;
        case QR_SYNTH_LINEAR: {
            float z, unused;
            float rs;
            normal_pair(&rng, &z, &unused);
            rs = (float)(lin_scale * exp(QR_SYNTH_ROW_SIGMA * z));
            for (int64_t j = 0; j < t->cols; j++) {
                o[j] = rs * g->col_scale[j] * student_t(&rng, (float)QR_SYNTH_T_DOF);
            }
            break;
        }
        }
    }
}

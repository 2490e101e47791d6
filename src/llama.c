/* llama.c: the float32 Llama forward pass over a block of tokens (see llama.h). The pass reads top
 * to bottom as in llama2.c, but each step works on the whole block: linear modules are one sgemm
 * over n rows, attention is one sgemm for the scores and one for the weighted values per head. */
#include "src/llama.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"
#include "src/checked.h"

/* Query rows per attention tile: a tile's scores only reach the positions its last row may see,
 * so causal attention over a window computes about half of the full (n, ctx) score matrix. */
#define QR_ATTN_TILE 64

struct qr_llama_state {
    qr_model_config cfg;
    int64_t max_block, max_pos;
    int64_t layer_begin, layer_end; /* the layers the KV cache holds */
    int64_t q_dim, kv_dim;
    float *x;        /* (max_block, dim) residual stream */
    float *xb;       /* (max_block, dim) normalized input of a block (attention or MLP) */
    float *tmp;      /* (max_block, dim) output of o_proj or down_proj before the residual add */
    float *q;        /* (max_block, q_dim) queries, heads side by side */
    float *att;      /* (max_block, q_dim) attention output, heads side by side */
    float *scores;   /* (QR_ATTN_TILE, max_pos) attention weights of one head and query tile */
    float *row_sum;  /* (QR_ATTN_TILE) softmax denominators of the tile's rows */
    float *gate;     /* (max_block, hidden_dim) gate_proj output, then silu(gate) * up */
    float *up;       /* (max_block, hidden_dim) up_proj output */
    float *kcache;   /* (layer_end - layer_begin, max_pos, kv_dim) keys after RoPE */
    float *vcache;   /* (layer_end - layer_begin, max_pos, kv_dim) values */
    float *rope_cos; /* (max_pos, head_dim / 2) cos(pos * theta^(-2p / head_dim)) */
    float *rope_sin; /* (max_pos, head_dim / 2) */
};

qr_status qr_linear_forward(const qr_linear *lin, const float *X, int64_t n, float *Y)
{
    int in = 0, out = 0, rows = 0;
    if (lin->apply) {
        return lin->apply(lin->ctx, X, n, Y);
    }
    if (!lin->W || !qr_to_int(lin->d_in, &in) || !qr_to_int(lin->d_out, &out) ||
        !qr_to_int(n, &rows)) {
        return qr_fail(QR_ERR_INTERNAL,
                       "linear module (%lld, %lld): no weight or sizes beyond BLAS int (n %lld)",
                       (long long)lin->d_out, (long long)lin->d_in, (long long)n);
    }
    if (rows == 1) {
        /* One token: a matrix-vector product is what a decoding loop would use. */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, lin->W, in, X, 1, 0.0f, Y, 1);
    } else if (rows > 1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, X, in, lin->W, in,
                    0.0f, Y, out);
    }
    return QR_OK;
}

static qr_status check_config(const qr_model_config *c)
{
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 ||
        c->n_kv_heads <= 0 || c->head_dim <= 0 || c->vocab_size <= 0 ||
        c->n_heads % c->n_kv_heads != 0 || c->head_dim % 2 != 0 || !(c->rms_eps > 0) ||
        !(c->rope_theta > 0) || c->dim > INT32_MAX || c->hidden_dim > INT32_MAX ||
        c->vocab_size > INT32_MAX || c->n_heads * c->head_dim > INT32_MAX) {
        return qr_fail(QR_ERR_INPUT,
                       "model config: unusable shape for the forward pass (dim %lld, hidden %lld, "
                       "layers %lld, heads %lld, kv heads %lld, head_dim %lld, vocab %lld, eps %g, "
                       "theta %g; expected positive sizes, heads a multiple of kv heads, even "
                       "head_dim)",
                       (long long)c->dim, (long long)c->hidden_dim, (long long)c->n_layers,
                       (long long)c->n_heads, (long long)c->n_kv_heads, (long long)c->head_dim,
                       (long long)c->vocab_size, c->rms_eps, c->rope_theta);
    }
    if (c->rope_scaling.kind == QR_ROPE_SCALING_OTHER) {
        return qr_fail(QR_ERR_INPUT,
                       "model config: rope_scaling type \"%s\" is not supported by the forward "
                       "pass (expected none, \"llama3\" or \"linear\")",
                       c->rope_scaling.name);
    }
    if ((c->rope_scaling.kind == QR_ROPE_SCALING_LLAMA3 &&
         !(c->rope_scaling.factor > 0 && c->rope_scaling.low_freq_factor > 0 &&
           c->rope_scaling.high_freq_factor > c->rope_scaling.low_freq_factor &&
           c->rope_scaling.original_max_pos > 0)) ||
        (c->rope_scaling.kind == QR_ROPE_SCALING_LINEAR && !(c->rope_scaling.factor > 0))) {
        return qr_fail(QR_ERR_INPUT,
                       "model config: rope_scaling \"%s\" parameters out of range (factor %g, "
                       "low_freq_factor %g, high_freq_factor %g, original_max_position_embeddings "
                       "%lld)",
                       c->rope_scaling.name, c->rope_scaling.factor,
                       c->rope_scaling.low_freq_factor, c->rope_scaling.high_freq_factor,
                       (long long)c->rope_scaling.original_max_pos);
    }
    return QR_OK;
}

static void set_linear(qr_linear *lin, float *W, int64_t d_out, int64_t d_in)
{
    lin->W = W;
    lin->d_out = d_out;
    lin->d_in = d_in;
    lin->apply = NULL;
    lin->ctx = NULL;
}

/* Float counts of the pieces of a slice: parts[0] q/o (q_dim dim), parts[1] k/v (kv_dim dim),
 * parts[2] gate/up/down (hidden dim), parts[3] embedding/classifier (vocab dim); *total the arena.
 * Every product is bounded by check_config() only per factor, so each is overflow-checked. */
static qr_status slice_sizes(const qr_model_config *c, int64_t layer_begin, int64_t layer_end,
                             bool embedding, bool head, size_t parts[5], size_t *total)
{
    int64_t q_dim, kv_dim;
    size_t per_layer = 0, t = 0;
    QR_TRY(check_config(c));
    if (layer_begin < 0 || layer_begin > layer_end || layer_end > c->n_layers) {
        return qr_fail(QR_ERR_INPUT,
                       "model config: layer slice [%lld, %lld) outside the model (expected within "
                       "[0, %lld))",
                       (long long)layer_begin, (long long)layer_end, (long long)c->n_layers);
    }
    if (head && c->tied_embeddings && !embedding) {
        return qr_fail(QR_ERR_INPUT, "model config: a tied classifier needs the embedding too "
                                     "(expected embedding with the head)");
    }
    q_dim = c->n_heads * c->head_dim;
    kv_dim = c->n_kv_heads * c->head_dim;
    if (!qr_mul_size((size_t)q_dim, (size_t)c->dim, &parts[0]) ||
        !qr_mul_size((size_t)kv_dim, (size_t)c->dim, &parts[1]) ||
        !qr_mul_size((size_t)c->hidden_dim, (size_t)c->dim, &parts[2]) ||
        !qr_mul_size((size_t)c->vocab_size, (size_t)c->dim, &parts[3]) ||
        !qr_add_size(2 * (size_t)c->dim, parts[0], &per_layer) ||
        !qr_add_size(per_layer, parts[1], &per_layer) ||
        !qr_add_size(per_layer, parts[1], &per_layer) ||
        !qr_add_size(per_layer, parts[0], &per_layer) || !qr_mul_size(parts[2], 3, &parts[4]) ||
        !qr_add_size(per_layer, parts[4], &per_layer) ||
        (c->attn_bias && !qr_add_size(per_layer, (size_t)(q_dim + 2 * kv_dim), &per_layer)) ||
        !qr_mul_size(per_layer, (size_t)(layer_end - layer_begin), &t) ||
        (embedding && !qr_add_size(t, parts[3], &t)) ||
        (head && !qr_add_size(t, (size_t)c->dim, &t)) ||
        (head && !c->tied_embeddings && !qr_add_size(t, parts[3], &t))) {
        return qr_fail(QR_ERR_INPUT, "model config: weight size overflows (dim %lld, layers %lld)",
                       (long long)c->dim, (long long)c->n_layers);
    }
    *total = t;
    return QR_OK;
}

qr_status qr_llama_slice_floats(const qr_model_config *cfg, int64_t layer_begin, int64_t layer_end,
                                bool embedding, bool head, uint64_t *floats)
{
    size_t parts[5] = {0}, total = 0;
    QR_TRY(slice_sizes(cfg, layer_begin, layer_end, embedding, head, parts, &total));
    *floats = (uint64_t)total;
    return QR_OK;
}

qr_status qr_llama_weights_alloc(const qr_model_config *cfg, qr_llama_weights *w)
{
    return qr_llama_weights_alloc_slice(cfg, 0, cfg->n_layers, true, true, w);
}

qr_status qr_llama_weights_alloc_slice(const qr_model_config *cfg, int64_t layer_begin,
                                       int64_t layer_end, bool embedding, bool head,
                                       qr_llama_weights *w)
{
    qr_status st = QR_OK;
    const qr_model_config *c = cfg;
    int64_t q_dim, kv_dim;
    size_t total = 0, parts[5] = {0};
    float *p;
    memset(w, 0, sizeof *w);
    QR_TRY(slice_sizes(c, layer_begin, layer_end, embedding, head, parts, &total));
    q_dim = c->n_heads * c->head_dim;
    kv_dim = c->n_kv_heads * c->head_dim;
    w->cfg = *c;
    w->layer_begin = layer_begin;
    w->layer_end = layer_end;
    w->has_embedding = embedding;
    w->has_head = head;
    QR_CHECK(qr_calloc(&w->layers, (size_t)c->n_layers, sizeof *w->layers, "llama layers"));
    QR_CHECK(qr_calloc(&w->arena, total > 0 ? total : 1, sizeof(float), "llama weights"));
    w->arena_floats = (int64_t)total;
    p = w->arena;
    if (embedding) {
        w->embedding = p;
        p += parts[3];
    }
    if (head) {
        w->final_norm = p;
        p += c->dim;
    }
    for (int64_t l = layer_begin; l < layer_end; l++) {
        qr_llama_layer *L = &w->layers[l];
        L->attn_norm = p;
        p += c->dim;
        L->ffn_norm = p;
        p += c->dim;
        if (c->attn_bias) {
            L->bq = p;
            p += q_dim;
            L->bk = p;
            p += kv_dim;
            L->bv = p;
            p += kv_dim;
        }
        set_linear(&L->q, p, q_dim, c->dim);
        p += parts[0];
        set_linear(&L->k, p, kv_dim, c->dim);
        p += parts[1];
        set_linear(&L->v, p, kv_dim, c->dim);
        p += parts[1];
        set_linear(&L->o, p, c->dim, q_dim);
        p += parts[0];
        set_linear(&L->gate, p, c->hidden_dim, c->dim);
        p += parts[2];
        set_linear(&L->up, p, c->hidden_dim, c->dim);
        p += parts[2];
        set_linear(&L->down, p, c->dim, c->hidden_dim);
        p += parts[2];
    }
    if (head && c->tied_embeddings) {
        set_linear(&w->classifier, w->embedding, c->vocab_size, c->dim);
    } else if (head) {
        set_linear(&w->classifier, p, c->vocab_size, c->dim);
        p += parts[3];
    }
done:
    if (st != QR_OK) {
        qr_llama_weights_free(w);
    }
    return st;
}

void qr_llama_weights_free(qr_llama_weights *w)
{
    if (!w) {
        return;
    }
    qr_free(&w->arena);
    qr_free(&w->layers);
    w->embedding = NULL;
    w->final_norm = NULL;
    w->classifier.W = NULL;
    w->arena_floats = 0;
}

qr_status qr_llama_state_open(const qr_model_config *cfg, int64_t max_block, int64_t max_pos,
                              qr_llama_state **out)
{
    return qr_llama_state_open_layers(cfg, max_block, max_pos, 0, cfg->n_layers, out);
}

qr_status qr_llama_state_open_layers(const qr_model_config *cfg, int64_t max_block, int64_t max_pos,
                                     int64_t layer_begin, int64_t layer_end, qr_llama_state **out)
{
    qr_status st = QR_OK;
    qr_llama_state *s = NULL;
    size_t cache = 0, sz = 0;
    int64_t half;
    *out = NULL;
    QR_TRY(check_config(cfg));
    if (max_block < 1 || max_pos < max_block || max_pos > INT32_MAX ||
        (cfg->max_seq_len > 0 && max_pos > cfg->max_seq_len)) {
        return qr_fail(QR_ERR_INPUT,
                       "forward pass: bad block size %lld or context %lld (expected 1 <= block <= "
                       "context <= the model's maximum %lld)",
                       (long long)max_block, (long long)max_pos, (long long)cfg->max_seq_len);
    }
    if (layer_begin < 0 || layer_begin >= layer_end || layer_end > cfg->n_layers) {
        return qr_fail(QR_ERR_INPUT,
                       "forward pass: layer range [%lld, %lld) (expected a non-empty range within "
                       "[0, %lld))",
                       (long long)layer_begin, (long long)layer_end, (long long)cfg->n_layers);
    }
    QR_TRY(qr_calloc(&s, 1, sizeof *s, "llama state"));
    s->layer_begin = layer_begin;
    s->layer_end = layer_end;
    s->cfg = *cfg;
    s->max_block = max_block;
    s->max_pos = max_pos;
    s->q_dim = cfg->n_heads * cfg->head_dim;
    s->kv_dim = cfg->n_kv_heads * cfg->head_dim;
    half = cfg->head_dim / 2;
#define QR_STATE_BUF(field, rows, cols)                                                            \
    do {                                                                                           \
        if (!qr_mul_size((size_t)(rows), (size_t)(cols), &sz)) {                                   \
            st = qr_fail(QR_ERR_INPUT, "forward pass: buffer " #field " size overflows");          \
            goto done;                                                                             \
        }                                                                                          \
        QR_CHECK(qr_calloc(&s->field, sz, sizeof(float), "llama state " #field));                  \
    } while (0)
    QR_STATE_BUF(x, max_block, cfg->dim);
    QR_STATE_BUF(xb, max_block, cfg->dim);
    QR_STATE_BUF(tmp, max_block, cfg->dim);
    QR_STATE_BUF(q, max_block, s->q_dim);
    QR_STATE_BUF(att, max_block, s->q_dim);
    QR_STATE_BUF(scores, QR_ATTN_TILE, max_pos);
    QR_STATE_BUF(row_sum, QR_ATTN_TILE, 1);
    QR_STATE_BUF(gate, max_block, cfg->hidden_dim);
    QR_STATE_BUF(up, max_block, cfg->hidden_dim);
    if (!qr_mul_size((size_t)(layer_end - layer_begin), (size_t)max_pos, &cache)) {
        st = qr_fail(QR_ERR_INPUT, "forward pass: KV cache size overflows");
        goto done;
    }
    QR_STATE_BUF(kcache, cache, s->kv_dim);
    QR_STATE_BUF(vcache, cache, s->kv_dim);
    QR_STATE_BUF(rope_cos, max_pos, half);
    QR_STATE_BUF(rope_sin, max_pos, half);
#undef QR_STATE_BUF
    /* Pair p of a head turns by pos * inv_freq(p) in both conventions; only which two
     * elements form pair p differs. Angles are computed in double so both give the same table. */
    for (int64_t pos = 0; pos < max_pos; pos++) {
        for (int64_t p = 0; p < half; p++) {
            double angle = (double)pos * qr_rope_inv_freq(cfg, p);
            s->rope_cos[pos * half + p] = (float)cos(angle);
            s->rope_sin[pos * half + p] = (float)sin(angle);
        }
    }
    *out = s;
    s = NULL;
done:
    qr_llama_state_close(&s);
    return st;
}

void qr_llama_state_close(qr_llama_state **ps)
{
    qr_llama_state *s;
    if (!ps || !*ps) {
        return;
    }
    s = *ps;
    qr_free(&s->x);
    qr_free(&s->xb);
    qr_free(&s->tmp);
    qr_free(&s->q);
    qr_free(&s->att);
    qr_free(&s->scores);
    qr_free(&s->row_sum);
    qr_free(&s->gate);
    qr_free(&s->up);
    qr_free(&s->kcache);
    qr_free(&s->vcache);
    qr_free(&s->rope_cos);
    qr_free(&s->rope_sin);
    free(s);
    *ps = NULL;
}

double qr_rope_inv_freq(const qr_model_config *c, int64_t p)
{
    const double two_pi = 6.283185307179586;
    const qr_rope_scaling *rs = &c->rope_scaling;
    double inv = pow(c->rope_theta, -2.0 * (double)p / (double)c->head_dim);
    if (rs->kind == QR_ROPE_SCALING_LINEAR) {
        return inv / rs->factor;
    }
    if (rs->kind == QR_ROPE_SCALING_LLAMA3) {
        /* transformers' _compute_llama3_parameters */
        double omax = (double)rs->original_max_pos, wavelen = two_pi / inv;
        double low_wavelen = omax / rs->low_freq_factor, high_wavelen = omax / rs->high_freq_factor;
        double smooth;
        if (wavelen < high_wavelen) {
            return inv; /* high frequencies: unchanged */
        }
        if (wavelen > low_wavelen) {
            return inv / rs->factor; /* low frequencies: interpolated by factor */
        }
        smooth =
            (omax / wavelen - rs->low_freq_factor) / (rs->high_freq_factor - rs->low_freq_factor);
        return (1.0 - smooth) * inv / rs->factor + smooth * inv;
    }
    return inv;
}

/* rows (n, width) += b (width) */
static void add_bias(float *rows, int64_t n, int64_t width, const float *b)
{
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < width; j++) {
            rows[i * width + j] += b[j];
        }
    }
}

void qr_rmsnorm(const float *x, const float *g, int64_t n, int64_t d, double eps, float *out)
{
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * d; /* (d) */
        float *oi = out + i * d;     /* (d) */
        double ss = 0.0;
        float inv;
        for (int64_t j = 0; j < d; j++) {
            ss += (double)xi[j] * xi[j];
        }
        inv = (float)(1.0 / sqrt(ss / (double)d + eps));
        for (int64_t j = 0; j < d; j++) {
            oi[j] = g[j] * (inv * xi[j]);
        }
    }
}

/* Rotate every head of v (n, n_heads * head_dim), rows at positions pos0.. . */
static void rope(const qr_llama_state *s, float *v, int64_t n, int64_t n_heads, int64_t pos0)
{
    int64_t hd = s->cfg.head_dim, half = hd / 2, width = n_heads * hd;
    bool interleaved = s->cfg.rope_style == QR_ROPE_INTERLEAVED;
    for (int64_t i = 0; i < n; i++) {
        const float *c = s->rope_cos + (pos0 + i) * half; /* (half) */
        const float *sn = s->rope_sin + (pos0 + i) * half;
        for (int64_t h = 0; h < n_heads; h++) {
            float *head = v + i * width + h * hd; /* (head_dim) */
            for (int64_t p = 0; p < half; p++) {
                /* llama2.c pairs (2p, 2p+1); Hugging Face pairs (p, p + head_dim/2). */
                int64_t a = interleaved ? 2 * p : p;
                int64_t b = interleaved ? 2 * p + 1 : p + half;
                float x0 = head[a], x1 = head[b];
                head[a] = x0 * c[p] - x1 * sn[p];
                head[b] = x0 * sn[p] + x1 * c[p];
            }
        }
    }
}

/* Largest of v (n >= 1). Eight running maxima let the compiler keep several comparisons in flight
 * (a single running maximum is one long dependency chain). */
static float row_max(const float *v, int64_t n)
{
    float m[8];
    int64_t j = 0;
    for (int k = 0; k < 8; k++) {
        m[k] = v[0];
    }
    for (; j + 8 <= n; j += 8) {
        for (int k = 0; k < 8; k++) {
            m[k] = v[j + k] > m[k] ? v[j + k] : m[k];
        }
    }
    for (; j < n; j++) {
        m[0] = v[j] > m[0] ? v[j] : m[0];
    }
    for (int k = 1; k < 8; k++) {
        m[0] = m[k] > m[0] ? m[k] : m[0];
    }
    return m[0];
}

/* exp(x) for x <= 0 in float32, branch-free so that a loop over it vectorizes: x = k ln2 + r with
 * |r| <= ln2/2, exp(r) by its Taylor polynomial to degree 6 (relative error below 2e-7 there),
 * times 2^k built in the exponent bits. Inputs below -87 (where exp underflows float32's normal
 * range) give about 1e-38 instead of a denormal or 0, which no softmax sum can tell apart. */
static inline float exp_nonpos(float x)
{
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float t, k, r, p;
    int32_t bits;
    uint32_t kb, sb;
    x = x < -87.0f ? -87.0f : x;
    t = x * 1.44269504f + shifter;
    k = t - shifter; /* round(x / ln2) */
    memcpy(&kb, &t, sizeof kb);
    memcpy(&sb, &shifter, sizeof sb);
    r = x - k * 0.693145752f; /* ln2 split in two so that k * ln2_hi is exact */
    r = r - k * 1.42860677e-06f;
    p = 1.0f +
        r * (1.0f +
             r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
    bits = (int32_t)(kb - sb); /* k as an integer, -126 <= k <= 0 */
    memcpy(&kb, &p, sizeof kb);
    kb += (uint32_t)bits << 23;
    memcpy(&p, &kb, sizeof p);
    return p;
}

/* v[j] = exp(v[j] - shift) for j < n (every v[j] <= shift); returns the sum. */
static float exp_shift_sum(float *v, int64_t n, float shift)
{
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        v[j] = exp_nonpos(v[j] - shift);
    }
    for (int64_t j = 0; j < n; j++) {
        sum += v[j];
    }
    return sum;
}

/* Causal grouped-query attention of the block's queries (n, q_dim) against cached keys and values
 * of positions 0 .. pos0+n-1 of one layer; writes s->att (n, q_dim). */
static void attention(qr_llama_state *s, int64_t layer, int64_t n, int64_t pos0)
{
    const qr_model_config *c = &s->cfg;
    int64_t hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    int64_t slot = layer - s->layer_begin; /* the layer's place in the cache */
    const float *kc = s->kcache + slot * s->max_pos * s->kv_dim; /* (pos0 + n, kv_dim) */
    const float *vc = s->vcache + slot * s->max_pos * s->kv_dim; /* (pos0 + n, kv_dim) */
    float scale = (float)(1.0 / sqrt((double)hd));
    /* Sizes were checked against int when the state was opened. */
    int ihd = (int)hd, ldq = (int)s->q_dim, ldkv = (int)s->kv_dim;
    for (int64_t h = 0; h < c->n_heads; h++) {
        int64_t kvh = h / group;
        for (int64_t i0 = 0; i0 < n; i0 += QR_ATTN_TILE) {
            int64_t i1 = i0 + QR_ATTN_TILE < n ? i0 + QR_ATTN_TILE : n;
            int64_t ctx = pos0 + i1; /* positions the tile's last row attends to */
            const float *qh = s->q + i0 * s->q_dim + h * hd; /* (i1 - i0, hd), stride q_dim */
            float *oh = s->att + i0 * s->q_dim + h * hd;     /* (i1 - i0, hd), stride q_dim */
            float *sc = s->scores;                           /* (i1 - i0, ctx) */
            int rows = (int)(i1 - i0), cols = (int)ctx;
            /* sc = qh khᵀ / sqrt(hd) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, ihd, scale, qh, ldq,
                        kc + kvh * hd, ldkv, 0.0f, sc, cols);
            for (int64_t i = i0; i < i1; i++) {
                float *row = sc + (i - i0) * ctx; /* (ctx) */
                int64_t last = pos0 + i;          /* attend to positions 0..last */
                float mx = row_max(row, last + 1);
                s->row_sum[i - i0] = exp_shift_sum(row, last + 1, mx);
                for (int64_t j = last + 1; j < ctx; j++) {
                    row[j] = 0.0f;
                }
            }
            /* oh = softmax(sc) vh: unnormalized weights times values, then each row divided by
             * its sum (hd values per row instead of ctx) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, ihd, cols, 1.0f, sc, cols,
                        vc + kvh * hd, ldkv, 0.0f, oh, ldq);
            for (int64_t i = 0; i < rows; i++) {
                float inv = 1.0f / s->row_sum[i];
                for (int64_t e = 0; e < hd; e++) {
                    oh[i * s->q_dim + e] *= inv;
                }
            }
        }
    }
}

static qr_status check_block(const qr_llama_weights *w, const qr_llama_state *s, int64_t n,
                             int64_t pos0)
{
    const qr_model_config *c = &w->cfg;
    if (n < 1 || n > s->max_block || pos0 < 0 || pos0 + n > s->max_pos) {
        return qr_fail(QR_ERR_INPUT,
                       "forward pass: block of %lld tokens at position %lld does not fit (expected "
                       "1..%lld tokens ending at most at position %lld)",
                       (long long)n, (long long)pos0, (long long)s->max_block,
                       (long long)s->max_pos);
    }
    if (s->cfg.dim != c->dim || s->cfg.n_layers != c->n_layers ||
        s->cfg.hidden_dim != c->hidden_dim || s->cfg.n_heads != c->n_heads ||
        s->cfg.n_kv_heads != c->n_kv_heads || s->cfg.head_dim != c->head_dim) {
        return qr_fail(QR_ERR_INTERNAL, "forward pass: state opened for another model shape");
    }
    return QR_OK;
}

qr_status qr_llama_embed(const qr_llama_weights *w, const int32_t *tokens, int64_t n, int64_t pos0,
                         float *x)
{
    const qr_model_config *c = &w->cfg;
    if (!w->embedding) {
        return qr_fail(QR_ERR_INTERNAL, "forward pass: the embedding is not held by this slice");
    }
    /* x (n, dim) = embedding rows of the tokens */
    for (int64_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size) {
            return qr_fail(QR_ERR_INPUT,
                           "token %lld: id %d outside the vocabulary (expected 0..%lld)",
                           (long long)(pos0 + i), (int)tokens[i], (long long)c->vocab_size - 1);
        }
        memcpy(x + i * c->dim, w->embedding + (int64_t)tokens[i] * c->dim,
               (size_t)c->dim * sizeof(float));
    }
    return QR_OK;
}

/* Layers [l0, l1) on s->x (n, dim). */
static qr_status run_layers(const qr_llama_weights *w, qr_llama_state *s, int64_t n, int64_t pos0,
                            int64_t l0, int64_t l1, qr_llama_input_hook hook, void *hook_ctx)
{
    const qr_model_config *c = &w->cfg;
    int64_t dim = c->dim, hidden = c->hidden_dim, kv_dim = s->kv_dim;
    if (l0 < w->layer_begin || l1 > w->layer_end || l0 < s->layer_begin || l1 > s->layer_end ||
        l0 > l1) {
        return qr_fail(QR_ERR_INTERNAL,
                       "forward pass: layers [%lld, %lld) not held (weights [%lld, %lld), cache "
                       "[%lld, %lld))",
                       (long long)l0, (long long)l1, (long long)w->layer_begin,
                       (long long)w->layer_end, (long long)s->layer_begin, (long long)s->layer_end);
    }
    for (int64_t l = l0; l < l1; l++) {
        const qr_llama_layer *L = &w->layers[l];
        int64_t slot = l - s->layer_begin;
        float *kl = s->kcache + (slot * s->max_pos + pos0) * kv_dim; /* (n, kv_dim) cache rows */
        float *vl = s->vcache + (slot * s->max_pos + pos0) * kv_dim; /* (n, kv_dim) */

        /* attention block: xb (n, dim) = RMSNorm(x); q (n, q_dim), k, v (n, kv_dim) */
        qr_rmsnorm(s->x, L->attn_norm, n, dim, c->rms_eps, s->xb);
        if (hook) {
            hook(hook_ctx, l, QR_INPUT_ATTN, s->xb, n, dim);
        }
        QR_TRY(qr_linear_forward(&L->q, s->xb, n, s->q));
        QR_TRY(qr_linear_forward(&L->k, s->xb, n, kl));
        QR_TRY(qr_linear_forward(&L->v, s->xb, n, vl));
        if (L->bq) { /* qwen2: biases after the (possibly quantized) products, before RoPE */
            add_bias(s->q, n, s->q_dim, L->bq);
            add_bias(kl, n, kv_dim, L->bk);
            add_bias(vl, n, kv_dim, L->bv);
        }
        rope(s, s->q, n, c->n_heads, pos0);
        rope(s, kl, n, c->n_kv_heads, pos0);
        attention(s, l, n, pos0);
        if (hook) {
            hook(hook_ctx, l, QR_INPUT_O, s->att, n, s->q_dim);
        }
        /* x += att (n, q_dim) Woᵀ */
        QR_TRY(qr_linear_forward(&L->o, s->att, n, s->tmp));
        for (int64_t i = 0; i < n * dim; i++) {
            s->x[i] += s->tmp[i];
        }

        /* MLP block: x += (silu(xb Wgᵀ) * (xb Wuᵀ)) Wdᵀ with xb = RMSNorm(x) */
        qr_rmsnorm(s->x, L->ffn_norm, n, dim, c->rms_eps, s->xb);
        if (hook) {
            hook(hook_ctx, l, QR_INPUT_MLP, s->xb, n, dim);
        }
        QR_TRY(qr_linear_forward(&L->gate, s->xb, n, s->gate)); /* (n, hidden) */
        QR_TRY(qr_linear_forward(&L->up, s->xb, n, s->up));     /* (n, hidden) */
        for (int64_t i = 0; i < n * hidden; i++) {
            float g = s->gate[i];
            s->gate[i] = g / (1.0f + expf(-g)) * s->up[i];
        }
        if (hook) {
            hook(hook_ctx, l, QR_INPUT_DOWN, s->gate, n, hidden);
        }
        QR_TRY(qr_linear_forward(&L->down, s->gate, n, s->tmp));
        for (int64_t i = 0; i < n * dim; i++) {
            s->x[i] += s->tmp[i];
        }
    }
    return QR_OK;
}

qr_status qr_llama_forward_layers(const qr_llama_weights *w, qr_llama_state *s, float *x, int64_t n,
                                  int64_t pos0, int64_t layer_begin, int64_t layer_end,
                                  qr_llama_input_hook hook, void *hook_ctx)
{
    size_t bytes = (size_t)n * (size_t)w->cfg.dim * sizeof(float);
    QR_TRY(check_block(w, s, n, pos0));
    memcpy(s->x, x, bytes);
    QR_TRY(run_layers(w, s, n, pos0, layer_begin, layer_end, hook, hook_ctx));
    memcpy(x, s->x, bytes);
    return QR_OK;
}

qr_status qr_llama_forward(const qr_llama_weights *w, qr_llama_state *s, const int32_t *tokens,
                           int64_t n, int64_t pos0, float *logits, qr_llama_input_hook hook,
                           void *hook_ctx)
{
    const qr_model_config *c = &w->cfg;
    QR_TRY(check_block(w, s, n, pos0));
    QR_TRY(qr_llama_embed(w, tokens, n, pos0, s->x));
    QR_TRY(run_layers(w, s, n, pos0, 0, c->n_layers, hook, hook_ctx));
    if (logits) {
        if (!w->has_head) {
            return qr_fail(QR_ERR_INTERNAL, "forward pass: the head is not held by this slice");
        }
        /* logits (n, vocab) = RMSNorm(x) Wclsᵀ */
        qr_rmsnorm(s->x, w->final_norm, n, c->dim, c->rms_eps, s->xb);
        QR_TRY(qr_linear_forward(&w->classifier, s->xb, n, logits));
    }
    return QR_OK;
}

double qr_logits_nll(const float *logits, int64_t vocab, int32_t target)
{
    double mx = logits[0], sum = 0.0;
    for (int64_t j = 1; j < vocab; j++) {
        mx = logits[j] > mx ? logits[j] : mx;
    }
    for (int64_t j = 0; j < vocab; j++) {
        sum += exp((double)logits[j] - mx);
    }
    return log(sum) + mx - (double)logits[target];
}

int32_t qr_logits_argmax(const float *logits, int64_t vocab)
{
    int32_t best = 0;
    for (int64_t j = 1; j < vocab; j++) {
        if (logits[j] > logits[best]) {
            best = (int32_t)j;
        }
    }
    return best;
}

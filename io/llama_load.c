/* llama_load.c: model tensors to qr_llama_weights (see llama_load.h). */
#include "io/llama_load.h"

#include <stdio.h>

/* Read tensor `name` of shape (rows, cols) (cols == 0: a vector of rows) into dst. */
static qr_status read_tensor(const qr_model *m, const char *name, int64_t rows, int64_t cols,
                             float *dst)
{
    qr_dtype dt;
    int ndim = 0;
    int64_t shape[8] = {0};
    int want = cols > 0 ? 2 : 1;
    QR_TRY(qr_model_tensor_info(m, name, &dt, &ndim, shape));
    if (ndim != want || shape[0] != rows || (want == 2 && shape[1] != cols)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: tensor %s: expected shape (%lld%s%lld), found %d dims (%lld, %lld)",
                       qr_model_path(m), name, (long long)rows, want == 2 ? ", " : "",
                       want == 2 ? (long long)cols : 0LL, ndim, (long long)shape[0],
                       ndim > 1 ? (long long)shape[1] : 0LL);
    }
    return qr_model_read_f32(m, name, dst, (size_t)rows * (size_t)(cols > 0 ? cols : 1));
}

static qr_status read_linear(const qr_model *m, int64_t l, const char *block, const char *mod,
                             const qr_linear *lin)
{
    char name[160];
    snprintf(name, sizeof name, "model.layers.%lld.%s.%s.weight", (long long)l, block, mod);
    /* The loader owns the arena the dense W points into. */
    return read_tensor(m, name, lin->d_out, lin->d_in, (float *)lin->W);
}

qr_status qr_llama_load(const qr_model *m, qr_llama_weights *w)
{
    return qr_llama_load_slice(m, 0, qr_model_get_config(m)->n_layers, true, true, w);
}

qr_status qr_llama_load_slice(const qr_model *m, int64_t layer_begin, int64_t layer_end,
                              bool embedding, bool head, qr_llama_weights *w)
{
    qr_status st = QR_OK;
    const qr_model_config *c = qr_model_get_config(m);
    char name[160];
    QR_TRY(qr_llama_weights_alloc_slice(c, layer_begin, layer_end, embedding, head, w));
    if (embedding) {
        QR_CHECK(read_tensor(m, "model.embed_tokens.weight", c->vocab_size, c->dim, w->embedding));
    }
    if (head) {
        QR_CHECK(read_tensor(m, "model.norm.weight", c->dim, 0, w->final_norm));
    }
    if (head && !c->tied_embeddings) {
        QR_CHECK(read_tensor(m, "lm_head.weight", c->vocab_size, c->dim, (float *)w->classifier.W));
    }
    for (int64_t l = layer_begin; l < layer_end; l++) {
        qr_llama_layer *L = &w->layers[l];
        snprintf(name, sizeof name, "model.layers.%lld.input_layernorm.weight", (long long)l);
        QR_CHECK(read_tensor(m, name, c->dim, 0, L->attn_norm));
        snprintf(name, sizeof name, "model.layers.%lld.post_attention_layernorm.weight",
                 (long long)l);
        QR_CHECK(read_tensor(m, name, c->dim, 0, L->ffn_norm));
        QR_CHECK(read_linear(m, l, "self_attn", "q_proj", &L->q));
        QR_CHECK(read_linear(m, l, "self_attn", "k_proj", &L->k));
        QR_CHECK(read_linear(m, l, "self_attn", "v_proj", &L->v));
        QR_CHECK(read_linear(m, l, "self_attn", "o_proj", &L->o));
        QR_CHECK(read_linear(m, l, "mlp", "gate_proj", &L->gate));
        QR_CHECK(read_linear(m, l, "mlp", "up_proj", &L->up));
        QR_CHECK(read_linear(m, l, "mlp", "down_proj", &L->down));
        if (c->attn_bias) {
            const char *mods[3] = {"q_proj", "k_proj", "v_proj"};
            float *dst[3] = {L->bq, L->bk, L->bv};
            int64_t len[3] = {L->q.d_out, L->k.d_out, L->v.d_out};
            for (int b = 0; b < 3; b++) {
                snprintf(name, sizeof name, "model.layers.%lld.self_attn.%s.bias", (long long)l,
                         mods[b]);
                QR_CHECK(read_tensor(m, name, len[b], 0, dst[b]));
            }
        }
    }
done:
    if (st != QR_OK) {
        qr_llama_weights_free(w);
    }
    return st;
}

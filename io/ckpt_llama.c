/* ckpt_llama.c: a quantized checkpoint as the forward pass's linear modules (io/ckpt_llama.h). */
#include "io/ckpt_llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/kernels/kernels.h"
#include "src/modules.h"
#include "src/qlayer_ref.h"

/* One module as a qr_linear's context. */
typedef struct {
    qr_qlayer ql;
    qr_kmodule *km; /* kernel mode with abits 8 or 4 */
    float *W_eff;   /* (d_out, d_in) dense dequantized weight when abits is 0 */
    int abits;
    qr_ckpt_run_mode mode;
} qmod;

struct qr_ckpt_llama {
    qmod *mods; /* (n_mods) */
    size_t n_mods;
    int abits;
    char method[QR_KV_STR_MAX];
};

static qr_status apply_kernels(void *ctx, const float *X, int64_t n, float *Y)
{
    return qr_kmodule_forward(((qmod *)ctx)->km, X, n, Y);
}

static qr_status apply_reference(void *ctx, const float *X, int64_t n, float *Y)
{
    qmod *q = ctx;
    double *Yd = NULL; /* (n, d_out) */
    size_t ny;
    if (n < 0 || !qr_mul_size((size_t)n, (size_t)q->ql.d_out, &ny)) {
        return qr_fail(QR_ERR_INPUT, "reference module: token count %lld", (long long)n);
    }
    QR_TRY(qr_malloc(&Yd, ny, sizeof *Yd, "reference module output"));
    qr_status st = qr_qlayer_forward_ref(&q->ql, X, n, q->abits, 0, Yd);
    for (size_t i = 0; st == QR_OK && i < ny; i++) {
        Y[i] = (float)Yd[i];
    }
    free(Yd);
    return st;
}

static qr_linear *module_linear(qr_llama_weights *w, const qr_module *m)
{
    qr_llama_layer *L = &w->layers[m->layer];
    switch (m->kind) {
    case QR_MOD_Q:
        return &L->q;
    case QR_MOD_K:
        return &L->k;
    case QR_MOD_V:
        return &L->v;
    case QR_MOD_O:
        return &L->o;
    case QR_MOD_GATE:
        return &L->gate;
    case QR_MOD_UP:
        return &L->up;
    default:
        return &L->down;
    }
}

/* The float array of w a non-quantized tensor name stands for, and its element count. */
static float *tensor_target(qr_llama_weights *w, const char *name, size_t *count)
{
    const qr_model_config *c = &w->cfg;
    long long l;
    int end = 0;
    *count = (size_t)c->dim;
    if (strcmp(name, "model.embed_tokens.weight") == 0) {
        *count = (size_t)c->vocab_size * (size_t)c->dim;
        return w->embedding;
    }
    if (strcmp(name, "model.norm.weight") == 0) {
        return w->final_norm;
    }
    if (strcmp(name, "lm_head.weight") == 0 && !c->tied_embeddings) {
        *count = (size_t)c->vocab_size * (size_t)c->dim;
        return (float *)w->classifier.W;
    }
    if (sscanf(name, "model.layers.%lld.input_layernorm.weight%n", &l, &end) == 1 &&
        name[end] == '\0' && l >= 0 && l < c->n_layers) {
        return w->layers[l].attn_norm;
    }
    end = 0;
    if (sscanf(name, "model.layers.%lld.post_attention_layernorm.weight%n", &l, &end) == 1 &&
        name[end] == '\0' && l >= 0 && l < c->n_layers) {
        return w->layers[l].ffn_norm;
    }
    if (c->attn_bias) { /* qwen2's q/k/v biases: stored unquantized, added after each module */
        const char *mods[3] = {"q_proj", "k_proj", "v_proj"};
        for (int b = 0; b < 3; b++) {
            char pattern[80];
            snprintf(pattern, sizeof pattern, "model.layers.%%lld.self_attn.%s.bias%%n", mods[b]);
            end = 0;
            if (sscanf(name, pattern, &l, &end) == 1 && name[end] == '\0' && l >= 0 &&
                l < c->n_layers) {
                qr_llama_layer *L = &w->layers[l];
                *count = (size_t)(b == 0 ? L->q.d_out : b == 1 ? L->k.d_out : L->v.d_out);
                return b == 0 ? L->bq : b == 1 ? L->bk : L->bv;
            }
        }
    }
    return NULL;
}

static qr_status load_tensors(const qr_ckpt *ck, const char *path, qr_llama_weights *w)
{
    size_t expected =
        2 + (w->cfg.attn_bias ? 5 : 2) * (size_t)w->cfg.n_layers + (w->cfg.tied_embeddings ? 0 : 1);
    size_t found = 0;
    for (size_t i = 0; i < qr_ckpt_tensor_count(ck); i++) {
        const char *name = qr_ckpt_tensor_name(ck, i);
        size_t count = 0, have = 1;
        int ndim = 0;
        int64_t shape[8] = {0};
        float *dst = tensor_target(w, name, &count);
        if (!dst) {
            continue; /* a tensor the forward pass does not use (e.g. a bias it has no slot for) */
        }
        QR_TRY(qr_ckpt_tensor_shape(ck, name, &ndim, shape));
        for (int d = 0; d < ndim; d++) {
            have *= (size_t)shape[d];
        }
        if (have != count) {
            return qr_fail(QR_ERR_INPUT, "%s: tensor '%s' size (expected %zu, found %zu)", path,
                           name, count, have);
        }
        QR_TRY(qr_ckpt_read_tensor(ck, name, dst, count));
        found++;
    }
    if (found != expected) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: embeddings, norms, lm_head and biases in /tensors (expected %zu, found "
                       "%zu)",
                       path, expected, found);
    }
    return QR_OK;
}

qr_status qr_ckpt_llama_attach(const char *ckpt_path, const qr_model *m, qr_ckpt_run_mode mode,
                               qr_llama_weights *w, qr_ckpt_llama **out)
{
    qr_status st = QR_OK;
    qr_ckpt *ck = NULL;
    qr_ckpt_llama *q = NULL;
    qr_module *mods = NULL;
    size_t n_mods = 0;
    qr_ckpt_header h;
    *out = NULL;
    QR_TRY(qr_ckpt_open(ckpt_path, &ck));
    QR_CHECK(qr_ckpt_header_read(ck, &h));
    if (!qr_model_identity_matches(m, h.source_model)) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: quantized from another model than %s (expected identity %s, found %s)",
                     ckpt_path, qr_model_path(m), qr_model_identity(m), h.source_model);
        goto done;
    }
    QR_CHECK(qr_calloc(&q, 1, sizeof *q, "checkpoint model"));
    q->abits = (int)h.abits;
    snprintf(q->method, sizeof q->method, "%s", h.method);
    QR_CHECK(qr_modules_enumerate(&w->cfg, &mods, &n_mods));
    QR_CHECK(qr_calloc(&q->mods, n_mods + 1, sizeof *q->mods, "checkpoint modules"));
    q->n_mods = n_mods;
    QR_CHECK(load_tensors(ck, ckpt_path, w));
    for (size_t i = 0; i < n_mods; i++) {
        qmod *qm = &q->mods[i];
        qr_linear *lin = module_linear(w, &mods[i]);
        qm->abits = q->abits;
        qm->mode = mode;
        QR_CHECK(qr_ckpt_load_module(ck, mods[i].name, &qm->ql, NULL));
        if (qm->ql.d_out != lin->d_out || qm->ql.d_in != lin->d_in) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: module '%s' shape (expected %lld x %lld, found %lld x %lld)",
                         ckpt_path, mods[i].name, (long long)lin->d_out, (long long)lin->d_in,
                         (long long)qm->ql.d_out, (long long)qm->ql.d_in);
            goto done;
        }
        if (q->abits == 0) {
            /* Float activations: the kernels only take quantized ones, so both modes run the
             * dequantized effective weight, rounded once to float32. */
            double *We = NULL; /* (d_out, d_in) */
            size_t nw = (size_t)lin->d_out * (size_t)lin->d_in;
            QR_CHECK(qr_malloc(&We, nw, sizeof *We, "effective weight"));
            st = qr_malloc(&qm->W_eff, nw, sizeof *qm->W_eff, "effective weight");
            if (st == QR_OK) {
                st = qr_qlayer_effective_weight(&qm->ql, We);
            }
            for (size_t k = 0; st == QR_OK && k < nw; k++) {
                qm->W_eff[k] = (float)We[k];
            }
            free(We);
            QR_CHECK(st);
            lin->W = qm->W_eff;
            lin->apply = NULL;
            lin->ctx = NULL;
        } else if (mode == QR_CKPT_RUN_KERNELS) {
            qr_kmodule_opts o;
            qr_kmodule_opts_default(&o);
            o.abits = q->abits;
            QR_CHECK(qr_kmodule_prepare(&qm->ql, &o, &qm->km));
            lin->apply = apply_kernels;
            lin->ctx = qm;
        } else {
            lin->apply = apply_reference;
            lin->ctx = qm;
        }
    }
    *out = q;
    q = NULL;
done:
    free(mods);
    qr_ckpt_llama_free(&q);
    qr_ckpt_close(&ck);
    return st;
}

int qr_ckpt_llama_abits(const qr_ckpt_llama *q)
{
    return q->abits;
}

const char *qr_ckpt_llama_method(const qr_ckpt_llama *q)
{
    return q->method;
}

void qr_ckpt_llama_free(qr_ckpt_llama **q)
{
    if (!q || !*q) {
        return;
    }
    for (size_t i = 0; i < (*q)->n_mods; i++) {
        qr_kmodule_free(&(*q)->mods[i].km);
        qr_qlayer_free(&(*q)->mods[i].ql);
        free((*q)->mods[i].W_eff);
    }
    free((*q)->mods);
    free(*q);
    *q = NULL;
}

/* modules.c: module enumeration from the model shape: the one place where a module's shape and its
 * calibration input are defined (io/model.c checks tensors against it, the plan and the quantizer
 * iterate over it). */
#include "src/modules.h"

#include <stdio.h>

#include "src/alloc.h"
#include "src/checked.h"

static const char *const kind_names[QR_MOD_KIND_COUNT] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
};
static const char *const kind_block[QR_MOD_KIND_COUNT] = {
    "self_attn", "self_attn", "self_attn", "self_attn", "mlp", "mlp", "mlp",
};
static const qr_input_kind kind_input[QR_MOD_KIND_COUNT] = {
    QR_INPUT_ATTN, QR_INPUT_ATTN, QR_INPUT_ATTN, QR_INPUT_O,
    QR_INPUT_MLP,  QR_INPUT_MLP,  QR_INPUT_DOWN,
};
static const char *const input_suffix[QR_INPUT_KIND_COUNT] = {"attn_in", "o_in", "mlp_in",
                                                              "down_in"};

const char *qr_module_kind_name(qr_module_kind k)
{
    return (k >= 0 && k < QR_MOD_KIND_COUNT) ? kind_names[k] : "?";
}

const char *qr_input_kind_suffix(qr_input_kind k)
{
    return (k >= 0 && k < QR_INPUT_KIND_COUNT) ? input_suffix[k] : "?";
}

qr_status qr_modules_enumerate(const qr_model_config *cfg, qr_module **mods, size_t *n)
{
    int64_t q_out = 0, kv_out = 0;
    size_t count;
    qr_module *out;
    /* The config may come from anywhere (tests, synth): the products are checked, not trusted. */
    if (cfg->n_heads <= 0 || cfg->n_kv_heads <= 0 || cfg->head_dim <= 0 ||
        __builtin_mul_overflow(cfg->n_heads, cfg->head_dim, &q_out) ||
        __builtin_mul_overflow(cfg->n_kv_heads, cfg->head_dim, &kv_out)) {
        q_out = kv_out = 0;
    }
    if (cfg->n_layers <= 0 || cfg->dim <= 0 || cfg->hidden_dim <= 0 || q_out <= 0 || kv_out <= 0) {
        return qr_fail(QR_ERR_INPUT,
                       "model config: sizes must be positive and heads x head_dim must fit in "
                       "int64 (layers %lld, dim %lld, hidden %lld, "
                       "heads %lld x head_dim %lld, kv heads %lld)",
                       (long long)cfg->n_layers, (long long)cfg->dim, (long long)cfg->hidden_dim,
                       (long long)cfg->n_heads, (long long)cfg->head_dim,
                       (long long)cfg->n_kv_heads);
    }
    if (!qr_mul_size((size_t)cfg->n_layers, QR_MOD_KIND_COUNT, &count)) {
        return qr_fail(QR_ERR_INPUT, "model config: too many layers (%lld)",
                       (long long)cfg->n_layers);
    }
    QR_TRY(qr_calloc(&out, count, sizeof *out, "module list"));
    for (int64_t l = 0; l < cfg->n_layers; l++) {
        for (int k = 0; k < QR_MOD_KIND_COUNT; k++) {
            qr_module *m = &out[l * QR_MOD_KIND_COUNT + k];
            m->layer = l;
            m->kind = (qr_module_kind)k;
            m->input = kind_input[k];
            snprintf(m->name, sizeof m->name, "model.layers.%lld.%s.%s", (long long)l,
                     kind_block[k], kind_names[k]);
            snprintf(m->input_key, sizeof m->input_key, "layers.%lld.%s", (long long)l,
                     input_suffix[m->input]);
            switch (m->kind) {
            case QR_MOD_Q:
                m->d_out = q_out, m->d_in = cfg->dim;
                break;
            case QR_MOD_K:
            case QR_MOD_V:
                m->d_out = kv_out, m->d_in = cfg->dim;
                break;
            case QR_MOD_O:
                m->d_out = cfg->dim, m->d_in = q_out;
                break;
            case QR_MOD_GATE:
            case QR_MOD_UP:
                m->d_out = cfg->hidden_dim, m->d_in = cfg->dim;
                break;
            default:
                m->d_out = cfg->dim, m->d_in = cfg->hidden_dim;
                break;
            }
        }
    }
    *mods = out;
    *n = count;
    return QR_OK;
}

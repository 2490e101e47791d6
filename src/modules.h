/* modules.h: the quantizable linear modules of a Llama-family model, in a fixed order (layer by
 * layer; q, k, v, o, gate, up, down), with shapes and the calibration input each one consumes. */
#ifndef QR_MODULES_H
#define QR_MODULES_H

#include <stddef.h>
#include <stdint.h>

#include "src/model_config.h"
#include "src/status.h"

typedef enum {
    QR_MOD_Q = 0,
    QR_MOD_K,
    QR_MOD_V,
    QR_MOD_O,
    QR_MOD_GATE,
    QR_MOD_UP,
    QR_MOD_DOWN,
    QR_MOD_KIND_COUNT
} qr_module_kind;

/* The distinct linear-layer inputs of one layer: q/k/v share ATTN, gate/up share MLP. */
typedef enum {
    QR_INPUT_ATTN = 0, /* RMSNorm(x) before attention: key "layers.L.attn_in" */
    QR_INPUT_O,        /* attention output before o_proj: "layers.L.o_in" */
    QR_INPUT_MLP,      /* RMSNorm(x) before the MLP: "layers.L.mlp_in" */
    QR_INPUT_DOWN,     /* silu(gate) * up before down_proj: "layers.L.down_in" */
    QR_INPUT_KIND_COUNT
} qr_input_kind;

#define QR_MODULE_NAME_MAX 96
#define QR_INPUT_KEY_MAX 48

typedef struct {
    int64_t layer;
    qr_module_kind kind;
    char name[QR_MODULE_NAME_MAX]; /* "model.layers.3.self_attn.q_proj" (tensor = name + ".weight")
                                    */
    int64_t d_out, d_in;
    qr_input_kind input;
    char input_key[QR_INPUT_KEY_MAX]; /* calibration dataset key, "layers.3.attn_in" */
} qr_module;

/* Enumerate every quantizable module: n_layers * 7 entries in the fixed order. *mods is allocated;
 * the caller frees it with free(). */
qr_status qr_modules_enumerate(const qr_model_config *cfg, qr_module **mods, size_t *n);

const char *qr_module_kind_name(qr_module_kind k); /* "q_proj", ..., "down_proj" */
const char *qr_input_kind_suffix(qr_input_kind k); /* "attn_in", "o_in", "mlp_in", "down_in" */

#endif

/* synth.h: seeded synthetic weights with the structure of a trained Llama model, for `qrecon synth`
 * (the embedded demo and the input of the benchmarks at real sizes). Pure numerics:
 * jobs/cmd_synth.c writes what this generates.
 *
 * Structure (what makes quantization hard in real checkpoints, so the methods have work to do):
 * - linear weights: Student-t values with QR_SYNTH_T_DOF degrees of freedom (heavy tails, kurtosis
 *   about 9), unit variance, scaled by 1/sqrt(d_in);
 * - outlier input channels: about 1% of the input columns (at least one) scaled x10..x30. Modules
 *   that read the residual stream (q, k, v, gate, up) share one outlier set for the whole model, as
 *   activation outliers in trained Llamas sit in fixed hidden dimensions; o_proj and down_proj draw
 *   their own per layer;
 * - per-output-row scale variation: log-normal, sigma QR_SYNTH_ROW_SIGMA;
 * - RMSNorm weights near 1 (1 + 0.05 N(0,1)); embeddings and lm_head N(0, 0.02); qwen2 q/k/v
 *   biases N(0, QR_SYNTH_BIAS_STD).
 *
 * Determinism: a tensor's values depend only on (its name, its shape, the seed); each row comes
 * from its own stream, so any split into row chunks gives the same bytes and a tensor is generated
 * a few rows at a time (7B-sized layers are never held in memory at once). */
#ifndef QR_SYNTH_H
#define QR_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "src/model_config.h"
#include "src/status.h"

#define QR_SYNTH_NAME_MAX 128
#define QR_SYNTH_T_DOF 5.0 /* Student-t degrees of freedom: finite kurtosis 3 + 6/(5-4) = 9 */
#define QR_SYNTH_OUTLIER_FRAC 0.01 /* share of input channels that are outliers */
#define QR_SYNTH_OUTLIER_MIN 10.0  /* outlier channel scale range */
#define QR_SYNTH_OUTLIER_MAX 30.0
#define QR_SYNTH_ROW_SIGMA 0.25 /* log-normal sigma of the per-row scales */
#define QR_SYNTH_EMBED_STD 0.02 /* embeddings and lm_head */
#define QR_SYNTH_NORM_STD 0.05  /* RMSNorm weights: 1 + this x N(0,1) */
#define QR_SYNTH_BIAS_STD 0.5   /* qwen2 q/k/v biases: N(0, this), large enough to matter */

typedef enum { QR_SYNTH_EMBED = 0, QR_SYNTH_NORM, QR_SYNTH_LINEAR, QR_SYNTH_BIAS } qr_synth_kind;

/* One tensor of the synthetic model. 1-D tensors (norms) have rows = 1, cols = length. */
typedef struct {
    char name[QR_SYNTH_NAME_MAX]; /* Hugging Face name, e.g. "model.layers.0.mlp.up_proj.weight" */
    qr_synth_kind kind;
    int ndim;
    int64_t rows, cols;
    /* Name of the outlier-channel set (linear only): "residual" or the tensor's own name. */
    char outlier_set[QR_SYNTH_NAME_MAX];
} qr_synth_tensor;

/* Check that cfg describes a model synth can write (positive sizes, heads dividing dim, kv heads
 * dividing heads, even head_dim); QR_ERR_INPUT naming the option-level field otherwise. */
qr_status qr_synth_check_config(const qr_model_config *cfg);

/* The tensors of a Llama model with this config, in Hugging Face order: embed_tokens, per layer
 * input_layernorm, q, k, v, (q, k, v biases when cfg->attn_bias), o, post_attention_layernorm,
 * gate, up, down; model.norm; lm_head when not tied. *out is allocated (free()). Not collective. */
qr_status qr_synth_plan(const qr_model_config *cfg, qr_synth_tensor **out, size_t *n);

/* A generator for one tensor: holds its per-column scales. */
typedef struct {
    qr_synth_tensor t;
    uint64_t seed;
    uint64_t row_key; /* base of the per-row streams */
    float *col_scale; /* (cols): 1, or x10..x30 on outlier channels (linear only), else NULL */
} qr_synth_gen;

qr_status qr_synth_gen_init(qr_synth_gen *g, const qr_synth_tensor *t, uint64_t seed);
void qr_synth_gen_free(qr_synth_gen *g); /* NULL-safe; clears the arrays */

/* Rows [row0, row0 + nrows) of the tensor into out, (nrows, cols) row-major float32. */
void qr_synth_gen_rows(const qr_synth_gen *g, int64_t row0, int64_t nrows, float *out);

/* Column j's outlier scale (1 when j is not an outlier channel). */
float qr_synth_col_scale(const qr_synth_gen *g, int64_t j);

#endif

/* model_config.h: the shape of a Llama-family model (llama, mistral, qwen2), filled by io/ from a
 * Hugging Face config.json or a llama2.c header. Plain data. */
#ifndef QR_MODEL_CONFIG_H
#define QR_MODEL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

/* How RoPE pairs the dimensions of one head: llama2.c rotates adjacent pairs (2i, 2i+1); Hugging
 * Face checkpoints rotate (i, i + head_dim/2) (their q/k rows are permuted accordingly). */
typedef enum { QR_ROPE_HALF_SPLIT = 0, QR_ROPE_INTERLEAVED = 1 } qr_rope_style;

/* RoPE frequency scaling (config.json "rope_scaling"). LLAMA3 (Llama-3.1 and later) rescales every
 * inverse frequency by its wavelength against original_max_pos: wavelengths above
 * original_max_pos / low_freq_factor are divided by factor, those below
 * original_max_pos / high_freq_factor are kept, the band between is interpolated; so it changes
 * the low-frequency pairs at every position. LINEAR divides every frequency by factor. OTHER (yarn,
 * dynamic, longrope, ...) is named in `name` and refused by the forward pass. */
typedef enum {
    QR_ROPE_SCALING_NONE = 0,
    QR_ROPE_SCALING_LLAMA3,
    QR_ROPE_SCALING_LINEAR,
    QR_ROPE_SCALING_OTHER
} qr_rope_scaling_kind;

typedef struct {
    qr_rope_scaling_kind kind;
    double factor;            /* LLAMA3, LINEAR */
    double low_freq_factor;   /* LLAMA3 */
    double high_freq_factor;  /* LLAMA3, > low_freq_factor */
    int64_t original_max_pos; /* LLAMA3: original_max_position_embeddings */
    char name[24];            /* rope_type as written */
} qr_rope_scaling;

typedef struct {
    char arch[32];      /* "llama", "mistral", "qwen2" (model_type), or "llama2c" */
    int64_t dim;        /* hidden_size */
    int64_t hidden_dim; /* intermediate_size */
    int64_t n_layers;   /* num_hidden_layers */
    int64_t n_heads;    /* num_attention_heads */
    int64_t n_kv_heads; /* num_key_value_heads (== n_heads when absent) */
    int64_t head_dim;   /* dim / n_heads unless given */
    int64_t vocab_size;
    int64_t max_seq_len; /* max_position_embeddings */
    double rms_eps;
    double rope_theta;
    bool tied_embeddings;
    bool attn_bias; /* qwen2: q/k/v projections carry a bias */
    qr_rope_style rope_style;
    qr_rope_scaling rope_scaling;
} qr_model_config;

#endif

/* llama.h: the float32 Llama forward pass (RMSNorm, RoPE in both pair conventions with optional
 * llama3 or linear frequency scaling, q/k/v biases (Qwen2), grouped-query causal attention, SwiGLU,
 * tied or untied classifier), used by capture (calibration activations), eval (perplexity) and
 * generate. A bias is added after its module's qr_linear, so a quantized module keeps the float
 * bias.
 *
 * A call processes a block of n consecutive tokens at positions pos0 .. pos0+n-1 at once, with
 * matrix-matrix products (OpenBLAS sgemm), and appends their keys and values to a KV cache so that
 * a later call can continue the sequence. A whole window is one call with pos0 = 0; token-by-token
 * decoding is a call per token with n = 1.
 *
 * Every linear module goes through a qr_linear, so a quantized checkpoint or the INT4 kernels only
 * swap the qr_linear of each module; the rest of the pass is unchanged. A capture hook sees the
 * input of every linear-module group (src/modules.h, qr_input_kind). No MPI, no files. */
#ifndef QR_LLAMA_H
#define QR_LLAMA_H

#include <stdbool.h>
#include <stdint.h>

#include "src/model_config.h"
#include "src/modules.h"
#include "src/status.h"

/* One linear module: Y (n, d_out) = X (n, d_in) Wᵀ. With apply == NULL the dense W is used
 * (cblas_sgemm, or cblas_sgemv for one row); otherwise apply(ctx, X, n, Y) computes Y and W may be
 * NULL. apply must write every element of Y. */
typedef struct qr_linear {
    const float *W; /* (d_out, d_in) row-major, used when apply == NULL */
    int64_t d_out, d_in;
    qr_status (*apply)(void *ctx, const float *X, int64_t n, float *Y);
    void *ctx;
} qr_linear;

/* Y (n, d_out) = X (n, d_in) Wᵀ through the module's implementation. Not thread-safe only if the
 * module's apply is not. */
qr_status qr_linear_forward(const qr_linear *lin, const float *X, int64_t n, float *Y);

typedef struct {
    float *attn_norm; /* (dim) RMSNorm weight before attention */
    float *ffn_norm;  /* (dim) RMSNorm weight before the MLP */
    float *bq;        /* (n_heads * head_dim) q bias (qwen2), NULL without attention biases */
    float *bk;        /* (n_kv_heads * head_dim) k bias, or NULL */
    float *bv;        /* (n_kv_heads * head_dim) v bias, or NULL */
    qr_linear q;      /* (n_heads * head_dim, dim) */
    qr_linear k;      /* (n_kv_heads * head_dim, dim) */
    qr_linear v;      /* (n_kv_heads * head_dim, dim) */
    qr_linear o;      /* (dim, n_heads * head_dim) */
    qr_linear gate;   /* (hidden_dim, dim)  (llama2.c w1) */
    qr_linear up;     /* (hidden_dim, dim)  (llama2.c w3) */
    qr_linear down;   /* (dim, hidden_dim)  (llama2.c w2) */
} qr_llama_layer;

/* The weights of a whole model, or of a slice of its layers. qr_llama_weights_alloc() gives zeroed
 * storage for every dense array (one arena) with each qr_linear pointing at its dense W; a loader
 * (io/llama_load.h) fills the arrays. A caller may then replace any qr_linear (apply/ctx) without
 * touching the arena. A slice (qr_llama_weights_alloc_slice) holds only layers [layer_begin,
 * layer_end), and the embedding and the head (final norm and classifier) only when asked: the
 * other layers' entries of `layers` are zero (NULL arrays), so only qr_llama_forward_layers over
 * the held layers may run on it. */
typedef struct {
    qr_model_config cfg;
    float *embedding;       /* (vocab_size, dim) token embedding rows; NULL when not held */
    float *final_norm;      /* (dim); NULL when the head is not held */
    qr_llama_layer *layers; /* (n_layers); only [layer_begin, layer_end) have storage */
    qr_linear classifier;   /* (vocab_size, dim): W == embedding when tied; W NULL when not held */
    int64_t layer_begin, layer_end; /* the held layers; [0, n_layers) for a whole model */
    bool has_embedding, has_head;
    float *arena; /* owns every float array above */
    int64_t arena_floats;
} qr_llama_weights;

/* Check the shape fields of cfg (positive sizes, n_heads a multiple of n_kv_heads, even head_dim,
 * a supported rope_scaling) and allocate (with bias arrays when cfg->attn_bias). QR_ERR_INPUT
 * naming the model config when the shape is unusable. */
qr_status qr_llama_weights_alloc(const qr_model_config *cfg, qr_llama_weights *w);
/* The same for layers [layer_begin, layer_end) only (0 <= begin <= end <= n_layers), with the
 * embedding when `embedding`, the final norm and classifier when `head` (a tied classifier needs
 * the embedding too: QR_ERR_INPUT otherwise). qr_llama_weights_alloc is (0, n_layers, true, true).
 */
qr_status qr_llama_weights_alloc_slice(const qr_model_config *cfg, int64_t layer_begin,
                                       int64_t layer_end, bool embedding, bool head,
                                       qr_llama_weights *w);
/* Float32 values the slice's arena holds (the same formula as the allocator; for plans). */
qr_status qr_llama_slice_floats(const qr_model_config *cfg, int64_t layer_begin, int64_t layer_end,
                                bool embedding, bool head, uint64_t *floats);
void qr_llama_weights_free(qr_llama_weights *w); /* NULL-safe on its arrays; clears them */

/* Called with the input of every linear-module group of every layer, in the order of the pass
 * (layer 0 ATTN, O, MLP, DOWN, layer 1 ...). X is (n, d) row-major and only valid during the call.
 */
typedef void (*qr_llama_input_hook)(void *ctx, int64_t layer, qr_input_kind kind, const float *X,
                                    int64_t n, int64_t d);

/* Scratch buffers and the KV cache of one sequence. Opaque. */
typedef struct qr_llama_state qr_llama_state;

/* Buffers for blocks of up to max_block tokens and a KV cache of max_pos positions
 * (max_block <= max_pos <= cfg.max_seq_len when that is set). */
qr_status qr_llama_state_open(const qr_model_config *cfg, int64_t max_block, int64_t max_pos,
                              qr_llama_state **out);
/* The same with a KV cache for layers [layer_begin, layer_end) only: the state then runs only
 * qr_llama_forward_layers over a sub-range of those layers. */
qr_status qr_llama_state_open_layers(const qr_model_config *cfg, int64_t max_block, int64_t max_pos,
                                     int64_t layer_begin, int64_t layer_end, qr_llama_state **out);
void qr_llama_state_close(qr_llama_state **s); /* NULL-safe, clears the pointer */

/* Run tokens (n) at positions pos0 .. pos0+n-1; positions before pos0 must have been run by
 * earlier calls on the same state (pos0 = 0 starts a new sequence). logits, when not NULL, gets
 * (n, vocab_size): row i predicts the token after tokens[i]. hook may be NULL. Token ids outside
 * the vocabulary are QR_ERR_INPUT. */
qr_status qr_llama_forward(const qr_llama_weights *w, qr_llama_state *s, const int32_t *tokens,
                           int64_t n, int64_t pos0, float *logits, qr_llama_input_hook hook,
                           void *hook_ctx);

/* The pass in pieces, for a model split over layer slices (capture's pipeline): the embedding rows
 * of the tokens, then the layers [layer_begin, layer_end) on hidden states x (n, dim), in place.
 * Chaining qr_llama_embed and qr_llama_forward_layers over consecutive ranges gives the same bits
 * at every step as qr_llama_forward (the same code runs). w must hold the layers (and the
 * embedding), s must have been opened for them; QR_ERR_INPUT otherwise. */
qr_status qr_llama_embed(const qr_llama_weights *w, const int32_t *tokens, int64_t n, int64_t pos0,
                         float *x);
qr_status qr_llama_forward_layers(const qr_llama_weights *w, qr_llama_state *s, float *x, int64_t n,
                                  int64_t pos0, int64_t layer_begin, int64_t layer_end,
                                  qr_llama_input_hook hook, void *hook_ctx);

/* out (n, d) = RMSNorm of x (n, d) with weight g (d): x / sqrt(mean(x²) + eps) * g. Exposed for
 * tests and for the capture check. */
void qr_rmsnorm(const float *x, const float *g, int64_t n, int64_t d, double eps, float *out);

/* Negative log-likelihood (natural log) of `target` under one row of logits (vocab), computed
 * in double with the max subtracted. */
double qr_logits_nll(const float *logits, int64_t vocab, int32_t target);

/* Inverse frequency of RoPE pair p (0 <= p < head_dim / 2): theta^(-2p / head_dim), rescaled as
 * cfg->rope_scaling says (llama3: by wavelength band; linear: divided by factor). */
double qr_rope_inv_freq(const qr_model_config *cfg, int64_t p);

/* Index of the largest logit (the lowest index on ties). */
int32_t qr_logits_argmax(const float *logits, int64_t vocab);

#endif

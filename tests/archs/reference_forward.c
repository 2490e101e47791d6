/* reference_forward.c: the forward pass with Qwen2's q/k/v biases and Llama-3's rope_scaling
 * against a plain double-precision reference written here from the definitions (transformers'
 * Qwen2 / Llama attention and _compute_llama3_parameters), on seeded in-memory models:
 *   archs.forward_qwen2   biases, GQA, half-split RoPE, theta 1e6
 *   archs.forward_llama3  llama3 rope_scaling (factor 8, low 1, high 4, original 8192), theta 5e5
 *   archs.forward_both    both at once, run in two blocks through the KV cache
 * Each also checks that the feature changes the logits (a pass that ignored it would fail), and
 * that llama3 scaling changes them from the second position on (it rescales the low-frequency
 * pairs at every position, not only beyond the original context). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/llama.h"
#include "src/rng.h"
#include "tests/test_util.h"

/* float32 blocked pass against a float64 loop: differences come from float32 rounding of sums of
 * dim-length products; 2e-4 relative to the largest logit leaves a wide margin (measured ~1e-6). */
#define TOL_REL 2e-4
/* A feature "changes the logits" when some logit moves by more than this, relative. */
#define CHANGED_REL 1e-3

enum { N_TOK = 24 };

static void fill(qr_llama_weights *w, uint64_t seed)
{
    qr_rng rng;
    const qr_model_config *c = &w->cfg;
    qr_rng_seed(&rng, seed);
    for (int64_t i = 0; i < w->arena_floats; i++) {
        w->arena[i] = (float)(0.25 * qr_rng_normal(&rng));
    }
    for (int64_t l = 0; l < c->n_layers; l++) {
        for (int64_t j = 0; j < c->dim; j++) {
            w->layers[l].attn_norm[j] = (float)(1.0 + 0.1 * qr_rng_normal(&rng));
            w->layers[l].ffn_norm[j] = (float)(1.0 + 0.1 * qr_rng_normal(&rng));
        }
    }
    for (int64_t j = 0; j < c->dim; j++) {
        w->final_norm[j] = (float)(1.0 + 0.1 * qr_rng_normal(&rng));
    }
}

/* y (d_out) = W (d_out, d_in) x + b (b may be NULL) */
static void matvec(const float *W, const float *b, const double *x, int64_t d_out, int64_t d_in,
                   double *y)
{
    for (int64_t i = 0; i < d_out; i++) {
        double s = b ? b[i] : 0.0;
        for (int64_t j = 0; j < d_in; j++) {
            s += (double)W[i * d_in + j] * x[j];
        }
        y[i] = s;
    }
}

static void rmsnorm(const double *x, const float *g, int64_t d, double eps, double *out)
{
    double ss = 0.0;
    for (int64_t j = 0; j < d; j++) {
        ss += x[j] * x[j];
    }
    ss = 1.0 / sqrt(ss / (double)d + eps);
    for (int64_t j = 0; j < d; j++) {
        out[j] = x[j] * ss * g[j];
    }
}

/* transformers' default inv_freq, then the llama3 rule: wavelengths above original/low are
 * divided by factor, below original/high kept, interpolated between. */
static double inv_freq(const qr_model_config *c, int64_t p)
{
    double f = 1.0 / pow(c->rope_theta, (double)(2 * p) / (double)c->head_dim);
    const qr_rope_scaling *r = &c->rope_scaling;
    if (r->kind == QR_ROPE_SCALING_LLAMA3) {
        double wl = 2.0 * 3.14159265358979323846 / f, orig = (double)r->original_max_pos;
        if (wl > orig / r->low_freq_factor) {
            f = f / r->factor;
        } else if (wl >= orig / r->high_freq_factor) {
            double s =
                (orig / wl - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
            f = (1.0 - s) * f / r->factor + s * f;
        }
    }
    return f;
}

/* rotate_half RoPE of one head vector (hd) at position pos */
static void rope(const qr_model_config *c, double *v, int64_t pos)
{
    int64_t half = c->head_dim / 2;
    for (int64_t p = 0; p < half; p++) {
        double a = (double)pos * inv_freq(c, p), x0 = v[p], x1 = v[p + half];
        v[p] = x0 * cos(a) - x1 * sin(a);
        v[p + half] = x1 * cos(a) + x0 * sin(a);
    }
}

/* logits (n, vocab) of tokens (n) from position 0 */
static void reference(const qr_llama_weights *w, const int32_t *tok, int64_t n, double *logits)
{
    const qr_model_config *c = &w->cfg;
    int64_t D = c->dim, H = c->hidden_dim, hd = c->head_dim, qd = c->n_heads * hd,
            kvd = c->n_kv_heads * hd, V = c->vocab_size, group = c->n_heads / c->n_kv_heads;
    double *x = calloc((size_t)(n * D), sizeof *x), *xn = calloc((size_t)D, sizeof *xn);
    double *q = calloc((size_t)(n * qd), sizeof *q), *k = calloc((size_t)(n * kvd), sizeof *k);
    double *v = calloc((size_t)(n * kvd), sizeof *v), *att = calloc((size_t)qd, sizeof *att);
    double *o = calloc((size_t)D, sizeof *o), *g = calloc((size_t)H, sizeof *g);
    double *u = calloc((size_t)H, sizeof *u), *sc = calloc((size_t)n, sizeof *sc);
    for (int64_t t = 0; t < n; t++) {
        for (int64_t j = 0; j < D; j++) {
            x[t * D + j] = w->embedding[(int64_t)tok[t] * D + j];
        }
    }
    for (int64_t l = 0; l < c->n_layers; l++) {
        const qr_llama_layer *L = &w->layers[l];
        for (int64_t t = 0; t < n; t++) {
            rmsnorm(x + t * D, L->attn_norm, D, c->rms_eps, xn);
            matvec(L->q.W, L->bq, xn, qd, D, q + t * qd);
            matvec(L->k.W, L->bk, xn, kvd, D, k + t * kvd);
            matvec(L->v.W, L->bv, xn, kvd, D, v + t * kvd);
            for (int64_t h = 0; h < c->n_heads; h++) {
                rope(c, q + t * qd + h * hd, t);
            }
            for (int64_t h = 0; h < c->n_kv_heads; h++) {
                rope(c, k + t * kvd + h * hd, t);
            }
        }
        for (int64_t t = 0; t < n; t++) {
            for (int64_t h = 0; h < c->n_heads; h++) {
                const double *qh = q + t * qd + h * hd;
                int64_t kh = h / group;
                double mx = -1e300, sum = 0.0;
                for (int64_t s = 0; s <= t; s++) {
                    double d = 0.0;
                    for (int64_t e = 0; e < hd; e++) {
                        d += qh[e] * k[s * kvd + kh * hd + e];
                    }
                    sc[s] = d / sqrt((double)hd);
                    mx = sc[s] > mx ? sc[s] : mx;
                }
                for (int64_t s = 0; s <= t; s++) {
                    sc[s] = exp(sc[s] - mx);
                    sum += sc[s];
                }
                for (int64_t e = 0; e < hd; e++) {
                    double a = 0.0;
                    for (int64_t s = 0; s <= t; s++) {
                        a += sc[s] / sum * v[s * kvd + kh * hd + e];
                    }
                    att[h * hd + e] = a;
                }
            }
            matvec(L->o.W, NULL, att, D, qd, o);
            for (int64_t j = 0; j < D; j++) {
                x[t * D + j] += o[j];
            }
        }
        for (int64_t t = 0; t < n; t++) {
            rmsnorm(x + t * D, L->ffn_norm, D, c->rms_eps, xn);
            matvec(L->gate.W, NULL, xn, H, D, g);
            matvec(L->up.W, NULL, xn, H, D, u);
            for (int64_t j = 0; j < H; j++) {
                g[j] = g[j] / (1.0 + exp(-g[j])) * u[j];
            }
            matvec(L->down.W, NULL, g, D, H, o);
            for (int64_t j = 0; j < D; j++) {
                x[t * D + j] += o[j];
            }
        }
    }
    for (int64_t t = 0; t < n; t++) {
        rmsnorm(x + t * D, w->final_norm, D, c->rms_eps, xn);
        matvec(w->classifier.W, NULL, xn, V, D, logits + t * V);
    }
    free(x), free(xn), free(q), free(k), free(v), free(att), free(o), free(g), free(u), free(sc);
}

/* qrecon's logits of tokens, in blocks of `block` tokens through the KV cache. */
static int run(const qr_llama_weights *w, const int32_t *tok, int64_t n, int64_t block,
               float *logits)
{
    qr_llama_state *s = NULL;
    if (qr_llama_state_open(&w->cfg, block, n, &s) != QR_OK) {
        return -1;
    }
    for (int64_t p = 0; p < n; p += block) {
        int64_t m = n - p < block ? n - p : block;
        if (qr_llama_forward(w, s, tok + p, m, p, logits + p * w->cfg.vocab_size, NULL, NULL) !=
            QR_OK) {
            qr_llama_state_close(&s);
            return -1;
        }
    }
    qr_llama_state_close(&s);
    return 0;
}

/* Largest |a - b| over n, relative to the largest |b|; from row `from` on. */
static double rel_diff_f(const float *a, const double *b, int64_t n)
{
    double mx = 0.0, scale = 0.0;
    for (int64_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs(b[i]));
    }
    return mx / scale;
}

static int check(const char *name, bool bias, bool llama3, int64_t block)
{
    qr_model_config c;
    qr_llama_weights w;
    int32_t tok[N_TOK];
    float *got = NULL;
    double *ref = NULL, *ref_plain = NULL, d;
    qr_rng rng;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "%s", bias ? "qwen2" : "llama");
    c.dim = 64, c.hidden_dim = 96, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2;
    c.head_dim = 16, c.vocab_size = 97, c.max_seq_len = 64, c.rms_eps = 1e-6;
    c.rope_theta = llama3 ? 500000.0 : 1000000.0;
    c.attn_bias = bias;
    c.rope_style = QR_ROPE_HALF_SPLIT;
    if (llama3) {
        c.rope_scaling = (qr_rope_scaling){QR_ROPE_SCALING_LLAMA3, 8.0, 1.0, 4.0, 8192, "llama3"};
    }
    QR_REQUIRE(qr_llama_weights_alloc(&c, &w) == QR_OK, "%s", qr_errmsg());
    fill(&w, 7);
    if (bias) { /* biases as large as Qwen2's k bias */
        for (int64_t l = 0; l < c.n_layers; l++) {
            for (int64_t j = 0; j < c.n_heads * c.head_dim; j++) {
                w.layers[l].bq[j] *= 4.0f;
            }
            for (int64_t j = 0; j < c.n_kv_heads * c.head_dim; j++) {
                w.layers[l].bk[j] *= 4.0f;
                w.layers[l].bv[j] *= 4.0f;
            }
        }
    }
    qr_rng_seed(&rng, 11);
    for (int i = 0; i < N_TOK; i++) {
        tok[i] = (int32_t)(qr_rng_uniform(&rng) * (double)c.vocab_size);
    }
    got = calloc(N_TOK * (size_t)c.vocab_size, sizeof *got);
    ref = calloc(N_TOK * (size_t)c.vocab_size, sizeof *ref);
    ref_plain = calloc(N_TOK * (size_t)c.vocab_size, sizeof *ref_plain);
    QR_REQUIRE(got && ref && ref_plain, "out of memory");
    QR_REQUIRE(run(&w, tok, N_TOK, block, got) == 0, "forward: %s", qr_errmsg());
    reference(&w, tok, N_TOK, ref);
    d = rel_diff_f(got, ref, N_TOK * c.vocab_size);
    QR_EXPECT(d < TOL_REL, "%s: logits differ from the reference by %.3g (relative; tolerance %g)",
              name, d, TOL_REL);
    printf("%s: max relative logit difference to the reference %.3g (tolerance %g)\n", name, d,
           TOL_REL);
    /* the feature matters: the reference without it differs */
    {
        qr_llama_weights plain = w;
        qr_llama_layer *layers = calloc((size_t)c.n_layers, sizeof *layers);
        QR_REQUIRE(layers, "out of memory");
        memcpy(layers, w.layers, (size_t)c.n_layers * sizeof *layers);
        plain.layers = layers;
        if (bias) {
            for (int64_t l = 0; l < c.n_layers; l++) {
                layers[l].bq = layers[l].bk = layers[l].bv = NULL;
            }
        }
        if (llama3) {
            plain.cfg.rope_scaling.kind = QR_ROPE_SCALING_NONE;
        }
        reference(&plain, tok, N_TOK, ref_plain);
        /* from position 1 on (position 0 has no rotation) */
        d = 0.0;
        for (int64_t i = c.vocab_size; i < 2 * c.vocab_size; i++) {
            d = fmax(d, fabs(ref_plain[i] - ref[i]));
        }
        QR_EXPECT(d > CHANGED_REL,
                  "%s: the feature does not change the logits at position 1 "
                  "(max difference %.3g)",
                  name, d);
        free(layers);
    }
    free(got);
    free(ref);
    free(ref_plain);
    qr_llama_weights_free(&w);
    return qr_test_finish(name);
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";
    if (strcmp(c, "forward_qwen2") == 0) {
        return check("archs.forward_qwen2", true, false, N_TOK);
    }
    if (strcmp(c, "forward_llama3") == 0) {
        return check("archs.forward_llama3", false, true, N_TOK);
    }
    if (strcmp(c, "forward_both") == 0) {
        return check("archs.forward_both", true, true, 7);
    }
    fprintf(stderr, "unknown case %s\n", c);
    return 2;
}

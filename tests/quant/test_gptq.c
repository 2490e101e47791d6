/* test_gptq.c: GPTQ against RTN. Cases:
 *   real   every linear layer of the real stories260K model (read straight from the llama2.c file):
 *          GPTQ's output error ||(W - W^) Xᵀ||_F is <= RTN's. Inputs X (see below) come from real
 *          token ids of TinyStories text pushed through the model's own embedding and weights.
 *   synth  the same on synthetic correlated activations with outlier channels (ragged groups too)
 *   diag   with a diagonal H there is no error feedback, so GPTQ equals RTN bit for bit; a dead
 *          input channel (H_jj = 0) quantizes to zero without NaN
 *   ref    the blocked Cholesky implementation equals a plain serial reference (the original
 *          OBS update: explicit inverse, downdated after every column) code for code
 *
 * Activations for the real case: token ids from a greedy longest-match segmentation of the text
 * over the model's own vocabulary (tok512.bin; byte fallback ids 3..258), rows e = embedding[id].
 *   q/k/v:     RMSNorm(e) * attention_norm[L]            (exact for layer 0: the real input there)
 *   gate/up:   RMSNorm(e) * ffn_norm[L]
 *   down:      silu(w1 x) * (w3 x) with x the gate/up input (the real MLP hidden state of that x)
 *   o:         v = wv x of the attention input, each head reading its kv head (attention to self)
 * Deeper layers see the embedding instead of the residual stream, so these are realistic but not
 * the exact calibration inputs; the capture stage will provide those. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/quant.h"
#include "src/rng.h"
#include "tests/test_util.h"

/* GPTQ minimises exactly this error greedily; it may tie with RTN on a column but should never be
 * worse by more than rounding noise of the error sums themselves. */
#define GPTQ_VS_RTN_SLACK 1e-9
#define N_TOKENS 1024
#define RMS_EPS 1e-5

typedef struct {
    int32_t dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len;
} l2c_header;

/* ||E Xᵀ||_F for E = W - deq(q) (d_out, d_in), X (n, d_in). */
static double output_error(const double *W, const qr_qweight *q, const double *X, int64_t n)
{
    int64_t d_out = q->rows, d_in = q->cols;
    double *E = malloc((size_t)(d_out * d_in) * sizeof *E);
    double *Y = malloc((size_t)(n * d_out) * sizeof *Y);
    double s = 0.0;
    qr_qweight_dequantize_f64(q, E);
    for (int64_t k = 0; k < d_out * d_in; k++) {
        E[k] = W[k] - E[k];
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)d_out, (int)d_in, 1.0, X,
                (int)d_in, E, (int)d_in, 0.0, Y, (int)d_out);
    for (int64_t k = 0; k < n * d_out; k++) {
        s += Y[k] * Y[k];
    }
    free(E);
    free(Y);
    return sqrt(s);
}

/* Compare GPTQ and RTN on one layer for several settings; returns the summed errors. */
static void compare(const char *name, const double *W, int64_t d_out, int64_t d_in, const double *X,
                    int64_t n, double *sum_rtn, double *sum_gptq)
{
    static const int64_t groups[] = {32, 64, 0};
    double *H = calloc((size_t)(d_in * d_in), sizeof *H);
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, (int)d_in, (int)n, 1.0, X, (int)d_in, 0.0, H,
                (int)d_in);
    for (int64_t i = 0; i < d_in; i++) {
        for (int64_t j = i + 1; j < d_in; j++) {
            H[i * d_in + j] = H[j * d_in + i];
        }
    }
    for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++) {
        for (int asym = 0; asym <= 1; asym++) {
            qr_wquant_opts o;
            qr_qweight qr, qg;
            double er, eg;
            qr_wquant_opts_default(&o);
            o.group = groups[gi];
            o.asym = asym;
            if (qr_quantize_rtn(W, d_out, d_in, &o, NULL, &qr) != QR_OK ||
                qr_quantize_gptq(W, d_out, d_in, H, &o, &qg) != QR_OK) {
                QR_EXPECT(0, "%s: quantization failed: %s", name, qr_errmsg());
                free(H);
                return;
            }
            er = output_error(W, &qr, X, n);
            eg = output_error(W, &qg, X, n);
            QR_EXPECT(eg <= er * (1.0 + GPTQ_VS_RTN_SLACK),
                      "%s group %lld %s: GPTQ output error %.6e > RTN's %.6e", name,
                      (long long)groups[gi], asym ? "asym" : "sym", eg, er);
            *sum_rtn += er;
            *sum_gptq += eg;
            printf("%-28s group %3lld %-4s RTN %.4e GPTQ %.4e ratio %.3f\n", name,
                   (long long)groups[gi], asym ? "asym" : "sym", er, eg, eg / er);
            qr_qweight_free(&qr);
            qr_qweight_free(&qg);
        }
    }
    free(H);
}

/* Greedy longest-match token ids of `text` over the llama2.c vocabulary file. */
static int64_t tokenize(const char *tok_path, const char *text, int32_t vocab, int32_t *ids,
                        int64_t max_ids)
{
    FILE *f = fopen(tok_path, "rb");
    char **pieces = calloc((size_t)vocab, sizeof *pieces);
    int32_t *lens = calloc((size_t)vocab, sizeof *lens);
    int32_t max_len;
    int64_t n = 0;
    size_t pos = 0, tlen = strlen(text);
    int ok = f && fread(&max_len, 4, 1, f) == 1;
    for (int32_t i = 0; ok && i < vocab; i++) {
        float score;
        ok = fread(&score, 4, 1, f) == 1 && fread(&lens[i], 4, 1, f) == 1 && lens[i] >= 0 &&
             lens[i] < 4096;
        if (ok) {
            pieces[i] = calloc((size_t)lens[i] + 1, 1);
            ok = fread(pieces[i], 1, (size_t)lens[i], f) == (size_t)lens[i];
        }
    }
    while (ok && pos < tlen && n < max_ids) {
        int32_t best = (int32_t)(unsigned char)text[pos] + 3, best_len = 1;
        for (int32_t i = 259; i < vocab; i++) {
            if (lens[i] > best_len && (size_t)lens[i] <= tlen - pos &&
                memcmp(pieces[i], text + pos, (size_t)lens[i]) == 0) {
                best = i;
                best_len = lens[i];
            }
        }
        ids[n++] = best;
        pos += (size_t)best_len;
    }
    for (int32_t i = 0; i < vocab; i++) {
        free(pieces[i]);
    }
    free(pieces);
    free(lens);
    if (f) {
        fclose(f);
    }
    return ok ? n : -1;
}

static void rmsnorm_rows(const float *emb, const int32_t *ids, int64_t n, int64_t d,
                         const float *weight, double *X)
{
    for (int64_t t = 0; t < n; t++) {
        const float *e = emb + (int64_t)ids[t] * d;
        double ss = 0.0;
        for (int64_t j = 0; j < d; j++) {
            ss += (double)e[j] * e[j];
        }
        ss = 1.0 / sqrt(ss / (double)d + RMS_EPS);
        for (int64_t j = 0; j < d; j++) {
            X[t * d + j] = (double)e[j] * ss * weight[j];
        }
    }
}

/* x (n, d_in) -> x Wᵀ (n, d_out) */
static void linear(const double *X, int64_t n, const double *W, int64_t d_out, int64_t d_in,
                   double *Y)
{
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)d_out, (int)d_in, 1.0, X,
                (int)d_in, W, (int)d_in, 0.0, Y, (int)d_out);
}

static void to_f64(const float *src, int64_t n, double *dst)
{
    for (int64_t k = 0; k < n; k++) {
        dst[k] = (double)src[k];
    }
}

static int case_real(void)
{
    const char *data = qr_test_data_dir();
    char path[4096], tok_path[4096], text_path[4096];
    l2c_header h;
    FILE *f;
    long fsize;
    float *all = NULL;
    char text[16384];
    int32_t ids[N_TOKENS];
    int64_t n;
    double sum_rtn = 0.0, sum_gptq = 0.0;
    if (!data) {
        return 77;
    }
    snprintf(path, sizeof path, "%s/models/stories260K/llama2c/stories260K.bin", data);
    snprintf(tok_path, sizeof tok_path, "%s/models/stories260K/llama2c/tok512.bin", data);
    snprintf(text_path, sizeof text_path, "%s/text/tinystories_train_sample.txt", data);
    f = fopen(path, "rb");
    QR_REQUIRE(f != NULL, "%s: cannot open", path);
    QR_REQUIRE(fread(&h, sizeof h, 1, f) == 1, "%s: short header", path);
    fseek(f, 0, SEEK_END);
    fsize = ftell(f);
    fseek(f, (long)sizeof h, SEEK_SET);
    all = malloc((size_t)fsize);
    size_t nfloats = fread(all, 4, (size_t)(fsize - (long)sizeof h) / 4, f);
    fclose(f);
    QR_REQUIRE(h.dim == 64 && h.hidden == 172 && h.n_layers == 5 && h.n_heads == 8 &&
                   h.n_kv_heads == 4 && h.vocab == 512,
               "%s: unexpected header %d %d %d %d %d %d", path, h.dim, h.hidden, h.n_layers,
               h.n_heads, h.n_kv_heads, h.vocab);
    {
        int64_t D = h.dim, H = h.hidden, L = h.n_layers, V = h.vocab;
        int64_t hd = D / h.n_heads, KV = h.n_kv_heads * hd, rep = h.n_heads / h.n_kv_heads;
        const float *emb = all, *rms_att = emb + V * D, *wq = rms_att + L * D;
        const float *wk = wq + L * D * D, *wv = wk + L * KV * D, *wo = wv + L * KV * D;
        const float *rms_ffn = wo + L * D * D, *w1 = rms_ffn + L * D, *w2 = w1 + L * H * D;
        const float *w3 = w2 + L * D * H;
        QR_REQUIRE((size_t)(w3 + L * H * D + D - all) <= nfloats, "%s: file too short", path);
        f = fopen(text_path, "rb");
        QR_REQUIRE(f != NULL, "%s: cannot open", text_path);
        size_t tl = fread(text, 1, sizeof text - 1, f);
        text[tl] = '\0';
        fclose(f);
        n = tokenize(tok_path, text, h.vocab, ids, N_TOKENS);
        QR_REQUIRE(n == N_TOKENS, "%s: tokenized %lld tokens (expected %d)", tok_path, (long long)n,
                   N_TOKENS);
        double *Xa = malloc((size_t)(n * D) * sizeof *Xa), *Xm = malloc((size_t)(n * D) * 8);
        double *Xo = malloc((size_t)(n * D) * 8), *Xd = malloc((size_t)(n * H) * 8);
        double *Vv = malloc((size_t)(n * KV) * 8), *G1 = malloc((size_t)(n * H) * 8);
        double *W = malloc((size_t)(H * D) * 8), *W2 = malloc((size_t)(H * D) * 8);
        for (int64_t l = 0; l < L; l++) {
            char name[64];
            rmsnorm_rows(emb, ids, n, D, rms_att + l * D, Xa);
            rmsnorm_rows(emb, ids, n, D, rms_ffn + l * D, Xm);
            to_f64(wq + l * D * D, D * D, W);
            snprintf(name, sizeof name, "layers.%lld.wq", (long long)l);
            compare(name, W, D, D, Xa, n, &sum_rtn, &sum_gptq);
            to_f64(wk + l * KV * D, KV * D, W);
            snprintf(name, sizeof name, "layers.%lld.wk", (long long)l);
            compare(name, W, KV, D, Xa, n, &sum_rtn, &sum_gptq);
            to_f64(wv + l * KV * D, KV * D, W);
            snprintf(name, sizeof name, "layers.%lld.wv", (long long)l);
            compare(name, W, KV, D, Xa, n, &sum_rtn, &sum_gptq);
            linear(Xa, n, W, KV, D, Vv);
            for (int64_t t = 0; t < n; t++) {
                for (int64_t hh = 0; hh < h.n_heads; hh++) {
                    memcpy(Xo + t * D + hh * hd, Vv + t * KV + (hh / rep) * hd,
                           (size_t)hd * sizeof *Xo);
                }
            }
            to_f64(wo + l * D * D, D * D, W);
            snprintf(name, sizeof name, "layers.%lld.wo", (long long)l);
            compare(name, W, D, D, Xo, n, &sum_rtn, &sum_gptq);
            to_f64(w1 + l * H * D, H * D, W);
            snprintf(name, sizeof name, "layers.%lld.w1", (long long)l);
            compare(name, W, H, D, Xm, n, &sum_rtn, &sum_gptq);
            linear(Xm, n, W, H, D, G1);
            to_f64(w3 + l * H * D, H * D, W2);
            snprintf(name, sizeof name, "layers.%lld.w3", (long long)l);
            compare(name, W2, H, D, Xm, n, &sum_rtn, &sum_gptq);
            linear(Xm, n, W2, H, D, Xd);
            for (int64_t k = 0; k < n * H; k++) {
                Xd[k] *= G1[k] / (1.0 + exp(-G1[k]));
            }
            to_f64(w2 + l * D * H, D * H, W);
            snprintf(name, sizeof name, "layers.%lld.w2", (long long)l);
            compare(name, W, D, H, Xd, n, &sum_rtn, &sum_gptq);
        }
        printf("all layers and settings: RTN %.4e GPTQ %.4e (ratio %.3f)\n", sum_rtn, sum_gptq,
               sum_gptq / sum_rtn);
        /* Measured ratio 0.57: a GPTQ that silently degrades to RTN (no feedback) fails here. */
        QR_EXPECT(sum_gptq < 0.9 * sum_rtn, "GPTQ gains less than 10%% over RTN (%.4e vs %.4e)",
                  sum_gptq, sum_rtn);
        free(Xa);
        free(Xm);
        free(Xo);
        free(Xd);
        free(Vv);
        free(G1);
        free(W);
        free(W2);
    }
    free(all);
    return 0;
}

/* X (n, d): Gaussian factors mixed through a random matrix with a strong common component, then
 * per-channel log-normal scales (a few outlier channels). */
static void correlated(qr_rng *rng, double *X, int64_t n, int64_t d)
{
    double *M = calloc((size_t)(d * d), sizeof *M);
    double *Z = calloc((size_t)(n * d), sizeof *Z);
    double *u = malloc((size_t)d * sizeof *u);
    for (int64_t j = 0; j < d; j++) {
        u[j] = qr_rng_normal(rng);
    }
    for (int64_t i = 0; i < d; i++) {
        for (int64_t j = 0; j < d; j++) {
            M[i * d + j] = qr_rng_normal(rng) / sqrt((double)d) + 0.5 * u[i] * u[j] / sqrt(d);
        }
    }
    for (int64_t k = 0; k < n * d; k++) {
        Z[k] = qr_rng_normal(rng);
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)d, (int)d, 1.0, Z, (int)d,
                M, (int)d, 0.0, X, (int)d);
    for (int64_t j = 0; j < d; j++) {
        double s = exp(0.8 * qr_rng_normal(rng));
        for (int64_t t = 0; t < n; t++) {
            X[t * d + j] *= s;
        }
    }
    free(M);
    free(Z);
    free(u);
}

static int case_synth(qr_rng *rng)
{
    static const int64_t shapes[][2] = {{96, 172}, {128, 256}, {64, 300}, {200, 130}};
    double sum_rtn = 0.0, sum_gptq = 0.0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t d_out = shapes[s][0], d_in = shapes[s][1], n = 3 * d_in;
        double *W = malloc((size_t)(d_out * d_in) * sizeof *W);
        double *X = malloc((size_t)(n * d_in) * sizeof *X);
        char name[64];
        for (int64_t k = 0; k < d_out * d_in; k++) {
            W[k] = 0.02 * qr_rng_normal(rng);
        }
        correlated(rng, X, n, d_in);
        snprintf(name, sizeof name, "synthetic %lldx%lld", (long long)d_out, (long long)d_in);
        compare(name, W, d_out, d_in, X, n, &sum_rtn, &sum_gptq);
        free(W);
        free(X);
    }
    printf("synthetic: RTN %.4e GPTQ %.4e (ratio %.3f)\n", sum_rtn, sum_gptq, sum_gptq / sum_rtn);
    /* On strongly correlated inputs GPTQ must win clearly, or the feedback is not working. */
    QR_EXPECT(sum_gptq < 0.9 * sum_rtn, "GPTQ gains less than 10%% over RTN (%.4e vs %.4e)",
              sum_gptq, sum_rtn);
    return 0;
}

static int case_diag(qr_rng *rng)
{
    const int64_t d_out = 40, d_in = 300;
    double *W = malloc((size_t)(d_out * d_in) * sizeof *W);
    double *H = calloc((size_t)(d_in * d_in), sizeof *H);
    double *D = malloc((size_t)(d_out * d_in) * sizeof *D);
    for (int64_t k = 0; k < d_out * d_in; k++) {
        W[k] = qr_rng_normal(rng);
    }
    for (int64_t j = 0; j < d_in; j++) {
        H[j * d_in + j] = 0.5 + qr_rng_uniform(rng);
    }
    for (int asym = 0; asym <= 1; asym++) {
        qr_wquant_opts o;
        qr_qweight a, b;
        qr_wquant_opts_default(&o);
        o.group = 64;
        o.asym = asym;
        QR_REQUIRE(qr_quantize_rtn(W, d_out, d_in, &o, NULL, &a) == QR_OK, "%s", qr_errmsg());
        QR_REQUIRE(qr_quantize_gptq(W, d_out, d_in, H, &o, &b) == QR_OK, "%s", qr_errmsg());
        QR_EXPECT(memcmp(a.packed, b.packed, (size_t)(d_out * qr_qweight_row_bytes(&a))) == 0,
                  "%s: GPTQ with a diagonal H differs from RTN", asym ? "asym" : "sym");
        QR_EXPECT(memcmp(a.scales, b.scales, (size_t)(d_out * a.n_groups) * sizeof(float)) == 0,
                  "%s: GPTQ scales with a diagonal H differ from RTN's", asym ? "asym" : "sym");
        qr_qweight_free(&a);
        qr_qweight_free(&b);
    }
    /* Dead input channel 7 (and a correlated H elsewhere). */
    {
        int64_t n = 2 * d_in;
        double *X = malloc((size_t)(n * d_in) * sizeof *X);
        qr_wquant_opts o;
        qr_qweight q;
        correlated(rng, X, n, d_in);
        for (int64_t t = 0; t < n; t++) {
            X[t * d_in + 7] = 0.0;
        }
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d_in, (int)d_in, (int)n, 1.0, X,
                    (int)d_in, X, (int)d_in, 0.0, H, (int)d_in);
        qr_wquant_opts_default(&o);
        QR_REQUIRE(qr_quantize_gptq(W, d_out, d_in, H, &o, &q) == QR_OK, "%s", qr_errmsg());
        qr_qweight_dequantize_f64(&q, D);
        for (int64_t k = 0; k < d_out * d_in; k++) {
            QR_EXPECT(isfinite(D[k]), "element %lld is %g", (long long)k, D[k]);
        }
        for (int64_t i = 0; i < d_out; i++) {
            QR_EXPECT(D[i * d_in + 7] == 0.0, "dead column 7, row %lld: %g (expected 0)",
                      (long long)i, D[i * d_in + 7]);
        }
        qr_qweight_free(&q);
        H[3 * d_in + 3] = NAN;
        QR_EXPECT(qr_quantize_gptq(W, d_out, d_in, H, &o, &q) == QR_ERR_INPUT,
                  "a NaN in H was accepted");
        free(X);
    }
    free(W);
    free(H);
    free(D);
    return 0;
}

/* Plain serial GPTQ: explicit inverse of the damped H, one column at a time, the inverse
 * downdated by the eliminated column (Frantar et al., eq. 3-4), no blocks, no Cholesky. W (d_out,
 * d_in) is updated in place; the codes and scales go to q (allocated by the caller). */
static void gptq_reference(double *W, int64_t d_out, int64_t d_in, const double *H, int64_t group,
                           qr_qweight *q)
{
    double *Hi = malloc((size_t)(d_in * 2 * d_in) * sizeof *Hi); /* [H + lambda I | I] */
    double mean = 0.0;
    int64_t w2 = 2 * d_in;
    for (int64_t j = 0; j < d_in; j++) {
        mean += H[j * d_in + j] / (double)d_in;
    }
    for (int64_t i = 0; i < d_in; i++) {
        for (int64_t j = 0; j < d_in; j++) {
            Hi[i * w2 + j] = H[i * d_in + j] + (i == j ? QR_GPTQ_DAMP_DEFAULT * mean : 0.0);
            Hi[i * w2 + d_in + j] = (i == j) ? 1.0 : 0.0;
        }
    }
    for (int64_t c = 0; c < d_in; c++) { /* Gauss-Jordan; SPD, so no pivoting is needed */
        double p = Hi[c * w2 + c];
        for (int64_t j = 0; j < w2; j++) {
            Hi[c * w2 + j] /= p;
        }
        for (int64_t i = 0; i < d_in; i++) {
            double f = Hi[i * w2 + c];
            if (i != c && f != 0.0) {
                for (int64_t j = 0; j < w2; j++) {
                    Hi[i * w2 + j] -= f * Hi[c * w2 + j];
                }
            }
        }
    }
    for (int64_t i = 0; i < d_in; i++) { /* Hi (d_in, d_in) := H^-1, compacted */
        memmove(Hi + i * d_in, Hi + i * w2 + d_in, (size_t)d_in * sizeof *Hi);
    }
    for (int64_t c = 0; c < d_in; c++) {
        int64_t g = c / group;
        double hcc = Hi[c * d_in + c];
        for (int64_t r = 0; r < d_out; r++) {
            float s;
            unsigned z, code;
            double err;
            if (c % group == 0) {
                int64_t n = (c + group <= d_in) ? group : d_in - c;
                qr_wquant_group_params(W + r * d_in + c, n, q->asym, 1.0, &s, &z);
                q->scales[r * q->n_groups + g] = s;
                if (q->asym) {
                    q->zeros[r * q->n_groups + g] = (uint8_t)z;
                }
            }
            s = q->scales[r * q->n_groups + g];
            z = q->asym ? q->zeros[r * q->n_groups + g] : 8;
            code = qr_wquant_code(W[r * d_in + c], s, z, q->asym);
            qr_qweight_set_code(q, r, c, code);
            err = (W[r * d_in + c] - qr_wquant_decode(code, s, z, q->asym)) / hcc;
            for (int64_t j = c + 1; j < d_in; j++) {
                W[r * d_in + j] -= err * Hi[c * d_in + j];
            }
        }
        /* Eliminate column c from the inverse: H^-1 <- H^-1 - H^-1[:, c] H^-1[c, :] / H^-1_cc. */
        for (int64_t i = c + 1; i < d_in; i++) {
            double f = Hi[i * d_in + c] / hcc;
            for (int64_t j = c + 1; j < d_in; j++) {
                Hi[i * d_in + j] -= f * Hi[c * d_in + j];
            }
        }
    }
    free(Hi);
}

static int case_ref(qr_rng *rng)
{
    /* d_in 200: two column blocks (128 + 72) and groups of 64 with a ragged last group of 8.
     * Groups of 64 tile the blocks, so the blocked code sees exactly the reference's weights at
     * every group start. */
    const int64_t d_out = 24, d_in = 200, n = 600, group = 64;
    double *W = malloc((size_t)(d_out * d_in) * sizeof *W);
    double *Wr = malloc((size_t)(d_out * d_in) * sizeof *Wr);
    double *X = malloc((size_t)(n * d_in) * sizeof *X);
    double *H = calloc((size_t)(d_in * d_in), sizeof *H);
    for (int64_t k = 0; k < d_out * d_in; k++) {
        W[k] = 0.02 * qr_rng_normal(rng);
    }
    correlated(rng, X, n, d_in);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)d_in, (int)d_in, (int)n, 1.0, X,
                (int)d_in, X, (int)d_in, 0.0, H, (int)d_in);
    for (int asym = 0; asym <= 1; asym++) {
        qr_wquant_opts o;
        qr_qweight fast, ref;
        int64_t diff = 0;
        qr_wquant_opts_default(&o);
        o.group = group;
        o.asym = asym;
        QR_REQUIRE(qr_quantize_gptq(W, d_out, d_in, H, &o, &fast) == QR_OK, "%s", qr_errmsg());
        QR_REQUIRE(qr_qweight_alloc(&ref, d_out, d_in, group, asym) == QR_OK, "%s", qr_errmsg());
        memcpy(Wr, W, (size_t)(d_out * d_in) * sizeof *W);
        gptq_reference(Wr, d_out, d_in, H, group, &ref);
        for (int64_t i = 0; i < d_out; i++) {
            for (int64_t j = 0; j < d_in; j++) {
                diff += qr_qweight_get_code(&fast, i, j) != qr_qweight_get_code(&ref, i, j);
            }
        }
        QR_EXPECT(diff == 0, "%s: %lld of %lld codes differ from the serial reference",
                  asym ? "asym" : "sym", (long long)diff, (long long)(d_out * d_in));
        for (int64_t k = 0; k < d_out * fast.n_groups; k++) {
            QR_EXPECT(fabsf(fast.scales[k] - ref.scales[k]) <= 1e-6f * ref.scales[k],
                      "%s: scale %lld is %.9g (reference %.9g)", asym ? "asym" : "sym",
                      (long long)k, fast.scales[k], ref.scales[k]);
        }
        qr_qweight_free(&fast);
        qr_qweight_free(&ref);
    }
    free(W);
    free(Wr);
    free(X);
    free(H);
    return 0;
}

int main(int argc, char **argv)
{
    qr_rng rng;
    const char *which = argc > 1 ? argv[1] : "";
    int rc;
    qr_rng_seed(&rng, 4242);
    if (strcmp(which, "real") == 0) {
        rc = case_real();
    } else if (strcmp(which, "synth") == 0) {
        rc = case_synth(&rng);
    } else if (strcmp(which, "diag") == 0) {
        rc = case_diag(&rng);
    } else if (strcmp(which, "ref") == 0) {
        rc = case_ref(&rng);
    } else {
        fprintf(stderr, "usage: %s real|synth|diag|ref\n", argv[0]);
        return 2;
    }
    return rc ? rc : qr_test_finish(which);
}

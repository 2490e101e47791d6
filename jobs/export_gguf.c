/* export_gguf.c: `qrecon export --format gguf`: model.gguf and lora.gguf for llama.cpp
 * (docs/export.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "io/gguf_write.h"
#include "jobs/export.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/dtype.h"
#include "src/log.h"

/* ggml's llama_ftype values for general.file_type. */
#define QR_FTYPE_ALL_F32 0
#define QR_FTYPE_MOSTLY_Q4_0 2
#define QR_FTYPE_MOSTLY_Q4_1 3

static const char *const gguf_module_names[QR_MOD_KIND_COUNT] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

/* How one module is written. */
typedef struct {
    qr_ggml_type type;
    int64_t rank; /* correction rank (0 = none) */
} mod_plan;

static qr_status put_f32(qr_gguf *g, const float *v, size_t n)
{
    return qr_gguf_put(g, v, n * sizeof *v);
}

/* Write a non-quantized tensor `hf_name` of rows x cols as F32. */
static qr_status write_float_tensor(qr_export *e, qr_gguf *g, const char *hf_name, int64_t rows,
                                    int64_t cols)
{
    qr_status st = QR_OK;
    float *v = NULL;
    size_t n;
    if (!qr_mul_size((size_t)rows, (size_t)cols, &n)) {
        return qr_fail(QR_ERR_INPUT, "%s: tensor size overflows", hf_name);
    }
    QR_TRY(qr_malloc(&v, n, sizeof *v, hf_name));
    QR_CHECK(qr_export_tensor(e, hf_name, v, n));
    QR_CHECK(put_f32(g, v, n));
done:
    free(v);
    return st;
}

/* The tokenizer as a llama (SentencePiece) vocabulary: pieces with ' ' as U+2581, "<s>" / "</s>"
 * for ids 1 and 2 (tokenizer.bin stores them as "\n<s>\n" / "\n</s>\n"), scores unchanged, types
 * 2 (<unk>), 3 (control), 6 (byte), 1 (normal). */
static qr_status add_vocab(qr_export *e, qr_gguf *g)
{
    qr_status st = QR_OK;
    int64_t n = e->cfg.vocab_size;
    char **pieces = NULL;
    size_t *lens = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    QR_CHECK(qr_calloc(&pieces, (size_t)n, sizeof *pieces, "vocabulary"));
    QR_CHECK(qr_calloc(&lens, (size_t)n, sizeof *lens, "vocabulary"));
    QR_CHECK(qr_calloc(&scores, (size_t)n, sizeof *scores, "vocabulary"));
    QR_CHECK(qr_calloc(&types, (size_t)n, sizeof *types, "vocabulary"));
    for (int64_t i = 0; i < n; i++) {
        size_t len = 0, k = 0;
        const char *p = qr_tokenizer_piece(e->tok, (int32_t)i, &len);
        QR_CHECK(qr_malloc(&pieces[i], 3 * len + 8, 1, "vocabulary piece"));
        scores[i] = qr_tokenizer_score(e->tok, (int32_t)i);
        types[i] = 1;
        if (i == QR_TOKEN_UNK) {
            types[i] = 2;
        } else if (i == QR_TOKEN_BOS || i == QR_TOKEN_EOS) {
            types[i] = 3;
            k = (size_t)sprintf(pieces[i], "%s", i == QR_TOKEN_BOS ? "<s>" : "</s>");
        } else if (len == 6 && strncmp(p, "<0x", 3) == 0 && p[5] == '>') {
            types[i] = 6;
        }
        if (k == 0) {
            for (size_t j = 0; j < len; j++) {
                if (p[j] == ' ') {
                    memcpy(pieces[i] + k, "\xe2\x96\x81", 3);
                    k += 3;
                } else {
                    pieces[i][k++] = p[j];
                }
            }
        }
        lens[i] = k;
    }
    QR_CHECK(qr_gguf_kv_str(g, "tokenizer.ggml.model", "llama"));
    QR_CHECK(qr_gguf_kv_str_array(g, "tokenizer.ggml.tokens", (size_t)n,
                                  (const char *const *)pieces, lens));
    QR_CHECK(qr_gguf_kv_f32_array(g, "tokenizer.ggml.scores", (size_t)n, scores));
    QR_CHECK(qr_gguf_kv_i32_array(g, "tokenizer.ggml.token_type", (size_t)n, types));
    QR_CHECK(qr_gguf_kv_u32(g, "tokenizer.ggml.unknown_token_id", QR_TOKEN_UNK));
    QR_CHECK(qr_gguf_kv_u32(g, "tokenizer.ggml.bos_token_id", QR_TOKEN_BOS));
    QR_CHECK(qr_gguf_kv_u32(g, "tokenizer.ggml.eos_token_id", QR_TOKEN_EOS));
    QR_CHECK(qr_gguf_kv_bool(g, "tokenizer.ggml.add_bos_token", 1));
    QR_CHECK(qr_gguf_kv_bool(g, "tokenizer.ggml.add_eos_token", 0));
done:
    for (int64_t i = 0; pieces && i < n; i++) {
        free(pieces[i]);
    }
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    return st;
}

static qr_status add_arch(qr_export *e, qr_gguf *g, int file_type)
{
    const qr_model_config *c = &e->cfg;
    char name[4608];
    snprintf(name, sizeof name, "qrecon %.64s export of %.4096s", e->method, e->model_path);
    QR_TRY(qr_gguf_kv_str(g, "general.architecture", "llama"));
    QR_TRY(qr_gguf_kv_str(g, "general.name", name));
    QR_TRY(qr_gguf_kv_u32(g, "general.alignment", QR_GGUF_ALIGNMENT));
    QR_TRY(qr_gguf_kv_u32(g, "general.file_type", (uint32_t)file_type));
    QR_TRY(qr_gguf_kv_u32(g, "llama.vocab_size", (uint32_t)c->vocab_size));
    QR_TRY(qr_gguf_kv_u32(g, "llama.context_length", (uint32_t)c->max_seq_len));
    QR_TRY(qr_gguf_kv_u32(g, "llama.embedding_length", (uint32_t)c->dim));
    QR_TRY(qr_gguf_kv_u32(g, "llama.block_count", (uint32_t)c->n_layers));
    QR_TRY(qr_gguf_kv_u32(g, "llama.feed_forward_length", (uint32_t)c->hidden_dim));
    QR_TRY(qr_gguf_kv_u32(g, "llama.rope.dimension_count", (uint32_t)c->head_dim));
    QR_TRY(qr_gguf_kv_u32(g, "llama.attention.head_count", (uint32_t)c->n_heads));
    QR_TRY(qr_gguf_kv_u32(g, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads));
    QR_TRY(qr_gguf_kv_u32(g, "llama.attention.key_length", (uint32_t)c->head_dim));
    QR_TRY(qr_gguf_kv_u32(g, "llama.attention.value_length", (uint32_t)c->head_dim));
    QR_TRY(qr_gguf_kv_f32(g, "llama.attention.layer_norm_rms_epsilon", (float)c->rms_eps));
    QR_TRY(qr_gguf_kv_f32(g, "llama.rope.freq_base", (float)c->rope_theta));
    return QR_OK;
}

/* The largest |W| of q and the largest change the F16 rounding of its scales (and of Q4_1's
 * minimum) makes to a weight, per group with the values of its codes. */
static qr_status scale_rounding(const qr_export *e, const qr_module *m, const qr_qweight *q,
                                double *wmax, double *dmax)
{
    for (int64_t r = 0; r < q->rows; r++) {
        for (int64_t g = 0; g < q->n_groups; g++) {
            double s = q->scales[r * q->n_groups + g];
            double z = q->asym ? q->zeros[r * q->n_groups + g] : 8.0;
            int64_t j0 = g * q->group, j1 = j0 + q->group < q->cols ? j0 + q->group : q->cols;
            double d16 = qr_gguf_q4_value(q, r, j0), c0 = qr_qweight_get_code(q, r, j0);
            /* value(code) = s16 * code + b16 in both forms: recover s16 and b16 from two codes */
            double s16 = qr_f16_to_f32(qr_f32_to_f16((float)s));
            double b16 = d16 - s16 * c0;
            if (!isfinite(s16) || !isfinite(b16)) {
                return qr_fail(QR_ERR_INPUT,
                               "%s: module '%s' row %lld: a scale outside F16's range (expected "
                               "|scale| and |scale * zero| below 65504)",
                               e->ckpt_path, m->name, (long long)r);
            }
            for (int64_t j = j0; j < j1; j++) {
                double c = qr_qweight_get_code(q, r, j), w = s * (c - z);
                *wmax = fmax(*wmax, fabs(w));
                *dmax = fmax(*dmax, fabs(w - (s16 * c + b16)));
            }
        }
    }
    return QR_OK;
}

/* Decide every module's type (and check that it exports) from the checkpoint; collect the figures
 * of the F16 scale rounding. */
static qr_status plan_modules(qr_export *e, mod_plan *plan, int *file_type)
{
    qr_status st = QR_OK;
    qr_qlayer ql;
    bool any_q4_0 = false, any_q4_1 = false;
    memset(&ql, 0, sizeof ql);
    for (size_t i = 0; i < e->n_mods; i++) {
        const qr_module *m = &e->mods[i];
        const char *why;
        plan[i].type = QR_GGML_F32;
        plan[i].rank = 0;
        if (!e->ckpt) {
            continue;
        }
        QR_CHECK(qr_export_module(e, i, &ql));
        why = qr_export_unsupported(&ql);
        if (why) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: module '%s' has %s, which GGUF cannot hold: checkpoints of rtn, "
                         "gptq, lqer, qera-approx, qera-exact, flrq and srr export",
                         e->ckpt_path, m->name, why);
            goto done;
        }
        plan[i].rank = ql.rank;
        if (ql.rank > 0) {
            e->n_lora++;
            if ((double)ql.rank > e->lora_max_rank) {
                e->lora_max_rank = (double)ql.rank;
            }
        }
        if (ql.main.group == QR_GGML_QK && ql.main.cols % QR_GGML_QK == 0) {
            double wmax = 0.0, dmax = 0.0;
            plan[i].type = ql.main.asym ? QR_GGML_Q4_1 : QR_GGML_Q4_0;
            QR_CHECK(scale_rounding(e, m, &ql.main, &wmax, &dmax));
            e->scale_f16_max_abs = fmax(e->scale_f16_max_abs, dmax);
            if (wmax > 0) {
                e->scale_f16_max_rel = fmax(e->scale_f16_max_rel, dmax / wmax);
            }
            any_q4_0 |= !ql.main.asym;
            any_q4_1 |= ql.main.asym;
            if (e->dequant != QR_EXPORT_PACKED) {
                plan[i].type = QR_GGML_F32;
            }
        } else {
            size_t k = strlen(e->fallback_names);
            e->n_fallback++;
            if (e->n_fallback <= 2) {
                snprintf(e->fallback_names + k, sizeof e->fallback_names - k, "%s%s", k ? ", " : "",
                         m->name);
            } else if (e->n_fallback == 3) {
                snprintf(e->fallback_names + k, sizeof e->fallback_names - k, ", ...");
            }
        }
        qr_qlayer_free(&ql);
    }
    *file_type = any_q4_1   ? QR_FTYPE_MOSTLY_Q4_1
                 : any_q4_0 ? QR_FTYPE_MOSTLY_Q4_0
                            : QR_FTYPE_ALL_F32;
    if (e->dequant != QR_EXPORT_PACKED) {
        *file_type = QR_FTYPE_ALL_F32;
    }
done:
    qr_qlayer_free(&ql);
    return st;
}

/* Module i's weight in GGUF row order (q/k rows of a Hugging Face model permuted back to
 * adjacent RoPE pairs) as plan[i].type. */
static qr_status write_module(qr_export *e, qr_gguf *g, size_t i, const mod_plan *plan)
{
    qr_status st = QR_OK;
    const qr_module *m = &e->mods[i];
    qr_qlayer ql;
    float *W = NULL; /* (d_out, d_in): float export or dense fallback */
    uint8_t *blocks = NULL;
    size_t n, rb;
    memset(&ql, 0, sizeof ql);
    if (!qr_mul_size((size_t)m->d_out, (size_t)m->d_in, &n)) {
        return qr_fail(QR_ERR_INPUT, "%s: module size overflows", m->name);
    }
    if (!e->ckpt) {
        char name[QR_MODULE_NAME_MAX + 16];
        snprintf(name, sizeof name, "%s.weight", m->name);
        QR_CHECK(qr_malloc(&W, n, sizeof *W, name));
        QR_CHECK(qr_model_read_f32(e->model, name, W, n));
    } else {
        QR_CHECK(qr_export_module(e, i, &ql));
        if (plan[i].type == QR_GGML_F32) {
            QR_CHECK(qr_malloc(&W, n, sizeof *W, m->name));
            if (e->dequant == QR_EXPORT_DEQUANT_F16 && ql.main.group == QR_GGML_QK &&
                ql.main.cols % QR_GGML_QK == 0) {
                for (int64_t r = 0; r < m->d_out; r++) {
                    for (int64_t j = 0; j < m->d_in; j++) {
                        W[r * m->d_in + j] = (float)qr_gguf_q4_value(&ql.main, r, j);
                    }
                }
            } else {
                qr_qweight_dequantize(&ql.main, W);
            }
        }
    }
    if (W) {
        for (int64_t r = 0; r < m->d_out; r++) {
            int64_t s = qr_export_qk_row(&e->cfg, m->kind, r);
            QR_CHECK(put_f32(g, W + s * m->d_in, (size_t)m->d_in));
        }
    } else {
        rb = qr_ggml_row_size(plan[i].type, m->d_in);
        QR_CHECK(qr_malloc(&blocks, rb, 1, m->name));
        for (int64_t r = 0; r < m->d_out; r++) {
            qr_gguf_encode_q4_row(&ql.main, qr_export_qk_row(&e->cfg, m->kind, r), blocks);
            QR_CHECK(qr_gguf_put(g, blocks, rb));
        }
    }
done:
    free(W);
    free(blocks);
    qr_qlayer_free(&ql);
    return st;
}

static qr_status write_model(qr_export *e, const mod_plan *plan, int file_type, uint64_t *bytes)
{
    qr_status st = QR_OK;
    const qr_model_config *c = &e->cfg;
    qr_gguf *g = NULL;
    char path[4096], name[160];
    size_t n_tensors = 0;
    QR_TRY(qr_fs_join(path, sizeof path, e->out_dir, "model.gguf"));
    QR_TRY(qr_gguf_open(path, &g));
    QR_CHECK(add_arch(e, g, file_type));
    QR_CHECK(qr_gguf_kv_str(g, "qrecon.method", e->method));
    if (e->ckpt_path) {
        QR_CHECK(qr_gguf_kv_str(g, "qrecon.checkpoint", e->ckpt_path));
    }
    QR_CHECK(add_vocab(e, g));
    /* tensor infos, in the order the data follow */
    QR_CHECK(qr_gguf_add_tensor(g, "token_embd.weight", QR_GGML_F32, 2, c->dim, c->vocab_size));
    for (int64_t l = 0; l < c->n_layers; l++) {
        snprintf(name, sizeof name, "blk.%lld.attn_norm.weight", (long long)l);
        QR_CHECK(qr_gguf_add_tensor(g, name, QR_GGML_F32, 1, c->dim, 1));
        snprintf(name, sizeof name, "blk.%lld.ffn_norm.weight", (long long)l);
        QR_CHECK(qr_gguf_add_tensor(g, name, QR_GGML_F32, 1, c->dim, 1));
        for (size_t i = (size_t)l * QR_MOD_KIND_COUNT; i < (size_t)(l + 1) * QR_MOD_KIND_COUNT;
             i++) {
            const qr_module *m = &e->mods[i];
            snprintf(name, sizeof name, "blk.%lld.%s.weight", (long long)l,
                     gguf_module_names[m->kind]);
            QR_CHECK(qr_gguf_add_tensor(g, name, plan[i].type, 2, m->d_in, m->d_out));
        }
    }
    QR_CHECK(qr_gguf_add_tensor(g, "output_norm.weight", QR_GGML_F32, 1, c->dim, 1));
    if (!c->tied_embeddings) {
        QR_CHECK(qr_gguf_add_tensor(g, "output.weight", QR_GGML_F32, 2, c->dim, c->vocab_size));
    }
    n_tensors = 2 + (size_t)c->n_layers * (2 + QR_MOD_KIND_COUNT) + (c->tied_embeddings ? 0 : 1);
    e->prog = qr_progress_begin("export", (int64_t)n_tensors, "tensors");
    QR_CHECK(qr_gguf_begin_data(g));
    QR_CHECK(write_float_tensor(e, g, "model.embed_tokens.weight", c->vocab_size, c->dim));
    qr_progress_step(e->prog, "model.embed_tokens.weight", 1.0, "F32");
    for (int64_t l = 0; l < c->n_layers; l++) {
        snprintf(name, sizeof name, "model.layers.%lld.input_layernorm.weight", (long long)l);
        QR_CHECK(write_float_tensor(e, g, name, 1, c->dim));
        qr_progress_step(e->prog, name, 1.0, "F32");
        snprintf(name, sizeof name, "model.layers.%lld.post_attention_layernorm.weight",
                 (long long)l);
        QR_CHECK(write_float_tensor(e, g, name, 1, c->dim));
        qr_progress_step(e->prog, name, 1.0, "F32");
        for (size_t i = (size_t)l * QR_MOD_KIND_COUNT; i < (size_t)(l + 1) * QR_MOD_KIND_COUNT;
             i++) {
            QR_CHECK(write_module(e, g, i, plan));
            qr_progress_step(e->prog, e->mods[i].name, 1.0, "%s", qr_ggml_type_name(plan[i].type));
        }
    }
    QR_CHECK(write_float_tensor(e, g, "model.norm.weight", 1, c->dim));
    qr_progress_step(e->prog, "model.norm.weight", 1.0, "F32");
    if (!c->tied_embeddings) {
        QR_CHECK(write_float_tensor(e, g, "lm_head.weight", c->vocab_size, c->dim));
        qr_progress_step(e->prog, "lm_head.weight", 1.0, "F32");
    }
    QR_CHECK(qr_gguf_finish(&g, bytes));
    e->n_tensors += n_tensors;
done:
    qr_gguf_abort(&g);
    return st;
}

/* lora.gguf: blk.N.<module>.weight.lora_a = R (rank, d_in), written with ne = [d_in, rank], and
 * .lora_b = L (d_out, rank) with ne = [rank, d_out], rows of q/k permuted as in the model; F32.
 * llama.cpp scales B(Ax) by alpha / rank, or by 1 when alpha is 0: alpha = the rank when every
 * module has the same rank, else 0. */
static qr_status write_lora(qr_export *e, const mod_plan *plan, uint64_t *bytes)
{
    qr_status st = QR_OK;
    qr_gguf *g = NULL;
    qr_qlayer ql;
    char path[4096], name[192];
    int64_t rank0 = -1;
    bool uniform = true;
    size_t n_tensors = 0;
    memset(&ql, 0, sizeof ql);
    for (size_t i = 0; i < e->n_mods; i++) {
        if (plan[i].rank > 0) {
            uniform &= rank0 < 0 || rank0 == plan[i].rank;
            rank0 = plan[i].rank;
        }
    }
    QR_TRY(qr_fs_join(path, sizeof path, e->out_dir, "lora.gguf"));
    QR_TRY(qr_gguf_open(path, &g));
    QR_CHECK(qr_gguf_kv_str(g, "general.architecture", "llama"));
    QR_CHECK(qr_gguf_kv_str(g, "general.type", "adapter"));
    QR_CHECK(qr_gguf_kv_str(g, "general.name", "qrecon correction L*R"));
    QR_CHECK(qr_gguf_kv_str(g, "adapter.type", "lora"));
    QR_CHECK(qr_gguf_kv_f32(g, "adapter.lora.alpha", uniform ? (float)rank0 : 0.0f));
    QR_CHECK(qr_gguf_kv_str(g, "qrecon.method", e->method));
    for (size_t i = 0; i < e->n_mods; i++) {
        const qr_module *m = &e->mods[i];
        if (plan[i].rank == 0) {
            continue;
        }
        snprintf(name, sizeof name, "blk.%lld.%s.weight.lora_a", (long long)m->layer,
                 gguf_module_names[m->kind]);
        QR_CHECK(qr_gguf_add_tensor(g, name, QR_GGML_F32, 2, m->d_in, plan[i].rank));
        snprintf(name, sizeof name, "blk.%lld.%s.weight.lora_b", (long long)m->layer,
                 gguf_module_names[m->kind]);
        QR_CHECK(qr_gguf_add_tensor(g, name, QR_GGML_F32, 2, plan[i].rank, m->d_out));
        n_tensors += 2;
    }
    QR_CHECK(qr_gguf_begin_data(g));
    for (size_t i = 0; i < e->n_mods; i++) {
        const qr_module *m = &e->mods[i];
        if (plan[i].rank == 0) {
            continue;
        }
        QR_CHECK(qr_export_module(e, i, &ql));
        QR_CHECK(put_f32(g, ql.R, (size_t)(ql.rank * ql.d_in)));
        for (int64_t r = 0; r < ql.d_out; r++) {
            int64_t s = qr_export_qk_row(&e->cfg, m->kind, r);
            QR_CHECK(put_f32(g, ql.L + s * ql.rank, (size_t)ql.rank));
        }
        qr_qlayer_free(&ql);
    }
    QR_CHECK(qr_gguf_finish(&g, bytes));
    e->n_tensors += n_tensors;
done:
    qr_qlayer_free(&ql);
    qr_gguf_abort(&g);
    return st;
}

qr_status qr_export_gguf(qr_export *e)
{
    qr_status st = QR_OK;
    mod_plan *plan = NULL;
    int file_type = QR_FTYPE_ALL_F32;
    uint64_t bytes = 0;
    QR_TRY(qr_calloc(&plan, e->n_mods, sizeof *plan, "export plan"));
    QR_CHECK(plan_modules(e, plan, &file_type));
    QR_CHECK(write_model(e, plan, file_type, &bytes));
    e->bytes += bytes;
    if (e->n_lora > 0) {
        bytes = 0;
        QR_CHECK(write_lora(e, plan, &bytes));
        e->bytes += bytes;
    }
done:
    free(plan);
    return st;
}

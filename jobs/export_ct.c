/* export_ct.c: `qrecon export --format compressed-tensors`: a Hugging Face folder in the
 * compressed-tensors "pack-quantized" layout plus a PEFT LoRA adapter (docs/export.md).
 *
 * Per quantized module <m> (layout of compressed_tensors/compressors/quantized_compressors/
 * pack_quantized.py): <m>.weight_packed int32 (d_out, ceil(d_in / 8)), element [r][c / 8] holding
 * the code of column c in bits 4 (c % 8) .. 4 (c % 8) + 3, the code being the signed INT4 value + 8
 * (so exactly qrecon's nibble); <m>.weight_scale float32 (d_out, d_in / group); for asymmetric
 * checkpoints <m>.weight_zero_point int32 (ceil(d_out / 8), d_in / group), packed the same way
 * along dim 0 (row r in bits 4 (r % 8) of element [r / 8][g], the zero point + 8 = qrecon's zero);
 * <m>.weight_shape int64 [d_out, d_in]. Dequantized: (q - zp) * scale = scale * (code - zero). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "io/st_raw_write.h"
#include "jobs/export.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/log.h"

typedef enum { CT_PACKED = 0, CT_DENSE } ct_kind;

typedef struct {
    ct_kind kind;
    bool asym;
    int64_t rank;
    int64_t n_groups;
} ct_plan;

/* Plan every module: packed when the group divides its width, else dense (listed in "ignore"). */
static qr_status plan_modules(qr_export *e, ct_plan *plan)
{
    qr_status st = QR_OK;
    qr_qlayer ql;
    memset(&ql, 0, sizeof ql);
    for (size_t i = 0; i < e->n_mods; i++) {
        const char *why;
        QR_CHECK(qr_export_module(e, i, &ql));
        why = qr_export_unsupported(&ql);
        if (why) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: module '%s' has %s, which compressed-tensors cannot hold: "
                         "checkpoints of rtn, gptq, lqer, qera-approx, qera-exact, flrq and srr "
                         "export",
                         e->ckpt_path, e->mods[i].name, why);
            goto done;
        }
        plan[i].asym = ql.main.asym;
        plan[i].rank = ql.rank;
        plan[i].n_groups = ql.main.n_groups;
        plan[i].kind = ql.main.cols % ql.main.group == 0 ? CT_PACKED : CT_DENSE;
        if (plan[i].kind == CT_DENSE) {
            size_t k = strlen(e->fallback_names);
            e->n_fallback++;
            if (e->n_fallback <= 2) {
                snprintf(e->fallback_names + k, sizeof e->fallback_names - k, "%s%s", k ? ", " : "",
                         e->mods[i].name);
            } else if (e->n_fallback == 3) {
                snprintf(e->fallback_names + k, sizeof e->fallback_names - k, ", ...");
            }
        }
        if (ql.rank > 0) {
            e->n_lora++;
            if ((double)ql.rank > e->lora_max_rank) {
                e->lora_max_rank = (double)ql.rank;
            }
        }
        qr_qlayer_free(&ql);
    }
done:
    qr_qlayer_free(&ql);
    return st;
}

/* The non-quantized tensors of the model, in name order. */
static bool is_module_weight(const qr_export *e, const char *name)
{
    for (size_t i = 0; i < e->n_mods; i++) {
        size_t k = strlen(e->mods[i].name);
        if (strncmp(name, e->mods[i].name, k) == 0 && strcmp(name + k, ".weight") == 0) {
            return true;
        }
    }
    return false;
}

static void entry(qr_stw_entry *en, const char *name, const char *suffix, const char *dtype,
                  int ndim, int64_t d0, int64_t d1)
{
    memset(en, 0, sizeof *en);
    snprintf(en->name, sizeof en->name, "%s%s", name, suffix);
    en->dtype = dtype;
    en->ndim = ndim;
    en->shape[0] = d0;
    en->shape[1] = d1;
}

static qr_status write_packed(qr_stw *w, const qr_qlayer *ql)
{
    qr_status st = QR_OK;
    const qr_qweight *q = &ql->main;
    int64_t pc = (q->cols + 7) / 8;
    uint32_t *row = NULL, *zp = NULL;
    int64_t shape[2] = {ql->d_out, ql->d_in};
    QR_TRY(qr_calloc(&row, (size_t)pc, sizeof *row, "packed row"));
    for (int64_t r = 0; r < q->rows; r++) {
        memset(row, 0, (size_t)pc * sizeof *row);
        for (int64_t c = 0; c < q->cols; c++) {
            row[c / 8] |= (uint32_t)qr_qweight_get_code(q, r, c) << (4 * (c % 8));
        }
        QR_CHECK(qr_stw_put(w, row, (size_t)pc * sizeof *row));
    }
    QR_CHECK(qr_stw_put(w, q->scales, (size_t)(q->rows * q->n_groups) * sizeof(float)));
    if (q->asym) {
        int64_t pr = (q->rows + 7) / 8;
        QR_CHECK(qr_calloc(&zp, (size_t)(pr * q->n_groups), sizeof *zp, "packed zero points"));
        for (int64_t r = 0; r < q->rows; r++) {
            for (int64_t g = 0; g < q->n_groups; g++) {
                zp[(r / 8) * q->n_groups + g] |= (uint32_t)q->zeros[r * q->n_groups + g]
                                                 << (4 * (r % 8));
            }
        }
        QR_CHECK(qr_stw_put(w, zp, (size_t)(pr * q->n_groups) * sizeof *zp));
    }
    QR_CHECK(qr_stw_put(w, shape, sizeof shape));
done:
    free(row);
    free(zp);
    return st;
}

static qr_status write_model(qr_export *e, const ct_plan *plan)
{
    qr_status st = QR_OK;
    qr_stw_entry *en = NULL;
    qr_stw *w = NULL;
    qr_qlayer ql;
    float *buf = NULL;
    size_t n_en = 0, cap = qr_model_tensor_count(e->model) + 4 * e->n_mods;
    char path[4096];
    uint64_t bytes = 0;
    static const char *const mk[] = {"format"}, *const mv[] = {"pt"};
    memset(&ql, 0, sizeof ql);
    QR_TRY(qr_calloc(&en, cap, sizeof *en, "tensor list"));
    for (size_t i = 0; i < qr_model_tensor_count(e->model); i++) {
        const char *name = qr_model_tensor_name(e->model, i);
        qr_dtype dt;
        int ndim;
        int64_t shape[8];
        if (is_module_weight(e, name)) {
            continue;
        }
        QR_CHECK(qr_model_tensor_info(e->model, name, &dt, &ndim, shape));
        entry(&en[n_en++], name, "", "F32", ndim, shape[0], ndim > 1 ? shape[1] : 0);
    }
    size_t n_plain = n_en;
    for (size_t i = 0; i < e->n_mods; i++) {
        const qr_module *m = &e->mods[i];
        if (plan[i].kind == CT_DENSE) {
            entry(&en[n_en++], m->name, ".weight", "F32", 2, m->d_out, m->d_in);
            continue;
        }
        entry(&en[n_en++], m->name, ".weight_packed", "I32", 2, m->d_out, (m->d_in + 7) / 8);
        entry(&en[n_en++], m->name, ".weight_scale", "F32", 2, m->d_out, plan[i].n_groups);
        if (plan[i].asym) {
            entry(&en[n_en++], m->name, ".weight_zero_point", "I32", 2, (m->d_out + 7) / 8,
                  plan[i].n_groups);
        }
        entry(&en[n_en++], m->name, ".weight_shape", "I64", 1, 2, 0);
    }
    QR_CHECK(qr_fs_join(path, sizeof path, e->out_dir, "model.safetensors"));
    QR_CHECK(qr_stw_open(path, en, n_en, mk, mv, 1, &w));
    e->prog = qr_progress_begin("export", (int64_t)(n_plain + e->n_mods), "tensors");
    for (size_t i = 0; i < n_plain; i++) {
        size_t n = 1;
        for (int d = 0; d < en[i].ndim; d++) {
            n *= (size_t)en[i].shape[d];
        }
        QR_CHECK(qr_malloc(&buf, n, sizeof *buf, en[i].name));
        QR_CHECK(qr_export_tensor(e, en[i].name, buf, n));
        QR_CHECK(qr_stw_put(w, buf, n * sizeof *buf));
        free(buf);
        buf = NULL;
        qr_progress_step(e->prog, en[i].name, 1.0, "F32");
    }
    for (size_t i = 0; i < e->n_mods; i++) {
        QR_CHECK(qr_export_module(e, i, &ql));
        if (plan[i].kind == CT_DENSE) {
            size_t n = (size_t)(ql.d_out * ql.d_in);
            QR_CHECK(qr_malloc(&buf, n, sizeof *buf, e->mods[i].name));
            qr_qweight_dequantize(&ql.main, buf);
            QR_CHECK(qr_stw_put(w, buf, n * sizeof *buf));
            free(buf);
            buf = NULL;
        } else {
            QR_CHECK(write_packed(w, &ql));
        }
        qr_progress_step(e->prog, e->mods[i].name, 1.0, "%s",
                         plan[i].kind == CT_DENSE ? "dense F32" : "pack-quantized");
        qr_qlayer_free(&ql);
    }
    QR_CHECK(qr_stw_finish(&w, &bytes));
    e->bytes += bytes;
    e->n_tensors += n_en;
done:
    qr_qlayer_free(&ql);
    qr_stw_abort(&w);
    free(buf);
    free(en);
    return st;
}

static json_t *quant_args(int bits, const char *strategy, int64_t group, bool symmetric,
                          bool dynamic)
{
    return json_pack("{s:i, s:s, s:b, s:o, s:s, s:b, s:n, s:n, s:o, s:{}}", "num_bits", bits,
                     "type", "int", "symmetric", symmetric, "group_size",
                     group > 0 ? json_integer(group) : json_null(), "strategy", strategy, "dynamic",
                     dynamic, "actorder", "block_structure", "observer",
                     dynamic ? json_null() : json_string("minmax"), "observer_kwargs");
}

static qr_status write_config(qr_export *e, const ct_plan *plan)
{
    qr_status st = QR_OK;
    char path[4096];
    json_error_t jerr;
    json_t *cfg = NULL, *qc = NULL, *scheme = NULL, *ignore = json_array();
    char *text = NULL;
    bool asym = false;
    for (size_t i = 0; i < e->n_mods; i++) {
        asym |= plan[i].asym;
        if (plan[i].kind == CT_DENSE) {
            json_array_append_new(ignore, json_string(e->mods[i].name));
        }
    }
    json_array_append_new(ignore, json_string("lm_head")); /* a Linear, even when tied */
    QR_CHECK(qr_fs_join(path, sizeof path, e->model_path, "config.json"));
    cfg = json_load_file(path, 0, &jerr);
    if (!cfg || !json_is_object(cfg)) {
        st = qr_fail(QR_ERR_INPUT, "%s: not a JSON object (%s)", path, jerr.text);
        goto done;
    }
    scheme =
        json_pack("{s:[s], s:o, s:o, s:n, s:s}", "targets", "Linear", "weights",
                  quant_args(4, e->group > 0 ? "group" : "channel", e->group, !asym, false),
                  "input_activations",
                  e->abits == 4 || e->abits == 8 ? quant_args((int)e->abits, "token", 0, true, true)
                                                 : json_null(),
                  "output_activations", "format", "pack-quantized");
    qc = json_pack("{s:s, s:s, s:s, s:{s:o}, s:o, s:n, s:n}", "quant_method", "compressed-tensors",
                   "format", "pack-quantized", "quantization_status", "compressed", "config_groups",
                   "group_0", scheme, "ignore", ignore, "kv_cache_scheme",
                   "global_compression_ratio");
    ignore = NULL;
    if (!qc) {
        st = qr_fail(QR_ERR_NOMEM, "%s: cannot build quantization_config", e->out_dir);
        goto done;
    }
    json_object_set_new(cfg, "quantization_config", qc);
    json_object_set_new(cfg, "torch_dtype", json_string("float32"));
    text = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    QR_CHECK(qr_fs_join(path, sizeof path, e->out_dir, "config.json"));
    QR_CHECK(qr_fs_write_atomic(path, text, strlen(text)));
done:
    free(text);
    json_decref(ignore);
    json_decref(cfg);
    return st;
}

/* Copy the tokenizer files that sit beside the model. */
static qr_status copy_tokenizer(qr_export *e, int *copied)
{
    static const char *const names[] = {"tokenizer.bin",           "tokenizer.model",
                                        "tokenizer.json",          "tokenizer_config.json",
                                        "special_tokens_map.json", "generation_config.json"};
    char src[4096], dst[4096];
    *copied = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *data = NULL;
        size_t size = 0;
        QR_TRY(qr_fs_join(src, sizeof src, e->model_path, names[i]));
        if (!qr_fs_exists(src)) {
            continue;
        }
        QR_TRY(qr_fs_read_all(src, (size_t)1 << 30, &data, &size));
        qr_status st = qr_fs_join(dst, sizeof dst, e->out_dir, names[i]);
        if (st == QR_OK) {
            st = qr_fs_write_atomic(dst, data, size);
        }
        free(data);
        QR_TRY(st);
        (*copied)++;
    }
    return QR_OK;
}

/* adapter/: adapter_config.json and adapter_model.safetensors with
 * base_model.model.<module>.lora_A.weight = R (rank, d_in) and .lora_B.weight = L (d_out, rank);
 * lora_alpha = r (and alpha_pattern = rank_pattern when ranks differ) so PEFT's scale alpha / r is
 * 1. */
static qr_status write_adapter(qr_export *e, const ct_plan *plan)
{
    qr_status st = QR_OK;
    char dir[4096], path[4096];
    qr_stw_entry *en = NULL;
    qr_stw *w = NULL;
    qr_qlayer ql;
    json_t *cfg = NULL, *targets = json_array(), *ranks = json_object(), *alphas = json_object();
    char *text = NULL;
    size_t n_en = 0;
    int64_t r0 = 0;
    uint64_t bytes = 0;
    static const char *const mk[] = {"format"}, *const mv[] = {"pt"};
    static const char *const kinds[] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                        "gate_proj", "up_proj", "down_proj"};
    bool used[QR_MOD_KIND_COUNT] = {false};
    memset(&ql, 0, sizeof ql);
    QR_CHECK(qr_fs_join(dir, sizeof dir, e->out_dir, "adapter"));
    QR_CHECK(qr_fs_mkdirs(dir));
    QR_CHECK(qr_calloc(&en, 2 * e->n_mods + 1, sizeof *en, "adapter tensors"));
    for (size_t i = 0; i < e->n_mods; i++) {
        if (plan[i].rank > r0) {
            r0 = plan[i].rank;
        }
    }
    for (size_t i = 0; i < e->n_mods; i++) {
        const qr_module *m = &e->mods[i];
        char key[160];
        if (plan[i].rank == 0) {
            continue;
        }
        used[m->kind] = true;
        if (plan[i].rank != r0) {
            json_object_set_new(ranks, m->name, json_integer(plan[i].rank));
            json_object_set_new(alphas, m->name, json_integer(plan[i].rank));
        }
        snprintf(key, sizeof key, "base_model.model.%s", m->name);
        entry(&en[n_en++], key, ".lora_A.weight", "F32", 2, plan[i].rank, m->d_in);
        entry(&en[n_en++], key, ".lora_B.weight", "F32", 2, m->d_out, plan[i].rank);
    }
    for (int k = 0; k < QR_MOD_KIND_COUNT; k++) {
        if (used[k]) {
            json_array_append_new(targets, json_string(kinds[k]));
        }
    }
    cfg = json_pack("{s:s, s:s, s:s, s:I, s:I, s:O, s:O, s:O, s:f, s:b, s:s, s:b, s:b, s:b}",
                    "peft_type", "LORA", "task_type", "CAUSAL_LM", "base_model_name_or_path", "..",
                    "r", (json_int_t)r0, "lora_alpha", (json_int_t)r0, "target_modules", targets,
                    "rank_pattern", ranks, "alpha_pattern", alphas, "lora_dropout", 0.0,
                    "fan_in_fan_out", 0, "bias", "none", "use_rslora", 0, "use_dora", 0,
                    "inference_mode", 1);
    if (!cfg) {
        st = qr_fail(QR_ERR_NOMEM, "%s: cannot build adapter_config.json", dir);
        goto done;
    }
    text = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    QR_CHECK(qr_fs_join(path, sizeof path, dir, "adapter_config.json"));
    QR_CHECK(qr_fs_write_atomic(path, text, strlen(text)));
    QR_CHECK(qr_fs_join(path, sizeof path, dir, "adapter_model.safetensors"));
    QR_CHECK(qr_stw_open(path, en, n_en, mk, mv, 1, &w));
    for (size_t i = 0; i < e->n_mods; i++) {
        if (plan[i].rank == 0) {
            continue;
        }
        QR_CHECK(qr_export_module(e, i, &ql));
        QR_CHECK(qr_stw_put(w, ql.R, (size_t)(ql.rank * ql.d_in) * sizeof(float)));
        QR_CHECK(qr_stw_put(w, ql.L, (size_t)(ql.d_out * ql.rank) * sizeof(float)));
        qr_qlayer_free(&ql);
    }
    QR_CHECK(qr_stw_finish(&w, &bytes));
    e->bytes += bytes;
    e->n_tensors += n_en;
done:
    qr_qlayer_free(&ql);
    qr_stw_abort(&w);
    free(text);
    free(en);
    json_decref(cfg);
    json_decref(targets);
    json_decref(ranks);
    json_decref(alphas);
    return st;
}

qr_status qr_export_ct(qr_export *e)
{
    qr_status st = QR_OK;
    ct_plan *plan = NULL;
    int copied = 0;
    if (!e->ckpt) {
        return qr_fail(QR_ERR_INPUT,
                       "export: compressed-tensors needs a checkpoint (the float model is "
                       "already a Hugging Face folder)");
    }
    if (e->group < 0) {
        return qr_fail(QR_ERR_INPUT, "%s: group %lld", e->ckpt_path, (long long)e->group);
    }
    QR_TRY(qr_calloc(&plan, e->n_mods, sizeof *plan, "export plan"));
    QR_CHECK(plan_modules(e, plan));
    QR_CHECK(write_model(e, plan));
    QR_CHECK(write_config(e, plan));
    QR_CHECK(copy_tokenizer(e, &copied));
    if (e->n_lora > 0) {
        QR_CHECK(write_adapter(e, plan));
    }
    QR_DEBUG("export: %d tokenizer file(s) copied", copied);
done:
    free(plan);
    return st;
}

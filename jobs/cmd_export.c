/* cmd_export.c: `qrecon export`: a quantized checkpoint (or the float model) in a form inference
 * engines load: GGUF for llama.cpp (model.gguf + lora.gguf) or a Hugging Face compressed-tensors
 * folder with a PEFT adapter (docs/export.md). Serial: run it without mpiexec (or on one rank). */
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "io/gguf_write.h"
#include "io/tokenizer_bin.h"
#include "jobs/cli.h"
#include "jobs/options.h"
#include "jobs/export.h"
#include "src/alloc.h"
#include "src/log.h"

typedef struct {
    const char *model, *out, *tokenizer;
    int format;  /* 0 gguf, 1 compressed-tensors */
    int dequant; /* qr_export_dequant */
} export_cli;

static const char *const format_names[] = {"gguf", "compressed-tensors"};

static const qr_cmd_doc doc = {
    "export",
    "qrecon export [CKPT] --model DIR --format gguf|compressed-tensors --out DIR\n"
    "                     [--dequant f32|f16] [--tokenizer FILE]",
    "Write the quantized checkpoint CKPT of the model DIR (or, without CKPT, the float model) in "
    "a\n"
    "form inference engines load (docs/export.md):\n"
    "  gguf                model.gguf for llama.cpp (llama architecture, SentencePiece vocabulary\n"
    "                      from tokenizer.bin, norms and embeddings F32, every INT4 module as "
    "Q4_0\n"
    "                      (symmetric) or Q4_1 (asymmetric) holding the checkpoint's codes; a "
    "module\n"
    "                      whose width is not a multiple of 32 as F32 of its dequantized weight) "
    "and,\n"
    "                      when the checkpoint has a correction, lora.gguf: a llama.cpp LoRA "
    "adapter\n"
    "                      with L and R at scale 1. Without CKPT every weight is F32.\n"
    "  compressed-tensors  a Hugging Face folder: config.json with the pack-quantized\n"
    "                      quantization_config, model.safetensors (weight_packed, weight_scale,\n"
    "                      weight_zero_point, weight_shape per module; a module whose width the\n"
    "                      group does not divide dense and listed in ignore), the tokenizer "
    "files,\n"
    "                      and adapter/ (a PEFT LoRA adapter) when the checkpoint has a "
    "correction.\n"
    "rtn, gptq, lqer, qera-*, flrq and srr checkpoints export (gguf: group 32 only); aser and "
    "serq\n"
    "(smoothing, permutation, side matrix) do not. Serial: run it without mpiexec.\n",
    NULL,
};

static qr_status parse_format(const char *opt, const char *value, void *dst)
{
    for (int i = 0; i < 2; i++) {
        if (strcmp(value, format_names[i]) == 0) {
            *(int *)dst = i;
            return QR_OK;
        }
    }
    return qr_fail(QR_ERR_INPUT, "%s: expected gguf or compressed-tensors, found '%s'", opt, value);
}

static qr_status parse_dequant(const char *opt, const char *value, void *dst)
{
    if (strcmp(value, "f32") == 0 || strcmp(value, "f16") == 0) {
        *(int *)dst = value[1] == '3' ? QR_EXPORT_DEQUANT_F32 : QR_EXPORT_DEQUANT_F16;
        return QR_OK;
    }
    return qr_fail(QR_ERR_INPUT, "%s: expected f32 or f16, found '%s'", opt, value);
}

#define CLI(f) offsetof(export_cli, f)
static const qr_opt export_rows[] = {
    {"model", QR_OPT_STR, CLI(model), "DIR",
     "the source model (Hugging Face folder or llama2.c checkpoint)", .required = true},
    {"format", QR_OPT_CUSTOM, CLI(format), "F", "gguf or compressed-tensors", NULL,
     .parse = parse_format, .required = true},
    {"out", QR_OPT_STR, CLI(out), "DIR", "output folder (created)", .required = true},
    {"dequant", QR_OPT_CUSTOM, CLI(dequant), "f32|f16",
     "gguf: every module as F32 of its dequantized weight, with the\n"
     "scales as stored (f32) or rounded to F16 as Q4_0/Q4_1 hold them\n"
     "(f16), to measure what F16 scales change",
     "packed", .parse = parse_dequant},
    {"tokenizer", QR_OPT_STR, CLI(tokenizer), "FILE", "llama2.c tokenizer.bin",
     "the one beside the model"},
};
#undef CLI

static qr_status parse(int argc, char **argv, qr_export *e, const char **format, bool *help_only)
{
    export_cli cli;
    qr_opt_result res;
    qr_opt_table tables[] = {QR_OPT_TABLE(export_rows, &cli, "options (defaults in parentheses)")};
    memset(&cli, 0, sizeof cli);
    QR_TRY(qr_opts_parse(&doc, tables, 1, 1, argc, argv, &res));
    *help_only = res.help;
    if (res.help) {
        return QR_OK;
    }
    e->ckpt_path = res.n_positional > 0 ? res.positional[0] : NULL;
    e->model_path = cli.model;
    e->out_dir = cli.out;
    e->tokenizer_path = cli.tokenizer;
    e->dequant = (qr_export_dequant)cli.dequant;
    *format = format_names[cli.format];
    if (e->dequant != QR_EXPORT_PACKED && (cli.format != 0 || !e->ckpt_path)) {
        return qr_fail(QR_ERR_INPUT, "--dequant: needs a checkpoint and --format gguf");
    }
    return QR_OK;
}

qr_status qr_export_tensor(const qr_export *e, const char *name, float *dst, size_t n)
{
    if (e->ckpt) {
        return qr_ckpt_read_tensor(e->ckpt, name, dst, n);
    }
    return qr_model_read_f32(e->model, name, dst, n);
}

qr_status qr_export_module(const qr_export *e, size_t i, qr_qlayer *ql)
{
    return qr_ckpt_load_module(e->ckpt, e->mods[i].name, ql, NULL);
}

const char *qr_export_unsupported(const qr_qlayer *ql)
{
    if (ql->smooth) {
        return "smoothing";
    }
    if (ql->perm) {
        return "a channel permutation";
    }
    if (ql->n_salient > 0) {
        return "a side matrix";
    }
    return NULL;
}

int64_t qr_export_qk_row(const qr_model_config *cfg, qr_module_kind kind, int64_t r)
{
    int64_t hd = cfg->head_dim;
    if (cfg->rope_style == QR_ROPE_INTERLEAVED || (kind != QR_MOD_Q && kind != QR_MOD_K)) {
        return r;
    }
    int64_t h = r / hd, w = r % hd, i = w / 2, j = w % 2;
    return h * hd + j * (hd / 2) + i;
}

/* Open the model, the checkpoint (checked against the model) and the tokenizer; refuse methods
 * and options that have no form in the format. */
static qr_status open_source(qr_export *e, const char *format)
{
    bool gguf = strcmp(format, "gguf") == 0;
    const char *tok;
    QR_TRY(qr_model_open(e->model_path, &e->model));
    e->cfg = *qr_model_get_config(e->model);
    if (strcmp(e->cfg.arch, "qwen2") == 0 || e->cfg.attn_bias) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: architecture %s has no export yet (expected llama, mistral or "
                       "llama2.c)",
                       e->model_path, e->cfg.arch);
    }
    if (!gguf && strcmp(qr_model_format(e->model), "safetensors") != 0) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: compressed-tensors exports a Hugging Face folder (expected "
                       "safetensors, found %s): export the model's Hugging Face form",
                       e->model_path, qr_model_format(e->model));
    }
    QR_TRY(qr_modules_enumerate(&e->cfg, &e->mods, &e->n_mods));
    snprintf(e->method, sizeof e->method, "float");
    if (e->ckpt_path) {
        qr_ckpt_header h;
        QR_TRY(qr_ckpt_open(e->ckpt_path, &e->ckpt));
        QR_TRY(qr_ckpt_header_read(e->ckpt, &h));
        if (strcmp(h.source_model, qr_model_identity(e->model)) != 0) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: quantized from another model than %s (expected identity %s, "
                           "found %s)",
                           e->ckpt_path, e->model_path, qr_model_identity(e->model),
                           h.source_model);
        }
        snprintf(e->method, sizeof e->method, "%s", h.method);
        e->group = h.group;
        e->abits = h.abits;
        if (strcmp(e->method, "aser") == 0 || strcmp(e->method, "serq") == 0) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: method %s has no %s form (its %s is not a plain INT4 matrix plus "
                           "L*R): checkpoints of rtn, gptq, lqer, qera-approx, qera-exact, flrq "
                           "and srr export",
                           e->ckpt_path, e->method, format,
                           strcmp(e->method, "aser") == 0 ? "smoothing"
                                                          : "permutation and side matrix");
        }
        if (h.wbits != QR_CKPT_WBITS) {
            return qr_fail(QR_ERR_INPUT, "%s: wbits %lld has no %s form (expected %d)",
                           e->ckpt_path, (long long)h.wbits, format, QR_CKPT_WBITS);
        }
        if (gguf && e->group != QR_GGML_QK && e->dequant == QR_EXPORT_PACKED) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: --group %lld has no GGUF form (Q4_0 and Q4_1 hold groups of 32): "
                           "quantize with --group 32, or export --format compressed-tensors",
                           e->ckpt_path, (long long)e->group);
        }
        if (qr_ckpt_module_count(e->ckpt) != e->n_mods) {
            return qr_fail(QR_ERR_INPUT, "%s: modules (expected %zu for %s, found %zu)",
                           e->ckpt_path, e->n_mods, e->model_path, qr_ckpt_module_count(e->ckpt));
        }
    }
    tok = e->tokenizer_path ? e->tokenizer_path : qr_model_tokenizer_path(e->model);
    if (gguf) {
        if (!tok) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: no tokenizer.bin beside the model (expected one, or --tokenizer "
                           "FILE)",
                           e->model_path);
        }
        QR_TRY(qr_tokenizer_bin_read(tok, e->cfg.vocab_size, &e->tok));
    }
    return QR_OK;
}

static void close_source(qr_export *e)
{
    qr_tokenizer_free(&e->tok);
    qr_ckpt_close(&e->ckpt);
    qr_model_close(&e->model);
    free(e->mods);
    e->mods = NULL;
}

qr_status qr_cmd_export(int argc, char **argv)
{
    qr_status st = QR_OK;
    qr_export e;
    const char *format = "", *out_dir;
    char staging[4096] = "";
    bool help_only = false;
    double t0 = qr_now();
    memset(&e, 0, sizeof e);
    QR_CHECK(parse(argc, argv, &e, &format, &help_only));
    if (help_only) {
        return QR_OK;
    }
    if (qr_log_nranks() > 1) {
        st = qr_fail(QR_ERR_INPUT, "export: runs on one rank (found %d): run it without mpiexec",
                     qr_log_nranks());
        goto done;
    }
    QR_CHECK(qr_fs_check_output("--out", e.out_dir, QR_OUT_DIR,
                                (const char *[]){e.ckpt_path, e.model_path, e.tokenizer_path}, 3));
    QR_CHECK(open_source(&e, format));
    /* The files are written into a staging folder and moved into --out together, so a failure
     * leaves none of them there. */
    out_dir = e.out_dir;
    QR_CHECK(qr_fs_stage_dir(out_dir, staging, sizeof staging));
    e.out_dir = staging;
    if (strcmp(format, "gguf") == 0) {
        QR_CHECK(qr_export_gguf(&e));
    } else {
        QR_CHECK(qr_export_ct(&e));
    }
    QR_CHECK(qr_fs_publish_dir(staging, out_dir));
    e.out_dir = out_dir;
    qr_progress_end(&e.prog, "export: %zu tensors", e.n_tensors);
    {
        char extra[768] = "";
        if (e.ckpt && strcmp(format, "gguf") == 0 && e.dequant != QR_EXPORT_DEQUANT_F32) {
            snprintf(extra, sizeof extra,
                     "; scales rounded to F16: max |dW| %.3g (%.3g of the module's max |W|)",
                     e.scale_f16_max_abs, e.scale_f16_max_rel);
        }
        if (e.n_fallback > 0) {
            size_t k = strlen(extra);
            snprintf(extra + k, sizeof extra - k, "; %zu module(s) as dense F32 (%s)", e.n_fallback,
                     e.fallback_names);
        }
        if (e.n_lora > 0) {
            size_t k = strlen(extra);
            snprintf(extra + k, sizeof extra - k, "; adapter: %zu module(s), rank <= %.0f",
                     e.n_lora, e.lora_max_rank);
        }
        QR_INFO("export: wrote %s (%s, %s, %zu tensors, %.1f MiB in %.2f s)%s", e.out_dir, format,
                e.method, e.n_tensors, (double)e.bytes / (1024.0 * 1024.0), qr_now() - t0, extra);
    }
done:
    qr_progress_end(&e.prog, "export: failed");
    close_source(&e);
    qr_fs_discard_dir(staging);
    return st;
}

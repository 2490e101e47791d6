/* cmd_inspect.c: `qrecon inspect MODEL [--json]`: what a source model holds, as qrecon sees it: the
 * quantizable modules with their shapes and calibration inputs, the other tensors, and totals.
 * Every rank opens the model, so a broken file gives the same error on every rank; rank 0 prints.
 *
 * The report is built once as a JSON document; the table is rendered from that document, so the two
 * outputs cannot disagree. */
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "io/model.h"
#include "jobs/cli.h"
#include "jobs/options.h"
#include "mpi/comm.h"
#include "src/log.h"
#include "src/modules.h"

#define INSPECT_SCHEMA "qrecon.inspect"
#define INSPECT_VERSION 1
#define NAME_MAX_LEN 128

static const qr_cmd_doc doc = {
    "inspect",
    "qrecon inspect MODEL [--json]",
    "List what a source model holds: one row per quantizable linear module (name, shape\n"
    "d_out x d_in, dtype, parameters, calibration input key), then the other tensors\n"
    "(embeddings, norms, lm_head, biases), then totals (modules, quantizable parameters, all\n"
    "parameters, tensor bytes per dtype, file bytes).\n"
    "\n"
    "MODEL is a Hugging Face folder (config.json with model.safetensors or\n"
    "model.safetensors.index.json), a llama2.c v0 checkpoint (.bin), or a folder holding one.\n",
    "Every rank opens the model (errors are agreed by all ranks); rank 0 prints.\n",
};

typedef struct {
    bool json;
} inspect_opts;

static const qr_opt inspect_rows[] = {
    {"json", QR_OPT_FLAG, offsetof(inspect_opts, json), NULL,
     "print the same report as one JSON document (schema \"" INSPECT_SCHEMA "\",\n"
     "version 1)"},
};

/* Collects jansson failures (each constructor returns NULL, each setter -1 on allocation failure)
 * so the builder reads straight and fails once at the end. */
typedef struct {
    int failed;
} json_guard;

static void put(json_guard *g, json_t *obj, const char *key, json_t *value)
{
    if (json_object_set_new(obj, key, value) != 0) {
        g->failed = 1;
    }
}

static void append(json_guard *g, json_t *arr, json_t *value)
{
    if (json_array_append_new(arr, value) != 0) {
        g->failed = 1;
    }
}

static json_t *shape_json(json_guard *g, const qr_st_tensor *t)
{
    json_t *a = json_array();
    for (int i = 0; a && i < t->ndim; i++) {
        append(g, a, json_integer(t->shape[i]));
    }
    if (!a) {
        g->failed = 1;
    }
    return a;
}

static json_t *config_json(json_guard *g, const qr_model_config *c)
{
    json_t *o = json_object();
    put(g, o, "arch", json_string(c->arch));
    put(g, o, "hidden_size", json_integer(c->dim));
    put(g, o, "intermediate_size", json_integer(c->hidden_dim));
    put(g, o, "num_hidden_layers", json_integer(c->n_layers));
    put(g, o, "num_attention_heads", json_integer(c->n_heads));
    put(g, o, "num_key_value_heads", json_integer(c->n_kv_heads));
    put(g, o, "head_dim", json_integer(c->head_dim));
    put(g, o, "vocab_size", json_integer(c->vocab_size));
    put(g, o, "max_position_embeddings", json_integer(c->max_seq_len));
    put(g, o, "rms_norm_eps", json_real(c->rms_eps));
    put(g, o, "rope_theta", json_real(c->rope_theta));
    put(g, o, "tie_word_embeddings", json_boolean(c->tied_embeddings));
    put(g, o, "attention_bias", json_boolean(c->attn_bias));
    put(g, o, "rope_style",
        json_string(c->rope_style == QR_ROPE_INTERLEAVED ? "interleaved" : "half_split"));
    put(g, o, "rope_scaling",
        c->rope_scaling.kind == QR_ROPE_SCALING_NONE ? json_null()
                                                     : json_string(c->rope_scaling.name));
    return o;
}

/* Build the whole report. Tensors named "<module>.weight" are the module rows; every other tensor
 * goes to other_tensors. */
static qr_status build_report(const qr_model *m, json_t **out)
{
    qr_status st = QR_OK;
    json_guard g = {0};
    const qr_model_config *c = qr_model_get_config(m);
    qr_module *mods = NULL;
    size_t n_mods = 0;
    json_t *root = json_object(), *files = json_array(), *modules = json_array();
    json_t *others = json_array(), *totals = json_object(), *by_dtype = json_object();
    uint64_t dtype_bytes[QR_DTYPE_COUNT] = {0};
    int64_t quant_params = 0, all_params = 0;
    uint64_t file_bytes = 0, tensor_bytes = 0;
    char name[NAME_MAX_LEN];
    if (!root || !files || !modules || !others || !totals || !by_dtype) {
        g.failed = 1;
    }
    QR_CHECK(qr_modules_enumerate(c, &mods, &n_mods));
    put(&g, root, "schema", json_string(INSPECT_SCHEMA));
    put(&g, root, "version", json_integer(INSPECT_VERSION));
    put(&g, root, "path", json_string(qr_model_path(m)));
    put(&g, root, "format", json_string(qr_model_format(m)));
    put(&g, root, "identity", json_string(qr_model_identity(m)));
    {
        /* the tokenizer the forward-pass commands would use: tokenizer.bin, else tokenizer.json */
        char tj[4096] = "";
        const char *tok = qr_model_tokenizer_path(m);
        if (!tok && qr_fs_is_dir(qr_model_path(m)) &&
            qr_fs_join(tj, sizeof tj, qr_model_path(m), "tokenizer.json") == QR_OK &&
            qr_fs_exists(tj)) {
            tok = tj;
        }
        put(&g, root, "tokenizer", tok ? json_string(tok) : json_null());
    }
    for (size_t i = 0; i < qr_model_file_count(m); i++) {
        json_t *f = json_object();
        put(&g, f, "path", json_string(qr_model_file_path(m, i)));
        put(&g, f, "bytes", json_integer((json_int_t)qr_model_file_size(m, i)));
        append(&g, files, f);
        file_bytes += qr_model_file_size(m, i);
    }
    put(&g, root, "files", json_incref(files));
    put(&g, root, "config", config_json(&g, c));

    for (size_t i = 0; i < n_mods; i++) {
        const qr_st_tensor *t;
        json_t *o = json_object();
        snprintf(name, sizeof name, "%s.weight", mods[i].name);
        t = qr_model_tensor(m, name); /* present: qr_model_open checked every module */
        if (!t) {
            st = qr_fail(QR_ERR_INTERNAL, "%s: tensor '%s' vanished after open", qr_model_path(m),
                         name);
            json_decref(o);
            goto done;
        }
        put(&g, o, "name", json_string(mods[i].name));
        put(&g, o, "layer", json_integer(mods[i].layer));
        put(&g, o, "kind", json_string(qr_module_kind_name(mods[i].kind)));
        put(&g, o, "d_out", json_integer(mods[i].d_out));
        put(&g, o, "d_in", json_integer(mods[i].d_in));
        put(&g, o, "dtype", json_string(qr_dtype_name(t->dtype)));
        put(&g, o, "params", json_integer(t->numel));
        put(&g, o, "input", json_string(mods[i].input_key));
        append(&g, modules, o);
        quant_params += t->numel;
    }
    for (size_t i = 0; i < qr_model_tensor_count(m); i++) {
        const qr_st_tensor *t = qr_model_tensor(m, qr_model_tensor_name(m, i));
        size_t len = strlen(t->name);
        int is_module = 0;
        all_params += t->numel;
        tensor_bytes += t->nbytes;
        dtype_bytes[t->dtype] += t->nbytes;
        if (len > 7 && strcmp(t->name + len - 7, ".weight") == 0) {
            for (size_t k = 0; k < n_mods && !is_module; k++) {
                is_module =
                    strlen(mods[k].name) == len - 7 && strncmp(mods[k].name, t->name, len - 7) == 0;
            }
        }
        if (!is_module) {
            json_t *o = json_object();
            put(&g, o, "name", json_string(t->name));
            put(&g, o, "shape", shape_json(&g, t));
            put(&g, o, "dtype", json_string(qr_dtype_name(t->dtype)));
            put(&g, o, "params", json_integer(t->numel));
            append(&g, others, o);
        }
    }
    put(&g, root, "modules", json_incref(modules));
    put(&g, root, "other_tensors", json_incref(others));
    for (int d = 1; d < QR_DTYPE_COUNT; d++) {
        if (dtype_bytes[d]) {
            put(&g, by_dtype, qr_dtype_name((qr_dtype)d), json_integer((json_int_t)dtype_bytes[d]));
        }
    }
    put(&g, totals, "modules", json_integer((json_int_t)n_mods));
    put(&g, totals, "quantizable_params", json_integer(quant_params));
    put(&g, totals, "params", json_integer(all_params));
    put(&g, totals, "tensors", json_integer((json_int_t)qr_model_tensor_count(m)));
    put(&g, totals, "tensor_bytes", json_integer((json_int_t)tensor_bytes));
    put(&g, totals, "tensor_bytes_by_dtype", json_incref(by_dtype));
    put(&g, totals, "file_bytes", json_integer((json_int_t)file_bytes));
    put(&g, root, "totals", json_incref(totals));
    if (g.failed) {
        st = qr_fail(QR_ERR_NOMEM, "inspect: cannot build the JSON report (out of memory)");
        goto done;
    }
    *out = root;
    root = NULL;
done:
    free(mods);
    json_decref(files);
    json_decref(modules);
    json_decref(others);
    json_decref(by_dtype);
    json_decref(totals);
    json_decref(root);
    return st;
}

/* ---- the table ------------------------------------------------------------------------------- */

static const char *str_of(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static long long int_of(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

static void shape_cell(json_t *shape, char *buf, size_t size)
{
    size_t used = 0;
    size_t i;
    json_t *v;
    buf[0] = '\0';
    json_array_foreach(shape, i, v)
    {
        int n = snprintf(buf + used, size - used, "%s%lld", i ? " x " : "",
                         (long long)json_integer_value(v));
        if (n < 0 || (size_t)n >= size - used) {
            break;
        }
        used += (size_t)n;
    }
}

static int max_name_width(json_t *rows, int floor)
{
    size_t i;
    json_t *r;
    int w = floor;
    json_array_foreach(rows, i, r)
    {
        int n = (int)strlen(str_of(r, "name"));
        w = n > w ? n : w;
    }
    return w;
}

static void print_table(json_t *r, FILE *out)
{
    json_t *c = json_object_get(r, "config"), *mods = json_object_get(r, "modules");
    json_t *others = json_object_get(r, "other_tensors"), *tot = json_object_get(r, "totals");
    json_t *files = json_object_get(r, "files"), *row, *v;
    const char *key;
    size_t i;
    int wm = max_name_width(mods, 6), wo = max_name_width(others, 6);
    char shape[64], clean[4096]; /* names and paths from files, without control characters */

    fprintf(out, "model      %s (%s, %zu file%s)\n",
            qr_printable(str_of(r, "path"), clean, sizeof clean), str_of(r, "format"),
            json_array_size(files), json_array_size(files) == 1 ? "" : "s");
    fprintf(out, "identity   %s\n", str_of(r, "identity"));
    fprintf(out,
            "config     %s: hidden %lld, intermediate %lld, %lld layers, %lld heads (%lld kv, "
            "head_dim %lld), vocab %lld, %lld positions\n",
            str_of(c, "arch"), int_of(c, "hidden_size"), int_of(c, "intermediate_size"),
            int_of(c, "num_hidden_layers"), int_of(c, "num_attention_heads"),
            int_of(c, "num_key_value_heads"), int_of(c, "head_dim"), int_of(c, "vocab_size"),
            int_of(c, "max_position_embeddings"));
    fprintf(out, "           rms_eps %g, rope_theta %g, RoPE %s%s%s, %s embeddings%s\n",
            json_real_value(json_object_get(c, "rms_norm_eps")),
            json_real_value(json_object_get(c, "rope_theta")), str_of(c, "rope_style"),
            json_is_string(json_object_get(c, "rope_scaling")) ? " scaled " : "",
            json_is_string(json_object_get(c, "rope_scaling")) ? str_of(c, "rope_scaling") : "",
            json_is_true(json_object_get(c, "tie_word_embeddings")) ? "tied" : "untied",
            json_is_true(json_object_get(c, "attention_bias")) ? ", q/k/v bias" : "");
    fprintf(out, "tokenizer  %s\n",
            json_is_string(json_object_get(r, "tokenizer")) ? str_of(r, "tokenizer") : "(none)");

    fprintf(out, "\nquantizable modules (%zu)\n", json_array_size(mods));
    fprintf(out, "  %-*s  %-13s  %-5s  %12s  %s\n", wm, "module", "d_out x d_in", "dtype", "params",
            "calibration input");
    json_array_foreach(mods, i, row)
    {
        snprintf(shape, sizeof shape, "%lld x %lld", int_of(row, "d_out"), int_of(row, "d_in"));
        fprintf(out, "  %-*s  %-13s  %-5s  %12lld  %s\n", wm, str_of(row, "name"), shape,
                str_of(row, "dtype"), int_of(row, "params"), str_of(row, "input"));
    }
    fprintf(out, "\nother tensors (%zu)\n", json_array_size(others));
    fprintf(out, "  %-*s  %-13s  %-5s  %12s\n", wo, "tensor", "shape", "dtype", "params");
    json_array_foreach(others, i, row)
    {
        shape_cell(json_object_get(row, "shape"), shape, sizeof shape);
        fprintf(out, "  %-*s  %-13s  %-5s  %12lld\n", wo,
                qr_printable(str_of(row, "name"), clean, sizeof clean), shape, str_of(row, "dtype"),
                int_of(row, "params"));
    }
    fprintf(out, "\ntotals\n");
    fprintf(out, "  modules                 %lld\n", int_of(tot, "modules"));
    fprintf(out, "  quantizable parameters  %lld\n", int_of(tot, "quantizable_params"));
    fprintf(out, "  all parameters          %lld (%lld tensors)\n", int_of(tot, "params"),
            int_of(tot, "tensors"));
    fprintf(out, "  tensor bytes            %lld (", int_of(tot, "tensor_bytes"));
    i = 0;
    json_object_foreach(json_object_get(tot, "tensor_bytes_by_dtype"), key, v)
    {
        fprintf(out, "%s%s %lld", i++ ? ", " : "", key, (long long)json_integer_value(v));
    }
    fprintf(out, ")\n");
    fprintf(out, "  file bytes              %lld\n", int_of(tot, "file_bytes"));
}

qr_status qr_cmd_inspect(int argc, char **argv)
{
    qr_status st = QR_OK;
    qr_model *m = NULL;
    json_t *report = NULL;
    inspect_opts o = {false};
    qr_opt_result res;
    qr_opt_table tables[] = {QR_OPT_TABLE(inspect_rows, &o, "options")};
    QR_TRY(qr_opts_parse(&doc, tables, 1, 1, argc, argv, &res));
    if (res.help) {
        return QR_OK;
    }
    if (res.n_positional == 0) {
        return qr_cli_usage_error("inspect", "expected a MODEL path");
    }
    /* Every rank opens the model, so an unreadable file on any rank fails the run everywhere. */
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, qr_model_open(res.positional[0], &m)));
    if (qr_mpi_rank(MPI_COMM_WORLD) == 0) {
        QR_CHECK(build_report(m, &report));
        if (o.json) {
            if (json_dumpf(report, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
                st = qr_fail(QR_ERR_IO, "inspect: cannot write the JSON report to stdout");
                goto done;
            }
            fputc('\n', stdout);
        } else {
            print_table(report, stdout);
        }
        fflush(stdout);
    }
done:
    json_decref(report);
    qr_model_close(&m);
    return st;
}

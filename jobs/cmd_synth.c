/* cmd_synth.c: `qrecon synth`: write a synthetic Llama-shaped Hugging Face folder (config.json and
 * safetensors, sharded with an index when --shards > 1) whose weights come from src/synth.c. It is
 * the embedded demo model and the input of the benchmarks at real (7B) sizes.
 *
 * Runs on rank 0 only; the other ranks parse the same options (so a usage error is the same
 * everywhere) and wait for the status main() agrees on. Tensors are generated and written a block
 * of rows at a time, so memory stays at a few MiB whatever the model size. */
#include <inttypes.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "io/fs.h"
#include "io/safetensors.h"
#include "io/tokenizer_bin.h"
#include "io/tokenizer_json.h"
#include "jobs/cli.h"
#include "jobs/options.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/log.h"
#include "src/progress.h"
#include "src/synth.h"
#include "src/tokenizer.h"

/* Rows are generated in blocks of about this many float32 values (4 MiB): big enough for long
 * sequential writes, small enough that a 7B layer never sits in memory. */
#define SYNTH_BLOCK_FLOATS ((size_t)1 << 20)
#define SYNTH_PATH_MAX 4096

static const qr_cmd_doc doc = {
    "synth",
    "qrecon synth --out DIR [options]",
    "Write a synthetic Llama-shaped Hugging Face model folder: config.json and safetensors\n"
    "(model.safetensors, or N shards with model.safetensors.index.json). Weights are seeded and\n"
    "have the structure of trained checkpoints: Student-t (5 d.o.f.) values scaled by\n"
    "1/sqrt(d_in), about 1% of input channels x10..x30, per-row scale variation, RMSNorm weights\n"
    "near 1, embeddings N(0, 0.02). Same options, same bytes.\n",
    NULL,
};

typedef struct {
    const char *out;
    int big; /* --preset 7b */
    qr_model_config cfg;
    qr_dtype dtype;
    int64_t seed;
    int64_t shards;
    const char *tokenizer; /* NULL: none */
    int qwen2;             /* --arch qwen2 */
    int llama3;            /* --rope-scaling llama3 */
    int32_t bos, eos;      /* config.json's bos/eos_token_id (-1: null) */
} synth_opts;

static qr_status parse_preset(const char *opt, const char *value, void *dst)
{
    if (strcmp(value, "7b") != 0 && strcmp(value, "tiny") != 0) {
        return qr_fail(QR_ERR_INPUT, "%s: expected tiny or 7b, found '%s'", opt, value);
    }
    *(int *)dst = strcmp(value, "7b") == 0;
    return QR_OK;
}

static qr_status parse_dtype(const char *opt, const char *value, void *dst)
{
    qr_dtype d = strcasecmp(value, "f32") == 0    ? QR_DTYPE_F32
                 : strcasecmp(value, "bf16") == 0 ? QR_DTYPE_BF16
                 : strcasecmp(value, "f16") == 0  ? QR_DTYPE_F16
                                                  : QR_DTYPE_INVALID;
    if (d == QR_DTYPE_INVALID) {
        return qr_fail(QR_ERR_INPUT, "%s: expected f32, bf16 or f16, found '%s'", opt, value);
    }
    *(qr_dtype *)dst = d;
    return QR_OK;
}

static qr_status parse_arch(const char *opt, const char *value, void *dst)
{
    if (strcmp(value, "llama") != 0 && strcmp(value, "qwen2") != 0) {
        return qr_fail(QR_ERR_INPUT, "%s: expected llama or qwen2, found '%s'", opt, value);
    }
    *(int *)dst = strcmp(value, "qwen2") == 0;
    return QR_OK;
}

static qr_status parse_rope_scaling(const char *opt, const char *value, void *dst)
{
    if (strcmp(value, "llama3") != 0) {
        return qr_fail(QR_ERR_INPUT, "%s: expected llama3, found '%s'", opt, value);
    }
    *(int *)dst = 1;
    return QR_OK;
}

/* Upper bounds of the sizes keep every product of sizes far from overflow and match real models. */
#define OPT(f) offsetof(synth_opts, f)
static const qr_opt synth_rows[] = {
    {"out", QR_OPT_STR, OPT(out), "DIR",
     "output folder (created; existing model files are replaced)"},
    {"preset", QR_OPT_CUSTOM, OPT(big), "NAME",
     "tiny (the defaults below) or 7b (LLaMA-7B shapes, 2 layers); options\n"
     "given explicitly override the preset",
     "tiny", .parse = parse_preset},
    {"dim", QR_OPT_INT, OPT(cfg.dim), "N", "hidden size", .imin = 1, .imax = 1 << 17},
    {"hidden", QR_OPT_INT, OPT(cfg.hidden_dim), "N", "MLP intermediate size", .imin = 1,
     .imax = 1 << 19},
    {"layers", QR_OPT_INT, OPT(cfg.n_layers), "N", "number of layers", .imin = 1, .imax = 4096},
    {"heads", QR_OPT_INT, OPT(cfg.n_heads), "N", "attention heads", .imin = 1, .imax = 4096},
    {"kv-heads", QR_OPT_INT, OPT(cfg.n_kv_heads), "N", "key/value heads", .imin = 1, .imax = 4096},
    {"vocab", QR_OPT_INT, OPT(cfg.vocab_size), "N", "vocabulary size", .imin = 1, .imax = 1 << 22},
    {"seq-len", QR_OPT_INT, OPT(cfg.max_seq_len), "N", "max_position_embeddings", .imin = 1,
     .imax = 1 << 24},
    {"dtype", QR_OPT_CUSTOM, OPT(dtype), "T", "f32, bf16 or f16", "f32", .parse = parse_dtype},
    {"seed", QR_OPT_INT, OPT(seed), "N", "random seed", .imin = 0, .imax = INT64_MAX},
    {"shards", QR_OPT_INT, OPT(shards), "N", "number of safetensors files", .imin = 1,
     .imax = 99999},
    {"tie-embeddings", QR_OPT_FLAG, OPT(cfg.tied_embeddings), NULL,
     "no lm_head; the classifier reuses embed_tokens (untied by default)"},
    {"tokenizer", QR_OPT_STR, OPT(tokenizer), "FILE",
     "copy a tokenizer into the folder: a llama2.c tokenizer.bin holding --vocab\n"
     "pieces (e.g. stories260K's tok512.bin with the default vocab of 512), or a\n"
     "tokenizer.json whose ids fit --vocab (with the tokenizer_config.json beside\n"
     "it; config.json gets its BOS / EOS ids)"},
    {"arch", QR_OPT_CUSTOM, OPT(qwen2), "A", "llama or qwen2 (q/k/v projections with biases)",
     "llama", .parse = parse_arch},
    {"rope-theta", QR_OPT_DOUBLE, OPT(cfg.rope_theta), "X", "RoPE base (Llama-3 uses 500000)",
     .dmin = 1.0, .dmax = 1e12},
    {"rope-scaling", QR_OPT_CUSTOM, OPT(llama3), "S",
     "llama3: Llama-3.1's rope_scaling (factor 8, low_freq_factor 1,\n"
     "high_freq_factor 4, original_max_position_embeddings 8192)",
     "none", .parse = parse_rope_scaling},
};
#undef OPT

static void set_preset(qr_model_config *c, int big)
{
    memset(c, 0, sizeof *c);
    snprintf(c->arch, sizeof c->arch, "llama");
    c->dim = big ? 4096 : 256;
    c->hidden_dim = big ? 11008 : 688;
    c->n_layers = big ? 2 : 4;
    c->n_heads = big ? 32 : 8;
    c->n_kv_heads = big ? 32 : 4;
    c->vocab_size = big ? 32000 : 512;
    c->max_seq_len = big ? 2048 : 512;
    c->rms_eps = 1e-5;
    c->rope_theta = 10000.0;
    c->rope_style = QR_ROPE_HALF_SPLIT;
}

static void init_opts(synth_opts *o, int big)
{
    memset(o, 0, sizeof *o);
    o->big = big;
    set_preset(&o->cfg, big);
    o->dtype = QR_DTYPE_F32;
    o->shards = 1;
}

/* Parse argv over the tiny preset's values; when --preset 7b was given, again over the 7b values,
 * so options given explicitly override the preset whatever the order on the line. */
static qr_status parse_options(int argc, char **argv, synth_opts *o, bool *help)
{
    qr_opt_result res;
    qr_opt_table tables[] = {QR_OPT_TABLE(synth_rows, o, "options (defaults: the tiny preset)")};
    init_opts(o, 0);
    QR_TRY(qr_opts_parse(&doc, tables, 1, 0, argc, argv, &res));
    *help = res.help;
    if (res.help) {
        return QR_OK;
    }
    if (o->big) {
        init_opts(o, 1);
        QR_TRY(qr_opts_parse(&doc, tables, 1, 0, argc, argv, &res));
    }
    if (!o->out) {
        return qr_cli_usage_error("synth", "--out DIR is required");
    }
    o->cfg.head_dim = o->cfg.dim / o->cfg.n_heads;
    if (o->qwen2) {
        snprintf(o->cfg.arch, sizeof o->cfg.arch, "qwen2");
        o->cfg.attn_bias = true;
    }
    if (o->llama3) { /* Llama-3.1's values */
        qr_rope_scaling *rs = &o->cfg.rope_scaling;
        rs->kind = QR_ROPE_SCALING_LLAMA3;
        rs->factor = 8.0;
        rs->low_freq_factor = 1.0;
        rs->high_freq_factor = 4.0;
        rs->original_max_pos = 8192;
        snprintf(rs->name, sizeof rs->name, "llama3");
    }
    o->bos = 1;
    o->eos = 2;
    return qr_synth_check_config(&o->cfg);
}

static const char *torch_dtype(qr_dtype dt)
{
    return dt == QR_DTYPE_BF16 ? "bfloat16" : dt == QR_DTYPE_F16 ? "float16" : "float32";
}

static qr_status write_config(const char *dir, const synth_opts *o)
{
    qr_status st = QR_OK;
    char path[SYNTH_PATH_MAX];
    char *text = NULL;
    const qr_model_config *c = &o->cfg;
    json_t *root = json_pack(
        "{s:[s],s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:s,s:b,s:s,s:i,s:i,"
        "s:{s:I}}",
        "architectures", "LlamaForCausalLM", "model_type", "llama", "hidden_size",
        (json_int_t)c->dim, "intermediate_size", (json_int_t)c->hidden_dim, "num_hidden_layers",
        (json_int_t)c->n_layers, "num_attention_heads", (json_int_t)c->n_heads,
        "num_key_value_heads", (json_int_t)c->n_kv_heads, "vocab_size", (json_int_t)c->vocab_size,
        "max_position_embeddings", (json_int_t)c->max_seq_len, "rms_norm_eps", c->rms_eps,
        "rope_theta", c->rope_theta, "hidden_act", "silu", "tie_word_embeddings",
        (int)c->tied_embeddings, "torch_dtype", torch_dtype(o->dtype), "bos_token_id", 1,
        "eos_token_id", 2, "qrecon_synth", "seed", (json_int_t)o->seed);
    QR_CHECK(qr_fs_join(path, sizeof path, dir, "config.json"));
    if (!root) {
        st = qr_fail(QR_ERR_NOMEM, "%s: cannot build the JSON", path);
        goto done;
    }
    if (c->attn_bias) { /* qwen2 */
        json_object_set_new(root, "architectures", json_pack("[s]", "Qwen2ForCausalLM"));
        json_object_set_new(root, "model_type", json_string("qwen2"));
    }
    json_object_set_new(root, "bos_token_id", o->bos >= 0 ? json_integer(o->bos) : json_null());
    json_object_set_new(root, "eos_token_id", o->eos >= 0 ? json_integer(o->eos) : json_null());
    if (c->rope_scaling.kind == QR_ROPE_SCALING_LLAMA3) {
        json_object_set_new(
            root, "rope_scaling",
            json_pack("{s:f,s:f,s:f,s:I,s:s}", "factor", c->rope_scaling.factor, "low_freq_factor",
                      c->rope_scaling.low_freq_factor, "high_freq_factor",
                      c->rope_scaling.high_freq_factor, "original_max_position_embeddings",
                      (json_int_t)c->rope_scaling.original_max_pos, "rope_type", "llama3"));
    }
    text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    if (!text) {
        st = qr_fail(QR_ERR_NOMEM, "%s: cannot serialize the JSON", path);
        goto done;
    }
    QR_CHECK(qr_fs_write_atomic(path, text, strlen(text)));
done:
    free(text);
    json_decref(root);
    return st;
}

static size_t tensor_bytes(const qr_synth_tensor *t, qr_dtype dt)
{
    return (size_t)t->rows * (size_t)t->cols * qr_dtype_size(dt); /* bounded by the option limits */
}

/* The layer a tensor belongs to, or -1 for the embeddings, the final norm and the head. */
static int64_t tensor_layer(const qr_synth_tensor *t)
{
    long long l;
    return sscanf(t->name, "model.layers.%lld.", &l) == 1 ? (int64_t)l : -1;
}

/* Generate and stream tensors [first, last) of ts (n_all tensors) into one safetensors file. */
static qr_status write_shard(const char *path, const qr_synth_tensor *ts, const size_t *cum,
                             size_t n_all, size_t first, size_t last, const synth_opts *o,
                             qr_progress *prog)
{
    qr_status st = QR_OK;
    qr_st_entry *entries = NULL;
    qr_st_writer *w = NULL;
    qr_synth_gen gen = {0};
    float *block = NULL;       /* (block_rows, cols) generated values */
    unsigned char *enc = NULL; /* the same block encoded in o->dtype */
    size_t esize = qr_dtype_size(o->dtype), n = last - first;
    QR_CHECK(qr_calloc(&entries, n, sizeof *entries, path));
    for (size_t i = 0; i < n; i++) {
        const qr_synth_tensor *t = &ts[first + i];
        entries[i].name = t->name;
        entries[i].dtype = o->dtype;
        entries[i].ndim = t->ndim;
        entries[i].shape[0] = t->ndim == 1 ? t->cols : t->rows;
        entries[i].shape[1] = t->cols;
    }
    QR_CHECK(qr_malloc(&block, SYNTH_BLOCK_FLOATS, sizeof *block, "synth block"));
    QR_CHECK(qr_malloc(&enc, SYNTH_BLOCK_FLOATS, esize, "synth block"));
    QR_CHECK(qr_st_writer_open(path, entries, n, &w));
    for (size_t i = 0; i < n; i++) {
        const qr_synth_tensor *t = &ts[first + i];
        int64_t block_rows = (int64_t)(SYNTH_BLOCK_FLOATS / (size_t)t->cols);
        if (block_rows < 1) {
            st = qr_fail(QR_ERR_INTERNAL, "%s: row of %lld values exceeds the block", t->name,
                         (long long)t->cols);
            goto done;
        }
        QR_CHECK(qr_synth_gen_init(&gen, t, (uint64_t)o->seed));
        for (int64_t r = 0; r < t->rows; r += block_rows) {
            int64_t nr = t->rows - r < block_rows ? t->rows - r : block_rows;
            size_t count = (size_t)nr * (size_t)t->cols;
            qr_synth_gen_rows(&gen, r, nr, block);
            qr_convert_from_f32(o->dtype, block, count, enc);
            QR_CHECK(qr_st_writer_put(w, enc, count * esize));
        }
        qr_synth_gen_free(&gen);
        if (first + i + 1 == n_all || tensor_layer(&ts[first + i + 1]) != tensor_layer(t)) {
            /* one progress step per layer (and one each for the embeddings and the head) */
            int64_t layer = tensor_layer(t);
            size_t start = first + i; /* the group's first tensor, maybe in an earlier shard */
            char item[64];
            while (start > 0 && tensor_layer(&ts[start - 1]) == layer) {
                start--;
            }
            if (layer >= 0) {
                snprintf(item, sizeof item, "layer %lld", (long long)layer);
            } else {
                snprintf(item, sizeof item, "%s",
                         start == 0               ? "embeddings"
                         : o->cfg.tied_embeddings ? "final norm"
                                                  : "final norm and head");
            }
            qr_progress_step(prog, item, (double)(cum[first + i + 1] - cum[start]), "%.2f MiB",
                             (double)(cum[first + i + 1] - cum[start]) / (1024.0 * 1024.0));
        }
    }
    QR_CHECK(qr_st_writer_finish(&w));
done:
    qr_synth_gen_free(&gen);
    qr_st_writer_abort(&w);
    free(enc);
    free(block);
    free(entries);
    return st;
}

/* Check that `src` is a tokenizer.bin for this vocabulary, then copy it to dir/tokenizer.bin. */

/* Remove a stale model file of the other layout, so readers cannot pick up an old model. */
static qr_status remove_stale(const char *dir, const char *name)
{
    char path[SYNTH_PATH_MAX];
    QR_TRY(qr_fs_join(path, sizeof path, dir, name));
    if (qr_fs_exists(path) && unlink(path) != 0) {
        return qr_fail(QR_ERR_IO, "%s: cannot remove the stale file", path);
    }
    return QR_OK;
}

/* Copy the file src to dir/name. */
static qr_status copy_file(const char *src, const char *dir, const char *name, size_t max)
{
    qr_status st = QR_OK;
    char *bytes = NULL, path[SYNTH_PATH_MAX];
    size_t size = 0;
    QR_CHECK(qr_fs_read_all(src, max, &bytes, &size));
    QR_CHECK(qr_fs_join(path, sizeof path, dir, name));
    QR_CHECK(qr_fs_write_atomic(path, bytes, size));
done:
    free(bytes);
    return st;
}

/* Check that the tokenizer fits this vocabulary and copy it into dir: a tokenizer.bin, or a
 * tokenizer.json with its tokenizer_config.json (o->bos / o->eos then come from it). */
static qr_status copy_tokenizer(const char *dir, synth_opts *o)
{
    qr_status st = QR_OK;
    qr_tokenizer *tok = NULL;
    size_t len = strlen(o->tokenizer);
    if (len >= 5 && strcmp(o->tokenizer + len - 5, ".json") == 0) {
        char side[SYNTH_PATH_MAX];
        const char *slash = strrchr(o->tokenizer, '/');
        QR_CHECK(qr_tokenizer_json_read(o->tokenizer, &tok));
        if (qr_tokenizer_vocab_size(tok) > o->cfg.vocab_size) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: token ids beyond --vocab (expected at most %lld ids, found ids up "
                         "to %lld)",
                         o->tokenizer, (long long)o->cfg.vocab_size,
                         (long long)qr_tokenizer_vocab_size(tok) - 1);
            goto done;
        }
        o->bos = qr_tokenizer_bos(tok);
        o->eos = qr_tokenizer_eos(tok);
        QR_CHECK(copy_file(o->tokenizer, dir, "tokenizer.json", QR_TOKENIZER_JSON_MAX));
        snprintf(side, sizeof side, "%.*s/tokenizer_config.json",
                 slash ? (int)(slash - o->tokenizer) : 1, slash ? o->tokenizer : ".");
        if (qr_fs_exists(side)) {
            QR_CHECK(copy_file(side, dir, "tokenizer_config.json", (size_t)16 << 20));
        }
        QR_CHECK(remove_stale(dir, "tokenizer.bin"));
    } else {
        QR_CHECK(qr_tokenizer_bin_read(o->tokenizer, o->cfg.vocab_size, &tok));
        QR_CHECK(copy_file(o->tokenizer, dir, "tokenizer.bin", QR_TOKENIZER_BIN_MAX));
        QR_CHECK(remove_stale(dir, "tokenizer.json"));
    }
done:
    qr_tokenizer_free(&tok);
    return st;
}

static qr_status run_synth(synth_opts *o)
{
    qr_status st = QR_OK;
    qr_synth_tensor *ts = NULL;
    size_t n = 0, first = 0;
    size_t *cum = NULL;            /* (n + 1) bytes of tensors [0, i) */
    const char **names = NULL;     /* (n) tensor names, for the index */
    const char **shard_of = NULL;  /* (n) shard file of each tensor */
    char(*shard_names)[64] = NULL; /* (shards) file names */
    char path[SYNTH_PATH_MAX];
    qr_progress *prog = NULL;
    double t0 = qr_now();
    int64_t S = o->shards, n_steps = 0;
    QR_CHECK(qr_synth_plan(&o->cfg, &ts, &n));
    if ((size_t)S > n) {
        st = qr_fail(QR_ERR_INPUT,
                     "--shards: expected at most %zu (one tensor per shard), found %lld", n,
                     (long long)S);
        goto done;
    }
    QR_CHECK(qr_fs_mkdirs(o->out));
    QR_CHECK(qr_calloc(&cum, n + 1, sizeof *cum, "synth"));
    QR_CHECK(qr_calloc(&names, n, sizeof *names, "synth"));
    QR_CHECK(qr_calloc(&shard_of, n, sizeof *shard_of, "synth"));
    QR_CHECK(qr_calloc(&shard_names, (size_t)S, sizeof *shard_names, "synth"));
    for (size_t i = 0; i < n; i++) {
        cum[i + 1] = cum[i] + tensor_bytes(&ts[i], o->dtype);
        names[i] = ts[i].name;
    }
    QR_CHECK(remove_stale(o->out, S == 1 ? "model.safetensors.index.json" : "model.safetensors"));
    if (o->tokenizer) {
        QR_CHECK(copy_tokenizer(o->out, o));
    }
    QR_CHECK(write_config(o->out, o));
    for (size_t i = 0; i < n; i++) {
        n_steps += i + 1 == n || tensor_layer(&ts[i + 1]) != tensor_layer(&ts[i]);
    }
    prog = qr_progress_begin("synth", n_steps, "steps");
    qr_progress_set_total_weight(prog, (double)cum[n]);
    for (int64_t s = 0; s < S; s++) {
        /* Contiguous tensor ranges balanced by bytes, at least one tensor per shard. */
        size_t last = first + 1;
        if (s == S - 1) {
            last = n;
        }
        while (s < S - 1 && last < n - (size_t)(S - 1 - s) &&
               (double)cum[last] < (double)cum[n] * (double)(s + 1) / (double)S) {
            last++;
        }
        if (S == 1) {
            snprintf(shard_names[s], sizeof shard_names[s], "model.safetensors");
        } else {
            snprintf(shard_names[s], sizeof shard_names[s], "model-%05lld-of-%05lld.safetensors",
                     (long long)(s + 1), (long long)S);
        }
        for (size_t i = first; i < last; i++) {
            shard_of[i] = shard_names[s];
        }
        QR_CHECK(qr_fs_join(path, sizeof path, o->out, shard_names[s]));
        QR_CHECK(write_shard(path, ts, cum, n, first, last, o, prog));
        if (qr_log_rank() == 0) {
            printf("  %-36s %4zu tensors %10.2f MiB\n", shard_names[s], last - first,
                   (double)(cum[last] - cum[first]) / (1024.0 * 1024.0));
        }
        first = last;
    }
    if (S > 1) {
        QR_CHECK(qr_st_write_index(o->out, names, shard_of, n, (uint64_t)cum[n]));
    }
    qr_progress_end(&prog, "%.2f MiB", (double)cum[n] / (1024.0 * 1024.0));
    if (qr_log_rank() == 0) {
        printf("synth: wrote %s: %s%s, dim %lld, hidden %lld, %lld layers, %lld/%lld heads, vocab "
               "%lld, %s, %s embeddings, seed %" PRId64 ", %zu tensors in %lld file(s)%s, "
               "%.2f MiB, %.1f s\n",
               o->out, o->cfg.arch,
               o->cfg.rope_scaling.kind == QR_ROPE_SCALING_LLAMA3 ? " (llama3 rope scaling)" : "",
               (long long)o->cfg.dim, (long long)o->cfg.hidden_dim, (long long)o->cfg.n_layers,
               (long long)o->cfg.n_heads, (long long)o->cfg.n_kv_heads,
               (long long)o->cfg.vocab_size, qr_dtype_name(o->dtype),
               o->cfg.tied_embeddings ? "tied" : "untied", o->seed, n, (long long)S,
               S > 1 ? " + index" : "", (double)cum[n] / (1024.0 * 1024.0), qr_now() - t0);
        fflush(stdout);
    }
done:
    qr_progress_end(&prog, "synth: stopped");
    free(shard_names);
    free(shard_of);
    free(names);
    free(cum);
    free(ts);
    return st;
}

qr_status qr_cmd_synth(int argc, char **argv)
{
    synth_opts o;
    bool help = false;
    QR_TRY(parse_options(argc, argv, &o, &help));
    if (help) {
        return QR_OK;
    }
    if (qr_log_rank() != 0) {
        return QR_OK; /* rank 0 writes; main() agrees on its status with every rank */
    }
    return run_synth(&o);
}

/* cmd_synth.c: `qrecon synth`: write a synthetic Llama-shaped Hugging Face folder (config.json and
 * safetensors, sharded with an index when --shards > 1) whose weights come from src/synth.c. It is
 * the embedded demo model and the input of the benchmarks at real (7B) sizes.
 *
 * Runs on rank 0 only; the other ranks parse the same options (so a usage error is the same
 * everywhere) and wait for the status main() agrees on. Tensors are generated and written a block
 * of rows at a time, so memory stays at a few MiB whatever the model size. */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "io/fs.h"
#include "io/safetensors.h"
#include "io/tokenizer_bin.h"
#include "jobs/cli.h"
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

static const char synth_help[] =
    "usage: qrecon synth --out DIR [options]\n"
    "\n"
    "Write a synthetic Llama-shaped Hugging Face model folder: config.json and safetensors\n"
    "(model.safetensors, or N shards with model.safetensors.index.json). Weights are seeded and\n"
    "have the structure of trained checkpoints: Student-t (5 d.o.f.) values scaled by\n"
    "1/sqrt(d_in), about 1% of input channels x10..x30, per-row scale variation, RMSNorm weights\n"
    "near 1, embeddings N(0, 0.02). Same options, same bytes.\n"
    "\n"
    "options (defaults: the small demo model):\n"
    "  --out DIR          output folder (created; existing model files are replaced)\n"
    "  --preset NAME      tiny (the defaults below) or 7b (dim 4096, hidden 11008, 32 heads,\n"
    "                     32 kv heads, vocab 32000, seq len 2048, 2 layers); options given\n"
    "                     explicitly override the preset\n"
    "  --dim N            hidden size (256)\n"
    "  --hidden N         MLP intermediate size (688)\n"
    "  --layers N         number of layers (4)\n"
    "  --heads N          attention heads (8)\n"
    "  --kv-heads N       key/value heads (4)\n"
    "  --vocab N          vocabulary size (512)\n"
    "  --seq-len N        max_position_embeddings (512)\n"
    "  --dtype T          f32, bf16 or f16 (f32)\n"
    "  --seed N           random seed (0)\n"
    "  --shards N         number of safetensors files (1)\n"
    "  --tie-embeddings   no lm_head; the classifier reuses embed_tokens (untied by default)\n"
    "  --tokenizer FILE   copy a llama2.c tokenizer.bin holding --vocab pieces into the folder\n"
    "                     (e.g. stories260K's tok512.bin with the default vocab of 512)\n"
    "  -h, --help         this text\n";

typedef struct {
    const char *out;
    qr_model_config cfg;
    qr_dtype dtype;
    uint64_t seed;
    int64_t shards;
    const char *tokenizer; /* NULL: none */
} synth_opts;

enum {
    OPT_DIM = 1000,
    OPT_HIDDEN,
    OPT_LAYERS,
    OPT_HEADS,
    OPT_KV_HEADS,
    OPT_VOCAB,
    OPT_SEQ_LEN,
    OPT_DTYPE,
    OPT_SEED,
    OPT_SHARDS,
    OPT_TIE,
    OPT_PRESET,
    OPT_OUT,
    OPT_TOKENIZER,
    OPT_COUNT
};

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

/* Parse argv; *help is set when --help was asked. */
static qr_status parse_options(int argc, char **argv, synth_opts *o, int *help)
{
    static const struct option longopts[] = {
        {"out", required_argument, NULL, OPT_OUT},
        {"preset", required_argument, NULL, OPT_PRESET},
        {"dim", required_argument, NULL, OPT_DIM},
        {"hidden", required_argument, NULL, OPT_HIDDEN},
        {"layers", required_argument, NULL, OPT_LAYERS},
        {"heads", required_argument, NULL, OPT_HEADS},
        {"kv-heads", required_argument, NULL, OPT_KV_HEADS},
        {"vocab", required_argument, NULL, OPT_VOCAB},
        {"seq-len", required_argument, NULL, OPT_SEQ_LEN},
        {"dtype", required_argument, NULL, OPT_DTYPE},
        {"seed", required_argument, NULL, OPT_SEED},
        {"shards", required_argument, NULL, OPT_SHARDS},
        {"tie-embeddings", no_argument, NULL, OPT_TIE},
        {"tokenizer", required_argument, NULL, OPT_TOKENIZER},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* Values given explicitly, applied after the preset whatever the order on the line. */
    const char *given[OPT_COUNT - OPT_DIM] = {0};
    int64_t *fields[] = {&o->cfg.dim,        &o->cfg.hidden_dim, &o->cfg.n_layers,
                         &o->cfg.n_heads,    &o->cfg.n_kv_heads, &o->cfg.vocab_size,
                         &o->cfg.max_seq_len};
    /* Upper bounds keep every product of sizes far from overflow and match real models. */
    const int64_t max_size[] = {1 << 17, 1 << 19, 4096, 4096, 4096, 1 << 22, 1 << 24};
    int big = 0, c, tie = 0;
    int64_t v;
    memset(o, 0, sizeof *o);
    o->dtype = QR_DTYPE_F32;
    o->shards = 1;
    *help = 0;
    optind = 0; /* glibc: re-initialise, so the parser can run more than once per process */
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            *help = 1;
            return QR_OK;
        case OPT_OUT:
            o->out = optarg;
            break;
        case OPT_PRESET:
            if (strcmp(optarg, "7b") != 0 && strcmp(optarg, "tiny") != 0) {
                return qr_fail(QR_ERR_INPUT, "--preset: expected tiny or 7b, found '%s'", optarg);
            }
            big = strcmp(optarg, "7b") == 0;
            break;
        case OPT_TIE:
            tie = 1;
            break;
        case OPT_TOKENIZER:
            o->tokenizer = optarg;
            break;
        case ':': {
            char what[256];
            snprintf(what, sizeof what, "option '%s' is missing its value", argv[optind - 1]);
            return qr_cli_usage_error("synth", what);
        }
        case '?': {
            char what[256];
            snprintf(what, sizeof what, "unknown option '%s'", argv[optind - 1]);
            return qr_cli_usage_error("synth", what);
        }
        default:
            given[c - OPT_DIM] = optarg;
            break;
        }
    }
    if (optind < argc) {
        char what[256];
        snprintf(what, sizeof what, "unexpected argument '%s'", argv[optind]);
        return qr_cli_usage_error("synth", what);
    }
    set_preset(&o->cfg, big);
    o->cfg.tied_embeddings = tie != 0;
    for (int i = 0; i < OPT_DTYPE - OPT_DIM; i++) {
        if (given[i]) {
            char optname[32];
            snprintf(optname, sizeof optname, "--%s", longopts[i + 2].name);
            QR_TRY(qr_cli_int(optname, given[i], 1, max_size[i], &v));
            *fields[i] = v;
        }
    }
    if (given[OPT_DTYPE - OPT_DIM]) {
        const char *d = given[OPT_DTYPE - OPT_DIM];
        o->dtype = strcasecmp(d, "f32") == 0    ? QR_DTYPE_F32
                   : strcasecmp(d, "bf16") == 0 ? QR_DTYPE_BF16
                   : strcasecmp(d, "f16") == 0  ? QR_DTYPE_F16
                                                : QR_DTYPE_INVALID;
        if (o->dtype == QR_DTYPE_INVALID) {
            return qr_fail(QR_ERR_INPUT, "--dtype: expected f32, bf16 or f16, found '%s'", d);
        }
    }
    if (given[OPT_SEED - OPT_DIM]) {
        QR_TRY(qr_cli_int("--seed", given[OPT_SEED - OPT_DIM], 0, INT64_MAX, &v));
        o->seed = (uint64_t)v;
    }
    if (given[OPT_SHARDS - OPT_DIM]) {
        QR_TRY(qr_cli_int("--shards", given[OPT_SHARDS - OPT_DIM], 1, 99999, &o->shards));
    }
    if (!o->out) {
        return qr_cli_usage_error("synth", "--out DIR is required");
    }
    o->cfg.head_dim = o->cfg.dim / o->cfg.n_heads;
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
        QR_CHECK(qr_synth_gen_init(&gen, t, o->seed));
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
static qr_status copy_tokenizer(const char *dir, const synth_opts *o)
{
    qr_status st = QR_OK;
    qr_tokenizer *tok = NULL;
    char *bytes = NULL, path[SYNTH_PATH_MAX];
    size_t size = 0;
    QR_CHECK(qr_tokenizer_bin_read(o->tokenizer, o->cfg.vocab_size, &tok));
    QR_CHECK(qr_fs_read_all(o->tokenizer, QR_TOKENIZER_BIN_MAX, &bytes, &size));
    QR_CHECK(qr_fs_join(path, sizeof path, dir, "tokenizer.bin"));
    QR_CHECK(qr_fs_write_atomic(path, bytes, size));
done:
    free(bytes);
    qr_tokenizer_free(&tok);
    return st;
}

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

static qr_status run_synth(const synth_opts *o)
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
    QR_CHECK(write_config(o->out, o));
    if (o->tokenizer) {
        QR_CHECK(copy_tokenizer(o->out, o));
    }
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
        printf("synth: wrote %s: llama, dim %lld, hidden %lld, %lld layers, %lld/%lld heads, vocab "
               "%lld, %s, %s embeddings, seed %" PRIu64 ", %zu tensors in %lld file(s)%s, "
               "%.2f MiB, %.1f s\n",
               o->out, (long long)o->cfg.dim, (long long)o->cfg.hidden_dim,
               (long long)o->cfg.n_layers, (long long)o->cfg.n_heads, (long long)o->cfg.n_kv_heads,
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
    int help = 0;
    QR_TRY(parse_options(argc, argv, &o, &help));
    if (help) {
        qr_cli_print_help(synth_help);
        return QR_OK;
    }
    if (qr_log_rank() != 0) {
        return QR_OK; /* rank 0 writes; main() agrees on its status with every rank */
    }
    return run_synth(&o);
}

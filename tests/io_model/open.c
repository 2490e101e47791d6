/* open.c (test io_model.open): qr_model_open on folders the test writes: a good Hugging Face folder
 * (single file and sharded, F32/F16/BF16 mixed), llama2.c folders and files, and broken ones (a
 * missing tensor, a wrong shape, an untied config without lm_head, qwen2 without biases, no model,
 * two checkpoints), each QR_ERR_INPUT naming the tensor or file with expected vs found. Also the
 * tokenizer lookup and the identity digest (stable, and changed by a changed file). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/fs.h"
#include "io/model.h"
#include "io/safetensors.h"
#include "tests/io_model/scratch.h"
#include "tests/test_util.h"

/* Tiny shape: dim 8, hidden 12, 2 layers, 2 heads (head_dim 4), 1 kv head, vocab 10. */
enum { D = 8, HID = 12, L = 2, NH = 2, KV = 1, V = 10, HD = D / NH, KVD = KV * HD };

static char root[4096];

typedef struct {
    char name[96];
    int64_t rows, cols; /* cols 0 = vector */
    qr_dtype dtype;
} spec;

/* The tensors of the tiny model, in Hugging Face names. */
static size_t model_specs(spec *s, int with_lm_head, int with_bias)
{
    size_t n = 0;
    static const struct {
        const char *name;
        int64_t rows, cols;
    } layer[] = {
        {"input_layernorm", D, 0},    {"post_attention_layernorm", D, 0},
        {"self_attn.q_proj", D, D},   {"self_attn.k_proj", KVD, D},
        {"self_attn.v_proj", KVD, D}, {"self_attn.o_proj", D, D},
        {"mlp.gate_proj", HID, D},    {"mlp.up_proj", HID, D},
        {"mlp.down_proj", D, HID},
    };
    snprintf(s[n].name, sizeof s[n].name, "model.embed_tokens.weight");
    s[n].rows = V, s[n].cols = D, s[n++].dtype = QR_DTYPE_F32;
    snprintf(s[n].name, sizeof s[n].name, "model.norm.weight");
    s[n].rows = D, s[n].cols = 0, s[n++].dtype = QR_DTYPE_F32;
    if (with_lm_head) {
        snprintf(s[n].name, sizeof s[n].name, "lm_head.weight");
        s[n].rows = V, s[n].cols = D, s[n++].dtype = QR_DTYPE_F32;
    }
    for (int l = 0; l < L; l++) {
        for (size_t k = 0; k < sizeof layer / sizeof layer[0]; k++) {
            snprintf(s[n].name, sizeof s[n].name, "model.layers.%d.%s.weight", l, layer[k].name);
            s[n].rows = layer[k].rows, s[n].cols = layer[k].cols;
            /* Mixed dtypes, as real checkpoints have: BF16 matrices in layer 0, F16 in layer 1;
             * norms F32 in layer 0 and F64 in layer 1. */
            if (layer[k].cols) {
                s[n++].dtype = l == 0 ? QR_DTYPE_BF16 : QR_DTYPE_F16;
            } else {
                s[n++].dtype = l == 0 ? QR_DTYPE_F32 : QR_DTYPE_F64;
            }
        }
        if (with_bias) {
            static const char *const b[3] = {"q_proj", "k_proj", "v_proj"};
            for (int k = 0; k < 3; k++) {
                snprintf(s[n].name, sizeof s[n].name, "model.layers.%d.self_attn.%s.bias", l, b[k]);
                s[n].rows = k == 0 ? D : KVD, s[n].cols = 0, s[n++].dtype = QR_DTYPE_F32;
            }
        }
    }
    return n;
}

/* Write specs[lo, hi) as one safetensors file (zero bytes of data). */
static void write_st(const char *path, const spec *s, size_t lo, size_t hi)
{
    qr_st_entry e[64];
    qr_st_writer *w = NULL;
    static unsigned char zeros[4096];
    size_t n = hi - lo;
    memset(e, 0, sizeof e);
    for (size_t i = 0; i < n; i++) {
        e[i].name = s[lo + i].name;
        e[i].dtype = s[lo + i].dtype;
        e[i].ndim = s[lo + i].cols ? 2 : 1;
        e[i].shape[0] = s[lo + i].rows;
        e[i].shape[1] = s[lo + i].cols;
    }
    if (qr_st_writer_open(path, e, n, &w) != QR_OK) {
        fprintf(stderr, "fixture: %s\n", qr_errmsg());
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        size_t bytes = (size_t)s[lo + i].rows * (size_t)(s[lo + i].cols ? s[lo + i].cols : 1) *
                       qr_dtype_size(s[lo + i].dtype);
        if (qr_st_writer_put(w, zeros, bytes) != QR_OK) {
            fprintf(stderr, "fixture: %s\n", qr_errmsg());
            exit(1);
        }
    }
    if (qr_st_writer_finish(&w) != QR_OK) {
        fprintf(stderr, "fixture: %s\n", qr_errmsg());
        exit(1);
    }
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[4300];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static void write_config(const char *dir, const char *type, int tied)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"model_type\": \"%s\", \"hidden_size\": %d, \"intermediate_size\": %d, "
             "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
             "\"vocab_size\": %d, \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-6, "
             "\"tie_word_embeddings\": %s}",
             type, D, HID, L, NH, KV, V, tied ? "true" : "false");
    write_text(dir, "config.json", text);
}

/* A fresh folder root/name holding a Hugging Face model built from `s` (n tensors). */
static const char *make_hf(const char *name, const char *type, int tied, const spec *s, size_t n)
{
    static char dir[4200];
    char path[4300];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    mkdir(dir, 0755);
    write_config(dir, type, tied);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_st(path, s, 0, n);
    return dir;
}

static void expect_bad(const char *what, const char *path, const char *w1, const char *w2)
{
    qr_model *m = NULL;
    qr_status st;
    qr_clear_error();
    st = qr_model_open(path, &m);
    QR_EXPECT(st == QR_ERR_INPUT && qr_status_exit_code(st) == 2,
              "%s: expected QR_ERR_INPUT (exit 2), found %s (%s)", what, qr_status_name(st),
              qr_errmsg());
    QR_EXPECT(m == NULL, "%s: no handle on failure", what);
    QR_EXPECT(strstr(qr_errmsg(), w1) != NULL, "%s: message should contain '%s': %s", what, w1,
              qr_errmsg());
    if (w2) {
        QR_EXPECT(strstr(qr_errmsg(), w2) != NULL, "%s: message should contain '%s': %s", what, w2,
                  qr_errmsg());
    }
    printf("%-26s -> %s\n", what, qr_errmsg());
    qr_model_close(&m);
}

static void check_good_hf(void)
{
    spec s[64];
    size_t n = model_specs(s, 0, 0);
    const char *dir = make_hf("good", "llama", 1, s, n);
    qr_model *m = NULL;
    qr_dtype dt = QR_DTYPE_INVALID;
    int ndim = 0;
    int64_t shape[8];
    float buf[KVD * D];
    char id1[32], tok[4300];
    QR_EXPECT(qr_model_open(dir, &m) == QR_OK, "good folder refused: %s", qr_errmsg());
    if (!m) {
        return;
    }
    QR_EXPECT(strcmp(qr_model_format(m), "safetensors") == 0, "format: %s", qr_model_format(m));
    QR_EXPECT(qr_model_get_config(m)->rope_style == QR_ROPE_HALF_SPLIT, "HF is half-split");
    QR_EXPECT(qr_model_tensor_count(m) == n, "expected %zu tensors, found %zu", n,
              qr_model_tensor_count(m));
    QR_EXPECT(qr_model_tokenizer_path(m) == NULL, "no tokenizer yet, found %s",
              qr_model_tokenizer_path(m));
    QR_EXPECT(qr_model_file_count(m) == 2, "expected config.json + 1 shard, found %zu files",
              qr_model_file_count(m));
    QR_EXPECT(qr_model_tensor_info(m, "model.layers.1.self_attn.k_proj.weight", &dt, &ndim,
                                   shape) == QR_OK &&
                  dt == QR_DTYPE_F16 && ndim == 2 && shape[0] == KVD && shape[1] == D,
              "k_proj info wrong: %s", qr_errmsg());
    QR_EXPECT(qr_model_read_f32(m, "model.layers.1.self_attn.k_proj.weight", buf, KVD * D) == QR_OK,
              "read k_proj: %s", qr_errmsg());
    QR_EXPECT(qr_model_read_f32(m, "model.layers.1.self_attn.k_proj.weight", buf, KVD * D - 1) !=
                  QR_OK,
              "a read into a buffer of the wrong size must fail");
    QR_EXPECT(qr_model_tensor_info(m, "model.layers.9.mlp.up_proj.weight", &dt, &ndim, shape) ==
                      QR_ERR_INPUT &&
                  strstr(qr_errmsg(), "model.layers.9.mlp.up_proj.weight") != NULL,
              "absent tensor: expected QR_ERR_INPUT naming it, found '%s'", qr_errmsg());
    snprintf(id1, sizeof id1, "%s", qr_model_identity(m));
    QR_EXPECT(strlen(id1) == 21 && strncmp(id1, "xxh3-", 5) == 0,
              "identity should be xxh3- and 16 hex digits, found '%s'", id1);
    qr_model_close(&m);
    QR_EXPECT(m == NULL, "close must clear the pointer");

    /* Same files: same identity. A tokenizer appears: found. A changed config: new identity. */
    write_text(dir, "tok512.bin", "x");
    QR_EXPECT(qr_model_open(dir, &m) == QR_OK, "reopen: %s", qr_errmsg());
    if (m) {
        QR_EXPECT(strcmp(qr_model_identity(m), id1) == 0, "identity not stable: %s vs %s",
                  qr_model_identity(m), id1);
        snprintf(tok, sizeof tok, "%s/tok512.bin", dir);
        QR_EXPECT(qr_model_tokenizer_path(m) && strcmp(qr_model_tokenizer_path(m), tok) == 0,
                  "tokenizer: expected %s, found %s", tok,
                  qr_model_tokenizer_path(m) ? qr_model_tokenizer_path(m) : "(none)");
        qr_model_close(&m);
    }
    write_text(dir, "tokenizer.bin", "x"); /* preferred over tok*.bin */
    write_config(dir, "mistral", 1);
    QR_EXPECT(qr_model_open(dir, &m) == QR_OK, "reopen as mistral: %s", qr_errmsg());
    if (m) {
        QR_EXPECT(strcmp(qr_model_identity(m), id1) != 0, "identity must change with config.json");
        snprintf(tok, sizeof tok, "%s/tokenizer.bin", dir);
        QR_EXPECT(qr_model_tokenizer_path(m) && strcmp(qr_model_tokenizer_path(m), tok) == 0,
                  "tokenizer: expected %s, found %s", tok,
                  qr_model_tokenizer_path(m) ? qr_model_tokenizer_path(m) : "(none)");
        qr_model_close(&m);
    }
    /* A .safetensors file given directly, with config.json beside it. */
    {
        char file[4300];
        snprintf(file, sizeof file, "%s/model.safetensors", dir);
        QR_EXPECT(qr_model_open(file, &m) == QR_OK, "open by file: %s", qr_errmsg());
        qr_model_close(&m);
    }
    /* (make_hf reuses its buffer, so this comes last.) A tied model may still store lm_head.weight
     * (some exports do): accepted when its shape fits. */
    {
        spec t[64];
        size_t nt = model_specs(t, 1, 0);
        qr_model *mt = NULL;
        QR_EXPECT(qr_model_open(make_hf("tied_lm", "llama", 1, t, nt), &mt) == QR_OK,
                  "tied model with a stored lm_head refused: %s", qr_errmsg());
        qr_model_close(&mt);
    }
}

static void check_sharded(void)
{
    spec s[64];
    size_t n = model_specs(s, 1, 1);
    char dir[4200], path[4300];
    const char *names[64], *shards[64];
    qr_model *m = NULL;
    snprintf(dir, sizeof dir, "%s/sharded", root);
    mkdir(dir, 0755);
    write_config(dir, "qwen2", 0);
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
    write_st(path, s, 0, n / 2);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    write_st(path, s, n / 2, n);
    for (size_t i = 0; i < n; i++) {
        names[i] = s[i].name;
        shards[i] =
            i < n / 2 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    }
    QR_EXPECT(qr_st_write_index(dir, names, shards, n, 0) == QR_OK, "index: %s", qr_errmsg());
    QR_EXPECT(qr_model_open(dir, &m) == QR_OK, "sharded qwen2 folder refused: %s", qr_errmsg());
    if (m) {
        QR_EXPECT(qr_model_file_count(m) == 3, "expected config + 2 shards, found %zu",
                  qr_model_file_count(m));
        QR_EXPECT(qr_model_get_config(m)->attn_bias, "qwen2 carries q/k/v biases");
        qr_model_close(&m);
    }
}

static void check_bad_hf(void)
{
    spec s[64];
    size_t n;
    char path[4300];

    n = model_specs(s, 0, 0);
    memmove(&s[5], &s[6], (n - 6) * sizeof *s); /* drop s[5] */
    expect_bad("missing k_proj", make_hf("missing", "llama", 1, s, n - 1),
               "'model.layers.0.self_attn.k_proj.weight' is missing", "expected shape [4, 8]");

    n = model_specs(s, 0, 0);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s[i].name, "model.layers.1.mlp.gate_proj.weight") == 0) {
            s[i].rows = D, s[i].cols = HID; /* transposed */
        }
    }
    expect_bad("transposed gate_proj", make_hf("shape", "llama", 1, s, n),
               "'model.layers.1.mlp.gate_proj.weight' has the wrong shape",
               "expected [12, 8], found [8, 12]");

    n = model_specs(s, 0, 0);
    expect_bad("untied without lm_head", make_hf("nolm", "llama", 0, s, n), "'lm_head.weight'",
               "missing");

    n = model_specs(s, 1, 0);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s[i].name, "lm_head.weight") == 0) {
            s[i].rows = V + 1;
        }
    }
    expect_bad("tied, lm_head wrong shape", make_hf("badlm", "llama", 1, s, n), "'lm_head.weight'",
               "expected [10, 8], found [11, 8]");

    n = model_specs(s, 1, 0);
    expect_bad("qwen2 without biases", make_hf("nobias", "qwen2", 0, s, n),
               "'model.layers.0.self_attn.q_proj.bias' is missing", NULL);

    n = model_specs(s, 0, 0);
    make_hf("badconfig", "gpt2", 1, s, n);
    snprintf(path, sizeof path, "%s/badconfig", root);
    expect_bad("unknown model_type", path, "config.json", "\"model_type\"");

    snprintf(path, sizeof path, "%s/noweights", root);
    mkdir(path, 0755);
    write_config(path, "llama", 1);
    expect_bad("config without weights", path, "noweights", "model.safetensors");

    snprintf(path, sizeof path, "%s/does-not-exist", root);
    expect_bad("absent path", path, "does-not-exist", "not found");
}

/* Write a tiny valid llama2.c checkpoint (tied) at dir/name. */
static void write_l2c(const char *dir, const char *name)
{
    const int32_t hdr[7] = {D, HID, L, NH, KV, V, 4};
    size_t n = (size_t)V * D + L * D + L * D * D + 2 * L * KVD * D + L * D * D + L * D +
               3 * L * HID * D + D + 2 * 4 * HD / 2;
    char path[4300];
    FILE *f;
    float zero = 0.0f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fwrite(hdr, sizeof hdr, 1, f);
    for (size_t i = 0; i < n; i++) {
        fwrite(&zero, sizeof zero, 1, f);
    }
    fclose(f);
}

static void check_l2c(void)
{
    char dir[4200], path[4300], tok[4300];
    qr_model *m = NULL;
    snprintf(dir, sizeof dir, "%s/l2c", root);
    mkdir(dir, 0755);
    write_l2c(dir, "model.bin");
    write_text(dir, "tok105.bin", "x");
    QR_EXPECT(qr_model_open(dir, &m) == QR_OK, "llama2.c folder refused: %s", qr_errmsg());
    if (m) {
        QR_EXPECT(strcmp(qr_model_format(m), "llama2c") == 0, "format: %s", qr_model_format(m));
        QR_EXPECT(qr_model_get_config(m)->rope_style == QR_ROPE_INTERLEAVED, "llama2.c is "
                                                                             "interleaved");
        QR_EXPECT(qr_model_tensor_count(m) == 2 + 9 * L, "expected %d tensors, found %zu",
                  2 + 9 * L, qr_model_tensor_count(m));
        snprintf(tok, sizeof tok, "%s/tok105.bin", dir);
        QR_EXPECT(qr_model_tokenizer_path(m) && strcmp(qr_model_tokenizer_path(m), tok) == 0,
                  "tokenizer: expected %s, found %s", tok,
                  qr_model_tokenizer_path(m) ? qr_model_tokenizer_path(m) : "(none)");
        qr_model_close(&m);
    }
    snprintf(path, sizeof path, "%s/model.bin", dir);
    QR_EXPECT(qr_model_open(path, &m) == QR_OK, "llama2.c file refused: %s", qr_errmsg());
    qr_model_close(&m);

    write_l2c(dir, "other.bin");
    expect_bad("two checkpoints", dir, "more than one llama2.c checkpoint", "found 2");
    snprintf(dir, sizeof dir, "%s/empty", root);
    mkdir(dir, 0755);
    write_text(dir, "tokenizer.bin", "x");
    expect_bad("only a tokenizer", dir, "no model here", NULL);
    snprintf(path, sizeof path, "%s/notes.txt", root);
    write_text(root, "notes.txt", "x");
    expect_bad("a text file", path, "notes.txt", "not a model");
}

int main(void)
{
    snprintf(root, sizeof root, "%s", qr_test_tmpdir("io_model_open"));
    check_good_hf();
    check_sharded();
    check_bad_hf();
    check_l2c();
    qr_test_remove_tree(root);
    return qr_test_finish("io_model.open");
}

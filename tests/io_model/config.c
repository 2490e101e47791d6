/* config.c (test io_model.config): config.json files written by the test: good llama, mistral and
 * qwen2 configs (defaults applied), and malformed ones, each QR_ERR_INPUT (exit 2) with a message
 * that names the file and the key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"
#include "src/rng.h"
#include "tests/io_model/scratch.h"
#include "tests/test_util.h"

static char dir[4096];

/* A config.json built from "key": value pairs; the entries are raw JSON text. */
typedef struct {
    const char *key;
    const char *value; /* NULL = leave the key out */
} kv;

static const kv base_llama[] = {
    {"model_type", "\"llama\""},  {"hidden_size", "64"},
    {"intermediate_size", "172"}, {"num_hidden_layers", "5"},
    {"num_attention_heads", "8"}, {"num_key_value_heads", "4"},
    {"vocab_size", "512"},        {"max_position_embeddings", "512"},
    {"rms_norm_eps", "1e-05"},    {"rope_theta", "10000.0"},
    {"hidden_act", "\"silu\""},   {"tie_word_embeddings", "true"},
};
#define N_BASE (sizeof base_llama / sizeof base_llama[0])

/* Write the base config with `over` applied (replace or remove keys; new keys are appended). */
static const char *write_config(const char *name, const kv *over, size_t n_over)
{
    static char path[4200];
    FILE *f;
    int first = 1;
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fputs("{\n", f);
    for (size_t i = 0; i < N_BASE; i++) {
        const char *v = base_llama[i].value;
        for (size_t j = 0; j < n_over; j++) {
            if (strcmp(over[j].key, base_llama[i].key) == 0) {
                v = over[j].value;
            }
        }
        if (v) {
            fprintf(f, "%s  \"%s\": %s", first ? "" : ",\n", base_llama[i].key, v);
            first = 0;
        }
    }
    for (size_t j = 0; j < n_over; j++) {
        int in_base = 0;
        for (size_t i = 0; i < N_BASE; i++) {
            in_base |= strcmp(over[j].key, base_llama[i].key) == 0;
        }
        if (!in_base && over[j].value) {
            fprintf(f, "%s  \"%s\": %s", first ? "" : ",\n", over[j].key, over[j].value);
            first = 0;
        }
    }
    fputs("\n}\n", f);
    fclose(f);
    return path;
}

static const char *write_raw(const char *name, const char *text)
{
    static char path[4200];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

static void check_good_llama(void)
{
    qr_model_config c;
    const char *path = write_config("llama", NULL, 0);
    QR_EXPECT(qr_config_read(path, &c) == QR_OK, "good llama config refused: %s", qr_errmsg());
    QR_EXPECT(strcmp(c.arch, "llama") == 0, "arch: expected llama, found %s", c.arch);
    QR_EXPECT(c.dim == 64 && c.hidden_dim == 172 && c.n_layers == 5 && c.n_heads == 8 &&
                  c.n_kv_heads == 4 && c.vocab_size == 512 && c.max_seq_len == 512,
              "sizes read wrong (dim %lld hidden %lld layers %lld heads %lld kv %lld vocab %lld "
              "seq %lld)",
              (long long)c.dim, (long long)c.hidden_dim, (long long)c.n_layers,
              (long long)c.n_heads, (long long)c.n_kv_heads, (long long)c.vocab_size,
              (long long)c.max_seq_len);
    QR_EXPECT(c.head_dim == 8, "head_dim default: expected 64/8 = 8, found %lld",
              (long long)c.head_dim);
    QR_EXPECT(c.rms_eps == 1e-5 && c.rope_theta == 10000.0, "eps %g theta %g", c.rms_eps,
              c.rope_theta);
    QR_EXPECT(c.tied_embeddings && !c.attn_bias, "expected tied, no bias");
    QR_EXPECT(c.rope_style == QR_ROPE_HALF_SPLIT, "HF configs are half-split RoPE");
}

static void check_good_mistral(void)
{
    /* Mistral-Nemo-like: explicit head_dim with heads x head_dim != hidden_size; null keys unset;
     * no tie_word_embeddings key (default false). */
    const kv over[] = {
        {"model_type", "\"mistral\""}, {"hidden_size", "5120"},      {"intermediate_size", "14336"},
        {"num_attention_heads", "32"}, {"num_key_value_heads", "8"}, {"head_dim", "128"},
        {"tie_word_embeddings", NULL}, {"sliding_window", "null"},   {"rope_theta", "1000000.0"}};
    qr_model_config c;
    const char *path = write_config("mistral", over, sizeof over / sizeof over[0]);
    QR_EXPECT(qr_config_read(path, &c) == QR_OK, "good mistral config refused: %s", qr_errmsg());
    QR_EXPECT(strcmp(c.arch, "mistral") == 0, "arch: expected mistral, found %s", c.arch);
    QR_EXPECT(c.head_dim == 128, "explicit head_dim: expected 128, found %lld",
              (long long)c.head_dim);
    QR_EXPECT(!c.tied_embeddings, "tie_word_embeddings absent: expected false");
    QR_EXPECT(c.rope_theta == 1e6, "rope_theta: expected 1e6, found %g", c.rope_theta);
}

/* Llama-3.1's rope_scaling read into its fields; "default" is none; an unknown type is kept by name
 * (the forward pass refuses it). */
static void check_rope_scaling(void)
{
    const kv l31[] = {{"rope_theta", "500000.0"},
                      {"rope_scaling", "{\"factor\": 8.0, \"low_freq_factor\": 1.0, "
                                       "\"high_freq_factor\": 4.0, "
                                       "\"original_max_position_embeddings\": 8192, "
                                       "\"rope_type\": \"llama3\"}"}};
    const kv def[] = {{"rope_scaling", "{\"type\": \"default\"}"}};
    const kv yarn[] = {{"rope_scaling", "{\"type\": \"yarn\", \"factor\": 4.0}"}};
    qr_model_config c;
    QR_EXPECT(qr_config_read(write_config("l31", l31, 2), &c) == QR_OK, "llama3 scaling: %s",
              qr_errmsg());
    QR_EXPECT(c.rope_scaling.kind == QR_ROPE_SCALING_LLAMA3 && c.rope_scaling.factor == 8.0 &&
                  c.rope_scaling.low_freq_factor == 1.0 && c.rope_scaling.high_freq_factor == 4.0 &&
                  c.rope_scaling.original_max_pos == 8192,
              "llama3 scaling read wrong (kind %d factor %g low %g high %g orig %lld)",
              (int)c.rope_scaling.kind, c.rope_scaling.factor, c.rope_scaling.low_freq_factor,
              c.rope_scaling.high_freq_factor, (long long)c.rope_scaling.original_max_pos);
    QR_EXPECT(qr_config_read(write_config("def", def, 1), &c) == QR_OK &&
                  c.rope_scaling.kind == QR_ROPE_SCALING_NONE,
              "default rope_scaling should read as none");
    QR_EXPECT(qr_config_read(write_config("yarn", yarn, 1), &c) == QR_OK &&
                  c.rope_scaling.kind == QR_ROPE_SCALING_OTHER &&
                  strcmp(c.rope_scaling.name, "yarn") == 0,
              "yarn should be kept by name for inspect / quantize");
}

static void check_good_qwen2(void)
{
    /* No num_key_value_heads (defaults to heads), no rope_theta (defaults to 10000); q/k/v bias. */
    const kv over[] = {{"model_type", "\"qwen2\""},
                       {"num_key_value_heads", NULL},
                       {"rope_theta", NULL},
                       {"tie_word_embeddings", "false"},
                       {"use_sliding_window", "false"}};
    qr_model_config c;
    const char *path = write_config("qwen2", over, sizeof over / sizeof over[0]);
    QR_EXPECT(qr_config_read(path, &c) == QR_OK, "good qwen2 config refused: %s", qr_errmsg());
    QR_EXPECT(strcmp(c.arch, "qwen2") == 0, "arch: expected qwen2, found %s", c.arch);
    QR_EXPECT(c.n_kv_heads == 8, "kv heads default: expected 8, found %lld",
              (long long)c.n_kv_heads);
    QR_EXPECT(c.rope_theta == 10000.0, "rope_theta default: expected 10000, found %g",
              c.rope_theta);
    QR_EXPECT(c.attn_bias, "qwen2 has q/k/v biases");
    QR_EXPECT(!c.tied_embeddings, "expected untied");
}

/* Expect QR_ERR_INPUT (exit 2) and a message that names the file and contains each of `words`. */
static void expect_bad(const char *what, const char *path, const char *word1, const char *word2)
{
    qr_model_config c;
    qr_status st;
    qr_clear_error();
    st = qr_config_read(path, &c);
    QR_EXPECT(st == QR_ERR_INPUT, "%s: expected QR_ERR_INPUT, found %s", what, qr_status_name(st));
    QR_EXPECT(qr_status_exit_code(st) == 2, "%s: expected exit code 2", what);
    QR_EXPECT(strstr(qr_errmsg(), path) != NULL, "%s: message should name the file: %s", what,
              qr_errmsg());
    QR_EXPECT(strstr(qr_errmsg(), word1) != NULL, "%s: message should contain '%s': %s", what,
              word1, qr_errmsg());
    if (word2) {
        QR_EXPECT(strstr(qr_errmsg(), word2) != NULL, "%s: message should contain '%s': %s", what,
                  word2, qr_errmsg());
    }
    printf("%-28s -> %s\n", what, qr_errmsg());
}

static void check_bad(void)
{
    char missing_path[4300];
#define BAD(name, key, value, w1, w2)                                                              \
    do {                                                                                           \
        const kv over_[] = {{key, value}};                                                         \
        expect_bad(name, write_config(name, over_, 1), w1, w2);                                    \
    } while (0)
    BAD("missing hidden_size", "hidden_size", NULL, "\"hidden_size\"", "missing");
    BAD("missing vocab_size", "vocab_size", NULL, "\"vocab_size\"", "missing");
    BAD("missing rms_norm_eps", "rms_norm_eps", NULL, "\"rms_norm_eps\"", "missing");
    BAD("string hidden_size", "hidden_size", "\"64\"", "\"hidden_size\"", "found a string");
    BAD("real num_hidden_layers", "num_hidden_layers", "5.5", "\"num_hidden_layers\"",
        "found a real");
    BAD("string tie_word_embeddings", "tie_word_embeddings", "\"yes\"", "\"tie_word_embeddings\"",
        "expected a boolean");
    BAD("zero hidden_size", "hidden_size", "0", "\"hidden_size\"", "found 0");
    BAD("negative layers", "num_hidden_layers", "-3", "\"num_hidden_layers\"", "found -3");
    BAD("huge vocab", "vocab_size", "99999999999", "\"vocab_size\"", "out of range");
    BAD("kv heads 3 of 8", "num_key_value_heads", "3", "\"num_key_value_heads\"", "found 3");
    BAD("kv heads 16 of 8", "num_key_value_heads", "16", "\"num_key_value_heads\"", "found 16");
    BAD("heads 12 of hidden 64", "num_attention_heads", "12", "\"num_attention_heads\"",
        "found 12");
    BAD("odd head_dim", "head_dim", "7", "head_dim", "found 7");
    BAD("negative eps", "rms_norm_eps", "-1e-5", "\"rms_norm_eps\"", "out of range");
    BAD("zero rope_theta", "rope_theta", "0", "\"rope_theta\"", "out of range");
    BAD("unknown model_type", "model_type", "\"gpt2\"", "\"model_type\"", "llama, mistral, qwen2");
    BAD("model_type not string", "model_type", "7", "\"model_type\"", "found an integer");
    BAD("missing model_type", "model_type", NULL, "\"model_type\"", "missing");
    BAD("llama attention_bias", "attention_bias", "true", "\"attention_bias\"", NULL);
    BAD("gelu activation", "hidden_act", "\"gelu\"", "\"hidden_act\"", "\"gelu\"");
    BAD("rope_scaling not an object", "rope_scaling", "8", "\"rope_scaling\"", "an integer");
    BAD("rope_scaling without a type", "rope_scaling", "{\"factor\": 8}", "\"rope_scaling\"",
        "rope_type");
    BAD("llama3 scaling without factor", "rope_scaling",
        "{\"rope_type\": \"llama3\", \"low_freq_factor\": 1, \"high_freq_factor\": 4, "
        "\"original_max_position_embeddings\": 8192}",
        "\"factor\"", "missing");
    BAD("llama3 scaling high <= low", "rope_scaling",
        "{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4, "
        "\"high_freq_factor\": 1, \"original_max_position_embeddings\": 8192}",
        "\"rope_scaling\"", "high_freq_factor > low_freq_factor");
#undef BAD
    expect_bad("not JSON", write_raw("notjson", "{\"model_type\": \"llama\", hidden_size: 64}"),
               "not valid JSON", "line 1");
    expect_bad("empty file", write_raw("empty", ""), "not valid JSON", NULL);
    expect_bad("top-level array", write_raw("array", "[1, 2]"), "JSON object", "an array");
    expect_bad("duplicate key",
               write_raw("dup", "{\"model_type\": \"llama\", \"model_type\": \"mistral\"}"),
               "not valid JSON", "model_type");
    snprintf(missing_path, sizeof missing_path, "%s/absent/config.json", dir);
    expect_bad("missing file", missing_path, "cannot open", NULL);
}

/* Random edits of a good config.json (a character replaced by one that matters to JSON or numbers,
 * deleted, or doubled): each is either accepted, and then passes qr_config_validate, or refused as
 * bad input with a message naming the file. Never another status, never a crash (ASan/UBSan in CI).
 */
static void check_mutations(void)
{
    enum { TRIALS = 1000 };
    static const char alphabet[] = "{}[]\":,-+.0123456789eE truefalsn\\";
    const char *good = write_config("mut-base", NULL, 0);
    char text[2048], mutated[2100], path[4200];
    size_t len = 0, accepted = 0, refused = 0, other = 0, invalid = 0, unnamed = 0;
    FILE *f = fopen(good, "r");
    qr_rng rng;
    if (f) {
        len = fread(text, 1, sizeof text - 1, f);
        fclose(f);
    }
    QR_EXPECT(len > 0, "cannot read back %s", good);
    text[len] = '\0';
    snprintf(path, sizeof path, "%s/mutated.json", dir);
    qr_rng_seed(&rng, 7);
    for (int t = 0; len > 0 && t < TRIALS; t++) {
        size_t at = (size_t)(qr_rng_u64(&rng) % len), n = 0;
        int op = (int)(qr_rng_u64(&rng) % 3), edits = 1 + (int)(qr_rng_u64(&rng) % 3);
        qr_model_config c;
        qr_status st;
        memcpy(mutated, text, len + 1);
        n = len;
        for (int e = 0; e < edits; e++) {
            at = (size_t)(qr_rng_u64(&rng) % n);
            if (op == 0) {
                mutated[at] = alphabet[qr_rng_u64(&rng) % (sizeof alphabet - 1)];
            } else if (op == 1 && n > 1) {
                memmove(mutated + at, mutated + at + 1, n - at);
                n--;
            } else if (n + 1 < sizeof mutated) {
                memmove(mutated + at + 1, mutated + at, n - at + 1);
                n++;
            }
        }
        f = fopen(path, "w");
        if (!f) {
            QR_EXPECT(0, "cannot write %s", path);
            break;
        }
        fwrite(mutated, 1, n, f);
        fclose(f);
        qr_clear_error();
        st = qr_config_read(path, &c);
        if (st == QR_OK) {
            accepted++;
            invalid += qr_config_validate(&c, path) != QR_OK;
        } else if (st == QR_ERR_INPUT) {
            refused++;
            unnamed += strstr(qr_errmsg(), path) == NULL;
        } else {
            other++;
        }
    }
    QR_EXPECT(other == 0, "%zu mutations gave a status other than OK or QR_ERR_INPUT", other);
    QR_EXPECT(invalid == 0, "%zu accepted mutations fail qr_config_validate", invalid);
    QR_EXPECT(unnamed == 0, "%zu refusals do not name the file", unnamed);
    QR_EXPECT(refused > 0 && accepted > 0, "mutations should both pass and fail (%zu, %zu)",
              accepted, refused);
    printf("mutations: %d tried, %zu accepted (all valid), %zu refused (all naming the file)\n",
           TRIALS, accepted, refused);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s", qr_test_tmpdir("io_model_config"));
    check_good_llama();
    check_good_mistral();
    check_good_qwen2();
    check_rope_scaling();
    check_bad();
    check_mutations();
    qr_test_remove_tree(dir);
    return qr_test_finish("io_model.config");
}

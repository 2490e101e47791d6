/* config.c: config.json -> qr_model_config with jansson. This is where a Hugging Face model's shape
 * enters qrecon, so every key is checked for presence, JSON type and range here, with a message
 * that names the file and the key; the rest of the pipeline trusts the numbers. */
#include "io/config.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/fs.h"
#include "src/log.h"

/* A config.json is a few KB; 16 MiB bounds a hostile or mistaken file before jansson reads it. */
#define CONFIG_MAX_BYTES ((uint64_t)16 << 20)

static const char *const supported_types[] = {"llama", "mistral", "qwen2"};
#define N_SUPPORTED (sizeof supported_types / sizeof supported_types[0])

const char *qr_config_supported_types(void)
{
    return "llama, mistral, qwen2";
}

const char *qr_json_type_name(const json_t *v)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* The value of `key`, or NULL when absent or null (transformers treats both as unset). */
static json_t *get_value(json_t *root, const char *key)
{
    json_t *v = json_object_get(root, key);
    return (v && !json_is_null(v)) ? v : NULL;
}

/* An integer key in [min, max]; `def` when optional (required == 0) and unset. */
static qr_status get_int(json_t *root, const char *path, const char *key, int required, int64_t def,
                         int64_t min, int64_t max, int64_t *out)
{
    json_t *v = get_value(root, key);
    json_int_t x;
    if (!v) {
        if (required) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: key \"%s\" is missing (expected an integer in [%" PRId64
                           ", %" PRId64 "])",
                           path, key, min, max);
        }
        *out = def;
        return QR_OK;
    }
    if (!json_is_integer(v)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: key \"%s\" has the wrong type (expected an integer, found %s)", path,
                       key, qr_json_type_name(v));
    }
    x = json_integer_value(v);
    if (x < min || x > max) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: key \"%s\" is out of range (expected an integer in [%" PRId64
                       ", %" PRId64 "], found %lld)",
                       path, key, min, max, (long long)x);
    }
    *out = (int64_t)x;
    return QR_OK;
}

/* A positive finite number, below `max` when max > 0 (integer or real in JSON). */
static qr_status get_positive(json_t *root, const char *path, const char *key, int required,
                              double def, double max, double *out)
{
    json_t *v = get_value(root, key);
    char range[64];
    double x;
    if (max > 0.0) {
        snprintf(range, sizeof range, "a number in (0, %g)", max);
    } else {
        snprintf(range, sizeof range, "a positive number");
    }
    if (!v) {
        if (required) {
            return qr_fail(QR_ERR_INPUT, "%s: key \"%s\" is missing (expected %s)", path, key,
                           range);
        }
        *out = def;
        return QR_OK;
    }
    if (!json_is_number(v)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: key \"%s\" has the wrong type (expected a number, found %s)", path, key,
                       qr_json_type_name(v));
    }
    x = json_number_value(v);
    if (!(isfinite(x) && x > 0.0 && (max <= 0.0 || x < max))) {
        return qr_fail(QR_ERR_INPUT, "%s: key \"%s\" is out of range (expected %s, found %g)", path,
                       key, range, x);
    }
    *out = x;
    return QR_OK;
}

static qr_status get_bool(json_t *root, const char *path, const char *key, bool def, bool *out)
{
    json_t *v = get_value(root, key);
    if (!v) {
        *out = def;
        return QR_OK;
    }
    if (!json_is_boolean(v)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: key \"%s\" has the wrong type (expected a boolean, found %s)", path,
                       key, qr_json_type_name(v));
    }
    *out = json_is_true(v);
    return QR_OK;
}

/* Features of the three architectures that qrecon's modules and forward pass do not model: refuse
 * them by name rather than produce a checkpoint that silently drops a bias or an activation.
 * (Qwen2 ignores attention_bias: its q/k/v biases are unconditional and o_proj never has one.) */
static qr_status check_unsupported(json_t *root, const char *path, const char *type, bool qwen2)
{
    bool flag = false;
    json_t *act = get_value(root, "hidden_act");
    QR_TRY(get_bool(root, path, "attention_bias", false, &flag));
    if (flag && !qwen2) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: key \"attention_bias\" is true, which qrecon does not support for %s "
                       "(expected false: o_proj would carry a bias)",
                       path, type);
    }
    QR_TRY(get_bool(root, path, "mlp_bias", false, &flag));
    if (flag) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: key \"mlp_bias\" is true, which qrecon does not support (expected "
                       "false)",
                       path);
    }
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: key \"hidden_act\" is not supported (expected \"silu\", found %s%s%s)",
                       path, json_is_string(act) ? "\"" : "",
                       json_is_string(act) ? json_string_value(act) : qr_json_type_name(act),
                       json_is_string(act) ? "\"" : "");
    }
    return QR_OK;
}

/* "rope_scaling": null, or an object with "rope_type" (or the older "type"): llama3 with factor,
 * low_freq_factor, high_freq_factor, original_max_position_embeddings; linear with factor; any
 * other type is kept by name (the forward pass refuses it; shapes and weights do not depend on it).
 */
static qr_status read_rope_scaling(json_t *root, const char *path, qr_rope_scaling *rs)
{
    json_t *o = get_value(root, "rope_scaling"), *t;
    const char *type;
    memset(rs, 0, sizeof *rs);
    if (!o) {
        return QR_OK;
    }
    if (!json_is_object(o)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: key \"rope_scaling\" has the wrong type (expected an object or null, "
                       "found %s)",
                       path, qr_json_type_name(o));
    }
    t = get_value(o, "rope_type");
    t = t ? t : get_value(o, "type");
    if (!t || !json_is_string(t)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: key \"rope_scaling\" has no string \"rope_type\" (expected e.g. "
                       "\"llama3\")",
                       path);
    }
    type = json_string_value(t);
    snprintf(rs->name, sizeof rs->name, "%s", type);
    if (strcmp(type, "default") == 0) {
        return QR_OK;
    }
    if (strcmp(type, "llama3") == 0) {
        double omax = 0.0;
        rs->kind = QR_ROPE_SCALING_LLAMA3;
        QR_TRY(get_positive(o, path, "factor", 1, 0.0, 0.0, &rs->factor));
        QR_TRY(get_positive(o, path, "low_freq_factor", 1, 0.0, 0.0, &rs->low_freq_factor));
        QR_TRY(get_positive(o, path, "high_freq_factor", 1, 0.0, 0.0, &rs->high_freq_factor));
        QR_TRY(get_positive(o, path, "original_max_position_embeddings", 1, 0.0,
                            (double)QR_CONFIG_MAX_SEQ + 1.0, &omax));
        rs->original_max_pos = (int64_t)omax;
        if (!(rs->high_freq_factor > rs->low_freq_factor) || (double)rs->original_max_pos != omax) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: key \"rope_scaling\" (llama3): expected high_freq_factor > "
                           "low_freq_factor and an integer original_max_position_embeddings "
                           "(found %g, %g, %g)",
                           path, rs->high_freq_factor, rs->low_freq_factor, omax);
        }
        return QR_OK;
    }
    if (strcmp(type, "linear") == 0) {
        rs->kind = QR_ROPE_SCALING_LINEAR;
        return get_positive(o, path, "factor", 1, 0.0, 0.0, &rs->factor);
    }
    rs->kind = QR_ROPE_SCALING_OTHER;
    if (qr_log_rank() == 0) {
        QR_WARN(
            "%s: \"rope_scaling\" type \"%s\" is not supported by the forward pass: inspect and "
            "quantize work (shapes and weights do not depend on it), capture, eval and generate "
            "refuse the model",
            path, rs->name);
    }
    return QR_OK;
}

qr_status qr_config_validate(const qr_model_config *c, const char *source)
{
    struct {
        const char *key;
        int64_t v, max;
    } sizes[] = {
        {"hidden_size", c->dim, QR_CONFIG_MAX_DIM},
        {"intermediate_size", c->hidden_dim, QR_CONFIG_MAX_HIDDEN},
        {"num_hidden_layers", c->n_layers, QR_CONFIG_MAX_LAYERS},
        {"num_attention_heads", c->n_heads, QR_CONFIG_MAX_HEADS},
        {"num_key_value_heads", c->n_kv_heads, QR_CONFIG_MAX_HEADS},
        {"head_dim", c->head_dim, QR_CONFIG_MAX_HEAD_DIM},
        {"vocab_size", c->vocab_size, QR_CONFIG_MAX_VOCAB},
        {"max_position_embeddings", c->max_seq_len, QR_CONFIG_MAX_SEQ},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (sizes[i].v < 1 || sizes[i].v > sizes[i].max) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: %s is out of range (expected an integer in [1, %" PRId64
                           "], found %" PRId64 ")",
                           source, sizes[i].key, sizes[i].max, sizes[i].v);
        }
    }
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads != 0) {
        return qr_fail(
            QR_ERR_INPUT,
            "%s: num_key_value_heads must divide num_attention_heads (expected a divisor "
            "of %" PRId64 ", found %" PRId64 ")",
            source, c->n_heads, c->n_kv_heads);
    }
    if (c->head_dim % 2 != 0) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: head_dim must be even, since RoPE rotates pairs of dimensions (found "
                       "%" PRId64 ")",
                       source, c->head_dim);
    }
    if (!(isfinite(c->rms_eps) && c->rms_eps > 0.0 && c->rms_eps < 1.0)) {
        return qr_fail(QR_ERR_INPUT, "%s: rms_norm_eps out of range (expected (0, 1), found %g)",
                       source, c->rms_eps);
    }
    if (!(isfinite(c->rope_theta) && c->rope_theta > 0.0)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: rope_theta out of range (expected a positive number, found %g)", source,
                       c->rope_theta);
    }
    return QR_OK;
}

qr_status qr_config_read(const char *path, qr_model_config *out)
{
    qr_status st = QR_OK;
    json_t *root = NULL, *type;
    json_error_t jerr;
    qr_model_config c;
    uint64_t fsize = 0;
    const char *type_name;
    size_t t;
    memset(&c, 0, sizeof c);
    QR_CHECK(qr_fs_file_size(path, &fsize));
    if (fsize > CONFIG_MAX_BYTES) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: file too large for a config.json (expected at most %" PRIu64
                     " bytes, found %" PRIu64 ")",
                     path, CONFIG_MAX_BYTES, fsize);
        goto done;
    }
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        st = qr_fail(QR_ERR_INPUT, "%s: not valid JSON (line %d, column %d: %s)", path, jerr.line,
                     jerr.column, jerr.text);
        goto done;
    }
    if (!json_is_object(root)) {
        st = qr_fail(QR_ERR_INPUT, "%s: expected a JSON object at the top level, found %s", path,
                     qr_json_type_name(root));
        goto done;
    }
    type = get_value(root, "model_type");
    if (!type) {
        st = qr_fail(QR_ERR_INPUT, "%s: key \"model_type\" is missing (expected one of: %s)", path,
                     qr_config_supported_types());
        goto done;
    }
    if (!json_is_string(type)) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: key \"model_type\" has the wrong type (expected a string, found %s)",
                     path, qr_json_type_name(type));
        goto done;
    }
    type_name = json_string_value(type);
    for (t = 0; t < N_SUPPORTED && strcmp(type_name, supported_types[t]) != 0; t++) {
    }
    if (t == N_SUPPORTED) {
        st = qr_fail(
            QR_ERR_INPUT,
            "%s: key \"model_type\" is not supported (expected one of: %s, found \"%.64s\")", path,
            qr_config_supported_types(), type_name);
        goto done;
    }
    snprintf(c.arch, sizeof c.arch, "%s", type_name);

    QR_CHECK(get_int(root, path, "hidden_size", 1, 0, 1, QR_CONFIG_MAX_DIM, &c.dim));
    QR_CHECK(
        get_int(root, path, "intermediate_size", 1, 0, 1, QR_CONFIG_MAX_HIDDEN, &c.hidden_dim));
    QR_CHECK(get_int(root, path, "num_hidden_layers", 1, 0, 1, QR_CONFIG_MAX_LAYERS, &c.n_layers));
    QR_CHECK(get_int(root, path, "num_attention_heads", 1, 0, 1, QR_CONFIG_MAX_HEADS, &c.n_heads));
    QR_CHECK(get_int(root, path, "num_key_value_heads", 0, c.n_heads, 1, QR_CONFIG_MAX_HEADS,
                     &c.n_kv_heads));
    if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: key \"num_key_value_heads\" must divide num_attention_heads (expected a "
                     "divisor of %" PRId64 ", found %" PRId64 ")",
                     path, c.n_heads, c.n_kv_heads);
        goto done;
    }
    if (!get_value(root, "head_dim") && c.dim % c.n_heads != 0) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: key \"num_attention_heads\" must divide hidden_size when head_dim is not "
                     "given (expected a divisor of %" PRId64 ", found %" PRId64 ")",
                     path, c.dim, c.n_heads);
        goto done;
    }
    QR_CHECK(get_int(root, path, "head_dim", 0, c.dim / c.n_heads, 2, QR_CONFIG_MAX_HEAD_DIM,
                     &c.head_dim));
    QR_CHECK(get_int(root, path, "vocab_size", 1, 0, 1, QR_CONFIG_MAX_VOCAB, &c.vocab_size));
    QR_CHECK(
        get_int(root, path, "max_position_embeddings", 1, 0, 1, QR_CONFIG_MAX_SEQ, &c.max_seq_len));
    QR_CHECK(get_positive(root, path, "rms_norm_eps", 1, 0.0, 1.0, &c.rms_eps));
    QR_CHECK(get_positive(root, path, "rope_theta", 0, 10000.0, 0.0, &c.rope_theta));
    QR_CHECK(get_bool(root, path, "tie_word_embeddings", false, &c.tied_embeddings));
    /* Qwen2 always has q/k/v biases (its attention layers are built with bias=True); llama and
     * mistral have none unless attention_bias says so, which check_unsupported refuses. */
    c.attn_bias = strcmp(c.arch, "qwen2") == 0;
    QR_CHECK(check_unsupported(root, path, c.arch, c.attn_bias));
    QR_CHECK(read_rope_scaling(root, path, &c.rope_scaling));
    c.rope_style = QR_ROPE_HALF_SPLIT;
    QR_CHECK(qr_config_validate(&c, path));
    *out = c;
done:
    json_decref(root);
    return st;
}

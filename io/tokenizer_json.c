/* tokenizer_json.c: tokenizer.json -> qr_hf_spec -> qr_tokenizer with jansson (see
 * tokenizer_json.h). Every key is checked for its JSON type before use; strings are used in place
 * (jansson keeps them, with their lengths, until the root is released). */
#include "io/tokenizer_json.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"
#include "io/fs.h"
#include "src/alloc.h"
#include "src/checked.h"

/* A tokenizer_config.json or config.json is a few KB (Llama-3's tokenizer_config.json with its
 * chat template and 256 added tokens is 50 KB). */
#define SIDE_JSON_MAX ((uint64_t)16 << 20)
#define MAX_STEPS 64 /* normalizer / pre-tokenizer steps */

typedef struct {
    const char *path;
    json_t *root;
    qr_hf_spec spec;
    const char **vocab;
    size_t *vocab_lens;
    int32_t *vocab_ids;
    const char **ml, **mr;
    size_t *mll, *mrl;
    char *merge_copy; /* "a b" merges, split in place */
    qr_hf_norm_op norm[MAX_STEPS];
    qr_hf_pre_op pre[MAX_STEPS];
    qr_hf_added *added;
} reader;

static json_t *get(const json_t *o, const char *key)
{
    json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    return v && !json_is_null(v) ? v : NULL;
}

static qr_status get_bool(const reader *r, const json_t *o, const char *where, const char *key,
                          bool def, bool *out)
{
    json_t *v = get(o, key);
    if (!v) {
        *out = def;
        return QR_OK;
    }
    if (!json_is_boolean(v)) {
        return qr_fail(QR_ERR_INPUT, "%s: %s.%s has the wrong type (expected a boolean, found %s)",
                       r->path, where, key, qr_json_type_name(v));
    }
    *out = json_is_true(v);
    return QR_OK;
}

static qr_status get_string(const reader *r, const json_t *o, const char *where, const char *key,
                            bool required, const char **s, size_t *len)
{
    json_t *v = get(o, key);
    *s = NULL;
    if (len) {
        *len = 0;
    }
    if (!v) {
        if (required) {
            return qr_fail(QR_ERR_INPUT, "%s: %s.%s is missing (expected a string)", r->path, where,
                           key);
        }
        return QR_OK;
    }
    if (!json_is_string(v)) {
        return qr_fail(QR_ERR_INPUT, "%s: %s.%s has the wrong type (expected a string, found %s)",
                       r->path, where, key, qr_json_type_name(v));
    }
    *s = json_string_value(v);
    if (len) {
        *len = json_string_length(v);
    }
    return QR_OK;
}

static qr_status step_type(const reader *r, const json_t *o, const char *where, const char **type)
{
    if (!json_is_object(o)) {
        return qr_fail(QR_ERR_INPUT, "%s: %s has the wrong type (expected an object, found %s)",
                       r->path, where, qr_json_type_name(o));
    }
    return get_string(r, o, where, "type", true, type, NULL);
}

static qr_status read_normalizer(reader *r, const json_t *o, int depth)
{
    const char *type, *s = NULL;
    size_t len = 0;
    qr_hf_norm_op *op;
    if (!o) {
        return QR_OK;
    }
    QR_TRY(step_type(r, o, "normalizer", &type));
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = get(o, "normalizers"), *v;
        size_t i;
        if (!json_is_array(list) || depth > 4) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: normalizer.normalizers: expected an array (nested at most 4 deep), "
                           "found %s",
                           r->path, qr_json_type_name(list));
        }
        json_array_foreach(list, i, v)
        {
            QR_TRY(read_normalizer(r, v, depth + 1));
        }
        return QR_OK;
    }
    if (r->spec.n_norm >= MAX_STEPS) {
        return qr_fail(QR_ERR_INPUT, "%s: normalizer: more than %d steps", r->path, MAX_STEPS);
    }
    op = &r->norm[r->spec.n_norm];
    memset(op, 0, sizeof *op);
    if (strcmp(type, "Prepend") == 0) {
        op->kind = QR_HF_NORM_PREPEND;
        QR_TRY(get_string(r, o, "normalizer(Prepend)", "prepend", true, &op->a, &op->a_len));
    } else if (strcmp(type, "Replace") == 0) {
        json_t *pat = get(o, "pattern");
        op->kind = QR_HF_NORM_REPLACE;
        QR_TRY(get_string(r, pat, "normalizer(Replace).pattern", "String", false, &s, &len));
        if (!s || len == 0) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: normalizer(Replace).pattern is not supported (expected a non-empty "
                           "{\"String\": ...}; Regex patterns are not)",
                           r->path);
        }
        op->a = s;
        op->a_len = len;
        QR_TRY(get_string(r, o, "normalizer(Replace)", "content", true, &op->b, &op->b_len));
    } else if (strcmp(type, "NFC") == 0) {
        op->kind = QR_HF_NORM_NFC;
    } else {
        return qr_fail(QR_ERR_INPUT,
                       "%s: normalizer type \"%.40s\" is not supported (expected Sequence, "
                       "Prepend, Replace or NFC)",
                       r->path, type);
    }
    r->spec.n_norm++;
    return QR_OK;
}

static qr_status read_pre(reader *r, const json_t *o, int depth)
{
    const char *type, *s = NULL;
    qr_hf_pre_op *op;
    bool flag = false;
    if (!o) {
        return QR_OK;
    }
    QR_TRY(step_type(r, o, "pre_tokenizer", &type));
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = get(o, "pretokenizers"), *v;
        size_t i;
        if (!json_is_array(list) || depth > 4) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: pre_tokenizer.pretokenizers: expected an array (nested at most 4 "
                           "deep), found %s",
                           r->path, qr_json_type_name(list));
        }
        json_array_foreach(list, i, v)
        {
            QR_TRY(read_pre(r, v, depth + 1));
        }
        return QR_OK;
    }
    if (r->spec.n_pre >= MAX_STEPS) {
        return qr_fail(QR_ERR_INPUT, "%s: pre_tokenizer: more than %d steps", r->path, MAX_STEPS);
    }
    op = &r->pre[r->spec.n_pre];
    memset(op, 0, sizeof *op);
    if (strcmp(type, "Split") == 0) {
        json_t *pat = get(o, "pattern");
        op->kind = QR_HF_PRE_SPLIT;
        QR_TRY(
            get_string(r, pat, "pre_tokenizer(Split).pattern", "Regex", false, &op->pattern, NULL));
        QR_TRY(get_string(r, o, "pre_tokenizer(Split)", "behavior", false, &s, NULL));
        QR_TRY(get_bool(r, o, "pre_tokenizer(Split)", "invert", false, &flag));
        if (!op->pattern || (s && strcmp(s, "Isolated") != 0) || flag) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: pre_tokenizer(Split) is not supported as written (expected a "
                           "{\"Regex\": ...} pattern, behavior \"Isolated\", invert false; found "
                           "behavior \"%.20s\", invert %s)",
                           r->path, s ? s : "(none)", flag ? "true" : "false");
        }
    } else if (strcmp(type, "ByteLevel") == 0) {
        op->kind = QR_HF_PRE_BYTE_LEVEL;
        QR_TRY(get_bool(r, o, "pre_tokenizer(ByteLevel)", "add_prefix_space", false,
                        &op->add_prefix_space));
        QR_TRY(get_bool(r, o, "pre_tokenizer(ByteLevel)", "use_regex", true, &op->use_regex));
    } else if (strcmp(type, "Metaspace") == 0) {
        op->kind = QR_HF_PRE_METASPACE;
        QR_TRY(get_string(r, o, "pre_tokenizer(Metaspace)", "replacement", false, &op->replacement,
                          NULL));
        QR_TRY(get_bool(r, o, "pre_tokenizer(Metaspace)", "split", false, &flag));
        if (flag) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: pre_tokenizer(Metaspace) with split true is not supported "
                           "(expected split false)",
                           r->path);
        }
        QR_TRY(get_string(r, o, "pre_tokenizer(Metaspace)", "prepend_scheme", false, &s, NULL));
        if (!s) { /* older files: add_prefix_space */
            QR_TRY(get_bool(r, o, "pre_tokenizer(Metaspace)", "add_prefix_space", true, &flag));
            op->prepend = flag ? QR_HF_PREPEND_ALWAYS : QR_HF_PREPEND_NEVER;
        } else if (strcmp(s, "always") == 0) {
            op->prepend = QR_HF_PREPEND_ALWAYS;
        } else if (strcmp(s, "first") == 0) {
            op->prepend = QR_HF_PREPEND_FIRST;
        } else if (strcmp(s, "never") == 0) {
            op->prepend = QR_HF_PREPEND_NEVER;
        } else {
            return qr_fail(QR_ERR_INPUT,
                           "%s: pre_tokenizer(Metaspace).prepend_scheme \"%.20s\" is not known "
                           "(expected always, first or never)",
                           r->path, s);
        }
    } else {
        return qr_fail(QR_ERR_INPUT,
                       "%s: pre_tokenizer type \"%.40s\" is not supported (expected Sequence, "
                       "Split, ByteLevel or Metaspace)",
                       r->path, type);
    }
    r->spec.n_pre++;
    return QR_OK;
}

/* The BPE model's options: type, dropout, prefixes, byte fallback, unknown token. */
static qr_status read_model_options(reader *r, const json_t *model)
{
    const char *type = NULL;
    QR_TRY(get_string(r, model, "model", "type", false, &type, NULL));
    if (type && strcmp(type, "BPE") != 0) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: model type \"%.40s\" is not supported (expected BPE; Unigram and "
                       "WordPiece models are not read)",
                       r->path, type);
    }
    if (get(model, "dropout") && json_number_value(get(model, "dropout")) != 0.0) {
        return qr_fail(QR_ERR_INPUT, "%s: model.dropout is set (expected null)", r->path);
    }
    {
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        QR_TRY(get_string(r, model, "model", "continuing_subword_prefix", false, &a, &al));
        QR_TRY(get_string(r, model, "model", "end_of_word_suffix", false, &b, &bl));
        if (al || bl) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: model.continuing_subword_prefix / end_of_word_suffix are not "
                           "supported (expected null or empty)",
                           r->path);
        }
    }
    QR_TRY(get_bool(r, model, "model", "byte_fallback", false, &r->spec.byte_fallback));
    QR_TRY(get_bool(r, model, "model", "fuse_unk", false, &r->spec.fuse_unk));
    QR_TRY(get_bool(r, model, "model", "ignore_merges", false, &r->spec.ignore_merges));
    QR_TRY(get_string(r, model, "model", "unk_token", false, &r->spec.unk, NULL));
    return QR_OK;
}

/* model.vocab: piece -> id. */
static qr_status read_vocab(reader *r, json_t *vocab)
{
    qr_status st = QR_OK;
    const char *key;
    json_t *v;
    size_t i, n;
    n = json_object_size(vocab);
    if (n > QR_HF_MAX_ID) {
        return qr_fail(QR_ERR_INPUT, "%s: model.vocab too large (expected at most %d, found %zu)",
                       r->path, QR_HF_MAX_ID, n);
    }
    QR_CHECK(qr_calloc(&r->vocab, n, sizeof *r->vocab, "tokenizer vocabulary"));
    QR_CHECK(qr_calloc(&r->vocab_lens, n, sizeof *r->vocab_lens, "tokenizer vocabulary"));
    QR_CHECK(qr_calloc(&r->vocab_ids, n, sizeof *r->vocab_ids, "tokenizer vocabulary"));
    i = 0;
    json_object_foreach(vocab, key, v)
    {
        json_int_t id;
        if (!json_is_integer(v) || (id = json_integer_value(v)) < 0 || id > QR_HF_MAX_ID) {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: model.vocab[\"%.40s\"]: expected an id in [0, %d], found %s", r->path,
                         key, QR_HF_MAX_ID, qr_json_type_name(v));
            goto done;
        }
        r->vocab[i] = key;
        r->vocab_lens[i] = strlen(key); /* jansson object keys are NUL-terminated */
        r->vocab_ids[i] = (int32_t)id;
        i++;
    }
    r->spec.n_vocab = (int64_t)n;
done:
    return st;
}

/* model.merges: "a b" strings or ["a", "b"] pairs, in rank order. */
static qr_status read_merges(reader *r, const json_t *merges)
{
    qr_status st = QR_OK;
    json_t *v;
    size_t i, n, total = 0;
    n = merges ? json_array_size(merges) : 0;
    if (n > (size_t)INT32_MAX / 2) {
        st = qr_fail(QR_ERR_INPUT, "%s: model.merges too long (%zu)", r->path, n);
        goto done;
    }
    QR_CHECK(qr_calloc(&r->ml, n + 1, sizeof *r->ml, "tokenizer merges"));
    QR_CHECK(qr_calloc(&r->mr, n + 1, sizeof *r->mr, "tokenizer merges"));
    QR_CHECK(qr_calloc(&r->mll, n + 1, sizeof *r->mll, "tokenizer merges"));
    QR_CHECK(qr_calloc(&r->mrl, n + 1, sizeof *r->mrl, "tokenizer merges"));
    /* "a b" strings are copied once into one buffer and split there */
    for (i = 0; i < n; i++) {
        v = json_array_get(merges, i);
        if (json_is_string(v) && !qr_add_size(total, json_string_length(v) + 1, &total)) {
            st = qr_fail(QR_ERR_INPUT, "%s: model.merges size overflows", r->path);
            goto done;
        }
    }
    QR_CHECK(qr_malloc(&r->merge_copy, total + 1, 1, "tokenizer merges"));
    total = 0;
    for (i = 0; i < n; i++) {
        v = json_array_get(merges, i);
        if (json_is_string(v)) {
            size_t len = json_string_length(v);
            char *p = r->merge_copy + total, *sp;
            memcpy(p, json_string_value(v), len);
            p[len] = '\0';
            total += len + 1;
            sp = memchr(p, ' ', len);
            if (!sp || sp == p || sp == p + len - 1 ||
                memchr(sp + 1, ' ', len - (size_t)(sp - p) - 1)) {
                st = qr_fail(QR_ERR_INPUT,
                             "%s: model.merges[%zu] \"%.40s\": expected two pieces separated by "
                             "one space",
                             r->path, i, p);
                goto done;
            }
            *sp = '\0';
            r->ml[i] = p;
            r->mll[i] = (size_t)(sp - p);
            r->mr[i] = sp + 1;
            r->mrl[i] = len - r->mll[i] - 1;
        } else if (json_is_array(v) && json_array_size(v) == 2 &&
                   json_is_string(json_array_get(v, 0)) && json_is_string(json_array_get(v, 1))) {
            r->ml[i] = json_string_value(json_array_get(v, 0));
            r->mll[i] = json_string_length(json_array_get(v, 0));
            r->mr[i] = json_string_value(json_array_get(v, 1));
            r->mrl[i] = json_string_length(json_array_get(v, 1));
        } else {
            st = qr_fail(QR_ERR_INPUT,
                         "%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"], found %s",
                         r->path, i, qr_json_type_name(v));
            goto done;
        }
    }
    r->spec.n_merges = (int64_t)n;
done:
    return st;
}

static qr_status read_model(reader *r, const json_t *model)
{
    json_t *vocab, *merges;
    if (!json_is_object(model)) {
        return qr_fail(QR_ERR_INPUT, "%s: key \"model\" is missing or not an object (found %s)",
                       r->path, qr_json_type_name(model));
    }
    QR_TRY(read_model_options(r, model));
    vocab = get(model, "vocab");
    merges = get(model, "merges");
    if (!json_is_object(vocab) || json_object_size(vocab) == 0) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: model.vocab is missing or empty (expected an object of piece: id)",
                       r->path);
    }
    if (merges && !json_is_array(merges)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: model.merges has the wrong type (expected an array, "
                       "found %s)",
                       r->path, qr_json_type_name(merges));
    }
    QR_TRY(read_vocab(r, vocab));
    QR_TRY(read_merges(r, merges));
    r->spec.vocab = r->vocab;
    r->spec.vocab_lens = r->vocab_lens;
    r->spec.vocab_ids = r->vocab_ids;
    r->spec.merge_left = r->ml;
    r->spec.merge_right = r->mr;
    r->spec.merge_left_lens = r->mll;
    r->spec.merge_right_lens = r->mrl;
    return QR_OK;
}

static qr_status read_added(reader *r)
{
    json_t *list = get(r->root, "added_tokens"), *v;
    size_t i, n;
    if (!list) {
        return QR_OK;
    }
    if (!json_is_array(list)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: added_tokens has the wrong type (expected an array, found %s)", r->path,
                       qr_json_type_name(list));
    }
    n = json_array_size(list);
    QR_TRY(qr_calloc(&r->added, n + 1, sizeof *r->added, "added tokens"));
    json_array_foreach(list, i, v)
    {
        qr_hf_added *a = &r->added[i];
        json_t *id = get(v, "id");
        char where[48];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) > QR_HF_MAX_ID) {
            return qr_fail(QR_ERR_INPUT, "%s: %s.id: expected an integer in [0, %d], found %s",
                           r->path, where, QR_HF_MAX_ID, qr_json_type_name(id));
        }
        a->id = (int32_t)json_integer_value(id);
        QR_TRY(get_string(r, v, where, "content", true, &a->content, &a->len));
        QR_TRY(get_bool(r, v, where, "special", false, &a->special));
        QR_TRY(get_bool(r, v, where, "normalized", !a->special, &a->normalized));
        QR_TRY(get_bool(r, v, where, "lstrip", false, &a->lstrip));
        QR_TRY(get_bool(r, v, where, "rstrip", false, &a->rstrip));
    }
    r->spec.n_added = (int64_t)n;
    r->spec.added = r->added;
    return QR_OK;
}

/* The id of the token whose content is s: an added token, else a vocabulary piece; -1. */
static int32_t token_id(const reader *r, const char *s)
{
    size_t len = strlen(s);
    for (int64_t i = 0; i < r->spec.n_added; i++) {
        if (r->added[i].len == len && memcmp(r->added[i].content, s, len) == 0) {
            return r->added[i].id;
        }
    }
    {
        json_t *v = get(get(get(r->root, "model"), "vocab"), s);
        return json_is_integer(v) ? (int32_t)json_integer_value(v) : -1;
    }
}

static qr_status load_side(const char *path, json_t **out)
{
    json_error_t jerr;
    uint64_t size = 0;
    *out = NULL;
    if (!qr_fs_exists(path)) {
        return QR_OK;
    }
    QR_TRY(qr_fs_file_size(path, &size));
    if (size > SIDE_JSON_MAX) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: too large (expected at most %" PRIu64 " bytes, found %" PRIu64 ")",
                       path, SIDE_JSON_MAX, size);
    }
    *out = json_load_file(path, 0, &jerr);
    if (!*out || !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return qr_fail(QR_ERR_INPUT, "%s: not a JSON object (line %d: %s)", path, jerr.line,
                       jerr.text);
    }
    return QR_OK;
}

/* BOS or EOS ("bos" / "eos") from tokenizer_config.json, config.json, or the post_processor. */
static qr_status special_id(reader *r, const json_t *tcfg, const json_t *mcfg, const char *which,
                            int32_t *out)
{
    char key[16];
    json_t *v;
    *out = -1;
    snprintf(key, sizeof key, "%s_token", which);
    if (tcfg && json_object_get(tcfg, key)) {
        v = get(tcfg, key);
        if (v && json_is_object(v)) {
            v = get(v, "content");
        }
        if (!v) {
            return QR_OK; /* null: the tokenizer has none */
        }
        if (!json_is_string(v) || (*out = token_id(r, json_string_value(v))) < 0) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: tokenizer_config.json: %s is not a token of the vocabulary "
                           "(expected a string naming one, found %s%.40s)",
                           r->path, key, json_is_string(v) ? "" : qr_json_type_name(v),
                           json_is_string(v) ? json_string_value(v) : "");
        }
        return QR_OK;
    }
    snprintf(key, sizeof key, "%s_token_id", which);
    if (mcfg && (v = get(mcfg, key))) {
        if (json_is_array(v)) {
            v = json_array_get(v, 0);
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > QR_HF_MAX_ID) {
            return qr_fail(QR_ERR_INPUT, "%s: config.json: %s: expected a token id, found %s",
                           r->path, key, qr_json_type_name(v));
        }
        *out = (int32_t)json_integer_value(v);
        return QR_OK;
    }
    if (strcmp(which, "bos") == 0) {
        json_t *pp = get(r->root, "post_processor"), *single = get(pp, "single"), *first;
        if (json_is_array(single) && (first = json_array_get(single, 0)) &&
            (first = get(get(first, "SpecialToken"), "id")) && json_is_string(first)) {
            *out = token_id(r, json_string_value(first));
        }
    }
    return QR_OK;
}

qr_status qr_tokenizer_json_read(const char *path, qr_tokenizer **out)
{
    qr_status st = QR_OK;
    reader r;
    json_error_t jerr;
    json_t *tcfg = NULL, *mcfg = NULL;
    uint64_t size = 0;
    char dir[4096], side[4096];
    const char *slash;
    *out = NULL;
    memset(&r, 0, sizeof r);
    r.path = path;
    QR_CHECK(qr_fs_file_size(path, &size));
    if (size > QR_TOKENIZER_JSON_MAX) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: too large for a tokenizer.json (expected at most %" PRIu64
                     " bytes, found %" PRIu64 ")",
                     path, QR_TOKENIZER_JSON_MAX, size);
        goto done;
    }
    r.root = json_load_file(path, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!r.root) {
        st = qr_fail(QR_ERR_INPUT, "%s: not valid JSON (line %d, column %d: %s)", path, jerr.line,
                     jerr.column, jerr.text);
        goto done;
    }
    if (!json_is_object(r.root)) {
        st = qr_fail(QR_ERR_INPUT, "%s: expected a JSON object at the top level, found %s", path,
                     qr_json_type_name(r.root));
        goto done;
    }
    r.spec.norm = r.norm;
    r.spec.pre = r.pre;
    QR_CHECK(read_model(&r, get(r.root, "model")));
    QR_CHECK(read_normalizer(&r, get(r.root, "normalizer"), 0));
    QR_CHECK(read_pre(&r, get(r.root, "pre_tokenizer"), 0));
    QR_CHECK(read_added(&r));
    slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    QR_CHECK(qr_fs_join(side, sizeof side, dir, "tokenizer_config.json"));
    QR_CHECK(load_side(side, &tcfg));
    QR_CHECK(qr_fs_join(side, sizeof side, dir, "config.json"));
    QR_CHECK(load_side(side, &mcfg));
    QR_CHECK(special_id(&r, tcfg, mcfg, "bos", &r.spec.bos));
    QR_CHECK(special_id(&r, tcfg, mcfg, "eos", &r.spec.eos));
    st = qr_tokenizer_create_hf(&r.spec, out);
    if (st != QR_OK) {
        char inner[QR_ERRMSG_MAX];
        snprintf(inner, sizeof inner, "%s", qr_errmsg());
        st = qr_fail(st, "%s: %s", path, inner);
    }
done:
    json_decref(r.root);
    json_decref(tcfg);
    json_decref(mcfg);
    free(r.vocab);
    free(r.vocab_lens);
    free(r.vocab_ids);
    free(r.ml);
    free(r.mr);
    free(r.mll);
    free(r.mrl);
    free(r.merge_copy);
    free(r.added);
    return st;
}

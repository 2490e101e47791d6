/* eval_sidecar.c: CKPT.eval.json, the model-level quality beside a checkpoint (io/eval_sidecar.h).
 */
#include "io/eval_sidecar.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "io/fs.h"
#include "src/alloc.h"

/* Largest sidecar read back (a few hundred bytes per text). */
#define QR_EVAL_SIDECAR_MAX_BYTES ((size_t)16 << 20)

qr_status qr_eval_file_identity(const char *path, char id[QR_EVAL_IDENTITY_MAX])
{
    qr_status st = QR_OK;
    unsigned char *buf = NULL;
    XXH3_state_t *x = NULL;
    FILE *f = fopen(path, "rb");
    size_t n;
    if (!f) {
        return qr_fail(QR_ERR_INPUT, "%s: cannot open (%s)", path, strerror(errno));
    }
    x = XXH3_createState();
    if (!x || XXH3_64bits_reset(x) == XXH_ERROR) {
        st = qr_fail(QR_ERR_NOMEM, "%s: cannot start a hash", path);
        goto done;
    }
    QR_CHECK(qr_malloc(&buf, (size_t)1 << 20, 1, "identity buffer"));
    while ((n = fread(buf, 1, (size_t)1 << 20, f)) > 0) {
        XXH3_64bits_update(x, buf, n);
    }
    if (ferror(f)) {
        st = qr_fail(QR_ERR_INPUT, "%s: cannot read (%s)", path, strerror(errno));
        goto done;
    }
    snprintf(id, QR_EVAL_IDENTITY_MAX, "xxh3-%016" PRIx64, (uint64_t)XXH3_64bits_digest(x));
done:
    XXH3_freeState(x);
    free(buf);
    fclose(f);
    return st;
}

static json_t *num_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* The one list of per-text figure names and where each lives in the summary. */
typedef struct {
    const char *name;
    size_t offset; /* of a double in qr_divergence_summary */
} figure;
#define FIG(n, f)                                                                                  \
    {                                                                                              \
        n, offsetof(qr_divergence_summary, f)                                                      \
    }
static const figure figures[] = {
    FIG("nll_per_token", nll_test),
    FIG("perplexity", ppl_test),
    FIG("float_nll_per_token", nll_ref),
    FIG("float_perplexity", ppl_ref),
    FIG("delta_nll", delta_nll),
    FIG("delta_nll_se", delta_nll_se),
    FIG("kl_mean", kl_mean),
    FIG("kl_mean_se", kl_mean_se),
    FIG("kl_median", kl_median),
    FIG("kl_p99", kl_p99),
    FIG("kl_max", kl_max),
    FIG("top1_agreement", top1),
    FIG("top1_agreement_se", top1_se),
};
#undef FIG
#define N_FIGURES (sizeof figures / sizeof figures[0])

void qr_eval_summary_to_json(json_t *obj, const qr_divergence_summary *s)
{
    json_object_set_new(obj, "tokens_scored", json_integer((json_int_t)s->tokens));
    for (size_t i = 0; i < N_FIGURES; i++) {
        double v = *(const double *)((const char *)s + figures[i].offset);
        json_object_set_new(obj, figures[i].name, num_or_null(v));
    }
}

/* Whether texts (array of objects) has an entry called name. */
static bool has_name(const json_t *texts, const char *name)
{
    size_t i;
    json_t *t;
    json_array_foreach(texts, i, t)
    {
        const char *n = json_string_value(json_object_get(t, "name"));
        if (n && strcmp(n, name) == 0) {
            return true;
        }
    }
    return false;
}

/* The file at path when it is a sidecar of `identity` (NULL otherwise: absent, another format, or
 * another checkpoint's). */
static json_t *load_same(const char *path, const char *identity)
{
    json_error_t err;
    json_t *root;
    const char *fmt, *id;
    uint64_t bytes = 0;
    if (!qr_fs_exists(path) || qr_fs_file_size(path, &bytes) != QR_OK ||
        bytes > QR_EVAL_SIDECAR_MAX_BYTES) {
        qr_clear_error();
        return NULL;
    }
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    fmt = json_string_value(json_object_get(root, "format"));
    id = json_string_value(json_object_get(root, "checkpoint_identity"));
    if (!fmt || strcmp(fmt, QR_EVAL_SIDECAR_FORMAT) != 0 || !id || strcmp(id, identity) != 0 ||
        !json_is_array(json_object_get(root, "texts"))) {
        json_decref(root);
        return NULL;
    }
    return root;
}

qr_status qr_eval_sidecar_write(const char *path, const char *identity, const json_t *head,
                                const json_t *texts, size_t *kept)
{
    qr_status st = QR_OK;
    json_t *root = json_object(), *all = json_array(), *old = load_same(path, identity), *t;
    char *text = NULL;
    size_t i, n_kept = 0;
    if (!root || !all) {
        st = qr_fail(QR_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    json_object_set_new(root, "format", json_string(QR_EVAL_SIDECAR_FORMAT));
    json_object_set_new(root, "version", json_integer(QR_EVAL_SIDECAR_VERSION));
    json_object_set_new(root, "checkpoint_identity", json_string(identity));
    json_object_update(root, (json_t *)head);
    json_array_foreach(old ? json_object_get(old, "texts") : NULL, i, t)
    {
        const char *name = json_string_value(json_object_get(t, "name"));
        if (name && !has_name(texts, name)) {
            json_array_append(all, t);
            n_kept++;
        }
    }
    json_array_extend(all, (json_t *)texts);
    json_object_set(root, "texts", all);
    text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    if (!text) {
        st = qr_fail(QR_ERR_NOMEM, "%s: cannot encode the results", path);
        goto done;
    }
    QR_CHECK(qr_fs_write_atomic(path, text, strlen(text)));
    if (kept) {
        *kept = n_kept;
    }
done:
    free(text);
    json_decref(root);
    json_decref(all);
    json_decref(old);
    return st;
}

static double get_num(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* One "texts" entry into q. */
static qr_status read_text(const char *path, const json_t *t, qr_report_quality *q)
{
    const char *name = json_string_value(json_object_get(t, "name"));
    const json_t *tokens = json_object_get(t, "tokens_scored");
    if (!name || !json_is_integer(tokens)) {
        return qr_fail(QR_ERR_INPUT, "%s: a text entry without \"name\" or \"tokens_scored\"",
                       path);
    }
    snprintf(q->name, sizeof q->name, "%s", name);
    q->seq_len = (int64_t)get_num(t, "seq_len");
    q->s.tokens = (int64_t)json_integer_value(tokens);
    for (size_t i = 0; i < N_FIGURES; i++) {
        *(double *)((char *)&q->s + figures[i].offset) = get_num(t, figures[i].name);
    }
    return QR_OK;
}

qr_status qr_eval_sidecar_read(const char *path, const char *identity, qr_report_quality **q,
                               size_t *n, bool *stale)
{
    qr_status st = QR_OK;
    json_error_t err;
    json_t *root, *texts, *t;
    const char *fmt, *id;
    size_t i;
    uint64_t bytes = 0;
    *q = NULL;
    *n = 0;
    *stale = false;
    QR_TRY(qr_fs_file_size(path, &bytes));
    if (bytes > QR_EVAL_SIDECAR_MAX_BYTES) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: %" PRIu64 " bytes (expected at most %zu for an eval file)", path, bytes,
                       QR_EVAL_SIDECAR_MAX_BYTES);
    }
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        return qr_fail(QR_ERR_INPUT, "%s: not valid JSON (line %d column %d: %s)", path, err.line,
                       err.column, err.text);
    }
    fmt = json_string_value(json_object_get(root, "format"));
    id = json_string_value(json_object_get(root, "checkpoint_identity"));
    texts = json_object_get(root, "texts");
    if (!fmt || strcmp(fmt, QR_EVAL_SIDECAR_FORMAT) != 0 || !id || !json_is_array(texts)) {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: not a qrecon eval file (expected format \"%s\" with "
                     "\"checkpoint_identity\" and \"texts\")",
                     path, QR_EVAL_SIDECAR_FORMAT);
        goto done;
    }
    if (strcmp(id, identity) != 0) {
        *stale = true;
        goto done;
    }
    QR_CHECK(qr_calloc(q, json_array_size(texts) + 1, sizeof **q, "eval figures"));
    json_array_foreach(texts, i, t)
    {
        QR_CHECK(read_text(path, t, &(*q)[i]));
        (*n)++;
    }
done:
    if (st != QR_OK) {
        free(*q);
        *q = NULL;
        *n = 0;
    }
    json_decref(root);
    return st;
}

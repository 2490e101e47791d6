/* cmd_validate.c: `qrecon validate CKPT --calib DIR`: every quantized module of a shared
 * checkpoint run through the INT4 kernels on the calibration tokens quantize held out, checked
 * (a) against a float64 reference from the dequantized checkpoint on the same quantized
 * activations (integer group sums exact, float outputs within a rounding bound) and (b) against
 * the original weights, the output error compared with the one the checkpoint stores
 * (src/validate.h, docs/validate.md).
 *
 * Collective: modules are dealt round-robin over the ranks; after each round the results are
 * gathered on rank 0 in module order (rank 0 prints progress, the table, the JSON and Markdown
 * files). Input errors are agreed across ranks before every collective step. A module that fails
 * a check makes the command exit 4 (QR_ERR_VALIDATION) after the whole table was written. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/calib_holdout.h"
#include "io/calib_shard.h"
#include "io/checkpoint.h"
#include "io/ckpt_check.h"
#include "io/fs.h"
#include "io/model.h"
#include "jobs/cli.h"
#include "jobs/kernel_options.h"
#include "mpi/comm.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/kernels/kernels.h"
#include "src/log.h"
#include "src/modules.h"
#include "src/progress.h"
#include "src/validate.h"

/* Stored against measured output error: measured A8/A4 errors run through the float32 kernels,
 * the stored ones through the float64 reference, on the same held-out tokens. Their rounding
 * moves the error by ~1e-6 relative (measured on stories260K: below 1e-5); 1e-3 keeps a wide
 * margin and still flags a corrupted module (one flipped packed byte moves the error by percents
 * on the small models). */
#define QR_VALIDATE_STORED_REL 1e-3
/* Absolute floor for errors near zero (a layer the method reproduces exactly). */
#define QR_VALIDATE_STORED_ABS 1e-9

#define QR_VALIDATE_JSON_FORMAT "qrecon-validate"
#define QR_VALIDATE_JSON_VERSION 1

static const qr_cmd_doc doc = {
    "validate",
    "qrecon validate CKPT --calib DIR [--model DIR] [--kernel auto|ref|avx2|avx512]\n"
    "                       [--max-err X] [--tokens N] [--json FILE] [--md FILE]",
    "Runs every quantized module of the checkpoint through the INT4 kernels on the calibration\n"
    "tokens quantize held out (the last --holdout windows of DIR) and checks, per module and for\n"
    "A8 and A4 activations:\n"
    "  (a) the kernel against a float64 reference from the dequantized checkpoint on the same\n"
    "      quantized activations: every integer group sum equal, float outputs within a\n"
    "      rounding bound;\n"
    "  (b) the output error against the original weights (float, A8, A4) against the error the\n"
    "      checkpoint stores for the same tokens.\n",
    "Exit codes: 0 every module passed, 4 a module failed a check (the table says which),\n"
    "2 bad input or usage, 1 internal error.\n",
};

/* Why a module failed (bits of vrow.fails). */
enum {
    QR_VFAIL_INT = 1u << 0,    /* an integer group sum differs */
    QR_VFAIL_FLOAT = 1u << 1,  /* a float output outside the rounding bound */
    QR_VFAIL_STORED = 1u << 2, /* measured and stored output error disagree */
    QR_VFAIL_MAXERR = 1u << 3  /* error above --max-err */
};

typedef struct {
    const char *ckpt, *calib, *model, *kernel, *json, *md;
    double max_err; /* NaN: no limit */
    int64_t tokens; /* 0: every held-out token */
} validate_opts;

/* One module's result: plain data, gathered on rank 0 as bytes. */
typedef struct {
    char name[QR_MODULE_NAME_MAX];
    int64_t index, d_out, d_in;
    double stored[3];   /* stored output error: float, A8, A4 (NaN when absent) */
    double measured[3]; /* float (reference), A8 and A4 (kernels) */
    double primary_measured, primary_stored;
    qr_validate_result r;
    uint32_t fails;
    int32_t stored_checked; /* the stored errors were compared */
} vrow;

/* Everything every rank opens. */
typedef struct {
    qr_ckpt *ck;
    qr_model *model;
    qr_calib_set *calib;
    qr_module *mods; /* (n_mods) the model's modules */
    size_t n_mods;
    const char *model_path;
    char model_path_buf[QR_CALIB_STR_MAX];
    char method[QR_KV_STR_MAX];
    int64_t abits, wbits, group, rank;
    double holdout;
    qr_calib_split split;
    int64_t row0, n_rows; /* the rows validated */
    bool subset;          /* fewer than all held-out rows */
} vctx;

#define OPT(f) offsetof(validate_opts, f)
static const qr_opt validate_rows[] = {
    {"calib", QR_OPT_STR, OPT(calib), "DIR",
     "the capture folder the checkpoint was quantized from (checked)", .required = true},
    {"model", QR_OPT_STR, OPT(model), "DIR",
     "the source model, checked against the checkpoint's source_model\n"
     "identity",
     "the path the calibration shards record"},
    {"max-err", QR_OPT_DOUBLE, OPT(max_err), "X",
     "also fail a module whose error at the checkpoint's activation bits\n"
     "exceeds X",
     "off", .dmin = 0.0, .dmax = 1e300},
    {"tokens", QR_OPT_INT, OPT(tokens), "N",
     "use only the first N held-out tokens (faster; skips the stored-error\n"
     "comparison, which needs all of them)",
     "all", .imin = 1, .imax = INT32_MAX},
    {"json", QR_OPT_STR, OPT(json), "FILE",
     "write the per-module results as JSON (docs/validate.md), atomically"},
    {"md", QR_OPT_STR, OPT(md), "FILE", "write the table as Markdown, atomically"},
};
#undef OPT

static qr_status parse(int argc, char **argv, validate_opts *o, bool *help)
{
    qr_opt_result res;
    qr_opt_table tables[] = {
        QR_OPT_TABLE(validate_rows, o, "options (defaults in parentheses)"),
        qr_kernel_opt_table(&o->kernel, NULL),
    };
    memset(o, 0, sizeof *o);
    o->max_err = NAN;
    o->kernel = "auto";
    QR_TRY(qr_opts_parse(&doc, tables, 2, 1, argc, argv, &res));
    *help = res.help;
    if (res.help) {
        return QR_OK;
    }
    if (res.n_positional == 0) {
        return qr_cli_usage_error("validate", "expected the checkpoint CKPT");
    }
    o->ckpt = res.positional[0];
    return QR_OK;
}

/* The holdout fraction and the metrics' row sample quantize used, from the checkpoint's options
 * JSON (a checkpoint from before the sample has no "metric_rows": every held-out row). */
static qr_status read_holdout(const vctx *v, const char *path, double *holdout,
                              int64_t *metric_rows)
{
    json_error_t err;
    json_t *root = json_loads(qr_ckpt_options(v->ck), 0, &err), *h, *mr;
    h = root ? json_object_get(root, "holdout") : NULL;
    mr = root ? json_object_get(root, "metric_rows") : NULL;
    *metric_rows = json_is_integer(mr) && json_integer_value(mr) > 0 ? json_integer_value(mr) : 0;
    if (!h || !json_is_number(h)) {
        json_decref(root);
        return qr_fail(QR_ERR_INPUT,
                       "%s: root attribute 'options' has no number \"holdout\" (expected the "
                       "options of qrecon quantize)",
                       path);
    }
    *holdout = json_number_value(h);
    json_decref(root);
    return QR_OK;
}

/* Open the checkpoint, calibration and model and check they belong together. Not collective. */
static qr_status open_inputs(const validate_opts *o, vctx *v)
{
    qr_ckpt_header h;
    char ident[32];
    int64_t metric_rows;
    QR_TRY(qr_ckpt_open(o->ckpt, &v->ck));
    QR_TRY(qr_ckpt_check(v->ck, o->ckpt, qr_log_rank(),
                         qr_log_nranks())); /* structure against the header, before anything */
    QR_TRY(qr_ckpt_header_read(v->ck, &h));
    snprintf(v->method, sizeof v->method, "%s", h.method);
    v->abits = h.abits;
    v->wbits = h.wbits;
    v->group = h.group;
    v->rank = h.rank;
    QR_TRY(read_holdout(v, o->ckpt, &v->holdout, &metric_rows));

    QR_TRY(qr_calib_set_open_dir(o->calib, &v->calib));
    qr_calib_identity(v->calib, ident, sizeof ident);
    if (h.calibration[0] && strcmp(h.calibration, ident) != 0) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: not the calibration %s was quantized from, so its held-out rows are "
                       "not the ones the stored errors were measured on (expected calibration "
                       "identity %s, found %s)",
                       o->calib, o->ckpt, h.calibration, ident);
    }
    QR_TRY(qr_calib_split_holdout(v->calib, v->holdout, &v->split));
    qr_calib_split_sample(&v->split, metric_rows);

    if (o->model) {
        v->model_path = o->model;
    } else {
        snprintf(v->model_path_buf, sizeof v->model_path_buf, "%s",
                 qr_calib_shard_info(qr_calib_set_shard(v->calib, 0))->model_path);
        v->model_path = v->model_path_buf;
    }
    if (qr_model_open(v->model_path, &v->model) != QR_OK) {
        char msg[QR_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", qr_errmsg());
        return qr_fail(QR_ERR_INPUT, "%s (the source model of %s; give it with --model DIR)", msg,
                       o->ckpt);
    }
    if (!qr_model_identity_matches(v->model, h.source_model)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: not the model %s was quantized from (expected identity %s, found %s)",
                       v->model_path, o->ckpt, h.source_model, qr_model_identity(v->model));
    }
    QR_TRY(qr_modules_enumerate(qr_model_get_config(v->model), &v->mods, &v->n_mods));
    for (size_t i = 0; i < qr_ckpt_module_count(v->ck); i++) {
        const char *name = qr_ckpt_module_name(v->ck, i);
        size_t k = 0;
        while (k < v->n_mods && strcmp(v->mods[k].name, name) != 0) {
            k++;
        }
        if (k == v->n_mods) {
            return qr_fail(QR_ERR_INPUT, "%s: module '%s' is not a linear module of %s", o->ckpt,
                           name, v->model_path);
        }
    }
    if (v->split.n_ho > 0) {
        v->row0 = v->split.n_fit;
        v->n_rows = v->split.n_metric;
    } else {
        v->row0 = 0;
        v->n_rows = v->split.n_rows;
    }
    if (o->tokens > 0 && o->tokens < v->n_rows) {
        v->n_rows = o->tokens;
        v->subset = true;
    }
    return QR_OK;
}

static void close_inputs(vctx *v)
{
    qr_ckpt_close(&v->ck);
    qr_model_close(&v->model);
    qr_calib_set_close(&v->calib);
    free(v->mods);
    v->mods = NULL;
}

static double kv_num(const qr_kvlist *l, const char *key)
{
    const qr_kv *kv = qr_kv_find(l, key);
    if (!kv) {
        return NAN;
    }
    return kv->type == QR_KV_DOUBLE ? kv->d : kv->type == QR_KV_INT ? (double)kv->i : NAN;
}

/* 0 float, 1 A8, 2 A4: the error that matches the checkpoint's activation bits. */
static int primary_index(int64_t abits)
{
    return abits == 8 ? 1 : abits == 4 ? 2 : 0;
}

static bool errors_agree(double measured, double stored)
{
    return fabs(measured - stored) <= QR_VALIDATE_STORED_ABS + QR_VALIDATE_STORED_REL * stored;
}

/* The checkpoint's rank option as given: a number, or "auto" (each module's own, QR_AUTO). */
static void rank_text(int64_t rank, char *buf, size_t n)
{
    if (rank == QR_AUTO) {
        snprintf(buf, n, "auto");
    } else {
        snprintf(buf, n, "%" PRId64, rank);
    }
}

/* Validate checkpoint module i (on this rank alone). */
static qr_status validate_one(const validate_opts *o, vctx *v, size_t i, vrow *row)
{
    qr_status st = QR_OK;
    const char *name = qr_ckpt_module_name(v->ck, i);
    const qr_module *m = NULL;
    qr_qlayer ql;
    qr_kvlist metrics = {0};
    double *W = NULL; /* (d_out, d_in) original weight */
    float *X = NULL;  /* (n_rows, d_in) held-out inputs */
    char tensor[QR_MODULE_NAME_MAX + 16];
    size_t nw, nx;
    int p = primary_index(v->abits);
    memset(&ql, 0, sizeof ql);
    memset(row, 0, sizeof *row);
    snprintf(row->name, sizeof row->name, "%s", name);
    row->index = (int64_t)i;
    for (size_t k = 0; k < v->n_mods && !m; k++) {
        m = strcmp(v->mods[k].name, name) == 0 ? &v->mods[k] : NULL;
    }
    if (!m) {
        return qr_fail(QR_ERR_INPUT, "%s: module '%s' is not a linear module of %s", o->ckpt, name,
                       v->model_path);
    }
    QR_CHECK(qr_ckpt_load_module(v->ck, name, &ql, &metrics));
    if (ql.d_out != m->d_out || ql.d_in != m->d_in) {
        st =
            qr_fail(QR_ERR_INPUT, "%s: module '%s' shape (expected %lld x %lld, found %lld x %lld)",
                    o->ckpt, name, (long long)m->d_out, (long long)m->d_in, (long long)ql.d_out,
                    (long long)ql.d_in);
        goto done;
    }
    row->d_out = ql.d_out;
    row->d_in = ql.d_in;
    snprintf(tensor, sizeof tensor, "%s.weight", name);
    if (!qr_mul_size((size_t)m->d_out, (size_t)m->d_in, &nw) ||
        !qr_mul_size((size_t)v->n_rows, (size_t)m->d_in, &nx)) {
        st = qr_fail(QR_ERR_INPUT, "%s: size overflows", tensor);
        goto done;
    }
    QR_CHECK(qr_malloc(&W, nw, sizeof *W, tensor));
    QR_CHECK(qr_model_read_f64(v->model, tensor, W, nw));
    QR_CHECK(qr_malloc(&X, nx, sizeof *X, m->input_key));
    if (v->split.n_ho > 0) {
        QR_CHECK(qr_calib_read_sample(v->calib, m->input_key, &v->split, 0, v->n_rows, X));
    } else {
        QR_CHECK(qr_calib_set_read_rows(v->calib, m->input_key, v->row0, v->n_rows, X));
    }
    QR_CHECK(qr_validate_module(&ql, W, X, v->n_rows, &row->r));

    row->stored[0] = kv_num(&metrics, "output_error");
    row->stored[1] = kv_num(&metrics, "output_error_a8");
    row->stored[2] = kv_num(&metrics, "output_error_a4");
    row->measured[0] = row->r.out_err_float;
    row->measured[1] = row->r.act[0].out_err;
    row->measured[2] = row->r.act[1].out_err;
    row->primary_measured = row->measured[p];
    row->primary_stored = row->stored[p];
    for (int a = 0; a < 2; a++) {
        const qr_validate_act *ac = &row->r.act[a];
        row->fails |= ac->int_mismatches ? QR_VFAIL_INT : 0u;
        row->fails |= ac->float_rel_diff <= ac->float_tol ? 0u : QR_VFAIL_FLOAT;
    }
    if (!v->subset && v->split.n_ho > 0) {
        for (int k = 0; k < 3; k++) {
            if (isfinite(row->stored[k])) {
                row->stored_checked = 1;
                row->fails |= errors_agree(row->measured[k], row->stored[k]) ? 0u : QR_VFAIL_STORED;
            }
        }
    }
    if (!isnan(o->max_err) && !(row->primary_measured <= o->max_err)) {
        row->fails |= QR_VFAIL_MAXERR;
    }
done:
    free(W);
    free(X);
    qr_qlayer_free(&ql);
    qr_kvlist_free(&metrics);
    return st;
}

/* ---- output on rank 0 ----------------------------------------------------------------------- */

static void fail_text(uint32_t f, char *buf, size_t n)
{
    static const char *names[] = {"int", "float", "stored", "max-err"};
    size_t len = 0;
    buf[0] = '\0';
    if (!f) {
        snprintf(buf, n, "pass");
        return;
    }
    len += (size_t)snprintf(buf, n, "FAIL");
    for (int b = 0; b < 4 && len < n; b++) {
        if (f & (1u << b)) {
            len += (size_t)snprintf(buf + len, n - len, "%s%s", len == 4 ? ":" : ",", names[b]);
        }
    }
}

static int64_t int_max(const vrow *r)
{
    return r->r.act[0].int_max_diff > r->r.act[1].int_max_diff ? r->r.act[0].int_max_diff
                                                               : r->r.act[1].int_max_diff;
}

static double float_max(const vrow *r)
{
    double a = r->r.act[0].float_rel_diff, b = r->r.act[1].float_rel_diff;
    return (isnan(a) || a > b) ? a : b;
}

/* One line per module, as text (md = 0) or a Markdown table row (md = 1). */
static int format_row(const vrow *r, const char *kernel, int width, int md, char *buf, size_t n)
{
    char status[64];
    fail_text(r->fails, status, sizeof status);
    if (md) {
        return snprintf(buf, n,
                        "| %s | %s | %" PRId64 " | %.2e | %.4g | %.4g | %.4g | %.4g | %s |\n",
                        r->name, kernel, int_max(r), float_max(r), r->measured[0], r->measured[1],
                        r->measured[2], r->primary_stored, status);
    }
    return snprintf(buf, n, "%-*s %-7s %9" PRId64 " %10.2e %10.4g %10.4g %10.4g %10.4g  %s\n",
                    width, r->name, kernel, int_max(r), float_max(r), r->measured[0],
                    r->measured[1], r->measured[2], r->primary_stored, status);
}

static const char *act_name(int64_t abits)
{
    return abits == 8 ? "A8" : abits == 4 ? "A4" : "float";
}

/* The table's head, printed before the first module; its rows follow as the modules finish
 * (collect_round), so each module is printed once. width: the longest module name. */
static void print_head(const validate_opts *o, const vctx *v, const char *kernel, int nranks,
                       int width)
{
    char rank[32];
    rank_text(v->rank, rank, sizeof rank);
    printf("validate: %s (%s, W%" PRId64 "%s, group %" PRId64 ", rank %s)\n", o->ckpt, v->method,
           v->wbits, v->abits ? (v->abits == 8 ? "A8" : "A4") : "A16", v->group, rank);
    printf("  %" PRId64 " %s tokens of %s (%s rows %" PRId64 "..%" PRId64 "), kernel %s, %d "
           "rank(s)\n",
           v->n_rows, v->split.n_ho > 0 ? "held-out" : "calibration (no holdout)", o->calib,
           v->split.n_metric < v->split.n_ho ? "quantize's metric sample, spread over" : "",
           v->row0, v->row0 + (v->split.n_metric < v->split.n_ho ? v->split.n_ho : v->n_rows) - 1,
           kernel, nranks);
    printf("%-*s %-7s %9s %10s %10s %10s %10s %10s  %s\n", width, "module", "kernel", "int-diff",
           "float-rel", "err-float", "err-A8", "err-A4", "stored", "status");
    fflush(stdout);
}

/* The table's summary, after its rows. */
static void print_summary(const vctx *v, const vrow *rows, size_t n, double seconds)
{
    size_t n_fail = 0, int_exact = 0;
    double worst_float = 0.0, min_tol = INFINITY, worst_stored = 0.0;
    const vrow *worst = NULL;
    for (size_t i = 0; i < n; i++) {
        n_fail += rows[i].fails != 0;
        if (!worst || rows[i].primary_measured > worst->primary_measured) {
            worst = &rows[i];
        }
    }
    for (size_t i = 0; i < n; i++) {
        double f = float_max(&rows[i]);
        worst_float = (isnan(f) || f > worst_float) ? f : worst_float;
        for (int a = 0; a < 2; a++) {
            double t = rows[i].r.act[a].float_tol;
            min_tol = t < min_tol ? t : min_tol;
        }
        for (int k = 0; k < 3 && rows[i].stored_checked; k++) {
            double d = fabs(rows[i].measured[k] - rows[i].stored[k]) / rows[i].stored[k];
            worst_stored = (isfinite(rows[i].stored[k]) && d > worst_stored) ? d : worst_stored;
        }
        int_exact += rows[i].r.act[0].int_mismatches == 0 && rows[i].r.act[1].int_mismatches == 0;
    }
    printf("summary: %zu module(s), %zu passed, %zu failed; integer sums exact in %zu; worst float "
           "diff %.2e (smallest bound %.2e)\n",
           n, n - n_fail, n_fail, int_exact, worst_float, min_tol);
    if (worst) {
        printf("  largest %s error %.4g (%s); stored errors ", act_name(v->abits),
               worst->primary_measured, worst->name);
        if (v->subset || v->split.n_ho == 0) {
            printf("%s", v->subset ? "not compared (--tokens subset)" : "absent (no holdout)");
        } else {
            printf("agree within %.2e relative (tolerance %.0e)", worst_stored,
                   QR_VALIDATE_STORED_REL);
        }
        printf("; %.2f s (%.3f s per module)\n", seconds, seconds / (double)n);
    }
    fflush(stdout);
}

static json_t *num_or_null(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static qr_status write_json(const validate_opts *o, const vctx *v, const vrow *rows, size_t n,
                            const char *kernel, double seconds, int nranks)
{
    qr_status st = QR_OK;
    json_t *root = json_object(), *mods = json_array(), *tol = json_object();
    char *text = NULL;
    size_t n_fail = 0;
    if (!root || !mods || !tol) {
        st = qr_fail(QR_ERR_NOMEM, "%s: out of memory", o->json);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const vrow *r = &rows[i];
        char status[64];
        json_t *m, *acts = json_array();
        n_fail += r->fails != 0;
        fail_text(r->fails, status, sizeof status);
        for (int a = 0; a < 2; a++) {
            const qr_validate_act *ac = &r->r.act[a];
            json_array_append_new(acts, json_pack("{s:i, s:I, s:I, s:I, s:o, s:f, s:o}", "abits",
                                                  ac->abits, "int_compared", (json_int_t)ac->n_int,
                                                  "int_mismatches", (json_int_t)ac->int_mismatches,
                                                  "int_max_diff", (json_int_t)ac->int_max_diff,
                                                  "float_rel_diff", num_or_null(ac->float_rel_diff),
                                                  "float_tol", ac->float_tol, "output_error",
                                                  num_or_null(ac->out_err)));
        }
        m = json_pack("{s:s, s:I, s:I, s:s, s:b, s:s, s:I, s:o, s:o, s:{s:o, s:o, s:o}, "
                      "s:{s:o, s:o, s:o}, s:b, s:o, s:f}",
                      "name", r->name, "d_out", (json_int_t)r->d_out, "d_in", (json_int_t)r->d_in,
                      "kernel", kernel, "pass", r->fails == 0, "status", status, "int_max_diff",
                      (json_int_t)int_max(r), "float_rel_diff", num_or_null(float_max(r)), "acts",
                      acts, "output_error", "float", num_or_null(r->measured[0]), "a8",
                      num_or_null(r->measured[1]), "a4", num_or_null(r->measured[2]),
                      "stored_error", "float", num_or_null(r->stored[0]), "a8",
                      num_or_null(r->stored[1]), "a4", num_or_null(r->stored[2]), "stored_checked",
                      r->stored_checked != 0, "primary_error", num_or_null(r->primary_measured),
                      "seconds", r->r.seconds);
        if (!m || json_array_append_new(mods, m) != 0) {
            st = qr_fail(QR_ERR_NOMEM, "%s: cannot encode module %s", o->json, r->name);
            goto done;
        }
    }
    json_object_set_new(tol, "float_margin", json_real(QR_VALIDATE_FLOAT_MARGIN));
    json_object_set_new(tol, "stored_rel", json_real(QR_VALIDATE_STORED_REL));
    json_object_set_new(tol, "stored_abs", json_real(QR_VALIDATE_STORED_ABS));
    json_object_set_new(root, "format", json_string(QR_VALIDATE_JSON_FORMAT));
    json_object_set_new(root, "version", json_integer(QR_VALIDATE_JSON_VERSION));
    json_object_set_new(root, "checkpoint", json_string(o->ckpt));
    json_object_set_new(root, "calib", json_string(o->calib));
    json_object_set_new(root, "model", json_string(v->model_path));
    json_object_set_new(root, "method", json_string(v->method));
    json_object_set_new(root, "abits", json_integer(v->abits));
    json_object_set_new(root, "kernel", json_string(kernel));
    json_object_set_new(root, "tokens", json_integer(v->n_rows));
    json_object_set_new(root, "first_row", json_integer(v->row0));
    json_object_set_new(root, "held_out", json_boolean(v->split.n_ho > 0));
    json_object_set_new(root, "subset", json_boolean(v->subset));
    json_object_set_new(root, "max_err", num_or_null(o->max_err));
    json_object_set_new(root, "tolerances", tol);
    tol = NULL;
    json_object_set_new(root, "ranks", json_integer(nranks));
    json_object_set_new(root, "seconds", json_real(seconds));
    json_object_set_new(root, "pass", json_boolean(n_fail == 0));
    json_object_set_new(root, "modules_failed", json_integer((json_int_t)n_fail));
    json_object_set_new(root, "modules", mods);
    mods = NULL;
    text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    if (!text) {
        st = qr_fail(QR_ERR_NOMEM, "%s: cannot encode the results", o->json);
        goto done;
    }
    st = qr_fs_write_atomic(o->json, text, strlen(text));
done:
    free(text);
    json_decref(root);
    json_decref(mods);
    json_decref(tol);
    return st;
}

static qr_status write_md(const validate_opts *o, const vctx *v, const vrow *rows, size_t n,
                          const char *kernel)
{
    qr_status st = QR_OK;
    size_t cap = 1024 + n * 512, len = 0;
    char rank[32];
    rank_text(v->rank, rank, sizeof rank);
    char *buf = NULL;
    QR_TRY(qr_malloc(&buf, cap, 1, "validation table"));
    len +=
        (size_t)snprintf(buf + len, cap - len,
                         "# Validation of %s\n\n%s, W%" PRId64 " %s, group %" PRId64
                         ", rank %s; %" PRId64 " tokens from row %" PRId64 " of %s; kernel %s.\n\n"
                         "| module | kernel | int diff | float rel | err float | err A8 | "
                         "err A4 | stored | status |\n"
                         "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
                         o->ckpt, v->method, v->wbits, act_name(v->abits), v->group, rank,
                         v->n_rows, v->row0, o->calib, kernel);
    for (size_t i = 0; i < n && len < cap; i++) {
        len += (size_t)format_row(&rows[i], kernel, 0, 1, buf + len, cap - len);
    }
    if (len >= cap) {
        st = qr_fail(QR_ERR_INTERNAL, "%s: table larger than its buffer", o->md);
    } else {
        st = qr_fs_write_atomic(o->md, buf, len);
    }
    free(buf);
    return st;
}

/* ---- the command ------------------------------------------------------------------------------
 */

/* What the driver holds besides the inputs. */
typedef struct {
    validate_opts o;
    vctx v;
    int rank, nranks;
    vrow *rows;  /* (n) rank 0: every module, in checkpoint order */
    vrow *round; /* (nranks) rank 0: one round's results */
    qr_progress *prog;
    size_t n;
    int32_t n_fail; /* modules that failed (rank 0's count, broadcast) */
    double t0, seconds;
    const char *kernel;
    int width; /* rank 0: the table's module column */
} vrun;

/* --json and --md before any work: not an input, not inside or above one (io/fs.h). */
static qr_status check_outputs(const validate_opts *o)
{
    const char *inputs[] = {o->ckpt, o->calib, o->model};
    if (o->json) {
        QR_TRY(qr_fs_check_output("--json", o->json, QR_OUT_FILE, inputs, 3));
    }
    if (o->md) {
        QR_TRY(qr_fs_check_output("--md", o->md, QR_OUT_FILE, inputs, 3));
    }
    return QR_OK;
}

/* Open: the kernel, the checkpoint, the calibration and the model, checked against each other. */
static qr_status phase_open(vrun *r)
{
    QR_TRY(qr_kernel_select(r->o.kernel));
    QR_TRY(open_inputs(&r->o, &r->v));
    r->kernel = qr_kernel_name(qr_kernel_active());
    r->n = qr_ckpt_module_count(r->v.ck);
    return QR_OK;
}

/* Rank 0 allocates the results and starts the progress. */
static qr_status phase_prepare(vrun *r)
{
    if (r->v.split.n_ho == 0) {
        QR_WARN("validate: %s was quantized without held-out windows; checking on all %" PRId64
                " calibration rows and not comparing stored errors",
                r->o.ckpt, r->v.split.n_rows);
    }
    if (r->rank != 0) {
        return QR_OK;
    }
    QR_TRY(qr_calloc(&r->rows, r->n + 1, sizeof *r->rows, "validation results"));
    QR_TRY(qr_calloc(&r->round, (size_t)r->nranks, sizeof *r->round, "validation results"));
    r->prog = qr_progress_begin("validate", (int64_t)r->n, "modules");
    {
        /* ETA by weight count, as each step is weighed (d_out d_in of the module) */
        double total = 0;
        for (size_t i = 0; i < r->n; i++) {
            const char *name = qr_ckpt_module_name(r->v.ck, i);
            for (size_t k = 0; k < r->v.n_mods; k++) {
                if (strcmp(r->v.mods[k].name, name) == 0) {
                    total += (double)r->v.mods[k].d_out * (double)r->v.mods[k].d_in;
                }
            }
        }
        qr_progress_set_total_weight(r->prog, total);
    }
    /* the table's rows are the progress lines: each module printed once */
    qr_progress_set_no_lines(r->prog);
    r->width = 6;
    for (size_t i = 0; i < r->n; i++) {
        int l = (int)strlen(qr_ckpt_module_name(r->v.ck, i));
        r->width = l > r->width ? l : r->width;
    }
    print_head(&r->o, &r->v, r->kernel, r->nranks, r->width);
    return QR_OK;
}

/* Rank 0 files one round's results in module order. */
static void collect_round(vrun *r, size_t base)
{
    for (int k = 0; k < r->nranks && base + (size_t)k < r->n; k++) {
        char status[64], line[512];
        const vrow *got = &r->round[k];
        r->rows[base + (size_t)k] = *got;
        fail_text(got->fails, status, sizeof status);
        format_row(got, r->kernel, r->width, 0, line, sizeof line);
        qr_progress_clear_line();
        fputs(line, stdout);
        fflush(stdout);
        {
            const qr_progress_field f[] = {
                {.key = "status", .kind = QR_PF_STR, .s = status},
                {.key = "err", .label = "err", .kind = QR_PF_NUM, .x = got->primary_measured},
                {.key = "int_diff", .label = "int-diff", .kind = QR_PF_INT, .i = int_max(got)},
                {.key = "wall_s",
                 .label = "wall",
                 .kind = QR_PF_NUM,
                 .x = got->r.seconds,
                 .unit = "s"},
            };
            qr_progress_step_fields(r->prog, got->name, (double)got->d_out * (double)got->d_in, f,
                                    (int)(sizeof f / sizeof f[0]));
        }
    }
}

/* Run: modules dealt round-robin, one per rank per round; each round's results gathered on rank 0.
 * Collective: every rank returns the agreed status. */
static qr_status phase_run(vrun *r)
{
    for (size_t base = 0; base < r->n; base += (size_t)r->nranks) {
        size_t i = base + (size_t)r->rank;
        vrow mine;
        memset(&mine, 0, sizeof mine);
        mine.index = -1;
        QR_TRY(
            qr_mpi_agree(MPI_COMM_WORLD, i < r->n ? validate_one(&r->o, &r->v, i, &mine) : QR_OK));
        QR_TRY(qr_mpi_check(MPI_Gather(&mine, (int)sizeof mine, MPI_BYTE, r->round,
                                       (int)sizeof mine, MPI_BYTE, 0, MPI_COMM_WORLD),
                            "MPI_Gather"));
        if (r->rank == 0) {
            collect_round(r, base);
        }
    }
    r->seconds = qr_now() - r->t0;
    return QR_OK;
}

/* Write: rank 0 prints the table and writes the JSON and Markdown files. */
static qr_status phase_write(vrun *r)
{
    if (r->rank != 0) {
        return QR_OK;
    }
    for (size_t i = 0; i < r->n; i++) {
        r->n_fail += r->rows[i].fails != 0;
    }
    qr_progress_end(&r->prog, "validate: %zu module(s), %d failed, %.2f s", r->n, (int)r->n_fail,
                    r->seconds);
    print_summary(&r->v, r->rows, r->n, r->seconds);
    if (r->o.json) {
        QR_TRY(write_json(&r->o, &r->v, r->rows, r->n, r->kernel, r->seconds, r->nranks));
    }
    if (r->o.md) {
        QR_TRY(write_md(&r->o, &r->v, r->rows, r->n, r->kernel));
    }
    return QR_OK;
}

/* The verdict: QR_ERR_VALIDATION on every rank when a module failed, naming the first. */
static qr_status phase_verdict(vrun *r)
{
    const vrow *first = NULL;
    char status[64] = "";
    QR_TRY(qr_mpi_check(MPI_Bcast(&r->n_fail, 1, MPI_INT32_T, 0, MPI_COMM_WORLD), "MPI_Bcast"));
    if (r->n_fail == 0) {
        return QR_OK;
    }
    for (size_t i = 0; r->rows && i < r->n && !first; i++) {
        first = r->rows[i].fails ? &r->rows[i] : NULL;
    }
    if (first) {
        fail_text(first->fails, status, sizeof status);
    }
    return qr_fail(QR_ERR_VALIDATION, "%s: %d of %zu module(s) failed validation (first: %s %s)",
                   r->o.ckpt, (int)r->n_fail, r->n, first ? first->name : "(on rank 0)", status);
}

static void phase_close(vrun *r)
{
    qr_progress_end(&r->prog, "validate: failed");
    free(r->rows);
    free(r->round);
    close_inputs(&r->v);
}

qr_status qr_cmd_validate(int argc, char **argv)
{
    qr_status st = QR_OK;
    vrun r;
    bool help = false;
    memset(&r, 0, sizeof r);
    r.rank = qr_mpi_rank(MPI_COMM_WORLD);
    r.nranks = qr_mpi_size(MPI_COMM_WORLD);
    r.t0 = qr_now();
    r.kernel = "?";
    QR_TRY(parse(argc, argv, &r.o, &help));
    if (help) {
        return QR_OK;
    }
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, check_outputs(&r.o)));
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, phase_open(&r)));
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, phase_prepare(&r)));
    QR_CHECK(phase_run(&r));
    QR_CHECK(qr_mpi_agree(MPI_COMM_WORLD, phase_write(&r)));
    st = phase_verdict(&r);
done:
    phase_close(&r);
    return st;
}

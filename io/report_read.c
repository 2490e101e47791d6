/* report_read.c: checkpoint metrics and validation results into report rows. */
#include "io/report_read.h"

#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/ckpt_check.h"
#include "io/fs.h"
#include "io/h5util.h"
#include "src/alloc.h"

static double kv_double(const qr_kvlist *l, const char *key)
{
    const qr_kv *kv = qr_kv_find(l, key);
    if (!kv) {
        return NAN;
    }
    return kv->type == QR_KV_DOUBLE ? kv->d : (kv->type == QR_KV_INT ? (double)kv->i : NAN);
}

static int64_t kv_int(const qr_kvlist *l, const char *key, int64_t dflt)
{
    const qr_kv *kv = qr_kv_find(l, key);
    if (!kv) {
        return dflt;
    }
    return kv->type == QR_KV_INT ? kv->i : (kv->type == QR_KV_DOUBLE ? (int64_t)kv->d : dflt);
}

static void kv_str(const qr_kvlist *l, const char *key, char *buf, size_t n)
{
    const qr_kv *kv = qr_kv_find(l, key);
    snprintf(buf, n, "%.*s", (int)n - 1, kv && kv->type == QR_KV_STRING ? kv->s : "");
}

/* One module group's attributes (metric.* included) into a row. */
static qr_status read_row(hid_t file, const char *path, const char *name, int64_t abits,
                          qr_report_row *r)
{
    static const char *const seconds_keys[] = {"metric.seconds_scale", "metric.seconds_quantize",
                                               "metric.seconds_decompose", "metric.seconds_other",
                                               "metric.seconds_calibration"};
    char where[4096 + QR_MODULE_NAME_MAX];
    qr_kvlist attrs = {0};
    qr_status st;
    hid_t g = H5Gopen2(file, name, H5P_DEFAULT);
    snprintf(where, sizeof where, "%s: module %s", path, name);
    if (g < 0) {
        return qr_fail(QR_ERR_INPUT, "%s: group not found", where);
    }
    st = qr_h5_attrs_read_all(g, where, NULL, &attrs);
    H5Gclose(g);
    if (st != QR_OK) {
        return st;
    }
    snprintf(r->name, sizeof r->name, "%s", name);
    qr_report_parse_name(name, &r->layer, r->kind, sizeof r->kind);
    kv_str(&attrs, "method", r->method, sizeof r->method);
    r->d_out = kv_int(&attrs, "d_out", 0);
    r->d_in = kv_int(&attrs, "d_in", 0);
    r->rank_used = kv_int(&attrs, "metric.rank_used", kv_int(&attrs, "rank", 0));
    r->salient_used = kv_int(&attrs, "metric.salient_used", kv_int(&attrs, "n_salient", 0));
    r->bits_per_weight = kv_double(&attrs, "bits_per_weight");
    r->weight_err = kv_double(&attrs, "metric.weight_error");
    r->out_err = kv_double(&attrs, "metric.output_error");
    r->out_err_a8 = kv_double(&attrs, "metric.output_error_a8");
    r->out_err_a4 = kv_double(&attrs, "metric.output_error_a4");
    r->sqnr_db = kv_double(&attrs, "metric.sqnr_db");
    /* Checkpoints older than the RTN comparison have none of these: not measured. */
    r->worse_than_rtn = (int)kv_int(&attrs, "metric.worse_than_rtn", -1);
    r->fallback_rtn = (int)kv_int(&attrs, "metric.fallback_rtn", 0);
    r->rtn_err = kv_double(&attrs, abits == 8   ? "metric.rtn_output_error_a8"
                                   : abits == 4 ? "metric.rtn_output_error_a4"
                                                : "metric.rtn_output_error");
    r->method_err = kv_double(&attrs, "metric.method_output_error");
    r->seconds = 0;
    for (size_t k = 0; k < sizeof seconds_keys / sizeof seconds_keys[0]; k++) {
        double s = kv_double(&attrs, seconds_keys[k]);
        r->seconds += isfinite(s) ? s : 0.0;
    }
    {
        /* the module's wall time on its group, as its progress line printed it (checkpoints
         * from before it was stored: the sum of the method's stages and the statistics) */
        double wall = kv_double(&attrs, "metric.seconds_wall");
        r->seconds = isfinite(wall) ? wall : r->seconds;
    }
    qr_kvlist_free(&attrs);
    return QR_OK;
}

/* Validation results: {"modules": [{"name": ..., "pass": true|false}, ...]} (docs/validate.md);
 * "module" is accepted for "name" and "status": "pass"|"fail" for "pass". */
static qr_status read_validation(const char *path, qr_report_ckpt *c)
{
    json_error_t err;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err), *mods, *m;
    size_t i;
    if (!root) {
        return qr_fail(QR_ERR_INPUT, "%s: not valid JSON (line %d column %d: %s)", path, err.line,
                       err.column, err.text);
    }
    mods = json_object_get(root, "modules");
    if (!json_is_array(mods)) {
        json_decref(root);
        return qr_fail(QR_ERR_INPUT, "%s: expected an array \"modules\"", path);
    }
    json_array_foreach(mods, i, m)
    {
        const char *name = json_string_value(json_object_get(m, "name"));
        json_t *pass = json_object_get(m, "pass");
        const char *status = json_string_value(json_object_get(m, "status"));
        qr_check_state state = QR_CHECK_UNKNOWN;
        if (!name) {
            name = json_string_value(json_object_get(m, "module"));
        }
        if (json_is_boolean(pass)) {
            state = json_is_true(pass) ? QR_CHECK_PASS : QR_CHECK_FAIL;
        } else if (status) {
            state = strcmp(status, "pass") == 0 || strcmp(status, "ok") == 0 ? QR_CHECK_PASS
                                                                             : QR_CHECK_FAIL;
        }
        for (size_t r = 0; name && r < c->n_rows; r++) {
            if (strcmp(c->rows[r].name, name) == 0) {
                c->rows[r].kernel_check = state;
            }
        }
    }
    json_decref(root);
    c->validated = 1;
    return QR_OK;
}

qr_status qr_report_read(const char *path, const char *validation_path, qr_report_ckpt *out)
{
    qr_status st = QR_OK;
    qr_ckpt *ck = NULL;
    qr_ckpt_header h;
    hid_t file = H5I_INVALID_HID;
    char vpath[4096 + 32];
    const char *base = strrchr(path, '/');
    size_t n;
    memset(out, 0, sizeof *out);
    QR_CHECK(qr_ckpt_open(path, &ck));
    QR_CHECK(qr_ckpt_check(ck, path, 0, 1)); /* structure against the header, before anything */
    snprintf(out->path, sizeof out->path, "%s", path);
    snprintf(out->label, sizeof out->label, "%s", base ? base + 1 : path);
    if (strlen(out->label) > 3 && strcmp(out->label + strlen(out->label) - 3, ".h5") == 0) {
        out->label[strlen(out->label) - 3] = '\0';
    }
    QR_CHECK(qr_ckpt_header_read(ck, &h));
    snprintf(out->method, sizeof out->method, "%s", h.method);
    out->wbits = h.wbits;
    out->abits = h.abits;
    out->group = h.group;
    out->rank = h.rank;
    n = qr_ckpt_module_count(ck);
    QR_CHECK(qr_calloc(&out->rows, n, sizeof *out->rows, "report rows"));
    out->n_rows = n;
    qr_h5_quiet();
    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        st = qr_fail(QR_ERR_INPUT, "%s: cannot open as HDF5", path);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        QR_CHECK(read_row(file, path, qr_ckpt_module_name(ck, i), h.abits, &out->rows[i]));
    }
    if (!validation_path) {
        snprintf(vpath, sizeof vpath, "%s.validate.json", path);
        validation_path = qr_fs_exists(vpath) ? vpath : NULL;
    }
    if (validation_path) {
        QR_CHECK(read_validation(validation_path, out));
    }
    QR_CHECK(qr_report_set_primary(out, "auto"));
done:
    if (file >= 0) {
        H5Fclose(file);
    }
    qr_ckpt_close(&ck);
    if (st != QR_OK) {
        qr_report_ckpt_free(out);
    }
    return st;
}

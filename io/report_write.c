/* report_write.c: Markdown, CSV, JSON and SVG outputs of the report. */
#include "io/report_write.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"
#include "io/report_quality.h"
#include "io/svg_plot.h"
#include "src/alloc.h"

/* Text of a stored number for tables ("-" when absent). */
static const char *num(char *buf, size_t n, const char *fmt, double v)
{
    if (!isfinite(v)) {
        snprintf(buf, n, "-");
    } else {
        snprintf(buf, n, fmt, v);
    }
    return buf;
}

static const char *check_text(qr_check_state s)
{
    return s == QR_CHECK_PASS ? "pass" : (s == QR_CHECK_FAIL ? "FAIL" : "-");
}

static void flag_text(unsigned flags, char *buf, size_t n)
{
    snprintf(buf, n, "%s%s%s%s", flags & QR_REPORT_OVER ? "over " : "",
             flags & QR_REPORT_SPIKE ? "spike " : "", flags & QR_REPORT_KERNEL ? "kernel " : "",
             flags & QR_REPORT_RTN ? "rtn " : "");
    if (buf[0]) {
        buf[strlen(buf) - 1] = '\0';
    }
}

/* The summary's RTN column: "2 (2 kept RTN)", "0", or "-" when not measured (older checkpoints). */
static void rtn_text(const qr_report_summary *sum, char *buf, size_t n)
{
    if (sum->rtn_compared == 0) {
        snprintf(buf, n, "-");
    } else if (sum->fallback_rtn > 0) {
        snprintf(buf, n, "%zu (%zu kept RTN)", sum->worse_than_rtn, sum->fallback_rtn);
    } else {
        snprintf(buf, n, "%zu", sum->worse_than_rtn);
    }
}

static const char *primary_name(const qr_report_ckpt *c, const char *act)
{
    if (strcmp(act, "auto") == 0) {
        return c->abits == 8 ? "A8" : (c->abits == 4 ? "A4" : "float");
    }
    return strcmp(act, "a8") == 0 ? "A8" : (strcmp(act, "a4") == 0 ? "A4" : "float");
}

/* qsort of row indices by primary error, worst first, NaN last (qsort has no context argument). */
static const qr_report_row *sort_rows;
static int cmp_primary(const void *a, const void *b)
{
    double x = sort_rows[*(const size_t *)a].primary, y = sort_rows[*(const size_t *)b].primary;
    if (!isfinite(x)) {
        return isfinite(y) ? 1 : 0;
    }
    if (!isfinite(y)) {
        return -1;
    }
    return (y > x) - (y < x);
}

/* The primary error of every module in each checkpoint, the best of a row in bold. */
static void side_by_side_md(FILE *f, const qr_report_ckpt *c, size_t n, const qr_report_style *s)
{
    char b1[32];
    fprintf(f, "\n## Side by side (primary error per module)\n\n| module |");
    for (size_t k = 0; k < n; k++) {
        fprintf(f, " %s (%s) |", c[k].label, primary_name(&c[k], s->act));
    }
    fprintf(f, "\n|---|");
    for (size_t k = 0; k < n; k++) {
        fprintf(f, "---|");
    }
    fprintf(f, "\n");
    for (size_t i = 0; i < c[0].n_rows; i++) {
        double best = INFINITY;
        for (size_t k = 0; k < n; k++) {
            for (size_t j = 0; j < c[k].n_rows; j++) {
                if (strcmp(c[k].rows[j].name, c[0].rows[i].name) == 0 &&
                    isfinite(c[k].rows[j].primary)) {
                    best = fmin(best, c[k].rows[j].primary);
                }
            }
        }
        fprintf(f, "| %s |", c[0].rows[i].name);
        for (size_t k = 0; k < n; k++) {
            const qr_report_row *r = NULL;
            for (size_t j = 0; j < c[k].n_rows && !r; j++) {
                if (strcmp(c[k].rows[j].name, c[0].rows[i].name) == 0) {
                    r = &c[k].rows[j];
                }
            }
            if (r && r->primary == best) {
                fprintf(f, " **%s** |", num(b1, sizeof b1, "%.4g", r->primary));
            } else {
                fprintf(f, " %s |", r ? num(b1, sizeof b1, "%.4g", r->primary) : "-");
            }
        }
        fprintf(f, "\n");
    }
}

qr_status qr_report_write_md(FILE *f, const qr_report_ckpt *c, size_t n, const qr_report_style *s)
{
    char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32], b7[32], b8[32], fl[32];
    fprintf(f, "# qrecon report\n\n");
    fprintf(f, "Relative output error ||W x - Ŵ x|| / ||W x|| on held-out calibration tokens, as "
               "stored in each checkpoint. Flags: `over` = above --max-err");
    if (s->max_err > 0) {
        fprintf(f, " (%g)", s->max_err);
    }
    fprintf(f,
            "; `spike` = more than %gx the median of the same module type within %d layers; "
            "`kernel` = the INT4 kernel check of `qrecon validate` failed; `rtn` = quantize "
            "measured the method worse than round-to-nearest on this module (held-out error at "
            "the checkpoint's activation width; `rtn` in the method column: RTN's module was "
            "stored, --fallback-rtn). `wall s` = the "
            "module's wall time on its rank group during quantize (weight read, method, held-out "
            "metrics, and for the first module of a layer input its statistics pass), the figure "
            "its progress line printed; the summary sums it over the modules. Bits per weight in "
            "the summary are weighted by each module's parameters.\n\n",
            s->spike_factor, s->window);
    fprintf(f,
            "## Summary\n\n| checkpoint | method | W/A bits | group | rank | modules | "
            "primary error | mean | max (module) | bits/weight | flagged | worse than RTN | "
            "kernel check | wall s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t k = 0; k < n; k++) {
        qr_report_summary sum;
        char kc[48], rt[64];
        qr_report_summarize(&c[k], &sum);
        rtn_text(&sum, rt, sizeof rt);
        if (c[k].validated) {
            snprintf(kc, sizeof kc, "%zu pass, %zu fail", sum.kernel_pass, sum.kernel_fail);
        } else {
            snprintf(kc, sizeof kc, "not validated");
        }
        fprintf(
            f,
            "| %s | %s | W%lldA%s | %lld | %s | %zu | %s | %s | %s (%s) | %s | %zu | %s | %s | %s "
            "|\n",
            c[k].label, c[k].method, (long long)c[k].wbits,
            c[k].abits > 0 ? num(b1, sizeof b1, "%.0f", (double)c[k].abits) : "16",
            (long long)c[k].group,
            c[k].rank < 0 ? "auto" : num(b6, sizeof b6, "%.0f", (double)c[k].rank), sum.modules,
            primary_name(&c[k], s->act), num(b2, sizeof b2, "%.4g", sum.mean_err),
            num(b3, sizeof b3, "%.4g", sum.max_err), sum.worst ? sum.worst->name : "-",
            num(b4, sizeof b4, "%.3f", sum.mean_bits), sum.flagged, rt, kc,
            num(b5, sizeof b5, "%.2f", sum.total_seconds));
    }
    qr_report_quality_md(f, c, n);
    for (size_t k = 0; k < n; k++) {
        const qr_report_ckpt *ck = &c[k];
        size_t *order = NULL, top = s->top < ck->n_rows ? s->top : ck->n_rows;
        fprintf(f, "\n## %s\n\n`%s`\n\n", ck->label, ck->path);
        if (top > 0 && qr_malloc(&order, ck->n_rows, sizeof *order, "report order") == QR_OK) {
            for (size_t i = 0; i < ck->n_rows; i++) {
                order[i] = i;
            }
            sort_rows = ck->rows;
            qsort(order, ck->n_rows, sizeof *order, cmp_primary);
            fprintf(f, "Worst modules (%s error):\n\n", primary_name(ck, s->act));
            for (size_t i = 0; i < top; i++) {
                const qr_report_row *r = &ck->rows[order[i]];
                flag_text(r->flags, fl, sizeof fl);
                fprintf(f, "%zu. `%s` %s%s%s\n", i + 1, r->name,
                        num(b1, sizeof b1, "%.4g", r->primary), fl[0] ? " — " : "", fl);
            }
            fprintf(f, "\n");
            free(order);
        }
        fprintf(f, "| layer | module | shape | method | rank / salient | bits/w | weight err | "
                   "out err float | A8 | A4 | SQNR dB | RTN err | kernel | wall s | flags |\n"
                   "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (size_t i = 0; i < ck->n_rows; i++) {
            const qr_report_row *r = &ck->rows[i];
            char rs[48];
            flag_text(r->flags, fl, sizeof fl);
            if (r->salient_used > 0) {
                snprintf(rs, sizeof rs, "%lld / %lld", (long long)r->rank_used,
                         (long long)r->salient_used);
            } else {
                snprintf(rs, sizeof rs, "%lld", (long long)r->rank_used);
            }
            fprintf(
                f,
                "| %lld | %s | %lldx%lld | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | "
                "%s%s%s |\n",
                (long long)r->layer, r->kind, (long long)r->d_out, (long long)r->d_in, r->method,
                rs, num(b1, sizeof b1, "%.3f", r->bits_per_weight),
                num(b2, sizeof b2, "%.4g", r->weight_err), num(b3, sizeof b3, "%.4g", r->out_err),
                num(b4, sizeof b4, "%.4g", r->out_err_a8),
                num(b5, sizeof b5, "%.4g", r->out_err_a4), num(b6, sizeof b6, "%.2f", r->sqnr_db),
                num(b8, sizeof b8, "%.4g", r->rtn_err), check_text(r->kernel_check),
                num(b7, sizeof b7, "%.3f", r->seconds), fl[0] ? "**" : "", fl, fl[0] ? "**" : "");
        }
    }
    if (n > 1) {
        side_by_side_md(f, c, n, s);
    }
    return ferror(f) ? qr_fail(QR_ERR_IO, "report: cannot write the Markdown text") : QR_OK;
}

/* Build text with `emit` into memory, then write it to path atomically. */
static qr_status write_text_file(const char *path, qr_status (*emit)(FILE *, const void *),
                                 const void *ctx)
{
    char *buf = NULL;
    size_t len = 0;
    qr_status st;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        return qr_fail(QR_ERR_NOMEM, "%s: cannot build the file in memory", path);
    }
    st = emit(f, ctx);
    fclose(f);
    if (st == QR_OK) {
        st = qr_fs_write_atomic(path, buf, len);
    }
    free(buf);
    return st;
}

typedef struct {
    const qr_report_ckpt *c;
    size_t n;
    const qr_report_style *s;
} md_args;

static qr_status emit_md(FILE *f, const void *ctx)
{
    const md_args *a = ctx;
    return qr_report_write_md(f, a->c, a->n, a->s);
}

qr_status qr_report_write_md_file(const char *path, const qr_report_ckpt *c, size_t n,
                                  const qr_report_style *s)
{
    md_args a = {c, n, s};
    return write_text_file(path, emit_md, &a);
}

static void csv_num(FILE *f, double v)
{
    if (isfinite(v)) {
        fprintf(f, ",%.17g", v);
    } else {
        fprintf(f, ",");
    }
}

static qr_status emit_csv(FILE *f, const void *ctx)
{
    const md_args *a = ctx;
    fprintf(f, "checkpoint,module,layer,kind,d_out,d_in,method,rank_used,salient_used,"
               "bits_per_weight,weight_error,output_error,output_error_a8,output_error_a4,sqnr_db,"
               "primary_error,kernel_check,seconds,flags,rtn_error,worse_than_rtn,fallback_rtn\n");
    for (size_t k = 0; k < a->n; k++) {
        for (size_t i = 0; i < a->c[k].n_rows; i++) {
            const qr_report_row *r = &a->c[k].rows[i];
            char fl[32];
            flag_text(r->flags, fl, sizeof fl);
            fprintf(f, "%s,%s,%lld,%s,%lld,%lld,%s,%lld,%lld", a->c[k].label, r->name,
                    (long long)r->layer, r->kind, (long long)r->d_out, (long long)r->d_in,
                    r->method, (long long)r->rank_used, (long long)r->salient_used);
            csv_num(f, r->bits_per_weight);
            csv_num(f, r->weight_err);
            csv_num(f, r->out_err);
            csv_num(f, r->out_err_a8);
            csv_num(f, r->out_err_a4);
            csv_num(f, r->sqnr_db);
            csv_num(f, r->primary);
            fprintf(f, ",%s", check_text(r->kernel_check));
            csv_num(f, r->seconds);
            fprintf(f, ",%s", fl);
            csv_num(f, r->rtn_err);
            fprintf(f, ",%d,%d\n", r->worse_than_rtn, r->fallback_rtn);
        }
    }
    return ferror(f) ? qr_fail(QR_ERR_IO, "report: cannot write the CSV text") : QR_OK;
}

qr_status qr_report_write_csv(const char *path, const qr_report_ckpt *c, size_t n)
{
    md_args a = {c, n, NULL};
    return write_text_file(path, emit_csv, &a);
}

static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

qr_status qr_report_write_json(const char *path, const qr_report_ckpt *c, size_t n)
{
    json_t *root = json_object(), *cks = json_array();
    char *text;
    qr_status st;
    json_object_set_new(root, "format", json_string("qrecon-report"));
    json_object_set_new(root, "version", json_integer(1));
    for (size_t k = 0; k < n; k++) {
        json_t *ck = json_object(), *mods = json_array(), *sj = json_object();
        qr_report_summary sum;
        qr_report_summarize(&c[k], &sum);
        json_object_set_new(ck, "label", json_string(c[k].label));
        json_object_set_new(ck, "path", json_string(c[k].path));
        json_object_set_new(ck, "method", json_string(c[k].method));
        json_object_set_new(ck, "wbits", json_integer(c[k].wbits));
        json_object_set_new(ck, "abits", json_integer(c[k].abits));
        json_object_set_new(ck, "group", json_integer(c[k].group));
        json_object_set_new(ck, "rank", json_integer(c[k].rank));
        json_object_set_new(ck, "validated", json_boolean(c[k].validated));
        json_object_set_new(sj, "modules", json_integer((json_int_t)sum.modules));
        json_object_set_new(sj, "flagged", json_integer((json_int_t)sum.flagged));
        json_object_set_new(sj, "mean_primary_error", jnum(sum.mean_err));
        json_object_set_new(sj, "max_primary_error", jnum(sum.max_err));
        json_object_set_new(sj, "worst_module",
                            sum.worst ? json_string(sum.worst->name) : json_null());
        json_object_set_new(sj, "mean_bits_per_weight", jnum(sum.mean_bits)); /* weighted */
        json_object_set_new(sj, "worse_than_rtn",
                            sum.rtn_compared ? json_integer((json_int_t)sum.worse_than_rtn)
                                             : json_null());
        json_object_set_new(sj, "fallback_rtn", json_integer((json_int_t)sum.fallback_rtn));
        json_object_set_new(sj, "seconds", jnum(sum.total_seconds));
        json_object_set_new(ck, "summary", sj);
        qr_report_quality_json(ck, &c[k]);
        for (size_t i = 0; i < c[k].n_rows; i++) {
            const qr_report_row *r = &c[k].rows[i];
            json_t *m = json_object(), *flags = json_array();
            json_object_set_new(m, "name", json_string(r->name));
            json_object_set_new(m, "layer", json_integer(r->layer));
            json_object_set_new(m, "kind", json_string(r->kind));
            json_object_set_new(m, "d_out", json_integer(r->d_out));
            json_object_set_new(m, "d_in", json_integer(r->d_in));
            json_object_set_new(m, "method", json_string(r->method));
            json_object_set_new(m, "rank_used", json_integer(r->rank_used));
            json_object_set_new(m, "salient_used", json_integer(r->salient_used));
            json_object_set_new(m, "bits_per_weight", jnum(r->bits_per_weight));
            json_object_set_new(m, "weight_error", jnum(r->weight_err));
            json_object_set_new(m, "output_error", jnum(r->out_err));
            json_object_set_new(m, "output_error_a8", jnum(r->out_err_a8));
            json_object_set_new(m, "output_error_a4", jnum(r->out_err_a4));
            json_object_set_new(m, "sqnr_db", jnum(r->sqnr_db));
            json_object_set_new(m, "primary_error", jnum(r->primary));
            json_object_set_new(m, "kernel_check", json_string(check_text(r->kernel_check)));
            json_object_set_new(m, "seconds", jnum(r->seconds));
            json_object_set_new(m, "rtn_error", jnum(r->rtn_err));
            json_object_set_new(m, "worse_than_rtn",
                                r->worse_than_rtn >= 0 ? json_boolean(r->worse_than_rtn)
                                                       : json_null());
            json_object_set_new(m, "fallback_rtn", json_boolean(r->fallback_rtn == 1));
            if (r->flags & QR_REPORT_OVER) {
                json_array_append_new(flags, json_string("over"));
            }
            if (r->flags & QR_REPORT_SPIKE) {
                json_array_append_new(flags, json_string("spike"));
            }
            if (r->flags & QR_REPORT_KERNEL) {
                json_array_append_new(flags, json_string("kernel"));
            }
            if (r->flags & QR_REPORT_RTN) {
                json_array_append_new(flags, json_string("rtn"));
            }
            json_object_set_new(m, "flags", flags);
            json_array_append_new(mods, m);
        }
        json_object_set_new(ck, "modules", mods);
        json_array_append_new(cks, ck);
    }
    json_object_set_new(root, "checkpoints", cks);
    text = json_dumps(root, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (!text) {
        return qr_fail(QR_ERR_NOMEM, "%s: cannot build the JSON text", path);
    }
    st = qr_fs_write_atomic(path, text, strlen(text));
    free(text);
    return st;
}

qr_status qr_report_write_layers_svg(const char *path, const qr_report_ckpt *c, size_t n)
{
    static const char *const kinds[] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                        "gate_proj", "up_proj", "down_proj"};
    enum { N_KINDS = 7 };
    qr_svg_chart charts[N_KINDS];
    qr_svg_series *series[N_KINDS] = {0};
    const qr_svg_series *cseries[N_KINDS];
    size_t counts[N_KINDS];
    char titles[N_KINDS][64];
    double *xy = NULL; /* (N_KINDS, n, 2, max_rows) */
    size_t max_rows = 0;
    qr_status st = QR_OK;
    double lo = INFINITY, hi = 0; /* one log range for every panel, so they compare by height */
    for (size_t k = 0; k < n; k++) {
        max_rows = c[k].n_rows > max_rows ? c[k].n_rows : max_rows;
        for (size_t i = 0; i < c[k].n_rows; i++) {
            double e = c[k].rows[i].primary;
            lo = isfinite(e) && e > 0 && e < lo ? e : lo;
            hi = isfinite(e) && e > hi ? e : hi;
        }
    }
    if (hi > 0) {
        lo = pow(10.0, floor(log10(lo)));
        hi = pow(10.0, ceil(log10(hi)));
        hi = hi > lo ? hi : 10 * lo;
    }
    QR_CHECK(qr_malloc(&xy, (size_t)N_KINDS * n * 2 * (max_rows + 1), sizeof *xy, "plot points"));
    for (int t = 0; t < N_KINDS; t++) {
        QR_CHECK(qr_calloc(&series[t], n, sizeof *series[t], "plot series"));
        snprintf(titles[t], sizeof titles[t], "%s: output error by layer", kinds[t]);
        charts[t] = (qr_svg_chart){
            titles[t],       "layer",        "relative output error (primary)", 1, 900, 360,
            hi > 0 ? lo : 0, hi > 0 ? hi : 0};
        for (size_t k = 0; k < n; k++) {
            double *x = xy + (((size_t)t * n + k) * 2) * (max_rows + 1);
            double *y = x + (max_rows + 1);
            size_t m = 0;
            for (size_t i = 0; i < c[k].n_rows; i++) {
                if (strcmp(c[k].rows[i].kind, kinds[t]) == 0 && c[k].rows[i].layer >= 0) {
                    x[m] = (double)c[k].rows[i].layer;
                    y[m] = c[k].rows[i].primary;
                    m++;
                }
            }
            series[t][k] = (qr_svg_series){c[k].label, x, y, m};
        }
        cseries[t] = series[t];
        counts[t] = n;
    }
    st = qr_svg_write_panels(path, charts, cseries, counts, N_KINDS);
done:
    for (int t = 0; t < N_KINDS; t++) {
        free(series[t]);
    }
    free(xy);
    return st;
}

/* A checkpoint with a low-rank term: some module used rank > 0 (RTN stores --rank's default but
 * uses none). */
static int has_rank(const qr_report_ckpt *c)
{
    for (size_t i = 0; i < c->n_rows; i++) {
        if (c->rows[i].rank_used > 0) {
            return 1;
        }
    }
    return 0;
}

qr_status qr_report_write_rank_svg(const char *path, const qr_report_ckpt *c, size_t n,
                                   int *written)
{
    qr_svg_series *series = NULL;
    double *xy = NULL; /* (n methods, 2, n) */
    size_t n_series = 0;
    int sweep = 0;
    qr_status st = QR_OK;
    *written = 0;
    QR_CHECK(qr_calloc(&series, n, sizeof *series, "rank series"));
    QR_CHECK(qr_malloc(&xy, n * 2 * n + 1, sizeof *xy, "rank points"));
    for (size_t k = 0; k < n; k++) {
        size_t s = 0;
        int base = !has_rank(&c[k]);
        while (s < n_series &&
               (strcmp(series[s].name, c[k].method) != 0 || series[s].hline != base)) {
            s++;
        }
        if (s == n_series) {
            series[s] = (qr_svg_series){c[k].method, xy + s * 2 * n, xy + s * 2 * n + n, 0, base};
            n_series++;
        }
        {
            qr_report_summary sum;
            double *x = (double *)series[s].x, *y = (double *)series[s].y;
            size_t at = series[s].n;
            qr_report_summarize(&c[k], &sum);
            if (base) {
                /* no low-rank term (RTN, or a rank-0 run): a reference level, not a point at the
                 * stored --rank default, which would squeeze the sweep into a corner */
                x[0] = 0;
                y[0] = sum.mean_err;
                series[s].n = 1;
                continue;
            }
            /* insertion by rank so the line runs left to right */
            while (at > 0 && x[at - 1] > (double)c[k].rank) {
                x[at] = x[at - 1], y[at] = y[at - 1];
                at--;
            }
            x[at] = (double)c[k].rank;
            y[at] = sum.mean_err;
            series[s].n++;
            sweep |= !series[s].hline && series[s].n >= 2 && x[0] != x[series[s].n - 1];
        }
    }
    if (sweep) {
        qr_svg_chart chart = {"mean output error against rank",
                              "rank",
                              "mean relative output error (primary)",
                              1,
                              800,
                              420};
        QR_CHECK(qr_svg_write_lines(path, &chart, series, n_series));
        *written = 1;
    }
done:
    free(series);
    free(xy);
    return st;
}

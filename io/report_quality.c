/* report_quality.c: the eval sidecar's figures in the report (io/report_quality.h). */
#include "io/report_quality.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/eval_sidecar.h"
#include "io/fs.h"
#include "io/svg_plot.h"
#include "src/alloc.h"
#include "src/log.h"

qr_status qr_report_read_quality(qr_report_ckpt *c)
{
    char path[4096 + 16], id[QR_EVAL_IDENTITY_MAX];
    bool stale = false;
    snprintf(path, sizeof path, "%s%s", c->path, QR_EVAL_SIDECAR_SUFFIX);
    if (!qr_fs_exists(path)) {
        return QR_OK;
    }
    QR_TRY(qr_eval_file_identity(c->path, id));
    QR_TRY(qr_eval_sidecar_read(path, id, &c->quality, &c->n_quality, &stale));
    if (stale) {
        QR_WARN("report: %s belongs to an earlier version of %s (another checkpoint identity); "
                "its figures are left out (run qrecon eval --ckpt again)",
                path, c->path);
    }
    return QR_OK;
}

/* A figure for a table cell ("-" when absent). */
static const char *cell(char *buf, size_t n, const char *fmt, double v)
{
    if (!isfinite(v)) {
        snprintf(buf, n, "-");
    } else {
        snprintf(buf, n, fmt, v);
    }
    return buf;
}

void qr_report_quality_md(FILE *f, const qr_report_ckpt *c, size_t n)
{
    char b[8][32];
    size_t rows = 0;
    for (size_t k = 0; k < n; k++) {
        rows += c[k].n_quality;
    }
    if (rows == 0) {
        return;
    }
    fprintf(f, "\n## Model quality against the float model\n\n"
               "From `qrecon eval --ckpt` (CKPT.eval.json): per scored token, the KL divergence "
               "KL(P_float || P_ckpt) in nats (mean, median, 99th percentile), top-1 agreement "
               "(the argmax of both models is the same token), ΔNLL = NLL(ckpt) − NLL(float) "
               "in nats, and the perplexity of both.\n\n"
               "| checkpoint | method | text | tokens | PPL float | PPL ckpt | ΔNLL | KL mean | "
               "KL median | KL p99 | top-1 |\n"
               "|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t k = 0; k < n; k++) {
        for (size_t t = 0; t < c[k].n_quality; t++) {
            const qr_report_quality *q = &c[k].quality[t];
            fprintf(f, "| %s | %s | %s | %lld | %s | %s | %s | %s | %s | %s | %s |\n", c[k].label,
                    c[k].method, q->name, (long long)q->s.tokens,
                    cell(b[0], sizeof b[0], "%.4f", q->s.ppl_ref),
                    cell(b[1], sizeof b[1], "%.4f", q->s.ppl_test),
                    cell(b[2], sizeof b[2], "%+.5f", q->s.delta_nll),
                    cell(b[3], sizeof b[3], "%.5f", q->s.kl_mean),
                    cell(b[4], sizeof b[4], "%.5f", q->s.kl_median),
                    cell(b[5], sizeof b[5], "%.5f", q->s.kl_p99),
                    cell(b[6], sizeof b[6], "%.4f", q->s.top1));
        }
    }
}

void qr_report_quality_json(json_t *ck, const qr_report_ckpt *c)
{
    json_t *arr;
    if (c->n_quality == 0) {
        return;
    }
    arr = json_array();
    for (size_t t = 0; t < c->n_quality; t++) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(c->quality[t].name));
        json_object_set_new(o, "seq_len", json_integer(c->quality[t].seq_len));
        qr_eval_summary_to_json(o, &c->quality[t].s);
        json_array_append_new(arr, o);
    }
    json_object_set_new(ck, "quality", arr);
}

/* The x of checkpoint c in a rank sweep: its --rank, or 0 when no module uses a rank (rtn). */
static double sweep_rank(const qr_report_ckpt *c)
{
    for (size_t i = 0; i < c->n_rows; i++) {
        if (c->rows[i].rank_used > 0) {
            return (double)c->rank;
        }
    }
    return 0.0;
}

typedef struct {
    char name[320]; /* "method, text" */
    double *x, *y;  /* (n) */
    size_t n;
} kl_line;

/* Add point (x, y) to the line called name, in x order (lines grows; cap is the total points). */
static void add_point(kl_line *lines, size_t *n_lines, double *xy, size_t cap, const char *name,
                      double x, double y)
{
    size_t s = 0, at;
    while (s < *n_lines && strcmp(lines[s].name, name) != 0) {
        s++;
    }
    if (s == *n_lines) {
        snprintf(lines[s].name, sizeof lines[s].name, "%s", name);
        lines[s].x = xy + s * 2 * cap;
        lines[s].y = lines[s].x + cap;
        lines[s].n = 0;
        (*n_lines)++;
    }
    at = lines[s].n;
    while (at > 0 && lines[s].x[at - 1] > x) {
        lines[s].x[at] = lines[s].x[at - 1], lines[s].y[at] = lines[s].y[at - 1];
        at--;
    }
    lines[s].x[at] = x;
    lines[s].y[at] = y;
    lines[s].n++;
}

qr_status qr_report_write_kl_svg(const char *path, const qr_report_ckpt *c, size_t n, int *written)
{
    kl_line *lines = NULL;
    qr_svg_series *series = NULL;
    double *xy = NULL;
    size_t cap = 0, n_lines = 0;
    int sweep = 0;
    qr_status st = QR_OK;
    *written = 0;
    for (size_t k = 0; k < n; k++) {
        cap += c[k].n_quality;
    }
    if (cap == 0) {
        return QR_OK;
    }
    QR_CHECK(qr_calloc(&lines, cap, sizeof *lines, "KL lines"));
    QR_CHECK(qr_calloc(&series, cap, sizeof *series, "KL lines"));
    QR_CHECK(qr_malloc(&xy, cap * 2 * cap, sizeof *xy, "KL points"));
    for (size_t k = 0; k < n; k++) {
        for (size_t t = 0; t < c[k].n_quality; t++) {
            char name[320];
            const char *text = c[k].quality[t].name, *dot = strrchr(text, '.');
            /* the legend is narrow: the text's name without its extension */
            snprintf(name, sizeof name, "%s A%lld, %.*s", c[k].method,
                     c[k].abits > 0 ? (long long)c[k].abits : 16LL,
                     (int)(dot && dot != text ? (size_t)(dot - text) : strlen(text)), text);
            add_point(lines, &n_lines, xy, cap, name, sweep_rank(&c[k]), c[k].quality[t].s.kl_mean);
        }
    }
    for (size_t s = 0; s < n_lines; s++) {
        series[s] = (qr_svg_series){lines[s].name, lines[s].x, lines[s].y, lines[s].n};
        sweep |= lines[s].n >= 2 && lines[s].x[0] != lines[s].x[lines[s].n - 1];
    }
    if (sweep) {
        qr_svg_chart chart = {"KL divergence from the float model against rank",
                              "rank",
                              "mean KL divergence per token (nats)",
                              1,
                              800,
                              420};
        QR_CHECK(qr_svg_write_lines(path, &chart, series, n_lines));
        *written = 1;
    }
done:
    free(lines);
    free(series);
    free(xy);
    return st;
}

/* report.c: flags and summaries of the per-module report. */
#include "src/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qr_report_parse_name(const char *name, int64_t *layer, char *kind, size_t kind_size)
{
    const char *p = strstr(name, "layers.");
    const char *last = strrchr(name, '.');
    *layer = -1;
    if (p) {
        char *end = NULL;
        long long v = strtoll(p + 7, &end, 10);
        if (end != p + 7 && *end == '.') {
            *layer = v;
        }
    }
    snprintf(kind, kind_size, "%s", last ? last + 1 : name);
}

qr_status qr_report_set_primary(qr_report_ckpt *c, const char *act)
{
    int which; /* 0 float, 8, 4 */
    if (strcmp(act, "auto") == 0) {
        which = c->abits == 8 ? 8 : (c->abits == 4 ? 4 : 0);
    } else if (strcmp(act, "float") == 0) {
        which = 0;
    } else if (strcmp(act, "a8") == 0) {
        which = 8;
    } else if (strcmp(act, "a4") == 0) {
        which = 4;
    } else {
        return qr_fail(QR_ERR_INPUT, "--act: expected auto, float, a8 or a4, found '%s'", act);
    }
    for (size_t i = 0; i < c->n_rows; i++) {
        qr_report_row *r = &c->rows[i];
        r->primary = which == 8 ? r->out_err_a8 : (which == 4 ? r->out_err_a4 : r->out_err);
    }
    return QR_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median primary error of the rows of `kind` in layers [layer - window, layer + window], skipping
 * row `self`; NaN when there is none. */
static double neighbour_median(const qr_report_ckpt *c, size_t self, int window)
{
    const qr_report_row *me = &c->rows[self];
    double vals[64];
    size_t n = 0;
    for (size_t i = 0; i < c->n_rows && n < 64; i++) {
        const qr_report_row *r = &c->rows[i];
        if (i == self || strcmp(r->kind, me->kind) != 0 || !isfinite(r->primary) ||
            r->layer < me->layer - window || r->layer > me->layer + window) {
            continue;
        }
        vals[n++] = r->primary;
    }
    if (n == 0) {
        return NAN;
    }
    qsort(vals, n, sizeof vals[0], cmp_double);
    return n % 2 ? vals[n / 2] : 0.5 * (vals[n / 2 - 1] + vals[n / 2]);
}

void qr_report_flag(qr_report_ckpt *c, double max_err, double spike_factor, int window)
{
    for (size_t i = 0; i < c->n_rows; i++) {
        qr_report_row *r = &c->rows[i];
        r->flags = 0;
        if (max_err > 0 && isfinite(r->primary) && r->primary > max_err) {
            r->flags |= QR_REPORT_OVER;
        }
        if (spike_factor > 0 && isfinite(r->primary) && r->layer >= 0) {
            double med = neighbour_median(c, i, window);
            if (isfinite(med) && r->primary > spike_factor * med) {
                r->flags |= QR_REPORT_SPIKE;
            }
        }
        if (r->kernel_check == QR_CHECK_FAIL) {
            r->flags |= QR_REPORT_KERNEL;
        }
        if (r->worse_than_rtn == 1) {
            r->flags |= QR_REPORT_RTN;
        }
    }
}

void qr_report_summarize(const qr_report_ckpt *c, qr_report_summary *s)
{
    size_t n_err = 0;
    double params = 0.0;
    memset(s, 0, sizeof *s);
    s->modules = c->n_rows;
    s->max_err = NAN;
    for (size_t i = 0; i < c->n_rows; i++) {
        const qr_report_row *r = &c->rows[i];
        s->flagged += r->flags != 0;
        s->kernel_pass += r->kernel_check == QR_CHECK_PASS;
        s->kernel_fail += r->kernel_check == QR_CHECK_FAIL;
        if (isfinite(r->primary)) {
            s->mean_err += r->primary;
            n_err++;
            if (!s->worst || r->primary > s->worst->primary) {
                s->worst = r;
                s->max_err = r->primary;
            }
        }
        s->rtn_compared += r->worse_than_rtn >= 0;
        s->worse_than_rtn += r->worse_than_rtn == 1;
        s->fallback_rtn += r->fallback_rtn == 1;
        if (isfinite(r->bits_per_weight)) {
            double p = (double)r->d_out * (double)r->d_in;
            s->mean_bits += r->bits_per_weight * p;
            params += p;
        }
        if (isfinite(r->seconds)) {
            s->total_seconds += r->seconds;
        }
    }
    s->mean_err = n_err ? s->mean_err / (double)n_err : NAN;
    s->mean_bits = params > 0.0 ? s->mean_bits / params : NAN;
}

void qr_report_ckpt_free(qr_report_ckpt *c)
{
    if (c) {
        free(c->rows);
        c->rows = NULL;
        c->n_rows = 0;
        free(c->quality);
        c->quality = NULL;
        c->n_quality = 0;
    }
}

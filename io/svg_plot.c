/* svg_plot.c: SVG line charts with axes, ticks, a legend, linear or log y. */
#include "io/svg_plot.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fs.h"

/* A growing text buffer for the SVG document. */
typedef struct {
    char *data;
    size_t len, cap;
    int failed;
} svg_buf;

static void put(svg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(svg_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (b->failed) {
        return;
    }
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 8192;
        while (cap - b->len <= (size_t)n) {
            cap *= 2;
        }
        char *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
}

/* XML-escape text into the buffer. */
static void put_text(svg_buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<':
            put(b, "&lt;");
            break;
        case '>':
            put(b, "&gt;");
            break;
        case '&':
            put(b, "&amp;");
            break;
        case '"':
            put(b, "&quot;");
            break;
        default:
            put(b, "%c", *s);
        }
    }
}

/* A colour-blind-safe palette (Okabe-Ito), cycled. */
static const char *const palette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                      "#E69F00", "#56B4E9", "#000000", "#F0E442"};

/* "Nice" tick step for a linear axis spanning `span` with about `count` ticks. */
static double nice_step(double span, int count)
{
    double raw = span / count, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

static int usable(const qr_svg_chart *c, double y)
{
    return isfinite(y) && (!c->log_y || y > 0);
}

/* A chart's plot area in pixels and the data range it shows. */
typedef struct {
    double x0, x1, y0, y1;         /* plot area: x0 left, x1 right, y0 bottom, y1 top */
    double xmin, xmax, ymin, ymax; /* data range, rounded to ticks */
    int log_y;
} frame;

static double sx(const frame *f, double x)
{
    return f->x0 + (x - f->xmin) / (f->xmax - f->xmin) * (f->x1 - f->x0);
}

static double sy(const frame *f, double y)
{
    if (f->log_y) {
        return f->y0 -
               (log10(y) - log10(f->ymin)) / (log10(f->ymax) - log10(f->ymin)) * (f->y0 - f->y1);
    }
    return f->y0 - (y - f->ymin) / (f->ymax - f->ymin) * (f->y0 - f->y1);
}

/* The range of the usable points, widened to whole decades (log) or nice steps (linear). */
static void data_range(frame *f, const qr_svg_chart *c, const qr_svg_series *series,
                       size_t n_series)
{
    f->xmin = f->ymin = INFINITY;
    f->xmax = f->ymax = -INFINITY;
    for (size_t s = 0; s < n_series; s++) {
        for (size_t i = 0; i < series[s].n; i++) {
            double y = series[s].y[i];
            if (!usable(c, y) || !isfinite(series[s].x[i])) {
                continue;
            }
            if (!series[s].hline) {
                f->xmin = fmin(f->xmin, series[s].x[i]), f->xmax = fmax(f->xmax, series[s].x[i]);
            }
            f->ymin = fmin(f->ymin, y), f->ymax = fmax(f->ymax, y);
        }
    }
    if (!isfinite(f->xmin)) { /* no data (or only reference levels): x over [0, 1] */
        f->xmin = 0, f->xmax = 1;
    }
    if (!isfinite(f->ymin)) {
        f->ymin = c->log_y ? 0.1 : 0, f->ymax = 1;
    }
    if (c->y_lo < c->y_hi && (!c->log_y || c->y_lo > 0)) {
        f->ymin = c->y_lo, f->ymax = c->y_hi;
    }
    if (f->xmax == f->xmin) {
        f->xmin -= 0.5, f->xmax += 0.5;
    }
    if (c->log_y) {
        f->ymin = pow(10.0, floor(log10(f->ymin)));
        f->ymax = pow(10.0, ceil(log10(f->ymax)));
        if (f->ymax == f->ymin) {
            f->ymax *= 10;
        }
    } else {
        double d = f->ymax - f->ymin, step = nice_step(d > 0 ? d : fabs(f->ymax) + 1, 5);
        f->ymin = floor(f->ymin / step) * step;
        f->ymax = ceil(f->ymax / step) * step;
        if (f->ymax == f->ymin) {
            f->ymax = f->ymin + step;
        }
    }
}

static void y_tick(svg_buf *b, const frame *f, double v)
{
    put(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", f->x0,
        sy(f, v), f->x1, sy(f, v));
    put(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%g</text>\n",
        f->x0 - 6, sy(f, v) + 4, v);
}

static void draw_axes(svg_buf *b, const qr_svg_chart *c, const frame *f, double top)
{
    double xstep = nice_step(f->xmax - f->xmin, 8), ystep = nice_step(f->ymax - f->ymin, 5);
    put(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"16\" font-weight=\"bold\">", f->x0, top + 22);
    put_text(b, c->title);
    put(b, "</text>\n");
    put(b,
        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
        "stroke=\"#444\"/>\n",
        f->x0, f->y1, f->x1 - f->x0, f->y0 - f->y1);
    /* y ticks and grid: decades, with 2 and 5 between when few (log), or nice steps */
    if (f->log_y) {
        int fine = log10(f->ymax / f->ymin) <= QR_SVG_LOG_FINE_DECADES + 1e-9;
        for (double d = f->ymin; d <= f->ymax * 1.0001; d *= 10) {
            for (int m = 1; m <= 5; m++) {
                double v = d * m;
                if ((m != 1 && (!fine || (m != 2 && m != 5))) || v > f->ymax * 1.0001) {
                    continue;
                }
                y_tick(b, f, v);
            }
        }
    } else {
        for (double v = f->ymin; v <= f->ymax + ystep * 1e-6; v += ystep) {
            y_tick(b, f, v);
        }
    }
    /* x ticks: integers when the data are integers (layers, ranks) */
    if (xstep < 1 && floor(f->xmin) == f->xmin) {
        xstep = 1;
    }
    for (double v = ceil(f->xmin / xstep) * xstep; v <= f->xmax + xstep * 1e-6; v += xstep) {
        put(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n",
            sx(f, v), f->y0, sx(f, v), f->y0 + 5);
        put(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%g</text>\n",
            sx(f, v), f->y0 + 18, v);
    }
    put(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">",
        (f->x0 + f->x1) / 2, f->y0 + 40);
    put_text(b, c->x_label);
    put(b,
        "</text>\n<text transform=\"translate(%.1f %.1f) rotate(-90)\" font-size=\"12\" "
        "text-anchor=\"middle\">",
        f->x0 - 58, (f->y0 + f->y1) / 2);
    put_text(b, c->y_label);
    put(b, "</text>\n");
}

/* Series s: a polyline broken at missing points, markers, and its legend entry. */
static void draw_series(svg_buf *b, const qr_svg_chart *c, const frame *f, const qr_svg_series *sr,
                        size_t s)
{
    const char *col = palette[s % (sizeof palette / sizeof palette[0])];
    int open = 0;
    for (size_t i = 0; sr->hline && i < 1 && i < sr->n; i++) {
        if (usable(c, sr->y[0]) && sr->y[0] >= f->ymin && sr->y[0] <= f->ymax) {
            put(b,
                "<line class=\"reference\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                "stroke=\"%s\" stroke-width=\"2\" stroke-dasharray=\"8 5\"/>\n",
                f->x0, sy(f, sr->y[0]), f->x1, sy(f, sr->y[0]), col);
        }
    }
    for (size_t i = 0; !sr->hline && i < sr->n; i++) {
        double x = sr->x[i], y = sr->y[i];
        if (!usable(c, y) || !isfinite(x)) {
            if (open) {
                put(b, "\"/>\n");
                open = 0;
            }
            continue;
        }
        if (!open) {
            put(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
            open = 1;
        }
        put(b, "%.1f,%.1f ", sx(f, x), sy(f, y));
    }
    if (open) {
        put(b, "\"/>\n");
    }
    for (size_t i = 0; !sr->hline && i < sr->n; i++) {
        if (usable(c, sr->y[i]) && isfinite(sr->x[i])) {
            put(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", sx(f, sr->x[i]),
                sy(f, sr->y[i]), col);
        }
    }
    put(b,
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
        "stroke-width=\"3\"%s/>\n",
        f->x1 + 14, f->y1 + 10 + 18.0 * (double)s, f->x1 + 38, f->y1 + 10 + 18.0 * (double)s, col,
        sr->hline ? " stroke-dasharray=\"8 5\"" : "");
    put(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", f->x1 + 44,
        f->y1 + 14 + 18.0 * (double)s);
    put_text(b, sr->name);
    put(b, "</text>\n");
}

static void draw_chart(svg_buf *b, const qr_svg_chart *c, const qr_svg_series *series,
                       size_t n_series, double top, double width, double height)
{
    const double ml = 78, mr = 190, mt = 36, mb = 52; /* margins: room for labels and legend */
    frame f;
    f.x0 = ml, f.x1 = width - mr, f.y0 = top + height - mb, f.y1 = top + mt;
    f.log_y = c->log_y;
    data_range(&f, c, series, n_series);
    draw_axes(b, c, &f, top);
    for (size_t s = 0; s < n_series; s++) {
        draw_series(b, c, &f, &series[s], s);
    }
}

qr_status qr_svg_write_panels(const char *path, const qr_svg_chart *charts,
                              const qr_svg_series *const *series, const size_t *n_series,
                              size_t n_charts)
{
    svg_buf b = {0};
    qr_status st;
    double width = charts && n_charts && charts[0].width ? charts[0].width : 800;
    double height = 0;
    for (size_t i = 0; i < n_charts; i++) {
        height += charts[i].height ? charts[i].height : 480;
    }
    put(&b,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" "
        "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Arial, "
        "sans-serif\">\n"
        "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
        width, height, width, height);
    height = 0;
    for (size_t i = 0; i < n_charts; i++) {
        double h = charts[i].height ? charts[i].height : 480;
        draw_chart(&b, &charts[i], series[i], n_series[i], height, width, h);
        height += h;
    }
    put(&b, "</svg>\n");
    if (b.failed) {
        free(b.data);
        return qr_fail(QR_ERR_NOMEM, "%s: cannot build the SVG document", path);
    }
    st = qr_fs_write_atomic(path, b.data, b.len);
    free(b.data);
    return st;
}

qr_status qr_svg_write_lines(const char *path, const qr_svg_chart *chart,
                             const qr_svg_series *series, size_t n_series)
{
    return qr_svg_write_panels(path, chart, &series, &n_series, 1);
}

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

static void draw_chart(svg_buf *b, const qr_svg_chart *c, const qr_svg_series *series,
                       size_t n_series, double top, double width, double height)
{
    const double ml = 78, mr = 190, mt = 36, mb = 52; /* margins: room for labels and legend */
    double x0 = ml, x1 = width - mr, y0 = top + height - mb, y1 = top + mt;
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (size_t s = 0; s < n_series; s++) {
        for (size_t i = 0; i < series[s].n; i++) {
            double y = series[s].y[i];
            if (!usable(c, y) || !isfinite(series[s].x[i])) {
                continue;
            }
            xmin = fmin(xmin, series[s].x[i]), xmax = fmax(xmax, series[s].x[i]);
            ymin = fmin(ymin, y), ymax = fmax(ymax, y);
        }
    }
    if (!isfinite(xmin)) { /* no data: draw empty axes over [0, 1] */
        xmin = 0, xmax = 1, ymin = c->log_y ? 0.1 : 0, ymax = 1;
    }
    if (xmax == xmin) {
        xmin -= 0.5, xmax += 0.5;
    }
    if (c->log_y) {
        ymin = pow(10.0, floor(log10(ymin)));
        ymax = pow(10.0, ceil(log10(ymax)));
        if (ymax == ymin) {
            ymax *= 10;
        }
    } else {
        double step = nice_step(ymax - ymin > 0 ? ymax - ymin : fabs(ymax) + 1, 5);
        ymin = floor(ymin / step) * step;
        ymax = ceil(ymax / step) * step;
        if (ymax == ymin) {
            ymax = ymin + step;
        }
    }
#define SX(x) (x0 + ((x)-xmin) / (xmax - xmin) * (x1 - x0))
#define SY(y)                                                                                      \
    (c->log_y ? y0 - (log10(y) - log10(ymin)) / (log10(ymax) - log10(ymin)) * (y0 - y1)            \
              : y0 - ((y)-ymin) / (ymax - ymin) * (y0 - y1))
    put(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"16\" font-weight=\"bold\">", x0, top + 22);
    put_text(b, c->title);
    put(b, "</text>\n");
    put(b,
        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
        "stroke=\"#444\"/>\n",
        x0, y1, x1 - x0, y0 - y1);
    /* y ticks and grid */
    if (c->log_y) {
        for (double v = ymin; v <= ymax * 1.0001; v *= 10) {
            put(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0,
                SY(v), x1, SY(v));
            put(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%g</text>\n",
                x0 - 6, SY(v) + 4, v);
        }
    } else {
        double step = nice_step(ymax - ymin, 5);
        for (double v = ymin; v <= ymax + step * 1e-6; v += step) {
            put(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0,
                SY(v), x1, SY(v));
            put(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%g</text>\n",
                x0 - 6, SY(v) + 4, v);
        }
    }
    /* x ticks: integers when the data are integers (layers, ranks) */
    {
        double step = nice_step(xmax - xmin, 8);
        if (step < 1 && floor(xmin) == xmin) {
            step = 1;
        }
        for (double v = ceil(xmin / step) * step; v <= xmax + step * 1e-6; v += step) {
            put(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n",
                SX(v), y0, SX(v), y0 + 5);
            put(b,
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%g</text>\n",
                SX(v), y0 + 18, v);
        }
    }
    put(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">", (x0 + x1) / 2,
        y0 + 40);
    put_text(b, c->x_label);
    put(b,
        "</text>\n<text transform=\"translate(%.1f %.1f) rotate(-90)\" font-size=\"12\" "
        "text-anchor=\"middle\">",
        x0 - 58, (y0 + y1) / 2);
    put_text(b, c->y_label);
    put(b, "</text>\n");
    /* series: polylines broken at missing points, with markers, and the legend */
    for (size_t s = 0; s < n_series; s++) {
        const char *col = palette[s % (sizeof palette / sizeof palette[0])];
        int open = 0;
        for (size_t i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
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
            put(b, "%.1f,%.1f ", SX(x), SY(y));
        }
        if (open) {
            put(b, "\"/>\n");
        }
        for (size_t i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
            if (usable(c, y) && isfinite(x)) {
                put(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", SX(x), SY(y),
                    col);
            }
        }
        put(b,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
            "stroke-width=\"3\"/>\n",
            x1 + 14, y1 + 10 + 18.0 * (double)s, x1 + 38, y1 + 10 + 18.0 * (double)s, col);
        put(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", x1 + 44,
            y1 + 14 + 18.0 * (double)s);
        put_text(b, series[s].name);
        put(b, "</text>\n");
    }
#undef SX
#undef SY
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

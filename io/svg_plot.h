/* svg_plot.h: line charts as standalone SVG files (the report's plots: output error by layer, one
 * line per checkpoint; error against rank). Plain SVG 1.1 with no scripts or external resources, so
 * any renderer (rsvg-convert, a browser) draws it. Not collective. */
#ifndef QR_IO_SVG_PLOT_H
#define QR_IO_SVG_PLOT_H

#include <stddef.h>

#include "src/status.h"

typedef struct {
    const char *name; /* legend text */
    const double *x;  /* (n) */
    const double *y;  /* (n); NaN = no point (the line breaks) */
    size_t n;
    int hline; /* a reference level, not a line over x: y[0] drawn dashed across the whole plot
                  (a baseline without the swept parameter, e.g. RTN in a rank sweep); its x is
                  ignored and does not widen the x range */
} qr_svg_series;

typedef struct {
    const char *title;
    const char *x_label;
    const char *y_label;
    int log_y;         /* logarithmic y axis (values <= 0 are skipped) */
    int width, height; /* pixels; 0 = 800 x 480 */
    double y_lo, y_hi; /* a fixed y range when y_lo < y_hi (log: y_lo > 0), e.g. one range over
                          several panels so they compare by height; else the data's range */
} qr_svg_chart;

/* Log axes get ticks at 1, 2 and 5 of each decade when the range spans at most this many decades
 * (else at each decade). */
#define QR_SVG_LOG_FINE_DECADES 4

/* Write the chart with its series to `path` (atomically). */
qr_status qr_svg_write_lines(const char *path, const qr_svg_chart *chart,
                             const qr_svg_series *series, size_t n_series);

/* Several charts stacked vertically in one file (one per module type, say). */
qr_status qr_svg_write_panels(const char *path, const qr_svg_chart *charts,
                              const qr_svg_series *const *series, const size_t *n_series,
                              size_t n_charts);

#endif

/* write_chart.c: writes a two-panel chart (a log-y panel with a gap, and a linear panel) to
 * argv[1]; svg_render.sh then renders it with a real SVG renderer and checks the picture. */
#include <math.h>
#include <stdio.h>

#include "io/svg_plot.h"

int main(int argc, char **argv)
{
    double layers[5] = {0, 1, 2, 3, 4};
    double a[5] = {0.012, 0.020, NAN, 0.031, 0.5};
    double bb[5] = {0.008, 0.011, 0.013, 0.019, 0.2};
    double r[4] = {8, 16, 32, 64}, e[4] = {0.03, 0.022, 0.015, 0.009};
    qr_svg_series s1[2] = {{"rtn <&> \"A\"", layers, a, 5}, {"lqer r=8", layers, bb, 5}};
    qr_svg_series s2[1] = {{"srr", r, e, 4}};
    qr_svg_chart charts[2] = {
        {"q_proj: output error by layer", "layer", "relative output error", 1, 800, 400},
        {"error against rank", "rank", "relative output error", 0, 800, 300}};
    const qr_svg_series *series[2] = {s1, s2};
    size_t counts[2] = {2, 1};
    if (argc < 2) {
        fprintf(stderr, "usage: write_chart OUT.svg\n");
        return 2;
    }
    if (qr_svg_write_panels(argv[1], charts, series, counts, 2) != QR_OK) {
        fprintf(stderr, "%s\n", qr_errmsg());
        return 1;
    }
    return 0;
}

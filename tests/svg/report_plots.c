/* report_plots.c: writes the report's two plots from checkpoints built in memory, to argv[1]
 * (rank.svg) and argv[2] (layers.svg); report_plots.sh renders them and checks their axes.
 * The sweep: an RTN checkpoint that stores the --rank default 32 but uses no rank, and LQER at
 * ranks 2, 4 and 8. The layer errors differ by kind by a factor of ~50 (q_proj 0.004, down_proj
 * 0.2), so per-panel ranges would hide the difference. */
#include <stdio.h>
#include <string.h>

#include "io/report_write.h"

enum { N_CKPT = 4, N_LAYERS = 3, N_KINDS = 7 };

int main(int argc, char **argv)
{
    static const char *const kinds[N_KINDS] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                               "gate_proj", "up_proj", "down_proj"};
    static const double kind_err[N_KINDS] = {0.004, 0.006, 0.03, 0.02, 0.05, 0.06, 0.2};
    static const char *const methods[N_CKPT] = {"rtn", "lqer", "lqer", "lqer"};
    static const int64_t ranks[N_CKPT] = {32, 2, 4, 8};
    static qr_report_row rows[N_CKPT][N_LAYERS * N_KINDS];
    qr_report_ckpt c[N_CKPT];
    int written = 0;
    if (argc < 3) {
        fprintf(stderr, "usage: report_plots RANK.svg LAYERS.svg\n");
        return 2;
    }
    memset(c, 0, sizeof c);
    for (int k = 0; k < N_CKPT; k++) {
        snprintf(c[k].label, sizeof c[k].label, "%s-r%lld", methods[k], (long long)ranks[k]);
        snprintf(c[k].method, sizeof c[k].method, "%s", methods[k]);
        c[k].wbits = 4, c[k].group = 32, c[k].rank = ranks[k];
        c[k].rows = rows[k];
        c[k].n_rows = N_LAYERS * N_KINDS;
        for (int l = 0; l < N_LAYERS; l++) {
            for (int t = 0; t < N_KINDS; t++) {
                qr_report_row *r = &rows[k][l * N_KINDS + t];
                snprintf(r->name, sizeof r->name, "model.layers.%d.x.%s", l, kinds[t]);
                r->layer = l;
                snprintf(r->kind, sizeof r->kind, "%s", kinds[t]);
                snprintf(r->method, sizeof r->method, "%s", methods[k]);
                r->rank_used = k == 0 ? 0 : ranks[k];
                /* RTN worst; the error falls with the rank */
                r->out_err = r->primary =
                    kind_err[t] * (1.0 + 0.1 * l) * (k == 0 ? 2.0 : 1.0 / (double)k);
                r->d_out = r->d_in = 64;
            }
        }
    }
    if (qr_report_write_rank_svg(argv[1], c, N_CKPT, &written) != QR_OK || !written ||
        qr_report_write_layers_svg(argv[2], c, N_CKPT) != QR_OK) {
        fprintf(stderr, "%s\n", written ? qr_errmsg() : "rank.svg not written (no sweep found)");
        return 1;
    }
    return 0;
}

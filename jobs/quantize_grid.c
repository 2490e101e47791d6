/* quantize_grid.c: one input group's modules divided over a rank group's grid
 * (jobs/quantize_grid.h). */
#include "jobs/quantize_grid.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/comm.h"
#include "src/alloc.h"
#include "src/progress.h"

/* Read rows [row0, row0 + n) of key into buf (n, d) float64. */
static qr_status read_rows(qr_calib_set *set, const char *key, int64_t row0, int64_t n, int64_t d,
                           float *tmp, double *buf)
{
    QR_TRY(qr_calib_set_read_rows(set, key, row0, n, tmp));
    for (int64_t i = 0; i < n * d; i++) {
        buf[i] = (double)tmp[i];
    }
    return QR_OK;
}

/* Calibration rows each rank holds at once while accumulating (its windows come in rounds). */
#define QR_GRID_STATS_ROUND_BYTES ((size_t)64 << 20)

/* The fitting windows, split over the group's ranks in contiguous shares; each rank reads only its
 * own, in rounds of whole windows, and the group accumulates them (one window a batch). */
static qr_status input_stats(const qr_grid *g, qr_calib_set *set, const char *key, int64_t d,
                             const qr_calib_split *sp, qr_dstats *s)
{
    qr_status st = QR_OK;
    int64_t per = (int64_t)g->nprow * g->npcol, W = sp->n_fit / sp->seq_len;
    int64_t w_lo = W * g->group_rank / per, w_hi = W * (g->group_rank + 1) / per;
    int64_t share = (W + per - 1) / per;
    int64_t round = (int64_t)(QR_GRID_STATS_ROUND_BYTES / ((size_t)sp->seq_len * (size_t)d * 12));
    float *rows = NULL; /* (round windows x seq_len, d) */
    round = round < 1 ? 1 : round;
    round = round > share ? (share > 0 ? share : 1) : round;
    st = qr_malloc(&rows, (size_t)(round * sp->seq_len) * (size_t)d, sizeof *rows,
                   "calibration rows");
    QR_TRY(qr_mpi_agree(g->comm, st));
    for (int64_t k = 0; k < share; k += round) {
        int64_t a = w_lo + k, b = a + round < w_hi ? a + round : w_hi, n = b > a ? b - a : 0;
        st = n > 0 ? qr_calib_set_read_rows(set, key, a * sp->seq_len, n * sp->seq_len, rows)
                   : QR_OK;
        QR_CHECK(qr_mpi_agree(g->comm, st));
        QR_CHECK(qr_dstats_add_rows(g, s, rows, n * sp->seq_len, sp->seq_len));
    }
done:
    free(rows);
    return st;
}

/* The held-out rows: block-cyclic, and this rank's row blocks whole for the quantized copies. */
static qr_status input_held(const qr_grid *g, qr_calib_set *set, const char *key, int64_t d,
                            const qr_calib_split *sp, float *tmp, double *buf, qr_grid_held *h)
{
    qr_status st = qr_dmat_create(g, sp->n_ho, d, &h->X);
    int64_t rows = 0, r0, n;
    if (st == QR_OK) {
        rows = h->X->mloc;
        st = qr_malloc(&h->rows, (size_t)(rows > 0 ? rows : 1) * (size_t)d, sizeof *h->rows,
                       "held-out rows");
    }
    QR_TRY(qr_mpi_agree(g->comm, st));
    rows = 0;
    for (int64_t b = 0; st == QR_OK && (n = qr_grid_row_block(g, sp->n_ho, b, &r0)) > 0; b++) {
        st = read_rows(set, key, sp->n_fit + r0, n, d, tmp, buf);
        if (st == QR_OK) {
            memcpy(h->rows + rows * d, tmp, (size_t)(n * d) * sizeof *tmp);
            qr_dmat_fill_rows(g, h->X, r0, n, buf);
            rows += n;
        }
    }
    return qr_mpi_agree(g->comm, st);
}

qr_status qr_grid_input_open(const qr_grid *g, qr_calib_set *set, const char *key, int64_t d,
                             const qr_calib_split *sp, const qr_method_opts *o, int64_t agroup,
                             qr_grid_input *in)
{
    qr_status st = QR_OK;
    size_t n = (size_t)g->nb * (size_t)d;
    float *tmp = NULL;
    double *buf = NULL; /* (nb, d): one row block */
    double t0 = qr_now();
    memset(in, 0, sizeof *in);
    in->held.agroup = agroup;
    st = qr_malloc(&tmp, n, sizeof *tmp, "calibration rows");
    if (st == QR_OK) {
        st = qr_malloc(&buf, n, sizeof *buf, "calibration rows");
    }
    if (st == QR_OK) {
        st = qr_dstats_create(g, d, &in->stats);
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    QR_CHECK(input_stats(g, set, key, d, sp, in->stats));
    QR_CHECK(qr_dstats_finish(g, in->stats, o));
    if (sp->n_ho > 0) {
        QR_CHECK(input_held(g, set, key, d, sp, tmp, buf, &in->held));
    }
done:
    free(tmp);
    free(buf);
    if (st != QR_OK) {
        qr_grid_input_close(in);
    }
    in->seconds = qr_now() - t0;
    return st;
}

void qr_grid_input_close(qr_grid_input *in)
{
    qr_dstats_free(&in->stats);
    qr_dmat_free(&in->held.X);
    qr_free(&in->held.rows);
}

/* The module's weight, each rank reading only its grid row's row blocks. */
static qr_status read_weight(const qr_grid *g, const qr_model *model, const qr_module *m,
                             qr_dmat *W)
{
    qr_status st = QR_OK;
    char tensor[QR_MODULE_NAME_MAX + 16];
    double *buf = NULL; /* (nb, d_in) */
    snprintf(tensor, sizeof tensor, "%s.weight", m->name);
    st = qr_malloc(&buf, (size_t)g->nb * (size_t)m->d_in, sizeof *buf, tensor);
    for (int64_t b = 0, r0, n; st == QR_OK && (n = qr_grid_row_block(g, m->d_out, b, &r0)) > 0;
         b++) {
        st = qr_model_read_rows_f64(model, tensor, r0, n, buf, (size_t)(n * m->d_in));
        if (st == QR_OK) {
            qr_dmat_fill_rows(g, W, r0, n, buf);
        }
    }
    free(buf);
    return qr_mpi_agree(g->comm, st);
}

qr_status qr_grid_module_run(const qr_grid *g, const qr_model *model, const qr_module *m,
                             const qr_method_opts *o, qr_grid_input *in, qr_qlayer *root_ql,
                             qr_metrics *met, int *has_metrics, qr_method_report *rep)
{
    qr_status st = QR_OK;
    qr_dmat *W = NULL;
    qr_grid_result res;
    memset(&res, 0, sizeof res);
    memset(met, 0, sizeof *met);
    *has_metrics = 0;
    QR_TRY(qr_mpi_agree(g->comm, qr_dmat_create(g, m->d_out, m->d_in, &W)));
    QR_CHECK(read_weight(g, model, m, W));
    QR_CHECK(qr_grid_method_run(g, o, W, in->stats, root_ql, &res));
    *rep = res.rep;
    if (in->held.X) {
        QR_CHECK(qr_grid_metrics(g, W, res.W_eff, &in->held, met));
        *has_metrics = 1;
    }
done:
    qr_dmat_free(&W);
    qr_grid_result_free(&res);
    return st;
}

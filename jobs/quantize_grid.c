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
#include "src/quant.h"

/* Rows [r0, r0 + n) of the block-cyclic row blocks of this rank's grid row, for a matrix of m rows:
 * the b-th block this rank holds, or 0 rows past the last. */
static int64_t row_block(const qr_grid *g, int64_t m, int64_t b, int64_t *r0)
{
    int64_t blk = b * g->nprow + g->myrow;
    *r0 = blk * g->nb;
    return *r0 >= m ? 0 : (m - *r0 < g->nb ? m - *r0 : g->nb);
}

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

/* The fitting windows, one window a batch, each rank reading only its grid row's row blocks. */
static qr_status input_stats(const qr_grid *g, qr_calib_set *set, const char *key, int64_t d,
                             const qr_calib_split *sp, float *tmp, double *buf, qr_dstats *s)
{
    qr_status st = QR_OK;
    qr_dmat *X = NULL; /* (seq_len, d): one window */
    QR_TRY(qr_mpi_agree(g->comm, qr_dmat_create(g, sp->seq_len, d, &X)));
    for (int64_t w0 = 0; w0 < sp->n_fit; w0 += sp->seq_len) {
        int64_t r0, n;
        st = QR_OK;
        for (int64_t b = 0; st == QR_OK && (n = row_block(g, sp->seq_len, b, &r0)) > 0; b++) {
            st = read_rows(set, key, w0 + r0, n, d, tmp, buf);
            if (st == QR_OK) {
                qr_dmat_fill_rows(g, X, r0, n, buf);
            }
        }
        QR_CHECK(qr_mpi_agree(g->comm, st));
        QR_CHECK(qr_dstats_add(g, s, X));
    }
done:
    qr_dmat_free(&X);
    return st;
}

/* The held-out rows and their per-token quantized versions (the rule of the reference forward:
 * qr_act_fake_quant on the float64 rows). */
static qr_status input_held(const qr_grid *g, qr_calib_set *set, const char *key, int64_t d,
                            const qr_calib_split *sp, int64_t agroup, float *tmp, double *buf,
                            double *qbuf, qr_grid_input *in)
{
    static const int bits[3] = {8, 4, 4};
    qr_status st = qr_dmat_create(g, sp->n_ho, d, &in->held);
    for (int a = 0; a < 3 && st == QR_OK; a++) {
        if (a < 2 || agroup > 0) {
            st = qr_dmat_create(g, sp->n_ho, d, &in->held_q[a]);
        }
    }
    QR_TRY(qr_mpi_agree(g->comm, st));
    for (int64_t b = 0, r0, n; st == QR_OK && (n = row_block(g, sp->n_ho, b, &r0)) > 0; b++) {
        st = read_rows(set, key, sp->n_fit + r0, n, d, tmp, buf);
        if (st != QR_OK) {
            break;
        }
        qr_dmat_fill_rows(g, in->held, r0, n, buf);
        for (int a = 0; a < 3; a++) {
            if (in->held_q[a]) {
                memcpy(qbuf, buf, (size_t)(n * d) * sizeof *qbuf);
                qr_act_fake_quant(qbuf, n, d, bits[a], a == 2 ? agroup : 0);
                qr_dmat_fill_rows(g, in->held_q[a], r0, n, qbuf);
            }
        }
    }
    return qr_mpi_agree(g->comm, st);
}

qr_status qr_grid_input_open(const qr_grid *g, qr_calib_set *set, const char *key, int64_t d,
                             const qr_calib_split *sp, int64_t agroup, qr_grid_input *in)
{
    qr_status st = QR_OK;
    size_t n = (size_t)g->nb * (size_t)d;
    float *tmp = NULL;
    double *buf = NULL, *qbuf = NULL; /* (nb, d): one row block */
    double t0 = qr_now();
    memset(in, 0, sizeof *in);
    st = qr_malloc(&tmp, n, sizeof *tmp, "calibration rows");
    if (st == QR_OK) {
        st = qr_malloc(&buf, n, sizeof *buf, "calibration rows");
    }
    if (st == QR_OK) {
        st = qr_malloc(&qbuf, n, sizeof *qbuf, "quantized calibration rows");
    }
    if (st == QR_OK) {
        st = qr_dstats_create(g, d, &in->stats);
    }
    QR_CHECK(qr_mpi_agree(g->comm, st));
    QR_CHECK(input_stats(g, set, key, d, sp, tmp, buf, in->stats));
    if (sp->n_ho > 0) {
        QR_CHECK(input_held(g, set, key, d, sp, agroup, tmp, buf, qbuf, in));
    }
done:
    free(tmp);
    free(buf);
    free(qbuf);
    if (st != QR_OK) {
        qr_grid_input_close(in);
    }
    in->seconds = qr_now() - t0;
    return st;
}

void qr_grid_input_close(qr_grid_input *in)
{
    qr_dstats_free(&in->stats);
    qr_dmat_free(&in->held);
    for (int a = 0; a < 3; a++) {
        qr_dmat_free(&in->held_q[a]);
    }
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
    for (int64_t b = 0, r0, n; st == QR_OK && (n = row_block(g, m->d_out, b, &r0)) > 0; b++) {
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
    if (in->held) {
        QR_CHECK(
            qr_grid_metrics(g, W, res.W_eff, in->held, (const qr_dmat *const *)in->held_q, met));
        *has_metrics = 1;
    }
done:
    qr_dmat_free(&W);
    qr_grid_result_free(&res);
    return st;
}

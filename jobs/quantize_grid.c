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
#include "src/stage.h"

/* The fitting rows, split over the group's ranks in contiguous shares of rows (a window may
 * straddle two ranks: qr_dstats combines its pieces); each rank reads only its own, in rounds, and
 * the group accumulates them (one window a batch). */
static qr_status input_stats(const qr_grid *g, qr_calib_set *set, const char *key, int64_t d,
                             const qr_calib_split *sp, qr_dstats *s)
{
    qr_status st = QR_OK;
    int64_t per = (int64_t)g->nprow * g->npcol, row0;
    int64_t mine = qr_dstats_share(g, sp->n_fit, &row0), most = (sp->n_fit + per - 1) / per;
    int64_t round = (int64_t)(QR_GRID_STATS_ROUND_BYTES / ((size_t)d * 12));
    float *rows = NULL; /* (round, d) */
    round = round < 1 ? 1 : round;
    round = round > most ? (most > 0 ? most : 1) : round;
    st = qr_malloc(&rows, (size_t)round * (size_t)d, sizeof *rows, "calibration rows");
    QR_TRY(qr_mpi_agree(g->comm, st));
    for (int64_t k = 0; k < most; k += round) { /* the same number of rounds on every rank */
        int64_t a = k < mine ? k : mine, n = (k + round < mine ? k + round : mine) - a;
        st = n > 0 ? qr_calib_set_read_rows(set, key, row0 + a, n, rows) : QR_OK;
        QR_CHECK(qr_mpi_agree(g->comm, st));
        QR_CHECK(qr_dstats_add_rows(g, s, rows, row0 + a, n));
    }
done:
    free(rows);
    return st;
}

/* The held-out sample, whole on every rank (a few hundred rows). */
static qr_status input_held(const qr_grid *g, qr_calib_set *set, const char *key, int64_t d,
                            const qr_calib_split *sp, qr_grid_held *h)
{
    qr_status st =
        qr_malloc(&h->X, (size_t)sp->n_metric * (size_t)d, sizeof *h->X, "held-out rows");
    if (st == QR_OK) {
        st = qr_calib_read_sample(set, key, sp, 0, sp->n_metric, h->X);
    }
    if (st == QR_OK) {
        h->n = sp->n_metric;
        h->d = d;
    }
    return qr_mpi_agree(g->comm, st);
}

qr_status qr_grid_input_open(const qr_grid *g, qr_calib_set *set, const char *key, int64_t d,
                             const qr_calib_split *sp, const qr_method_opts *o, bool keep_gram,
                             int64_t agroup, qr_grid_input *in)
{
    qr_status st = QR_OK;
    double t0 = qr_now();
    memset(in, 0, sizeof *in);
    in->held.agroup = agroup;
    QR_CHECK(qr_mpi_agree(g->comm, qr_dstats_create(g, d, sp->n_fit, sp->seq_len, &in->stats)));
    QR_CHECK(input_stats(g, set, key, d, sp, in->stats));
    QR_CHECK(qr_dstats_finish(g, in->stats, o, keep_gram));
    if (sp->n_metric > 0) {
        QR_CHECK(input_held(g, set, key, d, sp, &in->held));
    }
done:
    if (st != QR_OK) {
        qr_grid_input_close(in);
    }
    in->seconds = qr_now() - t0;
    return st;
}

void qr_grid_input_close(qr_grid_input *in)
{
    qr_dstats_free(&in->stats);
    qr_free(&in->held.X);
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

/* o on the distributed W into *out (the module gathered on the root when `gather`); with held-out
 * rows, its metrics (grouped A4 per agroup; every width, or the one given) on ref, made by the
 * first call. */
static qr_status module_quantize(const qr_grid *g, const qr_method_opts *o, const qr_dmat *W,
                                 qr_grid_input *in, qr_grid_metric_ref *ref, int64_t agroup,
                                 int width, bool gather, qr_grid_module_out *out)
{
    qr_status st = QR_OK;
    qr_grid_result res;
    qr_grid_held h = in->held;
    memset(&res, 0, sizeof res);
    QR_CHECK(qr_grid_method_run(g, o, W, in->stats, gather ? &out->ql : NULL, &res));
    out->rep = res.rep;
    if (h.n > 0) {
        qr_stage_mark("metrics");
        if (!ref->Y) {
            QR_CHECK(qr_grid_metric_ref_init(g, W, &h, ref));
        }
        h.agroup = agroup;
        QR_CHECK(qr_grid_metrics(g, ref, &h, width, W, res.W_eff, res.perm, res.smooth, &out->met));
        out->met.bits_per_weight = out->ql.bits_per_weight;
    }
done:
    qr_grid_result_free(&res);
    return st;
}

qr_status qr_grid_module_run(const qr_grid *g, const qr_model *model, const qr_module *m,
                             const qr_method_opts *o, const qr_method_opts *rtn, qr_grid_input *in,
                             qr_grid_module_out *out, qr_grid_module_out *rtn_out, int *has_metrics)
{
    qr_status st = QR_OK;
    qr_dmat *W = NULL;
    qr_grid_metric_ref ref; /* made once, after the method: shared by the method's and RTN's */
    memset(&ref, 0, sizeof ref);
    ref.row = MPI_COMM_NULL;
    memset(out, 0, sizeof *out);
    memset(rtn_out, 0, sizeof *rtn_out);
    *has_metrics = in->held.n > 0;
    qr_stage_mark("weight");
    QR_TRY(qr_mpi_agree(g->comm, qr_dmat_create(g, m->d_out, m->d_in, &W)));
    QR_CHECK(read_weight(g, model, m, W));
    qr_stage_mark("method");
    QR_CHECK(module_quantize(g, o, W, in, &ref, in->held.agroup, QR_METRICS_ALL, true, out));
    if (rtn && *has_metrics) {
        qr_stage_mark("RTN comparison");
        /* Measured only at the compared width (its codes are gathered on a fallback). */
        QR_CHECK(module_quantize(g, rtn, W, in, &ref, 0, rtn->abits, false, rtn_out));
    }
done:
    qr_dmat_free(&W);
    qr_grid_metric_ref_free(&ref);
    return st;
}

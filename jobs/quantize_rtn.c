/* quantize_rtn.c: the RTN comparison of every module (jobs/quantize_rtn.h). */
#include "jobs/quantize_rtn.h"

#include <math.h>
#include <string.h>

#include "io/report_read.h"
#include "src/log.h"
#include "src/stage.h"

/* The error compared: the job's activation width. */
static double err_at(const qr_metrics *m, int abits)
{
    return abits == 8 ? m->out_rel_err_a8 : (abits == 4 ? m->out_rel_err_a4 : m->out_rel_err);
}

/* Plain RTN with the job's weight quantizer: no GPTQ, no correction, no budget. */
static qr_method_opts rtn_opts(const qr_method_opts *o)
{
    qr_method_opts r;
    qr_method_opts_default(&r, QR_METHOD_RTN);
    r.wq = o->wq;
    r.abits = o->abits; /* the width compared: the only error RTN is measured at */
    r.seed = o->seed;
    r.module_name = o->module_name;
    return r;
}

/* Plain RTN compared with itself is itself. */
static bool needs_compare(const qr_method_opts *o)
{
    return !(o->method == QR_METHOD_RTN && !o->gptq);
}

static void cmp_reset(qr_rtn_cmp *cmp)
{
    memset(cmp, 0, sizeof *cmp);
    cmp->rtn_err[0] = cmp->rtn_err[1] = cmp->rtn_err[2] = NAN;
    cmp->method_err = cmp->rtn_cmp_err = NAN;
}

/* Fill cmp from both metrics; whether to keep RTN's module. */
static bool judge(const qr_rtn_policy *pol, const char *module, const qr_metrics *met,
                  const qr_metrics *rtn, qr_rtn_cmp *cmp)
{
    cmp->compared = 1;
    cmp->rtn_err[0] = rtn->out_rel_err;
    cmp->rtn_err[1] = rtn->out_rel_err_a8;
    cmp->rtn_err[2] = rtn->out_rel_err_a4;
    cmp->method_err = err_at(met, pol->abits);
    cmp->rtn_cmp_err = err_at(rtn, pol->abits);
    /* NaN compares false: a method whose error is not finite while RTN's is counts as worse. */
    cmp->worse = cmp->method_err > cmp->rtn_cmp_err ||
                 (!isfinite(cmp->method_err) && isfinite(cmp->rtn_cmp_err));
    if (pol->force && pol->force(pol->ctx, module)) {
        cmp->worse = 1;
    }
    cmp->fallback = cmp->worse && pol->fallback;
    return cmp->fallback;
}

/* The report of a stored RTN module: the method's times, RTN's choices. */
static void report_as_rtn(qr_method_report *rep)
{
    rep->rank_used = 0;
    rep->srr_k_used = -1;
    rep->n_salient_used = 0;
    rep->damping = 0.0;
    rep->clip_ratio = 1.0;
}

/* Compare *ql (metrics *met) with RTN on the rows of ref (NULL: nothing compared). */
static qr_status rtn_compare(const qr_rtn_policy *pol, const qr_method_opts *o, const double *W,
                             int64_t d_out, int64_t d_in, const qr_stats *stats,
                             const qr_metric_ref *ref, qr_qlayer *ql, qr_metrics *met,
                             qr_method_report *rep, qr_rtn_cmp *cmp)
{
    qr_status st = QR_OK;
    qr_method_opts ro = rtn_opts(o);
    qr_qlayer rq;
    qr_metrics rm;
    cmp_reset(cmp);
    memset(&rq, 0, sizeof rq);
    if (!ref || !needs_compare(o)) {
        return QR_OK;
    }
    qr_stage_mark("RTN comparison");
    QR_CHECK(qr_method_run(&ro, W, d_out, d_in, stats, &rq, NULL));
    /* RTN is measured at the compared width only (its other errors are NaN): one product. */
    QR_CHECK(qr_metrics_fast(ref, &rq, W, 0, pol->abits, NULL, &rm));
    if (judge(pol, o->module_name, met, &rm, cmp)) {
        memcpy(rm.seconds, met->seconds, sizeof rm.seconds);
        rm.seconds_total = met->seconds_total;
        qr_qlayer_free(ql);
        *ql = rq;
        memset(&rq, 0, sizeof rq);
        *met = rm;
        report_as_rtn(rep);
    }
done:
    qr_qlayer_free(&rq);
    return st;
}

qr_status qr_quantize_measure(const qr_rtn_policy *pol, const qr_method_opts *o, const double *W,
                              const qr_module *m, const qr_stats *stats, const float *held,
                              int64_t n_ho, int64_t agroup, qr_qlayer *ql, qr_metrics *met,
                              qr_method_report *rep, qr_rtn_cmp *cmp)
{
    qr_status st = QR_OK;
    qr_metric_ref ref;
    memset(&ref, 0, sizeof ref);
    memset(met, 0, sizeof *met);
    if (n_ho > 0) {
        qr_stage_mark("metrics");
        QR_CHECK(qr_metric_ref_init(&ref, W, m->d_out, m->d_in, held, n_ho));
        QR_CHECK(qr_metrics_fast(&ref, ql, W, agroup, QR_METRICS_ALL, rep, met));
    }
    QR_CHECK(rtn_compare(pol, o, W, m->d_out, m->d_in, stats, n_ho > 0 ? &ref : NULL, ql, met, rep,
                         cmp));
done:
    qr_metric_ref_free(&ref);
    return st;
}

bool qr_rtn_opts(const qr_method_opts *o, qr_method_opts *rtn)
{
    *rtn = rtn_opts(o);
    return needs_compare(o);
}

bool qr_rtn_compare_grid(const qr_rtn_policy *pol, const qr_module *m, bool ran,
                         const qr_grid_module_out *out, const qr_grid_module_out *rtn,
                         qr_rtn_cmp *cmp)
{
    cmp_reset(cmp);
    /* Every rank holds the same metrics (reduced), so every rank judges alike. */
    return ran && judge(pol, m->name, &out->met, &rtn->met, cmp);
}

void qr_rtn_take_grid(const qr_grid *g, qr_grid_module_out *out, qr_grid_module_out *rtn)
{
    double bits = g->group_rank == 0 ? rtn->ql.bits_per_weight : out->met.bits_per_weight;
    memcpy(rtn->met.seconds, out->met.seconds, sizeof rtn->met.seconds);
    rtn->met.seconds_total = out->met.seconds_total;
    qr_qlayer_free(&out->ql);
    out->ql = rtn->ql;
    memset(&rtn->ql, 0, sizeof rtn->ql);
    out->met = rtn->met;
    out->met.bits_per_weight = bits;
    report_as_rtn(&out->rep);
}

qr_status qr_rtn_cmp_kv(const qr_rtn_cmp *cmp, qr_kvlist *l)
{
    QR_TRY(qr_kv_set_double(l, "rtn_output_error", cmp->rtn_err[0]));
    QR_TRY(qr_kv_set_double(l, "rtn_output_error_a8", cmp->rtn_err[1]));
    QR_TRY(qr_kv_set_double(l, "rtn_output_error_a4", cmp->rtn_err[2]));
    QR_TRY(qr_kv_set_double(l, "method_output_error", cmp->method_err));
    QR_TRY(qr_kv_set_int(l, "worse_than_rtn", cmp->compared ? cmp->worse : -1));
    return qr_kv_set_int(l, "fallback_rtn", cmp->fallback);
}

qr_status qr_rtn_summary_print(const char *ckpt_path)
{
    qr_report_ckpt c;
    size_t worse = 0, kept = 0, compared = 0;
    memset(&c, 0, sizeof c);
    QR_TRY(qr_report_read(ckpt_path, NULL, &c));
    for (size_t i = 0; i < c.n_rows; i++) {
        const qr_report_row *r = &c.rows[i];
        compared += r->worse_than_rtn >= 0;
        if (r->worse_than_rtn == 1) {
            worse++;
            kept += r->fallback_rtn == 1;
            QR_INFO("quantize: %s: %s is worse than RTN (held-out %s error %.4g vs RTN's %.4g)%s",
                    r->name, c.method, c.abits == 8 ? "A8" : (c.abits == 4 ? "A4" : "float"),
                    r->method_err, r->rtn_err,
                    r->fallback_rtn == 1 ? "; RTN's module is stored (--fallback-rtn)" : "");
        }
    }
    if (compared > 0) {
        QR_INFO("quantize: %zu of %zu module(s) worse than RTN%s", worse, compared,
                worse == 0 ? ""
                           : (kept == worse ? ", RTN's result kept for all of them"
                                            : " (--fallback-rtn keeps RTN's result for them)"));
    }
    qr_report_ckpt_free(&c);
    return QR_OK;
}

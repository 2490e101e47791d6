/* method.c: the method table, option defaults and checks, the dispatch of qr_method_run, the
 * stored-bits count, and SRR's k* rule (src/method.h). */
#include "src/method.h"

#include <math.h>
#include <string.h>

/* Relative slack of the bits-budget comparisons: the budget is a decimal the user typed, the bits
 * a sum of exact binary fractions; 1e-9 absorbs the rounding of either, never a whole bit. */
#define QR_BITS_SLACK 1e-9
/* Added before rounding a count down: a budget that fits r exactly (B = base + 16 r (m + n) /
 * (m n) typed as a decimal) must give r, not r - 1 from a quotient of 72.99999999. */
#define QR_BITS_ROUND 1e-7

extern const qr_method_impl qr_method_rtn;
extern const qr_method_impl qr_method_lqer;
extern const qr_method_impl qr_method_qera_approx;
extern const qr_method_impl qr_method_qera_exact;
extern const qr_method_impl qr_method_aser;
extern const qr_method_impl qr_method_serq;
extern const qr_method_impl qr_method_flrq;
extern const qr_method_impl qr_method_srr;
extern const qr_method_impl qr_method_joint;

/* One line per method, indexed by qr_method_id. */
static const qr_method_impl *const method_table[QR_METHOD_COUNT] = {
    [QR_METHOD_RTN] = &qr_method_rtn,
    [QR_METHOD_LQER] = &qr_method_lqer,
    [QR_METHOD_QERA_APPROX] = &qr_method_qera_approx,
    [QR_METHOD_QERA_EXACT] = &qr_method_qera_exact,
    [QR_METHOD_ASER] = &qr_method_aser,
    [QR_METHOD_SERQ] = &qr_method_serq,
    [QR_METHOD_FLRQ] = &qr_method_flrq,
    [QR_METHOD_SRR] = &qr_method_srr,
    [QR_METHOD_JOINT] = &qr_method_joint,
};

const qr_method_impl *qr_method_lookup(qr_method_id m)
{
    if ((int)m < 0 || m >= QR_METHOD_COUNT) {
        return NULL;
    }
    return method_table[m];
}

const char *qr_method_stage_name(qr_method_stage s)
{
    static const char *const names[QR_STAGE_COUNT] = {"scale", "quantize", "decompose", "other"};
    if ((int)s < 0 || s >= QR_STAGE_COUNT) {
        return "unknown";
    }
    return names[s];
}

void qr_method_opts_default(qr_method_opts *o, qr_method_id m)
{
    memset(o, 0, sizeof *o);
    o->method = m;
    qr_wquant_opts_default(&o->wq);
    if (m == QR_METHOD_ASER) {
        o->wq.group = 0; /* the ASER paper quantizes weights per output channel */
    }
    o->gptq = m == QR_METHOD_JOINT; /* JOINT's main matrix is GPTQ's (docs/methods.md) */
    o->abits = 8;
    o->rank = QR_AUTO;
    o->n_salient = QR_AUTO;
    o->bits = 0.0;
    o->smooth_alpha = 0.5;
    o->srr_base = QR_METHOD_QERA_EXACT;
    o->srr_k = -1;
    o->flrq_mem_budget = 0.20;
    o->flrq_sketch_iters = 2;
    o->flrq_blc_iters = 2;
    o->whiten_lambda0 = QR_CHOL_LAMBDA0;
    qr_svd_opts_default(&o->svd);
    o->seed = 0;
    o->module_name = NULL;
}

double qr_qweight_bits(const qr_qweight *q)
{
    double groups = (double)q->rows * (double)q->n_groups;
    if (q->rows == 0 || q->cols == 0) {
        return 0.0;
    }
    return 4.0 * (double)q->rows * (double)q->cols + 32.0 * groups + (q->asym ? 4.0 * groups : 0.0);
}

double qr_qlayer_bits_per_weight(const qr_qlayer *ql)
{
    double bits = qr_qweight_bits(&ql->main);
    if (ql->d_out < 1 || ql->d_in < 1) {
        return 0.0;
    }
    if (ql->n_salient > 0) {
        bits += qr_qweight_bits(&ql->side);
    }
    bits += 16.0 * (double)ql->rank * (double)(ql->d_out + ql->d_in);
    if (ql->smooth) {
        bits += 32.0 * (double)ql->d_in;
    }
    if (ql->perm) {
        bits += 32.0 * (double)ql->d_in;
    }
    return bits / ((double)ql->d_out * (double)ql->d_in);
}

int64_t qr_srr_kstar(const double *sw, double sw_total, const double *se, double se_total,
                     int64_t r)
{
    int64_t best_k = 0;
    double best = INFINITY;
    for (int64_t k = 0; k <= r; k++) {
        double cw = 0.0, ce = 0.0, rho_w, rho_e, v;
        for (int64_t i = 0; i < k; i++) {
            cw += sw[i] * sw[i];
        }
        for (int64_t i = 0; i < r - k; i++) {
            ce += se[i] * se[i];
        }
        rho_w = sw_total > 0.0 ? 1.0 - cw / sw_total : 0.0;
        rho_e = se_total > 0.0 ? 1.0 - ce / se_total : 0.0;
        /* Rounding can push an exhausted spectrum slightly below zero. */
        rho_w = rho_w < 0.0 ? 0.0 : rho_w;
        rho_e = rho_e < 0.0 ? 0.0 : rho_e;
        v = rho_w * rho_e;
        if (v < best) {
            best = v;
            best_k = k;
        }
    }
    return best_k;
}

/* Bits per weight of a weight quantizer's codes, scales and zero points over an (m, n) matrix. */
static double wq_bits_per_weight(const qr_wquant_opts *wq, int64_t n)
{
    int64_t groups = (wq->group <= 0 || wq->group >= n) ? 1 : (n + wq->group - 1) / wq->group;
    return 4.0 + (32.0 + (wq->asym ? 4.0 : 0.0)) * (double)groups / (double)n;
}

/* The main matrix and the per-channel vectors: what a module stores before its correction. */
static double base_bits(const qr_method_opts *o, int64_t d_out, int64_t d_in)
{
    double b = wq_bits_per_weight(&o->wq, d_in);
    if (o->method == QR_METHOD_ASER) {
        b += 32.0 / (double)d_out; /* smoothing vector */
    } else if (o->method == QR_METHOD_SERQ) {
        b += 64.0 / (double)d_out; /* smoothing vector and permutation */
    }
    return b;
}

static bool has_lowrank(qr_method_id m)
{
    return m != QR_METHOD_RTN && m != QR_METHOD_SERQ;
}

qr_status qr_method_resolve(const qr_method_opts *o, const char *who, int64_t d_out, int64_t d_in,
                            qr_method_opts *out)
{
    double m = (double)d_out, n = (double)d_in, base, extra;
    int64_t dmin = d_out < d_in ? d_out : d_in;
    *out = *o;
    if (d_out < 1 || d_in < 1) {
        return QR_OK; /* the shape check reports it */
    }
    base = base_bits(o, d_out, d_in);
    extra = QR_AUTO_EXTRA_BITS;
    if (o->bits > 0.0) {
        extra = o->bits - base;
        if (extra < -QR_BITS_SLACK * o->bits) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: --bits %g is below what the main matrix of %s stores (expected "
                           ">= %.4f bits per weight at group %lld)",
                           who, o->bits, qr_method_name(o->method), base, (long long)o->wq.group);
        }
        extra = extra < 0.0 ? 0.0 : extra;
    }
    if (!has_lowrank(o->method)) {
        out->rank = 0;
    } else if (o->rank == QR_AUTO) {
        double r = floor(extra * m * n / (16.0 * (m + n)) + QR_BITS_ROUND);
        out->rank = r > (double)dmin ? dmin : (int64_t)r;
        if (o->bits <= 0.0 && out->rank < 1) {
            out->rank = 1;
        }
    }
    if (o->n_salient == QR_AUTO && o->method == QR_METHOD_ASER) {
        int64_t f = d_in / 128 > 1 ? d_in / 128 : 1;
        out->n_salient = f < out->rank ? f : out->rank;
    } else if (o->n_salient == QR_AUTO && o->method == QR_METHOD_SERQ) {
        int64_t k = d_in / 32 > 1 ? d_in / 32 : 1;
        if (o->bits > 0.0) {
            double kb = floor((extra * n - 32.0 - (o->wq.asym ? 4.0 : 0.0)) / 4.0 + QR_BITS_ROUND);
            k = kb < 0.0 ? 0 : (kb > n ? d_in : (int64_t)kb);
        }
        out->n_salient = k;
    } else if (o->n_salient == QR_AUTO) {
        out->n_salient = 0; /* the other methods have no salient channels */
    }
    return QR_OK;
}

double qr_method_bits_bound(const qr_method_opts *o, int64_t d_out, int64_t d_in)
{
    double m = (double)d_out, n = (double)d_in, b;
    if (d_out < 1 || d_in < 1) {
        return 0.0;
    }
    b = base_bits(o, d_out, d_in);
    if (has_lowrank(o->method) && o->rank > 0) {
        int64_t dmin = d_out < d_in ? d_out : d_in, r = o->rank < dmin ? o->rank : dmin;
        b += 16.0 * (double)r * (m + n) / (m * n);
    }
    if (o->method == QR_METHOD_SERQ && o->n_salient > 0) {
        int64_t k = o->n_salient < d_in ? o->n_salient : d_in;
        b += (4.0 * (double)k + 32.0 + (o->wq.asym ? 4.0 : 0.0)) / n;
    }
    if (o->method == QR_METHOD_JOINT) {
        /* it may store a smoothing vector instead of some rank (at A4; the bound does not
         * depend on the activation width, so plan and quantize agree) */
        int64_t rs = qr_joint_smooth_rank(o, d_out, d_in);
        double bs = base_bits(o, d_out, d_in) + 32.0 / m + 16.0 * (double)rs * (m + n) / (m * n);
        b = rs >= 0 && bs > b ? bs : b;
    }
    return b;
}

void qr_joint_search(int abits, int64_t d_out, int64_t d_in, int *spaces, int *fits)
{
    double sweeps = QR_JOINT_WORK / ((double)d_out * (double)d_in * (double)d_in);
    int full = QR_JOINT_SPACES * 2 * QR_JOINT_MAX_FITS, s;
    s = sweeps >= full ? full : sweeps <= QR_JOINT_MIN_SWEEPS ? QR_JOINT_MIN_SWEEPS : (int)sweeps;
    /* every space with at least 2 fits per start, else the fewest spaces */
    *spaces = s >= QR_JOINT_SPACES * 2 * 2 ? QR_JOINT_SPACES : (abits == 4 ? 2 : 1);
    *fits = s / (2 * *spaces);
    *fits = *fits < 1 ? 1 : *fits > QR_JOINT_MAX_FITS ? QR_JOINT_MAX_FITS : *fits;
}

int64_t qr_joint_smooth_rank(const qr_method_opts *o, int64_t d_out, int64_t d_in)
{
    double m = (double)d_out, n = (double)d_in, extra, r;
    if (o->bits <= 0.0) {
        return o->rank;
    }
    extra = o->bits - base_bits(o, d_out, d_in) - 32.0 / m;
    if (extra < -QR_BITS_SLACK * o->bits) {
        return -1;
    }
    r = floor((extra < 0.0 ? 0.0 : extra) * m * n / (16.0 * (m + n)) + QR_BITS_ROUND);
    return r > (double)o->rank ? o->rank : (int64_t)r;
}

static bool is_srr_base(qr_method_id m)
{
    return m == QR_METHOD_LQER || m == QR_METHOD_QERA_APPROX || m == QR_METHOD_QERA_EXACT;
}

/* Option and shape checks shared by every method, on resolved options. */
static qr_status check_resolved(const qr_method_opts *o, const char *who, int64_t d_out,
                                int64_t d_in)
{
    int64_t dmin = d_out < d_in ? d_out : d_in;
    if (!qr_method_lookup(o->method)) {
        return qr_fail(QR_ERR_INPUT, "%s: unknown method id (expected 0..%d, found %d)", who,
                       QR_METHOD_COUNT - 1, (int)o->method);
    }
    if (d_out < 1 || d_in < 1) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: bad weight (expected a >= 1 x 1 matrix, found %lld x %lld)", who,
                       (long long)d_out, (long long)d_in);
    }
    if (d_out > INT32_MAX || d_in > INT32_MAX) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: weight too large (expected dims < 2^31, found %lld x %lld)", who,
                       (long long)d_out, (long long)d_in);
    }
    /* RTN and SERQ store no low-rank term: their rank option is ignored. */
    if (o->method != QR_METHOD_RTN && o->method != QR_METHOD_SERQ &&
        (o->rank < 0 || o->rank > dmin)) {
        return qr_fail(QR_ERR_INPUT, "%s: rank (expected auto or 0..%lld, found %lld)", who,
                       (long long)dmin, (long long)o->rank);
    }
    if (o->n_salient < 0) {
        return qr_fail(QR_ERR_INPUT, "%s: salient channels (expected auto or >= 0, found %lld)",
                       who, (long long)o->n_salient);
    }
    if (!(o->smooth_alpha >= 0.0 && o->smooth_alpha <= 1.0)) {
        return qr_fail(QR_ERR_INPUT, "%s: smoothing alpha (expected 0..1, found %g)", who,
                       o->smooth_alpha);
    }
    if (o->method == QR_METHOD_SRR && !is_srr_base(o->srr_base)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: SRR base scaling (expected lqer, qera-approx or qera-exact, found %s)",
                       who, qr_method_name(o->srr_base));
    }
    if (o->method == QR_METHOD_SRR && (o->srr_k < -1 || o->srr_k > o->rank)) {
        return qr_fail(QR_ERR_INPUT, "%s: SRR preserved rank k (expected -1..%lld, found %lld)",
                       who, (long long)o->rank, (long long)o->srr_k);
    }
    if (!(o->flrq_mem_budget >= 0.0) || o->flrq_sketch_iters < 0 || o->flrq_blc_iters < 0) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: FLRQ options (expected budget >= 0, iterations >= 0, found %g, %d, %d)",
                       who, o->flrq_mem_budget, o->flrq_sketch_iters, o->flrq_blc_iters);
    }
    if (!(o->whiten_lambda0 >= 0.0)) {
        return qr_fail(QR_ERR_INPUT, "%s: whitening damping (expected >= 0, found %g)", who,
                       o->whiten_lambda0);
    }
    if (o->gptq && !(o->wq.gptq_damp > 0.0 && o->wq.gptq_damp <= QR_CHOL_LAMBDA_MAX)) {
        return qr_fail(QR_ERR_INPUT, "%s: GPTQ damping (expected 0 < lambda <= %g, found %g)", who,
                       QR_CHOL_LAMBDA_MAX, o->wq.gptq_damp);
    }
    if (o->bits > 0.0) {
        double b = qr_method_bits_bound(o, d_out, d_in);
        if (b > o->bits * (1.0 + QR_BITS_SLACK)) {
            return qr_fail(QR_ERR_INPUT,
                           "%s: --bits %g (expected at most %g bits per weight, found %.4f with "
                           "rank %lld and %lld salient channels)",
                           who, o->bits, o->bits, b, (long long)o->rank, (long long)o->n_salient);
        }
    }
    return QR_OK;
}

qr_status qr_method_check(const qr_method_opts *o, const char *who, int64_t d_out, int64_t d_in)
{
    qr_method_opts r;
    QR_TRY(qr_method_resolve(o, who, d_out, d_in, &r));
    return check_resolved(&r, who, d_out, d_in);
}

/* The run-time arguments: a weight and statistics of the module's width. */
static qr_status check_inputs(const qr_method_opts *o, const qr_method_impl *impl, const char *who,
                              const double *W, int64_t d_in, const qr_stats *calib)
{
    if (!W) {
        return qr_fail(QR_ERR_INPUT, "%s: no weight given", who);
    }
    if ((impl->needs_stats || o->gptq || o->wq.clip_search) && !calib) {
        return qr_fail(QR_ERR_INPUT, "%s: method %s needs calibration statistics (found none)", who,
                       impl->name);
    }
    if (calib && calib->d != d_in) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: calibration statistics channels (expected %lld, found %lld)", who,
                       (long long)d_in, (long long)calib->d);
    }
    return QR_OK;
}

qr_status qr_method_run(const qr_method_opts *o, const double *W, int64_t d_out, int64_t d_in,
                        const qr_stats *calib, qr_qlayer *out, qr_method_report *rep)
{
    const char *who = o->module_name ? o->module_name : "module";
    qr_status st;
    qr_method_report local;
    qr_method_opts ro; /* o with QR_AUTO values resolved for this module */
    const qr_method_impl *impl = qr_method_lookup(o->method);
    memset(out, 0, sizeof *out);
    if (!rep) {
        rep = &local;
    }
    memset(rep, 0, sizeof *rep);
    rep->srr_k_used = -1;
    rep->srr_k_rule = -1;
    rep->clip_ratio = 1.0;
    rep->calib_out_err = -1.0;
    if (!impl) {
        return qr_fail(QR_ERR_INPUT, "method: unknown method id (expected 0..%d, found %d)",
                       QR_METHOD_COUNT - 1, (int)o->method);
    }
    QR_TRY(qr_method_resolve(o, who, d_out, d_in, &ro));
    QR_TRY(check_resolved(&ro, who, d_out, d_in));
    QR_TRY(check_inputs(&ro, impl, who, W, d_in, calib));
    out->method = o->method;
    out->d_out = d_out;
    out->d_in = d_in;
    st = impl->run(&ro, W, d_out, d_in, calib, out, rep);
    if (st != QR_OK) {
        qr_qlayer_free(out);
        return st;
    }
    out->method = o->method;
    rep->rank_used = out->rank;
    out->bits_per_weight = qr_qlayer_bits_per_weight(out);
    return QR_OK;
}

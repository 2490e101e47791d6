/* plan.c: module costs, the exact linear partition of layers over rank groups, and the plan
 * (mpi/plan.h). All counts are uint64_t with overflow checks, so the partition compares exact
 * integers and is the same on every rank. */
#include "mpi/plan.h"

#include "mpi/grid_module.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"
#include "src/methods/flrq.h"
#include "src/methods/joint.h"
#include "src/llama.h"

/* ---- overflow-checked uint64 arithmetic: a sticky flag instead of a check at every step
 * ---------- */

typedef struct {
    bool overflow;
} u64_ctx;

static uint64_t mul(u64_ctx *c, uint64_t a, uint64_t b)
{
    uint64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) {
        c->overflow = true;
    }
    return r;
}

static uint64_t add(u64_ctx *c, uint64_t a, uint64_t b)
{
    uint64_t r = 0;
    if (__builtin_add_overflow(a, b, &r)) {
        c->overflow = true;
    }
    return r;
}

static uint64_t mul3(u64_ctx *c, uint64_t a, uint64_t b, uint64_t d)
{
    return mul(c, mul(c, a, b), d);
}

int64_t qr_plan_held_tokens(int64_t tokens, int64_t seq_len, double holdout)
{
    int64_t windows = seq_len > 0 ? tokens / seq_len : 0;
    int64_t ho = holdout > 0 ? (int64_t)ceil(holdout * (double)windows) : 0;
    return (ho < windows ? ho : windows - 1 > 0 ? windows - 1 : 0) * seq_len;
}

int64_t qr_plan_metric_rows(int64_t held_tokens, int64_t cap)
{
    return cap > 0 && cap < held_tokens ? cap : held_tokens;
}

void qr_plan_opts_default(qr_plan_opts *o)
{
    memset(o, 0, sizeof *o);
    o->tokens = 2048;
    qr_method_opts_default(&o->method, QR_METHOD_DEFAULT);
    o->seq_len = QR_SEQ_LEN_DEFAULT;
    o->held_tokens = qr_plan_held_tokens(o->tokens, o->seq_len, QR_HOLDOUT_DEFAULT);
    o->metric_rows = qr_plan_metric_rows(o->held_tokens, QR_METRIC_ROWS_DEFAULT);
    o->weight_bytes = 4;
    o->n_ranks = 1;
    o->grid[0] = 1;
    o->grid[1] = 1;
    o->threads_per_rank = 1;
    o->cores_per_node = QR_PLAN_DEFAULT_CORES_PER_NODE;
    o->gflops_per_thread = QR_PLAN_DEFAULT_GFLOPS;
    o->read_gbps = QR_PLAN_DEFAULT_READ_GBPS;
}

/* Thin SVD of an (m, n) matrix with both factors, k = min(m, n): 4 m n k + 22 k³ (Golub and Van
 * Loan, Matrix Computations, 4th ed., table 8.6.1, R-SVD). */
static uint64_t svd_exact_flops(u64_ctx *c, uint64_t m, uint64_t n)
{
    uint64_t k = m < n ? m : n;
    return add(c, mul(c, 4, mul3(c, m, n, k)), mul(c, 22, mul3(c, k, k, k)));
}

/* Sketch width l of a rank-r truncated SVD, or 0 when the exact path runs (the one rule,
 * qr_svd_path). */
static uint64_t sketch_width(const qr_plan_opts *o, uint64_t m, uint64_t n, uint64_t r)
{
    int64_t l = 0;
    qr_svd_path(&o->method.svd, (int64_t)m, (int64_t)n, (int64_t)r, &l);
    return (uint64_t)l;
}

/* Rank-r truncated SVD of an (m, n) matrix. Randomized: 2q + 2 products with A (2 m n l each),
 * 2q + 1 Householder orthonormalisations (4 max(m, n) l² each), the (l, n) SVD and U = Q U_B. */
static uint64_t svd_trunc_flops(u64_ctx *c, const qr_plan_opts *o, uint64_t m, uint64_t n,
                                uint64_t r)
{
    uint64_t l = sketch_width(o, m, n, r), big = m > n ? m : n;
    uint64_t q = (uint64_t)o->method.svd.power_iters, f;
    if (r == 0) {
        return 0;
    }
    if (l == 0) {
        return svd_exact_flops(c, m, n);
    }
    f = mul(c, 2 * q + 2, mul(c, 2, mul3(c, m, n, l)));
    f = add(c, f, mul(c, 2 * q + 1, mul(c, 4, mul3(c, big, l, l))));
    f = add(c, f, svd_exact_flops(c, l, n));
    return add(c, f, mul(c, 2, mul3(c, m, l, r)));
}

/* Whether the module is divided over a grid (mpi/grid_module.c) rather than whole on one rank. */
static bool divided(const qr_plan_opts *o)
{
    return o->grid[0] * o->grid[1] > 1;
}

double qr_plan_cpu_factor(const qr_plan_opts *o)
{
    return pow(QR_PLAN_GRID_EFFICIENCY, -log2((double)(o->grid[0] * o->grid[1])));
}

/* The method's own decomposition flops and its quantization passes (the part of a module's cost
 * that depends on the method; GPTQ, statistics and metrics are added by module_cost). False for an
 * unknown method. */
static bool method_cost(u64_ctx *ctx, const qr_module *m, const qr_plan_opts *o, uint64_t r,
                        uint64_t *dec, uint64_t *quant, bool *whitened)
{
    uint64_t dout = (uint64_t)m->d_out, din = (uint64_t)m->d_in, mn = mul(ctx, dout, din);
    switch (o->method.method) {
    case QR_METHOD_RTN:
        break;
    case QR_METHOD_LQER:
    case QR_METHOD_QERA_APPROX:
        *dec = svd_trunc_flops(ctx, o, dout, din, r);
        break;
    case QR_METHOD_QERA_EXACT:
        /* The SVD of E C through E and C (each of its 2q + 2 products also a triangular product,
         * d_in² l), and the map back R C^-1 (r d_in²); the factor is the input group's. */
        *whitened = true;
        *dec = svd_trunc_flops(ctx, o, dout, din, r);
        *dec = add(ctx, *dec,
                   mul(ctx, 2 * (uint64_t)o->method.svd.power_iters + 2,
                       mul3(ctx, din, din, sketch_width(o, dout, din, r))));
        *dec = add(ctx, *dec, mul3(ctx, r, din, din));
        break;
    case QR_METHOD_ASER:
        /* its own whitening of the smoothed Gram (d³/3), E S (d_out d_in²; divided over a grid:
         * the SVD of E S through E and S, as qera-exact's), the SVD, the map back */
        *dec = mul3(ctx, din, din, din) / 3;
        if (divided(o)) {
            *dec = add(ctx, *dec,
                       mul(ctx, 2 * (uint64_t)o->method.svd.power_iters + 2,
                           mul3(ctx, din, din, sketch_width(o, dout, din, r))));
        } else {
            *dec = add(ctx, *dec, mul3(ctx, dout, din, din));
        }
        *dec = add(ctx, *dec, svd_trunc_flops(ctx, o, dout, din, r));
        *dec = add(ctx, *dec, mul3(ctx, r, din, din));
        break;
    case QR_METHOD_SERQ:
        /* The side matrix is a second quantization of a few columns: at most one more pass. */
        *quant = mul(ctx, *quant, 2);
        break;
    case QR_METHOD_FLRQ: {
        /* r rank-1 sketches of (2 it + 2) products each, then BLC rounds of an SVD
         * and the candidates' quantization (QR_FLRQ_CLIP_STEPS clip ratios, one GPTQ sweep with
         * --gptq) and output error through Z (d_in, p) (2 d_out d_in p each, and the reference);
         * Z = C Omega (d_in² p); its whitening factor is the input group's on a grid, the
         * module's own on one rank (src/methods/flrq.c) */
        uint64_t p = (uint64_t)qr_flrq_error_width(m->d_in);
        uint64_t rmax = (uint64_t)qr_flrq_max_rank(&o->method, m->d_out, m->d_in);
        uint64_t cands =
            (uint64_t)(o->method.flrq_blc_iters + 1) * (o->method.gptq ? 1 : QR_FLRQ_CLIP_STEPS);
        *whitened = divided(o);
        *dec = divided(o) ? 0 : mul3(ctx, din, din, din) / 3;
        /* each sketch component streams the residual 9 times: 2 it + 2 products, the rank-1
         * deflation (read and write) and the residual's max |entry| */
        *dec = add(ctx, *dec,
                   mul(ctx, (2 * (uint64_t)o->method.flrq_sketch_iters + 5) * rmax,
                       mul(ctx, QR_PLAN_FLOPS_PER_STREAMED_DOUBLE, mn)));
        *dec = add(
            ctx, *dec,
            mul(ctx, (uint64_t)o->method.flrq_blc_iters, svd_trunc_flops(ctx, o, dout, din, r)));
        *dec = add(ctx, *dec, mul(ctx, 2 * (cands + 1), mul(ctx, mn, p)));
        *dec = add(ctx, *dec, mul3(ctx, din, din, p));
        *quant = mul(ctx, *quant, cands);
        break;
    }
    case QR_METHOD_SRR:
        /* SVDs of S W, S E_rand (for k*) and the residual, then the base method's own layer to
         * check the split against (its quantization and SVD); W S and the two scaled errors are
         * formed (with the whitening factor triangular products, d_out d_in² each) */
        *dec = mul(ctx, 4, svd_trunc_flops(ctx, o, dout, din, r));
        if (o->method.srr_base == QR_METHOD_QERA_EXACT) {
            *dec = add(ctx, *dec, mul(ctx, 3, mul3(ctx, dout, din, din)));
        }
        *quant = mul(ctx, *quant, 2);
        break;
    case QR_METHOD_JOINT: {
        /* in each of its input spaces (qr_joint_search: all five on small modules, one or two at
         * 7B widths): 2 starts of fits (a GPTQ sweep, a whitened SVD and an objective, d_out d_in²
         * with the triangular factor) while the objective falls, counted at
         * QR_JOINT_FITS_TENTHS tenths of the cap per start; the preserving SVD of the
         * second start; the smoothed spaces' own whitening and, with --gptq, GPTQ factor (made
         * once per space, src/methods/joint.c and mpi/grid_joint.c) */
        int spaces, fits;
        uint64_t f10; /* fits per start counted, in tenths */
        qr_joint_search(o->method.abits, m->d_out, m->d_in, &spaces, &fits);
        spaces = qr_joint_smooths(&o->method, m->d_out, m->d_in) ? spaces : 1;
        f10 = (uint64_t)fits * QR_JOINT_FITS_TENTHS;
        *whitened = true;
        *dec = mul(ctx, 2 * f10 + 10, svd_trunc_flops(ctx, o, dout, din, r)) / 10;
        *dec = add(ctx, *dec, mul(ctx, 4 * f10, mul3(ctx, dout, din, din)) / 10);
        *dec = mul(ctx, (uint64_t)spaces, *dec);
        *dec = add(
            ctx, *dec,
            mul(ctx, (uint64_t)spaces - 1,
                mul3(ctx, din, din, din) / 3 + (o->method.gptq ? mul3(ctx, din, din, din) : 0)));
        *quant = mul(ctx, *quant, 2 * f10 * (uint64_t)spaces) / 10;
        break;
    }
    default:
        return false;
    }
    return true;
}

/* Whether GPTQ's factor is computed once per input group (a divided grid, mpi/grid_stats.c)
 * rather than per module (one rank). */
static bool gptq_factor_per_group(const qr_plan_opts *o)
{
    /* ASER and SERQ factor their own transformed Gram, per module */
    return divided(o) && o->method.method != QR_METHOD_ASER && o->method.method != QR_METHOD_SERQ;
}

static qr_status module_cost(const qr_module *m, int first_of_input, const qr_plan_opts *o,
                             qr_module_cost *c);

/* The module's own rank and salient count (QR_AUTO resolved by the rule quantize runs), then its
 * cost. */
qr_status qr_plan_module_cost(const qr_module *m, int first_of_input, const qr_plan_opts *o,
                              qr_module_cost *c)
{
    qr_plan_opts ro = *o;
    memset(c, 0, sizeof *c);
    QR_TRY(qr_method_resolve(&o->method, m->name, m->d_out, m->d_in, &ro.method));
    return module_cost(m, first_of_input, &ro, c);
}

static qr_status module_cost(const qr_module *m, int first_of_input, const qr_plan_opts *o,
                             qr_module_cost *c)
{
    u64_ctx ctx = {false};
    uint64_t dout = (uint64_t)m->d_out, din = (uint64_t)m->d_in;
    uint64_t n = (uint64_t)(o->tokens - o->held_tokens); /* fitting rows */
    uint64_t r = (uint64_t)o->method.rank, mn = mul(&ctx, dout, din);
    uint64_t kmin = dout < din ? dout : din;
    uint64_t quant = mul(&ctx, QR_PLAN_QUANT_FLOPS_PER_WEIGHT, mn);
    uint64_t dec = 0;
    bool whitened = false;
    bool gptq_per_group = gptq_factor_per_group(o);
    memset(c, 0, sizeof *c);
    if (m->d_out < 1 || m->d_in < 1 || o->tokens < 0 || o->held_tokens < 0 ||
        o->held_tokens > o->tokens || o->method.rank < 0) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: shape or options out of range (d_out %lld, d_in %lld, "
                       "tokens %lld, rank %lld)",
                       m->name, (long long)m->d_out, (long long)m->d_in, (long long)o->tokens,
                       (long long)o->method.rank);
    }
    if (r > kmin) {
        r = kmin;
    }
    if (!method_cost(&ctx, m, o, r, &dec, &quant, &whitened)) {
        return qr_fail(QR_ERR_INPUT, "%s: unknown method %d", m->name, (int)o->method.method);
    }
    if (o->method.gptq) {
        /* the column sweep (each column updates the rest of its rows: d_out d_in²) and the
         * Hessian's damped Cholesky, inverse and its factor (d_in³): per module on one rank, once
         * per input group on a grid (mpi/grid_stats.c) */
        dec = add(&ctx, dec, mul3(&ctx, dout, din, din));
        if (!gptq_per_group) {
            dec = add(&ctx, dec, mul3(&ctx, din, din, din));
        }
    }
    if (first_of_input) {
        /* XᵀX (dsyrk: n d_in²), the channel sums; the whitening factor once per input group */
        c->stats_flops = add(&ctx, mul3(&ctx, n, din, din), mul3(&ctx, 4, n, din));
        if (whitened ||
            (o->method.method == QR_METHOD_SRR && o->method.srr_base == QR_METHOD_QERA_EXACT)) {
            c->stats_flops = add(&ctx, c->stats_flops, mul3(&ctx, din, din, din) / 3);
        }
        if (o->method.gptq && gptq_per_group) {
            c->stats_flops = add(&ctx, c->stats_flops, mul3(&ctx, din, din, din));
        }
        c->bytes_read = mul3(&ctx, n, din, 4);
    }
    /* the metrics (src/metrics.c qr_metrics_fast, mpi/grid_metrics.c) on the sample of nm rows:
     * Y = X Wᵀ once and the float, A8, A4 and grouped-A4 outputs (quantize's agroup; 2 nm d_out
     * d_in each, float32 products, which run at about twice dgemm's rate: counted as half), and
     * the weight in its transformed space (d_out d_in r) */
    c->metrics_flops = add(&ctx, mul(&ctx, 5, mul3(&ctx, (uint64_t)o->metric_rows, dout, din)),
                           mul3(&ctx, dout, din, r));
    if (!(o->method.method == QR_METHOD_RTN && !o->method.gptq)) {
        /* the RTN comparison (jobs/quantize_rtn.c): RTN's quantization and its output at the
         * compared width, on the same Y */
        c->metrics_flops = add(&ctx, c->metrics_flops,
                               add(&ctx, mul3(&ctx, (uint64_t)o->metric_rows, dout, din),
                                   mul(&ctx, QR_PLAN_QUANT_FLOPS_PER_WEIGHT, mn)));
    }
    c->decomp_flops = dec;
    c->quant_flops = quant;
    /* the time and balance weight: the Gram's dsyrk counted at QR_PLAN_GRAM_TENTHS of its flops */
    c->flops = first_of_input ? mul3(&ctx, n, din, din) : 0;
    c->flops = c->stats_flops - c->flops + mul(&ctx, c->flops, QR_PLAN_GRAM_TENTHS) / 10;
    c->flops = add(&ctx, add(&ctx, add(&ctx, c->flops, dec), quant), c->metrics_flops);
    c->bytes_read = add(&ctx, c->bytes_read, mul(&ctx, mn, (uint64_t)o->weight_bytes));
    qr_plan_module_memory(m, o, &c->mem);
    if (ctx.overflow) {
        memset(c, 0, sizeof *c);
        return qr_fail(QR_ERR_INPUT,
                       "%s: estimated cost overflows 64 bits (d_out %lld, d_in %lld, "
                       "tokens %lld)",
                       m->name, (long long)m->d_out, (long long)m->d_in, (long long)o->tokens);
    }
    return QR_OK;
}

/* ---- the linear partition -----------------------------------------------------------------------
 */

/* Slices the left-to-right max-fill greedy needs under bound b (every item <= b). */
static int64_t greedy_parts(const uint64_t *cost, int64_t n, uint64_t b)
{
    int64_t parts = 1;
    uint64_t sum = 0;
    for (int64_t i = 0; i < n; i++) {
        if (cost[i] > b - sum) {
            parts++;
            sum = 0;
        }
        sum += cost[i];
    }
    return parts;
}

/* The least bound under which cost[0..n-1] fits in k slices: the optimum lies in [max item, total]
 * and feasibility is monotone in the bound, so a binary search over integers finds it exactly. The
 * caller has checked that the total fits in 64 bits. */
static uint64_t optimum(const uint64_t *cost, int64_t n, int64_t k)
{
    uint64_t lo = 0, hi = 0;
    for (int64_t i = 0; i < n; i++) {
        lo = cost[i] > lo ? cost[i] : lo;
        hi += cost[i];
    }
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (greedy_parts(cost, n, mid) <= k) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return lo;
}

qr_status qr_linear_partition(const uint64_t *cost, int64_t n, int64_t k, int64_t *bounds,
                              uint64_t *max_sum)
{
    u64_ctx ctx = {false};
    uint64_t total = 0, best;
    int64_t pos = 0;
    if (n < 0 || k < 1) {
        return qr_fail(QR_ERR_INPUT,
                       "linear partition: sizes (expected items >= 0 and slices >= 1, found %lld "
                       "items, %lld slices)",
                       (long long)n, (long long)k);
    }
    for (int64_t i = 0; i < n; i++) {
        total = add(&ctx, total, cost[i]);
    }
    if (ctx.overflow) {
        return qr_fail(QR_ERR_INPUT, "linear partition: total cost of %lld items overflows 64 bits",
                       (long long)n);
    }
    best = optimum(cost, n, k);
    for (int64_t g = 0; g < k; g++) {
        /* The rest is cut under its own optimum, which is never above the global one, so among
         * the optimal partitions this picks the one whose later slices are as even as possible. */
        uint64_t bound = pos < n ? optimum(cost + pos, n - pos, k - g) : 0, sum = 0;
        bounds[g] = pos;
        if (pos < n) {
            sum = cost[pos++];
        }
        /* Take more while under the bound and while every later slice can still get an item. */
        while (pos < n && cost[pos] <= bound - sum && n - (pos + 1) >= k - 1 - g) {
            sum += cost[pos++];
        }
    }
    bounds[k] = n;
    if (pos != n) {
        return qr_fail(QR_ERR_INTERNAL,
                       "linear partition: construction ended at item %lld of %lld under bound %llu",
                       (long long)pos, (long long)n, (unsigned long long)best);
    }
    *max_sum = best;
    return QR_OK;
}

/* ---- the plan -----------------------------------------------------------------------------------
 */

static qr_status check_opts(const qr_plan_opts *o)
{
    int64_t per = (int64_t)o->grid[0] * (int64_t)o->grid[1];
    if (o->grid[0] < 1 || o->grid[1] < 1) {
        return qr_fail(QR_ERR_INPUT, "--grid: expected P >= 1 and Q >= 1 (found %dx%d)", o->grid[0],
                       o->grid[1]);
    }
    if (o->n_ranks < 1 || o->n_ranks % per != 0) {
        return qr_fail(QR_ERR_INPUT,
                       "--ranks %d: must be a positive multiple of P*Q = %lld for --grid %dx%d "
                       "(expected a multiple of %lld, found %d)",
                       o->n_ranks, (long long)per, o->grid[0], o->grid[1], (long long)per,
                       o->n_ranks);
    }
    if (o->tokens < 1 || o->method.rank < QR_AUTO || o->method.svd.oversample < 0 ||
        o->method.svd.power_iters < 0 || o->weight_bytes < 1 || o->threads_per_rank < 1 ||
        o->cores_per_node < 1 || !(o->gflops_per_thread > 0.0) || !(o->read_gbps > 0.0) ||
        o->method.method < 0 || o->method.method >= QR_METHOD_COUNT) {
        return qr_fail(QR_ERR_INPUT,
                       "plan options out of range (expected tokens >= 1, rank >= 0, threads >= 1, "
                       "positive rates; found tokens %lld, rank %lld, threads %d, %g GFLOP/s, %g "
                       "GB/s)",
                       (long long)o->tokens, (long long)o->method.rank, o->threads_per_rank,
                       o->gflops_per_thread, o->read_gbps);
    }
    return QR_OK;
}

qr_status qr_plan_build(const qr_model_config *cfg, const qr_plan_opts *o, qr_plan **out)
{
    qr_status st = QR_OK;
    qr_plan *p = NULL;
    int64_t *bounds = NULL; /* (n_groups + 1) layer cuts */
    u64_ctx ctx = {false};
    double group_rate;
    int per;
    *out = NULL;
    QR_TRY(check_opts(o));
    per = o->grid[0] * o->grid[1];
    QR_CHECK(qr_calloc(&p, 1, sizeof *p, "plan"));
    p->opts = *o;
    p->n_groups = o->n_ranks / per;
    QR_CHECK(qr_modules_enumerate(cfg, &p->modules, &p->n_modules));
    p->n_layers = cfg->n_layers;
    QR_CHECK(qr_calloc(&p->costs, p->n_modules, sizeof *p->costs, "plan module costs"));
    QR_CHECK(qr_calloc(&p->layer_cost, (size_t)p->n_layers, sizeof *p->layer_cost, "layer costs"));
    QR_CHECK(qr_calloc(&p->slices, (size_t)p->n_groups, sizeof *p->slices, "plan slices"));
    QR_CHECK(qr_calloc(&bounds, (size_t)p->n_groups + 1, sizeof *bounds, "plan cuts"));
    /* A byte read weighs as many flops as the group computes while one byte arrives. */
    group_rate = o->gflops_per_thread * 1e9 * (double)o->threads_per_rank * (double)per;
    p->flops_per_byte = (uint64_t)llround(group_rate / (o->read_gbps * 1e9));
    p->flops_per_byte = p->flops_per_byte > 0 ? p->flops_per_byte : 1;
    for (size_t i = 0; i < p->n_modules; i++) {
        const qr_module *m = &p->modules[i];
        int first = 1;
        for (size_t j = i - (size_t)m->kind; j < i; j++) {
            first = first && p->modules[j].input != m->input;
        }
        /* Every option a module would reject is refused here, before any work. */
        QR_CHECK(qr_method_check(&o->method, m->name, m->d_out, m->d_in));
        QR_CHECK(qr_plan_module_cost(m, first, o, &p->costs[i]));
        p->layer_cost[m->layer] =
            add(&ctx, p->layer_cost[m->layer],
                add(&ctx, p->costs[i].flops, mul(&ctx, p->costs[i].bytes_read, p->flops_per_byte)));
    }
    for (int64_t l = 0; l < p->n_layers; l++) {
        p->total_cost = add(&ctx, p->total_cost, p->layer_cost[l]);
    }
    if (ctx.overflow) {
        st = qr_fail(QR_ERR_INPUT, "plan: total cost of %lld layers overflows 64 bits",
                     (long long)p->n_layers);
        goto done;
    }
    QR_CHECK(qr_linear_partition(p->layer_cost, p->n_layers, p->n_groups, bounds, &p->max_cost));
    for (int g = 0; g < p->n_groups; g++) {
        qr_plan_slice *s = &p->slices[g];
        s->group = g;
        s->rank_begin = g * per;
        s->rank_count = per;
        s->layer_begin = bounds[g];
        s->layer_end = bounds[g + 1];
        s->module_begin = s->layer_begin * QR_MOD_KIND_COUNT;
        s->module_end = s->layer_end * QR_MOD_KIND_COUNT;
        for (int64_t i = s->module_begin; i < s->module_end; i++) {
            const qr_module_cost *c = &p->costs[i];
            s->flops += c->flops;
            s->bytes_read += c->bytes_read;
            if (c->mem.rank_bytes + QR_PLAN_BASE_BYTES > s->mem_per_rank) {
                s->mem_per_rank = c->mem.rank_bytes + QR_PLAN_BASE_BYTES;
            }
            if (c->mem.root_bytes > s->mem_root_extra) {
                s->mem_root_extra = c->mem.root_bytes;
            }
        }
        for (int64_t l = s->layer_begin; l < s->layer_end; l++) {
            s->cost += p->layer_cost[l];
        }
        s->seconds = (double)s->cost * qr_plan_cpu_factor(o) / group_rate;
    }
    p->imbalance =
        p->total_cost > 0 ? (double)p->max_cost * (double)p->n_groups / (double)p->total_cost : 1.0;
    *out = p;
    p = NULL;
done:
    free(bounds);
    qr_plan_free(&p);
    return st;
}

void qr_plan_free(qr_plan **p)
{
    if (!p || !*p) {
        return;
    }
    free((*p)->modules);
    free((*p)->costs);
    free((*p)->layer_cost);
    free((*p)->slices);
    free(*p);
    *p = NULL;
}

int qr_plan_group_of_layer(const qr_plan *p, int64_t layer)
{
    for (int g = 0; g < p->n_groups; g++) {
        if (layer >= p->slices[g].layer_begin && layer < p->slices[g].layer_end) {
            return g;
        }
    }
    return -1;
}

/* ---- capture ------------------------------------------------------------------------------- */

qr_status qr_plan_capture(const qr_plan *p, const qr_model_config *c, const qr_capture_plan_opts *o,
                          qr_capture_est *out)
{
    int gsize = p->opts.grid[0] * p->opts.grid[1];
    int64_t L = o->seq_len, q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    int64_t lane_windows;
    double rate = p->opts.gflops_per_thread * 1e9 * p->opts.threads_per_rank;
    double slowest = 0;
    u64_ctx ctx = {false};
    memset(out, 0, sizeof *out);
    if (L < 2 || o->micro_batch < 1 || (o->act_bytes != 2 && o->act_bytes != 4) ||
        p->opts.tokens < L) {
        return qr_fail(
            QR_ERR_INPUT,
            "capture plan: --seq-len %lld, --micro-batch %lld with %lld tokens (expected "
            "2 <= seq_len <= tokens and a micro-batch of at least 1)",
            (long long)L, (long long)o->micro_batch, (long long)p->opts.tokens);
    }
    out->windows = p->opts.tokens / L;
    lane_windows = (out->windows + gsize - 1) / gsize;
    out->micro_batches = (lane_windows + o->micro_batch - 1) / o->micro_batch;
    out->n_groups = p->n_groups;
    QR_TRY(qr_calloc(&out->groups, (size_t)p->n_groups, sizeof *out->groups, "capture plan"));
    for (int g = 0; g < p->n_groups; g++) {
        const qr_plan_slice *s = &p->slices[g];
        qr_capture_slice_est *e = &out->groups[g];
        uint64_t floats = 0, layers = (uint64_t)(s->layer_end - s->layer_begin), per_token;
        uint64_t lin =
            (uint64_t)(2 * q_dim * c->dim + 2 * kv_dim * c->dim + 3 * c->hidden_dim * c->dim);
        uint64_t tokens = (uint64_t)(lane_windows * L), state, width;
        if (layers == 0) {
            continue;
        }
        out->active_groups++;
        QR_TRY(qr_llama_slice_floats(c, s->layer_begin, s->layer_end, g == 0, false, &floats));
        e->weight_bytes = mul(&ctx, floats, 4);
        e->mapped_bytes = mul(&ctx, floats, (uint64_t)p->opts.weight_bytes);
        /* x, xb, tmp (L dim), q, att (L q_dim), gate, up (L hidden), scores (64 L), KV cache
         * (2 layers L kv_dim), RoPE tables (L head_dim) */
        state = add(&ctx,
                    mul(&ctx, (uint64_t)L,
                        (uint64_t)(3 * c->dim + 2 * q_dim + 2 * c->hidden_dim + 64 + c->head_dim)),
                    mul3(&ctx, 2 * layers, (uint64_t)L, (uint64_t)kv_dim));
        e->state_bytes = mul(&ctx, state, 4);
        e->batch_bytes =
            mul3(&ctx, 2 * (uint64_t)o->micro_batch, (uint64_t)L, (uint64_t)c->dim * 4);
        e->mem_per_rank = add(&ctx, add(&ctx, e->weight_bytes, e->state_bytes), e->batch_bytes);
        /* per token and layer: 2 flops per weight of the linear modules, and causal attention
         * (scores and weighted values) 2 q_dim (L + 1) on average over the window */
        per_token = add(&ctx, mul(&ctx, 2, lin), mul(&ctx, 2 * (uint64_t)q_dim, (uint64_t)L + 1));
        e->flops = mul3(&ctx, per_token, layers, tokens);
        width = (uint64_t)(2 * c->dim + q_dim + c->hidden_dim);
        e->bytes_written =
            add(&ctx, mul3(&ctx, tokens, layers, mul(&ctx, width, (uint64_t)o->act_bytes)),
                mul(&ctx, tokens, 4));
        e->seconds = (double)e->flops / rate + (double)e->bytes_written / (p->opts.read_gbps * 1e9);
        slowest = e->seconds > slowest ? e->seconds : slowest;
        out->max_mem_per_rank =
            e->mem_per_rank > out->max_mem_per_rank ? e->mem_per_rank : out->max_mem_per_rank;
    }
    if (ctx.overflow) {
        qr_capture_est_free(out);
        return qr_fail(QR_ERR_INPUT, "capture plan: a size overflows 64 bits");
    }
    /* every group works on its own micro-batch once the pipeline is full; the first batch reaches
     * the last group after G - 1 batch times and the last leaves group 0 G - 1 batch times early */
    out->seconds = slowest * (double)(out->micro_batches + out->active_groups - 1) /
                   (double)out->micro_batches;
    out->fill_drain_seconds = out->seconds - slowest;
    return QR_OK;
}

void qr_capture_est_free(qr_capture_est *e)
{
    if (e) {
        free(e->groups);
        e->groups = NULL;
    }
}

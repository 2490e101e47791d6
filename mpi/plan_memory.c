/* plan_memory.c: the plan's memory per rank of one module, from the buffers the code allocates on
 * each path (mpi/plan.h). Each term names the buffer it stands for; when the code changes what it
 * allocates, this table changes with it (tests/bench/grid_memory.sh measures both side by side). */
#include "mpi/plan.h"

#include <string.h>

#include "mpi/grid_module.h"
#include "mpi/pdla.h"
#include "src/methods/flrq.h"
#include "src/methods/joint.h"
#include "src/quant.h"

/* The largest local extent of n rows (or columns) in blocks of nb over p processes (numroc of
 * process 0). */
static uint64_t lmax(uint64_t n, uint64_t nb, uint64_t p)
{
    uint64_t blocks = (n + nb - 1) / nb;
    uint64_t mine = (blocks + p - 1) / p * nb;
    return mine < n ? mine : n;
}

static uint64_t umax(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* Sketch width of the module's SVD (0: none); the exact path holds min(m, n) columns. */
static uint64_t svd_width(const qr_plan_opts *o, uint64_t m, uint64_t n, uint64_t r)
{
    int64_t l = 0;
    if (r == 0) {
        return 0;
    }
    return qr_svd_path(&o->method.svd, (int64_t)m, (int64_t)n, (int64_t)r, &l) == QR_SVD_EXACT
               ? (m < n ? m : n)
               : (uint64_t)l;
}

static bool has_correction(qr_method_id m)
{
    return m != QR_METHOD_RTN && m != QR_METHOD_SERQ;
}

/* One process holds the whole module (1x1): jobs/quantize_run.c input_stats and run_module,
 * src/methods, src/metrics.c. */
static void memory_whole(const qr_module *mod, const qr_plan_opts *o, qr_module_memory *out)
{
    const qr_method_opts *mo = &o->method;
    uint64_t m = (uint64_t)mod->d_out, n = (uint64_t)mod->d_in, mn = m * n;
    uint64_t nh = (uint64_t)o->metric_rows, s = (uint64_t)o->seq_len;
    uint64_t r = has_correction(mo->method) ? (uint64_t)mo->rank : 0, l = svd_width(o, m, n, r);
    uint64_t input, svd, method, metrics, stats_pass;
    bool whiten = mo->method == QR_METHOD_QERA_EXACT ||
                  (mo->method == QR_METHOD_SRR && mo->srr_base == QR_METHOD_QERA_EXACT);
    /* qr_stats (G, five vectors), the held-out rows, the cached whitening factor */
    input = 8 * (n * n + 5 * n) + 4 * nh * n + (whiten ? 8 * n * n : 0);
    /* while streaming: one window (float) and the float64 chunk qr_stats_add copies */
    stats_pass = 4 * s * n + 8 * (s < QR_STATS_CHUNK_ROWS ? s : QR_STATS_CHUNK_ROWS) * n;
    /* the SVD: sketch, test matrix, projection, U_B, Vt_B; L and R */
    svd = l ? 8 * (m * l + 2 * n * l + l * l + l * n) + 8 * r * (m + n) : 0;
    /* the method after W (8 mn): E, the packed main matrix, the SVD (a diagonal scaling forms
     * E S, SRR adds the scaled weight and its random probe, GPTQ its Hessian and transposed W) */
    method = mn / 2 + 8 * mn + svd;
    if (mo->method == QR_METHOD_LQER || mo->method == QR_METHOD_QERA_APPROX ||
        (mo->method == QR_METHOD_SRR && !whiten)) {
        method += 8 * mn;
    }
    if (mo->method == QR_METHOD_SRR) {
        method += 16 * mn;
    } else if (mo->method == QR_METHOD_ASER || mo->method == QR_METHOD_FLRQ) {
        method += 8 * mn + 16 * n * n;
    } else if (mo->method == QR_METHOD_JOINT) {
        /* the fit's target, its own whitening factor; a smoothed space's weight, Gram and factor */
        method += 8 * mn + 8 * n * n +
                  (qr_joint_smooths(mo, (int64_t)m, (int64_t)n) ? 8 * mn + 16 * n * n : 0);
    } else if (mo->method == QR_METHOD_SERQ) {
        /* (the 8 mn above is its flattened weight, it forms no E) its salient columns (m, k), and
         * the transformed Gram only when GPTQ or the clip search reads it */
        uint64_t k = mo->n_salient > 0 ? (uint64_t)mo->n_salient : 0;
        method += 8 * m * (k < n ? k : n) + (mo->gptq || mo->wq.clip_search ? 8 * n * n : 0);
    }
    if (mo->gptq) {
        method += 8 * (n * n + mn);
    }
    /* the metrics (qr_metrics_fast): the float32 Y, the module's weight in float64 and float32,
     * the transformed rows and the difference Z (float32) */
    metrics = mn / 2 + 12 * mn + 4 * nh * n + 8 * nh * m;
    /* the RTN comparison (jobs/quantize_rtn.c): the same metrics on RTN's module while the
     * method's packed main matrix is kept */
    if (!(mo->method == QR_METHOD_RTN && !mo->gptq)) {
        metrics += mn / 2;
    }
    out->rank_bytes = input + umax(stats_pass, 8 * mn + umax(method, metrics));
    out->root_bytes = 0;
}

/* The module divided over a P x Q grid: jobs/quantize_grid.c and mpi/grid_module.c. */
static void memory_divided(const qr_module *mod, const qr_plan_opts *o, qr_module_memory *out)
{
    const qr_method_opts *mo = &o->method;
    uint64_t P = (uint64_t)o->grid[0], Q = (uint64_t)o->grid[1];
    uint64_t nb = (uint64_t)qr_grid_block_for_group(mo->wq.group, o->grid[1]);
    uint64_t m = (uint64_t)mod->d_out, n = (uint64_t)mod->d_in, mn = m * n;
    uint64_t nh = (uint64_t)o->metric_rows, s = (uint64_t)o->seq_len;
    uint64_t r = mo->method == QR_METHOD_RTN ? 0 : (uint64_t)mo->rank, l = svd_width(o, m, n, r);
    uint64_t mloc = lmax(m, nb, P), nloc = lmax(n, nb, Q), nrow = lmax(n, nb, P);
    uint64_t wloc = 8 * mloc * nloc; /* one distributed m x n matrix */
    uint64_t gloc = 8 * nrow * nloc; /* one distributed n x n matrix */
    uint64_t fit = (uint64_t)(o->tokens - o->held_tokens) / (s ? s : 1) * s, per = P * Q;
    uint64_t share = (fit + per - 1) / per, round, input, stats, svd, module, metrics;
    uint64_t panel = (uint64_t)qr_grid_gram_panel((int64_t)n, (int)nb, (int)(P * Q));
    /* the correction's SVD through a whitening factor (JOINT's in every space) */
    bool whiten =
        (r > 0 && (mo->method == QR_METHOD_QERA_EXACT ||
                   (mo->method == QR_METHOD_SRR && mo->srr_base == QR_METHOD_QERA_EXACT))) ||
        mo->method == QR_METHOD_JOINT;
    /* the input group's whitening factor (FLRQ measures its output error through it) */
    bool factor = whiten || mo->method == QR_METHOD_FLRQ;
    /* GPTQ's factor once per input group (not for ASER and SERQ: theirs is per module); G or a
     * factor of it kept after the statistics (qr_dstats_finish, qr_dstats_keeps_gram) */
    bool gptq_group = mo->gptq && mo->method != QR_METHOD_ASER && mo->method != QR_METHOD_SERQ;
    bool gram = qr_dstats_keeps_gram(mo, (int64_t)m, (int64_t)n);
    bool keep = factor || gptq_group || gram;
    /* qr_dstats (G or its factors, six vectors), the held-out sample (whole, float32) */
    input = (keep ? gloc : 0) + 8 * 6 * n + 4 * nh * n + (gptq_group && factor ? gloc : 0) +
            (factor && gram ? gloc : 0);
    /* streaming: a round of rows (float and float64) and two Gram panels; the damped
     * factorization keeps a copy of its input */
    round = QR_GRID_STATS_ROUND_BYTES / (n * 12 + 1);
    round = umax(1, round < share ? round : share);
    stats = 12 * round * n + 16 * n * panel + (factor || gptq_group ? gloc : 0) + (keep ? 0 : gloc);
    /* the distributed SVD (sketch, test matrix, projection, small factors and staging on every
     * rank; whitened: the thin products' result and its rows), L and R */
    svd = l ? 8 * (lmax(m, nb, P) * lmax(l, nb, Q) + lmax(n, nb, P) * lmax(l, nb, Q) +
                   lmax(l, nb, P) * nloc + umax(m, n) * l + l * l + l * n + r * (m + n) +
                   (whiten ? umax(m, n) * l + nrow * l : 0))
            : 0;
    /* W, E, W_eff; while quantizing the local codes and a chunk of staging; then the SVD;
     * SRR adds the scaled weight and, while probing k*, its random matrix */
    module = 3 * wloc + umax(mloc * nloc / 2 + 16 * QR_GRID_QUANT_CHUNK, svd) + 8 * nb * n;
    if (mo->gptq) { /* its sweep: the rows transposed (then dequantized), one panel */
        module = umax(module,
                      3 * wloc + mloc * nloc / 2 + 8 * mloc * n + 8 * (uint64_t)QR_GPTQ_BLOCK * n);
    }
    if (mo->method == QR_METHOD_SRR) { /* and W S's product panels (mpi/pdla.c) */
        module += 2 * wloc + (whiten ? 8 * QR_PDLA_SUMMA_WIDTH * (mloc + nloc) : 0);
    } else if (mo->method == QR_METHOD_ASER) {
        /* G~ (a copy of the input group's G) and, with GPTQ, its own factor of G~ throughout; the
         * smoothed weight W~ until the error is formed. Phases: the damped factorization of G~
         * (which keeps a copy), quantizing W~ without its salient columns (W, W~, W_eff, E), the
         * SVD (W, W_eff, E) */
        uint64_t f = mo->gptq ? gloc : 0;
        uint64_t quant = mo->gptq ? mloc * nloc / 2 + 8 * mloc * n + 8 * (uint64_t)QR_GPTQ_BLOCK * n
                                  : mloc * nloc / 2 + 16 * nb * nloc;
        module = umax(3 * wloc + 2 * gloc + f, 4 * wloc + gloc + f + quant);
        module = umax(module, 3 * wloc + gloc + f + svd) + 8 * nb * n;
    } else if (mo->method == QR_METHOD_SERQ) {
        /* the side matrix's columns (mloc, k); with GPTQ the permuted Gram, its factor's copy and
         * a row block of it */
        uint64_t k = mo->n_salient > 0 ? (uint64_t)mo->n_salient : 0;
        module += 8 * mloc * (k < n ? k : n) + (mo->gptq ? 2 * gloc + 8 * nb * n : 0);
    } else if (mo->method == QR_METHOD_FLRQ) {
        /* (mpi/grid_flrq.c) the components (m, r_max), (r_max, n) whole while the sketches deflate
         * a scaled copy of W; the error factor's rows at the local columns and a product's
         * (mloc, p); then the alternation: W, W - L R, L R, the candidate (in W_eff), three sets
         * of local codes, two low-rank pairs, and the quantizer's staging or the refit's SVD */
        uint64_t rmax = (uint64_t)qr_flrq_max_rank(mo, (int64_t)m, (int64_t)n);
        uint64_t p = (uint64_t)qr_flrq_error_width((int64_t)n);
        uint64_t zf = 8 * p * (nloc + mloc) + 8 * p * n + 8 * lmax(p, nb, P) * nloc;
        uint64_t sketch = 3 * wloc + 8 * rmax * (m + n) + 16 * (m + n);
        uint64_t codes = 3 * (mloc * nloc / 2 + 4 * mloc * ((nloc + nb - 1) / nb + 1));
        module = umax(2 * wloc + zf, sketch + 8 * p * (nloc + mloc));
        module = umax(module, 4 * wloc + 8 * p * (nloc + mloc) + codes + 16 * r * (m + n) +
                                  umax(16 * QR_GRID_QUANT_CHUNK, svd));
    } else if (mo->method == QR_METHOD_JOINT) {
        /* (mpi/grid_joint.c) W, W_eff, the fit's target and error; a smoothed space adds its
         * weight, its Gram's Cholesky factor and, with GPTQ, its factor of that Gram; three pairs
         * (local codes, L and R) and the preserving start's pair; the GPTQ sweep or the SVD */
        uint64_t sweep =
            mo->gptq ? 8 * mloc * n + 8 * (uint64_t)QR_GPTQ_BLOCK * n : 16 * QR_GRID_QUANT_CHUNK;
        uint64_t pairs =
            4 * (mloc * nloc / 2 + 4 * mloc * ((nloc + nb - 1) / nb + 1)) + 32 * r * (m + n);
        module = 4 * wloc + pairs + umax(sweep, svd) + 8 * nb * n;
        if (qr_joint_smooths(mo, (int64_t)m, (int64_t)n)) {
            module += wloc + (mo->gptq ? 2 : 1) * gloc;
        }
    }
    /* the metrics (mpi/grid_metrics.c): W, W_eff and its float32 copy, the local Y and Z, the
     * transformed rows whole and their local columns (float32) */
    metrics = 2 * wloc + wloc / 2 + 4 * nh * (n + nloc + 2 * mloc);
    out->rank_bytes = input + umax(stats, umax(module, metrics));
    /* the root gathers the INT4 codes and scales to write the part */
    out->root_bytes = mn / 2 + 4 * m * ((n + nb - 1) / nb) + mloc * nloc * 2;
}

void qr_plan_module_memory(const qr_module *m, const qr_plan_opts *opts, qr_module_memory *out)
{
    qr_plan_opts lo = *opts; /* the module's own rank (QR_AUTO resolved, as quantize runs it) and
                                the grid as the group lays it out */
    const qr_plan_opts *o = &lo;
    memset(out, 0, sizeof *out);
    if (qr_method_resolve(&opts->method, m->name, m->d_out, m->d_in, &lo.method) != QR_OK) {
        lo.method.rank = 0; /* a budget the module cannot meet: the plan refuses it anyway */
    }
    (void)qr_grid_layout(&opts->method, opts->grid, lo.grid);
    if (lo.grid[0] * lo.grid[1] > 1) {
        memory_divided(m, o, out);
    } else {
        memory_whole(m, o, out);
    }
}

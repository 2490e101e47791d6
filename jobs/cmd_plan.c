/* cmd_plan.c: `qrecon plan`: the work plan of a distributed quantize job for a model: the layer
 * slice of each rank group, its estimated flops, time and memory per rank, the imbalance, and
 * advice on ranks per node x threads per rank. Computed the same on every rank; rank 0 prints it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/model.h"
#include "jobs/method_options.h"
#include "mpi/comm.h"
#include "mpi/plan.h"
#include "src/dtype.h"
#include "src/metrics.h"
#include "src/log.h"

typedef struct {
    const char *model;
    qr_plan_opts plan;
    int64_t ranks, threads, cores;
    double holdout, mem_gib;
    int64_t metric_rows;
    int64_t micro_batch; /* capture's, for its estimate over the same slices */
    bool json;
} plan_cli;

static const qr_cmd_doc doc = {
    "plan",
    "qrecon plan --model DIR --ranks N [--grid PxQ] [--tokens T] [--seq-len L] [method options]\n"
    "                   [--threads-per-rank K] [--cores-per-node C] [--mem-per-node GIB]\n"
    "                   [--gflops G] [--micro-batch B] [--json]",
    "Print how a quantize job with N ranks splits the model: layers are cut into contiguous\n"
    "slices, one per rank group of P*Q ranks, balanced exactly by estimated cost (flops of the\n"
    "statistics, decompositions and metrics, plus bytes read). N must be divisible by P*Q. The\n"
    "method options are quantize's, with the same defaults: the same options plan the same\n"
    "computation. Memory per rank follows the buffers quantize allocates on the path it takes\n"
    "(whole on one rank at 1x1, divided over the grid otherwise) plus what a rank holds before\n"
    "its first module; with --mem-per-node the plan warns when a node would not hold its ranks\n"
    "and names the smallest grid that fits.\n\n"
    "A second table estimates `qrecon capture` with the same ranks and --grid over the same\n"
    "slices (T tokens in windows of --seq-len): memory and time per rank, and the pipeline's\n"
    "fill and drain.\n",
    NULL,
};

#define CLI(f) offsetof(plan_cli, f)
static const qr_opt plan_rows[] = {
    {"model", QR_OPT_STR, CLI(model), "DIR", "Hugging Face folder or llama2.c checkpoint",
     .required = true},
    {"ranks", QR_OPT_INT, CLI(ranks), "N", "MPI ranks of the job", "the ranks of this run",
     .imin = 1, .imax = 1 << 24},
    {"grid", QR_OPT_CUSTOM, CLI(plan.grid), "PxQ", "ranks per group as a BLACS grid", "1x1",
     .parse = qr_opt_parse_grid},
    {"tokens", QR_OPT_INT, CLI(plan.tokens), "T", "calibration tokens", .imin = 1,
     .imax = INT64_C(1) << 40},
    {"seq-len", QR_OPT_INT, CLI(plan.seq_len), "L", "calibration window length (capture's)",
     .imin = 2, .imax = 1 << 20},
    {"holdout", QR_OPT_DOUBLE, CLI(holdout), "F", "fraction of windows held out (quantize's)",
     .dmin = 0.0, .dmax = 0.9},
    {"metric-rows", QR_OPT_INT, CLI(metric_rows), "N",
     "held-out rows the metrics use (quantize's; 0: all)", .imin = 0, .imax = INT64_C(1) << 40},
    {"threads-per-rank", QR_OPT_INT, CLI(threads), "K", "BLAS threads per rank", .imin = 1,
     .imax = 4096},
    {"cores-per-node", QR_OPT_INT, CLI(cores), "C", "cores of one node, for the advice", .imin = 1,
     .imax = 1 << 20},
    {"mem-per-node", QR_OPT_DOUBLE, CLI(mem_gib), "GIB",
     "memory of one node in GiB: warn when its ranks exceed it, name the smallest grid that fits",
     "unknown", .dmin = 0.0, .dmax = 1e9},
    {"gflops", QR_OPT_DOUBLE, CLI(plan.gflops_per_thread), "G",
     "flop rate of one BLAS thread for the time estimate", .dmin = 1e-6, .dmax = 1e9},
    {"micro-batch", QR_OPT_INT, CLI(micro_batch), "B",
     "capture's windows per message, for its estimate", .imin = 1, .imax = INT32_MAX},
    {"json", QR_OPT_FLAG, CLI(json), NULL, "print the plan as JSON"},
};
#undef CLI

static void init_cli(void *ctx, qr_method_id m)
{
    plan_cli *c = ctx;
    memset(c, 0, sizeof *c);
    qr_plan_opts_default(&c->plan);
    qr_method_opts_default(&c->plan.method, m);
    c->ranks = qr_mpi_size(MPI_COMM_WORLD);
    c->threads = c->plan.threads_per_rank;
    c->cores = c->plan.cores_per_node;
    c->holdout = QR_HOLDOUT_DEFAULT;
    c->metric_rows = QR_METRIC_ROWS_DEFAULT;
    c->micro_batch = 1; /* capture's default */
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

/* The largest per-rank memory (including the root's staging) over all groups. */
static uint64_t peak_rank_memory(const qr_plan *p)
{
    uint64_t peak = 0;
    for (int g = 0; g < p->n_groups; g++) {
        uint64_t m = p->slices[g].mem_per_rank + p->slices[g].mem_root_extra;
        peak = m > peak ? m : peak;
    }
    return peak;
}

/* Per-rank memory of the plan's largest module on a P x Q grid (base and root included). */
static uint64_t grid_memory(const qr_plan *p, int P, int Q)
{
    qr_plan_opts o = p->opts;
    uint64_t peak = 0;
    o.grid[0] = P;
    o.grid[1] = Q;
    for (size_t i = 0; i < p->n_modules; i++) {
        qr_module_memory mm;
        qr_plan_module_memory(&p->modules[i], &o, &mm);
        if (mm.rank_bytes + mm.root_bytes + QR_PLAN_BASE_BYTES > peak) {
            peak = mm.rank_bytes + mm.root_bytes + QR_PLAN_BASE_BYTES;
        }
    }
    return peak;
}

/* With a node's memory known: a warning when per_node ranks exceed it, and the smallest grid
 * (doubling P, then Q) whose ranks fit. */
static void memory_advice(const qr_plan *p, int per_node, char *line)
{
    uint64_t budget = (uint64_t)(p->opts.mem_per_node / per_node), need = 0;
    uint64_t peak = peak_rank_memory(p);
    bool over = (double)peak * per_node > p->opts.mem_per_node;
    int P = 1, Q = 1;
    for (int k = 0; k < 24 && (need = grid_memory(p, P, Q)) > budget; k++) {
        if (P <= Q) {
            P *= 2;
        } else {
            Q *= 2;
        }
    }
    if (need > budget) {
        snprintf(line, 320,
                 "%s%d ranks per node at %.1f MiB each; no grid up to %dx%d fits %.1f GiB per "
                 "rank: use fewer ranks per node",
                 over ? "WARNING: memory: " : "memory: ", per_node, mib(peak), P, Q,
                 (double)budget / 1073741824.0);
        return;
    }
    snprintf(line, 320,
             "%s%d ranks per node at %.1f MiB each %s %.1f GiB per node; the smallest grid whose "
             "ranks fit is %dx%d (%.1f MiB per rank)",
             over ? "WARNING: memory: " : "memory: ", per_node, mib(peak),
             over ? "exceed" : "fit in", p->opts.mem_per_node / 1073741824.0, P, Q, mib(need));
}

/* Advice lines, in order; *n gets the count (at most 6). */
static void advice(const qr_plan *p, char lines[6][320], int *n)
{
    const qr_plan_opts *o = &p->opts;
    int per_node = o->cores_per_node / o->threads_per_rank;
    int empty = 0;
    *n = 0;
    for (int g = 0; g < p->n_groups; g++) {
        empty += p->slices[g].layer_begin == p->slices[g].layer_end;
    }
    if (per_node < 1) {
        per_node = 1;
    }
    snprintf(lines[(*n)++], 320,
             "with %d cores per node and %d BLAS thread(s) per rank: %d ranks per node "
             "(OPENBLAS_NUM_THREADS=%d), about %.1f MiB per node at %.1f MiB per rank",
             o->cores_per_node, o->threads_per_rank, per_node, o->threads_per_rank,
             mib(peak_rank_memory(p)) * per_node, mib(peak_rank_memory(p)));
    if (o->mem_per_node > 0) {
        memory_advice(p, per_node, lines[(*n)++]);
    }
    if (empty > 0) {
        snprintf(lines[(*n)++], 320,
                 "%d of %d groups get no layer (a layer is the unit of work): use fewer ranks, a "
                 "larger grid (--grid), or more threads per rank",
                 empty, p->n_groups);
    }
    if (p->imbalance > 1.10 && empty == 0) {
        snprintf(lines[(*n)++], 320,
                 "imbalance %.2f: whole layers cannot split evenly over %d groups; fewer, larger "
                 "groups (--grid) balance better",
                 p->imbalance, p->n_groups);
    }
    snprintf(lines[(*n)++], 320,
             "independent groups scale almost linearly while every group has layers; threads and "
             "grids speed up each module's dense steps less than linearly: prefer ranks "
             "(1-4 threads each) up to one group per layer, then grow --grid or threads");
}

/* The method options (the keys a checkpoint's options carry) and each module's SVD path, so a
 * plan can be checked against the job it describes. */
static qr_status method_json(const qr_plan *p, json_t *root)
{
    qr_kvlist l = {0};
    char *text = NULL;
    json_t *opts, *mods = json_array();
    qr_status st = qr_kv_set_str(&l, "method", qr_method_name(p->opts.method.method));
    if (st == QR_OK) {
        st = qr_method_opts_kv(&p->opts.method, &l);
    }
    if (st == QR_OK) {
        st = qr_kvlist_to_json(&l, &text);
    }
    qr_kvlist_free(&l);
    opts = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (st != QR_OK || !opts || !mods) {
        json_decref(opts);
        json_decref(mods);
        return st != QR_OK ? st : qr_fail(QR_ERR_NOMEM, "plan: out of memory building JSON");
    }
    for (size_t i = 0; i < p->n_modules; i++) {
        const qr_module *m = &p->modules[i];
        int64_t l_sketch = 0;
        qr_method_opts ro; /* the module's rank and salient count, as quantize resolves them */
        qr_svd_mode path;
        if (qr_method_resolve(&p->opts.method, m->name, m->d_out, m->d_in, &ro) != QR_OK) {
            ro = p->opts.method; /* refused when the plan was built */
        }
        path = qr_svd_path(&p->opts.method.svd, m->d_out, m->d_in, ro.rank, &l_sketch);
        json_array_append_new(
            mods, json_pack("{s:s, s:I, s:I, s:s, s:I, s:I, s:I, s:f}", "name", m->name, "d_out",
                            (json_int_t)m->d_out, "d_in", (json_int_t)m->d_in, "svd_path",
                            qr_svd_mode_name(path), "sketch", (json_int_t)l_sketch, "rank",
                            (json_int_t)ro.rank, "salient", (json_int_t)ro.n_salient,
                            "bits_per_weight_max", qr_method_bits_bound(&ro, m->d_out, m->d_in)));
    }
    json_object_set_new(root, "method_options", opts);
    json_object_set_new(root, "module_list", mods);
    return QR_OK;
}

static json_t *capture_json(const qr_capture_est *e, const qr_capture_plan_opts *co)
{
    json_t *o = json_object(), *groups = json_array();
    for (int g = 0; o && groups && g < e->n_groups; g++) {
        const qr_capture_slice_est *c = &e->groups[g];
        json_array_append_new(
            groups,
            json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f}", "group", g, "weight_bytes",
                      (json_int_t)c->weight_bytes, "mapped_bytes", (json_int_t)c->mapped_bytes,
                      "state_bytes", (json_int_t)c->state_bytes, "batch_bytes",
                      (json_int_t)c->batch_bytes, "mem_per_rank_bytes", (json_int_t)c->mem_per_rank,
                      "gflops", (double)c->flops / 1e9, "write_mb", (double)c->bytes_written / 1e6,
                      "seconds", c->seconds));
    }
    if (!o || !groups) {
        json_decref(o);
        json_decref(groups);
        return NULL;
    }
    json_object_set_new(o, "seq_len", json_integer(co->seq_len));
    json_object_set_new(o, "micro_batch", json_integer(co->micro_batch));
    json_object_set_new(o, "windows", json_integer(e->windows));
    json_object_set_new(o, "micro_batches_per_rank", json_integer(e->micro_batches));
    json_object_set_new(o, "pipeline_groups", json_integer(e->active_groups));
    json_object_set_new(o, "groups", groups);
    json_object_set_new(o, "max_mem_per_rank_bytes", json_integer((json_int_t)e->max_mem_per_rank));
    json_object_set_new(o, "seconds", json_real(e->seconds));
    json_object_set_new(o, "fill_drain_seconds", json_real(e->fill_drain_seconds));
    return o;
}

static qr_status print_json(const qr_plan *p, const char *model_path, const qr_capture_est *ce,
                            const qr_capture_plan_opts *co)
{
    json_t *root = json_object(), *groups = json_array(), *adv = json_array();
    char lines[6][320];
    int n_adv = 0;
    char *text = NULL;
    if (!root || !groups || !adv) {
        json_decref(root);
        json_decref(groups);
        json_decref(adv);
        return qr_fail(QR_ERR_NOMEM, "plan: out of memory building JSON");
    }
    for (int g = 0; g < p->n_groups; g++) {
        const qr_plan_slice *s = &p->slices[g];
        json_array_append_new(
            groups,
            json_pack("{s:i, s:[i,i], s:[I,I], s:[I,I], s:f, s:f, s:f, s:I, s:I}", "group",
                      s->group, "ranks", s->rank_begin, s->rank_begin + s->rank_count, "layers",
                      (json_int_t)s->layer_begin, (json_int_t)s->layer_end, "modules",
                      (json_int_t)s->module_begin, (json_int_t)s->module_end, "gflops",
                      (double)s->flops / 1e9, "read_mb", (double)s->bytes_read / 1e6, "seconds",
                      s->seconds, "mem_per_rank_bytes", (json_int_t)s->mem_per_rank,
                      "mem_root_extra_bytes", (json_int_t)s->mem_root_extra));
    }
    advice(p, lines, &n_adv);
    for (int i = 0; i < n_adv; i++) {
        json_array_append_new(adv, json_string(lines[i]));
    }
    json_object_set_new(root, "format", json_string("qrecon-plan"));
    json_object_set_new(root, "version", json_integer(1));
    json_object_set_new(root, "model", json_string(model_path));
    json_object_set_new(root, "layers", json_integer(p->n_layers));
    json_object_set_new(root, "modules", json_integer((json_int_t)p->n_modules));
    json_object_set_new(root, "ranks", json_integer(p->opts.n_ranks));
    json_object_set_new(root, "grid", json_pack("[i,i]", p->opts.grid[0], p->opts.grid[1]));
    json_object_set_new(root, "method", json_string(qr_method_name(p->opts.method.method)));
    json_object_set_new(root, "rank", json_integer(p->opts.method.rank));
    json_object_set_new(root, "tokens", json_integer(p->opts.tokens));
    json_object_set_new(root, "threads_per_rank", json_integer(p->opts.threads_per_rank));
    json_object_set_new(root, "flops_per_byte", json_integer((json_int_t)p->flops_per_byte));
    json_object_set_new(root, "groups", groups);
    if (method_json(p, root) != QR_OK) {
        json_decref(root);
        return QR_ERR_NOMEM;
    }
    json_object_set_new(root, "imbalance", json_real(p->imbalance));
    json_object_set_new(root, "advice", adv);
    json_object_set_new(root, "capture", capture_json(ce, co));
    text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text) {
        return qr_fail(QR_ERR_NOMEM, "plan: out of memory writing JSON");
    }
    printf("%s\n", text);
    free(text);
    return QR_OK;
}

/* The capture over the same slices: a second table, beside quantize's. */
static void print_capture(const qr_plan *p, const qr_capture_est *e, const qr_capture_plan_opts *co)
{
    printf("capture over the same slices: %lld windows of %lld tokens, micro-batches of %lld "
           "window(s), %lld per rank\n",
           (long long)e->windows, (long long)co->seq_len, (long long)co->micro_batch,
           (long long)e->micro_batches);
    printf("%5s  %-11s  %12s  %11s  %10s  %10s  %12s  %11s  %13s  %10s\n", "group", "layers",
           "weights MiB", "mapped MiB", "state MiB", "batch MiB", "MiB/rank", "GFLOP/rank",
           "write MB/rank", "est. s");
    for (int g = 0; g < e->n_groups; g++) {
        const qr_plan_slice *s = &p->slices[g];
        const qr_capture_slice_est *c = &e->groups[g];
        char layers[32];
        if (s->layer_begin == s->layer_end) {
            continue;
        }
        snprintf(layers, sizeof layers, "%lld-%lld", (long long)s->layer_begin,
                 (long long)s->layer_end - 1);
        printf("%5d  %-11s  %12.1f  %11.1f  %10.1f  %10.1f  %12.1f  %11.3f  %13.3f  %10.3f\n", g,
               layers, mib(c->weight_bytes), mib(c->mapped_bytes), mib(c->state_bytes),
               mib(c->batch_bytes), mib(c->mem_per_rank), (double)c->flops / 1e9,
               (double)c->bytes_written / 1e6, c->seconds);
    }
    printf("capture: pipeline of %d group(s): est. %.3f s, of which fill and drain %.3f s "
           "((G-1)/B = %d/%lld micro-batches); peak %.1f MiB per rank\n",
           e->active_groups, e->seconds, e->fill_drain_seconds, e->active_groups - 1,
           (long long)e->micro_batches, mib(e->max_mem_per_rank));
}

static void print_text(const qr_plan *p, const char *model_path)
{
    char lines[6][320];
    int n_adv = 0, per = p->opts.grid[0] * p->opts.grid[1];
    char rank[24];
    if (p->opts.method.rank == QR_AUTO) {
        snprintf(rank, sizeof rank, "auto");
    } else {
        snprintf(rank, sizeof rank, "%lld", (long long)p->opts.method.rank);
    }
    printf("plan: %s: %lld layers, %zu modules; %d ranks as %d group(s) of %dx%d; method %s, rank "
           "%s, %lld tokens, %d thread(s) per rank at %g GFLOP/s each\n",
           model_path, (long long)p->n_layers, p->n_modules, p->opts.n_ranks, p->n_groups,
           p->opts.grid[0], p->opts.grid[1], qr_method_name(p->opts.method.method), rank,
           (long long)p->opts.tokens, p->opts.threads_per_rank, p->opts.gflops_per_thread);
    printf("%5s  %-11s  %-11s  %-11s  %11s  %10s  %10s  %12s\n", "group", "ranks", "layers",
           "modules", "GFLOP", "read MB", "est. s", "MiB/rank");
    for (int g = 0; g < p->n_groups; g++) {
        const qr_plan_slice *s = &p->slices[g];
        char ranks[32], layers[32], modules[32], mem[48];
        snprintf(ranks, sizeof ranks, "%d-%d", s->rank_begin, s->rank_begin + s->rank_count - 1);
        if (s->layer_begin == s->layer_end) {
            snprintf(layers, sizeof layers, "-");
            snprintf(modules, sizeof modules, "-");
        } else {
            snprintf(layers, sizeof layers, "%lld-%lld", (long long)s->layer_begin,
                     (long long)s->layer_end - 1);
            snprintf(modules, sizeof modules, "%lld-%lld", (long long)s->module_begin,
                     (long long)s->module_end - 1);
        }
        if (per > 1) {
            snprintf(mem, sizeof mem, "%.1f (+%.1f root)", mib(s->mem_per_rank),
                     mib(s->mem_root_extra));
        } else {
            snprintf(mem, sizeof mem, "%.1f", mib(s->mem_per_rank));
        }
        printf("%5d  %-11s  %-11s  %-11s  %11.3f  %10.3f  %10.3f  %12s\n", s->group, ranks, layers,
               modules, (double)s->flops / 1e9, (double)s->bytes_read / 1e6, s->seconds, mem);
    }
    printf("imbalance (max/mean): %.4f\n", p->imbalance);
    advice(p, lines, &n_adv);
    for (int i = 0; i < n_adv; i++) {
        printf("advice: %s\n", lines[i]);
    }
    fflush(stdout);
}

qr_status qr_cmd_plan(int argc, char **argv)
{
    qr_status st = QR_OK;
    qr_model *model = NULL;
    qr_plan *plan = NULL;
    qr_capture_est cap;
    qr_capture_plan_opts co;
    plan_cli cli;
    qr_plan_opts o;
    qr_opt_result res;
    const char *model_path;
    qr_opt_table tables[] = {
        QR_OPT_TABLE(plan_rows, &cli, "options (defaults in parentheses)"),
        qr_method_opt_table(&cli.plan.method, "method (as quantize)"),
    };
    QR_TRY(qr_opts_parse_with_method(&doc, tables, 2, 0, argc, argv, init_cli, &cli,
                                     &cli.plan.method, &res));
    if (res.help) {
        return QR_OK;
    }
    o = cli.plan;
    o.held_tokens = qr_plan_held_tokens(o.tokens, o.seq_len, cli.holdout);
    o.metric_rows = qr_plan_metric_rows(o.held_tokens, cli.metric_rows);
    o.mem_per_node = cli.mem_gib * 1073741824.0;
    o.n_ranks = (int)cli.ranks;
    o.threads_per_rank = (int)cli.threads;
    o.cores_per_node = (int)cli.cores;
    model_path = cli.model;
    memset(&cap, 0, sizeof cap);
    co.seq_len = o.seq_len;
    co.micro_batch = cli.micro_batch;
    co.act_bytes = 4;
    if (o.n_ranks % (o.grid[0] * o.grid[1]) != 0) {
        return qr_fail(QR_ERR_INPUT,
                       "--ranks %d: not divisible by the grid's P*Q = %d (--grid %dx%d); use a "
                       "multiple of %d ranks",
                       o.n_ranks, o.grid[0] * o.grid[1], o.grid[0], o.grid[1],
                       o.grid[0] * o.grid[1]);
    }
    QR_CHECK(qr_model_open(model_path, &model));
    {
        /* The stored width of the weights (F32 4 bytes, BF16/F16 2) sets the bytes read. */
        const qr_model_config *cfg = qr_model_get_config(model);
        char name[QR_MODULE_NAME_MAX + 16];
        qr_dtype dt = QR_DTYPE_INVALID;
        int ndim = 0;
        int64_t shape[8];
        snprintf(name, sizeof name, "model.layers.0.self_attn.q_proj.weight");
        if (qr_model_tensor_info(model, name, &dt, &ndim, shape) == QR_OK) {
            o.weight_bytes = (int64_t)qr_dtype_size(dt);
        } else {
            qr_clear_error();
        }
        QR_CHECK(qr_plan_build(cfg, &o, &plan));
        QR_CHECK(qr_plan_capture(plan, cfg, &co, &cap));
    }
    if (qr_log_rank() == 0) {
        if (cli.json) {
            QR_CHECK(print_json(plan, model_path, &cap, &co));
        } else {
            print_text(plan, model_path);
            print_capture(plan, &cap, &co);
        }
    }
done:
    qr_capture_est_free(&cap);
    qr_plan_free(&plan);
    qr_model_close(&model);
    return st;
}

/* quantize_run.c: the distributed quantize job (jobs/quantize_run.h).
 *
 * qr_quantize_run reads as its list of phases; each phase is a function whose status every rank
 * agrees on (qr_mpi_agree) before the next one starts:
 *   open      the model, its modules and the calibration shards on every rank;
 *   check     every shard dataset against its module, the options that identify the result;
 *   plan      the layer slices of the rank groups (checking every option against every module's
 *             shape), the group's grid;
 *   lock      rank 0 takes the job lock;
 *   resume    every group checks the existing parts of its slice (a part made with other options
 *             stops the job naming the option);
 *   slice     each group streams, per layer input, the fitting windows of every shard in order into
 *             float64 statistics and keeps the held-out windows, runs the method on each module of
 *             the slice that has no part yet, computes its metrics and writes its part; group roots
 *             tell rank 0, which prints one line per module;
 *   assemble  all ranks write the shared checkpoint collectively;
 *   close     free everything (every rank, always). */
#include "jobs/quantize_run.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "io/calib_holdout.h"
#include "io/calib_shard.h"
#include "io/checkpoint.h"
#include "io/ckpt_check.h"
#include "io/fs.h"
#include "io/h5util.h"
#include "io/lock.h"
#include "io/model.h"
#include "io/part_file.h"
#include "jobs/llama_job.h"
#include "jobs/method_options.h"
#include "jobs/quantize_grid.h"
#include "jobs/quantize_rtn.h"
#include "mpi/blacs.h"
#include "mpi/comm.h"
#include "mpi/plan.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/log.h"
#include "src/metrics.h"
#include "src/modules.h"
#include "src/progress.h"
#include "src/rng.h"
#include "src/stage.h"
#include "src/stats.h"

#define QR_PATH_MAX 4096
/* Tag of the module-finished messages group roots send to rank 0. */
#define QR_TAG_PROGRESS 7101

/* ---- what identifies a result: options, source model, calibration ------------------------------
 */

static qr_status build_options(const qr_quantize_job *job, const qr_model *model,
                               qr_calib_set *calib, qr_kvlist *opts)
{
    char ident[32];
    qr_calib_identity(calib, ident, sizeof ident);
    return qr_quantize_options(job, model, ident, opts);
}

qr_status qr_quantize_options(const qr_quantize_job *job, const qr_model *model, const char *ident,
                              qr_kvlist *opts)
{
    const qr_method_opts *mo = &job->method;
    QR_TRY(qr_kv_set_str(opts, "method", qr_method_name(mo->method)));
    QR_TRY(qr_kv_set_int(opts, "wbits", QR_CKPT_WBITS));
    QR_TRY(qr_kv_set_int(opts, "abits", job->abits));
    QR_TRY(qr_method_opts_kv(mo, opts));
    QR_TRY(qr_kv_set_double(opts, "holdout", job->holdout));
    QR_TRY(qr_kv_set_int(opts, "metric_rows", job->metric_rows));
    QR_TRY(qr_kv_set_int(opts, "agroup", job->agroup));
    QR_TRY(qr_kv_set_int(opts, "fallback_rtn", job->fallback_rtn ? 1 : 0));
    QR_TRY(qr_kv_set_str(opts, "source_model", qr_model_identity(model)));
    QR_TRY(qr_kv_set_str(opts, "calibration", ident));
    return QR_OK;
}

static qr_status config_json(const qr_model_config *c, char **out)
{
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:b, s:b, s:s}",
                          "arch", c->arch, "dim", (json_int_t)c->dim, "hidden_dim",
                          (json_int_t)c->hidden_dim, "n_layers", (json_int_t)c->n_layers, "n_heads",
                          (json_int_t)c->n_heads, "n_kv_heads", (json_int_t)c->n_kv_heads,
                          "head_dim", (json_int_t)c->head_dim, "vocab_size",
                          (json_int_t)c->vocab_size, "max_seq_len", (json_int_t)c->max_seq_len,
                          "rms_eps", c->rms_eps, "rope_theta", c->rope_theta, "tied_embeddings",
                          (int)c->tied_embeddings, "attn_bias", (int)c->attn_bias, "rope_style",
                          c->rope_style == QR_ROPE_INTERLEAVED ? "interleaved" : "half_split");
    *out = o ? json_dumps(o, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(o);
    return *out ? QR_OK : qr_fail(QR_ERR_NOMEM, "model config: cannot encode as JSON");
}

/* Every opened shard has the input of every module of its layers with the module's width and the
 * same row count (a capture cut into layer slices: only the slices opened). */
static qr_status check_calib(const qr_model *model, qr_calib_set *set, const qr_module *mods,
                             size_t n_mods)
{
    const qr_model_config *cfg = qr_model_get_config(model);
    const qr_calib_info *c0 = qr_calib_shard_info(qr_calib_set_shard(set, 0));
    if (!qr_model_identity_matches(model, c0->model_identity)) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: captured from another model (expected identity %s, found %s)",
                       qr_calib_shard_path(qr_calib_set_shard(set, 0)), qr_model_identity(model),
                       c0->model_identity);
    }
    if (c0->n_layers != cfg->n_layers) {
        return qr_fail(
            QR_ERR_INPUT,
            "%s: layer count differs from the model (expected %" PRId64 ", found %" PRId64 ")",
            qr_calib_shard_path(qr_calib_set_shard(set, 0)), cfg->n_layers, c0->n_layers);
    }
    for (size_t s = 0; s < qr_calib_set_shard_count(set); s++) {
        qr_calib_shard *sh = qr_calib_set_shard(set, s);
        const qr_calib_info *ci = qr_calib_shard_info(sh);
        for (size_t i = 0; i < n_mods; i++) {
            int64_t rows = 0, cols = 0;
            if (mods[i].layer < ci->layer_begin || mods[i].layer >= ci->layer_end) {
                continue;
            }
            QR_TRY(qr_calib_shard_shape(sh, mods[i].input_key, &rows, &cols));
            if (cols != mods[i].d_in || rows != ci->n_tokens) {
                return qr_fail(QR_ERR_INPUT,
                               "%s: dataset '%s' has shape (%" PRId64 ", %" PRId64
                               ") (expected (%" PRId64 ", %" PRId64 "): d_in of %s)",
                               qr_calib_shard_path(sh), mods[i].input_key, rows, cols, ci->n_tokens,
                               mods[i].d_in, mods[i].name);
            }
        }
    }
    return QR_OK;
}

/* ---- progress: group roots tell rank 0 about each finished module ------------------------------
 */

/* Distinct stage names rank 0 keeps time for (src/stage.h marks; "part" for writing parts). */
#define QR_STAGE_SLOTS 12

typedef struct {
    int32_t kind; /* 0: a module finished; 1: this group root has finished its slice */
    int32_t pad;
    char module[QR_MODULE_NAME_MAX];
    int64_t rank_used;
    double out_err;
    double seconds;
    double weight; /* the module's share of the work, for the ETA */
} progress_msg;

typedef struct {
    MPI_Comm comm;
    int rank, size, group_size;
    qr_progress *bar;
    const char *method;
    int ends_seen;       /* rank 0: end messages received */
    progress_msg *queue; /* group roots: messages in flight (kept alive until MPI_Waitall) */
    MPI_Request *reqs;
    size_t n_queue, cap_queue;
    /* rank 0: its own current module, for the bar's stages (progress_stage) */
    const char *current;
    double current_t0, current_weight;
    double own_seconds, own_weight; /* rank 0's finished modules: its rate for the bar's fill */
    /* rank 0: its wall time by stage (the stage marks), printed at the end of the slice */
    const char *stage_names[QR_STAGE_SLOTS];
    double stage_seconds[QR_STAGE_SLOTS], stage_t0;
    int n_stages, stage_now; /* stage_now: index of the running stage, -1 before the first */
} progress_ctx;

/* One module's line: the method, the rank used, the held-out output error, and its wall time on its
 * group (weight read, method, held-out metrics and, for the first module of a layer input, the
 * statistics pass; the part's write excluded), the same figure as report's "wall s" column. */
static void progress_show(progress_ctx *p, const progress_msg *m)
{
    const qr_progress_field f[] = {
        {.key = "method", .kind = QR_PF_STR, .s = p->method},
        {.key = "rank_used", .label = "rank", .kind = QR_PF_INT, .i = m->rank_used},
        {.key = "out_err", .label = "out_err", .kind = QR_PF_NUM, .x = m->out_err},
        {.key = "wall_s", .label = "wall", .kind = QR_PF_NUM, .x = m->seconds, .unit = "s"},
    };
    qr_progress_step_fields(p->bar, m->module, m->weight, f, (int)(sizeof f / sizeof f[0]));
}

static void progress_drain(progress_ctx *p, int wait);

/* Rank 0's stage hook (src/stage.h): other groups' messages first, then the bar redrawn with the
 * stage of its own module, filled by the module's expected share (rank 0's rate so far). */
/* Rank 0: the running stage's time so far to its slot, then `stage` (NULL: none) runs. */
static void stage_clock(progress_ctx *p, const char *stage)
{
    double now = qr_now();
    int k = 0;
    if (p->stage_now >= 0) {
        p->stage_seconds[p->stage_now] += now - p->stage_t0;
    }
    p->stage_t0 = now;
    while (stage && k < p->n_stages && strcmp(p->stage_names[k], stage) != 0) {
        k++;
    }
    if (stage && k == p->n_stages && k < QR_STAGE_SLOTS) {
        p->stage_names[p->n_stages++] = stage; /* marks pass string literals */
    }
    p->stage_now = stage && k < p->n_stages ? k : -1;
}

/* Rank 0, at the end of its slice: one line with its wall time by stage. */
static void stage_report(progress_ctx *p, double total)
{
    char line[1024];
    size_t len = 0;
    stage_clock(p, NULL);
    for (int k = 0; k < p->n_stages && len < sizeof line; k++) {
        len += (size_t)snprintf(line + len, sizeof line - len, "%s%s %.1f s (%.0f%%)",
                                k ? ", " : "", p->stage_names[k], p->stage_seconds[k],
                                total > 0 ? 100.0 * p->stage_seconds[k] / total : 0.0);
    }
    if (p->n_stages > 0) {
        QR_INFO("quantize: rank 0's wall time by stage: %s", line);
    }
}

static void progress_stage(void *ctx, const char *stage)
{
    progress_ctx *p = ctx;
    double frac = 0;
    stage_clock(p, stage);
    progress_drain(p, 0);
    if (p->own_seconds > 0 && p->current_weight > 0) {
        frac = (qr_now() - p->current_t0) * (p->own_weight / p->own_seconds) / p->current_weight;
    }
    qr_progress_stage(p->bar, p->current, stage, frac < 0.95 ? frac : 0.95);
}

/* Rank 0 starts module k (weight w): its name and clock for progress_stage. */
static void progress_at(progress_ctx *p, const char *module, double w)
{
    if (p->rank == 0) {
        p->current = module;
        p->current_t0 = qr_now();
        p->current_weight = w;
    }
}

/* Rank 0: print what has arrived; with `wait`, block until every other group root has ended. */
static void progress_drain(progress_ctx *p, int wait)
{
    int n_other_roots = p->size / p->group_size - 1;
    for (;;) {
        int flag = 0;
        MPI_Status stt;
        progress_msg m;
        MPI_Iprobe(MPI_ANY_SOURCE, QR_TAG_PROGRESS, p->comm, &flag, &stt);
        if (!flag && wait && p->ends_seen < n_other_roots) {
            /* Asleep, not in a polling MPI_Probe: this rank's core is the other groups'. */
            struct timespec ts = {0, 2000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        if (!flag) {
            return;
        }
        MPI_Recv(&m, (int)sizeof m, MPI_BYTE, stt.MPI_SOURCE, QR_TAG_PROGRESS, p->comm,
                 MPI_STATUS_IGNORE);
        if (m.kind == 1) {
            p->ends_seen++;
        } else {
            progress_show(p, &m);
        }
    }
}

static qr_status progress_post(progress_ctx *p, const progress_msg *m)
{
    if (p->rank == 0) {
        p->own_seconds += qr_now() - p->current_t0;
        p->own_weight += m->weight;
        progress_show(p, m);
        progress_drain(p, 0);
        return QR_OK;
    }
    if (p->n_queue == p->cap_queue) {
        size_t cap = p->cap_queue ? 2 * p->cap_queue : 64;
        progress_msg *q;
        MPI_Request *r;
        /* Requests in flight must not move: wait for them before growing the arrays. */
        if (p->n_queue) {
            MPI_Waitall((int)p->n_queue, p->reqs, MPI_STATUSES_IGNORE);
            p->n_queue = 0;
        }
        q = realloc(p->queue, cap * sizeof *q);
        if (q) {
            p->queue = q;
        }
        r = realloc(p->reqs, cap * sizeof *r);
        if (r) {
            p->reqs = r;
        }
        if (!q || !r) {
            return qr_fail(QR_ERR_NOMEM, "progress messages: cannot allocate");
        }
        p->cap_queue = cap;
    }
    p->queue[p->n_queue] = *m;
    MPI_Isend(&p->queue[p->n_queue], (int)sizeof *m, MPI_BYTE, 0, QR_TAG_PROGRESS, p->comm,
              &p->reqs[p->n_queue]);
    p->n_queue++;
    return QR_OK;
}

/* Every group root ends its messages; rank 0 receives them all. Not collective, but every group
 * root and rank 0 must call it (it pairs the messages before the next collective phase). */
static void progress_finish(progress_ctx *p)
{
    if (p->rank == 0) {
        progress_drain(p, 1);
    } else if (p->rank % p->group_size == 0) {
        progress_msg end;
        memset(&end, 0, sizeof end);
        end.kind = 1;
        progress_post(p, &end);
        MPI_Waitall((int)p->n_queue, p->reqs, MPI_STATUSES_IGNORE);
        p->n_queue = 0;
    }
    free(p->queue);
    free(p->reqs);
    p->queue = NULL;
    p->reqs = NULL;
}

/* ---- one layer input: statistics on the fitting windows, the held-out rows ---------------------
 */

/* Stream the fitting windows of `key` (d columns) in shard order, one window per batch. */
static qr_status input_stats(qr_calib_set *set, const char *key, int64_t d,
                             const qr_calib_split *sp, qr_stats **stats, float **held,
                             double *seconds)
{
    qr_status st = QR_OK;
    float *buf = NULL;
    size_t n;
    double t0 = qr_now();
    *stats = NULL;
    *held = NULL;
    if (!qr_mul_size((size_t)sp->seq_len, (size_t)d, &n)) {
        return qr_fail(QR_ERR_INPUT, "%s: window size overflows", key);
    }
    QR_CHECK(qr_stats_create(d, stats));
    QR_CHECK(qr_malloc(&buf, n, sizeof(float), "calibration window"));
    for (int64_t r0 = 0; r0 < sp->n_fit; r0 += sp->seq_len) {
        QR_CHECK(qr_calib_set_read_rows(set, key, r0, sp->seq_len, buf));
        QR_CHECK(qr_stats_add(*stats, buf, sp->seq_len));
    }
    if (sp->n_metric > 0) {
        QR_CHECK(qr_malloc(held, (size_t)sp->n_metric * (size_t)d, sizeof(float), "held-out rows"));
        QR_CHECK(qr_calib_read_sample(set, key, sp, 0, sp->n_metric, *held));
    }
done:
    free(buf);
    if (st != QR_OK) {
        qr_stats_free(stats);
        qr_free(held);
    }
    *seconds = qr_now() - t0;
    return st;
}

static qr_status metrics_list(const qr_method_report *rep, const qr_metrics *m, int has_metrics,
                              double stats_seconds, qr_kvlist *l)
{
    static const char *stage_keys[QR_STAGE_COUNT] = {"seconds_scale", "seconds_quantize",
                                                     "seconds_decompose", "seconds_other"};
    double nan = NAN;
    QR_TRY(qr_kv_set_double(l, "weight_error", has_metrics ? m->weight_rel_err : nan));
    QR_TRY(qr_kv_set_double(l, "output_error", has_metrics ? m->out_rel_err : nan));
    QR_TRY(qr_kv_set_double(l, "output_error_a8", has_metrics ? m->out_rel_err_a8 : nan));
    QR_TRY(qr_kv_set_double(l, "output_error_a4", has_metrics ? m->out_rel_err_a4 : nan));
    QR_TRY(qr_kv_set_double(l, "output_error_a4g", has_metrics ? m->out_rel_err_a4g : nan));
    QR_TRY(qr_kv_set_double(l, "sqnr_db", has_metrics ? m->sqnr_db : nan));
    QR_TRY(qr_kv_set_double(l, "bits_per_weight", has_metrics ? m->bits_per_weight : nan));
    for (int s = 0; s < QR_STAGE_COUNT; s++) {
        QR_TRY(qr_kv_set_double(l, stage_keys[s], rep->seconds[s]));
    }
    QR_TRY(qr_kv_set_double(l, "seconds_calibration", stats_seconds));
    QR_TRY(qr_kv_set_int(l, "rank_used", rep->rank_used));
    QR_TRY(qr_kv_set_int(l, "k_used", rep->srr_k_used));
    QR_TRY(qr_kv_set_int(l, "salient_used", rep->n_salient_used));
    QR_TRY(qr_kv_set_double(l, "damping", rep->damping));
    QR_TRY(qr_kv_set_double(l, "clip_ratio", rep->clip_ratio));
    return QR_OK;
}

/* The module's metrics list, its part (when part is given) and its progress message. */
static qr_status finish_module(const qr_module *m, const qr_qlayer *ql, const qr_method_report *rep,
                               const qr_metrics *met, int has_metrics, const qr_rtn_cmp *cmp,
                               double stats_seconds, const qr_kvlist *opts, const char *part,
                               double t0, progress_msg *msg)
{
    qr_status st = QR_OK;
    qr_kvlist metrics = {0};
    double wall = qr_now() - t0 + stats_seconds; /* the figure of the progress line and report */
    QR_CHECK(metrics_list(rep, met, has_metrics, stats_seconds, &metrics));
    QR_CHECK(qr_kv_set_double(&metrics, "seconds_wall", wall));
    QR_CHECK(qr_rtn_cmp_kv(cmp, &metrics));
    if (part) {
        qr_stage_mark("part");
        QR_CHECK(qr_part_write(part, m->name, opts, &metrics, ql));
    }
    memset(msg, 0, sizeof *msg);
    snprintf(msg->module, sizeof msg->module, "%s", m->name);
    msg->rank_used = rep->rank_used;
    msg->out_err = has_metrics ? met->out_rel_err : NAN;
    msg->seconds = wall;
done:
    qr_kvlist_free(&metrics);
    return st;
}

/* Quantize one module on this process and write its part. */
static qr_status run_module(const qr_quantize_job *job, const qr_model *model, const qr_module *m,
                            const qr_stats *stats, const float *held, int64_t n_ho,
                            double stats_seconds, const qr_kvlist *opts, const char *part,
                            progress_msg *msg)
{
    qr_status st = QR_OK;
    char tensor[QR_MODULE_NAME_MAX + 16];
    double *W = NULL;
    size_t n;
    qr_qlayer ql;
    qr_method_report rep;
    qr_metrics met;
    qr_method_opts mo = job->method;
    qr_rtn_policy pol = {job->abits, job->fallback_rtn, job->worse_than_rtn, job->hook_ctx};
    qr_rtn_cmp cmp;
    double t0 = qr_now();
    memset(&ql, 0, sizeof ql);
    memset(&rep, 0, sizeof rep);
    memset(&met, 0, sizeof met);
    snprintf(tensor, sizeof tensor, "%s.weight", m->name);
    if (!qr_mul_size((size_t)m->d_out, (size_t)m->d_in, &n)) {
        return qr_fail(QR_ERR_INPUT, "%s: size overflows", tensor);
    }
    qr_stage_mark("weight");
    QR_CHECK(qr_malloc(&W, n, sizeof(double), tensor));
    QR_CHECK(qr_model_read_f64(model, tensor, W, n));
    qr_stage_mark("method");
    mo.module_name = m->name;
    QR_CHECK(qr_method_run(&mo, W, m->d_out, m->d_in, stats, &ql, &rep));
    QR_CHECK(qr_quantize_measure(&pol, &mo, W, m, stats, held, n_ho, job->agroup, &ql, &met, &rep,
                                 &cmp));
    free(W);
    W = NULL;
    QR_CHECK(finish_module(m, &ql, &rep, &met, n_ho > 0, &cmp, stats_seconds, opts, part, t0, msg));
done:
    free(W);
    qr_qlayer_free(&ql);
    return st;
}

/* The same on the group's grid (jobs/quantize_grid.h): the module divided over the ranks, the
 * group root writing its part. */
static qr_status run_module_grid(const qr_quantize_job *job, const qr_grid *g,
                                 const qr_model *model, const qr_module *m, qr_grid_input *in,
                                 double stats_seconds, const qr_kvlist *opts, const char *part,
                                 progress_msg *msg)
{
    qr_status st = QR_OK;
    qr_grid_module_out out, rtn_out;
    int has_metrics = 0;
    qr_method_opts mo = job->method, ro;
    qr_rtn_policy pol = {job->abits, job->fallback_rtn, job->worse_than_rtn, job->hook_ctx};
    qr_rtn_cmp cmp;
    double t0 = qr_now();
    bool compare;
    mo.module_name = m->name;
    compare = qr_rtn_opts(&mo, &ro);
    ro.abits = pol.abits; /* RTN is measured at the width the policy compares */
    st = qr_grid_module_run(g, model, m, &mo, compare ? &ro : NULL, in, &out, &rtn_out,
                            &has_metrics);
    if (st == QR_OK && qr_rtn_compare_grid(&pol, m, compare && has_metrics, &out, &rtn_out, &cmp)) {
        /* RTN was measured, not gathered: run it again to store it (fallback modules only) */
        qr_grid_module_out unused;
        qr_qlayer_free(&rtn_out.ql);
        st = qr_grid_module_run(g, model, m, &ro, NULL, in, &rtn_out, &unused, &has_metrics);
        if (st == QR_OK) {
            qr_rtn_take_grid(g, &out, &rtn_out);
        }
    }
    if (st == QR_OK && g->group_rank == 0) {
        st = finish_module(m, &out.ql, &out.rep, &out.met, has_metrics, &cmp, stats_seconds, opts,
                           part, t0, msg);
    }
    qr_qlayer_free(&out.ql);
    qr_qlayer_free(&rtn_out.ql);
    return st;
}

/* ---- the job's state and its phases -------------------------------------------------------------
 */

typedef struct {
    MPI_Comm comm;
    const qr_quantize_job *job;
    qr_quantize_stats *stats;
    int rank, size, gsize, group, is_root;
    qr_model *model;
    qr_calib_set *calib;
    qr_module *mods; /* (n_mods) in model order */
    size_t n_mods;
    qr_calib_split sp;
    qr_kvlist opts; /* what identifies the result: parts and the checkpoint carry it */
    qr_plan *plan;
    const qr_plan_slice *slice; /* this rank's group's share */
    qr_grid *grid;              /* the group's grid when it has more than one rank: every
                                   module divided over it (jobs/quantize_grid.h) */
    qr_lock *lock;
    char parts_dir[QR_PATH_MAX];
    char **part_paths; /* (n_mods) */
    uint8_t *done;     /* (n_mods) 1: a verified part exists */
    int64_t todo;      /* modules left to do over all groups */
    double todo_weight;
} qr_run;

/* open: the model, its modules and the calibration shards (every rank). */
static qr_status phase_open(qr_run *r)
{
    const qr_quantize_job *job = r->job;
    if (r->gsize < 1 || r->size % r->gsize != 0) {
        return qr_fail(QR_ERR_INPUT,
                       "--grid %dx%d: the job size %d is not a multiple of the grid's %d ranks",
                       job->grid[0], job->grid[1], r->size, r->gsize);
    }
    QR_TRY(qr_model_open(job->model_path, &r->model));
    QR_TRY(qr_modules_enumerate(qr_model_get_config(r->model), &r->mods, &r->n_mods));
    /* Before the plan only the first layer's shards (rows, identity, holdout); phase_plan then
     * opens the group's own (a capture cut into layer slices; a whole-model one is all one). */
    return qr_calib_set_open_dir_layers(job->calib_dir, 0, 1, &r->calib);
}

/* check: the shards against the modules, the options that identify the result. */
static qr_status phase_check(qr_run *r)
{
    QR_TRY(check_calib(r->model, r->calib, r->mods, r->n_mods));
    QR_TRY(qr_calib_split_holdout(r->calib, r->job->holdout, &r->sp));
    qr_calib_split_sample(&r->sp, r->job->metric_rows);
    QR_TRY(build_options(r->job, r->model, r->calib, &r->opts));
    return qr_part_dir(r->job->out_path, r->parts_dir, sizeof r->parts_dir);
}

/* plan: the layer slices (the same on every rank); building it checks every option against every
 * module's shape, so a value some module would reject stops the job before any work. */
static qr_status phase_plan(qr_run *r)
{
    qr_plan_opts po;
    qr_dtype dt = QR_DTYPE_F32;
    int nd;
    int64_t shape[8];
    char tensor[QR_MODULE_NAME_MAX + 16];
    snprintf(tensor, sizeof tensor, "%s.weight", r->mods[0].name);
    qr_plan_opts_default(&po);
    po.tokens = r->sp.n_rows;
    po.held_tokens = r->sp.n_ho;
    po.metric_rows = r->sp.n_metric;
    po.seq_len = r->sp.seq_len;
    po.method = r->job->method;
    po.n_ranks = r->size;
    po.grid[0] = r->job->grid[0];
    po.grid[1] = r->job->grid[1];
    if (qr_model_tensor_info(r->model, tensor, &dt, &nd, shape) == QR_OK) {
        po.weight_bytes = (int64_t)qr_dtype_size(dt);
    }
    QR_TRY(qr_plan_build(qr_model_get_config(r->model), &po, &r->plan));
    r->group = r->rank / r->gsize;
    r->is_root = r->rank % r->gsize == 0;
    r->slice = &r->plan->slices[r->group];
    if (r->slice->layer_begin < r->slice->layer_end) {
        int64_t a, b;
        qr_calib_set_layers(r->calib, &a, &b);
        if (a > r->slice->layer_begin || b < r->slice->layer_end) {
            qr_calib_set_close(&r->calib);
            QR_TRY(qr_calib_set_open_dir_layers(r->job->calib_dir, r->slice->layer_begin,
                                                r->slice->layer_end, &r->calib));
            QR_TRY(check_calib(r->model, r->calib, r->mods, r->n_mods));
        }
    }
    return QR_OK;
}

/* The group's BLACS grid (collective over the job: BLACS makes every context). */
static qr_status make_grid(qr_run *r)
{
    int lay[2];
    const char *rows = qr_grid_layout(&r->job->method, r->job->grid, lay);
    if (r->gsize > 1) {
        /* Blocks hold whole weight groups, so the main quantization is local to each rank. */
        int nb = qr_grid_block_for_group(r->job->method.wq.group, lay[1]);
        QR_TRY(qr_grid_create(r->comm, lay[0], lay[1], nb, &r->grid));
        if (rows && r->rank == 0) {
            QR_INFO("quantize: %s runs on whole rows: each group of %dx%d ranks works as %dx%d",
                    rows, r->job->grid[0], r->job->grid[1], lay[0], lay[1]);
        }
    }
    if (r->rank == 0) {
        QR_INFO("quantize: %zu modules, %d rank group(s) of %dx%d, %" PRId64
                " calibration rows (%" PRId64 " fit, %" PRId64 " held out), imbalance %.3f",
                r->n_mods, r->plan->n_groups, r->job->grid[0], r->job->grid[1], r->sp.n_rows,
                r->sp.n_fit, r->sp.n_ho, r->plan->imbalance);
    }
    return QR_OK;
}

/* lock: rank 0 takes the job lock in the parts folder. */
static qr_status phase_lock(qr_run *r)
{
    char lock_path[QR_PATH_MAX + 8];
    bool took_over = false;
    if (r->rank != 0) {
        return QR_OK;
    }
    snprintf(lock_path, sizeof lock_path, "%s/LOCK", r->parts_dir);
    QR_TRY(qr_fs_mkdirs(r->parts_dir));
    return qr_lock_acquire(lock_path, &r->lock, &took_over);
}

qr_status qr_quantize_check_part(const char *path, const qr_module *m, const qr_kvlist *opts)
{
    qr_part_info info;
    qr_status st = qr_part_read_info(path, &info);
    if (st == QR_OK) {
        st = qr_part_check(&info, path, m->name, m->d_out, m->d_in, opts);
    }
    qr_part_info_free(&info);
    if (st != QR_OK) {
        char msg[QR_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", qr_errmsg());
        return qr_fail(st, "%s (existing part; this job will not overwrite it)", msg);
    }
    return QR_OK;
}

/* Remove module i's part and its temporary file, if there; only those two names, nothing else. */
static qr_status remove_part(const qr_run *r, size_t i, int *removed)
{
    char path[QR_PATH_MAX], tmp[QR_PATH_MAX + 8];
    QR_TRY(qr_part_path(r->job->out_path, r->mods[i].name, path, sizeof path));
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    for (int k = 0; k < 2; k++) {
        const char *p = k == 0 ? path : tmp;
        if (unlink(p) == 0) {
            *removed += k == 0;
        } else if (errno != ENOENT) {
            return qr_fail(QR_ERR_IO, "%s: cannot remove (%s)", p, strerror(errno));
        }
    }
    return QR_OK;
}

/* force: rank 0, holding the lock, removes the parts of this output's modules (--force). */
static qr_status phase_force(qr_run *r)
{
    int removed = 0;
    if (!r->job->force || r->rank != 0) {
        return QR_OK;
    }
    for (size_t i = 0; i < r->n_mods; i++) {
        QR_TRY(remove_part(r, i, &removed));
    }
    QR_INFO("quantize: --force: removed %d part(s) of %s; starting over", removed,
            r->job->out_path);
    return QR_OK;
}

/* The checkpoint checked in full (io/ckpt_check.h), the reads shared over the ranks. */
static qr_status check_assembled(const qr_run *r)
{
    qr_status st = QR_OK;
    qr_ckpt *ck = NULL;
    QR_CHECK(qr_ckpt_open(r->job->out_path, &ck));
    QR_CHECK(qr_ckpt_check(ck, r->job->out_path, r->rank, r->size));
done:
    qr_ckpt_close(&ck);
    return st;
}

/* parts: after a successful assembly, the ranks check the checkpoint in full, then rank 0 removes
 * the parts, the lock and the parts folder (left in place when it holds anything else).
 * --keep-parts keeps them. A checkpoint that fails the check keeps its parts. Collective. */
static qr_status phase_remove_parts(qr_run *r)
{
    qr_status st = QR_OK;
    int removed = 0;
    if (r->job->keep_parts) {
        return QR_OK;
    }
    QR_TRY(qr_mpi_agree(r->comm, check_assembled(r)));
    if (r->rank != 0) {
        return QR_OK;
    }
    for (size_t i = 0; i < r->n_mods; i++) {
        QR_CHECK(remove_part(r, i, &removed));
    }
    qr_lock_release(&r->lock);
    if (rmdir(r->parts_dir) != 0) {
        QR_WARN("quantize: %s: not removed (%s); only this job's parts were", r->parts_dir,
                strerror(errno));
    }
    QR_INFO("quantize: %s verified; removed its %d part(s) (--keep-parts keeps them)",
            r->job->out_path, removed);
done:
    return st;
}

/* resume: the part paths, and the verified parts of this group's slice. */
static qr_status phase_resume(qr_run *r)
{
    QR_TRY(qr_calloc(&r->part_paths, r->n_mods, sizeof *r->part_paths, "part paths"));
    QR_TRY(qr_calloc(&r->done, r->n_mods, 1, "part flags"));
    for (size_t i = 0; i < r->n_mods; i++) {
        char path[QR_PATH_MAX];
        QR_TRY(qr_part_path(r->job->out_path, r->mods[i].name, path, sizeof path));
        if (!(r->part_paths[i] = strdup(path))) {
            return qr_fail(QR_ERR_NOMEM, "part paths: out of memory");
        }
    }
    for (int64_t i = r->slice->module_begin; i < r->slice->module_end; i++) {
        if (qr_fs_exists(r->part_paths[i])) {
            QR_TRY(qr_quantize_check_part(r->part_paths[i], &r->mods[i], &r->opts));
            r->done[i] = 1;
        }
    }
    return QR_OK;
}

/* A module's share of the work for the ETA: its balancing cost in the plan (flops of statistics,
 * decomposition, quantization and metrics, plus its bytes read at the plan's flops per byte). */
static double module_weight(const qr_run *r, int64_t k)
{
    const qr_module_cost *c = &r->plan->costs[k];
    return (double)c->flops + (double)c->bytes_read * (double)r->plan->flops_per_byte;
}

/* How much is left, summed over the group roots (collective). */
static void count_todo(qr_run *r)
{
    int64_t mine = 0;
    double weight = 0;
    for (int64_t i = r->slice->module_begin; i < r->slice->module_end && r->is_root; i++) {
        if (!r->done[i]) {
            mine++;
            weight += module_weight(r, i);
        }
    }
    MPI_Allreduce(&mine, &r->todo, 1, MPI_INT64_T, MPI_SUM, r->comm);
    MPI_Allreduce(&weight, &r->todo_weight, 1, MPI_DOUBLE, MPI_SUM, r->comm);
    if (r->rank == 0) {
        QR_INFO("quantize: %" PRId64 " module(s) to do, %" PRId64 " already done (verified parts)",
                r->todo, (int64_t)r->n_mods - r->todo);
    }
}

/* A stop signal may reach the ranks of a group at different moments: they agree on it, or one
 * would stop while the others enter the next module's collectives. */
static qr_status check_stop(qr_run *r)
{
    int sig = r->job->stop ? (int)*r->job->stop : 0;
    if (r->grid) {
        MPI_Allreduce(MPI_IN_PLACE, &sig, 1, MPI_INT, MPI_MAX, r->grid->comm);
    }
    if (sig) {
        return qr_fail(QR_STOPPED, "stopped on signal %d; rerun the same command to resume", sig);
    }
    return QR_OK;
}

/* Modules [i, j) share one layer input (q/k/v, gate/up): one statistics pass, then each module
 * without a part. Every rank of a group computes the module; only the group root writes it. */
static qr_status run_input_group(qr_run *r, progress_ctx *prog, int64_t i, int64_t j)
{
    qr_status st = QR_OK;
    qr_stats *stats = NULL;
    qr_grid_input gin;
    float *held = NULL;
    double stats_seconds = 0;
    int64_t need = 0, first = j;
    memset(&gin, 0, sizeof gin);
    for (int64_t k = j - 1; k >= i; k--) {
        need += !r->done[k];
        first = r->done[k] ? first : k;
    }
    if (need > 0) {
        progress_at(prog, r->mods[first].name, module_weight(r, first));
        qr_stage_mark("statistics");
    }
    if (need > 0 && r->grid) {
        bool keep_gram = false; /* whether a module of the input group transforms G itself */
        for (int64_t k = i; k < j; k++) {
            keep_gram = keep_gram ||
                        qr_dstats_keeps_gram(&r->job->method, r->mods[k].d_out, r->mods[k].d_in);
        }
        QR_CHECK(qr_grid_input_open(r->grid, r->calib, r->mods[i].input_key, r->mods[i].d_in,
                                    &r->sp, &r->job->method, keep_gram, r->job->agroup, &gin));
        stats_seconds = gin.seconds;
    } else if (need > 0) {
        QR_CHECK(input_stats(r->calib, r->mods[i].input_key, r->mods[i].d_in, &r->sp, &stats, &held,
                             &stats_seconds));
    }
    for (int64_t k = i; k < j; k++) {
        progress_msg msg;
        if (r->done[k]) {
            continue;
        }
        QR_CHECK(check_stop(r));
        if (k != first) {
            progress_at(prog, r->mods[k].name, module_weight(r, k));
        }
        if (r->grid) {
            st = run_module_grid(r->job, r->grid, r->model, &r->mods[k], &gin, stats_seconds,
                                 &r->opts, r->is_root ? r->part_paths[k] : NULL, &msg);
        } else {
            st = run_module(r->job, r->model, &r->mods[k], stats, held, r->sp.n_metric,
                            stats_seconds, &r->opts, r->is_root ? r->part_paths[k] : NULL, &msg);
        }
        if (r->grid) {
            /* The group's ranks leave together: the next module's calls are collective. */
            st = qr_mpi_agree(r->grid->comm, st);
        }
        QR_CHECK(st);
        stats_seconds = 0;
        msg.weight = module_weight(r, k);
        if (r->job->after_module) {
            r->job->after_module(r->job->hook_ctx, r->mods[k].name);
        }
        if (r->is_root) {
            if (r->stats) {
                r->stats->modules_done++;
            }
            QR_CHECK(progress_post(prog, &msg));
        }
    }
done:
    qr_stats_free(&stats);
    qr_grid_input_close(&gin);
    free(held);
    return st;
}

/* slice: this group's modules, one layer input at a time; rank 0 prints every group's progress.
 * Collective: returns the agreed status (a stop on any group stops the job). */
static qr_status phase_slice(qr_run *r)
{
    qr_status st = QR_OK;
    progress_ctx prog;
    double t0 = qr_now();
    memset(&prog, 0, sizeof prog);
    prog.comm = r->comm;
    prog.rank = r->rank;
    prog.size = r->size;
    prog.group_size = r->gsize;
    prog.method = qr_method_name(r->job->method.method);
    prog.stage_now = -1;
    if (r->rank == 0) {
        /* ETA by weight: each module's cost in the plan (module_weight). */
        prog.bar = qr_progress_begin("quantize", r->todo, "modules");
        qr_progress_set_total_weight(prog.bar, r->todo_weight);
        qr_stage_hook_set(progress_stage, &prog);
    }
    for (int64_t i = r->slice->module_begin; i < r->slice->module_end && st == QR_OK;) {
        int64_t j = i + 1;
        while (j < r->slice->module_end && r->mods[j].layer == r->mods[i].layer &&
               r->mods[j].input == r->mods[i].input) {
            j++;
        }
        st = run_input_group(r, &prog, i, j);
        i = j;
    }
    if (r->stats) {
        r->stats->seconds_modules = qr_now() - t0;
    }
    qr_stage_mark("waiting for the other groups");
    progress_finish(&prog);
    if (r->rank == 0) {
        qr_stage_hook_set(NULL, NULL);
        qr_progress_end(&prog.bar, "quantize: modules of this run took %.1f s", qr_now() - t0);
        stage_report(&prog, qr_now() - t0);
    }
    qr_mpi_idle_barrier(r->comm); /* the groups that finish first wait asleep */
    st = qr_mpi_agree(r->comm, st);
    if (st == QR_STOPPED && r->rank == 0) {
        QR_INFO("quantize: %s", qr_errmsg());
    }
    return st;
}

typedef struct {
    const qr_model *model;
} tensor_ctx;

static qr_status read_tensor_cb(void *ctx, const char *name, int64_t row0, int64_t nrows,
                                float *dst, size_t n)
{
    return qr_model_read_rows_f32(((tensor_ctx *)ctx)->model, name, row0, nrows, dst, n);
}

/* The non-quantized tensors: every model tensor that is not a module's weight. */
static qr_status list_tensors(const qr_model *model, const qr_module *mods, size_t n_mods,
                              qr_ckpt_tensor **out, size_t *n_out)
{
    size_t n = qr_model_tensor_count(model), k = 0;
    qr_ckpt_tensor *t = NULL;
    *out = NULL;
    *n_out = 0;
    QR_TRY(qr_calloc(&t, n + 1, sizeof *t, "tensor list"));
    for (size_t i = 0; i < n; i++) {
        const char *name = qr_model_tensor_name(model, i);
        qr_dtype dt;
        int quantized = 0;
        for (size_t j = 0; j < n_mods && !quantized; j++) {
            size_t l = strlen(mods[j].name);
            quantized = strncmp(name, mods[j].name, l) == 0 && strcmp(name + l, ".weight") == 0;
        }
        if (quantized) {
            continue;
        }
        t[k].name = name;
        if (qr_model_tensor_info(model, name, &dt, &t[k].ndim, t[k].shape) != QR_OK) {
            free(t);
            return QR_ERR_INPUT;
        }
        k++;
    }
    *out = t;
    *n_out = k;
    return QR_OK;
}

/* The checkpoint's typed header from the job. */
static void make_header(const qr_run *r, qr_ckpt_header *h)
{
    const qr_kv *cal = qr_kv_find(&r->opts, "calibration");
    memset(h, 0, sizeof *h);
    snprintf(h->method, sizeof h->method, "%s", qr_method_name(r->job->method.method));
    h->wbits = QR_CKPT_WBITS;
    h->abits = r->job->abits;
    h->group = r->job->method.wq.group;
    h->rank = r->job->method.rank;
    snprintf(h->source_model, sizeof h->source_model, "%s", qr_model_identity(r->model));
    snprintf(h->calibration, sizeof h->calibration, "%.63s", cal ? cal->s : "");
    snprintf(h->writer, sizeof h->writer, "qrecon %s", QRECON_VERSION);
}

/* assemble: the shared checkpoint from every part (collective). */
static qr_status phase_assemble(qr_run *r)
{
    qr_status st = QR_OK;
    qr_ckpt_spec spec;
    qr_ckpt_stats cs = {0, 0};
    qr_ckpt_header h;
    qr_kvlist root = {0};
    tensor_ctx tctx = {r->model};
    qr_ckpt_tensor *tensors = NULL;
    const char **names = NULL;
    char *cfg_json = NULL, *opts_json = NULL;
    memset(&spec, 0, sizeof spec);
    make_header(r, &h);
    st = list_tensors(r->model, r->mods, r->n_mods, &tensors, &spec.n_tensors);
    if (st == QR_OK) {
        st = config_json(qr_model_get_config(r->model), &cfg_json);
    }
    if (st == QR_OK) {
        st = qr_kvlist_to_json(&r->opts, &opts_json);
    }
    if (st == QR_OK) {
        st = qr_ckpt_header_write(&h, &root);
    }
    if (st == QR_OK) {
        st = qr_calloc(&names, r->n_mods + 1, sizeof *names, "module names");
    }
    QR_CHECK(qr_mpi_agree(r->comm, st));
    for (size_t i = 0; i < r->n_mods; i++) {
        names[i] = r->mods[i].name;
    }
    spec.agree = qr_mpi_agree;
    spec.root = &root;
    spec.model_config = cfg_json;
    spec.options = opts_json;
    spec.modules = names;
    spec.parts = (const char *const *)r->part_paths;
    spec.n_modules = r->n_mods;
    spec.tensors = tensors;
    spec.read_tensor = read_tensor_cb;
    spec.read_ctx = &tctx;
    spec.after_module = r->job->after_assembled;
    spec.hook_ctx = r->job->hook_ctx;
    st = qr_ckpt_assemble(r->comm, r->job->out_path, &spec, &cs);
    if (r->stats) {
        r->stats->seconds_assemble = cs.seconds;
        r->stats->assemble_bytes = cs.bytes;
    }
    if (st == QR_OK && r->rank == 0) {
        QR_INFO("quantize: wrote %s (%zu modules, %zu tensors, %.1f MiB in %.2f s)",
                r->job->out_path, r->n_mods, spec.n_tensors, (double)cs.bytes / 1048576.0,
                cs.seconds);
    }
done:
    free(cfg_json);
    free(opts_json);
    free(tensors);
    free(names);
    qr_kvlist_free(&root);
    return st;
}

/* Rank 0 prints, for every rank group, the plan's prediction beside what the group measured: the
 * largest peak resident memory of its ranks (getrusage) and the CPU seconds summed over them, with
 * the flop rate the prediction assumed. Collective. */
static void report_memory(qr_run *r)
{
    struct rusage ru;
    double mine[2], *all = NULL;
    getrusage(RUSAGE_SELF, &ru);
    mine[0] = (double)ru.ru_maxrss * 1024.0; /* Linux: kilobytes */
    mine[1] = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
              (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
    if (r->stats) {
        r->stats->peak_rss_bytes = (uint64_t)mine[0];
    }
    if (r->rank == 0 && !(all = malloc(2 * (size_t)r->size * sizeof *all))) {
        QR_WARN("quantize: no memory for the closing report");
    }
    /* The plan balances on its default rate; the prediction here uses this machine's, measured
     * while the other ranks wait asleep (polling ranks would share its cores). */
    double rate = r->rank == 0 ? QR_PLAN_SUSTAINED * qr_blas_gflops() : 0.0;
    qr_mpi_idle_barrier(r->comm);
    MPI_Gather(mine, 2, MPI_DOUBLE, all, all ? 2 : 0, MPI_DOUBLE, 0, r->comm);
    for (int g = 0; all && rate > 0 && g < r->plan->n_groups; g++) {
        const qr_plan_slice *s = &r->plan->slices[g];
        double peak = 0, cpu = 0;
        for (int k = s->rank_begin; k < s->rank_begin + s->rank_count; k++) {
            peak = all[2 * k] > peak ? all[2 * k] : peak;
            cpu += all[2 * k + 1];
        }
        /* CPU time does not count the time a rank waits for a busy core; MPI's busy polling
         * counts as CPU, so an uneven group spends more than its work. */
        QR_INFO("quantize: group %d (%dx%d): peak memory per rank %.1f MiB (plan %.1f MiB + "
                "%.1f MiB on its root), CPU %.1f s summed over its ranks (plan %.1f s at %.1f "
                "GFLOP/s, %.0f%% of this rank's dgemm rate)",
                g, r->job->grid[0], r->job->grid[1], peak / 1048576.0,
                (double)s->mem_per_rank / 1048576.0, (double)s->mem_root_extra / 1048576.0, cpu,
                (double)s->flops * qr_plan_cpu_factor(&r->plan->opts) / (rate * 1e9), rate,
                100.0 * QR_PLAN_SUSTAINED);
    }
    free(all);
}

/* close: everything the phases made (every rank, whatever happened). */
static void phase_close(qr_run *r)
{
    if (r->grid) {
        qr_grid_free(&r->grid);
        qr_blacs_shutdown();
    }
    if (r->lock) {
        qr_lock_release(&r->lock);
    }
    for (size_t i = 0; r->part_paths && i < r->n_mods; i++) {
        free(r->part_paths[i]);
    }
    free(r->part_paths);
    free(r->done);
    free(r->mods);
    qr_kvlist_free(&r->opts);
    qr_plan_free(&r->plan);
    qr_calib_set_close(&r->calib);
    qr_model_close(&r->model);
}

void qr_quantize_job_default(qr_quantize_job *job, qr_method_id m)
{
    memset(job, 0, sizeof *job);
    qr_method_opts_default(&job->method, m);
    job->abits = 8;
    job->grid[0] = job->grid[1] = 1;
    job->holdout = 0.1;
    job->metric_rows = QR_METRIC_ROWS_DEFAULT;
    job->agroup = 128;
}

qr_status qr_quantize_run(MPI_Comm comm, const qr_quantize_job *job, qr_quantize_stats *stats)
{
    qr_status st = QR_OK;
    qr_run r;
    double t0 = qr_now();
    memset(&r, 0, sizeof r);
    r.comm = comm;
    r.job = job;
    r.stats = stats;
    r.rank = qr_mpi_rank(comm);
    r.size = qr_mpi_size(comm);
    r.gsize = job->grid[0] * job->grid[1];
    if (stats) {
        memset(stats, 0, sizeof *stats);
    }
    QR_CHECK(qr_mpi_agree(comm, phase_open(&r)));
    qr_model_share_identity(comm, r.model);
    QR_CHECK(qr_mpi_agree(comm, phase_check(&r)));
    QR_CHECK(qr_mpi_agree(comm, phase_plan(&r)));
    QR_CHECK(make_grid(&r));
    QR_CHECK(qr_mpi_agree(comm, phase_lock(&r)));
    QR_CHECK(qr_mpi_agree(comm, phase_force(&r)));
    QR_CHECK(qr_mpi_agree(comm, phase_resume(&r)));
    count_todo(&r);
    QR_CHECK(phase_slice(&r));
    QR_CHECK(phase_assemble(&r));
    if (r.rank == 0 && qr_rtn_summary_print(job->out_path) != QR_OK) {
        QR_WARN("quantize: cannot list the modules worse than RTN: %s", qr_errmsg());
    }
    QR_CHECK(phase_remove_parts(&r));
    report_memory(&r);
done:
    phase_close(&r);
    if (stats) {
        stats->seconds_total = qr_now() - t0;
    }
    return st;
}

/* ---- for the sequential job (jobs/sequential_run.c): the same metrics and assembly ------------
 */

qr_status qr_quantize_part_metrics(const qr_method_report *rep, const qr_metrics *m,
                                   int has_metrics, double stats_seconds, qr_kvlist *l)
{
    return metrics_list(rep, m, has_metrics, stats_seconds, l);
}

qr_status qr_quantize_assemble(MPI_Comm comm, const qr_quantize_job *job, const qr_model *model,
                               const qr_module *mods, size_t n_mods, const qr_kvlist *opts,
                               char **part_paths, qr_lock **lock, qr_quantize_stats *stats)
{
    qr_status st = QR_OK;
    qr_run r;
    memset(&r, 0, sizeof r);
    r.comm = comm;
    r.job = job;
    r.stats = stats;
    r.rank = qr_mpi_rank(comm);
    r.size = qr_mpi_size(comm);
    r.model = (qr_model *)model;
    r.mods = (qr_module *)mods;
    r.n_mods = n_mods;
    r.opts = *opts; /* borrowed: the phases only read it */
    r.part_paths = part_paths;
    r.lock = *lock;
    st = qr_part_dir(job->out_path, r.parts_dir, sizeof r.parts_dir);
    QR_CHECK(qr_mpi_agree(comm, st));
    QR_CHECK(phase_assemble(&r));
    QR_CHECK(phase_remove_parts(&r));
done:
    *lock = r.lock; /* NULL once the parts are removed */
    return st;
}

qr_status qr_quantize_force(const qr_quantize_job *job, const qr_module *mods, size_t n_mods)
{
    qr_run r;
    memset(&r, 0, sizeof r);
    r.job = job;
    r.mods = (qr_module *)mods;
    r.n_mods = n_mods;
    return phase_force(&r); /* rank 0 is the caller: r.rank 0 */
}

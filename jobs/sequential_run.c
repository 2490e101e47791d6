/* sequential_run.c: capture and quantize as one job, layer by layer (jobs/sequential_run.h).
 *
 * qr_sequential_run reads as its list of phases:
 *   open      the model, the input, its windows and their fit / held-out split (every rank);
 *   plan      the layer slices (the plan of a quantize job of the same ranks and grid), the
 *             options that identify the result, the group communicator;
 *   lock      rank 0 takes the job lock (and with --force removes the parts);
 *   resume    every group checks the parts of its slice;
 *   load      each group its slice's weights (group 0 also the embedding) and its buffers;
 *   slices    group by group, in layer order (the others wait): the group runs its layers on the
 *             hidden states of its windows (lane j of a group of P Q ranks holds windows
 *             [j W / (P Q), (j + 1) W / (P Q)), as capture splits them), then passes them to the
 *             next group, lane to lane;
 *   assemble  the shared checkpoint from the parts, as quantize writes it, checked in full, and
 *             the parts removed (unless --keep-parts).
 *
 * One layer: for each module input in forward order, one pass of the lane's windows through the
 * layer accumulates that input's statistics (fitting windows, one window a batch, as quantize
 * reads them) and keeps its held-out rows; the lanes' statistics are merged on the group root in
 * lane order, the root quantizes the input's modules and writes their parts, reads each part back
 * and sends its effective weight Q + L·R to the group, and every rank puts it in place of the
 * float weight. A last pass moves the hidden states through the quantized layer. Modules whose
 * part exists are read, not recomputed; so a killed job resumes from its parts, and the hidden
 * states of the finished layers are recomputed (one pass per finished layer) rather than stored. */
#include "jobs/quantize_rtn.h"
#include "jobs/sequential_run.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "io/calib_holdout.h"
#include "io/fs.h"
#include "io/llama_load.h"
#include "io/lock.h"
#include "io/part_file.h"
#include "mpi/comm.h"
#include "mpi/plan.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/log.h"
#include "src/progress.h"
#include "src/stats.h"

#define QR_PATH_MAX 4096
#define TAG_PROGRESS 7201
#define TAG_STATES 7202
#define TAG_STATS 7203

typedef struct {
    MPI_Comm comm, gcomm; /* the job; this rank's group (ranks in lane order) */
    const qr_sequential_job *job;
    qr_quantize_stats *stats;
    int rank, size, gsize, group, lane, last_group;
    qr_llama_job lj;
    int32_t *ids;
    size_t n_ids;
    int64_t L, dim, n_windows, fit_windows, w0, w1; /* this lane's windows [w0, w1) */
    qr_module *mods;
    size_t n_mods;
    qr_kvlist opts;
    qr_plan *plan;
    const qr_plan_slice *slice;
    qr_lock *lock;
    char **part_paths; /* (n_mods) */
    uint8_t *done;     /* (n_mods) 1: a verified part exists */
    float *x;          /* (w1 - w0, L, dim) hidden states of the lane's windows */
    float *xin;        /* (L, dim) one window through a layer */
    int32_t *window;   /* (L) */
    qr_llama_state *state;
    qr_progress *bar;      /* rank 0 */
    double seconds_passes; /* forward passes of this rank */
} seq_run;

/* ---- open and plan -------------------------------------------------------------------------- */

/* The model, the input and its windows (capture's rule), the holdout (quantize's rule). */
static qr_status phase_open(seq_run *r)
{
    const qr_sequential_job *o = r->job;
    const qr_model_config *c;
    int64_t by_text, by_budget, ho;
    if (r->gsize < 1 || r->size % r->gsize != 0) {
        return qr_fail(QR_ERR_INPUT,
                       "--grid %dx%d: the job size %d is not a multiple of the grid's %d ranks",
                       o->q.grid[0], o->q.grid[1], r->size, r->gsize);
    }
    r->lj.bos = QR_TOKEN_BOS;
    QR_TRY(qr_model_open(o->q.model_path, &r->lj.model));
    c = qr_model_get_config(r->lj.model);
    r->lj.w.cfg = *c;
    r->L = o->seq_len;
    r->dim = c->dim;
    if (o->seq_len > c->max_seq_len) {
        return qr_fail(QR_ERR_INPUT,
                       "--seq-len: longer than the model's maximum context (expected at most %lld "
                       "for %s, found %lld)",
                       (long long)c->max_seq_len, o->q.model_path, (long long)o->seq_len);
    }
    QR_TRY(qr_modules_enumerate(c, &r->mods, &r->n_mods));
    QR_TRY(qr_llama_job_input(&r->lj, &o->input, &r->ids, &r->n_ids));
    by_text = (int64_t)(r->n_ids / (size_t)(o->seq_len - 1));
    by_budget = o->tokens / o->seq_len;
    r->n_windows = by_text < by_budget ? by_text : by_budget;
    ho = o->q.holdout > 0 ? (int64_t)ceil(o->q.holdout * (double)r->n_windows) : 0;
    r->fit_windows = r->n_windows - ho;
    if (r->n_windows < r->gsize || r->fit_windows < 1) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: %lld window(s) of %lld tokens (expected at least one per rank of a "
                       "group, %d, and one left to fit after --holdout %g; raise --tokens or use "
                       "a longer input)",
                       qr_input_source_path(&o->input), (long long)r->n_windows,
                       (long long)o->seq_len, r->gsize, o->q.holdout);
    }
    r->w0 = (int64_t)r->lane * r->n_windows / r->gsize;
    r->w1 = (int64_t)(r->lane + 1) * r->n_windows / r->gsize;
    return QR_OK;
}

/* The calibration's identity: FNV-1a over what defines the windows (a sequential result is not
 * a two-step one: its inputs come from the quantized layers). */
static void seq_identity(const seq_run *r, char *buf, size_t n)
{
    const qr_input_opts *in = &r->job->input;
    uint64_t h = 1469598103934665603ull;
    char line[2 * QR_PATH_MAX];
    snprintf(line, sizeof line, "sequential|%s|%s|%s|%lld|%lld|%d|%d",
             qr_model_identity(r->lj.model), qr_input_source_kind(in), qr_input_source_path(in),
             (long long)r->L, (long long)r->n_windows, in->text_path ? 1 : 0,
             in->text_path && in->unknown_to_zero ? 1 : 0);
    for (const char *p = line; *p; p++) {
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    }
    snprintf(buf, n, "seq-%016" PRIx64, h);
}

/* The plan's slices, the options, the part paths and the group communicator (collective). */
static qr_status phase_plan(seq_run *r)
{
    qr_status st = QR_OK;
    qr_plan_opts po;
    qr_dtype dt = QR_DTYPE_F32;
    int nd;
    int64_t shape[8];
    char ident[32];
    qr_plan_opts_default(&po);
    po.tokens = r->n_windows * r->L;
    po.held_tokens = (r->n_windows - r->fit_windows) * r->L;
    po.metric_rows = qr_plan_metric_rows(po.held_tokens, r->job->q.metric_rows);
    po.seq_len = r->L;
    po.method = r->job->q.method;
    po.n_ranks = r->size;
    po.grid[0] = r->job->q.grid[0];
    po.grid[1] = r->job->q.grid[1];
    if (qr_model_tensor_info(r->lj.model, "model.layers.0.self_attn.q_proj.weight", &dt, &nd,
                             shape) == QR_OK) {
        po.weight_bytes = (int64_t)qr_dtype_size(dt);
    }
    st = qr_plan_build(qr_model_get_config(r->lj.model), &po, &r->plan);
    if (st == QR_OK) {
        seq_identity(r, ident, sizeof ident);
        st = qr_quantize_options(&r->job->q, r->lj.model, ident, &r->opts);
    }
    if (st == QR_OK) {
        st = qr_calloc(&r->part_paths, r->n_mods, sizeof *r->part_paths, "part paths");
    }
    if (st == QR_OK) {
        st = qr_calloc(&r->done, r->n_mods, 1, "part flags");
    }
    for (size_t i = 0; st == QR_OK && i < r->n_mods; i++) {
        char path[QR_PATH_MAX];
        st = qr_part_path(r->job->q.out_path, r->mods[i].name, path, sizeof path);
        if (st == QR_OK && !(r->part_paths[i] = strdup(path))) {
            st = qr_fail(QR_ERR_NOMEM, "part paths: out of memory");
        }
    }
    QR_TRY(qr_mpi_agree(r->comm, st));
    r->slice = &r->plan->slices[r->group];
    for (int g = 0; g < r->plan->n_groups; g++) {
        if (r->plan->slices[g].layer_begin < r->plan->slices[g].layer_end) {
            r->last_group = g;
        }
    }
    return qr_mpi_check(MPI_Comm_split(r->comm, r->group, r->lane, &r->gcomm), "MPI_Comm_split");
}

/* lock: rank 0 takes the job lock and, with --force, removes this output's parts. */
static qr_status phase_lock(seq_run *r)
{
    char dir[QR_PATH_MAX], lock_path[QR_PATH_MAX + 8];
    bool took_over = false;
    if (r->rank != 0) {
        return QR_OK;
    }
    QR_TRY(qr_part_dir(r->job->q.out_path, dir, sizeof dir));
    snprintf(lock_path, sizeof lock_path, "%s/LOCK", dir);
    QR_TRY(qr_fs_mkdirs(dir));
    QR_TRY(qr_lock_acquire(lock_path, &r->lock, &took_over));
    return qr_quantize_force(&r->job->q, r->mods, r->n_mods);
}

/* resume: every rank checks the parts of its group's slice (each module's part must carry this
 * job's options). */
static qr_status phase_resume(seq_run *r)
{
    for (int64_t i = r->slice->module_begin; i < r->slice->module_end; i++) {
        if (qr_fs_exists(r->part_paths[i])) {
            QR_TRY(qr_quantize_check_part(r->part_paths[i], &r->mods[i], &r->opts));
            r->done[i] = 1;
        }
    }
    return QR_OK;
}

/* load: the slice's weights (group 0 also the embedding; nobody the head) and the buffers. */
static qr_status phase_load(seq_run *r)
{
    size_t n;
    int64_t lb = r->slice->layer_begin, le = r->slice->layer_end;
    if (lb >= le) {
        return QR_OK;
    }
    if (!qr_mul_size((size_t)(r->w1 - r->w0), (size_t)r->L * (size_t)r->dim, &n) ||
        (size_t)r->L * (size_t)r->dim > (size_t)INT32_MAX) {
        return qr_fail(QR_ERR_INPUT, "--seq-len %lld: the hidden states overflow", (long long)r->L);
    }
    /* the float32 copy is what the passes use (the reader drops the mapped source pages) */
    QR_TRY(qr_llama_load_slice(r->lj.model, lb, le, r->group == 0, false, &r->lj.w));
    QR_TRY(qr_malloc(&r->x, n, sizeof *r->x, "hidden states"));
    QR_TRY(qr_malloc(&r->xin, (size_t)(r->L * r->dim), sizeof *r->xin, "hidden states"));
    QR_TRY(qr_malloc(&r->window, (size_t)r->L, sizeof *r->window, "window"));
    return qr_llama_state_open_layers(&r->lj.w.cfg, r->L, r->L, lb, le, &r->state);
}

/* ---- one module input: a pass, the merged statistics, the held-out rows -------------------- */

typedef struct {
    qr_input_kind kind;
    qr_stats *stats;
    float *held;     /* (held rows of the lane, d) */
    int64_t held_at; /* rows written */
    bool fit;        /* the current window is a fitting one */
    qr_status st;
} pass_ctx;

static void on_input(void *vctx, int64_t layer, qr_input_kind kind, const float *X, int64_t n,
                     int64_t d)
{
    pass_ctx *c = vctx;
    (void)layer;
    if (kind != c->kind || c->st != QR_OK) {
        return;
    }
    if (c->fit) {
        c->st = qr_stats_add(c->stats, X, n);
    } else {
        memcpy(c->held + c->held_at * d, X, (size_t)(n * d) * sizeof *X);
        c->held_at += n;
    }
}

/* The lane's windows through layer l: into the statistics and held rows of input `kind` (ctx),
 * or, with ctx NULL, the hidden states themselves (in place). */
static qr_status layer_pass(seq_run *r, int64_t l, pass_ctx *ctx)
{
    qr_status st = QR_OK;
    size_t wn = (size_t)(r->L * r->dim);
    double t0 = qr_now();
    for (int64_t w = r->w0; w < r->w1 && st == QR_OK; w++) {
        float *xw = r->x + (size_t)(w - r->w0) * wn;
        if (!ctx) {
            st = qr_llama_forward_layers(&r->lj.w, r->state, xw, r->L, 0, l, l + 1, NULL, NULL);
            continue;
        }
        ctx->fit = w < r->fit_windows;
        if (ctx->kind == QR_INPUT_ATTN) {
            /* the layer's first input is its RMSNorm, computed as the pass computes it */
            qr_rmsnorm(xw, r->lj.w.layers[l].attn_norm, r->L, r->dim, r->lj.w.cfg.rms_eps, r->xin);
            on_input(ctx, l, QR_INPUT_ATTN, r->xin, r->L, r->dim);
            st = ctx->st;
            continue;
        }
        memcpy(r->xin, xw, wn * sizeof *xw);
        st = qr_llama_forward_layers(&r->lj.w, r->state, r->xin, r->L, 0, l, l + 1, on_input, ctx);
        if (st == QR_OK) {
            st = ctx->st;
        }
    }
    r->seconds_passes += qr_now() - t0;
    return st;
}

/* Send (lane > 0) or merge in lane order (root) the statistics. Collective over the group. */
static qr_status merge_stats(seq_run *r, qr_stats *s)
{
    qr_status st = QR_OK;
    qr_stats *t = NULL;
    int64_t d = s->d, counts[2];
    if (r->gsize == 1) {
        return QR_OK;
    }
    if ((uint64_t)d * (uint64_t)d > (uint64_t)INT32_MAX) {
        return qr_fail(QR_ERR_INPUT, "statistics: d = %lld is too wide to send", (long long)d);
    }
    if (r->lane > 0) {
        counts[0] = s->count;
        counts[1] = s->n_batches;
        MPI_Send(counts, 2, MPI_INT64_T, 0, TAG_STATS, r->gcomm);
        MPI_Send(s->G, (int)(d * d), MPI_DOUBLE, 0, TAG_STATS, r->gcomm);
        MPI_Send(s->max_abs, (int)d, MPI_DOUBLE, 0, TAG_STATS, r->gcomm);
        MPI_Send(s->sum_abs, (int)d, MPI_DOUBLE, 0, TAG_STATS, r->gcomm);
        MPI_Send(s->sum_sq, (int)d, MPI_DOUBLE, 0, TAG_STATS, r->gcomm);
        MPI_Send(s->batch_mean_abs_max, (int)d, MPI_DOUBLE, 0, TAG_STATS, r->gcomm);
        return QR_OK;
    }
    st = qr_stats_create(d, &t);
    for (int k = 1; k < r->gsize; k++) {
        MPI_Recv(counts, 2, MPI_INT64_T, k, TAG_STATS, r->gcomm, MPI_STATUS_IGNORE);
        /* a failed allocation still receives (into s's arrays, then discarded by the error) */
        qr_stats *dst = t ? t : s;
        MPI_Recv(dst->G, (int)(d * d), MPI_DOUBLE, k, TAG_STATS, r->gcomm, MPI_STATUS_IGNORE);
        MPI_Recv(dst->max_abs, (int)d, MPI_DOUBLE, k, TAG_STATS, r->gcomm, MPI_STATUS_IGNORE);
        MPI_Recv(dst->sum_abs, (int)d, MPI_DOUBLE, k, TAG_STATS, r->gcomm, MPI_STATUS_IGNORE);
        MPI_Recv(dst->sum_sq, (int)d, MPI_DOUBLE, k, TAG_STATS, r->gcomm, MPI_STATUS_IGNORE);
        MPI_Recv(dst->batch_mean_abs_max, (int)d, MPI_DOUBLE, k, TAG_STATS, r->gcomm,
                 MPI_STATUS_IGNORE);
        if (st == QR_OK) {
            t->count = counts[0];
            t->n_batches = counts[1];
            st = qr_stats_merge(s, t);
        }
    }
    qr_stats_free(&t);
    return st;
}

/* Gather the lanes' held-out rows on the root, in window order. Collective over the group. */
static qr_status gather_held(seq_run *r, float *held, int64_t mine, int64_t d, float *all)
{
    int *counts = NULL, *displs = NULL, n = (int)(mine * d);
    qr_status st = QR_OK;
    if (r->gsize == 1) {
        return QR_OK;
    }
    if (r->lane == 0) {
        st = qr_calloc(&counts, (size_t)r->gsize, sizeof *counts, "held-out rows");
        if (st == QR_OK) {
            st = qr_calloc(&displs, (size_t)r->gsize, sizeof *displs, "held-out rows");
        }
    }
    MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, r->gcomm);
    for (int k = 1; counts && displs && k < r->gsize; k++) {
        displs[k] = displs[k - 1] + counts[k - 1];
    }
    MPI_Gatherv(held, n, MPI_FLOAT, all, counts, displs, MPI_FLOAT, 0, r->gcomm);
    free(counts);
    free(displs);
    return st;
}

/* ---- one module: quantize (or read its part), the effective weight to the group ------------ */

typedef struct {
    int32_t end;
    char module[QR_MODULE_NAME_MAX];
    double out_err, seconds, weight;
    int64_t rank_used;
    int32_t resumed;
} seq_msg;

static void show(seq_run *r, const seq_msg *m)
{
    if (m->resumed) {
        qr_progress_step(r->bar, m->module, m->weight, "part exists, read back");
    } else {
        qr_progress_step(r->bar, m->module, m->weight, "%s rank %" PRId64 " out_err %.4g %.2fs",
                         qr_method_name(r->job->q.method.method), m->rank_used, m->out_err,
                         m->seconds);
    }
}

static void post(seq_run *r, const seq_msg *m)
{
    if (r->rank == 0) {
        show(r, m);
    } else if (r->lane == 0) {
        MPI_Send(m, (int)sizeof *m, MPI_BYTE, 0, TAG_PROGRESS, r->comm);
    }
}

/* Root: quantize module m from the statistics and held rows, and write its part. */
static qr_status quantize_module(seq_run *r, const qr_module *m, const qr_stats *s,
                                 const float *held, int64_t n_ho, double stats_seconds,
                                 const char *part, double *W, seq_msg *msg)
{
    qr_status st = QR_OK;
    char tensor[QR_MODULE_NAME_MAX + 16];
    qr_qlayer ql;
    qr_method_report rep;
    qr_metrics met;
    qr_kvlist ml = {0};
    qr_method_opts mo = r->job->q.method;
    qr_rtn_policy pol = {r->job->q.abits, r->job->q.fallback_rtn, r->job->q.worse_than_rtn,
                         r->job->q.hook_ctx};
    qr_rtn_cmp cmp; /* the RTN comparison (jobs/quantize_rtn.h), as quantize's */
    double t0 = qr_now();
    memset(&ql, 0, sizeof ql);
    memset(&rep, 0, sizeof rep);
    memset(&met, 0, sizeof met);
    snprintf(tensor, sizeof tensor, "%s.weight", m->name);
    QR_CHECK(qr_model_read_f64(r->lj.model, tensor, W, (size_t)(m->d_out * m->d_in)));
    mo.module_name = m->name;
    QR_CHECK(qr_method_run(&mo, W, m->d_out, m->d_in, s, &ql, &rep));
    QR_CHECK(qr_quantize_measure(&pol, &mo, W, m, s, held, n_ho, r->job->q.agroup, &ql, &met, &rep,
                                 &cmp));
    QR_CHECK(qr_quantize_part_metrics(&rep, &met, n_ho > 0, stats_seconds, &ml));
    QR_CHECK(qr_rtn_cmp_kv(&cmp, &ml));
    QR_CHECK(qr_part_write(part, m->name, &r->opts, &ml, &ql));
    msg->rank_used = rep.rank_used;
    msg->out_err = n_ho > 0 ? met.out_rel_err : NAN;
    msg->seconds = qr_now() - t0 + stats_seconds;
done:
    qr_kvlist_free(&ml);
    qr_qlayer_free(&ql);
    return st;
}

static qr_linear *module_linear(qr_llama_layer *ly, qr_module_kind k)
{
    qr_linear *by_kind[QR_MOD_KIND_COUNT] = {&ly->q,    &ly->k,  &ly->v,   &ly->o,
                                             &ly->gate, &ly->up, &ly->down};
    return by_kind[k];
}

/* Module i of the input group: the root quantizes it (or finds its part), reads the part back
 * (what the checkpoint will hold, also on a resumed run) and sends Q + L·R to the group, which
 * puts it in place of the float weight. Collective over the group. */
static qr_status module_step(seq_run *r, int64_t i, const qr_stats *s, const float *held,
                             int64_t n_ho, double stats_seconds)
{
    qr_status st = QR_OK;
    const qr_module *m = &r->mods[i];
    size_t n = (size_t)(m->d_out * m->d_in);
    double *W = NULL;
    float *weff = (float *)module_linear(&r->lj.w.layers[m->layer], m->kind)->W;
    qr_qlayer ql;
    seq_msg msg;
    memset(&ql, 0, sizeof ql);
    memset(&msg, 0, sizeof msg);
    snprintf(msg.module, sizeof msg.module, "%s", m->name);
    msg.weight = (double)m->d_out * (double)m->d_in;
    msg.resumed = r->done[i];
    if (r->lane == 0) {
        st = qr_malloc(&W, n, sizeof *W, m->name);
        if (st == QR_OK && !r->done[i]) {
            st = quantize_module(r, m, s, held, n_ho, stats_seconds, r->part_paths[i], W, &msg);
        }
        if (st == QR_OK) {
            st = qr_part_read(r->part_paths[i], NULL, &ql);
        }
        if (st == QR_OK) {
            st = qr_qlayer_effective_weight(&ql, W);
        }
        for (size_t k = 0; st == QR_OK && k < n; k++) {
            weff[k] = (float)W[k];
        }
    }
    if (r->gsize > 1) {
        qr_mpi_idle_barrier(r->gcomm); /* the lanes wait for the root's method asleep */
    }
    QR_CHECK(qr_mpi_agree(r->gcomm, st));
    if (r->gsize > 1) {
        MPI_Bcast(weff, (int)n, MPI_FLOAT, 0, r->gcomm);
    }
    if (r->lane == 0) {
        if (!r->done[i] && r->job->q.after_module) {
            r->job->q.after_module(r->job->q.hook_ctx, m->name);
        }
        if (r->stats && !r->done[i]) {
            r->stats->modules_done++;
        }
        post(r, &msg);
    }
    r->done[i] = 1;
done:
    free(W);
    qr_qlayer_free(&ql);
    return st;
}

/* A stop request reaches the ranks of a group at different moments: they agree on it. */
static qr_status check_stop(seq_run *r)
{
    int sig = r->job->q.stop ? (int)*r->job->q.stop : 0;
    MPI_Allreduce(MPI_IN_PLACE, &sig, 1, MPI_INT, MPI_MAX, r->gcomm);
    if (sig) {
        return qr_fail(QR_STOPPED, "stopped on signal %d; rerun the same command to resume", sig);
    }
    return QR_OK;
}

/* Keep quantize's sample of the held rows (n_ho, d) in place, in order (io/calib_holdout.h: at
 * most `cap` rows spread evenly); returns its row count. */
static int64_t sample_held(float *held, int64_t n_ho, int64_t cap, int64_t d)
{
    int64_t n = cap > 0 && cap < n_ho ? cap : n_ho;
    for (int64_t k = 0; k < n; k++) {
        int64_t src = qr_calib_sample_index(n_ho, n, k); /* >= k: moving down is safe */
        memmove(held + k * d, held + src * d, (size_t)d * sizeof *held);
    }
    return n;
}

/* Modules [i, j) share one input of layer l: a pass for its statistics and held rows (unless
 * every part exists), then each module. Collective over the group. */
static qr_status input_group(seq_run *r, int64_t l, int64_t i, int64_t j)
{
    qr_status st = QR_OK;
    int64_t d = r->mods[i].d_in, held_rows = 0, n_ho = (r->n_windows - r->fit_windows) * r->L;
    int64_t first_ho = r->w0 > r->fit_windows ? r->w0 : r->fit_windows;
    pass_ctx ctx;
    float *all = NULL;
    double t0 = qr_now();
    bool need = false;
    memset(&ctx, 0, sizeof ctx);
    for (int64_t k = i; k < j; k++) {
        need = need || !r->done[k];
    }
    QR_CHECK(check_stop(r));
    if (need) {
        held_rows = r->w1 > first_ho ? (r->w1 - first_ho) * r->L : 0;
        ctx.kind = r->mods[i].input;
        st = qr_stats_create(d, &ctx.stats);
        if (st == QR_OK) {
            st = qr_malloc(&ctx.held, (size_t)((held_rows > 0 ? held_rows : 1) * d), sizeof(float),
                           "held-out rows");
        }
        if (st == QR_OK && r->lane == 0 && r->gsize > 1) {
            st = qr_malloc(&all, (size_t)((n_ho > 0 ? n_ho : 1) * d), sizeof(float),
                           "held-out rows");
        }
        if (st == QR_OK) {
            st = layer_pass(r, l, &ctx);
        }
        QR_CHECK(qr_mpi_agree(r->gcomm, st));
        QR_CHECK(qr_mpi_agree(r->gcomm, merge_stats(r, ctx.stats)));
        QR_CHECK(qr_mpi_agree(r->gcomm, gather_held(r, ctx.held, held_rows, d, all)));
    }
    if (need && r->lane == 0) {
        n_ho = sample_held(all ? all : ctx.held, n_ho, r->job->q.metric_rows, d);
    }
    for (int64_t k = i; k < j; k++) {
        QR_CHECK(
            module_step(r, k, ctx.stats, all ? all : ctx.held, n_ho, k == i ? qr_now() - t0 : 0.0));
    }
done:
    qr_stats_free(&ctx.stats);
    free(ctx.held);
    free(all);
    return st;
}

/* This group's layers, in order, on its hidden states (group 0 embeds the windows first), then
 * the end message to rank 0. Collective over the group; returns the group's agreed status. */
static qr_status run_slice(seq_run *r)
{
    qr_status st = QR_OK;
    size_t wn = (size_t)(r->L * r->dim);
    seq_msg end;
    for (int64_t w = r->w0; st == QR_OK && r->group == 0 && w < r->w1; w++) {
        int64_t len = 0;
        qr_window_tokens(r->ids, r->n_ids, r->L, w, r->lj.bos, r->window, &len);
        st = qr_llama_embed(&r->lj.w, r->window, len, 0, r->x + (size_t)(w - r->w0) * wn);
    }
    st = qr_mpi_agree(r->gcomm, st);
    for (int64_t l = r->slice->layer_begin; st == QR_OK && l < r->slice->layer_end; l++) {
        int64_t i = l * QR_MOD_KIND_COUNT, e = i + QR_MOD_KIND_COUNT;
        while (st == QR_OK && i < e) {
            int64_t j = i + 1;
            while (j < e && r->mods[j].input == r->mods[i].input) {
                j++;
            }
            st = input_group(r, l, i, j);
            i = j;
        }
        /* the hidden states through the quantized layer (the model's last layer feeds no one) */
        if (st == QR_OK && (l + 1 < r->slice->layer_end || r->group < r->last_group)) {
            st = qr_mpi_agree(r->gcomm, layer_pass(r, l, NULL));
        }
    }
    memset(&end, 0, sizeof end);
    end.end = 1;
    if (r->rank != 0 && r->lane == 0) {
        MPI_Send(&end, (int)sizeof end, MPI_BYTE, 0, TAG_PROGRESS, r->comm);
    }
    return st;
}

/* Rank 0, while group g works: its progress lines, until its end message. */
static void listen(seq_run *r, int g)
{
    int root = r->plan->slices[g].rank_begin;
    for (;;) {
        seq_msg m;
        MPI_Request req;
        MPI_Irecv(&m, (int)sizeof m, MPI_BYTE, root, TAG_PROGRESS, r->comm, &req);
        qr_mpi_idle_wait(&req);
        if (m.end) {
            return;
        }
        show(r, &m);
    }
}

/* Group g's hidden states to group g + 1, lane to lane, window by window. */
static void pass_on(seq_run *r, int g)
{
    size_t wn = (size_t)(r->L * r->dim);
    for (int64_t w = r->w0; w < r->w1 && (r->group == g || r->group == g + 1); w++) {
        float *xw = r->x + (size_t)(w - r->w0) * wn;
        if (r->group == g) {
            MPI_Send(xw, (int)wn, MPI_FLOAT, r->rank + r->gsize, TAG_STATES, r->comm);
        } else {
            MPI_Recv(xw, (int)wn, MPI_FLOAT, r->rank - r->gsize, TAG_STATES, r->comm,
                     MPI_STATUS_IGNORE);
        }
    }
}

/* slices: group after group (collective; returns the agreed status). */
static qr_status phase_slices(seq_run *r)
{
    qr_status st = QR_OK;
    int64_t resumed = 0, mine = 0;
    double weight = 0, mine_w = 0;
    for (int64_t i = r->slice->module_begin; i < r->slice->module_end && r->lane == 0; i++) {
        mine++;
        mine_w += (double)r->mods[i].d_out * (double)r->mods[i].d_in;
        resumed += r->done[i];
    }
    MPI_Allreduce(MPI_IN_PLACE, &resumed, 1, MPI_INT64_T, MPI_SUM, r->comm);
    MPI_Allreduce(MPI_IN_PLACE, &mine, 1, MPI_INT64_T, MPI_SUM, r->comm);
    MPI_Allreduce(&mine_w, &weight, 1, MPI_DOUBLE, MPI_SUM, r->comm);
    if (r->rank == 0) {
        QR_INFO("quantize: sequential: %zu modules, %d layer slice(s) over groups of %d rank(s), "
                "%lld windows of %lld tokens (%lld fit, %lld held out); %" PRId64
                " module(s) already done (verified parts)",
                r->n_mods, r->last_group + 1, r->gsize, (long long)r->n_windows, (long long)r->L,
                (long long)r->fit_windows, (long long)(r->n_windows - r->fit_windows), resumed);
        r->bar = qr_progress_begin("quantize", mine, "modules");
        qr_progress_set_total_weight(r->bar, weight);
    }
    for (int g = 0; g <= r->last_group && st == QR_OK; g++) {
        if (r->group == g) {
            st = run_slice(r);
        } else if (r->rank == 0) {
            listen(r, g);
        }
        qr_mpi_idle_barrier(r->comm);
        st = qr_mpi_agree(r->comm, st);
        if (st == QR_OK && g < r->last_group) {
            pass_on(r, g);
        }
    }
    if (r->rank == 0) {
        qr_progress_end(&r->bar, "quantize: sequential: layers done");
    }
    if (st == QR_STOPPED && r->rank == 0) {
        QR_INFO("quantize: %s", qr_errmsg());
    }
    return st;
}

/* Rank 0 prints the job's figures: the largest peak resident memory of any rank and what one
 * rank's hidden states take. Collective. */
static void report_memory(seq_run *r, double t0)
{
    struct rusage ru;
    double mine, peak = 0, states = (double)(r->w1 - r->w0) * (double)(r->L * r->dim) * 4.0;
    double states_max = 0, passes = 0;
    getrusage(RUSAGE_SELF, &ru);
    mine = (double)ru.ru_maxrss * 1024.0;
    MPI_Allreduce(&mine, &peak, 1, MPI_DOUBLE, MPI_MAX, r->comm);
    MPI_Allreduce(&states, &states_max, 1, MPI_DOUBLE, MPI_MAX, r->comm);
    MPI_Allreduce(&r->seconds_passes, &passes, 1, MPI_DOUBLE, MPI_SUM, r->comm);
    if (r->stats) {
        r->stats->peak_rss_bytes = (uint64_t)peak;
    }
    if (r->rank == 0) {
        QR_INFO("quantize: sequential: %.1f s, of which forward passes %.1f s (summed over the "
                "ranks); peak memory per rank %.1f MiB (max over ranks), hidden states %.1f MiB "
                "per rank",
                qr_now() - t0, passes, peak / 1048576.0, states_max / 1048576.0);
    }
}

static void phase_close(seq_run *r)
{
    if (r->lock) {
        qr_lock_release(&r->lock);
    }
    for (size_t i = 0; r->part_paths && i < r->n_mods; i++) {
        free(r->part_paths[i]);
    }
    free(r->part_paths);
    free(r->done);
    free(r->mods);
    free(r->x);
    free(r->xin);
    free(r->window);
    free(r->ids);
    qr_llama_state_close(&r->state);
    qr_kvlist_free(&r->opts);
    qr_plan_free(&r->plan);
    if (r->gcomm != MPI_COMM_NULL) {
        MPI_Comm_free(&r->gcomm);
    }
    qr_llama_job_close(&r->lj);
}

qr_status qr_sequential_run(MPI_Comm comm, const qr_sequential_job *job, qr_quantize_stats *stats)
{
    qr_status st = QR_OK;
    seq_run r;
    double t0 = qr_now();
    memset(&r, 0, sizeof r);
    r.comm = comm;
    r.gcomm = MPI_COMM_NULL;
    r.job = job;
    r.stats = stats;
    r.rank = qr_mpi_rank(comm);
    r.size = qr_mpi_size(comm);
    r.gsize = job->q.grid[0] * job->q.grid[1];
    r.group = r.gsize > 0 ? r.rank / r.gsize : 0;
    r.lane = r.gsize > 0 ? r.rank % r.gsize : 0;
    if (stats) {
        memset(stats, 0, sizeof *stats);
    }
    QR_CHECK(qr_mpi_agree(comm, phase_open(&r)));
    qr_model_share_identity(comm, r.lj.model);
    QR_CHECK(phase_plan(&r));
    QR_CHECK(qr_mpi_agree(comm, phase_lock(&r)));
    QR_CHECK(qr_mpi_agree(comm, phase_resume(&r)));
    QR_CHECK(qr_mpi_agree(comm, phase_load(&r)));
    QR_CHECK(phase_slices(&r));
    if (stats) {
        stats->seconds_modules = qr_now() - t0;
    }
    QR_CHECK(qr_quantize_assemble(comm, &job->q, r.lj.model, r.mods, r.n_mods, &r.opts,
                                  r.part_paths, &r.lock, stats));
    if (r.rank == 0 && qr_rtn_summary_print(job->q.out_path) != QR_OK) {
        QR_WARN("quantize: cannot list the modules worse than RTN: %s", qr_errmsg());
    }
    report_memory(&r, t0);
done:
    phase_close(&r);
    if (stats) {
        stats->seconds_total = qr_now() - t0;
    }
    return st;
}

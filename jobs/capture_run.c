/* capture_run.c: capture pipelined over layer slices (see capture_run.h, docs/calibration.md).
 *
 * Ranks form groups of P Q consecutive ranks (group g = rank / (P Q), lane j = rank % (P Q)); group
 * g holds layers [a_g, b_g) of the plan. The W windows are split over the lanes: lane j captures
 * windows [j W / (P Q), (j + 1) W / (P Q)) in every group, so the ranks of lane j form a chain
 * j, j + PQ, j + 2 PQ, ... along which a lane's hidden states flow: group 0 embeds the tokens, each
 * group runs its layers on a micro-batch and sends the result to the next group. Messages are
 * double-buffered: a group receives micro-batch b + 1 and sends b - 1 while it computes b.
 *
 * Errors do not break the message protocol (a rank that failed keeps receiving and forwarding
 * without computing, so no neighbour hangs); a stop request is seen by group 0, which sends an
 * end-of-stream message instead of the remaining micro-batches. Every rank agrees on one status at
 * the end. Each shard is written as .tmp and renamed when whole: a complete shard of the same
 * capture is kept by a rerun, which recomputes only what a missing shard needs. */
#include "jobs/capture_run.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "io/calib_shard.h"
#include "io/fs.h"
#include "io/llama_load.h"
#include "jobs/llama_job.h"
#include "jobs/text_mix.h"
#include "mpi/comm.h"
#include "mpi/plan.h"
#include "src/metrics.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/log.h"
#include "src/progress.h"

/* Message tags between the groups of a lane: a micro-batch of hidden states, or the end of the
 * stream after a stop request. */
#define TAG_BATCH 71
#define TAG_END 72

void qr_capture_job_default(qr_capture_job *job)
{
    memset(job, 0, sizeof *job);
    job->seq_len = 256;
    job->tokens = 65536;
    job->dtype = QR_DTYPE_F32;
    job->grid[0] = job->grid[1] = 1;
    job->micro_batch = 1;
}

typedef struct {
    MPI_Comm comm;
    const qr_capture_job *job;
    int rank, size, gsize, group, lane, n_groups, last_group; /* last_group: last with layers */
    qr_llama_job lj;
    qr_plan *plan;
    int32_t *ids;
    size_t n_ids;
    int64_t n_windows, w0, w1; /* all windows; this lane's [w0, w1) */
    int64_t layer_begin, layer_end;
    qr_calib_info info; /* this rank's shard */
    char shard[QR_CALIB_STR_MAX];
    int *done;  /* (size) 1: that rank's shard is complete from an earlier run */
    bool need;  /* this rank must compute: its shard or a later group's of the lane is missing */
    bool write; /* this rank writes its shard */
} cap_run;

/* The plan's slices for this job: the options a quantize job of the same ranks and grid plans
 * with by default (mpi/plan.h: default method and holdout), with the capture's tokens and windows.
 */
static qr_status make_plan(cap_run *r)
{
    qr_plan_opts po;
    const qr_model_config *c = qr_model_get_config(r->lj.model);
    qr_dtype dt = QR_DTYPE_F32;
    int nd;
    int64_t shape[8];
    qr_plan_opts_default(&po);
    po.tokens = r->n_windows * r->job->seq_len;
    po.seq_len = r->job->seq_len;
    po.held_tokens = qr_plan_held_tokens(po.tokens, po.seq_len, QR_HOLDOUT_DEFAULT);
    po.metric_rows = qr_plan_metric_rows(po.held_tokens, QR_METRIC_ROWS_DEFAULT);
    po.n_ranks = r->size;
    po.grid[0] = r->job->grid[0];
    po.grid[1] = r->job->grid[1];
    if (qr_model_tensor_info(r->lj.model, "model.layers.0.self_attn.q_proj.weight", &dt, &nd,
                             shape) == QR_OK) {
        po.weight_bytes = (int64_t)qr_dtype_size(dt);
    }
    if (qr_plan_build(c, &po, &r->plan) != QR_OK) {
        /* The default method's options do not fit this model's shapes (a rank above a tiny
         * module's width): plain rounding has no such option, and a Llama layer costs the same
         * under every method, so the slices are the same. */
        qr_clear_error();
        qr_method_opts_default(&po.method, QR_METHOD_RTN);
        QR_TRY(qr_plan_build(c, &po, &r->plan));
    }
    r->n_groups = r->plan->n_groups;
    r->last_group = 0;
    for (int g = 0; g < r->n_groups; g++) {
        if (r->plan->slices[g].layer_begin < r->plan->slices[g].layer_end) {
            r->last_group = g;
        }
    }
    r->layer_begin = r->plan->slices[r->group].layer_begin;
    r->layer_end = r->plan->slices[r->group].layer_end;
    return QR_OK;
}

/* open: the model's config, the input and the windows (every rank reads the same input). */
static qr_status phase_input(cap_run *r)
{
    const qr_capture_job *o = r->job;
    const qr_model_config *c;
    int64_t by_text, by_budget;
    r->lj.bos = QR_TOKEN_BOS; /* the tokenizer's when it has one (qr_llama_job_input) */
    QR_TRY(qr_model_open(o->model_path, &r->lj.model));
    c = qr_model_get_config(r->lj.model);
    r->lj.w.cfg = *c; /* the input reader needs the vocabulary; weights come after the plan */
    if (o->seq_len > c->max_seq_len) {
        return qr_fail(QR_ERR_INPUT,
                       "--seq-len: longer than the model's maximum context (expected at most %lld "
                       "for %s, found %lld)",
                       (long long)c->max_seq_len, o->model_path, (long long)o->seq_len);
    }
    if (o->input.n_texts > 1 || o->input.weighted) {
        QR_TRY(qr_text_mix_read(&r->lj, &o->input, o->seq_len, o->tokens / o->seq_len, &r->ids,
                                &r->n_ids, NULL));
    } else {
        QR_TRY(qr_llama_job_input(&r->lj, &o->input, &r->ids, &r->n_ids));
    }
    by_text = (int64_t)(r->n_ids / (size_t)(o->seq_len - 1));
    by_budget = o->tokens / o->seq_len;
    r->n_windows = by_text < by_budget ? by_text : by_budget;
    if (r->n_windows < 1) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: not enough for one window (expected at least %lld tokens after BOS and "
                       "--tokens >= --seq-len %lld; found %zu tokens, --tokens %lld)",
                       qr_input_source_path(&o->input), (long long)o->seq_len - 1,
                       (long long)o->seq_len, r->n_ids, (long long)o->tokens);
    }
    if (r->n_windows < r->gsize) {
        return qr_fail(QR_ERR_INPUT,
                       "capture: %lld window(s) for %d ranks per group (expected at least one "
                       "window per rank of a group; raise --tokens or use fewer ranks per group)",
                       (long long)r->n_windows, r->gsize);
    }
    QR_TRY(make_plan(r));
    r->w0 = (int64_t)r->lane * r->n_windows / r->gsize;
    r->w1 = (int64_t)(r->lane + 1) * r->n_windows / r->gsize;
    return QR_OK;
}

static void shard_info(const cap_run *r, qr_calib_info *info)
{
    const qr_capture_job *o = r->job;
    const qr_model_config *c = qr_model_get_config(r->lj.model);
    memset(info, 0, sizeof *info);
    info->version = QR_CALIB_VERSION;
    snprintf(info->model_identity, sizeof info->model_identity, "%s",
             qr_model_identity(r->lj.model));
    snprintf(info->model_path, sizeof info->model_path, "%s", o->model_path);
    snprintf(info->source, sizeof info->source, "%s", qr_input_source_path(&o->input));
    if (o->input.n_texts > 1 || o->input.weighted) {
        qr_text_mix_describe(&o->input, info->source, sizeof info->source);
    }
    snprintf(info->source_kind, sizeof info->source_kind, "%s", qr_input_source_kind(&o->input));
    info->dtype = o->dtype;
    info->dim = c->dim;
    info->hidden_dim = c->hidden_dim;
    info->q_dim = c->n_heads * c->head_dim;
    info->n_layers = c->n_layers;
    info->vocab_size = c->vocab_size;
    info->seq_len = o->seq_len;
    info->n_windows = r->w1 - r->w0;
    info->n_tokens = (r->w1 - r->w0) * o->seq_len;
    info->window_first = r->w0;
    info->total_windows = r->n_windows;
    info->shard_index = r->lane;
    info->shard_count = r->gsize;
    info->add_dummy_prefix = o->input.text_path ? 1 : 0;
    info->unknown_to_zero = o->input.text_path && o->input.unknown_to_zero ? 1 : 0;
    info->layer_begin = r->layer_begin;
    info->layer_end = r->layer_end;
}

static bool same_info(const qr_calib_info *a, const qr_calib_info *b)
{
    return a->version == b->version && strcmp(a->model_identity, b->model_identity) == 0 &&
           strcmp(a->model_path, b->model_path) == 0 && strcmp(a->source, b->source) == 0 &&
           strcmp(a->source_kind, b->source_kind) == 0 && a->dtype == b->dtype &&
           a->dim == b->dim && a->hidden_dim == b->hidden_dim && a->q_dim == b->q_dim &&
           a->n_layers == b->n_layers && a->vocab_size == b->vocab_size &&
           a->seq_len == b->seq_len && a->n_tokens == b->n_tokens && a->n_windows == b->n_windows &&
           a->window_first == b->window_first && a->total_windows == b->total_windows &&
           a->shard_index == b->shard_index && a->shard_count == b->shard_count &&
           a->add_dummy_prefix == b->add_dummy_prefix && a->unknown_to_zero == b->unknown_to_zero &&
           a->layer_begin == b->layer_begin && a->layer_end == b->layer_end;
}

/* folder: rank 0 creates it and refuses shards of another model; every rank with layers looks
 * for its own shard, complete from an earlier run of the same capture. */
static qr_status phase_folder(cap_run *r)
{
    qr_status st = QR_OK;
    qr_calib_shard *old = NULL;
    int mine = 0;
    if (r->rank == 0) {
        size_t found = 0;
        st = qr_fs_mkdirs(r->job->out_dir);
        if (st == QR_OK) {
            st = qr_calib_dir_check(r->job->out_dir, qr_model_identity(r->lj.model), &found);
        }
    }
    QR_TRY(qr_mpi_agree(r->comm, st));
    if (r->layer_begin < r->layer_end) {
        shard_info(r, &r->info);
        QR_TRY(qr_calib_slice_shard_name(r->shard, sizeof r->shard, r->job->out_dir, r->layer_begin,
                                         r->layer_end, r->info.n_layers, r->lane));
        if (qr_fs_exists(r->shard) && qr_calib_shard_open(r->shard, &old) == QR_OK) {
            mine = same_info(qr_calib_shard_info(old), &r->info) ? 1 : 0;
            qr_calib_shard_close(&old);
        }
        qr_clear_error();
    }
    QR_TRY(qr_calloc(&r->done, (size_t)r->size, sizeof *r->done, "capture shards"));
    MPI_Allgather(&mine, 1, MPI_INT, r->done, 1, MPI_INT, r->comm);
    /* need: this shard or a later group's shard of the lane is missing */
    r->need = false;
    for (int g = r->last_group; g >= r->group; g--) {
        if (!r->done[g * r->gsize + r->lane]) {
            r->need = true;
        }
    }
    r->write = r->layer_begin < r->layer_end && !mine;
    if (r->rank == 0) {
        /* Everything but the complete shards of this capture goes: other layouts (rank counts,
         * slices), other windows or options, unfinished .tmp files. */
        char **keep = NULL;
        size_t n_keep = 0;
        st = qr_calloc(&keep, (size_t)r->size, sizeof *keep, "capture shards");
        for (int k = 0; st == QR_OK && k < r->size; k++) {
            const qr_plan_slice *sl = &r->plan->slices[k / r->gsize];
            if (!r->done[k]) {
                continue;
            }
            st = qr_malloc(&keep[n_keep], QR_CALIB_STR_MAX, 1, "shard name");
            if (st == QR_OK) {
                st = qr_calib_slice_shard_name(keep[n_keep], QR_CALIB_STR_MAX, r->job->out_dir,
                                               sl->layer_begin, sl->layer_end, r->plan->n_layers,
                                               k % r->gsize);
                n_keep++;
            }
        }
        if (st == QR_OK) {
            st = qr_calib_dir_clear_except(r->job->out_dir, (const char *const *)keep, n_keep);
        }
        if (st == QR_OK && n_keep > 0) {
            QR_INFO("capture: %zu shard(s) of the same capture already complete in %s, kept",
                    n_keep, r->job->out_dir);
        }
        for (size_t i = 0; keep && i < n_keep; i++) {
            free(keep[i]);
        }
        free(keep);
    }
    return st;
}

/* load: this group's slice of the weights (the first group also the embedding; no head). */
static qr_status phase_load(cap_run *r)
{
    if (!r->need) {
        return QR_OK;
    }
    return qr_llama_load_slice(r->lj.model, r->layer_begin, r->layer_end, r->group == 0, false,
                               &r->lj.w);
}

/* The hook: every layer input of a window goes to its dataset at the window's rows. */
typedef struct {
    qr_calib_writer *w;
    int64_t row0;
    qr_status st; /* the first write failure; later inputs are skipped */
} hook_ctx;

static void on_input(void *vctx, int64_t layer, qr_input_kind kind, const float *X, int64_t n,
                     int64_t d)
{
    hook_ctx *ctx = vctx;
    if (ctx->st == QR_OK) {
        ctx->st = qr_calib_writer_put(ctx->w, layer, kind, ctx->row0, X, n, d);
    }
}

typedef struct {
    double compute, fill, wait;
    int64_t batches;
    uint64_t bytes;
    bool stopped;
} pipe_figures;

static qr_status wait_req(MPI_Request *req, MPI_Status *status)
{
    MPI_Status ignored;
    if (*req == MPI_REQUEST_NULL) {
        return QR_OK;
    }
    return qr_mpi_check(MPI_Wait(req, status ? status : &ignored), "MPI_Wait");
}

/* What a computing rank holds besides its weights: two micro-batches of hidden states, the
 * forward-pass state of its layers, one window's token ids. */
typedef struct {
    float *buf[2]; /* (micro_batch, seq_len, dim) each */
    size_t batch_floats;
    int32_t *window; /* (seq_len) */
    qr_llama_state *state;
} pipe_buffers;

static void buffers_free(pipe_buffers *pb)
{
    qr_llama_state_close(&pb->state);
    free(pb->window);
    free(pb->buf[0]);
    free(pb->buf[1]);
    memset(pb, 0, sizeof *pb);
}

/* buffers: allocated before the message protocol starts (every rank agrees that they exist), so
 * that a failed allocation cannot leave a neighbour waiting. */
static qr_status phase_buffers(cap_run *r, pipe_buffers *pb)
{
    int64_t L = r->job->seq_len, dim = qr_model_get_config(r->lj.model)->dim;
    int64_t mb = r->job->micro_batch;
    memset(pb, 0, sizeof *pb);
    if (!r->need) {
        return QR_OK;
    }
    if (!qr_mul_size((size_t)mb, (size_t)(L * dim), &pb->batch_floats) ||
        pb->batch_floats > (size_t)INT32_MAX) {
        return qr_fail(QR_ERR_INPUT,
                       "--micro-batch %lld: a message of %lld x %lld x %lld floats is beyond MPI's "
                       "int count (expected at most %d; use a smaller micro-batch)",
                       (long long)mb, (long long)mb, (long long)L, (long long)dim, INT32_MAX);
    }
    QR_TRY(qr_malloc(&pb->buf[0], pb->batch_floats, sizeof(float), "capture micro-batch"));
    QR_TRY(qr_malloc(&pb->buf[1], pb->batch_floats, sizeof(float), "capture micro-batch"));
    QR_TRY(qr_malloc(&pb->window, (size_t)L, sizeof *pb->window, "capture window"));
    return qr_llama_state_open_layers(&r->lj.w.cfg, L, L, r->layer_begin, r->layer_end, &pb->state);
}

/* The lane's micro-batches through this rank. Returns this rank's status; the message protocol
 * runs to its end whatever happens, so that no neighbour waits for ever. */
/* This group's layers on `count` windows from `first` whose hidden states are in x (count, L,
 * dim), in place; the inputs of its modules go to the writer. The first group embeds them. */
static qr_status compute_batch(cap_run *r, pipe_buffers *pb, qr_calib_writer *writer, float *x,
                               int64_t first, int64_t count)
{
    qr_status st = QR_OK;
    int64_t L = r->job->seq_len, dim = qr_model_get_config(r->lj.model)->dim;
    for (int64_t i = 0; i < count && st == QR_OK; i++) {
        float *xi = x + i * L * dim; /* (L, dim) */
        int64_t len = 0, w = first + i;
        hook_ctx ctx = {writer, (w - r->w0) * L, QR_OK};
        qr_window_tokens(r->ids, r->n_ids, L, w, r->lj.bos, pb->window, &len);
        if (r->group == 0) {
            st = qr_llama_embed(&r->lj.w, pb->window, len, 0, xi);
        }
        if (st == QR_OK) {
            st = qr_llama_forward_layers(&r->lj.w, pb->state, xi, len, 0, r->layer_begin,
                                         r->layer_end, writer ? on_input : NULL, &ctx);
        }
        if (st == QR_OK) {
            st = ctx.st;
        }
        if (st == QR_OK && writer) {
            st = qr_calib_writer_put_tokens(writer, ctx.row0, pb->window, len);
        }
    }
    return st;
}

/* Rank 0's progress after block b of nb (windows first .. first + count - 1, mb a block): a step
 * every `every` blocks, the bar moved within a step. */
static void show_block(qr_progress *prog, int64_t b, int64_t nb, int64_t every, int64_t mb,
                       int64_t first, int64_t count)
{
    if ((b + 1) % every == 0 || b + 1 == nb) {
        qr_progress_step(prog, "windows", (double)(b % every + 1), "windows %lld..%lld of lane 0",
                         (long long)(first - (b % every) * mb), (long long)(first + count - 1));
    } else {
        char at[64];
        snprintf(at, sizeof at, "block %lld/%lld", (long long)(b + 1), (long long)nb);
        qr_progress_stage(prog, "windows", at, (double)(b % every + 1) / (double)every);
    }
}

static qr_status pipeline(cap_run *r, pipe_buffers *pb, qr_calib_writer *writer, pipe_figures *fig)
{
    const qr_capture_job *o = r->job;
    qr_status st = QR_OK;
    int64_t L = o->seq_len, dim = qr_model_get_config(r->lj.model)->dim;
    int64_t mb = o->micro_batch, nw = r->w1 - r->w0, nb = (nw + mb - 1) / mb;
    size_t batch_floats = pb->batch_floats;
    float **buf = pb->buf;
    MPI_Request send[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    MPI_Request recv[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    int prev = r->rank - r->gsize, next = r->rank + r->gsize;
    bool has_prev = r->group > 0, has_next = r->group < r->last_group;
    bool next_needs = false;
    bool ended = false;
    qr_progress *prog = NULL;
    int64_t every = (nb + 19) / 20;
    memset(fig, 0, sizeof *fig);
    if (!r->need) {
        return QR_OK;
    }
    /* the next group needs our output when its shard, or a later one of the lane, is missing */
    for (int g = r->group + 1; has_next && g <= r->last_group; g++) {
        if (!r->done[g * r->gsize + r->lane]) {
            next_needs = true;
        }
    }
    if (r->rank == 0) {
        /* One step per `every` blocks, weighed by its blocks; the total adds the pipeline's drain
         * (each later group finishes one block after the one before it), so the ETA counts the
         * blocks of every group, not only group 0's. */
        prog = qr_progress_begin("capture", (nb + every - 1) / every, "micro-batch blocks");
        qr_progress_set_total_weight(prog, (double)(nb + r->last_group));
    }
    if (has_prev && nb > 0) {
        MPI_Irecv(buf[0], (int)batch_floats, MPI_FLOAT, prev, MPI_ANY_TAG, r->comm, &recv[0]);
    }
    for (int64_t b = 0; b < nb && !ended; b++) {
        int slot = (int)(b % 2);
        int64_t first = r->w0 + b * mb, count = nw - b * mb < mb ? nw - b * mb : mb;
        double t = qr_now();
        if (has_prev) {
            MPI_Status ms;
            qr_status ws = wait_req(&recv[slot], &ms);
            double dt = qr_now() - t;
            if (b == 0) {
                fig->fill = dt;
            } else {
                fig->wait += dt;
            }
            if (ws != QR_OK && st == QR_OK) {
                st = ws;
            }
            if (ws == QR_OK && ms.MPI_TAG == TAG_END && st == QR_OK) {
                st = qr_fail(QR_STOPPED,
                             "capture: stopped before window %lld (group 0 was asked to stop); "
                             "run the same command again to finish (complete shards are kept)",
                             (long long)first);
            }
            if (ws != QR_OK || ms.MPI_TAG == TAG_END) {
                ended = true;
                break;
            }
            if (b + 1 < nb) {
                if (wait_req(&send[1 - slot], NULL) != QR_OK && st == QR_OK) {
                    st = QR_ERR_INTERNAL;
                }
                MPI_Irecv(buf[1 - slot], (int)batch_floats, MPI_FLOAT, prev, MPI_ANY_TAG, r->comm,
                          &recv[1 - slot]);
            }
        } else {
            if (wait_req(&send[slot], NULL) != QR_OK && st == QR_OK) {
                st = QR_ERR_INTERNAL;
            }
            if (o->stop && *o->stop) {
                if (st == QR_OK) {
                    st = qr_fail(QR_STOPPED,
                                 "capture: stopped by signal %d before window %lld; run the same "
                                 "command again to finish (complete shards are kept)",
                                 (int)*o->stop, (long long)first);
                }
                ended = true;
                break;
            }
        }
        t = qr_now();
        if (st == QR_OK) {
            st = compute_batch(r, pb, writer, buf[slot], first, count);
        }
        fig->compute += qr_now() - t;
        if (next_needs) {
            MPI_Isend(buf[slot], (int)(count * L * dim), MPI_FLOAT, next, TAG_BATCH, r->comm,
                      &send[slot]);
        }
        fig->batches++;
        if (prog) {
            show_block(prog, b, nb, every, mb, first, count);
        }
    }
    if (ended && next_needs) {
        /* the end of the stream goes on, so that every later group stops too */
        for (int k = 0; k < 2; k++) {
            wait_req(&send[k], NULL);
        }
        MPI_Send(buf[0], 0, MPI_FLOAT, next, TAG_END, r->comm);
    }
    fig->stopped = ended;
    for (int k = 0; k < 2; k++) {
        wait_req(&send[k], NULL);
        if (recv[k] != MPI_REQUEST_NULL) {
            MPI_Cancel(&recv[k]);
            wait_req(&recv[k], NULL);
        }
    }
    qr_progress_end(&prog, "capture: lane 0 of group 0 done");
    return st;
}

/* Rank 0 prints the capture's figures, reduced over the ranks, and fills stats. Collective. */
static void report(const cap_run *r, double elapsed, double compute, double wait, double fill,
                   double rss, int written, int kept, uint64_t bytes, qr_capture_stats *stats)
{
    const qr_capture_job *job = r->job;
    double peak = 0;
    {
        double in[4] = {elapsed, compute, wait, rss}, out[4];
        int counts[2] = {written, kept}, sums[2];
        uint64_t all_bytes = 0;
        double fill_all = 0;
        MPI_Reduce(in, out, 4, MPI_DOUBLE, MPI_MAX, 0, r->comm);
        MPI_Reduce(counts, sums, 2, MPI_INT, MPI_SUM, 0, r->comm);
        MPI_Reduce(&bytes, &all_bytes, 1, MPI_UINT64_T, MPI_SUM, 0, r->comm);
        MPI_Reduce(&fill, &fill_all, 1, MPI_DOUBLE, MPI_MAX, 0, r->comm);
        if (r->rank == 0) {
            double tokens = (double)(r->n_windows * job->seq_len);
            int64_t nb = ((r->n_windows / r->gsize) + job->micro_batch - 1) / job->micro_batch;
            peak = out[3];
            QR_INFO("capture: %lld windows x %lld = %.0f tokens in %.2f s: %.0f tokens/s, %.1f MB "
                    "written to %d shard(s) (%d kept) in %s",
                    (long long)r->n_windows, (long long)job->seq_len, tokens, out[0],
                    tokens / out[0], (double)all_bytes / 1e6, sums[0], sums[1], job->out_dir);
            QR_INFO("capture: pipeline of %d group(s), %lld micro-batch(es) per lane: compute "
                    "%.2f s, fill %.2f s, later waits %.2f s (max over ranks); peak memory "
                    "per rank %.1f MiB",
                    r->last_group + 1, (long long)nb, out[1], fill_all, out[2], peak / 1048576.0);
            if (stats) {
                stats->seconds_total = out[0];
                stats->seconds_compute = out[1];
                stats->seconds_wait = out[2];
                stats->seconds_fill = fill_all;
                stats->n_groups = r->last_group + 1;
                stats->micro_batches = nb;
                stats->shards_written = sums[0];
                stats->shards_kept = sums[1];
                stats->bytes_written = all_bytes;
                stats->peak_rss_bytes = (uint64_t)peak;
            }
        }
    }
}

qr_status qr_capture_run(MPI_Comm comm, const qr_capture_job *job, qr_capture_stats *stats)
{
    qr_status st = QR_OK;
    cap_run r;
    qr_calib_writer *writer = NULL;
    pipe_buffers pb;
    pipe_figures fig;
    double t0 = qr_now(), elapsed, compute, wait, fill = 0;
    int written, kept, killer = 0;
    uint64_t bytes = 0;
    struct rusage ru;
    double rss;
    memset(&r, 0, sizeof r);
    memset(&pb, 0, sizeof pb);
    memset(&fig, 0, sizeof fig);
    if (stats) {
        memset(stats, 0, sizeof *stats);
    }
    r.comm = comm;
    r.job = job;
    r.rank = qr_mpi_rank(comm);
    r.size = qr_mpi_size(comm);
    r.gsize = job->grid[0] * job->grid[1];
    if (r.gsize < 1 || r.size % r.gsize != 0) {
        st = qr_fail(QR_ERR_INPUT,
                     "--grid %dx%d: the job size %d is not a multiple of the group's %d ranks",
                     job->grid[0], job->grid[1], r.size, r.gsize);
    } else if (job->micro_batch < 1) {
        st = qr_fail(QR_ERR_INPUT, "--micro-batch: expected at least 1, found %lld",
                     (long long)job->micro_batch);
    }
    QR_CHECK(qr_mpi_agree(comm, st));
    r.group = r.rank / r.gsize;
    r.lane = r.rank % r.gsize;
    QR_CHECK(qr_mpi_agree(comm, phase_input(&r)));
    qr_model_share_identity(comm, r.lj.model);
    if (r.rank == 0 && r.n_windows * job->seq_len + job->seq_len <= job->tokens) {
        QR_WARN("capture: %s gives %zu tokens, enough for %lld windows (%lld tokens), fewer than "
                "--tokens %lld",
                qr_input_source_path(&job->input), r.n_ids, (long long)r.n_windows,
                (long long)(r.n_windows * job->seq_len), (long long)job->tokens);
    }
    QR_CHECK(qr_mpi_agree(comm, phase_folder(&r)));
    QR_CHECK(qr_mpi_agree(comm, phase_load(&r)));
    st = phase_buffers(&r, &pb);
    if (st == QR_OK && r.write) {
        st = qr_calib_writer_open(r.shard, &r.info, &writer);
    }
    QR_CHECK(qr_mpi_agree(comm, st));
    if (r.rank == 0) {
        QR_INFO("capture: %s, %lld windows of %lld tokens from %zu input tokens; %d layer "
                "slice(s) over %d group(s) of %d rank(s), micro-batches of %lld window(s)",
                job->model_path, (long long)r.n_windows, (long long)job->seq_len, r.n_ids,
                r.last_group + 1, r.n_groups, r.gsize, (long long)job->micro_batch);
    }
    st = pipeline(&r, &pb, writer, &fig);
    if (st == QR_OK && writer) {
        bytes = qr_calib_writer_bytes(writer);
    }
    /* A test may kill this rank here, once every rank has finished its shard. */
    killer = st == QR_OK && job->before_finish &&
                     job->before_finish(job->hook_ctx, r.group, r.last_group)
                 ? 1
                 : 0;
    if (st == QR_OK && writer && !killer) {
        st = qr_calib_writer_finish(&writer);
    }
    MPI_Barrier(comm);
    if (killer) {
        raise(SIGKILL);
    }
    elapsed = qr_now() - t0;
    written = st == QR_OK && r.write ? 1 : 0;
    kept = r.layer_begin < r.layer_end && !r.write ? 1 : 0;
    getrusage(RUSAGE_SELF, &ru);
    rss = (double)ru.ru_maxrss * 1024.0;
    QR_CHECK(qr_mpi_agree(comm, st));
    compute = fig.compute;
    wait = fig.wait;
    if (r.group == r.last_group && r.lane == 0) {
        fill = fig.fill;
    }
    report(&r, elapsed, compute, wait, fill, rss, written, kept, bytes, stats);
done:
    qr_calib_writer_abort(&writer);
    buffers_free(&pb);
    qr_plan_free(&r.plan);
    free(r.done);
    free(r.ids);
    qr_llama_job_close(&r.lj);
    return st;
}

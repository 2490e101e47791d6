/* quantize_run.c: the distributed quantize job (jobs/quantize_run.h).
 *
 * Phases, each entered only after every rank agreed on the status of the previous one:
 *   1. open the model and the calibration shards on every rank, check every shard's dataset widths
 *      against the modules, build the options that identify the result and the plan;
 *   2. rank 0 takes the job lock; every group checks the existing parts of its slice (a part made
 *      with other options stops the job naming the option);
 *   3. each group streams, per layer input, the fitting windows of every shard in order into
 *      float64 statistics and keeps the held-out windows, runs the method on each module of the
 *      slice that has no part yet, computes its metrics and writes its part; group roots tell
 *      rank 0, which prints one line per module;
 *   4. all ranks assemble the shared checkpoint collectively. */
/* madvise and MADV_DONTNEED are not POSIX (posix_madvise's DONTNEED is a no-op in glibc). */
#define _DEFAULT_SOURCE
#include "jobs/quantize_run.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "io/calib_holdout.h"
#include "io/calib_shard.h"
#include "io/checkpoint.h"
#include "io/fs.h"
#include "io/h5util.h"
#include "io/lock.h"
#include "io/model.h"
#include "io/part_file.h"
#include "mpi/blacs.h"
#include "mpi/comm.h"
#include "mpi/linalg_backend.h"
#include "mpi/plan.h"
#include "src/alloc.h"
#include "src/checked.h"
#include "src/log.h"
#include "src/metrics.h"
#include "src/modules.h"
#include "src/progress.h"
#include "src/rng.h"
#include "src/stats.h"

#define QR_PATH_MAX 4096
/* Tag of the module-finished messages group roots send to rank 0. */
#define QR_TAG_PROGRESS 7101

static qr_quantize_stats last_stats;

/* Test hook (docs/quantize.md): QRECON_TEST_SLOW_MS=N sleeps N ms after each module, so a test can
 * kill a job on the real (fast) small model in the middle of its work. */
static void test_slow_down(void)
{
    const char *v = getenv("QRECON_TEST_SLOW_MS");
    long ms = v ? strtol(v, NULL, 10) : 0;
    if (ms > 0) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

void qr_quantize_last_stats(qr_quantize_stats *s)
{
    *s = last_stats;
}

/* ---- what identifies a result: options, source model, calibration ------------------------------
 */

static const char *svd_mode_name(qr_svd_mode m)
{
    return m == QR_SVD_EXACT ? "exact" : m == QR_SVD_RANDOMIZED ? "randomized" : "auto";
}

static qr_status build_options(const qr_quantize_job *job, const qr_model *model,
                               qr_calib_set *calib, qr_kvlist *opts)
{
    const qr_method_opts *mo = &job->method;
    char ident[32];
    qr_calib_identity(calib, ident, sizeof ident);
    QR_TRY(qr_kv_set_str(opts, "method", qr_method_name(mo->method)));
    QR_TRY(qr_kv_set_int(opts, "wbits", job->wbits));
    QR_TRY(qr_kv_set_int(opts, "abits", mo->abits));
    QR_TRY(qr_kv_set_int(opts, "group", mo->wq.group));
    QR_TRY(qr_kv_set_int(opts, "asym", mo->wq.asym ? 1 : 0));
    QR_TRY(qr_kv_set_int(opts, "clip_search", mo->wq.clip_search ? 1 : 0));
    QR_TRY(qr_kv_set_int(opts, "rank", mo->rank));
    QR_TRY(qr_kv_set_int(opts, "salient", mo->n_salient));
    QR_TRY(qr_kv_set_int(opts, "gptq", mo->gptq ? 1 : 0));
    QR_TRY(qr_kv_set_int(opts, "seed", (int64_t)mo->seed));
    QR_TRY(qr_kv_set_str(opts, "svd", svd_mode_name(mo->svd.mode)));
    QR_TRY(qr_kv_set_int(opts, "svd_oversample", mo->svd.oversample));
    QR_TRY(qr_kv_set_int(opts, "svd_power_iters", mo->svd.power_iters));
    QR_TRY(qr_kv_set_double(opts, "smooth_alpha", mo->smooth_alpha));
    QR_TRY(qr_kv_set_str(opts, "srr_base", qr_method_name(mo->srr_base)));
    QR_TRY(qr_kv_set_int(opts, "srr_k", mo->srr_k));
    QR_TRY(qr_kv_set_double(opts, "whiten_lambda0", mo->whiten_lambda0));
    QR_TRY(qr_kv_set_double(opts, "holdout", job->holdout));
    QR_TRY(qr_kv_set_int(opts, "agroup", job->agroup));
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

/* Every shard has every module's input with the module's width and the same row count. */
static qr_status check_calib(const qr_model *model, qr_calib_set *set, const qr_module *mods,
                             size_t n_mods)
{
    const qr_model_config *cfg = qr_model_get_config(model);
    const qr_calib_info *c0 = qr_calib_shard_info(qr_calib_set_shard(set, 0));
    if (strcmp(c0->model_identity, qr_model_identity(model)) != 0) {
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
} progress_ctx;

static void progress_show(progress_ctx *p, const progress_msg *m)
{
    qr_progress_step(p->bar, m->module, m->weight, "%s rank %" PRId64 " out_err %.4g %.2fs",
                     p->method, m->rank_used, m->out_err, m->seconds);
}

/* Rank 0: print what has arrived; with `wait`, block until every other group root has ended. */
static void progress_drain(progress_ctx *p, int wait)
{
    int n_other_roots = p->size / p->group_size - 1;
    for (;;) {
        int flag = 0;
        MPI_Status stt;
        progress_msg m;
        if (wait && p->ends_seen < n_other_roots) {
            flag = 1;
            MPI_Probe(MPI_ANY_SOURCE, QR_TAG_PROGRESS, p->comm, &stt);
        } else {
            MPI_Iprobe(MPI_ANY_SOURCE, QR_TAG_PROGRESS, p->comm, &flag, &stt);
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
    if (sp->n_ho > 0) {
        QR_CHECK(qr_malloc(held, (size_t)sp->n_ho * (size_t)d, sizeof(float), "held-out rows"));
        QR_CHECK(qr_calib_set_read_rows(set, key, sp->n_fit, sp->n_ho, *held));
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

/* Drop this process's mapping of a tensor's pages once it has been read. The weights are
 * memory-mapped; touched pages would otherwise stay in the resident set for the rest of the job
 * although each is read once. They are clean file pages: a later access reads them again. */
static void release_tensor_pages(const qr_model *model, const char *name)
{
    const qr_st_tensor *t = qr_model_tensor(model, name);
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t b, e;
    if (!t || !t->data || t->nbytes == 0 || page <= 0) {
        return;
    }
    b = (uintptr_t)t->data & ~((uintptr_t)page - 1);
    e = (uintptr_t)t->data + t->nbytes;
    madvise((void *)b, e - b, MADV_DONTNEED);
}

/* Quantize one module and write its part. */
static qr_status run_module(const qr_quantize_job *job, const qr_linalg_backend *backend,
                            const qr_model *model, const qr_module *m, const qr_stats *stats,
                            const float *held, int64_t n_ho, double stats_seconds,
                            const qr_kvlist *opts, const char *part, progress_msg *msg)
{
    qr_status st = QR_OK;
    char tensor[QR_MODULE_NAME_MAX + 16];
    double *W = NULL;
    size_t n;
    qr_qlayer ql;
    qr_method_report rep;
    qr_metrics met;
    qr_method_opts mo = job->method;
    qr_kvlist metrics = {0};
    double t0 = qr_now();
    memset(&ql, 0, sizeof ql);
    memset(&rep, 0, sizeof rep);
    memset(&met, 0, sizeof met);
    snprintf(tensor, sizeof tensor, "%s.weight", m->name);
    if (!qr_mul_size((size_t)m->d_out, (size_t)m->d_in, &n)) {
        return qr_fail(QR_ERR_INPUT, "%s: size overflows", tensor);
    }
    QR_CHECK(qr_malloc(&W, n, sizeof(double), tensor));
    QR_CHECK(qr_model_read_f64(model, tensor, W, n));
    release_tensor_pages(model, tensor);
    mo.module_name = m->name;
    mo.backend = backend;
    QR_CHECK(qr_method_run(&mo, W, m->d_out, m->d_in, stats, &ql, &rep));
    if (n_ho > 0) {
        QR_CHECK(qr_metrics_compute(&ql, W, held, n_ho, job->agroup, &rep, &met));
    }
    QR_CHECK(metrics_list(&rep, &met, n_ho > 0, stats_seconds, &metrics));
    if (part) {
        QR_CHECK(qr_part_write(part, m->name, opts, &metrics, &ql));
    }
    memset(msg, 0, sizeof *msg);
    snprintf(msg->module, sizeof msg->module, "%s", m->name);
    msg->rank_used = rep.rank_used;
    msg->out_err = n_ho > 0 ? met.out_rel_err : NAN;
    msg->seconds = qr_now() - t0 + stats_seconds;
    msg->weight = (double)m->d_out * (double)m->d_in;
done:
    free(W);
    qr_qlayer_free(&ql);
    qr_kvlist_free(&metrics);
    return st;
}

/* ---- the job -----------------------------------------------------------------------------------
 */

typedef struct {
    const qr_model *model;
} tensor_ctx;

static qr_status read_tensor_cb(void *ctx, const char *name, float *dst, size_t n)
{
    qr_status st = qr_model_read_f32(((tensor_ctx *)ctx)->model, name, dst, n);
    release_tensor_pages(((tensor_ctx *)ctx)->model, name);
    return st;
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

/* Rank 0 prints the largest peak resident memory of any rank next to the plan's largest module
 * working set (the model is never loaded whole, so the two should be close), and the CPU time of
 * the busiest rank and of all ranks. Collective. */
static void report_memory(MPI_Comm comm, const qr_plan *plan)
{
    struct rusage ru;
    double mine, peak = 0, work = 0, cpu, cpu_max = 0, cpu_sum = 0;
    getrusage(RUSAGE_SELF, &ru);
    mine = (double)ru.ru_maxrss * 1024.0; /* Linux: kilobytes */
    cpu = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
          (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
    last_stats.peak_rss_bytes = (uint64_t)mine;
    MPI_Reduce(&mine, &peak, 1, MPI_DOUBLE, MPI_MAX, 0, comm);
    MPI_Reduce(&cpu, &cpu_max, 1, MPI_DOUBLE, MPI_MAX, 0, comm);
    MPI_Reduce(&cpu, &cpu_sum, 1, MPI_DOUBLE, MPI_SUM, 0, comm);
    for (size_t i = 0; i < plan->n_modules; i++) {
        if ((double)plan->costs[i].work_bytes > work) {
            work = (double)plan->costs[i].work_bytes;
        }
    }
    if (qr_mpi_rank(comm) == 0) {
        QR_INFO("quantize: peak memory per rank %.1f MiB (largest module working set %.1f MiB, "
                "ratio %.2f)",
                peak / 1048576.0, work / 1048576.0, work > 0 ? peak / work : 0.0);
        /* CPU time does not count the time a rank waits for a busy core, so on a shared machine
         * max-over-ranks CPU time is the fairer measure of how the work was split. */
        QR_INFO("quantize: CPU time per rank: max %.1f s, sum %.1f s", cpu_max, cpu_sum);
    }
}

qr_status qr_quantize_run(MPI_Comm comm, const qr_quantize_job *job)
{
    qr_status st = QR_OK, local = QR_OK;
    int rank = qr_mpi_rank(comm), size = qr_mpi_size(comm);
    int gsize = job->grid_p * job->grid_q, group, is_root;
    qr_model *model = NULL;
    qr_calib_set *calib = NULL;
    qr_module *mods = NULL;
    size_t n_mods = 0;
    qr_plan *plan = NULL;
    qr_plan_opts po;
    qr_kvlist opts = {0}, root = {0};
    qr_lock *lock = NULL;
    qr_calib_split sp;
    char parts_dir[QR_PATH_MAX], lock_path[QR_PATH_MAX + 8];
    char **part_paths = NULL;
    uint8_t *done_flags = NULL;
    char *cfg_json = NULL, *opts_json = NULL;
    qr_ckpt_tensor *tensors = NULL;
    const char **names = NULL;
    qr_grid *grid = NULL;
    qr_linalg_backend backend;
    size_t n_tensors = 0;
    progress_ctx prog;
    int64_t my_todo = 0, todo = 0;
    double my_weight = 0, todo_weight = 0;
    const qr_plan_slice *slice = NULL;
    double t_start = qr_now(), t_mod;
    memset(&last_stats, 0, sizeof last_stats);
    memset(&prog, 0, sizeof prog);
    memset(&sp, 0, sizeof sp);

    /* 1. inputs, options, plan: the same on every rank. */
    if (gsize < 1 || size % gsize != 0) {
        local = qr_fail(QR_ERR_INPUT,
                        "--grid %dx%d: the job size %d is not a multiple of the grid's %d ranks",
                        job->grid_p, job->grid_q, size, gsize);
    }
    if (local == QR_OK) {
        local = qr_model_open(job->model_path, &model);
    }
    if (local == QR_OK) {
        local = qr_modules_enumerate(qr_model_get_config(model), &mods, &n_mods);
    }
    if (local == QR_OK) {
        local = qr_calib_set_open_dir(job->calib_dir, &calib);
    }
    if (local == QR_OK) {
        local = check_calib(model, calib, mods, n_mods);
    }
    if (local == QR_OK) {
        local = qr_calib_split_holdout(calib, job->holdout, &sp);
    }
    if (local == QR_OK) {
        local = build_options(job, model, calib, &opts);
    }
    if (local == QR_OK) {
        qr_dtype dt = QR_DTYPE_F32;
        int nd;
        int64_t shape[8];
        char tensor[QR_MODULE_NAME_MAX + 16];
        snprintf(tensor, sizeof tensor, "%s.weight", mods[0].name);
        qr_plan_opts_default(&po);
        po.tokens = sp.n_rows;
        po.method = job->method.method;
        po.rank = job->method.rank;
        po.svd_mode = job->method.svd.mode;
        po.oversample = job->method.svd.oversample;
        po.power_iters = job->method.svd.power_iters;
        po.n_ranks = size;
        po.grid_p = job->grid_p;
        po.grid_q = job->grid_q;
        if (qr_model_tensor_info(model, tensor, &dt, &nd, shape) == QR_OK) {
            po.weight_bytes = (int64_t)qr_dtype_size(dt);
        }
        local = qr_plan_build(qr_model_get_config(model), &po, &plan);
    }
    if (local == QR_OK) {
        local = qr_part_dir(job->out_path, parts_dir, sizeof parts_dir);
    }
    QR_CHECK(qr_mpi_agree(comm, local));
    group = rank / gsize;
    is_root = rank % gsize == 0;
    if (gsize > 1) {
        QR_CHECK(qr_grid_create(comm, job->grid_p, job->grid_q, 0, &grid));
        qr_scalapack_backend(&backend, grid);
    }
    slice = &plan->slices[group];
    if (rank == 0) {
        QR_INFO("quantize: %zu modules, %d rank group(s) of %dx%d, %" PRId64
                " calibration rows (%" PRId64 " fit, %" PRId64 " held out), imbalance %.3f",
                n_mods, plan->n_groups, job->grid_p, job->grid_q, sp.n_rows, sp.n_fit, sp.n_ho,
                plan->imbalance);
    }

    /* 2. the lock, then the existing parts of this group's slice. */
    if (rank == 0) {
        bool took_over = false;
        snprintf(lock_path, sizeof lock_path, "%s/LOCK", parts_dir);
        local = qr_fs_mkdirs(parts_dir);
        if (local == QR_OK) {
            local = qr_lock_acquire(lock_path, &lock, &took_over);
        }
    }
    QR_CHECK(qr_mpi_agree(comm, local));
    QR_CHECK(qr_calloc(&part_paths, n_mods, sizeof *part_paths, "part paths"));
    QR_CHECK(qr_calloc(&done_flags, n_mods, 1, "part flags"));
    for (size_t i = 0; i < n_mods && local == QR_OK; i++) {
        char path[QR_PATH_MAX];
        local = qr_part_path(job->out_path, mods[i].name, path, sizeof path);
        if (local == QR_OK && !(part_paths[i] = strdup(path))) {
            local = qr_fail(QR_ERR_NOMEM, "part paths: out of memory");
        }
    }
    for (int64_t i = slice->module_begin; i < slice->module_end && local == QR_OK; i++) {
        qr_part_info info;
        if (!qr_fs_exists(part_paths[i])) {
            my_todo++;
            my_weight += (double)mods[i].d_out * (double)mods[i].d_in;
            continue;
        }
        local = qr_part_read_info(part_paths[i], &info);
        if (local == QR_OK) {
            local = qr_part_check(&info, part_paths[i], mods[i].name, mods[i].d_out, mods[i].d_in,
                                  &opts);
        }
        if (local != QR_OK) {
            char msg[QR_ERRMSG_MAX];
            snprintf(msg, sizeof msg, "%s", qr_errmsg());
            local = qr_fail(local, "%s (existing part; this job will not overwrite it)", msg);
        } else {
            done_flags[i] = 1;
        }
        qr_part_info_free(&info);
    }
    QR_CHECK(qr_mpi_agree(comm, local));
    if (!is_root) {
        my_todo = 0;
        my_weight = 0;
    }
    MPI_Allreduce(&my_todo, &todo, 1, MPI_INT64_T, MPI_SUM, comm);
    MPI_Allreduce(&my_weight, &todo_weight, 1, MPI_DOUBLE, MPI_SUM, comm);
    if (rank == 0) {
        QR_INFO("quantize: %" PRId64 " module(s) to do, %" PRId64 " already done (verified parts)",
                todo, (int64_t)n_mods - todo);
    }

    /* 3. this group's slice, one layer input at a time. */
    prog.comm = comm;
    prog.rank = rank;
    prog.size = size;
    prog.group_size = gsize;
    prog.method = qr_method_name(job->method.method);
    if (rank == 0) {
        /* ETA by weight count: a module's time grows with d_out d_in (and more with d_in). */
        prog.bar = qr_progress_begin("quantize", todo, "modules");
        qr_progress_set_total_weight(prog.bar, todo_weight);
    }
    t_mod = qr_now();
    for (int64_t i = slice->module_begin; i < slice->module_end && local == QR_OK;) {
        /* Modules [i, j) share one layer input (q/k/v, gate/up). */
        int64_t j = i + 1, need = 0;
        qr_stats *stats = NULL;
        float *held = NULL;
        double stats_seconds = 0;
        while (j < slice->module_end && mods[j].layer == mods[i].layer &&
               mods[j].input == mods[i].input) {
            j++;
        }
        for (int64_t k = i; k < j; k++) {
            need += !done_flags[k];
        }
        if (need > 0) {
            local = input_stats(calib, mods[i].input_key, mods[i].d_in, &sp, &stats, &held,
                                &stats_seconds);
        }
        for (int64_t k = i; k < j && local == QR_OK; k++) {
            progress_msg msg;
            int stop_sig;
            if (done_flags[k]) {
                continue;
            }
            stop_sig = job->stop ? (int)*job->stop : 0;
            if (grid) {
                /* A signal may reach the ranks of a group at different moments: they must agree,
                 * or one would stop while the others enter the next module's collectives. */
                MPI_Allreduce(MPI_IN_PLACE, &stop_sig, 1, MPI_INT, MPI_MAX, grid->comm);
            }
            if (stop_sig) {
                local = qr_fail(QR_STOPPED,
                                "stopped on signal %d; rerun the same command to resume", stop_sig);
                break;
            }
            /* Every rank of a group computes the module; only the group root writes it. */
            local = run_module(job, grid ? &backend : NULL, model, &mods[k], stats, held, sp.n_ho,
                               stats_seconds, &opts, is_root ? part_paths[k] : NULL, &msg);
            if (grid) {
                /* The group's ranks leave together: the next module's calls are collective. */
                local = qr_mpi_agree(grid->comm, local);
            }
            stats_seconds = 0;
            test_slow_down();
            if (local == QR_OK && is_root) {
                last_stats.modules_done++;
                local = progress_post(&prog, &msg);
            }
        }
        qr_stats_free(&stats);
        free(held);
        i = j;
    }
    last_stats.seconds_modules = qr_now() - t_mod;
    progress_finish(&prog);
    if (rank == 0) {
        qr_progress_end(&prog.bar, "quantize: modules of this run took %.1f s", qr_now() - t_mod);
    }
    st = qr_mpi_agree(comm, local);
    if (st == QR_STOPPED && rank == 0) {
        QR_INFO("quantize: %s", qr_errmsg());
    }
    QR_CHECK(st);

    /* 4. the shared checkpoint, from every part. */
    {
        qr_ckpt_spec spec;
        qr_ckpt_stats cs;
        tensor_ctx tctx = {model};
        char version[64];
        snprintf(version, sizeof version, "qrecon %s", QRECON_VERSION);
        local = list_tensors(model, mods, n_mods, &tensors, &n_tensors);
        if (local == QR_OK) {
            local = config_json(qr_model_get_config(model), &cfg_json);
        }
        if (local == QR_OK) {
            local = qr_kvlist_to_json(&opts, &opts_json);
        }
        if (local == QR_OK) {
            const qr_kv *cal = qr_kv_find(&opts, "calibration");
            if ((local = qr_kv_set_str(&root, "method", qr_method_name(job->method.method))) ==
                    QR_OK &&
                (local = qr_kv_set_int(&root, "wbits", job->wbits)) == QR_OK &&
                (local = qr_kv_set_int(&root, "abits", job->method.abits)) == QR_OK &&
                (local = qr_kv_set_int(&root, "group", job->method.wq.group)) == QR_OK &&
                (local = qr_kv_set_int(&root, "rank", job->method.rank)) == QR_OK &&
                (local = qr_kv_set_str(&root, "source_model", qr_model_identity(model))) == QR_OK &&
                (local = qr_kv_set_str(&root, "calibration", cal ? cal->s : "")) == QR_OK &&
                (local = qr_kv_set_str(&root, "writer", version)) == QR_OK) {
                local = QR_OK;
            }
        }
        QR_CHECK(qr_mpi_agree(comm, local));
        QR_CHECK(qr_calloc(&names, n_mods + 1, sizeof *names, "module names"));
        for (size_t i = 0; i < n_mods; i++) {
            names[i] = mods[i].name;
        }
        memset(&spec, 0, sizeof spec);
        spec.root = &root;
        spec.model_config = cfg_json;
        spec.options = opts_json;
        spec.modules = names;
        spec.parts = (const char *const *)part_paths;
        spec.n_modules = n_mods;
        spec.tensors = tensors;
        spec.n_tensors = n_tensors;
        spec.read_tensor = read_tensor_cb;
        spec.read_ctx = &tctx;
        st = qr_ckpt_assemble(comm, job->out_path, &spec);
        qr_ckpt_last_stats(&cs);
        last_stats.seconds_assemble = cs.seconds;
        last_stats.assemble_bytes = cs.bytes;
        if (st == QR_OK && rank == 0) {
            QR_INFO("quantize: wrote %s (%zu modules, %zu tensors, %.1f MiB in %.2f s)",
                    job->out_path, n_mods, n_tensors, (double)cs.bytes / 1048576.0, cs.seconds);
        }
        if (st == QR_OK) {
            report_memory(comm, plan);
        }
    }
done:
    if (grid) {
        qr_grid_free(&grid);
        qr_blacs_shutdown();
    }
    if (lock) {
        qr_lock_release(&lock);
    }
    if (part_paths) {
        for (size_t i = 0; i < n_mods; i++) {
            free(part_paths[i]);
        }
    }
    free(part_paths);
    free(done_flags);
    free(cfg_json);
    free(opts_json);
    free(tensors);
    free(names);
    free(mods);
    qr_kvlist_free(&opts);
    qr_kvlist_free(&root);
    qr_plan_free(&plan);
    qr_calib_set_close(&calib);
    qr_model_close(&model);
    last_stats.seconds_total = qr_now() - t_start;
    return st;
}

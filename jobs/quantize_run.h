/* quantize_run.h: the distributed quantize job behind `qrecon quantize`: the plan's layer slices
 * over rank groups, calibration streaming and statistics per module input, the method and its
 * metrics per module, one part file per module (the resume unit), progress on rank 0, the job lock,
 * and the collective assembly of the shared checkpoint. docs/quantize.md describes the behaviour.
 */
#ifndef QR_JOBS_QUANTIZE_RUN_H
#define QR_JOBS_QUANTIZE_RUN_H

#include <mpi.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "io/h5util.h"
#include "io/lock.h"
#include "io/model.h"
#include "src/method.h"
#include "src/metrics.h"
#include "src/modules.h"
#include "src/status.h"

typedef struct {
    const char *model_path; /* --model: a Hugging Face folder or llama2.c checkpoint */
    const char *calib_dir;  /* --calib: a capture folder of shard-*.h5 */
    const char *out_path;   /* --out: the shared checkpoint; parts go to <out>.parts/ */
    qr_method_opts method;  /* method, quantizer, rank, salient, gptq, seed, svd */
    int abits;              /* activation bits the model will run with: 8, 4, 0 = float */
    int grid[2];            /* P, Q of each rank group (1x1: each rank on its own modules) */
    double holdout;         /* fraction of calibration windows kept for the metrics (the last) */
    int64_t metric_rows;    /* held-out rows the metrics use, spread over them (0: all) */
    int64_t agroup;         /* channel group of the grouped-A4 metric (0: off) */
    bool fallback_rtn;      /* store RTN's module where the method is worse (jobs/quantize_rtn.h) */
    volatile sig_atomic_t *stop; /* set by SIGUSR1/SIGTERM: finish the module, exit 75 */
    bool keep_parts; /* --keep-parts: keep <out>.parts/ after a successful, verified assembly */
    bool force;      /* --force: remove this output's parts first (start over) */
    /* Optional hooks for tests (jobs/test_hooks.h): after each module a group computes, and after
     * each module the assembly writes. */
    void (*after_module)(void *hook_ctx, const char *module);
    void (*after_assembled)(void *hook_ctx, size_t i);
    bool (*worse_than_rtn)(void *hook_ctx, const char *module); /* true: treat as worse */
    void *hook_ctx;
} qr_quantize_job;

/* The defaults of every field for method m (no paths). */
void qr_quantize_job_default(qr_quantize_job *job, qr_method_id m);

/* Figures of a run on this rank (for the benchmark). */
typedef struct {
    double seconds_total;    /* whole job */
    double seconds_modules;  /* calibration, methods, metrics and part files of this rank */
    double seconds_assemble; /* the collective assembly */
    uint64_t assemble_bytes; /* array bytes in the checkpoint */
    int modules_done;        /* modules this rank's group quantized (not resumed) */
    uint64_t peak_rss_bytes; /* getrusage maxrss of this rank at the end */
} qr_quantize_stats;

/* Collective over comm: run the whole job (resuming from existing parts) and assemble the
 * checkpoint. Every rank returns the same status: QR_OK, QR_ERR_INPUT (bad input or options, other
 * parts, a held lock), QR_STOPPED (stopped on request; rerun to resume), or an internal error.
 * stats (may be NULL) gets this rank's figures. */
qr_status qr_quantize_run(MPI_Comm comm, const qr_quantize_job *job, qr_quantize_stats *stats);

/* The options that identify a result (parts and checkpoint) with calibration identity `ident`. */
qr_status qr_quantize_options(const qr_quantize_job *job, const qr_model *model, const char *ident,
                              qr_kvlist *opts);

/* The metrics list of a module's part (the same keys as quantize's parts). */
qr_status qr_quantize_part_metrics(const qr_method_report *rep, const qr_metrics *m,
                                   int has_metrics, double stats_seconds, qr_kvlist *l);

/* Whether the existing part at path, of module m, was made by a job with options opts (it may be
 * reused); otherwise the error, saying the job will not overwrite it. */
qr_status qr_quantize_check_part(const char *path, const qr_module *m, const qr_kvlist *opts);

/* Collective over comm: the shared checkpoint job->out_path from the parts (part_paths, one per
 * module of mods), as quantize assembles it; then, unless job->keep_parts, the checkpoint checked
 * in full and the parts, *lock (rank 0's, released: *lock becomes NULL) and the parts folder
 * removed. For jobs/sequential_run.c. */
qr_status qr_quantize_assemble(MPI_Comm comm, const qr_quantize_job *job, const qr_model *model,
                               const qr_module *mods, size_t n_mods, const qr_kvlist *opts,
                               char **part_paths, qr_lock **lock, qr_quantize_stats *stats);

/* Rank 0, holding the lock, with job->force: remove the parts of every module of mods. */
qr_status qr_quantize_force(const qr_quantize_job *job, const qr_module *mods, size_t n_mods);

#endif

/* capture_run.h: the distributed capture behind `qrecon capture`: the model's layers cut into the
 * plan's slices (mpi/plan.h, the same slices a quantize job of the same ranks and grid uses), one
 * rank group per slice holding only its slice's weights, hidden states flowing group to group in
 * micro-batches of windows (MPI_Isend/Irecv, double-buffered, so every group works once the
 * pipeline is full), each rank writing the inputs of its slice's modules for its share of the
 * windows to its own shard, and resume by shard. docs/calibration.md describes the behaviour. */
#ifndef QR_JOBS_CAPTURE_RUN_H
#define QR_JOBS_CAPTURE_RUN_H

#include <mpi.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "jobs/llama_job.h"
#include "src/dtype.h"
#include "src/status.h"

typedef struct {
    const char *model_path; /* --model */
    qr_input_opts input;    /* --text or --token-file, --tokenizer, --unknown-to-zero */
    const char *out_dir;    /* --out */
    int64_t seq_len;        /* --seq-len: window length, BOS included */
    int64_t tokens;         /* --tokens: at most floor(tokens / seq_len) windows */
    qr_dtype dtype;         /* --dtype: F32 or F16 storage */
    int grid[2];         /* --grid PxQ: ranks per group P Q; groups = ranks / (P Q) layer slices */
    int64_t micro_batch; /* --micro-batch: windows per message between groups (>= 1) */
    volatile sig_atomic_t *stop; /* set by SIGUSR1/SIGTERM: stop after the micro-batch, exit 75 */
    /* Test hook (jobs/test_hooks.h): called on every rank before it finishes its shard; returning
     * true makes the rank SIGKILL itself once every rank has reached that point (the others have
     * then finished their shards), the way a node dies at the end of a capture. */
    bool (*before_finish)(void *hook_ctx, int group, int last_group);
    void *hook_ctx;
} qr_capture_job;

/* The defaults: seq_len 256, tokens 65536, f32, grid 1x1, micro-batch 1, no paths. */
void qr_capture_job_default(qr_capture_job *job);

/* Figures of a run (rank 0 gets the job's; for the benchmark and the tests). */
typedef struct {
    double seconds_total;   /* whole job, max over ranks */
    double seconds_compute; /* forward pass and writes, max over ranks */
    double seconds_fill;    /* the last group's wait for its first micro-batch (pipeline fill) */
    double seconds_wait;    /* waits for micro-batches after the first, max over ranks */
    int n_groups;           /* groups with layers */
    int64_t micro_batches;  /* per lane */
    int shards_written, shards_kept; /* over the job */
    uint64_t bytes_written;          /* over the job */
    uint64_t peak_rss_bytes;         /* max over ranks of getrusage maxrss */
} qr_capture_stats;

/* Collective over comm: capture (resuming from complete shards of the same capture). Every rank
 * returns the same status: QR_OK, QR_ERR_INPUT, QR_STOPPED, or an internal error. */
qr_status qr_capture_run(MPI_Comm comm, const qr_capture_job *job, qr_capture_stats *stats);

#endif

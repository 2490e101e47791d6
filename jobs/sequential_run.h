/* sequential_run.h: the sequential mode of `qrecon quantize` (--text or --token-file instead of
 * --calib): capture and quantize as one job, layer by layer over the plan's layer slices, with no
 * calibration shards. Group g holds only its slice's weights and the hidden states of its windows
 * at one layer boundary; for each layer and each module input in forward order (q/k/v, o,
 * gate/up, down) the windows run through the layer, the input's statistics are accumulated as
 * they pass (fitting windows) and its held-out rows kept, the modules are quantized and their
 * parts written, and the layer's weights are replaced by the parts' effective weights Q + L·R, so
 * every later input, layer and slice sees the quantized model. A rerun resumes from the parts: the
 * finished modules are read back instead of recomputed, and the hidden states are recomputed
 * through them. docs/quantize.md ("Sequential mode") describes the behaviour. */
#ifndef QR_JOBS_SEQUENTIAL_RUN_H
#define QR_JOBS_SEQUENTIAL_RUN_H

#include <mpi.h>
#include <stdint.h>

#include "jobs/llama_job.h"
#include "jobs/quantize_run.h"

typedef struct {
    qr_quantize_job q;   /* model, out, method, abits, holdout, agroup, grid, stop, hooks */
    qr_input_opts input; /* --text or --token-file, --tokenizer, --unknown-to-zero */
    int64_t seq_len;     /* --seq-len: window length, BOS included (capture's default) */
    int64_t tokens;      /* --tokens: at most floor(tokens / seq_len) windows */
} qr_sequential_job;

/* Collective over comm: run the job (resuming from existing parts) and assemble the checkpoint.
 * Every rank returns the same status: QR_OK, QR_ERR_INPUT, QR_STOPPED (rerun to resume), or an
 * internal error. stats (may be NULL) gets this rank's figures (peak_rss_bytes: the largest of
 * every rank's, on every rank). */
qr_status qr_sequential_run(MPI_Comm comm, const qr_sequential_job *job, qr_quantize_stats *stats);

#endif

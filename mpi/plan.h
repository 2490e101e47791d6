/* plan.h: the work plan of a distributed quantize job: a cost per module from its shape, layers cut
 * into contiguous slices, one per rank group, balanced by cost exactly (the linear partition
 * problem), and the estimates `qrecon plan` prints.
 *
 * Costs are integers (flops, bytes), so the partition is exact and deterministic: the same model
 * and options give the same plan on every rank and every run. Pure computation: no MPI, no files.
 */
#ifndef QR_MPI_PLAN_H
#define QR_MPI_PLAN_H

#include <stdint.h>

#include "src/linalg.h"
#include "src/method.h"
#include "src/model_config.h"
#include "src/modules.h"
#include "src/qlayer.h"
#include "src/status.h"

/* Flops per weight of quantization: a clipping search over about 8 range factors, each a quantize
 * and an error sum (about 4 flops per weight). */
#define QR_PLAN_QUANT_FLOPS_PER_WEIGHT 32
/* Work bound by memory bandwidth, not flops (FLRQ's rank-1 sketches stream the whole m x n
 * residual for every product): one float64 streamed from memory costs the time of this many flops
 * at the plan's sustained rate. Measured on the 2048 / 5504 layer (tests/bench/grid_memory.sh
 * flrq): about 9 GB/s for one rank's sketches against 26 GFLOP/s sustained, 3 flops a byte. */
#define QR_PLAN_FLOPS_PER_STREAMED_DOUBLE 24
/* The statistics' XᵀX (dsyrk of the calibration rows) runs at about 1.4 times the sustained mix
 * of a module's kernels, so the time and balance weight (qr_module_cost.flops) counts it at this
 * many tenths of its flops: measured on the 2048 / 5504 layer's statistics at 1x1 (1.9 s against
 * 2.6 s at full weight) and on progress.eta's down_proj, whose Gram dominates its cost (its ETA
 * ran 13-18% high at full weight). */
#define QR_PLAN_GRAM_TENTHS 7
/* Default flop rate of one BLAS thread (double-precision level-3 work on one modern core). */
#define QR_PLAN_DEFAULT_GFLOPS 20.0
/* The fraction of a large dgemm's rate (qr_blas_gflops) a quantize job sustains over its mix of
 * kernels (Cholesky, triangular products, QR, small SVDs, float32 metrics, reads): measured 0.45
 * (qera-exact), 0.55 (srr) and 0.57 (rtn --gptq) at 1x1 on the synthetic 2048 / 5504 layer
 * (tests/bench/grid_memory.sh); 0.5 between them. A property of the machine: the bench prints
 * the plan beside the measured CPU, to check it on another. */
#define QR_PLAN_SUSTAINED 0.5
/* The parallel efficiency of a module divided over a grid, per doubling of its ranks: they wait
 * for each other inside the distributed steps, and Open MPI's ranks poll while they wait, so a
 * group of P·Q ranks spends its work divided by this to the power log2(P·Q) in CPU time.
 * tests/bench/grid_memory.sh measured 1.13-1.27 x the 1x1 CPU at 2x1 and 1.31-1.53 x at 2x2 (4
 * ranks on 2 cores) over five methods; the machine and the MPI decide it. */
#define QR_PLAN_GRID_EFFICIENCY 0.8
/* Default read rate of one rank group from the calibration shards (one client stream of a parallel
 * file system). */
#define QR_PLAN_DEFAULT_READ_GBPS 2.0
#define QR_PLAN_DEFAULT_CORES_PER_NODE 64

/* Resident memory of a quantize rank before its first module (MPI, libraries, model headers),
 * measured on stories260K (45 MiB). */
#define QR_PLAN_BASE_BYTES ((uint64_t)45 << 20)
/* The fraction of calibration windows quantize holds out for the metrics when not told (the
 * last ceil(F x windows) windows), and the window length capture uses when not told. */
#define QR_HOLDOUT_DEFAULT 0.1
#define QR_SEQ_LEN_DEFAULT 256

typedef struct {
    int64_t tokens;           /* calibration rows, fitting and held out */
    int64_t held_tokens;      /* of which held out for the metrics */
    int64_t metric_rows;      /* the held-out rows the metrics use (quantize's sample) */
    int64_t seq_len;          /* window length of the calibration capture */
    qr_method_opts method;    /* what each module runs: the options quantize runs it with */
    int64_t weight_bytes;     /* bytes per stored source weight (4 F32, 2 BF16/F16) */
    int n_ranks;              /* N: ranks of the job */
    int grid[2];              /* each rank group is a P x Q grid; N % (P Q) == 0 */
    int threads_per_rank;     /* BLAS threads per rank */
    int cores_per_node;       /* for the ranks-per-node advice */
    double mem_per_node;      /* bytes of one node for the memory advice; 0 = unknown */
    double gflops_per_thread; /* flop rate for the time estimate */
    double read_gbps;         /* calibration read rate of one group */
} qr_plan_opts;

/* Defaults: 2048 tokens, the method options quantize defaults to (qr_method_opts_default of
 * QR_METHOD_DEFAULT), F32 weights, 1 rank, grid 1x1, 1 thread per rank, QR_PLAN_DEFAULT_* rates
 * and cores per node. */
void qr_plan_opts_default(qr_plan_opts *o);

/* Memory of one module on one rank, beyond QR_PLAN_BASE_BYTES: the peak over its phases on the
 * path quantize takes (whole on one rank at 1x1, divided over the grid laid out by qr_grid_layout
 * otherwise), and what the group root holds in addition. */
typedef struct {
    uint64_t rank_bytes;
    uint64_t root_bytes;
} qr_module_memory;

/* The estimated cost of one module. */
typedef struct {
    uint64_t stats_flops;   /* XᵀX (n d_in²) and the per-channel sums (4 n d_in); only the first
                               module of an input group pays them (q/k/v and gate/up share inputs) */
    uint64_t decomp_flops;  /* Cholesky, whitening products, SVDs of the method */
    uint64_t quant_flops;   /* QR_PLAN_QUANT_FLOPS_PER_WEIGHT per quantized weight */
    uint64_t metrics_flops; /* the held-out errors: 10 n_ho d_out d_in + d_out d_in r */
    uint64_t flops;         /* the sum of the four, XᵀX weighted (QR_PLAN_GRAM_TENTHS): the
                               time and balance weight */
    uint64_t bytes_read;    /* calibration rows (n d_in 4, first of its input group) + weights */
    qr_module_memory mem;   /* per rank on the path quantize takes (qr_plan_module_memory) */
} qr_module_cost;

void qr_plan_module_memory(const qr_module *m, const qr_plan_opts *o, qr_module_memory *out);

/* The held-out rows of `tokens` calibration rows in windows of seq_len for a holdout fraction:
 * the rule of io/calib_holdout.h (the last ceil(F x windows) windows, at least one left to fit). */
int64_t qr_plan_held_tokens(int64_t tokens, int64_t seq_len, double holdout);
/* The rows of the metrics' sample: quantize's --metric-rows cap (0: all) of the held-out rows. */
int64_t qr_plan_metric_rows(int64_t held_tokens, int64_t cap);
/* A rank group's CPU seconds (and wall time) per second of its flops at the sustained rate: 1 on
 * one rank, QR_PLAN_GRID_EFFICIENCY^-log2(P·Q) for a module divided over a P x Q grid. */
double qr_plan_cpu_factor(const qr_plan_opts *o);

/* Cost of module m, at its own rank and salient count (QR_AUTO values resolved by
 * qr_method_resolve, as quantize runs them); first_of_input = 1 when it is the first module of its
 * layer reading its input. QR_ERR_INPUT when a count overflows 64 bits (naming the module). Not
 * collective. */
qr_status qr_plan_module_cost(const qr_module *m, int first_of_input, const qr_plan_opts *o,
                              qr_module_cost *c);

/* Exact linear partition: cut cost[0..n-1] into k >= 1 contiguous slices minimising the largest
 * slice sum (binary search on the answer over integers, with a greedy feasibility test). bounds
 * (k + 1) gets the slice starts: slice g is [bounds[g], bounds[g + 1]); bounds[0] = 0, bounds[k] =
 * n. Ties are broken deterministically: slice 0 takes as many items as fit under the optimum, then
 * the rest is cut the same way under its own optimum (so later slices are as even as possible);
 * every slice gets at least one item while there are enough (slices beyond n are empty). *max_sum
 * gets the optimum. QR_ERR_INPUT when the total overflows 64 bits or n < 0 or k < 1. */
qr_status qr_linear_partition(const uint64_t *cost, int64_t n, int64_t k, int64_t *bounds,
                              uint64_t *max_sum);

/* One rank group's share of the work. */
typedef struct {
    int group;                        /* 0..n_groups-1 */
    int rank_begin, rank_count;       /* ranks [rank_begin, rank_begin + rank_count) of the job */
    int64_t layer_begin, layer_end;   /* layers [begin, end); empty when begin == end */
    int64_t module_begin, module_end; /* indices into qr_plan.modules, [begin, end) */
    uint64_t flops;                   /* estimated flops of the slice */
    uint64_t bytes_read;              /* estimated bytes read */
    uint64_t cost;                    /* balancing cost: flops + bytes_read * flops_per_byte */
    double seconds;                   /* cost / (group flop rate) */
    uint64_t mem_per_rank;            /* peak resident memory of a rank: QR_PLAN_BASE_BYTES + the
                                         largest module's (qr_plan_module_memory) */
    uint64_t mem_root_extra;          /* what the group root holds in addition (the gathered INT4
                                         codes of a divided module) */
} qr_plan_slice;

typedef struct {
    qr_plan_opts opts;
    int64_t n_layers;
    size_t n_modules;
    qr_module *modules;      /* (n_modules) in the fixed order of src/modules.h */
    qr_module_cost *costs;   /* (n_modules) */
    uint64_t *layer_cost;    /* (n_layers) balancing cost of each layer */
    uint64_t flops_per_byte; /* balancing weight of one byte read: group flop rate / read rate */
    int n_groups;            /* N / (P Q) */
    qr_plan_slice *slices;   /* (n_groups) */
    uint64_t total_cost;
    uint64_t max_cost; /* the optimum of the linear partition */
    double imbalance;  /* max_cost / (total_cost / n_groups); 1 is perfect */
} qr_plan;

/* Build the plan of a model with config cfg under options o. QR_ERR_INPUT (naming the option) when
 * N is not divisible by P Q, or an option is out of range. Not collective: every rank computes the
 * same plan. */
qr_status qr_plan_build(const qr_model_config *cfg, const qr_plan_opts *o, qr_plan **out);
void qr_plan_free(qr_plan **p); /* NULL-safe, clears the pointer */

/* The group that owns layer `layer`, or -1 when out of range. */
int qr_plan_group_of_layer(const qr_plan *p, int64_t layer);

/* ---- capture over the same slices (jobs/capture_run.c, docs/calibration.md) ----------------- */

/* How a capture of the plan's opts.tokens tokens runs: group g holds the float32 weights of its
 * slice (group 0 also the embedding), windows of seq_len tokens are split over a group's P Q ranks
 * and flow group to group in micro-batches. */
typedef struct {
    int64_t seq_len;     /* window length (capture's --seq-len) */
    int64_t micro_batch; /* windows per message between groups (--micro-batch) */
    int64_t act_bytes;   /* bytes per stored activation: 4 (f32) or 2 (f16) */
} qr_capture_plan_opts;

typedef struct {
    uint64_t weight_bytes;  /* float32 weights of the slice (and the embedding on group 0) */
    uint64_t mapped_bytes;  /* the same tensors in the source file, read through mmap: resident
                               while loaded, page cache the kernel may reclaim */
    uint64_t state_bytes;   /* forward-pass buffers and the slice's KV cache for one window */
    uint64_t batch_bytes;   /* two micro-batches of hidden states (one received, one sent) */
    uint64_t mem_per_rank;  /* weight + state + batch (mapped pages not counted) */
    uint64_t flops;         /* forward pass of one rank's windows through the slice */
    uint64_t bytes_written; /* activations and token ids one rank writes */
    double seconds;         /* flops at the thread rate + writes at opts.read_gbps */
} qr_capture_slice_est;

typedef struct {
    int n_groups;                 /* the plan's */
    qr_capture_slice_est *groups; /* (n_groups); zero for a group without layers */
    int active_groups;            /* groups with layers: the pipeline's depth G */
    int64_t windows;              /* floor(tokens / seq_len) */
    int64_t micro_batches;        /* per rank: ceil(windows per rank / micro_batch) = B */
    double seconds;               /* whole capture: slowest group x (B + G - 1) / B */
    double fill_drain_seconds;    /* of which the pipeline's fill and drain: (G - 1) batches */
    uint64_t max_mem_per_rank;
} qr_capture_est;

/* Estimate the capture of model cfg over plan p's slices. QR_ERR_INPUT when an option is out of
 * range or a size overflows. Pure computation. */
qr_status qr_plan_capture(const qr_plan *p, const qr_model_config *cfg,
                          const qr_capture_plan_opts *o, qr_capture_est *out);
void qr_capture_est_free(qr_capture_est *e); /* NULL-safe on its array */

#endif

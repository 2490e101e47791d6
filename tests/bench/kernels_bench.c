/* kernels_bench.c: the INT4 kernels against OpenBLAS float32 sgemv/sgemm, single-threaded, side by
 * side in one run (built by the `bench` target, never by ctest).
 *
 * For 4096x4096, 11008x4096 and 4096x11008 (d_out x d_in) at 1, 16, 128 and 512 tokens it times
 * float32 (sgemv at one token, sgemm otherwise), W4A8 and W4A4 on the best path, W4A8 on the AVX2
 * path, and the corrections at rank 64 (float and INT8 L·R) and a 128-column SERQ side matrix
 * (fused into the main pass; its cost is the fused time minus the W4A8 time). Each
 * figure is the median of REPS runs, each after reading a buffer larger than the last-level cache,
 * so weights come from memory as they do when a model's layers take turns. The run also measures
 * a STREAM-like read and copy bandwidth. Output is Markdown (docs/kernels.md).
 *
 * Usage: kernels_bench [--reps N] [--quick] [--tokens N] (--quick: 1 and 16 tokens, 3 repeats;
 * --tokens: that token count only). Run it once as is and once with
 * OPENBLAS_CORETYPE=SkylakeX (docs/kernels.md): OpenBLAS 0.3.21 does not recognise recent CPUs
 * and falls back to its AVX2 (Haswell) kernels. */
#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/kernels/kernels.h"
#include "src/quant.h"
#include "src/rng.h"

#define FLUSH_BYTES ((size_t)768 << 20) /* more than this machine's 260 MiB L3, with margin */
#define STREAM_BYTES ((size_t)1 << 30)  /* per array of the bandwidth test */
#define RANK 64
#define N_SALIENT 128
#define WGROUP 128

static int reps = 5;
static uint64_t *flush_buf;
static volatile uint64_t sink;

/* Thread CPU time: the build machine is shared (2 cores, other engineers compiling), and wall
 * time would count the time this process waits for a core. OpenBLAS runs in the calling thread
 * with one thread, so its work is counted too. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void flush_cache(void)
{
    uint64_t acc = 0;
    for (size_t k = 0; k < FLUSH_BYTES / 8; k += 8) { /* one word per 64-byte line */
        acc += flush_buf[k];
    }
    sink += acc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef void (*bench_fn)(void *ctx);

/* Median over reps of fn(ctx), each run after a cache flush. */
static double time_median(bench_fn fn, void *ctx)
{
    double t[64];
    int r = reps < 64 ? reps : 64;
    for (int k = 0; k < r; k++) {
        flush_cache();
        double t0 = now();
        fn(ctx);
        t[k] = now() - t0;
    }
    qsort(t, (size_t)r, sizeof t[0], cmp_double);
    return t[r / 2];
}

typedef struct {
    int64_t d_out, d_in, n;
    const float *W, *X; /* (d_out, d_in), (n, d_in) */
    float *Y, *Xd;      /* (n, d_out), (n, d_in) */
    const qr_kweight *kw, *side;
    qr_qact *a8, *a4;
    qr_kernel_id kernel;
    const float *L, *R; /* (d_out, RANK), (RANK, d_in) */
    const qr_lowrank_i8 *lr8;
} ctx_t;

static void run_f32(void *p)
{
    ctx_t *c = p;
    if (c->n == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)c->d_out, (int)c->d_in, 1.0f, c->W,
                    (int)c->d_in, c->X, 1, 0.0f, c->Y, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c->n, (int)c->d_out, (int)c->d_in,
                    1.0f, c->X, (int)c->d_in, c->W, (int)c->d_in, 0.0f, c->Y, (int)c->d_out);
    }
}

static void check(qr_status st)
{
    if (st != QR_OK) {
        fprintf(stderr, "kernels_bench: %s\n", qr_errmsg());
        exit(1);
    }
}

/* Activation quantization is part of the timed W4 product: inference pays it per token. */
static void run_w4(qr_qact *a, void *p)
{
    ctx_t *c = p;
    check(qr_qact_fill(a, c->X));
    check(qr_kernel_w4_with(c->kernel, c->kw, a, c->Y, false));
}

static void run_w4a8(void *p)
{
    run_w4(((ctx_t *)p)->a8, p);
}

static void run_w4a4(void *p)
{
    run_w4(((ctx_t *)p)->a4, p);
}

static void run_lr_f32(void *p)
{
    ctx_t *c = p;
    qr_qact_dequantize(c->a8, c->Xd);
    check(qr_lowrank_apply_f32(c->L, c->R, c->d_out, c->d_in, RANK, c->Xd, c->n, c->Y));
}

static void run_lr_i8(void *p)
{
    ctx_t *c = p;
    check(qr_lowrank_i8_apply(c->lr8, c->a8, c->Y));
}

/* W4A8 with the side matrix fused in (qr_kweight_prepare_pair): the side's cost is the
 * difference from run_w4a8. */
static void run_pair(void *p)
{
    ctx_t *c = p;
    check(qr_qact_fill(c->a8, c->X));
    check(qr_kernel_w4_with(c->kernel, c->side, c->a8, c->Y, false));
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "kernels_bench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void fill_uniform(qr_rng *rng, float *x, size_t n, double scale)
{
    for (size_t k = 0; k < n; k++) {
        x[k] = (float)(scale * (2.0 * qr_rng_uniform(rng) - 1.0));
    }
}

static void random_qweight(qr_rng *rng, qr_qweight *q, int64_t rows, int64_t cols)
{
    check(qr_qweight_alloc(q, rows, cols, WGROUP, false));
    for (int64_t k = 0; k < rows * qr_qweight_row_bytes(q); k++) {
        q->packed[k] = (uint8_t)qr_rng_u64(rng);
    }
    for (int64_t k = 0; k < rows * q->n_groups; k++) {
        q->scales[k] = (float)(0.001 + 0.01 * qr_rng_uniform(rng));
    }
}

/* Sum of n 64-bit words (n a multiple of 16) with four AVX2 accumulators, so the loop is limited
 * by memory, not by the adds. */
__attribute__((target("avx2"))) static uint64_t sum_words(const uint64_t *a, size_t n)
{
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    uint64_t out[4];
    for (size_t i = 0; i < n; i += 16) {
        s0 = _mm256_add_epi64(s0, _mm256_loadu_si256((const __m256i *)(const void *)(a + i)));
        s1 = _mm256_add_epi64(s1, _mm256_loadu_si256((const __m256i *)(const void *)(a + i + 4)));
        s2 = _mm256_add_epi64(s2, _mm256_loadu_si256((const __m256i *)(const void *)(a + i + 8)));
        s3 = _mm256_add_epi64(s3, _mm256_loadu_si256((const __m256i *)(const void *)(a + i + 12)));
    }
    s0 = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    _mm256_storeu_si256((__m256i *)(void *)out, s0);
    return out[0] + out[1] + out[2] + out[3];
}

/* STREAM-like read (sum of 64-bit words) and copy (memcpy) of STREAM_BYTES arrays, median. */
static void bandwidth(double *read_gbs, double *copy_gbs)
{
    uint64_t *a = xmalloc(STREAM_BYTES), *b = xmalloc(STREAM_BYTES);
    double tr[5], tc[5];
    memset(a, 1, STREAM_BYTES);
    memset(b, 2, STREAM_BYTES);
    for (int k = 0; k < 5; k++) {
        double t0 = now();
        sink += sum_words(a, STREAM_BYTES / 8);
        tr[k] = now() - t0;
        t0 = now();
        memcpy(b, a, STREAM_BYTES);
        tc[k] = now() - t0;
        sink += b[k];
    }
    qsort(tr, 5, sizeof tr[0], cmp_double);
    qsort(tc, 5, sizeof tc[0], cmp_double);
    *read_gbs = (double)STREAM_BYTES / tr[2] * 1e-9;
    *copy_gbs = 2.0 * (double)STREAM_BYTES / tc[2] * 1e-9; /* bytes read + written */
    free(a);
    free(b);
}

int main(int argc, char **argv)
{
    static const int64_t shapes[][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
    int64_t tokens[] = {1, 16, 128, 512};
    int n_tokens = 4;
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    qr_kernel_id best;
    double read_gbs, copy_gbs;
    qr_rng rng;
    for (int k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--reps") == 0 && k + 1 < argc) {
            reps = atoi(argv[++k]);
            reps = reps < 1 ? 1 : reps;
        } else if (strcmp(argv[k], "--tokens") == 0 && k + 1 < argc) {
            tokens[0] = atoll(argv[++k]);
            tokens[0] = tokens[0] < 1 ? 1 : tokens[0];
            n_tokens = 1;
        } else if (strcmp(argv[k], "--quick") == 0) {
            n_tokens = 2;
            reps = 3;
        } else {
            fprintf(stderr, "usage: %s [--reps N] [--quick] [--tokens N]\n", argv[0]);
            return 2;
        }
    }
    openblas_set_num_threads(1);
    check(qr_kernel_select("auto"));
    best = qr_kernel_active();
    qr_rng_seed(&rng, 1);
    flush_buf = xmalloc(FLUSH_BYTES);
    memset(flush_buf, 3, FLUSH_BYTES);
    bandwidth(&read_gbs, &copy_gbs);

    printf("## kernels_bench: 1 thread, thread CPU time, median of %d, caches flushed before each "
           "run\n\n",
           reps);
    printf("- kernels: best path `%s`; OpenBLAS core `%s` (OPENBLAS_CORETYPE=%s)\n",
           qr_kernel_name(best), openblas_get_corename(), coretype ? coretype : "unset");
    printf("- memory: read %.1f GB/s, copy %.1f GB/s (read + write bytes), %zu MiB arrays\n",
           read_gbs, copy_gbs, STREAM_BYTES >> 20);
    printf("- W4: group %d symmetric, activations per token; weight bytes = packed + float32 "
           "scales (4.25 bits/weight); f32 weight bytes = 32 bits/weight\n",
           WGROUP);
    printf("- corrections at rank %d (L·R float / INT8) and a %d-column side matrix fused into the "
           "main pass (time of the fused product minus W4A8), as %% of the W4A8 time\n\n",
           RANK, N_SALIENT);
    printf("| d_out x d_in | tokens | f32 ms | f32 GB/s | f32 GFLOP/s | W4A8 ms | W4A8 GB/s | "
           "W4A8 GOP/s | W4A8 speedup | W4A4 ms | W4A4 speedup | W4A8 avx2 ms | avx2 speedup | "
           "L·R f32 | L·R int8 | side |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);

    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t d_out = shapes[s][0], d_in = shapes[s][1], n_max = tokens[n_tokens - 1];
        float *W = xmalloc((size_t)(d_out * d_in) * sizeof(float));
        float *X = xmalloc((size_t)(n_max * d_in) * sizeof(float));
        float *Xd = xmalloc((size_t)(n_max * d_in) * sizeof(float));
        float *Y = xmalloc((size_t)(n_max * d_out) * sizeof(float));
        float *L = xmalloc((size_t)(d_out * RANK) * sizeof(float));
        float *R = xmalloc((size_t)(RANK * d_in) * sizeof(float));
        qr_qweight qw, qs;
        qr_kweight *kw = NULL, *ks = NULL;
        qr_lowrank_i8 lr8;
        double w4_bytes, f32_bytes = 4.0 * (double)d_out * (double)d_in;
        fill_uniform(&rng, W, (size_t)(d_out * d_in), 0.05);
        fill_uniform(&rng, X, (size_t)(n_max * d_in), 1.0);
        fill_uniform(&rng, L, (size_t)(d_out * RANK), 0.05);
        fill_uniform(&rng, R, (size_t)(RANK * d_in), 0.05);
        random_qweight(&rng, &qw, d_out, d_in);
        random_qweight(&rng, &qs, d_out, N_SALIENT);
        check(qr_kweight_prepare(&qw, 0, &kw));
        check(qr_kweight_prepare_pair(&qw, &qs, 0, &ks));
        check(qr_lowrank_i8_quantize(L, R, d_out, d_in, RANK, &lr8));
        w4_bytes =
            (double)(d_out * qr_qweight_row_bytes(&qw)) + 4.0 * (double)(d_out * qw.n_groups);
        for (int t = 0; t < n_tokens; t++) {
            int64_t n = tokens[t];
            qr_qact a8, a4;
            double ops = 2.0 * (double)n * (double)d_out * (double)d_in;
            check(qr_qact_alloc(&a8, n, d_in, 8, 0));
            check(qr_qact_alloc(&a4, n, d_in, 4, 0));
            ctx_t c = {d_out, d_in, n, W, X, Y, Xd, kw, ks, &a8, &a4, best, L, R, &lr8};
            double t_f32 = time_median(run_f32, &c);
            double t_a8 = time_median(run_w4a8, &c);
            double t_a4 = time_median(run_w4a4, &c);
            double t_lrf = time_median(run_lr_f32, &c);
            double t_lri = time_median(run_lr_i8, &c);
            double t_side = time_median(run_pair, &c) - t_a8;
            double t_avx2 = NAN;
            if (qr_kernel_cpu_has(QR_KERNEL_AVX2)) {
                c.kernel = QR_KERNEL_AVX2;
                t_avx2 = time_median(run_w4a8, &c);
            }
            printf("| %lldx%lld | %lld | %.3f | %.1f | %.1f | %.3f | %.1f | %.1f | %.2fx | %.3f | "
                   "%.2fx | %.3f | %.2fx | %.1f%% | %.1f%% | %.1f%% |\n",
                   (long long)d_out, (long long)d_in, (long long)n, 1e3 * t_f32,
                   f32_bytes / t_f32 * 1e-9, ops / t_f32 * 1e-9, 1e3 * t_a8, w4_bytes / t_a8 * 1e-9,
                   ops / t_a8 * 1e-9, t_f32 / t_a8, 1e3 * t_a4, t_f32 / t_a4, 1e3 * t_avx2,
                   t_f32 / t_avx2, 100.0 * t_lrf / t_a8, 100.0 * t_lri / t_a8,
                   100.0 * t_side / t_a8);
            fflush(stdout);
            qr_qact_free(&a8);
            qr_qact_free(&a4);
        }
        qr_kweight_free(&kw);
        qr_kweight_free(&ks);
        qr_qweight_free(&qw);
        qr_qweight_free(&qs);
        qr_lowrank_i8_free(&lr8);
        free(W);
        free(X);
        free(Xd);
        free(Y);
        free(L);
        free(R);
    }
    free(flush_buf);
    return 0;
}

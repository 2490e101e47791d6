/* io_model_bench: what opening a model costs next to reading it. Times qr_model_open + close
 * (header parsing, shape checks, identity hash; tensors are only mapped) against converting every
 * tensor to float32 with qr_model_read_f32, side by side in one run, and prints the ratio
 * (docs/models.md).
 *
 * usage: io_model_bench MODEL [REPS]   (REPS opens, default 20; the full read runs twice, the first
 * pass warming the page cache) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "io/model.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Convert every tensor to float32; returns the bytes of float32 produced, 0 on error. */
static double read_all(const qr_model *m)
{
    double bytes = 0.0;
    for (size_t i = 0; i < qr_model_tensor_count(m); i++) {
        const qr_st_tensor *t = qr_model_tensor(m, qr_model_tensor_name(m, i));
        float *buf = malloc((size_t)t->numel * sizeof *buf);
        if (!buf || qr_model_read_f32(m, t->name, buf, (size_t)t->numel) != QR_OK) {
            fprintf(stderr, "%s: %s\n", t->name, buf ? qr_errmsg() : "out of memory");
            free(buf);
            return 0.0;
        }
        bytes += (double)t->numel * sizeof *buf;
        free(buf);
    }
    return bytes;
}

int main(int argc, char **argv)
{
    qr_model *m = NULL;
    int reps = argc > 2 ? atoi(argv[2]) : 20;
    double t0, t_open, t_read, bytes = 0.0;
    if (argc < 2 || reps < 1) {
        fprintf(stderr, "usage: %s MODEL [REPS]\n", argv[0]);
        return 2;
    }
    t0 = now_s();
    for (int r = 0; r < reps; r++) {
        if (qr_model_open(argv[1], &m) != QR_OK) {
            fprintf(stderr, "error: %s\n", qr_errmsg());
            return 2;
        }
        qr_model_close(&m);
    }
    t_open = (now_s() - t0) / reps;
    if (qr_model_open(argv[1], &m) != QR_OK) {
        fprintf(stderr, "error: %s\n", qr_errmsg());
        return 2;
    }
    read_all(m); /* warm the page cache so both timings see memory, not disk */
    t0 = now_s();
    bytes = read_all(m);
    t_read = now_s() - t0;
    printf("model %s: %zu tensors, %.1f MiB as float32\n", argv[1], qr_model_tensor_count(m),
           bytes / (1 << 20));
    printf("open+close  %10.3f ms (mean of %d)\n", 1e3 * t_open, reps);
    printf("read f32    %10.3f ms (%.2f GB/s of float32 out)\n", 1e3 * t_read,
           bytes / t_read / 1e9);
    printf("ratio read/open %.1f\n", t_read / t_open);
    qr_model_close(&m);
    return bytes > 0.0 ? 0 : 1;
}

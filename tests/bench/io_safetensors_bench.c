/* io_safetensors_bench.c: how fast a tensor comes out of a safetensors file, against memcpy of the
 * same float32 bytes measured side by side in the same run (the machine is shared and noisy, so
 * only the ratios mean something).
 *
 *   bench_io_safetensors [ROWS COLS [REPEATS]]     default 11008 x 4096 (a 7B MLP matrix), 5
 *
 * Writes one file per dtype under $TMPDIR with the streaming writer, then per dtype reports: open
 * (map + full header validation) time, and qr_st_read_f32 time for the whole matrix (page cache
 * warm: the first read is discarded) next to a memcpy of rows x cols float32. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "src/dtype.h"
#include "src/progress.h"

static double best_of(double a, double b)
{
    return a < b ? a : b;
}

int main(int argc, char **argv)
{
    const qr_dtype dts[] = {QR_DTYPE_F32, QR_DTYPE_BF16, QR_DTYPE_F16};
    int64_t rows = argc > 2 ? atoll(argv[1]) : 11008, cols = argc > 2 ? atoll(argv[2]) : 4096;
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    size_t n = (size_t)rows * (size_t)cols;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    float *src = malloc(n * sizeof *src), *dst = malloc(n * sizeof *dst); /* (rows, cols) */
    unsigned char *enc = malloc(n * 8);
    if (!src || !dst || !enc || rows <= 0 || cols <= 0) {
        fprintf(stderr, "bench: bad sizes or out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        src[i] = (float)((double)(i % 1000) * 1e-3 - 0.5);
    }
    printf("matrix %lld x %lld, best of %d (page cache warm)\n", (long long)rows, (long long)cols,
           reps);
    printf("%-5s %10s %12s %12s %10s %12s\n", "dtype", "open ms", "read ms", "memcpy ms",
           "read/copy", "GB/s out");
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
        char path[1024];
        qr_st_entry e = {"w", dts[d], 2, {rows, cols}};
        qr_st_writer *w = NULL;
        qr_st_file *f = NULL;
        double t_open = 1e30, t_read = 1e30, t_copy = 1e30;
        snprintf(path, sizeof path, "%s/qrecon-bench-st-%d.safetensors", tmp, (int)getpid());
        qr_convert_from_f32(dts[d], src, n, enc);
        if (qr_st_writer_open(path, &e, 1, &w) != QR_OK ||
            qr_st_writer_put(w, enc, n * qr_dtype_size(dts[d])) != QR_OK ||
            qr_st_writer_finish(&w) != QR_OK) {
            fprintf(stderr, "bench: %s\n", qr_errmsg());
            return 1;
        }
        for (int r = 0; r <= reps; r++) {
            double t0 = qr_now(), t1, t2, t3;
            if (qr_st_open(path, &f) != QR_OK) {
                fprintf(stderr, "bench: %s\n", qr_errmsg());
                return 1;
            }
            t1 = qr_now();
            if (qr_st_read_f32(qr_st_find(f, "w"), dst, n) != QR_OK) {
                fprintf(stderr, "bench: %s\n", qr_errmsg());
                return 1;
            }
            t2 = qr_now();
            memcpy(dst, src, n * sizeof *dst);
            t3 = qr_now();
            qr_st_close(&f);
            if (r > 0) { /* the first round only warms the page cache */
                t_open = best_of(t_open, t1 - t0);
                t_read = best_of(t_read, t2 - t1);
                t_copy = best_of(t_copy, t3 - t2);
            }
        }
        printf("%-5s %10.3f %12.2f %12.2f %10.2f %12.2f\n", qr_dtype_name(dts[d]), 1e3 * t_open,
               1e3 * t_read, 1e3 * t_copy, t_read / t_copy, (double)n * 4 / t_read * 1e-9);
        unlink(path);
    }
    free(src);
    free(dst);
    free(enc);
    return 0;
}

/* quantize_grid.c: grid 2x1 (ScaLAPACK backend) vs 1x1 (LAPACK) on one module, measured side by
 * side in one run under `mpiexec -n 2`.
 *
 *   mpiexec -n 2 bench_quantize_grid [D_OUT D_IN TOKENS METHOD RANK]   (11008 4096 2048 qera-exact
 * 32)
 *
 * W is seeded Student-t-like (normal / sqrt(d_in), every 97th input channel x10); the statistics
 * come from TOKENS seeded activation rows with outlier channels, accumulated identically on both
 * ranks. Phase 1: rank 0 runs the method alone with LAPACK while rank 1 waits (one core each).
 * Phase 2: both ranks run it on a 2x1 grid. Prints both times, the speedup, and the relative
 * difference of the effective weights. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi/blacs.h"
#include "mpi/linalg_backend.h"
#include "src/method.h"
#include "src/progress.h"
#include "src/rng.h"
#include "src/stats.h"

static double run(const qr_method_opts *o, const qr_linalg_backend *be, const double *W,
                  int64_t d_out, int64_t d_in, const qr_stats *s, double *w_eff)
{
    qr_qlayer ql;
    double t0 = qr_now(), t;
    if (qr_method_run(o, be, W, d_out, d_in, s, &ql, NULL) != QR_OK) {
        fprintf(stderr, "bench_quantize_grid: %s\n", qr_errmsg());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    t = qr_now() - t0;
    qr_qlayer_effective_weight(&ql, w_eff);
    qr_qlayer_free(&ql);
    return t;
}

int main(int argc, char **argv)
{
    int64_t d_out = 11008, d_in = 4096, tokens = 2048, rank = 32;
    const char *method = "qera-exact";
    int me, size;
    qr_rng rng;
    double *W, *w1, *w2, t1 = 0, t2, num = 0, den = 0;
    float *X;
    qr_stats *s = NULL;
    qr_method_opts o;
    qr_grid *g = NULL;
    qr_linalg_backend be;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc == 6) {
        d_out = atoll(argv[1]);
        d_in = atoll(argv[2]);
        tokens = atoll(argv[3]);
        method = argv[4];
        rank = atoll(argv[5]);
    }
    if (size != 2) {
        fprintf(stderr, "run under mpiexec -n 2\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    W = malloc((size_t)(d_out * d_in) * sizeof(double));
    w1 = malloc((size_t)(d_out * d_in) * sizeof(double));
    w2 = malloc((size_t)(d_out * d_in) * sizeof(double));
    X = malloc((size_t)(256 * d_in) * sizeof(float));
    qr_rng_seed(&rng, 1);
    for (int64_t i = 0; i < d_out * d_in; i++) {
        W[i] = qr_rng_normal(&rng) / sqrt((double)d_in) * ((i % d_in) % 97 == 5 ? 10.0 : 1.0);
    }
    qr_stats_create(d_in, &s);
    for (int64_t r0 = 0; r0 < tokens; r0 += 256) {
        for (int64_t i = 0; i < 256 * d_in; i++) {
            double v = qr_rng_normal(&rng);
            X[i] = (float)((i % d_in) % 29 == 3 ? 20.0 * v : v);
        }
        qr_stats_add(s, X, 256);
    }
    qr_method_opts_default(&o, qr_method_parse(method));
    o.rank = rank;
    o.module_name = "bench.module";
    MPI_Barrier(MPI_COMM_WORLD);
    if (me == 0) {
        t1 = run(&o, NULL, W, d_out, d_in, s, w1);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    qr_grid_create(MPI_COMM_WORLD, 2, 1, 0, &g);
    qr_scalapack_backend(&be, g);
    MPI_Barrier(MPI_COMM_WORLD);
    t2 = run(&o, &be, W, d_out, d_in, s, w2);
    MPI_Barrier(MPI_COMM_WORLD);
    if (me == 0) {
        for (int64_t i = 0; i < d_out * d_in; i++) {
            num += (w1[i] - w2[i]) * (w1[i] - w2[i]);
            den += w1[i] * w1[i];
        }
        printf("module %lldx%lld, %lld tokens, %s rank %lld\n", (long long)d_out, (long long)d_in,
               (long long)tokens, method, (long long)rank);
        printf("  grid 1x1 (LAPACK, 1 rank): %8.2f s\n", t1);
        printf("  grid 2x1 (ScaLAPACK):      %8.2f s\n", t2);
        printf("  speedup 2x1 / 1x1: %.2fx; relative difference of W_eff: %.2e\n", t1 / t2,
               sqrt(num / den));
    }
    qr_grid_free(&g);
    qr_blacs_shutdown();
    qr_stats_free(&s);
    free(W);
    free(w1);
    free(w2);
    free(X);
    MPI_Finalize();
    return 0;
}

/* ckpt_compare.c: compare two shared checkpoints for the quantize tests.
 *
 *   ckpt_compare A.h5 B.h5 [--rel TOL]
 *
 * Without --rel: the same modules in the same order, every module bit-identical (qr_qlayer_equal:
 * codes, scales, zero points, smooth, perm, L, R, side), every copied tensor bit-identical, and the
 * same metrics apart from the timings (seconds_*). With --rel TOL: each module's effective weight
 * (qr_qlayer_effective_weight) agrees within TOL relative (Frobenius), and so does every stored
 * error metric, for grids that reorder sums.
 * Prints the first difference and exits 1; exits 0 when equal. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/qlayer_h5.h"

/* Float32 products of d_in terms summed in another order: ~1e-7 relative per output, and the
 * errors are relative to ||Y||, so 1e-5 leaves a margin of 50 over the measured 2e-7. */
#define METRIC_REL 1e-5

static int differ(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "ckpt_compare: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 1;
}

int main(int argc, char **argv)
{
    qr_ckpt *a = NULL, *b = NULL;
    double tol = -1;
    int bad = 0;
    if (argc != 3 && !(argc == 5 && strcmp(argv[3], "--rel") == 0)) {
        fprintf(stderr, "usage: ckpt_compare A.h5 B.h5 [--rel TOL]\n");
        return 2;
    }
    if (argc == 5) {
        tol = atof(argv[4]);
    }
    if (qr_ckpt_open(argv[1], &a) != QR_OK || qr_ckpt_open(argv[2], &b) != QR_OK) {
        fprintf(stderr, "ckpt_compare: %s\n", qr_errmsg());
        return 1;
    }
    if (qr_ckpt_module_count(a) != qr_ckpt_module_count(b) ||
        qr_ckpt_tensor_count(a) != qr_ckpt_tensor_count(b)) {
        return differ("%s and %s list different numbers of modules or tensors", argv[1], argv[2]);
    }
    for (size_t i = 0; i < qr_ckpt_module_count(a) && !bad; i++) {
        const char *name = qr_ckpt_module_name(a, i), *what = NULL;
        qr_qlayer qa, qb;
        qr_kvlist ma = {0}, mb = {0};
        if (strcmp(name, qr_ckpt_module_name(b, i)) != 0) {
            return differ("module order differs: %s vs %s", name, qr_ckpt_module_name(b, i));
        }
        if (qr_ckpt_load_module(a, name, &qa, &ma) != QR_OK ||
            qr_ckpt_load_module(b, name, &qb, &mb) != QR_OK) {
            fprintf(stderr, "ckpt_compare: %s\n", qr_errmsg());
            return 1;
        }
        if (tol < 0) {
            if (!qr_qlayer_equal(&qa, &qb, &what)) {
                bad = differ("module %s differs in %s", name, what);
            }
            for (size_t k = 0; k < ma.n && !bad; k++) {
                const qr_kv *o = qr_kv_find(&mb, ma.items[k].key);
                if (strncmp(ma.items[k].key, "seconds", 7) == 0) {
                    continue;
                }
                if (!o ||
                    !(qr_kv_equal(o, &ma.items[k]) ||
                      (ma.items[k].type == QR_KV_DOUBLE && isnan(o->d) && isnan(ma.items[k].d)))) {
                    bad = differ("module %s: metric %s differs", name, ma.items[k].key);
                }
            }
        } else {
            size_t n = (size_t)(qa.d_out * qa.d_in);
            double *wa = malloc(n * sizeof(double)), *wb = malloc(n * sizeof(double));
            double num = 0, den = 0;
            if (qa.d_out != qb.d_out || qa.d_in != qb.d_in ||
                qr_qlayer_effective_weight(&qa, wa) != QR_OK ||
                qr_qlayer_effective_weight(&qb, wb) != QR_OK) {
                bad = differ("module %s: shapes differ or no effective weight (%s)", name,
                             qr_errmsg());
            } else {
                for (size_t k = 0; k < n; k++) {
                    num += (wa[k] - wb[k]) * (wa[k] - wb[k]);
                    den += wa[k] * wa[k];
                }
                if (!(sqrt(num) <= tol * sqrt(den))) {
                    fprintf(stderr, "ckpt_compare: module %s: relative difference %.3g > %.3g\n",
                            name, sqrt(num / den), tol);
                    bad = 1;
                }
                /* The stored errors are measured on the same held-out rows: they agree as well
                 * (relative, and absolutely near zero), to the float32 rounding of the metrics'
                 * products when a grid sums them in another order. */
                for (size_t k = 0; k < ma.n && !bad; k++) {
                    const qr_kv *o = qr_kv_find(&mb, ma.items[k].key);
                    double x = ma.items[k].d;
                    if (ma.items[k].type != QR_KV_DOUBLE || !strstr(ma.items[k].key, "error") ||
                        (o && isnan(x) && isnan(o->d))) {
                        continue;
                    }
                    if (!o || !(fabs(o->d - x) <= fmax(tol, METRIC_REL) * fabs(x) + 1e-15)) {
                        fprintf(stderr, "ckpt_compare: module %s: metric %s %.17g vs %.17g\n", name,
                                ma.items[k].key, x, o ? o->d : NAN);
                        bad = 1;
                    }
                }
            }
            free(wa);
            free(wb);
        }
        qr_qlayer_free(&qa);
        qr_qlayer_free(&qb);
        qr_kvlist_free(&ma);
        qr_kvlist_free(&mb);
    }
    for (size_t i = 0; i < qr_ckpt_tensor_count(a) && !bad; i++) {
        const char *name = qr_ckpt_tensor_name(a, i);
        int nd = 0;
        int64_t shape[8];
        size_t n = 1;
        float *ta, *tb;
        if (strcmp(name, qr_ckpt_tensor_name(b, i)) != 0 ||
            qr_ckpt_tensor_shape(a, name, &nd, shape) != QR_OK) {
            return differ("tensor lists differ at %s / %s", name, qr_ckpt_tensor_name(b, i));
        }
        for (int d = 0; d < nd; d++) {
            n *= (size_t)shape[d];
        }
        ta = malloc(n * sizeof(float));
        tb = malloc(n * sizeof(float));
        if (qr_ckpt_read_tensor(a, name, ta, n) != QR_OK ||
            qr_ckpt_read_tensor(b, name, tb, n) != QR_OK || memcmp(ta, tb, n * sizeof(float))) {
            bad = differ("tensor %s differs (or cannot be read)%s", name, "");
        }
        free(ta);
        free(tb);
    }
    qr_ckpt_close(&a);
    qr_ckpt_close(&b);
    if (!bad) {
        printf("ckpt_compare: %s and %s are equal\n", argv[1], argv[2]);
    }
    return bad;
}

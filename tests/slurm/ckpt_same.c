/* ckpt_same.c: the Slurm tests' check that a checkpoint made through Slurm (stopped, requeued,
 * resumed) holds the same tensors as a direct run with the same options.
 *
 *   ckpt_same A.h5 B.h5
 *
 * Equal means: the same quantized modules in the same order, each one bit-identical
 * (qr_qlayer_equal: codes, scales, zero points, smoothing, permutation, L, R, side matrix), and the
 * same copied tensors, bit-identical. Metrics attributes are not compared (they hold timings).
 * Prints the first difference and exits 1; exits 0 and prints the counts when equal; 2 on usage. */
#include <stdio.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/qlayer_h5.h"
#include "src/alloc.h"
#include "src/checked.h"

/* Compare the copied (non-quantized) tensor `name` of a and b; 0 when equal. */
static int tensor_differs(const qr_ckpt *a, const qr_ckpt *b, const char *name)
{
    int nd_a = 0, nd_b = 0, bad = 0;
    int64_t shape_a[8], shape_b[8];
    size_t n = 1;
    float *ta = NULL, *tb = NULL; /* (n): the tensor, flattened */
    if (qr_ckpt_tensor_shape(a, name, &nd_a, shape_a) != QR_OK ||
        qr_ckpt_tensor_shape(b, name, &nd_b, shape_b) != QR_OK) {
        fprintf(stderr, "ckpt_same: %s\n", qr_errmsg());
        return 1;
    }
    if (nd_a != nd_b || memcmp(shape_a, shape_b, (size_t)nd_a * sizeof shape_a[0]) != 0) {
        fprintf(stderr, "ckpt_same: tensor %s: shapes differ\n", name);
        return 1;
    }
    for (int d = 0; d < nd_a; d++) {
        if (shape_a[d] < 0 || !qr_mul_size(n, (size_t)shape_a[d], &n)) {
            fprintf(stderr, "ckpt_same: tensor %s: bad shape\n", name);
            return 1;
        }
    }
    if (qr_malloc(&ta, n, sizeof *ta, name) != QR_OK ||
        qr_malloc(&tb, n, sizeof *tb, name) != QR_OK || qr_ckpt_read_tensor(a, name, ta, n) ||
        qr_ckpt_read_tensor(b, name, tb, n)) {
        fprintf(stderr, "ckpt_same: %s\n", qr_errmsg());
        bad = 1;
    } else if (memcmp(ta, tb, n * sizeof *ta) != 0) {
        fprintf(stderr, "ckpt_same: tensor %s differs\n", name);
        bad = 1;
    }
    qr_free(&ta);
    qr_free(&tb);
    return bad;
}

int main(int argc, char **argv)
{
    qr_ckpt *a = NULL, *b = NULL;
    size_t n_mods, n_tensors;
    int bad = 0;
    if (argc != 3) {
        fprintf(stderr, "usage: ckpt_same A.h5 B.h5\n");
        return 2;
    }
    if (qr_ckpt_open(argv[1], &a) != QR_OK || qr_ckpt_open(argv[2], &b) != QR_OK) {
        fprintf(stderr, "ckpt_same: %s\n", qr_errmsg());
        qr_ckpt_close(&a);
        return 1;
    }
    n_mods = qr_ckpt_module_count(a);
    n_tensors = qr_ckpt_tensor_count(a);
    if (n_mods != qr_ckpt_module_count(b) || n_tensors != qr_ckpt_tensor_count(b)) {
        fprintf(stderr, "ckpt_same: %s has %zu modules and %zu tensors, %s has %zu and %zu\n",
                argv[1], n_mods, n_tensors, argv[2], qr_ckpt_module_count(b),
                qr_ckpt_tensor_count(b));
        bad = 1;
    }
    for (size_t i = 0; i < n_mods && !bad; i++) {
        const char *name = qr_ckpt_module_name(a, i), *what = "";
        qr_qlayer qa, qb;
        memset(&qa, 0, sizeof qa);
        memset(&qb, 0, sizeof qb);
        if (strcmp(name, qr_ckpt_module_name(b, i)) != 0) {
            fprintf(stderr, "ckpt_same: module %zu is %s in %s but %s in %s\n", i, name, argv[1],
                    qr_ckpt_module_name(b, i), argv[2]);
            bad = 1;
        } else if (qr_ckpt_load_module(a, name, &qa, NULL) != QR_OK ||
                   qr_ckpt_load_module(b, name, &qb, NULL) != QR_OK) {
            fprintf(stderr, "ckpt_same: %s\n", qr_errmsg());
            bad = 1;
        } else if (!qr_qlayer_equal(&qa, &qb, &what)) {
            fprintf(stderr, "ckpt_same: module %s differs in %s\n", name, what);
            bad = 1;
        }
        qr_qlayer_free(&qa);
        qr_qlayer_free(&qb);
    }
    for (size_t i = 0; i < n_tensors && !bad; i++) {
        const char *name = qr_ckpt_tensor_name(a, i);
        if (strcmp(name, qr_ckpt_tensor_name(b, i)) != 0) {
            fprintf(stderr, "ckpt_same: tensor %zu is %s in %s but %s in %s\n", i, name, argv[1],
                    qr_ckpt_tensor_name(b, i), argv[2]);
            bad = 1;
        } else {
            bad = tensor_differs(a, b, name);
        }
    }
    if (!bad) {
        printf("ckpt_same: %s and %s hold the same %zu modules and %zu tensors\n", argv[1], argv[2],
               n_mods, n_tensors);
    }
    qr_ckpt_close(&a);
    qr_ckpt_close(&b);
    return bad;
}

/* test_kernels.c: tests of the INT4 kernels (src/kernels). One program, one case per argv[1]:
 *   simd_exact  every SIMD path bit-identical to the reference, and exact integer sums
 *   ref_f64     the reference against float64 from dequantized weights and activations
 *   lowrank     float and INT8 L·R against float64
 *   module      a whole qr_qlayer (perm, smooth, main, SERQ side, L·R) on every path and in float64
 *   select      the forced-kernel selector, including paths the CPU lacks (test hook)
 *   actq        the kernels' activation quantizer gives exactly qr_act_quantize's codes and scales
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/kernels/kernels.h"
#include "src/quant.h"
#include "src/rng.h"
#include "tests/test_util.h"

/* Float32 rounding bound of the kernels' combine: one rounding of w_scale * x_scale and one per
 * fused multiply-add of the running sum, so |y - y64| <= (n_seg + 2) u sum|w||x| (u = 2^-24);
 * twice that leaves room for the float64 reference's own rounding. */
#define KERNEL_ROUND_MARGIN 2.0
/* sgemm in float32 over d_in + rank terms: relative to sum|L||R||x|, a few hundred ulps at most. */
#define LOWRANK_F32_REL 1e-5
/* INT8 L·R: two int8 roundings (R and L per row), each at most 1/254 of a row's largest
 * magnitude; on Gaussian factors the Frobenius error measures under 1% (docs/kernels.md): 3% fails
 * on a real bug (a wrong scale or index gives O(1)). Cases run both the few-token int8 loops and
 * the many-token sgemm path. */
#define LOWRANK_I8_REL 3e-2

static qr_rng rng;

static int64_t rand_int(int64_t lo, int64_t hi) /* in [lo, hi] */
{
    return lo + (int64_t)(qr_rng_u64(&rng) % (uint64_t)(hi - lo + 1));
}

typedef struct {
    int64_t rows, cols, wgroup; /* wgroup 0 = whole row */
    bool asym;
    int64_t n;
    int bits;
    int64_t agroup; /* 0 = whole token */
    bool extreme;   /* largest codes everywhere (overflow and saturation edge) */
    bool unit_scales;
} shape;

static void describe(const shape *s, char *buf, size_t len)
{
    snprintf(buf, len, "%lldx%lld group %lld %s, %lld tokens A%d agroup %lld%s%s",
             (long long)s->rows, (long long)s->cols, (long long)s->wgroup, s->asym ? "asym" : "sym",
             (long long)s->n, s->bits, (long long)s->agroup, s->extreme ? " extreme" : "",
             s->unit_scales ? " unit-scales" : "");
}

/* Random weights: codes 0..15, scales in [0.01, 0.11), zero points 0..15. */
static qr_status make_weight(const shape *s, qr_qweight *W)
{
    QR_TRY(qr_qweight_alloc(W, s->rows, s->cols, s->wgroup, s->asym));
    for (int64_t i = 0; i < s->rows; i++) {
        for (int64_t j = 0; j < s->cols; j++) {
            unsigned code = s->extreme ? ((i & 1) ? 0u : 15u) : (unsigned)rand_int(0, 15);
            qr_qweight_set_code(W, i, j, code);
        }
        for (int64_t g = 0; g < W->n_groups; g++) {
            W->scales[i * W->n_groups + g] =
                s->unit_scales ? 1.0f : (float)(0.01 + 0.1 * qr_rng_uniform(&rng));
            if (s->asym) {
                W->zeros[i * W->n_groups + g] = (uint8_t)(s->extreme ? 0 : rand_int(0, 15));
            }
        }
    }
    return QR_OK;
}

/* Random activation codes over the whole range of the bit width. */
static qr_status make_act(const shape *s, qr_qact *A)
{
    int qmax = s->bits == 8 ? 127 : 7;
    QR_TRY(qr_qact_alloc(A, s->n, s->cols, s->bits, s->agroup));
    for (int64_t k = 0; k < s->n * s->cols; k++) {
        A->codes[k] = (int8_t)(s->extreme ? ((k & 1) ? -qmax : qmax) : rand_int(-qmax, qmax));
    }
    for (int64_t k = 0; k < s->n * A->n_groups; k++) {
        A->scales[k] = s->unit_scales ? 1.0f : (float)(0.001 + 0.05 * qr_rng_uniform(&rng));
    }
    return QR_OK;
}

static shape random_shape(void)
{
    static const int64_t wgroups[] = {32, 64, 128, 0};
    static const int64_t agroups[] = {0, 0, 32, 128};
    shape s = {0};
    s.rows = rand_int(1, 70);
    s.cols = rand_int(1, 400);
    s.wgroup = wgroups[rand_int(0, 3)];
    s.asym = rand_int(0, 1);
    s.n = rand_int(1, 21);
    s.bits = rand_int(0, 1) ? 8 : 4;
    s.agroup = agroups[rand_int(0, 3)];
    return s;
}

/* Compare every available SIMD path with the reference on one shape: bit-identical outputs, for
 * both = and +=. With unit scales the outputs are the integer sums themselves, checked against an
 * int64 computation. */
static void check_shape(const shape *s)
{
    qr_qweight W = {0};
    qr_qact A = {0};
    qr_kweight *kw = NULL;
    float *Y0 = NULL, *Yr = NULL, *Yk = NULL; /* (n, rows) each */
    size_t ny = (size_t)(s->n * s->rows);
    char what[256];
    describe(s, what, sizeof what);
    QR_EXPECT(make_weight(s, &W) == QR_OK && make_act(s, &A) == QR_OK, "%s: fixture: %s", what,
              qr_errmsg());
    QR_EXPECT(qr_kweight_prepare(&W, s->agroup, &kw) == QR_OK, "%s: prepare: %s", what,
              qr_errmsg());
    Y0 = malloc((ny + 1) * sizeof *Y0);
    Yr = malloc((ny + 1) * sizeof *Yr);
    Yk = malloc((ny + 1) * sizeof *Yk);
    if (!kw || !Y0 || !Yr || !Yk) {
        QR_EXPECT(0, "%s: setup failed", what);
        goto done;
    }
    for (size_t k = 0; k < ny; k++) {
        Y0[k] = (float)qr_rng_normal(&rng);
    }
    for (int acc = 0; acc < 2; acc++) {
        memcpy(Yr, Y0, ny * sizeof *Yr);
        QR_EXPECT(qr_kernel_w4_with(QR_KERNEL_REF, kw, &A, Yr, acc) == QR_OK, "%s: ref: %s", what,
                  qr_errmsg());
        for (int k = QR_KERNEL_AVX2; k < QR_KERNEL_COUNT; k++) {
            if (!qr_kernel_cpu_has((qr_kernel_id)k)) {
                continue;
            }
            memcpy(Yk, Y0, ny * sizeof *Yk);
            QR_EXPECT(qr_kernel_w4_with((qr_kernel_id)k, kw, &A, Yk, acc) == QR_OK, "%s: %s: %s",
                      what, qr_kernel_name((qr_kernel_id)k), qr_errmsg());
            for (size_t e = 0; e < ny; e++) {
                if (memcmp(&Yk[e], &Yr[e], sizeof(float)) != 0) {
                    QR_EXPECT(0,
                              "%s (%s): %s differs from ref at token %zu row %zu (expected %.9g, "
                              "found %.9g)",
                              what, acc ? "+=" : "=", qr_kernel_name((qr_kernel_id)k),
                              e / (size_t)s->rows, e % (size_t)s->rows, (double)Yr[e],
                              (double)Yk[e]);
                    break;
                }
            }
        }
    }
    if (s->unit_scales) {
        /* without accumulation the output is the integer sum itself, exactly (every partial sum
         * of these shapes is below 2^24); the SIMD paths were bit-identical to this above */
        QR_EXPECT(qr_kernel_w4_with(QR_KERNEL_REF, kw, &A, Yr, false) == QR_OK, "%s", qr_errmsg());
        for (int64_t t = 0; t < s->n; t++) {
            for (int64_t i = 0; i < s->rows; i++) {
                int64_t sum = 0;
                for (int64_t j = 0; j < s->cols; j++) {
                    int64_t off = s->asym ? W.zeros[i * W.n_groups + j / W.group] : 8;
                    sum +=
                        ((int64_t)qr_qweight_get_code(&W, i, j) - off) * A.codes[t * s->cols + j];
                }
                QR_EXPECT(
                    (double)Yr[t * s->rows + i] == (double)sum,
                    "%s: exact integer sum of token %lld row %lld (expected %lld, found %.9g)",
                    what, (long long)t, (long long)i, (long long)sum, (double)Yr[t * s->rows + i]);
            }
        }
    }
done:
    free(Y0);
    free(Yr);
    free(Yk);
    qr_kweight_free(&kw);
    qr_qweight_free(&W);
    qr_qact_free(&A);
}

/* Main + side matrix in one pass: every path bit-identical to ref, and to the two-pass result
 * (main, then side with accumulate) that it replaces. */
static void check_pair(const shape *s, int64_t k, bool side_asym)
{
    shape ss = *s;
    qr_qweight W = {0}, S = {0};
    qr_qact A = {0};
    qr_kweight *kp = NULL, *km = NULL, *ks = NULL;
    size_t ny = (size_t)(s->n * s->rows);
    float *Yr = malloc((ny + 1) * sizeof(float)), *Yk = malloc((ny + 1) * sizeof(float));
    char what[300];
    ss.cols = k;
    ss.asym = side_asym;
    describe(s, what, sizeof what);
    snprintf(what + strlen(what), sizeof what - strlen(what), " + side %lld%s", (long long)k,
             side_asym ? " asym" : "");
    if (!Yr || !Yk || make_weight(s, &W) != QR_OK || make_weight(&ss, &S) != QR_OK ||
        make_act(s, &A) != QR_OK || qr_kweight_prepare_pair(&W, &S, s->agroup, &kp) != QR_OK ||
        qr_kweight_prepare(&W, s->agroup, &km) != QR_OK ||
        qr_kweight_prepare(&S, s->agroup, &ks) != QR_OK) {
        QR_EXPECT(0, "%s: setup failed: %s", what, qr_errmsg());
        goto done;
    }
    /* two passes on the reference */
    QR_EXPECT(qr_kernel_w4_with(QR_KERNEL_REF, km, &A, Yr, false) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(qr_kernel_w4_with(QR_KERNEL_REF, ks, &A, Yr, true) == QR_OK, "%s", qr_errmsg());
    for (int kk = 0; kk < QR_KERNEL_COUNT; kk++) {
        if (!qr_kernel_cpu_has((qr_kernel_id)kk)) {
            continue;
        }
        QR_EXPECT(qr_kernel_w4_with((qr_kernel_id)kk, kp, &A, Yk, false) == QR_OK, "%s",
                  qr_errmsg());
        QR_EXPECT(memcmp(Yk, Yr, ny * sizeof(float)) == 0,
                  "%s: one pass on %s differs from two passes on ref", what,
                  qr_kernel_name((qr_kernel_id)kk));
    }
done:
    free(Yr);
    free(Yk);
    qr_kweight_free(&kp);
    qr_kweight_free(&km);
    qr_kweight_free(&ks);
    qr_qweight_free(&W);
    qr_qweight_free(&S);
    qr_qact_free(&A);
}

static int test_simd_exact(void)
{
    static const shape fixed[] = {
        {33, 172, 64, false, 1, 8, 0, false, false},   /* stories260K hidden, ragged last group */
        {17, 100, 32, true, 3, 8, 0, false, false},    /* ragged 4-column last group, asym */
        {31, 256, 128, false, 16, 4, 0, false, false}, /* W4A4 */
        {48, 520, 0, true, 9, 8, 128, false, false},   /* whole-row weights, act groups of 128 */
        {130, 333, 64, true, 13, 8, 64, false, false}, /* odd everything */
        {7, 64, 32, false, 1, 4, 0, false, false},
        {1, 1, 0, false, 1, 8, 0, false, false},       /* one weight */
        {16, 8, 32, false, 8, 8, 0, false, false},     /* exactly one chunk and one row block */
        {40, 1000, 128, false, 5, 8, 0, true, false},  /* codes at the extremes */
        {40, 1000, 128, true, 5, 8, 0, true, false},   /* asym extremes: zero 0, codes 15/0 */
        {37, 300, 64, false, 11, 8, 128, false, true}, /* unit scales: exact integer sums */
        {23, 190, 0, true, 6, 4, 32, false, true},
        {64, 4096, 128, false, 2, 8, 0, false, false}, /* a real row length */
    };
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++) {
        check_shape(&fixed[k]);
    }
    for (int k = 0; k < 60; k++) {
        shape s = random_shape();
        s.unit_scales = (k % 3 == 0);
        check_shape(&s);
    }
    for (int k = 0; k < 20; k++) {
        shape s = random_shape();
        check_pair(&s, rand_int(1, s.cols), rand_int(0, 1));
    }
    for (int k = QR_KERNEL_AVX2; k < QR_KERNEL_COUNT; k++) {
        if (!qr_kernel_cpu_has((qr_kernel_id)k)) {
            printf("note: this CPU lacks %s; that path was not compared\n",
                   qr_kernel_name((qr_kernel_id)k));
        }
    }
    return qr_test_finish("kernels.simd_exact");
}

/* The reference against float64 sum_j w_ij x_tj from dequantized weights and activations. */
static int test_ref_f64(void)
{
    for (int k = 0; k < 40; k++) {
        shape s = random_shape();
        qr_qweight W = {0};
        qr_qact A = {0};
        qr_kweight *kw = NULL;
        float *Y = NULL;
        char what[256];
        describe(&s, what, sizeof what);
        QR_REQUIRE(make_weight(&s, &W) == QR_OK && make_act(&s, &A) == QR_OK &&
                       qr_kweight_prepare(&W, s.agroup, &kw) == QR_OK,
                   "%s: fixture: %s", what, qr_errmsg());
        Y = malloc((size_t)(s.n * s.rows) * sizeof *Y);
        QR_REQUIRE(Y, "out of memory");
        QR_EXPECT(qr_kernel_w4_with(QR_KERNEL_REF, kw, &A, Y, false) == QR_OK, "%s", qr_errmsg());
        int64_t n_seg = qr_quant_n_groups(s.cols, W.group) +
                        (s.agroup ? qr_quant_n_groups(s.cols, s.agroup) : 1);
        double worst = 0.0;
        for (int64_t t = 0; t < s.n; t++) {
            for (int64_t i = 0; i < s.rows; i++) {
                double y = 0.0, abs_sum = 0.0;
                for (int64_t j = 0; j < s.cols; j++) {
                    double x = (double)A.codes[t * s.cols + j] *
                               (double)A.scales[t * A.n_groups + (s.agroup ? j / s.agroup : 0)];
                    y += qr_qweight_value(&W, i, j) * x;
                    abs_sum += fabs(qr_qweight_value(&W, i, j) * x);
                }
                double bound =
                    KERNEL_ROUND_MARGIN * (double)(n_seg + 2) * ldexp(1.0, -24) * abs_sum;
                double err = fabs((double)Y[t * s.rows + i] - y);
                worst = err / (abs_sum + 1e-300) > worst ? err / (abs_sum + 1e-300) : worst;
                QR_EXPECT(err <= bound,
                          "%s: token %lld row %lld (expected %.12g within %.3g, found %.12g)", what,
                          (long long)t, (long long)i, y, bound, (double)Y[t * s.rows + i]);
            }
        }
        if (k == 0) {
            printf("worst |y - y64| / sum|w x| on the first shape: %.3g\n", worst);
        }
        free(Y);
        qr_kweight_free(&kw);
        qr_qweight_free(&W);
        qr_qact_free(&A);
    }
    return qr_test_finish("kernels.ref_f64");
}

/* Correction term only (Y starts at 0) against float64 (L (R xdeq)). */
static int test_lowrank(void)
{
    static const int64_t cases[][5] = {
        /* d_out, d_in, rank, n, agroup */
        {33, 172, 8, 1, 0},
        {64, 100, 4, 7, 32},
        {200, 256, 16, 20, 128},
        {17, 64, 1, 2, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t d_out = cases[c][0], d_in = cases[c][1], r = cases[c][2], n = cases[c][3];
        float *L = malloc((size_t)(d_out * r) * sizeof *L), *R = malloc((size_t)(r * d_in) * 4);
        float *X = malloc((size_t)(n * d_in) * 4), *Xd = malloc((size_t)(n * d_in) * 4);
        float *Yf = calloc((size_t)(n * d_out), 4), *Yq = calloc((size_t)(n * d_out), 4);
        qr_qact A = {0};
        qr_lowrank_i8 q = {0};
        QR_REQUIRE(L && R && X && Xd && Yf && Yq, "out of memory");
        for (int64_t k = 0; k < d_out * r; k++) {
            L[k] = (float)qr_rng_normal(&rng);
        }
        for (int64_t k = 0; k < r * d_in; k++) {
            R[k] = (float)(0.1 * qr_rng_normal(&rng));
        }
        for (int64_t k = 0; k < n * d_in; k++) {
            X[k] = (float)qr_rng_normal(&rng);
        }
        QR_REQUIRE(qr_qact_quantize(&A, X, n, d_in, 8, cases[c][4]) == QR_OK, "%s", qr_errmsg());
        qr_qact_dequantize(&A, Xd);
        QR_EXPECT(qr_lowrank_apply_f32(L, R, d_out, d_in, r, Xd, n, Yf) == QR_OK, "%s",
                  qr_errmsg());
        QR_EXPECT(qr_lowrank_i8_quantize(L, R, d_out, d_in, r, &q) == QR_OK, "%s", qr_errmsg());
        QR_EXPECT(qr_lowrank_i8_apply(&q, &A, Yq) == QR_OK, "%s", qr_errmsg());
        double num = 0.0, den = 0.0;
        for (int64_t t = 0; t < n; t++) {
            for (int64_t o = 0; o < d_out; o++) {
                double y = 0.0, abs_sum = 0.0;
                for (int64_t k = 0; k < r; k++) {
                    double z = 0.0, za = 0.0;
                    for (int64_t j = 0; j < d_in; j++) {
                        z += (double)R[k * d_in + j] * (double)Xd[t * d_in + j];
                        za += fabs((double)R[k * d_in + j] * (double)Xd[t * d_in + j]);
                    }
                    y += (double)L[o * r + k] * z;
                    abs_sum += fabs((double)L[o * r + k]) * za;
                }
                double yf = (double)Yf[t * d_out + o];
                QR_EXPECT(fabs(yf - y) <= LOWRANK_F32_REL * abs_sum,
                          "case %zu float L·R token %lld row %lld (expected %.9g, found %.9g)", c,
                          (long long)t, (long long)o, y, yf);
                num += ((double)Yq[t * d_out + o] - y) * ((double)Yq[t * d_out + o] - y);
                den += y * y;
            }
        }
        double rel = sqrt(num / (den + 1e-300));
        printf("case %zu (%lldx%lld rank %lld, %lld tokens): INT8 L·R relative error %.4f\n", c,
               (long long)d_out, (long long)d_in, (long long)r, (long long)n, rel);
        QR_EXPECT(rel <= LOWRANK_I8_REL,
                  "case %zu: INT8 L·R relative Frobenius error (expected <= %g, found %.4g)", c,
                  LOWRANK_I8_REL, rel);
        free(L);
        free(R);
        free(X);
        free(Xd);
        free(Yf);
        free(Yq);
        qr_qact_free(&A);
        qr_lowrank_i8_free(&q);
    }
    return qr_test_finish("kernels.lowrank");
}

/* A whole module with every part: random perm and smooth, ragged main, side on the first k
 * channels, rank-r L·R. */
static qr_status make_layer(qr_qlayer *ql, int64_t d_out, int64_t d_in, int64_t group, bool asym,
                            int64_t k, int64_t rank)
{
    shape sm = {d_out, d_in, group, asym, 1, 8, 0, false, false};
    shape ss = {d_out, k, group, false, 1, 8, 0, false, false};
    memset(ql, 0, sizeof *ql);
    ql->method = QR_METHOD_SERQ;
    ql->d_out = d_out;
    ql->d_in = d_in;
    QR_TRY(make_weight(&sm, &ql->main));
    if (k > 0) {
        ql->n_salient = k;
        QR_TRY(make_weight(&ss, &ql->side));
    }
    ql->smooth = malloc((size_t)d_in * sizeof(float));
    ql->perm = malloc((size_t)d_in * sizeof(int32_t));
    ql->rank = rank;
    ql->L = malloc((size_t)(d_out * rank + 1) * sizeof(float));
    ql->R = malloc((size_t)(rank * d_in + 1) * sizeof(float));
    if (!ql->smooth || !ql->perm || !ql->L || !ql->R) {
        return qr_fail(QR_ERR_NOMEM, "test layer: out of memory");
    }
    for (int64_t j = 0; j < d_in; j++) {
        ql->smooth[j] = (float)(0.5 + qr_rng_uniform(&rng));
        ql->perm[j] = (int32_t)j;
    }
    for (int64_t j = d_in - 1; j > 0; j--) { /* Fisher-Yates */
        int64_t o = rand_int(0, j);
        int32_t tmp = ql->perm[j];
        ql->perm[j] = ql->perm[o];
        ql->perm[o] = tmp;
    }
    for (int64_t e = 0; e < d_out * rank; e++) {
        ql->L[e] = (float)(0.05 * qr_rng_normal(&rng));
    }
    for (int64_t e = 0; e < rank * d_in; e++) {
        ql->R[e] = (float)(0.05 * qr_rng_normal(&rng));
    }
    return QR_OK;
}

static int test_module(void)
{
    static const int64_t cases[][8] = {
        /* d_out, d_in, group, asym, k, rank, n, act_group */
        {33, 172, 64, 0, 16, 8, 5, 0},
        {64, 100, 32, 1, 8, 4, 1, 32},
        {70, 256, 128, 0, 32, 0, 9, 128},
        {17, 64, 0, 1, 0, 2, 3, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int bits = 4; bits <= 8; bits += 4) {
            for (int i8 = 0; i8 < 2; i8++) {
                int64_t d_out = cases[c][0], d_in = cases[c][1], k = cases[c][4];
                int64_t r = cases[c][5], n = cases[c][6];
                qr_qlayer ql;
                qr_kmodule *m = NULL;
                qr_kmodule_opts o = {bits, cases[c][7], i8 != 0};
                float *X = malloc((size_t)(n * d_in) * 4), *T = malloc((size_t)(n * d_in) * 4);
                float *Yr = malloc((size_t)(n * d_out) * 4), *Yk = malloc((size_t)(n * d_out) * 4);
                qr_qact A = {0};
                QR_REQUIRE(X && T && Yr && Yk, "out of memory");
                QR_REQUIRE(make_layer(&ql, d_out, d_in, cases[c][2], cases[c][3], k, r) == QR_OK,
                           "%s", qr_errmsg());
                QR_REQUIRE(qr_kmodule_prepare(&ql, &o, &m) == QR_OK, "%s", qr_errmsg());
                for (int64_t e = 0; e < n * d_in; e++) {
                    X[e] = (float)qr_rng_normal(&rng);
                }
                QR_REQUIRE(qr_kernel_select("ref") == QR_OK, "%s", qr_errmsg());
                QR_EXPECT(qr_kmodule_forward(m, X, n, Yr) == QR_OK, "%s", qr_errmsg());
                for (int kk = QR_KERNEL_AVX2; kk < QR_KERNEL_COUNT; kk++) {
                    if (!qr_kernel_cpu_has((qr_kernel_id)kk)) {
                        continue;
                    }
                    QR_REQUIRE(qr_kernel_select(qr_kernel_name((qr_kernel_id)kk)) == QR_OK, "%s",
                               qr_errmsg());
                    QR_EXPECT(qr_kmodule_forward(m, X, n, Yk) == QR_OK, "%s", qr_errmsg());
                    QR_EXPECT(memcmp(Yk, Yr, (size_t)(n * d_out) * 4) == 0,
                              "case %zu A%d%s: module output of %s differs from ref", c, bits,
                              i8 ? " int8-LR" : "", qr_kernel_name((qr_kernel_id)kk));
                }
                /* float64: t = x[perm] / smooth, u = Qa(t) dequantized, then every term */
                for (int64_t t = 0; t < n; t++) {
                    for (int64_t j = 0; j < d_in; j++) {
                        T[t * d_in + j] = X[t * d_in + ql.perm[j]] / ql.smooth[j];
                    }
                }
                QR_REQUIRE(qr_qact_quantize(&A, T, n, d_in, bits, cases[c][7]) == QR_OK, "%s",
                           qr_errmsg());
                qr_qact_dequantize(&A, T);
                double num = 0.0, den = 0.0, lr_num = 0.0;
                for (int64_t t = 0; t < n; t++) {
                    const float *u = T + t * d_in;
                    for (int64_t i = 0; i < d_out; i++) {
                        double y = 0.0, lr = 0.0;
                        for (int64_t j = 0; j < d_in; j++) {
                            y += qr_qweight_value(&ql.main, i, j) * (double)u[j];
                        }
                        for (int64_t j = 0; j < k; j++) {
                            y += qr_qweight_value(&ql.side, i, j) * (double)u[j];
                        }
                        for (int64_t kk = 0; kk < r; kk++) {
                            double z = 0.0;
                            for (int64_t j = 0; j < d_in; j++) {
                                z += (double)ql.R[kk * d_in + j] * (double)u[j];
                            }
                            lr += (double)ql.L[i * r + kk] * z;
                        }
                        double e = (double)Yr[t * d_out + i] - (y + lr);
                        num += e * e;
                        den += (y + lr) * (y + lr);
                        lr_num += lr * lr;
                    }
                }
                /* float path: float32 rounding only; INT8 L·R: its own error on the L·R term */
                double tol =
                    i8 ? LOWRANK_I8_REL * sqrt(lr_num) + 1e-5 * sqrt(den) : 1e-5 * sqrt(den);
                QR_EXPECT(sqrt(num) <= tol,
                          "case %zu A%d%s: module vs float64 (expected error <= %.3g, found "
                          "%.3g; |y| %.3g)",
                          c, bits, i8 ? " int8-LR" : "", tol, sqrt(num), sqrt(den));
                free(X);
                free(T);
                free(Yr);
                free(Yk);
                qr_qact_free(&A);
                qr_kmodule_free(&m);
                qr_qlayer_free(&ql);
            }
        }
    }
    QR_EXPECT(qr_kernel_select("auto") == QR_OK, "%s", qr_errmsg());
    return qr_test_finish("kernels.module");
}

static int test_select(void)
{
    QR_EXPECT(qr_kernel_select("bogus") == QR_ERR_INPUT, "an unknown name must be rejected");
    QR_EXPECT(strstr(qr_errmsg(), "bogus") != NULL, "the message names the input (found: %s)",
              qr_errmsg());
    QR_EXPECT(qr_kernel_select(NULL) == QR_ERR_INPUT, "NULL must be rejected");
    QR_EXPECT(qr_kernel_select("ref") == QR_OK && qr_kernel_active() == QR_KERNEL_REF,
              "ref is always available");
    QR_EXPECT(qr_kernel_select("auto") == QR_OK, "auto always succeeds");
    printf("auto picks %s on this CPU\n", qr_kernel_name(qr_kernel_active()));
    for (int k = QR_KERNEL_AVX2; k < QR_KERNEL_COUNT; k++) {
        const char *name = qr_kernel_name((qr_kernel_id)k);
        if (qr_kernel_cpu_has((qr_kernel_id)k)) {
            QR_EXPECT(qr_kernel_select(name) == QR_OK && qr_kernel_active() == (qr_kernel_id)k,
                      "%s is available but was not selected: %s", name, qr_errmsg());
        }
        /* pretend the CPU lacks path k */
        qr_kernel_test_hide_cpu(1u << k);
        QR_EXPECT(!qr_kernel_cpu_has((qr_kernel_id)k), "hidden %s still reported", name);
        QR_EXPECT(qr_kernel_select(name) == QR_ERR_INPUT, "%s must be rejected when missing", name);
        QR_EXPECT(strstr(qr_errmsg(), name) != NULL, "the message names %s (found: %s)", name,
                  qr_errmsg());
        QR_EXPECT(qr_kernel_active() != (qr_kernel_id)k, "a hidden path stays active");
        QR_EXPECT(qr_kernel_select("auto") == QR_OK && qr_kernel_active() != (qr_kernel_id)k,
                  "auto picked the hidden %s", name);
        qr_kernel_test_hide_cpu(0);
    }
    qr_kernel_test_hide_cpu(~0u);
    QR_EXPECT(qr_kernel_select("auto") == QR_OK && qr_kernel_active() == QR_KERNEL_REF,
              "with every SIMD path hidden auto must pick ref");
    QR_EXPECT(qr_kernel_cpu_has(QR_KERNEL_REF), "ref cannot be hidden");
    /* the forced entry point refuses a missing path too */
    {
        qr_qweight W = {0};
        qr_qact A = {0};
        qr_kweight *kw = NULL;
        float y[4];
        shape s = {4, 16, 8, false, 1, 8, 0, false, false};
        QR_REQUIRE(make_weight(&s, &W) == QR_OK && make_act(&s, &A) == QR_OK &&
                       qr_kweight_prepare(&W, 0, &kw) == QR_OK,
                   "%s", qr_errmsg());
        QR_EXPECT(qr_kernel_w4_with(QR_KERNEL_AVX512, kw, &A, y, false) == QR_ERR_INPUT,
                  "a hidden path must be refused by qr_kernel_w4_with");
        /* and a mismatched activation grouping is refused */
        qr_qact_free(&A);
        s.agroup = 8;
        QR_REQUIRE(make_act(&s, &A) == QR_OK, "%s", qr_errmsg());
        QR_EXPECT(qr_kernel_w4_with(QR_KERNEL_REF, kw, &A, y, false) == QR_ERR_INPUT,
                  "activations grouped by 8 on weights prepared for whole tokens must fail");
        qr_kweight_free(&kw);
        qr_qweight_free(&W);
        qr_qact_free(&A);
    }
    qr_kernel_test_hide_cpu(0);
    QR_EXPECT(qr_kernel_select("auto") == QR_OK, "%s", qr_errmsg());
    return qr_test_finish("kernels.select");
}

/* One comparison of qr_qact_fill (active path) with qr_act_quantize on X (n, d). */
static void check_actq(const float *X, int64_t n, int64_t d, int bits, int64_t group,
                       const char *what)
{
    qr_qact a = {0};
    int8_t *codes = malloc((size_t)(n * d));
    float *scales = malloc((size_t)(n * d) * sizeof(float));
    if (!codes || !scales || qr_qact_alloc(&a, n, d, bits, group) != QR_OK) {
        QR_EXPECT(0, "%s: setup failed", what);
        goto done;
    }
    qr_status s1 = qr_qact_fill(&a, X);
    qr_status s2 = qr_act_quantize(X, n, d, bits, a.group, codes, scales);
    QR_EXPECT(s1 == s2, "%s: status (expected %s, found %s)", what, qr_status_name(s2),
              qr_status_name(s1));
    if (s1 == QR_OK && s2 == QR_OK) {
        for (int64_t k = 0; k < n * d; k++) {
            if (a.codes[k] != codes[k]) {
                QR_EXPECT(0, "%s: code %lld (x = %.9g) (expected %d, found %d)", what, (long long)k,
                          (double)X[k], codes[k], a.codes[k]);
                break;
            }
        }
        QR_EXPECT(memcmp(a.scales, scales, (size_t)(n * a.n_groups) * sizeof(float)) == 0,
                  "%s: scales differ", what);
    }
done:
    free(codes);
    free(scales);
    qr_qact_free(&a);
}

static int test_actq(void)
{
    const int64_t n = 5, d = 300;
    float *X = malloc((size_t)(n * d) * sizeof(float));
    QR_REQUIRE(X, "out of memory");
    for (int k = 0; k < QR_KERNEL_COUNT; k++) {
        if (!qr_kernel_cpu_has((qr_kernel_id)k)) {
            continue;
        }
        QR_REQUIRE(qr_kernel_select(qr_kernel_name((qr_kernel_id)k)) == QR_OK, "%s", qr_errmsg());
        for (int bits = 4; bits <= 8; bits += 4) {
            int qmax = (1 << (bits - 1)) - 1;
            for (int64_t group = 0; group <= 128; group += 32) {
                char what[128];
                snprintf(what, sizeof what, "%s A%d group %lld", qr_kernel_name((qr_kernel_id)k),
                         bits, (long long)group);
                for (int64_t e = 0; e < n * d; e++) {
                    X[e] = (float)(3.0 * qr_rng_normal(&rng));
                }
                check_actq(X, n, d, bits, group, what);
                /* ties: max |x| = qmax / 16 makes the scale 1/16 exactly, and x = (k + 1/2) / 16
                 * lands halfway between two codes; round() sends them away from zero */
                for (int64_t e = 0; e < n * d; e++) {
                    X[e] = (float)((double)rand_int(-qmax, qmax - 1) + 0.5) / 16.0f;
                    if (rand_int(0, 1)) {
                        X[e] = -X[e];
                    }
                }
                for (int64_t t = 0; t < n; t++) {
                    for (int64_t j = 0; j < d; j += (group ? group : d)) {
                        X[t * d + j] = (float)qmax / 16.0f;
                    }
                }
                check_actq(X, n, d, bits, group, what);
                /* an all-zero token (scale FLT_MIN) and a non-finite value */
                memset(X, 0, (size_t)d * sizeof(float));
                check_actq(X, n, d, bits, group, what);
                X[d + 7] = NAN;
                check_actq(X, n, d, bits, group, what);
                X[d + 7] = INFINITY;
                check_actq(X, n, d, bits, group, what);
            }
        }
    }
    free(X);
    QR_EXPECT(qr_kernel_select("auto") == QR_OK, "%s", qr_errmsg());
    return qr_test_finish("kernels.actq");
}

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "";
    qr_rng_seed(&rng, 20261123);
    if (strcmp(which, "simd_exact") == 0) {
        return test_simd_exact();
    }
    if (strcmp(which, "ref_f64") == 0) {
        return test_ref_f64();
    }
    if (strcmp(which, "lowrank") == 0) {
        return test_lowrank();
    }
    if (strcmp(which, "module") == 0) {
        return test_module();
    }
    if (strcmp(which, "select") == 0) {
        return test_select();
    }
    if (strcmp(which, "actq") == 0) {
        return test_actq();
    }
    fprintf(stderr, "usage: %s simd_exact|ref_f64|lowrank|module|select|actq\n", argv[0]);
    return 2;
}

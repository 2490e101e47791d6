/* validate.c: the per-module kernel and error checks of `qrecon validate` (src/validate.h).
 *
 * The integer check reads the kernel's group accumulations through its public entry point: a copy
 * of the weight with every scale 1 is prepared for activations grouped like the weight groups (so
 * the segments, and the tiles, are those of the production layout), and the activations get scale
 * 1 on one group and 0 on every other. Each output is then fmaf(0, acc, y) = y for the masked
 * segments and fmaf(1, acc, 0) = acc for the one kept: exactly the int32 sum of that group (every
 * such sum is below 2^24 in magnitude, so float holds it exactly). The reference sums come from
 * dgemm on the codes as doubles, exact for the same reason. */
#include "src/validate.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"
#include "src/checked.h"
#include "src/kernels/kernels.h"
#include "src/metrics.h"
#include "src/progress.h"
#include "src/quant.h"

/* float32 unit roundoff */
#define QR_VALIDATE_U 0x1p-24

static qr_status check_sizes(const qr_qlayer *ql, int64_t n)
{
    int tmp;
    if (n < 1 || !qr_to_int(n, &tmp) || ql->d_out < 1 || ql->d_in < 1 ||
        !qr_to_int(ql->d_out, &tmp) || !qr_to_int(ql->d_in, &tmp) || ql->rank < 0 ||
        !qr_to_int(ql->rank, &tmp)) {
        return qr_fail(QR_ERR_INPUT,
                       "validate: sizes (expected n >= 1 and a >= 1 x 1 layer, found n = %lld, "
                       "%lld x %lld, rank %lld)",
                       (long long)n, (long long)ql->d_out, (long long)ql->d_in,
                       (long long)ql->rank);
    }
    return QR_OK;
}

/* Activation grouping that cuts columns exactly at the weight-group boundaries of Q. */
static int64_t group_grouping(const qr_qweight *Q)
{
    return Q->group >= Q->cols ? 0 : Q->group;
}

/* Integer accumulations of one INT4 matrix Q (rows, cols) on the first cols channels of A:
 * kernel against reference, group by group. Adds the float64 reference output sum_g ws xs acc to
 * Y64 (n, rows) and its magnitude sum_g |ws xs acc| to mag (n, rows). */
static qr_status int_check(const qr_qweight *Q, const qr_qact *A, int side, double *Y64,
                           double *mag, qr_validate_act *r)
{
    qr_status st = QR_OK;
    int64_t n = A->n, rows = Q->rows, cols = Q->cols, G = Q->n_groups;
    int64_t ag = group_grouping(Q);
    qr_qweight U = *Q;     /* unit scales, same codes */
    float *uscales = NULL; /* (rows, G) all 1 */
    qr_kweight *kw = NULL; /* U prepared for group-aligned activations */
    qr_qact M = {0};       /* A's codes, scale 1 on one group, 0 elsewhere */
    float *Yk = NULL;      /* (n, rows) kernel sums of one group */
    double *Wg = NULL;     /* (rows, group) code - offset of one group */
    double *Ag = NULL;     /* (n, group) activation codes of one group */
    double *Rg = NULL;     /* (n, rows) reference sums of one group */
    size_t nr, rg;
    if (!qr_mul_size((size_t)n, (size_t)rows, &nr) || !qr_mul_size((size_t)rows, (size_t)G, &rg)) {
        return qr_fail(QR_ERR_INPUT, "validate: output size overflows");
    }
    if (rows == 0) {
        return QR_OK;
    }
    QR_CHECK(qr_malloc(&uscales, rg, sizeof *uscales, "validate unit scales"));
    for (size_t k = 0; k < rg; k++) {
        uscales[k] = 1.0f;
    }
    U.scales = uscales;
    QR_CHECK(qr_kweight_prepare(&U, ag, &kw));
    QR_CHECK(qr_qact_alloc(&M, n, A->d, A->bits, ag));
    memcpy(M.codes, A->codes, (size_t)n * (size_t)A->d);
    QR_CHECK(qr_malloc(&Yk, nr, sizeof *Yk, "validate kernel sums"));
    QR_CHECK(qr_malloc(&Rg, nr, sizeof *Rg, "validate reference sums"));
    QR_CHECK(qr_malloc(&Wg, (size_t)rows * (size_t)Q->group, sizeof *Wg, "validate group codes"));
    QR_CHECK(qr_malloc(&Ag, (size_t)n * (size_t)Q->group, sizeof *Ag, "validate group codes"));
    for (int64_t g = 0; g < G; g++) {
        int64_t c0 = g * Q->group, c1 = c0 + Q->group < cols ? c0 + Q->group : cols, gs = c1 - c0;
        for (int64_t t = 0; t < n; t++) {
            for (int64_t h = 0; h < M.n_groups; h++) {
                M.scales[t * M.n_groups + h] = (ag == 0 || h == g) ? 1.0f : 0.0f;
            }
        }
        QR_CHECK(qr_kernel_w4(kw, &M, Yk, false));
        for (int64_t i = 0; i < rows; i++) {
            double off = Q->asym ? (double)Q->zeros[i * G + g] : 8.0;
            for (int64_t j = c0; j < c1; j++) {
                Wg[i * gs + (j - c0)] = (double)qr_qweight_get_code(Q, i, j) - off;
            }
        }
        for (int64_t t = 0; t < n; t++) {
            for (int64_t j = c0; j < c1; j++) {
                Ag[t * gs + (j - c0)] = (double)A->codes[t * A->d + j];
            }
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows, (int)gs, 1.0, Ag,
                    (int)gs, Wg, (int)gs, 0.0, Rg, (int)rows);
        for (int64_t t = 0; t < n; t++) {
            double xs = (double)A->scales[t * A->n_groups]; /* whole-token activations */
            for (int64_t i = 0; i < rows; i++) {
                double ref = Rg[t * rows + i], got = (double)Yk[t * rows + i];
                double term = (double)Q->scales[i * G + g] * xs * ref;
                r->n_int++;
                if (got != ref) {
                    double d = fabs(got - ref);
                    int64_t di = isfinite(d) && d < 9e18 ? (int64_t)d : INT64_MAX;
                    if (r->int_mismatches == 0) {
                        r->bad_token = t;
                        r->bad_row = i;
                        r->bad_group = g;
                        r->bad_side = side;
                        r->bad_expected = (int64_t)ref;
                        r->bad_found = isfinite(got) ? (int64_t)got : INT64_MIN;
                    }
                    r->int_mismatches++;
                    r->int_max_diff = di > r->int_max_diff ? di : r->int_max_diff;
                }
                Y64[t * rows + i] += term;
                mag[t * rows + i] += fabs(term);
            }
        }
    }
done:
    free(uscales);
    qr_kweight_free(&kw);
    qr_qact_free(&M);
    free(Yk);
    free(Rg);
    free(Wg);
    free(Ag);
    return st;
}

/* The low-rank term in float64 on the dequantized activations: Y64 += (U Rᵀ) Lᵀ and
 * mag += |L| (|R| |U|)ᵀ, U (n, d_in) = codes x scale. */
static qr_status lowrank_ref(const qr_qlayer *ql, const qr_qact *A, double *Y64, double *mag)
{
    qr_status st = QR_OK;
    int64_t n = A->n, d_in = ql->d_in, d_out = ql->d_out, r = ql->rank;
    double *Ud = NULL, *Lf = NULL, *Rf = NULL, *RU = NULL; /* (n,d_in) (d_out,r) (r,d_in) (n,r) */
    QR_CHECK(qr_malloc(&Ud, (size_t)n * (size_t)d_in, sizeof *Ud, "validate activations"));
    QR_CHECK(qr_malloc(&Lf, (size_t)d_out * (size_t)r, sizeof *Lf, "validate L"));
    QR_CHECK(qr_malloc(&Rf, (size_t)r * (size_t)d_in, sizeof *Rf, "validate R"));
    QR_CHECK(qr_malloc(&RU, (size_t)n * (size_t)r, sizeof *RU, "validate R u"));
    for (int64_t t = 0; t < n; t++) {
        for (int64_t j = 0; j < d_in; j++) {
            Ud[t * d_in + j] = (double)A->codes[t * A->d + j] * (double)A->scales[t * A->n_groups];
        }
    }
    for (int64_t i = 0; i < d_out * r; i++) {
        Lf[i] = (double)ql->L[i];
    }
    for (int64_t i = 0; i < r * d_in; i++) {
        Rf[i] = (double)ql->R[i];
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)r, (int)d_in, 1.0, Ud,
                (int)d_in, Rf, (int)d_in, 0.0, RU, (int)r);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)d_out, (int)r, 1.0, RU,
                (int)r, Lf, (int)r, 1.0, Y64, (int)d_out);
    /* magnitudes for the rounding bound of the float path */
    for (int64_t i = 0; i < n * d_in; i++) {
        Ud[i] = fabs(Ud[i]);
    }
    for (int64_t i = 0; i < d_out * r; i++) {
        Lf[i] = fabs(Lf[i]);
    }
    for (int64_t i = 0; i < r * d_in; i++) {
        Rf[i] = fabs(Rf[i]);
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)r, (int)d_in, 1.0, Ud,
                (int)d_in, Rf, (int)d_in, 0.0, RU, (int)r);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)d_out, (int)r, 1.0, RU,
                (int)r, Lf, (int)r, 1.0, mag, (int)d_out);
done:
    free(Ud);
    free(Lf);
    free(Rf);
    free(RU);
    return st;
}

static double rel_err(const double *Y, const float *Yh, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = Y[i] - (double)Yh[i];
        num += d * d;
        den += Y[i] * Y[i];
    }
    return den > 0.0 ? sqrt(num / den) : (num > 0.0 ? INFINITY : 0.0);
}

/* One activation setting: the kernel module on X against the float64 reference on the same
 * quantized activations, and its output error against Yw = X Wᵀ. */
static qr_status check_act(const qr_qlayer *ql, const float *X, int64_t n, const double *Yw,
                           int abits, qr_validate_act *r)
{
    qr_status st = QR_OK;
    int64_t d_in = ql->d_in, d_out = ql->d_out, n_seg;
    size_t no = (size_t)n * (size_t)d_out;
    float *T = NULL;    /* (n, d_in) transformed input, as the kernel module makes it */
    float *Yk = NULL;   /* (n, d_out) kernel module output */
    double *Y64 = NULL; /* (n, d_out) float64 reference on the same quantized activations */
    double *mag = NULL; /* (n, d_out) sum of |terms| of each reference output */
    qr_qact A = {0};
    qr_kmodule *km = NULL;
    qr_kmodule_opts o;
    memset(r, 0, sizeof *r);
    r->abits = abits;
    r->bad_token = r->bad_row = r->bad_group = -1;
    QR_CHECK(qr_malloc(&T, (size_t)n * (size_t)d_in, sizeof *T, "validate input"));
    QR_CHECK(qr_malloc(&Yk, no, sizeof *Yk, "validate kernel output"));
    QR_CHECK(qr_calloc(&Y64, no, sizeof *Y64, "validate reference output"));
    QR_CHECK(qr_calloc(&mag, no, sizeof *mag, "validate reference magnitude"));

    /* The kernel module's own path: transform, quantize per token, INT4 products, float L·R. */
    qr_kmodule_opts_default(&o);
    o.abits = abits;
    QR_CHECK(qr_kmodule_prepare(ql, &o, &km));
    QR_CHECK(qr_kmodule_forward(km, X, n, Yk));

    /* The same quantized activations: the transform of src/kernels/module.c in float32 (x[perm] /
     * smooth), then the deterministic per-token rule of qr_act_quantize. */
    for (int64_t t = 0; t < n; t++) {
        for (int64_t j = 0; j < d_in; j++) {
            float v = X[t * d_in + (ql->perm ? ql->perm[j] : j)];
            T[t * d_in + j] = ql->smooth ? v / ql->smooth[j] : v;
        }
    }
    QR_CHECK(qr_qact_quantize(&A, T, n, d_in, abits, 0));
    QR_CHECK(int_check(&ql->main, &A, 0, Y64, mag, r));
    n_seg = ql->main.n_groups;
    if (ql->n_salient > 0) {
        QR_CHECK(int_check(&ql->side, &A, 1, Y64, mag, r));
        n_seg += ql->side.n_groups;
    }
    if (ql->rank > 0) {
        QR_CHECK(lowrank_ref(ql, &A, Y64, mag));
    }
    /* One rounding per fused multiply-add and scale product per segment; the float L·R path
     * rounds the dequantized input and then sums d_in and rank terms. */
    r->float_tol = QR_VALIDATE_FLOAT_MARGIN * QR_VALIDATE_U *
                   (double)(2 * n_seg + 2 + (ql->rank > 0 ? d_in + ql->rank + 2 : 0));
    for (size_t k = 0; k < no; k++) {
        double d = fabs((double)Yk[k] - Y64[k]);
        double rel = mag[k] > 0.0 ? d / mag[k] : (d > 0.0 ? INFINITY : 0.0);
        if (!isfinite(Yk[k]) || !isfinite(Y64[k]) || isnan(r->float_rel_diff)) {
            r->float_rel_diff = NAN; /* a non-finite output never passes */
        } else if (rel > r->float_rel_diff) {
            r->float_rel_diff = rel;
        }
    }
    r->out_err = rel_err(Yw, Yk, (int64_t)no);
done:
    free(T);
    free(Yk);
    free(Y64);
    free(mag);
    qr_qact_free(&A);
    qr_kmodule_free(&km);
    return st;
}

int qr_validate_act_ok(const qr_validate_act *a)
{
    return a->int_mismatches == 0 && a->float_rel_diff <= a->float_tol;
}

qr_status qr_validate_module(const qr_qlayer *ql, const double *W, const float *X, int64_t n,
                             qr_validate_result *r)
{
    qr_status st = QR_OK;
    double *Xd = NULL, *Yw = NULL; /* (n, d_in), (n, d_out) */
    double t0 = qr_now();
    memset(r, 0, sizeof *r);
    QR_TRY(check_sizes(ql, n));
    QR_CHECK(qr_malloc(&Xd, (size_t)n * (size_t)ql->d_in, sizeof *Xd, "validate input"));
    QR_CHECK(qr_malloc(&Yw, (size_t)n * (size_t)ql->d_out, sizeof *Yw, "validate output"));
    for (int64_t i = 0; i < n * ql->d_in; i++) {
        Xd[i] = (double)X[i];
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)ql->d_out, (int)ql->d_in, 1.0,
                Xd, (int)ql->d_in, W, (int)ql->d_in, 0.0, Yw, (int)ql->d_out);
    QR_CHECK(qr_metrics_output_error(ql, W, X, n, 0, 0, &r->out_err_float));
    QR_CHECK(check_act(ql, X, n, Yw, 8, &r->act[0]));
    QR_CHECK(check_act(ql, X, n, Yw, 4, &r->act[1]));
done:
    free(Xd);
    free(Yw);
    r->seconds = qr_now() - t0;
    return st;
}

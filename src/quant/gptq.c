/* gptq.c: GPTQ weight quantization (Frantar et al. 2022, "Accurate Post-Training Quantization for
 * Generative Pre-trained Transformers"), the error-feedback alternative to RTN (src/quant.h).
 *
 * Columns are quantized one at a time in natural order; the rounding error of column i, divided by
 * U_ii, is pushed onto the not-yet-quantized columns through row i of U, the upper Cholesky factor
 * of H^-1 (H^-1 = Uᵀ U). Updates inside a block of 128 columns are applied at once; the rest of the
 * matrix gets one rank-128 update per block (dgemm), which is what makes it fast. We work on Wᵀ
 * (d_in, d_out) so a column of W is a contiguous row. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/alloc.h"
#include "src/checked.h"
#include "src/linalg.h"
#include "src/log.h"
#include "src/quant.h"
#include "src/quant/internal.h"

/* U (n, n), row-major upper triangle: H^-1 = Uᵀ U, from H (n, n) symmetric with H_jj > 0. */
static qr_status inverse_cholesky_upper(double *H, int64_t n, double damp, double *damping)
{
    int ni = (int)n; /* checked by the caller */
    lapack_int info;
    /* H = L Lᵀ (row-major lower, damped as GPTQ prescribes). */
    QR_TRY(qr_cholesky_damped(H, n, damp, damping));
    /* Row-major lower = column-major upper: dpotri('U') gives the column-major upper triangle of
     * H^-1, i.e. its row-major lower triangle. */
    info = LAPACKE_dpotri(LAPACK_COL_MAJOR, 'U', ni, H, ni);
    if (info != 0) {
        return qr_fail(QR_ERR_NUMERIC, "GPTQ: inverting the Hessian failed (dpotri info %d)",
                       (int)info);
    }
    /* Factor H^-1 = Uᵀ U: the column-major lower factor of the column-major lower triangle (which
     * is the row-major upper one: mirror into it first) is, read row-major, the upper U. */
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < i; j++) {
            H[j * n + i] = H[i * n + j];
        }
    }
    info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', ni, H, ni);
    if (info != 0) {
        return qr_fail(QR_ERR_NUMERIC,
                       "GPTQ: the inverse Hessian is not positive definite (dpotrf info %d)",
                       (int)info);
    }
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < i; j++) {
            H[i * n + j] = 0.0;
        }
    }
    return QR_OK;
}

qr_status qr_gptq_sweep(double *Wt, int64_t d_in, int64_t m, const double *hdiag,
                        const qr_wquant_opts *o, qr_gptq_panel_fn panel, void *ctx, qr_qweight *out)
{
    qr_status st = QR_OK;
    int mi;
    double *Err = NULL;   /* (QR_GPTQ_BLOCK, m): scaled errors of the current block */
    double *gw = NULL;    /* (group): one output row of a group, for its parameters */
    float *gscale = NULL; /* (m): current group's scale per output row */
    unsigned *gzero = NULL;
    if (!qr_to_int(m, &mi)) {
        return qr_fail(QR_ERR_INPUT, "GPTQ: %lld rows out of range", (long long)m);
    }
    st = qr_malloc(&Err, (size_t)QR_GPTQ_BLOCK * (size_t)(m > 0 ? m : 1), sizeof *Err,
                   "GPTQ errors");
    if (st == QR_OK) {
        st = qr_malloc(&gw, (size_t)out->group, sizeof *gw, "GPTQ group");
    }
    if (st == QR_OK) {
        st = qr_malloc(&gscale, (size_t)(m > 0 ? m : 1), sizeof *gscale, "GPTQ scales");
    }
    if (st == QR_OK) {
        st = qr_malloc(&gzero, (size_t)(m > 0 ? m : 1), sizeof *gzero, "GPTQ zero points");
    }
    for (int64_t b1 = 0; b1 < d_in; b1 += QR_GPTQ_BLOCK) {
        int64_t b2 = (b1 + QR_GPTQ_BLOCK < d_in) ? b1 + QR_GPTQ_BLOCK : d_in, ld = 0;
        const double *U = NULL; /* U[b1][b1]: U[i][j] at U[(i - b1) ld + (j - b1)] */
        QR_CHECK(panel(ctx, st, b1, b2, &U, &ld));
        for (int64_t i = b1; i < b2; i++) {
            double *col = Wt + i * m; /* (m): column i of W, with all updates so far */
            double *err = Err + (i - b1) * m;
            const double *urow = U + (i - b1) * ld - b1; /* urow[j] = U[i][j] */
            double uii = urow[i];
            int64_t g = i / out->group;
            if (i % out->group == 0) {
                /* Refit the group's parameters from the current weights (columns past this block
                 * have this block's updates still pending, as in the reference implementation). */
                int64_t n = (i + out->group <= d_in) ? out->group : d_in - i;
                for (int64_t r = 0; r < m; r++) {
                    for (int64_t j = 0; j < n; j++) {
                        gw[j] = Wt[(i + j) * m + r];
                    }
                    qr_wquant_group_fit(gw, hdiag + i, n, o, &gscale[r], &gzero[r]);
                    out->scales[r * out->n_groups + g] = gscale[r];
                    if (o->asym) {
                        out->zeros[r * out->n_groups + g] = (uint8_t)gzero[r];
                    }
                }
            }
            for (int64_t r = 0; r < m; r++) {
                unsigned code = qr_wquant_code(col[r], gscale[r], gzero[r], o->asym);
                double q = qr_wquant_decode(code, gscale[r], gzero[r], o->asym);
                qr_qweight_set_code(out, r, i, code);
                err[r] = (col[r] - q) / uii;
            }
            for (int64_t j = i + 1; j < b2; j++) {
                cblas_daxpy(mi, -urow[j], err, 1, Wt + j * m, 1);
            }
        }
        if (b2 < d_in && m > 0) {
            /* Wt[b2:, :] -= U[b1:b2, b2:]ᵀ Err */
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(d_in - b2), mi,
                        (int)(b2 - b1), -1.0, U + (b2 - b1), (int)ld, Err, mi, 1.0, Wt + b2 * m,
                        mi);
        }
    }
done:
    free(Err);
    free(gw);
    free(gscale);
    free(gzero);
    return st;
}

/* The serial panel: rows of the whole U in place. */
static qr_status whole_panel(void *ctx, qr_status mine, int64_t b1, int64_t b2,
                             const double **panel, int64_t *ld)
{
    const qr_gptq_factor *f = ctx;
    (void)b2;
    if (mine != QR_OK) {
        return mine;
    }
    *panel = f->U + b1 * f->n + b1;
    *ld = f->n;
    return QR_OK;
}

qr_status qr_gptq_factor_make(const double *H, int64_t n, double damp, qr_gptq_factor *f)
{
    qr_status st = QR_OK;
    size_t nn;
    double damping = 0.0;
    memset(f, 0, sizeof *f);
    if (n < 1 || n > INT32_MAX || !qr_mul_size((size_t)n, (size_t)n, &nn)) {
        return qr_fail(QR_ERR_INPUT, "GPTQ: Hessian size %lld out of range", (long long)n);
    }
    if (!(damp > 0.0 && damp <= QR_CHOL_LAMBDA_MAX)) {
        return qr_fail(QR_ERR_INPUT, "GPTQ: damping (expected 0 < lambda <= %g, found %g)",
                       QR_CHOL_LAMBDA_MAX, damp);
    }
    f->n = n;
    QR_CHECK(qr_malloc(&f->U, nn, sizeof *f->U, "GPTQ Hessian"));
    QR_CHECK(qr_malloc(&f->hdiag, (size_t)n, sizeof *f->hdiag, "GPTQ Hessian diagonal"));
    QR_CHECK(qr_calloc(&f->dead, (size_t)n, sizeof *f->dead, "GPTQ dead channels"));
    memcpy(f->U, H, nn * sizeof *f->U);
    for (int64_t j = 0; j < n; j++) {
        QR_CHECK(qr_gptq_dead_channel(f->U[j * n + j], j, &f->hdiag[j]));
        f->dead[j] = f->hdiag[j] != f->U[j * n + j];
        f->U[j * n + j] = f->hdiag[j];
    }
    QR_CHECK(inverse_cholesky_upper(f->U, n, damp, &damping));
    QR_DEBUG("GPTQ: factor of %lld inputs, damping %g", (long long)n, damping);
done:
    if (st != QR_OK) {
        qr_gptq_factor_free(f);
    }
    return st;
}

void qr_gptq_factor_free(qr_gptq_factor *f)
{
    free(f->U);
    free(f->hdiag);
    free(f->dead);
    memset(f, 0, sizeof *f);
}

qr_status qr_quantize_gptq_factored(const double *W, int64_t d_out, int64_t d_in,
                                    const qr_gptq_factor *f, const qr_wquant_opts *o,
                                    qr_qweight *out)
{
    qr_status st = QR_OK;
    int ni, mi;
    double *Wt = NULL; /* (d_in, d_out): Wᵀ, updated in place */
    memset(out, 0, sizeof *out);
    QR_TRY(qr_wquant_check(W, d_out, d_in, o, "GPTQ"));
    if (!qr_to_int(d_in, &ni) || !qr_to_int(d_out, &mi) || f->n != d_in) {
        return qr_fail(QR_ERR_INPUT, "GPTQ: size %lld x %lld out of range or not the factor's %lld",
                       (long long)d_out, (long long)d_in, (long long)f->n);
    }
    QR_CHECK(qr_qweight_alloc(out, d_out, d_in, o->group, o->asym));
    QR_CHECK(qr_malloc(&Wt, (size_t)d_in * (size_t)d_out, sizeof *Wt, "GPTQ weights"));
    for (int64_t j = 0; j < d_in; j++) { /* a dead channel's weights are quantized from zero */
        for (int64_t i = 0; i < d_out; i++) {
            Wt[j * d_out + i] = f->dead[j] ? 0.0 : W[i * d_in + j];
        }
    }
    QR_CHECK(qr_gptq_sweep(Wt, d_in, d_out, f->hdiag, o, whole_panel, (void *)f, out));
done:
    if (st != QR_OK) {
        qr_qweight_free(out);
    }
    free(Wt);
    return st;
}

qr_status qr_quantize_gptq(const double *W, int64_t d_out, int64_t d_in, const double *H,
                           const qr_wquant_opts *o, qr_qweight *out)
{
    qr_gptq_factor f;
    qr_status st;
    memset(out, 0, sizeof *out);
    QR_TRY(qr_wquant_check(W, d_out, d_in, o, "GPTQ"));
    QR_TRY(qr_gptq_factor_make(H, d_in, o->gptq_damp, &f));
    st = qr_quantize_gptq_factored(W, d_out, d_in, &f, o, out);
    qr_gptq_factor_free(&f);
    return st;
}
qr_status qr_gptq_dead_channel(double h, int64_t j, double *used)
{
    if (!isfinite(h) || h < 0.0) {
        return qr_fail(QR_ERR_INPUT,
                       "GPTQ: Hessian diagonal %lld (expected finite and >= 0, found %g)",
                       (long long)j, h);
    }
    /* A dead input channel: its weights never matter, so quantize them from zero and keep the
     * factorization well posed (the reference implementation does the same). */
    *used = h == 0.0 ? 1.0 : h;
    return QR_OK;
}

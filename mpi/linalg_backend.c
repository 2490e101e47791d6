/* linalg_backend.c: ScaLAPACK forwarding of the serial linear algebra (mpi/linalg_backend.h). */
#include "mpi/linalg_backend.h"

#include "mpi/pdla.h"

static qr_status be_svd_truncated(void *ctx, const double *A, int64_t m, int64_t n, int64_t r,
                                  const qr_svd_opts *o, qr_rng *rng, double *U, double *S,
                                  double *Vt)
{
    const qr_grid *g = ctx;
    qr_dmat *d = NULL;
    qr_status st = qr_dmat_create(g, m, n, &d);
    if (st != QR_OK) {
        return st;
    }
    qr_dmat_fill_local(g, d, A);
    st = qr_pdla_svd_truncated(g, d, r, o, rng, U, S, Vt);
    qr_dmat_free(&d);
    return st;
}

static qr_status be_cholesky_damped(void *ctx, double *G, int64_t n, double lambda0,
                                    double *damping_used)
{
    const qr_grid *g = ctx;
    qr_dmat *d = NULL;
    qr_status st = qr_dmat_create(g, n, n, &d);
    if (st != QR_OK) {
        return st;
    }
    qr_dmat_fill_local(g, d, G);
    st = qr_pdla_cholesky_damped(g, d, lambda0, damping_used);
    /* On failure G keeps its input, as the serial routine promises. */
    if (st == QR_OK) {
        st = qr_dmat_allgather(g, d, G);
    }
    qr_dmat_free(&d);
    return st;
}

static qr_status be_tri_right(void *ctx, double *A, int64_t m, int64_t n, const double *L,
                              bool transpose, bool inverse)
{
    const qr_grid *g = ctx;
    qr_dmat *da = NULL, *dl = NULL;
    qr_status st = qr_dmat_create(g, m, n, &da);
    if (st == QR_OK) {
        st = qr_dmat_create(g, n, n, &dl);
    }
    if (st == QR_OK) {
        qr_dmat_fill_local(g, da, A);
        qr_dmat_fill_local(g, dl, L);
        st = qr_pdla_tri_right(g, da, dl, transpose, inverse);
    }
    if (st == QR_OK) {
        st = qr_dmat_allgather(g, da, A);
    }
    qr_dmat_free(&da);
    qr_dmat_free(&dl);
    return st;
}

void qr_scalapack_backend(qr_linalg_backend *b, const qr_grid *g)
{
    b->svd_truncated = be_svd_truncated;
    b->cholesky_damped = be_cholesky_damped;
    b->tri_right = be_tri_right;
    b->ctx = (void *)g;
}

/* qera_approx.c: QERA-approx: as LQER with s_j = rms of x_j (the diagonal approximation of the QERA
 * optimum). */
#include "src/methods/correction.h"

static qr_status qera_approx_run(const qr_method_opts *o, const double *W, int64_t d_out,
                                 int64_t d_in, const qr_stats *calib, qr_qlayer *out,
                                 qr_method_report *rep)
{
    return qr_qer_run(QR_METHOD_QERA_APPROX, o, W, d_out, d_in, calib, out, rep);
}

const qr_method_impl qr_method_qera_approx = {"qera-approx", QR_METHOD_QERA_APPROX, true,
                                              qera_approx_run};

/* qera_exact.c: QERA-exact: the whitened correction, optimal for the output error on the
 * calibration set: SVD of E S with G = S Sᵀ (Cholesky, damped when needed), C = U_r Σ_r V_rᵀ S⁻¹.
 */
#include "src/methods/correction.h"

static qr_status qera_exact_run(const qr_method_opts *o, const double *W, int64_t d_out,
                                int64_t d_in, const qr_stats *calib, qr_qlayer *out,
                                qr_method_report *rep)
{
    return qr_qer_run(QR_METHOD_QERA_EXACT, o, W, d_out, d_in, calib, out, rep);
}

const qr_method_impl qr_method_qera_exact = {"qera-exact", QR_METHOD_QERA_EXACT, true,
                                             qera_exact_run};

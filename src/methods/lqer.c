/* lqer.c: LQER (L²QER scale): s_j = per-batch mean |x_j|, running max over batches, clamped and
 * centred; rank-r SVD correction of E diag(s). */
#include "src/methods/correction.h"

static qr_status lqer_run(const qr_method_opts *o, const double *W, int64_t d_out, int64_t d_in,
                          const qr_stats *calib, qr_qlayer *out, qr_method_report *rep)
{
    return qr_qer_run(QR_METHOD_LQER, o, W, d_out, d_in, calib, out, rep);
}

const qr_method_impl qr_method_lqer = {"lqer", QR_METHOD_LQER, true, lqer_run};

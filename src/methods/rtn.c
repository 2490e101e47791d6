/* rtn.c: RTN, the floor every method must beat: the main weight quantized (RTN, or GPTQ when asked)
 * with no correction. */
#include "src/methods/correction.h"

static qr_status rtn_run(const qr_method_opts *o, const double *W, int64_t d_out, int64_t d_in,
                         const qr_stats *calib, qr_qlayer *out, qr_method_report *rep)
{
    double t0 = qr_now();
    QR_TRY(qr_method_quantize(o, W, d_out, d_in, calib ? calib->G : NULL, &out->main, NULL));
    rep->seconds[QR_STAGE_QUANTIZE] += qr_now() - t0;
    return QR_OK;
}

const qr_method_impl qr_method_rtn = {"rtn", QR_METHOD_RTN, false, rtn_run};

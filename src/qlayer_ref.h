/* qlayer_ref.h: the plain float64 reference forward of a quantized module (src/qlayer.h): what a
 * qr_qlayer computes, written to be obviously right rather than fast. The metrics measure output
 * error with it, and the INT4 kernels are checked against it. No MPI, no files, not collective. */
#ifndef QR_QLAYER_REF_H
#define QR_QLAYER_REF_H

#include <stdint.h>

#include "src/qlayer.h"
#include "src/status.h"

/* Y (n, d_out) = the module applied to the rows of X (n, d_in) float32:
 *   t = x[perm] / smooth;  u = Qa(t) (qr_act_fake_quant with abits, agroup; abits 0 = float);
 *   y = deq(main) u + deq(side) u[:n_salient] + L (R u),  all in float64.
 * abits 0, 4 or 8; agroup 0 = one group per token. QR_ERR_INPUT on a malformed layer or options. */
qr_status qr_qlayer_forward_ref(const qr_qlayer *ql, const float *X, int64_t n, int abits,
                                int64_t agroup, double *Y);

#endif

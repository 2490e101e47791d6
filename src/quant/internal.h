/* internal.h: helpers shared by the weight quantizers in src/quant/ (not a public API). */
#ifndef QR_QUANT_INTERNAL_H
#define QR_QUANT_INTERNAL_H

#include <stdint.h>

#include "src/quant.h"

/* Validate shape, options and finiteness of W (d_out, d_in); who names the caller in messages. */
qr_status qr_wquant_check(const double *W, int64_t d_out, int64_t d_in, const qr_wquant_opts *o,
                          const char *who);

/* Scale and zero of one group of n values w, with the clip search of o when enabled (weights cw,
 * NULL = unweighted). */
void qr_wquant_group_fit(const double *w, const double *cw, int64_t n, const qr_wquant_opts *o,
                         float *scale, unsigned *zero);

#endif

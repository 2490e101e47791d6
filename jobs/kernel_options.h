/* kernel_options.h: the --kernel option row, shared by the commands that run the INT4 kernels
 * (eval --ckpt, validate). The value is a name qr_kernel_select (src/kernels/kernels.h) checks. */
#ifndef QR_JOBS_KERNEL_OPTIONS_H
#define QR_JOBS_KERNEL_OPTIONS_H

#include "jobs/options.h"

/* A one-row table over *kernel (initialise it to "auto"), under `heading` (NULL: none). */
qr_opt_table qr_kernel_opt_table(const char **kernel, const char *heading);

#endif

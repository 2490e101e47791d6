/* kernel_options.c: the shared --kernel row (jobs/kernel_options.h). */
#include "jobs/kernel_options.h"

static const qr_opt kernel_rows[] = {
    {"kernel", QR_OPT_STR, 0, "K",
     "INT4 kernel path: auto (the best this CPU runs), ref, avx2 or avx512"},
};

qr_opt_table qr_kernel_opt_table(const char **kernel, const char *heading)
{
    qr_opt_table t = QR_OPT_TABLE(kernel_rows, kernel, heading);
    return t;
}

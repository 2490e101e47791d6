/* export_ct.c: `qrecon export --format compressed-tensors` (docs/export.md). */
#include "jobs/export.h"

qr_status qr_export_ct(qr_export *e)
{
    (void)e;
    return qr_fail(QR_ERR_INPUT, "compressed-tensors: not yet");
}

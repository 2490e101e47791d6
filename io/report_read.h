/* report_read.h: fill the report's rows (src/report.h) from a shared checkpoint's stored metrics
 * and, when present, the validation results `qrecon validate --json` wrote beside it. Nothing is
 * recomputed: the numbers are the ones the checkpoint holds. Not collective. */
#ifndef QR_IO_REPORT_READ_H
#define QR_IO_REPORT_READ_H

#include "src/report.h"
#include "src/status.h"

/* Read checkpoint `path` (format, version and `complete` checked). validation_path may be NULL:
 * then `<path>.validate.json` is used when it exists. */
qr_status qr_report_read(const char *path, const char *validation_path, qr_report_ckpt *out);

#endif

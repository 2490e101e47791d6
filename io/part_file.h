/* part_file.h: the per-module part file, the unit of resume of `qrecon quantize`.
 *
 * `<out>.parts/<module name>.h5`, serial HDF5, written as `<name>.h5.tmp`, flushed, fsynced, closed
 * and renamed into place: its presence means the module is done. Layout (version 1; every field is
 * described in docs/checkpoint.md):
 *   root attributes  format = "qrecon-part", version = 1, module (string),
 *                    the module's qr_qlayer attributes (io/qlayer_h5.h: method, d_out, d_in, rank,
 *                    n_salient, bits_per_weight),
 *                    "opt.<key>" for every option that affects the result (including the source
 *                    model and calibration identities),
 *                    "metric.<key>" for every metric of the module
 *   datasets         the qr_qlayer datasets of io/qlayer_h5.h (main/, smooth, perm, L, R, side/)
 * Timestamps are off, so the same content gives the same bytes. Not collective. */
#ifndef QR_IO_PART_FILE_H
#define QR_IO_PART_FILE_H

#include <stddef.h>

#include "io/h5util.h"
#include "io/qlayer_h5.h"
#include "src/modules.h"
#include "src/qlayer.h"
#include "src/status.h"

#define QR_PART_FORMAT "qrecon-part"
#define QR_PART_VERSION 1
#define QR_PART_OPT_PREFIX "opt."
#define QR_PART_METRIC_PREFIX "metric."

/* What a part file says about itself (everything but the arrays). */
typedef struct {
    char module[QR_MODULE_NAME_MAX];
    qr_qlayer_layout layout;
    qr_kvlist options; /* keys without the "opt." prefix, in name order */
    qr_kvlist metrics; /* keys without the "metric." prefix, in name order */
} qr_part_info;

void qr_part_info_free(qr_part_info *info); /* NULL-safe */

/* `<out>.parts` and `<out>.parts/<module>.h5` into buf. */
qr_status qr_part_dir(const char *out, char *buf, size_t n);
qr_status qr_part_path(const char *out, const char *module, char *buf, size_t n);

/* Write module `module` (ql, its options and metrics) atomically to path. */
qr_status qr_part_write(const char *path, const char *module, const qr_kvlist *options,
                        const qr_kvlist *metrics, const qr_qlayer *ql);

/* Read the attributes and the arrays, checking format, version, layout, every dataset's checksum
 * and values (the arrays are then freed; info->layout carries their checksums). */
qr_status qr_part_read_info(const char *path, qr_part_info *info);

/* Read the whole part: info (may be NULL) and the module into ql (free with qr_qlayer_free). */
qr_status qr_part_read(const char *path, qr_part_info *info, qr_qlayer *ql);

/* Check that a part read with qr_part_read_info belongs to this job: the same module name and shape
 * and exactly the same options. QR_ERR_INPUT naming the path and the first differing option
 * (expected vs found) otherwise. */
qr_status qr_part_check(const qr_part_info *info, const char *path, const char *module,
                        int64_t d_out, int64_t d_in, const qr_kvlist *options);

#endif

/* method_options.h: the option rows of the reconstruction method (--method, --rank, --group, ...),
 * shared by `quantize` and `plan` so that both describe the same computation from the same
 * command line. Offsets point into a qr_method_opts. */
#ifndef QR_JOBS_METHOD_OPTIONS_H
#define QR_JOBS_METHOD_OPTIONS_H

#include "io/h5util.h"
#include "jobs/options.h"
#include "src/method.h"

/* The method options that decide the computation, as the key/value list a checkpoint's options
 * and `qrecon plan --json` both carry (group, asym, clip_search, rank, salient, gptq, seed, svd,
 * svd_oversample, svd_power_iters, smooth_alpha, srr_base, srr_k, whiten_lambda0, bits, gptq_damp;
 * in this order, which is part of the checkpoint's bytes). The method name is the caller's (it
 * comes first). */
qr_status qr_method_opts_kv(const qr_method_opts *mo, qr_kvlist *l);

/* The method rows as a table over *mo, under `heading`. */
qr_opt_table qr_method_opt_table(qr_method_opts *mo, const char *heading);

/* Some method defaults depend on the method (ASER's group, the salient counts). Parse the
 * command's tables once over the defaults of QR_METHOD_DEFAULT to learn the method, then, if
 * another was named, again over that method's defaults. init(ctx, m) resets the command's structs
 * to their defaults for method m (and must call qr_method_opts_default(mo, m)); mo is the struct
 * the method rows write to. Usage errors as qr_opts_parse. */
typedef void (*qr_opts_init_fn)(void *ctx, qr_method_id m);
qr_status qr_opts_parse_with_method(const qr_cmd_doc *doc, const qr_opt_table *tables,
                                    size_t n_tables, int max_positional, int argc, char **argv,
                                    qr_opts_init_fn init, void *ctx, const qr_method_opts *mo,
                                    qr_opt_result *res);

#endif

/* method_options.c: the shared method option rows (jobs/method_options.h). */
#include "jobs/method_options.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static qr_status parse_svd(const char *opt, const char *value, void *dst)
{
    return qr_svd_mode_parse(opt, value, (qr_svd_mode *)dst);
}

/* "auto" (QR_AUTO, the rule of qr_method_resolve) or a count 0..2^20. */
static qr_status parse_auto_count(const char *opt, const char *value, void *dst)
{
    char *end = NULL;
    long long v;
    if (strcmp(value, "auto") == 0) {
        *(int64_t *)dst = QR_AUTO;
        return QR_OK;
    }
    v = strtoll(value, &end, 10);
    if (!*value || *end || v < 0 || v > (1 << 20)) {
        return qr_fail(QR_ERR_INPUT, "%s: expected auto or an integer 0..%d, found '%s'", opt,
                       1 << 20, value);
    }
    *(int64_t *)dst = (int64_t)v;
    return QR_OK;
}

#define MO(f) offsetof(qr_method_opts, f)
static const qr_opt method_rows[] = {
    {"method", QR_OPT_CUSTOM, MO(method), "M",
     "rtn, lqer, qera-approx, qera-exact, aser, serq, flrq, srr, joint", "srr",
     .parse = qr_opt_parse_method},
    {"group", QR_OPT_INT, MO(wq.group), "N", "weight group size along d_in, 0 = one group per row",
     "128; aser: 0", .imin = 0, .imax = 1 << 20},
    {"asym", QR_OPT_FLAG, MO(wq.asym), NULL,
     "asymmetric weight groups with zero points (symmetric)"},
    {"clip", QR_OPT_FLAG, MO(wq.clip_search), NULL, "search a per-group clipping factor (off)"},
    {"rank", QR_OPT_CUSTOM, MO(rank), "N|auto",
     "low-rank budget r of each module (d_out m x d_in n); auto, the rule:\n"
     "r = floor(E m n / (16 (m + n))), at most min(m, n), where E = 0.25 bit/w\n"
     "(at least r = 1) or, with --bits B, E = B - base, the bits/w of the main\n"
     "matrix (and of ASER's and SERQ's per-channel vectors)",
     "auto", .parse = parse_auto_count},
    {"salient", QR_OPT_CUSTOM, MO(n_salient), "K|auto",
     "salient channels: aser f, serq k; auto, the rule: aser f = min(r,\n"
     "max(1, floor(n / 128))); serq k = max(1, floor(n / 32)), with --bits B\n"
     "the most the side matrix fits: floor(((B - base) n - 32) / 4)",
     "auto", .parse = parse_auto_count},
    {"bits", QR_OPT_DOUBLE, MO(bits), "B",
     "bits-per-weight budget: auto ranks and salient counts use it all, rounded\n"
     "down, so every module, and so the parameter-weighted model, stores <= B\n"
     "bits per weight (an explicit --rank or --salient over it is refused)",
     "none", .dmin = 0.0, .dmax = 64.0},
    {"gptq", QR_OPT_FLAG, MO(gptq), NULL,
     "GPTQ instead of round-to-nearest for the main weight (off; joint: always on)"},
    {"gptq-damp", QR_OPT_DOUBLE, MO(wq.gptq_damp), "F",
     "GPTQ's damping of H = XᵀX relative to mean diag(H) (docs/methods.md)", .dmin = 1e-12,
     .dmax = 1.0},
    {"svd", QR_OPT_CUSTOM, MO(svd.mode), "MODE", "auto, exact or randomized truncated SVD", "auto",
     .parse = parse_svd},
    {"seed", QR_OPT_INT, MO(seed), "N", "seed of every random stream", .imin = 0,
     .imax = INT64_MAX},
};
#undef MO

qr_opt_table qr_method_opt_table(qr_method_opts *mo, const char *heading)
{
    qr_opt_table t = QR_OPT_TABLE(method_rows, mo, heading);
    return t;
}

qr_status qr_opts_parse_with_method(const qr_cmd_doc *doc, const qr_opt_table *tables,
                                    size_t n_tables, int max_positional, int argc, char **argv,
                                    qr_opts_init_fn init, void *ctx, const qr_method_opts *mo,
                                    qr_opt_result *res)
{
    qr_method_id m;
    init(ctx, QR_METHOD_DEFAULT);
    QR_TRY(qr_opts_parse(doc, tables, n_tables, max_positional, argc, argv, res));
    m = mo->method;
    if (res->help || m == QR_METHOD_DEFAULT) {
        return QR_OK;
    }
    init(ctx, m);
    return qr_opts_parse(doc, tables, n_tables, max_positional, argc, argv, res);
}

qr_status qr_method_opts_kv(const qr_method_opts *mo, qr_kvlist *l)
{
    QR_TRY(qr_kv_set_int(l, "group", mo->wq.group));
    QR_TRY(qr_kv_set_int(l, "asym", mo->wq.asym ? 1 : 0));
    QR_TRY(qr_kv_set_int(l, "clip_search", mo->wq.clip_search ? 1 : 0));
    QR_TRY(qr_kv_set_int(l, "rank", mo->rank));
    QR_TRY(qr_kv_set_int(l, "salient", mo->n_salient));
    QR_TRY(qr_kv_set_int(l, "gptq", mo->gptq ? 1 : 0));
    QR_TRY(qr_kv_set_int(l, "seed", (int64_t)mo->seed));
    QR_TRY(qr_kv_set_str(l, "svd", qr_svd_mode_name(mo->svd.mode)));
    QR_TRY(qr_kv_set_int(l, "svd_oversample", mo->svd.oversample));
    QR_TRY(qr_kv_set_int(l, "svd_power_iters", mo->svd.power_iters));
    QR_TRY(qr_kv_set_double(l, "smooth_alpha", mo->smooth_alpha));
    QR_TRY(qr_kv_set_str(l, "srr_base", qr_method_name(mo->srr_base)));
    QR_TRY(qr_kv_set_int(l, "srr_k", mo->srr_k));
    QR_TRY(qr_kv_set_double(l, "whiten_lambda0", mo->whiten_lambda0));
    QR_TRY(qr_kv_set_double(l, "bits", mo->bits));
    return qr_kv_set_double(l, "gptq_damp", mo->wq.gptq_damp);
}

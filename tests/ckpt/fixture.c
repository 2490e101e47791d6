/* fixture.c: seeded random quantized modules (tests/ckpt/fixture.h). */
#include "tests/ckpt/fixture.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "src/alloc.h"
#include "src/rng.h"

static qr_status fill_qweight(qr_qweight *q, int64_t rows, int64_t cols, int64_t group, bool asym,
                              qr_rng *rng)
{
    QR_TRY(qr_qweight_alloc(q, rows, cols, group, asym));
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < cols; j++) {
            qr_qweight_set_code(q, i, j, (unsigned)(qr_rng_u64(rng) & 0xf));
        }
    }
    for (int64_t g = 0; g < rows * q->n_groups; g++) {
        q->scales[g] = (float)(1e-3 + qr_rng_uniform(rng));
        if (asym) {
            q->zeros[g] = (uint8_t)(qr_rng_u64(rng) % 16);
        }
    }
    return QR_OK;
}

qr_status qr_fixture_qlayer(const qr_fixture_spec *spec, uint64_t seed, qr_qlayer *ql)
{
    qr_status st = QR_OK;
    qr_rng rng;
    qr_rng_seed(&rng, seed);
    memset(ql, 0, sizeof *ql);
    ql->method = spec->method;
    ql->d_out = spec->d_out;
    ql->d_in = spec->d_in;
    ql->rank = spec->rank;
    ql->n_salient = spec->n_salient;
    ql->bits_per_weight = 4.0 + qr_rng_uniform(&rng);
    QR_CHECK(fill_qweight(&ql->main, spec->d_out, spec->d_in, spec->group, spec->asym, &rng));
    if (spec->smooth) {
        QR_CHECK(qr_malloc(&ql->smooth, (size_t)spec->d_in, sizeof(float), "smooth"));
        for (int64_t j = 0; j < spec->d_in; j++) {
            ql->smooth[j] = (float)(0.5 + qr_rng_uniform(&rng));
        }
    }
    if (spec->perm) {
        QR_CHECK(qr_malloc(&ql->perm, (size_t)spec->d_in, sizeof(int32_t), "perm"));
        for (int64_t j = 0; j < spec->d_in; j++) {
            ql->perm[j] = (int32_t)j;
        }
        for (int64_t j = spec->d_in - 1; j > 0; j--) {
            int64_t k = (int64_t)(qr_rng_u64(&rng) % (uint64_t)(j + 1));
            int32_t t = ql->perm[j];
            ql->perm[j] = ql->perm[k];
            ql->perm[k] = t;
        }
    }
    if (spec->rank > 0) {
        QR_CHECK(qr_malloc(&ql->L, (size_t)(spec->d_out * spec->rank), sizeof(float), "L"));
        QR_CHECK(qr_malloc(&ql->R, (size_t)(spec->rank * spec->d_in), sizeof(float), "R"));
        for (int64_t i = 0; i < spec->d_out * spec->rank; i++) {
            ql->L[i] = (float)qr_rng_normal(&rng);
        }
        for (int64_t i = 0; i < spec->rank * spec->d_in; i++) {
            ql->R[i] = (float)qr_rng_normal(&rng);
        }
    }
    if (spec->n_salient > 0) {
        QR_CHECK(fill_qweight(&ql->side, spec->d_out, spec->n_salient, 0, spec->asym, &rng));
    }
done:
    if (st != QR_OK) {
        qr_qlayer_free(ql);
    }
    return st;
}

qr_status qr_fixture_options(qr_kvlist *opts, int64_t wbits)
{
    QR_TRY(qr_kv_set_str(opts, "method", "srr"));
    QR_TRY(qr_kv_set_int(opts, "wbits", wbits));
    QR_TRY(qr_kv_set_int(opts, "abits", 8));
    QR_TRY(qr_kv_set_int(opts, "group", 32));
    QR_TRY(qr_kv_set_double(opts, "holdout", 0.1));
    QR_TRY(qr_kv_set_str(opts, "source", "0123456789abcdef"));
    return QR_OK;
}

qr_status qr_fixture_metrics(qr_kvlist *metrics, uint64_t seed)
{
    qr_rng rng;
    qr_rng_seed(&rng, seed);
    QR_TRY(qr_kv_set_double(metrics, "weight_error", qr_rng_uniform(&rng)));
    QR_TRY(qr_kv_set_double(metrics, "output_error", qr_rng_uniform(&rng)));
    QR_TRY(qr_kv_set_double(metrics, "sqnr_db", 20 * qr_rng_uniform(&rng)));
    QR_TRY(qr_kv_set_int(metrics, "rank_used", (int64_t)(qr_rng_u64(&rng) % 64)));
    return QR_OK;
}

void qr_fixture_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096];
    if (!d) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
    rmdir(dir);
}

/* make_calib.c: a calibration fixture for the quantize tests (until `qrecon capture` is used):
 * SHARDS shard files of WINDOWS windows of SEQ tokens each, every layer input of MODEL filled with
 * seeded normal activations in which every 29th channel is an outlier (x20), written with the
 * io/calib_shard writer under the model's identity.
 *
 *   make_calib MODEL OUT_DIR SHARDS WINDOWS SEQ SEED [--bad KEY]
 *
 * --bad KEY rewrites dataset KEY of the LAST shard one column wider (a wrong d_in for one layer).
 */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/calib_shard.h"
#include "io/fs.h"
#include "io/model.h"
#include "src/rng.h"

static int fail(const char *what)
{
    fprintf(stderr, "make_calib: %s: %s\n", what, qr_errmsg());
    return 1;
}

static int widen(const char *path, const char *key, int64_t rows, int64_t cols)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols + 1};
    hid_t space, ds;
    if (f < 0 || H5Ldelete(f, key, H5P_DEFAULT) < 0) {
        fprintf(stderr, "make_calib: cannot remove %s from %s\n", key, path);
        return 1;
    }
    space = H5Screate_simple(2, dims, NULL);
    ds = H5Dcreate2(f, key, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0) {
        fprintf(stderr, "make_calib: cannot recreate %s in %s\n", key, path);
        return 1;
    }
    H5Dclose(ds);
    H5Sclose(space);
    H5Fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    qr_model *model = NULL;
    const qr_model_config *cfg;
    qr_calib_info info;
    const char *bad = NULL, *out;
    int64_t shards, windows, seq, seed;
    char path[4096];
    if (argc != 7 && !(argc == 9 && strcmp(argv[7], "--bad") == 0)) {
        fprintf(stderr, "usage: make_calib MODEL OUT_DIR SHARDS WINDOWS SEQ SEED [--bad KEY]\n");
        return 2;
    }
    out = argv[2];
    shards = atoll(argv[3]);
    windows = atoll(argv[4]);
    seq = atoll(argv[5]);
    seed = atoll(argv[6]);
    bad = argc == 9 ? argv[8] : NULL;
    if (qr_model_open(argv[1], &model) != QR_OK) {
        return fail(argv[1]);
    }
    if (qr_fs_mkdirs(out) != QR_OK) {
        return fail(out);
    }
    cfg = qr_model_get_config(model);
    for (int64_t s = 0; s < shards; s++) {
        qr_calib_writer *w = NULL;
        memset(&info, 0, sizeof info);
        info.version = QR_CALIB_VERSION;
        snprintf(info.model_identity, sizeof info.model_identity, "%s", qr_model_identity(model));
        snprintf(info.model_path, sizeof info.model_path, "%s", argv[1]);
        snprintf(info.source, sizeof info.source, "make_calib seed %lld", (long long)seed);
        snprintf(info.source_kind, sizeof info.source_kind, "tokens");
        info.dtype = QR_DTYPE_F32;
        info.dim = cfg->dim;
        info.hidden_dim = cfg->hidden_dim;
        info.q_dim = cfg->n_heads * cfg->head_dim;
        info.n_layers = cfg->n_layers;
        info.vocab_size = cfg->vocab_size;
        info.seq_len = seq;
        info.n_windows = windows;
        info.n_tokens = windows * seq;
        info.window_first = s * windows;
        info.total_windows = shards * windows;
        info.shard_index = s;
        info.shard_count = shards;
        if (qr_calib_shard_name(path, sizeof path, out, s) != QR_OK ||
            qr_calib_writer_open(path, &info, &w) != QR_OK) {
            return fail(path);
        }
        for (int64_t l = 0; l < cfg->n_layers; l++) {
            for (int k = 0; k < QR_INPUT_KIND_COUNT; k++) {
                int64_t d = k == QR_INPUT_O      ? info.q_dim
                            : k == QR_INPUT_DOWN ? cfg->hidden_dim
                                                 : cfg->dim;
                char key[QR_INPUT_KEY_MAX], name[128];
                float *x = malloc((size_t)(info.n_tokens * d) * sizeof(float));
                qr_rng rng;
                qr_calib_key(key, sizeof key, l, (qr_input_kind)k);
                snprintf(name, sizeof name, "%s/shard%lld", key, (long long)s);
                qr_rng_for_name(&rng, name, (uint64_t)seed);
                for (int64_t i = 0; i < info.n_tokens * d; i++) {
                    double v = qr_rng_normal(&rng);
                    x[i] = (float)((i % d) % 29 == 3 ? 20.0 * v : v);
                }
                if (qr_calib_writer_put(w, l, (qr_input_kind)k, 0, x, info.n_tokens, d) != QR_OK) {
                    return fail(key);
                }
                free(x);
            }
        }
        {
            int32_t *ids = calloc((size_t)info.n_tokens, sizeof(int32_t));
            for (int64_t i = 0; i < info.n_tokens; i++) {
                ids[i] = i % seq == 0 ? 1 : (int32_t)(3 + (i * 7 + s) % (cfg->vocab_size - 3));
            }
            if (qr_calib_writer_put_tokens(w, 0, ids, info.n_tokens) != QR_OK) {
                return fail("tokens");
            }
            free(ids);
        }
        if (qr_calib_writer_finish(&w) != QR_OK) {
            return fail(path);
        }
        if (bad && s == shards - 1) {
            int64_t d = strstr(bad, "down_in") ? cfg->hidden_dim
                        : strstr(bad, "o_in")  ? info.q_dim
                                               : cfg->dim;
            if (widen(path, bad, info.n_tokens, d) != 0) {
                return 1;
            }
        }
    }
    qr_model_close(&model);
    return 0;
}

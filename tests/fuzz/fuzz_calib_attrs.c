/* fuzz_calib_attrs.c: libFuzzer harness for the calibration shard attributes (io/calib_shard.c):
 * the input gives the 15 integer root attributes (int64 each, in the writer's order), layer_begin
 * and layer_end, and the dtype string; a shard with small datasets is written with plain HDF5 and
 * opened with qr_calib_shard_open, which must refuse every inconsistent set without overflow or
 * huge allocation; a shard that opens is read. */
#include <hdf5.h>
#include <string.h>

#include "io/calib_shard.h"
#include "tests/fuzz/fuzz_common.h"

static const char *const names[] = {"version",        "dim",
                                    "hidden_dim",     "q_dim",
                                    "n_layers",       "vocab_size",
                                    "seq_len",        "n_tokens",
                                    "n_windows",      "window_first",
                                    "total_windows",  "shard_index",
                                    "shard_count",    "add_dummy_prefix",
                                    "unknown_to_zero"};

static void attr_int(hid_t f, const char *name, int64_t v)
{
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Sclose(s);
}

static void attr_str(hid_t f, const char *name, const char *v, size_t len)
{
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR), a;
    H5Tset_size(t, len ? len : 1);
    a = H5Acreate2(f, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, len ? v : "");
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t v[17]; /* the 15 of names[], then layer_begin, layer_end */
    char path[600];
    qr_calib_shard *s = NULL;
    hid_t f;
    size_t n_layers;
    if (size < sizeof v) {
        return 0;
    }
    memcpy(v, data, sizeof v);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    snprintf(path, sizeof path, "%s", fuzz_file("shard.h5", NULL, 0));
    f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        return 0;
    }
    attr_str(f, "format", QR_CALIB_FORMAT, strlen(QR_CALIB_FORMAT));
    for (int i = 0; i < 15; i++) {
        attr_int(f, names[i], i == 0 ? QR_CALIB_VERSION : v[i]);
    }
    attr_int(f, "layer_begin", v[15]);
    attr_int(f, "layer_end", v[16]);
    attr_str(f, "dtype", (const char *)data + sizeof v, size - sizeof v < 8 ? size - sizeof v : 8);
    attr_str(f, "model_identity", "fuzz", 4);
    attr_str(f, "model_path", "fuzz", 4);
    attr_str(f, "source", "fuzz", 4);
    attr_str(f, "source_kind", "tokens", 6);
    /* Datasets of the declared shape when it is small, so the open can get past them. */
    n_layers = v[4] > 0 && v[4] <= 2 && v[15] == 0 && v[16] == v[4] ? (size_t)v[4] : 0;
    if (v[7] > 0 && v[7] <= 64 && v[1] > 0 && v[1] <= 16 && v[2] > 0 && v[2] <= 16 && v[3] > 0 &&
        v[3] <= 16) {
        for (size_t l = 0; l < n_layers; l++) {
            for (int k = 0; k < QR_INPUT_KIND_COUNT; k++) {
                char key[QR_INPUT_KEY_MAX];
                hsize_t dims[2] = {(hsize_t)v[7], (hsize_t)(k == QR_INPUT_O      ? v[3]
                                                            : k == QR_INPUT_DOWN ? v[2]
                                                                                 : v[1])};
                hid_t sp = H5Screate_simple(2, dims, NULL), d;
                qr_calib_key(key, sizeof key, (int64_t)l, (qr_input_kind)k);
                d = H5Dcreate2(f, key, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
                H5Dclose(d);
                H5Sclose(sp);
            }
        }
        {
            hsize_t dims[1] = {(hsize_t)v[7]};
            hid_t sp = H5Screate_simple(1, dims, NULL);
            hid_t d =
                H5Dcreate2(f, "tokens", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            H5Dclose(d);
            H5Sclose(sp);
        }
    }
    H5Fclose(f);
    if (qr_calib_shard_open(path, &s) == QR_OK) {
        float rows[64 * 16];
        int32_t ids[64];
        const qr_calib_info *in = qr_calib_shard_info(s);
        if (in->n_tokens <= 64 && in->dim <= 16) {
            (void)qr_calib_shard_read_rows(s, "layers.0.attn_in", 0, in->n_tokens, rows);
            (void)qr_calib_shard_read_tokens(s, 0, in->n_tokens, ids);
        }
        qr_calib_shard_close(&s);
    }
    return 0;
}

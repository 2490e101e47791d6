/* shards.c: crafted calibration shards (issue 16, item 5) and non-finite activations (item 7).
 * A valid small shard is written with the writer, then copies are edited with HDF5 directly:
 * attributes that overflow int64 sums, an absurd n_layers, datasets that declare rows the file does
 * not store, a NaN in a dataset. Every one must be refused with QR_ERR_INPUT (exit 2) and a message
 * naming the file (and the dataset, row and column where there is one). Run under UBSan in CI, so a
 * signed overflow on the way fails the test too. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/calib_shard.h"
#include "tests/test_util.h"

enum { SEQ = 4, WIN = 3, ROWS = SEQ * WIN, DIM = 6, HID = 12, QD = 8, LAYERS = 2 };

static void base_info(qr_calib_info *info)
{
    memset(info, 0, sizeof *info);
    snprintf(info->model_identity, sizeof info->model_identity, "test-identity");
    snprintf(info->source_kind, sizeof info->source_kind, "tokens");
    info->dim = DIM;
    info->hidden_dim = HID;
    info->q_dim = QD;
    info->n_layers = LAYERS;
    info->vocab_size = 100;
    info->seq_len = SEQ;
    info->n_windows = WIN;
    info->n_tokens = ROWS;
    info->total_windows = WIN;
    info->shard_count = 1;
    info->dtype = QR_DTYPE_F32;
}

static qr_status write_shard(const char *path, const qr_calib_info *info, float poison)
{
    qr_status st;
    qr_calib_writer *w = NULL;
    float x[ROWS * HID];
    int32_t ids[ROWS];
    for (int i = 0; i < ROWS * HID; i++) {
        x[i] = (float)(i % 5) * 0.25f - 0.5f;
    }
    x[3 * DIM + 2] = poison; /* row 3, column 2 of the first dataset written */
    for (int i = 0; i < ROWS; i++) {
        ids[i] = i % SEQ == 0 ? 1 : 10 + i;
    }
    if ((st = qr_calib_writer_open(path, info, &w)) != QR_OK) {
        return st;
    }
    for (int64_t l = 0; l < LAYERS; l++) {
        for (int k = 0; k < QR_INPUT_KIND_COUNT; k++) {
            int64_t d = k == QR_INPUT_O ? QD : k == QR_INPUT_DOWN ? HID : DIM;
            if ((st = qr_calib_writer_put(w, l, (qr_input_kind)k, 0, x, ROWS, d)) != QR_OK) {
                qr_calib_writer_abort(&w);
                return st;
            }
        }
    }
    if ((st = qr_calib_writer_put_tokens(w, 0, ids, ROWS)) != QR_OK) {
        qr_calib_writer_abort(&w);
        return st;
    }
    return qr_calib_writer_finish(&w);
}

static int copy_file(const char *from, const char *to)
{
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    return system(cmd) == 0;
}

static int set_int_attr(const char *path, const char *name, int64_t v)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), a = -1;
    int ok = f >= 0 && (a = H5Aopen(f, name, H5P_DEFAULT)) >= 0 &&
             H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0;
    if (a >= 0) {
        H5Aclose(a);
    }
    if (f >= 0) {
        H5Fclose(f);
    }
    return ok;
}

/* Replace every dataset by one of `rows` rows whose chunks are never written (the attributes are
 * edited to match), as a crafted shard that declares far more rows than it stores would. */
static int declare_rows(const char *path, int64_t rows)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    int ok = f >= 0;
    for (int64_t l = 0; ok && l <= LAYERS * QR_INPUT_KIND_COUNT; l++) {
        char key[QR_INPUT_KEY_MAX];
        int is_tokens = l == LAYERS * QR_INPUT_KIND_COUNT;
        int k = (int)(l % QR_INPUT_KIND_COUNT);
        hsize_t width = k == QR_INPUT_O ? QD : k == QR_INPUT_DOWN ? HID : DIM;
        hsize_t dims[2] = {(hsize_t)rows, width}, chunk[2] = {SEQ, width};
        hid_t space, dcpl, d;
        if (is_tokens) {
            snprintf(key, sizeof key, "tokens");
        } else {
            qr_calib_key(key, sizeof key, l / QR_INPUT_KIND_COUNT, (qr_input_kind)k);
        }
        space = H5Screate_simple(is_tokens ? 1 : 2, dims, NULL);
        dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_chunk(dcpl, is_tokens ? 1 : 2, chunk);
        ok = H5Ldelete(f, key, H5P_DEFAULT) >= 0 &&
             (d = H5Dcreate2(f, key, is_tokens ? H5T_STD_I32LE : H5T_IEEE_F32LE, space, H5P_DEFAULT,
                             dcpl, H5P_DEFAULT)) >= 0 &&
             H5Dclose(d) >= 0;
        H5Pclose(dcpl);
        H5Sclose(space);
    }
    if (f >= 0) {
        H5Fclose(f);
    }
    return ok && set_int_attr(path, "n_windows", rows / SEQ) &&
           set_int_attr(path, "total_windows", rows / SEQ) && set_int_attr(path, "n_tokens", rows);
}

/* The shard at path must be refused as bad input with a message containing want. */
static void expect_refused(const char *what, const char *path, const char *want)
{
    qr_calib_shard *s = NULL;
    qr_status st = qr_calib_shard_open(path, &s);
    QR_EXPECT(st == QR_ERR_INPUT && s == NULL && strstr(qr_errmsg(), want) &&
                  strstr(qr_errmsg(), path),
              "%s: expected QR_ERR_INPUT naming %s and '%s', found status %d: %s", what, path, want,
              (int)st, qr_errmsg());
    qr_calib_shard_close(&s);
}

int main(void)
{
    const char *dir = qr_test_tmpdir("harden-shards");
    char good[4096], bad[4096];
    qr_calib_info info;
    qr_calib_shard *s = NULL;
    float rows[ROWS * DIM];
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    base_info(&info);
    snprintf(good, sizeof good, "%s/good.h5", dir);
    snprintf(bad, sizeof bad, "%s/bad.h5", dir);
    QR_REQUIRE(write_shard(good, &info, 0.5f) == QR_OK, "%s", qr_errmsg());
    QR_REQUIRE(qr_calib_shard_open(good, &s) == QR_OK, "the unedited shard: %s", qr_errmsg());
    qr_calib_shard_close(&s);

    /* window_first = INT64_MAX: window_first + n_windows overflowed (UBSan) before the fix. */
    QR_REQUIRE(copy_file(good, bad) && set_int_attr(bad, "window_first", INT64_MAX), "edit");
    expect_refused("window_first = INT64_MAX", bad, "inconsistent shard attributes");
    QR_REQUIRE(copy_file(good, bad) && set_int_attr(bad, "total_windows", INT64_MAX) &&
                   set_int_attr(bad, "window_first", INT64_MAX - 1),
               "edit");
    expect_refused("window_first near INT64_MAX", bad, "inconsistent shard attributes");
    /* n_layers = 2^40 asked for a 35 TB allocation (exit 1) before the limit. */
    QR_REQUIRE(copy_file(good, bad) && set_int_attr(bad, "n_layers", (int64_t)1 << 40), "edit");
    expect_refused("n_layers = 2^40", bad, "n_layers 1099511627776");
    QR_REQUIRE(copy_file(good, bad) && set_int_attr(bad, "seq_len", INT64_MAX), "edit");
    expect_refused("seq_len = INT64_MAX", bad, "inconsistent shard attributes");
    /* 2^30 rows declared, a few KB stored: refused before any read. */
    QR_REQUIRE(copy_file(good, bad) && declare_rows(bad, (int64_t)1 << 30), "edit");
    expect_refused("2^30 rows declared", bad, "rows declared but not stored");
    /* The writer refuses a NaN or an infinity, naming the dataset, row and column. */
    snprintf(bad, sizeof bad, "%s/nan.h5", dir);
    QR_EXPECT(write_shard(bad, &info, NAN) == QR_ERR_INPUT &&
                  strstr(qr_errmsg(), "layers.0.attn_in: value at row 3, column 2 is not finite"),
              "capture must refuse a NaN activation, found: %s", qr_errmsg());
    QR_EXPECT(access(bad, F_OK) != 0, "a refused shard must leave no file: %s", bad);
    QR_EXPECT(write_shard(bad, &info, INFINITY) == QR_ERR_INPUT,
              "capture must refuse an infinite activation, found: %s", qr_errmsg());
    info.dtype = QR_DTYPE_F16;
    QR_EXPECT(write_shard(bad, &info, 1e6f) == QR_ERR_INPUT &&
                  strstr(qr_errmsg(), "overflows float16"),
              "a value beyond float16 must be refused in an f16 capture, found: %s", qr_errmsg());
    /* A NaN planted in a stored shard is refused where it is read. */
    QR_REQUIRE(copy_file(good, bad), "copy");
    {
        hid_t f = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
        hid_t d = H5Dopen2(f, "layers.1.mlp_in", H5P_DEFAULT), fs = H5Dget_space(d), ms;
        hsize_t start[2] = {7, 4}, one[2] = {1, 1};
        float v = NAN;
        ms = H5Screate_simple(2, one, NULL);
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, one, NULL);
        QR_REQUIRE(H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, &v) >= 0, "plant NaN");
        H5Sclose(ms);
        H5Sclose(fs);
        H5Dclose(d);
        H5Fclose(f);
    }
    QR_REQUIRE(qr_calib_shard_open(bad, &s) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(qr_calib_shard_read_rows(s, "layers.1.mlp_in", 0, ROWS, rows) == QR_ERR_INPUT &&
                  strstr(qr_errmsg(), "nan.h5: dataset layers.1.mlp_in: value at row 7, column 4 "
                                      "is not finite"),
              "a NaN activation must be refused where it is read, found: %s", qr_errmsg());
    qr_calib_shard_close(&s);
    return qr_test_finish("harden.shards");
}

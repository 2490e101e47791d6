/* part_roundtrip.c: part files round trip every qr_qlayer field (symmetric, asymmetric, low-rank,
 * SERQ side matrix), are byte-identical for identical content, and refuse other options, other
 * modules and damaged files with a message that names the cause. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/ckpt/fixture.h"
#include "io/part_file.h"
#include "tests/test_util.h"

static int same_file_bytes(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) {
            same = 0;
        }
        if (ca == EOF || cb == EOF) {
            break;
        }
    }
    if (fa) {
        fclose(fa);
    }
    if (fb) {
        fclose(fb);
    }
    return same;
}

static void round_trip(const char *dir, const char *name, const qr_fixture_spec *spec)
{
    char path[512], path2[512];
    qr_qlayer ql, back;
    qr_kvlist opts = {0}, metrics = {0};
    qr_part_info info;
    const char *what = NULL;
    memset(&back, 0, sizeof back);
    memset(&info, 0, sizeof info);
    snprintf(path, sizeof path, "%s/%s.h5", dir, name);
    snprintf(path2, sizeof path2, "%s/%s.again.h5", dir, name);
    QR_EXPECT(qr_fixture_qlayer(spec, 42, &ql) == QR_OK, "%s: fixture: %s", name, qr_errmsg());
    QR_EXPECT(qr_fixture_options(&opts, 4) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(qr_fixture_metrics(&metrics, 7) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(qr_part_write(path, name, &opts, &metrics, &ql) == QR_OK, "%s: write: %s", name,
              qr_errmsg());
    QR_EXPECT(qr_part_write(path2, name, &opts, &metrics, &ql) == QR_OK, "%s: write: %s", name,
              qr_errmsg());
    QR_EXPECT(same_file_bytes(path, path2), "%s: two writes of the same content differ in bytes",
              name);
    QR_EXPECT(qr_part_read(path, &info, &back) == QR_OK, "%s: read: %s", name, qr_errmsg());
    QR_EXPECT(qr_qlayer_equal(&ql, &back, &what), "%s: read back differs in %s", name,
              what ? what : "?");
    QR_EXPECT(strcmp(info.module, name) == 0, "%s: module attribute is '%s'", name, info.module);
    QR_EXPECT(info.options.n == opts.n, "%s: %zu options read back, %zu written", name,
              info.options.n, opts.n);
    for (size_t i = 0; i < opts.n; i++) {
        const qr_kv *f = qr_kv_find(&info.options, opts.items[i].key);
        QR_EXPECT(f && qr_kv_equal(f, &opts.items[i]), "%s: option %s not read back equal", name,
                  opts.items[i].key);
    }
    for (size_t i = 0; i < metrics.n; i++) {
        const qr_kv *f = qr_kv_find(&info.metrics, metrics.items[i].key);
        QR_EXPECT(f && qr_kv_equal(f, &metrics.items[i]), "%s: metric %s not read back equal", name,
                  metrics.items[i].key);
    }
    QR_EXPECT(qr_part_check(&info, path, name, spec->d_out, spec->d_in, &opts) == QR_OK,
              "%s: check of its own options failed: %s", name, qr_errmsg());
    qr_part_info_free(&info);
    qr_qlayer_free(&back);
    qr_qlayer_free(&ql);
    qr_kvlist_free(&opts);
    qr_kvlist_free(&metrics);
}

int main(void)
{
    const char *dir = qr_test_tmpdir("ckpt.part_roundtrip");
    qr_fixture_spec lowrank = {QR_METHOD_SRR, 48, 172, 32, false, 8, 0, true, true};
    qr_fixture_spec asym = {QR_METHOD_RTN, 33, 65, 64, true, 0, 0, false, false};
    qr_fixture_spec serq = {QR_METHOD_SERQ, 40, 172, 172, true, 0, 17, true, true};
    qr_fixture_spec plain = {QR_METHOD_LQER, 16, 64, 32, false, 4, 0, false, false};
    char path[512], bad[512];
    qr_kvlist opts = {0}, other = {0};
    qr_part_info info;
    qr_qlayer ql;
    FILE *f;
    memset(&info, 0, sizeof info);
    QR_REQUIRE(dir, "no scratch folder");

    round_trip(dir, "model.layers.0.self_attn.q_proj", &lowrank);
    round_trip(dir, "model.layers.0.mlp.down_proj", &asym);
    round_trip(dir, "model.layers.1.self_attn.o_proj", &serq);
    round_trip(dir, "plain", &plain);

    /* A part made with other options is refused, naming the option and both values. */
    snprintf(path, sizeof path, "%s/plain.h5", dir);
    QR_REQUIRE(qr_part_read_info(path, &info) == QR_OK, "%s", qr_errmsg());
    QR_REQUIRE(qr_fixture_options(&other, 3) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(qr_part_check(&info, path, "plain", 16, 64, &other) == QR_ERR_INPUT,
              "a part with wbits 4 was accepted for wbits 3");
    QR_EXPECT(strstr(qr_errmsg(), "'wbits'") && strstr(qr_errmsg(), "expected 3, found 4"),
              "message does not name the option and values: %s", qr_errmsg());
    QR_REQUIRE(qr_fixture_options(&opts, 4) == QR_OK, "%s", qr_errmsg());
    QR_REQUIRE(qr_kv_set_int(&opts, "salient", 8) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(qr_part_check(&info, path, "plain", 16, 64, &opts) == QR_ERR_INPUT,
              "a part without option 'salient' was accepted");
    QR_EXPECT(strstr(qr_errmsg(), "'salient'"), "message does not name 'salient': %s", qr_errmsg());
    QR_EXPECT(qr_part_check(&info, path, "other", 16, 64, &other) == QR_ERR_INPUT,
              "a part of module 'plain' was accepted for 'other'");
    QR_EXPECT(qr_part_check(&info, path, "plain", 16, 65, &other) == QR_ERR_INPUT,
              "a part of shape 16x64 was accepted for 16x65");
    qr_part_info_free(&info);

    /* A damaged (truncated) part and a file that is not HDF5 are input errors, not crashes. */
    snprintf(bad, sizeof bad, "%s/truncated.h5", dir);
    {
        FILE *in = fopen(path, "rb");
        char buf[600];
        size_t n = in ? fread(buf, 1, sizeof buf, in) : 0;
        if (in) {
            fclose(in);
        }
        f = fopen(bad, "wb");
        QR_REQUIRE(f && n == sizeof buf, "cannot make the truncated copy");
        fwrite(buf, 1, n, f);
        fclose(f);
    }
    QR_EXPECT(qr_part_read(bad, NULL, &ql) == QR_ERR_INPUT, "a truncated part was read: %s",
              qr_errmsg());
    snprintf(bad, sizeof bad, "%s/text.h5", dir);
    f = fopen(bad, "w");
    QR_REQUIRE(f, "cannot write %s", bad);
    fputs("not hdf5\n", f);
    fclose(f);
    QR_EXPECT(qr_part_read_info(bad, &info) == QR_ERR_INPUT, "a text file was read as a part");
    QR_EXPECT(strstr(qr_errmsg(), bad) != NULL, "message does not name the file: %s", qr_errmsg());

    qr_kvlist_free(&opts);
    qr_kvlist_free(&other);
    if (qr_test_failures == 0) {
        qr_fixture_rmdir(dir);
    }
    return qr_test_finish("ckpt.part_roundtrip");
}

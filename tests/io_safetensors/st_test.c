/* st_test.c: io/safetensors.c against files written by the writer, against malformed files built
 * here byte by byte (never with the writer, so a writer bug cannot hide a reader bug), and against
 * the real models in $QRECON_TEST_DATA. One program, one ctest case per argv[1]:
 *   roundtrip  malformed  sharded  real  fuzz */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "src/dtype.h"
#include "src/rng.h"
#include "tests/test_util.h"

static char dir[1024];

static const char *in_dir(const char *name)
{
    static char paths[8][2048];
    static int next = 0;
    char *p = paths[next++ % 8];
    snprintf(p, 2048, "%s/%s", dir, name);
    return p;
}

/* Write a file: 8-byte little-endian `hlen`, then `header` (strlen bytes), then `data_bytes` bytes
 * of a counting pattern. */
static void write_raw_len(const char *path, uint64_t hlen, const char *header, size_t data_bytes)
{
    FILE *f = fopen(path, "wb");
    unsigned char le[8];
    if (!f) {
        fprintf(stderr, "cannot write fixture %s\n", path);
        exit(1);
    }
    for (int i = 0; i < 8; i++) {
        le[i] = (unsigned char)(hlen >> (8 * i));
    }
    fwrite(le, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < data_bytes; i++) {
        fputc((int)(i & 0xff), f);
    }
    fclose(f);
}

static void write_raw(const char *path, const char *header, size_t data_bytes)
{
    write_raw_len(path, strlen(header), header, data_bytes);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cannot write fixture %s\n", path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

/* Opening `path` must fail with QR_ERR_INPUT and a message holding `name` and `what`. */
#define EXPECT_BAD_FILE(path, name, what)                                                          \
    do {                                                                                           \
        qr_st_file *f_ = NULL;                                                                     \
        qr_status st_ = qr_st_open(path, &f_);                                                     \
        QR_EXPECT(st_ == QR_ERR_INPUT && f_ == NULL, "%s: expected QR_ERR_INPUT, found %s", path,  \
                  qr_status_name(st_));                                                            \
        QR_EXPECT(strstr(qr_errmsg(), name) && strstr(qr_errmsg(), what),                          \
                  "message should name '%s' and say '%s', found '%s'", name, what, qr_errmsg());   \
        qr_st_close(&f_);                                                                          \
    } while (0)

#define EXPECT_BAD_MODEL(path, name, what)                                                         \
    do {                                                                                           \
        qr_st_model *m_ = NULL;                                                                    \
        qr_status st_ = qr_st_model_open(path, &m_);                                               \
        QR_EXPECT(st_ == QR_ERR_INPUT && m_ == NULL, "%s: expected QR_ERR_INPUT, found %s", path,  \
                  qr_status_name(st_));                                                            \
        QR_EXPECT(strstr(qr_errmsg(), name) && strstr(qr_errmsg(), what),                          \
                  "message should name '%s' and say '%s', found '%s'", name, what, qr_errmsg());   \
        qr_st_model_close(&m_);                                                                    \
    } while (0)

/* ---- roundtrip ------------------------------------------------------------------------------- */

/* Values every dtype holds exactly, so the round trip must be bit-exact after conversion. */
static float exact_value(size_t i)
{
    return (float)((int)(i % 37) - 18) * 0.25f;
}

static void encode(qr_dtype dt, const float *v, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i++) {
        if (dt == QR_DTYPE_F32) {
            memcpy(out + 4 * i, &v[i], 4);
        } else if (dt == QR_DTYPE_F64) {
            double d = v[i];
            memcpy(out + 8 * i, &d, 8);
        } else {
            uint16_t h = dt == QR_DTYPE_F16 ? qr_f32_to_f16(v[i]) : qr_f32_to_bf16(v[i]);
            memcpy(out + 2 * i, &h, 2);
        }
    }
}

static int test_roundtrip(void)
{
    const qr_st_entry entries[] = {
        {"w.f32", QR_DTYPE_F32, 2, {5, 7}}, {"v.f16", QR_DTYPE_F16, 1, {13}},
        {"empty", QR_DTYPE_F32, 2, {0, 4}}, {"m.bf16", QR_DTYPE_BF16, 2, {3, 9}},
        {"d.f64", QR_DTYPE_F64, 1, {6}},    {"scalar", QR_DTYPE_F32, 0, {0}},
    };
    const size_t n = sizeof entries / sizeof entries[0];
    const char *path = in_dir("rt.safetensors");
    qr_st_writer *w = NULL;
    qr_st_file *f = NULL;
    qr_st_model *m = NULL;
    float vals[64], got[64];
    double got64[64];
    unsigned char raw[512];
    uint64_t begin_prev = 0;
    QR_REQUIRE(qr_st_writer_open(path, entries, n, &w) == QR_OK, "writer open: %s", qr_errmsg());
    QR_EXPECT(access(path, F_OK) != 0, "the file must not appear before finish");
    for (size_t e = 0; e < n; e++) {
        size_t numel = 1;
        for (int d = 0; d < entries[e].ndim; d++) {
            numel *= (size_t)entries[e].shape[d];
        }
        for (size_t i = 0; i < numel; i++) {
            vals[i] = exact_value(i + 3 * e);
        }
        encode(entries[e].dtype, vals, numel, raw);
        /* stream in two pieces to exercise partial puts */
        size_t bytes = numel * qr_dtype_size(entries[e].dtype), half = bytes / 2;
        QR_REQUIRE(qr_st_writer_put(w, raw, half) == QR_OK, "put: %s", qr_errmsg());
        QR_REQUIRE(qr_st_writer_put(w, raw + half, bytes - half) == QR_OK, "put: %s", qr_errmsg());
    }
    QR_REQUIRE(qr_st_writer_finish(&w) == QR_OK && w == NULL, "finish: %s", qr_errmsg());
    QR_REQUIRE(qr_st_open(path, &f) == QR_OK, "reopen: %s", qr_errmsg());
    QR_EXPECT(qr_st_count(f) == n, "count: expected %zu, found %zu", n, qr_st_count(f));
    QR_EXPECT(qr_st_metadata(f, "format") && strcmp(qr_st_metadata(f, "format"), "pt") == 0,
              "__metadata__.format should be 'pt'");
    for (size_t e = 0; e < n; e++) {
        const qr_st_tensor *t = qr_st_find(f, entries[e].name);
        size_t numel = 1;
        QR_REQUIRE(t != NULL, "tensor %s missing after round trip", entries[e].name);
        QR_EXPECT(t->dtype == entries[e].dtype && t->ndim == entries[e].ndim,
                  "%s: dtype/ndim changed", t->name);
        for (int d = 0; d < t->ndim; d++) {
            QR_EXPECT(t->shape[d] == entries[e].shape[d], "%s: dim %d changed", t->name, d);
            numel *= (size_t)entries[e].shape[d];
        }
        QR_EXPECT(t->numel == (int64_t)numel, "%s: numel %" PRId64 " != %zu", t->name, t->numel,
                  numel);
        QR_REQUIRE(qr_st_read_f32(t, got, numel) == QR_OK, "read_f32: %s", qr_errmsg());
        QR_REQUIRE(qr_st_read_f64(t, got64, numel) == QR_OK, "read_f64: %s", qr_errmsg());
        for (size_t i = 0; i < numel; i++) {
            QR_EXPECT(got[i] == exact_value(i + 3 * e) && got64[i] == (double)got[i],
                      "%s[%zu]: expected %g, found %g / %g", t->name, i, exact_value(i + 3 * e),
                      got[i], got64[i]);
        }
        QR_EXPECT(qr_st_read_f32(t, got, numel + 1) == QR_ERR_INTERNAL,
                  "a wrong element count must be refused");
        if (numel >= 3) { /* a range read is the matching slice of the whole read */
            float part[64];
            double part64[64];
            QR_EXPECT(qr_st_read_range_f32(t, 1, numel - 2, part) == QR_OK &&
                          memcmp(part, got + 1, (numel - 2) * sizeof *part) == 0,
                      "%s: range read [1, %zu) differs from the whole read", t->name, numel - 1);
            QR_EXPECT(qr_st_read_range_f64(t, 2, numel - 2, part64) == QR_OK &&
                          part64[0] == got64[2] && part64[numel - 3] == got64[numel - 1],
                      "%s: float64 range read differs", t->name);
            QR_EXPECT(qr_st_read_range_f32(t, 2, numel - 1, part) == QR_ERR_INTERNAL &&
                          qr_st_read_range_f32(t, -1, 1, part) == QR_ERR_INTERNAL &&
                          qr_st_read_range_f32(t, (int64_t)numel + 1, 0, part) == QR_ERR_INTERNAL,
                      "%s: out-of-range reads must be refused", t->name);
        }
    }
    /* qr_st_at is in data order and the data follows the header 8-aligned */
    for (size_t i = 0; i < n; i++) {
        const qr_st_tensor *t = qr_st_at(f, i);
        uint64_t begin = (uint64_t)((const unsigned char *)t->data -
                                    (const unsigned char *)qr_st_at(f, 0)->data);
        QR_EXPECT(i == 0 || begin >= begin_prev, "qr_st_at not in data order at %zu", i);
        begin_prev = begin;
    }
    QR_EXPECT(((uintptr_t)qr_st_at(f, 0)->data & 7u) == 0,
              "data section should start 8-aligned (header padded with spaces)");
    QR_EXPECT(qr_st_find(f, "absent") == NULL, "find of an absent name should give NULL");
    qr_st_close(&f);
    qr_st_close(&f); /* NULL-safe */

    /* A folder holding model.safetensors is a model too. */
    {
        char cmd[8300];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s'", in_dir("single"), path,
                 in_dir("single/model.safetensors"));
        QR_REQUIRE(system(cmd) == 0, "cannot copy the fixture");
    }
    QR_REQUIRE(qr_st_model_open(in_dir("single"), &m) == QR_OK, "model open: %s", qr_errmsg());
    QR_EXPECT(qr_st_model_count(m) == n && qr_st_model_shard_count(m) == 1,
              "single-file model: expected %zu tensors in 1 shard", n);
    for (size_t i = 1; i < qr_st_model_count(m); i++) {
        QR_EXPECT(strcmp(qr_st_model_at(m, i - 1)->name, qr_st_model_at(m, i)->name) < 0,
                  "model tensors not sorted by name at %zu", i);
    }
    qr_st_model_close(&m);
    /* ... and so is a .safetensors file given directly. */
    QR_REQUIRE(qr_st_model_open(path, &m) == QR_OK, "model open of a file: %s", qr_errmsg());
    QR_EXPECT(qr_st_model_count(m) == n && qr_st_model_shard_count(m) == 1 &&
                  strcmp(qr_st_model_shard_path(m, 0), path) == 0 &&
                  qr_st_path(qr_st_model_shard(m, 0)) == qr_st_model_shard_path(m, 0),
              "a file given directly is a one-shard model");
    QR_EXPECT(qr_st_model_find(m, "m.bf16") &&
                  qr_st_model_find(m, "m.bf16")->dtype == QR_DTYPE_BF16,
              "model find m.bf16");
    qr_st_model_close(&m);

    /* Writer misuse: too much data, or finishing early, leaves no file behind. */
    {
        const qr_st_entry one[] = {{"x", QR_DTYPE_F32, 1, {2}}};
        const char *p2 = in_dir("partial.safetensors");
        char tmp[4200];
        float x[3] = {1, 2, 3};
        QR_REQUIRE(qr_st_writer_open(p2, one, 1, &w) == QR_OK, "writer open: %s", qr_errmsg());
        QR_EXPECT(qr_st_writer_put(w, x, sizeof x) == QR_ERR_INTERNAL,
                  "writing more than declared must fail");
        qr_st_writer_abort(&w);
        QR_REQUIRE(qr_st_writer_open(p2, one, 1, &w) == QR_OK, "writer open: %s", qr_errmsg());
        QR_EXPECT(qr_st_writer_put(w, x, 4) == QR_OK, "put: %s", qr_errmsg());
        QR_EXPECT(qr_st_writer_finish(&w) == QR_ERR_INTERNAL && w == NULL,
                  "finishing an incomplete file must fail");
        QR_EXPECT(strstr(qr_errmsg(), "'x' incomplete"), "message: %s", qr_errmsg());
        snprintf(tmp, sizeof tmp, "%s.tmp", p2);
        QR_EXPECT(access(p2, F_OK) != 0 && access(tmp, F_OK) != 0,
                  "an incomplete file must leave neither %s nor its .tmp", p2);
    }
    return qr_test_finish("io_safetensors.roundtrip");
}

/* ---- malformed single files ------------------------------------------------------------------ */

static int test_malformed(void)
{
    const char *good = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    const char *p;

    p = in_dir("short.safetensors");
    write_text(p, "abc");
    EXPECT_BAD_FILE(p, "short.safetensors", "file too short");

    p = in_dir("zero_header.safetensors");
    write_raw_len(p, 0, "", 16);
    EXPECT_BAD_FILE(p, "zero_header.safetensors", "header length is 0");

    p = in_dir("huge_header.safetensors");
    write_raw_len(p, (uint64_t)QR_ST_HEADER_MAX + 1, good, 16);
    EXPECT_BAD_FILE(p, "huge_header.safetensors", "header longer than the limit");

    p = in_dir("header_past_end.safetensors");
    write_raw_len(p, strlen(good) + 100, good, 16);
    EXPECT_BAD_FILE(p, "header_past_end.safetensors", "header length past the end of the file");

    p = in_dir("bad_json.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2] \"data_offsets\":[0,16]}}", 16);
    EXPECT_BAD_FILE(p, "bad_json.safetensors", "malformed JSON header at line 1, column");

    p = in_dir("dup_key.safetensors");
    write_raw(p,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
              8);
    EXPECT_BAD_FILE(p, "dup_key.safetensors", "duplicate");

    p = in_dir("not_object.safetensors");
    write_raw(p, "[1,2,3]", 0);
    EXPECT_BAD_FILE(p, "not_object.safetensors", "header is not a JSON object");

    p = in_dir("entry_not_object.safetensors");
    write_raw(p, "{\"a\":[1,2]}", 0);
    EXPECT_BAD_FILE(p, "entry_not_object.safetensors", "tensor 'a': header entry is not an object");

    p = in_dir("unknown_dtype.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
    EXPECT_BAD_FILE(p, "unknown_dtype.safetensors",
                    "tensor 'a': unknown dtype (expected one of F32 F16 BF16 F64, found 'I8')");

    p = in_dir("neg_shape.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-2],\"data_offsets\":[0,16]}}", 16);
    EXPECT_BAD_FILE(p, "neg_shape.safetensors", "shape entry 1 is not a non-negative integer");

    p = in_dir("float_shape.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0,2],\"data_offsets\":[0,16]}}", 16);
    EXPECT_BAD_FILE(p, "float_shape.safetensors", "shape entry 0 is not a non-negative integer");

    p = in_dir("shape_not_list.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16);
    EXPECT_BAD_FILE(p, "shape_not_list.safetensors", "\"shape\" missing or not a list");

    p = in_dir("many_dims.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
              4);
    EXPECT_BAD_FILE(p, "many_dims.safetensors",
                    "too many dimensions (expected at most 8, found 9)");

    p = in_dir("overflow_shape.safetensors");
    write_raw(p,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
              "\"data_offsets\":[0,16]}}",
              16);
    EXPECT_BAD_FILE(p, "overflow_shape.safetensors", "overflows");

    p = in_dir("offsets_one.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16]}}", 16);
    EXPECT_BAD_FILE(p, "offsets_one.safetensors", "\"data_offsets\" must be two non-negative");

    p = in_dir("offsets_reversed.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[16,0]}}", 16);
    EXPECT_BAD_FILE(p, "offsets_reversed.safetensors", "begin after end");

    p = in_dir("mismatch.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 16);
    EXPECT_BAD_FILE(p, "mismatch.safetensors",
                    "tensor 'a': shape [2, 3] of F32 does not match data_offsets [0, 16] "
                    "(expected 24 bytes, found 16)");

    p = in_dir("truncated.safetensors");
    write_raw(p, good, 10);
    EXPECT_BAD_FILE(p, "truncated.safetensors",
                    "tensor 'a': data_offsets [0, 16] run past the end of the data section "
                    "(expected end <= 10");

    p = in_dir("past_data.safetensors");
    write_raw(p,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1000,1008]}}",
              16);
    EXPECT_BAD_FILE(p, "past_data.safetensors", "tensor 'b': data_offsets [1000, 1008] run past");

    p = in_dir("overlap.safetensors");
    write_raw(p,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
              16);
    EXPECT_BAD_FILE(p, "overlap.safetensors",
                    "tensor 'b': data_offsets [8, 16] overlap tensor 'a'");

    p = in_dir("bad_meta.safetensors");
    write_raw(p,
              "{\"__metadata__\":{\"format\":1},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
              4);
    EXPECT_BAD_FILE(p, "bad_meta.safetensors", "\"__metadata__\" entry 'format' is not a string");

    p = in_dir("missing.safetensors");
    EXPECT_BAD_FILE(p, "missing.safetensors", "cannot open");

    EXPECT_BAD_FILE(dir, dir, "not a regular file");

    /* Holes between tensors and trailing bytes are accepted (only overlaps are errors). */
    {
        qr_st_file *f = NULL;
        p = in_dir("holes.safetensors");
        write_raw(p,
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]},"
                  "\"z\":{\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[4,4]}}   ",
                  20);
        QR_EXPECT(qr_st_open(p, &f) == QR_OK, "holes: %s", qr_errmsg());
        QR_EXPECT(qr_st_count(f) == 3 && strcmp(qr_st_at(f, 1)->name, "z") == 0,
                  "holes: expected 3 tensors in data order a, z, b");
        qr_st_close(&f);
    }
    return qr_test_finish("io_safetensors.malformed");
}

/* ---- sharded folders ------------------------------------------------------------------------- */

static const char *shard_a = "{\"t1\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"t2\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[8,16]}}";
static const char *shard_b = "{\"t3\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]}}";

/* A fresh folder `name` with shards a.safetensors, b.safetensors and the given index text. */
static const char *make_folder(const char *name, const char *index)
{
    static char path[2048];
    char sub[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(sub, sizeof sub, "mkdir -p '%s'", path);
    if (system(sub) != 0) {
        fprintf(stderr, "cannot create %s\n", path);
        exit(1);
    }
    snprintf(sub, sizeof sub, "%s/a.safetensors", path);
    write_raw(sub, shard_a, 16);
    snprintf(sub, sizeof sub, "%s/b.safetensors", path);
    write_raw(sub, shard_b, 6);
    if (index) {
        snprintf(sub, sizeof sub, "%s/model.safetensors.index.json", path);
        write_text(sub, index);
    }
    return path;
}

static int test_sharded(void)
{
    qr_st_model *m = NULL;
    const char *p;
    float v[4];
    p = make_folder("good", "{\"metadata\":{\"total_size\":22},\"weight_map\":{"
                            "\"t3\":\"b.safetensors\",\"t1\":\"a.safetensors\","
                            "\"t2\":\"a.safetensors\"}}");
    QR_REQUIRE(qr_st_model_open(p, &m) == QR_OK, "good sharded folder: %s", qr_errmsg());
    QR_EXPECT(qr_st_model_count(m) == 3 && qr_st_model_shard_count(m) == 2,
              "expected 3 tensors in 2 shards, found %zu in %zu", qr_st_model_count(m),
              qr_st_model_shard_count(m));
    QR_EXPECT(strstr(qr_st_model_shard_path(m, 0), "a.safetensors") &&
                  strstr(qr_st_model_shard_path(m, 1), "b.safetensors"),
              "shards should be sorted by name");
    QR_EXPECT(qr_st_model_find(m, "t3") && strstr(qr_st_model_find(m, "t3")->path, "b.safetensors"),
              "t3 should come from b.safetensors");
    QR_EXPECT(qr_st_model_find(m, "t2") && qr_st_read_f32(qr_st_model_find(m, "t2"), v, 4) == QR_OK,
              "read t2: %s", qr_errmsg());
    QR_EXPECT(strcmp(qr_st_model_at(m, 0)->name, "t1") == 0 &&
                  strcmp(qr_st_model_at(m, 2)->name, "t3") == 0,
              "tensors should be sorted by name");
    qr_st_model_close(&m);

    p = make_folder("shard_missing", "{\"weight_map\":{\"t1\":\"a.safetensors\","
                                     "\"t2\":\"a.safetensors\",\"t3\":\"c.safetensors\"}}");
    EXPECT_BAD_MODEL(p, "model.safetensors.index.json",
                     "shard 'c.safetensors' named by the index is not found");

    p = make_folder("tensor_missing", "{\"weight_map\":{\"t1\":\"a.safetensors\","
                                      "\"t2\":\"a.safetensors\",\"t3\":\"b.safetensors\","
                                      "\"t4\":\"b.safetensors\"}}");
    EXPECT_BAD_MODEL(p, "b.safetensors", "tensor 't4' named by the index is missing");

    p = make_folder("not_in_index", "{\"weight_map\":{\"t1\":\"a.safetensors\","
                                    "\"t3\":\"b.safetensors\"}}");
    EXPECT_BAD_MODEL(p, "a.safetensors", "tensor 't2' is not named by the index");

    p = make_folder("mapped_elsewhere", "{\"weight_map\":{\"t1\":\"a.safetensors\","
                                        "\"t2\":\"b.safetensors\",\"t3\":\"b.safetensors\"}}");
    EXPECT_BAD_MODEL(p, "b.safetensors", "tensor 't2' named by the index is missing");

    p = make_folder("slash", "{\"weight_map\":{\"t1\":\"../a.safetensors\"}}");
    EXPECT_BAD_MODEL(p, "model.safetensors.index.json",
                     "tensor 't1': shard must be a plain file name in the folder (found "
                     "'../a.safetensors')");

    p = make_folder("dotdot", "{\"weight_map\":{\"t1\":\"..\"}}");
    EXPECT_BAD_MODEL(p, "model.safetensors.index.json", "shard must be a plain file name");

    p = make_folder("no_map", "{\"metadata\":{}}");
    EXPECT_BAD_MODEL(p, "model.safetensors.index.json", "\"weight_map\" missing or empty");

    p = make_folder("bad_index_json", "{\"weight_map\":{\"t1\":\"a.safetensors\",}}");
    EXPECT_BAD_MODEL(p, "model.safetensors.index.json", "malformed JSON at line 1");

    p = make_folder("dup_index", "{\"weight_map\":{\"t1\":\"a.safetensors\","
                                 "\"t1\":\"a.safetensors\"}}");
    EXPECT_BAD_MODEL(p, "model.safetensors.index.json", "duplicate");

    p = make_folder("neither", NULL);
    EXPECT_BAD_MODEL(p, "neither",
                     "no safetensors model here (expected model.safetensors or "
                     "model.safetensors.index.json");

    EXPECT_BAD_MODEL(in_dir("does_not_exist"), "does_not_exist", "not found");

    /* A bad shard reports the shard's own problem. */
    {
        char sub[4200];
        p = make_folder("bad_shard", "{\"weight_map\":{\"t1\":\"a.safetensors\","
                                     "\"t2\":\"a.safetensors\",\"t3\":\"b.safetensors\"}}");
        snprintf(sub, sizeof sub, "%s/b.safetensors", p);
        write_raw(sub, shard_b, 3);
        EXPECT_BAD_MODEL(p, "b.safetensors", "tensor 't3': data_offsets [0, 6] run past the end");
    }

    /* The index writer produces a folder the reader accepts. */
    {
        const char *tensors[] = {"t1", "t2", "t3"};
        const char *shards[] = {"a.safetensors", "a.safetensors", "b.safetensors"};
        p = make_folder("written_index", NULL);
        QR_REQUIRE(qr_st_write_index(p, tensors, shards, 3, 22) == QR_OK, "write index: %s",
                   qr_errmsg());
        QR_EXPECT(qr_st_model_open(p, &m) == QR_OK && qr_st_model_count(m) == 3,
                  "written index: %s", qr_errmsg());
        qr_st_model_close(&m);
    }
    return qr_test_finish("io_safetensors.sharded");
}

/* ---- real models ----------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int64_t rows, cols; /* cols 0: 1-D */
} expect_shape;

static void check_model(const char *path, size_t n_tensors, size_t n_shards, qr_dtype dtype,
                        const expect_shape *shapes, size_t n_shapes)
{
    qr_st_model *m = NULL;
    float *buf = NULL;
    if (qr_st_model_open(path, &m) != QR_OK) {
        QR_EXPECT(0, "%s: %s", path, qr_errmsg());
        return;
    }
    QR_EXPECT(qr_st_model_count(m) == n_tensors, "%s: expected %zu tensors, found %zu", path,
              n_tensors, qr_st_model_count(m));
    QR_EXPECT(qr_st_model_shard_count(m) == n_shards, "%s: expected %zu shards, found %zu", path,
              n_shards, qr_st_model_shard_count(m));
    for (size_t i = 0; i < n_shapes; i++) {
        const qr_st_tensor *t = qr_st_model_find(m, shapes[i].name);
        int ndim = shapes[i].cols ? 2 : 1;
        if (!t) {
            QR_EXPECT(0, "%s: tensor %s missing", path, shapes[i].name);
            continue;
        }
        QR_EXPECT(t->ndim == ndim && t->shape[0] == shapes[i].rows &&
                      (ndim == 1 || t->shape[1] == shapes[i].cols),
                  "%s: %s: expected shape [%" PRId64 ", %" PRId64 "], found ndim %d [%" PRId64
                  ", %" PRId64 "]",
                  path, t->name, shapes[i].rows, shapes[i].cols, t->ndim, t->shape[0],
                  t->ndim > 1 ? t->shape[1] : 0);
    }
    for (size_t i = 0; i < qr_st_model_count(m); i++) {
        const qr_st_tensor *t = qr_st_model_at(m, i);
        double sumsq = 0;
        QR_EXPECT(t->dtype == dtype, "%s: %s: expected dtype %s, found %s", path, t->name,
                  qr_dtype_name(dtype), qr_dtype_name(t->dtype));
        buf = realloc(buf, (size_t)t->numel * sizeof *buf);
        if (!buf || qr_st_read_f32(t, buf, (size_t)t->numel) != QR_OK) {
            QR_EXPECT(0, "%s: cannot read %s", path, t->name);
            break;
        }
        for (int64_t j = 0; j < t->numel; j++) {
            sumsq += (double)buf[j] * buf[j];
        }
        QR_EXPECT(isfinite(sumsq) && sumsq > 0, "%s: %s: values should be finite and nonzero", path,
                  t->name);
    }
    free(buf);
    qr_st_model_close(&m);
}

static int test_real(void)
{
    const char *data = qr_test_data_dir();
    char path[4096];
    /* stories260K: dim 64, hidden 172, 5 layers, 8 heads / 4 kv heads (head_dim 8), vocab 512,
     * tied: embed + 5 x 9 + final norm = 47 tensors. */
    const expect_shape stories[] = {
        {"model.embed_tokens.weight", 512, 64},
        {"model.norm.weight", 64, 0},
        {"model.layers.0.self_attn.q_proj.weight", 64, 64},
        {"model.layers.4.self_attn.k_proj.weight", 32, 64},
        {"model.layers.2.self_attn.v_proj.weight", 32, 64},
        {"model.layers.3.self_attn.o_proj.weight", 64, 64},
        {"model.layers.1.mlp.gate_proj.weight", 172, 64},
        {"model.layers.1.mlp.up_proj.weight", 172, 64},
        {"model.layers.4.mlp.down_proj.weight", 64, 172},
        {"model.layers.0.input_layernorm.weight", 64, 0},
    };
    /* babyllama105: dim 128, hidden 352, 5 layers, 8 / 4 heads (head_dim 16), vocab 105, tied. */
    const expect_shape baby[] = {
        {"model.embed_tokens.weight", 105, 128},
        {"model.layers.0.self_attn.q_proj.weight", 128, 128},
        {"model.layers.2.self_attn.k_proj.weight", 64, 128},
        {"model.layers.3.mlp.gate_proj.weight", 352, 128},
        {"model.layers.4.mlp.down_proj.weight", 128, 352},
        {"model.layers.2.post_attention_layernorm.weight", 128, 0},
    };
    if (!data) {
        return 77;
    }
    snprintf(path, sizeof path, "%s/models/stories260K/hf", data);
    check_model(path, 47, 1, QR_DTYPE_F32, stories, sizeof stories / sizeof stories[0]);
    snprintf(path, sizeof path, "%s/models/babyllama105/hf-bf16-2shards", data);
    check_model(path, 47, 2, QR_DTYPE_BF16, baby, sizeof baby / sizeof baby[0]);
    return qr_test_finish("io_safetensors.real");
}

/* ---- fuzz: truncation at every header byte, and byte corruption ------------------------------ */

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    rewind(f);
    buf = malloc((size_t)n);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void write_bytes(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static int test_fuzz(void)
{
    const qr_st_entry entries[] = {
        {"model.a", QR_DTYPE_F32, 2, {3, 4}},
        {"model.b", QR_DTYPE_BF16, 1, {5}},
        {"model.c", QR_DTYPE_F16, 2, {2, 2}},
    };
    const char *good = in_dir("fuzz_good.safetensors");
    const char *bad = in_dir("fuzz_bad.safetensors");
    /* Replacement bytes that tend to break structure: digits, quotes, braces, signs, NUL, high. */
    const unsigned char subst[] = {'0', '9', '"', '{', ']', '-', ',', 0, 0xff, ' '};
    qr_st_writer *w = NULL;
    unsigned char zeros[128] = {0}, *bytes; /* >= the 66 data bytes of entries */
    size_t size, hlen = 0, opened_ok = 0, cases = 0;
    QR_REQUIRE(qr_st_writer_open(good, entries, 3, &w) == QR_OK, "%s", qr_errmsg());
    QR_REQUIRE(qr_st_writer_put(w, zeros, 48 + 10 + 8) == QR_OK, "%s", qr_errmsg());
    QR_REQUIRE(qr_st_writer_finish(&w) == QR_OK, "%s", qr_errmsg());
    bytes = read_file(good, &size);
    for (int i = 0; i < 8; i++) {
        hlen |= (size_t)bytes[i] << (8 * i);
    }
    /* Every truncation inside the length and the header, and of the data section, fails cleanly. */
    for (size_t cut = 0; cut < size; cut++) {
        qr_st_file *f = NULL;
        qr_status st;
        write_bytes(bad, bytes, cut);
        st = qr_st_open(bad, &f);
        QR_EXPECT(st == QR_ERR_INPUT && f == NULL && strstr(qr_errmsg(), "fuzz_bad.safetensors"),
                  "truncated at %zu of %zu (header ends at %zu): expected a clean QR_ERR_INPUT "
                  "naming the file, found %s '%s'",
                  cut, size, 8 + hlen, qr_status_name(st), qr_errmsg());
        qr_st_close(&f);
        cases++;
    }
    /* Every header byte replaced by each of subst[]: open either succeeds with a consistent view or
     * fails with QR_ERR_INPUT; never crashes (run under ASan too). */
    for (size_t pos = 0; pos < 8 + hlen; pos++) {
        for (size_t k = 0; k < sizeof subst; k++) {
            unsigned char saved = bytes[pos];
            qr_st_file *f = NULL;
            qr_status st;
            if (saved == subst[k]) {
                continue;
            }
            bytes[pos] = subst[k];
            write_bytes(bad, bytes, size);
            bytes[pos] = saved;
            st = qr_st_open(bad, &f);
            QR_EXPECT(st == QR_OK || st == QR_ERR_INPUT,
                      "byte %zu set to 0x%02x: expected OK or QR_ERR_INPUT, found %s '%s'", pos,
                      subst[k], qr_status_name(st), qr_errmsg());
            if (st == QR_OK) {
                opened_ok++;
                for (size_t i = 0; i < qr_st_count(f); i++) {
                    const qr_st_tensor *t = qr_st_at(f, i);
                    const unsigned char *d = t->data;
                    QR_EXPECT(d >= (const unsigned char *)qr_st_at(f, 0)->data - 8 - hlen &&
                                  t->nbytes <= size,
                              "byte %zu: tensor %s outside the file", pos, t->name);
                }
            } else {
                QR_EXPECT(strstr(qr_errmsg(), "fuzz_bad.safetensors"),
                          "byte %zu: message should name the file: '%s'", pos, qr_errmsg());
            }
            qr_st_close(&f);
            cases++;
        }
    }
    /* Every truncation of a sharded folder's index fails cleanly, naming the index. */
    {
        const char *index = "{\"metadata\":{\"total_size\":22},\"weight_map\":{"
                            "\"t1\":\"a.safetensors\",\"t2\":\"a.safetensors\","
                            "\"t3\":\"b.safetensors\"}}";
        const char *folder = make_folder("fuzz_index", index);
        char ipath[4200];
        snprintf(ipath, sizeof ipath, "%s/model.safetensors.index.json", folder);
        for (size_t cut = 0; cut < strlen(index); cut++) {
            qr_st_model *m = NULL;
            qr_status st;
            write_bytes(ipath, (const unsigned char *)index, cut);
            st = qr_st_model_open(folder, &m);
            QR_EXPECT(st == QR_ERR_INPUT && m == NULL &&
                          strstr(qr_errmsg(), "model.safetensors.index.json"),
                      "index truncated at %zu: expected QR_ERR_INPUT naming the index, found %s "
                      "'%s'",
                      cut, qr_status_name(st), qr_errmsg());
            qr_st_model_close(&m);
            cases++;
        }
    }
    printf("fuzz: %zu cases, %zu corrupted headers still valid\n", cases, opened_ok);
    free(bytes);
    return qr_test_finish("io_safetensors.fuzz");
}

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "";
    int rc;
    char cmd[4200];
    snprintf(dir, sizeof dir, "%s", qr_test_tmpdir(which[0] ? which : "st"));
    if (strcmp(which, "roundtrip") == 0) {
        rc = test_roundtrip();
    } else if (strcmp(which, "malformed") == 0) {
        rc = test_malformed();
    } else if (strcmp(which, "sharded") == 0) {
        rc = test_sharded();
    } else if (strcmp(which, "real") == 0) {
        rc = test_real();
    } else if (strcmp(which, "fuzz") == 0) {
        rc = test_fuzz();
    } else {
        fprintf(stderr, "usage: %s roundtrip|malformed|sharded|real|fuzz\n", argv[0]);
        return 1;
    }
    if (rc == 0) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "note: could not remove %s\n", dir);
        }
    }
    return rc;
}

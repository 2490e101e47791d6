/* llama2c.c (test io_model.llama2c): llama2.c v0 checkpoints written by the test. A good tied and a
 * good untied file are sliced into the right tensors at the right offsets (every float holds its
 * own index, so a wrong offset shows); truncated, padded and bad-header files give QR_ERR_INPUT
 * (exit 2) with expected vs found bytes or the offending header field. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/llama2c.h"
#include "io/model.h"
#include "src/rng.h"
#include "tests/io_model/scratch.h"
#include "tests/test_util.h"

static char dir[4096];

/* Small shape: dim 8, hidden 12, 2 layers, 2 heads (head size 4), 1 kv head, vocab 10, seq 4. */
enum { D = 8, HID = 12, L = 2, NH = 2, KV = 1, V = 10, SEQ = 4, HD = D / NH, KVD = KV * HD };

/* Float counts of the arrays in file order (see io/llama2c.h). */
static size_t tied_floats(void)
{
    return (size_t)V * D + L * D + L * D * D + 2 * L * KVD * D + L * D * D + L * D +
           3 * L * HID * D + D + 2 * SEQ * HD / 2;
}

/* Write a file: the 7 header ints, then `n_floats` floats numbered 0, 1, 2, ... */
static const char *write_file(const char *name, const int32_t hdr[7], size_t header_ints,
                              size_t n_floats)
{
    static char path[4200];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fwrite(hdr, sizeof(int32_t), header_ints, f);
    for (size_t i = 0; i < n_floats; i++) {
        float x = (float)i;
        fwrite(&x, sizeof x, 1, f);
    }
    fclose(f);
    return path;
}

/* The first element of `name` must be float `want_off` (its index in the data section), and the
 * shape must be (rows, cols) (cols 0 = vector). */
static void expect_tensor(const qr_l2c_file *f, const char *name, size_t want_off, int64_t rows,
                          int64_t cols)
{
    const qr_st_tensor *t = qr_l2c_find(f, name);
    float first = -1.0f, last = -1.0f;
    QR_EXPECT(t != NULL, "tensor %s missing", name);
    if (!t) {
        return;
    }
    QR_EXPECT(t->dtype == QR_DTYPE_F32, "%s: expected F32", name);
    QR_EXPECT(t->ndim == (cols ? 2 : 1) && t->shape[0] == rows && (!cols || t->shape[1] == cols),
              "%s: expected shape (%lld, %lld), found ndim %d (%lld, %lld)", name, (long long)rows,
              (long long)cols, t->ndim, (long long)t->shape[0], (long long)t->shape[1]);
    memcpy(&first, t->data, sizeof first);
    memcpy(&last, (const char *)t->data + t->nbytes - sizeof last, sizeof last);
    QR_EXPECT(first == (float)want_off, "%s: expected to start at float %zu, found %g", name,
              want_off, first);
    QR_EXPECT(last == (float)(want_off + (size_t)t->numel - 1),
              "%s: expected to end at float %zu, found %g", name, want_off + (size_t)t->numel - 1,
              last);
}

/* qr_model_read_rows_*: rows of layer 1's down_proj (D x HID, starting at float `off`) hold their
 * own indices, so any offset slip shows; out-of-range rows and a wrong buffer size are refused. */
static void check_row_reads(const char *path, size_t off)
{
    qr_model *m = NULL;
    const char *name = "model.layers.1.mlp.down_proj.weight";
    float f32[3 * HID];
    double f64[3 * HID];
    size_t bad = 0;
    QR_EXPECT(qr_model_open(path, &m) == QR_OK, "open %s: %s", path, qr_errmsg());
    if (!m) {
        return;
    }
    QR_EXPECT(qr_model_read_rows_f32(m, name, 2, 3, f32, 3 * HID) == QR_OK, "rows 2..4: %s",
              qr_errmsg());
    QR_EXPECT(qr_model_read_rows_f64(m, name, 5, 3, f64, 3 * HID) == QR_OK, "rows 5..7: %s",
              qr_errmsg());
    for (size_t i = 0; i < 3 * HID; i++) {
        bad += f32[i] != (float)(off + 2 * HID + i);
        bad += f64[i] != (double)(off + 5 * HID + i);
    }
    QR_EXPECT(bad == 0, "%zu row-read elements hold the wrong value", bad);
    QR_EXPECT(qr_model_read_rows_f32(m, name, 6, 3, f32, 3 * HID) == QR_ERR_INPUT &&
                  strstr(qr_errmsg(), "rows [6, 9) out of range") != NULL,
              "rows past the end: expected QR_ERR_INPUT naming the range, found '%s'", qr_errmsg());
    QR_EXPECT(qr_model_read_rows_f32(m, name, -1, 1, f32, HID) == QR_ERR_INPUT,
              "negative row: expected QR_ERR_INPUT");
    QR_EXPECT(qr_model_read_rows_f32(m, name, 0, 2, f32, 3 * HID) != QR_OK,
              "a buffer of the wrong size must be refused");
    QR_EXPECT(qr_model_read_rows_f32(m, name, D, 0, f32, 0) == QR_OK, "zero rows at the end");
    qr_model_close(&m);
}

static void check_good(int untied)
{
    const int32_t hdr[7] = {D, HID, L, NH, KV, untied ? -V : V, SEQ};
    size_t n = tied_floats() + (untied ? (size_t)V * D : 0);
    const char *path = write_file(untied ? "untied.bin" : "tied.bin", hdr, 7, n);
    qr_l2c_file *f = NULL;
    const qr_model_config *c;
    uint64_t expected = 0;
    /* Float offsets of the stacked arrays. */
    size_t o_emb = 0, o_att = o_emb + V * D, o_wq = o_att + L * D, o_wk = o_wq + L * D * D;
    size_t o_wv = o_wk + L * KVD * D, o_wo = o_wv + L * KVD * D, o_ffn = o_wo + L * D * D;
    size_t o_w1 = o_ffn + L * D, o_w2 = o_w1 + L * HID * D, o_w3 = o_w2 + L * D * HID;
    size_t o_fin = o_w3 + L * HID * D, o_cls = o_fin + D + 2 * SEQ * HD / 2;

    QR_EXPECT(qr_l2c_expected_size(hdr, path, &expected) == QR_OK && expected == 28 + 4 * n,
              "expected size: want %zu, found %llu (%s)", 28 + 4 * n, (unsigned long long)expected,
              qr_errmsg());
    QR_EXPECT(qr_l2c_open(path, &f) == QR_OK, "good file refused: %s", qr_errmsg());
    if (!f) {
        return;
    }
    c = qr_l2c_config(f);
    QR_EXPECT(c->dim == D && c->hidden_dim == HID && c->n_layers == L && c->n_heads == NH &&
                  c->n_kv_heads == KV && c->vocab_size == V && c->max_seq_len == SEQ &&
                  c->head_dim == HD,
              "config sizes wrong");
    QR_EXPECT(c->tied_embeddings == !untied, "tied flag: expected %d", !untied);
    QR_EXPECT(c->rope_style == QR_ROPE_INTERLEAVED, "llama2.c is interleaved RoPE");
    QR_EXPECT(c->rms_eps == 1e-5 && c->rope_theta == 10000.0, "eps/theta: %g %g", c->rms_eps,
              c->rope_theta);
    QR_EXPECT(qr_l2c_count(f) == (size_t)(2 + untied + 9 * L), "expected %d tensors, found %zu",
              2 + untied + 9 * L, qr_l2c_count(f));
    for (size_t i = 1; i < qr_l2c_count(f); i++) {
        QR_EXPECT(strcmp(qr_l2c_at(f, i - 1)->name, qr_l2c_at(f, i)->name) < 0,
                  "tensors not sorted by name at %zu", i);
    }
    expect_tensor(f, "model.embed_tokens.weight", o_emb, V, D);
    expect_tensor(f, "model.norm.weight", o_fin, D, 0);
    if (untied) {
        expect_tensor(f, "lm_head.weight", o_cls, V, D);
    } else {
        QR_EXPECT(qr_l2c_find(f, "lm_head.weight") == NULL, "tied file must have no lm_head");
    }
    for (size_t l = 0; l < L; l++) {
        char name[96];
#define LAYER(suffix, off, per, rows, cols)                                                        \
    snprintf(name, sizeof name, "model.layers.%zu.%s.weight", l, suffix);                          \
    expect_tensor(f, name, (off) + l * (per), rows, cols)
        LAYER("input_layernorm", o_att, D, D, 0);
        LAYER("self_attn.q_proj", o_wq, D * D, D, D);
        LAYER("self_attn.k_proj", o_wk, KVD * D, KVD, D);
        LAYER("self_attn.v_proj", o_wv, KVD * D, KVD, D);
        LAYER("self_attn.o_proj", o_wo, D * D, D, D);
        LAYER("post_attention_layernorm", o_ffn, D, D, 0);
        LAYER("mlp.gate_proj", o_w1, HID * D, HID, D); /* w1 */
        LAYER("mlp.down_proj", o_w2, D * HID, D, HID); /* w2 */
        LAYER("mlp.up_proj", o_w3, HID * D, HID, D);   /* w3 */
#undef LAYER
    }
    qr_l2c_close(&f);
    QR_EXPECT(f == NULL, "close must clear the pointer");
    if (untied) {
        check_row_reads(path, o_w2 + D * HID);
    }
    qr_l2c_close(&f); /* NULL-safe */
}

static void expect_bad(const char *what, const char *path, const char *w1, const char *w2)
{
    qr_l2c_file *f = NULL;
    qr_status st;
    qr_clear_error();
    st = qr_l2c_open(path, &f);
    QR_EXPECT(st == QR_ERR_INPUT && qr_status_exit_code(st) == 2,
              "%s: expected QR_ERR_INPUT (exit 2), found %s", what, qr_status_name(st));
    QR_EXPECT(f == NULL, "%s: no handle on failure", what);
    QR_EXPECT(strstr(qr_errmsg(), path) != NULL, "%s: message should name the file: %s", what,
              qr_errmsg());
    QR_EXPECT(strstr(qr_errmsg(), w1) != NULL, "%s: message should contain '%s': %s", what, w1,
              qr_errmsg());
    if (w2) {
        QR_EXPECT(strstr(qr_errmsg(), w2) != NULL, "%s: message should contain '%s': %s", what, w2,
                  qr_errmsg());
    }
    printf("%-24s -> %s\n", what, qr_errmsg());
    qr_l2c_close(&f);
}

static void check_bad(void)
{
    const int32_t good[7] = {D, HID, L, NH, KV, V, SEQ};
    size_t n = tied_floats();
    char want[64], found[64];
    int32_t hdr[7];

    snprintf(want, sizeof want, "expected %zu bytes", 28 + 4 * n);
    snprintf(found, sizeof found, "found %zu bytes", 28 + 4 * n - 4);
    expect_bad("truncated by 4 bytes", write_file("trunc.bin", good, 7, n - 1), want, found);
    snprintf(found, sizeof found, "found %zu bytes", 28 + 4 * n + 4);
    expect_bad("4 bytes too long", write_file("long.bin", good, 7, n + 1), want, found);
    /* A tied header on an untied file (the classifier's bytes are left over). */
    snprintf(found, sizeof found, "found %zu bytes", 28 + 4 * (n + V * D));
    expect_bad("untied data, tied header", write_file("flip.bin", good, 7, n + V * D), found,
               "vocab_size negated");
    expect_bad("header only 5 ints", write_file("short.bin", good, 5, 0), "at least 28 bytes",
               "found 20");
    expect_bad("empty file", write_file("empty.bin", good, 0, 0), "at least 28 bytes", "found 0");

    memcpy(hdr, good, sizeof hdr);
    hdr[0] = -8;
    expect_bad("negative dim", write_file("negdim.bin", hdr, 7, n), "dim", "found -8");
    memcpy(hdr, good, sizeof hdr);
    hdr[4] = 3, hdr[3] = 4, hdr[0] = 8;
    expect_bad("kv heads not dividing", write_file("kv.bin", hdr, 7, n), "n_kv_heads", "found 3");
    memcpy(hdr, good, sizeof hdr);
    hdr[3] = 3;
    expect_bad("heads not dividing dim", write_file("heads.bin", hdr, 7, n), "n_heads", "found 3");
    memcpy(hdr, good, sizeof hdr);
    hdr[3] = 8, hdr[4] = 1; /* head size 1: RoPE needs pairs */
    expect_bad("odd head size", write_file("odd.bin", hdr, 7, n), "even", NULL);
    memcpy(hdr, good, sizeof hdr);
    hdr[1] = 2000000000; /* would overflow 32-bit products: refused by the bounds */
    expect_bad("huge hidden_dim", write_file("huge.bin", hdr, 7, n), "hidden_dim",
               "found 2000000000");
    memcpy(hdr, good, sizeof hdr);
    hdr[6] = 0;
    expect_bad("zero seq_len", write_file("seq.bin", hdr, 7, n), "seq_len", "found 0");
    memcpy(hdr, good, sizeof hdr);
    hdr[0] = 0x616b3432; /* "ak42": a version 1/2 export */
    expect_bad("v1 magic", write_file("v1.bin", hdr, 7, n), "version 1/2", NULL);
    {
        char absent[4300];
        snprintf(absent, sizeof absent, "%s/absent.bin", dir);
        expect_bad("missing file", absent, "cannot open", NULL);
    }
}

/* Every proper prefix of a good file is refused as bad input (never read past the end). */
static void check_all_truncations(void)
{
    const int32_t good[7] = {D, HID, L, NH, KV, -V, SEQ};
    size_t n = tied_floats() + (size_t)V * D, full = 28 + 4 * n, refused = 0;
    const char *path = write_file("prefix-source.bin", good, 7, n);
    char prefix[4300];
    unsigned char *bytes = malloc(full);
    FILE *f = fopen(path, "rb");
    QR_EXPECT(bytes && f && fread(bytes, 1, full, f) == full, "cannot read back %s", path);
    if (f) {
        fclose(f);
    }
    snprintf(prefix, sizeof prefix, "%s/prefix.bin", dir);
    /* One file cut down step by step (ftruncate), not thousands of new files. */
    f = fopen(prefix, "wb");
    QR_EXPECT(f && bytes && fwrite(bytes, 1, full, f) == full, "cannot write %s", prefix);
    if (f) {
        fclose(f);
    }
    for (size_t len = full; bytes && len-- > 0;) {
        qr_l2c_file *h = NULL;
        qr_status st;
        if (truncate(prefix, (off_t)len) != 0) {
            QR_EXPECT(0, "cannot truncate %s", prefix);
            break;
        }
        st = qr_l2c_open(prefix, &h);
        refused += st == QR_ERR_INPUT && h == NULL;
        qr_l2c_close(&h);
    }
    QR_EXPECT(refused == full, "every one of the %zu proper prefixes must be refused, %zu were",
              full, refused);
    free(bytes);
}

/* Header fields worth drawing: small sizes, boundaries, negatives, and arbitrary int32. */
static int32_t draw_field(qr_rng *rng)
{
    static const int32_t edges[] = {
        0,       1,       2,         3,         4,         -1, -2, 8, 64, 1 << 20, (1 << 20) + 1,
        1 << 22, 1 << 24, INT32_MAX, INT32_MIN, -(1 << 24)};
    uint64_t r = qr_rng_u64(rng);
    switch (r % 3) {
    case 0:
        return edges[(r >> 8) % (sizeof edges / sizeof edges[0])];
    case 1:
        return (int32_t)((r >> 8) % 64) + 1;
    default:
        return (int32_t)(uint32_t)(r >> 16);
    }
}

/* qr_l2c_expected_size on random headers: never crashes, and whenever it accepts a header its
 * answer equals the layout computed independently in 128-bit arithmetic. */
static void check_random_headers(void)
{
    enum { TRIALS = 200000 };
    qr_rng rng;
    size_t accepted = 0, wrong = 0;
    qr_rng_seed(&rng, 42);
    for (int t = 0; t < TRIALS; t++) {
        int32_t h[7];
        uint64_t bytes = 0;
        for (int i = 0; i < 7; i++) {
            h[i] = draw_field(&rng);
        }
        if (t % 2 == 0) { /* half plausible, so the accepting path is exercised */
            h[3] = 1 << (qr_rng_u64(&rng) % 4);
            h[4] = h[3] >> (qr_rng_u64(&rng) % 2);
            h[0] = h[3] * 2 * (int32_t)(1 + qr_rng_u64(&rng) % 8);
            h[1] = (int32_t)(1 + qr_rng_u64(&rng) % 100);
            h[2] = (int32_t)(1 + qr_rng_u64(&rng) % 100);
            h[5] =
                (int32_t)(qr_rng_u64(&rng) % 2 ? 1 : -1) * (int32_t)(1 + qr_rng_u64(&rng) % 1000);
            h[6] = (int32_t)(1 + qr_rng_u64(&rng) % 1000);
            if (qr_rng_u64(&rng) % 4 == 0) { /* and sometimes one field at an edge */
                h[qr_rng_u64(&rng) % 7] = draw_field(&rng);
            }
        }
        if (qr_l2c_expected_size(h, "random", &bytes) == QR_OK) {
            __int128 d = h[0], hid = h[1], l = h[2], hd = h[0] / h[3], kvd = hd * h[4];
            __int128 v = h[5] < 0 ? -(__int128)h[5] : h[5], seq = h[6];
            __int128 floats = v * d + 2 * l * d + 2 * l * d * d + 2 * l * kvd * d +
                              3 * l * hid * d + d + seq * hd + (h[5] < 0 ? v * d : 0);
            accepted++;
            wrong += (__int128)bytes != 28 + 4 * floats;
        }
    }
    QR_EXPECT(wrong == 0, "%zu accepted headers gave a size other than the 128-bit layout", wrong);
    QR_EXPECT(accepted > TRIALS / 10, "too few plausible headers drawn (%zu of %d)", accepted,
              TRIALS);
    printf("random headers: %d drawn, %zu accepted, all sizes match the 128-bit layout\n", TRIALS,
           accepted);
}

/* The real stories260K header implies exactly the size of the shipped file (1056540 bytes). */
static void check_real_size(void)
{
    const int32_t hdr[7] = {64, 172, 5, 8, 4, 512, 512};
    uint64_t bytes = 0;
    QR_EXPECT(qr_l2c_expected_size(hdr, "stories260K", &bytes) == QR_OK && bytes == 1056540,
              "stories260K header: expected 1056540 bytes, found %llu", (unsigned long long)bytes);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s", qr_test_tmpdir("io_model_llama2c"));
    check_good(0);
    check_good(1);
    check_bad();
    check_all_truncations();
    check_random_headers();
    check_real_size();
    qr_test_remove_tree(dir);
    return qr_test_finish("io_model.llama2c");
}

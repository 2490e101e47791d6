/* capture_check.c: checks on calibration shards written by `qrecon capture`, driven by the
 * scripts in tests/capture/. Modes:
 *   rmsnorm DIR MODEL         layers.0.attn_in == RMSNorm(embedding[token]) recomputed here in
 *                             double from the model's tensors; every other dataset's shape
 *   compare DIR_A DIR_B TOL   the two captures hold the same rows in order (every key, tokens),
 *                             each value within TOL relative to max(1, |a|)
 *   tokens DIR OUT            write the captured text ids (BOS of each window dropped) as raw u32
 *   reader_errors DIR SCRATCH the reader refuses a non-HDF5 file, a missing key, rows out of range,
 *                             and an incomplete set of shards, naming the file
 *   writer SCRATCH            the writer on synthetic rows: f32 and f16 round trips, an incomplete
 *                             shard refused at finish (and no file left), inconsistent attributes
 */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/calib_shard.h"
#include "io/model.h"
#include "io/tokens.h"
#include "tests/test_util.h"

/* float32 RMSNorm against a double recomputation: a few ulps of float32 on values of order 1-10. */
#define RMSNORM_TOL 1e-5

static int mode_rmsnorm(const char *dir, const char *model_path)
{
    qr_calib_set *set = NULL;
    qr_model *m = NULL;
    const qr_model_config *c;
    const qr_calib_info *info;
    float *emb = NULL, *g = NULL, *rows = NULL;
    int32_t *tok = NULL;
    int64_t total, dim, r, cols;
    double worst = 0.0;
    QR_REQUIRE(qr_calib_set_open_dir(dir, &set) == QR_OK, "%s", qr_errmsg());
    QR_REQUIRE(qr_model_open(model_path, &m) == QR_OK, "%s", qr_errmsg());
    c = qr_model_get_config(m);
    info = qr_calib_shard_info(qr_calib_set_shard(set, 0));
    dim = c->dim;
    QR_EXPECT(strcmp(info->model_identity, qr_model_identity(m)) == 0,
              "shard identity %s differs from the model's %s", info->model_identity,
              qr_model_identity(m));
    QR_EXPECT(info->dim == dim && info->hidden_dim == c->hidden_dim &&
                  info->n_layers == c->n_layers && info->q_dim == c->n_heads * c->head_dim,
              "shard shape attributes differ from the model config");
    for (size_t k = 0; k < qr_calib_shard_key_count(qr_calib_set_shard(set, 0)); k++) {
        const char *key = qr_calib_shard_key(qr_calib_set_shard(set, 0), k);
        int64_t want = strstr(key, "down_in") ? c->hidden_dim
                       : strstr(key, "o_in")  ? c->n_heads * c->head_dim
                                              : c->dim;
        QR_EXPECT(qr_calib_shard_shape(qr_calib_set_shard(set, 0), key, &r, &cols) == QR_OK &&
                      cols == want && r == info->n_tokens,
                  "%s: expected (%lld, %lld), found (%lld, %lld)", key, (long long)info->n_tokens,
                  (long long)want, (long long)r, (long long)cols);
    }
    total = qr_calib_set_rows(set);
    emb = malloc((size_t)(c->vocab_size * dim) * sizeof *emb);
    g = malloc((size_t)dim * sizeof *g);
    rows = malloc((size_t)(total * dim) * sizeof *rows);
    tok = malloc((size_t)total * sizeof *tok);
    QR_REQUIRE(emb && g && rows && tok, "out of memory");
    QR_REQUIRE(
        qr_model_read_f32(m, "model.embed_tokens.weight", emb, (size_t)(c->vocab_size * dim)) ==
                QR_OK &&
            qr_model_read_f32(m, "model.layers.0.input_layernorm.weight", g, (size_t)dim) == QR_OK,
        "%s", qr_errmsg());
    QR_REQUIRE(qr_calib_set_read_rows(set, "layers.0.attn_in", 0, total, rows) == QR_OK, "%s",
               qr_errmsg());
    {
        int64_t off = 0;
        for (size_t s = 0; s < qr_calib_set_shard_count(set); s++) {
            qr_calib_shard *sh = qr_calib_set_shard(set, s);
            int64_t n = qr_calib_shard_info(sh)->n_tokens;
            QR_REQUIRE(qr_calib_shard_read_tokens(sh, 0, n, tok + off) == QR_OK, "%s", qr_errmsg());
            off += n;
        }
    }
    for (int64_t t = 0; t < total; t++) {
        const float *e = emb + (int64_t)tok[t] * dim;
        double ss = 0.0;
        if (t % info->seq_len == 0) {
            QR_EXPECT(tok[t] == 1, "row %lld starts a window and must be BOS, found %d",
                      (long long)t, (int)tok[t]);
        }
        for (int64_t j = 0; j < dim; j++) {
            ss += (double)e[j] * e[j];
        }
        ss = 1.0 / sqrt(ss / (double)dim + c->rms_eps);
        for (int64_t j = 0; j < dim; j++) {
            double want = (double)g[j] * e[j] * ss;
            double err = fabs(want - rows[t * dim + j]) / fmax(1.0, fabs(want));
            worst = err > worst || isnan(err) ? (isnan(err) ? INFINITY : err) : worst;
        }
    }
    printf("layers.0.attn_in vs RMSNorm(embedding): %lld rows, worst relative error %.3g\n",
           (long long)total, worst);
    QR_EXPECT(worst <= RMSNORM_TOL, "expected at most %g, found %.3g", RMSNORM_TOL, worst);
    free(emb);
    free(g);
    free(rows);
    free(tok);
    qr_model_close(&m);
    qr_calib_set_close(&set);
    return qr_test_finish("capture.rmsnorm");
}

/* ids = the tokens of the slice whose first shard is shard `first` of set; returns the index of
 * the next slice's first shard (first on a read error). */
static size_t read_slice_tokens(qr_calib_set *set, size_t first, int32_t *ids)
{
    int64_t off = 0, l0 = qr_calib_shard_info(qr_calib_set_shard(set, first))->layer_begin;
    size_t s = first;
    for (; s < qr_calib_set_shard_count(set); s++) {
        qr_calib_shard *sh = qr_calib_set_shard(set, s);
        int64_t n = qr_calib_shard_info(sh)->n_tokens;
        if (qr_calib_shard_info(sh)->layer_begin != l0) {
            break;
        }
        if (qr_calib_shard_read_tokens(sh, 0, n, ids + off) != QR_OK) {
            return first;
        }
        off += n;
    }
    return s;
}

static int mode_compare(const char *da, const char *db, double tol)
{
    qr_calib_set *a = NULL, *b = NULL;
    qr_calib_shard *a0, *b0;
    int64_t rows;
    QR_REQUIRE(qr_calib_set_open_dir(da, &a) == QR_OK, "%s", qr_errmsg());
    QR_REQUIRE(qr_calib_set_open_dir(db, &b) == QR_OK, "%s", qr_errmsg());
    a0 = qr_calib_set_shard(a, 0);
    b0 = qr_calib_set_shard(b, 0);
    rows = qr_calib_set_rows(a);
    printf("%s: %zu shard(s), %s: %zu shard(s), %lld rows\n", da, qr_calib_set_shard_count(a), db,
           qr_calib_set_shard_count(b), (long long)rows);
    QR_REQUIRE(rows == qr_calib_set_rows(b), "row counts differ: %lld vs %lld", (long long)rows,
               (long long)qr_calib_set_rows(b));
    QR_REQUIRE(qr_calib_shard_info(a0)->n_layers == qr_calib_shard_info(b0)->n_layers,
               "layer counts differ");
    /* every key of every layer, whichever layer slice's shards hold it */
    for (int64_t l = 0; l < qr_calib_shard_info(a0)->n_layers; l++) {
        for (int kind = 0; kind < QR_INPUT_KIND_COUNT; kind++) {
            char key[QR_INPUT_KEY_MAX];
            int64_t r = 0, cols = 0, ca = 0, bad = -1;
            float *xa, *xb;
            double worst = 0.0;
            qr_calib_key(key, sizeof key, l, (qr_input_kind)kind);
            QR_REQUIRE(qr_calib_set_shape(a, key, &r, &ca) == QR_OK, "%s", qr_errmsg());
            QR_REQUIRE(qr_calib_set_shape(b, key, &r, &cols) == QR_OK, "%s", qr_errmsg());
            QR_REQUIRE(ca == cols, "%s: widths differ", key);
            xa = malloc((size_t)(rows * cols) * sizeof *xa);
            xb = malloc((size_t)(rows * cols) * sizeof *xb);
            QR_REQUIRE(xa && xb, "out of memory");
            QR_REQUIRE(qr_calib_set_read_rows(a, key, 0, rows, xa) == QR_OK &&
                           qr_calib_set_read_rows(b, key, 0, rows, xb) == QR_OK,
                       "%s", qr_errmsg());
            for (int64_t i = 0; i < rows * cols; i++) {
                double err = fabs((double)xa[i] - xb[i]) / fmax(1.0, fabs((double)xa[i]));
                if (err > worst || isnan(err)) {
                    worst = isnan(err) ? INFINITY : err;
                    bad = i;
                }
            }
            if (tol == 0) { /* bit for bit: -0.0 and 0.0 differ too */
                QR_EXPECT(memcmp(xa, xb, (size_t)(rows * cols) * sizeof *xa) == 0,
                          "%s: not bit-identical", key);
            }
            QR_EXPECT(worst <= tol,
                      "%s: row %lld column %lld differs (expected within %g, found %.3g)", key,
                      (long long)(bad / cols), (long long)(bad % cols), tol, worst);
            free(xa);
            free(xb);
        }
    }
    {
        int32_t *ta = malloc((size_t)rows * 4), *tb = malloc((size_t)rows * 4);
        QR_REQUIRE(ta && tb, "out of memory");
        /* the tokens of a's first slice against every slice of b (each slice writes them) */
        QR_REQUIRE(read_slice_tokens(a, 0, ta) > 0, "%s", qr_errmsg());
        for (size_t first = 0; first < qr_calib_set_shard_count(b);) {
            size_t next = read_slice_tokens(b, first, tb);
            QR_REQUIRE(next > first, "%s", qr_errmsg());
            QR_EXPECT(memcmp(ta, tb, (size_t)rows * 4) == 0,
                      "token datasets differ (slice at shard %zu of %s)", first, db);
            first = next;
        }
        free(ta);
        free(tb);
    }
    qr_calib_set_close(&a);
    qr_calib_set_close(&b);
    return qr_test_finish("capture.compare");
}

static int mode_tokens(const char *dir, const char *out)
{
    qr_calib_set *set = NULL;
    int32_t *all = NULL, *ids = NULL;
    int64_t rows, L, n = 0, off = 0;
    QR_REQUIRE(qr_calib_set_open_dir(dir, &set) == QR_OK, "%s", qr_errmsg());
    rows = qr_calib_set_rows(set);
    L = qr_calib_shard_info(qr_calib_set_shard(set, 0))->seq_len;
    all = malloc((size_t)rows * 4);
    ids = malloc((size_t)rows * 4);
    QR_REQUIRE(all && ids, "out of memory");
    for (size_t s = 0; s < qr_calib_set_shard_count(set); s++) {
        qr_calib_shard *sh = qr_calib_set_shard(set, s);
        int64_t k = qr_calib_shard_info(sh)->n_tokens;
        QR_REQUIRE(qr_calib_shard_read_tokens(sh, 0, k, all + off) == QR_OK, "%s", qr_errmsg());
        off += k;
    }
    for (int64_t i = 0; i < rows; i++) {
        if (i % L != 0) {
            ids[n++] = all[i];
        }
    }
    QR_REQUIRE(qr_tokens_write_u32(out, ids, (size_t)n) == QR_OK, "%s", qr_errmsg());
    free(all);
    free(ids);
    qr_calib_set_close(&set);
    return qr_test_finish("capture.tokens");
}

/* dir holds a valid 2-shard capture (shard-00000.h5, shard-00001.h5). */
static int mode_reader_errors(const char *dir, const char *scratch)
{
    char path[4096], p0[4096], p1[4096];
    qr_calib_shard *s = NULL;
    qr_calib_set *set = NULL;
    float buf[16];
    FILE *f;
    snprintf(path, sizeof path, "%s/not-hdf5.h5", scratch);
    f = fopen(path, "w");
    QR_REQUIRE(f != NULL, "create %s", path);
    fputs("plain text\n", f);
    fclose(f);
    QR_EXPECT(qr_calib_shard_open(path, &s) == QR_ERR_INPUT && strstr(qr_errmsg(), path) &&
                  strstr(qr_errmsg(), "not an HDF5 file"),
              "a text file must be refused naming it, found: %s", qr_errmsg());
    snprintf(p0, sizeof p0, "%s/shard-00000.h5", dir);
    snprintf(p1, sizeof p1, "%s/shard-00001.h5", dir);
    QR_REQUIRE(qr_calib_shard_open(p0, &s) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(qr_calib_shard_read_rows(s, "layers.99.attn_in", 0, 1, buf) == QR_ERR_INPUT &&
                  strstr(qr_errmsg(), "layers.99.attn_in"),
              "an unknown key must be refused naming it, found: %s", qr_errmsg());
    QR_EXPECT(qr_calib_shard_read_rows(s, "layers.0.attn_in", qr_calib_shard_info(s)->n_tokens, 1,
                                       buf) == QR_ERR_INPUT &&
                  strstr(qr_errmsg(), "out of range"),
              "rows past the end must be refused, found: %s", qr_errmsg());
    qr_calib_shard_close(&s);
    /* A folder holding only shard 1 of 2 is not a whole capture; a list of files may be. */
    snprintf(path, sizeof path, "%s/partial", scratch);
    QR_REQUIRE(system(NULL) != 0, "no shell");
    {
        char cmd[12400];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s/'", path, p1, path);
        QR_REQUIRE(system(cmd) == 0, "cannot copy %s", p1);
    }
    QR_EXPECT(qr_calib_set_open_dir(path, &set) == QR_ERR_INPUT &&
                  strstr(qr_errmsg(), "not shard 0 of a 1-shard capture"),
              "a folder with shard 1 only must be refused, found: %s", qr_errmsg());
    {
        const char *one[1] = {p1}, *both_reversed[2] = {p1, p0};
        QR_EXPECT(qr_calib_set_open_files(one, 1, &set) == QR_OK, "one shard as a file list: %s",
                  qr_errmsg());
        qr_calib_set_close(&set);
        QR_EXPECT(qr_calib_set_open_files(both_reversed, 2, &set) == QR_ERR_INPUT &&
                      strstr(qr_errmsg(), "does not follow"),
                  "shards out of order must be refused, found: %s", qr_errmsg());
    }
    return qr_test_finish("capture.reader_errors");
}

/* binary16 keeps 11 significant bits: relative rounding error at most 2^-11. */
#define F16_TOL (1.0 / 2048)

static int mode_writer(const char *scratch)
{
    enum { L = 4, W = 3, N = L * W }; /* seq_len, windows, rows */
    qr_calib_info info;
    qr_calib_writer *w = NULL;
    qr_calib_shard *s = NULL;
    char path[4096];
    float x[N * 12], back[N * 12];
    int32_t ids[N];
    memset(&info, 0, sizeof info);
    snprintf(info.model_identity, sizeof info.model_identity, "test-identity");
    snprintf(info.source_kind, sizeof info.source_kind, "tokens");
    info.dim = 6;
    info.hidden_dim = 12;
    info.q_dim = 8;
    info.n_layers = 2;
    info.vocab_size = 100;
    info.seq_len = L;
    info.n_windows = W;
    info.n_tokens = N;
    info.total_windows = W;
    info.shard_count = 1;
    for (int i = 0; i < N * 12; i++) {
        x[i] = (float)((i % 7) - 3) * 0.37f + (float)i * 1e-3f;
    }
    for (int i = 0; i < N; i++) {
        ids[i] = i % L == 0 ? 1 : 10 + i;
    }
    for (int f16 = 0; f16 < 2; f16++) {
        double worst = 0.0;
        info.dtype = f16 ? QR_DTYPE_F16 : QR_DTYPE_F32;
        snprintf(path, sizeof path, "%s/writer-%d.h5", scratch, f16);
        QR_REQUIRE(qr_calib_writer_open(path, &info, &w) == QR_OK, "%s", qr_errmsg());
        for (int64_t l = 0; l < 2; l++) {
            for (int k = 0; k < QR_INPUT_KIND_COUNT; k++) {
                int64_t d = k == QR_INPUT_O ? 8 : k == QR_INPUT_DOWN ? 12 : 6;
                /* Two writes per dataset: rows 0..4 and 5..11 (not window aligned on purpose). */
                QR_REQUIRE(qr_calib_writer_put(w, l, (qr_input_kind)k, 0, x, 5, d) == QR_OK &&
                               qr_calib_writer_put(w, l, (qr_input_kind)k, 5, x + 5 * d, N - 5,
                                                   d) == QR_OK,
                           "%s", qr_errmsg());
            }
        }
        QR_REQUIRE(qr_calib_writer_put_tokens(w, 0, ids, N) == QR_OK, "%s", qr_errmsg());
        QR_EXPECT(qr_calib_writer_put(w, 0, QR_INPUT_ATTN, 10, x, 5, 6) != QR_OK,
                  "rows past the end must be refused");
        QR_REQUIRE(qr_calib_writer_finish(&w) == QR_OK, "%s", qr_errmsg());
        QR_REQUIRE(qr_calib_shard_open(path, &s) == QR_OK, "%s", qr_errmsg());
        QR_EXPECT(qr_calib_shard_info(s)->dtype == info.dtype, "dtype attribute round trip");
        QR_REQUIRE(qr_calib_shard_read_rows(s, "layers.1.down_in", 0, N, back) == QR_OK, "%s",
                   qr_errmsg());
        for (int i = 0; i < N * 12; i++) {
            double err = fabs((double)back[i] - x[i]) / fmax(fabs((double)x[i]), 1e-30);
            worst = err > worst ? err : worst;
        }
        QR_EXPECT(worst <= (f16 ? F16_TOL : 0.0),
                  "%s round trip: expected relative error at most %g, found %.3g",
                  f16 ? "f16" : "f32", f16 ? F16_TOL : 0.0, worst);
        qr_calib_shard_close(&s);
    }
    /* A shard with a dataset left unwritten is refused at finish and leaves no file. */
    info.dtype = QR_DTYPE_F32;
    snprintf(path, sizeof path, "%s/incomplete.h5", scratch);
    QR_REQUIRE(qr_calib_writer_open(path, &info, &w) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(qr_calib_writer_finish(&w) != QR_OK && strstr(qr_errmsg(), "incomplete") && w == NULL,
              "an unwritten shard must be refused at finish, found: %s", qr_errmsg());
    QR_EXPECT(access(path, F_OK) != 0, "no shard may be left behind: %s exists", path);
    {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        QR_EXPECT(access(tmp, F_OK) != 0, "no temporary file may be left behind: %s", tmp);
    }
    info.n_tokens = N + 1;
    QR_EXPECT(qr_calib_writer_open(path, &info, &w) == QR_ERR_INPUT &&
                  strstr(qr_errmsg(), "n_tokens"),
              "n_tokens != n_windows * seq_len must be refused, found: %s", qr_errmsg());
    return qr_test_finish("capture.writer");
}

/* dir holds a capture cut into 3 layer slices of stories260K (5 layers: [0,2), [2,4), [4,5)), one
 * rank per group: opening the layers of one slice opens that slice's shard only; a key outside the
 * opened layers is refused naming it; a folder that misses a slice is refused. */
static int mode_slices(const char *dir, const char *scratch)
{
    qr_calib_set *set = NULL;
    int64_t a = -1, b = -1, rows = 0, cols = 0;
    float buf[64];
    QR_REQUIRE(qr_calib_set_open_dir_layers(dir, 2, 4, &set) == QR_OK, "%s", qr_errmsg());
    qr_calib_set_layers(set, &a, &b);
    QR_EXPECT(qr_calib_set_shard_count(set) == 1 && a == 2 && b == 4,
              "layers [2, 4): expected the one shard of slice [2, 4), found %zu shard(s) of "
              "layers [%lld, %lld)",
              qr_calib_set_shard_count(set), (long long)a, (long long)b);
    QR_EXPECT(qr_calib_set_shape(set, "layers.3.down_in", &rows, &cols) == QR_OK && cols > 0,
              "layers.3.down_in in the slice: %s", qr_errmsg());
    QR_EXPECT(qr_calib_set_read_rows(set, "layers.0.attn_in", 0, 1, buf) == QR_ERR_INPUT &&
                  strstr(qr_errmsg(), "layers.0.attn_in"),
              "a key of an unopened slice must be refused naming it, found: %s", qr_errmsg());
    qr_calib_set_close(&set);
    QR_REQUIRE(qr_calib_set_open_dir_layers(dir, 1, 3, &set) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(qr_calib_set_shard_count(set) == 2, "layers [1, 3) span two slices, found %zu",
              qr_calib_set_shard_count(set));
    qr_calib_set_close(&set);
    {
        char cmd[12400], part[4096];
        snprintf(part, sizeof part, "%s/no-middle", scratch);
        snprintf(cmd, sizeof cmd,
                 "mkdir -p '%s' && cp '%s'/shard-l00000-* '%s'/shard-l00004-* '%s/'", part, dir,
                 dir, part);
        QR_REQUIRE(system(cmd) == 0, "cannot copy into %s", part);
        QR_EXPECT(qr_calib_set_open_dir(part, &set) == QR_ERR_INPUT &&
                      strstr(qr_errmsg(), "starts at layer 2"),
                  "a folder without the middle slice must be refused, found: %s", qr_errmsg());
        QR_EXPECT(qr_calib_set_open_dir_layers(part, 4, 5, &set) == QR_OK,
                  "the slices present stay usable alone: %s", qr_errmsg());
        qr_calib_set_close(&set);
    }
    return qr_test_finish("capture.slices");
}

/* Set the integer root attribute name of an HDF5 file (create it when absent), or delete it when
 * del. */
static int set_attr(const char *path, const char *name, int64_t v, bool del)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), a = -1, sp = -1;
    int rc = 1;
    if (f < 0) {
        return 1;
    }
    if (H5Aexists(f, name) > 0 && H5Adelete(f, name) < 0) {
        goto done;
    }
    if (!del) {
        sp = H5Screate(H5S_SCALAR);
        a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a < 0 || H5Awrite(a, H5T_NATIVE_INT64, &v) < 0) {
            goto done;
        }
    }
    rc = 0;
done:
    if (a >= 0) {
        H5Aclose(a);
    }
    if (sp >= 0) {
        H5Sclose(sp);
    }
    H5Fclose(f);
    return rc;
}

/* A version-1 shard (today's shard without the layer range, version 1) stays readable with every
 * layer; version 3 is refused naming the version. shard is a whole-model shard, copied. */
static int mode_versions(const char *shard, const char *scratch)
{
    char v1[4096], v3[4096], cmd[12400];
    qr_calib_shard *s = NULL;
    snprintf(v1, sizeof v1, "%s/v1.h5", scratch);
    snprintf(v3, sizeof v3, "%s/v3.h5", scratch);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && cp '%s' '%s'", shard, v1, shard, v3);
    QR_REQUIRE(system(cmd) == 0, "cannot copy %s", shard);
    QR_REQUIRE(
        set_attr(v1, "version", 1, false) == 0 && set_attr(v1, "layer_begin", 0, true) == 0 &&
            set_attr(v1, "layer_end", 0, true) == 0 && set_attr(v3, "version", 3, false) == 0,
        "cannot edit the copies' attributes");
    QR_EXPECT(qr_calib_shard_open(v1, &s) == QR_OK, "a version-1 shard must open: %s", qr_errmsg());
    if (s) {
        const qr_calib_info *in = qr_calib_shard_info(s);
        QR_EXPECT(in->version == 1 && in->layer_begin == 0 && in->layer_end == in->n_layers &&
                      qr_calib_shard_key_count(s) == (size_t)(4 * in->n_layers),
                  "version 1: expected every layer, found [%lld, %lld)", (long long)in->layer_begin,
                  (long long)in->layer_end);
        qr_calib_shard_close(&s);
    }
    QR_EXPECT(qr_calib_shard_open(v3, &s) == QR_ERR_INPUT && strstr(qr_errmsg(), "found 3") &&
                  strstr(qr_errmsg(), "expected 1 or 2"),
              "version 3 must be refused naming the version, found: %s", qr_errmsg());
    return qr_test_finish("capture.versions");
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "rmsnorm") == 0 && argc == 4) {
        return mode_rmsnorm(argv[2], argv[3]);
    }
    if (strcmp(mode, "compare") == 0 && argc == 5) {
        return mode_compare(argv[2], argv[3], atof(argv[4]));
    }
    if (strcmp(mode, "tokens") == 0 && argc == 4) {
        return mode_tokens(argv[2], argv[3]);
    }
    if (strcmp(mode, "reader_errors") == 0 && argc == 4) {
        return mode_reader_errors(argv[2], argv[3]);
    }
    if (strcmp(mode, "slices") == 0 && argc == 4) {
        return mode_slices(argv[2], argv[3]);
    }
    if (strcmp(mode, "versions") == 0 && argc == 4) {
        return mode_versions(argv[2], argv[3]);
    }
    if (strcmp(mode, "writer") == 0 && argc == 3) {
        return mode_writer(argv[2]);
    }
    fprintf(stderr,
            "usage: capture_check rmsnorm DIR MODEL | compare A B TOL | tokens DIR OUT | "
            "reader_errors DIR SCRATCH | slices DIR SCRATCH | versions SHARD SCRATCH | writer "
            "SCRATCH\n");
    return 1;
}

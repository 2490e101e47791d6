/* synth_test.c: `qrecon synth` (jobs/cmd_synth.c) and src/synth.c. Drives the real binary
 * ($QRECON_BIN) and reads what it wrote with io/safetensors.c. One program; argv[1] picks the case:
 *   determinism  same options give the same bytes; another seed gives other bytes
 *   shapes       tensor names, shapes, dtypes and config.json for a few configurations
 *   structure    heavy tails, outlier input channels, norms near 1, embedding scale
 *   options      bad options exit 2 with one line naming the option; --help exits 0
 *   chunks       (no binary) generation is independent of how rows are split into blocks */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "io/safetensors.h"
#include "src/synth.h"
#include "tests/test_util.h"

/* Sample kurtosis of Student-t(5) is 9 in the limit but converges slowly from below; a Gaussian
 * gives 3. 5 separates the two with a wide margin at 64K samples. */
#define KURTOSIS_MIN 5.0
/* Outlier channels are scaled x10..x30 against x1: their mean column norm must be far above the
 * median one even after the per-row scale variation. */
#define OUTLIER_NORM_RATIO_MIN 8.0
/* Norm weights are 1 + 0.05 N(0,1): the mean of 256 draws is within 0.02 of 1 with overwhelming
 * probability (4 standard errors is 0.0125). */
#define NORM_MEAN_TOL 0.02
/* Embedding standard deviation 0.02, measured on 131K draws: 5% is far beyond sampling noise. */
#define EMBED_STD_REL_TOL 0.05

static char dir[1024];
static const char *bin;

static int run(const char *args, const char *stderr_file)
{
    char cmd[8192];
    int rc;
    snprintf(cmd, sizeof cmd, "'%s' synth %s >/dev/null 2>'%s'", bin, args,
             stderr_file ? stderr_file : "/dev/null");
    rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int files_equal(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int ca, cb, same = fa && fb;
    while (same) {
        ca = fgetc(fa);
        cb = fgetc(fb);
        if (ca != cb) {
            same = 0;
        }
        if (ca == EOF) {
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

static int test_determinism(void)
{
    const char *files[] = {"config.json", "model.safetensors.index.json",
                           "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    const char *opts = "--dim 64 --hidden 176 --layers 2 --heads 4 --kv-heads 2 --vocab 96 "
                       "--dtype bf16 --shards 2";
    char args[2048], a[2048], b[2048];
    for (int k = 0; k < 3; k++) {
        snprintf(args, sizeof args, "--out '%s/run%d' %s --seed %d", dir, k, opts, k == 2 ? 1 : 7);
        QR_REQUIRE(run(args, NULL) == 0, "synth %s failed", args);
    }
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(a, sizeof a, "%s/run0/%s", dir, files[i]);
        snprintf(b, sizeof b, "%s/run1/%s", dir, files[i]);
        QR_EXPECT(files_equal(a, b), "%s differs between two runs with the same options", files[i]);
    }
    snprintf(a, sizeof a, "%s/run0/model-00001-of-00002.safetensors", dir);
    snprintf(b, sizeof b, "%s/run2/model-00001-of-00002.safetensors", dir);
    QR_EXPECT(!files_equal(a, b), "another --seed must give other weights");
    return qr_test_finish("synth.determinism");
}

typedef struct {
    const char *opts;
    int64_t dim, hidden, layers, heads, kv, vocab;
    int tied;
    qr_dtype dtype;
    size_t shards;
} shape_case;

static void check_config(const char *folder, const shape_case *c)
{
    char path[4096];
    json_error_t err;
    json_t *root;
    snprintf(path, sizeof path, "%s/config.json", folder);
    root = json_load_file(path, 0, &err);
    QR_EXPECT(root != NULL, "%s: %s", path, err.text);
    if (!root) {
        return;
    }
    QR_EXPECT(strcmp(json_string_value(json_object_get(root, "model_type")), "llama") == 0 &&
                  json_integer_value(json_object_get(root, "hidden_size")) == c->dim &&
                  json_integer_value(json_object_get(root, "intermediate_size")) == c->hidden &&
                  json_integer_value(json_object_get(root, "num_hidden_layers")) == c->layers &&
                  json_integer_value(json_object_get(root, "num_attention_heads")) == c->heads &&
                  json_integer_value(json_object_get(root, "num_key_value_heads")) == c->kv &&
                  json_integer_value(json_object_get(root, "vocab_size")) == c->vocab &&
                  json_is_true(json_object_get(root, "tie_word_embeddings")) == c->tied &&
                  json_real_value(json_object_get(root, "rms_norm_eps")) == 1e-5 &&
                  json_real_value(json_object_get(root, "rope_theta")) == 10000.0 &&
                  json_integer_value(json_object_get(root, "max_position_embeddings")) > 0,
              "%s: config fields do not match the options %s", path, c->opts);
    QR_EXPECT(strcmp(json_string_value(json_object_get(root, "torch_dtype")),
                     c->dtype == QR_DTYPE_BF16  ? "bfloat16"
                     : c->dtype == QR_DTYPE_F16 ? "float16"
                                                : "float32") == 0,
              "%s: torch_dtype", path);
    json_decref(root);
}

static void expect_shape(const qr_st_model *m, const char *name, int64_t rows, int64_t cols)
{
    const qr_st_tensor *t = qr_st_model_find(m, name);
    int ndim = cols ? 2 : 1;
    QR_EXPECT(t && t->ndim == ndim && t->shape[0] == rows && (ndim == 1 || t->shape[1] == cols),
              "%s: expected [%" PRId64 ", %" PRId64 "], found %s", name, rows, cols,
              t ? "another shape" : "no tensor");
}

static int test_shapes(void)
{
    const shape_case cases[] = {
        {"--dim 64 --hidden 160 --layers 3 --heads 4 --kv-heads 2 --vocab 100 --shards 3", 64, 160,
         3, 4, 2, 100, 0, QR_DTYPE_F32, 3},
        {"--dim 48 --hidden 128 --layers 2 --heads 6 --kv-heads 6 --vocab 50 --tie-embeddings "
         "--dtype f16",
         48, 128, 2, 6, 6, 50, 1, QR_DTYPE_F16, 1},
        {"--layers 1 --dtype bf16 --shards 2", 256, 688, 1, 8, 4, 512, 0, QR_DTYPE_BF16, 2},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const shape_case *c = &cases[k];
        char folder[2048], args[4096], name[256];
        qr_st_model *m = NULL;
        int64_t hd = c->dim / c->heads;
        size_t expect_count = 1 + 9 * (size_t)c->layers + 1 + (c->tied ? 0 : 1);
        snprintf(folder, sizeof folder, "%s/shapes%zu", dir, k);
        snprintf(args, sizeof args, "--out '%s' %s", folder, c->opts);
        QR_REQUIRE(run(args, NULL) == 0, "synth %s failed", args);
        QR_REQUIRE(qr_st_model_open(folder, &m) == QR_OK, "%s: %s", folder, qr_errmsg());
        QR_EXPECT(qr_st_model_count(m) == expect_count && qr_st_model_shard_count(m) == c->shards,
                  "%s: expected %zu tensors in %zu files, found %zu in %zu", c->opts, expect_count,
                  c->shards, qr_st_model_count(m), qr_st_model_shard_count(m));
        for (size_t i = 0; i < qr_st_model_count(m); i++) {
            QR_EXPECT(qr_st_model_at(m, i)->dtype == c->dtype, "%s: %s has dtype %s", c->opts,
                      qr_st_model_at(m, i)->name, qr_dtype_name(qr_st_model_at(m, i)->dtype));
        }
        expect_shape(m, "model.embed_tokens.weight", c->vocab, c->dim);
        expect_shape(m, "model.norm.weight", c->dim, 0);
        QR_EXPECT((qr_st_model_find(m, "lm_head.weight") == NULL) == c->tied,
                  "%s: lm_head present exactly when untied", c->opts);
        if (!c->tied) {
            expect_shape(m, "lm_head.weight", c->vocab, c->dim);
        }
        for (int64_t l = 0; l < c->layers; l++) {
            const struct {
                const char *mod;
                int64_t rows, cols;
            } mods[] = {
                {"self_attn.q_proj", c->heads * hd, c->dim},
                {"self_attn.k_proj", c->kv * hd, c->dim},
                {"self_attn.v_proj", c->kv * hd, c->dim},
                {"self_attn.o_proj", c->dim, c->heads * hd},
                {"mlp.gate_proj", c->hidden, c->dim},
                {"mlp.up_proj", c->hidden, c->dim},
                {"mlp.down_proj", c->dim, c->hidden},
                {"input_layernorm", c->dim, 0},
                {"post_attention_layernorm", c->dim, 0},
            };
            for (size_t j = 0; j < sizeof mods / sizeof mods[0]; j++) {
                snprintf(name, sizeof name, "model.layers.%" PRId64 ".%s.weight", l, mods[j].mod);
                expect_shape(m, name, mods[j].rows, mods[j].cols);
            }
        }
        check_config(folder, c);
        qr_st_model_close(&m);
    }
    return qr_test_finish("synth.shapes");
}

/* Read a 2-D tensor as float32 (rows, cols); caller frees. */
static float *read_matrix(const qr_st_model *m, const char *name, int64_t *rows, int64_t *cols)
{
    const qr_st_tensor *t = qr_st_model_find(m, name);
    float *w;
    if (!t) {
        return NULL;
    }
    w = malloc((size_t)t->numel * sizeof *w);
    if (!w || qr_st_read_f32(t, w, (size_t)t->numel) != QR_OK) {
        free(w);
        return NULL;
    }
    *rows = t->shape[0];
    *cols = t->ndim > 1 ? t->shape[1] : 1;
    return w;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Column norms of w (rows, cols); returns the indices of the `k` largest in *top (sorted). */
static void top_columns(const float *w, int64_t rows, int64_t cols, int k, int *top, double *ratio)
{
    double *norm = calloc((size_t)cols, sizeof *norm), *sorted = malloc((size_t)cols * 8);
    double out_mean = 0;
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < cols; j++) {
            norm[j] += (double)w[i * cols + j] * w[i * cols + j];
        }
    }
    for (int t = 0; t < k; t++) {
        int best = -1;
        for (int64_t j = 0; j < cols; j++) {
            int taken = 0;
            for (int u = 0; u < t; u++) {
                taken |= top[u] == j;
            }
            if (!taken && (best < 0 || norm[j] > norm[best])) {
                best = (int)j;
            }
        }
        top[t] = best;
        out_mean += sqrt(norm[best]) / k;
    }
    for (int64_t j = 0; j < cols; j++) {
        sorted[j] = sqrt(norm[j]);
    }
    qsort(sorted, (size_t)cols, sizeof *sorted, cmp_double);
    *ratio = out_mean / sorted[cols / 2];
    free(norm);
    free(sorted);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int test_structure(void)
{
    char folder[2048], args[4096];
    qr_st_model *m = NULL;
    const char *residual_mods[] = {
        "model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight",
        "model.layers.0.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight"};
    int ref_top[64], top[64];
    const int k = 3; /* 1% of 256 input channels, rounded */
    snprintf(folder, sizeof folder, "%s/structure", dir);
    snprintf(args, sizeof args, "--out '%s' --layers 2 --seed 3", folder);
    QR_REQUIRE(run(args, NULL) == 0, "synth %s failed", args);
    QR_REQUIRE(qr_st_model_open(folder, &m) == QR_OK, "%s: %s", folder, qr_errmsg());
    for (size_t i = 0; i < sizeof residual_mods / sizeof residual_mods[0]; i++) {
        int64_t rows = 0, cols = 0;
        double ratio = 0, m2 = 0, m4 = 0, kurt;
        int64_t n = 0;
        float *w = read_matrix(m, residual_mods[i], &rows, &cols);
        QR_REQUIRE(w != NULL, "cannot read %s", residual_mods[i]);
        top_columns(w, rows, cols, k, top, &ratio);
        qsort(top, (size_t)k, sizeof *top, cmp_int);
        QR_EXPECT(ratio >= OUTLIER_NORM_RATIO_MIN,
                  "%s: outlier columns should have much larger norms (mean top / median = %.2f, "
                  "expected >= %.1f)",
                  residual_mods[i], ratio, OUTLIER_NORM_RATIO_MIN);
        if (i == 0) {
            memcpy(ref_top, top, sizeof top);
        } else {
            QR_EXPECT(memcmp(ref_top, top, (size_t)k * sizeof *top) == 0,
                      "%s: modules reading the residual stream should share outlier channels "
                      "(found %d %d %d, expected %d %d %d)",
                      residual_mods[i], top[0], top[1], top[2], ref_top[0], ref_top[1], ref_top[2]);
        }
        /* Kurtosis over the ordinary channels, each row normalised by its RMS so the row scale
         * variation does not inflate it: the heavy tail must come from the values themselves. */
        for (int64_t r = 0; r < rows; r++) {
            double ss = 0;
            int64_t cnt = 0;
            for (int64_t j = 0; j < cols; j++) {
                if (bsearch(&(int){(int)j}, top, (size_t)k, sizeof *top, cmp_int)) {
                    continue;
                }
                ss += (double)w[r * cols + j] * w[r * cols + j];
                cnt++;
            }
            ss /= (double)cnt;
            for (int64_t j = 0; j < cols; j++) {
                double z;
                if (bsearch(&(int){(int)j}, top, (size_t)k, sizeof *top, cmp_int)) {
                    continue;
                }
                z = (double)w[r * cols + j] * w[r * cols + j] / ss;
                m2 += z;
                m4 += z * z;
                n++;
            }
        }
        kurt = (m4 / (double)n) / ((m2 / (double)n) * (m2 / (double)n));
        QR_EXPECT(kurt > KURTOSIS_MIN, "%s: kurtosis %.2f, expected > %.1f (heavy tails)",
                  residual_mods[i], kurt, KURTOSIS_MIN);
        printf("%s: outlier norm ratio %.1f, kurtosis %.2f\n", residual_mods[i], ratio, kurt);
        free(w);
    }
    {
        int64_t rows = 0, cols = 0;
        double s = 0, ss = 0;
        float *w = read_matrix(m, "model.layers.1.post_attention_layernorm.weight", &rows, &cols);
        QR_REQUIRE(w != NULL, "cannot read a norm");
        for (int64_t j = 0; j < rows * cols; j++) {
            s += w[j];
        }
        QR_EXPECT(fabs(s / (double)(rows * cols) - 1.0) < NORM_MEAN_TOL,
                  "norm weights should be near 1 (mean %.4f)", s / (double)(rows * cols));
        free(w);
        w = read_matrix(m, "model.embed_tokens.weight", &rows, &cols);
        QR_REQUIRE(w != NULL, "cannot read the embeddings");
        s = 0;
        for (int64_t j = 0; j < rows * cols; j++) {
            s += w[j];
            ss += (double)w[j] * w[j];
        }
        s /= (double)(rows * cols);
        ss = sqrt(ss / (double)(rows * cols) - s * s);
        QR_EXPECT(fabs(ss / 0.02 - 1.0) < EMBED_STD_REL_TOL,
                  "embedding std %.5f, expected 0.02 within %.0f%%", ss, 100 * EMBED_STD_REL_TOL);
        free(w);
    }
    qr_st_model_close(&m);
    return qr_test_finish("synth.structure");
}

static void expect_usage_error(const char *args, const char *what)
{
    char err[2048], line[2048];
    FILE *f;
    int rc, lines = 0, found = 0;
    snprintf(err, sizeof err, "%s/stderr.txt", dir);
    rc = run(args, err);
    QR_EXPECT(rc == 2, "synth %s: expected exit 2, found %d", args, rc);
    f = fopen(err, "r");
    while (f && fgets(line, sizeof line, f)) {
        lines++;
        found |= strstr(line, what) != NULL;
    }
    if (f) {
        fclose(f);
    }
    QR_EXPECT(lines == 1 && found, "synth %s: expected one stderr line containing '%s' (%d lines)",
              args, what, lines);
}

static int test_options(void)
{
    char args[4096], out[2048], cmd[8192];
    int rc;
    expect_usage_error("--dim abc --out x", "--dim: expected an integer");
    expect_usage_error("--dim 0 --out x", "--dim: expected an integer in [1,");
    expect_usage_error("--out x --heads 3", "--heads must divide --dim");
    expect_usage_error("--out x --kv-heads 3", "--kv-heads must divide --heads");
    expect_usage_error("--out x --dtype f8", "--dtype: expected f32, bf16 or f16, found 'f8'");
    expect_usage_error("--out x --bogus", "unknown option '--bogus'");
    expect_usage_error("--layers 2", "--out DIR is required");
    expect_usage_error("--out x --seed", "option '--seed' is missing its value");
    snprintf(args, sizeof args, "--out '%s/many' --layers 1 --shards 50", dir);
    expect_usage_error(args, "--shards: expected at most 12");
    {
        /* --tokenizer: copied when it matches --vocab, refused (naming the file) when not. */
        const char *data = qr_test_data_dir();
        if (data) {
            char tok[1024], copy[2048];
            snprintf(tok, sizeof tok, "%s/models/stories260K/llama2c/tok512.bin", data);
            snprintf(args, sizeof args, "--out '%s/tok' --layers 1 --tokenizer '%s'", dir, tok);
            QR_EXPECT(run(args, NULL) == 0, "synth %s failed", args);
            snprintf(copy, sizeof copy, "%s/tok/tokenizer.bin", dir);
            QR_EXPECT(files_equal(tok, copy), "tokenizer.bin should be a copy of %s", tok);
            snprintf(args, sizeof args, "--out '%s/tok2' --vocab 100 --tokenizer '%s'", dir, tok);
            expect_usage_error(args, "tok512.bin");
        }
    }
    snprintf(out, sizeof out, "%s/help.txt", dir);
    snprintf(cmd, sizeof cmd, "'%s' synth --help >'%s' 2>&1 && grep -q -- '--kv-heads N' '%s'", bin,
             out, out);
    rc = system(cmd);
    QR_EXPECT(rc == 0, "synth --help should exit 0 and list --kv-heads");
    return qr_test_finish("synth.options");
}

static int test_chunks(void)
{
    qr_model_config cfg = {.dim = 64,
                           .hidden_dim = 96,
                           .n_layers = 1,
                           .n_heads = 4,
                           .n_kv_heads = 2,
                           .head_dim = 16,
                           .vocab_size = 40,
                           .max_seq_len = 32};
    qr_synth_tensor *ts = NULL;
    size_t n = 0;
    float whole[96 * 64], part[96 * 64];
    QR_REQUIRE(qr_synth_plan(&cfg, &ts, &n) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(n == 12, "tensor count: expected 12, found %zu", n);
    for (size_t i = 0; i < n; i++) {
        qr_synth_gen g;
        int64_t rows = ts[i].rows, cols = ts[i].cols;
        QR_REQUIRE(qr_synth_gen_init(&g, &ts[i], 11) == QR_OK, "%s", qr_errmsg());
        qr_synth_gen_rows(&g, 0, rows, whole);
        for (int64_t r = 0; r < rows; r += 5) { /* blocks of 5 rows, the last one short */
            qr_synth_gen_rows(&g, r, rows - r < 5 ? rows - r : 5, part + r * cols);
        }
        QR_EXPECT(memcmp(whole, part, (size_t)(rows * cols) * sizeof *whole) == 0,
                  "%s: row blocks must give the same values as one call", ts[i].name);
        qr_synth_gen_free(&g);
        qr_synth_gen_free(&g); /* NULL-safe twice */
    }
    free(ts);
    cfg.n_heads = 5;
    cfg.head_dim = 12;
    QR_EXPECT(qr_synth_plan(&cfg, &ts, &n) == QR_ERR_INPUT, "heads not dividing dim must fail");
    return qr_test_finish("synth.chunks");
}

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "";
    char cmd[1100];
    int rc;
    bin = getenv("QRECON_BIN");
    /* The binary starts MPI as a singleton; Open MPI refuses root without these. */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    /* Under the sanitizer build, Open MPI's start-up leaks from components it has already
     * unloaded, which no suppression can name: the child qrecon runs with AddressSanitizer but
     * without leak checking. This program's own leaks are still checked. */
    {
        static char asan[1024];
        const char *cur = getenv("ASAN_OPTIONS");
        snprintf(asan, sizeof asan, "%s%sdetect_leaks=0", cur ? cur : "", cur && *cur ? ":" : "");
        setenv("ASAN_OPTIONS", asan, 1);
    }
    snprintf(dir, sizeof dir, "%s", qr_test_tmpdir(which[0] ? which : "synth"));
    if (strcmp(which, "chunks") == 0) {
        rc = test_chunks();
    } else if (!bin) {
        fprintf(stderr, "QRECON_BIN is not set (run through ctest)\n");
        return 1;
    } else if (strcmp(which, "determinism") == 0) {
        rc = test_determinism();
    } else if (strcmp(which, "shapes") == 0) {
        rc = test_shapes();
    } else if (strcmp(which, "structure") == 0) {
        rc = test_structure();
    } else if (strcmp(which, "options") == 0) {
        rc = test_options();
    } else {
        fprintf(stderr, "usage: %s determinism|shapes|structure|options|chunks\n", argv[0]);
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

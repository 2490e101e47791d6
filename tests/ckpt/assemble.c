/* assemble.c: the shared checkpoint assembled collectively from part files (under mpiexec -n 2 or
 * 3) reads back equal to the parts: every module field, every metric, every copied tensor, the root
 * attributes, and the module order. A missing part makes every rank fail with the same message and
 * leaves no checkpoint. With `--keep DIR` the checkpoint is written to DIR/ckpt.h5 and kept (the
 * h5ls layout test reads it). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "mpi/comm.h"
#include "io/fs.h"
#include "io/part_file.h"
#include "src/log.h"
#include "src/rng.h"
#include "tests/ckpt/fixture.h"
#include "tests/test_util.h"

#define N_MODULES 5
#define N_TENSORS 4

static const char *module_names[N_MODULES] = {
    "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.o_proj",
    "model.layers.0.mlp.down_proj",    "model.layers.1.self_attn.q_proj",
    "model.layers.10.mlp.up_proj",
};

static const qr_fixture_spec specs[N_MODULES] = {
    {QR_METHOD_SRR, 48, 64, 32, false, 8, 0, false, false},
    {QR_METHOD_SERQ, 64, 64, 64, false, 0, 8, true, true},
    {QR_METHOD_ASER, 64, 172, 32, true, 4, 0, true, false},
    {QR_METHOD_RTN, 48, 64, 64, true, 0, 0, false, false},
    {QR_METHOD_LQER, 172, 64, 32, false, 16, 0, false, false},
};

static const qr_ckpt_tensor tensors[N_TENSORS] = {
    {"model.embed_tokens.weight", 2, {512, 64}},
    {"model.layers.0.input_layernorm.weight", 1, {64}},
    {"model.norm.weight", 1, {64}},
    /* 37.7 MB of float32: two blocks of the owner's streamed copy, the second one partial */
    {"lm_head.weight", 2, {131072, 72}},
};

/* Tensor values: a seeded stream per name, so any rank can make any tensor. */
/* Tensor `name` is the seeded stream of its name, row-major; rows [row0, row0 + nrows) of it (n
 * elements) into dst, the rows before them drawn and dropped. */
static qr_status fake_rows(void *ctx, const char *name, int64_t row0, int64_t nrows, float *dst,
                           size_t n)
{
    qr_rng rng;
    size_t skip = nrows > 0 ? (size_t)row0 * (n / (size_t)nrows) : 0;
    (void)ctx;
    qr_rng_for_name(&rng, name, 5);
    for (size_t i = 0; i < skip; i++) {
        (void)qr_rng_normal(&rng);
    }
    for (size_t i = 0; i < n; i++) {
        dst[i] = (float)qr_rng_normal(&rng);
    }
    return QR_OK;
}

static qr_status fake_tensor(void *ctx, const char *name, float *dst, size_t n)
{
    return fake_rows(ctx, name, 0, 1, dst, n);
}

static int check_readback(const char *out, char parts[][1024])
{
    qr_ckpt *c = NULL;
    const qr_kv *kv;
    int failures_before = qr_test_failures;
    QR_EXPECT(qr_ckpt_open(out, &c) == QR_OK, "open %s: %s", out, qr_errmsg());
    if (!c) {
        return 1;
    }
    kv = qr_kv_find(qr_ckpt_attrs(c), "method");
    QR_EXPECT(kv && kv->type == QR_KV_STRING && strcmp(kv->s, "srr") == 0,
              "root attribute 'method' not read back");
    QR_EXPECT(strcmp(qr_ckpt_model_config(c), "{\"dim\": 64}") == 0,
              "model_config text not read back: '%s'", qr_ckpt_model_config(c));
    QR_EXPECT(strcmp(qr_ckpt_options(c), "{\"wbits\": 4}") == 0, "options text not read back: '%s'",
              qr_ckpt_options(c));
    kv = qr_kv_find(qr_ckpt_attrs(c), "complete");
    QR_EXPECT(kv && kv->type == QR_KV_INT && kv->i == 1, "root attribute 'complete' is not 1");
    QR_EXPECT(qr_ckpt_module_count(c) == N_MODULES, "%zu modules listed (expected %d)",
              qr_ckpt_module_count(c), N_MODULES);
    for (size_t i = 0; i < N_MODULES && i < qr_ckpt_module_count(c); i++) {
        qr_qlayer want, got;
        qr_kvlist mw = {0}, mg = {0};
        qr_part_info info;
        const char *what = NULL;
        QR_EXPECT(strcmp(qr_ckpt_module_name(c, i), module_names[i]) == 0,
                  "module %zu is '%s' (expected '%s': model order)", i, qr_ckpt_module_name(c, i),
                  module_names[i]);
        QR_EXPECT(qr_part_read(parts[i], &info, &want) == QR_OK, "%s", qr_errmsg());
        QR_EXPECT(qr_ckpt_load_module(c, module_names[i], &got, &mg) == QR_OK, "load %s: %s",
                  module_names[i], qr_errmsg());
        QR_EXPECT(qr_qlayer_equal(&want, &got, &what), "%s differs from its part in %s",
                  module_names[i], what ? what : "?");
        mw = info.metrics;
        QR_EXPECT(mg.n == mw.n, "%s: %zu metrics (expected %zu)", module_names[i], mg.n, mw.n);
        for (size_t k = 0; k < mw.n; k++) {
            const qr_kv *f = qr_kv_find(&mg, mw.items[k].key);
            QR_EXPECT(f && qr_kv_equal(f, &mw.items[k]), "%s: metric %s not equal", module_names[i],
                      mw.items[k].key);
        }
        qr_kvlist_free(&mg);
        qr_part_info_free(&info);
        qr_qlayer_free(&want);
        qr_qlayer_free(&got);
    }
    QR_EXPECT(qr_ckpt_tensor_count(c) == N_TENSORS, "%zu tensors (expected %d)",
              qr_ckpt_tensor_count(c), N_TENSORS);
    for (size_t i = 0; i < N_TENSORS; i++) {
        size_t n = (size_t)(tensors[i].shape[0] * (tensors[i].ndim > 1 ? tensors[i].shape[1] : 1));
        float *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
        int ndim = 0;
        int64_t shape[8] = {0};
        QR_EXPECT(qr_ckpt_tensor_shape(c, tensors[i].name, &ndim, shape) == QR_OK &&
                      ndim == tensors[i].ndim && shape[0] == tensors[i].shape[0],
                  "tensor %s: shape not read back", tensors[i].name);
        fake_tensor(NULL, tensors[i].name, want, n);
        QR_EXPECT(qr_ckpt_read_tensor(c, tensors[i].name, got, n) == QR_OK, "%s", qr_errmsg());
        QR_EXPECT(memcmp(want, got, n * sizeof(float)) == 0, "tensor %s differs", tensors[i].name);
        free(want);
        free(got);
    }
    qr_ckpt_close(&c);
    return qr_test_failures != failures_before;
}

int main(int argc, char **argv)
{
    char dir[512], out[600], out2[600], parts[N_MODULES][1024];
    const char *paths[N_MODULES], *bad_paths[N_MODULES];
    qr_kvlist root = {0};
    qr_ckpt_spec spec;
    qr_status st;
    int rank, size, keep = argc == 3 && strcmp(argv[1], "--keep") == 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    qr_log_set_rank(rank, size);
    if (keep) {
        snprintf(dir, sizeof dir, "%s", argv[2]);
    } else {
        /* Every rank must use rank 0's folder. */
        if (rank == 0) {
            snprintf(dir, sizeof dir, "%s", qr_test_tmpdir("ckpt.assemble"));
        }
        MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    }
    snprintf(out, sizeof out, "%s/ckpt.h5", dir);
    snprintf(out2, sizeof out2, "%s/bad.h5", dir);
    if (rank == 0) {
        QR_REQUIRE(qr_fs_mkdirs(dir) == QR_OK, "%s", qr_errmsg());
        unlink(out);
        unlink(out2);
    }
    QR_REQUIRE(qr_fixture_options(&root, 4) == QR_OK, "%s", qr_errmsg());

    /* Parts are written by their module's index modulo the job size, like quantize does. */
    for (int i = 0; i < N_MODULES; i++) {
        snprintf(parts[i], sizeof parts[i], "%s/%s.h5", dir, module_names[i]);
        paths[i] = parts[i];
        bad_paths[i] = parts[i];
        if (i % size == rank) {
            qr_qlayer ql;
            qr_kvlist opts = {0}, metrics = {0};
            QR_REQUIRE(qr_fixture_qlayer(&specs[i], 100 + (uint64_t)i, &ql) == QR_OK, "%s",
                       qr_errmsg());
            QR_REQUIRE(qr_fixture_options(&opts, 4) == QR_OK, "%s", qr_errmsg());
            QR_REQUIRE(qr_fixture_metrics(&metrics, (uint64_t)i) == QR_OK, "%s", qr_errmsg());
            QR_REQUIRE(qr_part_write(parts[i], module_names[i], &opts, &metrics, &ql) == QR_OK,
                       "%s", qr_errmsg());
            qr_qlayer_free(&ql);
            qr_kvlist_free(&opts);
            qr_kvlist_free(&metrics);
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    memset(&spec, 0, sizeof spec);
    spec.agree = qr_mpi_agree;
    spec.root = &root;
    spec.model_config = "{\"dim\": 64}";
    spec.options = "{\"wbits\": 4}";
    spec.modules = module_names;
    spec.parts = paths;
    spec.n_modules = N_MODULES;
    spec.tensors = tensors;
    spec.n_tensors = N_TENSORS;
    spec.read_tensor = fake_rows;
    st = qr_ckpt_assemble(MPI_COMM_WORLD, out, &spec, NULL);
    QR_EXPECT(st == QR_OK, "assemble on %d ranks: %s", size, qr_errmsg());
    if (rank == 0 && st == QR_OK) {
        check_readback(out, parts);
        QR_EXPECT(!qr_fs_exists(out2), "unexpected %s", out2);
    }

    /* A missing part: the same error on every rank, no checkpoint. */
    bad_paths[N_MODULES - 1] = "/nonexistent/part.h5";
    spec.parts = bad_paths;
    st = qr_ckpt_assemble(MPI_COMM_WORLD, out2, &spec, NULL);
    {
        char msg[QR_ERRMSG_MAX], msg0[QR_ERRMSG_MAX];
        int code = (int)st, min_code = 0, max_code = 0;
        snprintf(msg, sizeof msg, "%s", qr_errmsg());
        memcpy(msg0, msg, sizeof msg);
        MPI_Bcast(msg0, sizeof msg0, MPI_CHAR, 0, MPI_COMM_WORLD);
        MPI_Allreduce(&code, &min_code, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        MPI_Allreduce(&code, &max_code, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        QR_EXPECT(st == QR_ERR_INPUT, "a missing part gave %s: %s", qr_status_name(st), msg);
        QR_EXPECT(min_code == max_code, "ranks disagree on the status (%d..%d)", min_code,
                  max_code);
        QR_EXPECT(strcmp(msg, msg0) == 0, "rank %d message '%s' differs from rank 0's '%s'", rank,
                  msg, msg0);
        QR_EXPECT(strstr(msg, "/nonexistent/part.h5") != NULL, "message does not name the part: %s",
                  msg);
        MPI_Barrier(MPI_COMM_WORLD);
        QR_EXPECT(!qr_fs_exists(out2), "a failed assembly left %s", out2);
    }
    qr_kvlist_free(&root);
    {
        int failed = qr_test_failures, any = 0;
        MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        qr_test_failures = any;
    }
    if (rank == 0 && !keep && qr_test_failures == 0) {
        qr_fixture_rmdir(dir);
    }
    MPI_Finalize();
    return qr_test_finish("ckpt.assemble");
}

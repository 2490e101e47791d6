/* ckpt_dump.c: what the export readers (tests/export/read_exports.py) compare against, written
 * from the checkpoint through the io/ readers: for every module, OUT/<name>.deq (float32, (d_out,
 * d_in), the dequantized main matrix with the stored scales), OUT/<name>.deq16 (the same with the
 * scales rounded to F16 as Q4_0 / Q4_1 hold them; only when GGUF can hold the module), and
 * OUT/<name>.L, OUT/<name>.R (float32) when it has a correction; OUT/index.txt has one line per
 * module: name d_out d_in rank group asym.
 * usage: ckpt_dump CKPT OUT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/gguf_write.h"

static int dump(const char *dir, const char *name, const char *ext, const float *v, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(v, sizeof *v, n, f) != n) {
        fprintf(stderr, "ckpt_dump: cannot write %s\n", path);
        if (f) {
            fclose(f);
        }
        return 1;
    }
    return fclose(f) != 0;
}

int main(int argc, char **argv)
{
    qr_ckpt *ck = NULL;
    char path[4096];
    FILE *index;
    int bad = 0;
    if (argc != 3) {
        fprintf(stderr, "usage: ckpt_dump CKPT OUT\n");
        return 2;
    }
    if (qr_ckpt_open(argv[1], &ck) != QR_OK) {
        fprintf(stderr, "ckpt_dump: %s: %s\n", argv[1], qr_errmsg());
        return 1;
    }
    snprintf(path, sizeof path, "%s/index.txt", argv[2]);
    index = fopen(path, "w");
    if (!index) {
        fprintf(stderr, "ckpt_dump: cannot create %s\n", path);
        qr_ckpt_close(&ck);
        return 1;
    }
    for (size_t i = 0; i < qr_ckpt_module_count(ck) && !bad; i++) {
        const char *name = qr_ckpt_module_name(ck, i);
        qr_qlayer ql;
        memset(&ql, 0, sizeof ql);
        if (qr_ckpt_load_module(ck, name, &ql, NULL) != QR_OK) {
            fprintf(stderr, "ckpt_dump: %s\n", qr_errmsg());
            bad = 1;
            break;
        }
        size_t n = (size_t)(ql.d_out * ql.d_in);
        float *w = malloc(n * sizeof *w);
        if (!w) {
            bad = 1;
        } else {
            qr_qweight_dequantize(&ql.main, w);
            bad |= dump(argv[2], name, "deq", w, n);
            if (ql.main.group == QR_GGML_QK && ql.main.cols % QR_GGML_QK == 0) {
                for (int64_t r = 0; r < ql.d_out; r++) {
                    for (int64_t j = 0; j < ql.d_in; j++) {
                        w[r * ql.d_in + j] = (float)qr_gguf_q4_value(&ql.main, r, j);
                    }
                }
                bad |= dump(argv[2], name, "deq16", w, n);
            }
            free(w);
        }
        if (ql.rank > 0) {
            bad |= dump(argv[2], name, "L", ql.L, (size_t)(ql.d_out * ql.rank));
            bad |= dump(argv[2], name, "R", ql.R, (size_t)(ql.rank * ql.d_in));
        }
        fprintf(index, "%s %lld %lld %lld %lld %d\n", name, (long long)ql.d_out, (long long)ql.d_in,
                (long long)ql.rank, (long long)ql.main.group, ql.main.asym ? 1 : 0);
        qr_qlayer_free(&ql);
    }
    fclose(index);
    qr_ckpt_close(&ck);
    return bad;
}

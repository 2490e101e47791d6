/* methods_real.c: per-method output error on the real layers of a small model (docs/methods.md).
 *
 * Runs the float32 forward pass over windows of real text, keeps the statistics of the first
 * --cal windows' linear-layer inputs (calibration) and the raw inputs of the next --test windows
 * (held-out), then quantizes every module with every method and prints, per method, the mean over
 * modules of the held-out relative output error with float, A8 and A4 activations, and how many
 * modules beat RTN at A8. Sizes follow ../shared/METHODS.md "Small models": group 32, rank d/32
 * (at least 2), ASER f = d_in/128 and SERQ k = d_in/32 (at least 1).
 *
 * usage: methods_real MODEL TEXT [--cal N] [--test N] [--seq-len L] [--group G] [--rank R] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/llama_job.h"
#include "src/method.h"
#include "src/metrics.h"
#include "src/modules.h"
#include "src/stats.h"

typedef struct {
    int64_t n_layers;
    bool held_out;   /* false: add to stats; true: append to the held-out rows */
    qr_stats **st;   /* (n_layers * QR_INPUT_KIND_COUNT) */
    float **rows;    /* (n_layers * QR_INPUT_KIND_COUNT), each (cap, d) */
    int64_t *n_rows; /* (n_layers * QR_INPUT_KIND_COUNT) */
    int64_t *d;      /* (n_layers * QR_INPUT_KIND_COUNT) */
    int64_t cap;     /* held-out rows per input */
    qr_status err;
} capture;

static void hook(void *ctx, int64_t layer, qr_input_kind kind, const float *X, int64_t n, int64_t d)
{
    capture *c = ctx;
    int64_t i = layer * QR_INPUT_KIND_COUNT + (int64_t)kind;
    if (c->err != QR_OK) {
        return;
    }
    if (!c->held_out) {
        if (!c->st[i]) {
            c->err = qr_stats_create(d, &c->st[i]);
            c->d[i] = d;
        }
        if (c->err == QR_OK) {
            c->err = qr_stats_add(c->st[i], X, n);
        }
        return;
    }
    if (!c->rows[i]) {
        c->rows[i] = malloc(sizeof(float) * (size_t)(c->cap * d));
        if (!c->rows[i]) {
            c->err = QR_ERR_NOMEM;
            return;
        }
    }
    if (c->n_rows[i] + n <= c->cap) {
        memcpy(c->rows[i] + c->n_rows[i] * d, X, sizeof(float) * (size_t)(n * d));
        c->n_rows[i] += n;
    }
}

static const qr_linear *module_linear(const qr_llama_weights *w, const qr_module *m)
{
    const qr_llama_layer *l = &w->layers[m->layer];
    const qr_linear *t[QR_MOD_KIND_COUNT] = {&l->q,    &l->k,  &l->v,   &l->o,
                                             &l->gate, &l->up, &l->down};
    return t[m->kind];
}

int main(int argc, char **argv)
{
    qr_llama_job job;
    qr_llama_state *state = NULL;
    qr_input_opts in = {0};
    int32_t *ids = NULL, *win = NULL;
    size_t n_ids = 0, n_mods = 0;
    qr_module *mods = NULL;
    int64_t n_cal = 8, n_test = 4, L = 256, group = 32, rank = -1;
    capture c = {0};
    int64_t slots;
    if (argc < 3) {
        fprintf(stderr,
                "usage: %s MODEL TEXT [--cal N] [--test N] [--seq-len L] [--group G] "
                "[--rank R]\n",
                argv[0]);
        return 2;
    }
    for (int i = 3; i + 1 < argc; i += 2) {
        int64_t v = atoll(argv[i + 1]);
        if (strcmp(argv[i], "--cal") == 0) {
            n_cal = v;
        } else if (strcmp(argv[i], "--test") == 0) {
            n_test = v;
        } else if (strcmp(argv[i], "--seq-len") == 0) {
            L = v;
        } else if (strcmp(argv[i], "--group") == 0) {
            group = v;
        } else if (strcmp(argv[i], "--rank") == 0) {
            rank = v;
        } else {
            fprintf(stderr, "methods_real: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    memset(&job, 0, sizeof job);
    in.text_path = argv[2];
    in.unknown_to_zero = true; /* babyllama105 has no byte fallback: newline -> id 0 */
    if (qr_llama_job_open(argv[1], &job) != QR_OK ||
        qr_llama_job_input(&job, &in, &ids, &n_ids) != QR_OK ||
        qr_modules_enumerate(&job.w.cfg, &mods, &n_mods) != QR_OK) {
        fprintf(stderr, "methods_real: %s\n", qr_errmsg());
        return 1;
    }
    if (job.w.cfg.max_seq_len > 0 && L > job.w.cfg.max_seq_len) {
        L = job.w.cfg.max_seq_len;
    }
    if ((size_t)((n_cal + n_test) * (L - 1)) > n_ids) {
        fprintf(stderr, "methods_real: text too short for %lld windows of %lld\n",
                (long long)(n_cal + n_test), (long long)L);
        return 2;
    }
    slots = job.w.cfg.n_layers * QR_INPUT_KIND_COUNT;
    c.n_layers = job.w.cfg.n_layers;
    c.st = calloc((size_t)slots, sizeof *c.st);
    c.rows = calloc((size_t)slots, sizeof *c.rows);
    c.n_rows = calloc((size_t)slots, sizeof *c.n_rows);
    c.d = calloc((size_t)slots, sizeof *c.d);
    c.cap = n_test * L;
    win = malloc(sizeof(int32_t) * (size_t)L);
    if (qr_llama_state_open(&job.w.cfg, L, L, &state) != QR_OK) {
        fprintf(stderr, "methods_real: %s\n", qr_errmsg());
        return 1;
    }
    for (int64_t w = 0; w < n_cal + n_test; w++) {
        int64_t len;
        c.held_out = w >= n_cal;
        qr_window_tokens(ids, n_ids, L, w, job.bos, win, &len);
        if (qr_llama_forward(&job.w, state, win, len, 0, NULL, hook, &c) != QR_OK ||
            c.err != QR_OK) {
            fprintf(stderr, "methods_real: forward: %s\n", qr_errmsg());
            return 1;
        }
    }
    printf("%s: %zu modules, %lld calibration and %lld held-out tokens (windows of %lld), group "
           "%lld\n\n",
           argv[1], n_mods, (long long)(n_cal * L), (long long)(n_test * L), (long long)L,
           (long long)group);
    printf("| method | rank | mean out err float | A8 | A4 | beats RTN at A8 | bits/w |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    {
        double *rtn_a8 = calloc(n_mods, sizeof(double));
        /* rows 0..COUNT-1: each method with RTN main matrices; then each with GPTQ. */
        for (int row = 0; row < 2 * QR_METHOD_COUNT; row++) {
            int m = row % QR_METHOD_COUNT;
            bool gptq = row >= QR_METHOD_COUNT;
            qr_method_id id = (qr_method_id)m;
            char label[48];
            double sum[3] = {0, 0, 0}, bits = 0.0;
            int64_t rsum = 0;
            int beats = 0;
            for (size_t k = 0; k < n_mods; k++) {
                const qr_module *mod = &mods[k];
                int64_t slot = mod->layer * QR_INPUT_KIND_COUNT + (int64_t)mod->input;
                const qr_linear *lin = module_linear(&job.w, mod);
                int64_t dmin = mod->d_out < mod->d_in ? mod->d_out : mod->d_in;
                double *W = malloc(sizeof(double) * (size_t)(mod->d_out * mod->d_in));
                qr_method_opts o;
                qr_method_report rep;
                qr_qlayer ql;
                qr_metrics mt;
                for (int64_t i = 0; i < mod->d_out * mod->d_in; i++) {
                    W[i] = (double)lin->W[i];
                }
                qr_method_opts_default(&o, id);
                o.gptq = gptq;
                if (o.wq.group != 0) {
                    o.wq.group = group;
                }
                o.rank = rank >= 0 ? rank : (dmin / 32 > 2 ? dmin / 32 : 2);
                o.rank = o.rank > dmin ? dmin : o.rank;
                o.n_salient = id == QR_METHOD_SERQ ? (mod->d_in / 32 > 1 ? mod->d_in / 32 : 1)
                                                   : (mod->d_in / 128 > 1 ? mod->d_in / 128 : 1);
                o.module_name = mod->name;
                if (qr_method_run(&o, W, mod->d_out, mod->d_in, c.st[slot], &ql, &rep) != QR_OK ||
                    qr_metrics_compute(&ql, W, c.rows[slot], c.n_rows[slot], 0, &rep, &mt) !=
                        QR_OK) {
                    fprintf(stderr, "methods_real: %s on %s: %s\n", qr_method_name(id), mod->name,
                            qr_errmsg());
                    return 1;
                }
                sum[0] += mt.out_rel_err;
                sum[1] += mt.out_rel_err_a8;
                sum[2] += mt.out_rel_err_a4;
                bits += mt.bits_per_weight;
                rsum += rep.rank_used;
                if (m == QR_METHOD_RTN && !gptq) {
                    rtn_a8[k] = mt.out_rel_err_a8;
                } else if (mt.out_rel_err_a8 < rtn_a8[k]) {
                    beats++;
                }
                qr_qlayer_free(&ql);
                free(W);
            }
            snprintf(label, sizeof label, "%s%s", qr_method_name(id), gptq ? "+gptq" : "");
            printf("| %s | %.1f | %.4f | %.4f | %.4f | %d/%zu | %.3f |\n", label,
                   (double)rsum / (double)n_mods, sum[0] / (double)n_mods, sum[1] / (double)n_mods,
                   sum[2] / (double)n_mods, row == QR_METHOD_RTN ? 0 : beats, n_mods,
                   bits / (double)n_mods);
            fflush(stdout);
        }
        free(rtn_a8);
    }
    for (int64_t i = 0; i < slots; i++) {
        qr_stats_free(&c.st[i]);
        free(c.rows[i]);
    }
    free(c.st);
    free(c.rows);
    free(c.n_rows);
    free(c.d);
    free(win);
    free(ids);
    free(mods);
    qr_llama_state_close(&state);
    qr_llama_job_close(&job);
    return 0;
}

/* plan_test.c: the exact linear partition against brute force over all cut positions, its
 * optimality properties and tie rule, module costs by hand, and whole plans on real (stories260K)
 * and synthetic 7B shapes (mpi/plan.h).
 *
 * usage: test_plan_<case>  partition | properties | costs | real | synthetic */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/model.h"
#include "mpi/plan.h"
#include "src/modules.h"
#include "src/rng.h"
#include "tests/test_util.h"

#define MAX_N 10
#define MAX_K 7

/* The optimum by brute force: every non-decreasing sequence of k - 1 cuts in 0..n. */
static uint64_t brute_force(const uint64_t *cost, int64_t n, int64_t k)
{
    int64_t cuts[MAX_K + 1];
    uint64_t best = UINT64_MAX;
    for (int64_t i = 0; i < k - 1; i++) {
        cuts[i] = 0;
    }
    for (;;) {
        uint64_t worst = 0;
        int64_t start = 0;
        for (int64_t g = 0; g < k; g++) {
            int64_t end = g < k - 1 ? cuts[g] : n;
            uint64_t sum = 0;
            for (int64_t i = start; i < end; i++) {
                sum += cost[i];
            }
            worst = sum > worst ? sum : worst;
            start = end;
        }
        best = worst < best ? worst : best;
        /* Next cut sequence (odometer with cuts[i] <= cuts[i + 1]). */
        {
            int64_t i = k - 2;
            while (i >= 0 && cuts[i] == n) {
                i--;
            }
            if (i < 0) {
                break;
            }
            cuts[i]++;
            for (int64_t j = i + 1; j < k - 1; j++) {
                cuts[j] = cuts[i];
            }
        }
    }
    return best;
}

/* The returned partition is a partition, achieves max_sum, and follows the tie rule. */
static void check_bounds(const uint64_t *cost, int64_t n, int64_t k, const int64_t *b, uint64_t opt,
                         const char *what)
{
    uint64_t worst = 0;
    QR_EXPECT(b[0] == 0 && b[k] == n, "%s: bounds start %lld end %lld (expected 0 and %lld)", what,
              (long long)b[0], (long long)b[k], (long long)n);
    for (int64_t g = 0; g < k; g++) {
        uint64_t sum = 0;
        QR_EXPECT(b[g] <= b[g + 1], "%s: slice %lld runs backwards", what, (long long)g);
        for (int64_t i = b[g]; i < b[g + 1]; i++) {
            sum += cost[i];
        }
        worst = sum > worst ? sum : worst;
        if (g < n) {
            QR_EXPECT(b[g + 1] > b[g], "%s: slice %lld is empty with %lld items for %lld slices",
                      what, (long long)g, (long long)n, (long long)k);
        }
    }
    QR_EXPECT(worst == opt, "%s: largest slice %llu, reported optimum %llu", what,
              (unsigned long long)worst, (unsigned long long)opt);
}

static void case_partition(void)
{
    /* Many seeds, small and large cost ranges (ties and zeros are common in the small one). */
    for (uint64_t seed = 0; seed < 400; seed++) {
        qr_rng rng;
        uint64_t cost[MAX_N], opt = 0;
        int64_t bounds[MAX_K + 1];
        int64_t n, k;
        uint64_t range;
        char what[96];
        qr_rng_seed(&rng, seed);
        n = (int64_t)(qr_rng_u64(&rng) % (MAX_N + 1));
        k = 1 + (int64_t)(qr_rng_u64(&rng) % MAX_K);
        range = seed % 2 ? 10 : (UINT64_C(1) << 50);
        for (int64_t i = 0; i < n; i++) {
            cost[i] = qr_rng_u64(&rng) % range;
        }
        snprintf(what, sizeof what, "seed %llu (n %lld, k %lld)", (unsigned long long)seed,
                 (long long)n, (long long)k);
        QR_EXPECT(qr_linear_partition(cost, n, k, bounds, &opt) == QR_OK, "%s: %s", what,
                  qr_errmsg());
        QR_EXPECT(opt == brute_force(cost, n, k), "%s: optimum %llu, brute force %llu", what,
                  (unsigned long long)opt, (unsigned long long)brute_force(cost, n, k));
        check_bounds(cost, n, k, bounds, opt, what);
    }
}

static void case_properties(void)
{
    uint64_t cost[40], total = 0, maxc = 0, prev = UINT64_MAX;
    int64_t b1[42], b2[42];
    uint64_t o1 = 0, o2 = 0;
    qr_rng rng;
    qr_rng_seed(&rng, 99);
    for (int i = 0; i < 40; i++) {
        cost[i] = 1000 + qr_rng_u64(&rng) % 100000;
        total += cost[i];
        maxc = cost[i] > maxc ? cost[i] : maxc;
    }
    for (int64_t k = 1; k <= 41; k++) {
        QR_EXPECT(qr_linear_partition(cost, 40, k, b1, &o1) == QR_OK, "k %lld: %s", (long long)k,
                  qr_errmsg());
        QR_EXPECT(o1 <= prev, "optimum grew from %llu to %llu when k rose to %lld",
                  (unsigned long long)prev, (unsigned long long)o1, (long long)k);
        QR_EXPECT(o1 >= maxc && o1 * (uint64_t)k >= total,
                  "k %lld: optimum %llu below a lower bound (max item %llu, total/k %llu)",
                  (long long)k, (unsigned long long)o1, (unsigned long long)maxc,
                  (unsigned long long)(total / (uint64_t)k));
        if (k >= 40) {
            QR_EXPECT(o1 == maxc, "k %lld >= n: optimum %llu, expected the largest item %llu",
                      (long long)k, (unsigned long long)o1, (unsigned long long)maxc);
        }
        /* Deterministic: the same input gives the same cuts. */
        QR_EXPECT(qr_linear_partition(cost, 40, k, b2, &o2) == QR_OK && o2 == o1 &&
                      memcmp(b1, b2, (size_t)(k + 1) * sizeof *b1) == 0,
                  "k %lld: a second run gave different cuts", (long long)k);
        check_bounds(cost, 40, k, b1, o1, "properties");
        prev = o1;
    }
    /* Equal costs split evenly; earlier slices take the extra item. */
    {
        uint64_t eq[10];
        int64_t b[4];
        for (int i = 0; i < 10; i++) {
            eq[i] = 7;
        }
        QR_EXPECT(qr_linear_partition(eq, 10, 3, b, &o1) == QR_OK, "%s", qr_errmsg());
        QR_EXPECT(o1 == 28 && b[1] == 4 && b[2] == 7,
                  "10 equal items over 3: optimum %llu cuts "
                  "%lld %lld (expected 28, cuts 4 and 7)",
                  (unsigned long long)o1, (long long)b[1], (long long)b[2]);
    }
    /* Bad input and overflow are refused. */
    {
        uint64_t big[2] = {UINT64_MAX, 1};
        int64_t b[3];
        QR_EXPECT(qr_linear_partition(big, 2, 2, b, &o1) == QR_ERR_INPUT, "overflow accepted");
        QR_EXPECT(qr_linear_partition(big, 2, 0, b, &o1) == QR_ERR_INPUT, "k = 0 accepted");
    }
}

static void llama7b(qr_model_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->arch, sizeof c->arch, "llama");
    c->dim = 4096;
    c->hidden_dim = 11008;
    c->n_layers = 32;
    c->n_heads = 32;
    c->n_kv_heads = 32;
    c->head_dim = 128;
    c->vocab_size = 32000;
    c->max_seq_len = 4096;
}

static void case_costs(void)
{
    qr_model_config cfg;
    qr_module *mods = NULL;
    size_t n = 0;
    qr_plan_opts o;
    qr_module_cost cq, ck, cd;
    const uint64_t T = 2048, D = 4096, H = 11008;
    llama7b(&cfg);
    qr_plan_opts_default(&o);
    o.method.method = QR_METHOD_RTN;
    o.tokens = (int64_t)T;
    o.held_tokens = 0; /* every row fits the statistics */
    if (qr_modules_enumerate(&cfg, &mods, &n) != QR_OK || n != 32 * 7) {
        QR_EXPECT(0, "enumerate: %s", qr_errmsg());
        return;
    }
    QR_EXPECT(qr_plan_module_cost(&mods[0], 1, &o, &cq) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(qr_plan_module_cost(&mods[1], 0, &o, &ck) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(qr_plan_module_cost(&mods[6], 1, &o, &cd) == QR_OK, "%s", qr_errmsg());
    /* q_proj pays the statistics of the shared input; k_proj does not. */
    QR_EXPECT(cq.stats_flops == T * D * D + 4 * T * D,
              "q_proj statistics %llu, expected n d^2 + "
              "4 n d = %llu",
              (unsigned long long)cq.stats_flops, (unsigned long long)(T * D * D + 4 * T * D));
    QR_EXPECT(ck.stats_flops == 0, "k_proj shares q_proj's input but pays %llu statistics flops",
              (unsigned long long)ck.stats_flops);
    QR_EXPECT(cq.bytes_read == T * D * 4 + D * D * 4 && ck.bytes_read == D * D * 4,
              "bytes read q %llu k %llu", (unsigned long long)cq.bytes_read,
              (unsigned long long)ck.bytes_read);
    QR_EXPECT(cd.stats_flops == T * H * H + 4 * T * H && cd.decomp_flops == 0 &&
                  cd.quant_flops == QR_PLAN_QUANT_FLOPS_PER_WEIGHT * D * H,
              "down_proj RTN costs: stats %llu decomposition %llu quant %llu",
              (unsigned long long)cd.stats_flops, (unsigned long long)cd.decomp_flops,
              (unsigned long long)cd.quant_flops);
    /* Whitened methods pay the Cholesky d³/3 once per input group (with the statistics) and their
     * SVD's triangular products, so they cost more than the diagonal ones. */
    o.method.method = QR_METHOD_QERA_EXACT;
    QR_EXPECT(qr_plan_module_cost(&mods[6], 1, &o, &cd) == QR_OK, "%s", qr_errmsg());
    o.method.method = QR_METHOD_LQER;
    QR_EXPECT(qr_plan_module_cost(&mods[6], 1, &o, &ck) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(cd.stats_flops == ck.stats_flops + H * H * H / 3 && cd.decomp_flops > ck.decomp_flops,
              "qera-exact statistics %llu and decomposition %llu against lqer's %llu + d^3/3 and "
              "%llu",
              (unsigned long long)cd.stats_flops, (unsigned long long)cd.decomp_flops,
              (unsigned long long)ck.stats_flops, (unsigned long long)ck.decomp_flops);
    free(mods);
}

/* A plan's slices cover every layer once, in order, and report the partition's optimum. */
static void check_plan(const qr_plan *p, const char *what)
{
    uint64_t opt = 0, worst = 0, total = 0;
    int64_t bounds[64];
    int64_t next = 0;
    QR_EXPECT(qr_linear_partition(p->layer_cost, p->n_layers, p->n_groups, bounds, &opt) == QR_OK,
              "%s", qr_errmsg());
    if (p->n_layers <= MAX_N && p->n_groups <= MAX_K) {
        QR_EXPECT(opt == brute_force(p->layer_cost, p->n_layers, p->n_groups),
                  "%s: optimum differs from brute force", what);
    }
    for (int g = 0; g < p->n_groups; g++) {
        const qr_plan_slice *s = &p->slices[g];
        uint64_t sum = 0;
        QR_EXPECT(s->layer_begin == next, "%s: group %d starts at layer %lld (expected %lld)", what,
                  g, (long long)s->layer_begin, (long long)next);
        QR_EXPECT(s->rank_begin == g * s->rank_count, "%s: group %d ranks start at %d", what, g,
                  s->rank_begin);
        for (int64_t l = s->layer_begin; l < s->layer_end; l++) {
            sum += p->layer_cost[l];
        }
        QR_EXPECT(sum == s->cost, "%s: group %d cost %llu, layers sum to %llu", what, g,
                  (unsigned long long)s->cost, (unsigned long long)sum);
        worst = s->cost > worst ? s->cost : worst;
        total += s->cost;
        next = s->layer_end;
    }
    QR_EXPECT(next == p->n_layers, "%s: slices end at layer %lld of %lld", what, (long long)next,
              (long long)p->n_layers);
    QR_EXPECT(worst == opt && p->max_cost == opt, "%s: largest slice %llu, optimum %llu", what,
              (unsigned long long)worst, (unsigned long long)opt);
    QR_EXPECT(total == p->total_cost && p->imbalance >= 1.0 - 1e-12,
              "%s: total %llu vs %llu, "
              "imbalance %g",
              what, (unsigned long long)total, (unsigned long long)p->total_cost, p->imbalance);
}

static void case_real(void)
{
    const char *data = qr_test_data_dir();
    char path[4096];
    qr_model *m = NULL;
    if (!data) {
        exit(77);
    }
    snprintf(path, sizeof path, "%s/models/stories260K/hf", data);
    QR_EXPECT(qr_model_open(path, &m) == QR_OK, "%s", qr_errmsg());
    if (!m) {
        return;
    }
    for (int groups = 2; groups <= 3; groups++) {
        qr_plan_opts o;
        qr_plan *p = NULL, *p2 = NULL;
        char what[64];
        qr_plan_opts_default(&o);
        o.n_ranks = groups;
        o.tokens = 4096;
        o.method.rank = 4;
        snprintf(what, sizeof what, "stories260K over %d groups", groups);
        QR_EXPECT(qr_plan_build(qr_model_get_config(m), &o, &p) == QR_OK, "%s: %s", what,
                  qr_errmsg());
        QR_EXPECT(qr_plan_build(qr_model_get_config(m), &o, &p2) == QR_OK, "%s", qr_errmsg());
        if (p && p2) {
            QR_EXPECT(p->n_layers == 5 && p->n_modules == 35, "%s: %lld layers %zu modules", what,
                      (long long)p->n_layers, p->n_modules);
            check_plan(p, what);
            /* All layers have the same shape: 5 over 2 is 3 + 2, over 3 is 2 + 2 + 1. */
            QR_EXPECT(p->slices[0].layer_end == (groups == 2 ? 3 : 2),
                      "%s: first slice ends at "
                      "layer %lld",
                      what, (long long)p->slices[0].layer_end);
            QR_EXPECT(memcmp(p->slices, p2->slices, (size_t)groups * sizeof *p->slices) == 0,
                      "%s: two builds gave different slices", what);
        }
        qr_plan_free(&p);
        qr_plan_free(&p2);
    }
    qr_model_close(&m);
}

static void case_synthetic(void)
{
    qr_model_config cfg;
    qr_plan_opts o;
    qr_plan *p = NULL;
    llama7b(&cfg);
    qr_plan_opts_default(&o);
    /* 32 equal layers over 8 groups of 2x2: 4 layers each, perfectly balanced. */
    o.n_ranks = 32;
    o.grid[0] = 2;
    o.grid[1] = 2;
    QR_EXPECT(qr_plan_build(&cfg, &o, &p) == QR_OK, "%s", qr_errmsg());
    if (p) {
        check_plan(p, "7B over 8 groups");
        QR_EXPECT(p->n_groups == 8 && p->imbalance == 1.0,
                  "7B over 8 groups: %d groups, "
                  "imbalance %g",
                  p->n_groups, p->imbalance);
        QR_EXPECT(p->slices[7].rank_begin == 28 && p->slices[7].rank_count == 4,
                  "7B: last group ranks %d+%d", p->slices[7].rank_begin, p->slices[7].rank_count);
    }
    qr_plan_free(&p);
    /* A method divided over the grid: about a quarter of the 1x1 working set per rank (a little
     * less: the whole-module path stages buffers the divided one never makes), and the root
     * holds the gathered INT4 codes of the largest module (4 bits a weight) and its scales. */
    {
        qr_plan *p1 = NULL;
        o.method.method = QR_METHOD_QERA_EXACT;
        QR_EXPECT(qr_plan_build(&cfg, &o, &p) == QR_OK, "%s", qr_errmsg());
        o.n_ranks = 8;
        o.grid[0] = o.grid[1] = 1;
        QR_EXPECT(qr_plan_build(&cfg, &o, &p1) == QR_OK, "%s", qr_errmsg());
        if (p && p1) {
            uint64_t m2 = p->slices[0].mem_per_rank - QR_PLAN_BASE_BYTES;
            uint64_t m1 = p1->slices[0].mem_per_rank - QR_PLAN_BASE_BYTES;
            QR_EXPECT(m2 < m1 / 3 && m2 > m1 / 6,
                      "7B qera-exact: %llu bytes per rank on 2x2 against %llu at 1x1 (expected "
                      "about a quarter)",
                      (unsigned long long)m2, (unsigned long long)m1);
            QR_EXPECT(p->slices[0].mem_root_extra >= (uint64_t)4096 * 11008 / 2 &&
                          p->slices[0].mem_root_extra < (uint64_t)4096 * 11008 * 3 / 2,
                      "7B qera-exact 2x2: root extra %llu (expected the INT4 codes and scales)",
                      (unsigned long long)p->slices[0].mem_root_extra);
        }
        qr_plan_free(&p1);
        o.method.method = QR_METHOD_DEFAULT;
    }
    qr_plan_free(&p);
    /* Over 3 groups: 11 + 11 + 10 layers, imbalance 33/32. */
    o.n_ranks = 3;
    o.grid[0] = o.grid[1] = 1;
    QR_EXPECT(qr_plan_build(&cfg, &o, &p) == QR_OK, "%s", qr_errmsg());
    if (p) {
        check_plan(p, "7B over 3 groups");
        QR_EXPECT(p->slices[0].layer_end == 11 && p->slices[1].layer_end == 22,
                  "7B over 3: cuts at %lld and %lld (expected 11 and 22)",
                  (long long)p->slices[0].layer_end, (long long)p->slices[1].layer_end);
        QR_EXPECT(p->imbalance > 1.031 && p->imbalance < 1.032,
                  "7B over 3: imbalance %g "
                  "(expected 33/32)",
                  p->imbalance);
    }
    qr_plan_free(&p);
    /* More groups than layers: the extra groups are empty, every layer still placed once. */
    o.n_ranks = 40;
    QR_EXPECT(qr_plan_build(&cfg, &o, &p) == QR_OK, "%s", qr_errmsg());
    if (p) {
        check_plan(p, "7B over 40 groups");
        QR_EXPECT(p->slices[31].layer_end == 32 && p->slices[32].layer_begin == 32 &&
                      p->slices[39].layer_end == 32,
                  "7B over 40: groups 32..39 should be empty");
    }
    qr_plan_free(&p);
    /* N not divisible by P*Q: a clear input error naming the option. */
    o.n_ranks = 6;
    o.grid[0] = 2;
    o.grid[1] = 2;
    QR_EXPECT(qr_plan_build(&cfg, &o, &p) == QR_ERR_INPUT && strstr(qr_errmsg(), "--ranks 6") &&
                  strstr(qr_errmsg(), "--grid 2x2"),
              "6 ranks on 2x2 grids: expected an input error naming both, found '%s'", qr_errmsg());
    QR_EXPECT(p == NULL, "a refused plan must not be returned");
}

/* Llama-3.1-405B's shape (config.json of meta-llama/Llama-3.1-405B): 126 layers of 16384 / 53248,
 * 128 heads, 8 key/value heads, vocabulary 128256. */
static void llama405b(qr_model_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->arch, sizeof c->arch, "llama");
    c->dim = 16384;
    c->hidden_dim = 53248;
    c->n_layers = 126;
    c->n_heads = 128;
    c->n_kv_heads = 8;
    c->head_dim = 128;
    c->vocab_size = 128256;
    c->max_seq_len = 131072;
    c->rms_eps = 1e-5;
    c->rope_theta = 500000.0;
}

/* A node of the kind the project targets (256 GiB); capture of 405B over 128 ranks of one layer
 * slice each must stay well under it (a quarter), while one rank would hold the whole model. */
#define NODE_BYTES ((uint64_t)256 << 30)

static void case_capture(void)
{
    qr_model_config cfg;
    qr_plan_opts o;
    qr_plan *p1 = NULL, *p128 = NULL;
    qr_capture_plan_opts co = {2048, 1, 4};
    qr_capture_est e1, e128;
    memset(&e1, 0, sizeof e1);
    memset(&e128, 0, sizeof e128);
    llama405b(&cfg);
    qr_plan_opts_default(&o);
    o.tokens = 65536;
    o.weight_bytes = 2;
    QR_EXPECT(qr_plan_build(&cfg, &o, &p1) == QR_OK, "%s", qr_errmsg());
    o.n_ranks = 128;
    QR_EXPECT(qr_plan_build(&cfg, &o, &p128) == QR_OK, "%s", qr_errmsg());
    if (!p1 || !p128) {
        return;
    }
    QR_EXPECT(qr_plan_capture(p1, &cfg, &co, &e1) == QR_OK, "%s", qr_errmsg());
    QR_EXPECT(qr_plan_capture(p128, &cfg, &co, &e128) == QR_OK, "%s", qr_errmsg());
    printf("405B capture: 1 rank %.1f GiB, 128 ranks %.1f GiB per rank (%d groups, %lld "
           "micro-batches, fill/drain %.0f of %.0f s)\n",
           (double)e1.max_mem_per_rank / (1 << 30), (double)e128.max_mem_per_rank / (1 << 30),
           e128.active_groups, (long long)e128.micro_batches, e128.fill_drain_seconds,
           e128.seconds);
    /* float32 weights of the whole model: 405e9 x 4 bytes */
    QR_EXPECT(e1.max_mem_per_rank > (uint64_t)1500 << 30,
              "one rank must hold the whole float32 model (> 1500 GiB), found %.1f GiB",
              (double)e1.max_mem_per_rank / (1 << 30));
    QR_EXPECT(e128.max_mem_per_rank < NODE_BYTES / 4,
              "128 ranks: expected well under a node (< 64 GiB per rank), found %.1f GiB",
              (double)e128.max_mem_per_rank / (1 << 30));
    QR_EXPECT(e128.active_groups == 126 &&
                  e128.groups[0].weight_bytes > e128.groups[1].weight_bytes,
              "expected 126 groups with layers, group 0 also holding the embedding");
    /* fill and drain: (G - 1) of B + G - 1 batch times */
    QR_EXPECT(fabs(e128.fill_drain_seconds / e128.seconds -
                   125.0 / (double)(e128.micro_batches + 125)) < 1e-9,
              "fill/drain share %.4f, expected (G-1)/(B+G-1)",
              e128.fill_drain_seconds / e128.seconds);
    qr_capture_est_free(&e1);
    qr_capture_est_free(&e128);
    qr_plan_free(&p1);
    qr_plan_free(&p128);
}

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "";
    char name[64];
    snprintf(name, sizeof name, "plan.%s", which);
    if (strcmp(which, "partition") == 0) {
        case_partition();
    } else if (strcmp(which, "properties") == 0) {
        case_properties();
    } else if (strcmp(which, "costs") == 0) {
        case_costs();
    } else if (strcmp(which, "real") == 0) {
        case_real();
    } else if (strcmp(which, "capture") == 0) {
        case_capture();
    } else if (strcmp(which, "synthetic") == 0) {
        case_synthetic();
    } else {
        QR_EXPECT(0, "unknown case '%s'", which);
    }
    return qr_test_finish(name);
}

/* test_pack.c: INT4 packing, activation quantization and quantized-layer storage. Cases:
 *   pack    nibble layout and round trip of codes with odd and even column counts
 *   act     per-token activation quantization (INT8, INT4; whole token and ragged groups of 128)
 *   qlayer  effective weight (permutation, smoothing, side matrix, L R) and method names */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/qlayer.h"
#include "src/quant.h"
#include "src/rng.h"
#include "tests/test_util.h"

/* float32 arithmetic of the reference check: the scale and x are floats, codes exact. */
#define ACT_ROUNDING_SLACK 1e-6
/* qr_qlayer_effective_weight against the same sums in another order (float factors, double sums).
 */
#define QLAYER_TOL 1e-12

static int case_pack(qr_rng *rng)
{
    const int64_t col_counts[] = {1, 2, 3, 7, 63, 64, 171, 172};
    const int64_t rows = 5;
    for (size_t c = 0; c < sizeof col_counts / sizeof col_counts[0]; c++) {
        int64_t cols = col_counts[c];
        for (int asym = 0; asym <= 1; asym++) {
            qr_qweight q;
            unsigned *want = malloc((size_t)(rows * cols) * sizeof *want);
            int64_t rb;
            QR_REQUIRE(qr_qweight_alloc(&q, rows, cols, 64, asym) == QR_OK, "alloc: %s",
                       qr_errmsg());
            rb = qr_qweight_row_bytes(&q);
            QR_EXPECT(rb == (cols + 1) / 2, "cols %lld: row bytes %lld (expected %lld)",
                      (long long)cols, (long long)rb, (long long)((cols + 1) / 2));
            QR_EXPECT(asym ? q.zeros != NULL : q.zeros == NULL, "zero points %s for %s",
                      q.zeros ? "allocated" : "missing", asym ? "asym" : "sym");
            /* Fill in a scrambled order so a write that clobbers a neighbour shows. */
            for (int64_t k = 0; k < rows * cols; k++) {
                want[k] = (unsigned)(qr_rng_u64(rng) & 0xf);
            }
            for (int64_t k = rows * cols - 1; k >= 0; k -= 2) {
                qr_qweight_set_code(&q, k / cols, k % cols, want[k]);
            }
            for (int64_t k = rows * cols - 2; k >= 0; k -= 2) {
                qr_qweight_set_code(&q, k / cols, k % cols, want[k]);
            }
            for (int64_t i = 0; i < rows; i++) {
                for (int64_t j = 0; j < cols; j++) {
                    unsigned got = qr_qweight_get_code(&q, i, j);
                    uint8_t byte = q.packed[i * rb + j / 2];
                    unsigned raw = (j & 1) ? (byte >> 4) : (byte & 0xfu);
                    QR_EXPECT(got == want[i * cols + j], "cols %lld (%lld, %lld): code %u (%u)",
                              (long long)cols, (long long)i, (long long)j, got, want[i * cols + j]);
                    QR_EXPECT(raw == want[i * cols + j],
                              "cols %lld (%lld, %lld): nibble %u in byte %lld (expected %u, "
                              "low nibble = even column)",
                              (long long)cols, (long long)i, (long long)j, raw,
                              (long long)(i * rb + j / 2), want[i * cols + j]);
                }
                if (cols & 1) {
                    QR_EXPECT((q.packed[i * rb + rb - 1] >> 4) == 0,
                              "cols %lld row %lld: the unused high nibble is %u (expected 0)",
                              (long long)cols, (long long)i, q.packed[i * rb + rb - 1] >> 4);
                }
            }
            qr_qweight_free(&q);
            qr_qweight_free(&q); /* twice: must be safe */
            free(want);
        }
    }
    /* Quantizing the dequantized matrix again reproduces codes and scales (idempotence). */
    {
        const int64_t cols = 171;
        double W[6 * 171], D[6 * 171];
        float F[6 * 171];
        for (int asym = 0; asym <= 1; asym++) {
            qr_wquant_opts o;
            qr_qweight a, b;
            for (int64_t k = 0; k < 6 * cols; k++) {
                W[k] = qr_rng_normal(rng);
            }
            qr_wquant_opts_default(&o);
            o.group = 32;
            o.asym = asym;
            QR_REQUIRE(qr_quantize_rtn(W, 6, cols, &o, NULL, &a) == QR_OK, "%s", qr_errmsg());
            qr_qweight_dequantize_f64(&a, D);
            qr_qweight_dequantize(&a, F);
            for (int64_t k = 0; k < 6 * cols; k++) {
                QR_EXPECT((float)D[k] == F[k], "float and double dequantization differ at %lld",
                          (long long)k);
            }
            QR_REQUIRE(qr_quantize_rtn(D, 6, cols, &o, NULL, &b) == QR_OK, "%s", qr_errmsg());
            QR_EXPECT(memcmp(a.packed, b.packed, (size_t)(6 * qr_qweight_row_bytes(&a))) == 0,
                      "%s: requantizing the dequantized matrix changed its codes",
                      asym ? "asym" : "sym");
            QR_EXPECT(memcmp(a.scales, b.scales, (size_t)(6 * a.n_groups) * sizeof(float)) == 0,
                      "%s: requantizing changed the scales", asym ? "asym" : "sym");
            qr_qweight_free(&a);
            qr_qweight_free(&b);
        }
    }
    return 0;
}

static int case_act(qr_rng *rng)
{
    const int64_t dims[] = {172, 300, 128, 64, 1};
    const int64_t grps[] = {0, 128};
    const int bits_list[] = {8, 4};
    const int64_t n = 33;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        int64_t d = dims[di];
        float *X = malloc((size_t)(n * d) * sizeof *X);
        double *Xd = malloc((size_t)(n * d) * sizeof *Xd);
        int8_t *codes = malloc((size_t)(n * d));
        float *scales = malloc((size_t)(n * d) * sizeof *scales);
        for (int64_t k = 0; k < n * d; k++) {
            /* Channel 3 is an outlier channel, as real activations have. */
            X[k] = (float)(qr_rng_normal(rng) * ((k % d) == 3 ? 40.0 : 1.0));
        }
        memset(X + 5 * d, 0, (size_t)d * sizeof *X); /* token 5: all zero */
        for (size_t gi = 0; gi < 2; gi++) {
            for (size_t bi = 0; bi < 2; bi++) {
                int bits = bits_list[bi], qmax = (1 << (bits - 1)) - 1;
                int64_t group = grps[gi];
                int64_t gs = (group == 0 || group > d) ? d : group;
                int64_t ng = qr_quant_n_groups(d, group);
                double worst = 0.0;
                QR_REQUIRE(qr_act_quantize(X, n, d, bits, group, codes, scales) == QR_OK, "%s",
                           qr_errmsg());
                for (int64_t k = 0; k < n * d; k++) {
                    Xd[k] = (double)X[k];
                }
                qr_act_fake_quant(Xd, n, d, bits, group);
                for (int64_t t = 0; t < n; t++) {
                    for (int64_t g = 0; g < ng; g++) {
                        int64_t j1 = (g + 1) * gs < d ? (g + 1) * gs : d;
                        float amax = 0.0f, s = scales[t * ng + g];
                        for (int64_t j = g * gs; j < j1; j++) {
                            amax = fabsf(X[t * d + j]) > amax ? fabsf(X[t * d + j]) : amax;
                        }
                        QR_EXPECT(s > 0.0f, "d %lld bits %d: scale (%lld, %lld) is %g",
                                  (long long)d, bits, (long long)t, (long long)g, s);
                        if (amax > 0.0f) {
                            QR_EXPECT(fabs((double)s - (double)amax / qmax) <=
                                          1e-7 * (double)amax / qmax,
                                      "d %lld bits %d: scale %g (expected max|x| / %d = %g)",
                                      (long long)d, bits, s, qmax, (double)amax / qmax);
                        }
                        for (int64_t j = g * gs; j < j1; j++) {
                            int c = codes[t * d + j];
                            double deq = (double)c * (double)s;
                            double e = fabs((double)X[t * d + j] - deq) / (double)s;
                            QR_EXPECT(c >= -qmax && c <= qmax,
                                      "d %lld bits %d: code %d out of [-%d, %d]", (long long)d,
                                      bits, c, qmax, qmax);
                            worst = e > worst ? e : worst;
                            QR_EXPECT(Xd[t * d + j] == deq,
                                      "d %lld bits %d: fake quantization %.9g differs from "
                                      "code * scale %.9g",
                                      (long long)d, bits, Xd[t * d + j], deq);
                        }
                    }
                }
                QR_EXPECT(worst <= 0.5 + ACT_ROUNDING_SLACK,
                          "d %lld group %lld bits %d: error up to %.9f scales (expected <= 0.5)",
                          (long long)d, (long long)group, bits, worst);
            }
        }
        free(X);
        free(Xd);
        free(codes);
        free(scales);
    }
    {
        float x[4] = {1, 2, 3, INFINITY};
        int8_t c[4];
        float s[1];
        QR_EXPECT(qr_act_quantize(x, 1, 4, 8, 0, c, s) == QR_ERR_INPUT, "infinity accepted");
        QR_EXPECT(qr_act_quantize(x, 1, 3, 6, 0, c, s) == QR_ERR_INPUT, "6 bits accepted");
    }
    return 0;
}

static int case_qlayer(qr_rng *rng)
{
    const int64_t d_out = 7, d_in = 13, rank = 3, ns = 4;
    qr_qlayer ql;
    qr_wquant_opts o;
    double W[7 * 13], Ws[7 * 4], got[7 * 13], want[7 * 13];
    memset(&ql, 0, sizeof ql);
    for (int64_t k = 0; k < d_out * d_in; k++) {
        W[k] = qr_rng_normal(rng);
    }
    for (int64_t k = 0; k < d_out * ns; k++) {
        Ws[k] = 0.1 * qr_rng_normal(rng);
    }
    qr_wquant_opts_default(&o);
    o.group = 4;
    o.asym = true;
    ql.method = QR_METHOD_SERQ;
    ql.d_out = d_out;
    ql.d_in = d_in;
    QR_REQUIRE(qr_quantize_rtn(W, d_out, d_in, &o, NULL, &ql.main) == QR_OK, "%s", qr_errmsg());
    o.group = 0;
    o.asym = false;
    QR_REQUIRE(qr_quantize_rtn(Ws, d_out, ns, &o, NULL, &ql.side) == QR_OK, "%s", qr_errmsg());
    ql.n_salient = ns;
    ql.rank = rank;
    ql.L = malloc((size_t)(d_out * rank) * sizeof(float));
    ql.R = malloc((size_t)(rank * d_in) * sizeof(float));
    ql.smooth = malloc((size_t)d_in * sizeof(float));
    ql.perm = malloc((size_t)d_in * sizeof(int32_t));
    for (int64_t k = 0; k < d_out * rank; k++) {
        ql.L[k] = (float)qr_rng_normal(rng);
    }
    for (int64_t k = 0; k < rank * d_in; k++) {
        ql.R[k] = (float)qr_rng_normal(rng);
    }
    for (int64_t j = 0; j < d_in; j++) {
        ql.smooth[j] = (float)(0.5 + qr_rng_uniform(rng));
        ql.perm[j] = (int32_t)((j * 5 + 3) % d_in); /* 5 is coprime with 13: a permutation */
    }
    QR_REQUIRE(qr_qlayer_effective_weight(&ql, got) == QR_OK, "%s", qr_errmsg());
    /* Reference: y = W_eff x must equal the module's formula for every basis vector x = e_c. */
    for (int64_t c = 0; c < d_in; c++) {
        for (int64_t i = 0; i < d_out; i++) {
            double y = 0.0;
            for (int64_t j = 0; j < d_in; j++) {
                double t = (ql.perm[j] == c ? 1.0 : 0.0) / ql.smooth[j];
                double w = qr_qweight_value(&ql.main, i, j);
                if (j < ns) {
                    w += qr_qweight_value(&ql.side, i, j);
                }
                for (int64_t k = 0; k < rank; k++) {
                    w += (double)ql.L[i * rank + k] * (double)ql.R[k * d_in + j];
                }
                y += w * t;
            }
            want[i * d_in + c] = y;
        }
    }
    for (int64_t k = 0; k < d_out * d_in; k++) {
        QR_EXPECT(fabs(got[k] - want[k]) <= QLAYER_TOL * (1.0 + fabs(want[k])),
                  "effective weight %lld: %.17g (expected %.17g)", (long long)k, got[k], want[k]);
    }
    ql.perm[2] = 99;
    QR_EXPECT(qr_qlayer_effective_weight(&ql, got) == QR_ERR_INPUT,
              "an out-of-range permutation was accepted");
    qr_qlayer_free(&ql);
    qr_qlayer_free(&ql);
    QR_EXPECT(ql.L == NULL && ql.main.packed == NULL, "qr_qlayer_free left pointers behind");
    for (int m = 0; m < QR_METHOD_COUNT; m++) {
        QR_EXPECT(qr_method_parse(qr_method_name((qr_method_id)m)) == (qr_method_id)m,
                  "method %d does not round-trip through its name %s", m,
                  qr_method_name((qr_method_id)m));
    }
    QR_EXPECT(qr_method_parse("gptq-ish") == QR_METHOD_COUNT, "unknown method name parsed");
    QR_EXPECT(strcmp(qr_method_name(QR_METHOD_QERA_EXACT), "qera-exact") == 0, "name %s",
              qr_method_name(QR_METHOD_QERA_EXACT));
    return 0;
}

int main(int argc, char **argv)
{
    qr_rng rng;
    const char *which = argc > 1 ? argv[1] : "";
    int rc;
    qr_rng_seed(&rng, 77);
    if (strcmp(which, "pack") == 0) {
        rc = case_pack(&rng);
    } else if (strcmp(which, "act") == 0) {
        rc = case_act(&rng);
    } else if (strcmp(which, "qlayer") == 0) {
        rc = case_qlayer(&rng);
    } else {
        fprintf(stderr, "usage: %s pack|act|qlayer\n", argv[0]);
        return 2;
    }
    return rc ? rc : qr_test_finish(which);
}

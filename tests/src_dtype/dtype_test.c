/* dtype_test.c: src/dtype.c against references written here from the IEEE field definitions:
 * decoding by ldexp of sign / exponent / mantissa, encoding by a search over every representable
 * value (round to nearest, ties to the even code). One program; argv[1] picks the case:
 *   decode   all 65536 F16 and BF16 bit patterns to float32
 *   encode   float32 -> F16 / BF16 rounding, round trips, special values
 *   convert  the array converters (any alignment, every dtype, float32 and float64 out) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/dtype.h"
#include "src/rng.h"
#include "tests/test_util.h"

/* ---- references ---------------------------------------------------------------------------- */

static double ref_f16(uint16_t h)
{
    int sign = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v;
    if (e == 0x1f) {
        v = m ? NAN : INFINITY;
    } else if (e == 0) {
        v = ldexp(m, -24); /* subnormal: m x 2^-14 x 2^-10 */
    } else {
        v = ldexp(1024 + m, e - 25); /* (1 + m/2^10) x 2^(e-15) */
    }
    return sign ? -v : v;
}

static double ref_bf16(uint16_t b)
{
    int sign = b >> 15, e = (b >> 7) & 0xff, m = b & 0x7f;
    double v;
    if (e == 0xff) {
        v = m ? NAN : INFINITY;
    } else if (e == 0) {
        v = ldexp(m, -133); /* subnormal: m x 2^-126 x 2^-7 */
    } else {
        v = ldexp(128 + m, e - 134); /* (1 + m/2^7) x 2^(e-127) */
    }
    return sign ? -v : v;
}

/* Magnitude of a positive code for rounding purposes: the infinity code counts as the next power
 * of two above the largest finite value, which is how IEEE round-to-nearest defines overflow. */
static double magnitude(uint16_t code, int bf16)
{
    if (bf16) {
        return code == 0x7f80 ? ldexp(1.0, 128) : ref_bf16(code);
    }
    return code == 0x7c00 ? 65536.0 : ref_f16(code);
}

/* Nearest code to float x, ties to the even code, by binary search over the positive codes. */
static uint16_t ref_encode(float x, int bf16)
{
    uint16_t inf = bf16 ? 0x7f80 : 0x7c00, sign = signbit(x) ? 0x8000 : 0;
    double a = fabs((double)x);
    unsigned lo = 0, hi = inf, code;
    if (isnan(x)) {
        return 0xffff; /* callers check NaN separately */
    }
    if (a >= magnitude(inf, bf16)) {
        return sign | inf;
    }
    while (hi - lo > 1) { /* invariant: magnitude(lo) <= a < magnitude(hi) */
        unsigned mid = (lo + hi) / 2;
        if (magnitude((uint16_t)mid, bf16) <= a) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    {
        double dlo = a - magnitude((uint16_t)lo, bf16), dhi = magnitude((uint16_t)hi, bf16) - a;
        code = dlo < dhi ? lo : dhi < dlo ? hi : ((lo & 1) ? hi : lo);
    }
    return (uint16_t)(sign | code);
}

static int same_value(double want, float got)
{
    if (isnan(want)) {
        return isnan(got);
    }
    return (double)got == want && !signbit(got) == !signbit(want);
}

/* ---- decode ------------------------------------------------------------------------------- */

static int test_decode(void)
{
    int nans = 0, infs = 0, subnormals = 0;
    for (unsigned u = 0; u < 65536; u++) {
        uint16_t h = (uint16_t)u;
        double want16 = ref_f16(h), wantb = ref_bf16(h);
        float got16 = qr_f16_to_f32(h), gotb = qr_bf16_to_f32(h);
        QR_EXPECT(same_value(want16, got16), "F16 0x%04x: expected %.9g, found %.9g", u, want16,
                  got16);
        QR_EXPECT(same_value(wantb, gotb), "BF16 0x%04x: expected %.9g, found %.9g", u, wantb,
                  gotb);
        nans += isnan(want16) != 0;
        infs += isinf(want16) != 0;
        subnormals += ((h >> 10) & 0x1f) == 0 && (h & 0x3ff) != 0;
    }
    /* The loop really covered the classes the contract names. */
    QR_EXPECT(nans == 2046 && infs == 2 && subnormals == 2046,
              "F16 classes: expected 2046 NaN, 2 inf, 2046 subnormals, found %d, %d, %d", nans,
              infs, subnormals);
    QR_EXPECT(qr_f16_to_f32(0x0001) == ldexpf(1.0f, -24), "smallest F16 subnormal is 2^-24");
    QR_EXPECT(qr_f16_to_f32(0x7bff) == 65504.0f, "largest F16 is 65504");
    QR_EXPECT(qr_bf16_to_f32(0x0001) == ldexpf(1.0f, -133), "smallest BF16 subnormal is 2^-133");
    return qr_test_finish("src_dtype.decode");
}

/* ---- encode ------------------------------------------------------------------------------- */

static void check_encode(float x, int *checked)
{
    uint16_t got16 = qr_f32_to_f16(x), gotb = qr_f32_to_bf16(x);
    (*checked)++;
    if (isnan(x)) {
        QR_EXPECT(isnan(qr_f16_to_f32(got16)) && isnan(qr_bf16_to_f32(gotb)),
                  "NaN must stay NaN (found F16 0x%04x, BF16 0x%04x)", got16, gotb);
        return;
    }
    {
        uint16_t want16 = ref_encode(x, 0), wantb = ref_encode(x, 1);
        QR_EXPECT(got16 == want16, "F16 of %a (%.9g): expected 0x%04x, found 0x%04x", (double)x,
                  (double)x, want16, got16);
        QR_EXPECT(gotb == wantb, "BF16 of %a (%.9g): expected 0x%04x, found 0x%04x", (double)x,
                  (double)x, wantb, gotb);
    }
}

static float float_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int test_encode(void)
{
    int checked = 0;
    qr_rng rng;
    /* Round trips: every non-NaN code decodes and encodes back to itself. */
    for (unsigned u = 0; u < 65536; u++) {
        uint16_t h = (uint16_t)u;
        if (!isnan(qr_f16_to_f32(h))) {
            QR_EXPECT(qr_f32_to_f16(qr_f16_to_f32(h)) == h, "F16 round trip of 0x%04x", u);
        }
        if (!isnan(qr_bf16_to_f32(h))) {
            QR_EXPECT(qr_f32_to_bf16(qr_bf16_to_f32(h)) == h, "BF16 round trip of 0x%04x", u);
        }
    }
    /* Exact midpoints between neighbours (ties) and one float step either side, for both formats,
     * across the whole range including the subnormals and the overflow boundary. */
    for (int bf16 = 0; bf16 < 2; bf16++) {
        uint16_t inf = bf16 ? 0x7f80 : 0x7c00;
        for (unsigned c = 0; c < inf; c++) {
            double mid = 0.5 * (magnitude((uint16_t)c, bf16) + magnitude((uint16_t)(c + 1), bf16));
            float m = (float)mid;
            if ((double)m != mid) {
                continue; /* BF16 midpoints above FLT_MAX do not exist as floats */
            }
            for (int s = 0; s < 2; s++) {
                float x = s ? -m : m;
                check_encode(x, &checked);
                check_encode(nextafterf(x, 0.0f), &checked);
                check_encode(nextafterf(x, s ? -INFINITY : INFINITY), &checked);
            }
        }
    }
    /* Random bit patterns: all of float32, and dense in the F16 range. */
    qr_rng_seed(&rng, 20260101);
    for (int i = 0; i < 300000; i++) {
        uint32_t u = (uint32_t)qr_rng_u64(&rng);
        uint32_t in_range = (u & 0x807fffffu) | ((uint32_t)(100 + (u >> 8) % 50) << 23);
        check_encode(float_bits(u), &checked);
        check_encode(float_bits(in_range), &checked);
    }
    /* Named special values. */
    {
        const float specials[] = {0.0f,
                                  -0.0f,
                                  INFINITY,
                                  -INFINITY,
                                  NAN,
                                  -NAN,
                                  65504.0f,
                                  65519.99f,
                                  65520.0f,
                                  1e10f,
                                  ldexpf(1.0f, -25),
                                  ldexpf(3.0f, -25),
                                  ldexpf(1.0f, -26),
                                  3.4028235e38f,
                                  1.0f / 3.0f,
                                  float_bits(0x7f7fffffu),
                                  float_bits(0x00000001u),
                                  float_bits(0x7fa00000u) /* signalling NaN */};
        for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
            check_encode(specials[i], &checked);
        }
        QR_EXPECT(qr_f32_to_f16(65520.0f) == 0x7c00, "65520 is a tie that rounds to +inf in F16");
        QR_EXPECT(qr_f32_to_f16(65519.99f) == 0x7bff, "65519.99 rounds to 65504 in F16");
        QR_EXPECT(qr_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000, "2^-25 ties to +0 in F16");
        QR_EXPECT(qr_f32_to_f16(ldexpf(3.0f, -25)) == 0x0002, "3 x 2^-25 ties to 2 x 2^-24");
        QR_EXPECT(qr_f32_to_bf16(float_bits(0x7f7fffffu)) == 0x7f80,
                  "FLT_MAX rounds to +inf in BF16");
        QR_EXPECT(qr_f32_to_bf16(-0.0f) == 0x8000 && qr_f32_to_f16(-0.0f) == 0x8000,
                  "-0 keeps its sign");
    }
    printf("encode: %d values checked against the reference\n", checked);
    return qr_test_finish("src_dtype.encode");
}

/* ---- convert ------------------------------------------------------------------------------ */

static int test_convert(void)
{
    enum { N = 1000 };
    static unsigned char raw[8 * N + 1];
    float f32[N], expect[N];
    double f64[N];
    qr_rng rng;
    qr_rng_seed(&rng, 7);
    QR_EXPECT(qr_dtype_parse("BF16") == QR_DTYPE_BF16 && qr_dtype_parse("F64") == QR_DTYPE_F64 &&
                  qr_dtype_parse("bf16") == QR_DTYPE_INVALID &&
                  qr_dtype_parse("I8") == QR_DTYPE_INVALID,
              "dtype names are the exact safetensors spellings");
    QR_EXPECT(qr_dtype_size(QR_DTYPE_F32) == 4 && qr_dtype_size(QR_DTYPE_F16) == 2 &&
                  qr_dtype_size(QR_DTYPE_BF16) == 2 && qr_dtype_size(QR_DTYPE_F64) == 8 &&
                  qr_dtype_size(QR_DTYPE_INVALID) == 0,
              "dtype sizes");
    for (int dt = QR_DTYPE_F32; dt < QR_DTYPE_COUNT; dt++) {
        unsigned char *src = raw + 1; /* deliberately misaligned */
        QR_EXPECT(strcmp(qr_dtype_name((qr_dtype)dt), "INVALID") != 0 &&
                      (int)qr_dtype_parse(qr_dtype_name((qr_dtype)dt)) == dt,
                  "dtype %d name round trip", dt);
        for (int i = 0; i < N; i++) {
            uint64_t bits = qr_rng_u64(&rng);
            if (dt == QR_DTYPE_F32) {
                float v = (float)(qr_rng_normal(&rng) * 3.0);
                memcpy(src + 4 * i, &v, 4);
                expect[i] = v;
            } else if (dt == QR_DTYPE_F64) {
                double v = qr_rng_normal(&rng) * 1e3;
                memcpy(src + 8 * i, &v, 8);
                expect[i] = (float)v;
            } else {
                uint16_t h = (uint16_t)bits;
                memcpy(src + 2 * i, &h, 2);
                expect[i] = (float)(dt == QR_DTYPE_F16 ? ref_f16(h) : ref_bf16(h));
            }
        }
        qr_convert_to_f32((qr_dtype)dt, src, N, f32);
        qr_convert_to_f64((qr_dtype)dt, src, N, f64);
        for (int i = 0; i < N; i++) {
            int nan = isnan(expect[i]);
            double want64 = expect[i];
            if (dt == QR_DTYPE_F64) {
                memcpy(&want64, src + 8 * i, 8); /* float64 out is the stored double itself */
            }
            QR_EXPECT(nan ? isnan(f32[i]) : f32[i] == expect[i],
                      "%s[%d]: float32 expected %.9g, found %.9g", qr_dtype_name((qr_dtype)dt), i,
                      expect[i], f32[i]);
            QR_EXPECT(nan ? isnan(f64[i]) : f64[i] == want64,
                      "%s[%d]: float64 expected %.17g, found %.17g", qr_dtype_name((qr_dtype)dt), i,
                      want64, f64[i]);
        }
    }
    return qr_test_finish("src_dtype.convert");
}

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "";
    if (strcmp(which, "decode") == 0) {
        return test_decode();
    }
    if (strcmp(which, "encode") == 0) {
        return test_encode();
    }
    if (strcmp(which, "convert") == 0) {
        return test_convert();
    }
    fprintf(stderr, "usage: %s decode|encode|convert\n", argv[0]);
    return 1;
}

/* rng.c: xoshiro256** with splitmix64 seeding. */
#include "src/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void qr_rng_seed(qr_rng *rng, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        rng->s[i] = splitmix64(&x);
    }
    rng->has_spare = 0;
    rng->spare_normal = 0.0;
}

uint64_t qr_hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

void qr_rng_for_name(qr_rng *rng, const char *name, uint64_t seed)
{
    qr_rng_seed(rng, qr_hash_str(name) ^ (seed * 0x9e3779b97f4a7c15ull));
}

uint64_t qr_rng_u64(qr_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double qr_rng_uniform(qr_rng *rng)
{
    return (double)(qr_rng_u64(rng) >> 11) * 0x1.0p-53;
}

double qr_rng_normal(qr_rng *rng)
{
    double u1, u2, r;
    if (rng->has_spare) {
        rng->has_spare = 0;
        return rng->spare_normal;
    }
    do {
        u1 = qr_rng_uniform(rng);
    } while (u1 <= 0.0);
    u2 = qr_rng_uniform(rng);
    r = sqrt(-2.0 * log(u1));
    rng->spare_normal = r * sin(6.283185307179586 * u2);
    rng->has_spare = 1;
    return r * cos(6.283185307179586 * u2);
}

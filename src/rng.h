/* rng.h: the seeded random streams of qrecon.
 *
 * Results must not depend on how work is spread over ranks, so every module draws from its own
 * stream, seeded from the module's name and the user's --seed (qr_rng_for_name). The generator is
 * xoshiro256** seeded through splitmix64; normals come from Box-Muller. */
#ifndef QR_RNG_H
#define QR_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
    double spare_normal;
    int has_spare;
} qr_rng;

void qr_rng_seed(qr_rng *rng, uint64_t seed);

/* Seed a stream from a name (e.g. "model.layers.3.self_attn.q_proj") and a user seed. */
void qr_rng_for_name(qr_rng *rng, const char *name, uint64_t seed);

uint64_t qr_rng_u64(qr_rng *rng);
double qr_rng_uniform(qr_rng *rng); /* [0, 1), 53 random bits */
double qr_rng_normal(qr_rng *rng);  /* standard normal */

/* FNV-1a 64-bit hash of a NUL-terminated string. */
uint64_t qr_hash_str(const char *s);

#endif

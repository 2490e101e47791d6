/* fixture.h: seeded random quantized modules for the part-file and checkpoint tests. */
#ifndef QR_TESTS_CKPT_FIXTURE_H
#define QR_TESTS_CKPT_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "io/h5util.h"
#include "src/qlayer.h"
#include "src/status.h"

typedef struct {
    qr_method_id method;
    int64_t d_out, d_in, group;
    bool asym;
    int64_t rank;      /* 0 = no L, R */
    int64_t n_salient; /* 0 = no side matrix */
    bool smooth, perm;
} qr_fixture_spec;

/* A module with every requested field filled from a stream seeded by `seed` (codes, positive
 * scales, zero points, a random permutation, ...). */
qr_status qr_fixture_qlayer(const qr_fixture_spec *spec, uint64_t seed, qr_qlayer *ql);

/* The options and metrics the tests attach to parts. */
qr_status qr_fixture_options(qr_kvlist *opts, int64_t wbits);
qr_status qr_fixture_metrics(qr_kvlist *metrics, uint64_t seed);

/* Remove a flat scratch folder and the files in it (tests clean up after passing). */
void qr_fixture_rmdir(const char *dir);

#endif

/* test_util.h: assertions for ctest programs. A failed check prints file:line and why, and the test
 * exits 1 at qr_test_finish(); exit 77 tells ctest the test was skipped. */
#ifndef QR_TEST_UTIL_H
#define QR_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>

extern int qr_test_failures;

#define QR_EXPECT(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            qr_test_failures++;                                                                    \
        }                                                                                          \
    } while (0)

/* Like QR_EXPECT but stops the test at once (for checks later code depends on). */
#define QR_REQUIRE(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: required check failed: %s: ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            return qr_test_finish_failed();                                                        \
        }                                                                                          \
    } while (0)

/* Print the summary and return the process exit code (0 pass, 1 fail). */
int qr_test_finish(const char *name);
int qr_test_finish_failed(void);

/* Path of the shared data folder (QRECON_TEST_DATA), or NULL if it is absent. Tests that need it
 * print why and return 77 (skip) when NULL. */
const char *qr_test_data_dir(void);

/* A fresh scratch folder for this test (under $TMPDIR), created; the path is static storage. */
const char *qr_test_tmpdir(const char *name);

/* Seeded test inputs come from src/rng.h (qr_rng_seed, qr_rng_uniform, qr_rng_normal). */

#endif

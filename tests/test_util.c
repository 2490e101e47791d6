/* test_util.c: shared helpers for the ctest programs. */
#include "tests/test_util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int qr_test_failures = 0;

int qr_test_finish(const char *name)
{
    if (qr_test_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, qr_test_failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

int qr_test_finish_failed(void)
{
    return 1;
}

const char *qr_test_data_dir(void)
{
    static char path[4096];
    struct stat sb;
    const char *env = getenv("QRECON_TEST_DATA");
    if (!env || !*env) {
        env = "../shared/data";
    }
    snprintf(path, sizeof path, "%s", env);
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "skip: shared data folder %s not found\n", path);
        return NULL;
    }
    return path;
}

const char *qr_test_tmpdir(const char *name)
{
    static char path[4096];
    const char *base = getenv("TMPDIR");
    if (!base || !*base) {
        base = "/tmp";
    }
    snprintf(path, sizeof path, "%s/qrecon-test-%s-%ld", base, name, (long)getpid());
    mkdir(path, 0755);
    return path;
}

/* fuzz_config.c: libFuzzer harness for the config.json reader (io/config.c). */
#include "io/config.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qr_model_config cfg;
    const char *path = fuzz_file("config.json", data, size);
    if (path) {
        (void)qr_config_read(path, &cfg);
    }
    return 0;
}

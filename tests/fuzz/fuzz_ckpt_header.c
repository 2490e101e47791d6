/* fuzz_ckpt_header.c: libFuzzer harness for the checkpoint header reader and structure check
 * (io/checkpoint.c qr_ckpt_open, io/ckpt_check.c): the input is the root attribute model_config
 * (JSON text) of a checkpoint otherwise empty but marked complete; qr_ckpt_check must refuse it
 * (modules are missing) without crashing, whatever the JSON says. */
#include <hdf5.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/ckpt_check.h"
#include "tests/fuzz/fuzz_common.h"

static void attr_str(hid_t f, const char *name, const char *v, size_t len)
{
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR), a;
    H5Tset_size(t, len ? len : 1);
    a = H5Acreate2(f, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, len ? v : "");
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
}

static void attr_int(hid_t f, const char *name, int64_t v)
{
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Sclose(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[600];
    qr_ckpt *c = NULL;
    hid_t f, fcpl;
    if (size > 65536 || memchr(data, 0, size)) {
        return 0; /* a string attribute: no NUL inside */
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    snprintf(path, sizeof path, "%s", fuzz_file("ckpt.h5", NULL, 0));
    fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_link_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    if (f < 0) {
        return 0;
    }
    attr_str(f, "format", QR_CKPT_FORMAT, strlen(QR_CKPT_FORMAT));
    attr_int(f, "version", QR_CKPT_VERSION);
    attr_str(f, "model_config", (const char *)data, size);
    attr_str(f, "options", "{}", 2);
    attr_int(f, "complete", 1);
    H5Gclose(H5Gcreate2(f, QR_CKPT_TENSORS, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(f);
    if (qr_ckpt_open(path, &c) == QR_OK) {
        (void)qr_ckpt_check(c, path, 0, 1);
        qr_ckpt_close(&c);
    }
    return 0;
}

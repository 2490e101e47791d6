/* cmd_version.c: `qrecon version`. */
#include <hdf5.h>
#include <jansson.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "jobs/options.h"
#include "src/log.h"

static const qr_cmd_doc doc = {
    "version",
    "qrecon version",
    "Print the version of qrecon and of the libraries it was built with.\n\n",
    NULL,
};

qr_status qr_cmd_version(int argc, char **argv)
{
    qr_opt_result res;
    char mpi_version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    unsigned maj, min, rel;
    QR_TRY(qr_opts_parse(&doc, NULL, 0, 0, argc, argv, &res));
    if (res.help) {
        return QR_OK;
    }
    MPI_Get_library_version(mpi_version, &len);
    H5get_libversion(&maj, &min, &rel);
    if (qr_log_rank() == 0) {
        char *nl = strchr(mpi_version, '\n');
        if (nl) {
            *nl = '\0';
        }
        printf("qrecon %s\n", QRECON_VERSION);
        printf("  MPI:     %s\n", mpi_version);
        printf("  HDF5:    %u.%u.%u (parallel)\n", maj, min, rel);
        printf("  jansson: %s\n", JANSSON_VERSION);
    }
    return QR_OK;
}

/* cmd_version.c: `qrecon version`. */
#include <hdf5.h>
#include <jansson.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "jobs/cli.h"
#include "src/log.h"

qr_status qr_cmd_version(int argc, char **argv)
{
    char mpi_version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    unsigned maj, min, rel;
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        qr_cli_print_help("usage: qrecon version\n\nPrint the version of qrecon and of the "
                          "libraries it was built with.\n");
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

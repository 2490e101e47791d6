/* pdla_internal.h: helpers shared by mpi/pdla.c and mpi/pdla_svd.c; not part of the interface. */
#ifndef QR_MPI_PDLA_INTERNAL_H
#define QR_MPI_PDLA_INTERNAL_H

#include <mpi.h>
#include <stddef.h>

#include "src/status.h"

/* A ScaLAPACK info as a status naming the routine (< 0: illegal argument, > 0: failure). */
qr_status qr_pdla_scalapack_info(const char *routine, int info);

/* The largest `info` over the group (the smallest when one is negative), so every rank takes the
 * same branch after a ScaLAPACK call whose info may be known to some processes only. */
qr_status qr_pdla_agree_info(MPI_Comm comm, int *info);

/* Broadcast count doubles from rank 0 of comm, in pieces of at most 2^22. */
qr_status qr_pdla_bcast_doubles(double *x, size_t count, MPI_Comm comm);

#endif

/* scalapack_decl.h: C prototypes of the BLACS, PBLAS and ScaLAPACK routines qrecon calls.
 * ScaLAPACK ships no C header, so we declare them here, once.
 *
 * Conventions: every argument of a Fortran routine is passed by pointer; matrices are column-major
 * local blocks described by a 9-int descriptor (descinit_). Integers are the default 32-bit `int`
 * of Debian's LP64 build. The BLACS C interface (Cblacs_*) takes values. The PBLAS (pd* level 3
 * BLAS) are C functions taking `char *` with no hidden lengths; the ScaLAPACK drivers (pdpotrf_,
 * pdgesvd_) are Fortran and take a hidden `size_t` length after the last argument for each
 * CHARACTER argument, which gfortran may rely on, so we pass them. */
#ifndef QR_MPI_SCALAPACK_DECL_H
#define QR_MPI_SCALAPACK_DECL_H

#include <mpi.h>
#include <stddef.h>

/* Descriptor fields (0-based indices into the 9-int array). */
enum {
    QR_DESC_DTYPE = 0,
    QR_DESC_CTXT = 1,
    QR_DESC_M = 2,
    QR_DESC_N = 3,
    QR_DESC_MB = 4,
    QR_DESC_NB = 5,
    QR_DESC_RSRC = 6,
    QR_DESC_CSRC = 7,
    QR_DESC_LLD = 8,
    QR_DESC_LEN = 9
};

/* ---- BLACS (C interface) ------------------------------------------------------------------------
 */
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_pinfo(int *mypnum, int *nprocs);
void Cblacs_get(int ctxt, int what, int *val);
void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int ctxt);
void Cblacs_exit(int cont);
int Cblacs_pnum(int ctxt, int prow, int pcol);
void Cblacs_pcoord(int ctxt, int pnum, int *prow, int *pcol);

/* ---- tools --------------------------------------------------------------------------------------
 */
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
               const int *irsrc, const int *icsrc, const int *ictxt, const int *lld, int *info);

/* ---- PBLAS (C) ----------------------------------------------------------------------------------
 */
void pdgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
             const double *alpha, const double *a, const int *ia, const int *ja, const int *desca,
             const double *b, const int *ib, const int *jb, const int *descb, const double *beta,
             double *c, const int *ic, const int *jc, const int *descc);
void pdsyrk_(const char *uplo, const char *trans, const int *n, const int *k, const double *alpha,
             const double *a, const int *ia, const int *ja, const int *desca, const double *beta,
             double *c, const int *ic, const int *jc, const int *descc);
void pdtrsm_(const char *side, const char *uplo, const char *transa, const char *diag, const int *m,
             const int *n, const double *alpha, const double *a, const int *ia, const int *ja,
             const int *desca, double *b, const int *ib, const int *jb, const int *descb);

void pdtrmm_(const char *side, const char *uplo, const char *transa, const char *diag, const int *m,
             const int *n, const double *alpha, const double *a, const int *ia, const int *ja,
             const int *desca, double *b, const int *ib, const int *jb, const int *descb);

/* ---- ScaLAPACK (Fortran) ------------------------------------------------------------------------
 */
void pdpotrf_(const char *uplo, const int *n, double *a, const int *ia, const int *ja,
              const int *desca, int *info, size_t uplo_len);
void pdtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *ia,
              const int *ja, const int *desca, int *info, size_t uplo_len, size_t diag_len);
void pdpotri_(const char *uplo, const int *n, double *a, const int *ia, const int *ja,
              const int *desca, int *info, size_t uplo_len);
void pdgeqrf_(const int *m, const int *n, double *a, const int *ia, const int *ja, const int *desca,
              double *tau, double *work, const int *lwork, int *info);
void pdorgqr_(const int *m, const int *n, const int *k, double *a, const int *ia, const int *ja,
              const int *desca, const double *tau, double *work, const int *lwork, int *info);
void pdgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
              const int *ia, const int *ja, const int *desca, double *s, double *u, const int *iu,
              const int *ju, const int *descu, double *vt, const int *ivt, const int *jvt,
              const int *descvt, double *work, const int *lwork, int *info, size_t jobu_len,
              size_t jobvt_len);

#endif

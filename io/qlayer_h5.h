/* qlayer_h5.h: one quantized module (src/qlayer.h) as HDF5 attributes and datasets under a location
 * (the root of a part file, or a module's group in the shared checkpoint). Both formats share this
 * layout (docs/checkpoint.md):
 *
 *   attributes  method (string), d_out, d_in, rank, n_salient (int64), bits_per_weight (float64)
 *   main/       attributes group, asym (int64); datasets
 *               packed  uint8   (d_out, ceil(d_in / 2))      two INT4 codes per byte, qlayer.h
 * order scales  float32 (d_out, ceil(d_in / group)) zeros   uint8   (d_out, ceil(d_in / group))
 * asymmetric only smooth      float32 (d_in)            when the method smooths perm        int32
 * (d_in)            when the method permutes L, R        float32 (d_out, rank), (rank, d_in)   when
 * rank > 0 side/       as main/ with (d_out, n_salient)       when n_salient > 0
 *
 * Datasets are contiguous, created without timestamps so identical content gives identical bytes.
 */
#ifndef QR_IO_QLAYER_H5_H
#define QR_IO_QLAYER_H5_H

#include <hdf5.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "src/qlayer.h"
#include "src/status.h"

/* Everything needed to create the datasets of a module without its data (plain data, so it can
 * travel through MPI as bytes). */
/* The datasets of a module, in the order of qr_qlayer_layout.sums. */
enum {
    QR_SUM_MAIN_PACKED,
    QR_SUM_MAIN_SCALES,
    QR_SUM_MAIN_ZEROS,
    QR_SUM_SMOOTH,
    QR_SUM_PERM,
    QR_SUM_L,
    QR_SUM_R,
    QR_SUM_SIDE_PACKED,
    QR_SUM_SIDE_SCALES,
    QR_SUM_SIDE_ZEROS,
    QR_QLAYER_SUMS
};

typedef struct {
    int32_t method;
    int32_t main_asym, side_asym, has_smooth, has_perm;
    int64_t d_out, d_in, rank, n_salient;
    int64_t main_group, side_group;
    double bits_per_weight;
    uint64_t sums[QR_QLAYER_SUMS]; /* XXH3 of each dataset's bytes (0: absent); stored with it */
} qr_qlayer_layout;

void qr_qlayer_layout_of(const qr_qlayer *ql, qr_qlayer_layout *lay);

/* Bytes of array data the layout stores (packed codes, scales, zeros, smooth, perm, L, R, side). */
uint64_t qr_qlayer_layout_bytes(const qr_qlayer_layout *lay);

/* Create the attributes, groups and datasets of `lay` under loc and write the data of ql. On a file
 * opened with the MPI-IO driver this is collective: every rank calls it with the same layout, the
 * owner passes its ql and the others pass NULL (they write an empty selection); dxpl selects
 * collective transfers. On a serial file pass ql and H5P_DEFAULT. */
qr_status qr_h5_qlayer_write(hid_t loc, const qr_qlayer_layout *lay, const qr_qlayer *ql,
                             hid_t dxpl);
/* The same on a parallel file, with every rank agreeing on the status after each collective step
 * (qr_h5_agree over comm), so a write error on one rank ends the write on all. */
qr_status qr_h5_qlayer_write_coll(hid_t loc, const qr_qlayer_layout *lay, const qr_qlayer *ql,
                                  hid_t dxpl, MPI_Comm comm);

/* Read and check the layout under loc (attributes and dataset shapes, no array data): shapes agree
 * with d_out, d_in, group, rank and n_salient. `where` names the file (and group) for messages. */
qr_status qr_h5_qlayer_read_layout(hid_t loc, const char *where, qr_qlayer_layout *lay);

/* Read the whole module into ql (allocated here; free with qr_qlayer_free), checking the layout,
 * that scales are finite and positive, zero points in 0..15 and perm a permutation. */
qr_status qr_h5_qlayer_read(hid_t loc, const char *where, qr_qlayer *ql);

/* Exact equality of two modules: every scalar and every array byte. On a difference, *what (may
 * be NULL) names the first differing field. */
bool qr_qlayer_equal(const qr_qlayer *a, const qr_qlayer *b, const char **what);

#endif

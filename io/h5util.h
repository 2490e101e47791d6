/* h5util.h: small HDF5 helpers shared by the part files and the shared checkpoint: typed key/value
 * lists (the options and metrics stored as attributes), scalar attribute read/write with messages
 * that name the file and attribute, and the HDF5 error-stack silencing qrecon uses.
 *
 * Attributes are written as 64-bit integers (H5T_STD_I64LE), doubles (H5T_IEEE_F64LE) or
 * fixed-length NUL-terminated ASCII strings, so identical content gives identical bytes. Not
 * collective by themselves; on a file opened with the MPI-IO driver, attribute writes are
 * collective (call them on every rank with the same values). */
#ifndef QR_IO_H5UTIL_H
#define QR_IO_H5UTIL_H

#include <hdf5.h>
#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/status.h"

#define QR_KV_KEY_MAX 64
#define QR_KV_STR_MAX 256

typedef enum { QR_KV_INT = 0, QR_KV_DOUBLE, QR_KV_STRING } qr_kv_type;

/* One typed value. Plain data (no pointers), so a list can travel through MPI as bytes. */
typedef struct {
    char key[QR_KV_KEY_MAX];
    qr_kv_type type;
    int64_t i;
    double d;
    char s[QR_KV_STR_MAX];
} qr_kv;

/* An ordered list of values with unique keys; {0} is a valid empty list. */
typedef struct {
    qr_kv *items;
    size_t n, cap;
} qr_kvlist;

/* Set a value (replacing an existing key in place, else appending). QR_ERR_INPUT when the key or
 * the string does not fit. */
qr_status qr_kv_set_int(qr_kvlist *l, const char *key, int64_t v);
qr_status qr_kv_set_double(qr_kvlist *l, const char *key, double v);
qr_status qr_kv_set_str(qr_kvlist *l, const char *key, const char *v);
qr_status qr_kv_set(qr_kvlist *l, const qr_kv *kv);
const qr_kv *qr_kv_find(const qr_kvlist *l, const char *key);   /* NULL when absent */
void qr_kvlist_free(qr_kvlist *l);                              /* NULL-safe; leaves {0} */
qr_status qr_kvlist_copy(qr_kvlist *dst, const qr_kvlist *src); /* dst is replaced */

/* Equal type and value (doubles compared bit for bit, so 0.1 == 0.1 but -0 != 0). */
bool qr_kv_equal(const qr_kv *a, const qr_kv *b);
/* The value as text for messages ("4", "0.1", "'srr'"). */
void qr_kv_format(const qr_kv *kv, char *buf, size_t n);

/* The list as one JSON object {"key": value, ...} in list order (doubles with 17 significant
 * digits). *json is allocated; the caller frees it. */
qr_status qr_kvlist_to_json(const qr_kvlist *l, char **json);

/* Turn off HDF5's automatic error-stack printing (qrecon reports its own messages). */
/* Agree on a status over comm: the lowest failing rank's status and message reach every rank
 * (collective). */
qr_status qr_h5_agree(MPI_Comm comm, qr_status local);

/* Shut the HDF5 library down (every open object closed, errors ignored); call once before
 * MPI_Finalize. */
void qr_h5_shutdown(void);
void qr_h5_quiet(void);

/* Write one attribute on obj (a file, group or dataset); an existing one of that name is an error.
 */
qr_status qr_h5_attr_write(hid_t obj, const qr_kv *kv);
qr_status qr_h5_attr_write_int(hid_t obj, const char *name, int64_t v);
qr_status qr_h5_attr_write_double(hid_t obj, const char *name, double v);
qr_status qr_h5_attr_write_str(hid_t obj, const char *name, const char *v);
/* Every attribute of a kv list, in list order. */
qr_status qr_h5_attrs_write(hid_t obj, const qr_kvlist *l);

/* Read one scalar attribute; `where` names the file (and object) for the message. A missing
 * attribute or one of another type is QR_ERR_INPUT. */
qr_status qr_h5_attr_read_int(hid_t obj, const char *name, const char *where, int64_t *v);
qr_status qr_h5_attr_read_double(hid_t obj, const char *name, const char *where, double *v);
qr_status qr_h5_attr_read_str(hid_t obj, const char *name, const char *where, char *buf, size_t n);
bool qr_h5_attr_exists(hid_t obj, const char *name);

/* Read every scalar attribute of obj (integers, floats, strings) into l, in name order, except
 * those named in skip (a NULL-terminated list; skip itself may be NULL). Attributes of other shapes
 * or classes are QR_ERR_INPUT. */
qr_status qr_h5_attrs_read_all(hid_t obj, const char *where, const char *const *skip, qr_kvlist *l);

/* Read a string attribute of any length; *text is allocated (caller frees). */
qr_status qr_h5_attr_read_text(hid_t obj, const char *name, const char *where, char **text);

/* Dimensions of dataset `name` under loc: QR_ERR_INPUT naming it when absent or of another rank
 * (ndim) than expected. */
qr_status qr_h5_dataset_dims(hid_t loc, const char *name, const char *where, int ndim,
                             hsize_t *dims);

/* Create dataset `name` (ndim, dims) under loc, contiguous, no timestamps, no fill, and write buf
 * whole; buf NULL writes an empty selection (the non-owner ranks of a collective write). A nonzero
 * xxh3 (XXH3_64bits of the data's bytes, the same on every rank) is stored as its attribute
 * QR_H5_CHECKSUM_ATTR, checked by qr_h5_checksum_verify when the data are read. */
qr_status qr_h5_dataset_write(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int ndim,
                              const hsize_t *dims, const void *buf, hid_t dxpl, uint64_t xxh3);

#define QR_H5_CHECKSUM_ATTR "xxh3"

/* XXH3_64bits of n bytes, never 0 (0 means "no checksum"). */
uint64_t qr_h5_checksum(const void *data, size_t n);

/* The same checksum over bytes given in pieces, in order: begin (NULL when out of memory: a
 * QR_ERR_NOMEM is set), add each piece, end (frees the state; its value equals qr_h5_checksum of
 * the pieces joined). */
void *qr_h5_checksum_begin(void);
void qr_h5_checksum_add(void *state, const void *data, size_t n);
uint64_t qr_h5_checksum_end(void *state);

/* Write the checksum attribute on dataset ds (collective on a parallel file). */
qr_status qr_h5_checksum_write(hid_t ds, const char *name, uint64_t xxh3);

/* Compare the n bytes read from dataset ds with its checksum attribute: QR_ERR_INPUT naming
 * where/name when they differ (a damaged file); QR_OK when they agree or the dataset has no
 * checksum (files written before checksums, docs/checkpoint.md). */
qr_status qr_h5_checksum_verify(hid_t ds, const char *where, const char *name, const void *data,
                                size_t n);

/* Properties for objects created without timestamps (close with H5Pclose). */
hid_t qr_h5_dcpl_plain(void);
hid_t qr_h5_gcpl_plain(void);

#endif

/* h5util.c: typed key/value lists and scalar HDF5 attributes (io/h5util.h). */
#include "io/h5util.h"

#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "io/fault.h"
#include "src/alloc.h"

static qr_status kv_slot(qr_kvlist *l, const char *key, qr_kv **out)
{
    if (strlen(key) >= QR_KV_KEY_MAX || key[0] == '\0') {
        return qr_fail(QR_ERR_INPUT, "attribute '%s': name empty or longer than %d bytes", key,
                       QR_KV_KEY_MAX - 1);
    }
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].key, key) == 0) {
            *out = &l->items[i];
            return QR_OK;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        qr_kv *items = realloc(l->items, cap * sizeof *items);
        if (!items) {
            return qr_fail(QR_ERR_NOMEM, "attribute list: cannot grow to %zu entries", cap);
        }
        l->items = items;
        l->cap = cap;
    }
    *out = &l->items[l->n++];
    memset(*out, 0, sizeof **out);
    snprintf((*out)->key, sizeof(*out)->key, "%s", key);
    return QR_OK;
}

qr_status qr_kv_set_int(qr_kvlist *l, const char *key, int64_t v)
{
    qr_kv *kv;
    QR_TRY(kv_slot(l, key, &kv));
    kv->type = QR_KV_INT;
    kv->i = v;
    kv->d = 0;
    kv->s[0] = '\0';
    return QR_OK;
}

qr_status qr_kv_set_double(qr_kvlist *l, const char *key, double v)
{
    qr_kv *kv;
    QR_TRY(kv_slot(l, key, &kv));
    kv->type = QR_KV_DOUBLE;
    kv->i = 0;
    kv->d = v;
    kv->s[0] = '\0';
    return QR_OK;
}

qr_status qr_kv_set_str(qr_kvlist *l, const char *key, const char *v)
{
    qr_kv *kv;
    if (strlen(v) >= QR_KV_STR_MAX) {
        return qr_fail(QR_ERR_INPUT, "attribute '%s': value longer than %d bytes", key,
                       QR_KV_STR_MAX - 1);
    }
    QR_TRY(kv_slot(l, key, &kv));
    kv->type = QR_KV_STRING;
    kv->i = 0;
    kv->d = 0;
    memset(kv->s, 0, sizeof kv->s);
    memcpy(kv->s, v, strlen(v));
    return QR_OK;
}

qr_status qr_kv_set(qr_kvlist *l, const qr_kv *kv)
{
    switch (kv->type) {
    case QR_KV_INT:
        return qr_kv_set_int(l, kv->key, kv->i);
    case QR_KV_DOUBLE:
        return qr_kv_set_double(l, kv->key, kv->d);
    case QR_KV_STRING:
        return qr_kv_set_str(l, kv->key, kv->s);
    }
    return qr_fail(QR_ERR_INTERNAL, "attribute '%s': unknown value type %d", kv->key, kv->type);
}

const qr_kv *qr_kv_find(const qr_kvlist *l, const char *key)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].key, key) == 0) {
            return &l->items[i];
        }
    }
    return NULL;
}

void qr_kvlist_free(qr_kvlist *l)
{
    if (!l) {
        return;
    }
    free(l->items);
    memset(l, 0, sizeof *l);
}

qr_status qr_kvlist_copy(qr_kvlist *dst, const qr_kvlist *src)
{
    qr_kvlist tmp = {0};
    for (size_t i = 0; i < src->n; i++) {
        qr_status st = qr_kv_set(&tmp, &src->items[i]);
        if (st != QR_OK) {
            qr_kvlist_free(&tmp);
            return st;
        }
    }
    qr_kvlist_free(dst);
    *dst = tmp;
    return QR_OK;
}

bool qr_kv_equal(const qr_kv *a, const qr_kv *b)
{
    if (a->type != b->type) {
        return false;
    }
    switch (a->type) {
    case QR_KV_INT:
        return a->i == b->i;
    case QR_KV_DOUBLE:
        return memcmp(&a->d, &b->d, sizeof a->d) == 0;
    case QR_KV_STRING:
        return strcmp(a->s, b->s) == 0;
    }
    return false;
}

void qr_kv_format(const qr_kv *kv, char *buf, size_t n)
{
    switch (kv->type) {
    case QR_KV_INT:
        snprintf(buf, n, "%" PRId64, kv->i);
        break;
    case QR_KV_DOUBLE:
        snprintf(buf, n, "%.17g", kv->d);
        break;
    case QR_KV_STRING:
        snprintf(buf, n, "'%s'", kv->s);
        break;
    default:
        snprintf(buf, n, "?");
    }
}

qr_status qr_kvlist_to_json(const qr_kvlist *l, char **json)
{
    qr_status st = QR_OK;
    json_t *obj = json_object();
    *json = NULL;
    if (!obj) {
        return qr_fail(QR_ERR_NOMEM, "attribute list: cannot build JSON");
    }
    for (size_t i = 0; i < l->n; i++) {
        const qr_kv *kv = &l->items[i];
        json_t *v = NULL;
        if (kv->type == QR_KV_INT) {
            v = json_integer((json_int_t)kv->i);
        } else if (kv->type == QR_KV_DOUBLE) {
            v = isfinite(kv->d) ? json_real(kv->d) : json_null();
        } else {
            v = json_string(kv->s);
        }
        if (!v || json_object_set_new(obj, kv->key, v) != 0) {
            st = qr_fail(QR_ERR_INPUT, "attribute '%s': cannot encode as JSON", kv->key);
            goto done;
        }
    }
    *json = json_dumps(obj, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!*json) {
        st = qr_fail(QR_ERR_NOMEM, "attribute list: cannot format JSON");
    }
done:
    json_decref(obj);
    return st;
}

void qr_h5_quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

qr_status qr_h5_agree(MPI_Comm comm, qr_status local)
{
    struct {
        int status;
        char msg[QR_ERRMSG_MAX];
    } packet;
    int rank = 0, mine, first = INT_MAX;
    MPI_Comm_rank(comm, &rank);
    mine = local != QR_OK ? rank : INT_MAX;
    if (MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS) {
        return qr_fail(QR_ERR_INTERNAL, "HDF5 write: MPI_Allreduce failed");
    }
    if (first == INT_MAX) {
        return QR_OK;
    }
    memset(&packet, 0, sizeof packet);
    if (rank == first) {
        packet.status = (int)local;
        snprintf(packet.msg, sizeof packet.msg, "%s", qr_errmsg());
    }
    if (MPI_Bcast(&packet, (int)sizeof packet, MPI_BYTE, first, comm) != MPI_SUCCESS) {
        return qr_fail(QR_ERR_INTERNAL, "HDF5 write: MPI_Bcast failed");
    }
    qr_set_errmsg(packet.msg);
    return (qr_status)packet.status;
}

void qr_h5_shutdown(void)
{
    /* Close what a failed flush or close left open while MPI still runs: HDF5 would otherwise
     * try in MPI_Finalize's callback, on a driver whose state is gone (a segfault). */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    H5close();
}

static qr_status attr_write_raw(hid_t obj, const char *name, hid_t ftype, hid_t mtype,
                                const void *value)
{
    qr_status st = QR_OK;
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = -1;
    if (space < 0) {
        return qr_fail(QR_ERR_INTERNAL, "attribute '%s': H5Screate failed", name);
    }
    attr = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite(attr, mtype, value) < 0) {
        st = qr_fail(QR_ERR_IO, "attribute '%s': cannot create or write it", name);
    }
    if (attr >= 0) {
        H5Aclose(attr);
    }
    H5Sclose(space);
    return st;
}

qr_status qr_h5_attr_write_int(hid_t obj, const char *name, int64_t v)
{
    return attr_write_raw(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

qr_status qr_h5_attr_write_double(hid_t obj, const char *name, double v)
{
    return attr_write_raw(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

qr_status qr_h5_attr_write_str(hid_t obj, const char *name, const char *v)
{
    qr_status st;
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type < 0 || H5Tset_size(type, strlen(v) + 1) < 0 ||
        H5Tset_strpad(type, H5T_STR_NULLTERM) < 0) {
        if (type >= 0) {
            H5Tclose(type);
        }
        return qr_fail(QR_ERR_INTERNAL, "attribute '%s': cannot make a string type", name);
    }
    st = attr_write_raw(obj, name, type, type, v);
    H5Tclose(type);
    return st;
}

qr_status qr_h5_attr_write(hid_t obj, const qr_kv *kv)
{
    switch (kv->type) {
    case QR_KV_INT:
        return qr_h5_attr_write_int(obj, kv->key, kv->i);
    case QR_KV_DOUBLE:
        return qr_h5_attr_write_double(obj, kv->key, kv->d);
    case QR_KV_STRING:
        return qr_h5_attr_write_str(obj, kv->key, kv->s);
    }
    return qr_fail(QR_ERR_INTERNAL, "attribute '%s': unknown value type %d", kv->key, kv->type);
}

qr_status qr_h5_attrs_write(hid_t obj, const qr_kvlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        QR_TRY(qr_h5_attr_write(obj, &l->items[i]));
    }
    return QR_OK;
}

bool qr_h5_attr_exists(hid_t obj, const char *name)
{
    return H5Aexists(obj, name) > 0;
}

/* Read a scalar attribute into kv (its class decides the type). */
static qr_status attr_read_kv(hid_t obj, const char *name, const char *where, qr_kv *kv)
{
    qr_status st = QR_OK;
    hid_t attr = -1, type = -1, space = -1, mtype = -1;
    H5T_class_t cls;
    memset(kv, 0, sizeof *kv);
    if (strlen(name) >= QR_KV_KEY_MAX) {
        return qr_fail(QR_ERR_INPUT, "%s: attribute name '%s' too long (limit %d bytes)", where,
                       name, QR_KV_KEY_MAX - 1);
    }
    snprintf(kv->key, sizeof kv->key, "%s", name);
    if (H5Aexists(obj, name) <= 0) {
        return qr_fail(QR_ERR_INPUT, "%s: attribute '%s' is missing", where, name);
    }
    attr = H5Aopen(obj, name, H5P_DEFAULT);
    type = attr >= 0 ? H5Aget_type(attr) : -1;
    space = attr >= 0 ? H5Aget_space(attr) : -1;
    if (attr < 0 || type < 0 || space < 0) {
        st = qr_fail(QR_ERR_IO, "%s: cannot open attribute '%s'", where, name);
        goto done;
    }
    if (H5Sget_simple_extent_npoints(space) != 1) {
        st = qr_fail(QR_ERR_INPUT, "%s: attribute '%s' is not a scalar (found %lld values)", where,
                     name, (long long)H5Sget_simple_extent_npoints(space));
        goto done;
    }
    cls = H5Tget_class(type);
    if (cls == H5T_INTEGER) {
        kv->type = QR_KV_INT;
        if (H5Aread(attr, H5T_NATIVE_INT64, &kv->i) < 0) {
            st = qr_fail(QR_ERR_IO, "%s: cannot read attribute '%s'", where, name);
        }
    } else if (cls == H5T_FLOAT) {
        kv->type = QR_KV_DOUBLE;
        if (H5Aread(attr, H5T_NATIVE_DOUBLE, &kv->d) < 0) {
            st = qr_fail(QR_ERR_IO, "%s: cannot read attribute '%s'", where, name);
        }
    } else if (cls == H5T_STRING && H5Tis_variable_str(type) <= 0) {
        size_t size = H5Tget_size(type);
        char *tmp = NULL;
        kv->type = QR_KV_STRING;
        if (size >= QR_KV_STR_MAX) {
            st = qr_fail(QR_ERR_INPUT, "%s: attribute '%s' is too long (limit %d bytes, found %zu)",
                         where, name, QR_KV_STR_MAX - 1, size);
            goto done;
        }
        mtype = H5Tcopy(type);
        QR_CHECK(qr_calloc(&tmp, size + 1, 1, "attribute text"));
        if (mtype < 0 || H5Aread(attr, mtype, tmp) < 0) {
            st = qr_fail(QR_ERR_IO, "%s: cannot read attribute '%s'", where, name);
        } else {
            memcpy(kv->s, tmp, size);
            kv->s[size] = '\0';
        }
        free(tmp);
    } else {
        st = qr_fail(QR_ERR_INPUT,
                     "%s: attribute '%s' has an unsupported type (expected an integer, float or "
                     "fixed-length string)",
                     where, name);
    }
done:
    if (mtype >= 0) {
        H5Tclose(mtype);
    }
    if (space >= 0) {
        H5Sclose(space);
    }
    if (type >= 0) {
        H5Tclose(type);
    }
    if (attr >= 0) {
        H5Aclose(attr);
    }
    return st;
}

static const char *kv_type_name(qr_kv_type t)
{
    return t == QR_KV_INT ? "an integer" : t == QR_KV_DOUBLE ? "a float" : "a string";
}

static qr_status attr_read_typed(hid_t obj, const char *name, const char *where, qr_kv_type want,
                                 qr_kv *kv)
{
    QR_TRY(attr_read_kv(obj, name, where, kv));
    if (kv->type != want) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: attribute '%s' has the wrong type (expected %s, found %s)", where, name,
                       kv_type_name(want), kv_type_name(kv->type));
    }
    return QR_OK;
}

qr_status qr_h5_attr_read_int(hid_t obj, const char *name, const char *where, int64_t *v)
{
    qr_kv kv;
    QR_TRY(attr_read_typed(obj, name, where, QR_KV_INT, &kv));
    *v = kv.i;
    return QR_OK;
}

qr_status qr_h5_attr_read_double(hid_t obj, const char *name, const char *where, double *v)
{
    qr_kv kv;
    QR_TRY(attr_read_typed(obj, name, where, QR_KV_DOUBLE, &kv));
    *v = kv.d;
    return QR_OK;
}

qr_status qr_h5_attr_read_str(hid_t obj, const char *name, const char *where, char *buf, size_t n)
{
    char *text = NULL;
    size_t len;
    QR_TRY(qr_h5_attr_read_text(obj, name, where, &text));
    len = strlen(text);
    if (len >= n) {
        free(text);
        return qr_fail(QR_ERR_INPUT, "%s: attribute '%s' is too long (limit %zu bytes, found %zu)",
                       where, name, n - 1, len);
    }
    memcpy(buf, text, len + 1);
    free(text);
    return QR_OK;
}

typedef struct {
    const char *where;
    const char *const *skip;
    qr_kvlist *list;
    qr_status st;
} attr_iter_ctx;

static herr_t attr_iter_cb(hid_t obj, const char *name, const H5A_info_t *info, void *data)
{
    attr_iter_ctx *ctx = data;
    qr_kv kv;
    (void)info;
    for (const char *const *sk = ctx->skip; sk && *sk; sk++) {
        if (strcmp(*sk, name) == 0) {
            return 0;
        }
    }
    ctx->st = attr_read_kv(obj, name, ctx->where, &kv);
    if (ctx->st == QR_OK) {
        ctx->st = qr_kv_set(ctx->list, &kv);
    }
    return ctx->st == QR_OK ? 0 : -1;
}

qr_status qr_h5_attrs_read_all(hid_t obj, const char *where, const char *const *skip, qr_kvlist *l)
{
    attr_iter_ctx ctx = {where, skip, l, QR_OK};
    hsize_t idx = 0;
    if (H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_iter_cb, &ctx) < 0) {
        return ctx.st != QR_OK ? ctx.st
                               : qr_fail(QR_ERR_IO, "%s: cannot list the attributes", where);
    }
    return QR_OK;
}

qr_status qr_h5_dataset_dims(hid_t loc, const char *name, const char *where, int ndim,
                             hsize_t *dims)
{
    qr_status st = QR_OK;
    hid_t ds = -1, space = -1;
    int found;
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0) {
        return qr_fail(QR_ERR_INPUT, "%s: dataset '%s' is missing", where, name);
    }
    ds = H5Dopen2(loc, name, H5P_DEFAULT);
    space = ds >= 0 ? H5Dget_space(ds) : -1;
    if (ds < 0 || space < 0) {
        st = qr_fail(QR_ERR_INPUT, "%s: '%s' is not a readable dataset", where, name);
        goto done;
    }
    found = H5Sget_simple_extent_ndims(space);
    if (found != ndim) {
        st = qr_fail(QR_ERR_INPUT, "%s: dataset '%s' has the wrong rank (expected %d, found %d)",
                     where, name, ndim, found);
        goto done;
    }
    H5Sget_simple_extent_dims(space, dims, NULL);
done:
    if (space >= 0) {
        H5Sclose(space);
    }
    if (ds >= 0) {
        H5Dclose(ds);
    }
    return st;
}

uint64_t qr_h5_checksum(const void *data, size_t n)
{
    uint64_t h = XXH3_64bits(data, n);
    return h ? h : 1;
}

void *qr_h5_checksum_begin(void)
{
    XXH3_state_t *s = XXH3_createState();
    if (!s) {
        qr_fail(QR_ERR_NOMEM, "cannot allocate a checksum state");
    } else {
        XXH3_64bits_reset(s);
    }
    return s;
}

void qr_h5_checksum_add(void *state, const void *data, size_t n)
{
    XXH3_64bits_update(state, data, n);
}

uint64_t qr_h5_checksum_end(void *state)
{
    uint64_t h = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    return h ? h : 1;
}

qr_status qr_h5_checksum_write(hid_t ds, const char *name, uint64_t xxh3)
{
    qr_status st = QR_OK;
    hid_t space = H5Screate(H5S_SCALAR), attr = -1;
    if (space < 0 ||
        (attr = H5Acreate2(ds, QR_H5_CHECKSUM_ATTR, H5T_STD_U64LE, space, H5P_DEFAULT,
                           H5P_DEFAULT)) < 0 ||
        H5Awrite(attr, H5T_NATIVE_UINT64, &xxh3) < 0) {
        st = qr_fail(QR_ERR_IO, "dataset '%s': cannot write its checksum", name);
    }
    if (attr >= 0) {
        H5Aclose(attr);
    }
    if (space >= 0) {
        H5Sclose(space);
    }
    return st;
}

qr_status qr_h5_checksum_verify(hid_t ds, const char *where, const char *name, const void *data,
                                size_t n)
{
    uint64_t stored = 0, found;
    hid_t attr;
    herr_t rc;
    if (H5Aexists(ds, QR_H5_CHECKSUM_ATTR) <= 0) {
        return QR_OK;
    }
    attr = H5Aopen(ds, QR_H5_CHECKSUM_ATTR, H5P_DEFAULT);
    rc = attr >= 0 ? H5Aread(attr, H5T_NATIVE_UINT64, &stored) : -1;
    if (attr >= 0) {
        H5Aclose(attr);
    }
    if (rc < 0) {
        return qr_fail(QR_ERR_INPUT, "%s: dataset '%s': cannot read its checksum", where, name);
    }
    found = qr_h5_checksum(data, n);
    if (found != stored) {
        return qr_fail(QR_ERR_INPUT,
                       "%s: dataset '%s': checksum mismatch (expected xxh3 %016" PRIx64
                       ", found %016" PRIx64 "; the file is damaged)",
                       where, name, stored, found);
    }
    return QR_OK;
}

qr_status qr_h5_dataset_write(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int ndim,
                              const hsize_t *dims, const void *buf, hid_t dxpl, uint64_t xxh3)
{
    qr_status st = QR_OK;
    hid_t dcpl = qr_h5_dcpl_plain();
    hid_t space = H5Screate_simple(ndim, dims, NULL);
    hid_t ds = -1, msel = -1, fsel = -1;
    unsigned char dummy = 0;
    if (dcpl < 0 || space < 0) {
        st = qr_fail(QR_ERR_INTERNAL, "dataset '%s': cannot set up its properties", name);
        goto done;
    }
    ds = H5Dcreate2(loc, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds < 0) {
        st = qr_fail(QR_ERR_IO, "dataset '%s': cannot create it", name);
        goto done;
    }
    if (xxh3 != 0) {
        QR_CHECK(qr_h5_checksum_write(ds, name, xxh3));
    }
    if (buf) {
        /* An injected fault skips the write itself: on a collective transfer the other ranks
         * would wait in it, so only a rank that writes alone (buf given, serial file or the
         * owner of a module) may fail here; qr_h5_agree then ends the write on every rank. */
        if ((dxpl == H5P_DEFAULT && qr_fault_hit(QR_FAULT_WRITE)) ||
            H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, dxpl, buf) < 0) {
            st = qr_fail(QR_ERR_IO, "dataset '%s': write failed", name);
        }
    } else {
        msel = H5Scopy(space);
        fsel = H5Scopy(space);
        if (msel < 0 || fsel < 0 || H5Sselect_none(msel) < 0 || H5Sselect_none(fsel) < 0 ||
            H5Dwrite(ds, mtype, msel, fsel, dxpl, &dummy) < 0) {
            st = qr_fail(QR_ERR_IO, "dataset '%s': empty collective write failed", name);
        }
    }
done:
    if (fsel >= 0) {
        H5Sclose(fsel);
    }
    if (msel >= 0) {
        H5Sclose(msel);
    }
    if (ds >= 0) {
        H5Dclose(ds);
    }
    if (space >= 0) {
        H5Sclose(space);
    }
    if (dcpl >= 0) {
        H5Pclose(dcpl);
    }
    return st;
}

hid_t qr_h5_dcpl_plain(void)
{
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl >= 0 &&
        (H5Pset_obj_track_times(dcpl, 0) < 0 || H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0)) {
        H5Pclose(dcpl);
        dcpl = -1;
    }
    return dcpl;
}

hid_t qr_h5_gcpl_plain(void)
{
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    if (gcpl >= 0 && H5Pset_obj_track_times(gcpl, 0) < 0) {
        H5Pclose(gcpl);
        gcpl = -1;
    }
    return gcpl;
}

qr_status qr_h5_attr_read_text(hid_t obj, const char *name, const char *where, char **text)
{
    qr_status st = QR_OK;
    hid_t attr = -1, type = -1, mtype = -1;
    size_t size;
    *text = NULL;
    if (H5Aexists(obj, name) <= 0) {
        return qr_fail(QR_ERR_INPUT, "%s: attribute '%s' is missing", where, name);
    }
    attr = H5Aopen(obj, name, H5P_DEFAULT);
    type = attr >= 0 ? H5Aget_type(attr) : -1;
    if (type < 0 || H5Tget_class(type) != H5T_STRING || H5Tis_variable_str(type) > 0) {
        st = qr_fail(QR_ERR_INPUT, "%s: attribute '%s' is not a fixed-length string", where, name);
        goto done;
    }
    size = H5Tget_size(type);
    mtype = H5Tcopy(type);
    QR_CHECK(qr_calloc(text, size + 1, 1, name));
    if (mtype < 0 || H5Aread(attr, mtype, *text) < 0) {
        st = qr_fail(QR_ERR_IO, "%s: cannot read attribute '%s'", where, name);
    }
done:
    if (st != QR_OK) {
        qr_free(text);
    }
    if (mtype >= 0) {
        H5Tclose(mtype);
    }
    if (type >= 0) {
        H5Tclose(type);
    }
    if (attr >= 0) {
        H5Aclose(attr);
    }
    return st;
}

/* fs.h: small file-system helpers shared by the readers and writers. Not collective. */
#ifndef QR_IO_FS_H
#define QR_IO_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "src/status.h"

/* Read a whole file (at most max_bytes; QR_ERR_INPUT naming the file when larger). *data is
 * NUL-terminated (not counted in *size); the caller frees it. */
qr_status qr_fs_read_all(const char *path, size_t max_bytes, char **data, size_t *size);

/* Size of a regular file; QR_ERR_INPUT naming the file when it is missing or not a regular file. */
qr_status qr_fs_file_size(const char *path, uint64_t *size);

int qr_fs_is_dir(const char *path);
int qr_fs_exists(const char *path);

/* mkdir -p. */
qr_status qr_fs_mkdirs(const char *path);

/* Create a new file beside path named path + ".tmp." + 16 random hex digits (tmp, tmpsize bytes),
 * opened for writing with O_EXCL | O_NOFOLLOW, so no existing file or planted link is written. */
qr_status qr_fs_create_temp(const char *path, char *tmp, size_t tmpsize, int *fd);

/* Write `size` bytes to a new temporary file beside path (qr_fs_create_temp), fsync, and rename
 * onto path: the file appears whole or not at all. */
qr_status qr_fs_write_atomic(const char *path, const void *data, size_t size);

/* A file written as a stream and renamed into place whole: open creates its temporary file
 * (qr_fs_create_temp); write appends; commit flushes, fsyncs, closes and renames it onto path;
 * abort (also after a failed write or commit; harmless when nothing is open) removes it. Every
 * step can be failed by the fault injection of io/fault.h. */
typedef struct {
    char path[4096], tmp[4200];
    FILE *f;
    uint64_t bytes; /* written so far */
} qr_fs_stream;

qr_status qr_fs_stream_open(qr_fs_stream *s, const char *path);
qr_status qr_fs_stream_write(qr_fs_stream *s, const void *data, size_t size);
qr_status qr_fs_stream_commit(qr_fs_stream *s);
void qr_fs_stream_abort(qr_fs_stream *s);

/* A folder of outputs that appears whole or not at all. stage creates a new folder beside out
 * (out + ".tmp." + 16 random hex digits, mode 0700) for the writers; publish moves every file in it
 * into out (out and subfolders created when missing), fsyncs, and removes the staging folder;
 * a publish that fails removes the files it had moved. discard removes the staging folder and
 * what is in it (only regular files and folders the writers made; harmless when it is missing). */
qr_status qr_fs_stage_dir(const char *out, char *staging, size_t size);
qr_status qr_fs_publish_dir(const char *staging, const char *out);
void qr_fs_discard_dir(const char *staging);

/* Reserve `bytes` of disk for the file at path: a writer that reserves what it will write before
 * HDF5 writes it finds a full disk (ENOSPC) here, with a clean error, instead of inside HDF5, which
 * can hang a parallel close or crash at shutdown after a failed write. keep_size false:
 * posix_fallocate, which extends the file (and also meets a file-size limit, EFBIG); for HDF5's
 * MPI-IO driver, which truncates the file to its real end at close. keep_size true: Linux
 * fallocate(FALLOC_FL_KEEP_SIZE), the size unchanged; for serial HDF5 files, which are not
 * truncated at close. QR_OK when the file system cannot reserve (EINVAL, EOPNOTSUPP, ENOSYS). */
qr_status qr_fs_reserve(const char *path, uint64_t bytes, bool keep_size);

/* fsync the folder that holds `path`, so a rename into it survives a crash. */
qr_status qr_fs_sync_parent(const char *path);

typedef enum { QR_OUT_FILE, QR_OUT_DIR } qr_out_kind;

/* Check an output path before any work (`what` names the option, e.g. "--out"): not empty; a file
 * output not an existing folder, a folder output not an existing file; its folder (or, for an
 * existing folder output, itself) exists and is writable; not equal to, inside, or a parent of any
 * of the n_inputs input paths (NULL and missing inputs are skipped), compared after realpath.
 * QR_ERR_INPUT (exit 2) with one line otherwise. Not collective: every rank may call it. */
qr_status qr_fs_check_output(const char *what, const char *out, qr_out_kind kind,
                             const char *const *inputs, size_t n_inputs);

/* snprintf into buf; QR_ERR_INPUT when the path does not fit. */
qr_status qr_fs_join(char *buf, size_t bufsize, const char *dir, const char *name);

#endif

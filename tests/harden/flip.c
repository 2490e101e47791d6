/* flip.c: flip one byte of a contiguous dataset in an HDF5 file in place (pwrite at the offset
 * H5Dget_offset gives), without HDF5 rewriting anything: a damaged part or checkpoint.
 *
 * usage: harden_flip FILE DATASET BYTE_INDEX */
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    hid_t f, d;
    haddr_t off;
    hsize_t size;
    long long idx;
    unsigned char b;
    int fd;
    if (argc != 4) {
        fprintf(stderr, "usage: %s FILE DATASET BYTE_INDEX\n", argv[0]);
        return 2;
    }
    idx = atoll(argv[3]);
    f = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
    d = f < 0 ? -1 : H5Dopen2(f, argv[2], H5P_DEFAULT);
    if (d < 0) {
        fprintf(stderr, "%s: no dataset %s\n", argv[1], argv[2]);
        return 1;
    }
    off = H5Dget_offset(d);
    size = H5Dget_storage_size(d);
    H5Dclose(d);
    H5Fclose(f);
    if (off == HADDR_UNDEF || idx < 0 || (hsize_t)idx >= size) {
        fprintf(stderr, "%s: %s not contiguous or byte %lld outside it\n", argv[1], argv[2], idx);
        return 1;
    }
    fd = open(argv[1], O_RDWR);
    if (fd < 0 || pread(fd, &b, 1, (off_t)(off + idx)) != 1) {
        return 1;
    }
    b ^= 0x10;
    if (pwrite(fd, &b, 1, (off_t)(off + idx)) != 1 || close(fd) != 0) {
        return 1;
    }
    return 0;
}

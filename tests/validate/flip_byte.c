/* flip_byte.c: test tool for validate.corrupt: flip bits of one byte of one module's packed INT4
 * weight in a checkpoint, in place, without HDF5 rewriting anything: H5Dget_offset gives the file
 * offset of the contiguous dataset MODULE/main/packed, and the byte is changed with pwrite.
 *
 * usage: qr_test_flip_byte FILE MODULE BYTE_INDEX XOR_MASK   (prints the file offset changed) */
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    char path[512];
    hid_t f, d;
    haddr_t off;
    hsize_t size;
    long long idx;
    unsigned long mask;
    unsigned char b;
    int fd;
    if (argc != 5) {
        fprintf(stderr, "usage: %s FILE MODULE BYTE_INDEX XOR_MASK\n", argv[0]);
        return 2;
    }
    idx = atoll(argv[3]);
    mask = strtoul(argv[4], NULL, 0);
    snprintf(path, sizeof path, "%s/main/packed", argv[2]);
    f = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
    d = f < 0 ? -1 : H5Dopen2(f, path, H5P_DEFAULT);
    if (d < 0) {
        fprintf(stderr, "%s: no dataset %s\n", argv[1], path);
        return 1;
    }
    off = H5Dget_offset(d);
    size = H5Dget_storage_size(d);
    H5Dclose(d);
    H5Fclose(f);
    if (off == HADDR_UNDEF || idx < 0 || (hsize_t)idx >= size) {
        fprintf(stderr, "%s: %s is not contiguous or byte %lld is outside its %llu bytes\n",
                argv[1], path, idx, (unsigned long long)size);
        return 1;
    }
    fd = open(argv[1], O_RDWR);
    if (fd < 0 || pread(fd, &b, 1, (off_t)(off + (haddr_t)idx)) != 1) {
        fprintf(stderr, "%s: cannot read byte at offset %llu\n", argv[1],
                (unsigned long long)(off + (haddr_t)idx));
        return 1;
    }
    b ^= (unsigned char)mask;
    if (pwrite(fd, &b, 1, (off_t)(off + (haddr_t)idx)) != 1 || close(fd) != 0) {
        fprintf(stderr, "%s: cannot write byte\n", argv[1]);
        return 1;
    }
    printf("%llu\n", (unsigned long long)(off + (haddr_t)idx));
    return 0;
}

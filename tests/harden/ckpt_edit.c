/* ckpt_edit.c: damage a checkpoint's structure for harden.structure, through HDF5:
 *   ckpt_edit FILE delete PATH    remove the link PATH (a module group or a tensor)
 *   ckpt_edit FILE reshape PATH   replace float dataset PATH by one with one more row (zeros)
 *   ckpt_edit FILE nan PATH       set element 0 of float dataset PATH to NaN and drop its checksum
 *                                 (as a file written before checksums) */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    hid_t f, d, s;
    int ok = 0;
    if (argc != 4) {
        fprintf(stderr, "usage: %s FILE delete|reshape|nan PATH\n", argv[0]);
        return 2;
    }
    f = H5Fopen(argv[1], H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) {
        return 1;
    }
    if (strcmp(argv[2], "delete") == 0) {
        ok = H5Ldelete(f, argv[3], H5P_DEFAULT) >= 0;
    } else if (strcmp(argv[2], "reshape") == 0) {
        hsize_t dims[8] = {0};
        int nd;
        float *zeros;
        d = H5Dopen2(f, argv[3], H5P_DEFAULT);
        s = d >= 0 ? H5Dget_space(d) : -1;
        nd = s >= 0 ? H5Sget_simple_extent_dims(s, dims, NULL) : -1;
        if (nd >= 1) {
            H5Sclose(s);
            H5Dclose(d);
            dims[0] += 1;
            zeros = calloc(dims[0] * (nd > 1 ? dims[1] : 1), sizeof *zeros);
            s = H5Screate_simple(nd, dims, NULL);
            ok = zeros && H5Ldelete(f, argv[3], H5P_DEFAULT) >= 0 &&
                 (d = H5Dcreate2(f, argv[3], H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT,
                                 H5P_DEFAULT)) >= 0 &&
                 H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros) >= 0;
            free(zeros);
        }
        H5Sclose(s);
        H5Dclose(d);
    } else if (strcmp(argv[2], "nan") == 0) {
        hsize_t start[1] = {0}, one[1] = {1}, dims[8];
        float v = NAN;
        hid_t m = H5Screate_simple(1, one, NULL);
        int nd;
        d = H5Dopen2(f, argv[3], H5P_DEFAULT);
        s = H5Dget_space(d);
        nd = H5Sget_simple_extent_dims(s, dims, NULL);
        if (nd == 1 || nd == 2) {
            hsize_t st2[2] = {0, 0}, c2[2] = {1, 1};
            H5Sselect_hyperslab(s, H5S_SELECT_SET, nd == 1 ? start : st2, NULL, nd == 1 ? one : c2,
                                NULL);
            ok = H5Dwrite(d, H5T_NATIVE_FLOAT, m, s, H5P_DEFAULT, &v) >= 0 &&
                 (H5Aexists(d, "xxh3") <= 0 || H5Adelete(d, "xxh3") >= 0);
        }
        H5Sclose(m);
        H5Sclose(s);
        H5Dclose(d);
    }
    H5Fclose(f);
    if (!ok) {
        fprintf(stderr, "%s: cannot %s %s\n", argv[1], argv[2], argv[3]);
    }
    return ok ? 0 : 1;
}

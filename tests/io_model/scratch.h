/* scratch.h: removal of the scratch folders the io_model tests write (qr_test_tmpdir), so that
 * repeated runs do not fill $TMPDIR. Only called after the checks, and only on the test's own
 * folder. */
#ifndef QR_TEST_IO_MODEL_SCRATCH_H
#define QR_TEST_IO_MODEL_SCRATCH_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* rm -r path (files and folders; symbolic links are removed, not followed). */
static inline void qr_test_remove_tree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        return;
    }
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        char child[4352];
        while (d && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
                continue;
            }
            int n = snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            if (n > 0 && (size_t)n < sizeof child) {
                qr_test_remove_tree(child);
            }
        }
        if (d) {
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

#endif

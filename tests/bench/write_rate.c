/* write_rate.c: a plain sequential write of N bytes (4 MiB writes, then fsync), the baseline the
 * checkpoint assembly's write rate is compared with.
 *
 *   bench_write_rate FILE BYTES     prints "plain write: B bytes in S s = R MiB/s" */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const size_t block = (size_t)4 << 20;
    unsigned long long total, done = 0;
    char *buf;
    struct timespec a, b;
    double s;
    int fd;
    if (argc != 3) {
        fprintf(stderr, "usage: bench_write_rate FILE BYTES\n");
        return 2;
    }
    total = strtoull(argv[2], NULL, 10);
    buf = malloc(block);
    memset(buf, 0x5a, block);
    clock_gettime(CLOCK_MONOTONIC, &a);
    fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    while (done < total) {
        size_t n = total - done < block ? (size_t)(total - done) : block;
        ssize_t w = write(fd, buf, n);
        if (w <= 0) {
            perror("write");
            return 1;
        }
        done += (unsigned long long)w;
    }
    fsync(fd);
    close(fd);
    clock_gettime(CLOCK_MONOTONIC, &b);
    s = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
    printf("plain write: %llu bytes in %.3f s = %.1f MiB/s\n", total, s,
           (double)total / 1048576.0 / s);
    unlink(argv[1]);
    free(buf);
    return 0;
}

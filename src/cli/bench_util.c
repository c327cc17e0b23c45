/* Clocks, medians and RSS for the benchmark commands. */
#include "cli/bench_util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double dw_cli_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double dw_cli_median(double *v, size_t n) {
    if (n == 0) return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Reads "Rss:" from /proc/self/smaps_rollup, which walks the page tables (statm lags: the
 * kernel batches per-thread RSS counters), with open/read into a stack buffer so that
 * measuring does not itself allocate. */
long dw_cli_rss_bytes(void) {
    char buf[4096];
    int fd = open("/proc/self/smaps_rollup", O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    const char *p = strstr(buf, "\nRss:");
    long kb;
    if (!p || sscanf(p + 5, "%ld", &kb) != 1) return -1;
    return kb * 1024;
}

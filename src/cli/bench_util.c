/* Clocks, medians, RSS and huge-page mappings for the benchmark commands. */
#include "cli/bench_util.h"

#include <fcntl.h>
#include <limits.h>
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

double dw_cli_now_s(void) { return dw_cli_now_ms() * 1e-3; }

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

double dw_cli_huge_mapped_fraction(const char *dir) {
    char real[PATH_MAX];
    if (!realpath(dir, real)) return -1;
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[PATH_MAX + 256];
    int in_weights = 0;
    long rss = 0, pmd = 0, kb;
    unsigned long a, b;
    size_t dl = strlen(real);
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%lx-%lx", &a, &b) == 2) { /* a mapping's first line: addresses ... path */
            const char *path = strchr(line, '/');
            size_t n = path ? strcspn(path, "\n") : 0;
            const char *dir = real;
            in_weights = path && !strncmp(path, dir, dl) && n > 12 && !strncmp(path + n - 12, ".safetensors", 12);
        } else if (in_weights && sscanf(line, "Rss: %ld", &kb) == 1) rss += kb;
        else if (in_weights && sscanf(line, "FilePmdMapped: %ld", &kb) == 1) pmd += kb;
    }
    fclose(f);
    return rss > 0 ? (double)pmd / rss : -1;
}

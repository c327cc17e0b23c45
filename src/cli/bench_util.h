/* Small helpers shared by the benchmark commands: clocks, medians, process RSS, huge pages. */
#ifndef DW_CLI_BENCH_UTIL_H
#define DW_CLI_BENCH_UTIL_H
#include <stddef.h>

double dw_cli_now_ms(void);                  /* monotonic clock, milliseconds */
double dw_cli_now_s(void);                   /* the same clock, seconds */
double dw_cli_median(double *values, size_t n); /* sorts values in place */
long dw_cli_rss_bytes(void);                 /* resident set size of this process */
/* Of this process's resident pages of files named *.safetensors under dir (a model's weights),
 * the fraction mapped with huge pages (FilePmdMapped / Rss in /proc/self/smaps); -1 if unknown.
 * Which pages the page cache holds as huge folios depends on how the file was last read or
 * written, and TLB misses can slow decode (docs/PERFORMANCE-HISTORY.md), so the benchmark reports it. */
double dw_cli_huge_mapped_fraction(const char *dir);

#endif

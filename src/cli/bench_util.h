/* Small helpers shared by the benchmark commands: clocks, medians, process RSS. */
#ifndef DW_CLI_BENCH_UTIL_H
#define DW_CLI_BENCH_UTIL_H
#include <stddef.h>

double dw_cli_now_ms(void);                  /* monotonic clock, milliseconds */
double dw_cli_median(double *values, size_t n); /* sorts values in place */
long dw_cli_rss_bytes(void);                 /* resident set size of this process */

#endif

/* Fresh ids (the system's random source) and the wall clock, for the server's records. */
#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>

#include "core/assert.h"
#include "server/server_impl.h"

void srv_new_id(const char *prefix, char *out, size_t size) {
    uint8_t r[12];
    DW_ASSERT(getrandom(r, sizeof r, 0) == (ssize_t)sizeof r);
    int n = snprintf(out, size, "%s", prefix);
    for (int i = 0; i < 12 && (size_t)n + 2 < size; i++) n += snprintf(out + n, size - (size_t)n, "%02x", r[i]);
}

double srv_wall_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

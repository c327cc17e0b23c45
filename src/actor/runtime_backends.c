/* The runtime's backends: each opened once, on first use by name, and shared by every actor
 * and model of the runtime. */
#include <string.h>

#include "actor/runtime_impl.h"
#include "backend/backend.h"

dw_status dw_runtime_backend(dw_runtime *rt, const char *name, dw_backend **out, dw_error *err) {
    if (!name) name = "cpu";
    dw_status st = DW_OK;
    pthread_mutex_lock(&rt->lock);
    *out = NULL;
    for (int i = 0; i < rt->backend_count; i++)
        if (!strcmp(dw_backend_name(rt->backends[i]), name)) *out = rt->backends[i];
    if (!*out) {
        if (rt->backend_count == DW_MAX_BACKENDS) {
            st = dw_error_set(err, DW_ERR_LIMIT, "runtime: too many backends");
        } else {
            st = dw_backend_open(name, out, err);
            if (st == DW_OK) rt->backends[rt->backend_count++] = *out;
        }
    }
    pthread_mutex_unlock(&rt->lock);
    return st;
}

void dw__runtime_close_backends(dw_runtime *rt) {
    for (int i = 0; i < rt->backend_count; i++) dw_backend_close(rt->backends[i]);
    rt->backend_count = 0;
}

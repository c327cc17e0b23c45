/* Shared by the actor tests: calls an export of an actor with up to two i32 arguments and one
 * i32 result. */
#ifndef DW_TEST_ACTOR_CALL_H
#define DW_TEST_ACTOR_CALL_H

#include "driftwood/actor.h"

static inline dw_status actor_call(dw_actor *a, const char *name, int n, int32_t a0, int32_t a1, int32_t *result,
                                   dw_error *err) {
    dw_value in[2] = {{DW_I32, {.i32 = a0}}, {DW_I32, {.i32 = a1}}}, out;
    size_t nres;
    dw_status st = dw_actor_invoke(a, name, in, (size_t)n, &out, 1, &nres, err);
    if (st == DW_OK) *result = out.of.i32;
    return st;
}

#endif

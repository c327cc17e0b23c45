/* Guest modules built into the driftwood program (the benchmark actor), so that benchmarks
 * need no files beside the binary. The Makefile passes the .wasm path. */
#include "cli/embedded_guests.h"

#ifndef DW_BENCH_ACTOR_WASM
#error "DW_BENCH_ACTOR_WASM must name build/guests/bench_actor.wasm"
#endif

__asm__(".section .rodata\n"
        ".balign 16\n"
        "dw__bench_actor_wasm:\n"
        ".incbin \"" DW_BENCH_ACTOR_WASM "\"\n"
        "dw__bench_actor_wasm_end:\n"
        ".previous\n");

extern const unsigned char dw__bench_actor_wasm[], dw__bench_actor_wasm_end[];

const unsigned char *dw__embedded_bench_actor(size_t *len) {
    *len = (size_t)(dw__bench_actor_wasm_end - dw__bench_actor_wasm);
    return dw__bench_actor_wasm;
}

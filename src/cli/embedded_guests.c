/* Guest modules built into the driftwood program (the benchmark actor and the chat actor), so that benchmarks
 * need no files beside the binary. The Makefile passes the .wasm path. */
#include "cli/embedded_guests.h"

#if !defined(DW_GUEST_DIR)
#error "DW_GUEST_DIR must name the folder of the built guests (build/guests)"
#endif

/* Embeds DW_GUEST_DIR/FILE between the symbols NAME and NAME_end. */
#define DW_EMBED(name, file)                                                                 \
    __asm__(".section .rodata\n.balign 16\n" #name ":\n.incbin \"" DW_GUEST_DIR "/" file "\"\n" \
            #name "_end:\n.previous\n");                                                   \
    extern const unsigned char name[], name##_end[];

DW_EMBED(dw__bench_actor_wasm, "bench_actor.wasm")
DW_EMBED(dw__chat_actor_wasm, "chat.wasm")

const unsigned char *dw__embedded_bench_actor(size_t *len) {
    *len = (size_t)(dw__bench_actor_wasm_end - dw__bench_actor_wasm);
    return dw__bench_actor_wasm;
}

const unsigned char *dw__embedded_chat_actor(size_t *len) {
    *len = (size_t)(dw__chat_actor_wasm_end - dw__chat_actor_wasm);
    return dw__chat_actor_wasm;
}

/* Guest modules embedded in the driftwood program. */
#ifndef DW_CLI_EMBEDDED_GUESTS_H
#define DW_CLI_EMBEDDED_GUESTS_H
#include <stddef.h>
/* The benchmark actor (bench/guests/bench_actor.c). */
const unsigned char *dw__embedded_bench_actor(size_t *len);
/* The chat actor (examples/chat/actor.c). */
const unsigned char *dw__embedded_chat_actor(size_t *len);
#endif

/* Embedding Driftwood in a C program, through the public headers only: open a runtime,
 * register a model by name, load an actor module, start the actor, send it one message and
 * print what it answers. Build it against an installed Driftwood with the Makefile beside it.
 *
 * Usage: embed MODEL_DIR ACTOR.wasm MESSAGE
 *   e.g. embed models/driftwood-tiny build/guests/chat.wasm "Hello"
 * The actor is meant to be the chat actor (examples/chat/actor.c): it takes its settings as
 * WASI arguments and streams its reply (greedy, at most 16 tokens here) to the output
 * callback, which this program prints on stdout. A summary goes to stderr. */
#include <driftwood/actor.h>
#include <driftwood/runtime.h>
#include <driftwood/version.h>
#include <stdio.h>
#include <string.h>

/* The actor's output, as it streams. */
static void print_output(void *user, const char *bytes, size_t len) {
    (void)user; /* what dw_actor_options.output_user held: unused here */
    fwrite(bytes, 1, len, stdout);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL_DIR ACTOR.wasm MESSAGE\n", argv[0]);
        return 2;
    }
    const char *model_dir = argv[1], *wasm_path = argv[2], *message = argv[3];
    dw_error err = {0};
    dw_runtime *rt = NULL;
    dw_module *module = NULL;
    dw_actor *actor = NULL;
    int rc = 1;

    /* One runtime per process; it owns the backends, the models and the compiled-module cache. */
    if (dw_runtime_create(NULL, &rt, &err) != DW_OK) goto fail;

    /* Actors open models by name, never by path: the host decides which models exist. */
    if (dw_runtime_register_model(rt, "default", model_dir, &err) != DW_OK) goto fail;

    /* Compiles the module (or takes it from the cache); one module can start many actors. */
    if (dw_module_load_file(rt, wasm_path, &module, &err) != DW_OK) goto fail;

    /* The actor: its own store and memory, on the CPU backend, with WASI arguments. */
    const char *actor_args[] = {"chat", "--model", "default", "-n", "16"};
    dw_actor_options options = {
        .backend = "cpu",
        .argc = 5,
        .argv = actor_args,
        .output = print_output,
    };
    if (dw_actor_create(rt, module, &options, &actor, &err) != DW_OK) goto fail;

    /* One message in, the reply streams out through print_output. */
    if (dw_actor_send(actor, message, strlen(message), &err) != DW_OK) goto fail;
    printf("\n");

    dw_actor_stats stats;
    dw_actor_stats_get(actor, &stats);
    fprintf(stderr, "driftwood %s (wasmtime %s): prefilled %llu tokens, decoded %llu\n", dw_version(),
            dw_wasmtime_version(), (unsigned long long)stats.prefill_tokens, (unsigned long long)stats.decode_tokens);
    rc = 0;
    goto done;

fail:
    fprintf(stderr, "embed: %s (%s)\n", err.message, dw_status_name(err.status));
done:
    /* Actors and modules before the runtime that made them. */
    dw_actor_free(actor);
    dw_module_free(module);
    dw_runtime_free(rt);
    return rc;
}

/* The process-wide Wasmtime engine, the epoch ticker, and the conversion of Wasmtime errors
 * and traps into dw_error records. */
#include "wasm/engine.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "wasm/memory_creator.h"

static wasm_engine_t *engine;
static dw_error engine_error;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static _Thread_local dw_memory_context *current_memory_context;

static void engine_create(void) {
    wasm_config_t *config = wasm_config_new();
    wasmtime_config_epoch_interruption_set(config, true);
    wasmtime_config_parallel_compilation_set(config, true);
    wasmtime_config_cranelift_opt_level_set(config, WASMTIME_OPT_LEVEL_SPEED);
    /* Copy-on-write images would map module data outside our regions. */
    wasmtime_config_memory_init_cow_set(config, false);
    wasmtime_memory_creator_t creator = {
        .env = NULL,
        .new_memory = dw__memory_creator_new,
        .finalizer = NULL,
    };
    wasmtime_config_host_memory_creator_set(config, &creator);
    engine = wasm_engine_new_with_config(config);
    if (!engine) dw_error_set(&engine_error, DW_ERR_UNSUPPORTED, "wasmtime refused the engine configuration");
}

wasm_engine_t *dw__wasm_engine(dw_error *err) {
    pthread_once(&engine_once, engine_create);
    if (!engine && err) *err = engine_error;
    return engine;
}

const char *dw__wasm_engine_tag(void) { return "wasmtime-48.0.8-cranelift-speed-epoch-hostmem-v1"; }

static void *epoch_ticker(void *arg) {
    struct timespec tick = {0, DW_EPOCH_TICK_MS * 1000000L};
    for (;;) {
        nanosleep(&tick, NULL);
        wasmtime_engine_increment_epoch(engine);
    }
    return NULL;
}

static pthread_once_t ticker_once = PTHREAD_ONCE_INIT;
static void ticker_start(void) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, epoch_ticker, NULL) != 0)
        fprintf(stderr, "driftwood: warning: cannot start the epoch ticker; timeouts will not fire\n");
    pthread_attr_destroy(&attr);
}

void dw__wasm_epoch_ticker_start(void) {
    if (dw__wasm_engine(NULL)) pthread_once(&ticker_once, ticker_start);
}

void dw__memory_context_set(dw_memory_context *mc) { current_memory_context = mc; }
dw_memory_context *dw__memory_context_get(void) { return current_memory_context; }

static const char *trap_code_name(wasmtime_trap_code_t code) {
    switch (code) {
    case WASMTIME_TRAP_CODE_STACK_OVERFLOW: return "stack exhausted";
    case WASMTIME_TRAP_CODE_MEMORY_OUT_OF_BOUNDS: return "out-of-bounds memory access";
    case WASMTIME_TRAP_CODE_HEAP_MISALIGNED: return "misaligned memory access";
    case WASMTIME_TRAP_CODE_TABLE_OUT_OF_BOUNDS: return "out-of-bounds table access";
    case WASMTIME_TRAP_CODE_INDIRECT_CALL_TO_NULL: return "indirect call to null";
    case WASMTIME_TRAP_CODE_BAD_SIGNATURE: return "bad indirect call signature";
    case WASMTIME_TRAP_CODE_INTEGER_OVERFLOW: return "integer overflow";
    case WASMTIME_TRAP_CODE_INTEGER_DIVISION_BY_ZERO: return "integer divide by zero";
    case WASMTIME_TRAP_CODE_BAD_CONVERSION_TO_INTEGER: return "invalid conversion to integer";
    case WASMTIME_TRAP_CODE_UNREACHABLE_CODE_REACHED: return "unreachable";
    case WASMTIME_TRAP_CODE_INTERRUPT: return "interrupt (timeout)";
    case WASMTIME_TRAP_CODE_OUT_OF_FUEL: return "out of fuel";
    default: return "trap";
    }
}

/* Last non-empty line of a Wasmtime message (the cause comes after the backtrace). */
static void last_line(const char *msg, size_t len, char *out, size_t cap) {
    while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' ')) len--;
    size_t start = len;
    while (start && msg[start - 1] != '\n') start--;
    while (start < len && msg[start] == ' ') start++;
    size_t n = len - start < cap - 1 ? len - start : cap - 1;
    memcpy(out, msg + start, n);
    out[n] = 0;
}

/* Wasmtime errors are a chain ("failed to parse...\n\nCaused by:\n    0: ...\n    1: ..."):
 * joins the parts into one line "outer: cause: cause". */
static void join_lines(const char *msg, size_t len, char *out, size_t cap) {
    size_t o = 0, i = 0;
    while (i < len && o + 1 < cap) {
        size_t start = i;
        while (i < len && msg[i] != '\n') i++;
        const char *line = msg + start;
        size_t n = i - start;
        if (i < len) i++;
        while (n && (*line == ' ' || *line == '\t')) line++, n--;
        while (n && line[0] >= '0' && line[0] <= '9') { /* "0: " numbering */
            size_t k = 0;
            while (k < n && line[k] >= '0' && line[k] <= '9') k++;
            if (k + 1 < n && line[k] == ':' && line[k + 1] == ' ') line += k + 2, n -= k + 2;
            break;
        }
        if (n == 0 || (n == 10 && !memcmp(line, "Caused by:", 10)) || !memcmp(line, "Stack backtrace", n < 15 ? n : 15))
            continue;
        if (o && o + 2 < cap) out[o++] = ':', out[o++] = ' ';
        while (n-- && o + 1 < cap) out[o++] = *line++;
    }
    out[o] = 0;
}

dw_status dw__wasm_error_take(wasmtime_error_t *error, wasm_trap_t *trap, dw_error *err) {
    dw_status st = DW_OK;
    if (trap) {
        wasmtime_trap_code_t code;
        wasm_byte_vec_t msg;
        wasm_trap_message(trap, &msg);
        char where[160] = "";
        wasm_frame_t *origin = wasm_trap_origin(trap);
        if (origin) {
            const wasm_name_t *fname = wasmtime_frame_func_name(origin);
            if (fname && fname->size)
                snprintf(where, sizeof where, " in function %.*s", (int)fname->size, fname->data);
            else
                snprintf(where, sizeof where, " in function #%u", wasm_frame_func_index(origin));
            wasm_frame_delete(origin);
        }
        if (wasmtime_trap_code(trap, &code)) {
            st = dw_error_set(err, DW_ERR_TRAP, "trap: %s%s", trap_code_name(code), where);
        } else { /* a host function trapped: the last line of the message names the problem */
            char line[300];
            last_line(msg.data, msg.size, line, sizeof line);
            st = dw_error_set(err, DW_ERR_TRAP, "trap: %s%s", line, where);
        }
        wasm_byte_vec_delete(&msg);
        wasm_trap_delete(trap);
    }
    if (error) {
        if (st == DW_OK) {
            int exit_status;
            wasm_name_t msg;
            wasmtime_error_message(error, &msg);
            char line[400];
            if (wasmtime_error_exit_status(error, &exit_status)) {
                st = dw_error_set(err, DW_ERR_STATE, "guest exited with status %d", exit_status);
            } else if (memmem(msg.data, msg.size, "wasm backtrace", 14)) {
                /* a host function's trap during a call: its message is the last line */
                last_line(msg.data, msg.size, line, sizeof line);
                st = dw_error_set(err, DW_ERR_TRAP, "trap: %s", line);
            } else {
                join_lines(msg.data, msg.size, line, sizeof line);
                st = dw_error_set(err, DW_ERR_TRAP, "%s", line);
            }
            wasm_byte_vec_delete(&msg);
        }
        wasmtime_error_delete(error);
    }
    return st;
}

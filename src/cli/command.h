/* The driftwood command registry: each src/cli/cmd_*.c defines its subcommands with
 * DW_COMMAND, and main.c dispatches on argv[1] (argv[2] too for two-word commands such as
 * "bench decode"). A command returns the process exit code. */
#ifndef DW_CLI_COMMAND_H
#define DW_CLI_COMMAND_H

#include "driftwood/runtime.h"

typedef int (*dw_command_fn)(int argc, char **argv);

typedef struct dw_command {
    const char *name;        /* "run", "bench zerocopy" */
    const char *usage;       /* "run MODULE.wasm [--invoke NAME [ARG...]] ..." */
    const char *description; /* one line */
    dw_command_fn fn;        /* argv[0] is the last word of the command name */
} dw_command;

void dw__command_register(const dw_command *command);

/* Prints "driftwood: error: ..." to stderr and returns 1 (for `return dw_cli_fail(...)`). */
int dw_cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses a whole decimal/float argument or fails with a message naming the option. */
int dw_cli_parse_long(const char *option, const char *text, long min, long max, long *out);
int dw_cli_parse_double(const char *option, const char *text, double *out);

/* The model directory used where --model is optional ($DW_MODEL, else the shipped model). */
const char *dw_cli_default_model_dir(void);

/* Registers the --model arguments (each "DIR" for the name "default", or "NAME=DIR"; none: the
 * default model) with rt. *first_name (may be NULL) gets the first one's name. Returns 0, or 1
 * after printing the error. */
int dw_cli_register_models(dw_runtime *rt, const char *const *specs, int n, const dw_model_use_options *options,
                           const char **first_name);

#define DW_COMMAND_NAMED(ident, name_, usage_, description_)                              \
    static int dw_cmd_##ident(int argc, char **argv);                                     \
    __attribute__((constructor)) static void dw_cmd_register_##ident(void) {              \
        static const dw_command c = {name_, usage_, description_, dw_cmd_##ident};        \
        dw__command_register(&c);                                                          \
    }                                                                                      \
    static int dw_cmd_##ident(int argc, char **argv)

/* DW_COMMAND(generate, usage, description) defines the command "generate". */
#define DW_COMMAND(ident, usage_, description_) DW_COMMAND_NAMED(ident, #ident, usage_, description_)

#endif

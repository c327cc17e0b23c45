/* driftwood: the command-line program. Dispatches to the commands registered with
 * DW_COMMAND in src/cli/cmd_*.c. */
#include "cli/command.h"
#include "driftwood/version.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COMMANDS 64

static const dw_command *commands[MAX_COMMANDS];
static int command_count;

void dw__command_register(const dw_command *command) {
    if (command_count < MAX_COMMANDS) commands[command_count++] = command;
}

int dw_cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("driftwood: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int dw_cli_parse_long(const char *option, const char *text, long min, long max, long *out) {
    char *end;
    errno = 0;
    long v = text ? strtol(text, &end, 10) : 0;
    if (!text || !*text || *end || errno || v < min || v > max) {
        dw_cli_fail("%s expects an integer in [%ld, %ld], got '%s'", option, min, max, text ? text : "");
        return -1;
    }
    *out = v;
    return 0;
}

int dw_cli_parse_double(const char *option, const char *text, double *out) {
    char *end;
    errno = 0;
    double v = text ? strtod(text, &end) : 0;
    if (!text || !*text || *end || errno || v != v) {
        dw_cli_fail("%s expects a number, got '%s'", option, text ? text : "");
        return -1;
    }
    *out = v;
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const dw_command *const *)a)->name, (*(const dw_command *const *)b)->name);
}

static void print_usage(FILE *f) {
    fprintf(f, "usage: driftwood COMMAND [ARGS]\n       driftwood --version\n\ncommands:\n");
    for (int i = 0; i < command_count; i++)
        fprintf(f, "  %-16s %s\n    driftwood %s\n", commands[i]->name, commands[i]->description,
                commands[i]->usage);
}

int main(int argc, char **argv) {
    qsort(commands, command_count, sizeof commands[0], by_name);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("driftwood %s (wasmtime %s, %s)\n", dw_version(), dw_wasmtime_version(), dw_cuda_version());
        return 0;
    }
    /* Two-word commands ("bench decode") take precedence over one-word ones. */
    if (argc >= 3) {
        char two[128];
        snprintf(two, sizeof two, "%s %s", argv[1], argv[2]);
        for (int i = 0; i < command_count; i++)
            if (!strcmp(commands[i]->name, two)) return commands[i]->fn(argc - 2, argv + 2);
    }
    for (int i = 0; i < command_count; i++)
        if (!strcmp(commands[i]->name, argv[1])) return commands[i]->fn(argc - 1, argv + 1);
    dw_cli_fail("unknown command '%s' (try 'driftwood --help')", argv[1]);
    return 2;
}

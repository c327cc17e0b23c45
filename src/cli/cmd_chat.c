/* `driftwood chat`: a conversation with the chat actor (examples/chat/actor.c, embedded in the
 * program). Each line of input is one user turn: from --prompt (repeatable), piped stdin, or a
 * terminal. The actor streams its reply to stdout; after each turn one line of timings goes
 * to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/bench_util.h"
#include "cli/command.h"
#include "cli/embedded_guests.h"
#include "driftwood/actor.h"
#include "driftwood/runtime.h"
#include "driftwood/snapshot.h"

#define MAX_PROMPTS 64

typedef struct chat_options {
    const char *backend, *system, *temp, *top_p, *seed, *max_tokens, *ctx, *resume;
    const char *models[8]; /* --model DIR or NAME=DIR; the first one is the one the actor talks to */
    int n_models;
    const char *prompts[MAX_PROMPTS];
    int n_prompts;
    int kv_f32;
    int echo; /* print each non-interactive turn ("> text") before its reply */
} chat_options;

static int parse_chat_args(int argc, char **argv, chat_options *o) {
    memset(o, 0, sizeof *o);
    o->backend = "cpu";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **slot = !strcmp(a, "--backend") ? &o->backend
                          : !strcmp(a, "--system") ? &o->system : !strcmp(a, "--temp") ? &o->temp
                          : !strcmp(a, "--top-p") ? &o->top_p : !strcmp(a, "--seed") ? &o->seed
                          : !strcmp(a, "-n") ? &o->max_tokens : !strcmp(a, "--ctx") ? &o->ctx
                          : !strcmp(a, "--resume") ? &o->resume : NULL;
        if (!strcmp(a, "--model") && v) {
            if (o->n_models == 8) return dw_cli_fail("chat: at most 8 --model");
            o->models[o->n_models++] = v, i++;
        } else if (!strcmp(a, "--kv-f32")) {
            o->kv_f32 = 1;
        } else if (!strcmp(a, "--echo")) {
            o->echo = 1;
        } else if (!strcmp(a, "--prompt") && v) {
            if (o->n_prompts == MAX_PROMPTS) return dw_cli_fail("chat: at most %d --prompt turns", MAX_PROMPTS);
            o->prompts[o->n_prompts++] = v, i++;
        } else if (slot && v) *slot = v, i++;
        else return dw_cli_fail("chat: unknown or incomplete option '%s'", a);
    }
    double d;
    long l;
    if (o->temp && (dw_cli_parse_double("--temp", o->temp, &d) || d < 0)) return d < 0 ? dw_cli_fail("--temp must be ≥ 0") : 1;
    if (o->top_p && (dw_cli_parse_double("--top-p", o->top_p, &d) || d <= 0 || d > 1))
        return dw_cli_fail("--top-p must be in (0, 1]");
    if (o->seed && dw_cli_parse_long("--seed", o->seed, 0, 0x7FFFFFFFFFFFFFFFL, &l)) return 1;
    if (o->max_tokens && dw_cli_parse_long("-n", o->max_tokens, 1, 1 << 20, &l)) return 1;
    if (o->ctx && dw_cli_parse_long("--ctx", o->ctx, 16, 1 << 24, &l)) return 1;
    return 0;
}

static void write_out(void *user, const char *bytes, size_t len) {
    fwrite(bytes, 1, len, stdout);
    fflush(stdout);
}

typedef struct chat_state {
    dw_runtime *rt;
    dw_module *module;
    dw_actor_options actor_options;
    dw_actor *actor;
} chat_state;

/* "/save FILE" and "/load FILE" between turns. Returns 1 if line was such a command. */
static int snapshot_command(chat_state *c, const char *line, int *rc) {
    dw_error err;
    dw_actor_snapshot_report r;
    *rc = 0;
    if (!strncmp(line, "/save ", 6)) {
        if (dw_actor_snapshot_save(c->actor, line + 6, &r, &err) != DW_OK) return *rc = dw_cli_fail("chat: %s", err.message), 1;
        fprintf(stderr, "[saved %s: %.1f KiB in %.1f ms; memory %.1f KiB of %.1f KiB non-zero; %d session(s)]\n", line + 6,
                r.file_bytes / 1024.0, r.ms, r.memory_saved / 1024.0, r.memory_bytes / 1024.0, r.sessions);
        return 1;
    }
    if (!strncmp(line, "/load ", 6)) {
        dw_actor *restored;
        if (dw_actor_snapshot_restore(c->rt, c->module, &c->actor_options, line + 6, &restored, &r, &err) != DW_OK)
            return *rc = dw_cli_fail("chat: %s", err.message), 1; /* the current actor is kept */
        dw_actor_free(c->actor);
        c->actor = restored;
        fprintf(stderr, "[restored %s in %.1f ms; %d session(s)%s]\n", line + 6, r.ms, r.sessions,
                r.rebuilt_sessions ? ", rebuilt for another model by re-tokenizing and prefilling their text" : "");
        return 1;
    }
    return 0;
}

/* One turn: send it, end the reply's line, print the timings. */
static int chat_turn(chat_state *c, const char *text, size_t len) {
    int rc;
    if (snapshot_command(c, text, &rc)) return rc;
    dw_actor *actor = c->actor;
    dw_error err;
    dw_actor_stats_reset(actor);
    double t0 = dw_cli_now_ms();
    if (dw_actor_send(actor, text, len, &err) != DW_OK) return dw_cli_fail("chat: %s", err.message);
    double wall = dw_cli_now_ms() - t0;
    dw_actor_stats s;
    dw_actor_stats_get(actor, &s);
    printf("\n");
    fflush(stdout);
    double gen_tokens = (double)s.decode_tokens; /* every reply token is decoded into the cache */
    double gen_ms = wall - s.prefill_ms;
    fprintf(stderr, "[prefill %llu tokens in %.1f ms | generated %.0f tokens at %.1f tok/s]\n",
            (unsigned long long)s.prefill_tokens, s.prefill_ms, gen_tokens, gen_ms > 0 ? gen_tokens * 1e3 / gen_ms : 0);
    return 0;
}

DW_COMMAND(chat,
           "chat [--model DIR|NAME=DIR]... [--backend cpu|cuda] [--system TEXT] [--temp T] [--top-p P] [--seed S] [-n N] "
           "[--ctx N] [--kv-f32] [--echo] [--resume SNAPSHOT] [--prompt TEXT]...   (lines /save FILE and /load FILE snapshot the actor)",
           "converse with the chat actor (interactive on a terminal; else one turn per --prompt or stdin line)") {
    chat_options o;
    if (parse_chat_args(argc, argv, &o)) return 1;
    const char *args[32];
    int n = 0;
    args[n++] = "chat";
    args[n++] = "--model", args[n++] = "default"; /* set below to the first registered name */
    int model_arg = n - 1;
    if (o.system) args[n++] = "--system", args[n++] = o.system;
    if (o.temp) args[n++] = "--temp", args[n++] = o.temp;
    if (o.top_p) args[n++] = "--top-p", args[n++] = o.top_p;
    if (o.seed) args[n++] = "--seed", args[n++] = o.seed;
    if (o.max_tokens) args[n++] = "-n", args[n++] = o.max_tokens;
    if (o.ctx) args[n++] = "--ctx", args[n++] = o.ctx;

    dw_error err = {0};
    dw_runtime *rt = NULL;
    dw_module *module = NULL;
    dw_actor *actor = NULL;
    chat_state c = {0};
    int rc = 1;
    size_t wasm_len;
    const unsigned char *wasm = dw__embedded_chat_actor(&wasm_len);
    struct dw_model *model;
    struct dw_tokenizer *tok;
    double load_ms;
    const char *name = "default";
    if (dw_runtime_create(NULL, &rt, &err)) {
        dw_cli_fail("chat: %s", err.message);
        goto done;
    }
    if (dw_cli_register_models(rt, o.models, o.n_models, &(dw_model_use_options){.kv_f32 = o.kv_f32}, &name)) goto done;
    args[model_arg] = name;
    if (dw_runtime_model(rt, name, o.backend, &model, &tok, &load_ms, &err) ||
        dw_module_load_bytes(rt, "chat.wasm", wasm, wasm_len, &module, &err)) {
        dw_cli_fail("chat: %s", err.message);
        goto done;
    }
    fprintf(stderr, "[model %s (%s) loaded on %s in %.1f ms]\n", name, dw_runtime_model_dir(rt, name), o.backend, load_ms);
    c.rt = rt, c.module = module;
    c.actor_options = (dw_actor_options){.backend = o.backend, .argc = n, .argv = args, .inherit_stdio = 1, .output = write_out};
    if (o.resume) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "/load %s", o.resume);
        int load_rc;
        if (!snapshot_command(&c, cmd, &load_rc) || load_rc) goto done;
    } else if (dw_actor_create(rt, module, &c.actor_options, &c.actor, &err)) {
        dw_cli_fail("chat: %s", err.message);
        goto done;
    }
    if (o.n_prompts) {
        for (int i = 0; i < o.n_prompts; i++) {
            if (o.echo) printf("> %s\n", o.prompts[i]), fflush(stdout);
            if (chat_turn(&c, o.prompts[i], strlen(o.prompts[i]))) goto done;
        }
    } else {
        int interactive = isatty(STDIN_FILENO);
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        for (;;) {
            if (interactive) fputs("> ", stdout), fflush(stdout);
            if ((len = getline(&line, &cap, stdin)) < 0) break;
            while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
            if (len == 0) continue;
            if (chat_turn(&c, line, (size_t)len)) {
                free(line);
                goto done;
            }
        }
        free(line);
    }
    rc = 0;
done:
    actor = c.actor;
    dw_actor_free(actor);
    dw_module_free(module);
    dw_runtime_free(rt);
    return rc;
}

/* Builds the chat actor's control messages ("\x01DW1\n", header lines "key=value", an empty
 * line, then the body holding the text items in header order: examples/chat/actor.c reads them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "server/server_impl.h"

static void put(char **buf, size_t *len, size_t *cap, const char *bytes, size_t n) {
    if (*len + n > *cap) {
        *cap = (*len + n) * 2 + 64;
        *buf = realloc(*buf, *cap);
        DW_ASSERT(*buf);
    }
    memcpy(*buf + *len, bytes, n);
    *len += n;
}

void srv_msg_init(srv_msg_builder *b) {
    memset(b, 0, sizeof *b);
    put(&b->head, &b->head_len, &b->head_cap, "\x01" "DW1\n", 5);
}

void srv_msg_set(srv_msg_builder *b, const char *key, const char *value) {
    char line[160];
    int n = snprintf(line, sizeof line, "%s=%s\n", key, value);
    DW_ASSERT(n > 0 && n < (int)sizeof line && !strchr(value, '\n'));
    put(&b->head, &b->head_len, &b->head_cap, line, (size_t)n);
}

void srv_msg_text(srv_msg_builder *b, const char *key, const char *text, size_t len) {
    char v[24];
    snprintf(v, sizeof v, "%zu", len);
    srv_msg_set(b, key, v);
    put(&b->body, &b->body_len, &b->body_cap, text, len);
}

char *srv_msg_finish(srv_msg_builder *b, size_t *len) {
    put(&b->head, &b->head_len, &b->head_cap, "\n", 1);
    if (b->body_len) put(&b->head, &b->head_len, &b->head_cap, b->body, b->body_len);
    free(b->body);
    *len = b->head_len;
    return b->head;
}

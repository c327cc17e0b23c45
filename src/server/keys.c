/* API keys: the --keys file (one "TOKEN [NAME]" per line, '#' comments, blank lines ignored).
 * A key's owner id, which the store records for the actors it creates, is 16 hex digits of the
 * token's SHA-256, so the store holds no token and a key keeps its actors when renamed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sha256.h"
#include "driftwood/file.h"
#include "server/server_impl.h"

#define KEYS_FILE_MAX (4 << 20)

dw_status srv_keys_load(const char *path, srv_key **keys, int *n, dw_error *err) {
    char *text;
    size_t len;
    *keys = NULL, *n = 0;
    if (dw_file_read_all(path, KEYS_FILE_MAX, &text, &len, err) != DW_OK) return dw_error_prefix(err, "--keys");
    int cap = 0, line_no = 0;
    dw_status st = DW_OK;
    for (char *line = text, *next; line && *line; line = next) {
        line_no++;
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        char *tok = strtok(line, " \t\r"), *name = tok ? strtok(NULL, " \t\r") : NULL;
        if (!tok || tok[0] == '#') continue;
        if (strlen(tok) < 16) {
            st = dw_error_set(err, DW_ERR_FORMAT, "--keys %s: line %d: a key must be at least 16 characters", path, line_no);
            break;
        }
        if (srv_keys_find(*keys, *n, tok) >= 0) {
            st = dw_error_set(err, DW_ERR_FORMAT, "--keys %s: line %d: the same key twice", path, line_no);
            break;
        }
        if (*n == cap) *keys = realloc(*keys, sizeof **keys * (size_t)(cap = cap * 2 + 4));
        srv_key *k = &(*keys)[(*n)++];
        memset(k, 0, sizeof *k);
        k->token = strdup(tok);
        uint8_t d[DW_SHA256_DIGEST_SIZE];
        dw__sha256(tok, strlen(tok), d);
        for (int i = 0; i < 8; i++) snprintf(k->owner + 2 * i, 3, "%02x", d[i]);
        snprintf(k->name, sizeof k->name, "%s", name ? name : k->owner);
    }
    free(text);
    if (st == DW_OK && *n == 0) st = dw_error_set(err, DW_ERR_FORMAT, "--keys %s: no keys", path);
    if (st != DW_OK) srv_keys_free(*keys, *n), *keys = NULL, *n = 0;
    return st;
}

int srv_keys_find(const srv_key *keys, int n, const char *token) {
    size_t tl = strlen(token);
    int found = -1;
    for (int i = 0; i < n; i++) { /* every key compared in full: the time says nothing about a key */
        size_t kl = strlen(keys[i].token);
        unsigned char diff = (unsigned char)(kl != tl);
        for (size_t j = 0; j < kl; j++) diff |= (unsigned char)(keys[i].token[j] ^ (j < tl ? token[j] : 0));
        if (!diff) found = i;
    }
    return found;
}

void srv_keys_free(srv_key *keys, int n) {
    for (int i = 0; i < n; i++) free(keys[i].token);
    free(keys);
}

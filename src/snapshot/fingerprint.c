/* Model fingerprints, with the weights hash cached on disk (hashing 2.5 GB of weights takes
 * seconds; a snapshot save should not). */
#include "snapshot/fingerprint.h"
#include "core/sha256.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/file.h"

#define MAX_WEIGHT_FILES 256

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_weight_file(const char *name) {
    size_t n = strlen(name);
    return n > 12 && !strcmp(name + n - 12, ".safetensors");
}

/* The fingerprint cache; without a home for it, /tmp/driftwood-fingerprints. */
static void cache_dir(char *out, size_t cap) {
    if (!dw__cache_dir("fingerprints", out, cap)) snprintf(out, cap, "/tmp/driftwood-fingerprints");
}

static void mkdirs(const char *dir) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') *p = 0, mkdir(tmp, 0700), *p = '/';
    mkdir(tmp, 0700);
}

static dw_status weights_hash(const char *dir, char hex[DW_SHA256_HEX_SIZE], dw_error *err) {
    DIR *d = opendir(dir);
    if (!d) return dw_error_set(err, DW_ERR_IO, "model %s: cannot list: %s", dir, strerror(errno));
    char *names[MAX_WEIGHT_FILES];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < MAX_WEIGHT_FILES)
        if (is_weight_file(e->d_name)) names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], by_name);

    /* the cache key: every file's path, size and modification time */
    dw__sha256_ctx key;
    dw__sha256_init(&key);
    char real[4096];
    if (!realpath(dir, real)) snprintf(real, sizeof real, "%s", dir);
    dw__sha256_update(&key, real, strlen(real) + 1);
    for (int i = 0; i < n; i++) {
        char path[4400];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (stat(path, &sb) != 0) continue;
        char line[600];
        int len = snprintf(line, sizeof line, "%s %lld %lld.%09ld\n", names[i], (long long)sb.st_size,
                           (long long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec);
        dw__sha256_update(&key, line, (size_t)len);
    }
    uint8_t kd[32];
    char khex[DW_SHA256_HEX_SIZE], cdir[4096], cpath[4200];
    dw__sha256_final(&key, kd);
    dw__sha256_hex(kd, khex);
    cache_dir(cdir, sizeof cdir);
    snprintf(cpath, sizeof cpath, "%s/%s", cdir, khex);
    char *cached;
    size_t clen;
    dw_error ignored;
    if (dw_file_read_all(cpath, 128, &cached, &clen, &ignored) == DW_OK) {
        int ok = clen == 64;
        if (ok) memcpy(hex, cached, 65);
        free(cached);
        if (ok) {
            for (int i = 0; i < n; i++) free(names[i]);
            return DW_OK;
        }
    }
    /* hash the files: SHA-256 of (name NUL file-digest) in name order */
    dw__sha256_ctx all;
    dw__sha256_init(&all);
    dw_status st = DW_OK;
    for (int i = 0; i < n && st == DW_OK; i++) {
        char path[4400];
        uint8_t fd[32];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        st = dw__sha256_file(path, fd, err);
        dw__sha256_update(&all, names[i], strlen(names[i]) + 1);
        dw__sha256_update(&all, fd, sizeof fd);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    if (st != DW_OK) return st;
    uint8_t ad[32];
    dw__sha256_final(&all, ad);
    dw__sha256_hex(ad, hex);
    mkdirs(cdir);
    dw_file_write_atomic(cpath, hex, 64, &ignored); /* best effort: a cache miss only costs time */
    return DW_OK;
}

dw_status dw_model_fingerprint(const dw_model *model, const dw_tokenizer *tok, dw_fingerprint *out, dw_error *err) {
    memset(out, 0, sizeof *out);
    const dw_model_config *cfg = dw_model_get_config(model);
    snprintf(out->architecture, sizeof out->architecture, "%s", cfg->architecture);
    snprintf(out->config_hash, sizeof out->config_hash, "%s", dw_model_config_hash(model));
    uint8_t td[32];
    dw_tokenizer_sha256(tok, td);
    dw__sha256_hex(td, out->tokenizer_hash);
    return weights_hash(dw_model_dir(model), out->weights_hash, err);
}

int dw__fingerprint_equal(const dw_fingerprint *a, const dw_fingerprint *b) {
    return !strcmp(a->architecture, b->architecture) && !strcmp(a->config_hash, b->config_hash) &&
           !strcmp(a->weights_hash, b->weights_hash) && !strcmp(a->tokenizer_hash, b->tokenizer_hash);
}

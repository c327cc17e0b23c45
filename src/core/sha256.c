/* SHA-256 (sha256.h) on libcrypto's EVP digests: the algorithm is fetched once, each hash is
 * one EVP_MD_CTX (or one EVP_Digest call); hex output and file streaming are ours. */
#include "core/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_md(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

/* The algorithm, fetched once (an implicit fetch per call costs a lookup per small hash). */
static const EVP_MD *md(void) {
    pthread_once(&sha256_once, fetch_md);
    if (!sha256_md) {
        fprintf(stderr, "driftwood: libcrypto has no SHA256\n");
        abort();
    }
    return sha256_md;
}

static void fail(const char *what) {
    fprintf(stderr, "driftwood: libcrypto SHA-256 %s failed (out of memory?)\n", what);
    abort();
}

void dw__sha256_init(dw__sha256_ctx *s) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || !EVP_DigestInit_ex(c, md(), NULL)) fail("init");
    s->md_ctx = c;
}

void dw__sha256_update(dw__sha256_ctx *s, const void *data, size_t len) {
    if (len && !EVP_DigestUpdate(s->md_ctx, data, len)) fail("update");
}

void dw__sha256_final(dw__sha256_ctx *s, uint8_t digest[DW_SHA256_DIGEST_SIZE]) {
    unsigned int n = 0;
    if (!EVP_DigestFinal_ex(s->md_ctx, digest, &n) || n != DW_SHA256_DIGEST_SIZE) fail("final");
    EVP_MD_CTX_free(s->md_ctx);
    s->md_ctx = NULL;
}

void dw__sha256(const void *data, size_t len, uint8_t digest[DW_SHA256_DIGEST_SIZE]) {
    unsigned int n = 0;
    if (!EVP_Digest(data, len, digest, &n, md(), NULL) || n != DW_SHA256_DIGEST_SIZE) fail("digest");
}

void dw__sha256_hex(const uint8_t digest[DW_SHA256_DIGEST_SIZE], char hex[DW_SHA256_HEX_SIZE]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < DW_SHA256_DIGEST_SIZE; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[64] = '\0';
}

dw_status dw__sha256_file(const char *path, uint8_t digest[DW_SHA256_DIGEST_SIZE], dw_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dw_error_set(err, DW_ERR_IO, "file %s: cannot open: %s", path, strerror(errno));
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        close(fd);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "file %s: cannot allocate a read buffer", path);
    }
    dw__sha256_ctx s;
    dw__sha256_init(&s);
    for (;;) {
        ssize_t r = read(fd, buf, CHUNK);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            dw__sha256_final(&s, digest); /* releases the context */
            return dw_error_set(err, DW_ERR_IO, "file %s: read failed: %s", path, strerror(e));
        }
        if (r == 0) break;
        dw__sha256_update(&s, buf, (size_t)r);
    }
    free(buf);
    close(fd);
    dw__sha256_final(&s, digest);
    return DW_OK;
}

/* Internal SHA-256 (FIPS 180-4): incremental and one-shot hashing, hex output, file hashing.
 * Used for module hashes, model fingerprints and snapshot checksums. */
#ifndef DW_CORE_SHA256_H
#define DW_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/error.h"

#define DW_SHA256_DIGEST_SIZE 32
#define DW_SHA256_HEX_SIZE 65 /* 64 lowercase hex digits and a NUL */

/* Caller-allocated state; no resources, so there is nothing to free. */
typedef struct dw__sha256_ctx {
    uint32_t h[8];
    uint64_t nbytes;     /* message length so far */
    uint8_t block[64];   /* a partial block waiting for more input */
    size_t block_len;
} dw__sha256_ctx;

void dw__sha256_init(dw__sha256_ctx *s);
void dw__sha256_update(dw__sha256_ctx *s, const void *data, size_t len);
/* Writes the digest; the state must be re-initialised before reuse. */
void dw__sha256_final(dw__sha256_ctx *s, uint8_t digest[DW_SHA256_DIGEST_SIZE] /* OUT */);

/* One-shot hash of len bytes. */
void dw__sha256(const void *data, size_t len, uint8_t digest[DW_SHA256_DIGEST_SIZE] /* OUT */);

/* Lowercase hex of a digest, NUL-terminated. */
void dw__sha256_hex(const uint8_t digest[DW_SHA256_DIGEST_SIZE], char hex[DW_SHA256_HEX_SIZE] /* OUT */);

/* Hashes the whole file at path by streaming reads (constant memory). */
dw_status dw__sha256_file(const char *path, uint8_t digest[DW_SHA256_DIGEST_SIZE] /* OUT */, dw_error *err);

/* Whether the x86 SHA extensions are in use (chosen once, at the first hash). */
int dw__sha256_accelerated(void);

/* Tests only: on != 0 forces the portable C rounds, so both paths can be compared. */
void dw__sha256_force_portable(int on);

#endif

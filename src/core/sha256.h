/* SHA-256 (FIPS 180-4) from libcrypto (OpenSSL's EVP interface, which uses the CPU's SHA
 * extensions where it has them): incremental and one-shot hashing, hex output, file hashing.
 * Used for module hashes, model fingerprints and snapshot checksums. */
#ifndef DW_CORE_SHA256_H
#define DW_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/error.h"

#define DW_SHA256_DIGEST_SIZE 32
#define DW_SHA256_HEX_SIZE 65 /* 64 lowercase hex digits and a NUL */

/* Caller-allocated state holding a libcrypto digest context: every init is followed by one
 * final, which releases it. */
typedef struct dw__sha256_ctx {
    void *md_ctx; /* EVP_MD_CTX */
} dw__sha256_ctx;

/* Aborts with a message when libcrypto cannot make a context (out of memory): an invariant of
 * the callers, which hash small buffers or files they already hold. */
void dw__sha256_init(dw__sha256_ctx *s);
void dw__sha256_update(dw__sha256_ctx *s, const void *data, size_t len);
/* Writes the digest and releases the state; it must be re-initialised before reuse. */
void dw__sha256_final(dw__sha256_ctx *s, uint8_t digest[DW_SHA256_DIGEST_SIZE] /* OUT */);

/* One-shot hash of len bytes. */
void dw__sha256(const void *data, size_t len, uint8_t digest[DW_SHA256_DIGEST_SIZE] /* OUT */);

/* Lowercase hex of a digest, NUL-terminated. */
void dw__sha256_hex(const uint8_t digest[DW_SHA256_DIGEST_SIZE], char hex[DW_SHA256_HEX_SIZE] /* OUT */);

/* Hashes the whole file at path by streaming reads (constant memory). */
dw_status dw__sha256_file(const char *path, uint8_t digest[DW_SHA256_DIGEST_SIZE] /* OUT */, dw_error *err);

#endif

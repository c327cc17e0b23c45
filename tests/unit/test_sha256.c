/* SHA-256 (libcrypto behind core/sha256.h): the FIPS 180-2 test vectors, incremental = one-shot,
 * file hashing. */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#include "core/file.h"
#include "core/sha256.h"

static void hex_of(const void *data, size_t len, char hex[DW_SHA256_HEX_SIZE]) {
    uint8_t d[DW_SHA256_DIGEST_SIZE];
    dw__sha256(data, len, d);
    dw__sha256_hex(d, hex);
}

static int vector_ok(const char *msg, size_t len, const char *want) {
    char hex[DW_SHA256_HEX_SIZE];
    hex_of(msg, len, hex);
    if (strcmp(hex, want) == 0) return 1;
    fprintf(stderr, "    got %s want %s\n", hex, want);
    return 0;
}

TEST(sha256_fips_abc) {
    CHECK(vector_ok("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

TEST(sha256_fips_448_bit_message) {
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    CHECK(strlen(m) == 56);
    CHECK(vector_ok(m, 56, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
}

TEST(sha256_empty_message) {
    CHECK(vector_ok("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
}

TEST(sha256_fips_million_a) {
    size_t n = 1000000;
    char *m = malloc(n);
    CHECK(m);
    memset(m, 'a', n);
    int ok = vector_ok(m, n, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* the same, fed one byte at a time through the incremental interface */
    dw__sha256_ctx s;
    dw__sha256_init(&s);
    for (size_t i = 0; i < n; i++) dw__sha256_update(&s, "a", 1);
    uint8_t d[DW_SHA256_DIGEST_SIZE];
    char hex[DW_SHA256_HEX_SIZE];
    dw__sha256_final(&s, d);
    dw__sha256_hex(d, hex);
    free(m);
    CHECK(ok);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
}

TEST(sha256_incremental_matches_one_shot_at_every_split) {
    /* Pseudo-random message; every split point around the 55/56/64-byte padding edges. */
    uint8_t msg[300];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof msg; i++) msg[i] = (uint8_t)((x = x * 1103515245u + 12345u) >> 16);
    for (size_t len = 0; len <= sizeof msg; len += (len < 130 ? 1 : 17)) {
        uint8_t want[32];
        dw__sha256(msg, len, want);
        for (size_t cut = 0; cut <= len; cut += 7) {
            dw__sha256_ctx s;
            uint8_t got[32];
            dw__sha256_init(&s);
            dw__sha256_update(&s, msg, cut);
            dw__sha256_update(&s, msg + cut, len - cut);
            dw__sha256_final(&s, got);
            CHECK_MSG(memcmp(got, want, 32) == 0, "len %zu cut %zu", len, cut);
        }
    }
}

TEST(sha256_file_matches_memory_hash) {
    dw_error err;
    char path[512];
    snprintf(path, sizeof path, "%s/sha.bin", dw_test_tmp_dir());
    size_t n = 3 * 1000 * 1000 + 11; /* crosses the 1 MiB read chunks */
    uint8_t *buf = malloc(n);
    CHECK(buf);
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)(i * 31 + (i >> 9));
    dw_status st = dw_file_write_atomic(path, buf, n, &err);
    uint8_t want[32], got[32];
    dw__sha256(buf, n, want);
    free(buf);
    CHECK_OK(st);
    CHECK_OK(dw__sha256_file(path, got, &err));
    CHECK(memcmp(got, want, 32) == 0);
}

TEST(sha256_file_missing_names_the_file) {
    dw_error err;
    uint8_t d[32];
    CHECK(dw__sha256_file("/nonexistent/dir/x.bin", d, &err) == DW_ERR_IO);
    CHECK(strstr(err.message, "/nonexistent/dir/x.bin") != NULL);
}

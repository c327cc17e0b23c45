/* SHA-256 (FIPS 180-4), written here rather than taken from OpenSSL/libcrypto: it is ~200
 * lines, and the runtime then needs no crypto library on any machine (the H100 image and
 * guests' build hosts included). Portable C rounds, plus the x86 SHA extensions (SHA-NI,
 * ~5x faster, for hashing multi-GB weights) when the CPU has them. */
#include "core/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define DW_SHA256_HAVE_X86 1
#endif

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* ------------------------------------------------------------------------------------ */
/* Portable compression: nblocks 64-byte blocks into h.                                  */

static inline uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void compress_portable(uint32_t h[8], const uint8_t *p, size_t nblocks) {
    for (; nblocks > 0; nblocks--, p += 64) {
        uint32_t w[64];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
        for (int i = 0; i < 64; i++) {
            uint32_t t1 = k + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
            uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            k = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
    }
}

/* ------------------------------------------------------------------------------------ */
/* x86 SHA extensions. The state is kept as ABEF/CDGH pairs, as sha256rnds2 wants; each  */
/* group of four rounds also advances the message schedule held in four registers.      */

#ifdef DW_SHA256_HAVE_X86
__attribute__((target("sha,sse4.1,ssse3"))) static void compress_shani(uint32_t h[8], const uint8_t *p,
                                                                       size_t nblocks) {
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i tmp = _mm_loadu_si128((const __m128i *)&h[0]);
    __m128i state1 = _mm_loadu_si128((const __m128i *)&h[4]);
    tmp = _mm_shuffle_epi32(tmp, 0xB1);             /* CDAB */
    state1 = _mm_shuffle_epi32(state1, 0x1B);       /* EFGH */
    __m128i state0 = _mm_alignr_epi8(tmp, state1, 8); /* ABEF */
    state1 = _mm_blend_epi16(state1, tmp, 0xF0);    /* CDGH */

    for (; nblocks > 0; nblocks--, p += 64) {
        __m128i abef = state0, cdgh = state1;
        __m128i m[4];
        for (int g = 0; g < 16; g++) { /* rounds 4g .. 4g+3 */
            if (g < 4) m[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), bswap);
            __m128i msg = _mm_add_epi32(m[g & 3], _mm_loadu_si128((const __m128i *)&K[4 * g]));
            state1 = _mm_sha256rnds2_epu32(state1, state0, msg);
            if (g >= 3 && g <= 14) { /* finish the words for rounds 4(g+1) .. */
                __m128i t = _mm_alignr_epi8(m[g & 3], m[(g - 1) & 3], 4);
                m[(g + 1) & 3] = _mm_sha256msg2_epu32(_mm_add_epi32(m[(g + 1) & 3], t), m[g & 3]);
            }
            msg = _mm_shuffle_epi32(msg, 0x0E);
            state0 = _mm_sha256rnds2_epu32(state0, state1, msg);
            if (g >= 1 && g <= 12) m[(g - 1) & 3] = _mm_sha256msg1_epu32(m[(g - 1) & 3], m[g & 3]);
        }
        state0 = _mm_add_epi32(state0, abef);
        state1 = _mm_add_epi32(state1, cdgh);
    }

    tmp = _mm_shuffle_epi32(state0, 0x1B);       /* FEBA */
    state1 = _mm_shuffle_epi32(state1, 0xB1);    /* DCHG */
    state0 = _mm_blend_epi16(tmp, state1, 0xF0); /* DCBA */
    state1 = _mm_alignr_epi8(state1, tmp, 8);    /* HGFE */
    _mm_storeu_si128((__m128i *)&h[0], state0);
    _mm_storeu_si128((__m128i *)&h[4], state1);
}

static int cpu_has_shani(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int ssse3 = (c >> 9) & 1, sse41 = (c >> 19) & 1;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int sha = (b >> 29) & 1;
    return ssse3 && sse41 && sha;
}
#endif

/* 0 = not chosen yet, 1 = portable, 2 = SHA-NI. Racing first calls choose the same value. */
static int impl_choice;
static int force_portable;

static void compress(uint32_t h[8], const uint8_t *p, size_t nblocks) {
#ifdef DW_SHA256_HAVE_X86
    int choice = __atomic_load_n(&impl_choice, __ATOMIC_RELAXED);
    if (choice == 0) {
        choice = cpu_has_shani() ? 2 : 1;
        __atomic_store_n(&impl_choice, choice, __ATOMIC_RELAXED);
    }
    if (choice == 2 && !force_portable) {
        compress_shani(h, p, nblocks);
        return;
    }
#endif
    compress_portable(h, p, nblocks);
}

int dw__sha256_accelerated(void) {
#ifdef DW_SHA256_HAVE_X86
    return !force_portable && cpu_has_shani();
#else
    return 0;
#endif
}

void dw__sha256_force_portable(int on) { force_portable = on; }

/* ------------------------------------------------------------------------------------ */
/* Streaming interface                                                                   */

void dw__sha256_init(dw__sha256_ctx *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->nbytes = 0;
    s->block_len = 0;
}

void dw__sha256_update(dw__sha256_ctx *s, const void *data, size_t len) {
    const uint8_t *p = data;
    s->nbytes += len;
    if (s->block_len > 0) {
        size_t take = 64 - s->block_len < len ? 64 - s->block_len : len;
        memcpy(s->block + s->block_len, p, take);
        s->block_len += take;
        p += take;
        len -= take;
        if (s->block_len < 64) return;
        compress(s->h, s->block, 1);
        s->block_len = 0;
    }
    if (len >= 64) {
        compress(s->h, p, len / 64);
        p += len & ~(size_t)63;
        len &= 63;
    }
    memcpy(s->block, p, len);
    s->block_len = len;
}

void dw__sha256_final(dw__sha256_ctx *s, uint8_t digest[DW_SHA256_DIGEST_SIZE]) {
    uint64_t bits = s->nbytes * 8;
    uint8_t pad[72] = {0x80};
    /* pad to 56 mod 64, then the 64-bit big-endian bit length */
    size_t padlen = (s->block_len < 56 ? 56 : 120) - s->block_len;
    for (int i = 0; i < 8; i++) pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
    uint64_t saved = s->nbytes;
    dw__sha256_update(s, pad, padlen + 8);
    s->nbytes = saved;
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t)(s->h[i] >> 24);
        digest[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        digest[4 * i + 3] = (uint8_t)s->h[i];
    }
}

void dw__sha256(const void *data, size_t len, uint8_t digest[DW_SHA256_DIGEST_SIZE]) {
    dw__sha256_ctx s;
    dw__sha256_init(&s);
    dw__sha256_update(&s, data, len);
    dw__sha256_final(&s, digest);
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

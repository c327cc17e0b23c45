/* Safetensors reader and writer: round trips of random tensors, layout and padding, and one
 * test per validation rule on hand-made malformed files. */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#include "core/file.h"
#include "driftwood/safetensors.h"

/* ------------------------------------------------------------------------------------ */
/* Helpers                                                                               */

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void fill_random(void *p, size_t n) {
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(rng() >> 24);
}

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dw_test_tmp_dir(), name);
    return buf[k];
}

/* Writes a hand-made file: the 8-byte length (header_len_override if non-zero, else the
 * header's length), the header text, then data_len bytes of pattern. */
static int write_raw(const char *path, const char *header, uint64_t header_len_override, size_t data_len) {
    size_t hl = strlen(header);
    size_t total = 8 + hl + data_len;
    uint8_t *buf = malloc(total);
    if (!buf) return 0;
    uint64_t n = header_len_override ? header_len_override : hl;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) buf[8 + hl + i] = (uint8_t)(i * 7 + 1);
    dw_error err;
    dw_status st = dw_file_write_atomic(path, buf, total, &err);
    free(buf);
    return st == DW_OK;
}

/* Opens a malformed file and checks: the expected status, the message names the file and
 * contains phrase, and no handle is returned. */
static int rejects(const char *name, const char *header, uint64_t len_override, size_t data_len, dw_status want,
                   const char *phrase) {
    const char *path = tmp_path(name);
    if (!write_raw(path, header, len_override, data_len)) {
        fprintf(stderr, "    could not write %s\n", path);
        return 0;
    }
    dw_safetensors *st = (dw_safetensors *)1;
    dw_error err = {0};
    dw_status s = dw_safetensors_open(path, &st, &err);
    int ok = s == want && st == NULL && strstr(err.message, path) && strstr(err.message, phrase);
    if (!ok)
        fprintf(stderr, "    %s: got %s \"%s\"; wanted %s mentioning \"%s\"\n", name, dw_status_name(s), err.message,
                dw_status_name(want), phrase);
    if (s == DW_OK) dw_safetensors_close(st);
    return ok;
}

/* ------------------------------------------------------------------------------------ */
/* Round trips                                                                           */

typedef struct {
    const char *name;
    dw_dtype dtype;
    int ndim;
    int64_t shape[DW_SAFETENSORS_MAX_DIMS];
} spec;

static const spec specs[] = {
    {"model.embed_tokens.weight", DW_DTYPE_BF16, 2, {37, 16}},
    {"layers.0.attn.q.weight", DW_DTYPE_F16, 2, {5, 3}},
    {"norm.weight", DW_DTYPE_F32, 1, {17}},
    {"odd.u8", DW_DTYPE_U8, 3, {3, 1, 7}},
    {"ids", DW_DTYPE_I32, 1, {9}},
    {"big.i64", DW_DTYPE_I64, 2, {2, 3}},
    {"f64", DW_DTYPE_F64, 1, {5}},
    {"mask", DW_DTYPE_BOOL, 1, {11}},
    {"i8", DW_DTYPE_I8, 1, {13}},
    {"u16", DW_DTYPE_U16, 1, {3}},
    {"i16", DW_DTYPE_I16, 1, {1}},
    {"u32", DW_DTYPE_U32, 2, {1, 1}},
    {"u64", DW_DTYPE_U64, 1, {2}},
    {"scalar", DW_DTYPE_F32, 0, {0}},
    {"empty", DW_DTYPE_BF16, 2, {4, 0}},
    {"eight.dims", DW_DTYPE_U8, 8, {1, 2, 1, 2, 1, 2, 1, 3}},
    {"unicode.名前", DW_DTYPE_F16, 1, {2}},
};
#define NSPECS (sizeof specs / sizeof specs[0])

static size_t spec_bytes(const spec *s) {
    size_t n = dw_dtype_size(s->dtype);
    for (int d = 0; d < s->ndim; d++) n *= (size_t)s->shape[d];
    return n;
}

TEST(safetensors_round_trip_random_tensors_of_every_dtype) {
    dw_error err;
    void *data[NSPECS];
    dw_safetensors_writer *w;
    CHECK_OK(dw_safetensors_writer_new(&w, &err));
    for (size_t i = 0; i < NSPECS; i++) {
        size_t n = spec_bytes(&specs[i]);
        data[i] = malloc(n ? n : 1);
        fill_random(data[i], n);
        if (specs[i].dtype == DW_DTYPE_BOOL)
            for (size_t k = 0; k < n; k++) ((uint8_t *)data[i])[k] &= 1;
        CHECK_OK(dw_safetensors_writer_add(w, specs[i].name, specs[i].dtype, specs[i].ndim, specs[i].shape, data[i],
                                           n, &err));
    }
    CHECK_OK(dw_safetensors_writer_set_metadata(w, "format", "pt", &err));
    CHECK_OK(dw_safetensors_writer_set_metadata(w, "note", "héllo \"quoted\"\n", &err));
    const char *path = tmp_path("round.safetensors");
    CHECK_OK(dw_safetensors_writer_write(w, path, &err));
    dw_safetensors_writer_free(w);

    dw_safetensors *st;
    CHECK_OK(dw_safetensors_open(path, &st, &err));
    int bad = -1;
    for (size_t i = 0; i < NSPECS && bad < 0; i++) {
        const dw_tensor_info *t = dw_safetensors_find(st, specs[i].name);
        if (!t || t->dtype != specs[i].dtype || t->ndim != specs[i].ndim || t->nbytes != spec_bytes(&specs[i]) ||
            strcmp(t->name, specs[i].name) != 0 || memcmp(t->data, data[i], t->nbytes) != 0)
            bad = (int)i;
        for (int d = 0; t && d < DW_SAFETENSORS_MAX_DIMS; d++)
            if (t->shape[d] != (d < specs[i].ndim ? specs[i].shape[d] : 0)) bad = (int)i;
    }
    size_t count = dw_safetensors_count(st);
    const char *fmt = dw_safetensors_metadata(st, "format");
    const char *note = dw_safetensors_metadata(st, "note");
    int meta_ok = fmt && strcmp(fmt, "pt") == 0 && note && strcmp(note, "héllo \"quoted\"\n") == 0 &&
                  dw_safetensors_metadata_count(st) == 2;
    const char *k0 = NULL, *v0 = NULL, *k1 = NULL, *v1 = NULL;
    dw_safetensors_metadata_entry(st, 0, &k0, &v0);
    dw_safetensors_metadata_entry(st, 1, &k1, &v1);
    int entries_ok = k0 && strcmp(k0, "format") == 0 && strcmp(v0, "pt") == 0 && k1 && strcmp(k1, "note") == 0;
    dw_safetensors_close(st);
    for (size_t i = 0; i < NSPECS; i++) free(data[i]);
    CHECK_MSG(bad < 0, "tensor %s did not survive the round trip", specs[bad].name);
    CHECK(count == NSPECS);
    CHECK(meta_ok);
    CHECK(entries_ok);
}

TEST(safetensors_open_memory_reads_the_same_tensors_as_open) {
    dw_error err;
    float a[12];
    uint16_t b[5];
    fill_random(a, sizeof a);
    fill_random(b, sizeof b);
    dw_safetensors_writer *w;
    CHECK_OK(dw_safetensors_writer_new(&w, &err));
    CHECK_OK(dw_safetensors_writer_add(w, "a", DW_DTYPE_F32, 2, (int64_t[]){3, 4}, a, sizeof a, &err));
    CHECK_OK(dw_safetensors_writer_add(w, "b", DW_DTYPE_BF16, 1, (int64_t[]){5}, b, sizeof b, &err));
    const char *path = tmp_path("mem.safetensors");
    CHECK_OK(dw_safetensors_writer_write(w, path, &err));
    dw_safetensors_writer_free(w);

    char *bytes;
    size_t len;
    CHECK_OK(dw_file_read_all(path, 1 << 20, &bytes, &len, &err));
    dw_safetensors *st;
    dw_status s = dw_safetensors_open_memory(bytes, len, "<test>", &st, &err);
    if (s != DW_OK) free(bytes);
    CHECK_OK(s);
    const dw_tensor_info *ta = dw_safetensors_find(st, "a"), *tb = dw_safetensors_find(st, "b");
    int ok = ta && tb && memcmp(ta->data, a, sizeof a) == 0 && memcmp(tb->data, b, sizeof b) == 0 &&
             (const char *)ta->data >= bytes && (const char *)tb->data + tb->nbytes <= bytes + len &&
             strcmp(dw_safetensors_path(st), "<test>") == 0;
    dw_safetensors_close(st);
    free(bytes);
    CHECK(ok);
}

TEST(safetensors_lookups_of_absent_things_return_null) {
    dw_error err;
    dw_safetensors_writer *w;
    uint8_t x[3] = {1, 2, 3};
    CHECK_OK(dw_safetensors_writer_new(&w, &err));
    CHECK_OK(dw_safetensors_writer_add(w, "x", DW_DTYPE_U8, 1, (int64_t[]){3}, x, 3, &err));
    const char *path = tmp_path("absent.safetensors");
    CHECK_OK(dw_safetensors_writer_write(w, path, &err));
    dw_safetensors_writer_free(w);
    dw_safetensors *st;
    CHECK_OK(dw_safetensors_open(path, &st, &err));
    const char *k, *v;
    int ok = dw_safetensors_find(st, "y") == NULL && dw_safetensors_find(st, "") == NULL &&
             dw_safetensors_tensor(st, 1) == NULL && dw_safetensors_tensor(st, 0) != NULL &&
             dw_safetensors_metadata(st, "format") == NULL && dw_safetensors_metadata_count(st) == 0 &&
             dw_safetensors_metadata_entry(st, 0, &k, &v) == DW_ERR_NOT_FOUND;
    dw_safetensors_close(st);
    CHECK(ok);
}

TEST(safetensors_find_works_among_many_tensors) {
    dw_error err;
    enum { N = 500 };
    static int32_t vals[N];
    char names[N][32];
    dw_safetensors_writer *w;
    CHECK_OK(dw_safetensors_writer_new(&w, &err));
    for (int i = 0; i < N; i++) {
        vals[i] = (int32_t)rng();
        snprintf(names[i], sizeof names[i], "layers.%d.w", (int)(rng() % 100000) * N + i);
        CHECK_OK(dw_safetensors_writer_add(w, names[i], DW_DTYPE_I32, 0, NULL, &vals[i], 4, &err));
    }
    const char *path = tmp_path("many.safetensors");
    CHECK_OK(dw_safetensors_writer_write(w, path, &err));
    dw_safetensors_writer_free(w);
    dw_safetensors *st;
    CHECK_OK(dw_safetensors_open(path, &st, &err));
    int bad = -1;
    for (int i = 0; i < N; i++) {
        const dw_tensor_info *t = dw_safetensors_find(st, names[i]);
        if (!t || memcmp(t->data, &vals[i], 4) != 0) bad = i;
    }
    dw_safetensors_close(st);
    CHECK_MSG(bad < 0, "tensor %s not found or wrong", names[bad]);
}

TEST(safetensors_writer_pads_header_to_8_and_aligns_every_tensor) {
    dw_error err;
    uint8_t u8[3];
    uint16_t h[3];
    double d[2];
    float f[1];
    fill_random(u8, sizeof u8), fill_random(h, sizeof h), fill_random(d, sizeof d), fill_random(f, sizeof f);
    dw_safetensors_writer *w;
    CHECK_OK(dw_safetensors_writer_new(&w, &err));
    /* inserted smallest first: a plain insertion-order layout would misalign h, f and d */
    CHECK_OK(dw_safetensors_writer_add(w, "u8", DW_DTYPE_U8, 1, (int64_t[]){3}, u8, 3, &err));
    CHECK_OK(dw_safetensors_writer_add(w, "h", DW_DTYPE_F16, 1, (int64_t[]){3}, h, 6, &err));
    CHECK_OK(dw_safetensors_writer_add(w, "f", DW_DTYPE_F32, 1, (int64_t[]){1}, f, 4, &err));
    CHECK_OK(dw_safetensors_writer_add(w, "h2", DW_DTYPE_BF16, 1, (int64_t[]){3}, h, 6, &err));
    CHECK_OK(dw_safetensors_writer_add(w, "d", DW_DTYPE_F64, 1, (int64_t[]){2}, d, 16, &err));
    const char *path = tmp_path("align.safetensors");
    CHECK_OK(dw_safetensors_writer_write(w, path, &err));
    dw_safetensors_writer_free(w);

    char *bytes;
    size_t len;
    CHECK_OK(dw_file_read_all(path, 1 << 20, &bytes, &len, &err));
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | (uint8_t)bytes[i];
    int padded = n % 8 == 0 && len == 8 + n + 3 + 6 + 4 + 6 + 16 && bytes[8] == '{';
    free(bytes);
    CHECK_MSG(padded, "header length %llu", (unsigned long long)n);

    dw_safetensors *st;
    CHECK_OK(dw_safetensors_open(path, &st, &err));
    const char *order[5];
    int aligned = 1;
    for (size_t i = 0; i < 5; i++) {
        const dw_tensor_info *t = dw_safetensors_tensor(st, i);
        order[i] = t->name;
        if ((uintptr_t)t->data % dw_dtype_size(t->dtype) != 0) aligned = 0;
    }
    /* layout: element size descending, insertion order among equals */
    int order_ok = !strcmp(order[0], "d") && !strcmp(order[1], "f") && !strcmp(order[2], "h") &&
                   !strcmp(order[3], "h2") && !strcmp(order[4], "u8");
    dw_safetensors_close(st);
    CHECK(aligned);
    CHECK(order_ok);
}

TEST(safetensors_writer_with_no_tensors_writes_a_readable_empty_file) {
    dw_error err;
    dw_safetensors_writer *w;
    CHECK_OK(dw_safetensors_writer_new(&w, &err));
    const char *path = tmp_path("empty.safetensors");
    CHECK_OK(dw_safetensors_writer_write(w, path, &err));
    dw_safetensors_writer_free(w);
    dw_safetensors *st;
    CHECK_OK(dw_safetensors_open(path, &st, &err));
    size_t n = dw_safetensors_count(st);
    dw_safetensors_close(st);
    CHECK(n == 0);
}

TEST(safetensors_writer_set_metadata_replaces_a_key) {
    dw_error err;
    dw_safetensors_writer *w;
    CHECK_OK(dw_safetensors_writer_new(&w, &err));
    CHECK_OK(dw_safetensors_writer_set_metadata(w, "k", "one", &err));
    CHECK_OK(dw_safetensors_writer_set_metadata(w, "j", "x", &err));
    CHECK_OK(dw_safetensors_writer_set_metadata(w, "k", "two", &err));
    const char *path = tmp_path("meta.safetensors");
    CHECK_OK(dw_safetensors_writer_write(w, path, &err));
    dw_safetensors_writer_free(w);
    dw_safetensors *st;
    CHECK_OK(dw_safetensors_open(path, &st, &err));
    const char *k = dw_safetensors_metadata(st, "k");
    int ok = k && strcmp(k, "two") == 0 && dw_safetensors_metadata_count(st) == 2;
    dw_safetensors_close(st);
    CHECK(ok);
}

TEST(safetensors_writer_refuses_bad_tensors) {
    dw_error err;
    dw_safetensors_writer *w;
    float f[6] = {0};
    CHECK_OK(dw_safetensors_writer_new(&w, &err));
    CHECK_OK(dw_safetensors_writer_add(w, "a", DW_DTYPE_F32, 2, (int64_t[]){2, 3}, f, 24, &err));
    dw_status dup = dw_safetensors_writer_add(w, "a", DW_DTYPE_F32, 2, (int64_t[]){2, 3}, f, 24, &err);
    int dup_msg = strstr(err.message, "duplicate") != NULL;
    dw_status size = dw_safetensors_writer_add(w, "b", DW_DTYPE_F32, 2, (int64_t[]){2, 3}, f, 20, &err);
    dw_status neg = dw_safetensors_writer_add(w, "c", DW_DTYPE_F32, 2, (int64_t[]){-2, 3}, f, 24, &err);
    dw_status dims = dw_safetensors_writer_add(w, "d", DW_DTYPE_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 6}, f,
                                               24, &err);
    dw_status reserved = dw_safetensors_writer_add(w, "__metadata__", DW_DTYPE_U8, 0, NULL, f, 1, &err);
    dw_status empty = dw_safetensors_writer_add(w, "", DW_DTYPE_U8, 0, NULL, f, 1, &err);
    dw_status utf8 = dw_safetensors_writer_add(w, "bad\xff", DW_DTYPE_U8, 0, NULL, f, 1, &err);
    dw_status nul = dw_safetensors_writer_add(w, "n", DW_DTYPE_U8, 1, (int64_t[]){1}, NULL, 1, &err);
    dw_status meta = dw_safetensors_writer_set_metadata(w, "k", "\xc3", &err);
    dw_safetensors_writer_free(w);
    CHECK(dup == DW_ERR_INVALID_ARGUMENT && dup_msg);
    CHECK(size == DW_ERR_INVALID_ARGUMENT);
    CHECK(neg == DW_ERR_INVALID_ARGUMENT);
    CHECK(dims == DW_ERR_INVALID_ARGUMENT);
    CHECK(reserved == DW_ERR_INVALID_ARGUMENT);
    CHECK(empty == DW_ERR_INVALID_ARGUMENT);
    CHECK(utf8 == DW_ERR_INVALID_ARGUMENT);
    CHECK(nul == DW_ERR_INVALID_ARGUMENT);
    CHECK(meta == DW_ERR_INVALID_ARGUMENT);
}

TEST(safetensors_failed_write_leaves_the_previous_file) {
    dw_error err;
    const char *path = tmp_path("keep.safetensors");
    CHECK(write_raw(path, "{}      ", 0, 0));
    dw_safetensors_writer *w;
    CHECK_OK(dw_safetensors_writer_new(&w, &err));
    uint8_t x = 1;
    CHECK_OK(dw_safetensors_writer_add(w, "x", DW_DTYPE_U8, 0, NULL, &x, 1, &err));
    /* a folder cannot be replaced by a file: the rename fails after all the data is written */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/adir.safetensors", dw_test_tmp_dir());
    CHECK(snprintf(dir, sizeof dir, "%s/adir.safetensors", dw_test_tmp_dir()) > 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    CHECK(system(cmd) == 0);
    dw_status s = dw_safetensors_writer_write(w, dir, &err);
    dw_status s2 = dw_safetensors_writer_write(w, "/nonexistent-dw/x.safetensors", &err);
    dw_safetensors_writer_free(w);
    CHECK(s == DW_ERR_IO);
    CHECK(s2 == DW_ERR_IO && strstr(err.message, "/nonexistent-dw/x.safetensors"));
    dw_safetensors *st;
    CHECK_OK(dw_safetensors_open(path, &st, &err));
    dw_safetensors_close(st);
}

/* ------------------------------------------------------------------------------------ */
/* Validation: one malformed file per rule                                               */

#define T1 "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

TEST(safetensors_valid_hand_made_file_opens) {
    /* the baseline the malformed variants below depart from */
    dw_error err;
    const char *path = tmp_path("valid.safetensors");
    CHECK(write_raw(path, "{" T1 ",\"__metadata__\":{\"k\":\"v\"}}  ", 0, 8));
    dw_safetensors *st;
    CHECK_OK(dw_safetensors_open(path, &st, &err));
    const dw_tensor_info *t = dw_safetensors_find(st, "a");
    int ok = t && t->nbytes == 8 && ((const uint8_t *)t->data)[1] == 8 && dw_safetensors_metadata(st, "k");
    dw_safetensors_close(st);
    CHECK(ok);
}

TEST(safetensors_rejects_file_shorter_than_8_bytes) {
    const char *path = tmp_path("short.safetensors");
    dw_error err;
    CHECK_OK(dw_file_write_atomic(path, "\x02\0\0\0\0", 5, &err));
    dw_safetensors *st;
    CHECK(dw_safetensors_open(path, &st, &err) == DW_ERR_FORMAT);
    CHECK(strstr(err.message, path) && strstr(err.message, "too short"));
    CHECK_OK(dw_file_write_atomic(path, "", 0, &err));
    CHECK(dw_safetensors_open(path, &st, &err) == DW_ERR_FORMAT && strstr(err.message, "too short"));
}

TEST(safetensors_rejects_header_length_larger_than_file) {
    CHECK(rejects("hlen.safetensors", "{" T1 "}", 4000, 8, DW_ERR_FORMAT, "larger than the file"));
}

TEST(safetensors_rejects_absurd_header_length) {
    CHECK(rejects("hbig.safetensors", "{" T1 "}", 1ull << 40, 8, DW_ERR_FORMAT, "absurd"));
    CHECK(rejects("hbig2.safetensors", "{" T1 "}", 100000001, 8, DW_ERR_FORMAT, "absurd"));
}

TEST(safetensors_rejects_header_that_is_not_utf8) {
    CHECK(rejects("utf8.safetensors", "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8,
                  DW_ERR_FORMAT, "UTF-8"));
    /* an overlong encoding of '/' and a lone surrogate are not UTF-8 either */
    CHECK(rejects("utf8b.safetensors", "{\"\xc0\xaf\":1}", 0, 0, DW_ERR_FORMAT, "UTF-8"));
    CHECK(rejects("utf8c.safetensors", "{\"\xed\xa0\x80\":1}", 0, 0, DW_ERR_FORMAT, "UTF-8"));
}

TEST(safetensors_rejects_header_that_is_not_json) {
    CHECK(rejects("json.safetensors", "{" T1, 0, 8, DW_ERR_FORMAT, "not valid JSON"));
    CHECK(rejects("json2.safetensors", "{" T1 "} x", 0, 8, DW_ERR_FORMAT, "not valid JSON"));
}

TEST(safetensors_rejects_header_that_is_not_an_object) {
    CHECK(rejects("arr.safetensors", "[1, 2]", 0, 0, DW_ERR_FORMAT, "not a JSON object"));
}

TEST(safetensors_rejects_unknown_dtype) {
    CHECK(rejects("dtype.safetensors", "{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8,
                  DW_ERR_FORMAT, "unknown dtype 'Q7'"));
    CHECK(rejects("dtype2.safetensors", "{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8,
                  DW_ERR_FORMAT, "unknown dtype"));
    CHECK(rejects("dtype3.safetensors", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8, DW_ERR_FORMAT,
                  "dtype"));
}

TEST(safetensors_refuses_real_but_unsupported_dtype_as_unsupported) {
    CHECK(rejects("fp8.safetensors", "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[8],\"data_offsets\":[0,8]}}", 0, 8,
                  DW_ERR_UNSUPPORTED, "F8_E4M3 is not supported"));
}

TEST(safetensors_rejects_more_than_8_dimensions) {
    CHECK(rejects("ndim.safetensors",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,8],\"data_offsets\":[0,8]}}", 0, 8,
                  DW_ERR_FORMAT, "9 dimensions"));
}

TEST(safetensors_rejects_negative_or_non_integer_shape) {
    CHECK(rejects("neg.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[-8],\"data_offsets\":[0,8]}}", 0, 8,
                  DW_ERR_FORMAT, "shape[0] is not a non-negative integer"));
    CHECK(rejects("real.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[8.0],\"data_offsets\":[0,8]}}", 0, 8,
                  DW_ERR_FORMAT, "shape[0]"));
}

TEST(safetensors_rejects_overflowing_shape) {
    CHECK(rejects("ovf.safetensors",
                  "{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", 0, 0,
                  DW_ERR_FORMAT, "overflows"));
    /* element count fits but the byte count does not */
    CHECK(rejects("ovf2.safetensors", "{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}",
                  0, 0, DW_ERR_FORMAT, "overflows"));
    /* beyond even a JSON integer */
    CHECK(rejects("ovf3.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999],\"data_offsets\":[0,0]}}",
                  0, 0, DW_ERR_FORMAT, "too big"));
}

TEST(safetensors_rejects_shape_that_disagrees_with_byte_length) {
    CHECK(rejects("size.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, 8,
                  DW_ERR_FORMAT, "is 12 bytes but data_offsets span 8"));
}

TEST(safetensors_rejects_offsets_out_of_range) {
    CHECK(rejects("range.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 0, 8,
                  DW_ERR_FORMAT, "out of range"));
    CHECK(rejects("range2.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 0, 8,
                  DW_ERR_FORMAT, "end before they begin"));
    CHECK(rejects("range3.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 0, 8,
                  DW_ERR_FORMAT, "data_offsets"));
    CHECK(rejects("range4.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 0, 8,
                  DW_ERR_FORMAT, "data_offsets"));
}

TEST(safetensors_rejects_overlapping_tensors) {
    CHECK(rejects("overlap.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                  0, 12, DW_ERR_FORMAT, "overlaps"));
    /* two names for the same bytes */
    CHECK(rejects("alias.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}",
                  0, 8, DW_ERR_FORMAT, "overlaps"));
}

TEST(safetensors_rejects_hole_between_tensors) {
    CHECK(rejects("hole.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                  0, 20, DW_ERR_FORMAT, "hole"));
    CHECK(rejects("hole0.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 0, 12,
                  DW_ERR_FORMAT, "hole"));
}

TEST(safetensors_rejects_bytes_after_the_last_tensor) {
    CHECK(rejects("trail.safetensors", "{" T1 "}", 0, 12, DW_ERR_FORMAT, "4 bytes after the last tensor"));
}

TEST(safetensors_rejects_duplicate_names) {
    CHECK(rejects("dup.safetensors", "{" T1 "," T1 "}", 0, 8, DW_ERR_FORMAT, "duplicate"));
}

TEST(safetensors_rejects_non_string_metadata) {
    CHECK(rejects("meta.safetensors", "{" T1 ",\"__metadata__\":{\"k\":1}}", 0, 8, DW_ERR_FORMAT,
                  "metadata value for key 'k' is not a string"));
    CHECK(rejects("meta2.safetensors", "{" T1 ",\"__metadata__\":[\"k\"]}", 0, 8, DW_ERR_FORMAT,
                  "\"__metadata__\" is not a JSON object"));
    CHECK(rejects("meta3.safetensors", "{" T1 ",\"__metadata__\":{\"k\":null}}", 0, 8, DW_ERR_FORMAT,
                  "not a string"));
}

TEST(safetensors_rejects_tensor_entry_that_is_not_an_object) {
    CHECK(rejects("entry.safetensors", "{\"a\":[0,8]}", 0, 8, DW_ERR_FORMAT, "tensor 'a'"));
}

TEST(safetensors_every_truncation_and_byte_flip_is_an_error_not_a_crash) {
    dw_error err;
    uint16_t h[6];
    uint8_t m[5];
    fill_random(h, sizeof h);
    fill_random(m, sizeof m);
    dw_safetensors_writer *w;
    CHECK_OK(dw_safetensors_writer_new(&w, &err));
    CHECK_OK(dw_safetensors_writer_add(w, "h", DW_DTYPE_BF16, 2, (int64_t[]){2, 3}, h, sizeof h, &err));
    CHECK_OK(dw_safetensors_writer_add(w, "m", DW_DTYPE_BOOL, 1, (int64_t[]){5}, m, sizeof m, &err));
    CHECK_OK(dw_safetensors_writer_set_metadata(w, "k", "v", &err));
    const char *path = tmp_path("fuzz.safetensors");
    CHECK_OK(dw_safetensors_writer_write(w, path, &err));
    dw_safetensors_writer_free(w);
    char *bytes;
    size_t len;
    CHECK_OK(dw_file_read_all(path, 1 << 20, &bytes, &len, &err));

    int wrong = -1;
    for (size_t cut = 0; cut < len; cut++) { /* every proper prefix is malformed */
        dw_safetensors *st;
        if (dw_safetensors_open_memory(bytes, cut, NULL, &st, &err) != DW_ERR_FORMAT || st) wrong = (int)cut;
    }
    int opened = 0, refused = 0;
    char *copy = malloc(len);
    for (size_t i = 0; copy && i < len; i++) { /* flip every bit of every byte: any outcome but a crash */
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, bytes, len);
            copy[i] ^= (char)(1 << bit);
            dw_safetensors *st;
            dw_status s = dw_safetensors_open_memory(copy, len, NULL, &st, &err);
            if (s == DW_OK) {
                opened++;
                for (size_t k = 0; k < dw_safetensors_count(st); k++) {
                    const dw_tensor_info *t = dw_safetensors_tensor(st, k);
                    if ((const char *)t->data < copy || (const char *)t->data + t->nbytes > copy + len) wrong = 1000000;
                }
                dw_safetensors_close(st);
            } else {
                refused++;
            }
        }
    }
    free(copy);
    free(bytes);
    CHECK_MSG(wrong < 0, "prefix of %d bytes (or flipped file) was mishandled", wrong);
    CHECK(refused > 0 && opened > 0); /* data-byte flips open; header flips mostly do not */
}

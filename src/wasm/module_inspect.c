/* A minimal reader of Wasm sections: just enough to count mutable globals. The binary format
 * (https://webassembly.github.io/spec/core/binary/): magic, version, then sections of
 * (id: u8, size: u32 LEB128, payload). Imports: vec of (module name, field name, kind, desc);
 * kind 3 is a global: (valtype u8, mut u8). Globals: vec of (valtype, mut, init expr). */
#include "wasm/module_inspect.h"

typedef struct reader {
    const uint8_t *p, *end;
    int bad;
} reader;

static uint64_t leb_u(reader *r) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return r->bad = 1, 0;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return v;
    }
    return r->bad = 1, 0;
}
static uint8_t byte(reader *r) { return r->p < r->end ? *r->p++ : (r->bad = 1, 0); }
static void skip(reader *r, uint64_t n) {
    if ((uint64_t)(r->end - r->p) < n) r->bad = 1, r->p = r->end;
    else r->p += n;
}
static void skip_name(reader *r) { skip(r, leb_u(r)); }
static void skip_limits(reader *r) {
    uint8_t flags = byte(r);
    leb_u(r);
    if (flags & 1) leb_u(r);
}
/* Skips a constant expression up to its `end` (0x0B), reading immediates of the opcodes that
 * may appear in one. */
static void skip_const_expr(reader *r) {
    while (!r->bad) {
        uint8_t op = byte(r);
        switch (op) {
        case 0x0B: return;                         /* end */
        case 0x41: case 0x42: case 0x23: case 0xD2: leb_u(r); break; /* i32/i64.const, global.get, ref.func */
        case 0x43: skip(r, 4); break;              /* f32.const */
        case 0x44: skip(r, 8); break;              /* f64.const */
        case 0xD0: byte(r); break;                 /* ref.null t */
        case 0x6A: case 0x6B: case 0x6C: case 0x7C: case 0x7D: case 0x7E: break; /* extended const arithmetic */
        case 0xFD: leb_u(r); skip(r, 16); break;   /* v128.const */
        default: r->bad = 1; return;
        }
    }
}

int dw__wasm_count_mutable_globals(const uint8_t *bytes, size_t len) {
    if (len < 8) return -1;
    reader r = {bytes + 8, bytes + len, 0};
    int count = 0;
    while (r.p < r.end && !r.bad) {
        uint8_t id = byte(&r);
        uint64_t size = leb_u(&r);
        if (r.bad || (uint64_t)(r.end - r.p) < size) return -1;
        reader s = {r.p, r.p + size, 0};
        r.p += size;
        if (id == 2) { /* imports */
            for (uint64_t n = leb_u(&s), i = 0; i < n && !s.bad; i++) {
                skip_name(&s), skip_name(&s);
                switch (byte(&s)) {
                case 0: leb_u(&s); break;                   /* function: type index */
                case 1: byte(&s), skip_limits(&s); break;   /* table */
                case 2: skip_limits(&s); break;             /* memory */
                case 3: byte(&s), count += byte(&s) == 1; break; /* global */
                case 4: byte(&s), leb_u(&s); break;         /* tag */
                default: s.bad = 1;
                }
            }
        } else if (id == 6) { /* globals */
            for (uint64_t n = leb_u(&s), i = 0; i < n && !s.bad; i++) {
                byte(&s); /* value type (reference types with a heap type are not used by C guests) */
                count += byte(&s) == 1;
                skip_const_expr(&s);
            }
        }
        if (s.bad) return -1;
    }
    return r.bad ? -1 : count;
}

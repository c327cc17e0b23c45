# Guest modules: C files compiled to wasm32-wasi with clang, wasm-ld and Debian's wasi-libc.
# Every directory examples/NAME/ and tests/guests/NAME.c becomes build/guests/NAME.wasm.
WASM_CC      ?= clang
WASI_SYSROOT ?= /usr
GUEST_CFLAGS := --target=wasm32-wasi --sysroot=$(WASI_SYSROOT) -O2 -Wall -Iinclude
# The stack pointer is exported so that snapshots can capture it (shared/DESIGN.md).
GUEST_LDFLAGS := -Wl,--export=__stack_pointer -Wl,--export-dynamic -Wl,--allow-undefined-file=sdk/dw.imports

EXAMPLE_GUESTS := $(patsubst examples/%/,%,$(sort $(dir $(wildcard examples/*/main.c))))
TEST_GUESTS    := $(patsubst tests/guests/%.c,%,$(wildcard tests/guests/*.c))
GUEST_WASM     := $(EXAMPLE_GUESTS:%=$(BUILD)/guests/%.wasm) $(TEST_GUESTS:%=$(BUILD)/guests/%.wasm)

guests: $(GUEST_WASM)

$(BUILD)/guests/%.wasm: examples/%/main.c include/driftwood/guest.h sdk/dw.imports
	@mkdir -p $(dir $@)
	$(WASM_CC) $(GUEST_CFLAGS) -o $@ $< $(GUEST_LDFLAGS)

$(BUILD)/guests/%.wasm: tests/guests/%.c include/driftwood/guest.h sdk/dw.imports
	@mkdir -p $(dir $@)
	$(WASM_CC) $(GUEST_CFLAGS) -o $@ $< $(GUEST_LDFLAGS)

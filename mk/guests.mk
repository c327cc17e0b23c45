# Guest modules, built with the SDK's rules (sdk/guest.mk): every examples/NAME/main.c and
# tests/guests/NAME.c becomes build/guests/NAME.wasm.
include sdk/guest.mk

# examples/NAME/main.c is a WASI command (run with `driftwood run`); examples/NAME/actor.c is
# a reactor that handles messages (dw_on_message).
EXAMPLE_GUESTS := $(patsubst examples/%/,%,$(sort $(dir $(wildcard examples/*/main.c))))
ACTOR_GUESTS   := $(patsubst examples/%/,%,$(sort $(dir $(wildcard examples/*/actor.c))))
TEST_GUESTS    := $(patsubst tests/guests/%.c,%,$(wildcard tests/guests/*.c))
GUEST_WASM     := $(EXAMPLE_GUESTS:%=$(BUILD)/guests/%.wasm) $(ACTOR_GUESTS:%=$(BUILD)/guests/%.wasm) \
                  $(TEST_GUESTS:%=$(BUILD)/guests/%.wasm)

guests: $(GUEST_WASM)

$(BUILD)/guests/%.wasm: examples/%/main.c include/driftwood/guest.h sdk/guest.mk
	@mkdir -p $(dir $@)
	$(DW_GUEST_CC) $(DW_GUEST_CFLAGS) -o $@ $< $(DW_GUEST_LDFLAGS)

$(BUILD)/guests/%.wasm: examples/%/actor.c include/driftwood/guest.h sdk/guest.mk
	@mkdir -p $(dir $@)
	$(DW_GUEST_CC) $(DW_GUEST_CFLAGS) -mexec-model=reactor -o $@ $< $(DW_GUEST_LDFLAGS)

# Test guests are WASI reactors (no main; the runtime calls _initialize, then exports).
$(BUILD)/guests/%.wasm: tests/guests/%.c include/driftwood/guest.h sdk/guest.mk
	@mkdir -p $(dir $@)
	$(DW_GUEST_CC) $(DW_GUEST_CFLAGS) -mexec-model=reactor -o $@ $< $(DW_GUEST_LDFLAGS)

# Benchmark guests are reactors too; bench_actor.wasm is embedded in the driftwood program.
BENCH_GUESTS := $(patsubst bench/guests/%.c,%,$(wildcard bench/guests/*.c))
GUEST_WASM   += $(BENCH_GUESTS:%=$(BUILD)/guests/%.wasm)
guests: $(BENCH_GUESTS:%=$(BUILD)/guests/%.wasm)

$(BUILD)/guests/%.wasm: bench/guests/%.c include/driftwood/guest.h sdk/guest.mk
	@mkdir -p $(dir $@)
	$(DW_GUEST_CC) $(DW_GUEST_CFLAGS) -mexec-model=reactor -o $@ $< $(DW_GUEST_LDFLAGS)

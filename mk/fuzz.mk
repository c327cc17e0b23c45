# Fuzzing (fuzz/README.md): libFuzzer targets fuzz/fuzz_NAME.c, linked against the sanitizer
# build's library (mk/sanitize.mk) into $(SANITIZE_BUILD)/fuzz/fuzz_NAME.
#   make fuzz                        every target for FUZZ_SECONDS (default 60) with its corpus
#   make fuzz FUZZ_TARGETS=fuzz_abi  only those
#   make fuzz-build                  build them only
# Each run starts from fuzz/corpus/NAME (committed seeds) and grows $(SANITIZE_BUILD)/fuzz/
# corpus/NAME; crashes are written to $(SANITIZE_BUILD)/fuzz/crashes/ (tools/fuzz.sh).
FUZZ_TARGETS ?= $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 60
FUZZ_SUPPORT := $(sort $(wildcard fuzz/support/*.c))
FUZZ_GUESTS  := $(patsubst fuzz/guests/%.c,%,$(wildcard fuzz/guests/*.c))

.PHONY: fuzz fuzz-build

ifeq ($(SANITIZE),1)
fuzz-build: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%) $(FUZZ_GUESTS:%=$(BUILD)/guests/%.wasm) $(BUILD)/guests/chat.wasm

$(BUILD)/fuzz/%: fuzz/%.c $(FUZZ_SUPPORT) fuzz/support/fuzz_support.h $(LIBDW) $(BUILD)/lib/libwasmtime.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -Ifuzz/support -DDW_FUZZ_SOURCE_DIR='"$(CURDIR)"' \
	    -DDW_FUZZ_GUEST_DIR='"$(CURDIR)/$(BUILD)/guests"' -o $@ $< $(FUZZ_SUPPORT) $(LIBDW) $(LDLIBS)

$(BUILD)/guests/%.wasm: fuzz/guests/%.c include/driftwood/guest.h sdk/guest.mk
	@mkdir -p $(dir $@)
	$(DW_GUEST_CC) $(DW_GUEST_CFLAGS) -mexec-model=reactor -o $@ $< $(DW_GUEST_LDFLAGS)
else
# From a normal build, the targets are built (and run) in the sanitizer build's own make.
fuzz-build:
	@$(MAKE) --no-print-directory SANITIZE=1 BUILD=$(SANITIZE_BUILD) fuzz-build
endif

fuzz: setup
	@$(MAKE) --no-print-directory SANITIZE=1 BUILD=$(SANITIZE_BUILD) fuzz-build
	@tools/fuzz.sh $(SANITIZE_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

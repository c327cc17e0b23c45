# Driftwood build. `make demo` and `make test` are the two commands (README.md).
# Sources are found by directory, so adding a file under src/ needs no edit here.
# `make test SANITIZE=1` runs every suite on a sanitizer build in build-asan/ (mk/sanitize.mk).

include mk/sanitize.mk

BUILD      ?= build
CC         ?= gcc
PYTHON     ?= python3
WASMTIME_VERSION := 48.0.8
DW_CACHE   ?= $(if $(XDG_CACHE_HOME),$(XDG_CACHE_HOME),$(HOME)/.cache)/driftwood
WASMTIME_DIR ?= $(DW_CACHE)/wasmtime-$(WASMTIME_VERSION)/dist

CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -g -fPIC -pthread \
               -Iinclude -Isrc -I$(WASMTIME_DIR)/include
OPT        ?= -O2
CFLAGS     := $(CFLAGS_BASE) $(OPT) $(SANITIZE_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS     := -L$(WASMTIME_DIR)/lib -lwasmtime -Wl,-rpath,'$$ORIGIN/../lib' \
              -lpcre2-8 -ljansson -lutf8proc -lcrypto -lmicrohttpd -lnats -lm -ldl -pthread

LIB_SRC    := $(shell find src -name '*.c' ! -path 'src/cli/*' | sort)
CLI_SRC    := $(shell find src/cli -name '*.c' | sort)
TEST_SRC   := $(shell find tests/unit -name '*.c' | sort)
# That test replaces malloc for its binary, which AddressSanitizer must own: not in that build.
ifeq ($(SANITIZE),1)
TEST_SRC   := $(filter-out tests/unit/test_engine_alloc.c,$(TEST_SRC))
endif
BENCH_SRC  := $(shell find bench -name '*.c' 2>/dev/null | sort)

LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ    := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ   := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)

LIBDW      := $(BUILD)/lib/libdriftwood.a
DRIFTWOOD  := $(BUILD)/bin/driftwood
TEST_BIN   := $(BUILD)/bin/dw-tests

.DEFAULT_GOAL := all

include mk/cuda.mk
include mk/guests.mk
include mk/install.mk
include mk/fuzz.mk

.PHONY: all setup demo test test-unit test-py guests clean
all: $(DRIFTWOOD) $(TEST_BIN) guests

setup:
	@tools/setup.sh

$(WASMTIME_DIR)/lib/libwasmtime.so:
	@tools/setup.sh

$(BUILD)/lib/libwasmtime.so: $(WASMTIME_DIR)/lib/libwasmtime.so
	@mkdir -p $(dir $@)
	cp $< $@

# Objects are rebuilt when the compiler flags change (e.g. a CUDA toolkit appears).
FLAGS_STAMP := $(BUILD)/flags-$(shell echo '$(CC) $(CFLAGS) $(CUDA_CFLAGS)' | sha256sum | cut -c1-12)
$(FLAGS_STAMP):
	@mkdir -p $(dir $@) && rm -f $(BUILD)/flags-* && touch $@

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CUDA_CFLAGS) -MMD -MP -c $< -o $@

# The default model (used where --model is optional) is found beside the sources.
$(BUILD)/obj/src/cli/%.o: CFLAGS += -DDW_SOURCE_DIR='"$(CURDIR)"'

# The benchmark and chat actors are embedded in the program (src/cli/embedded_guests.c).
$(BUILD)/obj/src/cli/embedded_guests.o: $(BUILD)/guests/bench_actor.wasm $(BUILD)/guests/chat.wasm
$(BUILD)/obj/src/cli/embedded_guests.o: CFLAGS += -DDW_GUEST_DIR='"$(BUILD)/guests"'

# The server's page is embedded in the library (src/server/page.c).
$(BUILD)/obj/src/server/page.o: web/index.html
$(BUILD)/obj/src/server/page.o: CFLAGS += -DDW_WEB_PAGE='"web/index.html"'

$(LIBDW): $(LIB_OBJ) $(CUDA_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(DRIFTWOOD): $(CLI_OBJ) $(LIBDW) $(BUILD)/lib/libwasmtime.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(LIBDW) $(LDLIBS) $(CUDA_LDLIBS)

$(TEST_BIN): $(TEST_OBJ) $(LIBDW) $(BUILD)/lib/libwasmtime.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $(TEST_OBJ) $(LIBDW) $(LDLIBS) $(CUDA_LDLIBS)

# After setup, the build runs in a make of its own: setup may have just installed the CUDA toolkit
# (.deps/cuda), which mk/cuda.mk looks for when the Makefile is read.
demo: setup
	@$(MAKE) --no-print-directory all
	@tools/demo.sh

# Besides the normal build, the tests use the sanitizer build (the sanitizer suites and a short
# pass of every fuzz target: tools/run-tests.sh); with SANITIZE=1 the normal build is that build.
test: setup
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory SANITIZE=1 BUILD=$(SANITIZE_BUILD) all fuzz-build
	@DW_BUILD=$(BUILD) DW_SANITIZE_BUILD=$(SANITIZE_BUILD) tools/run-tests.sh

test-unit: $(TEST_BIN) guests
	$(TEST_BIN)

clean:
	rm -rf $(BUILD) $(SANITIZE_BUILD)

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)

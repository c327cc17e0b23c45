# The sanitizer build: `make ... SANITIZE=1` builds everything with clang under AddressSanitizer
# and UndefinedBehaviorSanitizer (every UB report is fatal) into build-asan/ (SANITIZE_BUILD), so
# it lives beside the normal build. The same objects carry libFuzzer's coverage instrumentation
# (-fsanitize=fuzzer-no-link, inert outside a fuzz target): the fuzz targets (mk/fuzz.mk) link
# against this very library, so one extra build serves both. CUDA is left out (ASan's shadow
# memory and the CUDA driver's address ranges need protect_shadow_gap=0; not covered here).
# Included by the Makefile before it sets BUILD, OPT and CC's defaults.
SANITIZE_BUILD ?= build-asan

# A make run on that folder (`make install BUILD=build-asan`) is a sanitizer run: the folder never
# gets objects built with other flags.
ifeq ($(BUILD),$(SANITIZE_BUILD))
SANITIZE := 1
endif

ifeq ($(SANITIZE),1)
BUILD          ?= $(SANITIZE_BUILD)
CC             := clang
OPT            ?= -O1
DW_SKIP_CUDA   := 1
SANITIZE_CFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
                   -fsanitize=fuzzer-no-link
endif

# clang does not honour `#pragma GCC target`: the x86 kernel files get their instruction sets
# from the command line instead (the dispatcher still runs them only where the CPU has them).
ifneq ($(findstring clang,$(CC)),)
dw_avx2_flags   := -mavx2 -mfma -mf16c -Wno-unknown-pragmas
dw_avx512_flags := -mavx512f -mavx512bw -mavx512vl -mavx512dq $(dw_avx2_flags)
%/backend/cpu/kernels_avx2.o %/backend/cpu/kernels_quant_avx2.o: CFLAGS += $(dw_avx2_flags)
%/backend/cpu/kernels_avx512.o %/backend/cpu/kernels_quant_avx512.o: CFLAGS += $(dw_avx512_flags)
# (and ignores GCC's optimize attribute, which asks for -O3 on one loop)
%/backend/cpu/cpu_backend.o: CFLAGS += -Wno-unknown-attributes
endif

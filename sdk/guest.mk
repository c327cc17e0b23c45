# Driftwood guest build rules: C → wasm32-wasi with clang, wasm-ld and Debian's wasi-libc
# (packages clang, lld, wasi-libc, libclang-rt-14-dev-wasm32). Include this file and compile
#   $(DW_GUEST_CC) $(DW_GUEST_CFLAGS) -o actor.wasm actor.c $(DW_GUEST_LDFLAGS)
# DW_SDK_INCLUDE must point at Driftwood's include/ folder (for driftwood/guest.h).
DW_SDK_INCLUDE   ?= include
DW_GUEST_CC      ?= clang
DW_WASI_SYSROOT  ?= /usr
DW_GUEST_CFLAGS  ?= --target=wasm32-wasi -mmutable-globals -msimd128 --sysroot=$(DW_WASI_SYSROOT) -O2 -Wall -I$(DW_SDK_INCLUDE)
# Snapshots need the mutable globals exported: the stack pointer is the one C guests have.
DW_GUEST_LDFLAGS ?= -Wl,--export=__stack_pointer -lm

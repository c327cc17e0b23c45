/* Reading facts from a Wasm binary that Wasmtime's C API does not expose: how many mutable
 * globals a module has (snapshots must be able to reach each one through an export). */
#ifndef DW_WASM_MODULE_INSPECT_H
#define DW_WASM_MODULE_INSPECT_H

#include <stddef.h>
#include <stdint.h>

/* Counts the mutable globals the module defines (global section) and imports (import
 * section). Returns -1 if the binary cannot be parsed (Wasmtime reports the details). */
int dw__wasm_count_mutable_globals(const uint8_t *bytes, size_t len);

#endif

/* Fuzz target: the safetensors reader over bytes in memory (dw_safetensors_open_memory). An
 * accepted file is then walked through the whole public API, and every tensor's first and last
 * bytes are read, so a pointer or size the reader got wrong is an AddressSanitizer report. */
#include <stdint.h>
#include <string.h>

#include "driftwood/dtype.h"
#include "driftwood/safetensors.h"

static volatile uint8_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dw_safetensors *st;
    dw_error err;
    if (dw_safetensors_open_memory(data, size, "<fuzz input>", &st, &err) != DW_OK) return 0;
    size_t n = dw_safetensors_count(st);
    for (size_t i = 0; i < n; i++) {
        const dw_tensor_info *t = dw_safetensors_tensor(st, i);
        if (dw_safetensors_find(st, t->name) != t) __builtin_trap(); /* the index must find it */
        if (t->nbytes) sink ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
        sink ^= (uint8_t)strlen(dw_dtype_name(t->dtype));
    }
    if (dw_safetensors_tensor(st, n) != NULL) __builtin_trap();
    for (size_t i = 0; i < dw_safetensors_metadata_count(st); i++) {
        const char *k, *v;
        if (dw_safetensors_metadata_entry(st, i, &k, &v) != DW_OK) __builtin_trap();
        if (dw_safetensors_metadata(st, k) == NULL) __builtin_trap();
        sink ^= (uint8_t)(strlen(k) + strlen(v));
    }
    dw_safetensors_close(st);
    return 0;
}

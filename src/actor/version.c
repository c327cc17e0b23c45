/* The versions an embedder can ask for (include/driftwood/version.h). DW_VERSION_STRING comes
 * from the VERSION file (the Makefile passes it); Wasmtime's from its own header. */
#include "driftwood/version.h"

#include <wasmtime.h>

#ifndef DW_VERSION_STRING
#error "DW_VERSION_STRING is set by the Makefile from the VERSION file"
#endif

const char *dw_version(void) { return DW_VERSION_STRING; }

const char *dw_wasmtime_version(void) { return WASMTIME_VERSION; }

/* dw_cuda_version() is the backend registry's (src/backend/backend.c). */

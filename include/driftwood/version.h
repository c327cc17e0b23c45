/* Which Driftwood this is, and which Wasmtime and CUDA it was built with: the strings behind
 * `driftwood --version`. The project's version is set once, in the VERSION file at the top of
 * the source tree, and compiled into the library. */
#ifndef DRIFTWOOD_VERSION_H
#define DRIFTWOOD_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version, "MAJOR.MINOR.PATCH" (e.g. "0.19.0"). */
const char *dw_version(void);

/* The Wasmtime release the library embeds (e.g. "48.0.8"). */
const char *dw_wasmtime_version(void);

/* The CUDA side, in words: "cuda runtime 13.0 driver 13.0" when a GPU is usable; "cuda runtime
 * 13.0, no driver" or "cuda runtime 13.0 driver 13.0, no device" when none is; "cuda: not built"
 * for a CPU-only build. Asking never fails and opens no backend (the first call asks the CUDA
 * driver; the answer is kept). */
const char *dw_cuda_version(void);

#ifdef __cplusplus
}
#endif

#endif

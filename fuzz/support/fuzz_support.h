/* Helpers shared by the fuzz targets (fuzz/fuzz_*.c): where the targets find the tiny model and
 * the guests, a scratch folder for inputs that the API reads from a path, and the resealing of
 * snapshot containers so that fuzzed bytes get past the checksum (fuzz/README.md). */
#ifndef DW_FUZZ_SUPPORT_H
#define DW_FUZZ_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/runtime.h"

/* Runs the library on one thread (DW_THREADS=1): a campaign uses one core per target. Call
 * first, from LLVMFuzzerInitialize. */
void fuzz_single_thread(void);

/* models/driftwood-tiny of the source tree (DW_FUZZ_MODEL_DIR overrides). */
const char *fuzz_model_dir(void);

/* The path of build/guests/NAME.wasm of the build the target was made in. */
const char *fuzz_guest_path(const char *name);

/* A path for NAME inside a folder of this process's own, removed at exit. */
const char *fuzz_scratch_path(const char *name);

/* Writes len bytes to path (replacing it); exits the process when it cannot (not a finding). */
void fuzz_write_file(const char *path, const uint8_t *data, size_t len);

/* Writes a snapshot file for the fuzzed bytes: when they parse as a safetensors container with
 * "format" and a numeric "format_version", the same tensors and metadata are written again as
 * a Driftwood snapshot with a valid checksum (and module_sha256 replaced by the given value when
 * it is not NULL), so that mutations reach the code after the checksum; other bytes are written
 * as they are. */
void fuzz_write_snapshot(const char *path, const uint8_t *data, size_t len, const char *module_sha256);

/* The runtime of the actor targets: made once, the tiny model registered as model_name, the
 * guest build/guests/GUEST.wasm loaded; exits naming target when it cannot (not a finding). */
void fuzz_open_runtime(const char *target, const char *model_name, const char *guest, dw_runtime **runtime,
                       dw_module **module);

/* An actor's output sink that drops everything (the fuzzer's own stdout stays readable). */
void fuzz_discard_output(void *user, const char *bytes, size_t len);

/* With DW_FUZZ_VERBOSE set, prints the outcome of the call under test (to see how far an input
 * gets when replaying it); otherwise nothing. */
void fuzz_report(const char *target, int status, const char *message);

#endif

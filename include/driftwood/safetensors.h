/* Safetensors files: a strict reader (mmap'd or in memory) and a streaming, atomic writer.
 * Used for model weights and for KV/actor snapshots (docs/DESIGN.md, "Decisions": Hugging Face formats). */
#ifndef DRIFTWOOD_SAFETENSORS_H
#define DRIFTWOOD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/dtype.h"
#include "driftwood/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------
 * The format (https://github.com/huggingface/safetensors), all integers little-endian:
 *
 *   offset      size  field
 *   0           8     N: u64, length in bytes of the JSON header
 *   8           N     header: UTF-8 JSON object; may end in spaces (0x20) as padding
 *   8+N         D     data section: D = file size - 8 - N
 *
 * The header maps each tensor name to
 *     {"dtype": "BF16", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
 * where begin/end are byte offsets into the data section (not the file). One optional key,
 * "__metadata__", maps to an object whose values are all strings.
 *
 * Rules this reader enforces (each violation is DW_ERR_FORMAT with a one-line message that
 * names the file; an unsupported but real safetensors dtype such as F8_E4M3 is DW_ERR_UNSUPPORTED):
 *   - the file holds at least the 8-byte length; N <= 100,000,000 (the reference's limit);
 *     8 + N <= file size;
 *   - the header is valid UTF-8, one JSON object, no duplicate keys;
 *   - dtype is one of dw_dtype's names; shape has at most 8 non-negative integers (none is a
 *     scalar: 1 element); shape product x dtype size = end - begin without overflow;
 *   - 0 <= begin <= end <= D, and the tensors, sorted by offset, tile the data section
 *     exactly: the first starts at 0, each starts where the previous ended, the last ends at D
 *     (no holes, no overlaps, no trailing bytes);
 *   - "__metadata__" is an object of strings. Unknown keys inside a tensor entry are ignored,
 *     as the reference implementation does.
 *
 * Alignment: `data` pointers are wherever the tensor lies in the file. The data section
 * starts at 8 + N; writers that pad N to a multiple of 8 (the reference and ours do) make it
 * 8-byte aligned relative to the page-aligned mapping, so a tensor is aligned to its element
 * size when every tensor before it has a byte length that is a multiple of that size. Files
 * from other writers may break this: check alignment (or memcpy) before typed access.
 *
 * Our writer pads the header with spaces to a multiple of 8 bytes and lays tensors out
 * sorted by element size, largest first, keeping insertion order among equal sizes. With the
 * 8-aligned data section this makes every tensor it writes aligned to its element size.
 * (The reference sorts by alignment, then by name.) Metadata is written first, in insertion
 * order, then tensors in layout order.
 * ------------------------------------------------------------------------------------- */

#define DW_SAFETENSORS_MAX_DIMS 8
#define DW_SAFETENSORS_MAX_HEADER 100000000u

typedef struct dw_tensor_info {
    const char *name;     /* owned by the file handle */
    dw_dtype dtype;
    int ndim;             /* 0 .. DW_SAFETENSORS_MAX_DIMS (0 = scalar) */
    int64_t shape[DW_SAFETENSORS_MAX_DIMS]; /* shape[ndim..] are 0 */
    const void *data;     /* into the mapping or caller's bytes; valid until close */
    size_t nbytes;        /* = product(shape) * dw_dtype_size(dtype) */
} dw_tensor_info;

/* ---------------------------------------------------------------------------------------
 * Reader
 * ------------------------------------------------------------------------------------- */

typedef struct dw_safetensors dw_safetensors;

/* Maps the file at path read-only and validates it. On success *out is a handle to close
 * with dw_safetensors_close; on failure *out is NULL and err says what is wrong, naming path.
 * Validation reads only the header; tensor pages are loaded when first touched. As with any
 * mapping, a file truncated by another process while open faults (SIGBUS) on access: files
 * that others may rewrite in place should be read into memory and opened with open_memory
 * (our writer never rewrites in place: it renames a new file over the old one). */
dw_status dw_safetensors_open(const char *path, dw_safetensors **out /* OUT */, dw_error *err);

/* Same, over len bytes at bytes, which are NOT copied: they must stay valid and unchanged
 * until close. label names the buffer in messages (e.g. "<snapshot in memory>"); NULL is
 * "<memory>". */
dw_status dw_safetensors_open_memory(const void *bytes, size_t len, const char *label,
                                     dw_safetensors **out /* OUT */, dw_error *err);

/* Unmaps the file (if any) and frees the handle; every pointer obtained from it becomes
 * invalid. NULL is a no-op. */
void dw_safetensors_close(dw_safetensors *st);

/* The path (or label) the handle was opened with. */
const char *dw_safetensors_path(const dw_safetensors *st);

/* Number of tensors. Index order is the order of the tensors' data in the file. */
size_t dw_safetensors_count(const dw_safetensors *st);

/* The i-th tensor (i < count), or NULL when i is out of range. */
const dw_tensor_info *dw_safetensors_tensor(const dw_safetensors *st, size_t i);

/* The tensor called name, or NULL (binary search over a sorted index: O(log n)). */
const dw_tensor_info *dw_safetensors_find(const dw_safetensors *st, const char *name);

/* The "__metadata__" value for key, or NULL when absent. */
const char *dw_safetensors_metadata(const dw_safetensors *st, const char *key);

/* Number of metadata entries, and the i-th (in header order) through key/value; an out of
 * range i returns DW_ERR_NOT_FOUND. Strings are owned by the handle. */
size_t dw_safetensors_metadata_count(const dw_safetensors *st);
dw_status dw_safetensors_metadata_entry(const dw_safetensors *st, size_t i, const char **key /* OUT */,
                                        const char **value /* OUT */);

/* ---------------------------------------------------------------------------------------
 * Writer: collects tensor descriptions and metadata, then streams the file with write()
 * (tensor data is never copied into one big buffer).
 * ------------------------------------------------------------------------------------- */

typedef struct dw_safetensors_writer dw_safetensors_writer;

dw_status dw_safetensors_writer_new(dw_safetensors_writer **out /* OUT */, dw_error *err);

/* Adds a tensor. name is copied; data is only referenced: it must stay valid and unchanged
 * until the last dw_safetensors_writer_write. nbytes must equal product(shape) x dtype size.
 * Refused (DW_ERR_INVALID_ARGUMENT): empty, duplicate or "__metadata__" names, names that are
 * not valid UTF-8, ndim outside 0..8, negative dimensions, a size mismatch, NULL data with
 * nbytes > 0. */
dw_status dw_safetensors_writer_add(dw_safetensors_writer *w, const char *name, dw_dtype dtype, int ndim,
                                    const int64_t *shape, const void *data, size_t nbytes, dw_error *err);

/* Sets (or replaces) a "__metadata__" string; both are copied and must be valid UTF-8. */
dw_status dw_safetensors_writer_set_metadata(dw_safetensors_writer *w, const char *key, const char *value,
                                             dw_error *err);

/* Writes the file atomically: a temporary file in path's folder, fsync, rename over path,
 * fsync of the folder. On failure path is left as it was. May be called more than once. */
dw_status dw_safetensors_writer_write(dw_safetensors_writer *w, const char *path, dw_error *err);

/* Frees the writer and its copies of names and metadata (not the tensor data). NULL is a no-op. */
void dw_safetensors_writer_free(dw_safetensors_writer *w);

#ifdef __cplusplus
}
#endif

#endif

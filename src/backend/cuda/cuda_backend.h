/* Private entry points of the CUDA backend for its tests (C-callable; everything else goes
 * through the ops of src/backend/backend.h). */
#ifndef DW_BACKEND_CUDA_CUDA_BACKEND_H
#define DW_BACKEND_CUDA_CUDA_BACKEND_H

#include "driftwood/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Switches CUDA-graph decode on or off on an open CUDA backend (recorded graphs are kept but
 * not used while off), as dw_backend_options.no_graphs does at open. */
void dw__cuda_set_graphs(dw_backend *backend, int on);

#ifdef __cplusplus
}
#endif

#endif

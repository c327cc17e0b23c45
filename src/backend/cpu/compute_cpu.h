/* Internal hooks of the CPU compute ops (compute_cpu.c) for tests and benchmarks: which kernel
 * set and thread pool a context uses. The ops themselves are reached through compute.h. */
#ifndef DW_BACKEND_CPU_COMPUTE_CPU_H
#define DW_BACKEND_CPU_COMPUTE_CPU_H

#include "backend/compute.h"
#include "backend/cpu/kernels.h"
#include "driftwood/threadpool.h"

/* Replaces the kernel set of a CPU compute context (e.g. &dw__cpu_kernels_ref). */
void dw__cpu_compute_set_kernels(dw_compute *c, const dw__cpu_kernels *kernels);
const dw__cpu_kernels *dw__cpu_compute_kernels(const dw_compute *c);
dw_threadpool *dw__cpu_compute_pool(const dw_compute *c);

#endif

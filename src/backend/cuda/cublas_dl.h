/* cuBLAS, opened with dlopen when the first CUDA backend is opened (mk/cuda.mk says why it
 * is not linked). Included by the CUDA backend's .cu files only. */
#ifndef DW_BACKEND_CUDA_CUBLAS_DL_H
#define DW_BACKEND_CUDA_CUBLAS_DL_H

#include <cublas_v2.h>

extern "C" {
#include "driftwood/error.h"
}

/* The cuBLAS entry points the backend uses, typed from cublas_v2.h. */
struct dw__cublas_api {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetMathMode) set_math_mode;
    decltype(&cublasSetWorkspace_v2) set_workspace;
    decltype(&cublasSgemm_v2) sgemm;
    /* the prefill GEMMs (cuda_ops.cu); C++ overloads cublasGemmEx, so spelled out */
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                              const void *, cudaDataType, int, const void *, cudaDataType, int, const void *, void *,
                              cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
    decltype(&cublasGetStatusString) status_string;
};

/* Loads libcublas.so.<major of cublas_v2.h> once per process (thread-safe) and returns its
 * entry points, valid for the process's life. Where it looks: $DW_CUBLAS_LIB when set (a path
 * to the library), else the build's cuBLAS directory (DW_CUBLAS_DIR), else the dynamic
 * loader's search path. On failure returns NULL and fills err (DW_ERR_BACKEND) with the
 * places tried and the loader's reason; later calls give the same answer. */
const dw__cublas_api *dw__cublas_load(dw_error *err);

#endif

/* The CUDA backend's weights: uploaded once into device memory. Matrices stay in their dtype
 * (bf16, f16, f32); vectors become f32, as on the CPU; quantized matrices (MLX affine,
 * src/core/quant_layout.h) keep their packed codes and get their (scale, bias) pairs interleaved
 * in the layout the kernels read (kernels.h: qmatrix). */
#include "backend/cuda/cuda_context.h"
#include "core/quant_layout.h"

extern "C" {
#include "driftwood/dtype.h"
}

#include <stdlib.h>
#include <string.h>

dw_status dw__cuda_weight_load(void *ctx, const void *host, dw_dtype dtype, int64_t rows, int64_t cols,
                               dw_cweight *out, dw_error *err) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    memset(out, 0, sizeof *out);
    if (dtype != DW_DTYPE_F32 && dtype != DW_DTYPE_F16 && dtype != DW_DTYPE_BF16)
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "backend 'cuda': weights of dtype %s are not supported",
                            dw_dtype_name(dtype));
    size_t count = (size_t)rows * (size_t)cols;
    float *f32 = NULL;
    const void *src = host;
    size_t bytes = count * dw_dtype_size(dtype);
    if (rows == 1) { /* vectors are f32, like on the CPU */
        f32 = (float *)malloc(count * sizeof(float));
        if (!f32) return dw_error_set(err, DW_ERR_NO_MEMORY, "backend 'cuda': out of memory");
        dw_convert_to_f32(dtype, host, f32, count);
        src = f32;
        bytes = count * sizeof(float);
        dtype = DW_DTYPE_F32;
    }
    void *dev = NULL;
    dw_status st = dw__cuda_alloc(ctx, bytes, &dev, err);
    if (!st) {
        dw__cuda_locked l(c);
        cudaError_t e = cudaMemcpy(dev, src, bytes, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            cudaFree(dev);
            st = dw_error_set(err, DW_ERR_BACKEND, "backend 'cuda': uploading a weight of %zu bytes failed: %s",
                              bytes, cudaGetErrorString(e));
        }
    }
    free(f32);
    if (st) return st;
    out->data = dev;
    out->dtype = dtype;
    out->rows = rows;
    out->cols = cols;
    out->priv = dev;
    return DW_OK;
}

void dw__cuda_weight_release(void *ctx, dw_cweight *w) {
    dw__cuda_free(ctx, w->priv);
    memset(w, 0, sizeof *w);
}

/* A quantized matrix: its codes as they are, then its (scale, bias) pairs interleaved
 * ([rows, groups, 2] in dw__cuda_sb_wtype, the layout kernels_quant.cu reads), in one device
 * buffer. */
dw_status dw__cuda_weight_load_quant(void *ctx, const dw_cweight *host, dw_cweight *out, dw_error *err) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    memset(out, 0, sizeof *out);
    const dw_dtype sdt = host->qsdtype;
    if (!DW_QUANT_BITS_OK(host->qbits) || !DW_QUANT_GROUP_OK(host->qgroup) || host->cols % host->qgroup ||
        (sdt != DW_DTYPE_BF16 && sdt != DW_DTYPE_F16 && sdt != DW_DTYPE_F32))
        return dw_error_set(err, DW_ERR_UNSUPPORTED,
                            "backend 'cuda': quantized weights with %d bits, group size %d, scales in %s are not supported",
                            host->qbits, host->qgroup, dw_dtype_name(sdt));
    const size_t rows = (size_t)host->rows, groups = (size_t)(host->cols / host->qgroup);
    const size_t code_bytes = rows * DW_QUANT_ROW_BYTES(host->cols, host->qbits);
    const size_t ssize = dw_dtype_size(sdt), psize = sdt == DW_DTYPE_BF16 ? 2 : 4;
    const size_t pair_bytes = rows * groups * 2 * psize, sb_off = (code_bytes + 255) / 256 * 256;
    unsigned char *pairs = (unsigned char *)malloc(pair_bytes ? pair_bytes : 1);
    if (!pairs) return dw_error_set(err, DW_ERR_NO_MEMORY, "backend 'cuda': out of memory");
    const unsigned char *sc = (const unsigned char *)host->qscales, *bi = (const unsigned char *)host->qbiases;
    for (size_t i = 0; i < rows * groups; i++) {
        if (psize == ssize) {
            memcpy(pairs + 2 * i * psize, sc + i * ssize, ssize);
            memcpy(pairs + (2 * i + 1) * psize, bi + i * ssize, ssize);
        } else { /* f16 -> f32 */
            dw_convert_to_f32(sdt, sc + i * ssize, (float *)(pairs + 2 * i * psize), 1);
            dw_convert_to_f32(sdt, bi + i * ssize, (float *)(pairs + (2 * i + 1) * psize), 1);
        }
    }
    void *dev = NULL;
    dw_status st = dw__cuda_alloc(ctx, sb_off + pair_bytes, &dev, err);
    if (!st) {
        dw__cuda_locked l(c);
        cudaError_t e = cudaMemcpy(dev, host->data, code_bytes, cudaMemcpyHostToDevice);
        if (e == cudaSuccess) e = cudaMemcpy((char *)dev + sb_off, pairs, pair_bytes, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            cudaFree(dev);
            st = dw_error_set(err, DW_ERR_BACKEND, "backend 'cuda': uploading a quantized weight of %zu bytes failed: %s",
                              sb_off + pair_bytes, cudaGetErrorString(e));
        }
    }
    free(pairs);
    if (st) return st;
    *out = *host;
    out->data = dev;
    out->qscales = (char *)dev + sb_off; /* the interleaved pairs */
    out->qbiases = NULL;
    out->priv = dev;
    return DW_OK;
}

dwk::qmatrix dw__cuda_qmatrix(const dw_cweight *w) {
    dwk::qmatrix m;
    m.codes = (const uint32_t *)w->data;
    m.sb = w->qscales;
    m.sbtype = dw__cuda_sb_wtype(w->qsdtype);
    m.bits = w->qbits;
    m.group = w->qgroup;
    m.K = (int)w->cols;
    return m;
}

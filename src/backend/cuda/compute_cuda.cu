/* The engine's compute ops on CUDA (src/backend/compute.h): weights and
 * KV caches in device memory, one stream and one cuBLAS handle per context, kernels in
 * kernels_*.cu. Decode (n == 1) runs on our matrix-vector kernel with neighbouring ops fused
 * (see "Fusion" below) and, through decode_step, as a CUDA graph recorded once per session;
 * prefill (n > 1) runs bf16 tensor-core GEMMs through cuBLAS.
 *
 * Threads: a context is shared by every session of a model; a recursive mutex serializes the
 * ops (recursive because decode_step calls back into the ops while it records). Errors: an op
 * cannot fail by itself; the first CUDA error is kept and returned by synchronize/download. */
#include "backend/cuda/compute_cuda.h"

extern "C" {
#include "backend/backend.h"
#include "driftwood/dtype.h"
}
#include "backend/cuda/compute_cuda_kernels.h"
#include "backend/cuda/cublas_dl.h"

#include <cuda.h> /* types of cuPointerGetAttribute (reached through the runtime, not linked) */
#include <cuda_runtime.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <vector>

#define WORKSPACE_BYTES (32u << 20)
#define GEMM_SCRATCH_BYTES ((size_t)64 << 20) /* stacked hi+lo GEMM output per row chunk */
#define DEQUANT_SCRATCH_BYTES ((size_t)64 << 20) /* bf16 rows of a quantized matrix per GEMM */

namespace {

/* An op waiting to be fused with the next one (decode only; see "Fusion"). */
enum pending_kind { P_NONE, P_NORM, P_MV, P_ROPE, P_ROPEKV };

struct pending_op {
    pending_kind kind;
    /* P_NORM */
    float *norm_out;
    const float *norm_x, *norm_w;
    int norm_dim;
    float norm_eps;
    /* P_MV */
    dwk::mv_args mv;
    /* P_ROPE */
    dwk::ropekv_args rope;
};

/* What decode_step knows about one session. */
struct graph_entry {
    const void *key;
    int state; /* 0: not seen, 1: ran once directly, 2: recorded, -1: recording failed */
    cudaGraphExec_t exec;
    int *slot; /* device {id, pos} */
    int short_len; /* recorded at a short length (dwk::attention_short_keys): replays only there */
    /* A step with its argmax (greedy): the recording writes its token into ring[pos % ring_n]
     * and, with priming on, the next step {token, pos + 1} into slot itself; next_pos is then
     * the step a replay can take from the slot as it is, its token at ring[(next_pos - 1) %
     * ring_n] (-1: none). */
    int32_t *ring;
    int ring_n;
    int next_pos;
};

/* Whether the step at pos attends over a short length (its attention's shape differs). */
int short_at(int pos) { return pos + 1 <= dwk::attention_short_keys(); }

struct cctx {
    dw_backend *backend;
    pthread_mutex_t lock;
    int device, n_sm;
    cudaStream_t stream;
    const dw__cublas_api *blas;
    cublasHandle_t handle;
    void *workspace;
    int prefill_passes; /* 2: hi+lo split activations, 1: bf16 activations */
    /* the first error since the last synchronize */
    dw_status err_status;
    char err_message[DW_ERROR_MESSAGE_MAX];
    /* scratch, grown on demand (never while recording) */
    void *act;
    size_t act_bytes;
    float *gout;
    size_t gout_bytes;
    void *deq; /* prefill on quantized weights: a block of rows dequantized to bf16 */
    size_t deq_bytes;
    float *part; /* attention partials: acc then (max, sum) */
    size_t part_floats;
    unsigned *counters;
    size_t counters_count;
    /* argmax: per-block partial results and the last-block counter (made at init) */
    float *amax_v;
    int *amax_i;
    unsigned *amax_counter;
    pending_op pend;
    /* decode graphs */
    int graphs_on;
    int *cap_slot; /* non-NULL while recording: kernels read id/pos there (the argmax writes it) */
    int recording_failed;
    std::vector<graph_entry> *graphs;
    dw__cuda_compute_stats stats;
    /* GPU time of decode steps: events around the last step, read at the next wait */
    cudaEvent_t ev_step[2];
    int step_timed; /* the events hold a step not yet counted */
    /* cuPointerGetAttribute (driver), for the registered-range check of direct downloads */
    CUresult (*pointer_attr)(void *data, CUpointer_attribute attr, CUdeviceptr ptr);
    int direct_download; /* DW_CUDA_DIRECT_DOWNLOAD=0 turns it off */
    int fuse_attn;       /* DW_CUDA_FUSE_ATTN=0 turns it off */
    int late_qkv_trigger; /* mv_args.trigger_late for q/k/v (DW_CUDA_LATE_QKV=0 turns it off) */
    /* the persistent decode kernel (see "Persistent steps"; DW_CUDA_PERSIST=1 turns it on) */
    int persist_on;
    /* Greedy chains: the ring of the argmax recorded in the step being recorded (cu_argmax;
     * NULL: none), and whether such an argmax primes its graph's next step
     * (graph_entry.next_pos; DW_CUDA_STEP_PRIME=0 turns that off). */
    int32_t *cap_ring;
    int cap_ring_n;
    int prime_on;
    int collecting;           /* inside a decode step: matvecs and attentions become phases */
    dwk::fused_table *phases; /* collected, not yet launched */
    int phase_family;         /* their family (dwk::FF_NONE while empty) */
    size_t phase_smem;        /* the most dynamic shared memory one of them needs */
    unsigned *phase_sync;     /* PERSIST_LAUNCHES pairs of barrier counters */
    int step_launches;        /* persistent launches so far in this step */
    unsigned long long *phase_trace; /* DW_CUDA_PERSIST_TRACE=1: the last launch's phase times */
    int phase_trace_n;
};

#define PERSIST_LAUNCHES 64 /* barrier counter pairs: persistent launches per step, at most */

double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct locked {
    cctx *c;
    explicit locked(cctx *ctx) : c(ctx) {
        pthread_mutex_lock(&c->lock);
        (void)cudaSetDevice(c->device);
    }
    ~locked() { pthread_mutex_unlock(&c->lock); }
};

/* ---- errors ------------------------------------------------------------------------------ */

void record(cctx *c, dw_status st, const char *fmt, const char *what, const char *detail) {
    if (c->cap_slot) c->recording_failed = 1;
    if (c->err_status) return;
    c->err_status = st;
    snprintf(c->err_message, sizeof c->err_message, fmt, what, detail);
}

void check(cctx *c, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return;
    (void)cudaGetLastError();
    char detail[160];
    snprintf(detail, sizeof detail, "%s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    record(c, DW_ERR_BACKEND, "backend 'cuda': %s failed: %s", what, detail);
}

void check_blas(cctx *c, cublasStatus_t s, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    record(c, DW_ERR_BACKEND, "backend 'cuda': %s failed: %s", what, c->blas->status_string(s));
}

/* Returns (and clears) the recorded error. */
dw_status take_error(cctx *c, dw_error *err) {
    dw_status st = c->err_status;
    if (st) dw_error_set(err, st, "%s", c->err_message);
    c->err_status = DW_OK;
    c->err_message[0] = 0;
    return st;
}

int wtype_of(dw_dtype d) { return d == DW_DTYPE_BF16 ? dwk::W_BF16 : d == DW_DTYPE_F16 ? dwk::W_F16 : dwk::W_F32; }

void emit(cctx *c);

/* Grows a scratch buffer to `bytes` (waits for queued work that may use the old one). */
bool grow(cctx *c, void **buf, size_t *have, size_t bytes, const char *what) {
    if (*have >= bytes) return true;
    if (c->cap_slot) { /* no allocation inside a recording: the step falls back to direct runs */
        c->recording_failed = 1;
        return false;
    }
    emit(c); /* collected phases may use the old buffer */
    check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize before growing scratch");
    if (*buf) cudaFree(*buf);
    *buf = NULL;
    *have = 0;
    cudaError_t e = cudaMalloc(buf, bytes);
    if (e != cudaSuccess) {
        *buf = NULL;
        check(c, e, what);
        return false;
    }
    *have = bytes;
    return true;
}

/* ---- Fusion -------------------------------------------------------------------------------
 * The engine issues decode as small ops; on the GPU each costs a launch. Three are held back
 * one op to be fused with the next when the next consumes their result:
 *   rmsnorm(xn, x)            + matmul(.., xn, ..)          -> the norm runs in the matvec's prologue
 *   matmul(o, ..) [1 matrix]  + add(x, o)                   -> the matvec adds its rows into x
 *   matmul_multi(gate, up)    + swiglu(gate, gate, up)      -> the matvec computes both rows per warp
 *   rope(q, k)                + kv_write(.., k, v)          -> one kernel rotates and stores
 *   that (decode)             + attention(.., q, kv)        -> the attention kernel rotates q as
 *                                it reads it and stores the new k, v row itself (DW_CUDA_FUSE_ATTN=0: off)
 * Every other op (and synchronize, download, free, recording) first flushes what is held, so the
 * order of effects on the stream is the order of the calls. */

void launch_norm(cctx *c, float *out, const float *x, const float *w, int n, int dim, float eps) {
    check(c, dwk::launch_rmsnorm(out, x, w, n, dim, eps, c->stream), "rmsnorm kernel");
}

/* ---- Persistent steps ------------------------------------------------------------------------
 * Inside a decode step the matvecs and attentions (after the fusions above) are not launched one
 * by one: they are collected as the phases of the persistent decode kernel (kernels_fused.cu)
 * and launched together, one kernel for the step's layers and LM head, when anything else must
 * run (another kernel, a copy, a wait) or the table is full. Phases that kernel cannot run
 * (f16/f32 weights, an f32 cache) are launched as before, after what was collected. */

/* Launches the collected phases, if any, and empties the table. */
void emit(cctx *c) {
    dwk::fused_table &t = *c->phases;
    if (!t.n) return;
    bool launch = true;
    if (c->step_launches >= PERSIST_LAUNCHES) { /* more launches than barrier pairs: one at a time */
        if (c->cap_slot) { /* no wait inside a recording: it is dropped, the step runs directly */
            c->recording_failed = 1;
            launch = false;
        } else {
            check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize");
            c->step_launches = 0;
        }
    }
    if (launch) {
        unsigned *sync = c->phase_sync + 2 * c->step_launches++;
        const int family = c->phase_family == dwk::FF_NONE ? dwk::FF_BF16 : c->phase_family;
        if (c->phase_trace) {
            check(c, cudaMemsetAsync(c->phase_trace, 0, 2 * t.n * sizeof *c->phase_trace, c->stream), "cudaMemsetAsync");
            c->phase_trace_n = t.n;
        }
        check(c, dwk::launch_fused(family, t, c->phase_smem, sync, c->phase_trace, c->n_sm, c->stream),
              "persistent decode kernel");
        c->stats.persistent_launches++;
    }
    t.n = 0;
    c->phase_family = dwk::FF_NONE;
    c->phase_smem = 0;
}

/* Whether matvecs and attentions now become phases (inside a step, the kernel on). */
bool persisting(const cctx *c) { return c->collecting && c->persist_on; }

/* The matvec mv, else the attention at, as a phase of the persistent kernel (all bytes set: they
 * become the kernel's parameter). */
dwk::fused_phase phase_of(const dwk::mv_args *mv, const dwk::attn_args *at) {
    dwk::fused_phase p;
    memset(&p, 0, sizeof p);
    p.kind = mv ? dwk::FK_MV : dwk::FK_ATTN;
    if (mv) p.mv = *mv;
    else p.at = *at;
    return p;
}

/* Takes p as a phase (persisting(c)); false when it must run as its own kernel (after emit). */
bool collect(cctx *c, dwk::fused_phase p) {
    const int family = dwk::fused_prepare(p);
    if (family == dwk::FF_NONE) return false;
    dwk::fused_table &t = *c->phases;
    if ((family != dwk::FF_ANY && c->phase_family != dwk::FF_NONE && family != c->phase_family) ||
        t.n == DWK_FUSED_MAX_PHASES)
        emit(c);
    t.ph[t.n++] = p;
    if (family != dwk::FF_ANY) c->phase_family = family;
    c->phase_smem = std::max(c->phase_smem, dwk::fused_smem(p));
    return true;
}

/* Ablation for profiling, never for use: DW_CUDA_SKIP=attn,qkv,o,gateup,down,lmhead (any of
 * them) leaves those decode launches out, so the step's time without them shows what each costs
 * inside the pipelined graph (the results are wrong). */
bool skipped(const char *what) {
    static const char *list = getenv("DW_CUDA_SKIP");
    if (!list || !*list) return false;
    const size_t n = strlen(what);
    for (const char *p = list; (p = strstr(p, what)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return true;
    return false;
}

/* The decode matrix a launch works on, by shape (for DW_CUDA_SKIP). */
const char *matvec_role(const dwk::mv_args &a) {
    const int rows = a.row_start[a.count];
    if (a.pair_swiglu) return "gateup";
    if (a.count > 1) return "qkv";
    if (rows > 8 * a.K) return "lmhead";
    return a.K > rows ? "down" : "o";
}

void run_matvec(cctx *c, const dwk::mv_args &a) {
    if (skipped(matvec_role(a))) return;
    if (persisting(c) && collect(c, phase_of(&a, nullptr))) return;
    emit(c);
    check(c, dwk::launch_matvec(a, c->n_sm, c->stream), "matvec kernel");
}

void run_attention(cctx *c, const dwk::attn_args &a) {
    if (a.n_tokens == 1 && skipped("attn")) return;
    if (persisting(c) && a.n_tokens == 1 && collect(c, phase_of(nullptr, &a))) return;
    emit(c);
    check(c, dwk::launch_attention(a, c->stream), "attention kernel");
}

/* Launches the op held back for fusion, if any (a matvec may become a phase). */
void flush_pending(cctx *c) {
    pending_op &p = c->pend;
    const pending_kind kind = p.kind;
    p.kind = P_NONE;
    switch (kind) {
    case P_NONE: break;
    case P_NORM:
        emit(c);
        launch_norm(c, p.norm_out, p.norm_x, p.norm_w, 1, p.norm_dim, p.norm_eps);
        break;
    case P_MV: run_matvec(c, p.mv); break;
    case P_ROPE:
    case P_ROPEKV:
        emit(c);
        check(c, dwk::launch_rope_kv(p.rope, c->stream), kind == P_ROPE ? "rope kernel" : "rope/kv_write kernel");
        break;
    }
}

/* Everything held back is queued: the stream's order is the order of the calls. */
void flush(cctx *c) {
    flush_pending(c);
    emit(c);
}

/* ---- memory -------------------------------------------------------------------------------- */

dw_status cu_alloc(void *ctx, size_t bytes, void **out, dw_error *err) {
    cctx *c = (cctx *)ctx;
    locked l(c);
    *out = NULL;
    cudaError_t e = cudaMalloc(out, bytes ? bytes : 64);
    if (e != cudaSuccess) {
        *out = NULL;
        (void)cudaGetLastError();
        return dw_error_set(err, e == cudaErrorMemoryAllocation ? DW_ERR_NO_MEMORY : DW_ERR_BACKEND,
                            "backend 'cuda': cudaMalloc(%zu bytes) failed: %s", bytes, cudaGetErrorString(e));
    }
    return DW_OK;
}

void cu_free(void *ctx, void *buf) {
    cctx *c = (cctx *)ctx;
    if (!buf) return;
    locked l(c);
    flush(c);
    check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize before cudaFree");
    check(c, cudaFree(buf), "cudaFree");
}

dw_status cu_weight_load(void *ctx, const void *host, dw_dtype dtype, int64_t rows, int64_t cols, dw_cweight *out,
                         dw_error *err) {
    cctx *c = (cctx *)ctx;
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
    dw_status st = cu_alloc(ctx, bytes, &dev, err);
    if (!st) {
        locked l(c);
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

void cu_weight_release(void *ctx, dw_cweight *w) {
    cu_free(ctx, w->priv);
    memset(w, 0, sizeof *w);
}

/* The device type of a quantized matrix's (scale, bias) pairs: bf16 stays bf16; f16 and f32
 * become f32 (exact), so the kernels read two layouts. */
int sb_wtype(dw_dtype sdt) { return sdt == DW_DTYPE_BF16 ? dwk::W_BF16 : dwk::W_F32; }

/* A quantized matrix: its codes as they are, then its (scale, bias) pairs interleaved
 * ([rows, groups, 2] in sb_wtype, the layout kernels_quant.cu reads), in one device buffer. */
dw_status cu_weight_load_quant(void *ctx, const dw_cweight *host, dw_cweight *out, dw_error *err) {
    cctx *c = (cctx *)ctx;
    memset(out, 0, sizeof *out);
    const dw_dtype sdt = host->qsdtype;
    if ((host->qbits != 4 && host->qbits != 8) || host->qgroup < 32 || host->cols % host->qgroup ||
        (sdt != DW_DTYPE_BF16 && sdt != DW_DTYPE_F16 && sdt != DW_DTYPE_F32))
        return dw_error_set(err, DW_ERR_UNSUPPORTED,
                            "backend 'cuda': quantized weights with %d bits, group size %d, scales in %s are not supported",
                            host->qbits, host->qgroup, dw_dtype_name(sdt));
    const size_t rows = (size_t)host->rows, groups = (size_t)(host->cols / host->qgroup);
    const size_t code_bytes = rows * (size_t)host->cols * host->qbits / 8;
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
    dw_status st = cu_alloc(ctx, sb_off + pair_bytes, &dev, err);
    if (!st) {
        locked l(c);
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

dwk::qmatrix qmatrix_of(const dw_cweight *w) {
    dwk::qmatrix m;
    m.codes = (const uint32_t *)w->data;
    m.sb = w->qscales;
    m.sbtype = sb_wtype(w->qsdtype);
    m.bits = w->qbits;
    m.group = w->qgroup;
    m.K = (int)w->cols;
    return m;
}

/* After a wait on the stream: adds the GPU time of the step the events hold. Caller holds the lock. */
void count_step_time(cctx *c) {
    if (!c->step_timed) return;
    float ms = 0;
    if (cudaEventQuery(c->ev_step[1]) != cudaSuccess) { /* not done (another session queued since): skip */
        (void)cudaGetLastError();
        return;
    }
    if (cudaEventElapsedTime(&ms, c->ev_step[0], c->ev_step[1]) == cudaSuccess) {
        c->stats.gpu_step_ms += ms;
        c->stats.timed_steps++;
    } else {
        (void)cudaGetLastError();
    }
    c->step_timed = 0;
}

/* Waits for the stream; returns the first error recorded since the last call. */
dw_status cu_synchronize(void *ctx, dw_error *err) {
    cctx *c = (cctx *)ctx;
    {
        locked l(c);
        flush(c);
    }
    cudaError_t e = cudaStreamSynchronize(c->stream); /* unlocked: other sessions may queue meanwhile */
    locked l(c);
    check(c, e, "cudaStreamSynchronize");
    count_step_time(c);
    return take_error(c, err);
}

/* Copies go through the backend's copy functions, which split a host range where it crosses
 * from one registered piece of a guest memory to the next (cudaMemcpy refuses such a range);
 * the copy engine reads or writes the guest's pages directly. */
dw_status cu_upload(void *ctx, void *dst, const void *host_src, size_t bytes, dw_error *err) {
    cctx *c = (cctx *)ctx;
    dw_status st = cu_synchronize(ctx, err);
    if (st || !bytes) return st;
    if (c->backend && c->backend->ops->copy_to_device)
        return c->backend->ops->copy_to_device(c->backend->ctx, dst, host_src, bytes, err);
    locked l(c);
    cudaError_t e = cudaMemcpy(dst, host_src, bytes, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return dw_error_set(err, DW_ERR_BACKEND, "backend 'cuda': upload failed: %s", cudaGetErrorString(e));
    }
    return DW_OK;
}

dw_status copy_down(cctx *c, void *host_dst, const void *src, size_t bytes, dw_error *err);

/* True when every byte of [p, p + bytes) is host memory registered with the device at the same
 * address (a guest region): the driver gives the registered range holding each address, and
 * the walk goes range by range to the end. Anything it cannot confirm answers false (the copy
 * path then runs): a kernel writing to unregistered host memory would fault and poison the
 * context for every actor. */
bool host_range_on_device(cctx *c, const void *p, size_t bytes) {
    if (!c->pointer_attr || !bytes) return false;
    uintptr_t q = (uintptr_t)p, end = q + bytes;
    while (q < end) {
        cudaPointerAttributes at;
        if (cudaPointerGetAttributes(&at, (const void *)q) != cudaSuccess) {
            (void)cudaGetLastError();
            return false;
        }
        if (at.type != cudaMemoryTypeHost || (uintptr_t)at.devicePointer != q) return false;
        CUdeviceptr start = 0;
        size_t size = 0;
        if (c->pointer_attr(&start, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, (CUdeviceptr)q) != CUDA_SUCCESS ||
            c->pointer_attr(&size, CU_POINTER_ATTRIBUTE_RANGE_SIZE, (CUdeviceptr)q) != CUDA_SUCCESS)
            return false;
        if ((uintptr_t)start > q || (uintptr_t)start + size <= q) return false;
        q = (uintptr_t)start + size;
    }
    return true;
}

/* Device -> host. When the host side is a registered region (an actor's memory), a kernel on
 * the compute stream writes it directly after the queued work, and one wait covers both;
 * otherwise: wait, then the backend's copy (split at registration pieces). */
dw_status cu_download(void *ctx, void *host_dst, const void *src, size_t bytes, dw_error *err) {
    cctx *c = (cctx *)ctx;
    double t0 = now_s();
    if (c->direct_download && bytes) {
        bool direct;
        {
            locked l(c);
            direct = host_range_on_device(c, host_dst, bytes);
            if (direct) {
                flush(c);
                check(c, dwk::launch_copy(host_dst, src, bytes, c->stream), "download kernel");
            }
        }
        if (direct) {
            dw_status st = cu_synchronize(ctx, err);
            locked l(c);
            c->stats.direct_downloads++;
            c->stats.download_s += now_s() - t0;
            return st;
        }
    }
    dw_status st = cu_synchronize(ctx, err);
    if (!st && bytes) st = copy_down(c, host_dst, src, bytes, err);
    locked l(c);
    c->stats.download_s += now_s() - t0;
    return st;
}

dw_status copy_down(cctx *c, void *host_dst, const void *src, size_t bytes, dw_error *err) {
    if (c->backend && c->backend->ops->copy_to_host)
        return c->backend->ops->copy_to_host(c->backend->ctx, host_dst, src, bytes, err);
    locked l(c);
    cudaError_t e = cudaMemcpy(host_dst, src, bytes, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return dw_error_set(err, DW_ERR_BACKEND, "backend 'cuda': download failed: %s", cudaGetErrorString(e));
    }
    return DW_OK;
}

/* ---- forward ops ------------------------------------------------------------------------------ */

void cu_embed(void *ctx, float *out, const dw_cweight *table, const int32_t *ids, int n) {
    cctx *c = (cctx *)ctx;
    locked l(c);
    flush(c);
    if (table->qbits) {
        check(c, dwk::launch_embed_q(out, qmatrix_of(table), ids, n, c->cap_slot, c->stream), "embed kernel");
        return;
    }
    check(c, dwk::launch_embed(out, table->data, wtype_of(table->dtype), (int)table->cols, ids, n, c->cap_slot,
                               c->stream),
          "embed kernel");
}

void cu_rmsnorm(void *ctx, float *out, const float *x, const dw_cweight *w, int n, int dim, float eps) {
    cctx *c = (cctx *)ctx;
    locked l(c);
    flush_pending(c);
    if (n == 1 && out != x) {
        pending_op &p = c->pend;
        p.kind = P_NORM;
        p.norm_out = out, p.norm_x = x, p.norm_w = (const float *)w->data, p.norm_dim = dim, p.norm_eps = eps;
        return;
    }
    emit(c);
    launch_norm(c, out, x, (const float *)w->data, n, dim, eps);
}

/* Prefill: out [n × rows] = x [n × K] · wᵀ on the tensor cores. bf16/f16 weights take x split
 * into two halves hi + lo (each exactly representable) stacked as 2n rows, so the products keep
 * f32 accuracy; the two result halves are summed. f32 weights run an f32 GEMM. Quantized weights
 * are dequantized to bf16 a block of rows at a time (DEQUANT_SCRATCH_BYTES) and each block runs
 * the bf16 GEMM: the weights are rounded to bf16 once (a relative 2^-9 per weight), x is not. */

/* The rows [r0, r0 + cnt) of out (row stride ld) from wrows (those rows, bf16 or f16, K each),
 * with x already split into c->act. */
void gemm_half_rows(cctx *c, float *out, int ld, int r0, int n, const void *wrows, bool half, int cnt, int K,
                    const float *b) {
    const float one = 1.0f, zero = 0.0f;
    const cudaDataType_t t = half ? CUDA_R_16F : CUDA_R_16BF;
    if (c->prefill_passes == 1) {
        check_blas(c,
                   c->blas->gemm_ex(c->handle, CUBLAS_OP_T, CUBLAS_OP_N, cnt, n, K, &one, wrows, t, K, c->act, t, K,
                                    &zero, out + r0, CUDA_R_32F, ld, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "cublasGemmEx (bf16)");
        if (b) check(c, dwk::launch_add_bias(out, b, n, ld, r0, cnt, c->stream), "bias kernel");
        return;
    }
    size_t rc = GEMM_SCRATCH_BYTES / ((size_t)2 * n * sizeof(float));
    rc = rc / 128 * 128;
    if (rc < 128) rc = 128;
    if (rc > (size_t)cnt) rc = cnt;
    if (!grow(c, (void **)&c->gout, &c->gout_bytes, rc * 2 * n * sizeof(float), "cudaMalloc(GEMM output)")) return;
    for (int q0 = 0; q0 < cnt; q0 += (int)rc) {
        const int m = cnt - q0 < (int)rc ? cnt - q0 : (int)rc;
        const char *wr = (const char *)wrows + (size_t)q0 * K * 2;
        check_blas(c,
                   c->blas->gemm_ex(c->handle, CUBLAS_OP_T, CUBLAS_OP_N, m, 2 * n, K, &one, wr, t, K, c->act, t, K,
                                    &zero, c->gout, CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "cublasGemmEx (bf16 hi+lo)");
        check(c, dwk::launch_combine_hilo(out, c->gout, n, m, ld, r0 + q0, b, c->stream), "hi+lo combine kernel");
    }
}

void gemm(cctx *c, float *out, const float *x, int n, const dw_cweight *w, const dw_cweight *bias) {
    const int rows = (int)w->rows, K = (int)w->cols;
    const float *b = bias ? (const float *)bias->data : NULL;
    if (w->dtype == DW_DTYPE_F32) {
        const float one = 1.0f, zero = 0.0f;
        check_blas(c,
                   c->blas->gemm_ex(c->handle, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, K, &one, w->data, CUDA_R_32F, K, x,
                                    CUDA_R_32F, K, &zero, out, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT),
                   "cublasGemmEx (f32)");
        if (b) check(c, dwk::launch_add_bias(out, b, n, rows, 0, rows, c->stream), "bias kernel");
        return;
    }
    const bool half = !w->qbits && w->dtype == DW_DTYPE_F16;
    const int passes = c->prefill_passes;
    if (!grow(c, &c->act, &c->act_bytes, (size_t)passes * n * K * 2, "cudaMalloc(GEMM activations)")) return;
    check(c, dwk::launch_split_act(c->act, x, n, K, half, passes, c->stream), "activation split kernel");
    if (!w->qbits) {
        gemm_half_rows(c, out, rows, 0, n, w->data, half, rows, K, b);
        return;
    }
    int block = (int)(DEQUANT_SCRATCH_BYTES / ((size_t)K * 2));
    if (block > rows) block = rows;
    if (!grow(c, &c->deq, &c->deq_bytes, (size_t)block * K * 2, "cudaMalloc(dequantized rows)")) return;
    const dwk::qmatrix m = qmatrix_of(w);
    for (int r0 = 0; r0 < rows; r0 += block) {
        const int cnt = rows - r0 < block ? rows - r0 : block;
        check(c, dwk::launch_dequant_bf16(c->deq, m, r0, cnt, c->stream), "dequantize kernel");
        gemm_half_rows(c, out, rows, r0, n, c->deq, false, cnt, K, b);
    }
}

void cu_matmul_multi(void *ctx, int count, float *const *out, const float *x, int n, const dw_cweight *const *w,
                     const dw_cweight *const *bias) {
    cctx *c = (cctx *)ctx;
    locked l(c);
    if (n > 1) {
        flush(c);
        for (int j = 0; j < count; j++) gemm(c, out[j], x, n, w[j], bias ? bias[j] : NULL);
        return;
    }
    dwk::mv_args a;
    memset(&a, 0, sizeof a);
    a.count = count;
    a.K = (int)w[0]->cols;
    a.wtype = wtype_of(w[0]->dtype);
    a.x = x;
    a.qbits = w[0]->qbits;
    a.qgroup = w[0]->qgroup;
    a.sbtype = sb_wtype(w[0]->qsdtype);
    bool same_type = true;
    for (int j = 0; j < count; j++) {
        a.w[j] = w[j]->data;
        a.sb[j] = w[j]->qscales;
        a.out[j] = out[j];
        a.bias[j] = bias && bias[j] ? (const float *)bias[j]->data : NULL;
        a.row_start[j + 1] = a.row_start[j] + (int)w[j]->rows;
        same_type = same_type && w[j]->dtype == w[0]->dtype && w[j]->qbits == w[0]->qbits &&
                    (!w[0]->qbits || (w[j]->qgroup == w[0]->qgroup && w[j]->qsdtype == w[0]->qsdtype));
    }
    if (!same_type) { /* mixed dtypes: one launch per matrix */
        for (int j = 0; j < count; j++) {
            float *o = out[j];
            const dw_cweight *wj = w[j], *bj = bias ? bias[j] : NULL;
            cu_matmul_multi(ctx, 1, &o, x, 1, &wj, &bj); /* the mutex is recursive */
        }
        return;
    }
    pending_op &p = c->pend;
    if (p.kind == P_NORM && p.norm_out == x && p.norm_dim == a.K) {
        a.x = p.norm_x;
        a.norm_w = p.norm_w;
        a.norm_staged = dwk::norm_staging_enabled();
        a.eps = p.norm_eps;
        a.norm_out = p.norm_out;
        p.kind = P_NONE;
    } else {
        flush_pending(c);
    }
    if (count <= 2) { /* may fuse with a following add or swiglu */
        p.kind = P_MV;
        p.mv = a;
        return;
    }
    a.trigger_late = count == 3 && c->late_qkv_trigger; /* q, k, v: attention comes next */
    run_matvec(c, a);
}

void cu_matmul(void *ctx, float *out, const float *x, int n, const dw_cweight *w, const dw_cweight *bias) {
    cu_matmul_multi(ctx, 1, &out, x, n, &w, &bias);
}

void cu_add(void *ctx, float *x, const float *y, size_t count) {
    cctx *c = (cctx *)ctx;
    locked l(c);
    pending_op &p = c->pend;
    if (p.kind == P_MV && p.mv.count == 1 && p.mv.out[0] == y && (size_t)p.mv.row_start[1] == count &&
        x != p.mv.x && x != p.mv.norm_out && x != y) {
        p.mv.res = x;
        flush_pending(c);
        return;
    }
    flush(c);
    check(c, dwk::launch_add(x, y, count, c->stream), "add kernel");
}

void cu_swiglu(void *ctx, float *out, const float *gate, const float *up, size_t count) {
    cctx *c = (cctx *)ctx;
    locked l(c);
    pending_op &p = c->pend;
    if (p.kind == P_MV && p.mv.count == 2 && out == gate && p.mv.out[0] == gate && p.mv.out[1] == up &&
        p.mv.row_start[1] * 2 == p.mv.row_start[2] && (size_t)p.mv.row_start[1] == count) {
        p.mv.pair_swiglu = 1;
        flush_pending(c);
        return;
    }
    flush(c);
    check(c, dwk::launch_swiglu(out, gate, up, count, c->stream), "swiglu kernel");
}

void cu_rope(void *ctx, float *q, float *k, int n, int n_heads, int n_kv_heads, int head_dim, int pos0,
             const float *inv_freq) {
    cctx *c = (cctx *)ctx;
    locked l(c);
    flush_pending(c);
    pending_op &p = c->pend;
    memset(&p.rope, 0, sizeof p.rope);
    p.rope.q = q, p.rope.k = k, p.rope.n = n, p.rope.n_heads = n_heads, p.rope.n_kv = n_kv_heads;
    p.rope.hd = head_dim, p.rope.pos0 = pos0, p.rope.inv_freq = inv_freq, p.rope.rope = 1;
    p.rope.dslot = c->cap_slot;
    p.kind = P_ROPE;
}

void cu_kv_write(void *ctx, const dw_kv_view *kv, const float *k, const float *v, int pos0, int n) {
    cctx *c = (cctx *)ctx;
    locked l(c);
    pending_op &p = c->pend;
    dwk::ropekv_args a;
    if (p.kind == P_ROPE && p.rope.k == k && p.rope.pos0 == pos0 && p.rope.n == n && p.rope.n_kv == kv->n_kv_heads &&
        p.rope.hd == kv->head_dim) {
        a = p.rope;
        p.kind = P_NONE;
    } else {
        flush_pending(c);
        memset(&a, 0, sizeof a);
        a.k = (float *)k, a.n = n, a.n_heads = 0, a.n_kv = kv->n_kv_heads, a.hd = kv->head_dim, a.pos0 = pos0;
        a.dslot = c->cap_slot;
    }
    a.v = v;
    a.kc = kv->k, a.vc = kv->v;
    a.kv_f32 = kv->dtype == DW_DTYPE_F32;
    a.capacity = kv->capacity;
    if (n == 1 && c->fuse_attn) { /* may fuse with the attention that follows */
        p.kind = P_ROPEKV;
        p.rope = a;
        return;
    }
    emit(c);
    check(c, dwk::launch_rope_kv(a, c->stream), "rope/kv_write kernel");
}

void cu_attention(void *ctx, float *out, const float *q, const dw_kv_view *kv, const dw_attn_params *p) {
    cctx *c = (cctx *)ctx;
    locked l(c);
    /* the pending RoPE + KV store of this very token and cache, with q as rope's: fused */
    dwk::ropekv_args fr;
    const dwk::ropekv_args &pr = c->pend.rope;
    bool fused = c->pend.kind == P_ROPEKV && p->n_tokens == 1 && pr.n == 1 && pr.pos0 == p->pos0 &&
                 pr.kc == kv->k && pr.vc == kv->v && pr.hd == p->head_dim && pr.n_kv == p->n_kv_heads &&
                 pr.capacity == kv->capacity && pr.kv_f32 == (kv->dtype == DW_DTYPE_F32) && pr.dslot == c->cap_slot &&
                 (!pr.rope || (pr.q == q && pr.n_heads == p->n_heads)) && p->head_dim % 2 == 0;
    if (!fused) flush_pending(c); /* else it stays pending until the launch below (an early return leaves it to a flush) */
    if (!dwk::attention_supported(p->head_dim) || p->n_heads % p->n_kv_heads) {
        record(c, DW_ERR_UNSUPPORTED, "backend 'cuda': %s: head_dim %s", "attention",
               "must be even and at most 256, and n_heads a multiple of n_kv_heads");
        return;
    }
    int gt, tiles;
    int len = p->pos0 + p->n_tokens;
    dwk::attention_tiles(p->n_heads / p->n_kv_heads, len, p->n_tokens, &gt, &tiles);
    /* recorded steps use the most splits (the length changes between replays) */
    int splits = dwk::attention_splits(p->n_kv_heads, tiles, c->n_sm, c->cap_slot ? 0 : len, p->n_tokens);
    int splits_graph = p->n_tokens == 1 ? dwk::attention_splits(p->n_kv_heads, tiles, c->n_sm, 0, 1) : splits;
    size_t rows = (size_t)p->n_tokens * p->n_heads;
    size_t need = rows * (size_t)std::max(splits, splits_graph) * (p->head_dim + 2);
    size_t counters = (size_t)p->n_tokens * p->n_kv_heads * tiles;
    if (splits > 1 || splits_graph > 1) {
        size_t have = c->part_floats * sizeof(float);
        if (!grow(c, (void **)&c->part, &have, need * sizeof(float), "cudaMalloc(attention partials)")) return;
        c->part_floats = have / sizeof(float);
        if (c->counters_count < counters) {
            size_t cbytes = c->counters_count * sizeof(unsigned);
            if (!grow(c, (void **)&c->counters, &cbytes, counters * sizeof(unsigned), "cudaMalloc(attention counters)"))
                return;
            c->counters_count = counters;
            emit(c);
            check(c, cudaMemsetAsync(c->counters, 0, counters * sizeof(unsigned), c->stream), "cudaMemsetAsync");
        }
    }
    dwk::attn_args a;
    memset(&a, 0, sizeof a);
    a.out = out, a.q = q, a.k = kv->k, a.v = kv->v, a.kv_f32 = kv->dtype == DW_DTYPE_F32;
    a.part = c->part;
    a.part_ml = c->part + rows * (size_t)splits * p->head_dim;
    a.counters = c->counters;
    a.n_heads = p->n_heads, a.n_kv = p->n_kv_heads, a.hd = p->head_dim, a.capacity = kv->capacity;
    a.pos0 = p->pos0, a.n_tokens = p->n_tokens, a.window = p->window, a.splits = splits, a.scale = p->scale;
    a.dslot = c->cap_slot;
    if (fused) {
        fr = pr;
        c->pend.kind = P_NONE;
        a.inv_freq = fr.rope ? fr.inv_freq : NULL;
        a.k_new = fr.k, a.v_new = fr.v;
    }
    run_attention(c, a);
}

/* ---- decode graphs ----------------------------------------------------------------------------- */

/* Waits for the queued work (a replay may still use it), then drops g's recording. */
void drop_recording(cctx *c, graph_entry *g) {
    check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize before dropping a graph");
    g->next_pos = -1;
    if (g->exec) cudaGraphExecDestroy(g->exec);
    g->exec = NULL;
}

graph_entry *find_graph(cctx *c, const void *key, bool add) {
    for (auto &g : *c->graphs)
        if (g.key == key) return &g;
    if (!add) return NULL;
    graph_entry g;
    memset(&g, 0, sizeof g);
    g.key = key;
    c->graphs->push_back(g);
    return &c->graphs->back();
}

/* Issues a decode step's ops, its matvecs and attentions as persistent phases, and queues it all. */
void run_step(cctx *c, void (*step)(void *), void *arg) {
    c->collecting = 1;
    c->step_launches = 0;
    step(arg);
    flush(c);
    c->collecting = 0;
}

/* Records step into g (state 2) or marks it failed (state -1); the step has not run then. */
void record_graph(cctx *c, graph_entry *g, int32_t id, int pos, void (*step)(void *), void *arg) {
    g->state = -1;
    if (!g->slot) {
        cudaError_t e = cudaMalloc((void **)&g->slot, 2 * sizeof(int));
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            g->slot = NULL;
            return;
        }
    }
    dw_status saved_status = c->err_status;
    char saved[DW_ERROR_MESSAGE_MAX];
    memcpy(saved, c->err_message, sizeof saved);
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return;
    }
    c->cap_slot = g->slot;
    c->cap_ring = NULL;
    c->recording_failed = 0;
    run_step(c, step, arg);
    c->cap_slot = NULL;
    g->ring = c->cap_ring, g->ring_n = c->cap_ring_n;
    g->next_pos = -1;
    e = cudaStreamEndCapture(c->stream, &graph);
    cudaGraphExec_t exec = NULL;
    if (e == cudaSuccess && !c->recording_failed) e = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (e != cudaSuccess || c->recording_failed) {
        (void)cudaGetLastError();
        if (exec) cudaGraphExecDestroy(exec);
        c->err_status = saved_status; /* errors of the recording are not the step's: it runs directly next */
        memcpy(c->err_message, saved, sizeof saved);
        return;
    }
    g->exec = exec;
    g->state = 2;
    g->short_len = short_at(pos);
    c->stats.graph_records++;
}

/* Queues a replay of g's recording for the step at pos with the token id (from id_dev when set):
 * without the set_step kernel where the argmax of g's last replay wrote exactly that step into
 * the slot (its token at id_dev, the next position). */
void replay(cctx *c, graph_entry *g, int32_t id, const int32_t *id_dev, int pos) {
    const bool primed = id_dev && g->next_pos == pos && id_dev == g->ring + (pos - 1) % g->ring_n;
    if (!primed) check(c, dwk::launch_set_step(g->slot, id, id_dev, pos, c->stream), "graph step kernel");
    else c->stats.primed_replays++;
    check(c, cudaGraphLaunch(g->exec, c->stream), "cudaGraphLaunch");
    c->stats.graph_replays++;
    g->next_pos = g->ring && c->prime_on ? pos + 1 : -1;
}

/* The timing events around a step: the start (unless a step queued earlier is still uncounted),
 * and the end once the step is queued. */
bool time_step_start(cctx *c) {
    const bool timed = !c->step_timed && c->ev_step[0];
    if (timed) check(c, cudaEventRecord(c->ev_step[0], c->stream), "cudaEventRecord");
    return timed;
}

void time_step_end(cctx *c, bool timed) {
    if (!timed) return;
    check(c, cudaEventRecord(c->ev_step[1], c->stream), "cudaEventRecord");
    c->step_timed = 1;
}

/* Queues the step between the two timing events. */
void cu_decode_step(void *ctx, const void *key, int32_t id, int pos, void (*step)(void *), void *arg) {
    cctx *c = (cctx *)ctx;
    double t0 = now_s();
    locked l(c);
    flush(c);
    graph_entry *g = c->graphs_on ? find_graph(c, key, true) : NULL;
    if (g && g->state == 2 && g->short_len != short_at(pos)) { /* the length left the recording's class */
        drop_recording(c, g);
        g->state = 0; /* one step directly (it sizes the scratch of the new shapes), then a recording */
    }
    if (g && g->state == 1) record_graph(c, g, id, pos, step, arg);
    const bool timed = time_step_start(c);
    if (g && g->state == 2) {
        replay(c, g, id, NULL, pos);
    } else {
        /* directly: the first step of a session (it sizes the scratch a recording needs), or no graphs */
        if (g && g->state == 0) g->state = 1;
        if (g) g->next_pos = -1; /* its argmax, if any, wrote the ring, not the slot */
        run_step(c, step, arg);
        c->stats.eager_steps++;
    }
    time_step_end(c, timed);
    c->stats.enqueue_s += now_s() - t0;
}

/* A replay with the id read on the device; 0 without a recording for key. */
int cu_decode_step_from(void *ctx, const void *key, const int32_t *id_dev, int pos, void (*step)(void *), void *arg) {
    cctx *c = (cctx *)ctx;
    double t0 = now_s();
    locked l(c);
    graph_entry *g = c->graphs_on ? find_graph(c, key, false) : NULL;
    if (!g || g->state != 2 || g->short_len != short_at(pos)) return 0;
    flush(c);
    const bool timed = time_step_start(c);
    replay(c, g, 0, id_dev, pos);
    time_step_end(c, timed);
    c->stats.enqueue_s += now_s() - t0;
    return 1;
}

/* Inside a step being recorded, the argmax reads the position from the graph's slot when it
 * runs (and primes the next step there: replay); it follows the LM head within the graph, its
 * launch overlapping the end of that kernel. */
void cu_argmax(void *ctx, const float *x, int n, int32_t *ring, int ring_n, int pos) {
    cctx *c = (cctx *)ctx;
    locked l(c);
    flush(c);
    int *slot = c->cap_slot;
    check(c, dwk::launch_argmax(x, n, c->amax_v, c->amax_i, c->amax_counter, ring, ring_n, pos, slot, c->prime_on, c->stream),
          "argmax kernel");
    if (slot) c->cap_ring = ring, c->cap_ring_n = ring_n;
}

void cu_decode_forget(void *ctx, const void *key) {
    cctx *c = (cctx *)ctx;
    locked l(c);
    for (size_t i = 0; i < c->graphs->size(); i++) {
        graph_entry &g = (*c->graphs)[i];
        if (g.key != key) continue;
        flush(c);
        drop_recording(c, &g);
        if (g.slot) cudaFree(g.slot);
        c->graphs->erase(c->graphs->begin() + i);
        return;
    }
}

/* ---- lifetime ---------------------------------------------------------------------------------- */

void cu_destroy(void *ctx) {
    cctx *c = (cctx *)ctx;
    if (!c) return;
    (void)cudaSetDevice(c->device);
    if (c->stream) {
        flush(c);
        (void)cudaStreamSynchronize(c->stream);
    }
    if (c->graphs) {
        for (auto &g : *c->graphs) {
            if (g.exec) cudaGraphExecDestroy(g.exec);
            if (g.slot) cudaFree(g.slot);
        }
        delete c->graphs;
    }
    if (c->handle) c->blas->destroy(c->handle);
    for (cudaEvent_t e : c->ev_step)
        if (e) cudaEventDestroy(e);
    cudaFree(c->workspace);
    cudaFree(c->act);
    cudaFree(c->gout);
    cudaFree(c->deq);
    cudaFree(c->part);
    cudaFree(c->counters);
    cudaFree(c->amax_v);
    cudaFree(c->amax_i);
    cudaFree(c->amax_counter);
    cudaFree(c->phase_sync);
    cudaFree(c->phase_trace);
    delete c->phases;
    if (c->stream) cudaStreamDestroy(c->stream);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

const dw_compute_ops cuda_compute_ops = {
    /* .name           = */ "cuda",
    /* .alloc          = */ cu_alloc,
    /* .free           = */ cu_free,
    /* .weight_load    = */ cu_weight_load,
    /* .weight_release = */ cu_weight_release,
    /* .upload         = */ cu_upload,
    /* .download       = */ cu_download,
    /* .embed          = */ cu_embed,
    /* .rmsnorm        = */ cu_rmsnorm,
    /* .matmul         = */ cu_matmul,
    /* .rope           = */ cu_rope,
    /* .kv_write       = */ cu_kv_write,
    /* .attention      = */ cu_attention,
    /* .swiglu         = */ cu_swiglu,
    /* .add            = */ cu_add,
    /* .synchronize    = */ cu_synchronize,
    /* .matmul_multi   = */ cu_matmul_multi,
    /* .destroy        = */ cu_destroy,
    /* .decode_step    = */ cu_decode_step,
    /* .decode_forget  = */ cu_decode_forget,
    /* .argmax         = */ cu_argmax,
    /* .decode_step_from = */ cu_decode_step_from,
    /* .weight_load_quant = */ cu_weight_load_quant,
};

dw_status cuda_fail(dw_error *err, cudaError_t e, const char *what) {
    (void)cudaGetLastError();
    return dw_error_set(err, e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ? DW_ERR_UNSUPPORTED
                                                                                        : DW_ERR_BACKEND,
                        "backend 'cuda': %s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

dw_status init(cctx *c, dw_error *err) {
    cudaError_t e;
    if ((e = cudaSetDevice(c->device)) != cudaSuccess) return cuda_fail(err, e, "cudaSetDevice");
    if ((e = cudaDeviceGetAttribute(&c->n_sm, cudaDevAttrMultiProcessorCount, c->device)) != cudaSuccess)
        return cuda_fail(err, e, "cudaDeviceGetAttribute");
    c->blas = dw__cublas_load(err);
    if (!c->blas) return err ? err->status : DW_ERR_BACKEND;
    if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess)
        return cuda_fail(err, e, "cudaStreamCreateWithFlags");
    if ((e = cudaMalloc(&c->workspace, WORKSPACE_BYTES)) != cudaSuccess) return cuda_fail(err, e, "cudaMalloc(workspace)");
    if ((e = cudaMalloc((void **)&c->amax_v, DWK_ARGMAX_BLOCKS * sizeof(float))) != cudaSuccess ||
        (e = cudaMalloc((void **)&c->amax_i, DWK_ARGMAX_BLOCKS * sizeof(int))) != cudaSuccess ||
        (e = cudaMalloc((void **)&c->amax_counter, sizeof(unsigned))) != cudaSuccess ||
        (e = cudaMemset(c->amax_counter, 0, sizeof(unsigned))) != cudaSuccess)
        return cuda_fail(err, e, "cudaMalloc(argmax scratch)");
    if ((e = cudaMalloc((void **)&c->phase_sync, 2 * PERSIST_LAUNCHES * sizeof(unsigned))) != cudaSuccess ||
        (e = cudaMemset(c->phase_sync, 0, 2 * PERSIST_LAUNCHES * sizeof(unsigned))) != cudaSuccess)
        return cuda_fail(err, e, "cudaMalloc(persistent kernel counters)");
    const char *tr = getenv("DW_CUDA_PERSIST_TRACE");
    if (tr && *tr == '1' &&
        (e = cudaMalloc((void **)&c->phase_trace, 2 * DWK_FUSED_MAX_PHASES * sizeof(unsigned long long))) != cudaSuccess)
        return cuda_fail(err, e, "cudaMalloc(persistent kernel trace)");
    cublasStatus_t s = c->blas->create(&c->handle);
    if (s != CUBLAS_STATUS_SUCCESS) {
        c->handle = NULL;
        return dw_error_set(err, DW_ERR_BACKEND, "backend 'cuda': cublasCreate failed: %s", c->blas->status_string(s));
    }
    if ((s = c->blas->set_stream(c->handle, c->stream)) != CUBLAS_STATUS_SUCCESS ||
        (s = c->blas->set_workspace(c->handle, c->workspace, WORKSPACE_BYTES)) != CUBLAS_STATUS_SUCCESS ||
        (s = c->blas->set_math_mode(c->handle, CUBLAS_DEFAULT_MATH)) != CUBLAS_STATUS_SUCCESS)
        return dw_error_set(err, DW_ERR_BACKEND, "backend 'cuda': cuBLAS set-up failed: %s", c->blas->status_string(s));
    for (cudaEvent_t &ev : c->ev_step)
        if ((e = cudaEventCreate(&ev)) != cudaSuccess) return cuda_fail(err, e, "cudaEventCreate");
    /* without the driver's range query, downloads take the copy path */
    void *fn = NULL;
    cudaDriverEntryPointQueryResult q;
    if (cudaGetDriverEntryPointByVersion("cuPointerGetAttribute", &fn, CUDART_VERSION, cudaEnableDefault, &q) ==
            cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
        c->pointer_attr = (CUresult(*)(void *, CUpointer_attribute, CUdeviceptr))fn;
    else
        (void)cudaGetLastError();
    return DW_OK;
}

} // namespace

extern "C" dw_status dw__cuda_compute_create(dw_backend *backend, dw_compute *out, dw_error *err) {
    out->ops = NULL;
    out->ctx = NULL;
    cctx *c = (cctx *)calloc(1, sizeof *c);
    if (!c) return dw_error_set(err, DW_ERR_NO_MEMORY, "backend 'cuda': out of memory");
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&c->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    c->backend = backend;
    c->device = 0; /* the device the CUDA backend opened (CUDA_VISIBLE_DEVICES picks it) */
    c->graphs = new std::vector<graph_entry>();
    const char *g = getenv("DW_CUDA_GRAPH");
    c->graphs_on = !(g && *g == '0');
    const char *pb = getenv("DW_CUDA_PREFILL_BF16");
    c->prefill_passes = pb && *pb == '1' ? 1 : 2;
    const char *dd = getenv("DW_CUDA_DIRECT_DOWNLOAD");
    c->direct_download = !(dd && *dd == '0');
    const char *fa = getenv("DW_CUDA_FUSE_ATTN");
    c->fuse_attn = !(fa && *fa == '0');
    const char *lq = getenv("DW_CUDA_LATE_QKV");
    c->late_qkv_trigger = !(lq && *lq == '0');
    const char *sp = getenv("DW_CUDA_STEP_PRIME");
    c->prime_on = !(sp && *sp == '0');
    const char *pk = getenv("DW_CUDA_PERSIST");
    c->persist_on = pk && *pk == '1'; /* off by default: slower than separate kernels so far */
    c->phases = new dwk::fused_table();
    c->phases->n = 0;
    c->phase_family = dwk::FF_NONE;
    dw_status st = init(c, err);
    if (st) {
        cu_destroy(c);
        return st;
    }
    out->ops = &cuda_compute_ops;
    out->ctx = c;
    return DW_OK;
}

extern "C" void dw__cuda_compute_set_graphs(dw_compute *comp, int on) {
    cctx *c = (cctx *)comp->ctx;
    locked l(c);
    c->graphs_on = on;
}

extern "C" void dw__cuda_compute_get_stats(dw_compute *comp, dw__cuda_compute_stats *out) {
    cctx *c = (cctx *)comp->ctx;
    locked l(c);
    *out = c->stats;
}

extern "C" dw_status dw__cuda_copy_bandwidth(dw_compute *comp, size_t bytes, int reps, double *gbs, dw_error *err) {
    cctx *c = (cctx *)comp->ctx;
    locked l(c);
    flush(c);
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    std::vector<float> ms;
    cudaError_t e = cudaMalloc(&a, bytes);
    if (e == cudaSuccess) e = cudaMalloc(&b, bytes);
    if (e == cudaSuccess) e = cudaMemsetAsync(a, 1, bytes, c->stream);
    if (e == cudaSuccess) e = cudaEventCreate(&e0);
    if (e == cudaSuccess) e = cudaEventCreate(&e1);
    for (int i = -1; i < reps && e == cudaSuccess; i++) { /* i == -1: warm-up */
        cudaEventRecord(e0, c->stream);
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream);
        cudaEventRecord(e1, c->stream);
        e = cudaEventSynchronize(e1);
        float t = 0;
        if (e == cudaSuccess) e = cudaEventElapsedTime(&t, e0, e1);
        if (i >= 0) ms.push_back(t);
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    if (e != cudaSuccess) return cuda_fail(err, e, "copy bandwidth probe");
    std::sort(ms.begin(), ms.end());
    *gbs = ms.empty() ? 0.0 : 2.0 * (double)bytes / (ms[ms.size() / 2] * 1e-3) / 1e9;
    return DW_OK;
}

extern "C" int dw__cuda_persist_trace(dw_compute *comp, double *us, int max) {
    cctx *c = (cctx *)comp->ctx;
    locked l(c);
    flush(c);
    if (!c->phase_trace || cudaStreamSynchronize(c->stream) != cudaSuccess) return 0;
    const int n = std::min(c->phase_trace_n, max / 2);
    std::vector<unsigned long long> t(2 * (size_t)n);
    if (n <= 0 || cudaMemcpy(t.data(), c->phase_trace, t.size() * sizeof t[0], cudaMemcpyDeviceToHost) != cudaSuccess)
        return 0;
    const unsigned long long t0 = t[1] ? t[1] : 0; /* phase 0 has no barrier in front: its end is the origin */
    for (int i = 1; i < 2 * n; i++) us[i] = t[i] ? ((double)t[i] - (double)t0) / 1e3 : -1.0;
    us[0] = (double)t[0]; /* the grid's blocks */
    return n;
}

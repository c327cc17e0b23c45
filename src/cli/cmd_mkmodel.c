/* `driftwood mkmodel`: writes a random-weight model of a real shape in the Hugging Face layout
 * (config.json, generation_config.json, safetensors shards of at most 5 GB with an index, and the
 * real Llama 3 tokenizer), for benchmarks without downloads. Every thread generates chunks of
 * weights into its own small buffer and writes them at their place in the file (pwrite), so
 * nothing the size of the model is ever held in memory; each shard appears atomically (temporary
 * file, fsync, rename, fsync of the folder). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/bench_util.h"
#include "cli/command.h"
#include "driftwood/dtype.h"
#include "driftwood/file.h"
#include "driftwood/threadpool.h"

typedef struct shape_spec {
    const char *name;
    int vocab, hidden, inter, layers, heads, kv_heads, head_dim, max_pos, tie;
    double rope_theta, rope_factor;
    int rope_orig;
} shape_spec;

/* The published Llama 3 configurations (and a tiny one with the same vocabulary). */
static const shape_spec shapes[] = {
    {"tiny", 128256, 64, 256, 2, 4, 2, 16, 131072, 1, 500000.0, 32.0, 8192},
    {"llama-3.2-1b", 128256, 2048, 8192, 16, 32, 8, 64, 131072, 1, 500000.0, 32.0, 8192},
    {"llama-3.1-8b", 128256, 4096, 14336, 32, 32, 8, 128, 131072, 0, 500000.0, 8.0, 8192},
};

#define MAX_SHARD_BYTES 5000000000ull
#define CHUNK_ELEMS (1u << 20)
#define WEIGHT_STD 0.02

typedef struct tensor_plan {
    char name[96];
    int ndim;
    int64_t shape[2];
    int ones; /* norm weights: 1.0 */
    size_t nbytes;
    int shard;
    uint64_t offset; /* in its shard's data section */
} tensor_plan;

typedef struct fill_job {
    tensor_plan *t;
    int n_tensors;
    int *chunk_start; /* first chunk index of each tensor */
    dw_dtype dtype;
    uint64_t seed;
    int fd;
    uint64_t data_start; /* file offset of the data section */
    char **bufs;         /* one CHUNK_ELEMS-element buffer per thread */
    atomic_int error;    /* first errno of a failed write */
} fill_job;

static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Generates one chunk of one tensor and writes it at its place; the values depend only on
 * (seed, name, chunk), not on threads. */
static void fill_task(void *arg, int task, int thread) {
    fill_job *j = arg;
    if (atomic_load(&j->error)) return;
    int ti = 0;
    while (ti + 1 < j->n_tensors && j->chunk_start[ti + 1] <= task) ti++;
    tensor_plan *t = &j->t[ti];
    size_t es = dw_dtype_size(j->dtype), n = t->nbytes / es;
    size_t c = (size_t)(task - j->chunk_start[ti]);
    size_t i0 = c * CHUNK_ELEMS, i1 = i0 + CHUNK_ELEMS < n ? i0 + CHUNK_ELEMS : n;
    uint64_t s[8]; /* eight independent xorshift generators, interleaved */
    for (int l = 0; l < 8; l++) s[l] = mix64(j->seed ^ name_hash(t->name) ^ mix64(c * 8 + (size_t)l)) | 1;
    const float a = (float)(WEIGHT_STD * 1.7320508075688772); /* uniform [-a, a) has std WEIGHT_STD */
    char *buf = j->bufs[thread];
    float vals[256];
    for (size_t i = i0; i < i1; i += 256) {
        size_t m = i1 - i < 256 ? i1 - i : 256;
        for (size_t k = 0; k < 256; k += 8)
            for (int l = 0; l < 8; l++) {
                uint64_t x = s[l];
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s[l] = x;
                vals[k + l] = t->ones ? 1.0f : ((float)(x >> 40) * (1.0f / 8388608.0f) - 1.0f) * a;
            }
        dw_convert_from_f32(j->dtype, vals, buf + (i - i0) * es, m);
    }
    size_t len = (i1 - i0) * es, done = 0;
    off_t at = (off_t)(j->data_start + t->offset + i0 * es);
    while (done < len) {
        ssize_t w = pwrite(j->fd, buf + done, len - done, at + (off_t)done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int expected = 0;
            atomic_compare_exchange_strong(&j->error, &expected, w < 0 ? errno : EIO);
            return;
        }
        done += (size_t)w;
    }
}

static int plan_tensors(const shape_spec *sp, dw_dtype dtype, tensor_plan **out) {
    int cap = 16 + sp->layers * 9, n = 0;
    tensor_plan *t = calloc((size_t)cap, sizeof *t);
    size_t es = dw_dtype_size(dtype);
    int64_t h = sp->hidden, qd = (int64_t)sp->heads * sp->head_dim, kvd = (int64_t)sp->kv_heads * sp->head_dim;
#define ADD(nm, r, c, one)                                                                      \
    do {                                                                                        \
        tensor_plan *p = &t[n++];                                                               \
        snprintf(p->name, sizeof p->name, "%s", nm);                                            \
        p->ndim = (c) ? 2 : 1;                                                                  \
        p->shape[0] = r;                                                                        \
        p->shape[1] = c;                                                                        \
        p->ones = one;                                                                          \
        p->nbytes = (size_t)(r) * ((c) ? (size_t)(c) : 1) * es;                                 \
    } while (0)
    ADD("model.embed_tokens.weight", sp->vocab, h, 0);
    char nm[96];
    for (int l = 0; l < sp->layers; l++) {
#define L(s) (snprintf(nm, sizeof nm, "model.layers.%d.%s", l, s), nm)
        ADD(L("input_layernorm.weight"), h, 0, 1);
        ADD(L("self_attn.q_proj.weight"), qd, h, 0);
        ADD(L("self_attn.k_proj.weight"), kvd, h, 0);
        ADD(L("self_attn.v_proj.weight"), kvd, h, 0);
        ADD(L("self_attn.o_proj.weight"), h, qd, 0);
        ADD(L("post_attention_layernorm.weight"), h, 0, 1);
        ADD(L("mlp.gate_proj.weight"), sp->inter, h, 0);
        ADD(L("mlp.up_proj.weight"), sp->inter, h, 0);
        ADD(L("mlp.down_proj.weight"), h, sp->inter, 0);
#undef L
    }
    ADD("model.norm.weight", h, 0, 1);
    if (!sp->tie) ADD("lm_head.weight", sp->vocab, h, 0);
#undef ADD
    *out = t;
    return n;
}

static int write_file(const char *path, const void *data, size_t len) {
    dw_error err;
    if (dw_file_write_atomic(path, data, len, &err) != DW_OK) return dw_cli_fail("%s", err.message);
    return 0;
}

static int copy_file(const char *src, const char *dst) {
    char *buf;
    size_t len;
    dw_error err;
    if (dw_file_read_all(src, 1u << 30, &buf, &len, &err) != DW_OK)
        return dw_cli_fail("%s (the Llama 3 tokenizer comes from `make setup`; or pass --tokenizer-dir)", err.message);
    int rc = write_file(dst, buf, len);
    free(buf);
    return rc;
}

/* .deps/llama3-tokenizer next to the working directory, or two levels above the executable
 * (build/bin/driftwood in a clone). */
static void default_tokenizer_dir(char *out, size_t size) {
    snprintf(out, size, ".deps/llama3-tokenizer");
    struct stat sb;
    if (stat(out, &sb) == 0) return;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return;
    exe[n] = 0;
    for (int up = 0; up < 3; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash) return;
        *slash = 0;
    }
    if ((size_t)snprintf(out, size, "%.*s/.deps/llama3-tokenizer", (int)(size - 32), exe) >= size) out[0] = 0;
}

/* Writes the tensors of shard `shard` to path: header, then the data generated in parallel,
 * through a temporary file that replaces path only when complete and synced. */
static int write_shard(const char *path, tensor_plan *t, int n, int shard, dw_dtype dtype, uint64_t seed,
                       dw_threadpool *pool, char **bufs) {
    json_t *header = json_object();
    json_t *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(header, "__metadata__", meta);
    uint64_t off = 0;
    int first = -1, count = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].shard != shard) continue;
        if (first < 0) first = i;
        count++;
        t[i].offset = off;
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        for (int d = 0; d < t[i].ndim; d++) json_array_append_new(shape, json_integer(t[i].shape[d]));
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + t[i].nbytes)));
        json_object_set_new(e, "dtype", json_string(dw_dtype_name(dtype)));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", offs);
        json_object_set_new(header, t[i].name, e);
        off += t[i].nbytes;
    }
    char *text = json_dumps(header, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(header);
    size_t hlen = strlen(text), padded = (hlen + 7) & ~(size_t)7;
    uint8_t *head = malloc(8 + padded);
    for (int i = 0; i < 8; i++) head[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(head + 8, text, hlen);
    memset(head + 8 + hlen, ' ', padded - hlen);
    free(text);

    char tmp[PATH_MAX + 96];
    snprintf(tmp, sizeof tmp, "%.*s.tmp-%d", PATH_MAX, path, (int)getpid());
    int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(head);
        return dw_cli_fail("%s: cannot create: %s", tmp, strerror(errno));
    }
    int err_no = 0;
    if (pwrite(fd, head, 8 + padded, 0) != (ssize_t)(8 + padded)) err_no = errno ? errno : EIO;
    free(head);
    int *chunk_start = calloc((size_t)count + 1, sizeof *chunk_start);
    for (int k = 0; k < count; k++) {
        size_t elems = t[first + k].nbytes / dw_dtype_size(dtype);
        chunk_start[k + 1] = chunk_start[k] + (int)((elems + CHUNK_ELEMS - 1) / CHUNK_ELEMS);
    }
    fill_job job = {.t = t + first, .n_tensors = count, .chunk_start = chunk_start, .dtype = dtype, .seed = seed,
                    .fd = fd, .data_start = 8 + padded, .bufs = bufs};
    if (!err_no) {
        dw_threadpool_run(pool, chunk_start[count], fill_task, &job);
        err_no = atomic_load(&job.error);
    }
    free(chunk_start);
    if (!err_no && fsync(fd) != 0) err_no = errno;
    /* Drop the written pages from the page cache (they are clean now): the first load then reads
     * the file into huge-page folios (see the engine's weight loader), not the small ones the
     * writes left behind. */
    if (!err_no) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    if (close(fd) != 0 && !err_no) err_no = errno;
    if (!err_no && rename(tmp, path) != 0) err_no = errno;
    if (err_no) {
        unlink(tmp);
        return dw_cli_fail("%s: cannot write: %s", path, strerror(err_no));
    }
    char dir[PATH_MAX + 96];
    snprintf(dir, sizeof dir, "%.*s", PATH_MAX, path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

DW_COMMAND(mkmodel, "mkmodel --shape tiny|llama-3.2-1b|llama-3.1-8b --out DIR [--dtype bf16|f16|f32] [--seed N] [--tokenizer-dir DIR]",
           "write a random-weight model of a real shape (HF layout, Llama 3 tokenizer)") {
    const char *shape_name = NULL, *out_dir = NULL, *dtype_name = "bf16", *tok_dir_opt = NULL;
    long seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--shape") && v) shape_name = v, i++;
        else if (!strcmp(a, "--out") && v) out_dir = v, i++;
        else if (!strcmp(a, "--dtype") && v) dtype_name = v, i++;
        else if (!strcmp(a, "--tokenizer-dir") && v) tok_dir_opt = v, i++;
        else if (!strcmp(a, "--seed") && v) {
            if (dw_cli_parse_long("--seed", v, 0, LONG_MAX, &seed)) return 1;
            i++;
        } else return dw_cli_fail("mkmodel: unexpected argument '%s'", a);
    }
    if (!shape_name || !out_dir) return dw_cli_fail("mkmodel: --shape and --out are required");
    const shape_spec *sp = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(shapes[i].name, shape_name)) sp = &shapes[i];
    if (!sp) return dw_cli_fail("mkmodel: unknown shape '%s' (tiny, llama-3.2-1b, llama-3.1-8b)", shape_name);
    dw_dtype dtype;
    const char *torch_dtype;
    if (!strcmp(dtype_name, "bf16")) dtype = DW_DTYPE_BF16, torch_dtype = "bfloat16";
    else if (!strcmp(dtype_name, "f16")) dtype = DW_DTYPE_F16, torch_dtype = "float16";
    else if (!strcmp(dtype_name, "f32")) dtype = DW_DTYPE_F32, torch_dtype = "float32";
    else return dw_cli_fail("mkmodel: unknown --dtype '%s' (bf16, f16, f32)", dtype_name);

    char tok_dir[PATH_MAX], src[PATH_MAX + 32], dst[PATH_MAX + 64];
    if (tok_dir_opt) snprintf(tok_dir, sizeof tok_dir, "%s", tok_dir_opt);
    else default_tokenizer_dir(tok_dir, sizeof tok_dir);
    snprintf(src, sizeof src, "%s/tokenizer.json", tok_dir);
    if (access(src, R_OK) != 0)
        return dw_cli_fail("%s: cannot read the Llama 3 tokenizer (run `make setup`, or pass --tokenizer-dir)", src);
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) return dw_cli_fail("%s: cannot create: %s", out_dir, strerror(errno));

    double t0 = dw_cli_now_s();
    /* config.json, generation_config.json */
    char text[4096];
    snprintf(text, sizeof text,
             "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"attention_bias\": false,\n"
             "  \"attention_dropout\": 0.0,\n  \"bos_token_id\": 128000,\n  \"eos_token_id\": [128001, 128008, 128009],\n"
             "  \"head_dim\": %d,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": %d,\n  \"initializer_range\": 0.02,\n"
             "  \"intermediate_size\": %d,\n  \"max_position_embeddings\": %d,\n  \"mlp_bias\": false,\n"
             "  \"model_type\": \"llama\",\n  \"num_attention_heads\": %d,\n  \"num_hidden_layers\": %d,\n"
             "  \"num_key_value_heads\": %d,\n  \"pretraining_tp\": 1,\n  \"rms_norm_eps\": 1e-05,\n"
             "  \"rope_scaling\": {\"factor\": %.1f, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
             "\"original_max_position_embeddings\": %d, \"rope_type\": \"llama3\"},\n"
             "  \"rope_theta\": %.1f,\n  \"tie_word_embeddings\": %s,\n  \"torch_dtype\": \"%s\",\n"
             "  \"use_cache\": true,\n  \"vocab_size\": %d\n}\n",
             sp->head_dim, sp->hidden, sp->inter, sp->max_pos, sp->heads, sp->layers, sp->kv_heads, sp->rope_factor,
             sp->rope_orig, sp->rope_theta, sp->tie ? "true" : "false", torch_dtype, sp->vocab);
    snprintf(dst, sizeof dst, "%s/config.json", out_dir);
    if (write_file(dst, text, strlen(text))) return 1;
    snprintf(text, sizeof text,
             "{\n  \"bos_token_id\": 128000,\n  \"do_sample\": true,\n  \"eos_token_id\": [128001, 128008, 128009],\n"
             "  \"temperature\": 0.6,\n  \"top_p\": 0.9\n}\n");
    snprintf(dst, sizeof dst, "%s/generation_config.json", out_dir);
    if (write_file(dst, text, strlen(text))) return 1;
    snprintf(dst, sizeof dst, "%s/tokenizer.json", out_dir);
    if (copy_file(src, dst)) return 1;
    snprintf(src, sizeof src, "%s/tokenizer_config.json", tok_dir);
    snprintf(dst, sizeof dst, "%s/tokenizer_config.json", out_dir);
    if (access(src, R_OK) == 0 && copy_file(src, dst)) return 1;

    /* plan shards */
    tensor_plan *t;
    int n = plan_tensors(sp, dtype, &t);
    int n_shards = 1;
    size_t shard_bytes = 0, total = 0;
    for (int i = 0; i < n; i++) {
        if (shard_bytes && shard_bytes + t[i].nbytes > MAX_SHARD_BYTES) n_shards++, shard_bytes = 0;
        t[i].shard = n_shards - 1;
        shard_bytes += t[i].nbytes;
        total += t[i].nbytes;
    }
    dw_threadpool *pool = dw_threadpool_global();
    if (!pool) return dw_cli_fail("mkmodel: cannot start threads");
    int n_threads = dw_threadpool_size(pool);
    char **bufs = calloc((size_t)n_threads, sizeof *bufs);
    for (int i = 0; i < n_threads; i++) bufs[i] = malloc(CHUNK_ELEMS * dw_dtype_size(dtype));
    int rc = 0;
    for (int s = 0; s < n_shards && !rc; s++) {
        if (n_shards == 1) snprintf(dst, sizeof dst, "%s/model.safetensors", out_dir);
        else snprintf(dst, sizeof dst, "%s/model-%05d-of-%05d.safetensors", out_dir, s + 1, n_shards);
        rc = write_shard(dst, t, n, s, dtype, (uint64_t)seed, pool, bufs);
    }
    for (int i = 0; i < n_threads; i++) free(bufs[i]);
    free(bufs);
    if (!rc && n_shards > 1) {
        size_t cap = 64 + (size_t)n * 160;
        char *index = malloc(cap);
        int o = snprintf(index, cap, "{\n  \"metadata\": {\"total_size\": %zu},\n  \"weight_map\": {\n", total);
        for (int i = 0; i < n; i++)
            o += snprintf(index + o, cap - o, "    \"%s\": \"model-%05d-of-%05d.safetensors\"%s\n", t[i].name,
                          t[i].shard + 1, n_shards, i + 1 < n ? "," : "");
        o += snprintf(index + o, cap - o, "  }\n}\n");
        snprintf(dst, sizeof dst, "%s/model.safetensors.index.json", out_dir);
        rc = write_file(dst, index, (size_t)o);
        free(index);
    }
    free(t);
    if (!rc)
        printf("wrote %s: %s, %s, %.2f GB of weights in %d file%s, %.1f s\n", out_dir, sp->name, dtype_name, total / 1e9,
               n_shards, n_shards > 1 ? "s" : "", dw_cli_now_s() - t0);
    return rc;
}

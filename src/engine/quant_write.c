/* `driftwood quantize`'s work (quant.h): reads a bf16/f16/f32 model directory and writes a
 * complete MLX-affine quantized one (config.json with the quantization block, the other files
 * copied, one model.safetensors), into a temporary folder renamed into place at the end. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "driftwood/threadpool.h"
#include "engine/engine_impl.h"
#include "engine/quant.h"

#define MAX_CONFIG_BYTES (4u << 20)
#define MAX_COPY_BYTES (512u << 20)
#define ROWS_PER_TASK 64

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* mlx-lm quantizes every Linear and Embedding: here, every 2-D "<m>.weight" that is not a norm. */
static int is_quantizable(const dw_tensor_info *ti) {
    return ti->ndim == 2 && ends_with(ti->name, ".weight") && !strstr(ti->name, "norm");
}

typedef struct quant_job {
    const dw_tensor_info *ti;
    int bits, group_size;
    uint32_t *q;
    void *scales, *biases;
    dw_dtype sdtype;
} quant_job;

static void quant_task(void *arg, int task, int thread) {
    quant_job *j = arg;
    int64_t rows = j->ti->shape[0], cols = j->ti->shape[1];
    int64_t r0 = (int64_t)task * ROWS_PER_TASK, r1 = r0 + ROWS_PER_TASK < rows ? r0 + ROWS_PER_TASK : rows;
    size_t esize = dw_dtype_size(j->ti->dtype), ssize = dw_dtype_size(j->sdtype);
    int64_t groups = cols / j->group_size;
    dw__quantize((const char *)j->ti->data + (size_t)r0 * cols * esize, j->ti->dtype, r1 - r0, cols, j->bits,
                 j->group_size, j->q + (size_t)r0 * DW_QUANT_ROW_WORDS(cols, j->bits),
                 (char *)j->scales + (size_t)r0 * groups * ssize, (char *)j->biases + (size_t)r0 * groups * ssize,
                 j->sdtype);
}

static dw_status copy_file(const char *src, const char *dst, dw_error *err) {
    char *buf;
    size_t len;
    dw_status st = dw_file_read_all(src, MAX_COPY_BYTES, &buf, &len, err);
    if (st) return st;
    st = dw_file_write_atomic(dst, buf, len, err);
    free(buf);
    return st;
}

/* Reads in_dir/config.json (its path into path) as a JSON object into *root. */
static dw_status read_config_json(const char *in_dir, char *path, size_t cap, json_t **root, dw_error *err) {
    snprintf(path, cap, "%s/config.json", in_dir);
    char *text;
    size_t len;
    dw_status st = dw_file_read_all(path, MAX_CONFIG_BYTES, &text, &len, err);
    if (st) return st;
    json_error_t jerr;
    *root = json_loads(text, 0, &jerr);
    free(text);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return dw_error_set(err, DW_ERR_FORMAT, "%s: invalid JSON at line %d: %s", path, jerr.line, jerr.text);
    }
    return DW_OK;
}

static dw_status write_config(const char *in_dir, const char *tmp, int bits, int group_size, dw_error *err) {
    char path[PATH_MAX + 64], out[PATH_MAX + 64];
    snprintf(out, sizeof out, "%s/config.json", tmp);
    json_t *root;
    dw_status st = read_config_json(in_dir, path, sizeof path, &root, err);
    if (st) return st;
    int quantized = json_object_get(root, "quantization") || json_object_get(root, "quantization_config");
    if (bits && quantized) {
        json_decref(root);
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "%s: the model is already quantized", path);
    }
    if (bits) {
        json_t *q = json_object();
        json_object_set_new(q, "group_size", json_integer(group_size));
        json_object_set_new(q, "bits", json_integer(bits));
        json_object_set_new(root, "quantization", q);
    } else { /* dequantized: an f32 model */
        json_object_del(root, "quantization");
        json_object_del(root, "quantization_config");
        json_object_set_new(root, "torch_dtype", json_string("float32"));
    }
    char *dump = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!dump) return dw_error_set(err, DW_ERR_NO_MEMORY, "%s: out of memory", out);
    size_t n = strlen(dump);
    char *withnl = realloc(dump, n + 2);
    if (!withnl) {
        free(dump);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "%s: out of memory", out);
    }
    withnl[n] = '\n';
    withnl[n + 1] = 0;
    st = dw_file_write_atomic(out, withnl, n + 1, err);
    free(withnl);
    return st;
}

/* Copies the directory's other files (tokenizer, generation config, README...). */
static dw_status copy_others(const char *in_dir, const char *tmp, dw_error *err) {
    DIR *d = opendir(in_dir);
    if (!d) return dw_error_set(err, DW_ERR_IO, "%s: cannot open: %s", in_dir, strerror(errno));
    struct dirent *e;
    dw_status st = DW_OK;
    while (!st && (e = readdir(d))) {
        const char *n = e->d_name;
        if (n[0] == '.' || !strcmp(n, "config.json") || ends_with(n, ".safetensors") ||
            !strcmp(n, "model.safetensors.index.json"))
            continue;
        char src[2 * PATH_MAX], dst[2 * PATH_MAX];
        snprintf(src, sizeof src, "%s/%s", in_dir, n);
        snprintf(dst, sizeof dst, "%s/%s", tmp, n);
        struct stat sb;
        if (stat(src, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        st = copy_file(src, dst, err);
    }
    closedir(d);
    return st;
}

typedef struct outbuf {
    void *q, *s, *b;
} outbuf;

static dw_status write_weights(const char *in_dir, const char *tmp, int bits, int group_size, dw_error *err) {
    dw__weight_files wf;
    dw_status st = dw__weights_open(in_dir, &wf, err);
    if (st) return st;
    size_t total = 0;
    for (int f = 0; f < wf.n_files; f++) total += dw_safetensors_count(wf.files[f]);
    outbuf *bufs = calloc(total ? total : 1, sizeof *bufs);
    dw_safetensors_writer *w = NULL;
    if (!bufs) {
        st = dw_error_set(err, DW_ERR_NO_MEMORY, "%s: out of memory", in_dir);
        goto done;
    }
    if ((st = dw_safetensors_writer_new(&w, err))) goto done;
    if ((st = dw_safetensors_writer_set_metadata(w, "format", "mlx", err))) goto done;
    dw_threadpool *pool = dw_threadpool_global();
    size_t k = 0;
    for (int f = 0; f < wf.n_files; f++) {
        const char *path = dw_safetensors_path(wf.files[f]);
        for (size_t i = 0; i < dw_safetensors_count(wf.files[f]); i++, k++) {
            const dw_tensor_info *ti = dw_safetensors_tensor(wf.files[f], i);
            if (!is_quantizable(ti)) {
                st = dw_safetensors_writer_add(w, ti->name, ti->dtype, ti->ndim, ti->shape, ti->data, ti->nbytes, err);
                if (st) goto done;
                continue;
            }
            if (ti->dtype != DW_DTYPE_BF16 && ti->dtype != DW_DTYPE_F16 && ti->dtype != DW_DTYPE_F32) {
                st = dw_error_set(err, DW_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (quantize reads BF16, F16, F32)",
                                  path, ti->name, dw_dtype_name(ti->dtype));
                goto done;
            }
            char msg[160];
            if (dw__quant_check_shape(bits, group_size, ti->shape[1], msg, sizeof msg)) {
                st = dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "%s: tensor '%s': %s", path, ti->name, msg);
                goto done;
            }
            int64_t rows = ti->shape[0], cols = ti->shape[1];
            quant_job j = {.ti = ti, .bits = bits, .group_size = group_size, .sdtype = ti->dtype};
            size_t qbytes = (size_t)rows * DW_QUANT_ROW_WORDS(cols, bits) * 4;
            size_t sbytes = (size_t)rows * (cols / group_size) * dw_dtype_size(j.sdtype);
            bufs[k].q = j.q = malloc(qbytes);
            bufs[k].s = j.scales = malloc(sbytes);
            bufs[k].b = j.biases = malloc(sbytes);
            if (!j.q || !j.scales || !j.biases) {
                st = dw_error_set(err, DW_ERR_NO_MEMORY, "%s: out of memory quantizing '%s'", path, ti->name);
                goto done;
            }
            dw_threadpool_run(pool, (int)((rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK), quant_task, &j);
            char module[300], name[320];
            snprintf(module, sizeof module, "%.*s", (int)(strlen(ti->name) - strlen(".weight")), ti->name);
            int64_t qshape[2] = {rows, DW_QUANT_ROW_WORDS(cols, bits)}, sshape[2] = {rows, cols / group_size};
            snprintf(name, sizeof name, "%s.weight", module);
            if ((st = dw_safetensors_writer_add(w, name, DW_DTYPE_U32, 2, qshape, j.q, qbytes, err))) goto done;
            snprintf(name, sizeof name, "%s.scales", module);
            if ((st = dw_safetensors_writer_add(w, name, j.sdtype, 2, sshape, j.scales, sbytes, err))) goto done;
            snprintf(name, sizeof name, "%s.biases", module);
            if ((st = dw_safetensors_writer_add(w, name, j.sdtype, 2, sshape, j.biases, sbytes, err))) goto done;
        }
    }
    char out[PATH_MAX + 64];
    snprintf(out, sizeof out, "%s/model.safetensors", tmp);
    st = dw_safetensors_writer_write(w, out, err);
done:
    dw_safetensors_writer_free(w);
    if (bufs)
        for (size_t i = 0; i < total; i++) {
            free(bufs[i].q);
            free(bufs[i].s);
            free(bufs[i].b);
        }
    free(bufs);
    dw__weights_close(&wf);
    return st;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static dw_status write_model(const char *in_dir, const char *out_dir, int bits, int group_size, dw_error *err);

dw_status dw_model_quantize(const char *in_dir, const char *out_dir, int bits, int group_size, dw_error *err) {
    char msg[160];
    if (dw__quant_check_shape(bits, group_size, group_size, msg, sizeof msg))
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "quantize: %s", msg);
    return write_model(in_dir, out_dir, bits, group_size, err);
}

static dw_status write_dequantized(const char *in_dir, const char *tmp, dw_error *err);

dw_status dw_model_dequantize(const char *in_dir, const char *out_dir, dw_error *err) {
    return write_model(in_dir, out_dir, 0, 0, err);
}

/* bits == 0: dequantize. */
static dw_status write_model(const char *in_dir, const char *out_dir, int bits, int group_size, dw_error *err) {
    struct stat sb;
    if (stat(out_dir, &sb) == 0) {
        DIR *d = opendir(out_dir);
        int empty = d != NULL;
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
        if (d) closedir(d);
        if (!empty) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "%s: exists and is not an empty folder", out_dir);
    }
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out_dir, (long)getpid()) >= (int)sizeof tmp)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "%s: path too long", out_dir);
    if (mkdir(tmp, 0777) != 0) return dw_error_set(err, DW_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    dw_status st;
    if ((st = write_config(in_dir, tmp, bits, group_size, err)) || (st = copy_others(in_dir, tmp, err)) ||
        (st = bits ? write_weights(in_dir, tmp, bits, group_size, err) : write_dequantized(in_dir, tmp, err))) {
        remove_tree(tmp);
        return st;
    }
    if (rename(tmp, out_dir) != 0) {
        st = dw_error_set(err, DW_ERR_IO, "%s: cannot move into place: %s", out_dir, strerror(errno));
        remove_tree(tmp);
    }
    return st;
}

/* ---- dequantize (for references and tests) ------------------------------------------- */

typedef struct dequant_job {
    const dw__qtensor *t;
    float *out;
} dequant_job;

static void dequant_task(void *arg, int task, int thread) {
    dequant_job *j = arg;
    int64_t r1 = ((int64_t)task + 1) * ROWS_PER_TASK < j->t->rows ? ((int64_t)task + 1) * ROWS_PER_TASK : j->t->rows;
    for (int64_t r = (int64_t)task * ROWS_PER_TASK; r < r1; r++) dw__dequantize_row(j->t, r, j->out + (size_t)r * j->t->cols);
}

static dw_status write_dequantized(const char *in_dir, const char *tmp, dw_error *err) {
    char cpath[PATH_MAX + 64];
    json_t *root;
    dw_status st = read_config_json(in_dir, cpath, sizeof cpath, &root, err);
    if (st) return st;
    dw__quant_config qc;
    st = dw__quant_config_parse(cpath, root, &qc, err);
    json_decref(root);
    if (st) return st;
    dw__weight_files wf;
    if ((st = dw__weights_open(in_dir, &wf, err))) {
        dw__quant_config_free(&qc);
        return st;
    }
    size_t total = 0;
    for (int f = 0; f < wf.n_files; f++) total += dw_safetensors_count(wf.files[f]);
    float **bufs = calloc(total ? total : 1, sizeof *bufs);
    dw_safetensors_writer *w = NULL;
    if (!bufs) {
        st = dw_error_set(err, DW_ERR_NO_MEMORY, "%s: out of memory", in_dir);
        goto done;
    }
    if ((st = dw_safetensors_writer_new(&w, err))) goto done;
    size_t k = 0;
    for (int f = 0; f < wf.n_files; f++)
        for (size_t i = 0; i < dw_safetensors_count(wf.files[f]); i++, k++) {
            const dw_tensor_info *ti = dw_safetensors_tensor(wf.files[f], i);
            if (ends_with(ti->name, ".scales") || ends_with(ti->name, ".biases")) {
                char module[300];
                snprintf(module, sizeof module, "%.*s", (int)(strlen(ti->name) - 7), ti->name);
                if (dw__quant_present(&wf, module)) continue;
            }
            if (!(ti->dtype == DW_DTYPE_U32 && ti->ndim == 2 && ends_with(ti->name, ".weight"))) {
                st = dw_safetensors_writer_add(w, ti->name, ti->dtype, ti->ndim, ti->shape, ti->data, ti->nbytes, err);
                if (st) goto done;
                continue;
            }
            char module[300];
            snprintf(module, sizeof module, "%.*s", (int)(strlen(ti->name) - 7), ti->name);
            int quantized, bits, gs;
            dw__quant_params_for(&qc, module, &quantized, &bits, &gs);
            if (!quantized) bits = 4;
            dw__qtensor t;
            if ((st = dw__quant_find(&wf, &qc, module, ti->shape[0], ti->shape[1] * DW_QUANT_CODES_PER_WORD(bits), &t, err))) {
                if (st == DW_ERR_NOT_FOUND && !err->message[0])
                    st = dw_error_set(err, DW_ERR_FORMAT, "%s: '%s' has no scales", in_dir, ti->name);
                goto done;
            }
            bufs[k] = malloc((size_t)t.rows * t.cols * sizeof(float));
            if (!bufs[k]) {
                st = dw_error_set(err, DW_ERR_NO_MEMORY, "%s: out of memory dequantizing '%s'", in_dir, ti->name);
                goto done;
            }
            dequant_job j = {&t, bufs[k]};
            dw_threadpool_run(dw_threadpool_global(), (int)((t.rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK), dequant_task, &j);
            int64_t shape[2] = {t.rows, t.cols};
            st = dw_safetensors_writer_add(w, ti->name, DW_DTYPE_F32, 2, shape, bufs[k],
                                           (size_t)t.rows * t.cols * sizeof(float), err);
            if (st) goto done;
        }
    char out[PATH_MAX + 64];
    snprintf(out, sizeof out, "%s/model.safetensors", tmp);
    st = dw_safetensors_writer_write(w, out, err);
done:
    dw_safetensors_writer_free(w);
    if (bufs)
        for (size_t i = 0; i < total; i++) free(bufs[i]);
    free(bufs);
    dw__weights_close(&wf);
    dw__quant_config_free(&qc);
    return st;
}

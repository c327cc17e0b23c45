/* The runtime's models: registered by name, loaded once per backend on first use (under the
 * runtime's lock, so two actors opening the same model at once share one load). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor/runtime_impl.h"
#include "core/clock.h"
#include "driftwood/model.h"
#include "driftwood/tokenizer.h"

static dw__registered_model *find(dw_runtime *rt, const char *name) {
    for (int i = 0; i < rt->model_count; i++)
        if (!strcmp(rt->models[i].name, name)) return &rt->models[i];
    return NULL;
}

dw_status dw_runtime_register_model(dw_runtime *rt, const char *name, const char *dir, dw_error *err) {
    return dw_runtime_register_model_with(rt, name, dir, NULL, err);
}

const dw_model_use_options *dw_runtime_model_options(dw_runtime *rt, const char *name) {
    pthread_mutex_lock(&rt->lock);
    dw__registered_model *m = find(rt, name);
    pthread_mutex_unlock(&rt->lock);
    return m ? &m->options : NULL;
}

dw_status dw_runtime_register_model_with(dw_runtime *rt, const char *name, const char *dir,
                                         const dw_model_use_options *options, dw_error *err) {
    if (!name || !*name || strlen(name) > 63)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "model name must be 1 to 63 bytes");
    dw_status st = DW_OK;
    pthread_mutex_lock(&rt->lock);
    if (find(rt, name)) st = dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "model '%s' is registered twice", name);
    else if (rt->model_count == DW_MAX_MODELS) st = dw_error_set(err, DW_ERR_LIMIT, "too many models (%d)", DW_MAX_MODELS);
    else {
        dw__registered_model *m = &rt->models[rt->model_count];
        memset(m, 0, sizeof *m);
        m->name = strdup(name);
        m->dir = strdup(dir);
        if (options) m->options = *options;
        if (!m->name || !m->dir) st = dw_error_set(err, DW_ERR_NO_MEMORY, "out of memory");
        else rt->model_count++;
    }
    pthread_mutex_unlock(&rt->lock);
    return st;
}

const char *dw_runtime_model_name(dw_runtime *rt, int i) {
    pthread_mutex_lock(&rt->lock);
    const char *name = i >= 0 && i < rt->model_count ? rt->models[i].name : NULL;
    pthread_mutex_unlock(&rt->lock);
    return name;
}

const char *dw_runtime_model_dir(dw_runtime *rt, const char *name) {
    pthread_mutex_lock(&rt->lock);
    dw__registered_model *m = find(rt, name);
    pthread_mutex_unlock(&rt->lock);
    return m ? m->dir : NULL;
}

dw_status dw_runtime_model(dw_runtime *rt, const char *name, const char *backend_name, dw_model **model,
                           dw_tokenizer **tokenizer, double *load_ms, dw_error *err) {
    dw_backend *backend;
    dw_status st = dw_runtime_backend(rt, backend_name, &backend, err);
    if (st != DW_OK) return st;
    if (load_ms) *load_ms = 0;
    pthread_mutex_lock(&rt->lock);
    dw__registered_model *m = find(rt, name);
    if (!m) {
        st = dw_error_set(err, DW_ERR_NOT_FOUND, "no model named '%s' is registered", name);
        goto out;
    }
    for (int i = 0; i < m->loaded_count; i++)
        if (m->backends[i] == backend) {
            *model = m->loaded[i];
            *tokenizer = dw_model_tokenizer(m->loaded[i]);
            goto out;
        }
    double t0 = dw__now_ms();
    dw_model *loaded;
    if ((st = dw_model_load(m->dir, backend, NULL, &loaded, err)) != DW_OK) goto out;
    if (!dw_model_tokenizer(loaded)) {
        dw_model_free(loaded);
        st = dw_error_set(err, DW_ERR_NOT_FOUND, "model '%s': %s has no tokenizer.json", name, m->dir);
        goto out;
    }
    if (m->options.batching) {
        dw_batch_options bo = m->options.batch;
        bo.kv_f32 = m->options.kv_f32;
        if ((st = dw_model_batching_start(loaded, &bo, err)) != DW_OK) {
            dw_model_free(loaded);
            dw_error_prefix(err, "model '%s'", name);
            goto out;
        }
    }
    m->backends[m->loaded_count] = backend;
    m->loaded[m->loaded_count++] = loaded;
    *model = loaded;
    *tokenizer = dw_model_tokenizer(loaded);
    if (load_ms) *load_ms = dw__now_ms() - t0;
out:
    pthread_mutex_unlock(&rt->lock);
    return st;
}

void dw__runtime_free_models(dw_runtime *rt) {
    for (int i = 0; i < rt->model_count; i++) {
        dw__registered_model *m = &rt->models[i];
        for (int j = 0; j < m->loaded_count; j++) dw_model_free(m->loaded[j]);
        free(m->name);
        free(m->dir);
    }
    rt->model_count = 0;
}

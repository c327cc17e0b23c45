/* Internal file helpers (src/core/file.h): bounded reads, read-only mappings, atomic
 * replacement. Every failure message names the file and the system's reason. */
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------ */
/* Whole-file reads                                                                      */

dw_status dw_file_read_all(const char *path, size_t max, char **buf, size_t *len, dw_error *err) {
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dw_error_set(err, DW_ERR_IO, "file %s: cannot open: %s", path, strerror(errno));

    struct stat sb;
    size_t cap = 4096;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
        if ((unsigned long long)sb.st_size > max) {
            close(fd);
            return dw_error_set(err, DW_ERR_LIMIT, "file %s: %lld bytes is more than the %zu-byte limit",
                                path, (long long)sb.st_size, max);
        }
        cap = (size_t)sb.st_size + 1;
    }
    char *data = malloc(cap);
    if (!data) {
        close(fd);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "file %s: cannot allocate %zu bytes", path, cap);
    }
    /* Read until EOF rather than trusting st_size: the file may change, or not be regular.
     * When the buffer is full, a one-byte probe tells EOF apart from "grow the buffer". */
    size_t used = 0;
    for (;;) {
        char probe;
        int full = used + 1 >= cap;
        ssize_t r = full ? read(fd, &probe, 1) : read(fd, data + used, cap - 1 - used);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(data);
            close(fd);
            return dw_error_set(err, DW_ERR_IO, "file %s: read failed: %s", path, strerror(e));
        }
        if (r == 0) break;
        if (full) {
            size_t ncap = cap * 2;
            char *n = realloc(data, ncap);
            if (!n) {
                free(data);
                close(fd);
                return dw_error_set(err, DW_ERR_NO_MEMORY, "file %s: cannot allocate %zu bytes", path, ncap);
            }
            data = n;
            cap = ncap;
            data[used] = probe;
        }
        used += (size_t)r;
        if (used > max) {
            free(data);
            close(fd);
            return dw_error_set(err, DW_ERR_LIMIT, "file %s: more than the %zu-byte limit", path, max);
        }
    }
    close(fd);
    data[used] = '\0';
    *buf = data;
    *len = used;
    return DW_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Read-only mappings                                                                    */

dw_status dw__file_map(const char *path, dw__mapping *map, dw_error *err) {
    map->data = NULL;
    map->len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dw_error_set(err, DW_ERR_IO, "file %s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return dw_error_set(err, DW_ERR_IO, "file %s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return dw_error_set(err, DW_ERR_IO, "file %s: not a regular file", path);
    }
    if ((unsigned long long)sb.st_size > SIZE_MAX) {
        close(fd);
        return dw_error_set(err, DW_ERR_LIMIT, "file %s: too large to map", path);
    }
    size_t len = (size_t)sb.st_size;
    if (len == 0) {
        close(fd);
        return DW_OK;
    }
    void *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return dw_error_set(err, DW_ERR_IO, "file %s: cannot map %zu bytes: %s", path, len, strerror(e));
    map->data = p;
    map->len = len;
    return DW_OK;
}

void dw__file_unmap(dw__mapping *map) {
    if (map->data) munmap((void *)map->data, map->len);
    map->data = NULL;
    map->len = 0;
}

/* ------------------------------------------------------------------------------------ */
/* Atomic replacement                                                                    */

struct dw__atomic_file {
    int fd;
    char *path; /* the target */
    char *tmp;  /* the temporary file next to it */
};

static atomic_uint tmp_counter;

dw_status dw__atomic_file_open(const char *path, dw__atomic_file **out, dw_error *err) {
    *out = NULL;
    dw__atomic_file *af = calloc(1, sizeof *af);
    size_t tmp_cap = strlen(path) + 64;
    if (af) af->path = strdup(path);
    if (af) af->tmp = malloc(tmp_cap);
    if (!af || !af->path || !af->tmp) {
        if (af) {
            free(af->path);
            free(af->tmp);
            free(af);
        }
        return dw_error_set(err, DW_ERR_NO_MEMORY, "file %s: out of memory", path);
    }
    /* O_EXCL with a fresh name per attempt: never reuses another writer's temp file. The mode
     * 0666 lets the umask decide the permissions, as for an ordinary new file. */
    for (int attempt = 0;; attempt++) {
        snprintf(af->tmp, tmp_cap, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&tmp_counter, 1));
        af->fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (af->fd >= 0) break;
        if (errno != EEXIST || attempt == 100) {
            int e = errno;
            dw_error_set(err, DW_ERR_IO, "file %s: cannot create temporary file %s: %s", path, af->tmp, strerror(e));
            free(af->path);
            free(af->tmp);
            free(af);
            return DW_ERR_IO;
        }
    }
    *out = af;
    return DW_OK;
}

dw_status dw__atomic_file_write(dw__atomic_file *af, const void *buf, size_t len, dw_error *err) {
    const char *p = buf;
    while (len > 0) {
        /* Linux moves at most ~2 GiB per write(); ask for at most 1 GiB at a time. */
        size_t chunk = len < ((size_t)1 << 30) ? len : ((size_t)1 << 30);
        ssize_t w = write(af->fd, p, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return dw_error_set(err, DW_ERR_IO, "file %s: write failed: %s", af->path, strerror(errno));
        if (w == 0) return dw_error_set(err, DW_ERR_IO, "file %s: write made no progress", af->path);
        p += w;
        len -= (size_t)w;
    }
    return DW_OK;
}

/* fsyncs the folder that holds path, so that a rename into it survives a crash. */
static dw_status fsync_parent(const char *path, dw_error *err) {
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir) return dw_error_set(err, DW_ERR_IO, "file %s: folder name too long", path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return dw_error_set(err, DW_ERR_IO, "file %s: cannot open folder %s: %s", path, dir, strerror(errno));
    int r = fsync(fd);
    int e = errno;
    close(fd);
    /* Some file systems refuse fsync on a folder (EINVAL); the rename has happened anyway. */
    if (r != 0 && e != EINVAL)
        return dw_error_set(err, DW_ERR_IO, "file %s: cannot fsync folder %s: %s", path, dir, strerror(e));
    return DW_OK;
}

static void atomic_file_free(dw__atomic_file *af) {
    free(af->path);
    free(af->tmp);
    free(af);
}

dw_status dw__atomic_file_commit(dw__atomic_file *af, dw_error *err) {
    dw_status st = DW_OK;
    if (fsync(af->fd) != 0) {
        st = dw_error_set(err, DW_ERR_IO, "file %s: fsync failed: %s", af->path, strerror(errno));
    }
    /* close() can report a deferred write error (e.g. on NFS): treat it as a failed write. */
    if (close(af->fd) != 0 && st == DW_OK) {
        st = dw_error_set(err, DW_ERR_IO, "file %s: close failed: %s", af->path, strerror(errno));
    }
    af->fd = -1;
    if (st == DW_OK && rename(af->tmp, af->path) != 0) {
        st = dw_error_set(err, DW_ERR_IO, "file %s: cannot rename %s over it: %s", af->path, af->tmp, strerror(errno));
    }
    if (st != DW_OK) {
        unlink(af->tmp);
        atomic_file_free(af);
        return st;
    }
    st = fsync_parent(af->path, err);
    atomic_file_free(af);
    return st;
}

void dw__atomic_file_abort(dw__atomic_file *af) {
    if (!af) return;
    if (af->fd >= 0) close(af->fd);
    unlink(af->tmp);
    atomic_file_free(af);
}

dw_status dw_file_write_atomic(const char *path, const void *buf, size_t len, dw_error *err) {
    dw__atomic_file *af;
    dw_status st = dw__atomic_file_open(path, &af, err);
    if (st != DW_OK) return st;
    st = dw__atomic_file_write(af, buf, len, err);
    if (st != DW_OK) {
        dw__atomic_file_abort(af);
        return st;
    }
    return dw__atomic_file_commit(af, err);
}

int dw__cache_dir(const char *leaf, char *out, size_t size) {
    const char *base = getenv("DW_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (base && *base) n = snprintf(out, size, "%s/%s", base, leaf);
    else if (xdg && *xdg) n = snprintf(out, size, "%s/driftwood/%s", xdg, leaf);
    else if (home && *home) n = snprintf(out, size, "%s/.cache/driftwood/%s", home, leaf);
    else n = -1;
    if (n < 0 || (size_t)n >= size) {
        if (size) out[0] = 0;
        return 0;
    }
    return 1;
}

/* core/file: bounded reads, mappings, and atomic replacement (commit, abort, crash). */
#include "test.h"

#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/file.h"

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dw_test_tmp_dir(), name);
    return buf[k];
}

/* Number of entries in the test folder whose name starts with prefix (temp files included). */
static int count_entries(const char *prefix) {
    DIR *d = opendir(dw_test_tmp_dir());
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    closedir(d);
    return n;
}

/* Whether the file at path holds exactly len bytes equal to want. */
static int file_is(const char *path, const void *want, size_t len) {
    dw_error err;
    char *buf;
    size_t n;
    if (dw_file_read_all(path, 1 << 24, &buf, &n, &err) != DW_OK) return 0;
    int same = n == len && memcmp(buf, want, len) == 0;
    free(buf);
    return same;
}

TEST(file_read_all_returns_the_bytes_nul_terminated) {
    dw_error err;
    const char *path = tmp_path("read.bin");
    char data[10000];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (char)(i * 131 + 7);
    CHECK_OK(dw_file_write_atomic(path, data, sizeof data, &err));
    char *buf;
    size_t len;
    CHECK_OK(dw_file_read_all(path, sizeof data, &buf, &len, &err)); /* exactly at the limit */
    int ok = len == sizeof data && memcmp(buf, data, len) == 0 && buf[len] == '\0';
    free(buf);
    CHECK(ok);
}

TEST(file_read_all_refuses_a_file_over_the_limit) {
    dw_error err;
    const char *path = tmp_path("big.bin");
    CHECK_OK(dw_file_write_atomic(path, "0123456789", 10, &err));
    char *buf = (char *)1;
    size_t len;
    CHECK(dw_file_read_all(path, 9, &buf, &len, &err) == DW_ERR_LIMIT);
    CHECK(buf == NULL && strstr(err.message, path) && strstr(err.message, "limit"));
}

TEST(file_read_all_reads_a_non_regular_file_with_the_limit) {
    /* /proc files report size 0: the read must not trust st_size */
    dw_error err;
    char *buf;
    size_t len;
    CHECK_OK(dw_file_read_all("/proc/self/status", 1 << 20, &buf, &len, &err));
    int ok = len > 0 && strstr(buf, "Name:") != NULL;
    free(buf);
    CHECK(ok);
    CHECK(dw_file_read_all("/proc/self/status", 10, &buf, &len, &err) == DW_ERR_LIMIT);
}

TEST(file_read_all_of_missing_file_names_it) {
    dw_error err;
    char *buf;
    size_t len;
    CHECK(dw_file_read_all("/nonexistent-dw/f.txt", 100, &buf, &len, &err) == DW_ERR_IO);
    CHECK(strstr(err.message, "/nonexistent-dw/f.txt") && strstr(err.message, "No such file"));
}

TEST(file_map_sees_the_file_contents) {
    dw_error err;
    const char *path = tmp_path("map.bin");
    char data[5000];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (char)(i ^ (i >> 3));
    CHECK_OK(dw_file_write_atomic(path, data, sizeof data, &err));
    dw__mapping m;
    CHECK_OK(dw__file_map(path, &m, &err));
    int ok = m.len == sizeof data && memcmp(m.data, data, sizeof data) == 0 && (uintptr_t)m.data % 4096 == 0;
    dw__file_unmap(&m);
    CHECK(ok);
    CHECK(m.data == NULL && m.len == 0);
}

TEST(file_map_of_empty_file_is_empty) {
    dw_error err;
    const char *path = tmp_path("empty.bin");
    CHECK_OK(dw_file_write_atomic(path, "", 0, &err));
    dw__mapping m;
    CHECK_OK(dw__file_map(path, &m, &err));
    CHECK(m.data == NULL && m.len == 0);
    dw__file_unmap(&m);
}

TEST(file_map_refuses_missing_file_and_folder) {
    dw_error err;
    dw__mapping m;
    CHECK(dw__file_map("/nonexistent-dw/m.bin", &m, &err) == DW_ERR_IO && strstr(err.message, "/nonexistent-dw/m.bin"));
    CHECK(dw__file_map(dw_test_tmp_dir(), &m, &err) == DW_ERR_IO && strstr(err.message, "not a regular file"));
}

TEST(file_atomic_commit_replaces_the_file_and_leaves_no_temp) {
    dw_error err;
    const char *path = tmp_path("commit.txt");
    CHECK_OK(dw_file_write_atomic(path, "old contents", 12, &err));
    dw__atomic_file *af;
    CHECK_OK(dw__atomic_file_open(path, &af, &err));
    CHECK_OK(dw__atomic_file_write(af, "new ", 4, &err));
    int old_while_open = file_is(path, "old contents", 12); /* nothing visible before commit */
    dw_status st = dw__atomic_file_write(af, "contents!", 9, &err);
    if (st != DW_OK) dw__atomic_file_abort(af);
    CHECK_OK(st);
    CHECK_OK(dw__atomic_file_commit(af, &err));
    CHECK(old_while_open);
    CHECK(file_is(path, "new contents!", 13));
    CHECK(count_entries("commit.txt") == 1);
}

TEST(file_atomic_abort_keeps_the_old_file_and_removes_the_temp) {
    dw_error err;
    const char *path = tmp_path("abort.txt");
    CHECK_OK(dw_file_write_atomic(path, "keep me", 7, &err));
    dw__atomic_file *af;
    CHECK_OK(dw__atomic_file_open(path, &af, &err));
    CHECK_OK(dw__atomic_file_write(af, "half of a new fi", 16, &err));
    int temp_exists = count_entries("abort.txt") == 2;
    dw__atomic_file_abort(af);
    CHECK(temp_exists);
    CHECK(file_is(path, "keep me", 7));
    CHECK(count_entries("abort.txt") == 1);
}

TEST(file_atomic_abort_of_a_new_file_creates_nothing) {
    dw_error err;
    const char *path = tmp_path("never.txt");
    dw__atomic_file *af;
    CHECK_OK(dw__atomic_file_open(path, &af, &err));
    CHECK_OK(dw__atomic_file_write(af, "x", 1, &err));
    dw__atomic_file_abort(af);
    CHECK(count_entries("never.txt") == 0);
}

TEST(file_killed_writer_leaves_the_previous_file_intact) {
    /* A child process writes most of a replacement and is SIGKILLed before commit. */
    dw_error err;
    const char *path = tmp_path("crash.bin");
    static char old[100000], fresh[100000];
    for (size_t i = 0; i < sizeof old; i++) old[i] = (char)(i * 7), fresh[i] = (char)(i * 13 + 1);
    CHECK_OK(dw_file_write_atomic(path, old, sizeof old, &err));
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dw__atomic_file *af;
        if (dw__atomic_file_open(path, &af, &err) != DW_OK) _exit(3);
        if (dw__atomic_file_write(af, fresh, sizeof fresh - 1, &err) != DW_OK) _exit(4);
        raise(SIGKILL);
        _exit(5);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d", status);
    CHECK(file_is(path, old, sizeof old));
    CHECK(count_entries("crash.bin.tmp-") == 1); /* the crash leaves its temp file behind, harmlessly */
}

TEST(file_atomic_open_in_missing_folder_names_the_file) {
    dw_error err;
    dw__atomic_file *af = (dw__atomic_file *)1;
    CHECK(dw__atomic_file_open("/nonexistent-dw/x.bin", &af, &err) == DW_ERR_IO);
    CHECK(af == NULL && strstr(err.message, "/nonexistent-dw/x.bin"));
}

TEST(file_atomic_new_file_gets_umask_permissions) {
    dw_error err;
    const char *path = tmp_path("mode.txt");
    mode_t old = umask(022);
    dw_status st = dw_file_write_atomic(path, "m", 1, &err);
    umask(old);
    CHECK_OK(st);
    struct stat sb;
    CHECK(stat(path, &sb) == 0);
    CHECK_MSG((sb.st_mode & 0777) == 0644, "mode %o", sb.st_mode & 0777);
}

TEST(file_atomic_write_of_relative_path_in_current_folder) {
    dw_error err;
    char cwd[512];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(dw_test_tmp_dir()) == 0);
    dw_status st = dw_file_write_atomic("rel.txt", "rel", 3, &err);
    int ok = file_is("rel.txt", "rel", 3);
    CHECK(chdir(cwd) == 0);
    CHECK_OK(st);
    CHECK(ok);
}

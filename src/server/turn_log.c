/* The turn log: one append-only file per actor (store/actors/ID/turns.log) holding the turns
 * completed since the actor's newest snapshot. A turn is acknowledged to its client only after
 * its record is on disk (fdatasync), so a crash right after loses nothing; on wake the records
 * after the snapshot are replayed (the actor recomputes them exactly: same messages, same state).
 *
 * Record: "DWTL", u32 message length, u32 reply length, u32 zero, u64 turn number, u64 XXH3-64
 * of (turn number, message, reply), then the message and the reply (little-endian). A crash
 * mid-append leaves a torn last record, which the scan recognises (short or bad checksum) and
 * cuts off: that turn was never acknowledged. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "server/server_impl.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#define LOG_MAGIC 0x4C545744u /* "DWTL" */
#define LOG_HEADER 32
#define LOG_RECORD_MAX ((size_t)1 << 30)

static uint64_t record_hash(const srv_log_record *r) {
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, &r->seq, sizeof r->seq);
    XXH3_64bits_update(&st, r->message, r->message_len);
    XXH3_64bits_update(&st, r->reply, r->reply_len);
    return XXH3_64bits_digest(&st);
}

dw_status srv_log_append(int fd, const srv_log_record *r, int no_fsync, dw_error *err) {
    if (r->message_len > LOG_RECORD_MAX || r->reply_len > LOG_RECORD_MAX)
        return dw_error_set(err, DW_ERR_LIMIT, "turn log: a record over 1 GiB");
    uint8_t h[LOG_HEADER];
    uint32_t w[4] = {LOG_MAGIC, (uint32_t)r->message_len, (uint32_t)r->reply_len, 0};
    uint64_t q[2] = {r->seq, record_hash(r)};
    memcpy(h, w, 16);
    memcpy(h + 16, q, 16);
    struct iovec iov[3] = {{h, LOG_HEADER}, {(void *)r->message, r->message_len}, {(void *)r->reply, r->reply_len}};
    size_t want = LOG_HEADER + r->message_len + r->reply_len;
    ssize_t n = writev(fd, iov, 3);
    if (n != (ssize_t)want) return dw_error_set(err, DW_ERR_IO, "turn log: write: %s", n < 0 ? strerror(errno) : "short write");
    if (!no_fsync && fdatasync(fd) != 0) return dw_error_set(err, DW_ERR_IO, "turn log: fdatasync: %s", strerror(errno));
    return DW_OK;
}

dw_status srv_log_scan(const char *path, int truncate_tail, int (*fn)(void *user, const srv_log_record *r), void *user,
                       uint64_t *last_seq, dw_error *err) {
    *last_seq = 0;
    int fd = open(path, truncate_tail ? O_RDWR : O_RDONLY);
    if (fd < 0) return errno == ENOENT ? DW_OK : dw_error_set(err, DW_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return dw_error_set(err, DW_ERR_IO, "%s: %s", path, strerror(errno));
    }
    size_t size = (size_t)sb.st_size, at = 0;
    char *data = size ? malloc(size) : NULL;
    size_t got = 0;
    while (got < size) {
        ssize_t n = pread(fd, data + got, size - got, (off_t)got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    size = got;
    dw_status st = DW_OK;
    while (at + LOG_HEADER <= size) {
        uint32_t w[4];
        uint64_t q[2];
        memcpy(w, data + at, 16);
        memcpy(q, data + at + 16, 16);
        if (w[0] != LOG_MAGIC || w[3] != 0) break;
        size_t end = at + LOG_HEADER + (size_t)w[1] + (size_t)w[2];
        if (end > size) break;
        srv_log_record r = {q[0], data + at + LOG_HEADER, w[1], data + at + LOG_HEADER + w[1], w[2]};
        if (record_hash(&r) != q[1] || r.seq <= *last_seq) break;
        if (fn && fn(user, &r)) {
            st = dw_error_set(err, DW_ERR_STATE, "%s: replaying turn %llu failed", path, (unsigned long long)r.seq);
            break;
        }
        *last_seq = r.seq;
        at = end;
    }
    if (st == DW_OK && truncate_tail && at < size && (ftruncate(fd, (off_t)at) != 0 || fdatasync(fd) != 0))
        st = dw_error_set(err, DW_ERR_IO, "%s: cutting off a torn record: %s", path, strerror(errno));
    free(data);
    close(fd);
    return st;
}

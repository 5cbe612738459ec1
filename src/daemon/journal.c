/* daemon/journal: the daemon's request journal, an append-only text file.
 * One line per record, each ending with the CRC-32 of what precedes it:
 *   R <id> <uid> <via> <dev> <ino> <size> <mtime.s> <mtime.ns> <bucket> <key> <path> <crc>
 *   D <id> <crc>        done
 *   F <id> <crc>        failed (the reason goes to the failed-requests log)
 * (key and path percent-encoded).  A request is appended and fsync'd before
 * the client hears "QUEUED"; a kill -9 can at worst tear the last line,
 * which the CRC (or the missing newline) gives away and replay drops.
 * An append that fails (a full disk, a short write) is cut off again
 * (ftruncate to the size before it), so that the next record starts on a
 * line of its own.  Opening replays and compacts: the file is rewritten
 * (temp + fsync + rename) with only the unfinished requests; a read error
 * during the replay is fatal, never a reason to compact what was read. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "util/err.h"
#include "util/fdio.h"
#include "util/log.h"

#define RECORD_MAX (3 * DAEMON_KEY_MAX + 3 * DAEMON_PATH_MAX + 256)
#define BUCKETS 1024

static uint32_t crc32_of(const char *p, size_t n)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= (unsigned char)p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

void daemon_req_release(struct daemon_req *r)
{
    free(r->key);
    free(r->path);
    r->key = r->path = NULL;
}

/* Appends " <crc>\n" to the n bytes in out. */
static int crc_finish(char *out, size_t cap, int n)
{
    if (n < 0 || (size_t)n >= cap)
        return -1;
    int m = snprintf(out + n, cap - (size_t)n, " %08" PRIx32 "\n", crc32_of(out, (size_t)n));
    return m < 0 || (size_t)(n + m) >= cap ? -1 : n + m;
}

int daemon_req_format(const struct daemon_req *r, char *out, size_t cap)
{
    char key[3 * DAEMON_KEY_MAX + 1], path[3 * DAEMON_PATH_MAX + 1];
    if (daemon_field_encode(r->key, strlen(r->key), key, sizeof key) < 0 ||
        daemon_field_encode(r->path, strlen(r->path), path, sizeof path) < 0)
        return -1;
    int n = snprintf(out, cap, "R %" PRIu64 " %" PRIu32 " %c %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRId64 " %ld %s %s %s",
                     r->id, r->uid, r->via, r->dev, r->ino, r->size, r->mtime_sec, r->mtime_nsec,
                     r->bucket, key, path);
    return crc_finish(out, cap, n);
}

static int mark_format(char kind, uint64_t id, char *out, size_t cap)
{
    return crc_finish(out, cap, snprintf(out, cap, "%c %" PRIu64, kind, id));
}

/* Strict unsigned decimal of a whole field. */
static int field_u64(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int daemon_record_parse(const char *line, size_t len, char *kind, struct daemon_req *r)
{
    memset(r, 0, sizeof *r);
    if (len < 12 || memchr(line, '\0', len))
        return -1;
    /* The CRC: the last 8 characters after a space. */
    const char *c = line + len - 8;
    if (c[-1] != ' ')
        return -1;
    uint64_t crc = 0;
    for (int i = 0; i < 8; i++) {
        char ch = c[i];
        int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        crc = crc * 16 + (uint64_t)v;
    }
    size_t body = len - 9;
    if (crc32_of(line, body) != (uint32_t)crc)
        return -1;
    const char *f[13];
    size_t fl[13];
    int n = 0;
    for (size_t i = 0; i < body && n < 13;) {
        size_t j = i;
        while (j < body && line[j] != ' ')
            j++;
        f[n] = line + i;
        fl[n++] = j - i;
        i = j + 1;
    }
    if (n < 2 || fl[0] != 1)
        return -1;
    *kind = f[0][0];
    if (field_u64(f[1], fl[1], &r->id) < 0)
        return -1;
    if (*kind == 'D' || *kind == 'F')
        return n == 2 ? 0 : -1;
    if (*kind != 'R' || n != 12)
        return -1;
    uint64_t uid, msec, mnsec;
    if (field_u64(f[2], fl[2], &uid) < 0 || uid > UINT32_MAX || fl[3] != 1 ||
        (f[3][0] != 'u' && f[3][0] != 't') || field_u64(f[4], fl[4], &r->dev) < 0 ||
        field_u64(f[5], fl[5], &r->ino) < 0 || field_u64(f[6], fl[6], &r->size) < 0 ||
        field_u64(f[7], fl[7], &msec) < 0 || msec > INT64_MAX ||
        field_u64(f[8], fl[8], &mnsec) < 0 || mnsec >= 1000000000 ||
        !daemon_bucket_valid(f[9], fl[9]))
        return -1;
    r->uid = (uint32_t)uid;
    r->via = f[3][0];
    r->mtime_sec = (int64_t)msec;
    r->mtime_nsec = (long)mnsec;
    memcpy(r->bucket, f[9], fl[9]);
    r->bucket[fl[9]] = '\0';
    r->key = daemon_field_decode(f[10], fl[10]);
    r->path = daemon_field_decode(f[11], fl[11]);
    if (!r->key || !r->path || !daemon_key_valid(r->key, strlen(r->key)) || r->path[0] != '/') {
        daemon_req_release(r);
        return -1;
    }
    return 0;
}

/* Unfinished requests by id, with their record line (for compaction). */
struct pending {
    uint64_t id;
    char *line;
    struct pending *next;        /* hash chain */
    struct pending *older, *newer; /* acceptance order */
};

struct daemon_journal {
    pthread_mutex_t lock; /* guards everything below */
    char path[4200];
    int fd;
    uint64_t next_id;
    struct pending *table[BUCKETS];
    struct pending *oldest, *newest;
    size_t n_pending;
    uint64_t records; /* lines in the file now */
    uint64_t size;    /* bytes of whole records in the file: appends start here */
    bool torn;        /* an append failed and could not be cut off: none is accepted until it is */
};

static struct pending **slot(struct daemon_journal *j, uint64_t id) { return &j->table[id % BUCKETS]; }

static int pending_add(struct daemon_journal *j, uint64_t id, const char *line, size_t len)
{
    struct pending *p = calloc(1, sizeof *p);
    if (!p || !(p->line = strndup(line, len))) {
        free(p);
        return -1;
    }
    p->id = id;
    p->next = *slot(j, id);
    *slot(j, id) = p;
    p->older = j->newest;
    if (j->newest)
        j->newest->newer = p;
    else
        j->oldest = p;
    j->newest = p;
    j->n_pending++;
    return 0;
}

static void pending_remove(struct daemon_journal *j, uint64_t id)
{
    for (struct pending **pp = slot(j, id); *pp; pp = &(*pp)->next) {
        struct pending *p = *pp;
        if (p->id != id)
            continue;
        *pp = p->next;
        if (p->older)
            p->older->newer = p->newer;
        else
            j->oldest = p->newer;
        if (p->newer)
            p->newer->older = p->older;
        else
            j->newest = p->older;
        j->n_pending--;
        free(p->line);
        free(p);
        return;
    }
}

/* Creates the compaction's temporary file afresh: whatever holds its name
 * (a leftover of a crash, or a symlink planted there) is removed, never
 * followed, and the file is created only if the name is still free. */
static int tmp_create(const char *tmp, haul_error *err)
{
    if (unlink(tmp) < 0 && errno != ENOENT)
        return err_errno(err, errno, "journal %s", tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    return fd < 0 ? err_errno(err, errno, "journal %s", tmp) : fd;
}

/* Rewrites the file with the pending records only; j->fd then appends to it. */
static int compact(struct daemon_journal *j, haul_error *err)
{
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", j->path);
    int fd = tmp_create(tmp, err);
    if (fd < 0)
        return fd;
    bool ok = true;
    uint64_t size = 0;
    for (struct pending *p = j->oldest; p && ok; p = p->newer) {
        size_t len = strlen(p->line);
        ok = fd_write_all(fd, p->line, len, 0) == 0;
        size += len;
    }
    ok = ok && fsync(fd) == 0;
    int e = errno;
    if (!ok || rename(tmp, j->path) < 0) {
        e = ok ? errno : e;
        close(fd);
        unlink(tmp);
        return err_errno(err, e, "journal %s", j->path);
    }
    if (j->fd >= 0)
        close(j->fd);
    j->fd = fd;
    j->size = size;
    j->torn = false;
    if (lseek(fd, 0, SEEK_END) < 0)
        return err_errno(err, errno, "journal %s", j->path);
    j->records = j->n_pending;
    /* The rename is durable only once the directory is synced. */
    if (fd_sync_parent_dir(j->path) < 0)
        return err_errno(err, errno, "journal %s: syncing its directory", j->path);
    return 0;
}

/* Cuts the file back to its last whole record after a failed append, so
 * that the next record is not glued onto a fragment (which would fail its
 * CRC on replay and be lost although it was acknowledged).  When even that
 * fails the journal refuses appends until a later try succeeds. */
static void cut_back(struct daemon_journal *j)
{
    j->torn = ftruncate(j->fd, (off_t)j->size) < 0 || lseek(j->fd, (off_t)j->size, SEEK_SET) < 0;
    if (j->torn)
        log_error("journal %s: cannot cut a failed append back to %" PRIu64 " bytes: %s", j->path, j->size,
                  strerror(errno));
}

/* Appends one whole line at j->size, or nothing: 0, or -1 with errno set. */
static int line_append(struct daemon_journal *j, const char *line, size_t len)
{
    if (j->torn)
        cut_back(j);
    if (j->torn) {
        errno = EIO;
        return -1;
    }
    if (fd_write_all(j->fd, line, len, 0) < 0) {
        int e = errno;
        cut_back(j);
        errno = e;
        return -1;
    }
    j->size += len;
    return 0;
}

static int replay(struct daemon_journal *j, haul_error *err)
{
    int fd = open(j->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : err_errno(err, errno, "journal %s", j->path);
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return err_errno(err, errno, "journal %s", j->path);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[n - 1] != '\n') {
            log_warn("journal %s: dropping a torn last record (line %" PRIu64 ")", j->path, lineno);
            break;
        }
        char kind;
        struct daemon_req r;
        if (daemon_record_parse(line, (size_t)n - 1, &kind, &r) < 0) {
            log_warn("journal %s: line %" PRIu64 " is not a valid record, skipped", j->path, lineno);
            continue;
        }
        if (r.id >= j->next_id)
            j->next_id = r.id + 1;
        if (kind == 'R') {
            if (pending_add(j, r.id, line, (size_t)n) < 0) {
                daemon_req_release(&r);
                free(line);
                fclose(f);
                return err_set(err, HAUL_ENOMEM, "journal %s: out of memory", j->path);
            }
        } else {
            pending_remove(j, r.id);
        }
        daemon_req_release(&r);
    }
    /* getline's -1 is the end of the file or an error: after an error the
     * rest is unknown, and compacting would drop it for good. */
    int e = errno;
    bool failed = ferror(f) != 0;
    free(line);
    fclose(f);
    if (failed)
        return err_errno(err, e, "journal %s: reading it (line %" PRIu64 "); nothing replayed, the file is left as it is",
                         j->path, lineno + 1);
    return 0;
}

struct daemon_journal *daemon_journal_open(const char *path, daemon_pending_fn fn, void *ctx,
                                           haul_error *err)
{
    struct daemon_journal *j = calloc(1, sizeof *j);
    if (!j) {
        err_set(err, HAUL_ENOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&j->lock, NULL);
    j->fd = -1;
    j->next_id = 1;
    snprintf(j->path, sizeof j->path, "%s", path);
    if (replay(j, err) < 0 || compact(j, err) < 0) {
        daemon_journal_free(j);
        return NULL;
    }
    for (struct pending *p = j->oldest; p && fn; p = p->newer) {
        char kind;
        struct daemon_req r;
        size_t len = strlen(p->line);
        if (daemon_record_parse(p->line, len - 1, &kind, &r) == 0) {
            int rc = fn(&r, ctx);
            daemon_req_release(&r);
            if (rc < 0) {
                err_set(err, HAUL_ENOMEM, "journal %s: cannot queue request %" PRIu64, path, p->id);
                daemon_journal_free(j);
                return NULL;
            }
        }
    }
    return j;
}

void daemon_journal_free(struct daemon_journal *j)
{
    if (!j)
        return;
    while (j->oldest)
        pending_remove(j, j->oldest->id);
    if (j->fd >= 0)
        close(j->fd);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

int daemon_journal_append(struct daemon_journal *j, struct daemon_req *r, haul_error *err)
{
    char *line = malloc(RECORD_MAX);
    if (!line)
        return err_set(err, HAUL_ENOMEM, "out of memory");
    pthread_mutex_lock(&j->lock);
    r->id = j->next_id;
    int n = daemon_req_format(r, line, RECORD_MAX), rc = 0;
    if (n < 0)
        rc = err_set(err, HAUL_EUSAGE, "request too long to journal");
    else if (line_append(j, line, (size_t)n) < 0)
        rc = err_errno(err, errno, "journal %s", j->path);
    else if (pending_add(j, r->id, line, (size_t)n) < 0) {
        j->size -= (size_t)n; /* not pending, so not in the file either */
        cut_back(j);
        rc = err_set(err, HAUL_ENOMEM, "out of memory");
    }
    if (rc == 0) {
        j->next_id++;
        j->records++;
    }
    pthread_mutex_unlock(&j->lock);
    free(line);
    return rc;
}

int daemon_journal_sync(struct daemon_journal *j, haul_error *err)
{
    pthread_mutex_lock(&j->lock);
    int rc = fdatasync(j->fd) < 0 ? err_errno(err, errno, "journal %s", j->path) : 0;
    pthread_mutex_unlock(&j->lock);
    return rc;
}

int daemon_journal_add(struct daemon_journal *j, struct daemon_req *r, haul_error *err)
{
    int rc = daemon_journal_append(j, r, err);
    return rc < 0 ? rc : daemon_journal_sync(j, err);
}

int daemon_journal_finish(struct daemon_journal *j, uint64_t id, bool ok, haul_error *err)
{
    char line[64];
    int n = mark_format(ok ? 'D' : 'F', id, line, sizeof line), rc = 0;
    pthread_mutex_lock(&j->lock);
    if (n < 0 || line_append(j, line, (size_t)n) < 0)
        rc = err_errno(err, errno, "journal %s", j->path);
    pending_remove(j, id);
    j->records++;
    /* Compact once the file is mostly finished work. */
    if (rc == 0 && j->records > 4096 && j->records > 4 * j->n_pending)
        rc = compact(j, err);
    pthread_mutex_unlock(&j->lock);
    return rc;
}

size_t daemon_journal_pending(struct daemon_journal *j)
{
    pthread_mutex_lock(&j->lock);
    size_t n = j->n_pending;
    pthread_mutex_unlock(&j->lock);
    return n;
}

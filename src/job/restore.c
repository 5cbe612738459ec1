/* job/restore: a bucket prefix back to a POSIX tree, with the Glacier
 * restore workflow (see restore.h). */
#include "job/restore.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "fs/fs.h"
#include "index/restore_state.h"
#include "meta/meta.h"
#include "util/err.h"
#include "util/fdio.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/queue.h"

#define SMALL_MAX (1024 * 1024)    /* objects up to this size: one GET into memory */
#define SPARSE_BLOCK 4096          /* all-zero blocks of this size become holes */
#define SPARSE_CHUNK (1024 * 1024) /* bytes read from the download pipe at once */
#define QUEUE_PER_WORKER 4

enum outcome { DONE = 0, PENDING = 1 }; /* or a negative haul code */

struct task {
    char *key;          /* may hold a NUL byte (a hostile listing): key_len counts */
    size_t key_len;
    uint64_t size;      /* from the listing; 0 for a pending key */
    bool archived;      /* GLACIER or DEEP_ARCHIVE in the listing */
    bool from_pending;  /* a key polled again by --wait */
};

struct restore {
    struct s3_client *c;
    const struct restore_opts *o;
    struct restore_stats *st;
    struct restore_state *state;
    int root;                 /* the restore root; -1 in a dry run when it does not exist */
    char root_name[4400];     /* for messages */
    bool as_root;             /* euid 0: owners are restored */
    struct meta_restore_rules rules; /* what metadata is applied (meta_restore_policy) */
    mode_t umask;
    int workers;
    struct queue *queue;
    atomic_bool no_restore_api; /* RestoreObject answered NotImplemented (Ceph RGW) */
    atomic_bool failed;         /* a failure that stops the run (fatal_err) */
    pthread_mutex_t lock;       /* guards large_running and fatal_err */
    pthread_cond_t large_done;
    int large_running;
    haul_error fatal_err;
};

struct worker {
    struct restore *r;
    int dir_fd;               /* cached parent directory of the last entry, or -1 */
    bool dir_writable;        /* it was opened for writing (see writable_make) */
    size_t dir_len;
    char dir_path[META_PATH_MAX];
};

/* ---- reporting --------------------------------------------------------- */

static void report(struct restore *r, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report(struct restore *r, const char *what, const char *fmt, ...)
{
    if (!r->o->line)
        return;
    char msg[META_PATH_MAX + 1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Keys, paths and link targets come from the bucket: no control character
     * reaches the terminal (every line of the run passes here). */
    char shown[4 * sizeof msg];
    r->o->line(what, meta_text_escape(msg, strlen(msg), shown, sizeof shown), r->o->line_ctx);
}

/* The metadata this run applies to path (meta_restore_policy), counting and
 * reporting (a "strip" line) the bits it leaves out. */
static void plan_make(struct restore *r, const struct meta_posix *pm, const char *path,
                      struct meta_restore_plan *p)
{
    meta_restore_policy(pm, &r->rules, p);
    if (p->dropped & META_DROP_SETID)
        atomic_fetch_add(&r->st->setid_removed, 1);
    if (p->dropped & META_DROP_WORLD_WRITE)
        atomic_fetch_add(&r->st->world_write_removed, 1);
    if (p->dropped & (META_DROP_SETID | META_DROP_WORLD_WRITE))
        report(r, "strip", "%s: mode 0%o restored as 0%o (%s%s%s)", path, (unsigned)(pm->mode & 07777),
               (unsigned)p->mode, (p->dropped & META_DROP_SETID) ? "set-ID bits removed" : "",
               (p->dropped & META_DROP_SETID) && (p->dropped & META_DROP_WORLD_WRITE) ? ", " : "",
               (p->dropped & META_DROP_WORLD_WRITE) ? "others' write removed" : "");
}

static void fatal(struct restore *r, const haul_error *err);

/* Unless the client stopped (a bucket-level failure, said once by the run). */
static void entry_failed(struct restore *r, const haul_error *err)
{
    haul_error stop = {0};
    if (s3_client_failed(r->c, &stop)) {
        fatal(r, &stop);
        return;
    }
    atomic_fetch_add(&r->st->errors, 1);
    report(r, "error", "%s", err->msg[0] ? err->msg : haul_code_name(err->code));
}

static void fatal(struct restore *r, const haul_error *err)
{
    pthread_mutex_lock(&r->lock);
    if (!atomic_load(&r->failed)) {
        r->fatal_err = *err;
        atomic_store(&r->failed, true);
    }
    pthread_mutex_unlock(&r->lock);
}

static bool stopping(struct restore *r)
{
    return atomic_load(&r->failed) || (r->o->cancel && atomic_load(r->o->cancel));
}

/* ---- directories, never through a symlink -------------------------------- */

/* The last component of path; *dir_len gets the length of what precedes it
 * (without the '/'). */
static const char *base_of(const char *path, size_t *dir_len)
{
    const char *slash = strrchr(path, '/');
    *dir_len = slash ? (size_t)(slash - path) : 0;
    return slash ? slash + 1 : path;
}

/* Opens component name (the end of path[0..len)) under parent, creating it
 * first when create.  A symlink is never followed. */
static int component_open(struct restore *r, int parent, const char *name, const char *path,
                          size_t len, bool create, haul_error *err)
{
    int fd = fs_dir_open(parent, name, create, 0777, err);
    if (fd < 0) {
        err_prefix(err, "%s/%.*s: ", r->root_name, (int)len, path);
        return fd;
    }
    if (create && !r->as_root)
        fs_owner_writable(fd);
    return fd;
}

/* Opens the directory dir[0..len) (relative; len 0: the root) one component
 * at a time.  Returns a new descriptor, or <0 with err set (HAUL_ENOTFOUND
 * when a component is missing and create is false). */
static int dir_walk(struct restore *r, const char *dir, size_t len, bool create, haul_error *err)
{
    if (r->root < 0)
        return err_set(err, HAUL_ENOTFOUND, "%s: does not exist", r->root_name);
    unsigned flags = create ? FS_DIRS_CREATE | (r->as_root ? 0 : FS_DIRS_WRITABLE) : 0;
    int fd = fs_dirs_open(r->root, dir, len, flags, 0777, err);
    if (fd < 0) {
        err_prefix(err, "%s%s", r->root_name, len ? "/" : ": ");
        return -(err->code ? err->code : HAUL_EIO);
    }
    return fd;
}

/* The directory holding path, from the worker's cache when it is the same
 * as last time.  The descriptor stays the worker's (do not close it). */
static int parent_get(struct worker *w, const char *path, bool create, const char **name,
                      haul_error *err)
{
    size_t len;
    *name = base_of(path, &len);
    if (w->dir_fd >= 0 && w->dir_len == len && memcmp(w->dir_path, path, len) == 0) {
        if (create && !w->dir_writable && !w->r->as_root)
            fs_owner_writable(w->dir_fd);
        w->dir_writable |= create;
        return w->dir_fd;
    }
    if (w->dir_fd >= 0)
        close(w->dir_fd);
    w->dir_fd = dir_walk(w->r, path, len, create, err);
    if (w->dir_fd < 0)
        return w->dir_fd;
    memcpy(w->dir_path, path, len);
    w->dir_len = len;
    w->dir_writable = create;
    return w->dir_fd;
}

static void worker_cache_drop(struct worker *w)
{
    if (w->dir_fd >= 0)
        close(w->dir_fd);
    w->dir_fd = -1;
}

/* ---- writing entries ---------------------------------------------------- */

/* The file an entry's bytes go into, published by commit. */
static int temp_file(struct restore *r, int dfd, struct fs_tmp *t, const char *path, haul_error *err)
{
    if (fs_tmp_create(dfd, false, t, err) < 0) {
        err_prefix(err, "%s/%s: ", r->root_name, path);
        return -HAUL_EIO;
    }
    return t->fd;
}

/* The mtime the restored entry gets: from the metadata, else the object's
 * LastModified. */
static struct timespec mtime_of(const struct meta_posix *pm, time_t last_modified)
{
    if (pm->has & META_HAS_MTIME)
        return pm->mtime;
    return (struct timespec){.tv_sec = last_modified};
}

static void times_of(const struct meta_posix *pm, time_t last_modified, struct timespec ts[2])
{
    ts[0] = (pm->has & META_HAS_ATIME) ? pm->atime : (struct timespec){.tv_nsec = UTIME_OMIT};
    ts[1] = mtime_of(pm, last_modified);
}

/* The owner the restore policy lets an entry have: st_uid, st_gid
 * ((uid_t)-1: kept) and whether to set them at all. */
static void owner_of(const struct meta_restore_plan *p, struct stat *st, struct fs_meta_opts *o)
{
    o->owner = (p->has & (META_HAS_UID | META_HAS_GID)) != 0;
    st->st_uid = p->uid;
    st->st_gid = p->gid;
}

/* Owner (as root), mode and times of a regular file still open. */
static int file_meta_apply(struct restore *r, int fd, const struct meta_posix *pm,
                           time_t last_modified, const char *path, haul_error *err)
{
    struct meta_restore_plan p;
    plan_make(r, pm, path, &p);
    struct stat st = {0};
    struct fs_meta_opts o = {0};
    owner_of(&p, &st, &o);
    /* Set after chown (fs_meta_apply's order), which clears set-user-ID bits. */
    mode_t mode = (p.has & META_HAS_MODE) ? p.mode : (0666 & ~r->umask);
    st.st_mode = S_IFREG | mode;
    struct timespec ts[2];
    times_of(pm, last_modified, ts);
    st.st_atim = ts[0];
    st.st_mtim = ts[1];
    if (fs_meta_apply(fd, -1, &st, &o, err) < 0) {
        err_prefix(err, "%s/%s: ", r->root_name, path);
        return -HAUL_EIO;
    }
    return 0;
}

static bool all_zero(const char *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Writes buf at off, leaving a hole wherever a whole block is zero (the file
 * is ftruncated to its size afterwards, which covers trailing holes). */
static int sparse_pwrite(int fd, const char *buf, size_t n, uint64_t off)
{
    size_t i = 0;
    while (i < n) {
        size_t blk = SPARSE_BLOCK - (size_t)((off + i) % SPARSE_BLOCK);
        if (blk > n - i)
            blk = n - i;
        if (all_zero(buf + i, blk)) {
            i += blk;
            continue;
        }
        size_t j = i + blk;
        while (j < n) {
            size_t b = n - j < SPARSE_BLOCK ? n - j : SPARSE_BLOCK;
            if (all_zero(buf + j, b))
                break;
            j += b;
        }
        if (fd_pwrite_all(fd, buf + i, j - i, off + i) < 0)
            return -1;
        i = j;
    }
    return 0;
}

/* Gives the whole file t its name (close checked first); removes it when
 * that fails. */
static int commit(struct restore *r, struct fs_tmp *t, const char *name, const char *path, haul_error *err)
{
    if (fs_publish(t, name, 0, err) < 0) {
        err_prefix(err, "%s/%s: ", r->root_name, path);
        return -HAUL_EIO;
    }
    return 0;
}

/* A regular file from an in-memory body. */
static int file_from_buf(struct worker *w, int dfd, const char *name, const char *path,
                         const char *buf, size_t len, const struct meta_posix *pm,
                         time_t last_modified, haul_error *err)
{
    struct restore *r = w->r;
    struct fs_tmp t;
    int fd = temp_file(r, dfd, &t, path, err);
    if (fd < 0)
        return fd;
    int rc = 0;
    if ((pm->sparse ? sparse_pwrite(fd, buf, len, 0) : fd_pwrite_all(fd, buf, len, 0)) < 0 ||
        (pm->sparse && ftruncate(fd, (off_t)len) < 0))
        rc = err_errno(err, errno, "%s/%s: write", r->root_name, path);
    if (rc == 0)
        rc = file_meta_apply(r, fd, pm, last_modified, path, err);
    if (rc < 0) {
        fs_tmp_discard(&t);
        return rc;
    }
    return commit(r, &t, name, path, err);
}

/* Live byte counts from the engine's running total for one object. */
struct bytes_live {
    struct restore_stats *st;
    atomic_uint_fast64_t last;
};

static void bytes_progress(uint64_t done, void *arg)
{
    struct bytes_live *b = arg;
    uint64_t old = atomic_load(&b->last);
    while (done > old) {
        if (atomic_compare_exchange_weak(&b->last, &old, done)) {
            atomic_fetch_add(&b->st->bytes, done - old);
            return;
        }
    }
}

/* The reader end of the pipe a sparse download goes through. */
struct sparse_copy {
    int in, out;
    uint64_t written;
    int write_errno;
};

static void *sparse_main(void *arg)
{
    struct sparse_copy *s = arg;
    char *buf = malloc(SPARSE_CHUNK);
    if (!buf)
        s->write_errno = ENOMEM;
    for (bool eof = false; buf && !eof && !s->write_errno;) {
        ssize_t n = fd_read_full(s->in, buf, SPARSE_CHUNK); /* whole chunks keep the blocks aligned */
        if (n < 0) {
            s->write_errno = errno;
            break;
        }
        size_t got = (size_t)n;
        eof = got < SPARSE_CHUNK;
        if (sparse_pwrite(s->out, buf, got, s->written) < 0)
            s->write_errno = errno;
        else
            s->written += got;
    }
    free(buf);
    close(s->in); /* a writer still sending gets EPIPE and stops */
    return NULL;
}

static void large_enter(struct restore *r)
{
    pthread_mutex_lock(&r->lock);
    while (r->large_running >= r->o->large_downloads)
        pthread_cond_wait(&r->large_done, &r->lock);
    r->large_running++;
    pthread_mutex_unlock(&r->lock);
}

static void large_leave(struct restore *r)
{
    pthread_mutex_lock(&r->lock);
    r->large_running--;
    pthread_cond_signal(&r->large_done);
    pthread_mutex_unlock(&r->lock);
}

/* Downloads through the engine into fd, directly or (sparse) through a pipe
 * to a thread that leaves holes. */
static int download_into(struct restore *r, const struct task *t, int fd, uint64_t size,
                         bool sparse, haul_error *err)
{
    struct bytes_live live = {.st = r->st};
    struct xfer_opts xo = r->o->xfer;
    xo.progress = bytes_progress;
    xo.progress_ctx = &live;
    xo.cancel = r->o->cancel;
    struct xfer_result res;
    bool large = size > (xo.part_size ? xo.part_size : 8 * XFER_MIB);
    if (large)
        large_enter(r);
    int rc;
    if (!sparse) {
        rc = xfer_download_fd(r->c, r->o->bucket, t->key, fd, &xo, &res, err);
    } else {
        int p[2];
        pthread_t thread;
        struct sparse_copy s = {.out = fd};
        if (pipe2(p, O_CLOEXEC) < 0) {
            rc = err_errno(err, errno, "download s3://%s/%s: pipe", r->o->bucket, t->key);
        } else {
            s.in = p[0];
            fcntl(p[1], F_SETPIPE_SZ, SPARSE_CHUNK);
            if (pthread_create(&thread, NULL, sparse_main, &s) != 0) {
                close(p[0]);
                close(p[1]);
                rc = err_set(err, HAUL_ENOMEM, "download s3://%s/%s: cannot start a thread",
                             r->o->bucket, t->key);
            } else {
                rc = xfer_download_fd(r->c, r->o->bucket, t->key, p[1], &xo, &res, err);
                close(p[1]);
                pthread_join(thread, NULL);
                if (s.write_errno) {
                    err_clear(err);
                    rc = err_errno(err, s.write_errno, "download s3://%s/%s: writing the data",
                                   r->o->bucket, t->key);
                } else if (rc == 0 && ftruncate(fd, (off_t)res.bytes) < 0) {
                    rc = err_errno(err, errno, "download s3://%s/%s: truncate", r->o->bucket, t->key);
                }
            }
        }
    }
    if (large)
        large_leave(r);
    return rc;
}

/* A regular file through the download engine (parallel ranges, ETag check). */
static int file_from_xfer(struct worker *w, const struct task *t, int dfd, const char *name,
                          const char *path, uint64_t size, const struct meta_posix *pm,
                          time_t last_modified, haul_error *err)
{
    struct restore *r = w->r;
    struct fs_tmp tf;
    int fd = temp_file(r, dfd, &tf, path, err);
    if (fd < 0)
        return fd;
    int rc = download_into(r, t, fd, size, pm->sparse, err);
    if (rc == 0)
        rc = file_meta_apply(r, fd, pm, last_modified, path, err);
    if (rc < 0) {
        fs_tmp_discard(&tf);
        return rc;
    }
    return commit(r, &tf, name, path, err);
}

static int symlink_make(struct worker *w, int dfd, const char *name, const char *path,
                        const char *target, const struct meta_posix *pm, time_t last_modified,
                        haul_error *err)
{
    struct restore *r = w->r;
    struct meta_restore_plan p;
    plan_make(r, pm, path, &p);
    struct stat st = {.st_mode = S_IFLNK | 0777};
    struct fs_meta_opts o = {0};
    owner_of(&p, &st, &o);
    struct timespec ts[2];
    times_of(pm, last_modified, ts);
    st.st_atim = ts[0];
    st.st_mtim = ts[1];
    if (fs_node_make(dfd, name, S_IFLNK, target, 0, &st, &o, err) < 0) {
        err_prefix(err, "%s/%s: ", r->root_name, path);
        return -HAUL_EIO;
    }
    return 0;
}

/* FIFOs and devices (devices need root and --devices: see entry_restore). */
static int special_make(struct worker *w, int dfd, const char *name, const char *path,
                        const struct meta_posix *pm, time_t last_modified, haul_error *err)
{
    struct restore *r = w->r;
    struct meta_restore_plan p;
    plan_make(r, pm, path, &p);
    struct stat st = {0};
    struct fs_meta_opts o = {0};
    owner_of(&p, &st, &o);
    /* Made 0600; the mode from the metadata is applied after chown. */
    mode_t mode = (p.has & META_HAS_MODE) ? p.mode : 0600;
    st.st_mode = (pm->mode & S_IFMT) | mode;
    struct timespec ts[2];
    times_of(pm, last_modified, ts);
    st.st_atim = ts[0];
    st.st_mtim = ts[1];
    if (fs_node_make(dfd, name, pm->mode & S_IFMT, NULL, pm->rdev, &st, &o, err) < 0) {
        err_prefix(err, "%s/%s: ", r->root_name, path);
        return -HAUL_EIO;
    }
    return 0;
}

/* ---- reading objects ---------------------------------------------------- */

struct mem_body {
    char *buf;
    size_t len, cap;
    bool overflow;
};

static int mem_write(const void *data, size_t n, void *arg)
{
    struct mem_body *m = arg;
    if (n > m->cap - m->len) {
        m->overflow = true;
        return -1;
    }
    memcpy(m->buf + m->len, data, n);
    m->len += n;
    return 0;
}

static bool etag_is_md5(const char *etag)
{
    if (strlen(etag) != 32)
        return false;
    for (int i = 0; i < 32; i++)
        if (!((etag[i] >= '0' && etag[i] <= '9') || (etag[i] >= 'a' && etag[i] <= 'f') ||
              (etag[i] >= 'A' && etag[i] <= 'F')))
            return false;
    return true;
}

/* GETs a whole object of at most cap bytes into m (buf allocated here,
 * freed by the caller), checked against its ETag when that is an MD5. */
static int body_get(struct restore *r, const struct task *t, size_t cap, struct mem_body *m,
                    struct s3_object_info *info, haul_error *err)
{
    m->cap = cap;
    m->len = 0;
    if (!(m->buf = malloc(cap ? cap : 1)))
        return err_set(err, HAUL_ENOMEM, "out of memory");
    haul_error local = {0};
    int rc = s3_object_get(r->c, r->o->bucket, t->key, 0, 0, mem_write, m, info, &local);
    if (rc < 0 && m->overflow)
        return err_set(err, HAUL_EINTEGRITY, "get s3://%s/%s: over %zu bytes (changed since listed?)",
                       r->o->bucket, t->key, cap);
    if (rc < 0)
        return err_set(err, local.code, "%s", local.msg);
    atomic_fetch_add(&r->st->bytes, m->len);
    if (m->len != info->size)
        return err_set(err, HAUL_EPROTO, "get s3://%s/%s: %zu bytes arrived, %llu expected",
                       r->o->bucket, t->key, m->len, (unsigned long long)info->size);
    if (etag_is_md5(info->etag)) {
        uint8_t md5[MD5_LEN];
        char hex[2 * MD5_LEN + 1];
        hash_md5(m->buf, m->len, md5);
        hash_hex(md5, MD5_LEN, hex);
        if (strcasecmp(hex, info->etag) != 0)
            return err_set(err, HAUL_EINTEGRITY,
                           "get s3://%s/%s: the bytes received hash to %s, the object's ETag is %s",
                           r->o->bucket, t->key, hex, info->etag);
    }
    return 0;
}

/* ---- Glacier -------------------------------------------------------------- */

static bool class_archived(const char *storage_class)
{
    return strcmp(storage_class, "GLACIER") == 0 || strcmp(storage_class, "DEEP_ARCHIVE") == 0;
}

static int pending_mark(struct restore *r, const struct task *t, const char *why, haul_error *err)
{
    if (!t->from_pending && restore_state_pending_add(r->state, t->key, err) < 0) {
        fatal(r, err);
        return -HAUL_EIO;
    }
    if (!t->from_pending)
        atomic_fetch_add(&r->st->pending, 1);
    report(r, "pending", "s3://%s/%s (%s)", r->o->bucket, t->key, why);
    return PENDING;
}

/* Whether an archived object can be read now: DONE when it can (or is not
 * archived), PENDING when its restore was requested or is running. */
static int archive_check(struct restore *r, const struct task *t, const struct s3_object_info *info,
                         haul_error *err)
{
    if (!t->archived && !class_archived(info->storage_class))
        return DONE;
    if (info->restore[0]) {
        bool ongoing;
        time_t expiry;
        if (s3_restore_header_parse(info->restore, &ongoing, &expiry) < 0)
            return err_set(err, HAUL_EPROTO, "head s3://%s/%s: x-amz-restore \"%s\" not understood",
                           r->o->bucket, t->key, info->restore);
        return ongoing ? pending_mark(r, t, "restore in progress", err) : DONE;
    }
    if (atomic_load(&r->no_restore_api))
        return DONE;
    if (r->o->dry_run) {
        report(r, "restore-requested", "s3://%s/%s (dry run: not sent)", r->o->bucket, t->key);
        return pending_mark(r, t, "would request a restore", err);
    }
    enum s3_restore_state state;
    haul_error local = {0};
    if (s3_object_restore(r->c, r->o->bucket, t->key, r->o->days, r->o->tier, &state, &local) < 0) {
        if (strcmp(local.s3_code, "NotImplemented") == 0 || local.http_status == 501) {
            if (!atomic_exchange(&r->no_restore_api, true))
                report(r, "note",
                       "s3://%s: the server does not implement RestoreObject (%s); archived "
                       "objects are read directly, as this server serves them",
                       r->o->bucket, local.s3_code[0] ? local.s3_code : "HTTP 501");
            return DONE;
        }
        return err_set(err, local.code, "%s", local.msg);
    }
    if (state == S3_RESTORE_DONE)
        return DONE;
    if (state == S3_RESTORE_STARTED) {
        atomic_fetch_add(&r->st->requested, 1);
        report(r, "restore-requested", "s3://%s/%s (%s, %d days)", r->o->bucket, t->key, r->o->tier,
               r->o->days);
    }
    return pending_mark(r, t, "restore requested", err);
}

/* ---- one object ----------------------------------------------------------- */

static int depth_of(const char *path)
{
    if (strcmp(path, ".") == 0)
        return 0;
    int d = 1;
    for (const char *p = path; *p; p++)
        d += *p == '/';
    return d;
}

static int dir_entry(struct worker *w, const char *path, const struct meta_posix *pm,
                     time_t last_modified, haul_error *err)
{
    struct restore *r = w->r;
    if (r->o->dry_run) {
        report(r, "dir", "%s", path);
        return DONE;
    }
    if (strcmp(path, ".") != 0) {
        const char *name;
        int dfd = parent_get(w, path, true, &name, err);
        if (dfd < 0)
            return dfd;
        int fd = component_open(r, dfd, name, path, strlen(path), true, err);
        if (fd < 0)
            return fd;
        close(fd);
    }
    struct timespec mtime = mtime_of(pm, last_modified);
    struct meta_restore_plan p; /* what dir_finish applies at the end */
    plan_make(r, pm, path, &p);
    struct restore_dir d = {
        .path = path, .depth = depth_of(path),
        .has = p.has | (pm->has & META_HAS_ATIME) | META_HAS_MTIME,
        .mode = (pm->mode & S_IFMT) | p.mode, .uid = p.uid, .gid = p.gid,
        .mtime_sec = mtime.tv_sec, .mtime_nsec = mtime.tv_nsec,
        .atime_sec = pm->atime.tv_sec, .atime_nsec = pm->atime.tv_nsec,
    };
    if (restore_state_dir_add(r->state, &d, err) < 0) {
        fatal(r, err);
        return -HAUL_EIO;
    }
    atomic_fetch_add(&r->st->dirs, 1);
    report(r, "dir", "%s", path);
    return DONE;
}

/* True when what is at name already is this entry, restored by an earlier run. */
static bool already_there(int dfd, const char *name, const struct meta_posix *pm, uint64_t size,
                          time_t last_modified, const char *link_target)
{
    struct stat st;
    if (dfd < 0 || fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return false;
    struct timespec m = mtime_of(pm, last_modified);
    if (st.st_mtim.tv_sec != m.tv_sec || st.st_mtim.tv_nsec != m.tv_nsec)
        return false;
    if (S_ISREG(pm->mode))
        return S_ISREG(st.st_mode) && (uint64_t)st.st_size == size;
    if (S_ISLNK(pm->mode) && link_target && S_ISLNK(st.st_mode)) {
        char got[META_PATH_MAX];
        ssize_t n = readlinkat(dfd, name, got, sizeof got - 1);
        return n >= 0 && (size_t)n == strlen(link_target) && memcmp(got, link_target, (size_t)n) == 0;
    }
    return false;
}

/* Restores one object whose metadata is known; body is its content when it
 * was already fetched (small objects), else NULL. */
static int entry_restore(struct worker *w, const struct task *t, const char *path, bool dir_key,
                         const struct s3_object_info *info, const struct meta_posix *pm,
                         struct mem_body *body, haul_error *err)
{
    struct restore *r = w->r;
    mode_t type = pm->mode & S_IFMT;
    if (dir_key || type == S_IFDIR)
        return dir_entry(w, path, pm, info->mtime, err);
    if (type == S_IFSOCK) {
        report(r, "note", "%s: a socket; not restored", path);
        return DONE;
    }
    struct meta_restore_plan plan;
    meta_restore_policy(pm, &r->rules, &plan);
    if (plan.refused) { /* not a failure: the run's choice (exit status unaffected) */
        atomic_fetch_add(&r->st->devices_refused, 1);
        report(r, "note", "%s: a %s device (%u:%u); not created: %s", path,
               type == S_IFBLK ? "block" : "character", major(pm->rdev), minor(pm->rdev),
               plan.refused);
        return DONE;
    }
    if (pm->has & META_HAS_HARDLINK) {
        if (!r->o->dry_run && restore_state_link_add(r->state, path, pm->hardlink, err) < 0) {
            fatal(r, err);
            return -HAUL_EIO;
        }
        report(r, "link", "%s => %s%s", path, pm->hardlink, r->o->dry_run ? "" : " (at the end)");
        return DONE;
    }
    const char *name;
    int dfd = parent_get(w, path, !r->o->dry_run, &name, err);
    if (dfd < 0 && !(r->o->dry_run && err->code == HAUL_ENOTFOUND))
        return dfd;
    if (dfd < 0)
        err_clear(err);

    if (type == S_IFCHR || type == S_IFBLK || type == S_IFIFO) {
        if (r->o->dry_run) {
            report(r, "special", "%s", path);
            return DONE;
        }
        int rc = special_make(w, dfd, name, path, pm, info->mtime, err);
        if (rc == 0) {
            atomic_fetch_add(&r->st->specials, 1);
            report(r, "special", "%s", path);
        }
        return rc;
    }

    /* A regular file or a symlink: skip it when an earlier run restored it. */
    const char *known_target = NULL;
    char target[META_PATH_MAX];
    if (type == S_IFLNK) {
        if (body) {
            if (body->len == 0 || body->len >= META_PATH_MAX || memchr(body->buf, '\0', body->len))
                return err_set(err, HAUL_EPROTO,
                               "s3://%s/%s: a symlink whose target (the body, %zu bytes) is empty, "
                               "too long or holds a NUL",
                               r->o->bucket, t->key, body->len);
            memcpy(target, body->buf, body->len);
            target[body->len] = '\0';
            known_target = target;
        } else if (pm->has & META_HAS_SYMLINK) {
            known_target = pm->symlink;
        }
    }
    if (already_there(dfd, name, pm, info->size, info->mtime, known_target)) {
        atomic_fetch_add(&r->st->skipped, 1);
        report(r, "skip", "%s", path);
        return DONE;
    }
    int rc = body ? DONE : archive_check(r, t, info, err);
    if (rc != DONE)
        return rc;
    if (r->o->dry_run) {
        report(r, type == S_IFLNK ? "symlink" : "file", "%s (%llu bytes)", path,
               (unsigned long long)info->size);
        return DONE;
    }
    if (type == S_IFLNK && !body) {
        struct mem_body m = {0};
        struct s3_object_info again = {0};
        rc = body_get(r, t, META_PATH_MAX, &m, &again, err);
        s3_object_info_release(&again);
        if (rc == 0)
            rc = entry_restore(w, t, path, dir_key, info, pm, &m, err);
        free(m.buf);
        return rc;
    }
    if (type == S_IFLNK) {
        rc = symlink_make(w, dfd, name, path, target, pm, info->mtime, err);
        if (rc == 0) {
            atomic_fetch_add(&r->st->symlinks, 1);
            report(r, "symlink", "%s -> %s", path, target);
        }
        return rc;
    }
    if (body)
        rc = file_from_buf(w, dfd, name, path, body->buf, body->len, pm, info->mtime, err);
    else
        rc = file_from_xfer(w, t, dfd, name, path, info->size, pm, info->mtime, err);
    if (rc == 0) {
        atomic_fetch_add(&r->st->files, 1);
        report(r, "file", "%s (%llu bytes)", path, (unsigned long long)info->size);
    }
    return rc;
}

/* Whether anything is at path already (a small object is then checked with
 * HEAD first, so a rerun does not download what it has). */
static bool something_at(struct worker *w, const char *path)
{
    haul_error ignored = {0};
    const char *name;
    int dfd = parent_get(w, path, false, &name, &ignored);
    struct stat st;
    return dfd >= 0 && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static int object_restore(struct worker *w, const struct task *t, haul_error *err)
{
    struct restore *r = w->r;
    char path[META_PATH_MAX];
    bool dir_key = t->key_len > 0 && t->key[t->key_len - 1] == '/';
    int rc = meta_path_from_key(t->key, t->key_len, r->o->prefix, dir_key, path, err);
    if (rc < 0) {
        err_prefix(err, "s3://%s: ", r->o->bucket);
        return rc;
    }
    struct s3_object_info info = {0};
    struct mem_body body = {0};
    bool fetched = !dir_key && !t->archived && !t->from_pending && !r->o->dry_run &&
                   t->size <= SMALL_MAX && !something_at(w, path);
    if (fetched)
        rc = body_get(r, t, (size_t)t->size, &body, &info, err);
    else
        rc = s3_object_head(r->c, r->o->bucket, t->key, &info, err);
    struct meta_posix pm;
    if (rc == 0) {
        haul_error merr = {0};
        if (meta_stat_decode(info.meta, info.n_meta, dir_key, &pm, &merr) < 0) {
            /* The bytes matter more than the metadata: restore them with defaults. */
            err_prefix(&merr, "s3://%s/%s: ", r->o->bucket, t->key);
            strncat(merr.msg, " (restored without its metadata)", sizeof merr.msg - strlen(merr.msg) - 1);
            entry_failed(r, &merr);
            meta_stat_decode(NULL, 0, dir_key, &pm, NULL);
        }
        if (dir_key && !S_ISDIR(pm.mode)) {
            haul_error derr = {0};
            err_set(&derr, HAUL_EPROTO, "s3://%s/%s: a directory key whose mode 0%o is not a directory's (restored as a directory without its metadata)",
                    r->o->bucket, t->key, (unsigned)pm.mode);
            entry_failed(r, &derr);
            meta_stat_decode(NULL, 0, true, &pm, NULL);
        }
        rc = entry_restore(w, t, path, dir_key, &info, &pm, fetched ? &body : NULL, err);
    }
    s3_object_info_release(&info);
    free(body.buf);
    return rc;
}

static void task_run(struct worker *w, struct task *t)
{
    struct restore *r = w->r;
    haul_error err = {0};
    int rc = object_restore(w, t, &err);
    if (rc < 0 && !atomic_load(&r->failed) && rc != -HAUL_ECANCELED)
        entry_failed(r, &err);
    if (t->from_pending && rc != PENDING && !r->o->dry_run) {
        haul_error perr = {0};
        atomic_fetch_sub(&r->st->pending, 1);
        if (restore_state_pending_remove(r->state, t->key, &perr) < 0)
            fatal(r, &perr);
    }
}

static void task_free(struct task *t)
{
    if (t)
        free(t->key);
    free(t);
}

static struct task *task_new(const char *key, size_t key_len, uint64_t size, bool archived,
                             bool from_pending)
{
    struct task *t = calloc(1, sizeof *t);
    if (!t || !(t->key = malloc(key_len + 1))) {
        free(t);
        return NULL;
    }
    memcpy(t->key, key, key_len);
    t->key[key_len] = '\0';
    t->key_len = key_len;
    t->size = size;
    t->archived = archived;
    t->from_pending = from_pending;
    return t;
}

/* ---- passes: a producer feeding the workers --------------------------- */

static void *worker_main(void *arg)
{
    struct worker w = {.r = arg, .dir_fd = -1};
    struct task *t;
    while ((t = queue_pop(w.r->queue))) {
        if (!stopping(w.r))
            task_run(&w, t);
        task_free(t);
    }
    worker_cache_drop(&w);
    return NULL;
}

static int task_push(struct restore *r, struct task *t)
{
    if (!t) {
        haul_error e = {0};
        err_set(&e, HAUL_ENOMEM, "out of memory");
        fatal(r, &e);
        return 1;
    }
    if (queue_push(r->queue, t) < 0) {
        task_free(t);
        return 1;
    }
    return 0;
}

static int list_entry(const struct s3_list_entry *e, void *arg)
{
    struct restore *r = arg;
    if (stopping(r))
        return 1;
    if (e->is_prefix || meta_key_is_internal(r->o->prefix, e->key, e->key_len)) /* haul's own objects */
        return 0;
    atomic_fetch_add(&r->st->objects, 1);
    return task_push(r, task_new(e->key, e->key_len, e->size, class_archived(e->storage_class), false));
}

static int produce_listing(struct restore *r, haul_error *err)
{
    return s3_objects_list(r->c, r->o->bucket, r->o->prefix, NULL, list_entry, r, err);
}

static int pending_entry(const char *key, void *arg)
{
    struct restore *r = arg;
    if (stopping(r))
        return 1;
    return task_push(r, task_new(key, strlen(key), 0, true, true));
}

static int produce_pending(struct restore *r, haul_error *err)
{
    return restore_state_pending_each(r->state, pending_entry, r, err);
}

/* Runs the workers over what produce pushes.  Returns produce's result. */
static int pass_run(struct restore *r, int (*produce)(struct restore *, haul_error *), haul_error *err)
{
    pthread_t *threads = calloc((size_t)r->workers, sizeof *threads);
    r->queue = queue_new((size_t)r->workers * QUEUE_PER_WORKER);
    if (!threads || !r->queue) {
        free(threads);
        queue_free(r->queue);
        r->queue = NULL;
        return err_set(err, HAUL_ENOMEM, "out of memory");
    }
    int started = 0;
    while (started < r->workers && pthread_create(&threads[started], NULL, worker_main, r) == 0)
        started++;
    int rc = started ? produce(r, err) : err_set(err, HAUL_ENOMEM, "cannot start worker threads");
    queue_close(r->queue);
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    queue_free(r->queue);
    r->queue = NULL;
    free(threads);
    return rc;
}

/* ---- the end: hard links, then directories deepest first ------------------ */

static int link_make(const char *path, const char *first, void *arg)
{
    struct restore *r = arg;
    if (stopping(r))
        return 1;
    haul_error err = {0};
    size_t first_dir_len, dir_len;
    const char *first_name = base_of(first, &first_dir_len), *name = base_of(path, &dir_len);
    int fdir = dir_walk(r, first, first_dir_len, false, &err), ndir = -1;
    struct stat fst, nst;
    if (fdir >= 0 && fstatat(fdir, first_name, &fst, AT_SYMLINK_NOFOLLOW) < 0) {
        err_errno(&err, errno, "%s/%s: hard link to %s", r->root_name, path, first);
        close(fdir);
        fdir = -1;
    }
    if (fdir < 0) {
        /* The first path may be an archived object whose restore is pending. */
        char key[META_KEY_MAX + 1];
        haul_error kerr = {0};
        if (err.code == HAUL_ENOTFOUND &&
            meta_key_from_path(r->o->prefix, first, strlen(first), false, key, NULL, &kerr) == 0 &&
            restore_state_pending_has(r->state, key, &kerr) == 1) {
            report(r, "pending", "%s: hard link to %s, made once that file is restored", path, first);
            return 0;
        }
        if (err.code == HAUL_ENOTFOUND) {
            err_clear(&err);
            err_set(&err, HAUL_ENOTFOUND, "%s/%s: hard link to %s: that file was not restored",
                    r->root_name, path, first);
        }
        entry_failed(r, &err);
        return 0;
    }
    int rc = 0;
    if (!S_ISREG(fst.st_mode))
        rc = err_set(&err, HAUL_EIO, "%s/%s: hard link to %s: not a regular file", r->root_name,
                     path, first);
    if (rc == 0 && (ndir = dir_walk(r, path, dir_len, true, &err)) < 0)
        rc = ndir;
    if (rc == 0 && fstatat(ndir, name, &nst, AT_SYMLINK_NOFOLLOW) == 0 && nst.st_dev == fst.st_dev &&
        nst.st_ino == fst.st_ino) {
        atomic_fetch_add(&r->st->skipped, 1);
        report(r, "skip", "%s", path);
        close(fdir);
        close(ndir);
        return 0;
    }
    if (rc == 0 && fs_link(fdir, first_name, ndir, name, 0, &err) < 0) {
        err_prefix(&err, "%s/%s: hard link to %s: ", r->root_name, path, first);
        rc = -HAUL_EIO;
    }
    if (rc == 0) {
        atomic_fetch_add(&r->st->hardlinks, 1);
        report(r, "link", "%s => %s", path, first);
    } else {
        entry_failed(r, &err);
    }
    close(fdir);
    if (ndir >= 0)
        close(ndir);
    return 0;
}

static int dir_finish(const struct restore_dir *d, void *arg)
{
    struct restore *r = arg;
    if (stopping(r))
        return 1;
    haul_error err = {0};
    int fd = dir_walk(r, d->path, strcmp(d->path, ".") == 0 ? 0 : strlen(d->path), false, &err);
    int rc = fd < 0 ? fd : 0;
    struct stat st = {0};
    if (rc == 0 && fstat(fd, &st) < 0)
        rc = err_errno(&err, errno, "%s/%s: stat", r->root_name, d->path);
    struct fs_meta_opts o = {.owner = r->as_root && (d->has & (META_HAS_UID | META_HAS_GID))};
    st.st_uid = (d->has & META_HAS_UID) ? d->uid : (uid_t)-1;
    st.st_gid = (d->has & META_HAS_GID) ? d->gid : (gid_t)-1;
    if (d->has & META_HAS_MODE) /* else the mode it has */
        st.st_mode = S_IFDIR | (d->mode & 07777);
    st.st_atim = (d->has & META_HAS_ATIME) ? (struct timespec){d->atime_sec, d->atime_nsec}
                                           : (struct timespec){.tv_nsec = UTIME_OMIT};
    st.st_mtim = (struct timespec){d->mtime_sec, d->mtime_nsec};
    if (rc == 0 && fs_meta_apply(fd, -1, &st, &o, &err) < 0) {
        err_prefix(&err, "%s/%s: ", r->root_name, d->path);
        rc = -HAUL_EIO;
    }
    if (fd >= 0)
        close(fd);
    if (rc < 0)
        entry_failed(r, &err);
    return 0;
}

/* ---- the run ---------------------------------------------------------------- */

static int root_open(struct restore *r, haul_error *err)
{
    const struct restore_opts *o = r->o;
    snprintf(r->root_name, sizeof r->root_name, "%s%s%s", o->target, o->subdir ? "/" : "",
             o->subdir ? o->subdir : "");
    r->root = -1;
    /* mkdir -p: the user's own path (symlinks in it are the user's choice). */
    if (!o->dry_run && fs_mkdir_p(o->target, 0777, err) < 0) {
        err_prefix(err, "restore target: ");
        return -HAUL_EIO;
    }
    int fd = open(o->target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && o->dry_run && errno == ENOENT)
        return 0;
    if (fd < 0)
        return err_errno(err, errno, "restore target %s", o->target);
    if (!o->subdir) {
        r->root = fd;
        return 0;
    }
    haul_error local = {0};
    snprintf(r->root_name, sizeof r->root_name, "%s", o->target);
    int sub = component_open(r, fd, o->subdir, o->subdir, strlen(o->subdir), !o->dry_run, &local);
    snprintf(r->root_name, sizeof r->root_name, "%s/%s", o->target, o->subdir);
    close(fd);
    if (sub < 0 && o->dry_run && local.code == HAUL_ENOTFOUND)
        return 0;
    if (sub < 0)
        return err_set(err, local.code, "%s", local.msg);
    r->root = sub;
    return 0;
}

static void sleep_interruptible(struct restore *r, int seconds)
{
    for (int i = 0; i < seconds * 10 && !stopping(r); i++)
        nanosleep(&(struct timespec){.tv_nsec = 100000000L}, NULL);
}

int restore_run(struct s3_client *c, const struct restore_opts *opts, struct restore_stats *stats,
                haul_error *err)
{
    memset(stats, 0, sizeof *stats);
    struct restore r = {.c = c, .o = opts, .st = stats, .root = -1};
    r.workers = opts->workers > 0 ? opts->workers : 16;
    r.as_root = geteuid() == 0;
    r.rules = (struct meta_restore_rules){
        .as_root = r.as_root, .no_same_owner = opts->no_same_owner,
        .preserve_setuid = opts->preserve_setuid, .devices = opts->devices,
        .keep_world_writable = opts->keep_world_writable};
    r.umask = umask(0);
    umask(r.umask);
    pthread_mutex_init(&r.lock, NULL);
    pthread_cond_init(&r.large_done, NULL);
    struct restore_opts o = *opts;
    if (!o.tier)
        o.tier = "Bulk";
    if (o.days <= 0)
        o.days = 7;
    if (o.poll_interval_s <= 0)
        o.poll_interval_s = 300;
    if (o.large_downloads <= 0)
        o.large_downloads = 2;
    if (o.dry_run)
        o.wait = false; /* nothing is requested, so nothing would ever arrive */
    if (!o.prefix)
        o.prefix = "";
    r.o = &o;

    int rc = root_open(&r, err);
    if (rc == 0 && !(r.state = restore_state_open(o.state_dir, err)))
        rc = -HAUL_EIO;
    if (rc == 0)
        rc = pass_run(&r, produce_listing, err);
    while (rc == 0 && o.wait && !stopping(&r)) {
        int64_t n = restore_state_pending_count(r.state);
        if (n <= 0)
            break;
        report(&r, "waiting", "%lld archived object%s being restored; checking again in %d s",
               (long long)n, n == 1 ? " is" : "s are", o.poll_interval_s);
        sleep_interruptible(&r, o.poll_interval_s);
        if (!stopping(&r))
            rc = pass_run(&r, produce_pending, err);
    }
    if (rc > 0) /* a producer stopped because the run is stopping */
        rc = 0;
    /* Even after a listing error: what was restored gets its links and modes. */
    if (r.state && !o.dry_run && !stopping(&r)) {
        haul_error serr = {0};
        if (restore_state_links_each(r.state, link_make, &r, &serr) < 0 ||
            restore_state_dirs_each(r.state, dir_finish, &r, &serr) < 0)
            fatal(&r, &serr);
    }
    /* The last write-back errors of the target show here. */
    if (r.root >= 0 && !o.dry_run && syncfs(r.root) < 0) {
        haul_error serr = {0};
        err_errno(&serr, errno, "%s: syncfs (what was written may not be on disk)", r.root_name);
        fatal(&r, &serr);
    }
    if (r.state) {
        int64_t n = restore_state_pending_count(r.state);
        stats->pending = n > 0 ? (uint64_t)n : 0;
    }
    if (rc == 0 && atomic_load(&r.failed))
        rc = err_set(err, r.fatal_err.code, "%s", r.fatal_err.msg);
    if (rc == 0 && o.cancel && atomic_load(o.cancel))
        rc = err_set(err, HAUL_ECANCELED, "canceled; run the same command again to continue");
    if (rc == 0 && stats->errors)
        rc = err_set(err, HAUL_EIO, "%llu entr%s could not be restored (see the messages above)",
                     (unsigned long long)stats->errors, stats->errors == 1 ? "y" : "ies");
    if (rc < 0) { /* the caller prints it: a key or path in it is escaped as report's lines */
        char shown[sizeof err->msg];
        meta_text_escape(err->msg, strlen(err->msg), shown, sizeof shown);
        memcpy(err->msg, shown, sizeof shown);
    }
    restore_state_close(r.state);
    if (r.root >= 0)
        close(r.root);
    pthread_mutex_destroy(&r.lock);
    pthread_cond_destroy(&r.large_done);
    return rc;
}

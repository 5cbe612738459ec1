/* job/clone: SRC tree -> DST tree in passes (see clone.h).  The walker
 * threads make every decision and do the copies of what they read; only
 * ranges of large files go to the copy pool. */
#include "job/clone.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index/linkmap.h"
#include "fs/fs.h"
#include "fs/srcid.h"
#include "job/layout.h"
#include "util/err.h"
#include "util/log.h"
#include "walk/filter.h"
#include "walk/walk.h"
#include "xfer/fcopy.h"

struct clone {
    const struct clone_opts *o;
    struct clone_stats *s;
    int src_root, dst_root;      /* directory fds every path is resolved below */
    char src_abs[PATH_MAX], dst_abs[PATH_MAX]; /* for the Lustre hooks (lfs takes paths) */
    struct linkmap *links;
    struct xfer_copy_opts copy;
    struct fs_meta_opts meta;
    struct timespec atime_cutoff, mtime_cutoff; /* {0,0}: filter off */
    atomic_uint mdt_next;        /* round-robin MDT index for top-level directories */
    pthread_key_t parent_key;    /* each walker thread's struct parent_cache */
    bool key_made;
    dev_t src_dev;               /* SRC root's device (one_filesystem, registry keys) */
    dev_t dst_dev;               /* DST root's device (one_filesystem in the delete pass) */
    int reg_fd;                  /* DST/<link_registry> when hard links go through it, else -1 */
    struct srcid src_id;         /* SRC's identity when the roots were opened (ino 0: unknown) */
    haul_error src_id_err;       /* why it is unknown */
    bool counting;               /* delete pass: count what would go, remove nothing */
    atomic_uint_fast64_t removals; /* delete pass: removals so far (the --max-delete budget) */
    unsigned sync;               /* FS_SYNC_* before a file on DST gets its name */
};

/* The DST directory a walker thread last looked up entries in.  A thread
 * reads one SRC directory at a time, so consecutive entries almost always
 * share their parent: keeping its fd saves resolving the path again (an
 * openat2 and a close per entry). */
struct parent_cache {
    int fd;
    size_t len;
    char path[];
};

static void parent_cache_free(void *arg)
{
    struct parent_cache *pc = arg;
    if (pc) {
        close(pc->fd);
        free(pc);
    }
}

/* The open DST directory holding path's last component (borrowed: valid
 * until this thread's next call; never closed by the caller). */
static int dst_parent(struct clone *c, const char *path, const char **name, haul_error *err)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        *name = path;
        return c->dst_root;
    }
    size_t len = (size_t)(slash - path);
    struct parent_cache *pc = pthread_getspecific(c->parent_key);
    if (pc && pc->len == len && memcmp(pc->path, path, len) == 0) {
        *name = slash + 1;
        return pc->fd;
    }
    int fd = fs_parent_open(c->dst_root, path, name, err);
    if (fd < 0)
        return fd;
    struct parent_cache *fresh = malloc(sizeof *fresh + len + 1);
    if (!fresh) {
        close(fd);
        return err_set(err, HAUL_ENOMEM, "out of memory"), -1;
    }
    fresh->fd = fd;
    fresh->len = len;
    memcpy(fresh->path, path, len);
    fresh->path[len] = '\0';
    parent_cache_free(pc);
    pthread_setspecific(c->parent_key, fresh);
    return fd;
}

static void report(struct clone *c, const char *what, const char *path, const char *msg)
{
    if (c->o->line && !c->counting) /* a count pass is silent: the pass after it tells */
        c->o->line(what, path, msg, c->o->line_ctx);
}

/* One entry could not be handled: counted, reported, the pass goes on. */
static void entry_failed(struct clone *c, const char *path, const haul_error *err)
{
    atomic_fetch_add(&c->s->failed, 1);
    report(c, "error", path, err->msg);
}

static bool time_equal(struct timespec a, struct timespec b)
{
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

static bool time_before(struct timespec a, struct timespec b)
{
    return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

/* Metadata clone keeps that differs between a SRC entry and its copy
 * (mtime too: a symlink or a FIFO has no content to compare). */
static bool meta_differs(const struct clone *c, const struct stat *s, const struct stat *d)
{
    return (s->st_mode & 07777) != (d->st_mode & 07777) || !time_equal(s->st_mtim, d->st_mtim) ||
           (c->meta.owner && (s->st_uid != d->st_uid || s->st_gid != d->st_gid));
}

/* What DST has at path: 1 and *d filled when something is there, 0 when
 * nothing is, <0 on error.  *pfd is its parent directory (-1 in a dry run
 * when the parent does not exist yet either), borrowed from dst_parent. */
static int dst_lookup(struct clone *c, const char *path, int *pfd, const char **name, struct stat *d,
                      haul_error *err)
{
    haul_error open_err = {0};
    if (c->dst_root < 0) { /* a dry run into a DST that does not exist yet */
        *pfd = -1;
        return 0;
    }
    *pfd = dst_parent(c, path, name, &open_err);
    if (*pfd < 0) {
        if (c->o->dry_run && open_err.code == HAUL_ENOTFOUND)
            return 0;
        return err_set(err, open_err.code, "destination: %s", open_err.msg);
    }
    if (fstatat(*pfd, *name, d, AT_SYMLINK_NOFOLLOW) == 0)
        return 1;
    if (errno == ENOENT)
        return 0;
    return err_errno(err, errno, "destination: stat");
}

/* Creates the file the data goes into (t): unnamed (O_TMPFILE) when the
 * filesystem can, else under a temporary name; with Lustre stripes, by lfs
 * under a temporary name (lfs takes paths). */
static int dst_create(struct clone *c, const struct walk_entry *e, int pfd, uint64_t size, struct fs_tmp *t,
                      haul_error *err)
{
    if (c->o->layout.stripes && size >= c->copy.parallel_threshold && pfd != c->reg_fd) {
        char tmp[64];
        fs_tmpname(tmp, sizeof tmp);
        char src[PATH_MAX * 2], dst[PATH_MAX * 2];
        const char *slash = strrchr(e->path, '/');
        int dir_len = slash ? (int)(slash - e->path) : 0;
        snprintf(src, sizeof src, "%s/%s", c->src_abs, e->path);
        snprintf(dst, sizeof dst, "%s/%.*s%s%s", c->dst_abs, dir_len, e->path, slash ? "/" : "", tmp);
        if (layout_file_create(src, dst, err) < 0)
            return -1;
        if (fs_tmp_open(pfd, tmp, false, t, err) < 0) {
            fs_tmp_discard(t);
            err_prefix(err, "destination: ");
            return -1;
        }
        return 0;
    }
    if (fs_tmp_create(pfd, false, t, err) < 0) {
        err_prefix(err, "destination: ");
        return -1;
    }
    return 0;
}

/* Copies a regular file's bytes and metadata to DST (nothing in the way but
 * possibly an old copy d, or an entry of another type).  exclusive: name
 * must not exist; returns 1 (nothing copied) when it appeared meanwhile. */
static int file_copy(struct clone *c, const struct walk_entry *e, int pfd, const char *name, const struct stat *d,
                     bool exclusive, haul_error *err)
{
    int sfd = fs_source_open(e->dirfd, e->name, e->st, err);
    if (sfd < 0)
        return -HAUL_EIO;
    struct stat st, after;
    int rc = 0;
    struct fs_tmp t = {.fd = -1};
    if (fstat(sfd, &st) < 0) {
        rc = err_errno(err, errno, "stat");
    } else if (d && S_ISDIR(d->st_mode) && fs_remove(pfd, name, err) < 0) {
        err_prefix(err, "destination: ");
        rc = -HAUL_EIO;
    } else if (dst_create(c, e, pfd, (uint64_t)st.st_size, &t, err) < 0) {
        rc = -HAUL_EIO;
    } else if ((rc = xfer_file_copy(sfd, t.fd, (uint64_t)st.st_size, &c->copy, err)) < 0) {
        /* err says read/write and the errno */
    } else if (fstat(sfd, &after) < 0 || after.st_size != st.st_size || !time_equal(after.st_mtim, st.st_mtim)) {
        rc = err_set(err, HAUL_EIO, "changed while being copied (the next pass copies it again)");
    } else if (fs_meta_apply(t.fd, sfd, &st, &c->meta, err) < 0) {
        err_prefix(err, "destination: ");
        rc = -HAUL_EIO;
    } else if ((rc = fs_publish(&t, name, c->sync | (exclusive ? FS_NOREPLACE : 0), err)) < 0) {
        /* Not whole on DST (a write-back error at close or sync): the
         * temporary is gone, the name untouched. */
        err_prefix(err, "destination: ");
    }
    fs_tmp_discard(&t);
    close(sfd);
    if (rc == 0) {
        atomic_fetch_add(&c->s->copied, 1);
        atomic_fetch_add(&c->s->bytes_copied, (uint64_t)st.st_size);
    }
    return rc;
}

/* With --checksum: are the bytes of the SRC file and its copy equal? */
static int content_equal(const struct walk_entry *e, int pfd, const char *name, const struct stat *d,
                         haul_error *err)
{
    int a = fs_source_open(e->dirfd, e->name, e->st, err);
    if (a < 0)
        return -HAUL_EIO;
    /* DST is read the same way: a FIFO swapped in must not block. */
    int b = fs_source_open(pfd, name, d, err);
    if (b < 0) {
        close(a);
        err_prefix(err, "destination: ");
        return -HAUL_EIO;
    }
    enum { CHUNK = 1 << 20 };
    char *x = malloc(CHUNK), *y = malloc(CHUNK);
    int rc = x && y ? 1 : err_set(err, HAUL_ENOMEM, "out of memory");
    while (rc == 1) {
        ssize_t n = read(a, x, CHUNK);
        if (n < 0) {
            rc = err_errno(err, errno, "read");
            break;
        }
        ssize_t got = 0;
        while (got < n) {
            ssize_t m = read(b, y + got, (size_t)(n - got));
            if (m <= 0)
                break;
            got += m;
        }
        if (got != n || memcmp(x, y, (size_t)n) != 0)
            rc = 0;
        if (n == 0)
            break;
    }
    free(x);
    free(y);
    close(a);
    close(b);
    return rc;
}

static bool age_filtered(struct clone *c, const struct stat *st)
{
    if (c->atime_cutoff.tv_sec && time_before(st->st_atim, c->atime_cutoff)) {
        atomic_fetch_add(&c->s->skipped_atime, 1);
        return true;
    }
    if (c->mtime_cutoff.tv_sec && time_before(c->mtime_cutoff, st->st_mtim)) {
        atomic_fetch_add(&c->s->skipped_mtime, 1);
        return true;
    }
    return false;
}

static int registry_link(struct clone *c, const struct walk_entry *e, haul_error *err);

static int file_visit(struct clone *c, const struct walk_entry *e, haul_error *err)
{
    atomic_fetch_add(&c->s->files, 1);
    atomic_fetch_add(&c->s->bytes_seen, (uint64_t)e->st->st_size);
    if (age_filtered(c, e->st))
        return 0;
    /* A later path of a hard-linked inode is linked after the walk. */
    if (e->st->st_nlink > 1 && c->reg_fd >= 0)
        return registry_link(c, e, err);
    if (e->st->st_nlink > 1) {
        int rc = linkmap_add(c->links, (uint64_t)e->st->st_dev, (uint64_t)e->st->st_ino, e->path, err);
        if (rc != 0)
            return rc < 0 ? rc : 0;
    }
    int pfd;
    const char *name;
    struct stat d;
    int have = dst_lookup(c, e->path, &pfd, &name, &d, err);
    if (have < 0)
        return have;
    int rc = 0;
    bool same = have && S_ISREG(d.st_mode) && d.st_size == e->st->st_size &&
                time_equal(d.st_mtim, e->st->st_mtim);
    if (same && c->o->checksum)
        rc = content_equal(e, pfd, name, &d, err), same = rc == 1;
    if (rc < 0) {
        /* err filled */
    } else if (same && !meta_differs(c, e->st, &d)) {
        atomic_fetch_add(&c->s->up_to_date, 1);
    } else if (c->o->dry_run) {
        report(c, same ? "chmod" : "copy", e->path, NULL);
    } else if (same) {
        rc = fs_meta_apply_at(pfd, name, e->st, &c->meta, err);
        if (rc == 0)
            atomic_fetch_add(&c->s->meta_updated, 1);
    } else if (c->o->split && c->o->range_split && e->st->st_nlink == 1 &&
               (uint64_t)e->st->st_size >= c->o->range_split && c->o->split(e->path, e->st, c->o->split_ctx)) {
        report(c, "split", e->path, NULL); /* copied in ranges, elsewhere */
    } else {
        rc = file_copy(c, e, pfd, name, have ? &d : NULL, false, err);
        if (rc == 0)
            report(c, "copy", e->path, NULL);
    }
    return rc < 0 ? rc : 0;
}

/* Makes DST's name at pfd/name a hard link to the inode at rdir/rname
 * (replacing what is there). */
static int link_into_place(int rdir, const char *rname, int pfd, const char *name, bool have, const struct stat *d,
                           haul_error *err)
{
    if (have && S_ISDIR(d->st_mode) && fs_remove(pfd, name, err) < 0) {
        err_prefix(err, "destination: ");
        return -HAUL_EIO;
    }
    if (fs_link(rdir, rname, pfd, name, 0, err) < 0) {
        err_prefix(err, "destination: hard link: ");
        return -HAUL_EIO;
    }
    return 0;
}

/* Distributed hard links (clone.h, link_registry): every name of a SRC
 * inode with several links becomes a link to one DST inode registered as
 * <registry>/<dev>-<ino>, whichever node meets which name first.  The
 * device part is 0 for SRC's own filesystem, so nodes that number the same
 * mount differently still agree. */
static int registry_link(struct clone *c, const struct walk_entry *e, haul_error *err)
{
    char key[64];
    uint64_t dev = e->st->st_dev == c->src_dev ? 0 : (uint64_t)e->st->st_dev;
    snprintf(key, sizeof key, "%llu-%llu", (unsigned long long)dev, (unsigned long long)e->st->st_ino);
    int pfd;
    const char *name;
    struct stat d, r;
    int have = dst_lookup(c, e->path, &pfd, &name, &d, err);
    if (have < 0)
        return have;
    bool mine = false; /* this call made the registry's copy */
    for (int attempt = 0; attempt < 4; attempt++) {
        if (fstatat(c->reg_fd, key, &r, AT_SYMLINK_NOFOLLOW) == 0) {
            if (have && d.st_dev == r.st_dev && d.st_ino == r.st_ino) {
                if (!mine)
                    atomic_fetch_add(&c->s->up_to_date, 1);
                return 0;
            }
            int rc = link_into_place(c->reg_fd, key, pfd, name, have, &d, err);
            if (rc == 0 && !mine) {
                atomic_fetch_add(&c->s->hardlinks, 1);
                report(c, "link", e->path, NULL);
            }
            return rc;
        }
        if (errno != ENOENT)
            return err_errno(err, errno, "destination: hard-link registry %s", key);
        bool same = have && S_ISREG(d.st_mode) && d.st_size == e->st->st_size &&
                    time_equal(d.st_mtim, e->st->st_mtim) && !meta_differs(c, e->st, &d);
        if (same && c->o->checksum) {
            int eq = content_equal(e, pfd, name, &d, err);
            if (eq < 0)
                return eq;
            same = eq == 1;
        }
        if (same) {
            /* The copy on DST is good: it becomes the registered inode. */
            if (fs_link(pfd, name, c->reg_fd, key, FS_NOREPLACE, err) < 0) {
                err_prefix(err, "destination: hard-link registry %s: ", key);
                return -HAUL_EIO;
            }
            continue;
        }
        int rc = file_copy(c, e, c->reg_fd, key, NULL, true, err);
        if (rc < 0)
            return rc;
        mine = rc == 0;
        if (mine)
            report(c, "copy", e->path, NULL);
    }
    return err_set(err, HAUL_EIO, "destination: hard-link registry %s keeps changing", key);
}

/* Symlinks and special files: made under a temporary name, given their
 * metadata there, then renamed over whatever is in the way. */
static int node_make(struct clone *c, const struct walk_entry *e, int pfd, const char *name, haul_error *err)
{
    if (fs_node_make(pfd, name, e->st->st_mode & S_IFMT, e->link_target, e->st->st_rdev, e->st, &c->meta, err) < 0) {
        err_prefix(err, "destination: ");
        return -HAUL_EIO;
    }
    return 0;
}

/* Is DST's entry d already the same symlink or special file? */
static bool node_same(const struct walk_entry *e, int pfd, const char *name, const struct stat *d)
{
    if ((d->st_mode & S_IFMT) != (e->st->st_mode & S_IFMT))
        return false;
    if (e->type != WALK_SYMLINK)
        return d->st_rdev == e->st->st_rdev;
    char buf[PATH_MAX + 1];
    ssize_t n = readlinkat(pfd, name, buf, sizeof buf);
    return n >= 0 && (size_t)n == e->link_len && memcmp(buf, e->link_target, e->link_len) == 0;
}

static int node_visit(struct clone *c, const struct walk_entry *e, haul_error *err)
{
    atomic_fetch_add(e->type == WALK_SYMLINK ? &c->s->symlinks : &c->s->others, 1);
    int pfd;
    const char *name;
    struct stat d;
    int have = dst_lookup(c, e->path, &pfd, &name, &d, err);
    if (have < 0)
        return have;
    int rc = 0;
    bool same = have && node_same(e, pfd, name, &d);
    if (same && !meta_differs(c, e->st, &d)) {
        atomic_fetch_add(&c->s->up_to_date, 1);
    } else if (c->o->dry_run) {
        report(c, same ? "chmod" : "copy", e->path, NULL);
    } else if (same) {
        if ((rc = fs_meta_apply_at(pfd, name, e->st, &c->meta, err)) == 0)
            atomic_fetch_add(&c->s->meta_updated, 1);
    } else {
        if (have && S_ISDIR(d.st_mode) && (rc = fs_remove(pfd, name, err)) < 0)
            err_prefix(err, "destination: ");
        else if ((rc = node_make(c, e, pfd, name, err)) == 0) {
            atomic_fetch_add(&c->s->copied, 1);
            report(c, "copy", e->path, NULL);
        }
    }
    return rc;
}

/* A directory is created (mode 0700 so it can be filled even when SRC's is
 * read-only); its own metadata is set once everything below it is done. */
static int dir_visit(struct clone *c, const struct walk_entry *e, haul_error *err)
{
    atomic_fetch_add(&c->s->dirs, 1);
    if (!e->path[0])
        return 0; /* the root was made before the walk */
    int pfd;
    const char *name;
    struct stat d;
    int have = dst_lookup(c, e->path, &pfd, &name, &d, err);
    if (have < 0)
        return have;
    int rc = 0;
    if (have && S_ISDIR(d.st_mode)) {
        /* Fill a read-only directory from an earlier pass; dir_done restores it. */
        if (!c->o->dry_run && (d.st_mode & 0700) != 0700 &&
            fs_chmod_at(pfd, name, S_IFDIR, (d.st_mode & 07777) | 0700, err) < 0) {
            err_prefix(err, "destination: ");
            rc = -HAUL_EIO;
        }
    } else if (c->o->dry_run) {
        report(c, "mkdir", e->path, NULL);
    } else if (have && fs_remove(pfd, name, err) < 0) {
        err_prefix(err, "destination: ");
        rc = -HAUL_EIO;
    } else if (c->o->layout.mdt_count > 1 && e->depth == 1) {
        char path[PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/%s", c->dst_abs, e->path);
        rc = layout_mkdir(path, atomic_fetch_add(&c->mdt_next, 1) % c->o->layout.mdt_count, err);
    } else if ((rc = fs_mkdir(pfd, name, 0700, err)) != 0) {
        rc = rc < 0 ? (err_prefix(err, "destination: "), rc) : err_errno(err, EEXIST, "destination: mkdir");
    }
    if (rc == 0 && !(have && S_ISDIR(d.st_mode)) && !c->o->dry_run) {
        atomic_fetch_add(&c->s->copied, 1);
        report(c, "mkdir", e->path, NULL);
    }
    return rc;
}

static enum walk_action copy_entry(const struct walk_entry *e, void *ctx)
{
    struct clone *c = ctx;
    haul_error err = {0};
    int rc;
    switch (e->type) {
    case WALK_DIR: rc = dir_visit(c, e, &err); break;
    case WALK_FILE: rc = file_visit(c, e, &err); break;
    default: rc = node_visit(c, e, &err); break;
    }
    if (rc < 0) {
        entry_failed(c, e->path, &err);
        if (e->type == WALK_DIR)
            return WALK_PRUNE; /* nothing below could be placed */
    }
    return WALK_CONTINUE;
}

/* Gives DST's directory SRC's metadata (all of it after a copy pass, only
 * the times for the dirtimes pass). */
static int dir_finish(struct clone *c, const struct walk_entry *e, bool times_only, haul_error *err)
{
    int dfd = fs_open_beneath(c->dst_root, e->path, O_RDONLY | O_DIRECTORY, err);
    if (dfd < 0) {
        err_prefix(err, "destination: ");
        return -HAUL_EIO;
    }
    int rc = 0;
    if (times_only) {
        struct stat d;
        struct timespec times[2] = {e->st->st_atim, e->st->st_mtim};
        /* mtime decides: reading a directory (any walk) moves its atime. */
        if (fstat(dfd, &d) == 0 && time_equal(d.st_mtim, e->st->st_mtim))
            rc = 0;
        else if (futimens(dfd, times) < 0)
            rc = err_errno(err, errno, "destination: set times");
        else
            atomic_fetch_add(&c->s->dirtimes, 1);
    } else {
        int sfd = c->meta.xattrs ? fs_open_beneath(c->src_root, e->path, O_RDONLY | O_DIRECTORY, err) : -1;
        if (c->meta.xattrs && sfd < 0)
            rc = -HAUL_EIO;
        else if (fs_meta_apply(dfd, sfd, e->st, &c->meta, err) < 0)
            err_prefix(err, "destination: "), rc = -HAUL_EIO;
        if (sfd >= 0)
            close(sfd);
    }
    close(dfd);
    return rc;
}

static enum walk_action copy_dir_done(const struct walk_entry *e, void *ctx)
{
    struct clone *c = ctx;
    haul_error err = {0};
    if (!c->o->dry_run && dir_finish(c, e, false, &err) < 0)
        entry_failed(c, e->path, &err);
    return WALK_CONTINUE;
}

static enum walk_action dirtimes_entry(const struct walk_entry *e, void *ctx)
{
    (void)e;
    (void)ctx;
    return WALK_CONTINUE;
}

static enum walk_action dirtimes_dir_done(const struct walk_entry *e, void *ctx)
{
    struct clone *c = ctx;
    haul_error err = {0};
    if (c->o->dry_run)
        return WALK_CONTINUE;
    if (dir_finish(c, e, true, &err) < 0) {
        if (err.code == HAUL_ENOTFOUND)
            log_debug("clone: dirtimes: %s: not on the destination", e->path);
        else
            entry_failed(c, e->path, &err);
    }
    return WALK_CONTINUE;
}

/* Delete pass, after everything in a DST directory was handled: give it
 * SRC's times again (a removal changed its mtime).  With the copy pass
 * before it (which set every directory's times), this leaves nothing for a
 * dirtimes walk to do. */
static enum walk_action delete_dir_done(const struct walk_entry *e, void *ctx)
{
    struct clone *c = ctx;
    struct stat s;
    if (c->o->dry_run || c->counting || fstatat(c->src_root, e->path[0] ? e->path : ".", &s, AT_SYMLINK_NOFOLLOW) < 0 ||
        !S_ISDIR(s.st_mode))
        return WALK_CONTINUE;
    struct walk_entry src = *e;
    src.st = &s;
    return dirtimes_dir_done(&src, ctx);
}

/* Count pass (count_deletes, --max-delete): would the delete pass remove
 * path?  Looked up on SRC without following any symlink: below a directory
 * that goes, the path may cross one.  A parent that cannot be opened
 * counts (too many counted is the safe side). */
static bool src_lacks(struct clone *c, const char *path, bool dir)
{
    haul_error e = {0};
    const char *name;
    int pfd = fs_parent_open(c->src_root, path, &name, &e);
    if (pfd < 0)
        return true;
    struct stat s;
    bool lacks = fstatat(pfd, name, &s, AT_SYMLINK_NOFOLLOW) < 0 ? errno == ENOENT || errno == ENOTDIR
                                                                  : dir && !S_ISDIR(s.st_mode);
    fs_parent_close(c->src_root, pfd);
    return lacks;
}

/* Counts DST's entry at path when the delete pass would remove it; every
 * entry below a directory that goes counts too, so the walk goes on into
 * it.  -1: a directory on another filesystem with -x (left alone, not
 * entered). */
static int delete_count(struct clone *c, const char *path, bool dir, const struct stat *st)
{
    if (dir && c->o->one_filesystem && st->st_dev != c->dst_dev)
        return -1;
    if (src_lacks(c, path, dir))
        atomic_fetch_add(&c->s->deleted, 1);
    return 0;
}

/* --max-delete in the pass that removes: SRC may have changed since the
 * count, so no more removals than the limit (a whole directory is one). */
static bool delete_over_budget(struct clone *c, haul_error *err)
{
    if (!c->o->max_delete_set || atomic_fetch_add(&c->removals, 1) < c->o->max_delete)
        return false;
    err_set(err, HAUL_EINTEGRITY, "not deleted: more than --max-delete %llu removals (SRC changed since the count?)",
            (unsigned long long)c->o->max_delete);
    return true;
}

/* Delete pass, on DST's walk: an entry whose path SRC does not have goes.
 * Every directory reached here exists as a directory on SRC (else it was
 * removed whole and pruned), so looking the path up on SRC never goes
 * through a SRC symlink. */
static enum walk_action delete_entry(const struct walk_entry *e, void *ctx)
{
    struct clone *c = ctx;
    if (!e->path[0])
        return WALK_CONTINUE;
    if (c->counting)
        return delete_count(c, e->path, e->type == WALK_DIR, e->st) < 0 ? WALK_PRUNE : WALK_CONTINUE;
    struct stat s;
    bool keep = fstatat(c->src_root, e->path, &s, AT_SYMLINK_NOFOLLOW) == 0;
    haul_error err = {0};
    if (!keep && errno != ENOENT && errno != ENOTDIR) {
        err_errno(&err, errno, "source: stat (not deleted)");
        entry_failed(c, e->path, &err);
        return WALK_PRUNE;
    }
    bool dir = e->type == WALK_DIR;
    if (dir && c->o->one_filesystem && e->st->st_dev != c->dst_dev) {
        log_info("%s: on another filesystem than DST: left alone (-x)", e->path);
        return WALK_PRUNE;
    }
    if (keep && (!dir || S_ISDIR(s.st_mode)))
        return WALK_CONTINUE; /* a type change is the copy pass's job */
    char shown[PATH_MAX];
    snprintf(shown, sizeof shown, "%s%s", e->path, dir ? "/" : "");
    if (delete_over_budget(c, &err) || (!c->o->dry_run && fs_remove(e->dirfd, e->name, &err) < 0)) {
        entry_failed(c, e->path, &err);
        return WALK_PRUNE;
    }
    atomic_fetch_add(&c->s->deleted, 1);
    report(c, "delete", shown, NULL);
    return dir ? WALK_PRUNE : WALK_CONTINUE;
}

/* After the copy walk: every later path of a hard-linked inode becomes a
 * link to the copy of its first path. */
static int link_one(const char *path, const char *first, void *ctx)
{
    struct clone *c = ctx;
    haul_error err = {0};
    const char *n1, *n2;
    int p1 = fs_parent_open(c->dst_root, first, &n1, &err);
    int p2 = p1 < 0 ? -1 : fs_parent_open(c->dst_root, path, &n2, &err);
    struct stat a, b;
    int rc = 0;
    if (p1 < 0 || p2 < 0) {
        rc = c->o->dry_run ? 1 : -1;
    } else if (fstatat(p1, n1, &a, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(a.st_mode)) {
        rc = c->o->dry_run ? 1 : err_set(&err, HAUL_EIO, "hard link to %s: that copy is missing", first);
    } else if (fstatat(p2, n2, &b, AT_SYMLINK_NOFOLLOW) == 0 && b.st_dev == a.st_dev && b.st_ino == a.st_ino) {
        atomic_fetch_add(&c->s->up_to_date, 1);
    } else if (c->o->dry_run) {
        rc = 1;
    } else {
        bool there = fstatat(p2, n2, &b, AT_SYMLINK_NOFOLLOW) == 0;
        if (there && S_ISDIR(b.st_mode) && fs_remove(p2, n2, &err) < 0)
            rc = -1;
        else if (fs_link(p1, n1, p2, n2, 0, &err) < 0)
            err_prefix(&err, "destination: link to %s: ", first), rc = -1;
        else
            atomic_fetch_add(&c->s->hardlinks, 1);
    }
    if (rc == 1)
        report(c, "link", path, NULL);
    else if (rc < 0)
        entry_failed(c, path, &err);
    fs_parent_close(c->dst_root, p1);
    fs_parent_close(c->dst_root, p2);
    return 0;
}

static void walk_failed(const struct walk_failure *f, void *ctx)
{
    struct clone *c = ctx;
    atomic_fetch_add(&c->s->failed, 1);
    report(c, "error", f->path, f->msg);
}

static int pass_walk(struct clone *c, const char *root, walk_entry_fn entry, walk_entry_fn dir_done,
                     haul_error *err)
{
    struct walk_opts wo = {
        .threads = c->o->threads ? c->o->threads : 8,
        .one_filesystem = c->o->one_filesystem,
        .filter = c->o->filter,
        .entry = entry,
        .dir_done = dir_done,
        .error = walk_failed,
        .ctx = c,
        .cancel = c->o->cancel,
        .stat_dirs_only = entry != copy_entry, /* delete, dirtimes: types suffice */
    };
    struct walk_stats ws;
    return walk_run(&root, 1, &wo, &ws, err);
}

static int pass_copy(struct clone *c, haul_error *err)
{
    int rc = pass_walk(c, c->o->src, copy_entry, copy_dir_done, err);
    if (rc == 0)
        rc = linkmap_each(c->links, link_one, c, err);
    return rc;
}

/* The delete pass, behind its guards: SRC's identity, then with
 * --max-delete a silent pass counting what would go (memory stays that of
 * a walk), then the pass that removes. */
static int pass_delete(struct clone *c, haul_error *err)
{
    int rc = clone_delete_guard(c, err);
    if (rc == 0 && c->o->max_delete_set) {
        struct clone_stats *real = c->s, counted = {0};
        c->s = &counted;
        c->counting = true;
        rc = pass_walk(c, c->dst_abs, delete_entry, delete_dir_done, err);
        c->counting = false;
        c->s = real;
        if (rc == 0)
            rc = clone_delete_limit(c->o, atomic_load(&counted.deleted), err);
    }
    return rc < 0 ? rc : pass_walk(c, c->dst_abs, delete_entry, delete_dir_done, err);
}

/* Refuses trees inside each other: a copy would copy itself forever, a
 * delete pass would remove the source. */
static int roots_check(struct clone *c, haul_error *err)
{
    size_t ls = strlen(c->src_abs), ld = strlen(c->dst_abs);
    if ((ld >= ls && strncmp(c->dst_abs, c->src_abs, ls) == 0 && (c->dst_abs[ls] == '/' || !c->dst_abs[ls] || ls == 1)) ||
        (ls > ld && strncmp(c->src_abs, c->dst_abs, ld) == 0 && (c->src_abs[ld] == '/' || ld == 1)))
        return err_set(err, HAUL_EUSAGE, "%s and %s overlap: one is inside the other", c->o->src, c->o->dst);
    return 0;
}

static int roots_open(struct clone *c, haul_error *err)
{
    const struct clone_opts *o = c->o;
    if (!realpath(o->src, c->src_abs))
        return err_errno(err, errno, "%s", o->src);
    if ((o->passes & CLONE_PASS_COPY) && !o->dry_run && !o->dst_exists && fs_mkdir_p(o->dst, 0755, err) < 0)
        return -HAUL_EIO;
    if (!realpath(o->dst, c->dst_abs)) {
        if (!o->dry_run || errno != ENOENT)
            return err_errno(err, errno, "%s", o->dst);
        snprintf(c->dst_abs, sizeof c->dst_abs, "%s", o->dst); /* a dry run into nothing */
    }
    if (roots_check(c, err) < 0)
        return -HAUL_EUSAGE;
    c->src_root = open(c->src_abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c->src_root < 0)
        return err_errno(err, errno, "%s", o->src);
    c->dst_root = open(c->dst_abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c->dst_root < 0 && !(o->dry_run && errno == ENOENT))
        return err_errno(err, errno, "%s", o->dst);
    return 0;
}

static void cutoffs_set(struct clone *c)
{
    time_t now = c->o->now ? c->o->now : time(NULL);
    if (c->o->skip_atime_older_days)
        c->atime_cutoff.tv_sec = now - (time_t)c->o->skip_atime_older_days * 86400;
    if (c->o->skip_mtime_newer_secs)
        c->mtime_cutoff.tv_sec = now - (time_t)c->o->skip_mtime_newer_secs;
}

/* ---- the delete pass's guards (fs/srcid) ---- */

const struct srcid *clone_src_id(const struct clone *c) { return &c->src_id; }

/* Does DST's root hold anything (that an empty SRC would make go)? */
static bool dst_nonempty(struct clone *c)
{
    struct srcid d;
    haul_error e = {0};
    return c->dst_root >= 0 && (srcid_probe(c->dst_root, &d, &e) < 0 || d.nonempty);
}

/* The record for DST: 1 and *then filled, 0 when there is none (or no
 * state directory), < 0 when it cannot be read. */
static int record_read(struct clone *c, char *path, size_t cap, struct srcid *then, haul_error *err)
{
    if (!c->o->state_dir)
        return 0;
    int rc = srcid_file_path(c->o->state_dir, c->dst_abs, path, cap, err);
    return rc < 0 ? rc : srcid_file_read(path, then, err);
}

int clone_delete_guard(struct clone *c, haul_error *err)
{
    if (!dst_nonempty(c))
        return 0; /* nothing to lose */
    if (!c->src_id.ino)
        return err_set(err, HAUL_EINTEGRITY, "SRC's identity could not be taken (%s): nothing deleted",
                       c->src_id_err.msg);
    char path[4096];
    struct srcid then;
    haul_error rerr = {0};
    int have = record_read(c, path, sizeof path, &then, &rerr);
    if (have < 0 && !c->o->allow_new_src)
        return err_set(err, HAUL_EINTEGRITY, "%s: nothing deleted (--allow-new-src to take SRC as it is now)",
                       rerr.msg);
    struct srcid_policy p = {.allow_empty = c->o->allow_empty_src, .allow_new = c->o->allow_new_src};
    return srcid_delete_check(c->src_abs, &c->src_id, have > 0 ? &then : NULL, &p, err);
}

int clone_delete_limit(const struct clone_opts *o, uint64_t n, haul_error *err)
{
    if (!o->max_delete_set || n <= o->max_delete)
        return 0;
    return err_set(err, HAUL_EINTEGRITY, "%llu entries would be deleted, more than --max-delete %llu: nothing deleted",
                   (unsigned long long)n, (unsigned long long)o->max_delete);
}

void clone_src_record(struct clone *c)
{
    char path[4096], why[128];
    struct srcid then;
    haul_error err = {0};
    int have = record_read(c, path, sizeof path, &then, &err);
    if (!c->o->state_dir || (have < 0 && !c->o->allow_new_src) || !c->src_id.ino) {
        if (have < 0)
            log_warn("clone: %s", err.msg);
        return;
    }
    if (!srcid_recordable(&c->src_id, have > 0 ? &then : NULL, c->o->allow_new_src)) {
        if (have > 0 && c->src_id.nonempty && !srcid_same_fs(&c->src_id, &then, why, sizeof why))
            log_warn("clone: SRC %s is not the filesystem recorded at the last run (%s): not recorded; a delete "
                     "pass refuses to run without --allow-new-src", c->src_abs, why);
        return;
    }
    if (srcid_file_write(path, &c->src_id, &err) < 0)
        log_warn("clone: recording SRC's identity: %s", err.msg);
}

void clone_free(struct clone *c)
{
    if (!c)
        return;
    if (c->key_made) {
        /* Walker threads freed their caches when they ended; this one is left. */
        parent_cache_free(pthread_getspecific(c->parent_key));
        pthread_key_delete(c->parent_key);
    }
    xfer_copy_pool_free(c->copy.pool);
    linkmap_free(c->links);
    if (c->src_root >= 0)
        close(c->src_root);
    if (c->dst_root >= 0)
        close(c->dst_root);
    if (c->reg_fd >= 0)
        close(c->reg_fd);
    free(c);
}

struct clone *clone_new(const struct clone_opts *o, struct clone_stats *stats, haul_error *err)
{
    struct clone *c = calloc(1, sizeof *c);
    if (!c) {
        err_set(err, HAUL_ENOMEM, "out of memory");
        return NULL;
    }
    c->o = o;
    c->s = stats;
    c->src_root = c->dst_root = c->reg_fd = -1;
    if (pthread_key_create(&c->parent_key, parent_cache_free) != 0) {
        free(c);
        err_set(err, HAUL_ENOMEM, "out of thread-specific keys");
        return NULL;
    }
    c->key_made = true;
    c->meta.owner = geteuid() == 0;
    c->meta.xattrs = o->xattrs;
    c->copy.chunk = o->chunk;
    c->copy.parallel_threshold = o->parallel_threshold ? o->parallel_threshold : 256ull << 20;
    c->copy.cancel = o->cancel;
    cutoffs_set(c);
    int rc = layout_check(&o->layout, err);
    if (rc == 0)
        rc = roots_open(c, err);
    struct stat st;
    if (rc == 0 && fstat(c->src_root, &st) == 0)
        c->src_dev = st.st_dev;
    if (rc == 0 && c->dst_root >= 0 && fstat(c->dst_root, &st) == 0)
        c->dst_dev = st.st_dev;
    if (rc == 0 && srcid_probe(c->src_root, &c->src_id, &c->src_id_err) < 0)
        err_prefix(&c->src_id_err, "%s: ", c->src_abs); /* unknown: no delete pass may run */
    c->counting = o->count_deletes;
    if (rc == 0 && o->src_expect && srcid_match(c->src_abs, &c->src_id, o->src_expect, err) < 0)
        rc = -HAUL_EINTEGRITY;
    /* Write-back errors of a network filesystem show only at sync or close. */
    if (rc == 0 && c->dst_root >= 0)
        c->sync = o->fsync ? FS_SYNC_ALL : fs_is_network(c->dst_root) ? FS_SYNC_DATA : 0;
    if (rc == 0 && (o->passes & CLONE_PASS_COPY)) {
        unsigned range_threads = o->range_threads ? o->range_threads : (o->threads ? o->threads : 8);
        if ((!o->link_registry && !(c->links = linkmap_new(err))) ||
            !(c->copy.pool = xfer_copy_pool_new(range_threads, err)))
            rc = -HAUL_ENOMEM;
    }
    if (rc == 0 && o->link_registry && (o->passes & CLONE_PASS_COPY) && c->dst_root >= 0) {
        c->reg_fd = fs_open_beneath(c->dst_root, o->link_registry, O_RDONLY | O_DIRECTORY, err);
        if (c->reg_fd < 0) {
            err_prefix(err, "%s/%s: ", c->dst_abs, o->link_registry);
            rc = -HAUL_EIO;
        }
    }
    if (rc < 0) {
        clone_free(c);
        return NULL;
    }
    return c;
}

int clone_run(const struct clone_opts *o, struct clone_stats *stats, haul_error *err)
{
    struct clone *c = clone_new(o, stats, err);
    int rc = c ? 0 : -HAUL_EIO;
    if (!c && err->code)
        rc = -err->code;
    if (rc == 0 && (o->passes & CLONE_PASS_COPY))
        rc = pass_copy(c, err);
    if (rc == 0 && (o->passes & CLONE_PASS_DELETE) && c->dst_root >= 0)
        rc = pass_delete(c, err);
    /* copy + delete already set every directory's times: no third walk. */
    bool times_done = (o->passes & CLONE_PASS_COPY) && (o->passes & CLONE_PASS_DELETE) && !o->dry_run;
    if (rc == 0 && (o->passes & CLONE_PASS_DIRTIMES) && !times_done)
        rc = pass_walk(c, o->src, dirtimes_entry, dirtimes_dir_done, err);
    if (rc == 0 && !o->dry_run)
        clone_src_record(c);
    clone_free(c);
    uint64_t failed = atomic_load(&stats->failed);
    if (rc == 0 && failed)
        rc = err_set(err, HAUL_EIO, "%llu entr%s could not be copied", (unsigned long long)failed,
                     failed == 1 ? "y" : "ies");
    return rc;
}

/* ---- the engine, one path at a time (distributed clone) ---- */

const char *clone_src_abs(const struct clone *c) { return c->src_abs; }
const char *clone_dst_abs(const struct clone *c) { return c->dst_abs; }

static unsigned path_depth(const char *path)
{
    if (!path[0])
        return 0;
    unsigned n = 1;
    for (const char *p = path; *p; p++)
        n += *p == '/';
    return n;
}

static enum walk_type type_of(mode_t mode)
{
    return S_ISDIR(mode) ? WALK_DIR : S_ISREG(mode) ? WALK_FILE : S_ISLNK(mode) ? WALK_SYMLINK : WALK_OTHER;
}

/* Looks path up on SRC (confined below SRC's root) and fills *e for it:
 * e->dirfd is the open parent (fs_parent_close it), link target read into
 * link.  1 when found, 0 when gone, <0 on error. */
static int src_entry(struct clone *c, const char *path, struct walk_entry *e, struct stat *st, char *link,
                     size_t link_cap, haul_error *err)
{
    memset(e, 0, sizeof *e);
    e->path = path;
    e->path_len = strlen(path);
    e->depth = path_depth(path);
    e->dirfd = fs_parent_open(c->src_root, path, &e->name, err);
    if (e->dirfd < 0)
        return err->code == HAUL_ENOTFOUND ? 0 : -HAUL_EIO;
    if (!path[0])
        e->name = ".";
    if (fstatat(e->dirfd, path[0] ? e->name : ".", st, AT_SYMLINK_NOFOLLOW) < 0) {
        int saved = errno;
        fs_parent_close(c->src_root, e->dirfd);
        e->dirfd = -1;
        if (saved == ENOENT)
            return 0;
        return err_errno(err, saved, "stat");
    }
    e->st = st;
    e->type = type_of(st->st_mode);
    e->descend = e->type == WALK_DIR && (!c->o->one_filesystem || st->st_dev == c->src_dev);
    if (e->type == WALK_SYMLINK) {
        ssize_t n = readlinkat(e->dirfd, e->name, link, link_cap - 1);
        if (n < 0) {
            int saved = errno;
            fs_parent_close(c->src_root, e->dirfd);
            e->dirfd = -1;
            return err_errno(err, saved, "readlink");
        }
        link[n] = '\0';
        e->link_target = link;
        e->link_len = (size_t)n;
    }
    return 1;
}

/* "a" + "b" -> "a/b", "" + "b" -> "b" into a malloc'd string. */
static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    if (a) {
        memcpy(p, dir, a);
        p[a++] = '/';
    }
    memcpy(p + a, name, b + 1);
    return p;
}

/* Reads the directory path below root (open as dfd, closed here) and
 * calls each(c, child path, name, dfd, stat, ctx) for every entry the filter
 * keeps; stops at the first negative return. */
typedef int (*scan_each_fn)(struct clone *c, const char *path, const char *name, int dfd, const struct stat *st,
                            void *ctx, haul_error *err);

static int dir_read(struct clone *c, const char *path, int dfd, scan_each_fn each, void *ctx, haul_error *err)
{
    int keep = dup(dfd);
    DIR *d = keep < 0 ? NULL : fdopendir(keep);
    if (!d) {
        int saved = errno;
        if (keep >= 0)
            close(keep);
        close(dfd);
        haul_error e2 = {0};
        err_errno(&e2, saved, "opendir");
        entry_failed(c, path, &e2);
        return 0;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *child = path_join(path, de->d_name);
        if (!child) {
            rc = err_set(err, HAUL_ENOMEM, "out of memory");
            break;
        }
        struct stat st;
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno != ENOENT) { /* vanished since readdir: nothing to do */
                haul_error e2 = {0};
                err_errno(&e2, errno, "stat");
                entry_failed(c, child, &e2);
            }
        } else if (!c->o->filter || walk_filter_match(c->o->filter, child, &st)) {
            rc = each(c, child, de->d_name, dfd, &st, ctx, err);
        }
        free(child);
    }
    if (rc == 0 && errno) {
        haul_error e2 = {0};
        err_errno(&e2, errno, "readdir");
        entry_failed(c, path, &e2);
    }
    closedir(d);
    close(dfd);
    return rc;
}

struct scan_ctx {
    clone_child_fn fn;
    void *ctx;
    bool dirs_only;
};

static int scan_child(struct clone *c, const char *path, const char *name, int dfd, const struct stat *st, void *ctx,
                      haul_error *err)
{
    (void)c, (void)name, (void)dfd;
    struct scan_ctx *sc = ctx;
    if (sc->dirs_only && !S_ISDIR(st->st_mode))
        return 0;
    return sc->fn(S_ISDIR(st->st_mode), path, st, sc->ctx, err);
}

/* Delete pass, one DST entry (the logic of delete_entry): kept directories
 * become children to scan, what SRC lacks is removed whole. */
static int delete_child(struct clone *c, const char *path, const char *name, int dfd, const struct stat *st,
                        void *ctx, haul_error *err)
{
    struct scan_ctx *sc = ctx;
    bool dir = S_ISDIR(st->st_mode);
    if (c->counting) /* what goes is counted, and what is below it */
        return delete_count(c, path, dir, st) == 0 && dir ? sc->fn(true, path, st, sc->ctx, err) : 0;
    struct stat s;
    bool keep = fstatat(c->src_root, path, &s, AT_SYMLINK_NOFOLLOW) == 0;
    haul_error e2 = {0};
    if (!keep && errno != ENOENT && errno != ENOTDIR) {
        err_errno(&e2, errno, "source: stat (not deleted)");
        entry_failed(c, path, &e2);
        return 0;
    }
    /* -x: a filesystem mounted below DST is not DST's to clean, nor to
     * remove (as in the local delete walk). */
    if (dir && c->o->one_filesystem && st->st_dev != c->dst_dev) {
        log_info("%s: on another filesystem than DST: left alone (-x)", path);
        return 0;
    }
    if (keep && (!dir || S_ISDIR(s.st_mode)))
        return dir ? sc->fn(true, path, st, sc->ctx, err) : 0;
    if (fs_remove(dfd, name, &e2) < 0) {
        entry_failed(c, path, &e2);
        return 0;
    }
    atomic_fetch_add(&c->s->deleted, 1);
    char shown[PATH_MAX];
    snprintf(shown, sizeof shown, "%s%s", path, dir ? "/" : "");
    report(c, "delete", shown, NULL);
    return 0;
}

/* Distributed dirtimes: all of a directory's metadata (mode, owner,
 * xattrs, times), only when something differs. */
static void dir_meta_full(struct clone *c, const char *path, int sfd, const struct stat *st)
{
    haul_error err = {0};
    int dfd = fs_open_beneath(c->dst_root, path, O_RDONLY | O_DIRECTORY, &err);
    if (dfd < 0) {
        if (err.code == HAUL_ENOTFOUND)
            log_debug("clone: dirtimes: %s: not on the destination", path);
        else
            err_prefix(&err, "destination: "), entry_failed(c, path, &err);
        return;
    }
    struct stat d;
    if (fstat(dfd, &d) == 0 && !meta_differs(c, st, &d) && !c->meta.xattrs) {
        close(dfd);
        return;
    }
    if (fs_meta_apply(dfd, sfd, st, &c->meta, &err) < 0)
        err_prefix(&err, "destination: "), entry_failed(c, path, &err);
    else
        atomic_fetch_add(&c->s->dirtimes, 1);
    close(dfd);
}

static const char *unit_path(const char *path)
{
    return strcmp(path, ".") == 0 ? "" : path;
}

int clone_dir_scan(struct clone *c, enum clone_pass pass, const char *path, clone_child_fn fn, void *ctx,
                   haul_error *err)
{
    path = unit_path(path);
    struct scan_ctx sc = {fn, ctx, pass != CLONE_PASS_COPY};
    haul_error e2 = {0};
    if (pass == CLONE_PASS_DELETE) {
        int dfd = fs_open_beneath(c->dst_root, path, O_RDONLY | O_DIRECTORY, &e2);
        if (dfd < 0) {
            if (e2.code != HAUL_ENOTFOUND)
                entry_failed(c, path, &e2);
            return 0;
        }
        return dir_read(c, path, dfd, delete_child, &sc, err);
    }
    if (pass != CLONE_PASS_COPY && pass != CLONE_PASS_DIRTIMES)
        return err_set(err, HAUL_EUSAGE, "clone: unknown pass %d", (int)pass);
    struct walk_entry e;
    struct stat st;
    char link[PATH_MAX + 1];
    int found = src_entry(c, path, &e, &st, link, sizeof link, &e2);
    if (found <= 0) {
        if (found < 0)
            entry_failed(c, path, &e2);
        return 0;
    }
    int rc = 0;
    if (e.type != WALK_DIR) { /* replaced by something else since its parent was read */
        if (pass == CLONE_PASS_COPY) {
            enum walk_action a = copy_entry(&e, c);
            (void)a;
        }
        fs_parent_close(c->src_root, e.dirfd);
        return 0;
    }
    if (pass == CLONE_PASS_COPY) {
        rc = dir_visit(c, &e, &e2);
        if (rc < 0) {
            entry_failed(c, path, &e2);
            fs_parent_close(c->src_root, e.dirfd);
            return 0; /* nothing below could be placed */
        }
    }
    fs_parent_close(c->src_root, e.dirfd);
    int sfd = fs_open_beneath(c->src_root, path, O_RDONLY | O_DIRECTORY, &e2);
    if (sfd < 0) {
        err_prefix(&e2, "open: ");
        entry_failed(c, path, &e2);
        return 0;
    }
    if (pass == CLONE_PASS_DIRTIMES)
        dir_meta_full(c, path, c->meta.xattrs ? sfd : -1, &st);
    if (!e.descend) {
        close(sfd);
        return 0;
    }
    return dir_read(c, path, sfd, scan_child, &sc, err);
}

int clone_path_do(struct clone *c, enum clone_pass pass, const char *path, haul_error *err)
{
    path = unit_path(path);
    if (pass != CLONE_PASS_COPY)
        return err_set(err, HAUL_EUSAGE, "clone: pass %d has no per-path work", (int)pass);
    struct walk_entry e;
    struct stat st;
    char link[PATH_MAX + 1];
    haul_error e2 = {0};
    int found = src_entry(c, path, &e, &st, link, sizeof link, &e2);
    if (found < 0)
        entry_failed(c, path, &e2);
    if (found <= 0)
        return 0; /* gone since its directory was read: the delete pass's business */
    copy_entry(&e, c);
    fs_parent_close(c->src_root, e.dirfd);
    return 0;
}

/* ---- a large file in ranges, over several processes ---- */

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_size == b->st_size && time_equal(a->st_mtim, b->st_mtim) && a->st_ino == b->st_ino;
}

/* SRC's file at path, checked against expect (NULL: not checked; st_dev
 * is not compared: expect may come from another node's stat). */
static int range_src(struct clone *c, const char *path, const struct stat *expect, struct stat *st, haul_error *err)
{
    const char *name;
    int pfd = fs_parent_open(c->src_root, path, &name, err);
    if (pfd < 0)
        return -1;
    /* A FIFO put in the file's place must not block the open. */
    int fd = fs_source_open(pfd, name, NULL, err);
    fs_parent_close(c->src_root, pfd);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) < 0)
        err_errno(err, errno, "stat");
    else if (expect && !same_file(st, expect))
        err_set(err, HAUL_EIO, "changed while being copied (the next pass copies it again)");
    else
        return fd;
    close(fd);
    return -1;
}

int clone_range_begin(struct clone *c, const char *path, const char *tmp, uint64_t size, haul_error *err)
{
    haul_error e2 = {0};
    const char *name;
    struct fs_tmp t = {.fd = -1};
    int pfd = fs_parent_open(c->dst_root, path, &name, &e2);
    if (pfd >= 0 && fs_tmp_open(pfd, tmp, true, &t, &e2) == 0) {
        if (ftruncate(t.fd, (off_t)size) < 0)
            err_errno(&e2, errno, "size %s", tmp);
        if (fs_tmp_close(&t, 0, &e2) < 0 || e2.code)
            fs_tmp_discard(&t);
    }
    if (e2.code) {
        err_prefix(&e2, "destination: ");
        entry_failed(c, path, &e2);
    }
    if (pfd >= 0)
        fs_parent_close(c->dst_root, pfd);
    (void)err;
    return e2.code ? 1 : 0;
}

int clone_range_copy(struct clone *c, const char *path, const char *tmp, uint64_t off, uint64_t len,
                     haul_error *err)
{
    haul_error e2 = {0};
    struct stat st;
    const char *name;
    struct fs_tmp t = {.fd = -1};
    int sfd = range_src(c, path, NULL, &st, &e2);
    int pfd = sfd < 0 ? -1 : fs_parent_open(c->dst_root, path, &name, &e2);
    if (pfd >= 0 && fs_tmp_open(pfd, tmp, false, &t, &e2) < 0)
        err_prefix(&e2, "destination: ");
    /* This range is only reported done once it reached DST: synced (a
     * network filesystem, --fsync) and closed, both checked. */
    if (t.fd >= 0 && xfer_range_copy(sfd, t.fd, off, len, &e2) == 0 && fs_tmp_close(&t, c->sync, &e2) < 0)
        err_prefix(&e2, "destination: ");
    if (e2.code) {
        /* Without this range the file is not whole: no FINISH may put it in
         * place (it needs tmp), and the next pass copies it again. */
        haul_error e3 = {0};
        if (pfd < 0)
            pfd = fs_parent_open(c->dst_root, path, &name, &e3);
        if (pfd >= 0) {
            t.dir = pfd;
            snprintf(t.name, sizeof t.name, "%s", tmp);
        }
        fs_tmp_discard(&t);
        entry_failed(c, path, &e2);
    }
    if (t.fd >= 0)
        close(t.fd);
    if (pfd >= 0)
        fs_parent_close(c->dst_root, pfd);
    if (sfd >= 0)
        close(sfd);
    if (c->o->cancel && atomic_load(c->o->cancel))
        return err_set(err, HAUL_ECANCELED, "canceled");
    return 0;
}

int clone_range_finish(struct clone *c, const char *path, const char *tmp, const struct stat *expect,
                       haul_error *err)
{
    (void)err;
    haul_error e2 = {0}, open_err = {0};
    struct stat st, d;
    const char *name;
    struct fs_tmp t = {.fd = -1};
    int pfd = fs_parent_open(c->dst_root, path, &name, &e2);
    if (pfd >= 0 && fs_tmp_open(pfd, tmp, false, &t, &open_err) < 0) {
        t.name[0] = '\0'; /* nothing of ours to remove */
        if (open_err.code == HAUL_ENOTFOUND && fstatat(pfd, name, &d, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(d.st_mode) && d.st_size == expect->st_size && time_equal(d.st_mtim, expect->st_mtim)) {
            fs_parent_close(c->dst_root, pfd); /* a redelivered finish: done before */
            return 0;
        }
        if (open_err.code == HAUL_ENOTFOUND)
            err_set(&e2, HAUL_EIO, "a range of it could not be copied (see the messages above or the workers' logs); "
                                   "the next pass copies it again");
        else
            err_set(&e2, open_err.code, "destination: %s", open_err.msg);
    }
    int sfd = t.fd < 0 ? -1 : range_src(c, path, expect, &st, &e2);
    if (sfd >= 0 && !e2.code && fs_meta_apply(t.fd, sfd, &st, &c->meta, &e2) < 0)
        err_prefix(&e2, "destination: ");
    if (sfd >= 0 && !e2.code && fstatat(pfd, name, &d, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(d.st_mode) &&
        fs_remove(pfd, name, &e2) < 0)
        err_prefix(&e2, "destination: ");
    /* Synced and closed (checked) before it gets its name. */
    if (sfd >= 0 && !e2.code && fs_publish(&t, name, c->sync, &e2) < 0)
        err_prefix(&e2, "destination: ");
    if (e2.code) {
        entry_failed(c, path, &e2);
        fs_tmp_discard(&t); /* the next pass copies it again */
    } else {
        atomic_fetch_add(&c->s->copied, 1);
        atomic_fetch_add(&c->s->bytes_copied, (uint64_t)st.st_size);
        report(c, "copy", path, NULL);
    }
    if (sfd >= 0)
        close(sfd);
    if (pfd >= 0)
        fs_parent_close(c->dst_root, pfd);
    return 0;
}

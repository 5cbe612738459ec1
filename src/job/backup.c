/* job/backup: walk -> decide against the index -> small-file and large-file
 * workers -> index (see backup.h). */
#include "job/backup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs.h"
#include "fs/srcid.h"
#include "index/index.h"
#include "meta/meta.h"
#include "util/err.h"
#include "util/fdio.h"
#include "util/log.h"
#include "util/queue.h"
#include "walk/walk.h"

#define SMALL_QUEUE 256 /* tasks waiting for small-file workers (each may hold an fd) */
#define LARGE_QUEUE 4

struct backup {
    struct s3_client *client;
    const struct backup_opts *o;
    struct backup_stats *stats;
    struct index *ix;
    struct queue *small, *large;
    int *root_fds;         /* the roots, opened when a hard link is decided after the walk */
    atomic_bool stop;      /* a fatal error: stop walking and working */
    pthread_mutex_t lock;  /* guards fatal */
    haul_error fatal;
};

void backup_item_free(struct backup_item *t)
{
    if (!t)
        return;
    if (t->fd >= 0)
        close(t->fd);
    free(t->key);
    free(t->path);
    free(t->link);
    free(t);
}

static void report(struct backup *b, const char *what, const char *key)
{
    if (b->o->line)
        b->o->line(what, key, b->o->line_ctx);
}

static void fatal(struct backup *b, const haul_error *err);
static bool stopping(struct backup *b);

/* An entry that could not be backed up: reported, counted, the run goes on;
 * unless the client stopped (a bucket-level failure, said once by the run)
 * or the run was interrupted (not the entry's failure). */
static void entry_failed(struct backup *b, const haul_error *err)
{
    haul_error stop = {0};
    if (s3_client_failed(b->client, &stop)) {
        fatal(b, &stop);
        return;
    }
    if (err->code == HAUL_ECANCELED && stopping(b))
        return;
    atomic_fetch_add(&b->stats->errors, 1);
    log_error("%s", err->msg);
    report(b, "error", err->msg);
}

/* A failure that makes going on pointless (the index cannot be written). */
static void fatal(struct backup *b, const haul_error *err)
{
    pthread_mutex_lock(&b->lock);
    if (b->fatal.code == HAUL_OK)
        b->fatal = *err;
    pthread_mutex_unlock(&b->lock);
    atomic_store(&b->stop, true);
}

static bool stopping(struct backup *b)
{
    return atomic_load(&b->stop) || (b->o->cancel && atomic_load(b->o->cancel));
}

/* ---- deciding, on the walker threads ------------------------------------- */

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
}

bool backup_same_as_indexed(const struct index_entry *e, const struct stat *st)
{
    return e->size == (uint64_t)(S_ISREG(st->st_mode) ? st->st_size : 0) &&
           e->mtime_ns == mtime_ns(st) && e->mode == st->st_mode && e->uid == st->st_uid &&
           e->gid == st->st_gid;
}

bool backup_unchanged(const struct index_entry *e, const struct stat *st, const char *holder)
{
    if (!backup_same_as_indexed(e, st) || e->link_unknown)
        return false;
    return strcmp(e->link, holder ? holder : "") == 0;
}

int backup_holder_missing_error(const struct backup_link_choice *c, haul_error *err)
{
    return err_set(err, HAUL_EIO, "%s: not stored in this run, so the other names of its inode are not re-pointed"
                   " to it (the next run does it)", c->name->path);
}

/* ---- hard links, decided once the walk is over ---------------------------- */

struct links_decide {
    struct index *ix;
    enum backup_links_pass pass;
    backup_link_fn fn;
    void *ctx;
    size_t postponed;
    haul_error *err;
};

static bool holds_bytes(const struct index_entry *e)
{
    return S_ISREG(e->mode) && !e->link[0] && !e->link_unknown;
}

/* The name that held the bytes last run when it still is one of the
 * inode's names (nothing moves from run to run), else the first in key
 * order.  <0 on error. */
static long holder_pick(struct index *ix, const struct index_link_name *names, size_t n, struct index_entry *old,
                        haul_error *err)
{
    for (size_t i = 0; i < n; i++) {
        int got = index_get(ix, names[i].key, old, err);
        if (got < 0)
            return got;
        if (got && holds_bytes(old))
            return (long)i;
    }
    return 0;
}

/* One inode's names: the holder is stored (or kept) with the bytes, every
 * other name is a link object naming it, re-stored when it named another. */
static int links_group(const struct index_link_name *names, size_t n, void *arg)
{
    struct links_decide *x = arg;
    struct index_entry *old = malloc(sizeof *old);
    if (!old)
        return err_set(x->err, HAUL_ENOMEM, "out of memory");
    long holder = holder_pick(x->ix, names, n, old, x->err);
    int rc = holder < 0 ? (int)holder : 0;
    /* First the holder (in the second pass: is it stored now?), then its links. */
    bool stored = false;
    for (size_t k = 0; k <= n && rc == 0; k++) {
        size_t i = k == 0 ? (size_t)holder : k - 1;
        if (k > 0 && (i == (size_t)holder || (x->pass == BACKUP_LINKS_AFTER && !names[i].after)))
            continue;
        int indexed = index_get(x->ix, names[i].key, old, x->err);
        if (indexed < 0) {
            rc = indexed;
            break;
        }
        struct backup_link_choice c = {.name = &names[i], .holder = k == 0 ? NULL : names[holder].path,
                                       .indexed = indexed, .old = old};
        c.unchanged = indexed && backup_unchanged(old, &names[i].st, c.holder);
        /* First pass: unchanged by its metadata; second: stored by this run. */
        if (k == 0)
            stored = x->pass == BACKUP_LINKS_AFTER ? indexed && holds_bytes(old) && old->seen : c.unchanged;
        if (k == 0 && x->pass == BACKUP_LINKS_AFTER) {
            c.holder_missing = !stored;
            rc = stored ? 0 : x->fn(&c, x->ctx, x->err); /* an error: --delete is skipped */
            if (!stored)
                break;
        } else if (k > 0 && x->pass == BACKUP_LINKS_FIRST && !c.unchanged && !stored) {
            rc = index_link_postpone(x->ix, names[i].key, x->err);
            x->postponed++;
        } else {
            rc = x->fn(&c, x->ctx, x->err);
        }
    }
    free(old);
    return rc;
}

int backup_links_decide(struct index *ix, enum backup_links_pass pass, backup_link_fn fn, void *ctx,
                        size_t *postponed, haul_error *err)
{
    struct links_decide x = {.ix = ix, .pass = pass, .fn = fn, .ctx = ctx, .err = err};
    int rc = index_links_each(ix, links_group, &x, err);
    if (postponed)
        *postponed = x.postponed;
    return rc;
}

static int tree_hash_fd(int fd, char hex[SHA256_HEX_LEN + 1], haul_error *err)
{
    struct meta_treehash *th = meta_treehash_new();
    char *buf = malloc(1 << 20);
    int rc = 0;
    if (!th || !buf)
        rc = err_set(err, HAUL_ENOMEM, "tree hash: out of memory");
    off_t off = 0;
    for (ssize_t n = 1; rc == 0 && n > 0; off += n) {
        n = pread(fd, buf, 1 << 20, off);
        if (n < 0)
            rc = err_errno(err, errno, "reading for the tree hash");
        else
            meta_treehash_update(th, buf, (size_t)n);
    }
    if (rc == 0)
        rc = meta_treehash_final(th, NULL, hex, err);
    meta_treehash_free(th);
    free(buf);
    return rc;
}

/* The path under the backup root: several roots each go under their base name. */
static char *rel_path(const struct backup *b, const struct walk_entry *e)
{
    if (b->o->n_roots == 1)
        return strdup(e->path);
    const char *root = b->o->roots[e->root_index];
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    const char *base = root + n;
    while (base > root && base[-1] != '/')
        base--;
    size_t base_len = (size_t)(root + n - base);
    char *p = malloc(base_len + 1 + e->path_len + 1);
    if (p) {
        memcpy(p, base, base_len);
        p[base_len] = '\0';
        if (e->path_len) {
            p[base_len] = '/';
            memcpy(p + base_len + 1, e->path, e->path_len + 1);
        }
    }
    return p;
}

static void count_entry(struct backup *b, const struct walk_entry *e)
{
    switch (e->type) {
    case WALK_FILE:
        atomic_fetch_add(&b->stats->files, 1);
        atomic_fetch_add(&b->stats->bytes_seen, (uint64_t)e->st->st_size);
        break;
    case WALK_DIR: atomic_fetch_add(&b->stats->dirs, 1); break;
    case WALK_SYMLINK: atomic_fetch_add(&b->stats->symlinks, 1); break;
    case WALK_OTHER: atomic_fetch_add(&b->stats->others, 1); break;
    }
}

/* Opens a file to upload (and with check_sha256 hashes it, which may turn
 * out to leave it unchanged after all): name in dirfd, never following a
 * symlink nor blocking on a FIFO swapped in since the walk, and only if it
 * still is the file walked (fs_source_open). */
static int task_open(struct backup *b, struct backup_item *t, int dirfd, const char *name,
                     const struct index_entry *old, bool indexed, bool *unchanged, haul_error *err)
{
    if ((t->fd = fs_source_open(dirfd, name, &t->st, err)) < 0) {
        err_prefix(err, "%s: ", t->path);
        return -HAUL_EIO;
    }
    if (!b->o->check_sha256)
        return 0;
    int rc = tree_hash_fd(t->fd, t->tree, err);
    if (rc < 0) {
        err_prefix(err, "%s: ", t->path);
        return rc;
    }
    *unchanged = indexed && *unchanged && strcmp(old->tree_hash, t->tree) == 0;
    return 0;
}

static int task_make(struct backup *b, const struct walk_entry *e, struct backup_item **out, haul_error *err)
{
    struct backup_item *t = calloc(1, sizeof *t);
    if (!t)
        return err_set(err, HAUL_ENOMEM, "out of memory");
    t->fd = -1;
    t->st = *e->st;
    t->kind = e->type == WALK_DIR ? BACKUP_DIR : e->type == WALK_SYMLINK ? BACKUP_SYMLINK : BACKUP_FILE;
    char key[META_KEY_MAX + 1];
    t->path = rel_path(b, e);
    int rc = t->path ? 0 : err_set(err, HAUL_ENOMEM, "out of memory");
    if (rc == 0)
        rc = meta_key_from_path(b->o->prefix, t->path, strlen(t->path), t->kind == BACKUP_DIR, key,
                                NULL, err);
    if (rc == 0 && !(t->key = strdup(key)))
        rc = err_set(err, HAUL_ENOMEM, "out of memory");
    if (rc == 0 && t->kind == BACKUP_SYMLINK && !(t->link = strdup(e->link_target)))
        rc = err_set(err, HAUL_ENOMEM, "out of memory");
    if (rc < 0) {
        backup_item_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* An unchanged file is not even opened (an open is a metadata-server
 * round trip on Lustre, GPFS or NFS), unless its content is compared. */
static bool open_needed(const struct backup *b, const struct backup_item *t, bool unchanged)
{
    return t->kind == BACKUP_FILE && (!unchanged || b->o->check_sha256) && (!b->o->dry_run || b->o->check_sha256);
}

/* A decided item (owned): opened when needed (name in dirfd), then stamped
 * as unchanged, reported (dry run) or queued for a worker. */
static int task_dispatch(struct backup *b, struct backup_item *t, int dirfd, const char *name,
                         const struct index_entry *old, bool indexed, bool unchanged, haul_error *err)
{
    int rc = 0;
    if (open_needed(b, t, unchanged))
        rc = task_open(b, t, dirfd, name, old, indexed, &unchanged, err);
    if (rc < 0) {
        backup_item_free(t);
        return rc;
    }
    if (unchanged) {
        atomic_fetch_add(&b->stats->unchanged, 1);
        rc = index_touch(b->ix, t->key, err); /* a dry run too: --delete lists what was not seen */
        backup_item_free(t);
        return rc;
    }
    if (b->o->dry_run) {
        report(b, "upload (dry run)", t->key);
        rc = indexed ? index_touch(b->ix, t->key, err) : 0;
        backup_item_free(t);
        return rc;
    }
    bool large = t->kind == BACKUP_FILE && (uint64_t)t->st.st_size > b->o->small_threshold;
    if (queue_push(large ? b->large : b->small, t) < 0)
        backup_item_free(t); /* stopping */
    return 0;
}

/* Decides one entry: unchanged (stamp it), or a task for a worker.  A
 * file with several names waits for the end of the walk (links_run). */
static int entry_decide(struct backup *b, const struct walk_entry *e, haul_error *err)
{
    struct backup_item *t = NULL;
    int rc = task_make(b, e, &t, err);
    if (rc < 0)
        return rc;
    if (t->kind == BACKUP_FILE && e->st->st_nlink > 1) {
        struct index_link_name nm = {.st = *e->st, .root = (uint32_t)e->root_index, .key = t->key, .path = t->path};
        rc = index_link_defer(b->ix, &nm, err);
        backup_item_free(t);
        return rc;
    }
    struct index_entry *old = malloc(sizeof *old);
    int indexed = old ? index_get(b->ix, t->key, old, err) : err_set(err, HAUL_ENOMEM, "out of memory");
    if (indexed < 0) {
        free(old);
        backup_item_free(t);
        return indexed;
    }
    rc = task_dispatch(b, t, e->dirfd, e->name, old, indexed, indexed && backup_unchanged(old, e->st, NULL), err);
    free(old);
    return rc;
}

int backup_reserved_error(const struct backup_opts *o, const char *root, const char *name, haul_error *err)
{
    return err_set(err, HAUL_EUSAGE,
                   "%s%s%s: the name " META_INTERNAL_DIR " at the top of a backup is reserved for haul's own objects"
                   " (s3://%s/%s" META_INTERNAL_DIR "/); not stored: rename it or back it up under another prefix",
                   root, name ? "/" : "", name ? name : "", o->bucket, o->prefix);
}

/* The top-level name ".haul" would collide with haul's own objects under
 * PREFIX.haul/: refused (an error: the rest goes on, --delete is skipped). */
static bool entry_reserved(struct backup *b, const struct walk_entry *e)
{
    const char *top = NULL;
    char *rel = NULL;
    if (b->o->n_roots == 1 && e->depth == 1)
        top = e->name;
    else if (b->o->n_roots > 1 && e->depth == 0)
        top = rel = rel_path(b, e);
    bool reserved = top && meta_path_is_internal(top);
    if (reserved) {
        haul_error err = {0};
        backup_reserved_error(b->o, b->o->roots[e->root_index], e->depth ? e->name : NULL, &err);
        entry_failed(b, &err);
    }
    free(rel);
    return reserved;
}

/* An entry's failure: fatal when the index failed, else the entry's own. */
static void decide_failed(struct backup *b, int rc, const haul_error *err)
{
    if (rc == -HAUL_EIO && strstr(err->msg, "index "))
        fatal(b, err);
    else if (rc < 0)
        entry_failed(b, err);
}

static enum walk_action on_entry(const struct walk_entry *e, void *ctx)
{
    struct backup *b = ctx;
    if (stopping(b))
        return WALK_STOP;
    count_entry(b, e);
    bool root_marker_impossible = e->depth == 0 && b->o->n_roots == 1 && !b->o->prefix[0];
    if (e->type == WALK_OTHER || root_marker_impossible) {
        if (e->type == WALK_OTHER)
            log_info("%s: skipped (not a file, directory or symlink)", e->path);
        return WALK_CONTINUE;
    }
    if (entry_reserved(b, e))
        return WALK_PRUNE;
    haul_error err = {0};
    decide_failed(b, entry_decide(b, e, &err), &err);
    return stopping(b) ? WALK_STOP : WALK_CONTINUE;
}

/* The directory holding a deferred name, opened below its root (no
 * symlink followed): its fd (fs_parent_close) and *name in it, or -1. */
static int name_parent_open(struct backup *b, const struct index_link_name *nm, const char **name, haul_error *err)
{
    int *root = &b->root_fds[nm->root];
    if (*root < 0 && (*root = open(b->o->roots[nm->root], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return err_errno(err, errno, "%s", b->o->roots[nm->root]);
    const char *walked = nm->path; /* several roots: the path starts with the root's base name */
    if (b->o->n_roots > 1)
        walked = strchr(walked, '/') ? strchr(walked, '/') + 1 : "";
    int fd = fs_parent_open(*root, walked, name, err);
    if (fd < 0)
        err_prefix(err, "%s: ", nm->path);
    return fd;
}

/* One name of a hard-linked inode, decided (backup_links_decide). */
static int link_chosen(const struct backup_link_choice *c, void *ctx, haul_error *unused)
{
    (void)unused;
    struct backup *b = ctx;
    if (stopping(b))
        return 1;
    haul_error err = {0};
    if (c->holder_missing) {
        backup_holder_missing_error(c, &err);
        entry_failed(b, &err);
        return 0;
    }
    struct backup_item *t = calloc(1, sizeof *t);
    int rc = t ? 0 : err_set(&err, HAUL_ENOMEM, "out of memory");
    if (rc == 0) {
        t->fd = -1;
        t->st = c->name->st;
        t->kind = c->holder ? BACKUP_HARDLINK : BACKUP_FILE;
        if (!(t->key = strdup(c->name->key)) || !(t->path = strdup(c->name->path)) ||
            (c->holder && !(t->link = strdup(c->holder))))
            rc = err_set(&err, HAUL_ENOMEM, "out of memory");
    }
    const char *name = NULL;
    int dirfd = -1;
    if (rc == 0 && open_needed(b, t, c->unchanged) && (dirfd = name_parent_open(b, c->name, &name, &err)) < 0)
        rc = -HAUL_EIO;
    if (rc == 0)
        rc = task_dispatch(b, t, dirfd, name, c->old, c->indexed, c->unchanged, &err);
    else
        backup_item_free(t);
    if (dirfd >= 0)
        fs_parent_close(b->root_fds[c->name->root], dirfd);
    decide_failed(b, rc, &err);
    return stopping(b) ? 1 : 0;
}

/* After the walk (and again once the first pass's uploads are stored):
 * the names of hard-linked files, each inode's holder stored (or kept)
 * with the bytes, the others as links to it (backup_links_decide). */
static int links_run(struct backup *b, enum backup_links_pass pass, size_t *postponed, haul_error *err)
{
    if (!(b->root_fds = malloc(b->o->n_roots * sizeof *b->root_fds)))
        return err_set(err, HAUL_ENOMEM, "backup: out of memory");
    for (size_t i = 0; i < b->o->n_roots; i++)
        b->root_fds[i] = -1;
    int rc = backup_links_decide(b->ix, pass, link_chosen, b, postponed, err);
    for (size_t i = 0; i < b->o->n_roots; i++)
        if (b->root_fds[i] >= 0)
            close(b->root_fds[i]);
    free(b->root_fds);
    b->root_fds = NULL;
    /* Stopped midway: the names not decided are unseen, so nothing may
     * go on to --delete (a fatal error is the caller's to report). */
    pthread_mutex_lock(&b->lock);
    bool fatal_set = b->fatal.code != HAUL_OK;
    pthread_mutex_unlock(&b->lock);
    if (rc > 0 && !fatal_set)
        rc = err_set(err, HAUL_ECANCELED, "backup: canceled");
    return rc < 0 ? rc : 0;
}

static void on_walk_error(const struct walk_failure *f, void *ctx)
{
    struct backup *b = ctx;
    haul_error err = {0};
    err_set(&err, HAUL_EIO, "%s", f->msg);
    entry_failed(b, &err);
}

/* ---- uploading, on the worker threads ------------------------------------ */

static void item_record(const struct backup_item *t, const char *etag, const char *storage_class,
                        struct index_entry *e)
{
    memset(e, 0, sizeof *e);
    e->size = S_ISREG(t->st.st_mode) ? (uint64_t)t->st.st_size : 0;
    e->mtime_ns = mtime_ns(&t->st);
    e->mode = t->st.st_mode;
    e->uid = t->st.st_uid;
    e->gid = t->st.st_gid;
    snprintf(e->key, sizeof e->key, "%s", t->key);
    snprintf(e->etag, sizeof e->etag, "%s", etag ? etag : "");
    snprintf(e->storage_class, sizeof e->storage_class, "%s", storage_class ? storage_class : "STANDARD");
    snprintf(e->tree_hash, sizeof e->tree_hash, "%s", t->tree);
    e->nlink = (uint32_t)t->st.st_nlink;
    snprintf(e->link, sizeof e->link, "%s", t->kind == BACKUP_HARDLINK ? t->link : "");
}

static int meta_for(const struct backup_item *t, struct meta_encoded *m, haul_error *err)
{
    struct meta_extra extra = {
        .symlink = t->kind == BACKUP_SYMLINK ? t->link : NULL,
        .hardlink = t->kind == BACKUP_HARDLINK ? t->link : NULL,
        .tree_sha256 = t->tree[0] ? t->tree : NULL,
    };
    return meta_stat_encode(&t->st, &extra, m, err);
}

/* Reads a small file whole, checking it did not change since it was seen. */
static int small_read(struct backup_item *t, char *buf, size_t cap, size_t *len, haul_error *err)
{
    ssize_t n = fd_pread_full(t->fd, buf, cap, 0);
    if (n < 0)
        return err_errno(err, errno, "%s", t->path);
    size_t got = (size_t)n;
    struct stat now;
    if (fstat(t->fd, &now) < 0)
        return err_errno(err, errno, "%s", t->path);
    if (got != (size_t)t->st.st_size || now.st_size != t->st.st_size ||
        now.st_mtim.tv_sec != t->st.st_mtim.tv_sec || now.st_mtim.tv_nsec != t->st.st_mtim.tv_nsec)
        return err_set(err, HAUL_EIO, "%s: changed while being read; not stored (the next run takes it)",
                       t->path);
    *len = got;
    return 0;
}

static int small_upload(struct s3_client *c, const struct backup_opts *o, struct backup_item *t, char *buf,
                        struct index_entry *rec, uint64_t *bytes, haul_error *err)
{
    size_t len = 0;
    const char *body = "";
    int rc = 0;
    if (t->kind == BACKUP_FILE) {
        rc = small_read(t, buf, o->small_threshold, &len, err);
        if (rc == 0 && o->check_sha256 && !t->tree[0])
            meta_treehash_buf(buf, len, t->tree);
        body = buf;
    } else if (t->kind == BACKUP_SYMLINK) {
        body = t->link; /* s3fs's layout: the body is the target */
        len = strlen(t->link);
    }
    struct meta_encoded m;
    if (rc == 0)
        rc = meta_for(t, &m, err);
    if (rc < 0)
        return rc;
    struct s3_put_opts put = {.meta = m.items, .n_meta = m.n};
    struct s3_object_info info = {0};
    rc = s3_object_put(c, o->bucket, t->key, body, len, &put, &info, err);
    if (rc == 0) {
        *bytes = len;
        item_record(t, info.etag, "STANDARD", rec);
    }
    s3_object_info_release(&info);
    return rc;
}

static int large_upload(struct s3_client *c, const struct backup_opts *o, struct backup_item *t,
                        struct index_entry *rec, uint64_t *bytes, haul_error *err)
{
    struct meta_encoded m;
    if (o->check_sha256 && !t->tree[0] && tree_hash_fd(t->fd, t->tree, err) < 0)
        return -HAUL_EIO;
    int rc = meta_for(t, &m, err);
    if (rc < 0)
        return rc;
    struct s3_put_opts put = {.meta = m.items, .n_meta = m.n, .storage_class = o->storage_class_large};
    struct xfer_opts xo = o->xfer;
    xo.put = &put;
    xo.cancel = o->cancel;
    xo.state_dir = o->state_dir;
    xo.source_id = t->path;
    struct xfer_result res;
    rc = xfer_upload_fd(c, t->fd, o->bucket, t->key, &xo, &res, err);
    struct stat now;
    if (rc == 0 && fstat(t->fd, &now) == 0 &&
        (now.st_mtim.tv_sec != t->st.st_mtim.tv_sec || now.st_mtim.tv_nsec != t->st.st_mtim.tv_nsec ||
         now.st_size != t->st.st_size))
        /* Changed after the walk saw it: stored, but not as what was indexed.
         * Leave it out of the index so the next run takes it again. */
        return err_set(err, HAUL_EIO, "%s: changed while being read; the next run takes it", t->path);
    if (rc == 0) {
        *bytes = res.bytes;
        item_record(t, res.etag, o->storage_class_large, rec);
    }
    return rc;
}

int backup_item_upload(struct s3_client *c, const struct backup_opts *o, struct backup_item *it, char *buf,
                       struct index_entry *rec, uint64_t *bytes, haul_error *err)
{
    *bytes = 0;
    if (it->kind == BACKUP_FILE && (uint64_t)it->st.st_size > o->small_threshold)
        return large_upload(c, o, it, rec, bytes, err);
    if (!buf)
        return err_set(err, HAUL_ENOMEM, "out of memory");
    return small_upload(c, o, it, buf, rec, bytes, err);
}

struct worker_ctx {
    struct backup *b;
    bool large;
};

static void *worker_main(void *arg)
{
    struct worker_ctx *w = arg;
    struct backup *b = w->b;
    char *buf = w->large ? NULL : malloc(b->o->small_threshold ? b->o->small_threshold : 1);
    struct backup_item *t;
    while ((t = queue_pop(w->large ? b->large : b->small))) {
        if (!stopping(b)) {
            haul_error err = {0};
            struct index_entry rec;
            uint64_t bytes = 0;
            int rc = backup_item_upload(b->client, b->o, t, buf, &rec, &bytes, &err);
            if (rc == 0) {
                atomic_fetch_add(&b->stats->bytes_uploaded, bytes);
                rc = index_put(b->ix, &rec, &err);
            }
            if (rc == 0) {
                atomic_fetch_add(&b->stats->uploaded, 1);
                if (t->kind == BACKUP_HARDLINK)
                    atomic_fetch_add(&b->stats->hardlinks, 1);
                report(b, "upload", t->key);
            } else if (strstr(err.msg, "index ")) {
                fatal(b, &err);
            } else {
                entry_failed(b, &err);
            }
        }
        backup_item_free(t);
    }
    free(buf);
    return NULL;
}

/* ---- deleting what is gone ------------------------------------------------ */

struct delete_ctx {
    const struct backup_opts *o;
    struct index *ix;
    haul_error *err;
};

/* The index forgets a key only once its object is surely gone, so a
 * --delete that failed is taken up by the next run. */
static int delete_done(const char *key, bool deleted, void *arg)
{
    const struct delete_ctx *x = arg;
    if (!deleted)
        return 0;
    if (x->o->line)
        x->o->line("delete", key, x->o->line_ctx);
    return index_delete(x->ix, key, x->err);
}

static int delete_one(const char *key, void *ctx)
{
    return s3_deleter_add(ctx, key);
}

static int count_one(const char *key, void *ctx)
{
    (void)key;
    ++*(uint64_t *)ctx;
    return 0;
}

static int list_one(const char *key, void *ctx)
{
    const struct backup_opts *o = ctx;
    if (o->line)
        o->line("delete (dry run)", key, o->line_ctx);
    return 0;
}

/* ---- the identity of the roots (fs/srcid) ---- */

/* Root i's identity as it is now (ino 0 when it cannot be taken). */
static void root_probe(const struct backup_opts *o, size_t i, struct srcid *id)
{
    haul_error e = {0};
    int fd = open(o->roots[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || srcid_probe(fd, id, &e) < 0) {
        memset(id, 0, sizeof *id);
        if (fd < 0)
            err_errno(&e, errno, "open");
        log_warn("%s: %s (its identity is unknown: --delete refuses to run)", o->roots[i], e.msg);
    }
    if (fd >= 0)
        close(fd);
}

void backup_src_probe(const struct backup_opts *o, struct srcid *ids)
{
    for (size_t i = 0; i < o->n_roots; i++)
        root_probe(o, i, &ids[i]);
}

/* Root i's record: 1 and *then filled, 0 when there is none, < 0 on error
 * (index, a damaged record).  name: the index property ("srcid " + the
 * root's absolute path). */
static int root_record(const struct backup_opts *o, struct index *ix, size_t i, char *name, size_t cap,
                       struct srcid *then, haul_error *err)
{
    char abs[PATH_MAX], text[SRCID_TEXT_MAX + 1];
    if (!realpath(o->roots[i], abs))
        return err_errno(err, errno, "%s", o->roots[i]);
    snprintf(name, cap, "srcid %s", abs);
    int rc = index_prop_get(ix, name, text, sizeof text, err);
    if (rc > 0 && srcid_parse(text, then) < 0)
        rc = err_set(err, HAUL_EINTEGRITY, "%s: the index's record of its identity is damaged", o->roots[i]);
    return rc;
}

/* May --delete go on?  Every root as it is now against the start of the
 * run and the record, as fs/srcid decides. */
static int src_guard(const struct backup_opts *o, struct index *ix, const struct srcid *ids, haul_error *err)
{
    struct srcid_policy p = {.allow_empty = o->allow_empty_src, .allow_new = o->allow_new_src};
    for (size_t i = 0; i < o->n_roots; i++) {
        struct srcid now, then;
        char name[PATH_MAX + 8], why[128];
        root_probe(o, i, &now);
        if (now.ino && (!ids[i].ino || ids[i].nonempty != now.nonempty || !srcid_same_fs(&now, &ids[i], why, sizeof why)))
            return err_set(err, HAUL_EINTEGRITY, "SRC %s changed during the run (mounted or unmounted?): nothing "
                           "deleted (run again)", o->roots[i]);
        haul_error rerr = {0};
        int have = now.ino ? root_record(o, ix, i, name, sizeof name, &then, &rerr) : 0;
        if (have < 0 && !o->allow_new_src)
            return err_set(err, HAUL_EINTEGRITY, "%s: nothing deleted (--allow-new-src to take SRC as it is now)",
                           rerr.msg);
        int rc = srcid_delete_check(o->roots[i], &now, have > 0 ? &then : NULL, &p, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int backup_src_record(const struct backup_opts *o, struct index *ix, const struct srcid *ids, haul_error *err)
{
    for (size_t i = 0; i < o->n_roots; i++) {
        struct srcid then;
        char name[PATH_MAX + 8], text[SRCID_TEXT_MAX + 1], why[128];
        haul_error rerr = {0};
        int have = ids[i].ino ? root_record(o, ix, i, name, sizeof name, &then, &rerr) : -1;
        if (have < 0 && !(ids[i].ino && o->allow_new_src && rerr.code == HAUL_EINTEGRITY)) {
            if (ids[i].ino)
                log_warn("%s", rerr.msg);
            continue;
        }
        if (!srcid_recordable(&ids[i], have > 0 ? &then : NULL, o->allow_new_src)) {
            if (ids[i].nonempty && have > 0 && !srcid_same_fs(&ids[i], &then, why, sizeof why))
                log_warn("SRC %s is not the filesystem recorded at the last run (%s): not recorded; --delete "
                         "refuses to run without --allow-new-src", o->roots[i], why);
            continue;
        }
        srcid_format(&ids[i], text, sizeof text);
        int rc = index_prop_set(ix, name, text, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

#define MARKER_KEY META_INTERNAL_DIR "/index-id" /* under the prefix */
#define MARKER_META "haul-index-id"               /* x-amz-meta-haul-index-id: the id */
#define HOLD_PROP "delete-hold" /* why --delete waits (backup_index_bind); "" or absent: it does not */
#define HOLD_REBUILT "rebuilt"  /* the index was rebuilt from the bucket: until a run whose marker matches */
#define HOLD_SHARED "shared"    /* the marker named another index: until a run with --rescan-remote */

/* The objects a rebuilt index adopted from the listing may be another
 * index's: --delete does not remove them unless the user said the bucket
 * is the truth (--rescan-remote). 1: skipped (warned), 0: go on. */
static int delete_held(const struct backup_opts *o, struct index *ix, haul_error *err)
{
    char hold[32] = "";
    int rc = index_prop_get(ix, HOLD_PROP, hold, sizeof hold, err);
    if (rc <= 0 || !hold[0] || o->rescan_remote)
        return rc < 0 ? rc : 0;
    if (strcmp(hold, HOLD_SHARED) == 0)
        log_warn("s3://%s/%s is also backed up by another index (its marker %s" MARKER_KEY " named another id): "
                 "--delete skipped; use one index per prefix, or --rescan-remote --delete to take the prefix over",
                 o->bucket, o->prefix, o->prefix);
    else
        log_warn("the index of s3://%s/%s was rebuilt from the bucket: --delete skipped; run again to delete",
                 o->bucket, o->prefix);
    return 1;
}

int backup_delete_gone(struct s3_client *c, const struct backup_opts *o, struct index *ix,
                       const struct srcid *ids, struct backup_stats *stats, haul_error *err)
{
    int held = delete_held(o, ix, err);
    if (held)
        return held < 0 ? held : 0;
    if (atomic_load(&stats->errors)) {
        log_warn("--delete skipped: %llu entries could not be read, so what is gone is not certain",
                 (unsigned long long)atomic_load(&stats->errors));
        return 0;
    }
    uint64_t gone = 0;
    int rc = index_unseen_each(ix, count_one, &gone, err);
    if (rc < 0 || gone == 0)
        return rc;
    if ((rc = src_guard(o, ix, ids, err)) < 0)
        return rc;
    if (o->max_delete_set && gone > o->max_delete)
        return err_set(err, HAUL_EINTEGRITY, "%llu objects would be deleted, more than --max-delete %llu: nothing "
                       "deleted", (unsigned long long)gone, (unsigned long long)o->max_delete);
    if (o->dry_run)
        return index_unseen_each(ix, list_one, (void *)o, err);
    struct delete_ctx x = {.o = o, .ix = ix, .err = err};
    struct s3_deleter d = {.c = c, .bucket = o->bucket, .done = delete_done, .ctx = &x, .err = err};
    rc = index_unseen_each(ix, delete_one, &d, err);
    if (rc == 0)
        rc = s3_deleter_flush(&d);
    s3_deleter_release(&d);
    atomic_fetch_add(&stats->deleted, d.deleted);
    return rc;
}

/* ---- rebuilding the index from the bucket -------------------------------- */

struct rescan {
    struct backup *b;
    struct queue *keys;
    haul_error *err;
};

/* One object's HEAD into the index, with the metadata backup wrote. */
static void rescan_one(struct backup *b, const char *key)
{
    haul_error err = {0};
    struct s3_object_info info = {0};
    struct meta_posix m;
    size_t n = strlen(key);
    struct index_entry *e = calloc(1, sizeof *e);
    int rc = e ? s3_object_head(b->client, b->o->bucket, key, &info, &err) : err_set(&err, HAUL_ENOMEM, "out of memory");
    if (rc == 0)
        rc = meta_stat_decode(info.meta, info.n_meta, n && key[n - 1] == '/', &m, &err);
    if (rc == 0 && (m.has & (META_HAS_MODE | META_HAS_MTIME)) == (META_HAS_MODE | META_HAS_MTIME)) {
        *e = (struct index_entry){
            .size = S_ISREG(m.mode) ? info.size : 0,
            .mtime_ns = (int64_t)m.mtime.tv_sec * 1000000000LL + m.mtime.tv_nsec,
            .mode = m.mode, .uid = m.uid, .gid = m.gid,
        };
        if (m.has & META_HAS_HARDLINK) {
            e->size = 0; /* unknown: the next run re-stores the link, which is cheap */
            snprintf(e->link, sizeof e->link, "%s", m.hardlink);
        }
        snprintf(e->key, sizeof e->key, "%s", key);
        snprintf(e->etag, sizeof e->etag, "%s", info.etag);
        snprintf(e->storage_class, sizeof e->storage_class, "%s", info.storage_class);
        snprintf(e->tree_hash, sizeof e->tree_hash, "%s", m.tree_sha256);
        rc = index_put(b->ix, e, &err);
        if (rc == 0)
            atomic_fetch_add(&b->stats->rescanned, 1);
    }
    free(e);
    s3_object_info_release(&info);
    if (rc < 0 && err.code != HAUL_ENOTFOUND) {
        /* Listed, so not gone: an entry it had stays (its stamp), else the drop would forget the object. */
        haul_error terr = {0};
        if (index_touch(b->ix, key, &terr) < 0)
            log_warn("rescan: %s", terr.msg);
        log_warn("rescan: %s (its index entry, if any, is kept as it was)", err.msg);
    } else if (rc < 0) {
        log_warn("rescan: %s (the next backup uploads it again)", err.msg);
    }
}

static void *rescan_main(void *arg)
{
    struct rescan *r = arg;
    char *key;
    while ((key = queue_pop(r->keys))) {
        if (!stopping(r->b))
            rescan_one(r->b, key);
        free(key);
    }
    return NULL;
}

static int rescan_listed(const struct s3_list_entry *e, void *ctx)
{
    struct rescan *r = ctx;
    if (e->is_prefix || memchr(e->key, '\0', e->key_len) || meta_key_is_internal(r->b->o->prefix, e->key, e->key_len))
        return 0;
    char *key = strdup(e->key);
    if (!key)
        return err_set(r->err, HAUL_ENOMEM, "out of memory");
    if (queue_push(r->keys, key) < 0)
        free(key);
    return stopping(r->b) ? -HAUL_ECANCELED : 0;
}

/* The index rebuilt from the listing: entries for the objects backup
 * wrote (their metadata by HEAD), and none for what the listing lacks. */
static int rescan_remote(struct backup *b, haul_error *err)
{
    int rc = index_run_begin(b->ix, err); /* a run of its own: what is listed gets its stamp */
    if (rc < 0)
        return rc;
    struct rescan r = {b, queue_new(1024), err};
    int n = b->o->small_workers > 0 ? b->o->small_workers : 16, started = 0;
    pthread_t *threads = calloc((size_t)n, sizeof *threads);
    while (r.keys && threads && started < n && pthread_create(&threads[started], NULL, rescan_main, &r) == 0)
        started++;
    rc = started ? s3_objects_list(b->client, b->o->bucket, b->o->prefix, NULL, rescan_listed, &r, err)
                 : err_set(err, HAUL_ENOMEM, "rescan: cannot start threads");
    if (r.keys)
        queue_close(r.keys);
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    queue_free(r.keys);
    if (rc == 0 && stopping(b))
        rc = err_set(err, HAUL_ECANCELED, "rescan: canceled");
    int64_t dropped = rc == 0 ? index_unseen_drop(b->ix, err) : 0; /* only after a complete listing */
    if (dropped < 0)
        return (int)dropped;
    if (dropped > 0)
        log_info("rescan: %lld index entries had no object in s3://%s/%s: forgotten", (long long)dropped,
                 b->o->bucket, b->o->prefix);
    return rc;
}

/* ---- binding the index to its destination ---------------------------------- */


static int marker_write(struct s3_client *c, const struct backup_opts *o, const char *key, struct index *ix,
                        haul_error *err)
{
    uint8_t raw[16];
    char id[33];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        return err_errno(err, errno, "getrandom");
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
    struct s3_meta meta = {.name = MARKER_META, .value = id};
    struct s3_put_opts put = {.meta = &meta, .n_meta = 1, .content_type = "text/plain"};
    struct s3_object_info info = {0};
    char body[40];
    int n = snprintf(body, sizeof body, "%s\n", id);
    int rc = s3_object_put(c, o->bucket, key, body, (size_t)n, &put, &info, err);
    s3_object_info_release(&info);
    return rc < 0 ? rc : index_marker_set(ix, id, err);
}

/* What --delete waits for after this binding (HOLD_PROP): the user's
 * --rescan-remote lifts any hold; a marker naming another index holds until
 * then; a stale index of ours holds until a run whose marker matches. */
static int hold_update(const struct backup_opts *o, struct index *ix, bool bound, bool other, bool had,
                       haul_error *err)
{
    char hold[32] = "";
    int rc = index_prop_get(ix, HOLD_PROP, hold, sizeof hold, err);
    if (rc < 0)
        return rc;
    const char *want = hold;
    if (o->rescan_remote)
        want = "";
    else if (other)
        want = HOLD_SHARED;
    else if (!bound && had && strcmp(hold, HOLD_SHARED) != 0)
        want = HOLD_REBUILT;
    else if (bound && strcmp(hold, HOLD_REBUILT) == 0)
        want = "";
    return strcmp(want, hold) == 0 ? 0 : index_prop_set(ix, HOLD_PROP, want, err);
}

int backup_index_bind(struct s3_client *c, const struct backup_opts *o, struct index *ix,
                      struct backup_stats *stats, haul_error *err)
{
    char key[META_KEY_MAX + 1], mine[64] = "";
    if (snprintf(key, sizeof key, "%s%s", o->prefix, MARKER_KEY) >= (int)sizeof key)
        return err_set(err, HAUL_EUSAGE, "s3://%s/%s: prefix too long", o->bucket, o->prefix);
    int have = index_marker_get(ix, mine, sizeof mine, err);
    if (have < 0)
        return have;
    struct s3_object_info info = {0};
    haul_error herr = {0};
    int rc = s3_object_head(c, o->bucket, key, &info, &herr);
    if (rc < 0 && herr.code != HAUL_ENOTFOUND) {
        s3_object_info_release(&info);
        /* A HEAD's error has no body: a listing names the cause (NoSuchBucket,
         * SignatureDoesNotMatch, InvalidAccessKeyId) when the bucket is at fault. */
        haul_error berr = {0};
        if (s3_bucket_check(c, o->bucket, o->prefix, &berr) < 0)
            return err_copy(err, &berr);
        return err_copy(err, &herr);
    }
    const char *theirs = rc == 0 ? s3_object_info_meta(&info, MARKER_META) : NULL;
    bool bound = have && theirs && strcmp(theirs, mine) == 0, other = theirs && !bound, had = have || index_count(ix) > 0;
    if (!bound && had)
        log_warn("the index of s3://%s/%s is stale (s3://%s/%s %s): rescanning the bucket", o->bucket, o->prefix,
                 o->bucket, key,
                 theirs ? "names another index" : have ? "is missing" : "is missing, the index predates markers");
    s3_object_info_release(&info);
    if ((rc = hold_update(o, ix, bound, other, had, err)) < 0)
        return rc;
    if (!bound || o->rescan_remote) {
        struct backup b = {.client = c, .o = o, .stats = stats, .ix = ix};
        rc = rescan_remote(&b, err);
    }
    if (rc == 0 && !bound && !o->dry_run)
        rc = marker_write(c, o, key, ix, err);
    return rc;
}

/* ---- the run ------------------------------------------------------------------ */

static int workers_start(struct backup *b, pthread_t *threads, struct worker_ctx *ctx, int n, bool large)
{
    int started = 0;
    *ctx = (struct worker_ctx){b, large};
    while (started < n && pthread_create(&threads[started], NULL, worker_main, ctx) == 0)
        started++;
    return started;
}

/* What the main thread feeds the workers in one phase of the pipeline. */
typedef int (*phase_fn)(struct backup *b, size_t *postponed, haul_error *err);

/* One phase: workers started on fresh queues, fed by fn, drained. */
static int phase_run(struct backup *b, phase_fn fn, size_t *postponed, haul_error *err)
{
    const struct backup_opts *o = b->o;
    int n_small = o->small_workers > 0 ? o->small_workers : 16;
    int n_large = o->large_workers > 0 ? o->large_workers : 1;
    pthread_t *threads = calloc((size_t)(n_small + n_large), sizeof *threads);
    struct worker_ctx small_ctx, large_ctx;
    b->small = queue_new(SMALL_QUEUE);
    b->large = queue_new(LARGE_QUEUE);
    int s = 0, l = 0, rc = 0;
    if (!threads || !b->small || !b->large)
        rc = err_set(err, HAUL_ENOMEM, "backup: out of memory");
    if (rc == 0) {
        s = workers_start(b, threads, &small_ctx, n_small, false);
        l = workers_start(b, threads + s, &large_ctx, n_large, true);
        rc = s && l ? fn(b, postponed, err) : err_set(err, HAUL_ENOMEM, "backup: cannot start worker threads");
        queue_close(b->small);
        queue_close(b->large);
    }
    for (int i = 0; i < s + l; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    queue_free(b->small);
    queue_free(b->large);
    b->small = b->large = NULL;
    return rc;
}

/* The first phase: the walk, then the hard links' first pass. */
static int walk_phase(struct backup *b, size_t *postponed, haul_error *err)
{
    const struct backup_opts *o = b->o;
    struct walk_opts wo = {
        .threads = o->walk_threads > 0 ? (unsigned)o->walk_threads : 4,
        .one_filesystem = o->one_filesystem,
        .filter = o->filter,
        .entry = on_entry,
        .error = on_walk_error,
        .ctx = b,
        .cancel = o->cancel,
    };
    struct walk_stats ws;
    int rc = walk_run(o->roots, o->n_roots, &wo, &ws, err);
    if (rc == 0) /* stopped: ends canceled, whatever is left undecided */
        rc = links_run(b, o->dry_run ? BACKUP_LINKS_ALL : BACKUP_LINKS_FIRST, postponed, err);
    return rc;
}

/* The second phase: the links whose holder the first one stored. */
static int links_after_phase(struct backup *b, size_t *postponed, haul_error *err)
{
    return links_run(b, BACKUP_LINKS_AFTER, postponed, err);
}

static int pipeline_run(struct backup *b, haul_error *err)
{
    size_t postponed = 0;
    int rc = phase_run(b, walk_phase, &postponed, err);
    if (rc == 0 && postponed)
        rc = phase_run(b, links_after_phase, NULL, err);
    /* Interrupted after the walk: items the workers dropped keep their old
     * entries, unseen by this run, which --delete must not take for gone. */
    if (rc == 0 && b->o->cancel && atomic_load(b->o->cancel))
        rc = err_set(err, HAUL_ECANCELED, "backup: canceled");
    return rc;
}

int backup_index_open(struct s3_client *c, const struct backup_opts *o, struct index **ix, int *lock,
                      haul_error *err)
{
    char path[4096], dest[1200];
    *ix = NULL;
    *lock = -1;
    int rc = index_path_for(o->state_dir, s3_client_config(c)->endpoint, o->bucket, o->prefix, path, sizeof path,
                            err);
    size_t n = strlen(o->prefix);
    snprintf(dest, sizeof dest, "s3://%s/%.*s", o->bucket, (int)(n && o->prefix[n - 1] == '/' ? n - 1 : n),
             o->prefix);
    if (rc == 0 && (*lock = index_lock_take(path, dest, err)) < 0)
        rc = -HAUL_EIO;
    if (rc == 0 && !(*ix = index_open(path, err)))
        rc = -HAUL_EIO;
    if (rc < 0) {
        index_lock_release(*lock);
        *lock = -1;
    }
    return rc;
}

int backup_run(struct s3_client *c, const struct backup_opts *o, struct backup_stats *stats,
               haul_error *err)
{
    memset(stats, 0, sizeof *stats);
    struct backup b = {.client = c, .o = o, .stats = stats};
    pthread_mutex_init(&b.lock, NULL);
    int lock = -1;
    int rc = backup_index_open(c, o, &b.ix, &lock, err);
    struct srcid *ids = calloc(o->n_roots ? o->n_roots : 1, sizeof *ids);
    if (rc == 0 && !ids)
        rc = err_set(err, HAUL_ENOMEM, "backup: out of memory");
    if (rc == 0)
        backup_src_probe(o, ids);
    if (rc == 0)
        rc = backup_index_bind(c, o, b.ix, stats, err);
    if (rc == 0)
        rc = index_run_begin(b.ix, err);
    if (rc == 0)
        rc = pipeline_run(&b, err);
    if (b.fatal.code != HAUL_OK) { /* it, not the walk's "stopped by a callback" */
        err_clear(err);
        rc = err_copy(err, &b.fatal);
    }
    if ((rc == 0 || rc == -HAUL_ECANCELED) && o->cancel && atomic_load(o->cancel)) {
        err_clear(err); /* not the walk's "canceled after N entries" */
        rc = err_set(err, HAUL_ECANCELED, "interrupted; run the same command again to go on");
    }
    if (rc == 0 && o->delete_missing)
        rc = backup_delete_gone(c, o, b.ix, ids, stats, err);
    if ((rc == 0 || rc == -HAUL_EINTEGRITY) && !o->dry_run && b.ix) {
        haul_error rerr = {0};
        if (backup_src_record(o, b.ix, ids, &rerr) < 0)
            rc = rc ? rc : err_set(err, rerr.code, "%s", rerr.msg);
    }
    free(ids);
    if (b.ix) {
        int crc = index_close(b.ix, err);
        rc = rc ? rc : crc;
    }
    index_lock_release(lock);
    pthread_mutex_destroy(&b.lock);
    uint64_t failed = atomic_load(&stats->errors);
    if (rc == 0 && failed)
        rc = err_set(err, HAUL_EIO, "%llu entr%s could not be backed up (see the messages above)",
                     (unsigned long long)failed, failed == 1 ? "y" : "ies");
    return rc;
}

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
#include <sys/stat.h>
#include <unistd.h>

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

/* Opens the file the walker just saw, relative to its directory, never
 * following a symlink swapped in since. */
static int file_open(const struct walk_entry *e, haul_error *err)
{
    int fd = openat(e->dirfd, e->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        err_errno(err, errno, "%s", e->path);
    return fd;
}

/* Hard links: a later path of an inode becomes a link task.  Only the
 * index is consulted: no file is opened. */
static int task_link_check(struct backup *b, struct backup_item *t, const struct walk_entry *e, haul_error *err)
{
    if (e->st->st_nlink <= 1)
        return 0;
    char first[META_PATH_MAX];
    int rc = index_link_first(b->ix, (uint64_t)e->st->st_dev, (uint64_t)e->st->st_ino, t->path,
                              first, sizeof first, err);
    if (rc <= 0)
        return rc;
    t->kind = BACKUP_HARDLINK;
    t->link = strdup(first);
    return t->link ? 0 : err_set(err, HAUL_ENOMEM, "out of memory");
}

/* Opens a file to upload (and with check_sha256 hashes it, which may turn
 * out to leave it unchanged after all). */
static int task_open(struct backup *b, struct backup_item *t, const struct walk_entry *e,
                     const struct index_entry *old, bool indexed, bool *unchanged, haul_error *err)
{
    if ((t->fd = file_open(e, err)) < 0)
        return -HAUL_EIO;
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

/* Decides one entry: unchanged (stamp it), or a task for a worker. */
static int entry_decide(struct backup *b, const struct walk_entry *e, haul_error *err)
{
    struct backup_item *t = NULL;
    int rc = task_make(b, e, &t, err);
    if (rc < 0)
        return rc;
    struct index_entry old;
    int indexed = index_get(b->ix, t->key, &old, err);
    if (indexed < 0) {
        backup_item_free(t);
        return indexed;
    }
    bool unchanged = indexed && backup_same_as_indexed(&old, e->st);
    if (t->kind == BACKUP_FILE)
        rc = task_link_check(b, t, e, err);
    /* An unchanged file is not even opened (an open is a metadata-server
     * round trip on Lustre, GPFS or NFS), unless its content is compared. */
    bool open_needed = t->kind == BACKUP_FILE && (!unchanged || b->o->check_sha256);
    if (rc == 0 && open_needed && (!b->o->dry_run || b->o->check_sha256))
        rc = task_open(b, t, e, &old, indexed, &unchanged, err);
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
    haul_error err = {0};
    int rc = entry_decide(b, e, &err);
    if (rc == -HAUL_EIO && strstr(err.msg, "index "))
        fatal(b, &err);
    else if (rc < 0)
        entry_failed(b, &err);
    return stopping(b) ? WALK_STOP : WALK_CONTINUE;
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

int backup_delete_gone(struct s3_client *c, const struct backup_opts *o, struct index *ix,
                       const struct srcid *ids, struct backup_stats *stats, haul_error *err)
{
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
    int rc = s3_object_head(b->client, b->o->bucket, key, &info, &err);
    if (rc == 0)
        rc = meta_stat_decode(info.meta, info.n_meta, n && key[n - 1] == '/', &m, &err);
    if (rc == 0 && (m.has & (META_HAS_MODE | META_HAS_MTIME)) == (META_HAS_MODE | META_HAS_MTIME)) {
        struct index_entry e = {
            .size = S_ISREG(m.mode) ? info.size : 0,
            .mtime_ns = (int64_t)m.mtime.tv_sec * 1000000000LL + m.mtime.tv_nsec,
            .mode = m.mode, .uid = m.uid, .gid = m.gid,
        };
        if (m.has & META_HAS_HARDLINK)
            e.size = 0; /* unknown: the next run re-stores the link, which is cheap */
        snprintf(e.key, sizeof e.key, "%s", key);
        snprintf(e.etag, sizeof e.etag, "%s", info.etag);
        snprintf(e.storage_class, sizeof e.storage_class, "%s", info.storage_class);
        snprintf(e.tree_hash, sizeof e.tree_hash, "%s", m.tree_sha256);
        rc = index_put(b->ix, &e, &err);
        if (rc == 0)
            atomic_fetch_add(&b->stats->rescanned, 1);
    }
    s3_object_info_release(&info);
    if (rc < 0)
        log_warn("rescan: %s (the next backup uploads it again)", err.msg);
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
    if (e->is_prefix || memchr(e->key, '\0', e->key_len))
        return 0;
    char *key = strdup(e->key);
    if (!key)
        return err_set(r->err, HAUL_ENOMEM, "out of memory");
    if (queue_push(r->keys, key) < 0)
        free(key);
    return stopping(r->b) ? -HAUL_ECANCELED : 0;
}

static int rescan_remote(struct backup *b, haul_error *err)
{
    struct rescan r = {b, queue_new(1024), err};
    int n = b->o->small_workers > 0 ? b->o->small_workers : 16, started = 0;
    pthread_t *threads = calloc((size_t)n, sizeof *threads);
    while (r.keys && threads && started < n && pthread_create(&threads[started], NULL, rescan_main, &r) == 0)
        started++;
    int rc = started ? s3_objects_list(b->client, b->o->bucket, b->o->prefix, NULL, rescan_listed, &r, err)
                     : err_set(err, HAUL_ENOMEM, "rescan: cannot start threads");
    if (r.keys)
        queue_close(r.keys);
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    queue_free(r.keys);
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

static int pipeline_run(struct backup *b, haul_error *err)
{
    const struct backup_opts *o = b->o;
    int n_small = o->small_workers > 0 ? o->small_workers : 16;
    int n_large = o->large_workers > 0 ? o->large_workers : 1;
    pthread_t *threads = calloc((size_t)(n_small + n_large), sizeof *threads);
    struct worker_ctx small_ctx, large_ctx;
    if (!threads)
        return err_set(err, HAUL_ENOMEM, "backup: out of memory");
    int s = workers_start(b, threads, &small_ctx, n_small, false);
    int l = workers_start(b, threads + s, &large_ctx, n_large, true);
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
    int rc = s && l ? walk_run(o->roots, o->n_roots, &wo, &ws, err)
                    : err_set(err, HAUL_ENOMEM, "backup: cannot start worker threads");
    queue_close(b->small);
    queue_close(b->large);
    for (int i = 0; i < s + l; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    return rc;
}

int backup_run(struct s3_client *c, const struct backup_opts *o, struct backup_stats *stats,
               haul_error *err)
{
    memset(stats, 0, sizeof *stats);
    struct backup b = {.client = c, .o = o, .stats = stats};
    pthread_mutex_init(&b.lock, NULL);
    char path[4096];
    int rc = index_path_for(o->state_dir, s3_client_config(c)->endpoint, o->bucket, o->prefix, path,
                            sizeof path, err);
    if (rc == 0 && !(b.ix = index_open(path, err)))
        rc = -HAUL_EIO;
    struct srcid *ids = calloc(o->n_roots ? o->n_roots : 1, sizeof *ids);
    if (rc == 0 && !ids)
        rc = err_set(err, HAUL_ENOMEM, "backup: out of memory");
    if (rc == 0)
        backup_src_probe(o, ids);
    if (rc == 0 && o->rescan_remote)
        rc = rescan_remote(&b, err);
    if (rc == 0)
        rc = index_run_begin(b.ix, err);
    b.small = queue_new(SMALL_QUEUE);
    b.large = queue_new(LARGE_QUEUE);
    if (rc == 0 && (!b.small || !b.large))
        rc = err_set(err, HAUL_ENOMEM, "backup: out of memory");
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
    queue_free(b.small);
    queue_free(b.large);
    pthread_mutex_destroy(&b.lock);
    uint64_t failed = atomic_load(&stats->errors);
    if (rc == 0 && failed)
        rc = err_set(err, HAUL_EIO, "%llu entr%s could not be backed up (see the messages above)",
                     (unsigned long long)failed, failed == 1 ? "y" : "ies");
    return rc;
}

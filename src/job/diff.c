/* job/diff: a local tree against a bucket prefix (see diff.h). */
#include "job/diff.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs.h"
#include "index/index.h"
#include "meta/meta.h"
#include "util/err.h"
#include "util/log.h"
#include "util/path.h"
#include "util/queue.h"
#include "walk/walk.h"
#include "xfer/digest.h"

#define CHUNK (1 << 20) /* bytes read from a local file at a time */

/* A path present on both sides, waiting for its HEAD. */
struct check {
    char *key;
    char *path;
    int fd;       /* content checks: the open file, else -1 */
    struct stat st;
};

struct diff {
    struct s3_client *client;
    const struct diff_opts *o;
    struct diff_stats *stats;
    struct index *remote; /* the listing: key, size, etag, storage class */
    struct queue *checks;
    haul_error *err;      /* the caller's, for the listing phase */
};

static void line(struct diff *d, const char *kind, const char *key, const char *why)
{
    if (d->o->line)
        d->o->line(kind, key, why, d->o->line_ctx);
}

/* Unless the client stopped (a bucket-level failure, said once by diff_run). */
static void failed(struct diff *d, const haul_error *err)
{
    if (s3_client_failed(d->client, NULL))
        return;
    atomic_fetch_add(&d->stats->errors, 1);
    log_error("%s", err->msg);
}

static void check_free(struct check *k)
{
    if (k->fd >= 0)
        close(k->fd);
    free(k->key);
    free(k->path);
    free(k);
}

/* ---- the bucket side ------------------------------------------------------ */

static int listed(const struct s3_list_entry *e, void *ctx)
{
    struct diff *d = ctx;
    if (e->is_prefix || memchr(e->key, '\0', e->key_len) || e->key_len >= sizeof ((struct index_entry *)0)->key ||
        meta_key_is_internal(d->o->prefix, e->key, e->key_len)) /* haul's own objects */
        return 0;
    struct index_entry ie = {.size = e->size};
    memcpy(ie.key, e->key, e->key_len + 1);
    snprintf(ie.etag, sizeof ie.etag, "%s", e->etag);
    snprintf(ie.storage_class, sizeof ie.storage_class, "%s", e->storage_class);
    return index_put(d->remote, &ie, d->err);
}

/* ---- comparing one entry ---------------------------------------------------- */

/* How an object's bytes were checked (struct diff_stats counts each). */
enum method {
    M_NONE,         /* not a content check (directory, symlink, link object, no --check-sha256) */
    M_MD5,          /* the MD5 ETag of one PUT */
    M_MULTIPART,    /* the multipart ETag, rebuilt at the recorded part size */
    M_CHECKSUM,     /* the server's x-amz-checksum-* */
    M_DOWNLOAD,     /* every byte read back (--download) */
    M_UNVERIFIED,   /* none of these: at most haul's own sha256 metadata */
};

/* What comparing one entry found. */
struct verdict {
    char why[1200];      /* what differs, "" when nothing */
    bool dangling;       /* a link object whose target is missing or a link itself */
    enum method method;
    bool tree_matched;   /* M_UNVERIFIED: haul's sha256 metadata matched the local bytes */
    char unverified[256]; /* M_UNVERIFIED: why the bytes could not be checked */
};

/* Reads k's file once, feeding the tree hash and the digest (either may be NULL). */
static int local_hash(const struct check *k, struct meta_treehash *th, struct xfer_digest *dg, char *buf,
                      haul_error *err)
{
    off_t off = 0;
    ssize_t n;
    while ((n = pread(k->fd, buf, CHUNK, off)) > 0) {
        if (th)
            meta_treehash_update(th, buf, (size_t)n);
        if (dg)
            xfer_digest_update(dg, buf, (size_t)n);
        off += n;
    }
    return n < 0 ? err_errno(err, errno, "%s", k->path) : 0;
}

/* --download: the object's bytes as they arrive against the local file's,
 * read CHUNK at a time into buf (memory stays at one buffer a worker). */
struct readback {
    int fd;
    char *buf;
    size_t have, pos; /* buf holds the local bytes [off, off + have); pos of them compared */
    uint64_t off;
    struct meta_treehash *th; /* fed the local bytes (may be NULL) */
    bool differs;
    int read_errno;
};

static int readback_sink(const void *data, size_t n, void *ctx)
{
    struct readback *r = ctx;
    const char *p = data;
    while (n) {
        if (r->pos == r->have) {
            r->off += r->have;
            r->have = r->pos = 0;
            ssize_t got = pread(r->fd, r->buf, CHUNK, (off_t)r->off);
            if (got <= 0) {
                r->read_errno = got < 0 ? errno : 0;
                r->differs = got == 0; /* the object is longer than the file */
                return -1;
            }
            r->have = (size_t)got;
            if (r->th)
                meta_treehash_update(r->th, r->buf, r->have);
        }
        size_t take = r->have - r->pos < n ? r->have - r->pos : n;
        if (memcmp(p, r->buf + r->pos, take) != 0) {
            r->differs = true;
            return -1;
        }
        r->pos += take;
        p += take;
        n -= take;
    }
    return 0;
}

/* GETs the object (If-Match: the ETag its HEAD showed) through
 * readback_sink; *differs when the bytes are not the file's. */
static int readback(struct diff *d, const struct check *k, const struct s3_object_info *info,
                    struct meta_treehash *th, char *buf, bool *differs, haul_error *err)
{
    struct readback r = {.fd = k->fd, .buf = buf, .th = th};
    haul_error gerr = {0};
    int rc = s3_object_get_match(d->client, d->o->bucket, k->key, info->etag, 0, 0, readback_sink, &r,
                                 NULL, &gerr);
    if (r.read_errno)
        return err_errno(err, r.read_errno, "%s", k->path);
    if (rc < 0 && !r.differs)
        return err_set(err, gerr.code, "%s", gerr.msg);
    if (!r.differs) { /* the whole object matched: is the file longer? */
        char one;
        ssize_t more = r.pos < r.have ? 1 : pread(k->fd, &one, 1, (off_t)(r.off + r.have));
        if (more < 0)
            return err_errno(err, errno, "%s", k->path);
        r.differs = more > 0;
    }
    *differs = r.differs;
    return 0;
}

/* Whether a GET can read the object now (an archived one only once restored). */
static bool readable(const struct s3_object_info *info)
{
    bool ongoing = true;
    time_t expiry;
    if (strcmp(info->storage_class, "GLACIER") != 0 && strcmp(info->storage_class, "DEEP_ARCHIVE") != 0)
        return true;
    return info->restore[0] && s3_restore_header_parse(info->restore, &ongoing, &expiry) == 0 && !ongoing;
}

/* What the server computed of the object's bytes that the local bytes can be
 * checked against without a download: the ETag, else the checksum (one more
 * HEAD, only for those objects).  M_UNVERIFIED with v->unverified saying why
 * neither can. */
static int digest_plan(struct diff *d, const struct check *k, const struct s3_object_info *info,
                       struct xfer_digest_spec *spec, char *algo, size_t algo_cap, enum method *m,
                       struct verdict *v, haul_error *err)
{
    const char *no_etag = xfer_digest_from_etag(info, spec);
    if (!no_etag) {
        *m = spec->part_size ? M_MULTIPART : M_MD5;
        return 0;
    }
    struct s3_object_info again = {0};
    struct s3_checksum sum;
    int rc = s3_object_head_checksum(d->client, d->o->bucket, k->key, &again, &sum, err);
    if (rc == 0 && strcmp(again.etag, info->etag) != 0)
        rc = err_set(err, HAUL_EIO, "s3://%s/%s: replaced while diff ran (ETag %s, then %s)", d->o->bucket,
                     k->key, info->etag, again.etag);
    const char *no_sum = rc == 0 ? xfer_digest_from_checksum(&sum, &again, spec) : NULL;
    s3_object_info_release(&again);
    if (rc < 0)
        return rc;
    *m = no_sum ? M_UNVERIFIED : M_CHECKSUM;
    snprintf(algo, algo_cap, "%s", sum.name);
    if (no_sum)
        snprintf(v->unverified, sizeof v->unverified, "%s; %s", no_etag, no_sum);
    return 0;
}

/* The local bytes against what the server computed of the object's (or
 * with --download against the object's bytes), and against the tree hash
 * haul recorded when there is one.  Fills v->why and v->method. */
static int content_compare(struct diff *d, const struct check *k, const struct meta_posix *m,
                           const struct s3_object_info *info, struct verdict *v, haul_error *err)
{
    bool tree = m->has & META_HAS_TREE;
    char *buf = malloc(CHUNK), hex[SHA256_HEX_LEN + 1] = "", algo[16] = "";
    struct meta_treehash *th = tree ? meta_treehash_new() : NULL;
    struct xfer_digest_spec spec;
    struct xfer_digest *dg = NULL;
    bool differs = false;
    enum method method = M_DOWNLOAD;
    int rc = !buf || (tree && !th) ? err_set(err, HAUL_ENOMEM, "out of memory") : 0;
    if (rc == 0 && d->o->download && readable(info))
        rc = readback(d, k, info, th, buf, &differs, err);
    else if (rc == 0)
        rc = digest_plan(d, k, info, &spec, algo, sizeof algo, &method, v, err);
    if (rc == 0 && method != M_DOWNLOAD && method != M_UNVERIFIED && !(dg = xfer_digest_new(&spec)))
        rc = err_set(err, HAUL_ENOMEM, "out of memory");
    if (rc == 0 && method != M_DOWNLOAD)
        rc = local_hash(k, th, dg, buf, err);
    if (rc == 0 && dg) {
        char got[128];
        int same = xfer_digest_final(dg, got, sizeof got);
        dg = NULL;
        rc = same < 0 ? err_set(err, HAUL_ENOMEM, "out of memory") : 0;
        differs = same == 0;
    }
    if (rc == 0 && tree)
        rc = meta_treehash_final(th, NULL, hex, err);
    if (rc == 0) {
        v->method = method;
        v->tree_matched = tree && strcmp(hex, m->tree_sha256) == 0;
        /* The local bytes differ from haul's record: "sha256" as always.
         * Only the server's view differs: the object was replaced.  (A read-back
         * stops at the first difference: its tree hash is incomplete.) */
        if (tree && !v->tree_matched && !(method == M_DOWNLOAD && differs))
            snprintf(v->why, sizeof v->why, "sha256");
        else if (differs)
            snprintf(v->why, sizeof v->why, "%s%s", method == M_DOWNLOAD ? "bytes"
                                                    : method == M_MD5 ? "md5"
                                                    : method == M_MULTIPART ? "multipart-md5"
                                                                            : "checksum-",
                     method == M_CHECKSUM ? algo : "");
        if (method == M_UNVERIFIED && !tree)
            snprintf(v->unverified + strlen(v->unverified), sizeof v->unverified - strlen(v->unverified),
                     "; no sha256 tree hash recorded (back up with --check-sha256)");
    }
    xfer_digest_free(dg);
    meta_treehash_free(th);
    free(buf);
    return rc;
}

/* A link object (x-amz-meta-haul-hardlink) holds no bytes: its target must
 * be in the bucket, and not be a link object itself. */
static int link_check(struct diff *d, const struct meta_posix *m, struct verdict *v, haul_error *err)
{
    char target[META_KEY_MAX + 1];
    struct index_entry listed_target;
    int rc = meta_key_from_path(d->o->prefix, m->hardlink, strlen(m->hardlink), false, target, NULL, err);
    int present = rc == 0 ? index_get(d->remote, target, &listed_target, err) : rc;
    if (present < 0)
        return present;
    atomic_fetch_add(&d->stats->links, 1);
    if (present == 1 && listed_target.size > 0)
        return 0; /* link objects are empty: this one holds the bytes */
    struct s3_object_info info = {0};
    struct meta_posix tm;
    rc = present == 1 ? s3_object_head(d->client, d->o->bucket, target, &info, err) : -HAUL_ENOTFOUND;
    if (rc == 0)
        rc = meta_stat_decode(info.meta, info.n_meta, false, &tm, err);
    if (rc == -HAUL_ENOTFOUND) {
        rc = 0;
        v->dangling = true;
        snprintf(v->why, sizeof v->why, "hard link to %s, which the bucket lacks", target);
    } else if (rc == 0 && (tm.has & META_HAS_HARDLINK)) {
        v->dangling = true;
        snprintf(v->why, sizeof v->why, "hard link to %s, itself a link object (to %s)", target, tm.hardlink);
    }
    s3_object_info_release(&info);
    return rc;
}

/* Fills v with what differs between k and its object. */
static int difference(struct diff *d, const struct check *k, const struct meta_posix *m,
                      const struct s3_object_info *info, struct verdict *v, haul_error *err)
{
    bool content = d->o->check_sha256 || d->o->download;
    int rc = 0;
    if ((m->mode & S_IFMT) != (k->st.st_mode & S_IFMT)) {
        snprintf(v->why, sizeof v->why, "type");
        return 0;
    }
    if (m->has & META_HAS_HARDLINK)
        rc = link_check(d, m, v, err);
    else if (S_ISREG(k->st.st_mode) && info->size != (uint64_t)k->st.st_size)
        snprintf(v->why, sizeof v->why, "size");
    else if (content && S_ISREG(k->st.st_mode))
        rc = content_compare(d, k, m, info, v, err);
    if (rc < 0 || v->why[0])
        return rc;
    if ((m->has & META_HAS_MTIME) && !S_ISDIR(k->st.st_mode) &&
        (m->mtime.tv_sec != k->st.st_mtim.tv_sec || m->mtime.tv_nsec != k->st.st_mtim.tv_nsec))
        snprintf(v->why, sizeof v->why, "mtime");
    else if ((m->has & META_HAS_MODE) && m->mode != k->st.st_mode)
        snprintf(v->why, sizeof v->why, "mode");
    return 0;
}

static void method_count(struct diff *d, const struct check *k, const struct verdict *v)
{
    struct diff_stats *s = d->stats;
    switch (v->method) {
    case M_NONE: break;
    case M_MD5: atomic_fetch_add(&s->by_md5, 1); break;
    case M_MULTIPART: atomic_fetch_add(&s->by_multipart_md5, 1); break;
    case M_CHECKSUM: atomic_fetch_add(&s->by_checksum, 1); break;
    case M_DOWNLOAD: atomic_fetch_add(&s->by_download, 1); break;
    case M_UNVERIFIED:
        atomic_fetch_add(&s->unverified, 1);
        if (v->tree_matched)
            atomic_fetch_add(&s->sha256_metadata_only, 1);
        line(d, "unverified", k->key, v->unverified);
        break;
    }
}

static void check_run(struct diff *d, struct check *k)
{
    haul_error err = {0};
    struct s3_object_info info = {0};
    struct meta_posix m;
    struct verdict v = {.method = M_NONE};
    size_t kl = strlen(k->key);
    int rc = s3_object_head(d->client, d->o->bucket, k->key, &info, &err);
    if (rc == 0)
        rc = meta_stat_decode(info.meta, info.n_meta, kl && k->key[kl - 1] == '/', &m, &err);
    if (rc == 0)
        rc = difference(d, k, &m, &info, &v, &err);
    s3_object_info_release(&info);
    if (rc < 0) {
        failed(d, &err);
        return;
    }
    method_count(d, k, &v);
    if (v.dangling) {
        atomic_fetch_add(&d->stats->dangling, 1);
        line(d, "dangling-link", k->key, v.why);
    } else if (v.why[0]) {
        atomic_fetch_add(&d->stats->changed, 1);
        line(d, "changed", k->key, v.why);
    } else {
        atomic_fetch_add(&d->stats->same, 1);
    }
}

static void *worker_main(void *arg)
{
    struct diff *d = arg;
    struct check *k;
    while ((k = queue_pop(d->checks))) {
        if (!(d->o->cancel && atomic_load(d->o->cancel)))
            check_run(d, k);
        check_free(k);
    }
    return NULL;
}

/* ---- the local side ---------------------------------------------------------- */

static int entry_queue(struct diff *d, const struct walk_entry *e, const char *key, haul_error *err)
{
    struct check *k = calloc(1, sizeof *k);
    if (!k)
        return err_set(err, HAUL_ENOMEM, "out of memory");
    k->fd = -1;
    k->st = *e->st;
    k->key = strdup(key);
    k->path = strdup(e->path);
    if (!k->key || !k->path) {
        check_free(k);
        return err_set(err, HAUL_ENOMEM, "out of memory");
    }
    /* Not blocking on a FIFO swapped in since the walk saw a file, and only
     * that same file. */
    if ((d->o->check_sha256 || d->o->download) && e->type == WALK_FILE &&
        (k->fd = fs_source_open(e->dirfd, e->name, e->st, err)) < 0) {
        err_prefix(err, "%s: ", e->path);
        check_free(k);
        return -err->code;
    }
    if (queue_push(d->checks, k) < 0)
        check_free(k);
    return 0;
}

static enum walk_action on_entry(const struct walk_entry *e, void *ctx)
{
    struct diff *d = ctx;
    if (d->o->cancel && atomic_load(d->o->cancel))
        return WALK_STOP;
    if (e->type == WALK_OTHER || (e->depth == 0 && !d->o->prefix[0]))
        return WALK_CONTINUE;
    char key[META_KEY_MAX + 1];
    haul_error err = {0};
    struct index_entry remote;
    int rc = meta_key_from_path(d->o->prefix, e->path, e->path_len, e->type == WALK_DIR, key, NULL, &err);
    int present = rc == 0 ? index_get(d->remote, key, &remote, &err) : rc;
    if (present == 1)
        rc = index_touch(d->remote, key, &err);
    if (rc == 0 && present == 0) {
        atomic_fetch_add(&d->stats->only_local, 1);
        line(d, "only-local", key, "");
    } else if (rc == 0 && present == 1) {
        rc = entry_queue(d, e, key, &err);
    }
    if (rc < 0 || present < 0)
        failed(d, &err);
    return WALK_CONTINUE;
}

static void on_walk_error(const struct walk_failure *f, void *ctx)
{
    struct diff *d = ctx;
    haul_error err = {0};
    err_set(&err, HAUL_EIO, "%s", f->msg);
    failed(d, &err);
}

static int only_remote(const char *key, void *ctx)
{
    struct diff *d = ctx;
    atomic_fetch_add(&d->stats->only_remote, 1);
    line(d, "only-remote", key, "");
    return 0;
}

static int compare(struct diff *d, haul_error *err)
{
    int n = d->o->workers > 0 ? d->o->workers : 16;
    pthread_t *threads = calloc((size_t)n, sizeof *threads);
    int started = 0;
    while (threads && started < n && pthread_create(&threads[started], NULL, worker_main, d) == 0)
        started++;
    struct walk_opts wo = {.threads = 4, .filter = d->o->filter, .entry = on_entry,
                           .error = on_walk_error, .ctx = d, .cancel = d->o->cancel};
    const char *roots[1] = {d->o->root};
    int rc = started ? walk_run(roots, 1, &wo, NULL, err)
                     : err_set(err, HAUL_ENOMEM, "diff: cannot start threads");
    queue_close(d->checks);
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    if (rc == 0)
        rc = index_unseen_each(d->remote, only_remote, d, err);
    return rc;
}

/* ---- the backup index against the bucket ---------------------------------------- */

static int index_key(const char *key, void *ctx)
{
    struct diff *d = ctx;
    struct index_entry e;
    int rc = index_get(d->remote, key, &e, d->err);
    if (rc == 0) {
        atomic_fetch_add(&d->stats->index_only, 1);
        line(d, "index-only", key, "index says stored, bucket lacks");
    }
    return rc < 0 ? rc : 0;
}

/* Keys the backup index of this destination records that the listing
 * lacks (objects removed behind haul's back).  Nothing when the state dir
 * holds no index for it.  The index is only read: no run is begun on it, so
 * every entry counts as unseen and index_unseen_each walks them all. */
static int index_compare(struct diff *d, haul_error *err)
{
    char path[4200];
    struct stat st;
    if (index_path_for(d->o->state_dir, s3_client_config(d->client)->endpoint, d->o->bucket, d->o->prefix,
                       path, sizeof path, err) < 0)
        return -HAUL_EIO;
    if (stat(path, &st) < 0)
        return 0;
    struct index *ix = index_open(path, err);
    if (!ix)
        return -HAUL_EIO;
    d->stats->index_checked = true;
    int rc = index_unseen_each(ix, index_key, d, err);
    index_close(ix, NULL);
    return rc;
}

int diff_run(struct s3_client *c, const struct diff_opts *o, struct diff_stats *stats, haul_error *err)
{
    memset(stats, 0, sizeof *stats);
    struct diff d = {.client = c, .o = o, .stats = stats, .err = err};
    char path[4200];
    snprintf(path, sizeof path, "%s/diff-%ld.sqlite", o->state_dir, (long)getpid());
    if (path_mkdirs(o->state_dir, 0700) < 0)
        return err_errno(err, errno, "state directory %s", o->state_dir);
    unlink(path);
    d.remote = index_open(path, err);
    d.checks = queue_new(256);
    int rc = !d.remote ? -HAUL_EIO : !d.checks ? err_set(err, HAUL_ENOMEM, "out of memory") : 0;
    if (rc == 0)
        rc = index_run_begin(d.remote, err);
    if (rc == 0)
        rc = s3_objects_list(c, o->bucket, o->prefix, NULL, listed, &d, err);
    if (rc == 0)
        rc = index_run_begin(d.remote, err); /* listed = run 1; seen locally = run 2 */
    if (rc == 0)
        rc = compare(&d, err);
    if (rc == 0 && !(o->cancel && atomic_load(o->cancel)))
        rc = index_compare(&d, err);
    index_close(d.remote, NULL);
    queue_free(d.checks);
    unlink(path);
    char aux[4300];
    snprintf(aux, sizeof aux, "%s-wal", path);
    unlink(aux);
    snprintf(aux, sizeof aux, "%s-shm", path);
    unlink(aux);
    uint64_t errors = atomic_load(&stats->errors);
    if (rc == 0 && s3_client_failed(c, err))
        rc = -err->code;
    if (rc == 0 && errors)
        rc = err_set(err, HAUL_EIO, "%llu entr%s could not be compared", (unsigned long long)errors,
                     errors == 1 ? "y" : "ies");
    return rc;
}

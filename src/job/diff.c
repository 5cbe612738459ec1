/* job/diff: a local tree against a bucket prefix (see diff.h). */
#include "job/diff.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index/index.h"
#include "meta/meta.h"
#include "util/err.h"
#include "util/log.h"
#include "util/path.h"
#include "util/queue.h"
#include "walk/walk.h"

/* A path present on both sides, waiting for its HEAD. */
struct check {
    char *key;
    char *path;
    int fd;       /* check_sha256: the open file, else -1 */
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

static void failed(struct diff *d, const haul_error *err)
{
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

/* What differs ("" when nothing), or NULL when the comparison failed. */
static const char *difference(struct diff *d, struct check *k, const struct meta_posix *m,
                              uint64_t remote_size, haul_error *err)
{
    if ((m->mode & S_IFMT) != (k->st.st_mode & S_IFMT))
        return "type";
    if (S_ISREG(k->st.st_mode) && remote_size != (uint64_t)k->st.st_size &&
        !(m->has & META_HAS_HARDLINK))
        return "size";
    if (d->o->check_sha256 && S_ISREG(k->st.st_mode) && !(m->has & META_HAS_HARDLINK)) {
        if (!(m->has & META_HAS_TREE))
            return "no tree hash recorded (back up with --check-sha256)";
        struct meta_treehash *th = meta_treehash_new();
        char *buf = malloc(1 << 20), hex[SHA256_HEX_LEN + 1] = "";
        off_t off = 0;
        ssize_t n = 1;
        while (th && buf && (n = pread(k->fd, buf, 1 << 20, off)) > 0) {
            meta_treehash_update(th, buf, (size_t)n);
            off += n;
        }
        int rc = !th || !buf ? err_set(err, HAUL_ENOMEM, "out of memory")
                 : n < 0     ? err_errno(err, errno, "%s", k->path)
                             : meta_treehash_final(th, NULL, hex, err);
        meta_treehash_free(th);
        free(buf);
        if (rc < 0)
            return NULL;
        if (strcmp(hex, m->tree_sha256) != 0)
            return "sha256";
    }
    if ((m->has & META_HAS_MTIME) && !S_ISDIR(k->st.st_mode) &&
        (m->mtime.tv_sec != k->st.st_mtim.tv_sec || m->mtime.tv_nsec != k->st.st_mtim.tv_nsec))
        return "mtime";
    if ((m->has & META_HAS_MODE) && m->mode != k->st.st_mode)
        return "mode";
    return "";
}

static void check_run(struct diff *d, struct check *k)
{
    haul_error err = {0};
    struct s3_object_info info = {0};
    struct meta_posix m;
    size_t kl = strlen(k->key);
    int rc = s3_object_head(d->client, d->o->bucket, k->key, &info, &err);
    if (rc == 0)
        rc = meta_stat_decode(info.meta, info.n_meta, kl && k->key[kl - 1] == '/', &m, &err);
    const char *what = rc == 0 ? difference(d, k, &m, info.size, &err) : NULL;
    s3_object_info_release(&info);
    if (!what) {
        failed(d, &err);
        return;
    }
    if (*what) {
        atomic_fetch_add(&d->stats->changed, 1);
        line(d, "changed", k->key, what);
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
    if (d->o->check_sha256 && e->type == WALK_FILE &&
        (k->fd = openat(e->dirfd, e->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        int rc = err_errno(err, errno, "%s", e->path);
        check_free(k);
        return rc;
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
    index_close(d.remote, NULL);
    queue_free(d.checks);
    unlink(path);
    char aux[4300];
    snprintf(aux, sizeof aux, "%s-wal", path);
    unlink(aux);
    snprintf(aux, sizeof aux, "%s-shm", path);
    unlink(aux);
    uint64_t errors = atomic_load(&stats->errors);
    if (rc == 0 && errors)
        rc = err_set(err, HAUL_EIO, "%llu entr%s could not be compared", (unsigned long long)errors,
                     errors == 1 ? "y" : "ies");
    return rc;
}

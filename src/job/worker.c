/* job/worker: the worker loop of distributed clones and `haul ctl`'s side
 * of control (see worker.h, dclone.h). */
#include "job/worker.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dist/waiter.h"
#include "job/clone.h"
#include "job/dbackup.h"
#include "job/dclone.h"
#include "util/err.h"
#include "util/log.h"
#include "util/wire.h"
#include "walk/filter.h"

struct worker;

/* A large file met by clone_path_do that goes in RANGE units. */
struct split {
    char *path;
    struct stat st;
};

/* A thread's engine for the run it last saw: a clone's, or a backup's
 * (b != NULL, described by bspec). */
struct engine {
    struct dclone_spec spec;
    struct dbackup_spec bspec;
    struct dbackup_engine *b;
    struct strbuf payload;     /* the result payload of the unit being done */
    uint64_t child_base;       /* ids of its children: the unit's id, or fresh when redelivered */
    struct split *splits;      /* large files the unit being done left to RANGE units */
    size_t nsplits, splits_cap;
    struct walk_filter *filter;
    struct clone_opts o;
    struct clone_stats stats;  /* this thread's counters in this run */
    uint64_t reported[DCLONE_COUNTERS]; /* what results already carried */
    struct clone *c;
    bool ready;                /* c usable for spec.run */
    char stale[17];            /* the last run id found to be over */
};

struct wthread {
    struct worker *w;
    unsigned idx;
    pthread_t tid;
    atomic_bool stop;
    struct engine *e;
};

struct worker {
    const struct worker_opts *o;
    char prefix[DIST_PREFIX_MAX + 1];
    char name[DIST_NODE_MAX + 1];
    unsigned delay_ms;               /* HAUL_TEST_UNIT_DELAY_MS */
    unsigned path_delay_ms;          /* HAUL_TEST_PATH_DELAY_MS */
    bool die_before_scan_result;     /* HAUL_TEST_DIE_BEFORE_SCAN_RESULT */
    int heartbeat_s;                 /* of the work connections; HAUL_TEST_HEARTBEAT_S, else 60 */
    atomic_bool stop;
    struct wthread *threads[WORKER_THREADS_MAX]; /* [0, nthreads) run; only the control thread touches it */
    unsigned nthreads;
    struct clone_stats totals;       /* every thread's counters since start */
    atomic_uint_fast64_t units;
    pthread_mutex_t refused_lock;    /* guards refused_run */
    char refused_run[DIST_JOB_ID_MAX + 1]; /* the last run refused here (logged once) */
};

#define REFUSE_BACKOFF_MS 5000 /* a thread that refused a job leaves the queue this long */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool stopping(const struct wthread *t)
{
    return atomic_load(&t->stop) || atomic_load(&t->w->stop) ||
           (t->w->o->cancel && atomic_load(t->w->o->cancel));
}

static void on_line(const char *what, const char *path, const char *msg, void *ctx)
{
    (void)ctx;
    if (strcmp(what, "error") == 0)
        log_warn("haul worker: %s: %s", path[0] ? path : ".", msg);
    else
        log_debug("haul worker: %s %s", what, path);
}

static void splits_clear(struct engine *e)
{
    for (size_t i = 0; i < e->nsplits; i++)
        free(e->splits[i].path);
    e->nsplits = 0;
}

/* clone's split hook: called on the thread doing the unit's paths (the
 * unit's, or its keepalive helper while the unit's thread only waits). */
static bool on_split(const char *path, const struct stat *st, void *ctx)
{
    struct engine *e = ctx;
    if (e->nsplits == e->splits_cap) {
        size_t cap = e->splits_cap ? e->splits_cap * 2 : 8;
        struct split *n = realloc(e->splits, cap * sizeof *n);
        if (!n)
            return false; /* clone copies it whole */
        e->splits = n;
        e->splits_cap = cap;
    }
    struct split *sp = &e->splits[e->nsplits];
    if (!(sp->path = strdup(path)))
        return false;
    sp->st = *st;
    e->nsplits++;
    return true;
}

static void engine_drop(struct engine *e)
{
    splits_clear(e);
    free(e->splits);
    e->splits = NULL;
    e->splits_cap = 0;
    clone_free(e->c);
    walk_filter_free(e->filter);
    dbackup_engine_free(e->b);
    strbuf_release(&e->payload);
    e->b = NULL;
    e->c = NULL;
    e->filter = NULL;
    e->ready = false;
}

/* Makes e serve spec (already decoded into e->spec). */
static int engine_open(struct wthread *t, struct engine *e, haul_error *err)
{
    engine_drop(e);
    memset(&e->stats, 0, sizeof e->stats);
    memset(e->reported, 0, sizeof e->reported);
    if (!(e->filter = walk_filter_new()))
        return err_set(err, HAUL_ENOMEM, "out of memory");
    for (size_t i = 0; i < e->spec.nexcludes; i++)
        if (walk_filter_exclude_add(e->filter, e->spec.excludes[i], err) < 0)
            return -HAUL_EUSAGE;
    struct clone_opts *o = &e->o;
    memset(o, 0, sizeof *o);
    o->src = e->spec.src;
    o->dst = e->spec.dst;
    o->passes = e->spec.pass == DIST_PASS_COPY ? CLONE_PASS_COPY
                : e->spec.pass == DIST_PASS_DELETE ? CLONE_PASS_DELETE : CLONE_PASS_DIRTIMES;
    o->threads = 1;
    o->range_threads = 4;
    o->parallel_threshold = e->spec.parallel_threshold;
    o->chunk = e->spec.chunk;
    o->checksum = e->spec.checksum;
    o->xattrs = e->spec.xattrs;
    o->fsync = e->spec.fsync;
    o->one_filesystem = e->spec.one_filesystem;
    o->skip_atime_older_days = e->spec.skip_atime_older_days;
    o->skip_mtime_newer_secs = e->spec.skip_mtime_newer_secs;
    o->now = (time_t)e->spec.now;
    o->filter = e->filter;
    o->cancel = t->w->o->cancel;
    o->line = on_line;
    o->dst_exists = true;
    o->link_registry = e->spec.registry[0] ? e->spec.registry : DCLONE_REGISTRY;
    o->count_deletes = e->spec.count_only;
    o->src_expect = &e->spec.src_id; /* a differing SRC here fails clone_new: the job is refused */
    if (e->spec.range_size) {
        o->range_split = e->spec.range_size + 1; /* larger than range_size */
        o->split = on_split;
        o->split_ctx = e;
    }
    if (!(e->c = clone_new(o, &e->stats, err)))
        return err->code ? -err->code : -HAUL_EIO;
    e->ready = true;
    return 0;
}

bool worker_path_inside(const char *root, const char *path)
{
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    if (n == 1 && root[0] == '/')
        return path[0] == '/';
    return strncmp(root, path, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Whether path (a job's SRC or DST, as the coordinator sent it) resolves
 * here to a directory inside an allowed root: 0 yes; else HAUL_EAUTH, or
 * HAUL_ENOTFOUND when it does not resolve here, with why ("SRC ..."). */
static int path_allowed(const struct worker *w, const char *what, const char *path, haul_error *err)
{
    char real[PATH_MAX];
    if (!realpath(path, real))
        return err_set(err, HAUL_ENOTFOUND, "%s %s: %s", what, path, strerror(errno));
    for (size_t i = 0; i < w->o->nallow; i++)
        if (w->o->allow[i][0] == '/' && worker_path_inside(w->o->allow[i], real))
            return 0;
    if (strcmp(path, real) == 0)
        return err_set(err, HAUL_EAUTH, "%s %s is not in this worker's --allow list", what, path);
    return err_set(err, HAUL_EAUTH, "%s %s (%s here) is not in this worker's --allow list", what, path, real);
}

/* Whether s3://bucket/prefix is inside an allowed "s3://BUCKET[/PREFIX]". */
static bool s3_allowed(const struct worker *w, const char *bucket, const char *prefix)
{
    for (size_t i = 0; i < w->o->nallow; i++) {
        const char *a = w->o->allow[i];
        if (strncmp(a, "s3://", 5) != 0)
            continue;
        a += 5;
        size_t bn = strcspn(a, "/");
        if (strlen(bucket) != bn || strncmp(a, bucket, bn) != 0)
            continue;
        const char *ap = a[bn] ? a + bn + 1 : "";
        size_t apn = strlen(ap);
        while (apn && ap[apn - 1] == '/')
            apn--;
        if (apn == 0 || (strncmp(prefix, ap, apn) == 0 && (prefix[apn] == '\0' || prefix[apn] == '/')))
            return true;
    }
    return false;
}

/* The job's roots against --allow: < 0 and why when one is outside (or
 * missing here: then named with the job, as engine_open would). */
static int allow_check(const struct worker *w, bool backup, const struct engine *e, haul_error *err)
{
    if (w->o->allow_any)
        return 0;
    int rc = path_allowed(w, "SRC", backup ? e->bspec.src : e->spec.src, err);
    if (rc == 0 && !backup)
        rc = path_allowed(w, "DST", e->spec.dst, err);
    if (rc == 0 && backup && !s3_allowed(w, e->bspec.bucket, e->bspec.prefix))
        rc = err_set(err, HAUL_EAUTH, "s3://%s/%s is not in this worker's --allow list", e->bspec.bucket,
                     e->bspec.prefix);
    if (rc == -HAUL_ENOTFOUND && backup)
        err_prefix(err, "backup job %s (%s -> s3://%s/%s): ", w->o->job, e->bspec.src, e->bspec.bucket,
                   e->bspec.prefix);
    else if (rc == -HAUL_ENOTFOUND)
        err_prefix(err, "job %s (%s -> %s): ", w->o->job, e->spec.src, e->spec.dst);
    return rc;
}

/* Reads the current job description.  1 when it is run `run` and e is
 * ready for it, 0 when the unit's run is not the current one (stale), < 0
 * when the job cannot be served here (err says why). */
static int engine_for(struct wthread *t, const char *run, haul_error *err)
{
    struct engine *e = t->e;
    if (e->ready && strcmp(e->b ? e->bspec.run : e->spec.run, run) == 0)
        return 1;
    if (strcmp(e->stale, run) == 0)
        return 0; /* no need to ask the broker for every unit of a dead run */
    struct dist_queue_opts qo = {.prefix = t->w->prefix, .key = t->w->o->key};
    struct dist_queue *admin = dist_queue_open(t->w->o->broker_url, &qo, err);
    if (!admin)
        return -HAUL_ENET;
    struct strbuf sb = STRBUF_INIT;
    char signed_run[DIST_JOB_ID_MAX + 1] = "";
    int rc = dist_job_get(admin, &sb, signed_run, err);
    dist_queue_free(admin);
    if (rc == 0)
        rc = err_set(err, HAUL_ENOTFOUND, "no job description in %s.job", t->w->prefix);
    bool backup = rc > 0 && dbackup_spec_is(sb.s, sb.len);
    if (rc > 0) {
        engine_drop(e);
        rc = backup ? dbackup_spec_decode(sb.s, sb.len, &e->bspec, err)
                    : dclone_spec_decode(sb.s, sb.len, &e->spec, err);
    }
    strbuf_release(&sb);
    const char *spec_run = backup ? e->bspec.run : e->spec.run;
    if (rc == 0 && t->w->o->key && strcmp(signed_run, spec_run) != 0)
        rc = err_set(err, HAUL_EAUTH, "the job description names run %s but is signed for run %s: not served",
                     spec_run, signed_run);
    if (rc < 0)
        return rc;
    if (strcmp(spec_run, run) != 0) { /* a unit of a run that is over: dropped, whatever it names */
        snprintf(e->stale, sizeof e->stale, "%s", run);
        return 0;
    }
    if ((rc = allow_check(t->w, backup, e, err)) < 0)
        return rc;
    if (backup) {
        e->b = dbackup_engine_new(&e->bspec, t->w->o->s3, t->w->o->cancel, err);
        if (!e->b) {
            err_prefix(err, "backup job %s (%s -> s3://%s/%s): ", t->w->o->job, e->bspec.src, e->bspec.bucket,
                       e->bspec.prefix);
            return err->code ? -err->code : -HAUL_EIO;
        }
        e->ready = true;
        log_info("haul worker: thread %u: run %s, backup %s -> s3://%s/%s", t->idx, run, e->bspec.src,
                 e->bspec.bucket, e->bspec.prefix);
        return 1;
    }
    rc = engine_open(t, e, err);
    if (rc < 0) {
        err_prefix(err, "job %s (%s -> %s): ", t->w->o->job, e->spec.src, e->spec.dst);
        engine_drop(e);
        return rc;
    }
    log_info("haul worker: thread %u: run %s, %s -> %s", t->idx, run, e->spec.src, e->spec.dst);
    return 1;
}

/* Children of a SCAN_DIR unit being published. */
struct batch {
    struct dist_queue *q;
    const struct dist_unit *parent;
    uint64_t base; /* children's ids: dist_unit_child_id(base, i) */
    uint64_t threshold;
    uint32_t published;
    const char *paths[DCLONE_BATCH_PATHS];
    char *owned[DCLONE_BATCH_PATHS];
    size_t n;
    uint64_t bytes;
    struct strbuf sb;
};

static int publish_child(struct batch *b, enum dist_unit_kind kind, const char **paths, size_t n, haul_error *err)
{
    struct dist_unit u = {.id = dist_unit_child_id(b->base, b->published), .pass = b->parent->pass,
                          .kind = kind, .npaths = n, .paths = paths};
    memcpy(u.job_id, b->parent->job_id, sizeof u.job_id);
    strbuf_reset(&b->sb);
    int rc = dist_unit_encode(&u, &b->sb, err);
    if (rc == 0)
        rc = dist_publish(b->q, b->sb.s, b->sb.len, err);
    if (rc == 0)
        b->published++;
    return rc;
}

static int batch_flush(struct batch *b, haul_error *err)
{
    int rc = b->n ? publish_child(b, DIST_UNIT_FILES, b->paths, b->n, err) : 0;
    for (size_t i = 0; i < b->n; i++)
        free(b->owned[i]);
    b->n = 0;
    b->bytes = 0;
    return rc;
}

static int on_child(bool dir, const char *path, const struct stat *st, void *ctx, haul_error *err)
{
    struct batch *b = ctx;
    size_t len = strlen(path);
    const char *why;
    if (dist_path_check(path, len, &why) < 0) {
        log_warn("haul worker: %s: cannot be sent in a unit (%s): left out", path, why);
        return 0;
    }
    if (dir)
        return publish_child(b, DIST_UNIT_SCAN_DIR, &path, 1, err);
    uint64_t size = S_ISREG(st->st_mode) ? (uint64_t)st->st_size : 0;
    if (size >= b->threshold)
        return publish_child(b, DIST_UNIT_FILES, &path, 1, err);
    if (b->n && b->bytes + size > DCLONE_BATCH_BYTES) {
        int rc = batch_flush(b, err);
        if (rc < 0)
            return rc;
    }
    char *copy = strdup(path);
    if (!copy)
        return err_set(err, HAUL_ENOMEM, "out of memory");
    b->owned[b->n] = copy;
    b->paths[b->n++] = copy;
    b->bytes += size;
    return b->n == DCLONE_BATCH_PATHS ? batch_flush(b, err) : 0;
}

/* One path done on a thread of its own while the unit's thread keeps the
 * broker connection alive: a large file can take longer than the heartbeat
 * timeout, and a connection the broker closed would hand the unit to
 * another worker over and over. */
typedef int (*path_fn)(void *arg, haul_error *err);

struct path_job {
    path_fn fn;        /* the work: copy or upload one path */
    void *arg;
    unsigned delay_ms; /* HAUL_TEST_PATH_DELAY_MS: sleep before the copy */
    int rc;
    haul_error err;
    pthread_mutex_t lock; /* guards done */
    pthread_cond_t finished;
    bool done;
};

static void *path_job_main(void *arg)
{
    struct path_job *j = arg;
    if (j->delay_ms)
        sleep_ms(j->delay_ms);
    j->rc = j->fn(j->arg, &j->err);
    pthread_mutex_lock(&j->lock);
    j->done = true;
    pthread_cond_signal(&j->finished);
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

#define KEEPALIVE_POLL_S 5

static int path_do_keepalive(const struct worker *w, path_fn fn, void *arg, struct dist_queue *q, haul_error *err)
{
    struct path_job j = {.fn = fn, .arg = arg, .delay_ms = w->path_delay_ms};
    /* Every 5 s, or half the heartbeat if shorter: one goes out only when we poll. */
    long poll_ms = w->heartbeat_s * 500L;
    if (poll_ms > KEEPALIVE_POLL_S * 1000L)
        poll_ms = KEEPALIVE_POLL_S * 1000L;
    pthread_mutex_init(&j.lock, NULL);
    pthread_cond_init(&j.finished, NULL);
    pthread_t th;
    int rc = pthread_create(&th, NULL, path_job_main, &j);
    if (rc != 0) {
        pthread_cond_destroy(&j.finished);
        pthread_mutex_destroy(&j.lock);
        return fn(arg, err); /* no thread: do it here */
    }
    haul_error poll_err = {0};
    int poll_rc = 0;
    pthread_mutex_lock(&j.lock);
    while (!j.done) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += poll_ms / 1000;
        until.tv_nsec += poll_ms % 1000 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&j.finished, &j.lock, &until);
        if (!j.done && poll_rc == 0) {
            pthread_mutex_unlock(&j.lock);
            poll_rc = dist_poll(q, &poll_err); /* after a failure: just wait for the copy */
            pthread_mutex_lock(&j.lock);
        }
    }
    pthread_mutex_unlock(&j.lock);
    pthread_join(th, NULL);
    pthread_cond_destroy(&j.finished);
    pthread_mutex_destroy(&j.lock);
    if (j.rc < 0) {
        *err = j.err;
        return j.rc;
    }
    if (poll_rc < 0)
        return err_set(err, poll_err.code, "%s", poll_err.msg);
    return 0;
}

struct clone_path_arg {
    struct clone *c;
    enum clone_pass pass;
    const char *path;
};

static int clone_path_fn(void *arg, haul_error *err)
{
    const struct clone_path_arg *a = arg;
    return clone_path_do(a->c, a->pass, a->path, err);
}

/* A backup unit of one path (a large file) without the queue: the unit's
 * thread keeps the connection alive meanwhile. */
struct backup_unit_arg {
    struct dbackup_engine *b;
    struct dist_queue *q; /* NULL when run by path_do_keepalive */
    const struct dist_unit *u;
    uint64_t base;
    const char *name;
    uint32_t *children;
    uint64_t *counters;
    struct strbuf *payload;
};

static int backup_unit_fn(void *arg, haul_error *err)
{
    const struct backup_unit_arg *a = arg;
    return dbackup_unit_do(a->b, a->q, a->u, a->base, a->name, a->children, a->counters, a->payload, err);
}

/* One RANGE unit of a large file. */
struct range_arg {
    struct clone *c;
    const struct dist_unit *u;
    const char *tmp;
};

static int range_copy_fn(void *arg, haul_error *err)
{
    const struct range_arg *a = arg;
    return clone_range_copy(a->c, a->u->paths[0], a->tmp, a->u->offset, a->u->length, err);
}

/* The large files the unit's paths left to ranges: their temporary files,
 * RANGE units (children of u from *children on) and tickets in the
 * result's payload. */
static int splits_publish(struct engine *e, struct dist_queue *q, const struct dist_unit *u, uint32_t *children,
                          haul_error *err)
{
    int rc = 0;
    uint32_t n = 0;
    struct strbuf sb = STRBUF_INIT;
    strbuf_reset(&e->payload);
    wire_put_u8(&e->payload, DCLONE_PAYLOAD_SPLITS);
    wire_put_u32(&e->payload, 0); /* n, patched below */
    for (size_t i = 0; i < e->nsplits && rc == 0; i++) {
        const struct split *sp = &e->splits[i];
        uint64_t size = (uint64_t)sp->st.st_size, range = e->spec.range_size;
        struct dclone_ticket tk = {.parent = e->child_base, .first = *children, .count = (uint32_t)((size + range - 1) / range),
                                   .size = size, .ino = sp->st.st_ino,
                                   .mtime_ns = (int64_t)sp->st.st_mtim.tv_sec * 1000000000LL + sp->st.st_mtim.tv_nsec};
        char tmp[64];
        dclone_ticket_tmp(&tk, tmp, sizeof tmp);
        if (clone_range_begin(e->c, sp->path, tmp, size, err) != 0)
            continue; /* counted as failed */
        struct strbuf tsb = STRBUF_INIT;
        dclone_ticket_put(&tsb, &tk);
        for (uint32_t k = 0; k < tk.count && rc == 0; k++) {
            const char *path = sp->path;
            uint64_t off = (uint64_t)k * range;
            struct dist_unit r = {.id = dist_unit_child_id(e->child_base, tk.first + k), .pass = DIST_PASS_COPY,
                                  .kind = DIST_UNIT_RANGE, .offset = off, .length = size - off < range ? size - off : range,
                                  .npaths = 1, .paths = &path, .payload = tsb.s, .payload_len = tsb.len};
            memcpy(r.job_id, u->job_id, sizeof r.job_id);
            strbuf_reset(&sb);
            rc = dist_unit_encode(&r, &sb, err);
            if (rc == 0)
                rc = dist_publish(q, sb.s, sb.len, err);
        }
        strbuf_release(&tsb);
        if (rc == 0) {
            *children += tk.count;
            dclone_ticket_put(&e->payload, &tk);
            wire_put_str(&e->payload, sp->path, strlen(sp->path));
            n++;
        }
    }
    strbuf_release(&sb);
    splits_clear(e);
    if (n == 0)
        strbuf_reset(&e->payload);
    else
        for (int k = 0; k < 4; k++)
            ((unsigned char *)e->payload.s)[1 + k] = (unsigned char)(n >> (24 - 8 * k));
    return rc;
}

/* RANGE and FINISH units: the ticket is their payload. */
static int range_unit_do(struct wthread *t, struct dist_queue *q, const struct dist_unit *u, haul_error *err)
{
    struct engine *e = t->e;
    struct wire_reader r = {u->payload, u->payload_len, NULL};
    struct dclone_ticket tk;
    if (!dclone_ticket_get(&r, &tk) || r.left || !e->spec.range_size)
        return err_set(err, HAUL_EPROTO, "%s unit without a valid ticket (or in a job without --range-size)",
                       u->kind == DIST_UNIT_RANGE ? "RANGE" : "FINISH");
    char tmp[64];
    dclone_ticket_tmp(&tk, tmp, sizeof tmp);
    if (u->kind == DIST_UNIT_FINISH) {
        struct stat st;
        dclone_ticket_stat(&tk, &st);
        return clone_range_finish(e->c, u->paths[0], tmp, &st, err);
    }
    int rc = path_do_keepalive(t->w, range_copy_fn, &(struct range_arg){e->c, u, tmp}, q, err);
    if (rc == 0) {
        wire_put_u8(&e->payload, DCLONE_PAYLOAD_RANGE_DONE);
        dclone_ticket_put(&e->payload, &tk);
        wire_put_u32(&e->payload, (uint32_t)(u->offset / e->spec.range_size));
    }
    return rc;
}

/* Does unit u; its result goes out after.  children: units it published. */
static int unit_do(struct wthread *t, struct dist_queue *q, const struct dist_unit *u, uint32_t *children,
                   haul_error *err)
{
    struct engine *e = t->e;
    enum clone_pass pass = u->pass == DIST_PASS_COPY ? CLONE_PASS_COPY
                           : u->pass == DIST_PASS_DELETE ? CLONE_PASS_DELETE : CLONE_PASS_DIRTIMES;
    *children = 0;
    strbuf_reset(&e->payload);
    if (u->kind == DIST_UNIT_SCAN_DIR) {
        struct batch b = {.q = q, .parent = u, .base = e->child_base, .threshold = e->spec.parallel_threshold,
                          .sb = STRBUF_INIT};
        int rc = clone_dir_scan(e->c, pass, u->paths[0], on_child, &b, err);
        if (rc == 0)
            rc = batch_flush(&b, err);
        else
            for (size_t i = 0; i < b.n; i++)
                free(b.owned[i]);
        strbuf_release(&b.sb);
        *children = b.published;
        return rc;
    }
    if (u->kind == DIST_UNIT_RANGE || u->kind == DIST_UNIT_FINISH)
        return range_unit_do(t, q, u, err);
    int rc = 0;
    if (u->npaths == 1) /* a unit of one path may be a large file (they travel alone) */
        rc = path_do_keepalive(t->w, clone_path_fn, &(struct clone_path_arg){e->c, pass, u->paths[0]}, q, err);
    for (size_t i = 0; u->npaths > 1 && i < u->npaths && rc == 0; i++) {
        rc = clone_path_do(e->c, pass, u->paths[i], err);
        /* Keeps the connection alive through a batch of big files. */
        if (rc == 0)
            rc = dist_poll(q, err);
    }
    if (rc == 0 && e->nsplits)
        rc = splits_publish(e, q, u, children, err);
    splits_clear(e);
    return rc;
}

/* Publishes the result of unit u: totals and counters from in, the unit,
 * its children's ids, the worker's name and the unit's payload added here. */
static int result_publish(struct wthread *t, struct dist_queue *q, const struct dist_unit *u, uint32_t children,
                          const struct dist_result *in, haul_error *err)
{
    if (t->w->die_before_scan_result && u->kind == DIST_UNIT_SCAN_DIR) {
        log_warn("haul worker %s: HAUL_TEST_DIE_BEFORE_SCAN_RESULT: SIGKILL before the result of unit %016" PRIx64,
                 t->w->name, u->id);
        raise(SIGKILL);
    }
    struct dist_result_unit ru = {.unit_id = u->id, .children = children, .child_base = t->e->child_base};
    struct dist_result r = *in;
    r.nunits = 1;
    r.units = &ru;
    r.payload = t->e->payload.s;
    r.payload_len = t->e->payload.len;
    snprintf(r.worker, sizeof r.worker, "%s/%u", t->w->name, t->idx);
    struct strbuf sb = STRBUF_INIT;
    int rc = t->e->payload.failed ? err_set(err, HAUL_ENOMEM, "out of memory") : dist_result_encode(&r, &sb, err);
    if (rc == 0)
        rc = dist_publish_to(q, DIST_RESULTS, sb.s, sb.len, err);
    strbuf_release(&sb);
    if (rc == 0)
        atomic_fetch_add(&t->w->units, 1);
    return rc;
}

/* A clone unit's result: the counters it changed since the last one. */
static int result_send(struct wthread *t, struct dist_queue *q, const struct dist_unit *u, uint32_t children,
                       haul_error *err)
{
    struct engine *e = t->e;
    uint64_t now[DCLONE_COUNTERS], delta[DCLONE_COUNTERS];
    dclone_counters_get(&e->stats, now);
    for (int i = 0; i < DCLONE_COUNTERS; i++)
        delta[i] = now[i] - e->reported[i];
    struct dist_result r = {.files = delta[0], .bytes = delta[6], .skipped = delta[10] + delta[11],
                            .failed = delta[14], .ncounters = DCLONE_COUNTERS};
    memcpy(r.counters, delta, sizeof delta);
    int rc = result_publish(t, q, u, children, &r, err);
    if (rc == 0) {
        memcpy(e->reported, now, sizeof now);
        dclone_counters_add(&t->w->totals, delta, DCLONE_COUNTERS);
    }
    return rc;
}

/* A backup unit's result: its counters as they are (a delta already), its
 * records as payload.  Status totals get them in clone terms. */
static int backup_result_send(struct wthread *t, struct dist_queue *q, const struct dist_unit *u, uint32_t children,
                              const uint64_t *c, haul_error *err)
{
    struct dist_result r = {.files = c[DBACKUP_C_UPLOADED], .bytes = c[DBACKUP_C_BYTES],
                            .failed = c[DBACKUP_C_ERRORS], .ncounters = DBACKUP_COUNTERS};
    memcpy(r.counters, c, DBACKUP_COUNTERS * sizeof *c);
    int rc = result_publish(t, q, u, children, &r, err);
    if (rc == 0) {
        struct clone_stats *tot = &t->w->totals;
        atomic_fetch_add(&tot->copied, c[DBACKUP_C_UPLOADED]);
        atomic_fetch_add(&tot->bytes_copied, c[DBACKUP_C_BYTES]);
        atomic_fetch_add(&tot->hardlinks, c[DBACKUP_C_HARDLINKS]);
        atomic_fetch_add(&tot->failed, c[DBACKUP_C_ERRORS]);
        atomic_fetch_add(&tot->others, c[DBACKUP_C_OTHERS]);
    }
    return rc;
}

/* Units done whose results are published, not yet confirmed: acked
 * together after one dist_flush (one confirm round trip for many units). */
#define HELD_MAX 8
struct held {
    struct dist_msg msgs[HELD_MAX];
    size_t n;
};

static int held_settle(struct dist_queue *q, struct held *h, haul_error *err)
{
    int rc = h->n ? dist_flush(q, 120000, err) : 0;
    for (size_t i = 0; i < h->n; i++) {
        haul_error e2 = {0};
        if (rc == 0)
            rc = dist_ack(q, &h->msgs[i], err);
        else
            dist_reject(q, &h->msgs[i], true, &e2); /* frees it; the broker redelivers */
    }
    h->n = 0;
    return rc;
}

/* A job this node cannot serve (SRC not mounted here or another filesystem
 * than the coordinator's, SRC or DST missing, no S3 configuration): the
 * unit is neither done nor failed.  The coordinator is told (a result of
 * no unit, dist/waiter.h: it fails the run when no worker is left to take
 * the units), the unit goes back to the queue for another node, and the
 * thread leaves the queue for REFUSE_BACKOFF_MS so that it does go
 * elsewhere (returns 1).  Logged once per run. */
static int job_refuse(struct wthread *t, struct dist_queue *q, struct dist_msg *m, const char *run,
                      const haul_error *why, haul_error *err)
{
    pthread_mutex_lock(&t->w->refused_lock);
    bool first = strcmp(t->w->refused_run, run) != 0;
    snprintf(t->w->refused_run, sizeof t->w->refused_run, "%s", run);
    pthread_mutex_unlock(&t->w->refused_lock);
    if (first)
        log_error("haul worker %s: cannot serve this job here: %s (the units of run %s are left to other nodes)",
                  t->w->name, why->msg, run);
    struct strbuf payload = STRBUF_INIT, sb = STRBUF_INIT;
    wire_put_u8(&payload, DIST_REFUSAL);
    wire_put_str(&payload, why->msg, strnlen(why->msg, 1000));
    struct dist_result r = {.payload = payload.s, .payload_len = payload.len};
    snprintf(r.worker, sizeof r.worker, "%s/%u", t->w->name, t->idx);
    int rc = payload.failed ? err_set(err, HAUL_ENOMEM, "out of memory") : dist_result_encode(&r, &sb, err);
    if (rc == 0)
        rc = dist_publish_to(q, DIST_RESULTS, sb.s, sb.len, err);
    if (rc == 0)
        rc = dist_flush(q, 30000, err);
    strbuf_release(&payload);
    strbuf_release(&sb);
    haul_error rerr = {0};
    int rrc = dist_reject(q, m, true, &rerr);
    if (rc == 0 && rrc < 0)
        rc = rrc, *err = rerr;
    return rc < 0 ? rc : 1;
}

/* One message from the work queue: a unit done is added to h (its result
 * published), anything else settled here.  < 0: the handle is unusable;
 * 1: the job was refused here, leave the queue for a while. */
static int message_do(struct wthread *t, struct dist_queue *q, struct dist_msg *m, struct held *h, haul_error *err)
{
    struct dist_unit u;
    haul_error uerr = {0};
    if (dist_unit_decode(m->body, m->len, &u, &uerr) < 0) {
        log_warn("haul worker: %s: rejecting a malformed work unit (%zu bytes) to the dead-letter queue: %s",
                 dist_queue_url(q), m->len, uerr.msg);
        return dist_reject(q, m, false, err);
    }
    if (t->w->o->key && strcmp(u.job_id, m->run) != 0) {
        static atomic_bool said;
        if (!atomic_exchange(&said, true))
            log_warn("haul worker: %s: a work unit of run %s signed for run %s: replayed, dropped to the "
                     "dead-letter queue (said once)", dist_queue_url(q), u.job_id, m->run);
        dist_unit_release(&u);
        return dist_reject(q, m, false, err);
    }
    dist_queue_set_run(q, u.job_id); /* its children and result are signed for its run */
    int rc;
    if (t->w->delay_ms)
        sleep_ms(t->w->delay_ms);
    haul_error jerr = {0};
    int have = engine_for(t, u.job_id, &jerr);
    if (have < 0 && have != -HAUL_ENET) {
        rc = job_refuse(t, q, m, u.job_id, &jerr, err);
        dist_unit_release(&u);
        return rc;
    }
    if (have < 0) {
        log_error("haul worker: cannot read the job description: %s (unit requeued)", jerr.msg);
        rc = dist_reject(q, m, true, err);
        dist_unit_release(&u);
        for (int i = 0; i < 20 && !stopping(t); i++)
            sleep_ms(100); /* back off: other nodes may take it */
        return rc;
    }
    enum dist_pass pass = t->e->b ? DIST_PASS_BACKUP : t->e->spec.pass;
    if (have == 0 || u.pass != pass) {
        log_info("haul worker: unit %016" PRIx64 " of run %s: that run is over, dropped", u.id, u.job_id);
        rc = dist_ack(q, m, err);
        dist_unit_release(&u);
        return rc;
    }
    uint32_t children = 0;
    haul_error werr = {0};
    uint64_t bcounters[DBACKUP_COUNTERS] = {0};
    /* A redone unit's children get ids of their own (see dist_result_unit). */
    t->e->child_base = m->redelivered ? dist_random_id() : u.id;
    if (t->e->b) {
        char name[DIST_NODE_MAX + 1];
        snprintf(name, sizeof name, "%s/%u", t->w->name, t->idx);
        struct backup_unit_arg a = {t->e->b, q, &u, t->e->child_base, name, &children, bcounters, &t->e->payload};
        if ((u.kind == DIST_UNIT_FILES && u.npaths == 1) || u.kind == DIST_UNIT_RANGE) {
            a.q = NULL;
            rc = path_do_keepalive(t->w, backup_unit_fn, &a, q, &werr);
        } else {
            rc = backup_unit_fn(&a, &werr);
        }
    } else {
        rc = unit_do(t, q, &u, &children, &werr);
    }
    if (rc < 0 && (rc == -HAUL_EUSAGE || rc == -HAUL_EPROTO)) {
        /* Doing it again would fail alike: a failed unit, not a lost one. */
        log_warn("haul worker: unit %016" PRIx64 " (%s): %s", u.id, u.paths[0], werr.msg);
        if (t->e->b)
            bcounters[DBACKUP_C_ERRORS]++;
        else
            atomic_fetch_add(&t->e->stats.failed, 1);
        rc = 0;
    } else if (rc < 0) {
        *err = werr;
    }
    if (rc == 0 && t->w->o->cancel && atomic_load(t->w->o->cancel)) {
        /* Interrupted (SIGINT/SIGTERM) in the middle: not done, not failed. */
        rc = dist_reject(q, m, true, err);
        dist_unit_release(&u);
        return rc;
    }
    if (rc == 0 && t->e->b)
        rc = backup_result_send(t, q, &u, children, bcounters, err);
    else if (rc == 0)
        rc = result_send(t, q, &u, children, err);
    if (rc == 0)
        h->msgs[h->n++] = *m;
    else
        dist_reject(q, m, true, &(haul_error){0});
    dist_unit_release(&u);
    return rc;
}

static void *thread_main(void *arg)
{
    struct wthread *t = arg;
    struct dist_queue *q = NULL;
    struct held h = {.n = 0};
    while (!stopping(t)) {
        haul_error err = {0};
        if (!q) {
            struct dist_queue_opts qo = {.prefix = t->w->prefix, .consume = DIST_CONSUME(DIST_WORK), .key = t->w->o->key,
                                         .prefetch = HELD_MAX, .heartbeat_s = t->w->heartbeat_s};
            if (!(q = dist_queue_open(t->w->o->broker_url, &qo, &err))) {
                log_error("haul worker: thread %u: %s (retrying)", t->idx, err.msg);
                for (int i = 0; i < 20 && !stopping(t); i++)
                    sleep_ms(100);
                continue;
            }
        }
        struct dist_msg m;
        /* Holding done units: settle them as soon as nothing else is ready. */
        int rc = dist_next(q, &m, h.n ? 0 : 300, &err);
        if (rc == 0 && h.n)
            rc = held_settle(q, &h, &err);
        else if (rc == 1 && m.kind != DIST_WORK)
            rc = dist_ack(q, &m, &err);
        else if (rc == 1)
            rc = message_do(t, q, &m, &h, &err);
        if (rc == 0 && h.n == HELD_MAX)
            rc = held_settle(q, &h, &err);
        if (rc == 1) { /* refused: the units this handle holds go to other nodes */
            held_settle(q, &h, &(haul_error){0});
            dist_queue_free(q);
            q = NULL;
            for (int i = 0; i < REFUSE_BACKOFF_MS / 100 && !stopping(t); i++)
                sleep_ms(100);
            continue;
        }
        if (rc < 0) {
            /* Unacked units go back to the queue when the handle closes. */
            log_error("haul worker: thread %u: %s (reconnecting)", t->idx, err.msg);
            held_settle(q, &h, &(haul_error){0});
            dist_queue_free(q);
            q = NULL;
        }
    }
    if (q) {
        haul_error err = {0};
        if (held_settle(q, &h, &err) < 0)
            log_error("haul worker: thread %u: %s", t->idx, err.msg);
    }
    dist_queue_free(q);
    return NULL;
}

static int thread_start(struct worker *w, unsigned idx)
{
    struct wthread *t = calloc(1, sizeof *t);
    struct engine *e = calloc(1, sizeof *e);
    if (!t || !e) {
        free(t);
        free(e);
        return -1;
    }
    t->w = w;
    t->idx = idx;
    t->e = e;
    if (pthread_create(&t->tid, NULL, thread_main, t) != 0) {
        free(t);
        free(e);
        return -1;
    }
    w->threads[idx] = t;
    return 0;
}

static void thread_join(struct worker *w, unsigned idx)
{
    struct wthread *t = w->threads[idx];
    pthread_join(t->tid, NULL);
    engine_drop(t->e);
    free(t->e);
    free(t);
    w->threads[idx] = NULL;
}

/* Runs n threads: starts more, or stops the last ones after their unit. */
static void threads_set(struct worker *w, unsigned n)
{
    if (n > WORKER_THREADS_MAX)
        n = WORKER_THREADS_MAX;
    while (w->nthreads < n && thread_start(w, w->nthreads) == 0)
        w->nthreads++;
    for (unsigned i = n; i < w->nthreads; i++)
        atomic_store(&w->threads[i]->stop, true);
    while (w->nthreads > n)
        thread_join(w, --w->nthreads);
}

static int status_send(struct worker *w, struct dist_queue *q, haul_error *err)
{
    struct dist_result r = {.nunits = 0, .ncounters = DCLONE_COUNTERS + 1};
    dclone_counters_get(&w->totals, r.counters);
    r.counters[DCLONE_COUNTERS] = atomic_load(&w->units);
    r.files = r.counters[0];
    r.bytes = r.counters[6];
    r.skipped = r.counters[10] + r.counters[11];
    r.failed = r.counters[14];
    snprintf(r.worker, sizeof r.worker, "%s/%u", w->name, w->nthreads);
    struct strbuf sb = STRBUF_INIT;
    int rc = dist_result_encode(&r, &sb, err);
    if (rc == 0)
        rc = dist_publish_to(q, DIST_CONTROL, sb.s, sb.len, err);
    if (rc == 0)
        rc = dist_flush(q, 30000, err);
    strbuf_release(&sb);
    return rc;
}

static void control_do(struct worker *w, struct dist_queue *q, struct dist_msg *m)
{
    struct dist_control c;
    haul_error cerr = {0};
    if (dist_control_decode(m->body, m->len, &c, &cerr) < 0) {
        struct dist_result r;
        haul_error rerr = {0};
        if (dist_result_decode(m->body, m->len, &r, &rerr) == 0)
            dist_result_release(&r); /* another worker's status answer */
        else
            log_warn("haul worker: ignoring a control message: %s", cerr.msg);
        return;
    }
    if (c.node[0] && strcmp(c.node, w->name) != 0)
        return;
    haul_error err = {0};
    switch (c.op) {
    case DIST_CTL_STOP:
        log_info("haul worker %s: stop requested", w->name);
        atomic_store(&w->stop, true);
        break;
    case DIST_CTL_GROW:
        log_info("haul worker %s: %u -> %u threads", w->name, w->nthreads, c.n);
        threads_set(w, c.n);
        break;
    case DIST_CTL_STATUS:
        if (status_send(w, q, &err) < 0)
            log_warn("haul worker %s: status answer: %s", w->name, err.msg);
        break;
    }
}

/* The one line saying what this worker serves: broker (no password),
 * job, roots, and whether messages are signed. */
static void serving_say(const struct worker *w, const struct dist_queue *q)
{
    const struct worker_opts *o = w->o;
    struct strbuf sb = STRBUF_INIT;
    strbuf_addf(&sb, "haul worker %s: serving job %s at %s; allowed: ", w->name, o->job ? o->job : "haul",
                dist_queue_url(q));
    if (o->allow_any)
        strbuf_adds(&sb, "anything (--allow-any)");
    for (size_t i = 0; !o->allow_any && i < o->nallow; i++)
        strbuf_addf(&sb, "%s%s", i ? ", " : "", o->allow[i]);
    strbuf_adds(&sb, o->key ? "; messages signed (--key-file)" : "; messages NOT signed (--insecure-no-key)");
    if (!sb.failed && o->serving)
        o->serving(sb.s, o->serving_ctx);
    else if (!sb.failed)
        log_info("%s", sb.s);
    strbuf_release(&sb);
}

int worker_run(const struct worker_opts *o, haul_error *err)
{
    struct worker *w = calloc(1, sizeof *w);
    if (!w)
        return err_set(err, HAUL_ENOMEM, "out of memory");
    w->o = o;
    pthread_mutex_init(&w->refused_lock, NULL);
    int rc = dclone_prefix(o->job ? o->job : "haul", w->prefix, sizeof w->prefix, err);
    if (o->name) {
        snprintf(w->name, sizeof w->name, "%s", o->name);
    } else {
        char host[64] = "localhost";
        gethostname(host, sizeof host);
        host[sizeof host - 1] = '\0';
        host[strcspn(host, ". ")] = '\0';
        snprintf(w->name, sizeof w->name, "%s:%ld", host, (long)getpid());
    }
    const char *delay = getenv("HAUL_TEST_UNIT_DELAY_MS");
    w->delay_ms = delay ? (unsigned)strtoul(delay, NULL, 10) : 0;
    const char *path_delay = getenv("HAUL_TEST_PATH_DELAY_MS");
    w->path_delay_ms = path_delay ? (unsigned)strtoul(path_delay, NULL, 10) : 0;
    w->die_before_scan_result = getenv("HAUL_TEST_DIE_BEFORE_SCAN_RESULT") != NULL;
    const char *heartbeat = getenv("HAUL_TEST_HEARTBEAT_S");
    w->heartbeat_s = heartbeat && atoi(heartbeat) > 0 ? atoi(heartbeat) : 60;
    struct dist_queue_opts qo = {.prefix = w->prefix, .consume = DIST_CONSUME(DIST_CONTROL), .key = o->key};
    struct dist_queue *q = rc == 0 ? dist_queue_open(o->broker_url, &qo, err) : NULL;
    if (!q) {
        pthread_mutex_destroy(&w->refused_lock);
        free(w);
        return rc < 0 ? rc : -HAUL_ENET;
    }
    serving_say(w, q);
    threads_set(w, o->threads ? o->threads : 4);
    while (!atomic_load(&w->stop) && !(o->cancel && atomic_load(o->cancel))) {
        struct dist_msg m;
        haul_error qerr = {0};
        int got = dist_next(q, &m, 300, &qerr);
        if (got == 1) {
            if (m.kind == DIST_CONTROL)
                control_do(w, q, &m);
            dist_ack(q, &m, &qerr);
            continue;
        }
        if (got < 0) {
            log_error("haul worker %s: control: %s (reconnecting)", w->name, qerr.msg);
            dist_queue_free(q);
            q = NULL;
            while (!q && !atomic_load(&w->stop) && !(o->cancel && atomic_load(o->cancel))) {
                for (int i = 0; i < 20 && !atomic_load(&w->stop); i++)
                    sleep_ms(100);
                if (!(q = dist_queue_open(o->broker_url, &qo, &qerr)))
                    log_error("haul worker %s: control: %s (retrying)", w->name, qerr.msg);
            }
            if (!q)
                break;
        }
    }
    atomic_store(&w->stop, true);
    threads_set(w, 0);
    log_info("haul worker %s: stopped after %" PRIu64 " units", w->name, (uint64_t)atomic_load(&w->units));
    dist_queue_free(q);
    pthread_mutex_destroy(&w->refused_lock);
    free(w);
    return 0;
}

/* ---- haul ctl ---- */

int worker_ctl_send(const char *broker_url, const struct dist_key *key, const char *job, const struct dist_control *c,
                    haul_error *err)
{
    char prefix[DIST_PREFIX_MAX + 1];
    if (dclone_prefix(job, prefix, sizeof prefix, err) < 0)
        return -HAUL_EUSAGE;
    struct strbuf sb = STRBUF_INIT;
    struct dist_queue_opts qo = {.prefix = prefix, .key = key};
    struct dist_queue *q = NULL;
    int rc = dist_control_encode(c, &sb, err);
    if (rc == 0 && !(q = dist_queue_open(broker_url, &qo, err)))
        rc = -HAUL_ENET;
    if (rc == 0)
        rc = dist_publish_to(q, DIST_CONTROL, sb.s, sb.len, err);
    if (rc == 0)
        rc = dist_flush(q, 30000, err);
    dist_queue_free(q);
    strbuf_release(&sb);
    return rc;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int worker_ctl_status(const char *broker_url, const struct dist_key *key, const char *job, int wait_ms,
                      worker_status_fn fn, void *ctx, struct dist_depth depth[3], haul_error *err)
{
    char prefix[DIST_PREFIX_MAX + 1];
    if (dclone_prefix(job, prefix, sizeof prefix, err) < 0)
        return -HAUL_EUSAGE;
    struct dist_queue_opts qo = {.prefix = prefix, .consume = DIST_CONSUME(DIST_CONTROL), .key = key};
    struct dist_queue *q = dist_queue_open(broker_url, &qo, err);
    if (!q)
        return -HAUL_ENET;
    struct dist_control c = {.op = DIST_CTL_STATUS};
    struct strbuf sb = STRBUF_INIT;
    int rc = dist_control_encode(&c, &sb, err);
    if (rc == 0)
        rc = dist_publish_to(q, DIST_CONTROL, sb.s, sb.len, err);
    if (rc == 0)
        rc = dist_flush(q, 30000, err);
    strbuf_release(&sb);
    for (double end = now_ms() + wait_ms; rc == 0 && now_ms() < end;) {
        struct dist_msg m;
        int got = dist_next(q, &m, (int)(end - now_ms()) + 1, err);
        if (got < 0)
            rc = got;
        if (got <= 0)
            continue;
        struct dist_result r;
        haul_error rerr = {0};
        if (dist_result_decode(m.body, m.len, &r, &rerr) == 0) {
            struct worker_status s = {0};
            snprintf(s.name, sizeof s.name, "%s", r.worker);
            char *slash = strrchr(s.name, '/');
            if (slash) {
                *slash = '\0';
                s.threads = (unsigned)strtoul(slash + 1, NULL, 10);
            }
            s.ncounters = r.ncounters;
            memcpy(s.counters, r.counters, r.ncounters * sizeof *r.counters);
            if (r.ncounters > DCLONE_COUNTERS)
                s.units = r.counters[DCLONE_COUNTERS];
            fn(&s, ctx);
            dist_result_release(&r);
        }
        dist_ack(q, &m, &rerr);
    }
    for (int k = 0; rc == 0 && k < 3; k++)
        rc = dist_queue_depth(q, k == 0 ? DIST_WORK : k == 1 ? DIST_DEAD : DIST_RESULTS, &depth[k], err);
    dist_queue_free(q);
    return rc;
}

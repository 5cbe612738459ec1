/* job/dclone: the coordinator of a distributed clone, and what it shares
 * with the workers (job description, counters).  See dclone.h. */
#include "job/dclone.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dist/tracker.h"
#include "dist/waiter.h"
#include "fs/fs.h"
#include "util/err.h"
#include "util/kv.h"
#include "util/log.h"

/* ---- job description (util/kv lines) ---- */

#define F(kind, m, ...) KV_FIELD_##kind(struct dclone_spec, m, __VA_ARGS__)
static const struct kv_field spec_fields[] = {
    F(STRN, run, 16, 16, true), /* 16 hex digits */
    F(NUM, pass, DIST_PASS_COPY, DIST_PASS_DIRTIMES, true),
    F(STR, src, true),
    F(STR, dst, true),
    F(NUM, checksum, 0, 0, false),
    F(NUM, xattrs, 0, 0, false),
    F(NUM, fsync, 0, 0, false),
    F(NUM, one_filesystem, 0, 0, false),
    F(NUM, now, 0, INT64_MAX, false),
    F(NUM, skip_atime_older_days, 0, 0, false),
    F(NUM, skip_mtime_newer_secs, 0, 0, false),
    F(NUM, parallel_threshold, 0, 0, false),
    F(NUM, chunk, 0, 0, false),
    F(NUM, range_size, 0, 0, false),
    F(LIST, excludes, "exclude", nexcludes),
    F(STR, registry, false),
    F(NUM, count_only, 0, 0, false),
    DIST_SRCID_FIELDS,
};
#undef F
static const char spec_head[] = "haul-dclone 1\n";

int dclone_spec_encode(const struct dclone_spec *s, struct strbuf *out, haul_error *err)
{
    return kv_encode(out, spec_head, spec_fields, sizeof spec_fields / sizeof *spec_fields, s, err);
}

/* DCLONE_REGISTRY "." and 16 lowercase hex digits: one name right below DST. */
static bool registry_name_ok(const char *name)
{
    size_t n = sizeof DCLONE_REGISTRY - 1;
    if (strncmp(name, DCLONE_REGISTRY ".", n + 1) != 0 || strlen(name) != n + 17)
        return false;
    return strspn(name + n + 1, "0123456789abcdef") == 16;
}

int dclone_spec_decode(const void *buf, size_t len, struct dclone_spec *out, haul_error *err)
{
    int rc = kv_decode(buf, len, spec_head, spec_fields, sizeof spec_fields / sizeof *spec_fields, out, sizeof *out,
                       err);
    if (rc == 0 && out->range_size && out->range_size < (1u << 20))
        rc = err_set(err, HAUL_EPROTO, "job description: bad value for 'range_size'");
    if (rc == 0 && out->registry[0] && !registry_name_ok(out->registry))
        rc = err_set(err, HAUL_EPROTO, "job description: bad value for 'registry'");
    return rc;
}

/* ---- tickets of large files copied in ranges ---- */

void dclone_ticket_put(struct strbuf *sb, const struct dclone_ticket *t)
{
    wire_put_u64(sb, t->parent);
    wire_put_u32(sb, t->first);
    wire_put_u32(sb, t->count);
    wire_put_u64(sb, t->size);
    wire_put_u64(sb, t->ino);
    wire_put_u64(sb, (uint64_t)t->mtime_ns);
}

bool dclone_ticket_get(struct wire_reader *r, struct dclone_ticket *t)
{
    t->parent = wire_get_u64(r);
    t->first = wire_get_u32(r);
    t->count = wire_get_u32(r);
    t->size = wire_get_u64(r);
    t->ino = wire_get_u64(r);
    t->mtime_ns = (int64_t)wire_get_u64(r);
    if (!r->why && (t->count == 0 || t->count > DCLONE_RANGES_MAX || t->first > UINT32_MAX - t->count))
        wire_fail(r, "bad range ticket");
    return !r->why;
}

void dclone_ticket_tmp(const struct dclone_ticket *t, char *out, size_t cap)
{
    snprintf(out, cap, ".haul-range.%016" PRIx64 ".%u", t->parent, t->first);
}

uint64_t dclone_ticket_finish_id(const struct dclone_ticket *t)
{
    return dist_unit_child_id(dist_unit_child_id(t->parent, t->first) ^ 0x66696e697368ULL, t->count);
}

void dclone_ticket_stat(const struct dclone_ticket *t, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_size = (off_t)t->size;
    st->st_ino = (ino_t)t->ino;
    st->st_mtim.tv_sec = t->mtime_ns / 1000000000LL;
    st->st_mtim.tv_nsec = t->mtime_ns % 1000000000LL;
}

/* ---- counters ---- */

#define FIELDS(X)                                                                                     \
    X(files) X(dirs) X(symlinks) X(others) X(bytes_seen) X(copied) X(bytes_copied) X(up_to_date)      \
    X(meta_updated) X(hardlinks) X(skipped_atime) X(skipped_mtime) X(deleted) X(dirtimes) X(failed)

void dclone_counters_get(const struct clone_stats *s, uint64_t *out)
{
    size_t i = 0;
#define GET(f) out[i++] = atomic_load(&s->f);
    FIELDS(GET)
#undef GET
}

void dclone_counters_add(struct clone_stats *s, const uint64_t *c, size_t n)
{
    size_t i = 0;
#define ADD(f)                                                                                        \
    if (i < n)                                                                                        \
        atomic_fetch_add(&s->f, c[i]);                                                                \
    i++;
    FIELDS(ADD)
#undef ADD
}

int dclone_prefix(const char *job, char *out, size_t cap, haul_error *err)
{
    size_t n = strlen(job);
    if (n == 0 || n > 64)
        return err_set(err, HAUL_EUSAGE, "--job '%.64s': want 1 to 64 characters of A-Z a-z 0-9 . _ : -", job);
    for (size_t i = 0; i < n; i++) {
        char c = job[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-' || c == ':'))
            return err_set(err, HAUL_EUSAGE, "--job '%.64s': want 1 to 64 characters of A-Z a-z 0-9 . _ : -", job);
    }
    snprintf(out, cap, "haul.%s", job);
    return 0;
}

/* ---- the coordinator ---- */



/* ---- the coordinator's side of large files in ranges ---- */

/* A ticket whose ranges are being copied: finished (FINISH published) once
 * its own result and all its ranges' results came, in whatever order. */
struct range_group {
    struct dclone_ticket t;
    char *path;          /* NULL until the ticket's own result came */
    unsigned char *seen; /* a bit per range reported (a redone range counts once) */
    uint32_t done;       /* bits set */
    struct range_group *next;
};

struct ranges {
    struct range_group *head; /* in flight: few (large files being copied) */
    struct dist_queue *q;
    struct dist_tracker *tracker;
    struct clone_stats *stats;
    const char *run;
    unsigned published; /* FINISH units not yet flushed */
    uint64_t files, ranges; /* finished so far, for the log */
};

static struct range_group *group_get(struct ranges *g, const struct dclone_ticket *t)
{
    for (struct range_group *x = g->head; x; x = x->next)
        if (x->t.parent == t->parent && x->t.first == t->first && x->t.count == t->count &&
            x->t.size == t->size && x->t.ino == t->ino && x->t.mtime_ns == t->mtime_ns) /* the whole ticket */
            return x;
    struct range_group *x = calloc(1, sizeof *x);
    if (x && !(x->seen = calloc((t->count + 7) / 8, 1))) {
        free(x);
        x = NULL;
    }
    if (x) {
        x->t = *t;
        x->next = g->head;
        g->head = x;
    }
    return x;
}

static void group_drop(struct ranges *g, struct range_group *x)
{
    for (struct range_group **pp = &g->head; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    free(x->path);
    free(x->seen);
    free(x);
}

static int group_maybe_finish(struct ranges *g, struct range_group *x, haul_error *err)
{
    if (!x->path || x->done < x->t.count)
        return 0;
    struct strbuf ticket = STRBUF_INIT, sb = STRBUF_INIT;
    dclone_ticket_put(&ticket, &x->t);
    const char *path = x->path;
    struct dist_unit u = {.id = dclone_ticket_finish_id(&x->t), .pass = DIST_PASS_COPY, .kind = DIST_UNIT_FINISH,
                          .npaths = 1, .paths = &path, .payload = ticket.s, .payload_len = ticket.len};
    snprintf(u.job_id, sizeof u.job_id, "%s", g->run);
    int rc = ticket.failed ? err_set(err, HAUL_ENOMEM, "out of memory") : dist_unit_encode(&u, &sb, err);
    if (rc == 0)
        rc = dist_publish(g->q, sb.s, sb.len, err);
    if (rc == 0)
        rc = dist_tracker_expect(g->tracker, u.id, err);
    if (rc == 0) {
        g->published++;
        g->files++;
        g->ranges += x->t.count;
    }
    strbuf_release(&ticket);
    strbuf_release(&sb);
    group_drop(g, x);
    return rc;
}

/* The payload of a result seen for the first time: tickets of files split
 * into ranges, or one range done. */
static int ranges_take(struct ranges *g, const void *payload, size_t len, haul_error *err)
{
    struct wire_reader r = {payload, len, NULL};
    unsigned type = wire_get_u8(&r);
    uint32_t n = type == DCLONE_PAYLOAD_SPLITS ? wire_get_u32(&r) : 1;
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0 && !r.why; i++) {
        struct dclone_ticket t;
        const unsigned char *p = NULL;
        size_t pn = 0;
        if (!dclone_ticket_get(&r, &t))
            break;
        const char *why = NULL;
        if (type == DCLONE_PAYLOAD_SPLITS && (pn = wire_get_str(&r, &p), !r.why) &&
            dist_path_check((const char *)p, pn, &why) < 0)
            wire_fail(&r, why);
        uint32_t index = type == DCLONE_PAYLOAD_RANGE_DONE ? wire_get_u32(&r) : 0;
        if (!r.why && index >= t.count)
            wire_fail(&r, "range index out of the ticket");
        if (r.why || (type != DCLONE_PAYLOAD_SPLITS && type != DCLONE_PAYLOAD_RANGE_DONE))
            break;
        struct range_group *x = group_get(g, &t);
        if (!x)
            return err_set(err, HAUL_ENOMEM, "out of memory");
        if (type == DCLONE_PAYLOAD_RANGE_DONE && !(x->seen[index / 8] & (1u << (index % 8)))) {
            x->seen[index / 8] |= (unsigned char)(1u << (index % 8));
            x->done++;
        }
        else if (!x->path && !(x->path = strndup((const char *)p, pn)))
            return err_set(err, HAUL_ENOMEM, "out of memory");
        rc = group_maybe_finish(g, x, err);
    }
    if (r.why || (type != DCLONE_PAYLOAD_SPLITS && type != DCLONE_PAYLOAD_RANGE_DONE))
        log_warn("%s: a result's payload was not understood (%s): ignored", dist_queue_url(g->q),
                 r.why ? r.why : "unknown type");
    return rc;
}

static void ranges_release(struct ranges *g)
{
    while (g->head)
        group_drop(g, g->head);
}

/* A unit counted done (once per unit of this pass): its counters, and
 * the tickets or range reports its payload carries. */
static int unit_done(const struct dist_done *d, void *ctx, haul_error *err)
{
    struct ranges *g = ctx;
    dclone_counters_add(g->stats, d->counters, d->ncounters);
    return d->payload_len ? ranges_take(g, d->payload, d->payload_len, err) : 0;
}

static const char *pass_name(enum dist_pass p)
{
    return p == DIST_PASS_COPY ? "copy" : p == DIST_PASS_DELETE ? "delete" : "dirtimes";
}

static int run_pass(const struct dclone_opts *o, struct dist_queue *q, enum dist_pass pass,
                    struct dclone_spec *spec, struct clone_stats *stats, haul_error *err)
{
    uint64_t base = dist_random_id();
    snprintf(spec->run, sizeof spec->run, "%016" PRIx64, dist_random_id());
    spec->pass = pass;
    dist_queue_set_run(q, spec->run); /* what the description, seed and FINISH units are signed for */
    struct strbuf sb = STRBUF_INIT;
    int rc = dclone_spec_encode(spec, &sb, err);
    if (rc == 0)
        rc = dist_job_put(q, sb.s, sb.len, err);
    strbuf_reset(&sb);
    const char *root = ".";
    struct dist_unit u = {.id = base, .pass = pass, .kind = DIST_UNIT_SCAN_DIR, .npaths = 1, .paths = &root};
    snprintf(u.job_id, sizeof u.job_id, "%s", spec->run);
    if (rc == 0)
        rc = dist_unit_encode(&u, &sb, err);
    if (rc == 0)
        rc = dist_publish(q, sb.s, sb.len, err);
    if (rc == 0)
        rc = dist_flush(q, 60000, err);
    strbuf_release(&sb);
    if (rc < 0)
        return rc;
    log_info("dclone: %s pass, run %s, root unit %016" PRIx64, pass_name(pass), spec->run, base);

    struct ranges g = {.q = q, .stats = stats, .run = spec->run};
    struct dist_tracker *t = g.tracker = dist_tracker_new(unit_done, &g);
    rc = t ? dist_tracker_expect(t, base, err) : err_set(err, HAUL_ENOMEM, "out of memory");
    struct dist_waiter w = {.q = q, .cancel = o->clone->cancel, .no_worker = o->waiting, .ctx = o->ctx,
                            .run = spec->run, .refuse_timeout_s = o->refuse_timeout_s};
    while (rc == 0 && dist_tracker_outstanding(t) > 0) {
        struct dist_msg m;
        struct dist_result r;
        int got = dist_wait_result(&w, 1000, &m, &r, err);
        if (got <= 0) {
            rc = got;
            continue;
        }
        /* Counters go with the first unit (workers send one unit per
         * result), and a payload only with a result's one unit. */
        for (size_t i = 0; i < r.nunits && rc == 0; i++) {
            struct dist_done d = {.id = r.units[i].unit_id, .counters = r.counters,
                                  .ncounters = i == 0 ? r.ncounters : 0,
                                  .payload = r.nunits == 1 ? r.payload : NULL,
                                  .payload_len = r.nunits == 1 ? r.payload_len : 0};
            rc = dist_tracker_done(t, &d, r.units[i].child_base, r.units[i].children, err);
        }
        dist_result_release(&r);
        if (rc == 0 && g.published) { /* FINISH units out for good before the result goes */
            rc = dist_flush(q, 120000, err);
            g.published = 0;
        }
        if (rc == 0)
            rc = dist_ack(q, &m, err);
    }
    log_info("dclone: %s pass: %" PRIu64 " units done", pass_name(pass), t ? dist_tracker_done_count(t) : 0);
    if (g.files)
        log_info("dclone: %s pass: %" PRIu64 " large files copied in %" PRIu64 " RANGE units", pass_name(pass),
                 g.files, g.ranges);
    ranges_release(&g);
    dist_tracker_free(t);
    return rc;
}

/* The delete pass behind its guards, as a local clone's: SRC's identity,
 * then with --max-delete a pass that only counts, then the one that
 * removes.  (Between the two, only the local clone also caps removals.) */
static int delete_pass(const struct dclone_opts *o, struct dist_queue *q, struct clone *c, struct dclone_spec *spec,
                       struct clone_stats *stats, haul_error *err)
{
    int rc = clone_delete_guard(c, err);
    if (rc == 0 && o->clone->max_delete_set) {
        struct clone_stats counted = {0};
        spec->count_only = true;
        rc = run_pass(o, q, DIST_PASS_DELETE, spec, &counted, err);
        spec->count_only = false;
        if (rc == 0)
            rc = clone_delete_limit(o->clone, atomic_load(&counted.deleted), err);
    }
    return rc < 0 ? rc : run_pass(o, q, DIST_PASS_DELETE, spec, stats, err);
}

int dclone_run(const struct dclone_opts *o, struct clone_stats *stats, haul_error *err)
{
    const struct clone_opts *co = o->clone;
    if (co->dry_run)
        return err_set(err, HAUL_EUSAGE, "--dry-run is not available with --broker");
    if (o->nexcludes > DCLONE_EXCLUDES_MAX)
        return err_set(err, HAUL_EUSAGE, "at most %d --exclude with --broker", DCLONE_EXCLUDES_MAX);
    char prefix[DIST_PREFIX_MAX + 1];
    if (dclone_prefix(o->job, prefix, sizeof prefix, err) < 0)
        return -HAUL_EUSAGE;
    if ((co->passes & CLONE_PASS_COPY) && fs_mkdir_p(co->dst, 0755, err) < 0)
        return -HAUL_EIO;
    /* Opens and checks the roots (overlap, existence) as a local clone does. */
    struct clone_opts local = *co;
    local.passes = 0;
    struct clone *c = clone_new(&local, stats, err);
    if (!c)
        return err->code ? -err->code : -HAUL_EIO;
    struct dclone_spec *spec = calloc(1, sizeof *spec);
    int dst_fd = open(clone_dst_abs(c), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    if (!spec)
        rc = err_set(err, HAUL_ENOMEM, "out of memory");
    else if (dst_fd < 0)
        rc = err_errno(err, errno, "%s", clone_dst_abs(c));
    if (rc == 0) {
        snprintf(spec->src, sizeof spec->src, "%s", clone_src_abs(c));
        snprintf(spec->dst, sizeof spec->dst, "%s", clone_dst_abs(c));
        spec->checksum = co->checksum;
        spec->xattrs = co->xattrs;
        spec->fsync = co->fsync;
        spec->one_filesystem = co->one_filesystem;
        spec->now = co->now ? co->now : time(NULL);
        spec->skip_atime_older_days = co->skip_atime_older_days;
        spec->skip_mtime_newer_secs = co->skip_mtime_newer_secs;
        spec->parallel_threshold = co->parallel_threshold ? co->parallel_threshold : 256ull << 20;
        spec->chunk = co->chunk;
        spec->range_size = o->range_size;
        for (size_t i = 0; i < o->nexcludes; i++)
            snprintf(spec->excludes[spec->nexcludes++], sizeof spec->excludes[0], "%s", o->excludes[i]);
        spec->src_id = *clone_src_id(c);
        snprintf(spec->registry, sizeof spec->registry, "%s.%016" PRIx64, DCLONE_REGISTRY, dist_random_id());
    }
    struct dist_queue_opts qo = {.prefix = prefix, .consume = DIST_CONSUME(DIST_RESULTS), .prefetch = 1024,
                                 .key = o->key};
    struct dist_queue *q = rc == 0 ? dist_queue_open(o->broker_url, &qo, err) : NULL;
    if (rc == 0 && !q)
        rc = -HAUL_ENET;
    unsigned passes = co->passes;
    if (passes & CLONE_PASS_COPY)
        passes |= CLONE_PASS_DIRTIMES; /* directory metadata is set there only */
    if (rc == 0 && (passes & CLONE_PASS_COPY)) {
        /* A registry of this run's own (one left by a killed run is not
         * SRC's: the delete pass removes it). */
        if (fs_mkdir(dst_fd, spec->registry, 0700, err) < 0) {
            err_prefix(err, "%s/%s: ", clone_dst_abs(c), spec->registry);
            rc = -HAUL_EIO;
        }
        if (rc == 0)
            rc = run_pass(o, q, DIST_PASS_COPY, spec, stats, err);
        haul_error rerr = {0}; /* removed whatever happened: it is nobody's once the pass is over */
        if (fs_remove(dst_fd, spec->registry, &rerr) < 0 && rc == 0)
            rc = err_set(err, rerr.code, "%s/%s: %s", clone_dst_abs(c), spec->registry, rerr.msg);
    }
    if (rc == 0 && (passes & CLONE_PASS_DELETE))
        rc = delete_pass(o, q, c, spec, stats, err);
    if (rc == 0 && (passes & CLONE_PASS_DIRTIMES))
        rc = run_pass(o, q, DIST_PASS_DIRTIMES, spec, stats, err);
    if (rc == 0)
        clone_src_record(c);
    dist_queue_free(q);
    if (dst_fd >= 0)
        close(dst_fd);
    free(spec);
    clone_free(c);
    uint64_t failed = atomic_load(&stats->failed);
    if (rc == 0 && failed)
        rc = err_set(err, HAUL_EIO, "%llu entr%s could not be copied (the workers' logs name them)",
                     (unsigned long long)failed, failed == 1 ? "y" : "ies");
    return rc;
}

/* dist/dist: the transport-independent front of the work queue (dist.h):
 * argument checks, option defaults, URL helpers, dispatch to a transport. */
#include "dist/internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <string.h>

#include "dist/auth.h"
#include "util/err.h"
#include "util/log.h"

static const char *const kind_suffix[DIST_KINDS] = {"work", "dead", "results", "control"};

static bool prefix_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > DIST_PREFIX_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == ':'))
            return false;
    }
    return true;
}

int dist_opts_fill(struct dist_queue *q, const struct dist_queue_opts *o, const char *prefix,
                   haul_error *err)
{
    static const struct dist_queue_opts none = {0};
    if (!o)
        o = &none;
    if (!prefix)
        prefix = o->prefix ? o->prefix : "haul";
    if (!prefix_ok(prefix))
        return err_set(err, HAUL_EUSAGE,
                       "queue prefix '%.64s': want 1-%d characters of A-Z a-z 0-9 . _ : -",
                       prefix, DIST_PREFIX_MAX);
    if (o->consume & ~((1u << DIST_KINDS) - 1))
        return err_set(err, HAUL_EUSAGE, "queue options: unknown consume bits 0x%x", o->consume);
    snprintf(q->prefix, sizeof q->prefix, "%s", prefix);
    q->opts = *o;
    q->opts.prefix = q->prefix;
    if (!q->opts.prefetch)
        q->opts.prefetch = 64;
    if (!q->opts.capacity)
        q->opts.capacity = 4096;
    if (!q->opts.confirm_window)
        q->opts.confirm_window = 256;
    if (!q->opts.heartbeat_s)
        q->opts.heartbeat_s = 30;
    if (q->opts.prefetch > 65535)
        q->opts.prefetch = 65535; /* basic.qos prefetch-count is a short */
    return 0;
}

void dist_queue_name(const struct dist_queue *q, enum dist_kind kind, char *out, size_t n)
{
    snprintf(out, n, "%s.%s", q->prefix, kind_suffix[kind]);
}

void dist_url_redact(const char *url, char *out, size_t n)
{
    /* scheme://user:pass@rest -> scheme://user@rest; the password is
     * between the first ':' after "//" and the last '@' before the path. */
    const char *start = strstr(url, "://");
    start = start ? start + 3 : url;
    const char *slash = strchr(start, '/');
    const char *at = NULL;
    for (const char *p = start; *p && (!slash || p < slash); p++)
        if (*p == '@')
            at = p;
    const char *colon = NULL;
    if (at)
        for (const char *p = start; p < at; p++)
            if (*p == ':') {
                colon = p;
                break;
            }
    if (!colon) {
        snprintf(out, n, "%s", url);
        return;
    }
    snprintf(out, n, "%.*s%s", (int)(colon - url), url, at);
}

const char *dist_broker_url_from_env(void)
{
    const char *u = getenv("HAUL_BROKER");
    return u && *u ? u : NULL;
}

struct dist_queue *dist_queue_open(const char *broker_url, const struct dist_queue_opts *o,
                                   haul_error *err)
{
    if (!broker_url || !*broker_url)
        return dist_mem_open(o, err);
    return dist_amqp_open(broker_url, o, err);
}

struct dist_queue *dist_queue_clone(struct dist_queue *q, const struct dist_queue_opts *o,
                                    haul_error *err)
{
    if (!o)
        o = &q->opts;
    return q->ops->clone(q, o, err);
}

void dist_queue_free(struct dist_queue *q)
{
    if (q)
        q->ops->free(q);
}

const char *dist_queue_url(const struct dist_queue *q) { return q->url; }

void dist_queue_set_run(struct dist_queue *q, const char *run)
{
    snprintf(q->run, sizeof q->run, "%s", run ? run : "");
}

/* The envelope's kind byte of a queue kind (dead letters are work units). */
static char seal_kind(enum dist_kind kind)
{
    return kind == DIST_RESULTS ? 'R' : kind == DIST_CONTROL ? 'C' : 'W';
}

static const char *kind_words(char kind)
{
    return kind == 'R' ? "result" : kind == 'C' ? "control message" : kind == 'J' ? "job description" : "work unit";
}

/* Why a message taken from a queue cannot be used, or NULL (then *body,
 * *blen and run give the message inside its envelope). */
static const char *unwrap(const struct dist_queue *q, char kind, const void *buf, size_t len, char *run,
                          const void **body, size_t *blen)
{
    const char *why = NULL;
    run[0] = '\0';
    *body = buf;
    *blen = len;
    if (!q->opts.key)
        return dist_sealed(buf, len) ? "is signed, and this side has no --key-file to check it" : NULL;
    return dist_unseal(q->opts.key, q->prefix, kind, buf, len, run, body, blen, &why) < 0 ? why : NULL;
}

/* Said once per kind in the process, not per message: a flood of forged
 * messages must not become a flood of log lines. */
static void drop_say(const struct dist_queue *q, char kind, const char *why)
{
    static atomic_bool said[4];
    int i = kind == 'W' ? 0 : kind == 'R' ? 1 : kind == 'C' ? 2 : 3;
    if (!atomic_exchange(&said[i], true))
        log_warn("%s: dropping a %s that %s (said once; others like it are dropped silently)", q->url,
                 kind_words(kind), why);
}

int dist_publish(struct dist_queue *q, const void *body, size_t len, haul_error *err)
{
    return dist_publish_to(q, DIST_WORK, body, len, err);
}

int dist_publish_to(struct dist_queue *q, enum dist_kind kind, const void *body, size_t len,
                    haul_error *err)
{
    if (kind != DIST_WORK && kind != DIST_RESULTS && kind != DIST_CONTROL)
        return err_set(err, HAUL_EUSAGE, "%s: cannot publish to queue kind %d", q->url, (int)kind);
    if (len > DIST_MSG_MAX)
        return err_set(err, HAUL_EUSAGE, "%s: message of %zu bytes is over the %u byte limit",
                       q->url, len, DIST_MSG_MAX);
    if (!q->opts.key)
        return q->ops->publish(q, kind, body, len, err);
    struct strbuf sb = STRBUF_INIT;
    int rc = dist_seal(q->opts.key, q->prefix, seal_kind(kind), q->run, body, len, &sb, err);
    if (rc == 0)
        rc = q->ops->publish(q, kind, sb.s, sb.len, err);
    strbuf_release(&sb);
    return rc;
}

int dist_flush(struct dist_queue *q, int timeout_ms, haul_error *err)
{
    return q->ops->flush(q, timeout_ms, err);
}

int dist_next(struct dist_queue *q, struct dist_msg *out, int timeout_ms, haul_error *err)
{
    if (!q->opts.consume)
        return err_set(err, HAUL_EUSAGE, "%s: dist_next on a handle that consumes nothing",
                       q->url);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        memset(out, 0, sizeof *out);
        int rc = q->ops->next(q, out, timeout_ms, err);
        if (rc <= 0 || out->kind == DIST_DEAD)
            return rc; /* dead letters are for people to read, as they are */
        char kind = seal_kind(out->kind);
        const char *why = unwrap(q, kind, out->body, out->len, out->run, &out->body, &out->len);
        if (!why)
            return 1;
        drop_say(q, kind, why);
        /* A unit to the dead-letter queue, anything else dropped. */
        if ((rc = q->ops->settle(q, out, false, false, err)) < 0)
            return rc;
        if (timeout_ms > 0) { /* what is left of the wait */
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            long spent = (long)(t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
            if (spent >= timeout_ms)
                return 0;
            timeout_ms -= (int)spent;
            t0 = t;
        }
    }
}

int dist_poll(struct dist_queue *q, haul_error *err) { return q->ops->poll(q, err); }

int dist_ack(struct dist_queue *q, struct dist_msg *msg, haul_error *err)
{
    return q->ops->settle(q, msg, true, false, err);
}

int dist_reject(struct dist_queue *q, struct dist_msg *msg, bool requeue, haul_error *err)
{
    return q->ops->settle(q, msg, false, requeue, err);
}

int dist_queue_depth(struct dist_queue *q, enum dist_kind kind, struct dist_depth *out,
                     haul_error *err)
{
    if ((int)kind < 0 || kind >= DIST_CONTROL)
        return err_set(err, HAUL_EUSAGE, "%s: no depth for queue kind %d", q->url, (int)kind);
    memset(out, 0, sizeof *out);
    return q->ops->depth(q, kind, out, err);
}

int dist_queue_delete(struct dist_queue *q, haul_error *err) { return q->ops->destroy(q, err); }

int dist_job_put(struct dist_queue *q, const void *body, size_t len, haul_error *err)
{
    if (len > DIST_MSG_MAX)
        return err_set(err, HAUL_EUSAGE, "%s: job description of %zu bytes is over the %u byte limit",
                       q->url, len, DIST_MSG_MAX);
    if (!q->opts.key)
        return q->ops->job_put(q, body, len, err);
    struct strbuf sb = STRBUF_INIT;
    int rc = dist_seal(q->opts.key, q->prefix, 'J', q->run, body, len, &sb, err);
    if (rc == 0)
        rc = q->ops->job_put(q, sb.s, sb.len, err);
    strbuf_release(&sb);
    return rc;
}

int dist_job_get(struct dist_queue *q, struct strbuf *out, char *run, haul_error *err)
{
    if (q->opts.consume)
        return err_set(err, HAUL_EUSAGE, "%s: dist_job_get on a consuming handle", q->url);
    int rc = q->ops->job_get(q, out, err);
    char r[DIST_JOB_ID_MAX + 1];
    const void *body;
    size_t blen;
    const char *why = rc > 0 ? unwrap(q, 'J', out->s, out->len, r, &body, &blen) : NULL;
    if (rc <= 0)
        return rc;
    if (why)
        return err_set(err, HAUL_EAUTH, "%s: the job description in %s.job %s", q->url, q->prefix, why);
    memmove(out->s, body, blen); /* the description inside its envelope */
    out->len = blen;
    out->s[blen] = '\0';
    if (run)
        snprintf(run, DIST_JOB_ID_MAX + 1, "%s", r);
    return 1;
}

uint64_t dist_random_id(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = dist_unit_child_id((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30), (uint64_t)getpid());
    }
    return v;
}

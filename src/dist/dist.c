/* dist/dist: the transport-independent front of the work queue (dist.h):
 * argument checks, option defaults, URL helpers, dispatch to a transport. */
#include "dist/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <string.h>

#include "util/err.h"

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
    return q->ops->publish(q, kind, body, len, err);
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
    memset(out, 0, sizeof *out);
    return q->ops->next(q, out, timeout_ms, err);
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
    return q->ops->job_put(q, body, len, err);
}

int dist_job_get(struct dist_queue *q, struct strbuf *out, haul_error *err)
{
    if (q->opts.consume)
        return err_set(err, HAUL_EUSAGE, "%s: dist_job_get on a consuming handle", q->url);
    return q->ops->job_get(q, out, err);
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

/* dist/dist: the transport-independent front of the work queue (dist.h):
 * argument checks, option defaults, URL helpers, dispatch to a transport. */
#include "dist/internal.h"

#include <amqp.h>
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

/* The length of url without its query (from the first '?' on: a password
 * holding a literal '?' must write it %3F). */
size_t dist_url_base_len(const char *url) { return strcspn(url, "?"); }

/* Appends s[0..len) to out, percent-encoding the characters librabbitmq's
 * URL parser takes for delimiters, so that a password may hold them. */
static char *enc_delims(char *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (strchr(":@/?#[]", c) && c) {
            *out++ = '%';
            *out++ = hex[c >> 4];
            *out++ = hex[c & 15];
        } else {
            *out++ = (char)c;
        }
    }
    return out;
}

char *dist_url_parse(const char *url, struct amqp_connection_info *ci)
{
    /* The userinfo ends at the last '@' (a host or vhost holds no literal
     * '@'), the user name at its first ':'.  librabbitmq stops at the first
     * '/', '@' or ':' instead, which would make a password such as
     * "ab/cd@e:f" part of the host. */
    size_t base = dist_url_base_len(url);
    const char *sep = strstr(url, "://");
    const char *auth = sep && (size_t)(sep - url) < base ? sep + 3 : url;
    const char *at = NULL;
    for (const char *p = auth; p < url + base; p++)
        if (*p == '@')
            at = p;
    char *copy = malloc(base * 3 + 1);
    if (!copy)
        return NULL;
    char *o = copy;
    memcpy(o, url, (size_t)(auth - url));
    o += auth - url;
    const char *host = auth;
    if (at) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        const char *uend = colon ? colon : at;
        o = enc_delims(o, auth, (size_t)(uend - auth));
        if (colon) {
            *o++ = ':';
            o = enc_delims(o, colon + 1, (size_t)(at - colon - 1));
        }
        host = at;
    }
    memcpy(o, host, (size_t)(url + base - host));
    o[url + base - host] = 0;
    if (amqp_parse_url(copy, ci) != AMQP_STATUS_OK) {
        free(copy);
        return NULL;
    }
    return copy;
}

/* A bounded writer for the redacted form. */
struct urlbuf {
    char *out;
    size_t n, len;
};

static void ub_putc(struct urlbuf *b, char c)
{
    if (b->len + 1 < b->n)
        b->out[b->len++] = c;
    b->out[b->len < b->n ? b->len : b->n - 1] = 0;
}

static void ub_puts(struct urlbuf *b, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        ub_putc(b, s[i]);
}

/* s percent-encoded the way a URL holds it, except the characters listed
 * in keep (a host keeps its '.', a vhost its sub-delimiters). */
static void ub_enc(struct urlbuf *b, const char *s, size_t len, const char *keep)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            (c && strchr(keep, c))) {
            ub_putc(b, (char)c);
        } else {
            ub_putc(b, '%');
            ub_putc(b, hex[c >> 4]);
            ub_putc(b, hex[c & 15]);
        }
    }
}

#define URL_UNRESERVED "-._~"
#define URL_SUBDELIMS "!$&'()*+,;="

static bool points_into(const char *p, const char *buf, size_t len)
{
    return p && p >= buf && p < buf + len + 1;
}

/* A URL librabbitmq does not take: print nothing of its userinfo (up to its
 * last '@') and, without one, nothing after the first ':' of the authority
 * ("amqp://haul:PASSWORD" with the host forgotten). */
static void redact_unparsed(const char *url, size_t base, struct urlbuf *b)
{
    const char *sep = strstr(url, "://");
    const char *auth = url;
    if (sep && sep - url <= 8) {
        auth = sep + 3;
        ub_puts(b, url, (size_t)(auth - url));
    }
    const char *end = url + base;
    const char *at = NULL;
    for (const char *p = auth; p < end; p++)
        if (*p == '@')
            at = p;
    if (at) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (colon) /* the user name is what precedes the first ':' */
            ub_enc(b, auth, (size_t)(colon - auth), URL_UNRESERVED URL_SUBDELIMS);
        ub_puts(b, colon ? ":***@" : "***@", colon ? 5 : 4);
        ub_enc(b, at + 1, (size_t)(end - at - 1), URL_UNRESERVED URL_SUBDELIMS ":/[]%");
        return;
    }
    const char *colon = memchr(auth, ':', (size_t)(end - auth));
    ub_enc(b, auth, (size_t)((colon ? colon : end) - auth), URL_UNRESERVED URL_SUBDELIMS "/[]%");
    if (colon)
        ub_puts(b, ":***", 4);
}

void dist_url_redact(const char *url, char *out, size_t n)
{
    if (!n)
        return;
    struct urlbuf b = {.out = out, .n = n};
    out[0] = 0;
    struct amqp_connection_info ci;
    char *copy = dist_url_parse(url, &ci);
    if (!copy) {
        redact_unparsed(url, dist_url_base_len(url), &b);
        return;
    }
    size_t base = 3 * dist_url_base_len(url); /* copy's size; the parse wrote NULs in it */
    /* Built from what librabbitmq understood, so what it will use as the
     * password is never printed, whatever characters it holds. */
    ub_puts(&b, ci.ssl ? "amqps://" : "amqp://", ci.ssl ? 8 : 7);
    if (points_into(ci.user, copy, base)) {
        ub_enc(&b, ci.user, strlen(ci.user), URL_UNRESERVED URL_SUBDELIMS);
        if (points_into(ci.password, copy, base))
            ub_puts(&b, ":***", 4);
        ub_putc(&b, '@');
    }
    bool v6 = strchr(ci.host, ':') != NULL;
    if (v6)
        ub_putc(&b, '[');
    ub_enc(&b, ci.host, strlen(ci.host), URL_UNRESERVED ":");
    if (v6)
        ub_putc(&b, ']');
    char port[16];
    snprintf(port, sizeof port, ":%d", ci.port);
    ub_puts(&b, port, strlen(port));
    if (points_into(ci.vhost, copy, base)) {
        ub_putc(&b, '/');
        ub_enc(&b, ci.vhost, strlen(ci.vhost), URL_UNRESERVED URL_SUBDELIMS ":@");
    }
    free(copy);
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

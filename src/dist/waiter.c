/* dist/waiter: see waiter.h. */
#include "dist/waiter.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util/err.h"
#include "util/log.h"
#include "util/wire.h"

/* Three idle seconds in a row with nobody consuming the work: say so once
 * (a coordinator started before its workers waits for them, quietly
 * otherwise). */
static void idle_check(struct dist_waiter *w)
{
    if (w->refusals)
        return; /* workers are attached, refusing: refused_check tells */
    struct dist_depth d;
    haul_error derr = {0};
    if (++w->idle >= 3 && !w->told && dist_queue_depth(w->q, DIST_WORK, &d, &derr) == 0 && d.consumers == 0) {
        w->told = true;
        if (w->no_worker)
            w->no_worker(w->ctx);
    }
}

/* Units dead-lettered since the run started are units nobody will do (a
 * worker with another --key-file, or forged ones): say so once, with where
 * to look, while waiting idle. */
static void dead_check(struct dist_waiter *w)
{
    struct dist_depth d;
    haul_error derr = {0};
    if (w->dead_told || w->dead_at_start < 0 || w->idle < 10 || w->idle % 10 != 0 ||
        dist_queue_depth(w->q, DIST_DEAD, &d, &derr) < 0 || (int64_t)d.ready <= w->dead_at_start)
        return;
    w->dead_told = true;
    log_warn("%s: %lld unit(s) went to the dead-letter queue during this run: a worker could not use them "
             "(its log says why: malformed, or signed with another --key-file); the run waits for them",
             dist_queue_url(w->q), (long long)((int64_t)d.ready - w->dead_at_start));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Adds text to a table of distinct strings (full: the last slot is kept).
 * True when it was new. */
static bool note(char (*table)[DIST_NODE_MAX + 600], unsigned *n, unsigned cap, const char *text)
{
    for (unsigned i = 0; i < *n; i++)
        if (strcmp(table[i], text) == 0)
            return false;
    if (*n < cap)
        snprintf(table[(*n)++], sizeof table[0], "%s", text);
    return true;
}

/* A refusal (see DIST_REFUSAL): true when res is one (then noted). */
static bool refusal_take(struct dist_waiter *w, const struct dist_result *res)
{
    const unsigned char *p = res->payload;
    if (res->nunits != 0 || res->payload_len < 1 || p[0] != DIST_REFUSAL)
        return false;
    struct wire_reader r = {p + 1, res->payload_len - 1, NULL};
    const unsigned char *why;
    size_t n = wire_get_str(&r, &why);
    int len = r.why ? 0 : (int)n;
    const char *text = r.why ? "" : (const char *)why;
    if (!w->refusals++)
        w->refused_since = now_s();
    /* Said once per node and reason (its threads are "node/N"). */
    char node[DIST_NODE_MAX + 1], line[DIST_NODE_MAX + 600];
    snprintf(node, sizeof node, "%s", res->worker);
    char *slash = strrchr(node, '/');
    if (slash)
        *slash = '\0';
    snprintf(line, sizeof line, "worker %s: %.*s", node, len, text);
    note(w->reasons, &w->nreasons, DIST_REFUSE_REASONS, line);
    if (note(w->logged, &w->nlogged, sizeof w->logged / sizeof *w->logged, line))
        log_warn("%s: worker %s refuses the job's units (another worker may take them): %.*s",
                 dist_queue_url(w->q), node, len, text);
    return true;
}

/* After refusals: has any worker taken a unit within the timeout? */
static int refused_check(struct dist_waiter *w, haul_error *err)
{
    int limit = w->refuse_timeout_s > 0 ? w->refuse_timeout_s : DIST_REFUSE_TIMEOUT_S;
    if (!w->refusals || now_s() - w->refused_since < limit)
        return 0;
    char all[DIST_REFUSE_REASONS * 420];
    size_t off = 0;
    all[0] = '\0';
    for (unsigned i = 0; i < w->nreasons && off < sizeof all; i++)
        off += (size_t)snprintf(all + off, sizeof all - off, "%s%.400s", i ? "; " : "", w->reasons[i]);
    return err_set(err, HAUL_EINTEGRITY, "no worker took the job in %d s (--refuse-timeout): %s; nothing more "
                   "was done (fix those nodes, start a worker that may serve the job, or stop them, then run "
                   "again)", limit, all);
}

int dist_wait_result(struct dist_waiter *w, int timeout_ms, struct dist_msg *msg, struct dist_result *res,
                     haul_error *err)
{
    if (!w->started) {
        struct dist_depth d;
        haul_error derr = {0};
        w->started = true;
        w->dead_at_start = dist_queue_depth(w->q, DIST_DEAD, &d, &derr) == 0 ? (int64_t)d.ready : -1;
    }
    for (;;) {
        if (w->cancel && atomic_load(w->cancel))
            return err_set(err, HAUL_ECANCELED, "interrupted (run the same command again to finish)");
        if (refused_check(w, err) < 0)
            return -HAUL_EINTEGRITY;
        int got = dist_next(w->q, msg, timeout_ms, err);
        if (got <= 0) {
            if (got == 0 && timeout_ms > 0) {
                idle_check(w);
                dead_check(w);
            }
            return got;
        }
        w->idle = 0;
        if (w->run && msg->run[0] && strcmp(msg->run, w->run) != 0) {
            int rc = dist_ack(w->q, msg, err); /* a result of another run: over, or forged */
            if (rc < 0)
                return rc;
            continue;
        }
        haul_error rerr = {0};
        if (dist_result_decode(msg->body, msg->len, res, &rerr) == 0 && refusal_take(w, res)) {
            dist_result_release(res);
            int rc = dist_ack(w->q, msg, err);
            if (rc < 0)
                return rc;
            continue;
        }
        if (!rerr.code) {
            w->refusals = w->nreasons = 0; /* a worker is doing the job */
            return 1;
        }
        log_warn("%s: dropping a malformed result: %s", dist_queue_url(w->q), rerr.msg);
        int rc = dist_reject(w->q, msg, false, err);
        if (rc < 0)
            return rc;
    }
}

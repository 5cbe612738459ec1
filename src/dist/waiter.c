/* dist/waiter: see waiter.h. */
#include "dist/waiter.h"

#include <stdio.h>
#include <string.h>

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
    snprintf(w->refused, sizeof w->refused, "%s: %.*s", res->worker, len, text);
    w->refusals++;
    /* Logged once per node (its threads are "node/N"). */
    char node[DIST_NODE_MAX + 1];
    snprintf(node, sizeof node, "%s", res->worker);
    char *slash = strrchr(node, '/');
    if (slash)
        *slash = '\0';
    for (unsigned i = 0; i < w->nlogged; i++)
        if (strcmp(w->logged[i], node) == 0)
            return true;
    if (w->nlogged < sizeof w->logged / sizeof *w->logged)
        snprintf(w->logged[w->nlogged++], sizeof w->logged[0], "%s", node);
    log_warn("%s: worker %s refuses the job's units (another worker may take them): %.*s", dist_queue_url(w->q),
             node, len, text);
    return true;
}

/* After a refusal: is any worker left to take the units? */
static int refused_check(struct dist_waiter *w, haul_error *err)
{
    struct dist_depth d;
    haul_error derr = {0};
    if (!w->refusals || dist_queue_depth(w->q, DIST_WORK, &d, &derr) < 0 || d.consumers > 0 ||
        ++w->unserved < DIST_REFUSED_IDLE_MAX)
        return 0;
    return err_set(err, HAUL_EINTEGRITY, "no worker took the job: worker %s; nothing more was done "
                   "(fix that node or stop its worker, then run again)", w->refused);
}

int dist_wait_result(struct dist_waiter *w, int timeout_ms, struct dist_msg *msg, struct dist_result *res,
                     haul_error *err)
{
    for (;;) {
        if (w->cancel && atomic_load(w->cancel))
            return err_set(err, HAUL_ECANCELED, "interrupted (run the same command again to finish)");
        int got = dist_next(w->q, msg, timeout_ms, err);
        if (got <= 0) {
            if (got == 0 && timeout_ms > 0)
                idle_check(w);
            if (got == 0 && timeout_ms > 0 && refused_check(w, err) < 0)
                return -HAUL_EINTEGRITY;
            return got;
        }
        w->idle = 0;
        haul_error rerr = {0};
        if (dist_result_decode(msg->body, msg->len, res, &rerr) == 0 && refusal_take(w, res)) {
            dist_result_release(res);
            int rc = dist_ack(w->q, msg, err);
            if (rc < 0)
                return rc;
            continue;
        }
        if (!rerr.code) {
            w->refusals = w->unserved = 0; /* a worker is doing the job */
            return 1;
        }
        log_warn("%s: dropping a malformed result: %s", dist_queue_url(w->q), rerr.msg);
        int rc = dist_reject(w->q, msg, false, err);
        if (rc < 0)
            return rc;
    }
}

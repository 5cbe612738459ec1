/* dist/waiter: see waiter.h. */
#include "dist/waiter.h"

#include "util/err.h"
#include "util/log.h"

/* Three idle seconds in a row with nobody consuming the work: say so once
 * (a coordinator started before its workers waits for them, quietly
 * otherwise). */
static void idle_check(struct dist_waiter *w)
{
    struct dist_depth d;
    haul_error derr = {0};
    if (++w->idle >= 3 && !w->told && dist_queue_depth(w->q, DIST_WORK, &d, &derr) == 0 && d.consumers == 0) {
        w->told = true;
        if (w->no_worker)
            w->no_worker(w->ctx);
    }
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
            return got;
        }
        w->idle = 0;
        haul_error rerr = {0};
        if (dist_result_decode(msg->body, msg->len, res, &rerr) == 0)
            return 1;
        log_warn("%s: dropping a malformed result: %s", dist_queue_url(w->q), rerr.msg);
        int rc = dist_reject(w->q, msg, false, err);
        if (rc < 0)
            return rc;
    }
}

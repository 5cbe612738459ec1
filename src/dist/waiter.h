/* dist/waiter: a coordinator's wait for results, shared by the distributed
 * jobs (job/dclone, job/dbackup): interruption, the "no worker attached"
 * notice, and results that cannot be decoded (logged and dropped). */
#ifndef DIST_WAITER_H
#define DIST_WAITER_H

#include <haul/error.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "dist/dist.h"

/* A worker refusing a job (its SRC is not the coordinator's, say) sends a
 * result naming no unit whose payload is this byte and a string (wire):
 * why.  It puts the unit back and leaves the queue for a while, so that
 * another worker takes it. */
#define DIST_REFUSAL 0xf0

#define DIST_REFUSE_TIMEOUT_S 60 /* default of --refuse-timeout */
#define DIST_REFUSE_REASONS 8

struct dist_waiter {
    struct dist_queue *q;            /* consuming DIST_RESULTS */
    const atomic_bool *cancel;       /* becomes true: the wait fails with HAUL_ECANCELED */
    void (*no_worker)(void *ctx);    /* told once, when three idle waits in a row found no
                                      * consumer on the work queue (may be NULL) */
    void *ctx;
    const char *run;                 /* the run: with a key, a result signed for another
                                      * one is dropped (NULL: any) */
    int refuse_timeout_s;            /* refusals and no unit accepted for this long fail
                                      * the run; 0 = DIST_REFUSE_TIMEOUT_S */
    int idle;                        /* idle waits in a row */
    bool told;
    unsigned refusals;               /* refusals received since the last other result */
    double refused_since;            /* when the first of them came (monotonic s) */
    char reasons[DIST_REFUSE_REASONS][DIST_NODE_MAX + 600]; /* distinct "worker: why" since */
    unsigned nreasons;
    char logged[16][DIST_NODE_MAX + 600]; /* "node: why" logged (the first 16) */
    unsigned nlogged;
    int64_t dead_at_start;           /* <prefix>.dead's depth at the first wait; -1 unknown */
    bool dead_told;                  /* its growth was said */
    bool started;
};

/* Waits up to timeout_ms for the next result: 1 with *msg and *res (the
 * caller releases res and acks or rejects msg), 0 when none came, < 0 when
 * the queue failed or the run was interrupted.  Refusals are taken here:
 * logged as they come (once per node and reason), and once one came, when
 * refuse_timeout_s pass without any other result, the run fails
 * (HAUL_EINTEGRITY, naming every reason): the units would wait forever.
 * Results of another run (with a key) are dropped here.  When the
 * dead-letter queue grew during the run (units a worker could not use:
 * malformed, or not verifying with its key), that is said once, after ten
 * idle waits: those units will never be done. */
int dist_wait_result(struct dist_waiter *w, int timeout_ms, struct dist_msg *msg, struct dist_result *res,
                     haul_error *err);

#endif

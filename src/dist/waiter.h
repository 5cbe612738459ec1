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

struct dist_waiter {
    struct dist_queue *q;            /* consuming DIST_RESULTS */
    const atomic_bool *cancel;       /* becomes true: the wait fails with HAUL_ECANCELED */
    void (*no_worker)(void *ctx);    /* told once, when three idle waits in a row found no
                                      * consumer on the work queue (may be NULL) */
    void *ctx;
    int idle;                        /* idle waits in a row */
    bool told;
    unsigned refusals;               /* refusals received since the last other result */
    unsigned unserved;               /* idle waits since then that found no consumer */
    char refused[DIST_NODE_MAX + 600]; /* the last one: "worker: why" */
    char logged[16][DIST_NODE_MAX + 1]; /* nodes whose refusal was logged (the first 16) */
    unsigned nlogged;
};

/* After a refusal, this many idle waits (about a second each) finding no
 * consumer on the work queue, with no other result in between, fail the
 * run: no worker left can take the units (a refusing one leaves the queue
 * for a while after each refusal). */
#define DIST_REFUSED_IDLE_MAX 10

/* Waits up to timeout_ms for the next result: 1 with *msg and *res (the
 * caller releases res and acks or rejects msg), 0 when none came, < 0 when
 * the queue failed or the run was interrupted.  Refusals are taken here:
 * logged (a worker's first), and once one came, DIST_REFUSED_IDLE_MAX idle
 * waits finding no consumer on the work queue (no other result in between)
 * fail the run (HAUL_EINTEGRITY, naming the refusal): the units would wait
 * forever. */
int dist_wait_result(struct dist_waiter *w, int timeout_ms, struct dist_msg *msg, struct dist_result *res,
                     haul_error *err);

#endif

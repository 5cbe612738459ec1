/* job/worker: a worker of distributed clones and backups (`haul worker`), and the
 * control side (`haul ctl`).
 *
 * A worker serves one job name (queues haul.<job>.*) with N threads, each
 * with its own broker connection consuming <prefix>.work (prefetch 8), and
 * one more connection on the control fanout.  It does not know SRC or DST
 * when it starts: the job description (dclone.h) is read from the broker
 * when a unit names a run it has not seen.  Per unit: decode (malformed:
 * rejected to <prefix>.dead with a log line), do it (a SCAN_DIR publishes
 * its children), publish its result; the results of up to 8 units done in
 * a row are flushed together (one confirm round trip) and only then are
 * those units acked; a worker that dies leaves its unacked units to the
 * others.  A job whose SRC or
 * DST cannot be opened here, or that names a path or bucket outside the
 * worker's allowed roots (--allow: SRC and DST of a clone, SRC and the
 * bucket/prefix of a backup, compared by path components after realpath),
 * is refused with a log line: the unit is requeued for another node and
 * this one backs off.  With a key, a unit whose signature names another run
 * than its own goes to the dead-letter queue, and a job description that
 * does not verify, or names another run than its signature, is refused.
 *
 * Control: STOP (all nodes, or the one named) lets every thread finish its
 * unit, then worker_run returns 0; GROW n runs n threads; STATUS is
 * answered with a dist_result on the control fanout itself (so it reaches
 * `haul ctl status`, never the coordinator's results queue): worker
 * "<name>/<threads>", no units, and the worker's totals since it started
 * as counters (a snapshot, not a delta).
 *
 * Test knobs: HAUL_TEST_UNIT_DELAY_MS=N makes every thread sleep N ms before
 * each unit (integration tests kill a worker in the middle of a run);
 * HAUL_TEST_HEARTBEAT_S=N sets the AMQP heartbeat of the threads' work
 * connections (default 60) and HAUL_TEST_PATH_DELAY_MS=N makes a unit of one
 * path sleep N ms before its copy, on the copying thread, while the unit's
 * thread keeps polling the broker (every 5 s, or half the heartbeat if
 * shorter): together they prove a unit longer than the heartbeat timeout
 * keeps its connection.  HAUL_TEST_DIE_BEFORE_SCAN_RESULT=1 makes the worker
 * SIGKILL itself after a scan published its children, before its result:
 * the scan is redone elsewhere and the first children become orphans. */
#ifndef JOB_WORKER_H
#define JOB_WORKER_H

#include <haul/error.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "dist/dist.h"
#include "s3/s3.h"

#define WORKER_THREADS_MAX 256

struct worker_opts {
    const char *broker_url;
    const struct dist_key *key; /* the jobs' secret (dist/auth.h); NULL: unsigned (--insecure-no-key) */
    const char *const *allow;   /* what jobs may name (--allow): directories, resolved by the
                                   caller (realpath), and "s3://BUCKET[/PREFIX]" */
    size_t nallow;
    bool allow_any;             /* --allow-any: every path and bucket */
    void (*serving)(const char *line, void *ctx); /* told once at start what it serves */
    void *serving_ctx;
    const char *job;          /* default "haul" */
    const char *name;         /* node name in status and logs; default host:pid */
    unsigned threads;         /* default 4 */
    const atomic_bool *cancel; /* set: stop like a STOP control */
    struct s3_client *s3;      /* for backup jobs; NULL: this worker refuses them */
};

/* Runs until stopped (control STOP or cancel).  0 on a clean stop, < 0 when
 * the broker could not be reached at start. */
int worker_run(const struct worker_opts *o, haul_error *err);

/* One worker's answer to STATUS. */
struct worker_status {
    char name[DIST_NODE_MAX + 1];
    unsigned threads;
    uint64_t units;
    uint64_t counters[32]; /* dclone_counters order */
    size_t ncounters;
};
typedef void (*worker_status_fn)(const struct worker_status *s, void *ctx);

/* Publishes a control message to every worker of job (node "" = all). */
int worker_ctl_send(const char *broker_url, const struct dist_key *key, const char *job, const struct dist_control *c,
                    haul_error *err);

/* Asks every worker of job for its status and calls fn for each answer
 * arriving within wait_ms; then fills the depth of the work, dead and
 * results queues. */
int worker_ctl_status(const char *broker_url, const struct dist_key *key, const char *job, int wait_ms,
                      worker_status_fn fn, void *ctx, struct dist_depth depth[3], haul_error *err);

/* True when path (absolute, resolved) is root or below it, component by
 * component ("/data2" is not below "/data"). */
bool worker_path_inside(const char *root, const char *path);

#endif

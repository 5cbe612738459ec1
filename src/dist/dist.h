/* dist: haul's work queue.  One interface, two transports: in-process (the
 * default, nothing to start) and AMQP 0-9-1 over a RabbitMQ broker
 * (librabbitmq), so a job never cares where its units travel.  Also the
 * codecs of the three message types that travel on it (work units, results,
 * control), strictly validated because queue contents are untrusted.
 *
 * Queues of one job, named from opts.prefix (e.g. "haul.<jobid>"):
 *   <prefix>.work     durable queue of work units; manual acks; a unit
 *                     rejected without requeue is dead-lettered to
 *   <prefix>.dead     durable queue holding units no worker could use
 *                     (malformed, or failed for good): for people to read
 *   <prefix>.results  durable queue, workers -> coordinator: what each unit
 *                     did (struct dist_result)
 *   <prefix>.control  fanout exchange, coordinator or `haul ctl` -> every
 *                     worker: stop, grow N, status (struct dist_control);
 *                     each consuming handle binds its own exclusive,
 *                     auto-delete queue, so a control message reaches every
 *                     worker alive at the time and is lost for those that
 *                     are not (control is advisory, never work)
 *   <prefix>.job      durable queue holding at most one message (x-max-length
 *                     1): the job's description, opaque to dist, that the
 *                     coordinator replaces (dist_job_put) and workers read
 *                     without taking it (dist_job_get)
 *
 * Delivery is at least once.  A message taken by dist_next is the
 * consumer's until dist_ack (done: gone for good) or dist_reject; if the
 * consumer's connection ends first (the worker died: crash, SIGKILL, node
 * lost, missed heartbeats) the broker gives the message to another consumer
 * with redelivered = true.  So a unit may be done twice: units must be
 * idempotent (copy to a temporary name and rename; upload whole objects),
 * and a worker acks a unit only after its result is published and flushed.
 *
 * Threads: a dist_queue handle belongs to one thread at a time (librabbitmq
 * connections are not thread-safe, and one AMQP connection per handle keeps
 * one slow consumer from stalling another).  A thread that needs its own
 * handle calls dist_queue_clone: over AMQP that is a new connection, in
 * process a new handle on the same shared queues.  The in-process queues are
 * guarded by one mutex and may be used from any number of handles at once.
 *
 * Completion: the broker cannot say how many messages are unacked (a passive
 * queue.declare gives ready messages and consumers only), and ready == 0 is
 * true while units are being worked on.  So the coordinator counts: it
 * knows the ids of the units it published; each result names the unit ids
 * it finished and how many child units each published (a SCAN_DIR unit
 * publishes FILES, RANGE and SCAN_DIR units).  Outstanding = published by
 * the coordinator + children reported - distinct unit ids reported done; the
 * job is complete when that reaches 0 (results for an id seen before are
 * duplicates from a redelivery and are ignored, children included).  Child
 * ids are dist_unit_child_id(base, i), base being the unit's id, or a fresh
 * random one when the unit was redelivered: a redone scan of a directory
 * that changed meanwhile must not give other children the ids of the first
 * attempt's (their results would be dropped as duplicates); the first
 * attempt's children are then done as well, harmlessly (idempotent), and
 * are counted only if its result was the one taken.  dist_queue_depth is
 * for progress displays and
 * for spotting a stuck dead-letter queue, not for completion. */
#ifndef DIST_DIST_H
#define DIST_DIST_H

#include <haul/error.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/strbuf.h"

/* ---- the queue ---------------------------------------------------------- */

enum dist_kind {
    DIST_WORK = 0,    /* <prefix>.work */
    DIST_DEAD = 1,    /* <prefix>.dead */
    DIST_RESULTS = 2, /* <prefix>.results */
    DIST_CONTROL = 3, /* <prefix>.control fanout */
};
#define DIST_KINDS 4
/* Bits of dist_queue_opts.consume: the kinds dist_next returns. */
#define DIST_CONSUME(kind) (1u << (kind))

#define DIST_PREFIX_MAX 200       /* queue names are at most 255 bytes */
#define DIST_MSG_MAX (1u << 20)   /* bigger messages are refused both ways */
#define DIST_JOB_ID_MAX 128       /* run ids: [A-Za-z0-9._:-], not empty */

struct dist_key; /* dist/auth.h */

struct dist_queue_opts {
    const char *prefix;      /* queue names' prefix, [A-Za-z0-9._:-]; NULL = "haul" */
    unsigned consume;        /* DIST_CONSUME(...) bits; 0 = publish only */
    unsigned prefetch;       /* AMQP: unacked deliveries per consumer (basic.qos); 0 = 64 */
    size_t capacity;         /* in-process: ready work units before dist_publish blocks;
                                0 = 4096; set by dist_queue_open, clones share it */
    unsigned confirm_window; /* AMQP: unconfirmed publishes before dist_publish waits; 0 = 256 */
    int heartbeat_s;         /* AMQP heartbeat; 0 = 30, negative = off */
    const struct dist_key *key; /* the job's secret (the caller's, outlives the handle):
                                   every message published is signed (dist/auth.h) and
                                   every one taken must verify, else it is dropped with a
                                   log line (once per kind): a work unit to <prefix>.dead,
                                   a result or control message for good.  NULL: messages
                                   travel unsigned, and signed ones are dropped alike */
};

/* A delivered message.  body stays valid until dist_ack or dist_reject,
 * which every message from dist_next must get exactly once. */
struct dist_msg {
    enum dist_kind kind;
    const void *body;
    size_t len;
    bool redelivered; /* an earlier consumer took it and did not ack it */
    uint64_t tag;     /* delivery tag, unique per handle */
    void *impl;       /* the transport's record; opaque */
    char run[DIST_JOB_ID_MAX + 1]; /* the run id its signature is bound to ("" without a
                                      key); the receiver compares it with the run the
                                      message names or that it expects */
};

struct dist_depth {
    uint64_t ready;     /* messages waiting for a consumer */
    int64_t unacked;    /* delivered, not yet acked; -1 when unknown (AMQP) */
    uint32_t consumers; /* consumers attached */
};

struct dist_queue;

/* Opens the queues named by o->prefix, declaring them if they do not exist
 * (idempotent, durable, never auto-deleted).  broker_url NULL or "" means
 * in-process; else amqp://user:pass@host:port/vhost or amqps://... (TLS:
 * the broker's certificate and host name verified against the system's CA
 * store), with optional RabbitMQ URI query parameters cacertfile=PATH (the
 * CA bundle to verify against instead) and verify=verify_none (no
 * verification).  The password may hold '/', '@' and ':' (the userinfo ends
 * at the last '@'); '?' starts the query.  Errors name the URL as
 * dist_url_redact does: "amqp://guest:***@127.0.0.1:5672/: connection
 * refused", "...: ACCESS_REFUSED - Login was refused ...",
 * "amqps://...: TLS: the broker's certificate is not trusted: <why> ...".
 * In process, each open makes new, empty queues private to this process:
 * other threads reach them through dist_queue_clone. */
struct dist_queue *dist_queue_open(const char *broker_url, const struct dist_queue_opts *o,
                                   haul_error *err);

/* Another handle on q's queues for another thread, with its own options
 * (o NULL = q's; o->prefix is ignored: the queues are q's). */
struct dist_queue *dist_queue_clone(struct dist_queue *q, const struct dist_queue_opts *o,
                                    haul_error *err);

/* Closes the handle.  Messages it took and did not ack go back to their
 * queue with redelivered = true, exactly as if the consumer had died.
 * Publishes not yet confirmed may be lost: call dist_flush first.  NULL is a
 * no-op. */
void dist_queue_free(struct dist_queue *q);

/* The broker URL without password ("in-process" for in-process queues), for
 * messages. */
const char *dist_queue_url(const struct dist_queue *q);

/* The run id this handle's publishes are signed for from now on (run ids
 * bind signatures: dist/auth.h); "" at open, and for control messages. */
void dist_queue_set_run(struct dist_queue *q, const char *run);

/* Publishes one message to the work queue: dist_publish_to(q, DIST_WORK..). */
int dist_publish(struct dist_queue *q, const void *body, size_t len, haul_error *err);

/* Publishes one message of kind DIST_WORK, DIST_RESULTS or DIST_CONTROL.
 * AMQP: persistent (delivery mode 2), mandatory, on a channel in publisher
 * confirm mode; returns once the message is written, waiting only while
 * confirm_window publishes are unconfirmed.  A message is "published" (will
 * survive a broker restart, must not be sent again) only after dist_flush
 * returns 0.  In process: blocks while the work queue holds capacity ready
 * units (the memory budget); results and control never block. */
int dist_publish_to(struct dist_queue *q, enum dist_kind kind, const void *body, size_t len,
                    haul_error *err);

/* Waits until the broker confirmed every publish of this handle (basic.ack),
 * at most timeout_ms (negative = no limit).  Fails with HAUL_ENET on timeout
 * or a lost connection, HAUL_EPROTO when the broker refused (basic.nack) or
 * could not route (basic.return) some message since the last flush: those
 * must be published again.  In process: returns 0 at once. */
int dist_flush(struct dist_queue *q, int timeout_ms, haul_error *err);

/* Takes the next message of a consumed kind; control messages first, then
 * results, work, dead.  Waits at most timeout_ms (0 = poll, negative = no
 * limit).  Returns 1 with *out filled, 0 on timeout, negative on error (the
 * handle is then unusable: free it and open another). */
int dist_next(struct dist_queue *q, struct dist_msg *out, int timeout_ms, haul_error *err);

/* Done with msg: the broker forgets it.  Releases msg's memory. */
int dist_ack(struct dist_queue *q, struct dist_msg *msg, haul_error *err);

/* Gives msg back: requeue puts it back in its queue for any consumer
 * (redelivered = true); else a work unit goes to <prefix>.dead and other kinds
 * are dropped.  Releases msg's memory. */
int dist_reject(struct dist_queue *q, struct dist_msg *msg, bool requeue, haul_error *err);

/* Keeps the connection alive while the caller works on a message: sends a
 * heartbeat if one is due and reads what arrived (deliveries are kept for
 * dist_next, confirms counted), never blocking.  Over AMQP the broker drops a
 * connection that stayed silent for about heartbeat_s (its unacked messages
 * are then redelivered elsewhere and this worker's ack fails), so a thread
 * busy on one unit for longer (a large RANGE) calls this every few seconds,
 * e.g. after each block it copies.  In process: returns 0 at once. */
int dist_poll(struct dist_queue *q, haul_error *err);

/* Counts of queue kind (not DIST_CONTROL).  AMQP: a passive queue.declare,
 * so unacked is -1. */
int dist_queue_depth(struct dist_queue *q, enum dist_kind kind, struct dist_depth *out,
                     haul_error *err);

/* Replaces the job description (any bytes, <= DIST_MSG_MAX) held in
 * <prefix>.job and waits until the broker confirmed it (persistent).  In
 * process: a copy kept with the shared queues. */
int dist_job_put(struct dist_queue *q, const void *body, size_t len, haul_error *err);

/* Reads the job description into out (replacing its contents) without
 * removing it: basic.get, then reject with requeue.  Another reader holding
 * it for that instant makes the queue look empty, so an empty queue is
 * asked again for up to about a second.  Returns 1 with out filled, 0 when
 * there is none, negative on error: HAUL_EAUTH when it does not verify
 * with the handle's key (or is signed and the handle has none).  run (NULL,
 * or DIST_JOB_ID_MAX + 1 bytes) gets the run id its signature names ("" with
 * no key).  Only on a handle that consumes nothing (a get on a consuming
 * connection would interleave with its deliveries). */
int dist_job_get(struct dist_queue *q, struct strbuf *out, char *run, haul_error *err);

/* Deletes the job's queues and exchange (after a job completed, or in
 * tests).  Other handles on them see their consumers cancelled. */
int dist_queue_delete(struct dist_queue *q, haul_error *err);

/* The broker URL from the HAUL_BROKER environment variable, or NULL when it
 * is unset or empty (then jobs run in process). */
const char *dist_broker_url_from_env(void);

/* The URL for messages, built from its parse (as dist_queue_open parses
 * it), so no password is ever printed whatever characters it holds:
 * "amqp://user:pass@host/vh?..." -> "amqp://user:***@host:5672/vh" into out
 * (size n; the query is left out).  A URL that does not parse keeps its user
 * name and loses everything after it up to its last '@' (or, without '@',
 * after the first ':'). */
void dist_url_redact(const char *url, char *out, size_t n);

/* ---- messages ----------------------------------------------------------- */
/* Every message starts with "HAUL", a version byte and a type byte; integers
 * are big-endian; strings are a u16 length and bytes (no NUL inside);
 * nothing may follow the last field.  Decoders check every length against
 * what is left, every count against its limit, and every path (below), so a
 * hostile or corrupt message is refused with HAUL_EPROTO and a reason, never
 * read past its end. */

#define DIST_MSG_VERSION 1
#define DIST_NODE_MAX 128     /* worker / node names: printable ASCII, no space */
#define DIST_PATH_MAX 4096    /* bytes of one relative path */
#define DIST_UNIT_MAX_PATHS 1024
#define DIST_RESULT_MAX_UNITS 4096

enum dist_pass {
    DIST_PASS_COPY = 1,
    DIST_PASS_DELETE = 2,
    DIST_PASS_DIRTIMES = 3,
    DIST_PASS_BACKUP = 4,
};

enum dist_unit_kind {
    DIST_UNIT_SCAN_DIR = 1, /* paths[0]: one directory to read ("." = the root) */
    DIST_UNIT_FILES = 2,    /* paths[0..npaths): small files, batched so that the
                               broker carries one message per many files */
    DIST_UNIT_RANGE = 3,    /* paths[0]: one large file; [offset, offset+length) */
    DIST_UNIT_FINISH = 4,   /* paths[0]: a large file whose ranges are all done: put it in place */
};

/* A work unit.  Paths are relative to the job's source root: bytes in any
 * encoding but NUL, not empty, not absolute, no empty, "." or ".."
 * component, components <= 255 bytes, <= DIST_PATH_MAX in all (the single
 * path "." is allowed for SCAN_DIR only). */
struct dist_unit {
    uint64_t id; /* unique within the job; see dist_unit_child_id */
    char job_id[DIST_JOB_ID_MAX + 1];
    enum dist_pass pass;
    enum dist_unit_kind kind;
    uint64_t offset, length; /* RANGE only; length > 0 */
    size_t npaths;           /* SCAN_DIR, RANGE, FINISH: 1; FILES: 1..DIST_UNIT_MAX_PATHS */
    const char **paths;      /* NUL-terminated; the caller's when encoding */
    const void *payload;     /* optional job-defined bytes (trailer: u32 length,
                                bytes); NULL/0 = none; decode copies it into mem */
    size_t payload_len;
    void *mem;               /* set by decode: the one block holding paths and payload */
};

/* Appends the encoding of u to out.  Refuses (HAUL_EUSAGE) what decode would
 * refuse, so a bad unit fails at its producer. */
int dist_unit_encode(const struct dist_unit *u, struct strbuf *out, haul_error *err);
/* Decodes and validates; on success *out owns memory: dist_unit_release. */
int dist_unit_decode(const void *buf, size_t len, struct dist_unit *out, haul_error *err);
void dist_unit_release(struct dist_unit *u);
/* A random 64-bit id (getrandom; the clock and pid when it fails): run ids,
 * seeds, and the child base of a redelivered unit. */
uint64_t dist_random_id(void);
/* The id of child number index of unit parent_id: a mix of both, the same
 * every time, so a scan redone after a redelivery names its children alike. */
uint64_t dist_unit_child_id(uint64_t parent_id, uint64_t index);
/* 0 if path is a valid relative unit path (length len), else -1 and why. */
int dist_path_check(const char *path, size_t len, const char **why);

/* Named counters a result may carry after its units (optional trailer: a
 * u16 count and that many u64; results without it decode with ncounters
 * 0), then an optional payload.  Their meaning belongs to the job
 * (job/dclone.h, job/dbackup.h). */
#define DIST_RESULT_MAX_COUNTERS 32

struct dist_result_unit {
    uint64_t unit_id;
    uint32_t children;   /* units this one published: ids dist_unit_child_id(base, i) */
    uint64_t child_base; /* base of their ids; 0 = unit_id.  A redelivered unit is
                            redone with a fresh random base: if its directory
                            changed meanwhile, the redo's children must not take
                            the ids of the first attempt's (a result seen before
                            is dropped as a duplicate) */
};

/* Worker -> coordinator: what some units did. */
struct dist_result {
    char worker[DIST_NODE_MAX + 1]; /* e.g. "node7:12345:3" */
    uint64_t files, bytes, skipped, failed;
    size_t nunits; /* 0..DIST_RESULT_MAX_UNITS */
    struct dist_result_unit *units;
    size_t ncounters; /* 0..DIST_RESULT_MAX_COUNTERS */
    uint64_t counters[DIST_RESULT_MAX_COUNTERS];
    const void *payload; /* optional job-defined bytes after the counters (a u32
                            length, then them; the counters trailer is then
                            present, maybe with 0 counters); NULL/0 = none */
    size_t payload_len;
    void *mem; /* set by decode: units and payload */
};

int dist_result_encode(const struct dist_result *r, struct strbuf *out, haul_error *err);
int dist_result_decode(const void *buf, size_t len, struct dist_result *out, haul_error *err);
void dist_result_release(struct dist_result *r);

enum dist_control_op {
    DIST_CTL_STOP = 1,   /* finish the current unit, then exit */
    DIST_CTL_GROW = 2,   /* run n worker threads (more or fewer) */
    DIST_CTL_STATUS = 3, /* publish a result with current counters now */
};

struct dist_control {
    enum dist_control_op op;
    uint32_t n;                   /* GROW: thread count, 1..4096 */
    char node[DIST_NODE_MAX + 1]; /* "" = every node */
};

int dist_control_encode(const struct dist_control *c, struct strbuf *out, haul_error *err);
int dist_control_decode(const void *buf, size_t len, struct dist_control *out, haul_error *err);

#endif

/* job/dclone: clone spread over many worker processes and nodes through a
 * dist work queue (RabbitMQ).  The coordinator (dclone_run, `haul clone
 * --broker`) runs the passes one after another; workers (job/worker, `haul
 * worker`) do the units.
 *
 * Job description: before each pass the coordinator replaces the one
 * message of <prefix>.job (dist_job_put) with a struct dclone_spec: SRC,
 * DST, the options, and a fresh random run id.  Every unit of the pass
 * carries that run id as its job_id; a worker meeting a run id it does not
 * know reads the description again (dist_job_get).  A unit whose run id is
 * not the current description's belongs to a run that is over (a
 * coordinator that died and was started again): the worker acks and drops
 * it, since the new run redoes everything from the root.
 *
 * Units and ids: the pass is seeded with one SCAN_DIR "." whose id is
 * random (64 bits); a worker scanning a directory publishes a SCAN_DIR per
 * subdirectory and FILES units of up to DCLONE_BATCH_PATHS paths or
 * DCLONE_BATCH_BYTES bytes (a file of parallel_threshold bytes or more
 * alone), child number i of unit u having id dist_unit_child_id(base, i)
 * (base: u's id, or a fresh one when u was redelivered; dist.h); then
 * one result per unit: its id, its number of children, the clone counters
 * it changed (dist_result counters, DCLONE_COUNTERS of them in the order of
 * dclone_counters_*), flushed before the unit is acked.
 *
 * Completion: dist/tracker counts the ids expected (the seed, then the
 * children of every unit reported done) against those done; duplicates
 * from redeliveries are ignored, counters included.
 *
 * Large files in ranges (range_size, copy pass): a worker meeting a file
 * larger than range_size that must be copied (one link; hard-linked files
 * go through the registry whole) creates its temporary file in the DST
 * directory (named from a ticket, dclone_ticket_tmp) and publishes one
 * RANGE unit per range_size bytes as children of its FILES unit; its
 * result's payload lists the tickets (DCLONE_PAYLOAD_SPLITS).  Each RANGE
 * unit copies its bytes into that file and its result names the ticket
 * (DCLONE_PAYLOAD_RANGE_DONE).  When the coordinator has seen every range
 * of a ticket (and the ticket itself: results may come in any order) it
 * publishes a FINISH unit (an id of its own, dclone_ticket_finish_id) that
 * checks SRC did not change, applies the metadata and renames the file
 * into place.  Redone units are harmless: a range writes the same bytes at
 * the same offsets, a finish finds the file in place.  A coordinator
 * killed meanwhile leaves the temporary file (".haul-range.*") for the
 * next delete pass to remove; the new run copies the file again.
 *
 * The delete pass has SCAN_DIR units only: a worker reading a DST
 * directory removes what SRC lacks right there (like the local walker
 * does), and the dirtimes pass sets each directory's metadata in its scan.
 * A file at or above parallel_threshold (and not above range_size) is a
 * FILES unit of its own, copied in ranges by the worker's local copy pool.
 *
 * Restart: a coordinator started again with the same --job simply runs the
 * pass again with a new run id: rescans are idempotent, done files are
 * cheap up-to-date checks, stale units are dropped by workers, stale
 * results ignored. */
#ifndef JOB_DCLONE_H
#define JOB_DCLONE_H

#include <haul/error.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "dist/dist.h"
#include "fs/srcid.h"
#include "job/clone.h"
#include "util/strbuf.h"
#include "util/wire.h"

/* The hard-link registry below DST during a copy pass (clone.h): this
 * prefix, a dot and 16 hex digits fresh for each run (spec.registry), so
 * that a SRC entry of the same name is copied like any other. */
#define DCLONE_REGISTRY ".haul-links"
#define DCLONE_BATCH_PATHS 64
#define DCLONE_BATCH_BYTES (64ull << 20)
#define DCLONE_COUNTERS 15
#define DCLONE_EXCLUDES_MAX 64

/* What workers need to know about a pass. */
struct dclone_spec {
    char run[17];          /* 16 hex digits: the job_id of the pass's units */
    enum dist_pass pass;   /* COPY, DELETE or DIRTIMES */
    char src[4096], dst[4096];
    bool checksum, xattrs, fsync, one_filesystem;
    int64_t now;           /* reference time of the age filters (absolute) */
    uint32_t skip_atime_older_days, skip_mtime_newer_secs;
    uint64_t parallel_threshold, chunk;
    uint64_t range_size;   /* files larger than this are copied in RANGE units of it; 0: off */
    size_t nexcludes;
    char excludes[DCLONE_EXCLUDES_MAX][256];
    char registry[32];     /* copy pass: DCLONE_REGISTRY.<16 hex>, "" from an older coordinator */
    bool count_only;       /* delete pass: count what would go (--max-delete), remove nothing */
    struct srcid src_id;   /* the coordinator's view of SRC: a worker whose own differs (not
                              mounted there, another filesystem) refuses the job's units */
};

/* What travels with the units of a large file copied in ranges. */
struct dclone_ticket {
    uint64_t parent;        /* the FILES unit that split the file */
    uint32_t first, count;  /* its RANGE units: children first .. first+count-1 */
    uint64_t size, ino;     /* SRC's file when it was split */
    int64_t mtime_ns;
};
#define DCLONE_PAYLOAD_SPLITS 1     /* FILES result: u32 n, n x (ticket, str path) */
#define DCLONE_PAYLOAD_RANGE_DONE 2 /* RANGE result: the ticket, u32 the range's index */
#define DCLONE_RANGES_MAX (1u << 20) /* ranges of one file (1 PiB in 1 GiB ranges) */

void dclone_ticket_put(struct strbuf *sb, const struct dclone_ticket *t);
/* false (r marked bad) for a count of 0 or over DCLONE_RANGES_MAX, or a
 * range past 2^32 units */
bool dclone_ticket_get(struct wire_reader *r, struct dclone_ticket *t);
/* The temporary name in the file's DST directory: ".haul-range.<parent>.<first>". */
void dclone_ticket_tmp(const struct dclone_ticket *t, char *out, size_t cap);
/* The FINISH unit's id (never a child index of the parent). */
uint64_t dclone_ticket_finish_id(const struct dclone_ticket *t);
/* The size, mtime and inode a finish checks. */
void dclone_ticket_stat(const struct dclone_ticket *t, struct stat *st);

int dclone_spec_encode(const struct dclone_spec *s, struct strbuf *out, haul_error *err);
/* Strict: HAUL_EPROTO and why for anything unexpected (a registry name
 * is DCLONE_REGISTRY, a dot and 16 hex digits, or empty). */
int dclone_spec_decode(const void *buf, size_t len, struct dclone_spec *out, haul_error *err);

/* clone_stats <-> the counters of a dist_result (DCLONE_COUNTERS). */
void dclone_counters_get(const struct clone_stats *s, uint64_t *out);
void dclone_counters_add(struct clone_stats *s, const uint64_t *c, size_t n);

/* "haul.<job>" into out; HAUL_EUSAGE for a job name queues cannot carry. */
int dclone_prefix(const char *job, char *out, size_t cap, haul_error *err);

struct dclone_opts {
    const char *broker_url; /* amqp://... */
    const char *job;        /* job name: queues haul.<job>.* */
    const struct clone_opts *clone; /* src, dst, passes, options; line for messages */
    uint64_t range_size;    /* files larger than this go in RANGE units (0: off) */
    const char *const *excludes; /* the patterns of clone->filter, for the workers */
    size_t nexcludes;
    void (*waiting)(void *ctx);      /* no worker attached yet (may be NULL) */
    void *ctx;
    const struct dist_key *key;      /* signs the description, units and results (dist/auth.h);
                                        NULL: unsigned (--insecure-no-key) */
    int refuse_timeout_s;            /* workers refusing and no unit taken this long: exit
                                        (0 = DIST_REFUSE_TIMEOUT_S) */
};

/* Runs the passes of o->clone (copy is always followed by dirtimes) through
 * the workers, adding their counters to stats as results arrive.  Returns
 * as clone_run does. */
int dclone_run(const struct dclone_opts *o, struct clone_stats *stats, haul_error *err);

/* The job-description fields (util/kv) of a spec's `struct srcid src_id`,
 * shared by the clone and backup job tables: expands with the table's own
 * F(kind, member, ...) macro. */
#define DIST_SRCID_FIELDS                                                                                   \
    F(NUM, src_id.dev, 0, 0, false), F(NUM, src_id.ino, 0, 0, false), F(NUM, src_id.fsid, 0, 0, false),    \
        F(NUM, src_id.fstype, 0, 0, false), F(NUM, src_id.nonempty, 0, 0, false), F(STR, src_id.boot, false)

#endif

/* job/dbackup: backup spread over many worker processes and nodes through
 * a dist work queue (RabbitMQ).  The coordinator (dbackup_run, `haul
 * backup --broker`) owns the index, exactly the one a local backup of the
 * same destination uses, so local and distributed runs follow each other
 * freely; workers (job/worker, `haul worker`) read the tree and upload.
 *
 * Why decisions stay with the coordinator: the index is one SQLite file
 * (on one node), and deciding there keeps "unchanged" meaning the same
 * thing as in a local run.  What travels is small: a scanning worker sends
 * the stat of each entry, the coordinator answers with upload units for
 * what changed only; a run that changes nothing moves one listing message
 * per DBACKUP_LIST_MAX entries and uploads nothing.
 *
 * The flow of one run (units carry the run id as job_id; ids as in
 * dist/tracker.h):
 *   1. The coordinator puts the job description (struct dbackup_spec) in
 *      <prefix>.job and publishes SCAN_DIR "." (pass BACKUP).
 *   2. A worker scanning directory D publishes a SCAN_DIR per subdirectory
 *      (not crossing filesystems with one_filesystem) and sends the stat
 *      of D's entries, a listing, in the scan's own result (children = the
 *      subdirectories); a directory of more than DBACKUP_LIST_MAX entries
 *      sends its first full listings as results of their own, each naming
 *      one more child id of the scan.  The scan of "." lists the root
 *      itself too, as path "".
 *   3. For each listing the coordinator, once per unit id (a duplicate
 *      result of a redelivered unit is dropped), decides every entry
 *      against the index as backup_run does (unchanged: stamped; hard
 *      links: the first path of the inode in this run) and adds what must
 *      be stored to an upload batch, across listings: a FILES unit of up
 *      to DBACKUP_BATCH_PATHS small items or DBACKUP_BATCH_BYTES (a large
 *      file alone), published when full or when no result is waiting, with
 *      an id of the coordinator's own that it expects; the unit's payload
 *      names the hard-link target of each path.  The root's directory
 *      object is stored by the coordinator itself.
 *   4. A worker uploads each item of a FILES unit as it is now (stat again,
 *      open without following symlinks; a file gone since is skipped) and
 *      returns one record per item: the index entry of what it stored, or
 *      the path and the error.  The coordinator writes the entries to the
 *      index (only complete objects are ever recorded) and prints errors.
 *   5. When nothing is outstanding: --delete as a local run does, commit.
 * Redelivered upload units store the same object again (whole-object PUT
 * or a multipart upload completed once): idempotent.
 *
 * Large files spread over the workers (range_size, `--range-size`): a file
 * larger than range_size that must be stored becomes a multipart upload
 * the coordinator creates (with the file's metadata as listed), then RANGE
 * units of range_size bytes (whole parts), each uploading its parts from
 * whichever worker takes it and returning their ETags; when all are in
 * the coordinator completes the upload (or aborts it when a range failed
 * or the file changed: every range checks size, mtime and inode) and
 * records the object.  A redone range uploads the same parts again (same
 * bytes, same ETags).  A coordinator killed meanwhile leaves an unfinished
 * upload on the server (`haul rb --force`, or a lifecycle rule, removes
 * it); the new run starts the file again.
 *
 * Not yet: --check-sha256, --rescan-remote and several roots with
 * --broker. */
#ifndef JOB_DBACKUP_H
#define JOB_DBACKUP_H

#include <haul/error.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dist/dist.h"
#include "fs/srcid.h"
#include "job/backup.h"
#include "s3/s3.h"
#include "util/strbuf.h"

#define DBACKUP_LIST_MAX 1024              /* entries per listing message */
#define DBACKUP_LIST_BYTES (256u << 10)    /* and at most about this many bytes */
#define DBACKUP_BATCH_PATHS 64             /* items per upload unit */
#define DBACKUP_BATCH_BYTES (64ull << 20)
#define DBACKUP_FILTERS_MAX 64
/* Counters a worker's result carries, in this order. */
enum { DBACKUP_C_UPLOADED, DBACKUP_C_BYTES, DBACKUP_C_HARDLINKS, DBACKUP_C_ERRORS, DBACKUP_C_OTHERS,
       DBACKUP_COUNTERS };

/* What workers need to know about a run.  No credentials: every worker
 * uses its own AWS configuration, and refuses a job whose endpoint is not
 * the one it is configured for. */
struct dbackup_spec {
    char run[17];
    char src[4096];
    char endpoint[1024];
    char bucket[256];
    char prefix[1100];
    uint64_t small_threshold;
    char storage_class_large[32]; /* "" = the bucket's default */
    bool one_filesystem;
    uint64_t part_size;
    uint32_t part_workers;
    int64_t mtime_newer, mtime_older; /* filter bounds (Unix seconds), 0 = none */
    size_t nexcludes, nincludes;
    char excludes[DBACKUP_FILTERS_MAX][256];
    char includes[DBACKUP_FILTERS_MAX][256];
    struct srcid src_id; /* the coordinator's view of src: a worker whose own differs
                            (not mounted there, another filesystem) refuses the job */
};

int dbackup_spec_encode(const struct dbackup_spec *s, struct strbuf *out, haul_error *err);
/* Strict: HAUL_EPROTO and why for anything unexpected. */
int dbackup_spec_decode(const void *buf, size_t len, struct dbackup_spec *out, haul_error *err);
/* True when buf is a backup job description (not a clone's). */
bool dbackup_spec_is(const void *buf, size_t len);

/* ---- the coordinator ---- */

struct dbackup_opts {
    const char *broker_url;
    const char *job;                 /* queues haul.<job>.* */
    const struct backup_opts *backup; /* one root; filter given again below for the workers */
    const char *const *excludes;
    size_t nexcludes;
    const char *const *includes;
    size_t nincludes;
    int64_t mtime_newer, mtime_older;
    uint64_t range_size;             /* spread larger files over the workers (0: off) */
    void (*waiting)(void *ctx);      /* no worker attached yet (may be NULL) */
    void *ctx;
    const struct dist_key *key;      /* signs the description, units and results (dist/auth.h);
                                        NULL: unsigned (--insecure-no-key) */
    int refuse_timeout_s;            /* workers refusing and no unit taken this long: exit
                                        (0 = DIST_REFUSE_TIMEOUT_S) */
};

/* Runs the backup through the workers; returns as backup_run does, stats
 * filled as results arrive. */
int dbackup_run(struct s3_client *c, const struct dbackup_opts *o, struct backup_stats *stats, haul_error *err);

/* ---- the worker's side ---- */

struct dbackup_engine;

/* An engine for spec, uploading with c (shared, not owned).  NULL with err
 * when the job cannot be served here (SRC missing, another endpoint, SRC
 * not what the coordinator sees: fs/srcid's srcid_match). */
struct dbackup_engine *dbackup_engine_new(const struct dbackup_spec *spec, struct s3_client *c,
                                          const atomic_bool *cancel, haul_error *err);
void dbackup_engine_free(struct dbackup_engine *e);

/* Does unit u (SCAN_DIR, FILES or RANGE of pass BACKUP; child ids from
 * child_base, 0 = the unit's id): publishes a scan's
 * children and listings on q; fills *children, the unit's counters
 * (DBACKUP_COUNTERS) and payload (an upload unit's records) for its
 * result.  worker names the results it publishes itself.  q may be NULL
 * for a FILES unit (then the connection is not polled between items: the
 * caller keeps it alive from another thread).  Errors of single
 * entries are counted and reported, not returned; < 0 only when the queue
 * failed (the unit must be redone). */
int dbackup_unit_do(struct dbackup_engine *e, struct dist_queue *q, const struct dist_unit *u, uint64_t child_base,
                    const char *worker,
                    uint32_t *children, uint64_t counters[DBACKUP_COUNTERS], struct strbuf *payload,
                    haul_error *err);

#endif

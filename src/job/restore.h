/* job/restore: a bucket prefix back to a POSIX tree, with the Glacier
 * restore workflow.
 *
 * The listing (every page) streams entries into a bounded queue consumed by
 * a pool of workers, so memory does not grow with the object count.  Each
 * key is mapped to a relative path by meta_path_from_key; hostile keys
 * ("../x", "/x", "a//b", NUL, ...) are refused and counted as errors.
 * Nothing is written outside the target and no symlink already in it is
 * followed: the root is opened once and every directory below it is opened
 * component by component with openat(O_NOFOLLOW | O_DIRECTORY).  Files are
 * written to a temporary name in their final directory (O_EXCL | O_NOFOLLOW)
 * and renamed into place only once complete and verified (ETag), with mode,
 * owner (as root) and times already applied, as far as meta_restore_policy
 * allows (restore_opts: no set-ID bits, devices or others' write by
 * default).  Sparse files (haul-sparse) are written skipping zero blocks.  Directory metadata and hard links go to an
 * on-disk table (index/restore_state) and are applied at the end: links once
 * every file exists, then directories deepest first.
 *
 * Objects whose storage class is GLACIER or DEEP_ARCHIVE are checked with
 * HEAD: never restored -> RestoreObject (tier, days) and pending; a restore
 * running -> pending; restored -> downloaded now.  With wait, the pending
 * keys are polled every poll_interval_s until all are readable; otherwise
 * the run ends with them counted in stats->pending, and running it again
 * continues: files already restored (same size and mtime) are skipped. */
#ifndef JOB_RESTORE_H
#define JOB_RESTORE_H

#include <haul/error.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "s3/s3.h"
#include "xfer/xfer.h"

#define RESTORE_SUBDIR "glacierrestore" /* the older tool's default subdirectory */

struct restore_stats {
    atomic_uint_fast64_t objects;   /* listed under the prefix */
    atomic_uint_fast64_t files;     /* regular files written */
    atomic_uint_fast64_t dirs;      /* directories (from "path/" objects) */
    atomic_uint_fast64_t symlinks;
    atomic_uint_fast64_t hardlinks; /* links made to a first path */
    atomic_uint_fast64_t specials;  /* FIFOs and devices made */
    atomic_uint_fast64_t bytes;     /* object bytes received */
    atomic_uint_fast64_t skipped;   /* already restored (same size and mtime) */
    atomic_uint_fast64_t requested; /* RestoreObject requests sent by this run */
    atomic_uint_fast64_t pending;   /* archived objects not readable yet at the end */
    atomic_uint_fast64_t errors;    /* entries that could not be restored */
    atomic_uint_fast64_t setid_removed;       /* entries restored without their set-user/group-ID bits */
    atomic_uint_fast64_t world_write_removed; /* entries restored without others' write permission */
    atomic_uint_fast64_t devices_refused;     /* device files not created (not counted as errors) */
};

/* Reports one event: what is "error" (detail is the message), "file",
 * "dir", "symlink", "link", "special", "skip", "restore-requested",
 * "pending", "waiting" (detail: how many and when), "strip" (mode bits the
 * safety policy left out), "note" (a socket or device file not created, ...).
 * detail holds no control character (meta_text_escape). */
typedef void (*restore_line_fn)(const char *what, const char *detail, void *ctx);

struct restore_opts {
    const char *bucket;
    const char *prefix;        /* "" or ending with "/" */
    const char *target;        /* directory to restore into; created (mkdir -p) when missing */
    const char *subdir;        /* NULL, or a directory under target that becomes the root
                                  (created, never through a symlink) */
    const char *tier;          /* "Bulk" (default), "Standard", "Expedited" */
    int days;                  /* how long restored copies stay readable (default 7) */
    bool wait;                 /* poll pending objects until all are restored */
    int poll_interval_s;       /* default 300 */
    int workers;               /* objects in flight (default 16) */
    int large_downloads;       /* objects over the part size downloading at once (default 2) */
    struct xfer_opts xfer;     /* part size, ranges in flight per large object, buffers */
    bool dry_run;              /* list, HEAD and report; write nothing, request nothing */
    /* What of the bucket's metadata is trusted (meta_restore_policy in meta/meta.h): by
     * default owners only as root, no set-user/group-ID bits, no device files, nothing
     * writable by others but sticky directories. */
    bool no_same_owner;        /* never apply uid/gid, even as root */
    bool preserve_setuid;      /* as root, with the owner applied: keep set-ID bits */
    bool devices;              /* as root: create block and character devices */
    bool keep_world_writable;  /* keep others' write permission as stored */
    const char *state_dir;     /* the run's temporary table lives here */
    const atomic_bool *cancel; /* stop soon when it becomes true */
    restore_line_fn line;      /* may be NULL */
    void *line_ctx;
};

/* Runs the restore.  Returns 0 when every object was restored or is
 * pending (stats->pending counts those); -HAUL_EIO, with err saying how many,
 * when some entries failed (each was reported through opts->line);
 * -HAUL_ECANCELED when stopped; other negative codes when the run could not
 * start or the listing failed.  stats is filled in every case. */
int restore_run(struct s3_client *c, const struct restore_opts *opts, struct restore_stats *stats,
                haul_error *err);

#endif

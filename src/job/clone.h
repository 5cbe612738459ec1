/* job/clone: make a directory tree on one filesystem identical to another,
 * in passes, for migrations (like rsync -aHAX --delete, mpifileutils dsync).
 *
 *   copy      every entry of SRC missing on DST or different (regular files:
 *             size or mtime differ, or the content with `checksum`) is
 *             copied; directories are created; symlinks stay symlinks, hard
 *             links stay hard links; mode, owner (root only), atime/mtime,
 *             xattrs and ACLs (`xattrs`) and holes of sparse files are kept.
 *             An entry of another type in the way on DST is replaced.
 *             New files are written unnamed (O_TMPFILE) and linked into
 *             place once complete, or to a temporary name renamed over the
 *             old copy: a pass killed at any point leaves no truncated file
 *             under a real name.
 *   delete    removes what exists on DST but no longer on SRC.
 *   dirtimes  sets every directory's times on DST to SRC's, deepest first
 *             (the other passes change directory mtimes on DST).
 *
 * The walk (src/walk) is parallel; each walker thread decides and copies the
 * entries it reads, and files larger than a threshold are split into ranges
 * copied by a pool of threads (src/xfer/fcopy).  Nothing holds the tree:
 * memory follows the walker's pending directories; hard links are tracked
 * in a temporary on-disk map (src/index/linkmap). */
#ifndef JOB_CLONE_H
#define JOB_CLONE_H

#include <haul/error.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "walk/filter.h"

struct srcid;

enum clone_pass { CLONE_PASS_COPY = 1, CLONE_PASS_DELETE = 2, CLONE_PASS_DIRTIMES = 4,
                  CLONE_PASS_ALL = 7 };

struct clone_stats {
    atomic_uint_fast64_t files, dirs, symlinks, others; /* SRC entries seen */
    atomic_uint_fast64_t bytes_seen;     /* sizes of the regular files seen */
    atomic_uint_fast64_t copied;         /* entries written (files, links, dirs, specials) */
    atomic_uint_fast64_t bytes_copied;
    atomic_uint_fast64_t up_to_date;     /* already identical on DST */
    atomic_uint_fast64_t meta_updated;   /* content identical, metadata fixed */
    atomic_uint_fast64_t hardlinks;      /* later paths of a hard-linked inode linked */
    atomic_uint_fast64_t skipped_atime;  /* files left out: not read for too long */
    atomic_uint_fast64_t skipped_mtime;  /* files left out: modified too recently */
    atomic_uint_fast64_t deleted;        /* DST entries removed (delete pass) */
    atomic_uint_fast64_t dirtimes;       /* directory times set (dirtimes pass) */
    atomic_uint_fast64_t failed;         /* entries that could not be handled */
};

/* A reported event: what ("copy", "delete", "error", ...) happened to path
 * (relative to the roots); msg is the error text for "error", else NULL.
 * Called from many threads at once. */
typedef void (*clone_line_fn)(const char *what, const char *path, const char *msg, void *ctx);

/* Lustre layout hooks (job/layout.c): off unless asked. */
struct clone_layout {
    unsigned mdt_count;   /* >1: top-level directories created round-robin over MDTs */
    bool stripes;         /* large files keep their stripe count and size */
};

struct clone_opts {
    const char *src, *dst;       /* directories; DST is created when missing */
    unsigned passes;             /* CLONE_PASS_* bits; run in the order copy, delete, dirtimes */
    unsigned threads;            /* walker threads (default 8) */
    unsigned range_threads;      /* threads copying ranges of large files (default = threads) */
    uint64_t parallel_threshold; /* files at least this big are copied in ranges (256 MiB) */
    uint64_t chunk;              /* range size (64 MiB) */
    bool checksum;               /* same size and mtime is not enough: compare the bytes */
    bool xattrs;                 /* copy extended attributes and ACLs */
    bool fsync;                  /* fsync every file before it gets its name */
    bool dry_run;                /* report what would change, change nothing */
    bool one_filesystem;
    unsigned skip_atime_older_days;  /* 0: off */
    unsigned skip_mtime_newer_secs;  /* 0: off */
    time_t now;                  /* reference time for the age filters (0: time(NULL)) */
    const struct walk_filter *filter; /* excludes; NULL keeps everything */
    struct clone_layout layout;
    const atomic_bool *cancel;
    clone_line_fn line;          /* may be NULL */
    void *line_ctx;
    /* Distributed runs (job/dclone, job/worker): */
    bool dst_exists;             /* never create DST (a worker fails when it is missing) */
    const char *link_registry;   /* a directory below DST (".haul-links"): hard links go
                                    through it instead of the process-local link map */
    /* Distributed copies of large files (job/dclone): a regular file with one
     * link that must be copied and has at least range_split bytes is not
     * copied here; split(path, st, split_ctx) is called instead, and the
     * caller has its ranges copied elsewhere (clone_range_*); when split
     * returns false (it could not take the file) it is copied here.  0: off. */
    uint64_t range_split;
    bool (*split)(const char *path, const struct stat *st, void *ctx); /* false: copy it here */
    void *split_ctx;
    /* The delete pass's guards (fs/srcid).  Before anything goes, SRC's
     * identity is checked against the one recorded for DST at the last run
     * (state_dir/clone/<hash of DST>.srcid) and SRC must not be empty while
     * DST is not; after a pass, a non-empty SRC's identity is recorded. */
    const char *state_dir;       /* NULL: nothing recorded or compared */
    bool allow_empty_src;        /* an empty SRC may make the delete pass empty DST */
    bool allow_new_src;          /* SRC may be another filesystem than recorded (then recorded) */
    bool max_delete_set;         /* with max_delete: when more entries would go (counted first, */
    uint64_t max_delete;         /* those below a directory that goes included), nothing goes */
    bool count_deletes;          /* delete pass: count what would go (clone_stats.deleted), remove nothing */
    const struct srcid *src_expect; /* workers: the coordinator's view of SRC; a differing one
                                       here fails clone_new (fs/srcid's srcid_match) */
};

/* Runs the passes.  Returns 0 when every entry was handled, -HAUL_EIO (err
 * says how many) when some failed (each reported through opts->line), other
 * negative codes when a pass could not start.  stats is filled in every
 * case. */
int clone_run(const struct clone_opts *opts, struct clone_stats *stats, haul_error *err);

/* ---- the engine, one path at a time ------------------------------------
 * What clone_run does for each entry, callable for one directory or one
 * path, so that workers of a distributed clone (job/worker) can share a
 * pass out by units.  Paths are relative to the roots; "" or "." is the
 * root.  Failures of entries are counted in stats->failed and reported
 * through opts->line, like clone_run's; the functions return < 0 only when
 * the unit cannot be finished (a child_fn failure, memory): the unit must
 * then be left to be done again.  Thread-safe: any number of threads may
 * call them on one engine.
 *
 * Hard links (opts->link_registry set): a file with st_nlink > 1 is made a
 * link to <DST>/<registry>/<dev>-<ino> (dev 0 for SRC's own filesystem),
 * created by whichever node meets a name of the inode first (from an
 * up-to-date DST copy, or copied into O_TMPFILE and linked in: EEXIST means
 * another node won, and its inode is used).  So every name shares one DST
 * inode, across nodes and re-runs of the pass.  The registry directory must
 * exist (the coordinator makes it fresh before a copy pass and removes it
 * after). */
struct clone;

/* Opens the roots (DST is created unless opts->dst_exists), the copy pool
 * and the link map or registry for opts->passes.  opts and stats must
 * outlive the engine. */
struct clone *clone_new(const struct clone_opts *opts, struct clone_stats *stats, haul_error *err);
void clone_free(struct clone *c); /* NULL is a no-op */

/* The absolute roots, for messages. */
const char *clone_src_abs(const struct clone *c);
const char *clone_dst_abs(const struct clone *c);

/* SRC's identity as clone_new found it (for a distributed job's description). */
const struct srcid *clone_src_id(const struct clone *c);

/* Before a delete pass removes anything: may it?  Not when SRC's identity
 * could not be taken, SRC is empty while DST is not (unless
 * allow_empty_src), or SRC is another filesystem than recorded for DST
 * (unless allow_new_src): -HAUL_EINTEGRITY, err saying why and which flag
 * overrides. */
int clone_delete_guard(struct clone *c, haul_error *err);

/* --max-delete: -HAUL_EINTEGRITY naming the count when n entries going is
 * more than opts->max_delete allows. */
int clone_delete_limit(const struct clone_opts *o, uint64_t n, haul_error *err);

/* After passes that ran (not a dry run): records SRC's identity for DST
 * when fs/srcid says it should be (SRC not empty; the recorded filesystem,
 * none yet, or allow_new_src); a mismatch is only logged. */
void clone_src_record(struct clone *c);

/* A child found by clone_dir_scan: dir is true for a directory (to be
 * scanned in turn), else an entry for clone_path_do.  A negative return
 * stops the scan and is returned by it (err filled). */
typedef int (*clone_child_fn)(bool dir, const char *path, const struct stat *st, void *ctx, haul_error *err);

/* One directory of a pass.
 *   copy      makes the directory on DST (mode 0700 until the dirtimes
 *             pass) and gives every SRC entry in it that the filter keeps
 *             to child_fn; a directory on another filesystem with
 *             one_filesystem is made, not read.
 *   delete    reads the DST directory: what SRC lacks is removed (whole
 *             directories with fs_remove), kept directories go to child_fn.
 *   dirtimes  gives the DST directory all of SRC's metadata (mode, owner,
 *             xattrs with opts->xattrs, times) and its subdirectories to
 *             child_fn: in a distributed run directory metadata is set only
 *             here, so the coordinator always runs it after a copy pass. */
int clone_dir_scan(struct clone *c, enum clone_pass pass, const char *path, clone_child_fn child_fn, void *ctx,
                   haul_error *err);

/* One entry of the copy pass (not a directory; a directory is made like
 * clone_dir_scan does, without reading it): looked up on SRC below its root
 * without following symlinks, then compared and copied as clone_run does.
 * An entry gone from SRC is skipped (the delete pass's business). */
int clone_path_do(struct clone *c, enum clone_pass pass, const char *path, haul_error *err);

/* A large file copied in ranges by several processes (opts->split): tmp is
 * a name in the DST directory of path, the same for every range.  begin
 * creates it with its full size (an existing one is kept: a redone begin
 * loses no range); copy puts SRC's bytes [off, off+len) in it; finish
 * checks that SRC still has expect's size, mtime and inode, applies its
 * metadata and renames tmp over path (a finish done before: tmp gone, the
 * copy in place: nothing to do).  Failures are counted and reported like
 * clone_path_do's (tmp removed when SRC changed); the return value is < 0
 * only for a cancel. */
int clone_range_begin(struct clone *c, const char *path, const char *tmp, uint64_t size, haul_error *err);
int clone_range_copy(struct clone *c, const char *path, const char *tmp, uint64_t off, uint64_t len,
                     haul_error *err);
int clone_range_finish(struct clone *c, const char *path, const char *tmp, const struct stat *expect,
                       haul_error *err);

#endif

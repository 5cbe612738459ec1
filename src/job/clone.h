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
#include <time.h>

#include "walk/filter.h"

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
};

/* Runs the passes.  Returns 0 when every entry was handled, -HAUL_EIO (err
 * says how many) when some failed (each reported through opts->line), other
 * negative codes when a pass could not start.  stats is filled in every
 * case. */
int clone_run(const struct clone_opts *opts, struct clone_stats *stats, haul_error *err);

#endif

/* walk: the parallel directory walker shared by backup and clone.
 *
 * walk_run visits one or more root directories with N threads and streams
 * every entry to a callback as it is read.  Nothing holds the tree: the only
 * state is the directories still waiting to be read (and the chain of open
 * ancestors above them), so memory follows the shape of the tree (depth x
 * fan-out), not its size.  Symlinks are never followed; one_filesystem keeps
 * the walk on each root's filesystem.
 *
 * Scheduling: work stealing over directories.  Each thread keeps its own
 * stack of pending directories; it pushes the subdirectories it finds and
 * pops the newest one (depth first: a thread finishes the subtree it is in
 * before moving on, which keeps the pending set to the siblings along its
 * path).  A thread whose stack is empty steals the OLDEST directory of
 * another thread (the shallowest, hence usually the largest subtree), so
 * steals are rare and threads rarely meet on a lock.  A single shared LIFO
 * would be simpler, but every push and pop of every directory from every
 * thread would go through one mutex, and the threads would interleave their
 * subtrees (worse locality, more ancestors held open).
 *
 * Safety: every directory is opened with openat(parent_fd, name,
 * O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC) and every entry is looked at with
 * fstatat(dir_fd, name, AT_SYMLINK_NOFOLLOW), so a symlink swapped in for a
 * directory during the walk is refused (ELOOP/ENOTDIR), never followed.
 * Relative paths may be longer than PATH_MAX; no full path is ever given to
 * the kernel.  A directory that is its own ancestor (a bind mount loop) is
 * reported as an error (ELOOP) and not descended.
 *
 * File descriptors: a directory's fd stays open while its subdirectories are
 * pending so they can be opened relative to it.  At most max_open_dirs such
 * fds are held (plus one per root, and per thread the directory it is
 * reading, twice, and two while reopening); beyond that a subdirectory is
 * reopened one component at a time (O_PATH|O_NOFOLLOW, each checked to be
 * the same st_dev/st_ino as when it was read) from its nearest ancestor that
 * holds one, so a very deep tree costs time, never EMFILE.
 *
 * Memory: one small node per pending directory (~80 bytes + its name) and,
 * for each directory being read or with pending descendants, its path and
 * struct stat.  Entries themselves are never stored. */
#ifndef WALK_WALK_H
#define WALK_WALK_H

#include <haul/error.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "walk/filter.h"

enum walk_type {
    WALK_FILE,    /* regular file */
    WALK_DIR,     /* directory */
    WALK_SYMLINK, /* symbolic link (never followed) */
    WALK_OTHER,   /* FIFO, socket, block or character device */
};

/* One entry, valid only during the callback that receives it (copy what you
 * keep). */
struct walk_entry {
    size_t root_index;   /* which of the roots given to walk_run */
    const char *path;    /* relative to the root, no leading '/', "" for the
                          * root itself; NUL-terminated bytes, any encoding */
    size_t path_len;
    const char *name;    /* last component (points into path); "." for the root */
    int dirfd;           /* the open directory that holds name: open the entry
                          * with openat(dirfd, name, O_RDONLY|O_NOFOLLOW|...).
                          * For the root it is the root's own fd (name ".").
                          * -1 in the dir_done callback. */
    unsigned depth;      /* 0 for the root, 1 for its children */
    enum walk_type type;
    const struct stat *st; /* from fstatat(AT_SYMLINK_NOFOLLOW) (fstat for the root) */
    const char *link_target; /* symlinks: the target bytes, NUL-terminated; else NULL */
    size_t link_len;
    bool descend;        /* directories: the walker will read it (false for a
                          * mount point under one_filesystem) */
};

/* What the entry callback wants next. */
enum walk_action {
    WALK_CONTINUE = 0,
    WALK_PRUNE = 1, /* for a directory: report it but do not descend (no dir_done) */
    WALK_STOP = 2,  /* stop the whole walk as soon as possible (walk_run: HAUL_ECANCELED) */
};

/* One failure the walk went past: an unreadable directory, an entry that
 * vanished between readdir and stat, ... */
struct walk_failure {
    size_t root_index;
    const char *path;  /* relative to the root, as in walk_entry; NUL-terminated */
    size_t path_len;
    const char *op;    /* "open", "readdir", "stat", "readlink", "reopen", "alloc" */
    int errnum;        /* the errno value, or 0 when the walker found the
                        * problem itself (msg says what it was) */
    const char *msg;   /* one printable line: "root/path: op: cause" (control
                        * bytes in the path shown as \xNN) */
};

/* Callbacks run on any walker thread, several at once: they must be
 * thread-safe.  They must not close entry->dirfd. */
typedef enum walk_action (*walk_entry_fn)(const struct walk_entry *e, void *ctx);
typedef void (*walk_error_fn)(const struct walk_failure *f, void *ctx);

struct walk_opts {
    unsigned threads;        /* walker threads including the caller's; 0 means 8 */
    bool one_filesystem;     /* do not descend into directories on another st_dev
                              * than their root (the mount point itself is reported,
                              * with descend false) */
    const struct walk_filter *filter; /* NULL keeps everything; dropped entries are
                              * not reported, dropped directories not descended */
    walk_entry_fn entry;     /* required: every kept entry, a directory before anything
                              * below it; the roots too (path "") */
    walk_entry_fn dir_done;  /* optional: a directory after everything below it was
                              * reported and its own dir_done calls returned (deepest
                              * first: clone sets directory mtimes here).  Called for
                              * every directory that was read, even when some
                              * entries in it failed; not after a stop.  Only
                              * WALK_STOP in its return value has an effect. */
    walk_error_fn error;     /* optional: each failure; NULL logs it at LOG_WARN */
    void *ctx;               /* passed to the callbacks */
    const atomic_bool *cancel; /* optional: when it becomes true (set from a callback
                              * or any thread) the walk stops promptly; checked before
                              * each entry and each directory */
    bool stat_dirs_only;     /* regular files, FIFOs, sockets and devices are reported
                              * with a st holding only their type (S_IFMT bits, from
                              * readdir's d_type) when the filesystem gives it: one
                              * stat less per file for jobs that need only the
                              * directories' metadata.  Not with a filter that has
                              * size or time bounds. */
    size_t max_open_dirs;    /* fds held for directories with pending children;
                              * 0 means a quarter of RLIMIT_NOFILE, within 16..4096 */
};

struct walk_stats {
    uint64_t dirs, files, symlinks, others; /* entries reported, roots included in dirs */
    uint64_t bytes;        /* sum of st_size of the regular files reported */
    uint64_t filtered;     /* entries the filter dropped (a pruned directory counts once) */
    uint64_t errors;       /* failures passed to opts->error: nonzero means the walk
                            * did not see everything */
    uint64_t max_pending;  /* peak number of directories waiting to be read */
    uint64_t reopens;      /* directories reopened from an ancestor (fd budget reached) */
};

/* Walks the n_roots directories (paths as given; a symlink naming a root is
 * followed, nothing below it) and blocks until done.  The calling thread is
 * one of the walkers; the others are started and joined here.
 *
 * Returns 0 when the walk completed (even with failures: see stats->errors),
 * -HAUL_ECANCELED when *opts->cancel became true or a callback returned
 * WALK_STOP, -HAUL_EUSAGE for bad options, or the error of the first root
 * that cannot be opened as a directory (nothing is walked then).  stats (may
 * be NULL) is filled in every case.  Independent walks may run at once. */
int walk_run(const char *const *roots, size_t n_roots, const struct walk_opts *opts,
             struct walk_stats *stats, haul_error *err);

/* A short fixed name for a type ("file", "dir", "symlink", "other"). */
const char *walk_type_name(enum walk_type type);

#endif

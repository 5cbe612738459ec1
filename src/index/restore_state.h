/* index/restore_state: the deferred work of one restore run, on disk, so
 * memory does not grow with the number of directories, hard links or
 * archived objects: directory metadata (applied deepest first once every
 * file is written), hard links (made once every file exists) and the keys
 * of archived objects whose Glacier restore is still running.
 *
 * One SQLite file per run, "restore-<pid>-XXXXXX.db" in the state
 * directory, deleted by restore_state_close (files left by runs that died
 * are removed by the next open).  Safe to use from many threads: one
 * connection behind one mutex.  The _each functions read in batches and
 * call fn without the lock held, so fn may call the other functions. */
#ifndef INDEX_RESTORE_STATE_H
#define INDEX_RESTORE_STATE_H

#include <haul/error.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct restore_state;

/* Creates the state file in state_dir (created 0700 when missing).  NULL on
 * failure. */
struct restore_state *restore_state_open(const char *state_dir, haul_error *err);
/* Closes and deletes the file.  NULL is a no-op. */
void restore_state_close(struct restore_state *rs);

/* A directory whose metadata is applied at the end.  path is relative to
 * the restore root ("." for the root), without NUL bytes. */
struct restore_dir {
    const char *path;
    int depth;              /* components in path; 0 for "." */
    unsigned has;           /* META_HAS_* bits of what is known */
    uint32_t mode, uid, gid;
    int64_t mtime_sec, atime_sec;
    long mtime_nsec, atime_nsec;
};

/* Records (or replaces) a directory. */
int restore_state_dir_add(struct restore_state *rs, const struct restore_dir *d, haul_error *err);
/* Calls fn for every directory, deepest first.  A non-zero return from fn
 * stops and is returned. */
typedef int (*restore_dir_fn)(const struct restore_dir *d, void *ctx);
int restore_state_dirs_each(struct restore_state *rs, restore_dir_fn fn, void *ctx, haul_error *err);

/* Records that path is to be a hard link to first (both relative). */
int restore_state_link_add(struct restore_state *rs, const char *path, const char *first,
                           haul_error *err);
typedef int (*restore_link_fn)(const char *path, const char *first, void *ctx);
int restore_state_links_each(struct restore_state *rs, restore_link_fn fn, void *ctx,
                             haul_error *err);

/* Archived objects not readable yet (a restore was requested or is running). */
int restore_state_pending_add(struct restore_state *rs, const char *key, haul_error *err);
int restore_state_pending_remove(struct restore_state *rs, const char *key, haul_error *err);
/* 1 when key is pending, 0 when not, <0 on error. */
int restore_state_pending_has(struct restore_state *rs, const char *key, haul_error *err);
/* Pending keys in key order; fn may remove the key it is given. */
typedef int (*restore_key_fn)(const char *key, void *ctx);
int restore_state_pending_each(struct restore_state *rs, restore_key_fn fn, void *ctx,
                               haul_error *err);
/* How many keys are pending (<0 on error). */
int64_t restore_state_pending_count(struct restore_state *rs);

#endif

/* index: the on-disk catalog of what a backup stored where (SQLite), so an
 * incremental run compares each file with the catalog instead of listing the
 * bucket, and memory does not grow with the file count.  One index per
 * destination (endpoint, bucket, prefix).  Safe to use from many threads:
 * one connection behind one mutex; writes are batched into transactions. */
#ifndef INDEX_INDEX_H
#define INDEX_INDEX_H

#include <haul/error.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct index;

/* What the index knows of one stored object (one path). */
struct index_entry {
    char key[1100];          /* object key (prefix + relative path) */
    uint64_t size;
    int64_t mtime_ns;        /* the file's mtime when it was stored */
    uint32_t mode;           /* st_mode, with the type bits */
    uint32_t uid, gid;
    char etag[128];
    char storage_class[32];
    char tree_hash[65];      /* SHA-256 tree hash (hex), "" when not computed */
};

/* Opens (creating when missing) the index at path.  NULL on failure. */
struct index *index_open(const char *path, haul_error *err);
/* Commits pending writes and closes.  NULL is a no-op. */
int index_close(struct index *ix, haul_error *err);

/* Path of the index for a destination under state_dir (created). */
int index_path_for(const char *state_dir, const char *endpoint, const char *bucket,
                   const char *prefix, char *out, size_t cap, haul_error *err);

/* Finds key.  Returns 1 and fills out when present, 0 when absent, <0 on error. */
int index_get(struct index *ix, const char *key, struct index_entry *out, haul_error *err);

/* Records (inserts or replaces) an object that is complete on the server,
 * stamped with the current run. */
int index_put(struct index *ix, const struct index_entry *e, haul_error *err);

/* Stamps key as seen by the current run (an unchanged file). */
int index_touch(struct index *ix, const char *key, haul_error *err);

/* Starts a run: entries not put or touched before index_run_end are the
 * ones whose files are gone. */
int index_run_begin(struct index *ix, haul_error *err);

/* Calls fn for every entry not seen in the current run (keys of files that
 * are gone), in key order, a page at a time without the lock held: fn may
 * delete entries (index_delete).  Stops at fn's first non-zero return. */
typedef int (*index_key_fn)(const char *key, void *ctx);
int index_unseen_each(struct index *ix, index_key_fn fn, void *ctx, haul_error *err);

/* Removes key (its object was deleted). */
int index_delete(struct index *ix, const char *key, haul_error *err);

/* Hard links: the first key stored for (dev, ino) in this run, or stores
 * key as the first one.  Returns 1 and fills first (cap bytes) when another
 * key came first, 0 when key is now the first, <0 on error. */
int index_link_first(struct index *ix, uint64_t dev, uint64_t ino, const char *key, char *first,
                     size_t cap, haul_error *err);

/* Entries in the index (for summaries and tests). */
int64_t index_count(struct index *ix);

/* Named values about the destination, kept with the index (e.g. the
 * identity of each source root, fs/srcid).  get: 1 and value filled (cap
 * bytes) when name is set, 0 when not, <0 on error.  set: inserts or
 * replaces, committed with the run's other writes. */
int index_prop_get(struct index *ix, const char *name, char *value, size_t cap, haul_error *err);
int index_prop_set(struct index *ix, const char *name, const char *value, haul_error *err);

#endif

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
#include <sys/stat.h>

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
    uint32_t nlink;          /* st_nlink when stored (0: not recorded) */
    /* Hard links: the object holds the bytes of its inode (link ""), or is
     * a link object naming the path (relative to the backup root) of the
     * one that holds them.  link_unknown: an entry from an index older than
     * link roles whose object looks like a link object (a non-empty file
     * stored as an empty body): stored as a link to a name not recorded. */
    char link[4096];
    bool link_unknown;
    bool seen;               /* index_get: put or touched by the current run */
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

/* Hard links are decided once the walk is over, when every name of an
 * inode is known (so the name that holds the bytes can stay the same from
 * run to run, and a surviving name takes over from one that is gone).
 * One name, as the walk saw it: */
struct index_link_name {
    struct stat st;   /* as walked; st_dev and st_ino say which inode */
    uint32_t root;    /* which backup root it was found under */
    const char *key;  /* its object key */
    const char *path; /* relative to the backup root (what link objects name) */
    bool after;       /* postponed until its holder is stored (index_link_postpone) */
};

/* Records a name for the end of the run (this connection only). */
int index_link_defer(struct index *ix, const struct index_link_name *name, haul_error *err);

/* Marks a deferred name as postponed (its holder is stored first). */
int index_link_postpone(struct index *ix, const char *key, haul_error *err);

/* Calls fn once per inode recorded by index_link_defer, with all its names
 * in key order (valid during the call; the lock is not held, so fn may use
 * the index).  Stops at fn's first non-zero return, which it returns. */
typedef int (*index_links_fn)(const struct index_link_name *names, size_t n, void *ctx);
int index_links_each(struct index *ix, index_links_fn fn, void *ctx, haul_error *err);

/* Forgets every entry the current run did not put or touch (--rescan-remote:
 * what the listing lacks).  Returns how many went, <0 on error. */
int64_t index_unseen_drop(struct index *ix, haul_error *err);

/* The id of the marker object this index was bound to (see
 * job/backup.h, backup_index_bind): 1 and id filled when recorded, 0 when
 * none is, <0 on error.  index_marker_set records it ("" forgets it). */
int index_marker_get(struct index *ix, char *id, size_t cap, haul_error *err);
int index_marker_set(struct index *ix, const char *id, haul_error *err);

/* One run per destination: takes flock(LOCK_EX|LOCK_NB) on index_path +
 * ".lock" and writes "pid host" in it.  A lock file left by a process that
 * died is taken over (the kernel released its flock).  When another live
 * process holds it, fails with HAUL_EIO "another backup of DEST is running
 * (pid N on HOST)".  Returns the descriptor holding the lock, -1 on error. */
int index_lock_take(const char *index_path, const char *dest, haul_error *err);
/* Releases it (closes fd; the file stays, for the next run).  -1 is a no-op. */
void index_lock_release(int fd);

/* Entries in the index (for summaries and tests). */
int64_t index_count(struct index *ix);

/* Named values about the destination, kept with the index (e.g. the
 * identity of each source root, fs/srcid).  get: 1 and value filled (cap
 * bytes) when name is set, 0 when not, <0 on error.  set: inserts or
 * replaces, committed with the run's other writes. */
int index_prop_get(struct index *ix, const char *name, char *value, size_t cap, haul_error *err);
int index_prop_set(struct index *ix, const char *name, const char *value, haul_error *err);

#endif

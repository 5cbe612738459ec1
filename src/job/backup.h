/* job/backup: a POSIX tree (or several) to a bucket, incrementally.
 *
 * The walk (src/walk) streams entries to a decision made on the walker
 * thread: unchanged against the index (size, mtime to the nanosecond, mode,
 * uid, gid; with check_sha256 also the content's tree hash) means only a
 * stamp in the index; anything else becomes a task on one of two bounded
 * queues.  Small files, directories and symlinks go to a pool of small-file
 * workers (one PUT each, metadata in the same request); larger files to
 * the large-file worker driving the streaming engine (src/xfer: one
 * sequential reader, parts sent in parallel), so small files never wait
 * behind a TiB file.  The index is written only after an
 * object is complete on the server, so a run killed midway loses nothing:
 * the next run uploads what is missing.  Memory is bounded by the queues
 * and the engine's buffer pool, not by the number of files. */
#ifndef JOB_BACKUP_H
#define JOB_BACKUP_H

#include <haul/error.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "index/index.h"
#include "meta/meta.h"
#include "s3/s3.h"
#include "walk/filter.h"
#include "xfer/xfer.h"

struct srcid;

struct backup_stats {
    atomic_uint_fast64_t files, dirs, symlinks, others; /* entries seen */
    atomic_uint_fast64_t bytes_seen;        /* sizes of the regular files seen */
    atomic_uint_fast64_t uploaded;          /* objects written */
    atomic_uint_fast64_t bytes_uploaded;
    atomic_uint_fast64_t unchanged;         /* skipped: the index says identical */
    atomic_uint_fast64_t hardlinks;         /* later paths of a hard-linked inode */
    atomic_uint_fast64_t deleted;           /* objects removed (--delete) */
    atomic_uint_fast64_t errors;            /* entries that could not be backed up */
    atomic_uint_fast64_t rescanned;         /* objects read back into the index */
};

/* One entry to store, as the walker (or a distributed worker) found it. */
enum backup_item_kind { BACKUP_FILE, BACKUP_DIR, BACKUP_SYMLINK, BACKUP_HARDLINK };

struct backup_item {
    enum backup_item_kind kind;
    int fd;             /* BACKUP_FILE: open for reading, owned by the item; else -1 */
    struct stat st;     /* what is recorded (a file changed since fails the upload) */
    char *key;
    char *path;         /* relative to the backup root, for messages */
    char *link;         /* symlink target, or the first path of a hard-linked inode */
    char tree[SHA256_HEX_LEN + 1]; /* precomputed tree hash, "" when none */
};

/* Frees it (closing its fd).  NULL is a no-op. */
void backup_item_free(struct backup_item *it);

typedef void (*backup_line_fn)(const char *what, const char *key, void *ctx);

struct backup_opts {
    const char *const *roots;   /* directories; one root: its contents go under the
                                   prefix; several: each under prefix + its base name */
    size_t n_roots;
    const char *bucket;
    const char *prefix;         /* "" or ending with "/" */
    uint64_t small_threshold;   /* files up to this size stay in STANDARD (128 KiB) */
    const char *storage_class_large; /* class for larger files; NULL: the bucket default */
    int small_workers;          /* default 16 */
    int large_workers;          /* files streamed at once, default 1: one sequential reader,
                                   so memory for large files is buffers x part size */
    int walk_threads;           /* default 4 */
    struct xfer_opts xfer;      /* part size, workers, buffers for large files */
    const struct walk_filter *filter;
    bool check_sha256;          /* compare and record the SHA-256 tree hash */
    bool dry_run;               /* decide and report, change nothing */
    bool delete_missing;        /* remove objects whose file is gone (with dry_run: list them) */
    /* --delete's guards (fs/srcid), as clone's delete pass: each root's
     * identity is recorded in the index after a run; --delete refuses an
     * empty root, another filesystem than recorded, or a root that changed
     * during the run, and with max_delete_set more than max_delete objects. */
    bool allow_empty_src, allow_new_src;
    bool max_delete_set;
    uint64_t max_delete;
    bool rescan_remote;         /* rebuild the index from the bucket first (listing + HEADs;
                                   entries the listing lacks are dropped) */
    bool one_filesystem;
    const char *state_dir;      /* the index lives here */
    const atomic_bool *cancel;
    backup_line_fn line;        /* each decision ("upload", "delete", "error"), may be NULL */
    void *line_ctx;
};

/* Stores one item: a file up to o->small_threshold bytes, a directory, a
 * symlink or a hard link in one PUT (buf: o->small_threshold bytes), a
 * larger file through the streaming engine (o->xfer, storage class
 * o->storage_class_large).  On success fills rec, the index entry of what
 * was stored, and *bytes, the body bytes sent. */
int backup_item_upload(struct s3_client *c, const struct backup_opts *o, struct backup_item *it, char *buf,
                       struct index_entry *rec, uint64_t *bytes, haul_error *err);

/* True when st is what e recorded: size, mtime to the nanosecond, mode,
 * uid, gid (the incremental test). */
bool backup_same_as_indexed(const struct index_entry *e, const struct stat *st);

/* The identity of each root (o->n_roots entries in ids) at the start of a
 * run; a root that cannot be probed gets ino 0 (unknown: --delete then
 * refuses). */
void backup_src_probe(const struct backup_opts *o, struct srcid *ids);

/* After a run (not a dry run): records in the index each root's identity
 * that fs/srcid says should be (not empty; the recorded filesystem, none
 * yet, or allow_new_src); a mismatch is only logged. */
int backup_src_record(const struct backup_opts *o, struct index *ix, const struct srcid *ids, haul_error *err);

/* backup_same_as_indexed, and stored in the same role: holder NULL for a
 * name that holds its bytes (e says it did), else the path of the name it
 * is a link to (e says it was a link to that one). */
bool backup_unchanged(const struct index_entry *e, const struct stat *st, const char *holder);

/* Hard links, decided the same way by backup_run and the --broker
 * coordinator once every name is known (index_link_defer during the walk):
 * per inode, the name that held the bytes last run keeps them when it is
 * still one of the names, else the first in key order takes them; every
 * other name is a link object naming it.  A name whose role changed (the
 * holder was removed or renamed, a link named a holder that is gone) is
 * not unchanged, so it is re-stored in this run, before --delete removes
 * anything.  Two passes, so that no link object names a holder before the
 * holder's object is complete: BACKUP_LINKS_FIRST gives the holders and
 * the links whose holder is unchanged (and postpones the others);
 * BACKUP_LINKS_AFTER, once what the first pass queued is stored, gives the
 * postponed links whose holder is now in the index as stored (a holder
 * that failed was reported: its links stay as they were, and --delete is
 * skipped).  BACKUP_LINKS_ALL does both at once (a dry run). */
enum backup_links_pass { BACKUP_LINKS_FIRST = 1, BACKUP_LINKS_AFTER = 2, BACKUP_LINKS_ALL = 3 };
struct backup_link_choice {
    const struct index_link_name *name;
    const char *holder;            /* NULL: this name holds the bytes; else the path it links to */
    bool indexed;                  /* old is the entry of name->key */
    bool unchanged;                /* backup_unchanged: only a stamp is needed */
    bool holder_missing;           /* BACKUP_LINKS_AFTER: name is a holder this run did not
                                      store (an error to report: its links wait) */
    const struct index_entry *old;
};
/* The error of a choice with holder_missing. */
int backup_holder_missing_error(const struct backup_link_choice *c, haul_error *err);
/* < 0: an error (stops, returned); > 0: stop; 0: go on. */
typedef int (*backup_link_fn)(const struct backup_link_choice *c, void *ctx, haul_error *err);
/* *postponed (may be NULL) counts the links the first pass postponed. */
int backup_links_decide(struct index *ix, enum backup_links_pass pass, backup_link_fn fn, void *ctx,
                        size_t *postponed, haul_error *err);

/* Takes the destination's lock (index_lock_take: "another backup of
 * s3://B/P is running ...") and opens its index; on success the caller
 * closes *ix, then releases *lock (index_lock_release). */
int backup_index_open(struct s3_client *c, const struct backup_opts *o, struct index **ix, int *lock,
                      haul_error *err);

/* Binds the index to the bucket: the marker object PREFIX.haul/index-id
 * holds (x-amz-meta-haul-index-id) a random id the index records.  One
 * HEAD: when the marker is missing or holds another id (the bucket was
 * emptied or recreated, the prefix removed, another state dir wrote it)
 * the index is stale: one warning, the index is rebuilt from the listing
 * (as with o->rescan_remote, which forces it: entries of listed objects
 * are (re)read, entries the listing lacks are dropped), then a new marker
 * is written (not with dry_run). */
int backup_index_bind(struct s3_client *c, const struct backup_opts *o, struct index *ix,
                      struct backup_stats *stats, haul_error *err);

/* The error of a top-level entry named ".haul" (root/name, or root itself
 * when name is NULL): PREFIX.haul/ is reserved for haul's own objects. */
int backup_reserved_error(const struct backup_opts *o, const char *root, const char *name, haul_error *err);

/* --delete: removes the objects of index entries the current run did not
 * see (their files are gone), 1000 keys per request; skipped with a
 * warning when stats->errors says some entries could not be read.  When
 * some would go: refused (-HAUL_EINTEGRITY, nothing deleted, err saying
 * why and which flag overrides) when a root is now empty, unknown, not
 * what ids (the start of the run) saw, or another filesystem than the
 * index recorded, or when more than o->max_delete would go; with
 * o->dry_run only listed (line "delete (dry run)"). */
int backup_delete_gone(struct s3_client *c, const struct backup_opts *o, struct index *ix,
                       const struct srcid *ids, struct backup_stats *stats, haul_error *err);

/* Runs the backup.  Returns 0 when every entry was backed up (or was
 * unchanged); -HAUL_EIO (with err naming how many) when some entries failed
 * (each was reported through opts->line and the log); other negative codes
 * when the run could not start or the server refused it.  stats is filled in
 * every case. */
int backup_run(struct s3_client *c, const struct backup_opts *opts, struct backup_stats *stats,
               haul_error *err);

#endif

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
    bool rescan_remote;         /* rebuild the index from the bucket first (listing + HEADs) */
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

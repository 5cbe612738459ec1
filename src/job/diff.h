/* job/diff: a local tree against what a backup stored.  The bucket listing
 * goes into a scratch SQLite table (memory stays flat at any object count),
 * the tree is walked in parallel, each entry present on both sides is
 * compared by type, size and the mtime recorded in the object's metadata
 * (one HEAD each, in parallel).  With check_sha256 the file's bytes are also
 * checked against what the server computed of the object's (the MD5 ETag,
 * the multipart ETag at the recorded part size, or an x-amz-checksum-*) and
 * against the SHA-256 tree hash haul recorded, without a download; with
 * download every object is read back and compared byte for byte.  A link
 * object's target must be in the bucket.  Then whatever the walk did not see
 * is "only in the bucket", and keys the backup index of this destination
 * (when the state dir has one) records but the bucket lacks are reported. */
#ifndef JOB_DIFF_H
#define JOB_DIFF_H

#include <haul/error.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "s3/s3.h"
#include "walk/filter.h"

struct diff_stats {
    atomic_uint_fast64_t same, only_local, only_remote, changed, errors;
    atomic_uint_fast64_t dangling;   /* link objects whose target is missing or a link itself */
    atomic_uint_fast64_t links;      /* link objects whose target was checked */
    atomic_uint_fast64_t index_only; /* keys the backup index records, the bucket lacks */
    bool index_checked;              /* a backup index for this destination was found */
    /* Content checks (check_sha256, download): how each object's bytes were
     * checked; unverified ones could not be, sha256_metadata_only of those
     * matched haul's own tree hash (which someone replacing the object may
     * have copied). */
    atomic_uint_fast64_t by_md5, by_multipart_md5, by_checksum, by_download;
    atomic_uint_fast64_t unverified, sha256_metadata_only;
};

/* kind: "only-local", "only-remote", "changed", "dangling-link" (why names
 * the target), "index-only" (the backup index has the key, the bucket not),
 * "unverified" (not a difference: why says why the bytes could not be
 * checked); why for "changed": what differs ("type", "size", "md5",
 * "multipart-md5", "checksum-ALGO", "bytes", "sha256", "mtime", "mode"). */
typedef void (*diff_line_fn)(const char *kind, const char *key, const char *why, void *ctx);

struct diff_opts {
    const char *root;
    const char *bucket;
    const char *prefix;    /* "" or ending with "/" */
    bool check_sha256;     /* check content against the server's digests and the tree hash */
    bool download;         /* read every object back instead (no other GET is ever made) */
    int workers;           /* parallel HEAD requests (default 16) */
    const struct walk_filter *filter;
    const char *state_dir; /* scratch table lives here while diff runs */
    diff_line_fn line;
    void *line_ctx;
    const atomic_bool *cancel;
};

/* Returns 0 when the comparison ran (stats say whether anything differs),
 * negative when it could not run or some entries could not be compared
 * (stats->errors). */
int diff_run(struct s3_client *c, const struct diff_opts *o, struct diff_stats *stats, haul_error *err);

#endif

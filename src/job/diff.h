/* job/diff: a local tree against what a backup stored.  The bucket listing
 * goes into a scratch SQLite table (memory stays flat at any object count),
 * the tree is walked in parallel, each entry present on both sides is
 * compared by type, size and the mtime recorded in the object's metadata
 * (one HEAD each, in parallel), or with check_sha256 by the SHA-256 tree hash
 * recorded at backup against the file's own: the remote side needs no
 * download.  Then whatever the walk did not see is "only in the bucket". */
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
};

/* kind: "only-local", "only-remote", "changed"; why: what differs ("size",
 * "mtime", "sha256", "type", "mode", "no tree hash recorded"), "" otherwise. */
typedef void (*diff_line_fn)(const char *kind, const char *key, const char *why, void *ctx);

struct diff_opts {
    const char *root;
    const char *bucket;
    const char *prefix;    /* "" or ending with "/" */
    bool check_sha256;
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

/* xfer/journal: the on-disk record of a multipart upload in progress, so a
 * rerun after a crash resumes it instead of starting over (private to xfer). */
#ifndef XFER_JOURNAL_H
#define XFER_JOURNAL_H

#include <haul/error.h>
#include <stdint.h>
#include <time.h>

struct journal {
    char path[4096];      /* STATE_DIR/uploads/<sha256 of endpoint, bucket, key, source>.upload */
    char upload_id[512];
    uint64_t size;        /* the source's size and mtime when the upload began */
    struct timespec mtime;
    uint64_t part_size;
};

/* Fills j->path for this upload; creates STATE_DIR/uploads. */
int journal_locate(struct journal *j, const char *state_dir, const char *endpoint,
                   const char *bucket, const char *key, const char *source_id, haul_error *err);
/* Reads the journal at j->path into j.  Returns 0, or -1 when there is none
 * (or it is unreadable: then it is ignored, as if absent). */
int journal_load(struct journal *j);
/* Writes j durably (temporary file, fsync, rename). */
int journal_save(const struct journal *j, haul_error *err);
/* Removes the journal: the upload completed or was aborted. */
void journal_remove(const struct journal *j);

#endif

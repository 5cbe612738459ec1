/* xfer: moving one object's bytes.  Uploads read the source sequentially
 * into buffers from a bounded pool and send each full buffer as a multipart
 * part on whichever connection is free ("disk sequential, network
 * parallel"); downloads fetch ranges in parallel and write them at their
 * offset, or in order to a pipe.  Memory is the pool: buffers x part size. */
#ifndef XFER_XFER_H
#define XFER_XFER_H

#include <haul/error.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "s3/s3.h"

#define XFER_MIB (1024ull * 1024)
#define XFER_PART_MIN (5 * XFER_MIB)           /* S3: every part but the last */
#define XFER_PART_MAX (5 * 1024 * XFER_MIB)    /* S3: 5 GiB */
#define XFER_PARTS_MAX 10000
#define XFER_OBJECT_MAX (5 * 1024 * 1024 * XFER_MIB) /* 5 TiB */
#define XFER_SIZE_UNKNOWN UINT64_MAX
/* User metadata haul adds to multipart objects: the part size, so a download
 * can check every byte against the multipart ETag. */
#define XFER_META_PART_SIZE "haul-part-size"

/* Part size for an object of size bytes (XFER_SIZE_UNKNOWN for a stream):
 * wanted rounded up so the object fits in 10,000 parts, never under 5 MiB or
 * over 5 GiB.  Fails (HAUL_EUSAGE) for objects over 5 TiB. */
int xfer_part_size_plan(uint64_t size, uint64_t wanted, uint64_t *part_size, haul_error *err);

/* CreateMultipartUpload with opts (may be NULL) plus XFER_META_PART_SIZE =
 * part_size (0: a stream whose parts vary, not recorded).  For uploads
 * whose parts are sent by others (job/dbackup's spread over workers). */
int xfer_mpu_create(struct s3_client *c, const char *bucket, const char *key, const struct s3_put_opts *opts,
                    uint64_t part_size, char *upload_id, size_t cap, haul_error *err);

/* A multipart upload recorded in STATE_DIR/uploads, so that a run killed
 * meanwhile takes it up again: the streaming upload's own, and
 * job/dbackup's, whose parts workers send. */
struct xfer_mpu {
    char upload_id[512];
    bool resumed;      /* taken up from an interrupted run */
    char record[4096]; /* the record's path; "" when not recorded */
};

/* Opens the multipart upload of bucket/key for the regular file *st (named
 * source_id in the record, its absolute path) cut in part_size parts.  It
 * takes up the upload an interrupted run recorded when the source's size,
 * mtime and the part size are unchanged and the server still has it
 * (found() is called for each part the server holds, from ListParts); any
 * other recorded upload is aborted.  Else it creates one (xfer_mpu_create
 * with opts) and records it.  state_dir or source_id NULL: created, not
 * recorded.  Fails only when no upload could be created. */
int xfer_mpu_open(struct s3_client *c, const char *state_dir, const char *source_id, const char *bucket,
                  const char *key, const struct s3_put_opts *opts, const struct stat *st, uint64_t part_size,
                  s3_part_fn found, void *ctx, struct xfer_mpu *out, haul_error *err);

/* The upload completed or is surely gone (aborted): forgets its record. */
void xfer_mpu_forget(struct xfer_mpu *m);

/* Removes every record in STATE_DIR/uploads of the upload upload_id (it was
 * aborted by other means: haul rm --uploads).  Returns how many. */
int xfer_mpu_records_forget(const char *state_dir, const char *upload_id);

/* Size of part number n (1-based) of a stream of unknown length whose first
 * parts are base bytes (at least 6 MiB): doubles every 1,000 parts, so
 * 10,000 parts hold more than 5 TiB.  Capped at 5 GiB. */
uint64_t xfer_stream_part_size(uint64_t base, int part_number);

typedef void (*xfer_progress_fn)(uint64_t bytes_done, void *ctx);

struct xfer_opts {
    uint64_t part_size;           /* wanted part size; default 8 MiB */
    uint64_t multipart_threshold; /* objects at least this big go multipart; default part_size */
    int workers;                  /* parts or ranges in flight; default 8 */
    int buffers;                  /* pool size; default workers + 2 */
    const struct s3_put_opts *put;
    xfer_progress_fn progress;    /* called from many threads, with a running total */
    void *progress_ctx;
    bool no_verify;               /* skip the whole-object ETag/MD5 check on download */
    const atomic_bool *cancel;    /* when it becomes true the transfer stops (an upload is aborted) */
    const char *state_dir;        /* upload: journal multipart uploads here so a rerun resumes */
    const char *source_id;        /* upload: names the source in the journal (its absolute path) */
    bool direct;                  /* upload: read regular files with O_DIRECT (aligned, page cache bypassed) */
};

struct xfer_result {
    uint64_t bytes;
    int parts;             /* 0 for a single PUT/GET */
    int parts_resumed;     /* upload: parts found on the server from an interrupted run */
    char etag[128];
    bool verified;         /* download: the bytes were checked against the ETag */
    uint64_t peak_buffer_bytes; /* memory the pool allocated */
};

/* Uploads everything readable from fd (a file or a pipe) to bucket/key. */
int xfer_upload_fd(struct s3_client *c, int fd, const char *bucket, const char *key,
                   const struct xfer_opts *opts, struct xfer_result *res, haul_error *err);

/* Downloads bucket/key into fd, written in order from the calling thread
 * (fd's current position: a fresh file, a pipe, or the end of what is
 * there).  Ranges of part_size are fetched by `workers` threads into
 * `buffers` buffers; every range carries If-Match on the ETag seen first. */
int xfer_download_fd(struct s3_client *c, const char *bucket, const char *key, int fd,
                     const struct xfer_opts *opts, struct xfer_result *res, haul_error *err);

#endif

/* haul: stream S3 objects from C programs without cache files.
 *
 * Link with build/libhaul.a and `pkg-config --libs libcurl libxml-2.0
 * libcrypto` -pthread.  Every function that can fail fills a caller-provided
 * haul_error (see haul/error.h) with a one-line message naming the object and
 * the cause; `err` may be NULL when the caller does not want it.
 *
 * Threads: one haul_client may be shared by any number of threads (it holds
 * the connection pool).  A haul_stream belongs to one thread at a time.
 *
 * Memory: a stream uses at most buffers x part_size bytes of transfer
 * buffers (defaults 10 x 8 MiB), whatever the object's size. */
#ifndef HAUL_HAUL_H
#define HAUL_HAUL_H

#include <haul/error.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct haul_client haul_client;
typedef struct haul_stream haul_stream;

/* Where to connect.  Any field left NULL or 0 is taken from the environment
 * and ~/.aws files exactly as the haul command does (AWS_ENDPOINT_URL,
 * AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, ...). */
typedef struct haul_config {
    const char *endpoint_url;
    const char *region;
    const char *profile;
    int max_connections;  /* connection pool size (default 16) */
    int max_attempts;     /* tries per request (default 5) */
    uint64_t part_size;   /* multipart part size (default 8 MiB) */
    int workers;          /* parts in flight per stream (default 8) */
    int buffers;          /* buffers per stream (default workers + 2) */
} haul_config;

/* Makes a client; NULL on failure (bad configuration, no credentials).
 * cfg may be NULL for all defaults. */
haul_client *haul_client_new(const haul_config *cfg, haul_error *err);
/* Frees the client; every stream must be closed first.  NULL is a no-op. */
void haul_client_free(haul_client *client);

/* Opens "s3://bucket/key" for reading ("r": parallel ranged GETs delivered
 * in order) or writing ("w": a multipart upload fed through a bounded ring
 * of buffers; haul_write blocks while the ring is full).  NULL on failure;
 * for "r", a missing object fails here. */
haul_stream *haul_open(haul_client *client, const char *s3url, const char *mode, haul_error *err);

/* Reads up to n bytes; returns the count, 0 at the end of the object, -1 on
 * error (then haul_close reports it), including a failed final check of the
 * bytes against the object's ETag. */
ssize_t haul_read(haul_stream *stream, void *buf, size_t n);

/* Writes n bytes; returns n, or -1 when the upload has failed (haul_close
 * reports why). */
ssize_t haul_write(haul_stream *stream, const void *buf, size_t n);

/* Writing: completes the upload and checks the server's ETag; on any earlier
 * failure the upload is aborted and nothing is left on the server.  Reading
 * to the end: reports the download's result, including the final check of
 * the bytes against the object's ETag (so check it before trusting the
 * data); reading stopped early: cancels the download and returns 0.  Frees
 * the stream in every case.  Returns 0 or the negated error code. */
int haul_close(haul_stream *stream, haul_error *err);

/* Writing: abandons the upload (aborted on the server; the object is not
 * created or replaced).  Frees the stream. */
void haul_abort(haul_stream *stream);

#ifdef __cplusplus
}
#endif
#endif

/* s3: the S3 client.  One client holds the configuration and a connection
 * pool shared by every thread; each call signs its request (SigV4), retries
 * what is worth retrying with exponential backoff and full jitter, and turns
 * S3 error documents into one-line messages naming the object and cause. */
#ifndef S3_S3_H
#define S3_S3_H

#include <haul/error.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "s3/config.h"
#include "s3/http.h"
#include "s3/xml.h"

struct s3_client;

/* Copies cfg; starts the connection pool.  NULL on failure. */
struct s3_client *s3_client_new(const struct s3_config *cfg, haul_error *err);
void s3_client_free(struct s3_client *client);
const struct s3_config *s3_client_config(const struct s3_client *client);
/* Every request of the client stops (HAUL_ECANCELED, no retry) once *flag
 * becomes true: a signal handler may set it.  NULL: never. */
void s3_client_cancel_set(struct s3_client *client, const atomic_bool *flag);

/* Fail fast, for one-shot commands (off by default: a daemon serving many
 * buckets must not stop at one bucket's error).  Once on, the first
 * bucket-level failure (NoSuchBucket, refused credentials, AccessDenied on
 * a bucket request), S3_FAIL_FAST_STREAK AccessDenied answers in a row with
 * no success between when a bucket listing is then refused too (else they
 * are the objects' own), or S3_FAIL_FAST_STREAK requests in a row failed on
 * transport (stalls, refused connections) after their retries, with no
 * answer between, make every later
 * request fail at once with that one error, sending nothing; requests in
 * flight are interrupted. */
#define S3_FAIL_FAST_STREAK 8
void s3_client_fail_fast_set(struct s3_client *client, bool on);
/* True once the client stopped so; err (may be NULL, first error wins)
 * receives that error. */
bool s3_client_failed(struct s3_client *client, haul_error *err);

/* Counters since the client was made (for --json summaries). */
struct s3_client_stats {
    uint64_t requests;
    uint64_t retries;
    uint64_t bytes_sent;
    uint64_t bytes_received;
};
void s3_client_stats_get(struct s3_client *client, struct s3_client_stats *out);

/* "s3://bucket/key" -> bucket and key (key may be "" for a bucket or
 * "s3://bucket/prefix/").  Returns 0, or HAUL_EUSAGE naming the URL. */
struct s3_url {
    char bucket[64];
    char *key; /* heap, never NULL after success */
};
int s3_url_parse(const char *url, struct s3_url *out, haul_error *err);
void s3_url_release(struct s3_url *url);

/* User metadata: name without the "x-amz-meta-" prefix, lower-case. */
struct s3_meta {
    char *name;
    char *value;
};

/* Options for writes (PutObject, CreateMultipartUpload, CopyObject). */
struct s3_put_opts {
    const struct s3_meta *meta;
    size_t n_meta;
    const char *storage_class; /* NULL: the bucket default (STANDARD) */
    const char *content_type;  /* NULL: binary/octet-stream */
};

/* What HEAD, GET and PUT tell about an object.  Release with
 * s3_object_info_release. */
struct s3_object_info {
    uint64_t size;
    time_t mtime;
    char etag[128];          /* without quotes */
    char storage_class[32];  /* "STANDARD" when the server sent none */
    char content_type[128];
    char restore[256];       /* x-amz-restore, "" when absent */
    char version_id[128];
    bool etag_not_md5;       /* SSE-KMS or SSE-C: the ETag is not the MD5 of the data */
    struct s3_meta *meta;    /* x-amz-meta-* */
    size_t n_meta;
};
void s3_object_info_release(struct s3_object_info *info);
/* The value of user metadata name, or NULL. */
const char *s3_object_info_meta(const struct s3_object_info *info, const char *name);

/* PutObject of an in-memory body, checked by the server: over plain http by
 * the signed SHA-256 payload hash, with UNSIGNED-PAYLOAD (https) by
 * Content-MD5.  info (may be NULL) receives the ETag. */
int s3_object_put(struct s3_client *c, const char *bucket, const char *key, const void *body,
                  size_t len, const struct s3_put_opts *opts, struct s3_object_info *info,
                  haul_error *err);

/* GetObject of bytes [offset, offset+length) (length 0: to the end) passed in
 * order to sink.  A retry after some bytes arrived resumes after them (with
 * If-Match on the ETag first seen, so a replaced object is an error, not a
 * mix).  info (may be NULL) receives the headers. */
int s3_object_get(struct s3_client *c, const char *bucket, const char *key, uint64_t offset,
                  uint64_t length, http_sink_fn sink, void *sink_ctx, struct s3_object_info *info,
                  haul_error *err);
/* The same, sent with If-Match: etag (unquoted) on every attempt, so ranges
 * of a replaced object are never mixed: that is HAUL_EINTEGRITY. */
int s3_object_get_match(struct s3_client *c, const char *bucket, const char *key, const char *etag,
                        uint64_t offset, uint64_t length, http_sink_fn sink, void *sink_ctx,
                        struct s3_object_info *info, haul_error *err);

/* HeadObject.  A missing object is HAUL_ENOTFOUND. */
int s3_object_head(struct s3_client *c, const char *bucket, const char *key,
                   struct s3_object_info *info, haul_error *err);

/* DeleteObject (a missing key is not an error, as in S3). */
int s3_object_delete(struct s3_client *c, const char *bucket, const char *key, haul_error *err);

/* DeleteObjects in batches of 1000.  Per-key failures are counted in
 * *failed (may be NULL) and the first is described in err. */
int s3_objects_delete(struct s3_client *c, const char *bucket, const char *const *keys, size_t n,
                      size_t *failed, haul_error *err);

/* Keys gathered for DeleteObjects and sent 1000 a request, so memory stays
 * flat however many go.  done (may be NULL) hears each key once its request
 * was answered: deleted, or not (the server refused that key, or the whole
 * request failed); a negative return fails the flush.  Fill c, bucket,
 * done, ctx and err; the rest starts at zero. */
struct s3_deleter {
    struct s3_client *c;
    const char *bucket;
    int (*done)(const char *key, bool deleted, void *ctx);
    void *ctx;
    haul_error *err;         /* the first failure */
    uint64_t deleted, failed; /* keys so far */
    size_t n;
    char *keys[1000];
};
/* Adds a copy of key, sending the batch when full.  < 0: a request failed. */
int s3_deleter_add(struct s3_deleter *d, const char *key);
/* Sends what is gathered. */
int s3_deleter_flush(struct s3_deleter *d);
/* Frees the keys never sent (after a failure). */
void s3_deleter_release(struct s3_deleter *d);

/* CopyObject (server side, up to 5 GiB).  With opts, metadata is replaced by
 * opts->meta; without, it is copied. */
int s3_object_copy(struct s3_client *c, const char *src_bucket, const char *src_key,
                   const char *dst_bucket, const char *dst_key, const struct s3_put_opts *opts,
                   haul_error *err);

/* ListObjectsV2 over all pages; fn sees each entry (see xml.h).  delimiter
 * may be NULL.  A non-zero return from fn stops the listing and is returned. */
int s3_objects_list(struct s3_client *c, const char *bucket, const char *prefix,
                    const char *delimiter, s3_list_entry_fn fn, void *ctx, haul_error *err);

/* One ListObjectsV2 request of at most one key under prefix (may be
 * NULL): whether the bucket is there and the credentials are accepted.
 * NoSuchBucket or refused credentials stop a fail-fast client;
 * AccessDenied does not (write-only credentials may not list). */
int s3_bucket_check(struct s3_client *c, const char *bucket, const char *prefix, haul_error *err);

/* Multipart uploads. */
int s3_mpu_create(struct s3_client *c, const char *bucket, const char *key,
                  const struct s3_put_opts *opts, char *upload_id, size_t cap, haul_error *err);
/* Checked by the server as PutObject is.  md5 (may be NULL: computed here
 * when needed) is the part's MD5, sent as Content-MD5 with UNSIGNED-PAYLOAD. */
int s3_mpu_part_put(struct s3_client *c, const char *bucket, const char *key, const char *upload_id,
                    int part_number, const void *body, size_t len, const uint8_t *md5,
                    char *etag, size_t etag_cap, haul_error *err);
/* Completes with parts in ascending order; info (may be NULL) receives the
 * object's ETag (fetched by HEAD when the server's reply has none).  An
 * error document inside a 200 answer (InternalError, SlowDown) is retried
 * like an error status.  *completed (may be NULL) is set once the server
 * said the object exists, even when a later step fails.  A retry answered
 * NoSuchUpload (the first answer was lost after the server completed) is
 * a success when HEAD shows the ETag these parts make. */
int s3_mpu_complete(struct s3_client *c, const char *bucket, const char *key, const char *upload_id,
                    const struct s3_completed_part *parts, size_t n, struct s3_object_info *info,
                    bool *completed, haul_error *err);
/* The ETag S3 gives the object of these parts: hex MD5 of the parts' MD5s,
 * "-N".  Returns 0, or -1 when a part's ETag is not an MD5 (SSE-KMS). */
int s3_mpu_etag(const struct s3_completed_part *parts, size_t n, char *out, size_t cap);
int s3_mpu_abort(struct s3_client *c, const char *bucket, const char *key, const char *upload_id,
                 haul_error *err);
int s3_mpu_parts_list(struct s3_client *c, const char *bucket, const char *key,
                      const char *upload_id, s3_part_fn fn, void *ctx, haul_error *err);
/* ListMultipartUploads under prefix (may be NULL), all pages. */
int s3_mpu_list(struct s3_client *c, const char *bucket, const char *prefix, s3_upload_fn fn,
                void *ctx, haul_error *err);

/* RestoreObject (Glacier / Deep Archive): asks the server to make an
 * archived object readable for days, at tier "Bulk", "Standard" or
 * "Expedited".  *state says what the server answered. */
enum s3_restore_state {
    S3_RESTORE_STARTED,     /* 202: a new restore request */
    S3_RESTORE_IN_PROGRESS, /* 409 RestoreAlreadyInProgress */
    S3_RESTORE_DONE,        /* 200: already restored (the copy's expiry was extended) */
};
int s3_object_restore(struct s3_client *c, const char *bucket, const char *key, int days,
                      const char *tier, enum s3_restore_state *state, haul_error *err);

/* x-amz-restore ("ongoing-request=\"false\", expiry-date=\"...\""): whether a
 * restore is still running, and when the restored copy expires (0 when not
 * given).  Returns 0, or -1 when the value is not of that form. */
int s3_restore_header_parse(const char *value, bool *ongoing, time_t *expiry);

/* Bucket lifecycle: the stored rules, and putting one rule (replacing the
 * bucket's configuration). */
int s3_bucket_lifecycle_get(struct s3_client *c, const char *bucket, s3_rule_fn fn, void *ctx,
                            haul_error *err);
int s3_bucket_lifecycle_put(struct s3_client *c, const char *bucket,
                            const struct s3_lifecycle_rule *rule, haul_error *err);
int s3_bucket_lifecycle_delete(struct s3_client *c, const char *bucket, haul_error *err);

/* Buckets. */
int s3_bucket_create(struct s3_client *c, const char *bucket, haul_error *err);
int s3_bucket_delete(struct s3_client *c, const char *bucket, haul_error *err);
int s3_buckets_list(struct s3_client *c, s3_bucket_fn fn, void *ctx, haul_error *err);

/* The checksum a server keeps of an object's bytes (x-amz-checksum-*, sent
 * on HEAD with x-amz-checksum-mode: ENABLED; servers without checksums,
 * such as RGW 16, send none).  name is "" when the server sent none. */
struct s3_checksum {
    char name[16];  /* "crc32", "crc32c", "crc64nvme", "sha1", "sha256" */
    char value[96]; /* base64, "-N" appended for a composite of N parts */
    char type[16];  /* x-amz-checksum-type: "COMPOSITE", "FULL_OBJECT" or "" */
};
/* HeadObject asking for the checksum: info as s3_object_head fills it. */
int s3_object_head_checksum(struct s3_client *c, const char *bucket, const char *key,
                            struct s3_object_info *info, struct s3_checksum *sum, haul_error *err);

#endif

/* s3/xml: parsing S3's XML responses and building its XML request bodies, over
 * libxml2.  Every parser takes untrusted bytes: it never reads past len, never
 * trusts lengths or counts in the document, and fails with HAUL_EPROTO and a
 * message naming what was wrong. */
#ifndef S3_XML_H
#define S3_XML_H

#include <haul/error.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "util/strbuf.h"

/* <Error><Code/><Message/><Key/><BucketName/><RequestId/></Error>; fields not
 * present are "".  Returns 0, or -1 when body is not an S3 error document. */
struct s3_error_doc {
    char code[64];
    char message[512];
    char key[512];
    char bucket[256];
    char request_id[128];
};
int s3_xml_error_parse(const char *body, size_t len, struct s3_error_doc *out);

/* One entry of ListObjectsV2 (Contents) or one CommonPrefixes/Prefix.  Strings
 * are valid only during the callback.  Keys are already URL-decoded when the
 * response says <EncodingType>url</EncodingType>; key_len counts bytes (a
 * hostile server could send a key with a NUL in it, callers must check). */
struct s3_list_entry {
    const char *key;
    size_t key_len;
    bool is_prefix;            /* a CommonPrefixes entry: only key is set */
    uint64_t size;
    time_t mtime;              /* LastModified, UTC; 0 if absent */
    const char *etag;          /* with the quotes removed; "" if absent */
    const char *storage_class; /* "STANDARD" if absent */
};
typedef int (*s3_list_entry_fn)(const struct s3_list_entry *entry, void *ctx);

struct s3_list_page {
    bool truncated;                /* IsTruncated */
    char next_token[1024];         /* NextContinuationToken, "" if none */
};
/* Calls fn for each Contents then each CommonPrefixes entry, in document
 * order; a non-zero return from fn stops parsing and is returned. */
int s3_xml_list_objects_parse(const char *body, size_t len, s3_list_entry_fn fn, void *ctx,
                              struct s3_list_page *page, haul_error *err);

/* ListAllMyBucketsResult: one call per bucket. */
typedef int (*s3_bucket_fn)(const char *name, time_t created, void *ctx);
int s3_xml_list_buckets_parse(const char *body, size_t len, s3_bucket_fn fn, void *ctx,
                              haul_error *err);

/* InitiateMultipartUploadResult/UploadId. */
int s3_xml_upload_id_parse(const char *body, size_t len, char *upload_id, size_t cap,
                           haul_error *err);

/* ListPartsResult: one call per Part; page->next_token receives
 * NextPartNumberMarker. */
typedef int (*s3_part_fn)(int part_number, uint64_t size, const char *etag, void *ctx);
int s3_xml_list_parts_parse(const char *body, size_t len, s3_part_fn fn, void *ctx,
                            struct s3_list_page *page, haul_error *err);

/* ListMultipartUploadsResult: one call per Upload.  The page carries both
 * markers for the next request. */
typedef int (*s3_upload_fn)(const char *key, const char *upload_id, time_t initiated, void *ctx);
struct s3_uploads_page {
    bool truncated;
    char next_key_marker[1024];
    char next_upload_id_marker[256];
};
int s3_xml_list_uploads_parse(const char *body, size_t len, s3_upload_fn fn, void *ctx,
                              struct s3_uploads_page *page, haul_error *err);

/* DeleteResult: fn is called for each <Error> (key, code, message); Deleted
 * entries are counted into *deleted (may be NULL). */
typedef int (*s3_delete_error_fn)(const char *key, const char *code, const char *message, void *ctx);
int s3_xml_delete_result_parse(const char *body, size_t len, s3_delete_error_fn fn, void *ctx,
                               size_t *deleted, haul_error *err);

/* CompleteMultipartUploadResult or CopyObjectResult (or CopyPartResult): both
 * may arrive with HTTP 200 yet hold an <Error>; then *is_error is set and doc
 * filled.  Otherwise etag receives the ETag without quotes ("" when the
 * server sent none, as Ceph RGW 16.2 does on completion). */
int s3_xml_result_etag_parse(const char *body, size_t len, char *etag, size_t cap, bool *is_error,
                             struct s3_error_doc *doc, haul_error *err);

/* Bodies for CompleteMultipartUpload and DeleteObjects (Quiet mode), with
 * keys XML-escaped (keys are arbitrary UTF-8).  Append to out; return 0 or -1. */
struct s3_completed_part {
    int part_number;
    const char *etag; /* without quotes */
};
int s3_xml_complete_build(struct strbuf *out, const struct s3_completed_part *parts, size_t n);
int s3_xml_delete_build(struct strbuf *out, const char *const *keys, size_t n);


/* LifecycleConfiguration: one call per <Rule>.  size_greater_than is -1 when
 * the rule has no ObjectSizeGreaterThan filter (Ceph RGW 16.2 and moto drop
 * it silently: callers must check).  Strings valid during the call only. */
struct s3_lifecycle_rule {
    const char *id;
    bool enabled;
    const char *prefix;          /* "" when none */
    int64_t size_greater_than;
    int transition_days;         /* -1 when no transition */
    const char *storage_class;   /* transition target, "" when none */
};
typedef int (*s3_rule_fn)(const struct s3_lifecycle_rule *rule, void *ctx);
int s3_xml_lifecycle_parse(const char *body, size_t len, s3_rule_fn fn, void *ctx, haul_error *err);
/* One rule moving objects larger than size_greater_than to storage_class
 * after days. */
int s3_xml_lifecycle_build(struct strbuf *out, const struct s3_lifecycle_rule *rule);

#endif

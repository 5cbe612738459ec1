/* s3/multipart: CreateMultipartUpload, UploadPart, Complete, Abort,
 * ListParts and ListMultipartUploads. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <strings.h>

#include "s3/call.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/uri.h"

static void upload_query(struct strbuf *q, const char *upload_id, int part_number)
{
    if (part_number > 0)
        strbuf_addf(q, "partNumber=%d&", part_number);
    strbuf_adds(q, "uploadId=");
    uri_encode(q, upload_id, strlen(upload_id), false);
}

int s3_mpu_create(struct s3_client *c, const char *bucket, const char *key,
                  const struct s3_put_opts *opts, char *upload_id, size_t cap, haul_error *err)
{
    struct s3_call call = {.op = "CreateMultipartUpload", .method = "POST", .bucket = bucket,
                           .key = key, .query = "uploads"};
    s3_call_put_opts(&call, opts);
    int rc = s3_call_run(c, &call, err);
    if (rc == 0)
        rc = s3_xml_upload_id_parse(strbuf_str(&call.http.resp_body), call.http.resp_body.len,
                                    upload_id, cap, err);
    s3_call_release(&call);
    return rc;
}

int s3_mpu_part_put(struct s3_client *c, const char *bucket, const char *key, const char *upload_id,
                    int part_number, const void *body, size_t len, const uint8_t *md5,
                    char *etag, size_t etag_cap, haul_error *err)
{
    char md5_b64[32];
    if (md5)
        hash_base64(md5, MD5_LEN, md5_b64);
    struct strbuf q = STRBUF_INIT;
    upload_query(&q, upload_id, part_number);
    struct s3_call call = {.op = "UploadPart", .method = "PUT", .bucket = bucket, .key = key,
                           .query = strbuf_str(&q), .body = body, .body_len = len,
                           .md5_if_unsigned = true, .md5_b64 = md5 ? md5_b64 : NULL};
    int rc = s3_call_run(c, &call, err);
    if (rc == 0) {
        struct s3_object_info info;
        s3_call_info(&call, &info);
        if (!info.etag[0])
            rc = err_set(err, HAUL_EPROTO, "UploadPart s3://%s/%s part %d: no ETag in the answer",
                         bucket, key, part_number);
        snprintf(etag, etag_cap, "%s", info.etag);
        s3_object_info_release(&info);
    }
    s3_call_release(&call);
    strbuf_release(&q);
    return rc;
}

static bool error_retryable(const char *code)
{
    return strcmp(code, "InternalError") == 0 || strcmp(code, "SlowDown") == 0 ||
           strcmp(code, "ServiceUnavailable") == 0 || strcmp(code, "RequestTimeout") == 0;
}

int s3_mpu_etag(const struct s3_completed_part *parts, size_t n, char *out, size_t cap)
{
    struct hash_ctx *h = hash_md5_new();
    out[0] = '\0';
    if (!h)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *e = parts[i].etag;
        size_t len = strlen(e);
        if (len == 2 * MD5_LEN + 2 && e[0] == '"') /* quoted */
            e++, len -= 2;
        uint8_t md5[MD5_LEN];
        for (int k = 0; k < MD5_LEN && len == 2 * MD5_LEN; k++) {
            unsigned v;
            if (sscanf(e + 2 * k, "%2x", &v) != 1)
                len = 0;
            md5[k] = (uint8_t)v;
        }
        if (len != 2 * MD5_LEN) {
            hash_free(h);
            return -1;
        }
        hash_update(h, md5, MD5_LEN);
    }
    uint8_t d[MD5_LEN];
    char hex[2 * MD5_LEN + 1];
    hash_final(h, d);
    hash_hex(d, MD5_LEN, hex);
    snprintf(out, cap, "%s-%zu", hex, n);
    return 0;
}

/* One CompleteMultipartUpload request.  Returns 0 done, 1 a retryable error
 * inside a 200 answer, <0 failed; *retried: the request was sent again
 * (its first answer was lost). */
static int complete_once(struct s3_client *c, const char *bucket, const char *key, const char *query,
                         const struct strbuf *body, char *etag, size_t cap, bool *not_md5,
                         bool *retried, haul_error *err)
{
    struct s3_call call = {.op = "CompleteMultipartUpload", .method = "POST", .bucket = bucket,
                           .key = key, .query = query, .body = body->s, .body_len = body->len};
    int rc = s3_call_run(c, &call, err);
    *retried = *retried || call.attempts > 1;
    if (rc == 0) {
        struct s3_object_info headers;
        s3_call_info(&call, &headers);
        *not_md5 = headers.etag_not_md5;
        s3_object_info_release(&headers);
        /* The server may answer 200 and still fail: the error is in the body. */
        bool is_error = false;
        struct s3_error_doc doc = {0};
        rc = s3_xml_result_etag_parse(strbuf_str(&call.http.resp_body), call.http.resp_body.len,
                                      etag, cap, &is_error, &doc, err);
        if (rc == 0 && is_error)
            rc = error_retryable(doc.code) ? 1
                                           : err_set(err, HAUL_ES3, "CompleteMultipartUpload s3://%s/%s: %s: %s",
                                                     bucket, key, doc.code, doc.message);
    }
    s3_call_release(&call);
    return rc;
}

/* After a retry answered NoSuchUpload: whether the lost first answer had
 * completed the upload, i.e. the object now has the ETag these parts make
 * (info, may be NULL, gets its HEAD). */
static bool complete_confirmed(struct s3_client *c, const char *bucket, const char *key,
                               const struct s3_completed_part *parts, size_t n, struct s3_object_info *info)
{
    char expected[128];
    struct s3_object_info head = {0};
    haul_error e = {0};
    if (s3_mpu_etag(parts, n, expected, sizeof expected) < 0 || s3_object_head(c, bucket, key, &head, &e) < 0)
        return false;
    bool same = strcasecmp(head.etag, expected) == 0;
    log_info("CompleteMultipartUpload s3://%s/%s: the retry found no upload; the object's ETag %s %s the "
             "parts' %s", bucket, key, head.etag, same ? "is" : "is not", expected);
    if (same && info)
        *info = head;
    else
        s3_object_info_release(&head);
    return same;
}

int s3_mpu_complete(struct s3_client *c, const char *bucket, const char *key, const char *upload_id,
                    const struct s3_completed_part *parts, size_t n, struct s3_object_info *info,
                    bool *completed, haul_error *err)
{
    struct strbuf q = STRBUF_INIT, body = STRBUF_INIT;
    upload_query(&q, upload_id, 0);
    int built = s3_xml_complete_build(&body, parts, n);
    char etag[128] = "";
    bool not_md5 = false;
    int rc = built < 0 || body.failed
                 ? err_set(err, HAUL_EUSAGE, "CompleteMultipartUpload s3://%s/%s: cannot build the part list", bucket, key)
                 : 1;
    bool retried = false, confirmed = false;
    for (int attempt = 0; rc == 1; attempt++) {
        haul_error e = {0};
        rc = complete_once(c, bucket, key, strbuf_str(&q), &body, etag, sizeof etag, &not_md5, &retried, &e);
        if (rc < 0 && (retried || attempt > 0) && strcmp(e.s3_code, "NoSuchUpload") == 0 &&
            complete_confirmed(c, bucket, key, parts, n, info))
            rc = 0, confirmed = true;
        if (rc < 0)
            err_copy(err, &e);
        if (rc == 1 && attempt + 1 >= s3_client_config(c)->max_attempts)
            rc = err_set(err, HAUL_ES3, "CompleteMultipartUpload s3://%s/%s: the server kept failing", bucket, key);
        if (rc == 1) {
            struct timespec ts = {0, (long)(100000000L << (attempt < 6 ? attempt : 6)) % 1000000000L};
            nanosleep(&ts, NULL);
        }
    }
    strbuf_release(&q);
    strbuf_release(&body);
    if (completed)
        *completed = rc == 0;
    if (rc == 0 && info && !confirmed) {
        /* Ceph RGW 16.2 answers with an empty ETag: HEAD has the right one. */
        if (etag[0]) {
            memset(info, 0, sizeof *info);
            snprintf(info->etag, sizeof info->etag, "%s", etag);
            info->etag_not_md5 = not_md5;
        } else {
            rc = s3_object_head(c, bucket, key, info, err);
        }
    }
    return rc;
}

int s3_mpu_abort(struct s3_client *c, const char *bucket, const char *key, const char *upload_id,
                 haul_error *err)
{
    struct strbuf q = STRBUF_INIT;
    upload_query(&q, upload_id, 0);
    struct s3_call call = {.op = "AbortMultipartUpload", .method = "DELETE", .bucket = bucket,
                           .key = key, .query = strbuf_str(&q), .cleanup = true};
    int rc = s3_call_run(c, &call, err);
    s3_call_release(&call);
    strbuf_release(&q);
    return rc;
}

int s3_mpu_parts_list(struct s3_client *c, const char *bucket, const char *key,
                      const char *upload_id, s3_part_fn fn, void *ctx, haul_error *err)
{
    struct s3_list_page page = {0};
    int rc = 0;
    do {
        long marker = page.next_token[0] ? strtol(page.next_token, NULL, 10) : 0;
        struct strbuf q = STRBUF_INIT;
        upload_query(&q, upload_id, 0);
        if (page.next_token[0]) {
            strbuf_adds(&q, "&part-number-marker=");
            uri_encode(&q, page.next_token, strlen(page.next_token), false);
        }
        struct s3_call call = {.op = "ListParts", .method = "GET", .bucket = bucket, .key = key,
                               .query = strbuf_str(&q)};
        rc = s3_call_run(c, &call, err);
        if (rc == 0) {
            memset(&page, 0, sizeof page);
            rc = s3_xml_list_parts_parse(strbuf_str(&call.http.resp_body), call.http.resp_body.len,
                                         fn, ctx, &page, err);
        }
        s3_call_release(&call);
        strbuf_release(&q);
        if (rc == 0 && page.truncated && !page.next_token[0])
            rc = err_set(err, HAUL_EPROTO, "ListParts s3://%s/%s: truncated without a marker",
                         bucket, key);
        /* Part numbers only grow: a marker that does not would loop forever. */
        if (rc == 0 && page.truncated && strtol(page.next_token, NULL, 10) <= marker)
            rc = err_set(err, HAUL_EPROTO, "ListParts s3://%s/%s: the next part marker %s does not advance "
                         "past %ld; the listing would never end", bucket, key, page.next_token, marker);
    } while (rc == 0 && page.truncated);
    return rc;
}

int s3_mpu_list(struct s3_client *c, const char *bucket, const char *prefix, s3_upload_fn fn,
                void *ctx, haul_error *err)
{
    struct s3_uploads_page page = {0};
    int rc = 0;
    do {
        struct s3_uploads_page sent = page; /* the markers of this request */
        struct strbuf q = STRBUF_INIT;
        strbuf_adds(&q, "uploads");
        if (prefix && *prefix) {
            strbuf_adds(&q, "&prefix=");
            uri_encode(&q, prefix, strlen(prefix), false);
        }
        if (page.next_key_marker[0]) {
            strbuf_adds(&q, "&key-marker=");
            uri_encode(&q, page.next_key_marker, strlen(page.next_key_marker), false);
            strbuf_adds(&q, "&upload-id-marker=");
            uri_encode(&q, page.next_upload_id_marker, strlen(page.next_upload_id_marker), false);
        }
        struct s3_call call = {.op = "ListMultipartUploads", .method = "GET", .bucket = bucket,
                               .query = strbuf_str(&q)};
        rc = s3_call_run(c, &call, err);
        if (rc == 0) {
            memset(&page, 0, sizeof page);
            rc = s3_xml_list_uploads_parse(strbuf_str(&call.http.resp_body),
                                           call.http.resp_body.len, fn, ctx, &page, err);
        }
        s3_call_release(&call);
        strbuf_release(&q);
        if (rc == 0 && page.truncated && !page.next_key_marker[0])
            rc = err_set(err, HAUL_EPROTO, "ListMultipartUploads s3://%s: truncated without a marker",
                         bucket);
        if (rc == 0 && page.truncated && strcmp(page.next_key_marker, sent.next_key_marker) == 0 &&
            strcmp(page.next_upload_id_marker, sent.next_upload_id_marker) == 0)
            rc = err_set(err, HAUL_EPROTO, "ListMultipartUploads s3://%s: the server gave the same markers "
                         "twice; the listing would never end", bucket);
    } while (rc == 0 && page.truncated);
    return rc;
}

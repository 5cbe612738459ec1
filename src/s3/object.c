/* s3/object: single-object calls (Put, Get, Head, Delete, Copy), listings
 * and bucket calls. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3/call.h"
#include "util/err.h"
#include "util/uri.h"

int s3_object_put(struct s3_client *c, const char *bucket, const char *key, const void *body,
                  size_t len, const struct s3_put_opts *opts, struct s3_object_info *info,
                  haul_error *err)
{
    struct s3_call call = {.op = "PutObject", .method = "PUT", .bucket = bucket, .key = key,
                           .body = body, .body_len = len, .md5_if_unsigned = true};
    s3_call_put_opts(&call, opts);
    int rc = s3_call_run(c, &call, err);
    if (rc == 0 && info)
        s3_call_info(&call, info);
    s3_call_release(&call);
    return rc;
}

int s3_object_get(struct s3_client *c, const char *bucket, const char *key, uint64_t offset,
                  uint64_t length, http_sink_fn sink, void *sink_ctx, struct s3_object_info *info,
                  haul_error *err)
{
    return s3_object_get_match(c, bucket, key, NULL, offset, length, sink, sink_ctx, info, err);
}

int s3_object_get_match(struct s3_client *c, const char *bucket, const char *key, const char *etag,
                        uint64_t offset, uint64_t length, http_sink_fn sink, void *sink_ctx,
                        struct s3_object_info *info, haul_error *err)
{
    struct s3_call call = {.op = "GetObject", .method = "GET", .bucket = bucket, .key = key,
                           .sink = sink, .sink_ctx = sink_ctx, .ranged = offset || length,
                           .range_off = offset, .range_len = length, .if_match = etag};
    int rc = s3_call_run(c, &call, err);
    if (rc == 0 && info)
        s3_call_info(&call, info);
    s3_call_release(&call);
    return rc;
}

int s3_object_head(struct s3_client *c, const char *bucket, const char *key,
                   struct s3_object_info *info, haul_error *err)
{
    struct s3_call call = {.op = "HeadObject", .method = "HEAD", .bucket = bucket, .key = key};
    int rc = s3_call_run(c, &call, err);
    if (rc == 0 && info)
        s3_call_info(&call, info);
    s3_call_release(&call);
    return rc;
}

int s3_object_delete(struct s3_client *c, const char *bucket, const char *key, haul_error *err)
{
    struct s3_call call = {.op = "DeleteObject", .method = "DELETE", .bucket = bucket, .key = key};
    int rc = s3_call_run(c, &call, err);
    s3_call_release(&call);
    return rc;
}

struct delete_errors {
    const char *bucket;
    size_t failed;
    haul_error *err;
    const char *const *keys; /* optional: the batch, and which of its keys failed */
    size_t n, marked;
    bool *bad;
};

static int delete_error(const char *key, const char *code, const char *message, void *arg)
{
    struct delete_errors *d = arg;
    d->failed++;
    for (size_t i = 0; d->bad && i < d->n; i++)
        if (!d->bad[i] && strcmp(d->keys[i], key) == 0) {
            d->bad[i] = true;
            d->marked++;
            break;
        }
    err_set(d->err, HAUL_ES3, "DeleteObjects s3://%s/%s: %s: %s", d->bucket, key, code, message);
    return 0;
}

static int delete_batch(struct s3_client *c, const char *bucket, const char *const *keys, size_t n,
                        struct delete_errors *d, haul_error *err)
{
    struct strbuf body = STRBUF_INIT;
    if (s3_xml_delete_build(&body, keys, n) < 0) {
        strbuf_release(&body);
        return err_set(err, HAUL_EUSAGE,
                       "DeleteObjects s3://%s: a key holds a control character XML cannot carry; "
                       "delete it with rm (one object)",
                       bucket);
    }
    struct s3_call call = {.op = "DeleteObjects", .method = "POST", .bucket = bucket,
                           .query = "delete", .body = body.s, .body_len = body.len,
                           .content_md5 = true};
    int rc = s3_call_run(c, &call, err);
    if (rc == 0)
        rc = s3_xml_delete_result_parse(strbuf_str(&call.http.resp_body), call.http.resp_body.len,
                                        delete_error, d, NULL, err);
    s3_call_release(&call);
    strbuf_release(&body);
    return rc;
}

int s3_objects_delete(struct s3_client *c, const char *bucket, const char *const *keys, size_t n,
                      size_t *failed, haul_error *err)
{
    struct delete_errors d = {.bucket = bucket, .err = err};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i += 1000)
        rc = delete_batch(c, bucket, keys + i, n - i < 1000 ? n - i : 1000, &d, err);
    if (failed)
        *failed = d.failed;
    if (rc == 0 && d.failed)
        rc = -HAUL_ES3;
    return rc;
}

int s3_deleter_flush(struct s3_deleter *d)
{
    if (!d->n)
        return 0;
    bool bad[sizeof d->keys / sizeof *d->keys] = {0};
    struct delete_errors e = {d->bucket, 0, d->err, (const char *const *)d->keys, d->n, 0, bad};
    int rc = delete_batch(d->c, d->bucket, (const char *const *)d->keys, d->n, &e, d->err);
    if (rc == 0 && e.failed)
        rc = -HAUL_ES3;
    /* Failed as a whole, or failures we cannot tie to their keys: none is
     * vouched for. */
    bool none = (rc < 0 && e.failed == 0) || e.marked < e.failed;
    for (size_t i = 0; i < d->n; i++) {
        int drc = d->done ? d->done(d->keys[i], !none && !bad[i], d->ctx) : 0;
        rc = rc ? rc : drc;
        free(d->keys[i]);
    }
    d->deleted += none ? 0 : d->n - e.failed;
    d->failed += none ? d->n : e.failed;
    d->n = 0;
    return rc;
}

int s3_deleter_add(struct s3_deleter *d, const char *key)
{
    if (!(d->keys[d->n] = strdup(key)))
        return err_set(d->err, HAUL_ENOMEM, "out of memory");
    return ++d->n == sizeof d->keys / sizeof *d->keys ? s3_deleter_flush(d) : 0;
}

void s3_deleter_release(struct s3_deleter *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->keys[i]);
    d->n = 0;
}

int s3_object_copy(struct s3_client *c, const char *src_bucket, const char *src_key,
                   const char *dst_bucket, const char *dst_key, const struct s3_put_opts *opts,
                   haul_error *err)
{
    struct s3_call call = {.op = "CopyObject", .method = "PUT", .bucket = dst_bucket, .key = dst_key};
    struct strbuf source = STRBUF_INIT;
    strbuf_adds(&source, "/");
    uri_encode(&source, src_bucket, strlen(src_bucket), false);
    strbuf_adds(&source, "/");
    uri_encode(&source, src_key, strlen(src_key), true);
    s3_call_header(&call, "x-amz-copy-source", strbuf_str(&source));
    strbuf_release(&source);
    if (opts) {
        s3_call_header(&call, "x-amz-metadata-directive", "REPLACE");
        s3_call_put_opts(&call, opts);
    }
    int rc = s3_call_run(c, &call, err);
    if (rc == 0) {
        /* CopyObject may fail after answering 200: the error is in the body. */
        char etag[128];
        bool is_error = false;
        struct s3_error_doc doc = {0};
        rc = s3_xml_result_etag_parse(strbuf_str(&call.http.resp_body), call.http.resp_body.len,
                                      etag, sizeof etag, &is_error, &doc, err);
        if (rc == 0 && is_error)
            rc = err_set(err, HAUL_ES3, "CopyObject s3://%s/%s: %s: %s", dst_bucket, dst_key,
                         doc.code, doc.message);
    }
    s3_call_release(&call);
    return rc;
}

/* One ListObjectsV2 request's query, parameters in any order (the signer
 * sorts them). */
static void list_query(struct strbuf *q, const char *prefix, const char *delimiter, const char *token)
{
    strbuf_adds(q, "list-type=2&encoding-type=url");
    if (prefix && *prefix) {
        strbuf_adds(q, "&prefix=");
        uri_encode(q, prefix, strlen(prefix), false);
    }
    if (delimiter && *delimiter) {
        strbuf_adds(q, "&delimiter=");
        uri_encode(q, delimiter, strlen(delimiter), false);
    }
    if (token && *token) {
        strbuf_adds(q, "&continuation-token=");
        uri_encode(q, token, strlen(token), false);
    }
}

int s3_objects_list(struct s3_client *c, const char *bucket, const char *prefix,
                    const char *delimiter, s3_list_entry_fn fn, void *ctx, haul_error *err)
{
    struct s3_list_page page = {0};
    struct strbuf query = STRBUF_INIT;
    int rc = 0;
    do {
        char token[sizeof page.next_token];
        memcpy(token, page.next_token, sizeof token);
        strbuf_reset(&query);
        list_query(&query, prefix, delimiter, token);
        struct s3_call call = {.op = "ListObjectsV2", .method = "GET", .bucket = bucket,
                               .query = strbuf_str(&query)};
        rc = s3_call_run(c, &call, err);
        if (rc == 0) {
            memset(&page, 0, sizeof page);
            rc = s3_xml_list_objects_parse(strbuf_str(&call.http.resp_body),
                                           call.http.resp_body.len, fn, ctx, &page, err);
        }
        s3_call_release(&call);
        if (rc == 0 && page.truncated && !page.next_token[0])
            rc = err_set(err, HAUL_EPROTO,
                         "ListObjectsV2 s3://%s/%s: truncated listing without a continuation token",
                         bucket, prefix ? prefix : "");
        /* The same token again would list the same page forever. */
        if (rc == 0 && page.truncated && strcmp(page.next_token, token) == 0)
            rc = err_set(err, HAUL_EPROTO,
                         "ListObjectsV2 s3://%s/%s: the server gave the same continuation token twice; "
                         "the listing would never end",
                         bucket, prefix ? prefix : "");
    } while (rc == 0 && page.truncated);
    strbuf_release(&query);
    return rc;
}

int s3_bucket_check(struct s3_client *c, const char *bucket, const char *prefix, haul_error *err)
{
    struct strbuf query = STRBUF_INIT;
    list_query(&query, prefix, NULL, NULL);
    strbuf_adds(&query, "&max-keys=1");
    struct s3_call call = {.op = "ListObjectsV2", .method = "GET", .bucket = bucket, .query = strbuf_str(&query),
                           .probe = true};
    int rc = query.failed ? err_set(err, HAUL_ENOMEM, "out of memory") : s3_call_run(c, &call, err);
    s3_call_release(&call);
    strbuf_release(&query);
    return rc;
}

int s3_bucket_create(struct s3_client *c, const char *bucket, haul_error *err)
{
    const char *region = s3_client_config(c)->region;
    struct strbuf body = STRBUF_INIT;
    if (strcmp(region, "us-east-1") != 0)
        strbuf_addf(&body,
                    "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    "<LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>",
                    region);
    struct s3_call call = {.op = "CreateBucket", .method = "PUT", .bucket = bucket,
                           .body = body.s, .body_len = body.len};
    int rc = s3_call_run(c, &call, err);
    s3_call_release(&call);
    strbuf_release(&body);
    return rc;
}

int s3_bucket_delete(struct s3_client *c, const char *bucket, haul_error *err)
{
    struct s3_call call = {.op = "DeleteBucket", .method = "DELETE", .bucket = bucket};
    int rc = s3_call_run(c, &call, err);
    s3_call_release(&call);
    return rc;
}

int s3_buckets_list(struct s3_client *c, s3_bucket_fn fn, void *ctx, haul_error *err)
{
    struct s3_call call = {.op = "ListBuckets", .method = "GET"};
    int rc = s3_call_run(c, &call, err);
    if (rc == 0)
        rc = s3_xml_list_buckets_parse(strbuf_str(&call.http.resp_body), call.http.resp_body.len,
                                       fn, ctx, err);
    s3_call_release(&call);
    return rc;
}

int s3_url_parse(const char *url, struct s3_url *out, haul_error *err)
{
    memset(out, 0, sizeof *out);
    if (strncmp(url, "s3://", 5) != 0)
        return err_set(err, HAUL_EUSAGE, "'%s': expected an s3://bucket/key URL", url);
    const char *b = url + 5, *slash = strchr(b, '/');
    size_t n = slash ? (size_t)(slash - b) : strlen(b);
    if (n < 1 || n >= sizeof out->bucket)
        return err_set(err, HAUL_EUSAGE, "'%s': bucket name must be 1 to 63 characters", url);
    memcpy(out->bucket, b, n);
    out->bucket[n] = '\0';
    out->key = strdup(slash ? slash + 1 : "");
    if (!out->key)
        return err_set(err, HAUL_ENOMEM, "out of memory");
    return 0;
}

void s3_url_release(struct s3_url *url)
{
    free(url->key);
    url->key = NULL;
}

int s3_object_restore(struct s3_client *c, const char *bucket, const char *key, int days,
                      const char *tier, enum s3_restore_state *state, haul_error *err)
{
    struct strbuf body = STRBUF_INIT;
    strbuf_addf(&body,
                "<RestoreRequest xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Days>%d</Days>"
                "<GlacierJobParameters><Tier>%s</Tier></GlacierJobParameters></RestoreRequest>",
                days, tier);
    struct s3_call call = {.op = "RestoreObject", .method = "POST", .bucket = bucket, .key = key,
                           .query = "restore", .body = body.s, .body_len = body.len,
                           .content_md5 = true};
    haul_error local = {0};
    int rc = s3_call_run(c, &call, &local);
    if (rc == 0)
        *state = call.http.status == 200 ? S3_RESTORE_DONE : S3_RESTORE_STARTED;
    else if (strcmp(local.s3_code, "RestoreAlreadyInProgress") == 0) {
        *state = S3_RESTORE_IN_PROGRESS;
        rc = 0;
    } else if (err && err->code == HAUL_OK)
        *err = local;
    s3_call_release(&call);
    strbuf_release(&body);
    return rc;
}

int s3_restore_header_parse(const char *value, bool *ongoing, time_t *expiry)
{
    const char *o = strstr(value, "ongoing-request=\"");
    if (!o)
        return -1;
    o += strlen("ongoing-request=\"");
    if (strncmp(o, "true\"", 5) == 0)
        *ongoing = true;
    else if (strncmp(o, "false\"", 6) == 0)
        *ongoing = false;
    else
        return -1;
    *expiry = 0;
    const char *e = strstr(value, "expiry-date=\"");
    if (e) {
        char date[64];
        e += strlen("expiry-date=\"");
        const char *end = strchr(e, '"');
        size_t n = end ? (size_t)(end - e) : 0;
        if (n && n < sizeof date) {
            memcpy(date, e, n);
            date[n] = '\0';
            time_t t = curl_getdate(date, NULL);
            *expiry = t > 0 ? t : 0;
        }
    }
    return 0;
}

int s3_bucket_lifecycle_get(struct s3_client *c, const char *bucket, s3_rule_fn fn, void *ctx,
                            haul_error *err)
{
    struct s3_call call = {.op = "GetBucketLifecycleConfiguration", .method = "GET",
                           .bucket = bucket, .query = "lifecycle"};
    int rc = s3_call_run(c, &call, err);
    if (rc == 0)
        rc = s3_xml_lifecycle_parse(strbuf_str(&call.http.resp_body), call.http.resp_body.len, fn,
                                    ctx, err);
    s3_call_release(&call);
    return rc;
}

int s3_bucket_lifecycle_put(struct s3_client *c, const char *bucket,
                            const struct s3_lifecycle_rule *rule, haul_error *err)
{
    struct strbuf body = STRBUF_INIT;
    if (s3_xml_lifecycle_build(&body, rule) < 0) {
        strbuf_release(&body);
        return err_set(err, HAUL_EUSAGE, "PutBucketLifecycleConfiguration s3://%s: cannot build the rule", bucket);
    }
    struct s3_call call = {.op = "PutBucketLifecycleConfiguration", .method = "PUT",
                           .bucket = bucket, .query = "lifecycle", .body = body.s,
                           .body_len = body.len, .content_md5 = true};
    int rc = s3_call_run(c, &call, err);
    s3_call_release(&call);
    strbuf_release(&body);
    return rc;
}

int s3_bucket_lifecycle_delete(struct s3_client *c, const char *bucket, haul_error *err)
{
    struct s3_call call = {.op = "DeleteBucketLifecycle", .method = "DELETE", .bucket = bucket,
                           .query = "lifecycle"};
    int rc = s3_call_run(c, &call, err);
    s3_call_release(&call);
    return rc;
}

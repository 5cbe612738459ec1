/* s3/call: one S3 request with signing, retries and error messages (private
 * to src/s3; other modules use s3.h). */
#ifndef S3_CALL_H
#define S3_CALL_H

#include "s3/s3.h"
#include "s3/sigv4.h"
#include "util/strbuf.h"

#define S3_CALL_MAX_HEADERS 48

struct s3_call {
    /* in */
    const char *op;     /* S3 operation name for messages ("PutObject") */
    const char *method;
    const char *bucket; /* NULL for ListBuckets */
    const char *key;    /* NULL or "" for bucket-level calls */
    const char *query;  /* already encoded, "" or NULL for none */
    size_t header_offs[S3_CALL_MAX_HEADERS][2]; /* extra headers: name and value offsets in storage */
    size_t n_headers;
    const void *body;
    size_t body_len;
    bool content_md5;   /* add Content-MD5 of body (the server verifies it) */
    bool md5_if_unsigned; /* data writes: Content-MD5 only when the payload hash is not
                           * signed (a signed SHA-256 is already verified by the server) */
    const char *md5_b64;/* that Content-MD5 when the caller has it already */
    http_sink_fn sink;  /* 2xx body; NULL keeps it in http.resp_body */
    void *sink_ctx;
    bool ranged;        /* GET: send Range for [range_off, range_off+range_len) */
    uint64_t range_off;
    uint64_t range_len; /* 0: to the end */
    const char *if_match; /* GET: the ETag the object must still have (unquoted) */
    bool cleanup;       /* runs even after the client was canceled (aborting an upload) */
    bool probe;         /* a check only: its AccessDenied (no list permission) stops no client */
    /* out */
    unsigned attempts;  /* requests sent (1 + retries) */
    struct http_request http;
    struct strbuf storage; /* NUL-separated header names and values */
};

/* Adds a header to sign and send; value is copied. */
void s3_call_header(struct s3_call *call, const char *name, const char *value);
/* Adds x-amz-meta-*, storage class and content type from opts. */
void s3_call_put_opts(struct s3_call *call, const struct s3_put_opts *opts);

/* Runs the call with retries.  0 on a 2xx answer; otherwise fills err with
 * "<op> s3://bucket/key: <cause>" and returns its negated code. */
int s3_call_run(struct s3_client *c, struct s3_call *call, haul_error *err);
void s3_call_release(struct s3_call *call);

/* Fills info from the response headers of a HEAD, GET or PUT. */
int s3_call_info(const struct s3_call *call, struct s3_object_info *info);

#endif

/* s3/http: HTTP/1.1 requests over one libcurl multi handle driven by its own
 * thread.  The multi's connection cache is the client's connection pool:
 * keep-alive connections are reused by whichever request runs next, at most
 * max_connections at once (further requests wait inside libcurl).  Any number
 * of threads may call http_request_perform at the same time. */
#ifndef S3_HTTP_H
#define S3_HTTP_H

#include <haul/error.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/strbuf.h"

struct curl_slist;

struct http_engine_opts {
    int max_connections;
    long connect_timeout_ms;
    long stall_timeout_s;  /* abort when no byte moves for this long */
    const char *ca_bundle; /* https only; NULL: system store */
    bool verify_tls;
};

struct http_engine;

/* Starts the engine thread.  NULL on failure (err says why). */
struct http_engine *http_engine_new(const struct http_engine_opts *opts, haul_error *err);
/* Stops the thread and closes every connection; no request may be running. */
void http_engine_free(struct http_engine *engine);

/* Receives a successful (2xx) response body as it arrives.  Returns 0 to go
 * on, non-zero to abort the transfer (then sink_failed is set). Runs on the
 * engine thread: it must not block for long. */
typedef int (*http_sink_fn)(const void *data, size_t n, void *ctx);

struct http_request {
    /* in */
    const char *method;        /* GET, HEAD, PUT, POST, DELETE */
    const char *url;
    struct curl_slist *headers; /* owned by the caller */
    const void *body;          /* request body, or NULL */
    size_t body_len;
    http_sink_fn sink;         /* 2xx body; NULL keeps it in resp_body */
    void *sink_ctx;
    size_t resp_cap;           /* most bytes kept in resp_body (error and XML bodies) */
    const atomic_bool *cancel; /* when it becomes true the transfer is aborted (may be NULL) */
    const atomic_bool *stop;   /* the same, a second flag (the client's fail-fast state) */
    /* out */
    long status;               /* 0 when no response arrived */
    int curl_code;             /* CURLcode */
    char curl_error[256];
    struct strbuf resp_body;   /* error bodies always; 2xx bodies when sink is NULL */
    struct strbuf resp_headers;/* "name: value\n" lines of the final response, names lower-case */
    uint64_t body_received;    /* bytes passed to sink or kept */
    bool sink_failed;
    bool resp_truncated;       /* resp_body hit resp_cap */
};

/* Runs one request to completion (blocking the caller, not the engine).
 * Returns 0 when a response arrived (any status) and the sink did not fail,
 * -1 on a transport failure (curl_code and curl_error say which). */
int http_request_perform(struct http_engine *engine, struct http_request *req);

/* Frees the response buffers of req (not the caller's headers). */
void http_request_release(struct http_request *req);

/* Copies the value of response header name (lower-case) into out.  Returns
 * true when present. */
bool http_response_header(const struct http_request *req, const char *name, char *out, size_t cap);

/* Calls fn for every response header whose name starts with prefix. */
typedef void (*http_header_fn)(const char *name, const char *value, void *ctx);
void http_response_headers_each(const struct http_request *req, const char *prefix,
                                http_header_fn fn, void *ctx);

/* True when the failure is worth retrying (connection refused or reset,
 * timeout, short or empty reply). */
bool http_curl_code_retryable(int curl_code);

#endif

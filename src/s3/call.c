/* s3/call: building, signing, sending and retrying one S3 request, and
 * turning failures into messages that name the object and the cause. */
#include "s3/call.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/err.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/uri.h"

#define RESP_CAP (4u << 20)        /* XML listings are ~300 KiB; errors far less */
#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 20000

struct s3_client {
    struct s3_config cfg;
    struct http_engine *http;
    char scheme[8];     /* "http" or "https" */
    char host[256];     /* host[:port] */
    char base_path[256];/* endpoint path, "" or "/something" */
    bool aws_host;
    atomic_long clock_skew_s; /* server time minus ours, learnt from RequestTimeTooSkewed */
    const atomic_bool *cancel;
    atomic_uint_fast64_t requests, retries, bytes_sent, bytes_received;
    /* Fail fast (see s3_client_fail_fast_set). */
    bool fail_fast;
    atomic_bool failed;              /* set once, after fatal is filled */
    pthread_mutex_t fatal_lock;      /* guards fatal */
    haul_error fatal;
    atomic_uint transport_streak;    /* requests failed for good on transport since the last answer */
    /* A request failed for good on transport waits, while others that may
     * end the streak run, so that the run stopping reports none of them. */
    pthread_mutex_t streak_lock;
    pthread_cond_t streak_cond;      /* broadcast: streak reset, client stopped, a request ended */
    unsigned active, waiting;        /* requests in s3_call_run; those of them waiting */
    atomic_uint denied_streak;       /* AccessDenied since the last success */
};

static char *dup_opt(const char *s) { return s ? strdup(s) : NULL; }

static int endpoint_split(struct s3_client *c, haul_error *err)
{
    const char *ep = c->cfg.endpoint;
    const char *sep = strstr(ep, "://");
    if (!sep || (size_t)(sep - ep) >= sizeof c->scheme)
        return err_set(err, HAUL_EUSAGE, "endpoint '%s': expected http://host[:port]", ep);
    memcpy(c->scheme, ep, (size_t)(sep - ep));
    c->scheme[sep - ep] = '\0';
    const char *host = sep + 3, *slash = strchr(host, '/');
    size_t host_len = slash ? (size_t)(slash - host) : strlen(host);
    if (host_len == 0 || host_len >= sizeof c->host)
        return err_set(err, HAUL_EUSAGE, "endpoint '%s': bad host", ep);
    memcpy(c->host, host, host_len);
    c->host[host_len] = '\0';
    snprintf(c->base_path, sizeof c->base_path, "%s", slash ? slash : "");
    size_t bl = strlen(c->base_path);
    if (bl && c->base_path[bl - 1] == '/')
        c->base_path[bl - 1] = '\0';
    const char *colon = strrchr(c->host, ':');
    size_t name_len = colon ? (size_t)(colon - c->host) : strlen(c->host);
    c->aws_host = name_len > 14 && strncmp(c->host + name_len - 14, ".amazonaws.com", 14) == 0;
    return 0;
}

struct s3_client *s3_client_new(const struct s3_config *cfg, haul_error *err)
{
    struct s3_client *c = calloc(1, sizeof *c);
    if (!c) {
        err_set(err, HAUL_ENOMEM, "s3 client: out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->fatal_lock, NULL);
    pthread_mutex_init(&c->streak_lock, NULL);
    pthread_cond_init(&c->streak_cond, NULL);
    c->cfg = *cfg;
    c->cfg.endpoint = dup_opt(cfg->endpoint);
    c->cfg.region = dup_opt(cfg->region);
    c->cfg.access_key = dup_opt(cfg->access_key);
    c->cfg.secret_key = dup_opt(cfg->secret_key);
    c->cfg.session_token = dup_opt(cfg->session_token);
    c->cfg.profile = dup_opt(cfg->profile);
    c->cfg.ca_bundle = dup_opt(cfg->ca_bundle);
    if (endpoint_split(c, err) < 0) {
        s3_client_free(c);
        return NULL;
    }
    struct http_engine_opts ho = {
        .max_connections = cfg->max_connections,
        .connect_timeout_ms = cfg->connect_timeout_ms,
        .stall_timeout_s = cfg->stall_timeout_s,
        .ca_bundle = cfg->ca_bundle,
        .verify_tls = cfg->verify_tls,
    };
    c->http = http_engine_new(&ho, err);
    if (!c->http) {
        s3_client_free(c);
        return NULL;
    }
    return c;
}

void s3_client_free(struct s3_client *c)
{
    if (!c)
        return;
    http_engine_free(c->http);
    s3_config_release(&c->cfg);
    pthread_mutex_destroy(&c->fatal_lock);
    pthread_mutex_destroy(&c->streak_lock);
    pthread_cond_destroy(&c->streak_cond);
    free(c);
}

const struct s3_config *s3_client_config(const struct s3_client *c) { return &c->cfg; }

void s3_client_cancel_set(struct s3_client *c, const atomic_bool *flag) { c->cancel = flag; }

static bool client_canceled(const struct s3_client *c) { return c->cancel && atomic_load(c->cancel); }

void s3_client_fail_fast_set(struct s3_client *c, bool on) { c->fail_fast = on; }

bool s3_client_failed(struct s3_client *c, haul_error *err)
{
    if (!atomic_load(&c->failed))
        return false;
    pthread_mutex_lock(&c->fatal_lock);
    err_copy(err, &c->fatal);
    pthread_mutex_unlock(&c->fatal_lock);
    return true;
}

/* Wakes the requests waiting in transport_wait (after the state they
 * check changed: the lock orders it before their check or their wait). */
static void streak_wake(struct s3_client *c)
{
    pthread_mutex_lock(&c->streak_lock);
    if (c->waiting)
        pthread_cond_broadcast(&c->streak_cond);
    pthread_mutex_unlock(&c->streak_lock);
}

static void active_add(struct s3_client *c, int n)
{
    pthread_mutex_lock(&c->streak_lock);
    c->active = (unsigned)((int)c->active + n);
    if (c->waiting)
        pthread_cond_broadcast(&c->streak_cond);
    pthread_mutex_unlock(&c->streak_lock);
}

/* A request failed for good on transport, the streak not at its end: waits
 * while other requests run that may end it (an answer) or complete it (the
 * client stops: this request's failure is the run's, not reported alone).
 * Bounded: when no other request runs, or after the longest a request can
 * take to fail. */
static void transport_wait(struct s3_client *c)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (c->cfg.stall_timeout_s + BACKOFF_CAP_MS / 1000) * c->cfg.max_attempts;
    pthread_mutex_lock(&c->streak_lock);
    c->waiting++;
    while (!atomic_load(&c->failed) && atomic_load(&c->transport_streak) > 0 && c->waiting < c->active)
        if (pthread_cond_timedwait(&c->streak_cond, &c->streak_lock, &until) != 0)
            break;
    c->waiting--;
    pthread_mutex_unlock(&c->streak_lock);
}

static void streak_reset(struct s3_client *c)
{
    if (atomic_exchange(&c->transport_streak, 0) > 0)
        streak_wake(c);
}

/* Records the error that stops the client (the first one only). */
static void fatal_set(struct s3_client *c, const haul_error *err)
{
    if (!c->fail_fast)
        return;
    pthread_mutex_lock(&c->fatal_lock);
    if (!atomic_load(&c->failed)) {
        c->fatal = *err;
        atomic_store(&c->failed, true);
        log_debug("s3 client stopped: %s", err->msg);
    }
    pthread_mutex_unlock(&c->fatal_lock);
    streak_wake(c);
}

/* Errors that concern the whole bucket or account, not one object. */
static bool bucket_level(const struct s3_call *call, long status, const char *code)
{
    static const char *const codes[] = {"NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                                        "ExpiredToken", "InvalidToken", "AccountProblem",
                                        "AllAccessDisabled", "PermanentRedirect"};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        if (strcmp(code, codes[i]) == 0)
            return true;
    bool bucket_call = call->bucket && (!call->key || !call->key[0]) && !call->probe;
    return bucket_call && (status == 403 || strcmp(code, "AccessDenied") == 0);
}

/* After a streak of object-level refusals: one ListObjectsV2 (max-keys=1)
 * under the key's directory tells a bucket-level refusal (stop) from a
 * policy that denies only some keys (the objects fail one by one, the run
 * goes on).  The check has no key, so its own answer never comes back here. */
static bool bucket_refuses(struct s3_client *c, const struct s3_call *call)
{
    char prefix[1100] = "";
    const char *slash = strrchr(call->key, '/');
    if (slash && (size_t)(slash - call->key) + 1 < sizeof prefix)
        memcpy(prefix, call->key, (size_t)(slash - call->key) + 1);
    haul_error e = {0};
    int rc = s3_bucket_check(c, call->bucket, prefix[0] ? prefix : NULL, &e);
    return rc < 0 && (e.code == HAUL_EAUTH || s3_client_failed(c, NULL));
}

/* An HTTP error answer: stops the client when it is bucket-level, or the
 * last of a streak of refusals that the bucket itself refuses too. */
static void fatal_note_http(struct s3_client *c, const struct s3_call *call, const char *code,
                            const haul_error *err)
{
    if (!c->fail_fast)
        return;
    long status = call->http.status;
    if (bucket_level(call, status, code)) {
        fatal_set(c, err);
        return;
    }
    /* Not other 403s: InvalidObjectState (an archived object) is the object's. */
    if (strcmp(code, "AccessDenied") != 0 && !(status == 403 && !code[0]))
        return;
    /* A probe's refusal (no list permission) stops nothing and counts not. */
    if (call->probe)
        return;
    /* Only the request that makes the streak exactly the limit goes on, so
     * one check runs and the message names the limit, whatever the race. */
    if (atomic_fetch_add(&c->denied_streak, 1) + 1 != S3_FAIL_FAST_STREAK)
        return;
    bool object = call->bucket && call->key && call->key[0];
    if (object && !bucket_refuses(c, call)) {
        atomic_store(&c->denied_streak, 0);
        return;
    }
    haul_error e = {0};
    err_set(&e, HAUL_EAUTH, "s3://%s: access denied on %u requests in a row%s (the last: %s); stopping",
            call->bucket ? call->bucket : "", S3_FAIL_FAST_STREAK, object ? " and on listing the bucket" : "",
            err->msg);
    fatal_set(c, &e);
}

/* A request that failed for good on a transport failure (stall, refused or
 * reset connection), its retries used up: the last of a streak with no
 * answer between stops the client.  Counting requests, not attempts, lets
 * a short blip that the retries ride out pass. */
static void fatal_note_transport(struct s3_client *c, const struct s3_call *call)
{
    if (!c->fail_fast)
        return;
    /* Only the request that makes the streak exactly the limit says so. */
    if (atomic_fetch_add(&c->transport_streak, 1) + 1 != S3_FAIL_FAST_STREAK)
        return;
    haul_error e = {0};
    const char *b = call->bucket ? call->bucket : "";
    if (call->http.curl_code == CURLE_OPERATION_TIMEDOUT && strstr(call->http.curl_error, "stalled"))
        err_set(&e, HAUL_ENET, "s3://%s: no answer from %s for %ld s on %u requests in a row; stopping", b,
                c->cfg.endpoint, c->cfg.stall_timeout_s, S3_FAIL_FAST_STREAK);
    else
        err_set(&e, HAUL_ENET, "s3://%s: cannot reach %s on %u requests in a row (%s); stopping", b,
                c->cfg.endpoint, S3_FAIL_FAST_STREAK, call->http.curl_error);
    fatal_set(c, &e);
}

void s3_client_stats_get(struct s3_client *c, struct s3_client_stats *out)
{
    out->requests = atomic_load(&c->requests);
    out->retries = atomic_load(&c->retries);
    out->bytes_sent = atomic_load(&c->bytes_sent);
    out->bytes_received = atomic_load(&c->bytes_received);
}

void s3_call_header(struct s3_call *call, const char *name, const char *value)
{
    if (call->n_headers >= S3_CALL_MAX_HEADERS)
        return;
    /* Offsets, not pointers: storage may move while it grows. */
    call->header_offs[call->n_headers][0] = call->storage.len;
    strbuf_add(&call->storage, name, strlen(name) + 1);
    call->header_offs[call->n_headers][1] = call->storage.len;
    strbuf_add(&call->storage, value, strlen(value) + 1);
    call->n_headers++;
}

void s3_call_put_opts(struct s3_call *call, const struct s3_put_opts *opts)
{
    if (!opts)
        return;
    char name[300];
    for (size_t i = 0; i < opts->n_meta; i++) {
        snprintf(name, sizeof name, "x-amz-meta-%s", opts->meta[i].name);
        s3_call_header(call, name, opts->meta[i].value);
    }
    if (opts->storage_class && *opts->storage_class)
        s3_call_header(call, "x-amz-storage-class", opts->storage_class);
    s3_call_header(call, "content-type", opts->content_type ? opts->content_type : "binary/octet-stream");
}

static bool bucket_dns_safe(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63 || strchr(b, '.') || b[0] == '-' || b[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '-'))
            return false;
    return true;
}

static bool virtual_host(const struct s3_client *c, const char *bucket)
{
    if (!bucket || !*bucket)
        return false;
    switch (c->cfg.addressing) {
    case S3_ADDRESSING_PATH: return false;
    case S3_ADDRESSING_VIRTUAL: return true;
    default: return c->aws_host && bucket_dns_safe(bucket);
    }
}

/* The signed parts of the request that do not change between attempts. */
struct target {
    struct strbuf host;
    struct strbuf path; /* encoded once, exactly as sent */
    struct strbuf url;
};

static int target_build(const struct s3_client *c, const struct s3_call *call, struct target *t)
{
    bool vhost = virtual_host(c, call->bucket);
    if (vhost)
        strbuf_addf(&t->host, "%s.%s", call->bucket, c->host);
    else
        strbuf_adds(&t->host, c->host);
    strbuf_adds(&t->path, c->base_path);
    strbuf_adds(&t->path, "/");
    if (call->bucket && !vhost) {
        uri_encode(&t->path, call->bucket, strlen(call->bucket), false);
        if (call->key && *call->key)
            strbuf_adds(&t->path, "/");
    }
    if (call->key && *call->key)
        uri_encode(&t->path, call->key, strlen(call->key), true);
    strbuf_addf(&t->url, "%s://%s%s", c->scheme, strbuf_str(&t->host), strbuf_str(&t->path));
    if (call->query && *call->query)
        strbuf_addf(&t->url, "?%s", call->query);
    return t->host.failed || t->path.failed || t->url.failed ? -1 : 0;
}

static void target_release(struct target *t)
{
    strbuf_release(&t->host);
    strbuf_release(&t->path);
    strbuf_release(&t->url);
}

/* Per-attempt header set: fixed headers, the caller's, range, auth. */
struct attempt_headers {
    struct sigv4_header list[S3_CALL_MAX_HEADERS + 8];
    size_t n;
    char date[17];
    char range[80];
    char if_match[140];
    char md5[32];
    char auth[512];
};

static void add(struct attempt_headers *h, const char *name, const char *value)
{
    h->list[h->n].name = name;
    h->list[h->n].value = value;
    h->n++;
}

static struct curl_slist *slist_build(const struct attempt_headers *h)
{
    struct curl_slist *list = NULL;
    struct strbuf line = STRBUF_INIT;
    for (size_t i = 0; i < h->n; i++) {
        strbuf_reset(&line);
        /* "Name;" makes curl send an empty header; "Name:" would delete it. */
        if (h->list[i].value[0])
            strbuf_addf(&line, "%s: %s", h->list[i].name, h->list[i].value);
        else
            strbuf_addf(&line, "%s;", h->list[i].name);
        struct curl_slist *next = curl_slist_append(list, strbuf_str(&line));
        if (!next) {
            curl_slist_free_all(list);
            list = NULL;
            break;
        }
        list = next;
    }
    strbuf_release(&line);
    if (list) {
        /* Suppress libcurl's own Expect and Content-Type headers. */
        list = curl_slist_append(list, "Expect:");
        list = curl_slist_append(list, "Accept:");
    }
    return list;
}

static int attempt_sign(struct s3_client *c, const struct s3_call *call, const struct target *t,
                        const char *payload_hash, struct attempt_headers *h)
{
    time_t now = time(NULL) + atomic_load(&c->clock_skew_s);
    sigv4_amz_date(now, h->date);
    add(h, "host", strbuf_str(&t->host));
    add(h, "x-amz-date", h->date);
    add(h, "x-amz-content-sha256", payload_hash);
    if (c->cfg.session_token)
        add(h, "x-amz-security-token", c->cfg.session_token);
    for (size_t i = 0; i < call->n_headers; i++)
        add(h, call->storage.s + call->header_offs[i][0], call->storage.s + call->header_offs[i][1]);
    if (h->md5[0])
        add(h, "content-md5", h->md5);
    if (h->range[0])
        add(h, "range", h->range);
    if (h->if_match[0])
        add(h, "if-match", h->if_match);
    struct sigv4_request req = {
        .method = call->method,
        .canonical_uri = strbuf_str(&t->path),
        .query = call->query ? call->query : "",
        .headers = h->list,
        .n_headers = h->n,
        .payload_hash = payload_hash,
    };
    struct sigv4_key key = {c->cfg.access_key, c->cfg.secret_key, c->cfg.region, "s3"};
    if (sigv4_authorization(&req, &key, now, h->auth, sizeof h->auth, NULL) < 0)
        return -1;
    add(h, "authorization", h->auth);
    return 0;
}

/* Wraps the caller's sink to count what was delivered, so a retry resumes. */
struct resume {
    http_sink_fn sink;
    void *ctx;
    uint64_t delivered;
};

static int resume_sink(const void *data, size_t n, void *arg)
{
    struct resume *r = arg;
    if (r->sink(data, n, r->ctx) != 0)
        return -1;
    r->delivered += n;
    return 0;
}

static void range_header(const struct s3_call *call, uint64_t delivered, char *out, size_t cap)
{
    uint64_t start = call->range_off + delivered;
    if (call->range_len)
        snprintf(out, cap, "bytes=%llu-%llu", (unsigned long long)start,
                 (unsigned long long)(call->range_off + call->range_len - 1));
    else if (call->ranged || delivered)
        snprintf(out, cap, "bytes=%llu-", (unsigned long long)start);
    else
        out[0] = '\0';
}

static bool range_sent(const struct attempt_headers *h) { return h->range[0] != '\0'; }

static bool status_retryable(long status, const char *code)
{
    if (status == 500 || status == 502 || status == 503 || status == 504 || status == 429)
        return true;
    return strcmp(code, "SlowDown") == 0 || strcmp(code, "RequestTimeout") == 0 ||
           strcmp(code, "InternalError") == 0 || strcmp(code, "RequestTimeTooSkewed") == 0;
}

static unsigned jitter_ms(unsigned attempt)
{
    static _Thread_local unsigned seed;
    if (!seed)
        seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)&seed;
    unsigned cap = BACKOFF_BASE_MS << (attempt < 16 ? attempt : 16);
    if (cap > BACKOFF_CAP_MS)
        cap = BACKOFF_CAP_MS;
    return (unsigned)rand_r(&seed) % (cap + 1); /* full jitter */
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Learns the server's clock from its Date header after RequestTimeTooSkewed. */
static void skew_learn(struct s3_client *c, const struct http_request *http)
{
    char date[64];
    if (!http_response_header(http, "date", date, sizeof date))
        return;
    time_t server = curl_getdate(date, NULL);
    if (server > 0)
        atomic_store(&c->clock_skew_s, (long)(server - time(NULL)));
}

static const char *hint(const char *code)
{
    if (strcmp(code, "SignatureDoesNotMatch") == 0)
        return ": check AWS_SECRET_ACCESS_KEY";
    if (strcmp(code, "InvalidAccessKeyId") == 0)
        return ": check AWS_ACCESS_KEY_ID";
    if (strcmp(code, "ExpiredToken") == 0 || strcmp(code, "InvalidToken") == 0)
        return ": check AWS_SESSION_TOKEN";
    return "";
}

static int code_class(long status, const char *code)
{
    if (strcmp(code, "NoSuchBucket") == 0 || strcmp(code, "NoSuchKey") == 0 ||
        strcmp(code, "NoSuchUpload") == 0 || status == 404)
        return HAUL_ENOTFOUND;
    if (status == 403 || strcmp(code, "SignatureDoesNotMatch") == 0 ||
        strcmp(code, "InvalidAccessKeyId") == 0 || strcmp(code, "AccessDenied") == 0)
        return HAUL_EAUTH;
    if (strcmp(code, "BadDigest") == 0 || strcmp(code, "XAmzContentSHA256Mismatch") == 0 ||
        strcmp(code, "InvalidDigest") == 0 || strcmp(code, "PreconditionFailed") == 0 || status == 412)
        return HAUL_EINTEGRITY;
    return HAUL_ES3;
}

static void object_name(const struct s3_call *call, char *out, size_t cap)
{
    if (!call->bucket)
        snprintf(out, cap, "s3://");
    else
        snprintf(out, cap, "s3://%s/%s", call->bucket, call->key ? call->key : "");
}

static int fail_http(const struct s3_call *call, const struct s3_error_doc *doc, haul_error *err)
{
    const struct http_request *h = &call->http;
    char name[1200], request_id[128] = "";
    object_name(call, name, sizeof name);
    if (!doc->request_id[0])
        http_response_header(h, "x-amz-request-id", request_id, sizeof request_id);
    const char *rid = doc->request_id[0] ? doc->request_id : request_id;
    int code = code_class(h->status, doc->code);
    if (doc->code[0]) {
        err_set(err, code, "%s %s: %s%s%s%s (HTTP %ld%s%s)", call->op, name, doc->code,
                doc->message[0] ? ": " : "", doc->message, hint(doc->code), h->status,
                rid[0] ? ", request id " : "", rid);
    } else {
        /* HEAD answers carry no body: say what the status means. */
        const char *what = h->status == 404   ? "not found"
                           : h->status == 403 ? "access denied (check the credentials and bucket policy)"
                           : h->status == 301 ? "bucket is in another region (set --region)"
                           : h->status == 412 ? "the object changed during the transfer (its ETag is no longer the one first seen)"
                                              : "unexpected answer";
        err_set(err, code, "%s %s: %s (HTTP %ld%s%s)", call->op, name, what, h->status,
                rid[0] ? ", request id " : "", rid);
    }
    if (err) {
        err->http_status = (int)h->status;
        snprintf(err->s3_code, sizeof err->s3_code, "%s", doc->code);
    }
    return -code;
}

static int fail_transport(struct s3_client *c, const struct s3_call *call, haul_error *err)
{
    char name[1200];
    object_name(call, name, sizeof name);
    if (call->http.sink_failed)
        return err_set(err, HAUL_EIO, "%s %s: writing the data failed", call->op, name);
    int code = call->http.curl_code == CURLE_OUT_OF_MEMORY ? HAUL_ENOMEM : HAUL_ENET;
    return err_set(err, code, "%s %s: %s (endpoint %s)", call->op, name, call->http.curl_error,
                   c->cfg.endpoint);
}

static int truncated(const struct s3_call *call, haul_error *err)
{
    char name[1200];
    object_name(call, name, sizeof name);
    return err_set(err, HAUL_EPROTO, "%s %s: the answer is over %u bytes, more than haul reads; not used",
                   call->op, name, RESP_CAP);
}

int s3_call_run(struct s3_client *c, struct s3_call *call, haul_error *err)
{
    if (call->storage.failed)
        return err_set(err, HAUL_ENOMEM, "%s: out of memory", call->op);
    struct target t = {STRBUF_INIT, STRBUF_INIT, STRBUF_INIT};
    if (target_build(c, call, &t) < 0) {
        target_release(&t);
        return err_set(err, HAUL_ENOMEM, "%s: out of memory", call->op);
    }
    char payload_hash[SHA256_HEX_LEN + 1] = SIGV4_EMPTY_SHA256;
    char md5[32] = "";
    bool want_md5 = call->content_md5 || (call->md5_if_unsigned && c->cfg.unsigned_payload);
    if (call->body_len && !c->cfg.unsigned_payload) {
        uint8_t d[SHA256_LEN];
        hash_sha256(call->body, call->body_len, d);
        hash_hex(d, sizeof d, payload_hash);
    } else if (call->body_len) {
        snprintf(payload_hash, sizeof payload_hash, "%s", SIGV4_UNSIGNED_PAYLOAD);
    }
    if (want_md5 && call->md5_b64) {
        snprintf(md5, sizeof md5, "%s", call->md5_b64);
    } else if (want_md5) {
        uint8_t d[MD5_LEN];
        hash_md5(call->body, call->body_len, d);
        hash_base64(d, sizeof d, md5);
    }

    if (c->fail_fast)
        active_add(c, 1);
    struct resume resume = {call->sink, call->sink_ctx, 0};
    char etag_seen[130] = "";
    int rc = 0;
    for (unsigned attempt = 0;; attempt++) {
        haul_error stopped = {0};
        if (c->fail_fast && s3_client_failed(c, &stopped)) {
            rc = err_copy(err, &stopped);
            break;
        }
        call->attempts = attempt + 1;
        struct attempt_headers h = {0};
        memcpy(h.md5, md5, sizeof md5);
        range_header(call, resume.delivered, h.range, sizeof h.range);
        if (call->if_match && call->if_match[0])
            snprintf(h.if_match, sizeof h.if_match, "\"%s\"", call->if_match);
        else if (resume.delivered && etag_seen[0])
            snprintf(h.if_match, sizeof h.if_match, "\"%s\"", etag_seen);
        struct curl_slist *slist = NULL;
        if (attempt_sign(c, call, &t, payload_hash, &h) < 0 || !(slist = slist_build(&h))) {
            rc = err_set(err, HAUL_ENOMEM, "%s: cannot sign the request", call->op);
            break;
        }
        struct http_request *http = &call->http;
        http->method = call->method;
        http->url = strbuf_str(&t.url);
        http->headers = slist;
        http->body = call->body;
        http->body_len = call->body_len;
        http->sink = call->sink ? resume_sink : NULL;
        http->sink_ctx = &resume;
        http->resp_cap = RESP_CAP;
        http->cancel = call->cleanup ? NULL : c->cancel;
        http->stop = c->fail_fast ? &c->failed : NULL;
        int perf = http_request_perform(c->http, http);
        curl_slist_free_all(slist);
        atomic_fetch_add(&c->requests, 1);
        log_debug("%s %s -> %ld%s%s", call->method, http->url, http->status,
                  perf < 0 ? " " : "", perf < 0 ? http->curl_error : "");
        atomic_fetch_add(&c->bytes_sent, call->body_len);
        atomic_fetch_add(&c->bytes_received, http->body_received);
        if (!etag_seen[0] && http->status / 100 == 2)
            http_response_header(http, "etag", etag_seen, sizeof etag_seen);
        if (etag_seen[0] == '"') { /* keep it unquoted */
            size_t n = strlen(etag_seen);
            memmove(etag_seen, etag_seen + 1, n);
            if (n >= 2 && etag_seen[n - 2] == '"')
                etag_seen[n - 2] = '\0';
        }

        bool retry;
        struct s3_error_doc doc = {0};
        if (client_canceled(c) && !call->cleanup) {
            char name[1200];
            object_name(call, name, sizeof name);
            rc = err_set(err, HAUL_ECANCELED, "%s %s: canceled", call->op, name);
            break;
        }
        if (perf < 0 && c->fail_fast && s3_client_failed(c, NULL)) {
            continue; /* interrupted because the client stopped: say why at the top */
        }
        if (perf < 0) {
            retry = !http->sink_failed && http_curl_code_retryable(http->curl_code);
            if (!retry || attempt + 1 >= (unsigned)c->cfg.max_attempts) {
                if (retry && c->fail_fast) { /* a transport failure, the retries used up */
                    fatal_note_transport(c, call);
                    transport_wait(c);
                }
                haul_error why = {0};
                if (c->fail_fast && s3_client_failed(c, &why))
                    rc = err_copy(err, &why);
                else
                    rc = fail_transport(c, call, err);
                break;
            }
            log_info("%s s3://%s/%s: %s, retrying", call->op, call->bucket ? call->bucket : "",
                     call->key ? call->key : "", http->curl_error);
        } else if (http->status == 200 && range_sent(&h) && call->method[0] == 'G') {
            /* A server that ignores Range sends the whole object: never
             * take it for the part that was asked. */
            char name[1200];
            object_name(call, name, sizeof name);
            rc = err_set(err, HAUL_EPROTO, "%s %s: the server ignored the Range header (%s)", call->op,
                         name, h.range);
            break;
        } else if (http->status / 100 == 2) {
            streak_reset(c);
            atomic_store(&c->denied_streak, 0);
            /* A body cut at RESP_CAP must never be parsed as if whole. */
            rc = http->resp_truncated && !call->sink ? truncated(call, err) : 0;
            break;
        } else {
            streak_reset(c);
            s3_xml_error_parse(strbuf_str(&http->resp_body), http->resp_body.len, &doc);
            if (strcmp(doc.code, "RequestTimeTooSkewed") == 0)
                skew_learn(c, http);
            /* A failed resume (412: the object changed) must not retry. */
            retry = status_retryable(http->status, doc.code);
            if (!retry || attempt + 1 >= (unsigned)c->cfg.max_attempts) {
                haul_error e = {0};
                rc = fail_http(call, &doc, &e);
                fatal_note_http(c, call, doc.code, &e);
                err_copy(err, &e);
                break;
            }
            log_info("%s s3://%s/%s: HTTP %ld %s, retrying", call->op,
                     call->bucket ? call->bucket : "", call->key ? call->key : "", http->status,
                     doc.code);
        }
        atomic_fetch_add(&c->retries, 1);
        if (!(c->fail_fast && s3_client_failed(c, NULL)))
            sleep_ms(jitter_ms(attempt));
    }
    if (c->fail_fast)
        active_add(c, -1);
    target_release(&t);
    return rc;
}

void s3_call_release(struct s3_call *call)
{
    http_request_release(&call->http);
    strbuf_release(&call->storage);
}

static void meta_collect(const char *name, const char *value, void *arg)
{
    struct s3_object_info *info = arg;
    struct s3_meta *m = realloc(info->meta, (info->n_meta + 1) * sizeof *m);
    if (!m)
        return;
    info->meta = m;
    m[info->n_meta].name = strdup(name + strlen("x-amz-meta-"));
    m[info->n_meta].value = strdup(value);
    if (m[info->n_meta].name && m[info->n_meta].value)
        info->n_meta++;
    else {
        free(m[info->n_meta].name);
        free(m[info->n_meta].value);
    }
}

int s3_call_info(const struct s3_call *call, struct s3_object_info *info)
{
    const struct http_request *h = &call->http;
    char buf[256];
    memset(info, 0, sizeof *info);
    if (http_response_header(h, "content-range", buf, sizeof buf)) {
        const char *slash = strrchr(buf, '/');
        if (slash && slash[1] != '*')
            info->size = strtoull(slash + 1, NULL, 10);
    } else if (http_response_header(h, "content-length", buf, sizeof buf)) {
        info->size = strtoull(buf, NULL, 10);
    }
    if (http_response_header(h, "last-modified", buf, sizeof buf))
        info->mtime = curl_getdate(buf, NULL);
    if (http_response_header(h, "etag", buf, sizeof buf)) {
        char *e = buf;
        size_t n = strlen(e);
        if (n >= 2 && e[0] == '"' && e[n - 1] == '"') {
            e[n - 1] = '\0';
            e++;
        }
        snprintf(info->etag, sizeof info->etag, "%s", e);
    }
    if (!http_response_header(h, "x-amz-storage-class", info->storage_class, sizeof info->storage_class))
        snprintf(info->storage_class, sizeof info->storage_class, "STANDARD");
    http_response_header(h, "content-type", info->content_type, sizeof info->content_type);
    http_response_header(h, "x-amz-restore", info->restore, sizeof info->restore);
    http_response_header(h, "x-amz-version-id", info->version_id, sizeof info->version_id);
    char sse[64] = "";
    http_response_header(h, "x-amz-server-side-encryption", sse, sizeof sse);
    info->etag_not_md5 = strncmp(sse, "aws:kms", 7) == 0 ||
                         http_response_header(h, "x-amz-server-side-encryption-customer-algorithm", NULL, 0);
    http_response_headers_each(h, "x-amz-meta-", meta_collect, info);
    return 0;
}

void s3_object_info_release(struct s3_object_info *info)
{
    if (!info)
        return;
    for (size_t i = 0; i < info->n_meta; i++) {
        free(info->meta[i].name);
        free(info->meta[i].value);
    }
    free(info->meta);
    info->meta = NULL;
    info->n_meta = 0;
}

const char *s3_object_info_meta(const struct s3_object_info *info, const char *name)
{
    for (size_t i = 0; i < info->n_meta; i++)
        if (strcasecmp(info->meta[i].name, name) == 0)
            return info->meta[i].value;
    return NULL;
}

/* s3/http: one libcurl multi handle on its own thread; callers block on
 * their own request while the thread moves bytes for all of them. */
#include "s3/http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/err.h"

/* One request handed to the engine thread. */
struct transfer {
    struct http_request *req;
    CURL *easy;
    size_t body_off;
    long stall_s;              /* the engine's stall timeout */
    curl_off_t last_moved;     /* bytes up + down at the last check that saw a change */
    struct timespec moved_at;  /* when that was */
    bool stalled;              /* aborted by the stall check */
    bool done;
    pthread_cond_t cond; /* signalled under engine->lock when done */
    struct transfer *next;
};

struct http_engine {
    CURLM *multi;       /* touched by the engine thread only, except wakeup */
    pthread_t thread;
    struct http_engine_opts opts;
    char *ca_bundle;
    pthread_mutex_t lock; /* guards pending, stopping, idle */
    struct transfer *pending;
    bool stopping;
    CURL *idle[64]; /* easy handles kept for reuse (their DNS cache, TLS session) */
    int n_idle;
};

bool http_curl_code_retryable(int code)
{
    switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

static void *engine_main(void *arg)
{
    struct http_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->lock);
        bool stopping = e->stopping;
        struct transfer *t = e->pending;
        e->pending = NULL;
        pthread_mutex_unlock(&e->lock);
        for (; t; t = t->next)
            curl_multi_add_handle(e->multi, t->easy);
        int running = 0;
        curl_multi_perform(e->multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(e->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct transfer *done = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&done);
            CURLcode code = msg->data.result;
            curl_multi_remove_handle(e->multi, msg->easy_handle);
            pthread_mutex_lock(&e->lock);
            done->req->curl_code = code;
            done->done = true;
            pthread_cond_signal(&done->cond);
            pthread_mutex_unlock(&e->lock);
        }
        if (stopping && running == 0)
            break;
        curl_multi_poll(e->multi, NULL, 0, 1000, NULL);
    }
    return NULL;
}

static void global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

struct http_engine *http_engine_new(const struct http_engine_opts *opts, haul_error *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, global_init);
    struct http_engine *e = calloc(1, sizeof *e);
    if (!e) {
        err_set(err, HAUL_ENOMEM, "http: out of memory");
        return NULL;
    }
    e->opts = *opts;
    e->ca_bundle = opts->ca_bundle ? strdup(opts->ca_bundle) : NULL;
    e->opts.ca_bundle = e->ca_bundle;
    e->multi = curl_multi_init();
    pthread_mutex_init(&e->lock, NULL);
    if (!e->multi) {
        err_set(err, HAUL_ENOMEM, "http: curl_multi_init failed");
        goto fail;
    }
    long max = opts->max_connections > 0 ? opts->max_connections : 16;
    curl_multi_setopt(e->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max);
    curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max);
    curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, max);
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        err_set(err, HAUL_ENOMEM, "http: cannot start the engine thread");
        goto fail;
    }
    return e;
fail:
    if (e->multi)
        curl_multi_cleanup(e->multi);
    pthread_mutex_destroy(&e->lock);
    free(e->ca_bundle);
    free(e);
    return NULL;
}

void http_engine_free(struct http_engine *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->lock);
    e->stopping = true;
    pthread_mutex_unlock(&e->lock);
    curl_multi_wakeup(e->multi);
    pthread_join(e->thread, NULL);
    for (int i = 0; i < e->n_idle; i++)
        curl_easy_cleanup(e->idle[i]);
    curl_multi_cleanup(e->multi);
    pthread_mutex_destroy(&e->lock);
    free(e->ca_bundle);
    free(e);
}

static size_t on_read(char *dst, size_t size, size_t nmemb, void *arg)
{
    struct transfer *t = arg;
    size_t n = size * nmemb, left = t->req->body_len - t->body_off;
    if (n > left)
        n = left;
    if (n)
        memcpy(dst, (const char *)t->req->body + t->body_off, n);
    t->body_off += n;
    return n;
}

static int on_seek(void *arg, curl_off_t offset, int origin)
{
    struct transfer *t = arg;
    if (origin != SEEK_SET || offset < 0 || (size_t)offset > t->req->body_len)
        return CURL_SEEKFUNC_CANTSEEK;
    t->body_off = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

static void keep(struct http_request *r, const char *data, size_t n)
{
    size_t room = r->resp_cap > r->resp_body.len ? r->resp_cap - r->resp_body.len : 0;
    if (n > room) {
        n = room;
        r->resp_truncated = true;
    }
    strbuf_add(&r->resp_body, data, n);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct transfer *t = arg;
    struct http_request *r = t->req;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300 && r->sink) {
        if (r->sink(data, n, r->sink_ctx) != 0) {
            r->sink_failed = true;
            return CURL_WRITEFUNC_ERROR;
        }
    } else {
        keep(r, data, n);
    }
    r->body_received += n;
    return n;
}

/* Keeps the headers of the last response only (a 100 Continue or redirect
 * starts a new block). */
static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct transfer *t = arg;
    struct strbuf *h = &t->req->resp_headers;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        strbuf_reset(h);
        return n;
    }
    const char *colon = memchr(data, ':', n);
    if (!colon)
        return n;
    size_t name_len = (size_t)(colon - data);
    const char *v = colon + 1, *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    for (size_t i = 0; i < name_len; i++) {
        char c = (char)tolower((unsigned char)data[i]);
        strbuf_add(h, &c, 1);
    }
    strbuf_add(h, ": ", 2);
    strbuf_add(h, v, (size_t)(end - v));
    strbuf_add(h, "\n", 1);
    return n;
}

/* Aborts the transfer once the caller's cancel or stop flag is set, or when
 * no byte moved either way for the stall timeout (curl's own low-speed
 * check averages over a window, so it fires seconds late on short ones). */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal, (void)ultotal;
    struct transfer *t = arg;
    const struct http_request *r = t->req;
    if ((r->cancel && atomic_load(r->cancel)) || (r->stop && atomic_load(r->stop)))
        return 1;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (dlnow + ulnow != t->last_moved || t->moved_at.tv_sec == 0) {
        t->last_moved = dlnow + ulnow;
        t->moved_at = now;
        return 0;
    }
    double idle = (double)(now.tv_sec - t->moved_at.tv_sec) + (double)(now.tv_nsec - t->moved_at.tv_nsec) / 1e9;
    if (t->stall_s > 0 && idle >= (double)t->stall_s) {
        t->stalled = true;
        return 1;
    }
    return 0;
}

static CURL *easy_take(struct http_engine *e)
{
    CURL *easy = NULL;
    pthread_mutex_lock(&e->lock);
    if (e->n_idle > 0)
        easy = e->idle[--e->n_idle];
    pthread_mutex_unlock(&e->lock);
    if (easy)
        curl_easy_reset(easy);
    else
        easy = curl_easy_init();
    return easy;
}

static void easy_give_back(struct http_engine *e, CURL *easy)
{
    pthread_mutex_lock(&e->lock);
    if (e->n_idle < (int)(sizeof e->idle / sizeof *e->idle)) {
        e->idle[e->n_idle++] = easy;
        easy = NULL;
    }
    pthread_mutex_unlock(&e->lock);
    if (easy)
        curl_easy_cleanup(easy);
}

static void easy_configure(struct http_engine *e, struct transfer *t)
{
    CURL *c = t->easy;
    struct http_request *r = t->req;
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_PRIVATE, (char *)t);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* keys may hold "../" */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 60L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 30L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, e->opts.connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 1024L * 1024);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->curl_error);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, t);
    t->stall_s = e->opts.stall_timeout_s;
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, t);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    if (strncmp(r->url, "https:", 6) == 0) {
        if (e->opts.ca_bundle)
            curl_easy_setopt(c, CURLOPT_CAINFO, e->opts.ca_bundle);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, e->opts.verify_tls ? 1L : 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, e->opts.verify_tls ? 2L : 0L);
    }
    if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(r->method, "PUT") == 0 || strcmp(r->method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, t);
        curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(c, CURLOPT_SEEKDATA, t);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
    } else if (strcmp(r->method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
    }
}

int http_request_perform(struct http_engine *e, struct http_request *r)
{
    struct transfer t = {.req = r};
    r->status = 0;
    r->curl_code = CURLE_OK;
    r->curl_error[0] = '\0';
    r->sink_failed = r->resp_truncated = false;
    r->body_received = 0;
    strbuf_reset(&r->resp_body);
    strbuf_reset(&r->resp_headers);
    t.easy = easy_take(e);
    if (!t.easy) {
        r->curl_code = CURLE_OUT_OF_MEMORY;
        snprintf(r->curl_error, sizeof r->curl_error, "out of memory");
        return -1;
    }
    easy_configure(e, &t);
    pthread_cond_init(&t.cond, NULL);

    pthread_mutex_lock(&e->lock);
    t.next = e->pending;
    /* t lives on this stack until the engine marks it done, waited for below. */
    // cppcheck-suppress autoVariables
    e->pending = &t;
    pthread_mutex_unlock(&e->lock);
    curl_multi_wakeup(e->multi);

    pthread_mutex_lock(&e->lock);
    while (!t.done)
        pthread_cond_wait(&t.cond, &e->lock);
    pthread_mutex_unlock(&e->lock);
    pthread_cond_destroy(&t.cond);

    curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &r->status);
    if (t.stalled) {
        r->curl_code = CURLE_OPERATION_TIMEDOUT;
        snprintf(r->curl_error, sizeof r->curl_error, "no byte moved for %ld s (stalled)", t.stall_s);
    }
    if (r->curl_code != CURLE_OK && !r->curl_error[0])
        snprintf(r->curl_error, sizeof r->curl_error, "%s", curl_easy_strerror(r->curl_code));
    easy_give_back(e, t.easy);
    if (r->sink_failed)
        return -1;
    return r->curl_code == CURLE_OK ? 0 : -1;
}

void http_request_release(struct http_request *r)
{
    strbuf_release(&r->resp_body);
    strbuf_release(&r->resp_headers);
}

bool http_response_header(const struct http_request *r, const char *name, char *out, size_t cap)
{
    size_t name_len = strlen(name);
    const char *p = strbuf_str(&r->resp_headers);
    while (*p) {
        const char *eol = strchr(p, '\n');
        if (!eol)
            break;
        if (strncmp(p, name, name_len) == 0 && p[name_len] == ':' && p[name_len + 1] == ' ') {
            const char *v = p + name_len + 2;
            size_t n = (size_t)(eol - v);
            if (cap) {
                if (n >= cap)
                    n = cap - 1;
                memcpy(out, v, n);
                out[n] = '\0';
            }
            return true;
        }
        p = eol + 1;
    }
    return false;
}

void http_response_headers_each(const struct http_request *r, const char *prefix,
                                http_header_fn fn, void *ctx)
{
    size_t prefix_len = strlen(prefix);
    const char *p = strbuf_str(&r->resp_headers);
    char name[256], value[2048];
    while (*p) {
        const char *eol = strchr(p, '\n');
        const char *colon = strstr(p, ": ");
        if (!eol || !colon || colon > eol)
            break;
        size_t nl = (size_t)(colon - p), vl = (size_t)(eol - colon - 2);
        if (strncmp(p, prefix, prefix_len) == 0 && nl < sizeof name && vl < sizeof value) {
            memcpy(name, p, nl);
            name[nl] = '\0';
            memcpy(value, colon + 2, vl);
            value[vl] = '\0';
            fn(name, value, ctx);
        }
        p = eol + 1;
    }
}

/* dist/amqp: the RabbitMQ transport of dist.h, over librabbitmq-c (AMQP
 * 0-9-1).  One connection per handle, three channels on it:
 *   1 publish: publisher confirms (confirm.select); persistent, mandatory
 *   2 consume: basic.qos prefetch per consumer, manual acks, one consumer
 *     per consumed kind (the control consumer is no-ack on the handle's own
 *     exclusive queue)
 *   3 admin:   declarations, passive declares for depth, deletes; a failing
 *     passive declare closes only this channel
 * Frames of all channels arrive on one socket, so one loop (pump) reads
 * every frame and sorts it: publisher acks, nacks and returns update the
 * confirm window, deliveries go to a local list per kind that dist_next
 * takes from.  librabbitmq keeps frames for another channel aside while it
 * waits for an RPC reply, and pump reads those first. */
#include "dist/internal.h"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"

enum { CH_PUB = 1, CH_CONSUME = 2, CH_ADMIN = 3 };

static const char *const consumer_tags[DIST_KINDS] = {"haul-work", "haul-dead", "haul-results",
                                                      "haul-control"};

struct delivery {
    struct delivery *next;
    enum dist_kind kind;
    bool redelivered;
    uint64_t tag;
    amqp_bytes_t body; /* malloc'd by librabbitmq, ours now */
};

struct amqp_handle {
    struct dist_queue base;
    char *full_url; /* with the password, for dist_queue_clone */
    amqp_connection_state_t conn;
    bool broken; /* the connection or a channel failed: only free is left */
    char broken_msg[300];
    char tls_why[160]; /* why OpenSSL refused the broker's certificate */

    /* Publisher confirms: tags (confirmed, published] are outstanding, at
     * most confirm_window of them; ring[tag % ring_n] marks confirmations
     * that arrived out of order (1 ack, 2 nack). */
    uint64_t published, confirmed;
    unsigned char *ring;
    size_t ring_n;
    uint64_t nacked, returned; /* since the last flush */
    char return_text[128];

    struct delivery *head[DIST_KINDS], *tail[DIST_KINDS]; /* delivered, not yet taken */
    char ctl_queue[256];                                   /* our exclusive control queue */
};

static const struct dist_ops amqp_ops;

static amqp_bytes_t bytes_of(const char *s) { return amqp_cstring_bytes(s); }

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- errors ---- */

/* Why a TCP connect to host:port fails, in words: librabbitmq reports only
 * "a socket error occurred", which does not tell refused from unreachable. */
static void connect_diagnose(const char *host, int port, char *out, size_t n)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    snprintf(out, n, "cannot connect");
    if (getaddrinfo(host, ps, &hints, &res) != 0)
        return;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        int e = errno;
        close(fd);
        if (rc < 0) {
            snprintf(out, n, "%s", strerror(e));
            /* strerror says "Connection refused"; messages here are lower case */
            if (out[0] >= 'A' && out[0] <= 'Z')
                out[0] = (char)(out[0] - 'A' + 'a');
        }
        break;
    }
    freeaddrinfo(res);
}

static void bytes_text(amqp_bytes_t b, char *out, size_t n)
{
    snprintf(out, n, "%.*s", (int)(b.len < n ? b.len : n - 1), (const char *)b.bytes);
}

/* Words for a failed RPC reply; *code gets the haul error class. */
static void reply_text(amqp_rpc_reply_t r, char *out, size_t n, int *code)
{
    *code = HAUL_ENET;
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL: snprintf(out, n, "ok"); return;
    case AMQP_RESPONSE_NONE: snprintf(out, n, "no reply from the broker"); return;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(out, n, "%s", amqp_error_string2(r.library_error));
        return;
    case AMQP_RESPONSE_SERVER_EXCEPTION: break;
    }
    char text[256];
    uint16_t rc = 0;
    if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const amqp_connection_close_t *c = r.reply.decoded;
        rc = c->reply_code;
        bytes_text(c->reply_text, text, sizeof text);
    } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const amqp_channel_close_t *c = r.reply.decoded;
        rc = c->reply_code;
        bytes_text(c->reply_text, text, sizeof text);
    } else {
        snprintf(text, sizeof text, "unexpected method 0x%08x", (unsigned)r.reply.id);
    }
    *code = rc == 403 || rc == 530 ? HAUL_EAUTH : rc == 404 ? HAUL_ENOTFOUND : HAUL_EPROTO;
    snprintf(out, n, "%s", text);
}

static int reply_fail(struct amqp_handle *h, amqp_rpc_reply_t r, const char *what,
                      haul_error *err)
{
    char text[300];
    int code;
    reply_text(r, text, sizeof text, &code);
    return err_set(err, code, "%s: %s: %s", h->base.url, what, text);
}

/* Marks the handle unusable; later calls fail with the same words. */
static int broken(struct amqp_handle *h, int code, haul_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int broken(struct amqp_handle *h, int code, haul_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->broken_msg, sizeof h->broken_msg, fmt, ap);
    va_end(ap);
    h->broken = true;
    return err_set(err, code, "%s: %s", h->base.url, h->broken_msg);
}

static int check_broken(struct amqp_handle *h, haul_error *err)
{
    if (!h->broken)
        return 0;
    return err_set(err, HAUL_ENET, "%s: %s (connection unusable)", h->base.url, h->broken_msg);
}

/* ---- frames ---- */

static void confirm_mark(struct amqp_handle *h, uint64_t tag, unsigned char how)
{
    unsigned char *slot = &h->ring[tag % h->ring_n];
    if (!*slot)
        *slot = how;
}

/* A basic.ack or basic.nack from the broker for our publishes. */
static void confirm(struct amqp_handle *h, uint64_t tag, bool multiple, bool nack)
{
    if (multiple && tag == 0)
        tag = h->published; /* "everything so far" */
    if (tag <= h->confirmed || tag > h->published)
        return; /* not ours to count (a duplicate), ignore */
    if (multiple)
        for (uint64_t t = h->confirmed + 1; t <= tag; t++)
            confirm_mark(h, t, nack ? 2 : 1);
    else
        confirm_mark(h, tag, nack ? 2 : 1);
    while (h->confirmed < h->published) {
        unsigned char *slot = &h->ring[(h->confirmed + 1) % h->ring_n];
        if (!*slot)
            break;
        if (*slot == 2)
            h->nacked++;
        *slot = 0;
        h->confirmed++;
    }
}

static int kind_of_tag(amqp_bytes_t tag)
{
    for (int k = 0; k < DIST_KINDS; k++)
        if (tag.len == strlen(consumer_tags[k]) && memcmp(tag.bytes, consumer_tags[k], tag.len) == 0)
            return k;
    return -1;
}

static int on_deliver(struct amqp_handle *h, const amqp_basic_deliver_t *d, haul_error *err)
{
    int kind = kind_of_tag(d->consumer_tag);
    uint64_t tag = d->delivery_tag;
    bool redelivered = d->redelivered;
    amqp_message_t m;
    amqp_rpc_reply_t r = amqp_read_message(h->conn, CH_CONSUME, &m, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        char text[300];
        int code;
        reply_text(r, text, sizeof text, &code);
        return broken(h, code, err, "reading a delivery: %s", text);
    }
    if (kind < 0) {
        amqp_destroy_message(&m);
        return broken(h, HAUL_EPROTO, err, "delivery for an unknown consumer");
    }
    struct delivery *dl = calloc(1, sizeof *dl);
    if (!dl) {
        amqp_destroy_message(&m);
        return broken(h, HAUL_ENOMEM, err, "out of memory");
    }
    dl->kind = kind;
    dl->redelivered = redelivered;
    dl->tag = tag;
    dl->body = m.body; /* taken: amqp_destroy_message frees only the pool now */
    m.body = amqp_empty_bytes;
    amqp_destroy_message(&m);
    if (h->tail[kind])
        h->tail[kind]->next = dl;
    else
        h->head[kind] = dl;
    h->tail[kind] = dl;
    return 0;
}

/* Reads and handles one frame, waiting at most timeout_ms (negative = no
 * limit; librabbitmq sends and checks heartbeats meanwhile).  Returns 1 when
 * a frame was handled, 0 on timeout, negative on error. */
static int pump(struct amqp_handle *h, int timeout_ms, haul_error *err)
{
    if (check_broken(h, err) < 0)
        return -HAUL_ENET;
    struct timeval tv, *tvp = NULL;
    if (timeout_ms >= 0) {
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
        tvp = &tv;
    }
    amqp_frame_t f;
    int st = amqp_simple_wait_frame_noblock(h->conn, &f, tvp);
    if (st == AMQP_STATUS_TIMEOUT)
        return 0;
    if (st != AMQP_STATUS_OK)
        return broken(h, HAUL_ENET, err, "connection lost: %s", amqp_error_string2(st));
    int rc = 1;
    if (f.frame_type == AMQP_FRAME_METHOD) {
        switch (f.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
            const amqp_basic_ack_t *a = f.payload.method.decoded;
            if (f.channel == CH_PUB)
                confirm(h, a->delivery_tag, a->multiple, false);
            break;
        }
        case AMQP_BASIC_NACK_METHOD: {
            const amqp_basic_nack_t *a = f.payload.method.decoded;
            if (f.channel == CH_PUB)
                confirm(h, a->delivery_tag, a->multiple, true);
            break;
        }
        case AMQP_BASIC_RETURN_METHOD: {
            /* An unroutable mandatory publish (its queue was deleted): the
             * content follows; the confirm comes after it. */
            const amqp_basic_return_t *ret = f.payload.method.decoded;
            bytes_text(ret->reply_text, h->return_text, sizeof h->return_text);
            h->returned++;
            amqp_message_t m;
            amqp_rpc_reply_t r = amqp_read_message(h->conn, f.channel, &m, 0);
            if (r.reply_type != AMQP_RESPONSE_NORMAL)
                rc = broken(h, HAUL_ENET, err, "reading a returned message failed");
            else
                amqp_destroy_message(&m);
            break;
        }
        case AMQP_BASIC_DELIVER_METHOD:
            if (on_deliver(h, f.payload.method.decoded, err) < 0)
                rc = -HAUL_ENET;
            break;
        case AMQP_BASIC_CANCEL_METHOD:
            rc = broken(h, HAUL_ENOTFOUND, err,
                        "the broker cancelled our consumer (queue deleted?)");
            break;
        case AMQP_CHANNEL_CLOSE_METHOD: {
            const amqp_channel_close_t *c = f.payload.method.decoded;
            char text[256];
            bytes_text(c->reply_text, text, sizeof text);
            amqp_channel_close_ok_t ok = {0};
            amqp_send_method(h->conn, f.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
            rc = broken(h, c->reply_code == 404 ? HAUL_ENOTFOUND : HAUL_EPROTO, err,
                        "channel %u closed by the broker: %s", (unsigned)f.channel, text);
            break;
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
            const amqp_connection_close_t *c = f.payload.method.decoded;
            char text[256];
            bytes_text(c->reply_text, text, sizeof text);
            amqp_connection_close_ok_t ok = {0};
            amqp_send_method(h->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
            rc = broken(h, HAUL_ENET, err, "connection closed by the broker: %s", text);
            break;
        }
        default: break; /* consume-ok and the like: nothing to do */
        }
    }
    amqp_maybe_release_buffers_on_channel(h->conn, f.channel);
    return rc;
}

/* ---- open ---- */

static void job_queue_name(const struct dist_queue *q, char *out, size_t n)
{
    snprintf(out, n, "%s.job", q->prefix);
}

static int declare(struct amqp_handle *h, haul_error *err)
{
    char name[DIST_PREFIX_MAX + 16], dead[DIST_PREFIX_MAX + 16];
    amqp_connection_state_t c = h->conn;

    dist_queue_name(&h->base, DIST_CONTROL, name, sizeof name);
    amqp_exchange_declare(c, CH_ADMIN, bytes_of(name), bytes_of("fanout"), 0, 1, 0, 0,
                          amqp_empty_table);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
        return reply_fail(h, r, "declaring exchange", err);

    dist_queue_name(&h->base, DIST_DEAD, dead, sizeof dead);
    amqp_queue_declare(c, CH_ADMIN, bytes_of(dead), 0, 1, 0, 0, amqp_empty_table);
    if ((r = amqp_get_rpc_reply(c)).reply_type != AMQP_RESPONSE_NORMAL)
        return reply_fail(h, r, "declaring the dead-letter queue", err);

    /* Rejected units go to <prefix>.dead through the default exchange. */
    amqp_table_entry_t args[2];
    args[0].key = bytes_of("x-dead-letter-exchange");
    args[0].value.kind = AMQP_FIELD_KIND_UTF8;
    args[0].value.value.bytes = bytes_of("");
    args[1].key = bytes_of("x-dead-letter-routing-key");
    args[1].value.kind = AMQP_FIELD_KIND_UTF8;
    args[1].value.value.bytes = bytes_of(dead);
    amqp_table_t table = {.num_entries = 2, .entries = args};
    dist_queue_name(&h->base, DIST_WORK, name, sizeof name);
    amqp_queue_declare(c, CH_ADMIN, bytes_of(name), 0, 1, 0, 0, table);
    if ((r = amqp_get_rpc_reply(c)).reply_type != AMQP_RESPONSE_NORMAL)
        return reply_fail(h, r, "declaring the work queue", err);

    dist_queue_name(&h->base, DIST_RESULTS, name, sizeof name);
    amqp_queue_declare(c, CH_ADMIN, bytes_of(name), 0, 1, 0, 0, amqp_empty_table);
    if ((r = amqp_get_rpc_reply(c)).reply_type != AMQP_RESPONSE_NORMAL)
        return reply_fail(h, r, "declaring the results queue", err);

    /* The job description: one message, a newer one pushes the older out. */
    amqp_table_entry_t job_args[1];
    job_args[0].key = bytes_of("x-max-length");
    job_args[0].value.kind = AMQP_FIELD_KIND_I32;
    job_args[0].value.value.i32 = 1;
    amqp_table_t job_table = {.num_entries = 1, .entries = job_args};
    job_queue_name(&h->base, name, sizeof name);
    amqp_queue_declare(c, CH_ADMIN, bytes_of(name), 0, 1, 0, 0, job_table);
    if ((r = amqp_get_rpc_reply(c)).reply_type != AMQP_RESPONSE_NORMAL)
        return reply_fail(h, r, "declaring the job queue", err);
    return 0;
}

static int subscribe(struct amqp_handle *h, haul_error *err)
{
    amqp_connection_state_t c = h->conn;
    amqp_rpc_reply_t r;
    unsigned consume = h->base.opts.consume;
    if (!consume)
        return 0;
    /* global = 0: RabbitMQ applies the limit to each consumer on the channel. */
    amqp_basic_qos(c, CH_CONSUME, 0, (uint16_t)h->base.opts.prefetch, 0);
    if ((r = amqp_get_rpc_reply(c)).reply_type != AMQP_RESPONSE_NORMAL)
        return reply_fail(h, r, "basic.qos", err);
    for (int k = 0; k < DIST_KINDS; k++) {
        if (!(consume & DIST_CONSUME(k)))
            continue;
        char name[256];
        bool no_ack = false;
        if (k == DIST_CONTROL) {
            /* Our own server-named queue bound to the fanout: gone with us. */
            amqp_queue_declare_ok_t *ok =
                amqp_queue_declare(c, CH_ADMIN, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
            if (!ok)
                return reply_fail(h, amqp_get_rpc_reply(c), "declaring a control queue", err);
            bytes_text(ok->queue, h->ctl_queue, sizeof h->ctl_queue);
            char ex[DIST_PREFIX_MAX + 16];
            dist_queue_name(&h->base, DIST_CONTROL, ex, sizeof ex);
            amqp_queue_bind(c, CH_ADMIN, bytes_of(h->ctl_queue), bytes_of(ex), amqp_empty_bytes,
                            amqp_empty_table);
            if ((r = amqp_get_rpc_reply(c)).reply_type != AMQP_RESPONSE_NORMAL)
                return reply_fail(h, r, "binding the control queue", err);
            snprintf(name, sizeof name, "%s", h->ctl_queue);
            no_ack = true; /* advisory: nothing to redeliver */
        } else {
            dist_queue_name(&h->base, k, name, sizeof name);
        }
        amqp_basic_consume(c, CH_CONSUME, bytes_of(name), bytes_of(consumer_tags[k]), 0, no_ack, 0,
                           amqp_empty_table);
        if ((r = amqp_get_rpc_reply(c)).reply_type != AMQP_RESPONSE_NORMAL)
            return reply_fail(h, r, "basic.consume", err);
    }
    return 0;
}

static void handle_close(struct amqp_handle *h)
{
    if (!h->conn)
        return;
    if (!h->broken)
        amqp_connection_close(h->conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(h->conn);
    h->conn = NULL;
}

static void handle_free(struct amqp_handle *h)
{
    handle_close(h);
    for (int k = 0; k < DIST_KINDS; k++) {
        struct delivery *d = h->head[k];
        while (d) {
            struct delivery *next = d->next;
            amqp_bytes_free(d->body);
            free(d);
            d = next;
        }
    }
    free(h->ring);
    free(h->full_url);
    free(h);
}

/* The TLS options of an amqps URL, from its query (the names of RabbitMQ's
 * URI query parameters): cacertfile=PATH (percent-encoded), verify=
 * verify_peer|verify_none. */
struct tls_opts {
    char cacert[4096];
    bool verify;
};

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* s[0..len) percent-decoded into out; -1 on a bad escape, a NUL or no room. */
static int pct_decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = (unsigned char)s[i];
        if (s[i] == '%') {
            if (i + 2 >= len || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
                return -1;
            v = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
            i += 2;
        }
        if (!v || o + 1 >= cap)
            return -1;
        out[o++] = (char)v;
    }
    out[o] = 0;
    return 0;
}

static int query_parse(struct amqp_handle *h, const char *query, bool ssl, struct tls_opts *t,
                       haul_error *err)
{
    t->cacert[0] = 0;
    t->verify = true;
    for (const char *p = query; *p;) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        size_t nlen = eq ? (size_t)(eq - p) : len;
        const char *val = eq ? eq + 1 : p + len;
        size_t vlen = (size_t)(p + len - val);
        if (nlen == 10 && !memcmp(p, "cacertfile", 10)) {
            if (pct_decode(val, vlen, t->cacert, sizeof t->cacert) < 0 || !t->cacert[0])
                return err_set(err, HAUL_EUSAGE, "%s: cacertfile: not a file name", h->base.url);
        } else if (nlen == 6 && !memcmp(p, "verify", 6) &&
                   (vlen == 11 && !memcmp(val, "verify_none", 11))) {
            t->verify = false;
        } else if (nlen == 6 && !memcmp(p, "verify", 6) &&
                   (vlen == 11 && !memcmp(val, "verify_peer", 11))) {
            t->verify = true;
        } else {
            /* named only when it looks like a parameter name: a password
             * with a literal '?' would end up here */
            bool word = nlen && nlen < 32 && strspn(p, "abcdefghijklmnopqrstuvwxyz_") >= nlen;
            return err_set(err, HAUL_EUSAGE,
                           "%s: unknown URL parameter%s%.*s%s (known: cacertfile, verify=verify_peer|verify_none; "
                           "a password holding '?' must write it %%3F)",
                           h->base.url, word ? " '" : "", word ? (int)nlen : 0, p, word ? "'" : "");
        }
        p += len;
        if (*p == '&')
            p++;
    }
    if (!ssl && (t->cacert[0] || !t->verify))
        return err_set(err, HAUL_EUSAGE, "%s: cacertfile and verify are for amqps:// (TLS) brokers",
                       h->base.url);
    return 0;
}

/* The first reason OpenSSL gave for refusing the broker's certificate,
 * kept for the error message (librabbitmq says only "peer verify
 * failed").  Verification itself is librabbitmq's, after the handshake. */
static int verify_note(int ok, X509_STORE_CTX *x)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct amqp_handle *h = ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
    if (!ok && h && !h->tls_why[0])
        snprintf(h->tls_why, sizeof h->tls_why, "%s",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(x)));
    return 1;
}

static amqp_socket_t *tls_socket(struct amqp_handle *h, const struct tls_opts *t, haul_error *err)
{
    amqp_socket_t *sock = amqp_ssl_socket_new(h->conn);
    if (!sock) {
        err_set(err, HAUL_ENOMEM, "%s: TLS: cannot set up (out of memory?)", h->base.url);
        return NULL;
    }
    SSL_CTX *ctx = amqp_ssl_socket_get_context(sock);
    if (t->cacert[0]) {
        if (amqp_ssl_socket_set_cacert(sock, t->cacert) != AMQP_STATUS_OK) {
            err_set(err, HAUL_EUSAGE, "%s: TLS: cannot read the CA bundle %s (want PEM certificates)",
                    h->base.url, t->cacert);
            return NULL;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        err_set(err, HAUL_EUSAGE, "%s: TLS: cannot load the system's CA store (give --broker-ca FILE)",
                h->base.url);
        return NULL;
    }
    SSL_CTX_set_app_data(ctx, h);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, verify_note);
    amqp_ssl_socket_set_verify_peer(sock, t->verify);
    amqp_ssl_socket_set_verify_hostname(sock, t->verify);
    return sock;
}

/* Words for a failed connect: TCP errors diagnosed, TLS ones explained. */
static void open_why(struct amqp_handle *h, int st, const char *host, int port, char *out, size_t n)
{
    switch (st) {
    case AMQP_STATUS_SOCKET_ERROR: connect_diagnose(host, port, out, n); return;
    case AMQP_STATUS_SSL_PEER_VERIFY_FAILED:
        snprintf(out, n, "TLS: the broker's certificate is not trusted: %s (give its CA with --broker-ca FILE)",
                 h->tls_why[0] ? h->tls_why : "verification failed");
        return;
    case AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED:
        snprintf(out, n, "TLS: the broker's certificate is not for host %s", host);
        return;
    case AMQP_STATUS_SSL_CONNECTION_FAILED:
        snprintf(out, n, "TLS: handshake failed (is port %d a TLS listener?)", port);
        return;
    default: snprintf(out, n, "%s", amqp_error_string2(st));
    }
}

static int connect_login(struct amqp_handle *h, haul_error *err)
{
    struct amqp_connection_info ci;
    char *copy = dist_url_parse(h->full_url, &ci);
    if (!copy)
        return err_set(err, HAUL_EUSAGE,
                       "%s: not a broker URL (want amqp[s]://user:password@host:port/vhost)",
                       h->base.url);
    int rc = 0;
    struct tls_opts tls;
    const char *query = h->full_url + dist_url_base_len(h->full_url);
    if ((rc = query_parse(h, *query ? query + 1 : query, ci.ssl, &tls, err)) < 0)
        goto out;
    /* The URI spec makes "amqp://host/" name the vhost "", which no broker
     * has; everyone means the default "/" (write %2f to be explicit). */
    if (!ci.vhost || !*ci.vhost)
        ci.vhost = "/";
    h->conn = amqp_new_connection();
    amqp_socket_t *sock = NULL;
    if (!h->conn) {
        rc = err_set(err, HAUL_ENOMEM, "%s: out of memory", h->base.url);
        goto out;
    }
    if (ci.ssl) {
        if (!(sock = tls_socket(h, &tls, err))) {
            rc = err ? -err->code : -HAUL_EUSAGE;
            goto out;
        }
    } else if (!(sock = amqp_tcp_socket_new(h->conn))) {
        rc = err_set(err, HAUL_ENOMEM, "%s: out of memory", h->base.url);
        goto out;
    }
    struct timeval tv = {.tv_sec = 10};
    int st = amqp_socket_open_noblock(sock, ci.host, ci.port, &tv);
    if (st != AMQP_STATUS_OK) {
        char why[300];
        open_why(h, st, ci.host, ci.port, why, sizeof why);
        rc = err_set(err, HAUL_ENET, "%s: %s", h->base.url, why);
        goto out;
    }
    /* No call may wait forever on a broker that stopped answering: login and
     * RPCs (declare, depth, close) give up after 30 and 60 s; waits for
     * frames are bounded by the heartbeat. */
    struct timeval hs = {.tv_sec = 30}, rpc = {.tv_sec = 60};
    amqp_set_handshake_timeout(h->conn, &hs);
    amqp_set_rpc_timeout(h->conn, &rpc);
    int heartbeat = h->base.opts.heartbeat_s > 0 ? h->base.opts.heartbeat_s : 0;
    amqp_rpc_reply_t r = amqp_login(h->conn, ci.vhost, 0, 131072, heartbeat,
                                    AMQP_SASL_METHOD_PLAIN, ci.user, ci.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        /* The broker closed the connection: nothing to close politely. */
        h->broken = true;
        rc = reply_fail(h, r, "login", err);
        if (err && err->code == HAUL_EPROTO)
            err->code = HAUL_EAUTH;
        goto out;
    }
    for (int ch = CH_PUB; ch <= CH_ADMIN; ch++) {
        amqp_channel_open(h->conn, (amqp_channel_t)ch);
        if ((r = amqp_get_rpc_reply(h->conn)).reply_type != AMQP_RESPONSE_NORMAL) {
            rc = reply_fail(h, r, "opening a channel", err);
            goto out;
        }
    }
out:
    free(copy);
    return rc;
}

static struct amqp_handle *handle_open(const char *url, const struct dist_queue_opts *o,
                                       const char *prefix, haul_error *err)
{
    struct amqp_handle *h = calloc(1, sizeof *h);
    if (!h || !(h->full_url = strdup(url))) {
        free(h);
        err_set(err, HAUL_ENOMEM, "out of memory");
        return NULL;
    }
    h->base.ops = &amqp_ops;
    dist_url_redact(url, h->base.url, sizeof h->base.url);
    if (dist_opts_fill(&h->base, o, prefix, err) < 0)
        goto fail;
    h->ring_n = (size_t)h->base.opts.confirm_window + 1;
    h->ring = calloc(h->ring_n, 1);
    if (!h->ring) {
        err_set(err, HAUL_ENOMEM, "out of memory");
        goto fail;
    }
    if (connect_login(h, err) < 0 || declare(h, err) < 0)
        goto fail;
    amqp_confirm_select(h->conn, CH_PUB);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(h->conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        reply_fail(h, r, "confirm.select", err);
        goto fail;
    }
    if (subscribe(h, err) < 0)
        goto fail;
    return h;
fail:
    handle_free(h);
    return NULL;
}

struct dist_queue *dist_amqp_open(const char *url, const struct dist_queue_opts *o,
                                  haul_error *err)
{
    struct amqp_handle *h = handle_open(url, o, NULL, err);
    return h ? &h->base : NULL;
}

static struct dist_queue *amqp_clone(struct dist_queue *q, const struct dist_queue_opts *o,
                                     haul_error *err)
{
    struct amqp_handle *h = (struct amqp_handle *)q;
    struct amqp_handle *c = handle_open(h->full_url, o, q->prefix, err);
    return c ? &c->base : NULL;
}

static void amqp_free(struct dist_queue *q) { handle_free((struct amqp_handle *)q); }

/* ---- operations ---- */

/* Pumps until cond(h) holds or timeout_ms passes (negative: no limit).
 * Returns 1 when it holds, 0 on timeout, negative on error. */
static int pump_until(struct amqp_handle *h, bool (*cond)(const struct amqp_handle *),
                      int timeout_ms, haul_error *err)
{
    double deadline = now_ms() + timeout_ms;
    while (!cond(h)) {
        int left = -1;
        if (timeout_ms >= 0) {
            double d = deadline - now_ms();
            if (d <= 0)
                return 0;
            left = (int)d + 1;
        }
        int rc = pump(h, left, err);
        if (rc < 0)
            return rc;
    }
    return 1;
}

static bool window_has_room(const struct amqp_handle *h)
{
    return h->published - h->confirmed < h->base.opts.confirm_window;
}

static bool all_confirmed(const struct amqp_handle *h) { return h->confirmed == h->published; }

static int amqp_publish(struct dist_queue *q, enum dist_kind kind, const void *body, size_t len,
                        haul_error *err)
{
    struct amqp_handle *h = (struct amqp_handle *)q;
    if (check_broken(h, err) < 0)
        return -HAUL_ENET;
    /* A full window waits for the broker: bounded memory on both sides.  The
     * wait is long, a broker under memory alarm blocks publishers for a while. */
    int rc = pump_until(h, window_has_room, 600000, err);
    if (rc == 0)
        return err_set(err, HAUL_ENET, "%s: no publisher confirm for 600 s", q->url);
    if (rc < 0)
        return rc;
    char name[DIST_PREFIX_MAX + 16];
    dist_queue_name(q, kind, name, sizeof name);
    amqp_basic_properties_t props;
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    props.content_type = bytes_of("application/x-haul");
    props.delivery_mode = kind == DIST_CONTROL ? 1 : 2; /* 2: persistent */
    amqp_bytes_t b = {.len = len, .bytes = (void *)body};
    int st;
    if (kind == DIST_CONTROL)
        st = amqp_basic_publish(h->conn, CH_PUB, bytes_of(name), amqp_empty_bytes, 0, 0, &props, b);
    else
        st = amqp_basic_publish(h->conn, CH_PUB, amqp_empty_bytes, bytes_of(name), 1, 0, &props, b);
    if (st != AMQP_STATUS_OK)
        return broken(h, HAUL_ENET, err, "publish to %s: %s", name, amqp_error_string2(st));
    h->published++;
    return 0;
}

static int amqp_flush(struct dist_queue *q, int timeout_ms, haul_error *err)
{
    struct amqp_handle *h = (struct amqp_handle *)q;
    int rc = pump_until(h, all_confirmed, timeout_ms, err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return err_set(err, HAUL_ENET, "%s: %llu publishes not confirmed within %d ms", q->url,
                       (unsigned long long)(h->published - h->confirmed), timeout_ms);
    uint64_t nacked = h->nacked, returned = h->returned;
    h->nacked = h->returned = 0;
    if (returned)
        return err_set(err, HAUL_EPROTO, "%s: %llu messages could not be routed (%s)", q->url,
                       (unsigned long long)returned, h->return_text);
    if (nacked)
        return err_set(err, HAUL_EPROTO, "%s: the broker refused %llu messages (basic.nack)",
                       q->url, (unsigned long long)nacked);
    return 0;
}

static int amqp_poll(struct dist_queue *q, haul_error *err)
{
    struct amqp_handle *h = (struct amqp_handle *)q;
    /* Zero timeout: librabbitmq sends a due heartbeat before it looks for
     * input.  Bounded, so a flood of deliveries cannot keep us here. */
    for (int i = 0; i < 1024; i++) {
        int rc = pump(h, 0, err);
        if (rc <= 0)
            return rc;
    }
    return 0;
}

static struct delivery *take(struct amqp_handle *h)
{
    static const enum dist_kind order[] = {DIST_CONTROL, DIST_RESULTS, DIST_WORK, DIST_DEAD};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        struct delivery *d = h->head[order[i]];
        if (d) {
            h->head[order[i]] = d->next;
            if (!d->next)
                h->tail[order[i]] = NULL;
            d->next = NULL;
            return d;
        }
    }
    return NULL;
}

static int amqp_next(struct dist_queue *q, struct dist_msg *out, int timeout_ms, haul_error *err)
{
    struct amqp_handle *h = (struct amqp_handle *)q;
    double deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    struct delivery *d;
    while (!(d = take(h))) {
        int left = -1;
        if (timeout_ms >= 0) {
            double rest = deadline - now_ms();
            left = rest > 0 ? (int)rest + 1 : 0;
        }
        int rc = pump(h, left, err);
        if (rc < 0)
            return rc;
        if (rc == 0 && !(d = take(h)))
            return 0;
        if (d)
            break;
    }
    out->kind = d->kind;
    out->body = d->body.bytes;
    out->len = d->body.len;
    out->redelivered = d->redelivered;
    out->tag = d->tag;
    out->impl = d;
    return 1;
}

static int amqp_settle(struct dist_queue *q, struct dist_msg *msg, bool ack, bool requeue,
                       haul_error *err)
{
    struct amqp_handle *h = (struct amqp_handle *)q;
    struct delivery *d = msg->impl;
    if (!d)
        return err_set(err, HAUL_EUSAGE, "%s: message settled twice", q->url);
    msg->impl = NULL;
    msg->body = NULL;
    int st = AMQP_STATUS_OK;
    if (d->kind != DIST_CONTROL && !h->broken) { /* control is consumed without acks */
        if (ack)
            st = amqp_basic_ack(h->conn, CH_CONSUME, d->tag, 0);
        else
            st = amqp_basic_reject(h->conn, CH_CONSUME, d->tag, requeue);
    }
    amqp_bytes_free(d->body);
    free(d);
    if (check_broken(h, err) < 0)
        return -HAUL_ENET;
    if (st != AMQP_STATUS_OK)
        return broken(h, HAUL_ENET, err,
                      "%s: connection lost (%s; silent longer than the heartbeat? see "
                      "dist_poll): the broker gives the message to another consumer",
                      ack ? "basic.ack" : "basic.reject", amqp_error_string2(st));
    return 0;
}

/* After a failed RPC on the admin channel: the broker closed it (its
 * channel.close is what the RPC got), so say close-ok and open it again. */
static void admin_reopen(struct amqp_handle *h, amqp_rpc_reply_t r)
{
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_ok_t ok = {0};
        amqp_send_method(h->conn, CH_ADMIN, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        amqp_channel_open(h->conn, CH_ADMIN);
        if (amqp_get_rpc_reply(h->conn).reply_type == AMQP_RESPONSE_NORMAL)
            return;
    }
    h->broken = true;
    snprintf(h->broken_msg, sizeof h->broken_msg, "admin channel lost");
}

static int amqp_depth(struct dist_queue *q, enum dist_kind kind, struct dist_depth *out,
                      haul_error *err)
{
    struct amqp_handle *h = (struct amqp_handle *)q;
    if (check_broken(h, err) < 0)
        return -HAUL_ENET;
    char name[DIST_PREFIX_MAX + 16];
    dist_queue_name(q, kind, name, sizeof name);
    amqp_queue_declare_ok_t *ok =
        amqp_queue_declare(h->conn, CH_ADMIN, bytes_of(name), 1, 0, 0, 0, amqp_empty_table);
    if (!ok) {
        amqp_rpc_reply_t r = amqp_get_rpc_reply(h->conn);
        int rc = reply_fail(h, r, name, err);
        admin_reopen(h, r);
        return rc;
    }
    out->ready = ok->message_count;
    out->unacked = -1; /* AMQP does not say: see dist.h on completion */
    out->consumers = ok->consumer_count;
    return 0;
}

static int amqp_destroy(struct dist_queue *q, haul_error *err)
{
    struct amqp_handle *h = (struct amqp_handle *)q;
    if (check_broken(h, err) < 0)
        return -HAUL_ENET;
    char name[DIST_PREFIX_MAX + 16];
    for (int k = DIST_WORK; k < DIST_CONTROL; k++) {
        dist_queue_name(q, k, name, sizeof name);
        amqp_queue_delete(h->conn, CH_ADMIN, bytes_of(name), 0, 0);
        amqp_rpc_reply_t r = amqp_get_rpc_reply(h->conn);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            int rc = reply_fail(h, r, name, err);
            admin_reopen(h, r);
            return rc;
        }
    }
    job_queue_name(q, name, sizeof name);
    amqp_queue_delete(h->conn, CH_ADMIN, bytes_of(name), 0, 0);
    amqp_rpc_reply_t jr = amqp_get_rpc_reply(h->conn);
    if (jr.reply_type != AMQP_RESPONSE_NORMAL) {
        int rc = reply_fail(h, jr, name, err);
        admin_reopen(h, jr);
        return rc;
    }
    dist_queue_name(q, DIST_CONTROL, name, sizeof name);
    amqp_exchange_delete(h->conn, CH_ADMIN, bytes_of(name), 0);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(h->conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        int rc = reply_fail(h, r, name, err);
        admin_reopen(h, r);
        return rc;
    }
    return 0;
}

static int amqp_job_put(struct dist_queue *q, const void *body, size_t len, haul_error *err)
{
    struct amqp_handle *h = (struct amqp_handle *)q;
    if (check_broken(h, err) < 0)
        return -HAUL_ENET;
    char name[DIST_PREFIX_MAX + 16];
    job_queue_name(q, name, sizeof name);
    /* x-max-length 1 keeps the newest; the purge only makes that explicit. */
    amqp_queue_purge(h->conn, CH_ADMIN, bytes_of(name));
    amqp_rpc_reply_t r = amqp_get_rpc_reply(h->conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        int rc = reply_fail(h, r, name, err);
        admin_reopen(h, r);
        return rc;
    }
    amqp_basic_properties_t props;
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    props.content_type = bytes_of("application/x-haul");
    props.delivery_mode = 2;
    amqp_bytes_t b = {.len = len, .bytes = (void *)body};
    int st = amqp_basic_publish(h->conn, CH_PUB, amqp_empty_bytes, bytes_of(name), 1, 0, &props, b);
    if (st != AMQP_STATUS_OK)
        return broken(h, HAUL_ENET, err, "publish to %s: %s", name, amqp_error_string2(st));
    h->published++;
    return amqp_flush(q, 30000, err);
}

/* One basic.get: 1 with out filled (the message given back at once), 0 when
 * the queue is empty. */
static int job_get_once(struct amqp_handle *h, const char *name, struct strbuf *out, haul_error *err)
{
    amqp_basic_get(h->conn, CH_ADMIN, bytes_of(name), 0);
    amqp_rpc_reply_t r = amqp_get_rpc_reply(h->conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        int rc = reply_fail(h, r, name, err);
        admin_reopen(h, r);
        return rc;
    }
    if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
        return 0;
    uint64_t tag = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
    amqp_message_t msg;
    r = amqp_read_message(h->conn, CH_ADMIN, &msg, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL)
        return broken(h, HAUL_ENET, err, "%s: reading %s: connection lost", h->base.url, name);
    strbuf_reset(out);
    int rc = strbuf_add(out, msg.body.bytes, msg.body.len) < 0
                 ? err_set(err, HAUL_ENOMEM, "%s: out of memory", name) : 1;
    amqp_destroy_message(&msg);
    int st = amqp_basic_reject(h->conn, CH_ADMIN, tag, 1);
    if (st != AMQP_STATUS_OK)
        return broken(h, HAUL_ENET, err, "%s: basic.reject: %s", name, amqp_error_string2(st));
    return rc;
}

static int amqp_job_get(struct dist_queue *q, struct strbuf *out, haul_error *err)
{
    struct amqp_handle *h = (struct amqp_handle *)q;
    if (check_broken(h, err) < 0)
        return -HAUL_ENET;
    char name[DIST_PREFIX_MAX + 16];
    job_queue_name(q, name, sizeof name);
    /* Another reader holding the message for an instant looks like empty. */
    for (int i = 0; i < 20; i++) {
        int rc = job_get_once(h, name, out, err);
        if (rc != 0)
            return rc;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static const struct dist_ops amqp_ops = {
    .job_put = amqp_job_put,
    .job_get = amqp_job_get,
    .clone = amqp_clone,
    .free = amqp_free,
    .publish = amqp_publish,
    .flush = amqp_flush,
    .poll = amqp_poll,
    .next = amqp_next,
    .settle = amqp_settle,
    .depth = amqp_depth,
    .destroy = amqp_destroy,
};

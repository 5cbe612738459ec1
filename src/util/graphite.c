/* util/graphite: the plaintext protocol over TCP (see graphite.h). */
#include "util/graphite.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"
#include "util/log.h"

#define MAX_METRICS 64
#define IO_TIMEOUT_MS 5000

struct graphite_reporter {
    char host[256], port[16], prefix[128];
    unsigned interval_s;
    graphite_sample_fn sample;
    void *ctx;
    int fd;                 /* -1 while disconnected */
    bool down_logged;       /* one log line per outage */
    unsigned failures;
    pthread_t thread;
    pthread_mutex_t lock;   /* guards stopping */
    pthread_cond_t wake;
    bool stopping;
};

static int address_parse(struct graphite_reporter *r, const char *hp, haul_error *err)
{
    const char *colon = strrchr(hp, ':');
    const char *host = hp;
    size_t host_len = colon ? (size_t)(colon - hp) : 0;
    if (host_len > 1 && hp[0] == '[' && hp[host_len - 1] == ']')
        host++, host_len -= 2;
    if (!colon || host_len == 0 || host_len >= sizeof r->host || !colon[1] || strlen(colon + 1) >= sizeof r->port ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return err_set(err, HAUL_EUSAGE, "graphite address '%s': expected HOST:PORT", hp);
    memcpy(r->host, host, host_len);
    r->host[host_len] = '\0';
    snprintf(r->port, sizeof r->port, "%s", colon + 1);
    return 0;
}

/* Connects with a bounded wait (non-blocking connect + poll). */
static int connect_to(const struct graphite_reporter *r)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(r->host, r->port, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
            close(fd), fd = -1;
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int so_err = 0;
        socklen_t len = sizeof so_err;
        if (poll(&p, 1, IO_TIMEOUT_MS) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &len) < 0 || so_err)
            close(fd), fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, IO_TIMEOUT_MS) != 1)
                return -1;
            continue;
        }
        if (n < 0)
            return -1;
        buf += n, len -= (size_t)n;
    }
    return 0;
}

static void report_once(struct graphite_reporter *r)
{
    struct graphite_metric m[MAX_METRICS];
    size_t n = r->sample(m, MAX_METRICS, r->ctx);
    time_t now = time(NULL);
    char buf[MAX_METRICS * 256];
    size_t len = 0;
    for (size_t i = 0; i < n && len < sizeof buf; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s.%s %llu %lld\n", r->prefix, m[i].name,
                                (unsigned long long)m[i].value, (long long)now);
    if (len > sizeof buf)
        len = sizeof buf;
    if (r->fd < 0)
        r->fd = connect_to(r);
    if (r->fd >= 0 && send_all(r->fd, buf, len) == 0) {
        r->down_logged = false;
        return;
    }
    r->failures++;
    if (r->fd >= 0)
        close(r->fd), r->fd = -1;
    if (!r->down_logged)
        log_warn("graphite %s:%s: cannot deliver statistics (will retry every %u s)", r->host, r->port,
                 r->interval_s);
    r->down_logged = true;
}

static void *reporter_main(void *arg)
{
    struct graphite_reporter *r = arg;
    for (bool last = false; !last;) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += r->interval_s;
        pthread_mutex_lock(&r->lock);
        while (!r->stopping && pthread_cond_timedwait(&r->wake, &r->lock, &until) != ETIMEDOUT)
            ;
        last = r->stopping;
        pthread_mutex_unlock(&r->lock);
        report_once(r); /* after stopping: the final counters */
    }
    return NULL;
}

struct graphite_reporter *graphite_reporter_start(const char *host_port, const char *prefix, unsigned interval_s,
                                                  graphite_sample_fn sample, void *ctx, haul_error *err)
{
    if (!prefix[0] || strlen(prefix) >= 128 ||
        strspn(prefix, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != strlen(prefix)) {
        err_set(err, HAUL_EUSAGE, "graphite prefix '%s': use letters, digits, '_', '-' and '.'", prefix);
        return NULL;
    }
    struct graphite_reporter *r = calloc(1, sizeof *r);
    if (!r) {
        err_set(err, HAUL_ENOMEM, "out of memory");
        return NULL;
    }
    if (address_parse(r, host_port, err) < 0) {
        free(r);
        return NULL;
    }
    snprintf(r->prefix, sizeof r->prefix, "%s", prefix);
    r->interval_s = interval_s ? interval_s : 30;
    r->sample = sample;
    r->ctx = ctx;
    r->fd = -1;
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->wake, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&r->thread, NULL, reporter_main, r);
    if (rc != 0) {
        err_errno(err, rc, "graphite: starting the reporter");
        free(r);
        return NULL;
    }
    return r;
}

unsigned graphite_reporter_stop(struct graphite_reporter *r)
{
    if (!r)
        return 0;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    if (r->fd >= 0)
        close(r->fd);
    unsigned failures = r->failures;
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    free(r);
    return failures;
}

/* api/stream: the public streaming API (include/haul/haul.h).  A stream is
 * the transfer engine running on its own thread at one end of a pipe: the
 * pipe is the bounded ring between the caller and the engine (the caller's
 * haul_write blocks while it is full), and nothing ever touches a cache file. */
#include <haul/haul.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "s3/s3.h"
#include "util/err.h"
#include "xfer/xfer.h"

struct haul_client {
    struct s3_client *s3;
    struct xfer_opts xfer; /* defaults for every stream */
};

struct haul_stream {
    haul_client *client;
    bool writing;
    int fd;        /* the caller's end of the pipe */
    int engine_fd; /* the engine's end, closed by the engine thread */
    struct s3_url url;
    struct xfer_opts opts;
    atomic_bool cancel;
    bool eof;    /* the reader saw the end: the engine's result counts */
    bool joined; /* the engine thread was joined already */
    pthread_t thread;
    int rc;         /* the engine's result */
    haul_error err; /* ... and why */
};

haul_client *haul_client_new(const haul_config *cfg, haul_error *err)
{
    static const haul_config none;
    if (!cfg)
        cfg = &none;
    struct s3_config_overrides ov = {
        .endpoint = cfg->endpoint_url,
        .region = cfg->region,
        .profile = cfg->profile,
        .max_connections = cfg->max_connections,
        .max_attempts = cfg->max_attempts,
    };
    struct s3_config s3cfg;
    if (s3_config_load(&s3cfg, &ov, err) < 0)
        return NULL;
    haul_client *c = calloc(1, sizeof *c);
    if (c)
        c->s3 = s3_client_new(&s3cfg, err);
    else
        err_set(err, HAUL_ENOMEM, "haul_client_new: out of memory");
    s3_config_release(&s3cfg);
    if (c && !c->s3) {
        free(c);
        return NULL;
    }
    if (c) {
        c->xfer.part_size = cfg->part_size;
        c->xfer.workers = cfg->workers;
        c->xfer.buffers = cfg->buffers;
    }
    return c;
}

void haul_client_free(haul_client *c)
{
    if (!c)
        return;
    s3_client_free(c->s3);
    free(c);
}

static void *engine_main(void *arg)
{
    haul_stream *s = arg;
    /* A reader that closes early makes the engine's writes fail with EPIPE;
     * the signal must not kill the caller's process. */
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
    if (s->writing)
        s->rc = xfer_upload_fd(s->client->s3, s->engine_fd, s->url.bucket, s->url.key, &s->opts,
                               &(struct xfer_result){0}, &s->err);
    else
        s->rc = xfer_download_fd(s->client->s3, s->url.bucket, s->url.key, s->engine_fd, &s->opts,
                                 &(struct xfer_result){0}, &s->err);
    /* Closing our end tells the caller: EOF for a reader, EPIPE for a writer. */
    close(s->engine_fd);
    return NULL;
}

static void stream_free(haul_stream *s)
{
    s3_url_release(&s->url);
    free(s);
}

haul_stream *haul_open(haul_client *c, const char *s3url, const char *mode, haul_error *err)
{
    bool writing = mode && strcmp(mode, "w") == 0;
    if (!c || !s3url || !mode || (!writing && strcmp(mode, "r") != 0)) {
        err_set(err, HAUL_EUSAGE, "haul_open: expected a client, an s3:// URL and mode \"r\" or \"w\"");
        return NULL;
    }
    haul_stream *s = calloc(1, sizeof *s);
    if (!s) {
        err_set(err, HAUL_ENOMEM, "haul_open: out of memory");
        return NULL;
    }
    s->client = c;
    s->writing = writing;
    s->opts = c->xfer;
    s->opts.cancel = &s->cancel;
    if (s3_url_parse(s3url, &s->url, err) < 0) {
        stream_free(s);
        return NULL;
    }
    if (!s->url.key[0]) {
        err_set(err, HAUL_EUSAGE, "haul_open %s: name an object", s3url);
        stream_free(s);
        return NULL;
    }
    struct s3_object_info info = {0};
    if (!writing && s3_object_head(c->s3, s->url.bucket, s->url.key, &info, err) < 0) {
        stream_free(s);
        return NULL;
    }
    s3_object_info_release(&info);
    /* A socket pair, not a pipe: the caller writes with MSG_NOSIGNAL, so an
     * engine that stopped gives haul_write an error, never a SIGPIPE. */
    int p[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0) {
        err_errno(err, errno, "haul_open %s: socketpair", s3url);
        stream_free(s);
        return NULL;
    }
    int bufsize = 1 << 20; /* fewer wake-ups; best effort */
    setsockopt(p[0], SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
    setsockopt(p[1], SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
    if (writing)
        shutdown(p[0], SHUT_WR); /* one-way: caller -> engine */
    else
        shutdown(p[1], SHUT_RD); /* one-way: engine -> caller */
    s->fd = writing ? p[1] : p[0];
    s->engine_fd = writing ? p[0] : p[1];
    if (pthread_create(&s->thread, NULL, engine_main, s) != 0) {
        err_set(err, HAUL_ENOMEM, "haul_open %s: cannot start a thread", s3url);
        close(p[0]);
        close(p[1]);
        stream_free(s);
        return NULL;
    }
    return s;
}

ssize_t haul_read(haul_stream *s, void *buf, size_t n)
{
    if (!s || s->writing)
        return -1;
    for (;;) {
        ssize_t r = read(s->fd, buf, n);
        if (r == 0 && n > 0 && !s->eof) {
            /* The engine closed its end: it has finished.  An engine that
             * failed (even at the final ETag check) is an error here too. */
            s->eof = true;
            pthread_join(s->thread, NULL);
            s->joined = true;
            if (s->rc < 0)
                return -1;
        }
        if (r >= 0 || errno != EINTR)
            return r;
    }
}

ssize_t haul_write(haul_stream *s, const void *buf, size_t n)
{
    if (!s || !s->writing)
        return -1;
    size_t done = 0;
    while (done < n) {
        ssize_t w = send(s->fd, (const char *)buf + done, n - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1; /* EPIPE: the engine stopped; haul_close says why */
        done += (size_t)w;
    }
    return (ssize_t)n;
}

static int stream_finish(haul_stream *s, haul_error *err)
{
    close(s->fd);
    if (!s->joined)
        pthread_join(s->thread, NULL);
    int rc = s->rc;
    if (rc < 0 && err && err->code == HAUL_OK)
        *err = s->err;
    stream_free(s);
    return rc;
}

int haul_close(haul_stream *s, haul_error *err)
{
    if (!s)
        return err_set(err, HAUL_EUSAGE, "haul_close: no stream");
    if (!s->writing && !s->eof) {
        /* A reader that stops early is not an error. */
        atomic_store(&s->cancel, true);
        stream_finish(s, NULL);
        return 0;
    }
    return stream_finish(s, err);
}

void haul_abort(haul_stream *s)
{
    if (!s)
        return;
    atomic_store(&s->cancel, true); /* before the EOF the engine will see */
    stream_finish(s, NULL);
}

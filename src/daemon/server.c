/* daemon/server: haul daemon.  One thread runs a poll(2) loop over the
 * listeners, a signalfd and every connection still sending its request
 * (bounded line, read deadline), so a slow or hostile client holds nothing
 * but its own slot.  An accepted request is journaled (fsync) and queued;
 * a pool of worker threads uploads from the queue through the streaming
 * engine and answers the clients that wait. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "util/err.h"
#include "util/log.h"
#include "util/path.h"

#define TCP_LISTEN_MAX 4
#define FAILURES_KEPT 100
#define ACCEPTS_PER_TURN 64
#define ACCEPT_PAUSE_MS 100 /* listeners rest this long after accept() ran out of descriptors */
#define CHECKS_STUCK_MAX 64 /* file checks past their deadline before new requests are refused */
#define UIDS_KEPT 160       /* per-uid counts: allowed peers, admins, the daemon, and "others" */

struct job {
    struct daemon_req req;
    int file_fd;  /* -1: open req.path when its turn comes (replayed from the journal) */
    int reply_fd; /* -1: nobody waits for the result */
    atomic_int *held; /* the server's count of held descriptors, when file_fd came with the request */
    bool tcp;     /* answer in s3daemon's words */
    bool wait;    /* the client waits for the result on reply_fd */
    struct job *next;
};

struct check;

/* A connection still sending its request line, or whose request waits for
 * its file to be checked (then it is not polled). */
struct conn {
    int fd;
    bool tcp;
    uid_t uid;
    int passed_fd;
    bool draining; /* answered; reading and dropping what is left until EOF or the deadline */
    char *buf;
    size_t len, cap;
    int64_t deadline_ms;
    struct check *check;  /* the file being opened or checked on a task, NULL: none */
    struct daemon_req req; /* the request parsed, while check runs */
    bool wait;
};

/* Requests and outcomes of one uid, for a STATUS from that uid. */
struct uid_count {
    uid_t uid;
    int queued, in_flight;
    uint64_t done, failed;
};

struct server {
    const struct daemon_config *cfg;
    struct s3_client *client;
    struct daemon_journal *journal;
    char dir[4200]; /* STATE_DIR/daemon */
    int sig_fd, wake_r, wake_w, unix_fd, lock_fd;
    bool bound; /* the socket file is ours to remove */
    int tcp_fd[TCP_LISTEN_MAX];
    int n_tcp;
    struct conn **conns; /* event loop thread only */
    int n_conns;
    int n_open[2];        /* of them, [0] Unix-socket and [1] TCP ones */
    unsigned long fd_limit; /* RLIMIT_NOFILE, raised to its hard limit at start */
    int fd_budget;          /* descriptors that accepted requests may hold (derived from fd_limit) */
    atomic_int held_fds;    /* descriptors that accepted requests hold now */
    int spare_fd;           /* given up when accept() runs out of descriptors, to refuse a client */
    int64_t accept_resume_ms; /* listeners are not polled before this (event loop thread only) */
    int64_t starved_logged_ms;
    atomic_int waiting[2]; /* connections handed over to jobs, answered by workers ([1]: TCP) */
    struct daemon_hub *hub; /* file checks off the event loop */
    atomic_bool cancel;  /* second signal: uploads in flight stop */

    pthread_mutex_t lock; /* guards the queue, the counters, paused, stopping, failures */
    pthread_cond_t cond;  /* queue changed, resumed, or stopping */
    struct job *head, *tail;
    int queued, in_flight;
    uint64_t done, failed;
    bool paused, stopping;
    char failures[FAILURES_KEPT][640];
    uid_t failures_uid[FAILURES_KEPT];
    int failures_next, failures_n;
    struct uid_count counts[UIDS_KEPT]; /* the last one: every uid without its own */
    int n_counts;

    pthread_mutex_t log_lock; /* guards log and failed_log */
    FILE *log;
    FILE *failed_log;

    pthread_t *threads;
    int n_threads;

    /* Requests appended to the journal in this turn of the event loop, not
     * yet fsync'd: answered and queued after one fsync for all of them
     * (event loop thread only). */
    struct job *unsynced;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void iso_now(char *out, size_t cap)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* One line of text: control characters (a newline in an S3 message, say)
 * become spaces. */
static void one_line(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = ' ';
}

static void wake(struct server *s)
{
    char b = 1;
    ssize_t w = write(s->wake_w, &b, 1);
    (void)w; /* a full pipe already means "wake up" */
}

/* Best-effort answer on a socket: waits at most 2 s for room, so a client
 * that never reads cannot hold the caller. */
static void reply(int fd, const char *text, size_t len)
{
    int64_t until = mono_ms() + 2000;
    while (len) {
        ssize_t w = send(fd, text, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            text += w;
            len -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        int64_t left = until - mono_ms();
        if (w < 0 && errno == EAGAIN && left > 0) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            poll(&p, 1, (int)left);
            continue;
        }
        return;
    }
}

static void replyf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void replyf(int fd, const char *fmt, ...)
{
    char text[1400];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n > 0)
        reply(fd, text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
}

/* An error answer before acceptance: s3daemon clients get the bare text
 * (no newline, as s3daemon wrote it), haul send gets "ERROR text". */
static void reply_error(int fd, bool tcp, const char *msg)
{
    char text[1200];
    snprintf(text, sizeof text, "%s", msg);
    one_line(text);
    if (tcp)
        replyf(fd, "Error: %s", text);
    else
        replyf(fd, "ERROR %s\n", text);
}

/* ---- the per-object log and the failed-requests log ---- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f); /* UTF-8 passes through; keys were checked for control bytes */
    }
    fputc('"', f);
}

static void object_log(struct server *s, const struct job *j, double start, double seconds,
                       uint64_t bytes, const char *error)
{
    char now[32];
    iso_now(now, sizeof now);
    pthread_mutex_lock(&s->log_lock);
    FILE *f = s->log ? s->log : stderr;
    if (s->cfg->log_json) {
        fprintf(f, "{\"time\":\"%s\",\"id\":%" PRIu64 ",\"start\":%.3f,\"seconds\":%.3f,\"bytes\":%" PRIu64 ",\"bucket\":",
                now, j->req.id, start, seconds, bytes);
        json_str(f, j->req.bucket);
        fputs(",\"key\":", f);
        json_str(f, j->req.key);
        fputs(",\"file\":", f);
        json_str(f, j->req.path);
        fprintf(f, ",\"status\":\"%s\",\"error\":", error ? "failed" : "ok");
        if (error)
            json_str(f, error);
        else
            fputs("null", f);
        fputs("}\n", f);
    } else {
        fprintf(f, "%s start=%.3f seconds=%.3f bytes=%" PRIu64 " s3://%s/%s %s%s\n", now, start, seconds,
                bytes, j->req.bucket, j->req.key, error ? "failed: " : "ok", error ? error : "");
    }
    fflush(f);
    if (error && s->failed_log) {
        char path[DAEMON_PATH_MAX + 1];
        snprintf(path, sizeof path, "%s", j->req.path);
        one_line(path); /* a journal from an older daemon may hold anything */
        fprintf(s->failed_log, "%s id=%" PRIu64 " uid=%" PRIu32 " %s s3://%s/%s: %s\n", now, j->req.id,
                j->req.uid, path, j->req.bucket, j->req.key, error);
        fflush(s->failed_log);
    }
    pthread_mutex_unlock(&s->log_lock);
}

/* Opens a log for appending, created 0600: it lists every user's paths and
 * keys.  flags adds O_NOFOLLOW for a file in the state directory. */
static FILE *log_file_open(const char *path, int flags, haul_error *err)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | flags, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "a") : NULL;
    if (!f) {
        err_errno(err, errno, "log %s", path);
        if (fd >= 0)
            close(fd);
    }
    return f;
}

static int log_open(struct server *s, haul_error *err)
{
    if (!s->cfg->log_path)
        return 0;
    FILE *f = log_file_open(s->cfg->log_path, 0, err);
    if (!f)
        return -(err->code ? err->code : HAUL_EIO);
    pthread_mutex_lock(&s->log_lock);
    FILE *old = s->log;
    s->log = f;
    pthread_mutex_unlock(&s->log_lock);
    if (old)
        fclose(old);
    return 0;
}

/* ---- uploads ---- */

/* ---- file checks, each on a task (task.c) with a deadline ---- */

enum check_kind {
    CHECK_TCP,    /* open the path an s3daemon client named, as the daemon */
    CHECK_UNIX,   /* check the descriptor passed, and that the path names it */
    CHECK_REPLAY, /* reopen a journaled request's path after a restart */
};

/* One check: its own copies of everything it reads, since an abandoned
 * one outlives its connection (and maybe the server). */
struct check {
    struct daemon_task task; /* first */
    enum check_kind kind;
    char *path;
    int fd;          /* in: the descriptor passed (CHECK_UNIX); out: the file, -1 on failure */
    uid_t uid;       /* CHECK_REPLAY: who submitted it */
    char via;        /* CHECK_REPLAY: 'u' or 't' */
    uint64_t dev, ino; /* CHECK_REPLAY: the file accepted */
    struct daemon_open_opts open;
    char *deny[DAEMON_DENY_MAX];
    struct stat st;  /* out */
    haul_error err;  /* out */
};

static void check_free(struct check *k)
{
    if (!k)
        return;
    if (k->fd >= 0)
        close(k->fd);
    free(k->path);
    for (int i = 0; i < k->open.n_deny; i++)
        free(k->deny[i]);
    free(k);
}

static void check_drop(struct daemon_task *t)
{
    check_free((struct check *)t);
}

/* A Unix-socket request: the descriptor passed is a readable regular
 * file (not on FUSE unless allowed) and the path names that very file
 * without any symlink (a replay reopens it by that path).  A path the
 * daemon may not search is taken unverified: the descriptor proves access,
 * and a replay of such a path fails its own checks. */
static void check_unix(struct check *k)
{
    if (daemon_fd_check(k->fd, k->open.allow_fuse, &k->st, &k->err) < 0)
        goto refused;
    struct stat named;
    struct daemon_open_opts o = {.allow_fuse = k->open.allow_fuse, .path_only = true};
    haul_error e = {0};
    int pfd = daemon_file_open(k->path, &o, &named, &e);
    if (pfd < 0 && errno == EACCES)
        return;
    if (pfd >= 0)
        close(pfd);
    if (pfd < 0)
        err_set(&k->err, HAUL_EUSAGE, "the path given does not name the descriptor passed: %s", e.msg);
    else if (named.st_dev != k->st.st_dev || named.st_ino != k->st.st_ino)
        err_set(&k->err, HAUL_EUSAGE, "%s names another file than the descriptor passed: refused", k->path);
    else
        return;
refused:
    close(k->fd);
    k->fd = -1;
}

/* After a restart the descriptor is gone: the path is opened again, never
 * following a symlink, and, for a Unix-socket request, as its submitter
 * (their uid, groups and so directory search rights and ACLs) when the
 * daemon runs as root; a daemon that cannot take another identity checks
 * the submitter's mode bits on every component instead.  Either way it
 * must be the very file accepted (same device and inode). */
static void check_replay(struct check *k)
{
    struct daemon_perm perm;
    k->open.follow = k->via == 't'; /* TCP: as the daemon's own open did */
    if (k->via == 'u' && k->uid != 0 && k->uid != geteuid()) {
        if (daemon_perm_load(k->uid, &perm, &k->err) < 0)
            return;
        if (geteuid() == 0) {
            if (daemon_perm_assume(&perm, &k->err) < 0)
                return;
        } else {
            k->open.perm = &perm;
        }
    }
    k->fd = daemon_file_open(k->path, &k->open, &k->st, &k->err);
    k->open.perm = NULL;
    if (k->fd < 0) {
        k->fd = -1;
        if (k->via == 'u')
            err_prefix(&k->err, "file replaced or unreadable after restart (as uid %u who submitted it): ",
                       (unsigned)k->uid);
        else
            err_prefix(&k->err, "file replaced or unreadable after restart: ");
        return;
    }
    if ((uint64_t)k->st.st_dev != k->dev || (uint64_t)k->st.st_ino != k->ino) {
        err_set(&k->err, HAUL_EIO, "%s: file replaced or unreadable after restart (not the file that was submitted)",
                k->path);
        close(k->fd);
        k->fd = -1;
    }
}

static void check_run(struct daemon_task *t)
{
    struct check *k = (struct check *)t;
    if (k->kind == CHECK_UNIX) {
        check_unix(k);
    } else if (k->kind == CHECK_REPLAY) {
        check_replay(k);
    } else {
        k->fd = daemon_file_open(k->path, &k->open, &k->st, &k->err);
        if (k->fd < 0)
            k->fd = -1;
    }
}

/* A check of path (copied), with the daemon's policy: FUSE, and for TCP
 * requests the files it never serves. */
static struct check *check_new(const struct server *s, enum check_kind kind, const char *path, bool tcp)
{
    struct check *k = calloc(1, sizeof *k);
    if (!k || !(k->path = strdup(path))) {
        free(k);
        return NULL;
    }
    k->task.run = check_run;
    k->task.drop = check_drop;
    k->kind = kind;
    k->fd = -1;
    k->open.follow = true;
    k->open.allow_fuse = s->cfg->allow_fuse;
    if (tcp) {
        k->open.deny_proc = true;
        for (int i = 0; i < s->cfg->n_deny && i < DAEMON_DENY_MAX; i++)
            if (s->cfg->deny[i] && (k->deny[k->open.n_deny] = strdup(s->cfg->deny[i])))
                k->open.n_deny++;
        k->open.deny = (const char *const *)k->deny;
    }
    return k;
}

/* A request replayed after a restart: its file opened again on a task,
 * waited for at most --read-timeout (a hung filesystem holds that task,
 * not this worker). */
static int file_reopen(struct server *s, const struct daemon_req *r, int *out, haul_error *err)
{
    if (!daemon_path_valid(r->path, strlen(r->path)))
        return err_set(err, HAUL_EUSAGE, "journaled path with a control character: not uploaded");
    struct check *k = check_new(s, CHECK_REPLAY, r->path, r->via == 't');
    if (!k)
        return err_set(err, HAUL_ENOMEM, "out of memory");
    k->uid = (uid_t)r->uid;
    k->via = r->via;
    k->dev = r->dev;
    k->ino = r->ino;
    if (daemon_task_start(s->hub, &k->task, err) < 0) {
        check_free(k);
        return -HAUL_EIO;
    }
    if (!daemon_task_wait(&k->task, s->cfg->read_timeout_ms))
        return err_set(err, HAUL_EIO, "%s: not opened within %d s after restart (a hung filesystem?): not uploaded",
                       r->path, s->cfg->read_timeout_ms / 1000);
    int rc = k->fd >= 0 ? 0 : err_copy(err, &k->err);
    *out = k->fd;
    k->fd = -1;
    check_free(k);
    return rc;
}

/* What another attempt may fix: the network, the server's 5xx and 429,
 * garbled answers, checksum mismatches; not a missing bucket, refused
 * credentials or an unreadable file. */
static bool retryable(const haul_error *err)
{
    if (err->code == HAUL_ES3)
        return err->http_status == 0 || err->http_status >= 500 || err->http_status == 429;
    return err->code == HAUL_ENET || err->code == HAUL_EPROTO || err->code == HAUL_EINTEGRITY;
}

/* Sleeps before retry attempt n (0.25 s doubling, at most 8 s, with
 * jitter); false when the daemon started stopping meanwhile. */
static bool backoff(struct server *s, int n)
{
    double delay = 0.25 * (double)(1 << (n < 5 ? n : 5));
    delay = (delay > 8 ? 8 : delay) * (0.5 + (double)(rand() % 1000) / 2000.0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long ns = until.tv_nsec + (long)((delay - (double)(long)delay) * 1e9);
    until.tv_sec += (time_t)delay + ns / 1000000000;
    until.tv_nsec = ns % 1000000000;
    pthread_mutex_lock(&s->lock);
    while (!s->stopping && pthread_cond_timedwait(&s->cond, &s->lock, &until) != ETIMEDOUT) {
    }
    bool go_on = !s->stopping;
    pthread_mutex_unlock(&s->lock);
    return go_on;
}

/* The counts of uid's requests (the shared last slot for a uid without
 * its own: one only seen in the journal).  Called with s->lock held. */
static struct uid_count *count_of(struct server *s, uid_t uid)
{
    for (int i = 0; i < s->n_counts; i++)
        if (s->counts[i].uid == uid)
            return &s->counts[i];
    return &s->counts[UIDS_KEPT - 1];
}

/* Gives uid a slot of its own (at start: the peers that may connect). */
static void count_add(struct server *s, uid_t uid)
{
    if (count_of(s, uid) == &s->counts[UIDS_KEPT - 1] && s->n_counts < UIDS_KEPT - 1)
        s->counts[s->n_counts++].uid = uid;
}

static void job_free(struct job *j)
{
    if (j->file_fd >= 0)
        close(j->file_fd);
    if (j->held)
        atomic_fetch_sub(j->held, 1);
    if (j->reply_fd >= 0)
        close(j->reply_fd);
    daemon_req_release(&j->req);
    free(j);
}

static void job_run(struct server *s, struct job *j)
{
    double start = wall_s(), t0 = mono_s();
    haul_error err = {0};
    uint64_t bytes = 0;
    bool left = false; /* stays in the journal for the next start */
    int rc = j->file_fd >= 0 ? 0 : file_reopen(s, &j->req, &j->file_fd, &err);
    char source_id[128];
    /* Names the multipart resume journal: the request id keeps two requests
     * for the same file and key apart, and stays the same after a restart. */
    snprintf(source_id, sizeof source_id, "haul-daemon:%" PRIu64 ":%" PRIu64 ":%" PRIu64, j->req.id, j->req.dev,
             j->req.ino);
    for (int attempt = 0; rc == 0; attempt++) {
        err_clear(&err);
        if (lseek(j->file_fd, 0, SEEK_SET) < 0) {
            rc = err_errno(&err, errno, "%s", j->req.path);
            break;
        }
        struct xfer_opts xo = s->cfg->xfer;
        xo.cancel = &s->cancel;
        xo.state_dir = s->cfg->state_dir; /* a multipart upload cut by a kill resumes */
        xo.source_id = source_id;
        struct xfer_result res;
        rc = xfer_upload_fd(s->client, j->file_fd, j->req.bucket, j->req.key, &xo, &res, &err);
        if (rc == 0) {
            bytes = res.bytes;
            break;
        }
        if (err.code == HAUL_ECANCELED || atomic_load(&s->cancel)) {
            left = true;
            break;
        }
        if (attempt >= s->cfg->max_retries || !retryable(&err))
            break;
        log_info("s3://%s/%s: %s; retry %d of %d", j->req.bucket, j->req.key, err.msg, attempt + 1,
                 s->cfg->max_retries);
        if (!backoff(s, attempt)) {
            left = true;
            break;
        }
        rc = 0;
    }
    double seconds = mono_s() - t0;
    char msg[1100];
    snprintf(msg, sizeof msg, "%s", err.msg[0] ? err.msg : haul_code_name(err.code));
    one_line(msg);
    if (left) {
        if (j->reply_fd >= 0)
            replyf(j->reply_fd, j->tcp ? "Error: daemon stopping; request %" PRIu64 " stays in its journal and is uploaded on the next start"
                                       : "FAILED daemon stopping; request %" PRIu64 " stays in its journal and is uploaded on the next start\n",
                   j->req.id);
        pthread_mutex_lock(&s->lock);
        s->in_flight--;
        count_of(s, (uid_t)j->req.uid)->in_flight--;
        pthread_mutex_unlock(&s->lock);
        return;
    }
    haul_error jerr = {0};
    if (daemon_journal_finish(s->journal, j->req.id, rc == 0, &jerr) < 0)
        log_error("%s", jerr.msg);
    object_log(s, j, start, seconds, rc == 0 ? bytes : j->req.size, rc == 0 ? NULL : msg);
    pthread_mutex_lock(&s->lock);
    s->in_flight--;
    struct uid_count *uc = count_of(s, (uid_t)j->req.uid);
    uc->in_flight--;
    if (rc == 0) {
        s->done++;
        uc->done++;
    } else {
        s->failed++;
        uc->failed++;
        s->failures_uid[s->failures_next] = (uid_t)j->req.uid;
        char now[32];
        iso_now(now, sizeof now);
        snprintf(s->failures[s->failures_next], sizeof s->failures[0], "%s id=%" PRIu64 " s3://%s/%s %s: %s",
                 now, j->req.id, j->req.bucket, j->req.key, j->req.path, msg);
        one_line(s->failures[s->failures_next]);
        s->failures_next = (s->failures_next + 1) % FAILURES_KEPT;
        if (s->failures_n < FAILURES_KEPT)
            s->failures_n++;
    }
    pthread_mutex_unlock(&s->lock);
    if (j->reply_fd >= 0) {
        if (j->tcp)
            rc == 0 ? replyf(j->reply_fd, "Success") : replyf(j->reply_fd, "Error: %s", msg);
        else
            rc == 0 ? replyf(j->reply_fd, "OK\n") : replyf(j->reply_fd, "FAILED %s\n", msg);
    }
}

static void *worker_main(void *arg)
{
    struct server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (!s->stopping && (s->paused || !s->head))
            pthread_cond_wait(&s->cond, &s->lock);
        if (s->stopping) {
            pthread_mutex_unlock(&s->lock);
            return NULL;
        }
        struct job *j = s->head;
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
        s->queued--;
        s->in_flight++;
        struct uid_count *uc = count_of(s, (uid_t)j->req.uid);
        uc->queued--;
        uc->in_flight++;
        pthread_mutex_unlock(&s->lock);
        bool waited = j->reply_fd >= 0, tcp = j->tcp;
        job_run(s, j);
        job_free(j);
        if (waited)
            atomic_fetch_sub(&s->waiting[tcp], 1);
        wake(s);
    }
}

static void job_push(struct server *s, struct job *j)
{
    pthread_mutex_lock(&s->lock);
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    s->queued++;
    count_of(s, (uid_t)j->req.uid)->queued++;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* The journal replay: requests a previous run accepted but did not finish. */
static int replayed(const struct daemon_req *r, void *ctx)
{
    struct server *s = ctx;
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return -1;
    j->req = *r;
    j->req.key = strdup(r->key);
    j->req.path = strdup(r->path);
    j->file_fd = j->reply_fd = -1;
    if (!j->req.key || !j->req.path) {
        job_free(j);
        return -1;
    }
    job_push(s, j);
    return 0;
}

/* ---- accepting requests ---- */

static void conn_close(struct server *s, int i)
{
    struct conn *c = s->conns[i];
    if (c->check && !daemon_task_abandon(&c->check->task))
        check_free(c->check); /* it had finished: ours to free */
    if (c->fd >= 0)
        close(c->fd);
    if (c->passed_fd >= 0)
        close(c->passed_fd);
    daemon_req_release(&c->req);
    s->n_open[c->tcp]--;
    free(c->buf);
    free(c);
    s->conns[i] = s->conns[--s->n_conns];
}

/* Journals a request for the open regular file fd (taken); it is answered
 * and queued by commit_accepted once the journal is synced.  The
 * connection goes with the job (c->fd becomes -1). */
static void request_accept(struct server *s, struct conn *c, struct daemon_req *r, int fd, bool wait)
{
    haul_error err = {0};
    pthread_mutex_lock(&s->lock);
    bool full = s->queued >= s->cfg->max_queue, stopping = s->stopping;
    pthread_mutex_unlock(&s->lock);
    struct job *j = NULL;
    if (full || stopping) {
        err_set(&err, HAUL_EIO, stopping ? "daemon is stopping" : "queue full (%d requests, see --max-queue): try later",
                s->cfg->max_queue);
    } else if (atomic_load(&s->held_fds) >= s->fd_budget) {
        err_set(&err, HAUL_EIO, "too many descriptors passed: accepted requests hold %d, the daemon's budget under its "
                "descriptor limit of %lu (see haul daemon status): try later", s->fd_budget, s->fd_limit);
    } else if (!(j = calloc(1, sizeof *j))) {
        err_set(&err, HAUL_ENOMEM, "out of memory");
    } else if (daemon_journal_append(s->journal, r, &err) == 0) {
        j->req = *r;
        memset(r, 0, sizeof *r); /* the job owns key and path now */
        j->file_fd = fd;
        j->held = &s->held_fds;
        atomic_fetch_add(&s->held_fds, 1);
        j->reply_fd = c->fd;
        j->tcp = c->tcp;
        j->wait = wait;
        c->fd = -1;
        atomic_fetch_add(&s->waiting[j->tcp], 1); /* holds a client slot until answered */
        j->next = s->unsynced;
        s->unsynced = j;
        return;
    }
    free(j);
    close(fd);
    reply_error(c->fd, c->tcp, err.msg);
}

/* One fsync for every request accepted in this turn (group commit), then
 * each client hears "QUEUED" and its job goes to the workers; those that do
 * not wait are closed. */
static void commit_accepted(struct server *s)
{
    if (!s->unsynced)
        return;
    haul_error err = {0};
    int rc = daemon_journal_sync(s->journal, &err);
    struct job *list = NULL;
    while (s->unsynced) { /* back into acceptance order */
        struct job *j = s->unsynced;
        s->unsynced = j->next;
        j->next = list;
        list = j;
    }
    while (list) {
        struct job *j = list;
        list = j->next;
        j->next = NULL;
        if (rc < 0) {
            /* Not durable: refused (a replay may still upload it, at least once). */
            haul_error jerr = {0};
            daemon_journal_finish(s->journal, j->req.id, false, &jerr);
            bool tcp = j->tcp;
            reply_error(j->reply_fd, j->tcp, err.msg);
            job_free(j);
            atomic_fetch_sub(&s->waiting[tcp], 1);
            continue;
        }
        if (!j->tcp)
            replyf(j->reply_fd, "QUEUED %" PRIu64 "\n", j->req.id);
        if (!j->wait) {
            close(j->reply_fd);
            j->reply_fd = -1;
            atomic_fetch_sub(&s->waiting[j->tcp], 1);
        }
        job_push(s, j);
    }
}

static void req_fill(struct daemon_req *r, const struct stat *st)
{
    r->dev = (uint64_t)st->st_dev;
    r->ino = (uint64_t)st->st_ino;
    r->size = (uint64_t)st->st_size;
    r->mtime_sec = (int64_t)st->st_mtim.tv_sec;
    r->mtime_nsec = st->st_mtim.tv_nsec;
}

/* Hands the file of c's request (path; fd passed, or -1) to a check on a
 * task: the connection waits, unpolled, until check_finish or its
 * deadline.  Returns false when answered at once (refused). */
static bool check_begin(struct server *s, struct conn *c, enum check_kind kind, int fd)
{
    haul_error err = {0};
    struct check *k = check_new(s, kind, c->req.path, c->tcp);
    if (!k) {
        if (fd >= 0)
            close(fd);
        reply_error(c->fd, c->tcp, "out of memory");
        return false;
    }
    k->fd = fd;
    if (daemon_task_start(s->hub, &k->task, &err) < 0) {
        check_free(k);
        reply_error(c->fd, c->tcp, err.msg);
        return false;
    }
    c->check = k;
    c->deadline_ms = mono_ms() + s->cfg->read_timeout_ms;
    return true;
}

/* The check of c's file finished: the request is accepted with the file
 * it opened, or refused with its reason. */
static void check_finish(struct server *s, struct conn *c)
{
    struct check *k = c->check;
    c->check = NULL;
    if (k->fd < 0) {
        reply_error(c->fd, c->tcp, k->err.msg);
    } else {
        req_fill(&c->req, &k->st);
        request_accept(s, c, &c->req, k->fd, c->wait);
        k->fd = -1;
    }
    check_free(k);
    daemon_req_release(&c->req);
}

/* Returns true when a check of the file started. */
static bool tcp_request(struct server *s, struct conn *c, const char *line, size_t len)
{
    haul_error err = {0};
    struct daemon_line l;
    if (daemon_line_parse(line, len, &l, &err) < 0) {
        reply_error(c->fd, true, err.msg);
        return false;
    }
    c->req = (struct daemon_req){.uid = (uint32_t)geteuid(), .via = 't', .key = l.key, .path = l.path};
    memcpy(c->req.bucket, l.bucket, sizeof c->req.bucket);
    c->wait = true;
    return check_begin(s, c, CHECK_TCP, -1);
}

static bool is_admin(const struct server *s, uid_t uid)
{
    for (int i = 0; i < s->cfg->n_admins; i++)
        if (s->cfg->admins[i] == uid)
            return true;
    return uid == geteuid();
}

/* The daemon's uid and --admin-user see everything; any other peer its own
 * requests and failures only (they name paths, buckets and keys). */
static void status_reply(struct server *s, int fd, int last, uid_t peer)
{
    char *text = malloc(FAILURES_KEPT * 660 + 512);
    if (!text)
        return;
    bool all = is_admin(s, peer);
    int running, stuck;
    daemon_hub_counts(s->hub, &running, &stuck);
    pthread_mutex_lock(&s->lock);
    struct uid_count mine = {.queued = s->queued, .in_flight = s->in_flight, .done = s->done, .failed = s->failed};
    if (!all) {
        const struct uid_count *own = count_of(s, peer);
        memset(&mine, 0, sizeof mine);
        if (own != &s->counts[UIDS_KEPT - 1]) /* the shared slot is not theirs */
            mine = *own;
    }
    const struct uid_count *c = &mine;
    /* The descriptor counts are the daemon's, like clients: no paths. */
    size_t n = (size_t)sprintf(text, "STATUS queued=%d in_flight=%d done=%" PRIu64 " failed=%" PRIu64 " paused=%d clients=%d "
                               "tcp_clients=%d checks=%d stuck=%d held_fds=%d fd_budget=%d fd_limit=%lu scope=%s%u\n",
                               c->queued, c->in_flight, c->done, c->failed, s->paused ? 1 : 0,
                               s->n_open[0] + atomic_load(&s->waiting[0]), s->n_open[1] + atomic_load(&s->waiting[1]),
                               running, stuck, atomic_load(&s->held_fds), s->fd_budget, s->fd_limit,
                               all ? "all:" : "uid:", (unsigned)peer);
    for (int i = 0, shown = 0; shown < last && i < s->failures_n; i++) {
        int k = (s->failures_next - 1 - i + FAILURES_KEPT) % FAILURES_KEPT;
        if (all || s->failures_uid[k] == peer) {
            n += (size_t)sprintf(text + n, "FAILURE %s\n", s->failures[k]);
            shown++;
        }
    }
    pthread_mutex_unlock(&s->lock);
    n += (size_t)sprintf(text + n, "END\n");
    reply(fd, text, n);
    free(text);
}

/* Returns true when a check of the file started. */
static bool unix_request(struct server *s, struct conn *c, const char *line, size_t len)
{
    haul_error err = {0};
    struct daemon_msg m;
    if (daemon_msg_parse(line, len, &m, &err) < 0) {
        reply_error(c->fd, false, err.msg);
        return false;
    }
    if (m.verb == DAEMON_STATUS) {
        status_reply(s, c->fd, m.last, c->uid);
        return false;
    }
    if (m.verb == DAEMON_PAUSE || m.verb == DAEMON_RESUME) {
        const char *what = m.verb == DAEMON_PAUSE ? "pause" : "resume";
        if (!is_admin(s, c->uid)) {
            log_warn("refused to %s uploads for uid %u (not the daemon's user nor --admin-user)", what, (unsigned)c->uid);
            replyf(c->fd, "ERROR uid %u may not %s this daemon (only its own user and --admin-user may)\n",
                   (unsigned)c->uid, what);
            return false;
        }
        pthread_mutex_lock(&s->lock);
        s->paused = m.verb == DAEMON_PAUSE;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        log_warn("uploads %s by uid %u", m.verb == DAEMON_PAUSE ? "paused" : "resumed", (unsigned)c->uid);
        replyf(c->fd, "OK\n");
        return false;
    }
    if (c->passed_fd < 0) {
        reply_error(c->fd, false, "no file descriptor came with the request");
        daemon_msg_release(&m);
        return false;
    }
    c->req = (struct daemon_req){.uid = (uint32_t)c->uid, .via = 'u', .key = m.key, .path = m.path};
    memcpy(c->req.bucket, m.bucket, sizeof c->req.bucket);
    c->wait = m.wait;
    int fd = c->passed_fd;
    c->passed_fd = -1;
    return check_begin(s, c, CHECK_UNIX, fd);
}

/* Reads what the client sent; returns true when the connection is done
 * (answered or gone) and should be closed. */
static bool conn_read(struct server *s, struct conn *c)
{
    if (c->draining) {
        char sink[16384];
        ssize_t r = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT);
        return r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
    }
    char *at = c->buf + c->len;
    size_t room = c->cap - c->len;
    ssize_t n;
    if (c->tcp) {
        n = recv(c->fd, at, room, MSG_DONTWAIT);
    } else {
        union {
            char buf[CMSG_SPACE(8 * sizeof(int))];
            struct cmsghdr align;
        } control;
        struct iovec iov = {at, room};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                            .msg_controllen = sizeof control.buf};
        n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        for (struct cmsghdr *cm = n >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t k = 0; k < nfd; k++) {
                int fd;
                memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof fd);
                if (c->passed_fd < 0)
                    c->passed_fd = fd;
                else
                    close(fd); /* one file per request: extras are dropped */
            }
        }
        if (n >= 0 && (mh.msg_flags & MSG_CTRUNC)) {
            reply_error(c->fd, false, "too many descriptors passed");
            return true;
        }
    }
    if (n < 0)
        return !(errno == EAGAIN || errno == EINTR);
    if (n == 0) {
        /* Closed (or half-closed) before a whole line: answer if anyone listens. */
        if (c->len)
            reply_error(c->fd, c->tcp, "request ended without a newline");
        return true;
    }
    c->len += (size_t)n;
    char *nl = memchr(at, '\n', (size_t)n);
    if (!nl) {
        if (c->len < c->cap)
            return false;
        char msg[80];
        snprintf(msg, sizeof msg, "request line longer than %zu bytes", c->cap - 1);
        reply_error(c->fd, c->tcp, msg);
        /* Closing with unread input would reset the connection and lose the
         * answer: drop the rest for a moment first (a lingering close). */
        shutdown(c->fd, SHUT_WR);
        c->draining = true;
        c->deadline_ms = mono_ms() + 2000;
        return false;
    }
    size_t len = (size_t)(nl - c->buf);
    if (c->tcp ? tcp_request(s, c, c->buf, len) : unix_request(s, c, c->buf, len))
        return false; /* its file is being checked */
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_WR);
    return true;
}

/* One turn for connection c: its check finished or timed out, input
 * arrived, or its deadline passed.  Returns true when it is done. */
static bool conn_step(struct server *s, struct conn *c, short revents, int64_t now)
{
    if (c->check) {
        if (daemon_task_done(&c->check->task) || (c->deadline_ms <= now && !daemon_task_abandon(&c->check->task))) {
            check_finish(s, c);
        } else if (c->deadline_ms <= now) {
            /* Abandoned: it frees itself when (if ever) its thread returns. */
            c->check = NULL;
            char msg[DAEMON_PATH_MAX + 200];
            snprintf(msg, sizeof msg, "%s: not opened within %d s (a hung filesystem?): refused", c->req.path,
                     s->cfg->read_timeout_ms / 1000);
            log_warn("%s", msg);
            reply_error(c->fd, c->tcp, msg);
        } else {
            return false;
        }
        if (c->fd >= 0)
            shutdown(c->fd, SHUT_WR);
        return true;
    }
    if (revents & (POLLIN | POLLHUP | POLLERR))
        return conn_read(s, c);
    if (c->deadline_ms <= now && c->draining)
        return true;
    if (c->deadline_ms <= now) {
        char msg[80];
        snprintf(msg, sizeof msg, "no request line within %d ms", s->cfg->read_timeout_ms);
        reply_error(c->fd, c->tcp, msg);
        return true;
    }
    return false;
}

static bool uid_allowed(const struct daemon_config *cfg, uid_t uid)
{
    for (int i = 0; i < cfg->n_allow; i++)
        if (cfg->allow[i] == uid)
            return true;
    return false;
}

/* accept() ran out of descriptors.  The listener stays readable, so
 * polling it again at once would spin: the spare descriptor is given up to
 * accept waiting clients and tell them so (rather than leave them in the
 * backlog), then the listeners rest for ACCEPT_PAUSE_MS. */
static void accept_starved(struct server *s, int lfd, bool tcp)
{
    int64_t now = mono_ms();
    int refused = 0;
    for (int k = 0; k < ACCEPTS_PER_TURN; k++) {
        if (s->spare_fd < 0)
            s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (s->spare_fd < 0)
            break;
        close(s->spare_fd);
        s->spare_fd = -1;
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        reply_error(fd, tcp, "daemon out of file descriptors: try later");
        close(fd);
        refused++;
    }
    if (s->spare_fd < 0)
        s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    s->accept_resume_ms = now + ACCEPT_PAUSE_MS;
    if (now - s->starved_logged_ms >= 10000) {
        s->starved_logged_ms = now;
        log_warn("out of file descriptors (limit %lu, %d held by accepted requests, %d connections): refused %d "
                 "clients, not accepting for %d ms", s->fd_limit, atomic_load(&s->held_fds), s->n_conns, refused,
                 ACCEPT_PAUSE_MS);
    }
}

/* Whether a new connection fits its transport's budget: TCP clients (any
 * local user) have their own, so they cannot crowd out haul send. */
static bool slot_free(struct server *s, bool tcp)
{
    int max = tcp ? s->cfg->max_tcp_clients : s->cfg->max_clients;
    return s->n_open[tcp] + atomic_load(&s->waiting[tcp]) < max;
}

static void accept_from(struct server *s, int lfd, bool tcp)
{
    for (int k = 0; k < ACCEPTS_PER_TURN; k++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM))
            accept_starved(s, lfd, tcp);
        if (fd < 0)
            return;
        uid_t uid = geteuid();
        if (!tcp) {
            struct ucred cred;
            socklen_t len = sizeof cred;
            if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                close(fd);
                continue;
            }
            uid = cred.uid;
            if (!uid_allowed(s->cfg, uid)) {
                char msg[200];
                snprintf(msg, sizeof msg, "uid %u is not allowed to use this daemon (see haul daemon --allow-user)",
                         (unsigned)uid);
                log_warn("refused a connection from uid %u (not in --allow-user)", (unsigned)uid);
                reply_error(fd, false, msg);
                close(fd);
                continue;
            }
        }
        /* Over --max-clients: accepted and told so at once, so that a client
         * never hangs in the backlog without an answer. */
        if (!slot_free(s, tcp)) {
            char msg[160];
            snprintf(msg, sizeof msg, "daemon busy: %d clients connected (--max-%sclients), try again",
                     tcp ? s->cfg->max_tcp_clients : s->cfg->max_clients, tcp ? "tcp-" : "");
            reply_error(fd, tcp, msg);
            close(fd);
            continue;
        }
        struct conn *c = calloc(1, sizeof *c);
        size_t cap = tcp ? DAEMON_TCP_LINE_MAX : DAEMON_UNIX_LINE_MAX;
        if (!c || !(c->buf = malloc(cap))) {
            free(c);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->tcp = tcp;
        s->n_open[tcp]++;
        c->uid = uid;
        c->passed_fd = -1;
        c->cap = cap;
        c->deadline_ms = mono_ms() + s->cfg->read_timeout_ms;
        s->conns[s->n_conns++] = c;
    }
}

/* ---- listeners ---- */

static int unix_listen(struct server *s, haul_error *err)
{
    const char *path = s->cfg->socket_path;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return err_set(err, HAUL_EUSAGE, "socket path %s is too long (at most %zu bytes)", path,
                       sizeof sa.sun_path - 1);
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    char dir[sizeof sa.sun_path];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (path_mkdirs(dir, s->cfg->socket_gid != (gid_t)-1 ? 0750 : 0700) < 0)
            return err_errno(err, errno, "socket directory %s", dir);
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return err_set(err, HAUL_EUSAGE, "%s exists and is not a socket", path);
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (probe >= 0)
            close(probe);
        if (live)
            return err_set(err, HAUL_EIO, "a daemon is already listening on %s", path);
        unlink(path); /* stale, from a daemon that was killed */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return err_errno(err, errno, "socket");
    mode_t old = umask(0177); /* created 0600: no window where others may connect */
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc < 0) {
        int e = errno;
        close(fd);
        return err_errno(err, e, "bind %s", path);
    }
    s->bound = true;
    if (s->cfg->socket_gid != (gid_t)-1 &&
        (chown(path, (uid_t)-1, s->cfg->socket_gid) < 0 || chmod(path, 0660) < 0)) {
        int e = errno;
        close(fd);
        return err_errno(err, e, "%s: giving the socket to group %u", path, (unsigned)s->cfg->socket_gid);
    }
    if (listen(fd, 1024) < 0) {
        int e = errno;
        close(fd);
        return err_errno(err, e, "listen %s", path);
    }
    s->unix_fd = fd;
    return 0;
}

static bool addr_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

/* The s3daemon listener, loopback only: its requests carry no identity, so
 * anyone who can connect can make the daemon read any file it can. */
static int tcp_listen(struct server *s, haul_error *err)
{
    const char *host = s->cfg->tcp_host;
    char port[16];
    snprintf(port, sizeof port, "%d", s->cfg->tcp_port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        return err_set(err, HAUL_EUSAGE, "S3DAEMON_HOST '%s': %s", host, gai_strerror(rc));
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (!addr_loopback(a->ai_addr)) {
            freeaddrinfo(res);
            return err_set(err, HAUL_EUSAGE,
                           "S3DAEMON_HOST '%s' is not a loopback address: the TCP listener takes unauthenticated "
                           "requests, so haul daemon binds it to loopback only (use the Unix socket and haul send "
                           "across users)", host);
        }
    int last_errno = 0;
    for (struct addrinfo *a = res; a && s->n_tcp < TCP_LISTEN_MAX; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        int one = 1;
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (a->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
            last_errno = errno;
            close(fd);
            continue;
        }
        s->tcp_fd[s->n_tcp++] = fd;
    }
    freeaddrinfo(res);
    if (s->n_tcp == 0)
        return err_errno(err, last_errno, "listen on %s port %s", host, port);
    return 0;
}

/* ---- the event loop ---- */

int daemon_signals_block(haul_error *err)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
    return rc ? err_errno(err, rc, "blocking signals") : 0;
}

void daemon_socket_default(const char *state_dir, char *out, size_t cap)
{
    const char *run = getenv("XDG_RUNTIME_DIR");
    if (run && *run)
        snprintf(out, cap, "%s/haul/daemon.sock", run);
    else
        snprintf(out, cap, "%s/daemon/daemon.sock", state_dir);
}

/* Returns true when the loop should end. */
static bool signal_handle(struct server *s)
{
    struct signalfd_siginfo si;
    while (read(s->sig_fd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            haul_error err = {0};
            if (log_open(s, &err) < 0)
                log_error("SIGHUP: %s", err.msg);
            continue;
        }
        pthread_mutex_lock(&s->lock);
        bool again = s->stopping;
        s->stopping = true;
        int in_flight = s->in_flight;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        if (again) {
            log_warn("second signal: canceling %d uploads in flight (they stay in the journal)", in_flight);
            atomic_store(&s->cancel, true);
        } else {
            log_warn("stopping: no new requests; waiting for %d uploads in flight (queued ones stay in the journal)",
                     in_flight);
        }
    }
    return false;
}

static int loop(struct server *s)
{
    int max = s->cfg->max_clients + s->cfg->max_tcp_clients + 8 + TCP_LISTEN_MAX;
    struct pollfd *p = calloc((size_t)max, sizeof *p);
    if (!p)
        return -1;
    bool listening = true;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        bool stopping = s->stopping;
        int in_flight = s->in_flight;
        pthread_mutex_unlock(&s->lock);
        if (stopping && listening) {
            listening = false;
            close(s->unix_fd);
            s->unix_fd = -1;
            for (int i = 0; i < s->n_tcp; i++)
                close(s->tcp_fd[i]);
            s->n_tcp = 0;
            while (s->n_conns)
                conn_close(s, s->n_conns - 1);
        }
        if (stopping && in_flight == 0)
            break;
        int n = 0;
        p[n++] = (struct pollfd){.fd = s->sig_fd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = s->wake_r, .events = POLLIN};
        int first_listener = n;
        int64_t now = mono_ms(), next = INT64_MAX;
        bool resting = listening && now < s->accept_resume_ms;
        if (resting)
            next = s->accept_resume_ms;
        if (listening && !resting) {
            p[n++] = (struct pollfd){.fd = s->unix_fd, .events = POLLIN};
            for (int i = 0; i < s->n_tcp; i++)
                p[n++] = (struct pollfd){.fd = s->tcp_fd[i], .events = POLLIN};
        }
        int first_conn = n;
        for (int i = 0; i < s->n_conns; i++) {
            p[n++] = (struct pollfd){.fd = s->conns[i]->check ? -1 : s->conns[i]->fd, .events = POLLIN};
            if (s->conns[i]->deadline_ms < next)
                next = s->conns[i]->deadline_ms;
        }
        int timeout = next == INT64_MAX ? -1 : next <= now ? 0 : (int)(next - now);
        if (poll(p, (nfds_t)n, timeout) < 0 && errno != EINTR)
            break;
        if (p[0].revents)
            signal_handle(s);
        if (p[1].revents) {
            char drain[256];
            while (read(s->wake_r, drain, sizeof drain) > 0) {
            }
        }
        /* Connections first (their indexes move as they close), then new ones. */
        now = mono_ms();
        for (int i = n - 1; i >= first_conn; i--) {
            int ci = i - first_conn;
            if (conn_step(s, s->conns[ci], p[i].revents, now))
                conn_close(s, ci);
        }
        commit_accepted(s);
        for (int i = first_listener; i < first_conn; i++)
            if (p[i].revents & POLLIN)
                accept_from(s, p[i].fd, p[i].fd != s->unix_fd);
    }
    free(p);
    return 0;
}

/* ---- start ---- */

/* Raises the soft descriptor limit to the hard one (many systems start
 * daemons at 1024) and sizes from it the budget of descriptors accepted
 * requests may hold (a --no-wait request keeps its file open until it is
 * uploaded), keeping room for what else the daemon opens: connections and
 * the descriptors they pass, S3 connections, journals and logs. */
static void fd_budget_init(struct server *s)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        rl.rlim_cur = rl.rlim_max = 1024;
    } else if (rl.rlim_cur < rl.rlim_max) {
        /* An unlimited or huge hard limit is capped by the kernel's nr_open. */
        unsigned long nr_open = 1u << 20;
        FILE *f = fopen("/proc/sys/fs/nr_open", "re");
        if (f) {
            if (fscanf(f, "%lu", &nr_open) != 1)
                nr_open = 1u << 20;
            fclose(f);
        }
        struct rlimit raised = {rl.rlim_max, rl.rlim_max};
        if (raised.rlim_cur == RLIM_INFINITY || raised.rlim_cur > nr_open)
            raised.rlim_cur = nr_open;
        if (raised.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &raised) == 0) {
            log_info("descriptor limit raised from %lu to %lu", (unsigned long)rl.rlim_cur,
                     (unsigned long)raised.rlim_cur);
            rl.rlim_cur = raised.rlim_cur;
        }
    }
    unsigned long limit = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 30) ? 1u << 30 : (unsigned long)rl.rlim_cur;
    const struct daemon_config *cfg = s->cfg;
    /* Two per connection of either transport (its socket, the file passed
     * or opened for it), what a stuck file check holds past its connection
     * (the file and its walk's directory), the S3 pool, the workers. */
    unsigned long clients = (unsigned long)cfg->max_clients + (cfg->tcp ? (unsigned long)cfg->max_tcp_clients : 0);
    unsigned long reserve = 64 + 2 * clients + 3 * (unsigned long)CHECKS_STUCK_MAX +
                            (unsigned long)cfg->s3_connections + 4 * (unsigned long)cfg->workers;
    unsigned long budget = limit > reserve + limit / 4 ? limit - reserve : limit / 4;
    s->fd_limit = limit;
    s->fd_budget = budget > INT32_MAX ? INT32_MAX : budget < 1 ? 1 : (int)budget;
    if (limit <= reserve + limit / 4)
        log_warn("descriptor limit %lu is low for --max-clients %d%s and --workers %d: accepted requests may hold %d "
                 "descriptors; more are refused until uploads finish", limit, cfg->max_clients,
                 cfg->tcp ? " (and --max-tcp-clients)" : "", cfg->workers, s->fd_budget);
}

/* The state directory holds the journal, whose records the daemon obeys on
 * its next start (a CRC guards them, not a MAC): only the daemon's user or
 * root may own it, and nobody else may write it.  lstat for the daemon's
 * own subdirectory, which must not be a symlink. */
static int dir_private_check(const char *dir, bool follow, haul_error *err)
{
    struct stat st;
    if ((follow ? stat(dir, &st) : lstat(dir, &st)) < 0)
        return err_errno(err, errno, "state directory %s", dir);
    if (!S_ISDIR(st.st_mode))
        return err_set(err, HAUL_EIO, "state directory %s is not a directory", dir);
    uid_t me = geteuid();
    if (st.st_uid != me && st.st_uid != 0)
        return err_set(err, HAUL_EIO, "state directory %s belongs to uid %u, not to this daemon's user (uid %u) or root: "
                       "whoever owns it can forge the journal the daemon obeys; use a directory of your own",
                       dir, (unsigned)st.st_uid, (unsigned)me);
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return err_set(err, HAUL_EIO, "state directory %s is writable by its group or others (mode %04o): whoever can "
                       "write it can forge the journal the daemon obeys; run chmod go-w %s",
                       dir, (unsigned)(st.st_mode & 07777), dir);
    return 0;
}

static int state_dir_open(struct server *s, haul_error *err)
{
    const struct daemon_config *cfg = s->cfg;
    snprintf(s->dir, sizeof s->dir, "%s/daemon", cfg->state_dir);
    if (path_mkdirs(s->dir, 0700) < 0)
        return err_errno(err, errno, "state directory %s", s->dir);
    int rc = dir_private_check(cfg->state_dir, true, err);
    if (rc < 0 || (rc = dir_private_check(s->dir, false, err)) < 0)
        return rc;
    /* One daemon per state directory: two would both replay one journal. */
    char path[4300];
    snprintf(path, sizeof path, "%s/lock", s->dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0)
        return errno == EWOULDBLOCK ? err_set(err, HAUL_EIO, "another haul daemon uses the state directory %s", cfg->state_dir)
                                    : err_errno(err, errno, "%s", path);
    if ((rc = log_open(s, err)) < 0)
        return rc;
    /* failed.log lists every user's paths: 0600, also when an older daemon
     * left it readable. */
    snprintf(path, sizeof path, "%s/failed.log", s->dir);
    if (!(s->failed_log = log_file_open(path, O_NOFOLLOW, err)))
        return -(err->code ? err->code : HAUL_EIO);
    if (fchmod(fileno(s->failed_log), 0600) < 0)
        return err_errno(err, errno, "%s", path);
    return 0;
}

int daemon_run(struct s3_client *c, const struct daemon_config *cfg, haul_error *err)
{
    struct server *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(err, HAUL_ENOMEM, "out of memory");
    s->cfg = cfg;
    s->client = c;
    s->sig_fd = s->wake_r = s->wake_w = s->unix_fd = s->lock_fd = s->spare_fd = -1;
    s->paused = cfg->paused;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_mutex_init(&s->log_lock, NULL);
    s3_client_cancel_set(c, &s->cancel);
    char path[4300];
    fd_budget_init(s);
    int rc = state_dir_open(s, err);
    if (rc < 0)
        goto out;
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    int pipefd[2];
    if ((s->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
        pipe2(pipefd, O_NONBLOCK | O_CLOEXEC) < 0) {
        rc = err_errno(err, errno, "signalfd/pipe");
        goto out;
    }
    s->wake_r = pipefd[0];
    s->wake_w = pipefd[1];
    s->counts[UIDS_KEPT - 1].uid = (uid_t)-1;
    count_add(s, geteuid());
    for (int i = 0; i < cfg->n_allow; i++)
        count_add(s, cfg->allow[i]);
    for (int i = 0; i < cfg->n_admins; i++)
        count_add(s, cfg->admins[i]);
    snprintf(path, sizeof path, "%s/requests.journal", s->dir);
    if (!(s->journal = daemon_journal_open(path, replayed, s, err))) {
        rc = -(err->code ? err->code : HAUL_EIO);
        goto out;
    }
    if (s->queued)
        log_warn("journal: %d requests left by the previous run are queued again", s->queued);
    if (!(s->conns = calloc((size_t)cfg->max_clients + (size_t)cfg->max_tcp_clients + 1, sizeof *s->conns)) ||
        !(s->hub = daemon_hub_new(s->wake_w, CHECKS_STUCK_MAX))) {
        rc = err_set(err, HAUL_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = unix_listen(s, err)) < 0 || (cfg->tcp && (rc = tcp_listen(s, err)) < 0))
        goto out;
    if (!(s->threads = calloc((size_t)cfg->workers, sizeof *s->threads))) {
        rc = err_set(err, HAUL_ENOMEM, "out of memory");
        goto out;
    }
    for (; s->n_threads < cfg->workers; s->n_threads++)
        if ((rc = pthread_create(&s->threads[s->n_threads], NULL, worker_main, s)) != 0) {
            rc = err_errno(err, rc, "starting worker threads");
            break;
        }
    if (rc == 0) {
        log_info("listening on %s%s%s, %d workers%s; accepted requests may hold %d descriptors (limit %lu)",
                 cfg->socket_path, cfg->tcp ? " and TCP " : "", cfg->tcp ? cfg->tcp_host : "", cfg->workers,
                 s->paused ? ", paused" : "", s->fd_budget, s->fd_limit);
        if (loop(s) < 0)
            rc = err_errno(err, errno, "event loop");
    }
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < s->n_threads; i++)
        pthread_join(s->threads[i], NULL);
out:
    /* Queued requests stay in the journal; whoever waits for one is told. */
    while (s->head) {
        struct job *j = s->head;
        s->head = j->next;
        if (j->reply_fd >= 0)
            replyf(j->reply_fd, j->tcp ? "Error: daemon stopped before uploading; request %" PRIu64 " stays in its journal"
                                       : "FAILED daemon stopped before uploading; request %" PRIu64 " stays in its journal and is uploaded on the next start\n",
                   j->req.id);
        job_free(j);
    }
    while (s->conns && s->n_conns)
        conn_close(s, s->n_conns - 1);
    if (s->unix_fd >= 0)
        close(s->unix_fd);
    for (int i = 0; i < s->n_tcp; i++)
        close(s->tcp_fd[i]);
    if (s->bound)
        unlink(cfg->socket_path);
    daemon_journal_free(s->journal);
    if (s->log)
        fclose(s->log);
    if (s->failed_log)
        fclose(s->failed_log);
    int fds[] = {s->sig_fd, s->wake_r, s->wake_w, s->lock_fd, s->spare_fd};
    for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(s->threads);
    free(s->conns);
    daemon_hub_free(s->hub); /* checks still stuck keep it until they return */
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->log_lock);
    free(s);
    return rc;
}

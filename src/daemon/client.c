/* daemon/client: the client side of the Unix-socket protocol, for haul send
 * and haul daemon status/pause/resume.  The file travels as an open
 * descriptor (SCM_RIGHTS): the daemon reads what the client could open,
 * never a path of its own choosing. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "util/err.h"

static const struct daemon_client_opts defaults = {.timeout_ms = DAEMON_CLIENT_TIMEOUT_MS};

int daemon_user_parse(const char *s, uid_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (*s && !*end && errno == 0 && v < UINT32_MAX) {
        *out = (uid_t)v;
        return 0;
    }
    const struct passwd *pw = getpwnam(s);
    if (!pw)
        return -1;
    *out = pw->pw_uid;
    return 0;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One exchange with the daemon: the connection and the deadline for the
 * daemon's answer (INT64_MAX: none). */
struct link {
    int fd;
    const char *path;
    const struct daemon_client_opts *o;
    int64_t deadline;
};

static int timed_out(const struct link *l, const char *what, haul_error *err)
{
    return err_set(err, HAUL_ENET,
                   "the daemon on %s did not %s within %d s (--timeout): it may be stopped or overloaded "
                   "(a request it has not answered may still be carried out when it resumes)",
                   l->path, what, l->o->timeout_ms / 1000 ? l->o->timeout_ms / 1000 : 1);
}

/* Connects with the deadline: a Unix socket's connect() blocks while the
 * daemon's backlog is full, and gives up after SO_SNDTIMEO. */
static int connect_to(struct link *l, haul_error *err)
{
    const char *path = l->path;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return err_set(err, HAUL_EUSAGE, "socket path %s is too long", path);
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_errno(err, errno, "socket");
    if (l->o->timeout_ms > 0) {
        struct timeval tv = {l->o->timeout_ms / 1000, (l->o->timeout_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        l->deadline = mono_ms() + l->o->timeout_ms;
    } else {
        l->deadline = INT64_MAX;
    }
    int rc;
    do
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    while (rc < 0 && errno == EINTR && mono_ms() < l->deadline);
    if (rc < 0) {
        int e = errno;
        close(fd);
        if (e == ENOENT || e == ECONNREFUSED)
            return err_set(err, HAUL_ENET, "no haul daemon listening on %s (start one with 'haul daemon', or give --socket)", path);
        if (e == EAGAIN || e == EINPROGRESS || e == EINTR)
            return timed_out(l, "accept the connection", err);
        return err_errno(err, e, "connect %s", path);
    }
    l->fd = fd;
    return 0;
}

/* Audit L4: a descriptor goes only to the daemon meant.  The process that
 * listens must run as the expected uid (SO_PEERCRED): --daemon-user, else
 * the owner of the socket file, who is trusted only if nobody else could
 * have put the socket there: its directory belongs to root, that user or
 * the sender, and others may not write it (in a sticky shared directory
 * such as /tmp, a socket of anyone but root or the sender needs
 * --daemon-user). */
static int server_verify(const struct link *l, haul_error *err)
{
    char real[PATH_MAX], dir[PATH_MAX];
    struct stat sock, d;
    if (!realpath(l->path, real) || stat(real, &sock) < 0)
        return err_errno(err, errno, "socket %s", l->path);
    snprintf(dir, sizeof dir, "%s", real);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir] = '\0'; /* "/x.sock" -> "/" */
    if (stat(dir, &d) < 0)
        return err_errno(err, errno, "socket directory %s", dir);
    const struct daemon_client_opts *o = l->o;
    uid_t want = o->daemon_uid_set ? o->daemon_uid : sock.st_uid, me = geteuid();
    if (d.st_uid != 0 && d.st_uid != want && d.st_uid != me)
        return err_set(err, HAUL_EIO, "socket %s: its directory %s belongs to uid %u, not root, the daemon's user (uid %u) "
                       "or you: not passing the file to whoever listens there", l->path, dir, (unsigned)d.st_uid,
                       (unsigned)want);
    if ((d.st_mode & (S_IWGRP | S_IWOTH)) && !(d.st_mode & S_ISVTX))
        return err_set(err, HAUL_EIO, "socket %s: its directory %s is writable by others (mode %04o), so anyone could "
                       "listen there: not passing the file (use a private directory)", l->path, dir,
                       (unsigned)(d.st_mode & 07777));
    if ((d.st_mode & (S_IWGRP | S_IWOTH)) && !o->daemon_uid_set && sock.st_uid != 0 && sock.st_uid != me)
        return err_set(err, HAUL_EIO, "socket %s is in the shared directory %s, where anyone may create one, and belongs "
                       "to uid %u: not passing the file (give --daemon-user if that user runs the daemon)", l->path, dir,
                       (unsigned)sock.st_uid);
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(l->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return err_errno(err, errno, "socket %s: asking who listens", l->path);
    if (cred.uid != want)
        return err_set(err, HAUL_EIO, "the process listening on %s runs as uid %u, not uid %u (%s): not passing the file",
                       l->path, (unsigned)cred.uid, (unsigned)want,
                       o->daemon_uid_set ? "--daemon-user" : "the socket's owner");
    return 0;
}

/* Reads one line (without its newline) into buf, by the link's deadline;
 * 0 at a clean EOF before any byte, -1 on error (errno set; ETIMEDOUT at
 * the deadline), else 1. */
static int line_read(const struct link *l, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        if (l->deadline != INT64_MAX) {
            int64_t left = l->deadline - mono_ms();
            struct pollfd p = {.fd = l->fd, .events = POLLIN};
            int r = left > 0 ? poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left) : 0;
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                errno = r == 0 ? ETIMEDOUT : errno;
                return -1;
            }
        }
        ssize_t r = read(l->fd, buf + n, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        if (buf[n] == '\n')
            break;
        n++;
    }
    buf[n] = '\0';
    return n == 0 ? 0 : 1;
}

/* A failed line_read in words. */
static int read_failed(const struct link *l, int r, const char *what, haul_error *err)
{
    if (r < 0 && errno == ETIMEDOUT)
        return timed_out(l, "answer", err);
    if (r < 0)
        return err_errno(err, errno, "reading the daemon's answer on %s", l->path);
    return err_set(err, HAUL_ENET, "the daemon closed the connection %s", what);
}

static int send_line(const struct link *l, const char *line, size_t len, int pass_fd, haul_error *err)
{
    int fd = l->fd;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {(void *)line, len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (pass_fd >= 0) {
        memset(&control, 0, sizeof control);
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof control.buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &pass_fd, sizeof pass_fd);
    }
    /* The descriptor rides with the first byte; the rest follows plainly. */
    ssize_t w;
    do
        w = sendmsg(fd, &mh, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return errno == EAGAIN ? timed_out(l, "take the request", err) : err_errno(err, errno, "sending the request to the daemon");
    size_t sent = (size_t)w;
    while (sent < len) {
        w = send(fd, line + sent, len - sent, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return timed_out(l, "take the request", err);
        if (w <= 0)
            return err_errno(err, errno, "sending the request to the daemon");
        sent += (size_t)w;
    }
    return 0;
}

/* A daemon that refuses a peer answers and closes at once, which can break
 * our send: its answer is then still there to read, and says more. */
static void refusal_check(const struct link *l, int *rc, haul_error *err)
{
    char answer[1400];
    if (*rc == 0 || line_read(l, answer, sizeof answer) <= 0 || strncmp(answer, "ERROR ", 6) != 0)
        return;
    err_clear(err);
    *rc = err_set(err, HAUL_EIO, "refused by the daemon: %s", answer + 6);
}

int daemon_client_send(const char *socket_path, const struct daemon_client_opts *o, int file_fd,
                       const char *abs_path, const char *bucket, const char *key, bool wait, uint64_t *id,
                       haul_error *err)
{
    struct daemon_msg m = {.verb = DAEMON_SEND, .wait = wait, .key = (char *)key, .path = (char *)abs_path};
    snprintf(m.bucket, sizeof m.bucket, "%s", bucket);
    char *line = malloc(DAEMON_UNIX_LINE_MAX);
    if (!line)
        return err_set(err, HAUL_ENOMEM, "out of memory");
    int n = daemon_msg_format(&m, line, DAEMON_UNIX_LINE_MAX), rc;
    if (n < 0) {
        free(line);
        return err_set(err, HAUL_EUSAGE, "key or path too long for the daemon protocol");
    }
    struct link l = {.fd = -1, .path = socket_path, .o = o ? o : &defaults};
    if ((rc = connect_to(&l, err)) < 0) {
        free(line);
        return rc;
    }
    rc = server_verify(&l, err);
    if (rc == 0) {
        rc = send_line(&l, line, (size_t)n, file_fd, err);
        refusal_check(&l, &rc, err);
    }
    char answer[1400];
    uint64_t got_id = 0;
    if (rc == 0) {
        int r = line_read(&l, answer, sizeof answer);
        if (r <= 0)
            rc = read_failed(&l, r, "without answering", err);
        else if (strncmp(answer, "ERROR ", 6) == 0)
            rc = err_set(err, HAUL_EIO, "refused by the daemon: %s", answer + 6);
        else if (sscanf(answer, "QUEUED %" SCNu64, &got_id) != 1)
            rc = err_set(err, HAUL_EPROTO, "unexpected answer from the daemon: %.200s", answer);
    }
    if (rc == 0 && id)
        *id = got_id;
    if (rc == 0 && wait) {
        /* Journaled: the upload takes as long as it takes. */
        l.deadline = INT64_MAX;
        int r = line_read(&l, answer, sizeof answer);
        if (r <= 0)
            rc = err_set(err, HAUL_ENET, "the daemon closed the connection before the result (request %" PRIu64 " is in its journal)",
                         got_id);
        else if (strncmp(answer, "FAILED ", 7) == 0)
            rc = err_set(err, HAUL_EIO, "%s", answer + 7);
        else if (strcmp(answer, "OK") != 0)
            rc = err_set(err, HAUL_EPROTO, "unexpected answer from the daemon: %.200s", answer);
    }
    close(l.fd);
    free(line);
    return rc;
}

int daemon_client_command(const char *socket_path, const struct daemon_client_opts *o,
                          const struct daemon_msg *m, daemon_line_fn fn, void *ctx, haul_error *err)
{
    char line[128];
    int n = daemon_msg_format(m, line, sizeof line);
    if (n < 0 || m->verb == DAEMON_SEND)
        return err_set(err, HAUL_EUSAGE, "not a daemon command");
    struct link l = {.fd = -1, .path = socket_path, .o = o ? o : &defaults};
    int rc = connect_to(&l, err);
    if (rc < 0)
        return rc;
    rc = send_line(&l, line, (size_t)n, -1, err);
    char answer[1400];
    bool ended = false;
    refusal_check(&l, &rc, err);
    while (rc == 0) {
        int r = line_read(&l, answer, sizeof answer);
        if (r < 0)
            rc = read_failed(&l, r, "", err);
        if (r <= 0)
            break;
        if (strncmp(answer, "ERROR ", 6) == 0) {
            rc = err_set(err, HAUL_EIO, "refused by the daemon: %s", answer + 6);
            break;
        }
        if (strcmp(answer, "END") == 0 || (m->verb != DAEMON_STATUS && strcmp(answer, "OK") == 0)) {
            ended = true;
            break;
        }
        if (fn)
            fn(answer, ctx);
    }
    if (rc == 0 && !ended)
        rc = err_set(err, HAUL_ENET, "the daemon closed the connection without a complete answer");
    close(l.fd);
    return rc;
}

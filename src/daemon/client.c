/* daemon/client: the client side of the Unix-socket protocol, for haul send
 * and haul daemon status/pause/resume.  The file travels as an open
 * descriptor (SCM_RIGHTS): the daemon reads what the client could open,
 * never a path of its own choosing. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "util/err.h"

static int connect_to(const char *path, haul_error *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return err_set(err, HAUL_EUSAGE, "socket path %s is too long", path);
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_errno(err, errno, "socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(fd);
        if (e == ENOENT || e == ECONNREFUSED)
            return err_set(err, HAUL_ENET, "no haul daemon listening on %s (start one with 'haul daemon', or give --socket)", path);
        return err_errno(err, e, "connect %s", path);
    }
    return fd;
}

/* Reads one line (without its newline) into buf; 0 at a clean EOF before
 * any byte, -1 on error, else 1. */
static int line_read(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, 1);
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

static int send_line(int fd, const char *line, size_t len, int pass_fd, haul_error *err)
{
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
        return err_errno(err, errno, "sending the request to the daemon");
    size_t sent = (size_t)w;
    while (sent < len) {
        w = send(fd, line + sent, len - sent, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return err_errno(err, errno, "sending the request to the daemon");
        sent += (size_t)w;
    }
    return 0;
}

/* A daemon that refuses a peer answers and closes at once, which can break
 * our send: its answer is then still there to read, and says more. */
static void refusal_check(int fd, int *rc, haul_error *err)
{
    char answer[1400];
    if (*rc == 0 || line_read(fd, answer, sizeof answer) <= 0 || strncmp(answer, "ERROR ", 6) != 0)
        return;
    err_clear(err);
    *rc = err_set(err, HAUL_EIO, "refused by the daemon: %s", answer + 6);
}

int daemon_client_send(const char *socket_path, int file_fd, const char *abs_path, const char *bucket,
                       const char *key, bool wait, uint64_t *id, haul_error *err)
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
    int fd = connect_to(socket_path, err);
    if (fd < 0) {
        free(line);
        return fd;
    }
    rc = send_line(fd, line, (size_t)n, file_fd, err);
    char answer[1400];
    uint64_t got_id = 0;
    refusal_check(fd, &rc, err);
    if (rc == 0) {
        int r = line_read(fd, answer, sizeof answer);
        if (r <= 0)
            rc = err_set(err, HAUL_ENET, "the daemon closed the connection without answering");
        else if (strncmp(answer, "ERROR ", 6) == 0)
            rc = err_set(err, HAUL_EIO, "refused by the daemon: %s", answer + 6);
        else if (sscanf(answer, "QUEUED %" SCNu64, &got_id) != 1)
            rc = err_set(err, HAUL_EPROTO, "unexpected answer from the daemon: %.200s", answer);
    }
    if (rc == 0 && id)
        *id = got_id;
    if (rc == 0 && wait) {
        int r = line_read(fd, answer, sizeof answer);
        if (r <= 0)
            rc = err_set(err, HAUL_ENET, "the daemon closed the connection before the result (request %" PRIu64 " is in its journal)",
                         got_id);
        else if (strncmp(answer, "FAILED ", 7) == 0)
            rc = err_set(err, HAUL_EIO, "%s", answer + 7);
        else if (strcmp(answer, "OK") != 0)
            rc = err_set(err, HAUL_EPROTO, "unexpected answer from the daemon: %.200s", answer);
    }
    close(fd);
    free(line);
    return rc;
}

int daemon_client_command(const char *socket_path, const struct daemon_msg *m, daemon_line_fn fn,
                          void *ctx, haul_error *err)
{
    char line[128];
    int n = daemon_msg_format(m, line, sizeof line);
    if (n < 0 || m->verb == DAEMON_SEND)
        return err_set(err, HAUL_EUSAGE, "not a daemon command");
    int fd = connect_to(socket_path, err);
    if (fd < 0)
        return fd;
    int rc = send_line(fd, line, (size_t)n, -1, err);
    char answer[1400];
    bool ended = false;
    refusal_check(fd, &rc, err);
    while (rc == 0) {
        int r = line_read(fd, answer, sizeof answer);
        if (r < 0)
            rc = err_errno(err, errno, "reading the daemon's answer");
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
    close(fd);
    return rc;
}

/* cmd/broker: where worker, clone, backup and ctl get the broker URL
 * (--broker-file, --broker, HAUL_BROKER) and its TLS options, so that the
 * password never stays in argv (readable by every local user through ps and
 * /proc/PID/cmdline). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "dist/dist.h"
#include "util/fdio.h"

int cmd_secret_file_read(const char *cmd, const char *opt, const char *path, char *out, size_t cap)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return usage_error(cmd, "--%s %s: %s", opt, path,
                           errno == ELOOP ? "is a symbolic link" : strerror(errno));
    struct stat st = {0};
    const char *bad = NULL;
    if (fstat(fd, &st) < 0)
        bad = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        bad = "not a regular file";
    else if (st.st_uid != geteuid() && st.st_uid != 0)
        bad = "owned by another user (want yours or root's)";
    else if (st.st_mode & 077)
        bad = "readable or writable by others";
    if (bad) {
        close(fd);
        if (st.st_mode & 077 && S_ISREG(st.st_mode))
            return usage_error(cmd, "--%s %s: mode 0%o is %s: chmod 600 it", opt, path,
                               (unsigned)(st.st_mode & 07777), bad);
        return usage_error(cmd, "--%s %s: %s", opt, path, bad);
    }
    ssize_t n = fd_read_full(fd, out, cap);
    int e = errno;
    close(fd);
    if (n < 0)
        return usage_error(cmd, "--%s %s: %s", opt, path, strerror(e));
    if ((size_t)n == cap)
        return usage_error(cmd, "--%s %s: larger than %zu bytes", opt, path, cap - 1);
    out[n] = 0;
    return 0;
}

/* The URL held by a --broker-file: its first line that is not empty or a
 * comment, "HAUL_BROKER=" before it allowed (so the same file can serve
 * systemd's EnvironmentFile=). */
static int broker_file_read(const char *cmd, const char *path, char *url, size_t cap)
{
    char buf[4096];
    if (cmd_secret_file_read(cmd, "broker-file", path, buf, sizeof buf))
        return EXIT_USAGE;
    char *line = buf, *next;
    for (; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        line += strspn(line, " \t");
        size_t len = strcspn(line, "\r");
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\t'))
            len--;
        line[len] = 0;
        if (*line && *line != '#')
            break;
    }
    if (line && strncmp(line, "HAUL_BROKER=", 12) == 0)
        line += 12;
    int rc = 0;
    if (!line || !*line)
        rc = usage_error(cmd, "--broker-file %s: holds no broker URL", path);
    else if (strlen(line) >= cap)
        rc = usage_error(cmd, "--broker-file %s: the URL is longer than %zu bytes", path, cap - 1);
    else
        strcpy(url, line);
    explicit_bzero(buf, sizeof buf);
    return rc;
}

/* Overwrites the password of the URL s (argv memory) with "***", moving the
 * rest of the string left and filling the end with NULs, so that ps shows
 * user:***@host.  Returns whether there was one. */
static bool argv_scrub(char *s)
{
    size_t len = strlen(s);
    size_t base = strcspn(s, "?");
    char *sep = strstr(s, "://");
    char *auth = sep && (size_t)(sep - s) < base ? sep + 3 : s;
    char *at = NULL;
    for (char *p = auth; p < s + base; p++)
        if (*p == '@')
            at = p;
    char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (!colon || colon + 1 == at)
        return false; /* no password, or an empty one */
    size_t plen = (size_t)(at - colon - 1), stars = plen < 3 ? plen : 3;
    memset(colon + 1, '*', stars);
    memmove(colon + 1 + stars, at, (size_t)(s + len - at) + 1);
    memset(s + len - (plen - stars), 0, plen - stars);
    return true;
}

/* Appends "?param=value" (or "&...") to the URL in buf, value
 * percent-encoded.  Returns 0, or -1 when it does not fit. */
static int url_append(char *buf, size_t cap, const char *param, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(buf);
    int w = snprintf(buf + n, cap - n, "%c%s=", strchr(buf, '?') ? '&' : '?', param);
    if (w < 0 || (size_t)w >= cap - n)
        return -1;
    n += (size_t)w;
    for (const unsigned char *v = (const unsigned char *)value; *v; v++) {
        if (n + 4 > cap)
            return -1;
        unsigned char c = *v;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~/", c)) {
            buf[n++] = (char)c;
        } else {
            buf[n++] = '%';
            buf[n++] = hex[c >> 4];
            buf[n++] = hex[c & 15];
        }
    }
    buf[n] = 0;
    return 0;
}

int broker_cli_resolve(const char *cmd, struct broker_cli *b, bool use_env, const char **url)
{
    *url = NULL;
    if (b->url && b->file)
        return usage_error(cmd, "give --broker or --broker-file, not both");
    char *u = b->resolved;
    size_t cap = sizeof b->resolved;
    const char *given = b->url ? b->url : use_env ? dist_broker_url_from_env() : NULL;
    if (b->file) {
        int rc = broker_file_read(cmd, b->file, u, cap);
        if (rc)
            return rc;
    } else if (given) {
        if (strlen(given) >= cap)
            return usage_error(cmd, "the broker URL is longer than %zu bytes", cap - 1);
        strcpy(u, given);
        /* b->url is argv's own memory, what /proc/PID/cmdline shows */
        if (b->url && argv_scrub((char *)b->url))
            fprintf(stderr,
                    "haul %s: warning: the password given with --broker was readable by every local "
                    "user (ps) until now; put the URL in a --broker-file FILE (mode 0600) or in "
                    "HAUL_BROKER\n",
                    cmd);
    } else {
        if (b->ca || b->no_verify)
            return usage_error(cmd, "--broker-ca and --broker-no-verify need a broker (--broker-file, --broker or HAUL_BROKER)");
        return 0;
    }
    if ((b->ca || b->no_verify) && strncmp(u, "amqps://", 8) != 0)
        return usage_error(cmd, "--broker-ca and --broker-no-verify are for amqps:// brokers (TLS)");
    if (b->ca && url_append(u, cap, "cacertfile", b->ca) < 0)
        return usage_error(cmd, "--broker-ca %s: the URL with it is longer than %zu bytes", b->ca, cap - 1);
    if (b->no_verify) {
        fprintf(stderr, "haul %s: warning: --broker-no-verify: the broker's certificate is not "
                        "checked; whoever is on the path may read the password and the jobs\n", cmd);
        if (url_append(u, cap, "verify", "verify_none") < 0)
            return usage_error(cmd, "the broker URL is too long");
    }
    *url = u;
    return 0;
}

/* daemon/files: opening and checking the files clients name.  A path is
 * resolved one component at a time from "/" (openat O_PATH|O_NOFOLLOW),
 * so that each component's filesystem is known before anything on it is
 * looked up (a FUSE server is asked nothing but statfs unless allowed),
 * each symlink is either refused or followed by us, and every directory
 * passed through can be compared with the daemon's own credentials and
 * state.  These calls block on a hung filesystem: they run on a task
 * thread (task.c), never on the event loop. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "util/err.h"

#define FUSE_SUPER_MAGIC 0x65735546
#define PROC_SUPER_MAGIC 0x9fa0
#define LINKS_MAX 40 /* as the kernel's own limit on symlinks in a lookup */

int daemon_perm_load(uid_t uid, struct daemon_perm *p, haul_error *err)
{
    memset(p, 0, sizeof *p);
    p->uid = uid;
    struct passwd pw, *res = NULL;
    char buf[4096];
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) != 0 || !res)
        return err_set(err, HAUL_EIO, "uid %u has no passwd entry: its groups are unknown", (unsigned)uid);
    p->gid = pw.pw_gid;
    int n = DAEMON_GROUPS_MAX;
    if (getgrouplist(pw.pw_name, pw.pw_gid, p->groups, &n) < 0)
        n = DAEMON_GROUPS_MAX; /* more groups than that: the first ones */
    p->n_groups = n;
    return 0;
}

/* POSIX's order: the owner's bits for the owner, else the group's for a
 * member of the file's group (even when "other" would allow more), else
 * other's.  want: 4 read, 1 search. */
bool daemon_perm_allows(const struct daemon_perm *p, const struct stat *st, unsigned want)
{
    if (p->uid == 0)
        return !(want & 1) || S_ISDIR(st->st_mode) || (st->st_mode & 0111);
    unsigned bits = st->st_mode & 7;
    if (st->st_uid == p->uid) {
        bits = (st->st_mode >> 6) & 7;
    } else {
        bool member = st->st_gid == p->gid;
        for (int i = 0; i < p->n_groups && !member; i++)
            member = p->groups[i] == st->st_gid;
        if (member)
            bits = (st->st_mode >> 3) & 7;
    }
    return (bits & want) == want;
}

int daemon_perm_assume(const struct daemon_perm *p, haul_error *err)
{
    /* Raw system calls: glibc's setgroups changes every thread of the
     * process; the kernel's changes the calling thread only. */
    if (syscall(SYS_setgroups, (size_t)p->n_groups, p->groups) < 0)
        return err_errno(err, errno, "taking the groups of uid %u", (unsigned)p->uid);
    syscall(SYS_setfsgid, p->gid);
    syscall(SYS_setfsuid, p->uid);
    /* Both return the previous value: asking again tells what took. */
    if ((uid_t)syscall(SYS_setfsuid, p->uid) != p->uid || (gid_t)syscall(SYS_setfsgid, p->gid) != p->gid)
        return err_set(err, HAUL_EIO, "cannot take the file identity of uid %u", (unsigned)p->uid);
    return 0;
}

/* Refuses what a filesystem makes dangerous: FUSE (its server can hang any
 * lookup, open or read forever) unless allowed, procfs when asked. */
static int fs_check(int fd, const char *path, const struct daemon_open_opts *o, haul_error *err)
{
    struct statfs sf;
    if (fstatfs(fd, &sf) < 0)
        return err_errno(err, errno, "%s", path);
    if ((unsigned long)sf.f_type == FUSE_SUPER_MAGIC && !o->allow_fuse)
        return err_set(err, HAUL_EUSAGE,
                       "%s: on a FUSE filesystem, refused (a FUSE server can hang the daemon; see haul daemon --allow-fuse)",
                       path);
    if ((unsigned long)sf.f_type == PROC_SUPER_MAGIC && o->deny_proc)
        return err_set(err, HAUL_EUSAGE, "%s: in /proc, refused (the daemon's own process data)", path);
    return 0;
}

int daemon_fd_check(int fd, bool allow_fuse, struct stat *st, haul_error *err)
{
    const struct daemon_open_opts o = {.allow_fuse = allow_fuse};
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (fl & O_PATH) || (fl & O_ACCMODE) == O_WRONLY)
        return err_set(err, HAUL_EUSAGE, "the descriptor passed is not open for reading");
    if (fs_check(fd, "the descriptor passed", &o, err) < 0)
        return -HAUL_EUSAGE;
    if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode))
        return err_set(err, HAUL_EUSAGE, "the descriptor passed is not a regular file");
    return 0;
}

struct denied {
    dev_t dev;
    ino_t ino;
    const char *path;
};

/* The denied paths that exist now (stat follows symlinks: what they name). */
static int deny_load(const struct daemon_open_opts *o, struct denied *d, int cap)
{
    int n = 0;
    for (int i = 0; i < o->n_deny && n < cap; i++) {
        struct stat st;
        if (o->deny[i] && stat(o->deny[i], &st) == 0)
            d[n++] = (struct denied){st.st_dev, st.st_ino, o->deny[i]};
    }
    return n;
}

static const char *deny_match(const struct denied *d, int n, const struct stat *st)
{
    for (int i = 0; i < n; i++)
        if (d[i].dev == st->st_dev && d[i].ino == st->st_ino)
            return d[i].path;
    return NULL;
}

/* The walk's state: the directory reached and what is left to resolve. */
struct walk {
    const char *path; /* as given, for messages */
    const struct daemon_open_opts *o;
    struct denied deny[DAEMON_DENY_MAX];
    int n_deny;
    int dir;                            /* O_PATH descriptor of the directory reached */
    char rest[2 * DAEMON_PATH_MAX + 2]; /* the components still to resolve */
    int links;
    int errnum; /* of the lookup that failed, 0: none (or a refusal) */
    dev_t fs_dev; /* the filesystem last checked by fs_check */
};

/* Checks one component just opened (nfd, O_PATH): its filesystem (once
 * per filesystem: statfs costs a round trip on NFS), its type, the deny
 * list, and mode bits for o->perm.  Nothing on a filesystem is looked up
 * before it was checked: only its root (a mount point) is stat'ed first. */
static int component_check(struct walk *w, int nfd, const char *name, bool last, struct stat *st, haul_error *err)
{
    if (fstat(nfd, st) < 0)
        return err_errno(err, errno, "%s", w->path);
    if (st->st_dev != w->fs_dev) {
        if (fs_check(nfd, w->path, w->o, err) < 0)
            return -HAUL_EUSAGE;
        w->fs_dev = st->st_dev;
    }
    const char *hit = deny_match(w->deny, w->n_deny, st);
    if (hit)
        return err_set(err, HAUL_EUSAGE, "%s: refused: under the daemon's own credentials or state (%s)", w->path, hit);
    if (S_ISLNK(st->st_mode)) {
        if (!w->o->follow)
            return err_set(err, HAUL_EUSAGE, "%s: '%s' is a symlink, refused (the path must name the file without any)",
                           w->path, name);
        return 0;
    }
    if (!last && !S_ISDIR(st->st_mode))
        return err_set(err, HAUL_EUSAGE, "%s: '%s' is not a directory", w->path, name);
    if (last && !S_ISREG(st->st_mode))
        return err_set(err, HAUL_EUSAGE, "%s: not a regular file", w->path);
    if (w->o->perm && !daemon_perm_allows(w->o->perm, st, last ? 4 : 1))
        return err_set(err, HAUL_EIO, "%s: uid %u may not %s '%s'", w->path, (unsigned)w->o->perm->uid,
                       last ? "read" : "search", name);
    return 0;
}

/* Replaces the symlink just met (nfd) by its target in w->rest, before
 * what followed it (after). */
static int link_follow(struct walk *w, int nfd, const char *after, haul_error *err)
{
    char target[DAEMON_PATH_MAX + 1];
    ssize_t n = readlinkat(nfd, "", target, sizeof target);
    if (n < 0)
        return err_errno(err, errno, "%s", w->path);
    if (++w->links > LINKS_MAX || (size_t)n >= sizeof target)
        return err_errno(err, ELOOP, "%s", w->path);
    char next[sizeof w->rest];
    if ((size_t)snprintf(next, sizeof next, "%.*s/%s", (int)n, target, after) >= sizeof next)
        return err_errno(err, ENAMETOOLONG, "%s", w->path);
    memcpy(w->rest, next, sizeof next);
    if (target[0] == '/') {
        int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
            return err_errno(err, errno, "/");
        close(w->dir);
        w->dir = root;
    }
    return 0;
}

/* Resolves w->rest below w->dir to its last component, opened O_PATH in
 * *last_fd (a regular file) with its name in name. */
static int walk_run(struct walk *w, char *name, int *last_fd, struct stat *st, haul_error *err)
{
    char *p = w->rest;
    for (;;) {
        while (*p == '/')
            p++;
        char *end = strchrnul(p, '/'), *after = end;
        while (*after == '/')
            after++;
        size_t len = (size_t)(end - p);
        bool last = *after == '\0';
        if (len == 0 || (len == 1 && p[0] == '.' && !last)) {
            if (len == 0)
                return err_set(err, HAUL_EUSAGE, "%s: not a regular file", w->path);
            p = after;
            continue;
        }
        if (len > NAME_MAX)
            return err_errno(err, ENAMETOOLONG, "%s", w->path);
        memcpy(name, p, len);
        name[len] = '\0';
        int nfd = openat(w->dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0)
            return err_errno(err, w->errnum = errno, "%s", w->path);
        int rc = component_check(w, nfd, name, last, st, err);
        if (rc == 0 && S_ISLNK(st->st_mode)) {
            rc = link_follow(w, nfd, after, err);
            close(nfd);
            if (rc < 0)
                return rc;
            p = w->rest;
            continue;
        }
        if (rc < 0) {
            close(nfd);
            return rc;
        }
        if (last) {
            *last_fd = nfd;
            return 0;
        }
        close(w->dir);
        w->dir = nfd;
        p = after;
    }
}

int daemon_file_open(const char *path, const struct daemon_open_opts *o, struct stat *st, haul_error *err)
{
    if (path[0] != '/' || strlen(path) > DAEMON_PATH_MAX)
        return err_set(err, HAUL_EUSAGE, "%s: not an absolute path", path);
    struct walk *w = calloc(1, sizeof *w);
    if (!w)
        return err_set(err, HAUL_ENOMEM, "out of memory");
    w->path = path;
    w->o = o;
    w->n_deny = deny_load(o, w->deny, DAEMON_DENY_MAX);
    snprintf(w->rest, sizeof w->rest, "%s", path);
    char name[NAME_MAX + 1];
    int pfd = -1, fd = -1;
    struct stat root = {0};
    int rc = (w->dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 || fstat(w->dir, &root) < 0
                 ? err_errno(err, errno, "/")
                 : fs_check(w->dir, path, o, err) < 0 ? -HAUL_EUSAGE : 0;
    w->fs_dev = root.st_dev;
    if (rc == 0)
        rc = walk_run(w, name, &pfd, st, err);
    if (rc == 0 && o->path_only) {
        fd = pfd;
        pfd = -1;
    } else if (rc == 0) {
        /* The name was checked not to be a symlink; O_NOFOLLOW keeps it so,
         * and the same inode proves nothing was swapped in between. */
        struct stat now;
        fd = openat(w->dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) {
            rc = err_errno(err, errno, "%s", path);
        } else if (fstat(fd, &now) < 0 || now.st_dev != st->st_dev || now.st_ino != st->st_ino) {
            rc = err_set(err, HAUL_EIO, "%s: replaced while being opened", path);
            close(fd);
            fd = -1;
        } else {
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
            *st = now;
        }
    }
    if (pfd >= 0)
        close(pfd);
    if (w->dir >= 0)
        close(w->dir);
    int errnum = w->errnum;
    free(w);
    errno = rc < 0 ? errnum : 0;
    return rc < 0 ? rc : fd;
}

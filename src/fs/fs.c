/* fs: confined operations below a root (see fs.h). */
#include "fs/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util/err.h"

static atomic_bool no_openat2; /* the kernel said ENOSYS once */

/* One component at a time, each opened with O_NOFOLLOW: the same
 * guarantee as openat2 on kernels that lack it. */
static int open_by_components(int root, const char *path, int flags)
{
    int dir = root;
    const char *p = path;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        char comp[NAME_MAX + 1];
        if (len == 0 || len > NAME_MAX || (len == 2 && p[0] == '.' && p[1] == '.')) {
            if (dir != root)
                close(dir);
            errno = len > NAME_MAX ? ENAMETOOLONG : EXDEV;
            return -1;
        }
        memcpy(comp, p, len);
        comp[len] = '\0';
        int next = openat(dir, comp, slash ? O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC : flags);
        int saved = errno;
        if (dir != root)
            close(dir);
        if (next < 0 || !slash) {
            errno = saved;
            return next;
        }
        dir = next;
        p = slash + 1;
    }
}

int fs_open_beneath(int root, const char *path, int flags, haul_error *err)
{
    flags |= O_CLOEXEC | O_NOFOLLOW;
    if (!path[0])
        path = ".";
    int fd = -1;
    if (!atomic_load(&no_openat2)) {
        struct open_how how = {.flags = (uint64_t)flags,
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
        fd = (int)syscall(SYS_openat2, root, path, &how, sizeof how);
        if (fd < 0 && errno == ENOSYS)
            atomic_store(&no_openat2, true);
        /* openat2 refuses paths over PATH_MAX: go component by component. */
        if (fd >= 0 || (errno != ENOSYS && errno != ENAMETOOLONG)) {
            if (fd < 0)
                err_errno(err, errno, "open");
            return fd;
        }
    }
    fd = strcmp(path, ".") == 0 ? openat(root, ".", flags) : open_by_components(root, path, flags);
    if (fd < 0)
        err_errno(err, errno, "open");
    return fd;
}

int fs_parent_open(int root, const char *path, const char **name, haul_error *err)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        *name = path;
        return root;
    }
    *name = slash + 1;
    size_t len = (size_t)(slash - path);
    char small[1024];
    char *parent = len < sizeof small ? small : malloc(len + 1);
    if (!parent) {
        err_set(err, HAUL_ENOMEM, "out of memory");
        return -1;
    }
    memcpy(parent, path, len);
    parent[len] = '\0';
    int fd = fs_open_beneath(root, parent, O_RDONLY | O_DIRECTORY, err);
    if (parent != small)
        free(parent);
    return fd;
}

void fs_parent_close(int root, int fd)
{
    if (fd >= 0 && fd != root)
        close(fd);
}

void fs_tmpname(char *out, size_t cap)
{
    static atomic_uint_fast64_t counter;
    snprintf(out, cap, ".haul-tmp.%ld.%llx", (long)getpid(),
             (unsigned long long)atomic_fetch_add(&counter, 1));
}

/* Empties the directory dirfd (closed here), depth first. */
static int remove_contents(int dirfd, haul_error *err)
{
    DIR *d = fdopendir(dirfd);
    if (!d) {
        close(dirfd);
        return err_errno(err, errno, "opendir");
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = fs_remove(dirfd, de->d_name, err);
    }
    if (rc == 0 && errno)
        rc = err_errno(err, errno, "readdir");
    closedir(d);
    return rc;
}

int fs_remove(int dirfd, const char *name, haul_error *err)
{
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return err_errno(err, errno, "unlink %s", name);
    int sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0)
        return err_errno(err, errno, "open %s", name);
    if (remove_contents(sub, err) < 0)
        return -HAUL_EIO;
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return err_errno(err, errno, "rmdir %s", name);
    return 0;
}

/* Copies every extended attribute of src to dst (ACLs are the
 * system.posix_acl_* attributes).  Attributes dst already has but src
 * lacks are removed, so a re-copy converges. */
static int xattrs_copy(int src, int dst, haul_error *err)
{
    char names[65536], dnames[65536];
    ssize_t n = flistxattr(src, names, sizeof names);
    if (n < 0)
        return errno == ENOTSUP ? 0 : err_errno(err, errno, "listxattr");
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(names + i) + 1) {
        char value[65536];
        ssize_t v = fgetxattr(src, names + i, value, sizeof value);
        if (v < 0)
            return err_errno(err, errno, "getxattr %s", names + i);
        if (fsetxattr(dst, names + i, value, (size_t)v, 0) < 0)
            return err_errno(err, errno, "setxattr %s", names + i);
    }
    ssize_t dn = flistxattr(dst, dnames, sizeof dnames);
    for (ssize_t i = 0; i < dn; i += (ssize_t)strlen(dnames + i) + 1) {
        bool in_src = false;
        for (ssize_t j = 0; j < n && !in_src; j += (ssize_t)strlen(names + j) + 1)
            in_src = strcmp(names + j, dnames + i) == 0;
        if (!in_src && fremovexattr(dst, dnames + i) < 0 && errno != ENODATA)
            return err_errno(err, errno, "removexattr %s", dnames + i);
    }
    return 0;
}

int fs_meta_apply(int dst, int src_fd, const struct stat *st, const struct fs_meta_opts *o, haul_error *err)
{
    /* Owner first: chown clears set-user-ID bits that chmod then restores. */
    if (o->owner && fchown(dst, st->st_uid, st->st_gid) < 0)
        return err_errno(err, errno, "chown");
    if (fchmod(dst, st->st_mode & 07777) < 0)
        return err_errno(err, errno, "chmod");
    if (o->xattrs && src_fd >= 0 && xattrs_copy(src_fd, dst, err) < 0)
        return -HAUL_EIO;
    struct timespec times[2] = {st->st_atim, st->st_mtim};
    if (futimens(dst, times) < 0)
        return err_errno(err, errno, "set times");
    return 0;
}

/* Opens name in dirfd as an O_PATH descriptor without following it, and
 * checks that it is still of the type the caller decided on: whatever is
 * done next goes to that inode, even if the name is swapped a moment
 * later (a symlink planted there is never followed). */
static int entry_pin(int dirfd, const char *name, mode_t type, struct stat *now, haul_error *err)
{
    int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return err_errno(err, errno, "open");
    if (fstat(fd, now) < 0) {
        int saved = errno;
        close(fd);
        return err_errno(err, saved, "stat");
    }
    if ((now->st_mode & S_IFMT) != type) {
        close(fd);
        return err_set(err, HAUL_EIO, "changed type while being updated (not touched)");
    }
    return fd;
}

/* chmod through the pinned descriptor: /proc/self/fd/N names exactly the
 * inode opened (Linux's fchmodat has no working AT_SYMLINK_NOFOLLOW before
 * fchmodat2, and fchmod refuses O_PATH descriptors). */
static int chmod_pinned(int fd, mode_t mode)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return chmod(proc, mode);
}

int fs_meta_apply_at(int dirfd, const char *name, const struct stat *st, const struct fs_meta_opts *o,
                     haul_error *err)
{
    struct stat now;
    int fd = entry_pin(dirfd, name, st->st_mode & S_IFMT, &now, err);
    if (fd < 0)
        return -HAUL_EIO;
    int rc = 0;
    if (o->owner && fchownat(fd, "", st->st_uid, st->st_gid, AT_EMPTY_PATH) < 0)
        rc = err_errno(err, errno, "chown");
    if (rc == 0 && !S_ISLNK(st->st_mode) && chmod_pinned(fd, st->st_mode & 07777) < 0)
        rc = err_errno(err, errno, "chmod");
    struct timespec times[2] = {st->st_atim, st->st_mtim};
    if (rc == 0) {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        /* A symlink's own times can only be set by name; NOFOLLOW keeps
         * that from reaching anything the name might point to. */
        int t = S_ISLNK(st->st_mode) ? utimensat(dirfd, name, times, AT_SYMLINK_NOFOLLOW)
                                     : utimensat(AT_FDCWD, proc, times, 0);
        if (t < 0)
            rc = err_errno(err, errno, "set times");
    }
    close(fd);
    return rc;
}

int fs_chmod_at(int dirfd, const char *name, mode_t type, mode_t mode, haul_error *err)
{
    struct stat now;
    int fd = entry_pin(dirfd, name, type, &now, err);
    if (fd < 0)
        return -HAUL_EIO;
    int rc = chmod_pinned(fd, mode) < 0 ? err_errno(err, errno, "chmod") : 0;
    close(fd);
    return rc;
}

int fs_source_open(int dirfd, const char *name, const struct stat *walked, haul_error *err)
{
    /* O_NONBLOCK: a FIFO or device swapped in since the walk must not
     * block the open; O_NOATIME only works for the owner (or CAP_FOWNER). */
    int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    int fd = openat(dirfd, name, flags | O_NOATIME);
    if (fd < 0 && errno == EPERM)
        fd = openat(dirfd, name, flags);
    if (fd < 0)
        return err_errno(err, errno, "open");
    struct stat now;
    if (fstat(fd, &now) < 0) {
        int saved = errno;
        close(fd);
        return err_errno(err, saved, "stat");
    }
    if (!S_ISREG(now.st_mode) || (walked && (now.st_dev != walked->st_dev || now.st_ino != walked->st_ino))) {
        close(fd);
        return err_set(err, HAUL_EIO, "replaced by %s since it was listed (skipped)",
                       S_ISREG(now.st_mode) ? "another file" : "something that is not a regular file");
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        int saved = errno;
        close(fd);
        return err_errno(err, saved, "fcntl");
    }
    return fd;
}

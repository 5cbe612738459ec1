/* fs: confined operations below a root (see fs.h). */
#include "fs/fs.h"

#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util/err.h"
#include "util/path.h"

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

/* The filesystem a removal started on: device, and mount where the kernel
 * says (a bind mount of the same device is another mount). */
struct fs_where {
    dev_t dev;
    uint64_t mnt; /* 0: unknown */
};

static int where_of(int fd, struct fs_where *w)
{
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_MNT_ID, &sx) == 0) {
        w->dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
        w->mnt = (sx.stx_mask & STATX_MNT_ID) ? sx.stx_mnt_id : 0;
        return 0;
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -1;
    w->dev = st.st_dev;
    w->mnt = 0;
    return 0;
}

static bool where_same(const struct fs_where *a, const struct fs_where *b)
{
    return a->dev == b->dev && (!a->mnt || !b->mnt || a->mnt == b->mnt);
}

static int remove_entry(int dirfd, const char *name, const struct fs_where *top, char *path, size_t cap,
                        haul_error *err);

/* Empties the directory dirfd (closed here), depth first.  Goes on past a
 * failed entry (as rm does); the first failure is the one reported. */
static int remove_contents(int dirfd, const struct fs_where *top, char *path, size_t cap, haul_error *err)
{
    DIR *d = fdopendir(dirfd);
    if (!d) {
        close(dirfd);
        return err_errno(err, errno, "opendir %s", path);
    }
    int rc = 0;
    size_t len = strlen(path);
    struct dirent *de;
    while ((errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path + len, cap - len, "/%s", de->d_name);
        if (remove_entry(dirfd, de->d_name, top, path, cap, err) < 0)
            rc = -HAUL_EIO;
        path[len] = '\0';
    }
    if (errno)
        rc = err_errno(err, errno, "readdir %s", path);
    closedir(d);
    return rc;
}

/* path: name's path from where the removal started, for messages. */
static int remove_entry(int dirfd, const char *name, const struct fs_where *top, char *path, size_t cap,
                        haul_error *err)
{
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return err_errno(err, errno, "unlink %s", path);
    int sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0)
        return err_errno(err, errno, "open %s", path);
    struct fs_where here;
    if (where_of(sub, &here) < 0) {
        int saved = errno;
        close(sub);
        return err_errno(err, saved, "stat %s", path);
    }
    if (!where_same(&here, top)) {
        close(sub);
        return err_set(err, HAUL_EIO, "%s: another filesystem is mounted there: left alone, not removed", path);
    }
    if (remove_contents(sub, top, path, cap, err) < 0)
        return -HAUL_EIO;
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return err_errno(err, errno, "rmdir %s", path);
    return 0;
}

int fs_remove(int dirfd, const char *name, haul_error *err)
{
    struct fs_where top;
    if (where_of(dirfd, &top) < 0)
        return err_errno(err, errno, "stat the directory holding %s", name);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", name);
    return remove_entry(dirfd, name, &top, path, sizeof path, err);
}

int fs_mkdir_p(const char *path, mode_t mode, haul_error *err)
{
    if (!path[0])
        return err_set(err, HAUL_EUSAGE, "an empty path");
    if (path_mkdirs(path, mode) < 0)
        return err_errno(err, errno, "%s: mkdir -p", path);
    return 0;
}

int fs_mkdir(int dirfd, const char *name, mode_t mode, haul_error *err)
{
    if (mkdirat(dirfd, name, mode) == 0)
        return 0;
    return errno == EEXIST ? 1 : err_errno(err, errno, "mkdir");
}

int fs_dir_open(int parent, const char *name, bool create, mode_t mode, haul_error *err)
{
    if (create && mkdirat(parent, name, mode) < 0 && errno != EEXIST)
        return err_errno(err, errno, "cannot create the directory");
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0)
        return fd;
    int e = errno;
    struct stat st;
    if ((e == ELOOP || e == ENOTDIR) && fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return err_set(err, HAUL_EIO, "%s",
                       S_ISLNK(st.st_mode) ? "is a symlink already in the target; not followed, nothing below it is touched"
                                           : "exists and is not a directory");
    return err_errno(err, e, "open");
}

void fs_owner_writable(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & 0300) != 0300)
        fchmod(fd, (st.st_mode & 07777) | 0700);
}

int fs_dirs_open(int root, const char *dir, size_t len, unsigned flags, mode_t mode, haul_error *err)
{
    int fd = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return err_errno(err, errno, "open");
    for (size_t start = 0; start < len;) {
        const char *slash = memchr(dir + start, '/', len - start);
        size_t end = slash ? (size_t)(slash - dir) : len;
        char name[NAME_MAX + 1];
        if (end - start > NAME_MAX) {
            close(fd);
            return err_errno(err, ENAMETOOLONG, "%.*s", (int)end, dir);
        }
        memcpy(name, dir + start, end - start);
        name[end - start] = '\0';
        int next = fs_dir_open(fd, name, flags & FS_DIRS_CREATE, mode, err);
        close(fd);
        if (next < 0) {
            err_prefix(err, "%.*s: ", (int)end, dir);
            return -1;
        }
        if (flags & FS_DIRS_WRITABLE)
            fs_owner_writable(next);
        fd = next;
        start = end + 1;
    }
    return fd;
}

bool fs_is_network(int fd)
{
    struct statfs sf;
    if (fstatfs(fd, &sf) < 0)
        return false;
    switch ((unsigned long)sf.f_type) {
    case 0x6969:     /* NFS */
    case 0x0BD00BD0: /* Lustre */
    case 0x47504653: /* GPFS */
    case 0xFF534D42: /* CIFS */
    case 0xFE534D42: /* SMB2 */
    case 0x517B:     /* SMB */
    case 0x00C36400: /* Ceph */
        return true;
    default:
        return false;
    }
}

int fs_tmp_create(int dir, bool named, struct fs_tmp *t, haul_error *err)
{
    t->dir = dir;
    t->name[0] = '\0';
    t->fd = named ? -1 : openat(dir, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (t->fd >= 0)
        return 0;
    if (!named && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
        return err_errno(err, errno, "create");
    int e = EEXIST;
    for (int i = 0; i < 100 && e == EEXIST; i++) {
        fs_tmpname(t->name, sizeof t->name);
        t->fd = openat(dir, t->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (t->fd >= 0)
            return 0;
        e = errno;
    }
    t->name[0] = '\0';
    return err_errno(err, e, "create a temporary file");
}

int fs_tmp_open(int dir, const char *name, bool create, struct fs_tmp *t, haul_error *err)
{
    t->dir = dir;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->fd = openat(dir, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
    if (t->fd < 0)
        return err_errno(err, errno, "open %s", name);
    return 0;
}

int fs_tmp_close(struct fs_tmp *t, unsigned flags, haul_error *err)
{
    int rc = 0;
    if ((flags & FS_SYNC_ALL) && fsync(t->fd) < 0)
        rc = err_errno(err, errno, "fsync");
    else if (!(flags & FS_SYNC_ALL) && (flags & FS_SYNC_DATA) && fdatasync(t->fd) < 0)
        rc = err_errno(err, errno, "fdatasync");
    /* Network filesystems report a failed write-back here. */
    if (close(t->fd) < 0 && rc == 0)
        rc = err_errno(err, errno, "close");
    t->fd = -1;
    return rc;
}

void fs_tmp_discard(struct fs_tmp *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    if (t->name[0])
        unlinkat(t->dir, t->name, 0);
    t->name[0] = '\0';
}

/* The message for a failed rename into place. */
static int rename_failed(int e, haul_error *err)
{
    if (e == EISDIR || e == ENOTEMPTY || e == EEXIST)
        return err_set(err, HAUL_EIO, "a directory is in the way; not replaced");
    return err_errno(err, e, "rename into place");
}

/* renameat of tmp over name in dir; tmp stays on failure. */
static int rename_into(int dir, const char *tmp, const char *name, haul_error *err)
{
    return renameat(dir, tmp, dir, name) == 0 ? 0 : rename_failed(errno, err);
}

/* Links fd (an open file; from_name NULL) or from_dir/from_name as name in
 * dir.  0, or -1 with errno. */
static int link_to(int fd, int from_dir, const char *from_name, int dir, const char *name)
{
    if (from_name)
        return linkat(from_dir, from_name, dir, name, 0);
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    int rc = linkat(AT_FDCWD, proc, dir, name, AT_SYMLINK_FOLLOW);
    if (rc < 0 && errno == ENOENT) /* no /proc: needs CAP_DAC_READ_SEARCH */
        rc = linkat(fd, "", dir, name, AT_EMPTY_PATH);
    return rc;
}

/* fs_link for an open file or a named entry: directly when the name is
 * free, else through a temporary link renamed over it. */
static int link_into_place(int fd, int from_dir, const char *from_name, int dir, const char *name, unsigned flags,
                           haul_error *err)
{
    if (link_to(fd, from_dir, from_name, dir, name) == 0)
        return 0;
    if (errno != EEXIST)
        return err_errno(err, errno, "link into place");
    if (flags & FS_NOREPLACE)
        return 1;
    char tmp[64];
    for (int i = 0; i < 100; i++) {
        fs_tmpname(tmp, sizeof tmp);
        if (link_to(fd, from_dir, from_name, dir, tmp) == 0) {
            if (rename_into(dir, tmp, name, err) == 0)
                return 0;
            unlinkat(dir, tmp, 0);
            return -HAUL_EIO;
        }
        if (errno != EEXIST)
            return err_errno(err, errno, "link into place");
    }
    return err_set(err, HAUL_EIO, "no free temporary name");
}

int fs_publish(struct fs_tmp *t, const char *name, unsigned flags, haul_error *err)
{
    if (!t->name[0]) {
        /* Unnamed: the writer is closed (and checked) before the file has
         * any name; a duplicate keeps it alive until it is linked. */
        int keep = fcntl(t->fd, F_DUPFD_CLOEXEC, 0);
        if (keep < 0) {
            int saved = errno;
            fs_tmp_discard(t);
            return err_errno(err, saved, "dup");
        }
        int rc = fs_tmp_close(t, flags, err);
        if (rc == 0)
            rc = link_into_place(keep, -1, NULL, t->dir, name, flags, err);
        close(keep);
        return rc;
    }
    int rc = fs_tmp_close(t, flags, err);
    if (rc == 0 && renameat2(t->dir, t->name, t->dir, name, (flags & FS_NOREPLACE) ? RENAME_NOREPLACE : 0) == 0) {
        t->name[0] = '\0';
        return 0;
    }
    if (rc == 0)
        rc = (flags & FS_NOREPLACE) && errno == EEXIST ? 1 : rename_failed(errno, err);
    fs_tmp_discard(t);
    return rc;
}

int fs_node_make(int dirfd, const char *name, mode_t mode_type, const char *target, dev_t rdev,
                 const struct stat *meta, const struct fs_meta_opts *o, haul_error *err)
{
    char tmp[64];
    int rc = -1;
    for (int i = 0; i < 100 && rc < 0; i++) {
        fs_tmpname(tmp, sizeof tmp);
        rc = S_ISLNK(mode_type) ? symlinkat(target, dirfd, tmp) : mknodat(dirfd, tmp, mode_type | 0600, rdev);
        if (rc < 0 && errno != EEXIST)
            return err_errno(err, errno, "%s", S_ISLNK(mode_type) ? "symlink" : "mknod");
    }
    if (rc < 0)
        return err_set(err, HAUL_EIO, "no free temporary name");
    if (fs_meta_apply_at(dirfd, tmp, meta, o, err) < 0 || rename_into(dirfd, tmp, name, err) < 0) {
        unlinkat(dirfd, tmp, 0);
        return -HAUL_EIO;
    }
    return 0;
}

int fs_link(int from_dir, const char *from_name, int dir, const char *name, unsigned flags, haul_error *err)
{
    return link_into_place(-1, from_dir, from_name, dir, name, flags, err);
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

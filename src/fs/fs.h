/* fs: the confined-filesystem module: operations below a root (clone's
 * destination, a restore target), each confined to it: a path is resolved below the tree's root
 * without following any symlink (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS,
 * or one O_NOFOLLOW component at a time on kernels before 5.6), so a
 * symlink planted in the destination can never redirect a write outside
 * it.  Failures fill haul_error with the errno in words; the caller adds
 * the path. */
#ifndef FS_FS_H
#define FS_FS_H

#include <haul/error.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

/* Opens path (relative, no leading '/'; "" is root itself) below root with
 * flags (O_CLOEXEC|O_NOFOLLOW are added).  -1 with err filled on failure. */
int fs_open_beneath(int root, const char *path, int flags, haul_error *err);

/* Opens the directory holding path's last component, and points *name at
 * that component (inside path).  Returns a fd the caller closes with
 * fs_parent_close, -1 on failure. */
int fs_parent_open(int root, const char *path, const char **name, haul_error *err);
void fs_parent_close(int root, int fd);

/* A fresh temporary name (".haul-tmp.<pid>.<n>") for a file about to be
 * renamed into place; shorter than NAME_MAX. */
void fs_tmpname(char *out, size_t cap);

/* Removes name in dirfd whatever it is: a directory with everything below
 * it (never following a symlink).  ENOENT is success. */
int fs_remove(int dirfd, const char *name, haul_error *err);

/* Which metadata fs_meta_apply sets. */
struct fs_meta_opts {
    bool owner;  /* uid and gid (only root can give files away) */
    bool xattrs; /* extended attributes, ACLs included (system.posix_acl_*) */
};

/* Gives the open file or directory dst the metadata of st (mode, owner,
 * xattrs from src_fd when asked and src_fd >= 0, then atime and mtime:
 * last, since the others may change ctime only). */
int fs_meta_apply(int dst, int src_fd, const struct stat *st, const struct fs_meta_opts *o, haul_error *err);

/* The same for an entry that cannot be opened (a symlink, a FIFO, a
 * device) or is only known by name: the entry is pinned with an O_PATH,
 * O_NOFOLLOW descriptor, checked to still be of st's file type, and
 * changed through that descriptor, so a name swapped for a symlink is
 * never followed (a type change is an error and nothing is touched). */
int fs_meta_apply_at(int dirfd, const char *name, const struct stat *st, const struct fs_meta_opts *o,
                     haul_error *err);

/* chmod of name in dirfd the same way: only if it is still of file type
 * `type` (S_IFDIR, S_IFREG...), through a descriptor, never following. */
int fs_chmod_at(int dirfd, const char *name, mode_t type, mode_t mode, haul_error *err);

/* Opens a source file for reading: never following a symlink, never
 * blocking on a FIFO or device swapped in for it, and only if it is a
 * regular file, the same one (st_dev, st_ino) as `walked` when given.
 * O_NOATIME where allowed.  Returns the descriptor in blocking mode, or -1
 * with err filled (the caller adds the path). */
int fs_source_open(int dirfd, const char *name, const struct stat *walked, haul_error *err);

#endif

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

/* Which metadata fs_meta_apply sets. */
struct fs_meta_opts {
    bool owner;  /* uid and gid (only root can give files away) */
    bool xattrs; /* extended attributes, ACLs included (system.posix_acl_*) */
};

/* Removes name in dirfd whatever it is: a directory with everything below
 * it (never following a symlink).  ENOENT is success.  Never descends into
 * another filesystem (as rm --one-file-system): a directory on another
 * device or mount than dirfd's is left alone, with everything above it,
 * and reported as an error naming it (name/sub/mnt: ...). */
int fs_remove(int dirfd, const char *name, haul_error *err);

/* mkdir -p of a path given by the user (a root, a state directory):
 * symlinks in it are the user's choice and followed.  Missing components
 * get mode (less the umask). */
int fs_mkdir_p(const char *path, mode_t mode, haul_error *err);

/* Creates directory name in dirfd (mode less the umask).  1 when something
 * was there already (not checked to be a directory: open it to know). */
int fs_mkdir(int dirfd, const char *name, mode_t mode, haul_error *err);

/* Opens directory name in parent without following a symlink, creating it
 * first (mode) when create.  A symlink or non-directory there is refused
 * with a message saying so (nothing below it is touched). */
int fs_dir_open(int parent, const char *name, bool create, mode_t mode, haul_error *err);

/* Gives the owner rwx on the open directory fd when the owner is us and
 * lacks them (a rerun writing below a directory given a read-only mode;
 * its final mode is applied again at the end). */
void fs_owner_writable(int fd);

/* fs_dirs_open flags. */
enum {
    FS_DIRS_CREATE = 1,   /* mkdir -p: create missing components (mode) */
    FS_DIRS_WRITABLE = 2, /* give the owner (when it is us) rwx on each component
                           * opened, so that a rerun can write below one that was
                           * given a read-only mode */
};

/* Opens directory dir[0..len) below root (len 0: root itself) one
 * component at a time, never following a symlink.  Returns a new
 * descriptor, or -1 with err naming the failing component (its path
 * relative to root; HAUL_ENOTFOUND when it is missing and not created). */
int fs_dirs_open(int root, const char *dir, size_t len, unsigned flags, mode_t mode, haul_error *err);

/* Network filesystems (NFS, Lustre, GPFS, CIFS/SMB, Ceph) report write
 * errors (ENOSPC, EDQUOT, EIO) only at close or fsync: a file written there
 * is synced before it gets its name. */
bool fs_is_network(int fd);

/* A file being written below a root, published under its real name only
 * when whole (fs_publish).  Zero-initialise, or fill by fs_tmp_create or
 * fs_tmp_open. */
struct fs_tmp {
    int dir;       /* the directory it is published in (borrowed) */
    int fd;        /* open for writing, -1 once closed */
    char name[64]; /* its temporary name; "" while unnamed (O_TMPFILE) */
};

/* Creates an empty file (mode 0600) to fill in dir: unnamed (O_TMPFILE)
 * when the filesystem can and !named, else under a fresh temporary name
 * (O_EXCL, never following). */
int fs_tmp_create(int dir, bool named, struct fs_tmp *t, haul_error *err);

/* Opens the temporary name (made elsewhere: by lfs setstripe, or by the
 * first unit of a file copied in ranges) for writing, creating it (0600)
 * when create; never follows a symlink.  Nothing is removed on failure. */
int fs_tmp_open(int dir, const char *name, bool create, struct fs_tmp *t, haul_error *err);

/* fs_tmp_close and fs_publish flags. */
enum {
    FS_SYNC_DATA = 1, /* fdatasync before naming (a network filesystem) */
    FS_SYNC_ALL = 2,  /* fsync before naming (--fsync) */
    FS_NOREPLACE = 4, /* fs_publish, fs_link: the name must not exist yet */
};

/* Syncs t as flags ask and closes it, checking both: a temporary that
 * keeps its name for a later fs_publish (a range written by one process of
 * several).  Removes nothing. */
int fs_tmp_close(struct fs_tmp *t, unsigned flags, haul_error *err);

/* Gives t its real name once it is whole: synced as flags ask and closed,
 * both checked (deferred write errors), then linked (unnamed) or renamed
 * into place atomically, replacing what is there unless FS_NOREPLACE (a
 * directory is never replaced).  Returns 0; 1 with FS_NOREPLACE when name
 * exists (nothing published); <0 with err filled.  In every case t is
 * closed and, unless published, its temporary name removed. */
int fs_publish(struct fs_tmp *t, const char *name, unsigned flags, haul_error *err);

/* Drops an unpublished t: closes it and removes its temporary name. */
void fs_tmp_discard(struct fs_tmp *t);

/* Makes name in dirfd a symlink to target (mode_type S_IFLNK) or a special
 * file (S_IFIFO, S_IFCHR, S_IFBLK with rdev), with meta's metadata: made
 * under a temporary name, given its metadata through fs_meta_apply_at,
 * then renamed over whatever non-directory is at name.  On failure nothing
 * is left. */
int fs_node_make(int dirfd, const char *name, mode_t mode_type, const char *target, dev_t rdev,
                 const struct stat *meta, const struct fs_meta_opts *o, haul_error *err);

/* Makes name in dir a hard link to from_name in from_dir (itself, never
 * what it might point to), replacing a non-directory at name through a
 * temporary link renamed over it; with FS_NOREPLACE returns 1 when name
 * exists. */
int fs_link(int from_dir, const char *from_name, int dir, const char *name, unsigned flags, haul_error *err);


/* Gives the open file or directory dst the metadata of st (mode, owner
 * (a uid or gid of (uid_t)-1 is left as it is),
 * xattrs from src_fd when asked and src_fd >= 0, then atime and mtime:
 * last, since the others may change ctime only). */
/* An st_atim of UTIME_OMIT keeps the atime. */
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

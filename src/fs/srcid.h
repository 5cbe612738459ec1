/* fs/srcid: the identity of a source tree's root, so that a pass that
 * deletes on the destination what the source lacks (clone's delete pass,
 * backup --delete, locally or on a worker node) can tell the source it
 * knows from an unmounted mountpoint, an emptied directory or another
 * filesystem mounted at the same path, and refuse.
 *
 * An identity is the root's st_dev and inode, the filesystem's statfs
 * f_fsid and f_type, whether the root has any entry, and the kernel's boot
 * id: device numbers of network and virtual filesystems (NFS, Lustre,
 * tmpfs) are handed out at mount time, so they are compared only between
 * two views taken under the same running kernel (another node, or a
 * reboot, numbers the same filesystem differently); inode, type and a
 * non-zero fsid are compared always. */
#ifndef FS_SRCID_H
#define FS_SRCID_H

#include <haul/error.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct srcid {
    uint64_t dev, ino;  /* the root's st_dev and st_ino; ino 0: unknown */
    uint64_t fsid;      /* statfs f_fsid, its two words */
    uint64_t fstype;    /* statfs f_type (magic number) */
    bool nonempty;      /* the root holds at least one entry */
    char boot[37];      /* /proc/sys/kernel/random/boot_id, "" when unreadable */
};

/* What the caller allows (the flags --allow-empty-src, --allow-new-src). */
struct srcid_policy {
    bool allow_empty; /* an empty SRC may make everything go */
    bool allow_new;   /* SRC may be another filesystem than recorded (then recorded) */
};

#define SRCID_TEXT_MAX 160 /* srcid_format's longest line, with its NUL */

/* The identity of the open directory dirfd.  err names the failing call. */
int srcid_probe(int dirfd, struct srcid *out, haul_error *err);

/* One line of text (no newline) for a record, and back: srcid_parse is
 * strict (-1 for anything srcid_format would not write). */
void srcid_format(const struct srcid *id, char *out, size_t cap);
int srcid_parse(const char *text, struct srcid *out);

/* true when now is the filesystem then was; else false and why ("root
 * inode 1, was 2") into why (cap bytes). */
bool srcid_same_fs(const struct srcid *now, const struct srcid *then, char *why, size_t cap);

/* May a pass delete on the destination what SRC (path src, as it is now)
 * lacks?  then: the identity recorded at the last run, NULL when there is
 * none.  0 when it may; else -HAUL_EINTEGRITY with err saying why and which
 * flag overrides: SRC unknown (now->ino 0) or empty, or another filesystem
 * than then. */
int srcid_delete_check(const char *src, const struct srcid *now, const struct srcid *then,
                       const struct srcid_policy *p, haul_error *err);

/* Should now replace the record then (NULL: none)?  Only a non-empty SRC
 * is recorded, and only when it is the recorded filesystem or allow_new. */
bool srcid_recordable(const struct srcid *now, const struct srcid *then, bool allow_new);

/* A worker's view (mine) of the job's SRC against the coordinator's
 * (theirs, ino 0: the coordinator sent none, nothing to check): 0 when
 * they agree, else -HAUL_EINTEGRITY with err saying how they differ (SRC
 * empty here but not there, or another filesystem). */
int srcid_match(const char *src, const struct srcid *mine, const struct srcid *theirs, haul_error *err);

/* The record of a clone's SRC, a one-line file (state_dir/clone/<hash of
 * DST>.srcid).  read: 1 and *out filled, 0 when there is none, < 0 when it
 * cannot be read or is damaged.  write: atomically (a temporary renamed). */
int srcid_file_path(const char *state_dir, const char *dst_abs, char *out, size_t cap, haul_error *err);
int srcid_file_read(const char *path, struct srcid *out, haul_error *err);
int srcid_file_write(const char *path, const struct srcid *id, haul_error *err);

#endif

/* meta: POSIX metadata <-> S3 user metadata, the Glacier SHA-256 tree hash,
 * object keys <-> relative paths with the restore-side safety check, the
 * restore policy (which owners, mode bits and device files a restore applies)
 * and the escape of bucket-supplied text for terminals.
 * Everything here is pure (no I/O, no globals); only the tree hasher allocates.
 *
 * ==== Object layout and metadata convention ===================================
 *
 * Decision: haul writes what s3fs-fuse writes, in s3fs's formats, plus a few
 * "haul-" fields that other tools ignore.  So a bucket written by haul and
 * mounted with s3fs shows the right owners, modes, times, directories,
 * symlinks and (thanks to s3fs's own escape) non-UTF-8 names. rclone reads
 * the same mtime to the nanosecond.
 *
 *   x-amz-meta-mode   st_mode in decimal, file type bits included ("33188")
 *   x-amz-meta-uid    decimal
 *   x-amz-meta-gid    decimal
 *   x-amz-meta-mtime  "<sec>" or "<sec>.<9 digits of ns>" ("1700000000.000000042")
 *   x-amz-meta-atime  the same format; only when asked (meta_extra.atime)
 *   x-amz-meta-haul-hardlink    see below
 *   x-amz-meta-haul-symlink     the symlink target, percent-encoded, when it fits
 *   x-amz-meta-haul-sparse      "1": the file had holes (fewer blocks than bytes)
 *   x-amz-meta-haul-rdev        "<major>:<minor>" of a character or block device
 *   x-amz-meta-haul-sha256-tree the content's SHA-256 tree hash (lower-case hex)
 *
 *   Files are objects at prefix + path.  Directories are zero-length objects at
 *   prefix + path + "/" with mode S_IFDIR|perm.  A symlink is an object whose
 *   body is the target's bytes and whose mode is S_IFLNK|perm.  A hard-linked
 *   inode is stored once, at its first path; each later path is a zero-length
 *   object with the inode's mode/uid/gid/times and haul-hardlink naming the
 *   first path (relative to the backup root, percent-encoded like
 *   haul-symlink).  On restore, the first path is created from its data and
 *   later ones are link(2)ed to it.
 *
 * Evidence (s3fs-fuse/s3fs-fuse, rclone/rclone, ncw/swift on GitHub):
 *   - s3fs src/s3fs.cpp: create_file_object, s3fs_create, create_directory_object
 *     and s3fs_symlink write mode/uid/gid as std::to_string (decimal) and the
 *     times as str(timespec).  create_directory_object puts the object at
 *     "path/".  s3fs_symlink sets mode S_IFLNK|0777 and writes the target as
 *     the object body (Content-Length = target length); s3fs_readlink reads
 *     the body back.  s3fs_mknod stores no device number.
 *   - s3fs src/string_util.cpp: str(struct timespec) is "<sec>" when ns == 0,
 *     else "<sec>.<ns, zero-padded to 9 digits>"; s3fs_wtf8_encode/decode map
 *     each byte that is not valid UTF-8 to U+E000 + byte (and any U+E000..U+E0FF
 *     back to that byte).
 *   - s3fs src/metaheader.cpp: get_mode(s, base = 0) and get_uid/get_gid parse
 *     with strtoll base 0 (so "0100644" is octal); cvt_string_to_time reads the
 *     digits after '.' as an integer count of ns (its comment names rclone,
 *     whose fractions are trimmed, so s3fs misreads "1.5" as 1 s + 5 ns); a mode
 *     without type bits becomes S_IFDIR for "dir/" keys, else S_IFREG;
 *     get_mtime treats mtime <= 0 as absent.  s3fs also reads s3sync's
 *     permissions/owner/group and GCS's goog-reserved-* names.
 *   - rclone backend/s3/s3.go: metaMtime = "mtime", written with
 *     swift.TimeToFloatString and read with swift.FloatStringToTime;
 *     Object.Metadata passes every other x-amz-meta-* through.  ncw/swift
 *     metadata.go: nsToFloatString writes "<sec>.<frac>" with trailing zeros
 *     trimmed ("-" before pre-1970 values, a true negative float);
 *     floatStringToNs right-pads the fraction to 9 digits, so rclone reads
 *     s3fs's (and haul's) 9-digit form exactly.
 *   - rclone backend/local/metadata.go, metadata_linux.go (with --metadata):
 *     mode is fmt "%0o" (octal, no leading 0: "100664") and is parsed base 8;
 *     uid/gid decimal; atime/mtime/btime RFC 3339 with ns; rdev hex; only
 *     the permission bits of mode are applied.
 *
 * Consequences, in what haul writes:
 *   - mode/uid/gid: s3fs's decimal.  rclone --metadata would misread a decimal
 *     mode as octal when copying back to disk, and s3fs misreads rclone's octal
 *     as decimal.  The two cannot both be satisfied; the s3fs mount is the tool
 *     that shows modes to users, so s3fs wins.
 *   - mtime: s3fs's 9-digit fraction is the one spelling both tools read
 *     exactly, so no separate nanosecond field is needed.  Pre-1970 times are
 *     written as rclone's true negative float ("-1.5" is {-2, 500000000});
 *     s3fs treats them as absent anyway.
 *   - atime: same format.  rclone expects RFC 3339 for atime and ignores
 *     (logs) other forms, which is harmless.
 * What haul reads: all of the above; rclone's trimmed fractions; RFC 3339
 * times; a mode with a leading 0 as octal (s3fs's base 0); and a mode in
 * octal when the object was written by rclone --metadata, which haul
 * recognizes by an RFC 3339 atime.  Not read: ctime (cannot be restored),
 * s3sync's and GCS's names.  Unknown names are ignored.
 *
 * ==== Keys ================================================================
 *
 * key = prefix + encoded relative path (+ "/" for a directory).  The prefix
 * normally ends in "/" (or is "").  Encoding is s3fs's escape, made exactly
 * reversible: each byte that is not part of a valid UTF-8 sequence (RFC 3629:
 * no overlongs, surrogates or code points above U+10FFFF) becomes the
 * private-use character U+E000 + byte (3 bytes: EE 80|byte>>6 80|byte&63).
 * The bytes of any literal U+E000..U+E0FF already in a name are escaped the
 * same way, one by one, so every U+E000..U+E0FF in a key stands for exactly
 * one byte and s3fs mounts show the original names.  Names that are valid
 * UTF-8 without those 256 private-use characters are unchanged.  Restore
 * accepts only canonical keys (re-encoding the decoded path gives the key back),
 * so two keys never restore to the same path.
 */
#ifndef META_META_H
#define META_META_H

#include <haul/error.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "s3/s3.h"
#include "util/hash.h"

/* ---- POSIX metadata <-> S3 user metadata ----------------------------------- */

#define META_NAME_MAX 255  /* bytes in one path component (NAME_MAX) */
#define META_PATH_MAX 4096 /* bytes in a path, its NUL included (PATH_MAX) */
#define META_KEY_MAX 1024  /* S3's limit on a key, in bytes */
#define META_S3_LIMIT 2048 /* S3's limit on user metadata: names + values, bytes */
#define META_ITEMS_MAX 10

/* What meta_stat_encode records besides struct stat; NULL means none of it. */
struct meta_extra {
    const char *symlink;     /* S_ISLNK: readlink()'s target (required then), else NULL */
    const char *hardlink;    /* a later path of a hard-linked inode: the first path
                                (relative to the backup root), else NULL */
    const char *tree_sha256; /* the content's tree hash (64 lower-case hex), or NULL */
    bool atime;              /* record st_atim too */
};

/* Encoded metadata: items point into buf, so the struct must not be copied.
 * Pass items/n as s3_put_opts.meta/n_meta. */
struct meta_encoded {
    struct s3_meta items[META_ITEMS_MAX];
    size_t n;
    char buf[META_S3_LIMIT + 2 * META_ITEMS_MAX];
};

/* Encodes st (+ extra, may be NULL) into out, within S3's 2 KiB.  The symlink
 * target is left out when it does not fit (the object body carries it);
 * a hard-link path that does not fit is an error (store a copy instead).
 * Returns 0, or HAUL_EUSAGE naming the problem (unknown file type, uid or gid
 * (uid_t)-1, ns out of range, symlink target missing or on a non-link, hard
 * link to a directory, unsafe hard-link path, bad tree hash). */
int meta_stat_encode(const struct stat *st, const struct meta_extra *extra,
                     struct meta_encoded *out, haul_error *err);

/* Which fields the decoded metadata carried (struct meta_posix.has). */
enum meta_has {
    META_HAS_MODE = 1u << 0,
    META_HAS_UID = 1u << 1,
    META_HAS_GID = 1u << 2,
    META_HAS_MTIME = 1u << 3,
    META_HAS_ATIME = 1u << 4,
    META_HAS_SYMLINK = 1u << 5,
    META_HAS_HARDLINK = 1u << 6,
    META_HAS_RDEV = 1u << 7,
    META_HAS_TREE = 1u << 8,
};

/* Decoded metadata.  Fields whose META_HAS_* bit is clear hold defaults:
 * mode's type from the key (dir_key: S_IFDIR|0755, else S_IFREG|0644), zeros
 * elsewhere, "" for strings. */
struct meta_posix {
    unsigned has;             /* META_HAS_* */
    mode_t mode;              /* always has valid type bits */
    uid_t uid;
    gid_t gid;
    struct timespec mtime;
    struct timespec atime;
    dev_t rdev;               /* character and block devices */
    bool sparse;
    char symlink[META_PATH_MAX];  /* the target, when haul-symlink was present */
    char hardlink[META_PATH_MAX]; /* safe relative path (meta_path_check rules) */
    char tree_sha256[SHA256_HEX_LEN + 1];
};

/* Decodes user metadata (names without "x-amz-meta-", any case) into out.
 * dir_key: the object's key ends in "/" (gives the type when mode lacks it).
 * Strict: numbers without sign, spaces or stray characters, uid/gid in
 * 0..4294967294, mode <= 0177777 with a real file type (or none: then, as in
 * s3fs, the key's), at most 9 decimals of seconds, fields consistent with
 * the type, no duplicate names; unknown names are ignored.  Returns 0, or
 * HAUL_EPROTO with a message naming the field and its value
 * ("bad metadata x-amz-meta-uid \"-5\": negative"). */
int meta_stat_decode(const struct s3_meta *meta, size_t n, bool dir_key, struct meta_posix *out,
                     haul_error *err);

/* ---- What a restore applies: its safety policy ---------------------------------
 * A bucket is often writable by more principals than the person restoring
 * from it, so the metadata it carries is applied only as far as it cannot
 * hand those principals (or other local users) more than the files. */

/* What the person restoring allows (restore's options). */
struct meta_restore_rules {
    bool as_root;             /* the run has euid 0: owners can be applied, devices made */
    bool no_same_owner;       /* --no-same-owner: never apply uid/gid */
    bool preserve_setuid;     /* --preserve-setuid */
    bool devices;             /* --devices */
    bool keep_world_writable; /* --keep-world-writable */
};

/* What the policy took away (struct meta_restore_plan.dropped). */
enum meta_drop {
    META_DROP_SETID = 1u << 0,       /* set-user-ID and/or set-group-ID bits */
    META_DROP_WORLD_WRITE = 1u << 1, /* write permission for others */
    META_DROP_OWNER = 1u << 2,       /* uid/gid (not root, or no_same_owner) */
};

/* What to do with one entry. */
struct meta_restore_plan {
    const char *refused; /* NULL: create the entry; else why not (a device file) */
    unsigned has;        /* META_HAS_MODE, _UID, _GID: which fields below to apply */
    mode_t mode;         /* permission bits (07777 at most), with META_HAS_MODE */
    uid_t uid;           /* (uid_t)-1 without META_HAS_UID (fchown's "leave it") */
    gid_t gid;           /* (gid_t)-1 without META_HAS_GID */
    unsigned dropped;    /* META_DROP_* */
};

/* The restore policy, for one decoded entry (pure):
 * - owners: uid/gid only as root and without no_same_owner;
 * - set-user-ID / set-group-ID: kept only as root with preserve_setuid and
 *   with the owner they refer to applied (S_ISUID the uid, S_ISGID the gid);
 *   else removed.  Exception: a directory's set-group-ID bit, which only
 *   makes new entries inherit its group and runs nothing, is kept;
 * - block and character devices: created only as root with devices, else
 *   refused (out->refused says why);
 * - others' write permission: removed from regular files, FIFOs and
 *   directories without the sticky bit unless keep_world_writable (devices,
 *   opted into with devices, keep their modes; a symlink has no mode to set).
 * Never fails; out is always filled. */
void meta_restore_policy(const struct meta_posix *in, const struct meta_restore_rules *rules,
                         struct meta_restore_plan *out);

/* Writes s (n bytes) for a terminal or a log: valid UTF-8 as is, but C0
 * controls, DEL, C1 controls (U+0080..U+009F) and bytes that are not UTF-8
 * as \xNN, so a key, path or link target from a bucket cannot move the cursor
 * or rewrite a terminal.  A backslash is left as is (text already quoted with
 * \xNN stays readable).  Cut at a character with "..." when it does not fit
 * in out (cap >= 4 bytes, NUL included).  Returns out. */
const char *meta_text_escape(const char *s, size_t n, char *out, size_t cap);

/* ---- SHA-256 tree hash (Amazon Glacier) --------------------------------------
 * 1 MiB leaves, each hashed with SHA-256; adjacent pairs combined by SHA-256 of
 * their concatenation, an odd last one carried up unchanged, until one remains.
 * Empty input: SHA-256 of the empty string.  The streaming hasher keeps one
 * partial leaf's SHA-256 state plus at most 64 pending subtree hashes. */

#define META_TREE_LEAF (1024 * 1024)

struct meta_treehash;

/* NULL when out of memory. */
struct meta_treehash *meta_treehash_new(void);
void meta_treehash_free(struct meta_treehash *th); /* NULL is a no-op */
/* Feeds n bytes (any chunking gives the same result). */
void meta_treehash_update(struct meta_treehash *th, const void *data, size_t n);
/* Writes the digest (raw and/or hex; either may be NULL) and empties th for a
 * new stream.  Returns 0, or HAUL_ENOMEM if a leaf's hash state could not be
 * allocated during update. */
int meta_treehash_final(struct meta_treehash *th, uint8_t digest[SHA256_LEN],
                        char hex[SHA256_HEX_LEN + 1], haul_error *err);
/* One-shot over a buffer (no allocation). */
void meta_treehash_buf(const void *data, size_t n, char hex[SHA256_HEX_LEN + 1]);

/* ---- Keys <-> relative paths ------------------------------------------------ */

/* Why path (n bytes, relative to a root) is unsafe to create under that root,
 * or NULL when it is safe: absolute, empty, "." or ".." components, empty
 * components ("a//b"), a trailing "/", NUL bytes, components over 255 bytes,
 * paths over 4095 bytes. */
const char *meta_path_check(const char *path, size_t n);

/* The key for path (n bytes, relative; "" or "." is the root directory, only
 * with is_dir and a non-empty prefix).  Writes key (NUL-terminated) and its
 * length (may be NULL).  Returns 0, or HAUL_EUSAGE when the path is unsafe
 * (meta_path_check), the prefix is not UTF-8, or the key would exceed S3's
 * 1024 bytes. */
int meta_key_from_path(const char *prefix, const char *path, size_t n, bool is_dir,
                       char key[META_KEY_MAX + 1], size_t *key_len, haul_error *err);

/* The safety check of restore: maps key (key_len bytes; may hold anything,
 * NUL included) under prefix to the relative path to create, or refuses it.
 * is_dir: the object is a directory (from its metadata); a trailing "/" is
 * then allowed, and the key equal to the prefix maps to ".".  Writes path
 * (NUL-terminated, at most 4095 bytes).  Returns 0, or HAUL_EPROTO with a
 * message quoting the key and the reason: NUL byte, not under the prefix,
 * not UTF-8, empty path, absolute path, trailing "/" on a non-directory,
 * empty, "." or ".." component, escaped NUL or "/", non-canonical escape,
 * component over 255 bytes, path over 4095 bytes. */
int meta_path_from_key(const char *key, size_t key_len, const char *prefix, bool is_dir,
                       char path[META_PATH_MAX], haul_error *err);

/* haul's own objects live under PREFIX + ".haul/" (the index marker
 * PREFIX.haul/index-id; bundles later), never a file's: restore and diff
 * skip such keys, backup refuses a top-level entry named ".haul". */
#define META_INTERNAL_DIR ".haul"
/* True when key (key_len bytes) is one of haul's own under prefix. */
bool meta_key_is_internal(const char *prefix, const char *key, size_t key_len);
/* True when path (relative to the backup root) is ".haul" or below it. */
bool meta_path_is_internal(const char *path);

#endif

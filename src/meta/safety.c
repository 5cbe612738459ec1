/* meta/safety: the restore policy (meta_restore_policy in meta.h): which
 * owner and mode bits from a bucket a restore applies, and which entries it
 * does not create. */
#include "meta/meta.h"

#define SETID (S_ISUID | S_ISGID)

/* The set-ID bits of in that may stay, given the owner that is applied. */
static mode_t setid_kept(const struct meta_posix *in, const struct meta_restore_rules *rules,
                         unsigned owner_has)
{
    mode_t keep = 0;
    if (S_ISDIR(in->mode))
        keep |= S_ISGID; /* new entries inherit the group; nothing runs with it */
    if (rules->as_root && rules->preserve_setuid) {
        if (owner_has & META_HAS_UID)
            keep |= S_ISUID;
        if (owner_has & META_HAS_GID)
            keep |= S_ISGID;
    }
    return in->mode & SETID & keep;
}

void meta_restore_policy(const struct meta_posix *in, const struct meta_restore_rules *rules,
                         struct meta_restore_plan *out)
{
    mode_t type = in->mode & S_IFMT;
    *out = (struct meta_restore_plan){.uid = (uid_t)-1, .gid = (gid_t)-1};

    if (type == S_IFCHR || type == S_IFBLK) {
        if (!rules->devices)
            out->refused = "device files are created only with --devices";
        else if (!rules->as_root)
            out->refused = "device files are created only by root";
    }

    unsigned owner = in->has & (META_HAS_UID | META_HAS_GID);
    if (owner && (!rules->as_root || rules->no_same_owner)) {
        out->dropped |= META_DROP_OWNER;
        owner = 0;
    }
    out->has = owner;
    if (owner & META_HAS_UID)
        out->uid = in->uid;
    if (owner & META_HAS_GID)
        out->gid = in->gid;

    if (!(in->has & META_HAS_MODE) || type == S_IFLNK)
        return; /* the creation mode stays; a symlink's cannot be set */
    mode_t perm = in->mode & 07777;
    mode_t setid = setid_kept(in, rules, owner);
    if ((perm & SETID) != setid) {
        perm = (perm & ~(mode_t)SETID) | setid;
        out->dropped |= META_DROP_SETID;
    }
    bool shared_dir = type == S_IFDIR && (perm & S_ISVTX); /* /tmp-like: others' write is safe */
    if ((perm & S_IWOTH) && !rules->keep_world_writable && !shared_dir &&
        type != S_IFCHR && type != S_IFBLK) {
        perm &= ~(mode_t)S_IWOTH;
        out->dropped |= META_DROP_WORLD_WRITE;
    }
    out->has |= META_HAS_MODE;
    out->mode = perm;
}

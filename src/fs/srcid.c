/* fs/srcid: a source root's identity, its record, and the decisions on
 * deleting that clone and backup share (see srcid.h). */
#include "fs/srcid.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "util/err.h"
#include "util/fdio.h"
#include "util/path.h"

static void boot_id_read(char *out, size_t cap)
{
    out[0] = '\0';
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[64];
    ssize_t n = fd_read_full(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    if (strlen(buf) < cap && !strpbrk(buf, " \t"))
        snprintf(out, cap, "%s", buf);
}

/* Does the directory hold anything but "." and ".."?  Read through a
 * descriptor of its own, so dirfd's position is not moved. */
static int dir_nonempty(int dirfd, bool *out, haul_error *err)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        int saved = errno;
        if (fd >= 0)
            close(fd);
        return err_errno(err, saved, "read the directory");
    }
    *out = false;
    struct dirent *de;
    errno = 0;
    while (!*out && (de = readdir(d)) != NULL)
        *out = strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    int saved = errno;
    closedir(d);
    return !*out && saved ? err_errno(err, saved, "read the directory") : 0;
}

int srcid_probe(int dirfd, struct srcid *out, haul_error *err)
{
    memset(out, 0, sizeof *out);
    struct stat st;
    struct statfs sf;
    if (fstat(dirfd, &st) < 0)
        return err_errno(err, errno, "stat");
    if (fstatfs(dirfd, &sf) < 0)
        return err_errno(err, errno, "statfs");
    int rc = dir_nonempty(dirfd, &out->nonempty, err);
    if (rc < 0)
        return rc;
    unsigned words[2];
    memcpy(words, &sf.f_fsid, sizeof words);
    out->dev = (uint64_t)st.st_dev;
    out->ino = (uint64_t)st.st_ino;
    out->fsid = (uint64_t)words[0] | (uint64_t)words[1] << 32;
    out->fstype = (uint64_t)(unsigned long)sf.f_type;
    boot_id_read(out->boot, sizeof out->boot);
    return 0;
}

void srcid_format(const struct srcid *id, char *out, size_t cap)
{
    snprintf(out, cap, "srcid1 dev=%" PRIu64 " ino=%" PRIu64 " fsid=%" PRIx64 " type=%" PRIx64 " nonempty=%d boot=%s",
             id->dev, id->ino, id->fsid, id->fstype, id->nonempty ? 1 : 0, id->boot[0] ? id->boot : "-");
}

int srcid_parse(const char *text, struct srcid *out)
{
    memset(out, 0, sizeof *out);
    int nonempty = -1, end = -1;
    char boot[sizeof out->boot];
    if (sscanf(text, "srcid1 dev=%" SCNu64 " ino=%" SCNu64 " fsid=%" SCNx64 " type=%" SCNx64 " nonempty=%d boot=%36s%n",
               &out->dev, &out->ino, &out->fsid, &out->fstype, &nonempty, boot, &end) != 6 ||
        end < 0 || (text[end] && text[end] != '\n') || (text[end] == '\n' && text[end + 1]) ||
        (nonempty != 0 && nonempty != 1) || out->ino == 0) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    out->nonempty = nonempty == 1;
    if (strcmp(boot, "-") != 0)
        snprintf(out->boot, sizeof out->boot, "%s", boot);
    return 0;
}

/* Device numbers mean the same only under one running kernel. */
static bool same_boot(const struct srcid *a, const struct srcid *b)
{
    return a->boot[0] && strcmp(a->boot, b->boot) == 0;
}

/* The first difference between now and then, "<what> X, <was> Y" into why;
 * false when there is none. */
static bool fs_differs(const struct srcid *now, const struct srcid *then, const char *was, char *why, size_t cap)
{
    bool boot = same_boot(now, then);
    if (now->fstype != then->fstype)
        snprintf(why, cap, "filesystem type 0x%" PRIx64 ", %s 0x%" PRIx64, now->fstype, was, then->fstype);
    else if (now->ino != then->ino)
        snprintf(why, cap, "root inode %" PRIu64 ", %s %" PRIu64, now->ino, was, then->ino);
    else if (now->fsid != then->fsid && (boot || (now->fsid && then->fsid)))
        snprintf(why, cap, "filesystem id %" PRIx64 ", %s %" PRIx64, now->fsid, was, then->fsid);
    else if (boot && now->dev != then->dev)
        snprintf(why, cap, "device %u:%u, %s %u:%u", major((dev_t)now->dev), minor((dev_t)now->dev), was,
                 major((dev_t)then->dev), minor((dev_t)then->dev));
    else
        return false;
    return true;
}

bool srcid_same_fs(const struct srcid *now, const struct srcid *then, char *why, size_t cap)
{
    return !fs_differs(now, then, "was", why, cap);
}

int srcid_delete_check(const char *src, const struct srcid *now, const struct srcid *then,
                       const struct srcid_policy *p, haul_error *err)
{
    if (!now->ino)
        return err_set(err, HAUL_EINTEGRITY,
                       "SRC %s: its identity could not be confirmed: nothing deleted (see the messages above)", src);
    if (!now->nonempty && !p->allow_empty)
        return err_set(err, HAUL_EINTEGRITY,
                       "SRC %s is empty%s (an unmounted filesystem?): deleting would empty the destination; "
                       "nothing deleted (--allow-empty-src if SRC is meant to be empty)",
                       src, then && then->nonempty ? " but was not at the last run" : "");
    char why[128];
    if (then && !p->allow_new && !srcid_same_fs(now, then, why, sizeof why))
        return err_set(err, HAUL_EINTEGRITY,
                       "SRC %s is not the filesystem recorded at the last run (%s): nothing deleted "
                       "(--allow-new-src if the source really changed; it is then recorded)",
                       src, why);
    return 0;
}

bool srcid_recordable(const struct srcid *now, const struct srcid *then, bool allow_new)
{
    char why[128];
    return now->ino && now->nonempty && (!then || allow_new || srcid_same_fs(now, then, why, sizeof why));
}

int srcid_match(const char *src, const struct srcid *mine, const struct srcid *theirs, haul_error *err)
{
    if (!theirs->ino)
        return 0;
    char why[128];
    if (theirs->nonempty && !mine->nonempty)
        return err_set(err, HAUL_EINTEGRITY,
                       "SRC %s is empty on this node but not on the coordinator's (not mounted here?)", src);
    if (fs_differs(mine, theirs, "there", why, sizeof why))
        return err_set(err, HAUL_EINTEGRITY,
                       "SRC %s on this node is not the coordinator's filesystem (here %s)", src, why);
    return 0;
}

int srcid_file_path(const char *state_dir, const char *dst_abs, char *out, size_t cap, haul_error *err)
{
    const char *parts[] = {dst_abs};
    if (path_state_file(state_dir, "clone", parts, 1, 16, ".srcid", out, cap) < 0)
        return err_errno(err, errno, "state directory %s/clone", state_dir);
    return 0;
}

int srcid_file_read(const char *path, struct srcid *out, haul_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT)
        return 0;
    if (fd < 0)
        return err_errno(err, errno, "%s", path);
    char buf[SRCID_TEXT_MAX + 2];
    ssize_t n = fd_read_full(fd, buf, sizeof buf - 1);
    int saved = errno;
    close(fd);
    if (n < 0)
        return err_errno(err, saved, "%s", path);
    buf[n] = '\0';
    if (srcid_parse(buf, out) < 0)
        return err_set(err, HAUL_EINTEGRITY, "%s: not a SRC identity record (damaged?)", path);
    return 1;
}

int srcid_file_write(const char *path, const struct srcid *id, haul_error *err)
{
    char tmp[4200], line[SRCID_TEXT_MAX + 1];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    srcid_format(id, line, sizeof line);
    size_t len = strlen(line);
    line[len++] = '\n';
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return err_errno(err, errno, "%s", tmp);
    int rc = fd_write_all(fd, line, len, 0) < 0 ? err_errno(err, errno, "%s: write", tmp) : 0;
    if (close(fd) < 0 && rc == 0)
        rc = err_errno(err, errno, "%s: close", tmp);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = err_errno(err, errno, "%s: rename", path);
    if (rc < 0)
        unlink(tmp);
    return rc;
}

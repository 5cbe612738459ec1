/* xfer/journal: one small text file per multipart upload in progress. */
#include "xfer/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/fdio.h"
#include "util/hash.h"
#include "util/path.h"
#include "xfer/xfer.h"

int journal_locate(struct journal *j, const char *state_dir, const char *endpoint,
                   const char *bucket, const char *key, const char *source_id, haul_error *err)
{
    const char *parts[] = {endpoint, bucket, key, source_id};
    if (path_state_file(state_dir, "uploads", parts, 4, SHA256_LEN, ".upload", j->path, sizeof j->path) < 0)
        return err_errno(err, errno, "state directory %s/uploads", state_dir);
    return 0;
}

int journal_load(struct journal *j)
{
    FILE *f = fopen(j->path, "r");
    if (!f)
        return -1;
    unsigned long long size, part_size;
    long long sec;
    long nsec;
    char id[sizeof j->upload_id];
    int n = fscanf(f, "haul-upload 1 %511s %llu %lld %ld %llu", id, &size, &sec, &nsec, &part_size);
    fclose(f);
    if (n != 5)
        return -1;
    snprintf(j->upload_id, sizeof j->upload_id, "%s", id);
    j->size = size;
    j->mtime.tv_sec = (time_t)sec;
    j->mtime.tv_nsec = nsec;
    j->part_size = part_size;
    return 0;
}

int journal_save(const struct journal *j, haul_error *err)
{
    if (strpbrk(j->upload_id, " \t\n"))
        return err_set(err, HAUL_EPROTO, "upload id '%s' has white space", j->upload_id);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", j->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_errno(err, errno, "journal %s", tmp);
    char line[1024];
    int n = snprintf(line, sizeof line, "haul-upload 1 %s %llu %lld %ld %llu\n", j->upload_id,
                     (unsigned long long)j->size, (long long)j->mtime.tv_sec, j->mtime.tv_nsec,
                     (unsigned long long)j->part_size);
    bool ok = write(fd, line, (size_t)n) == n && fsync(fd) == 0;
    int e = errno;
    close(fd);
    if (!ok || rename(tmp, j->path) < 0) {
        e = ok ? errno : e;
        unlink(tmp);
        return err_errno(err, e, "journal %s", j->path);
    }
    /* The new name survives a crash only once its directory is synced. */
    if (fd_sync_parent_dir(j->path) < 0)
        return err_errno(err, errno, "journal %s: syncing its directory", j->path);
    return 0;
}

void journal_remove(const struct journal *j)
{
    if (j->path[0])
        unlink(j->path);
}

int xfer_mpu_records_forget(const char *state_dir, const char *upload_id)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/uploads", state_dir);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int removed = 0;
    const struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 8 || strcmp(de->d_name + n - 7, ".upload") != 0)
            continue;
        struct journal j = {0};
        if (snprintf(j.path, sizeof j.path, "%s/%s", dir, de->d_name) >= (int)sizeof j.path)
            continue;
        if (journal_load(&j) == 0 && strcmp(j.upload_id, upload_id) == 0 && unlink(j.path) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

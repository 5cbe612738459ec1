/* xfer/journal: one small text file per multipart upload in progress. */
#include "xfer/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/hash.h"
#include "util/path.h"

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
    return 0;
}

void journal_remove(const struct journal *j)
{
    if (j->path[0])
        unlink(j->path);
}

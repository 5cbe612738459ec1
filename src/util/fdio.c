/* util/fdio: see fdio.h. */
#include "util/fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* One loop for the four: off < 0 means the file position. */
static ssize_t read_loop(int fd, char *p, size_t n, int64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = off < 0 ? read(fd, p + got, n - got) : pread(fd, p + got, n - got, (off_t)(off + (int64_t)got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static int write_loop(int fd, const char *p, size_t n, size_t slice, int64_t off)
{
    while (n) {
        size_t want = slice && n > slice ? slice : n;
        ssize_t w = off < 0 ? write(fd, p, want) : pwrite(fd, p, want, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        if (w == 0) { /* never for files; a device that takes nothing would loop forever */
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        if (off >= 0)
            off += w;
    }
    return 0;
}

ssize_t fd_read_full(int fd, void *buf, size_t n) { return read_loop(fd, buf, n, -1); }

ssize_t fd_pread_full(int fd, void *buf, size_t n, uint64_t off) { return read_loop(fd, buf, n, (int64_t)off); }

int fd_write_all(int fd, const void *buf, size_t n, size_t slice) { return write_loop(fd, buf, n, slice, -1); }

int fd_pwrite_all(int fd, const void *buf, size_t n, uint64_t off) { return write_loop(fd, buf, n, 0, (int64_t)off); }

int fd_sync_parent_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n >= sizeof dir) {
        errno = ENAMETOOLONG;
        return -1;
    }
    snprintf(dir, sizeof dir, "%.*s", (int)n, path);
    int dfd = open(!slash ? "." : n == 0 ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int rc = fsync(dfd);
    int e = errno;
    close(dfd);
    errno = e;
    return rc;
}

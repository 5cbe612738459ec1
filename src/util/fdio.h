/* util/fdio: whole reads and writes, through short counts and EINTR. */
#ifndef UTIL_FDIO_H
#define UTIL_FDIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Reads (read(2) from the current position, or pread(2) at off) until n
 * bytes or the end of the file.  Returns the bytes read (< n only at the
 * end), or -1 with errno set. */
ssize_t fd_read_full(int fd, void *buf, size_t n);
ssize_t fd_pread_full(int fd, void *buf, size_t n, uint64_t off);

/* Writes all n bytes, in write(2) calls of at most slice bytes (0: no
 * limit), or at off with pwrite(2).  Returns 0, or -1 with errno set. */
int fd_write_all(int fd, const void *buf, size_t n, size_t slice);
int fd_pwrite_all(int fd, const void *buf, size_t n, uint64_t off);

/* fsyncs the directory that holds path (after a rename or create in it, so
 * the new name survives a crash).  Returns 0, or -1 with errno set. */
int fd_sync_parent_dir(const char *path);

#endif

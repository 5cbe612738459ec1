/* xfer/fcopy: copying one local file's bytes into another, for clone.
 *
 * Data moves with copy_file_range(2) where the kernel supports it between
 * the two files (in-kernel copy, server-side on NFS 4.2, reflinks on XFS
 * and btrfs) and with pread/pwrite through a 1 MiB buffer otherwise.  A
 * sparse source (fewer blocks than its size needs) is copied segment by
 * segment with SEEK_DATA/SEEK_HOLE, so holes stay holes.  A file at least
 * `parallel_threshold` bytes long is cut into ranges of `chunk` bytes that
 * the threads of a copy pool copy at once (a parallel filesystem serves
 * ranges from different servers); the calling thread copies ranges too. */
#ifndef XFER_FCOPY_H
#define XFER_FCOPY_H

#include <haul/error.h>
#include <stdatomic.h>
#include <stdint.h>

struct xfer_copy_pool;

/* Starts threads range copiers (0: none, every copy is serial).  NULL on
 * failure (err filled). */
struct xfer_copy_pool *xfer_copy_pool_new(unsigned threads, haul_error *err);
/* Joins the threads.  NULL is a no-op.  No copy may be running. */
void xfer_copy_pool_free(struct xfer_copy_pool *pool);

struct xfer_copy_opts {
    uint64_t chunk;              /* range size for a parallel copy (default 64 MiB) */
    uint64_t parallel_threshold; /* files at least this big are copied in ranges
                                    (default 256 MiB); needs a pool */
    struct xfer_copy_pool *pool; /* NULL: serial */
    const atomic_bool *cancel;   /* stops the copy (-HAUL_ECANCELED) */
};

/* Copies size bytes of src into dst (both opened by the caller, dst empty
 * and ftruncate'd to size here first so holes need no writes).  Fails with
 * HAUL_EIO naming "read" or "write" and the errno, or when src ends before
 * size bytes ("shrank while being copied"); err does not name the files:
 * the caller prefixes the path. */
int xfer_file_copy(int src, int dst, uint64_t size, const struct xfer_copy_opts *opts, haul_error *err);

/* Copies bytes [off, off+len) of src into dst at the same offsets (dst
 * already has its full size: a sparse src's holes are skipped and stay
 * holes).  For ranges of one file copied by different processes. */
int xfer_range_copy(int src, int dst, uint64_t off, uint64_t len, haul_error *err);

#endif

/* util/bufpool: the memory budget of transfers.  A fixed number of buffers,
 * allocated on first use; taking one blocks while all are out, so a reader
 * that outruns the network waits instead of allocating more. */
#ifndef UTIL_BUFPOOL_H
#define UTIL_BUFPOOL_H

#include <stddef.h>

struct bufpool;

struct buf {
    char *data;
    size_t cap; /* bytes allocated */
    size_t len; /* bytes in use */
};

/* count buffers of at least size bytes each.  NULL when out of memory. */
struct bufpool *bufpool_new(size_t count, size_t size);
/* All buffers must have been given back. NULL is a no-op. */
void bufpool_free(struct bufpool *pool);
/* Blocks until a buffer is free; returns one with cap >= size (grown when
 * needed), len 0.  NULL when out of memory. */
struct buf *bufpool_take(struct bufpool *pool, size_t size);
/* Returns a buffer taken from pool. */
void bufpool_give(struct bufpool *pool, struct buf *buf);
/* Bytes currently allocated by the pool (for the memory-budget tests). */
size_t bufpool_bytes(struct bufpool *pool);

#endif

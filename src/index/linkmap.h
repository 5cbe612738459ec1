/* index/linkmap: hard links seen during one clone pass.  The first path of
 * each inode with several links is remembered by (st_dev, st_ino); its later
 * paths are queued and linked to the first copy once every file is in
 * place (a later path may be met by another thread before the first copy
 * is finished).  Both live in a private temporary SQLite database on disk
 * (deleted at close), so a tree with millions of hard links does not grow
 * memory.  Thread-safe: one connection behind one mutex. */
#ifndef INDEX_LINKMAP_H
#define INDEX_LINKMAP_H

#include <haul/error.h>
#include <stdint.h>

struct linkmap;

struct linkmap *linkmap_new(haul_error *err);
void linkmap_free(struct linkmap *lm); /* NULL is a no-op */

/* Looks (dev, ino) up.  Returns 0 when path is its first path (recorded
 * now), 1 when another path came first: then path is queued as a later link
 * of it.  <0 on error. */
int linkmap_add(struct linkmap *lm, uint64_t dev, uint64_t ino, const char *path, haul_error *err);

/* Calls fn(path, first_path) for every queued later link, in path order.
 * fn's nonzero return stops the loop and is returned. */
typedef int (*linkmap_fn)(const char *path, const char *first, void *ctx);
int linkmap_each(struct linkmap *lm, linkmap_fn fn, void *ctx, haul_error *err);

#endif

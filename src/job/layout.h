/* job/layout: Lustre placement hooks for clone, behind one small interface
 * and off by default.  They run Lustre's own `lfs` tool (found on PATH), so
 * haul needs no Lustre library to build:
 *   - with several metadata servers, directories created at the top of DST
 *     are spread round-robin over the MDTs (`lfs mkdir -i N`), so the
 *     namespace below them is served by all MDTs;
 *   - large files keep their stripe count and stripe size: the copy is
 *     created by `lfs setstripe -c COUNT -S SIZE` before the data goes in.
 * Nothing here can be tried without a Lustre client; the tests drive it
 * through a stand-in `lfs` that records its arguments. */
#ifndef JOB_LAYOUT_H
#define JOB_LAYOUT_H

#include <haul/error.h>

#include "job/clone.h"

/* Fails (HAUL_EUSAGE) when a hook is asked for and `lfs` is not on PATH. */
int layout_check(const struct clone_layout *l, haul_error *err);

/* Creates directory path (absolute) on MDT index with `lfs mkdir -i`. */
int layout_mkdir(const char *path, unsigned index, haul_error *err);

/* Creates the empty file dst (absolute) with src's stripe count and size. */
int layout_file_create(const char *src, const char *dst, haul_error *err);

#endif

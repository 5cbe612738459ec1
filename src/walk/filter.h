/* walk/filter: which entries of a tree a job wants.  One decision function,
 * walk_filter_match, shared by the walker (which prunes excluded
 * directories), backup and clone, so they always agree on what is selected.
 *
 * Patterns (fnmatch(3), FNM_PATHNAME, no FNM_PERIOD: '*' and '?' never match
 * '/', but do match a leading dot), anchored the way .gitignore anchors them:
 *   "*.tmp", "core"      no '/': matched against the basename, at any depth
 *   "/scratch", "a/b?"   a '/' at the start or in the middle: matched against
 *                        the whole path relative to the root (the leading '/'
 *                        is dropped), so "a/b?" matches "a/bc", not "x/a/bc"
 *   "cache/", "/tmp/"    a trailing '/': as above, but directories only
 * There is no "**".  Paths are bytes: no encoding is assumed.
 *
 * The decision, rsync-like:
 *   1. an entry matching any exclude pattern is dropped; a dropped directory is
 *      not descended, so nothing below it is seen (excludes win over includes);
 *   2. when include patterns exist, an entry that is not a directory must match
 *      one of them; directories are never dropped by includes (so files deep
 *      below still can be reached);
 *   3. size bounds apply to regular files only; mtime and atime bounds to every
 *      entry that is not a directory.
 * The root itself (path "") is always kept.
 *
 * Threads: build the filter first (the _add/_set calls are not thread-safe),
 * then walk_filter_match may run from any number of threads at once. */
#ifndef WALK_FILTER_H
#define WALK_FILTER_H

#include <haul/error.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

struct walk_filter;

/* A filter that keeps everything.  NULL when memory ran out. */
struct walk_filter *walk_filter_new(void);
/* NULL is a no-op. */
void walk_filter_free(struct walk_filter *f);

/* Adds an exclude or include glob (syntax above; the string is copied).
 * Fails with HAUL_EUSAGE for an empty pattern or "/", HAUL_ENOMEM. */
int walk_filter_exclude_add(struct walk_filter *f, const char *pattern, haul_error *err);
int walk_filter_include_add(struct walk_filter *f, const char *pattern, haul_error *err);

/* Keeps regular files with min <= st_size <= max (inclusive).  Default 0 and
 * UINT64_MAX.  Fails with HAUL_EUSAGE when min > max. */
int walk_filter_size_set(struct walk_filter *f, uint64_t min, uint64_t max, haul_error *err);

/* Keeps non-directories modified strictly after t (st_mtim > t.0). */
void walk_filter_mtime_newer_set(struct walk_filter *f, time_t t);
/* Keeps non-directories modified strictly before t (st_mtim < t.0). */
void walk_filter_mtime_older_set(struct walk_filter *f, time_t t);
/* Keeps non-directories last read strictly before t (st_atim < t.0). */
void walk_filter_atime_older_set(struct walk_filter *f, time_t t);

/* True when the entry at path (relative to the root, no leading '/',
 * NUL-terminated; "" is the root) with metadata st (as from lstat) is kept.
 * For a directory, false means: do not report it and do not descend.
 * f NULL keeps everything. */
bool walk_filter_match(const struct walk_filter *f, const char *path, const struct stat *st);

#endif

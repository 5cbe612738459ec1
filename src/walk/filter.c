/* walk/filter: include/exclude globs, size and time bounds (see filter.h). */
#include "walk/filter.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

struct rule {
    char *pattern;  /* without the leading and trailing '/' */
    bool whole;     /* matched against the whole relative path, else the basename */
    bool dir_only;  /* the pattern ended in '/' */
};

struct rules {
    struct rule *v;
    size_t n, cap;
};

struct walk_filter {
    struct rules exclude, include;
    uint64_t size_min, size_max;
    bool has_mtime_newer, has_mtime_older, has_atime_older;
    time_t mtime_newer, mtime_older, atime_older;
};

struct walk_filter *walk_filter_new(void)
{
    struct walk_filter *f = calloc(1, sizeof *f);
    if (f)
        f->size_max = UINT64_MAX;
    return f;
}

static void rules_release(struct rules *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].pattern);
    free(r->v);
}

void walk_filter_free(struct walk_filter *f)
{
    if (!f)
        return;
    rules_release(&f->exclude);
    rules_release(&f->include);
    free(f);
}

static int rule_add(struct rules *r, const char *what, const char *pattern, haul_error *err)
{
    size_t len = pattern ? strlen(pattern) : 0;
    const char *p = pattern;
    bool dir_only = false, whole = false;
    if (len && p[len - 1] == '/') {
        dir_only = true;
        len--;
    }
    if (len && p[0] == '/') {
        whole = true;
        p++;
        len--;
    }
    if (len == 0)
        return err_set(err, HAUL_EUSAGE, "%s pattern \"%s\": matches nothing (empty or \"/\")",
                       what, pattern ? pattern : "");
    if (memchr(p, '/', len))
        whole = true; /* a '/' in the middle anchors it, as in .gitignore */
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 8;
        struct rule *v = realloc(r->v, cap * sizeof *v);
        if (!v)
            return err_set(err, HAUL_ENOMEM, "%s pattern \"%s\": out of memory", what, pattern);
        r->v = v;
        r->cap = cap;
    }
    char *copy = strndup(p, len);
    if (!copy)
        return err_set(err, HAUL_ENOMEM, "%s pattern \"%s\": out of memory", what, pattern);
    r->v[r->n++] = (struct rule){.pattern = copy, .whole = whole, .dir_only = dir_only};
    return 0;
}

int walk_filter_exclude_add(struct walk_filter *f, const char *pattern, haul_error *err)
{
    return rule_add(&f->exclude, "exclude", pattern, err);
}

int walk_filter_include_add(struct walk_filter *f, const char *pattern, haul_error *err)
{
    return rule_add(&f->include, "include", pattern, err);
}

int walk_filter_size_set(struct walk_filter *f, uint64_t min, uint64_t max, haul_error *err)
{
    if (min > max)
        return err_set(err, HAUL_EUSAGE, "size filter: minimum %llu is above maximum %llu",
                       (unsigned long long)min, (unsigned long long)max);
    f->size_min = min;
    f->size_max = max;
    return 0;
}

void walk_filter_mtime_newer_set(struct walk_filter *f, time_t t)
{
    f->has_mtime_newer = true;
    f->mtime_newer = t;
}

void walk_filter_mtime_older_set(struct walk_filter *f, time_t t)
{
    f->has_mtime_older = true;
    f->mtime_older = t;
}

void walk_filter_atime_older_set(struct walk_filter *f, time_t t)
{
    f->has_atime_older = true;
    f->atime_older = t;
}

static bool rules_match(const struct rules *r, const char *path, const char *base, bool is_dir)
{
    for (size_t i = 0; i < r->n; i++) {
        const struct rule *ru = &r->v[i];
        if (ru->dir_only && !is_dir)
            continue;
        if (fnmatch(ru->pattern, ru->whole ? path : base, FNM_PATHNAME) == 0)
            return true;
    }
    return false;
}

/* ts strictly after t.0 */
static bool after(const struct timespec *ts, time_t t)
{
    return ts->tv_sec > t || (ts->tv_sec == t && ts->tv_nsec > 0);
}

bool walk_filter_match(const struct walk_filter *f, const char *path, const struct stat *st)
{
    if (!f || path[0] == '\0')
        return true;
    bool is_dir = S_ISDIR(st->st_mode);
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (rules_match(&f->exclude, path, base, is_dir))
        return false;
    if (is_dir)
        return true;
    if (f->include.n && !rules_match(&f->include, path, base, false))
        return false;
    if (S_ISREG(st->st_mode) &&
        ((uint64_t)st->st_size < f->size_min || (uint64_t)st->st_size > f->size_max))
        return false;
    if (f->has_mtime_newer && !after(&st->st_mtim, f->mtime_newer))
        return false;
    if (f->has_mtime_older && st->st_mtim.tv_sec >= f->mtime_older)
        return false;
    if (f->has_atime_older && st->st_atim.tv_sec >= f->atime_older)
        return false;
    return true;
}

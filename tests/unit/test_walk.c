/* Unit tests for walk/: the parallel walker and its filters, on real trees
 * made under $TMPDIR (or /tmp) and removed afterwards.  Every test compares
 * exact outcomes: the sorted list of reported entries, error counts and
 * paths.  The permission and mount tests run in a forked child (dropped uid,
 * private mount namespace) and are skipped with a message when that is not
 * possible. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "walk/walk.h"

/* ---- temporary trees ---- */

/* Trees made by the running test; teardown removes what a failed assertion
 * left behind (a 200,000-file tree must not stay in /dev/shm). */
static char *live_tmp[4];

/* $TMPDIR, else /dev/shm (tmpfs: the 200,000-file tree takes seconds there,
 * minutes on a busy disk), else /tmp. */
static char *tmp_make(void)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : "/tmp";
    char tmpl[PATH_MAX];
    snprintf(tmpl, sizeof tmpl, "%s/haul-walk-XXXXXX", dir);
    assert_non_null(mkdtemp(tmpl));
    assert_int_equal(chmod(tmpl, 0755), 0); /* the dropped-uid test walks it */
    char *p = strdup(tmpl);
    assert_non_null(p);
    for (size_t i = 0; i < sizeof live_tmp / sizeof *live_tmp; i++) {
        if (!live_tmp[i]) {
            live_tmp[i] = p;
            return p;
        }
    }
    fail_msg("more than %zu temporary trees at once", sizeof live_tmp / sizeof *live_tmp);
    return NULL;
}

/* rm -rf relative to dirfd, by fds only (paths may exceed PATH_MAX). */
static void rm_at(int at, const char *name)
{
    struct stat st;
    if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        fchmodat(at, name, 0700, 0);
        int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            DIR *d = fdopendir(fd);
            if (d) {
                struct dirent *de;
                while ((de = readdir(d))) {
                    if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        rm_at(dirfd(d), de->d_name);
                }
                closedir(d);
            } else {
                close(fd);
            }
        }
        unlinkat(at, name, AT_REMOVEDIR);
    } else {
        unlinkat(at, name, 0);
    }
}

static void tmp_remove(char *base)
{
    for (size_t i = 0; i < sizeof live_tmp / sizeof *live_tmp; i++) {
        if (live_tmp[i] == base)
            live_tmp[i] = NULL;
    }
    rm_at(AT_FDCWD, base);
    struct stat st;
    int gone = lstat(base, &st) != 0;
    free(base);
    assert_true(gone);
}

static int tmp_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof live_tmp / sizeof *live_tmp; i++) {
        if (live_tmp[i]) {
            rm_at(AT_FDCWD, live_tmp[i]);
            free(live_tmp[i]);
            live_tmp[i] = NULL;
        }
    }
    return 0;
}

static void mk_dir(const char *base, const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", base, rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void mk_file(const char *base, const char *rel, off_t size)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", base, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, size), 0);
    close(fd);
}

static void mk_link(const char *base, const char *rel, const char *target)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", base, rel);
    assert_int_equal(symlink(target, p), 0);
}

static void set_times(const char *base, const char *rel, time_t atime, time_t mtime, long mtime_ns)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", base, rel);
    struct timespec ts[2] = {{atime, 0}, {mtime, mtime_ns}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static int fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* ---- recording what the walker reports ---- */

struct rec {
    size_t root;
    enum walk_type type;
    char *path;
    size_t len;
    unsigned long seq; /* global order of callbacks */
    bool descend;
    ino_t ino;
    nlink_t nlink;
    char *target; /* symlinks */
};

struct recs {
    struct rec *v;
    size_t n, cap;
};

struct fail_rec {
    size_t root;
    char *path;
    char op[16];
    int errnum;
    char *msg;
};

struct collect {
    pthread_mutex_t lock; /* guards the lists and bad_msg */
    struct recs entries, done;
    struct fail_rec *fails;
    size_t n_fails, cap_fails;
    atomic_ulong seq;
    atomic_ulong count; /* entry callbacks so far */
    atomic_int bad;     /* consistency checks that failed inside callbacks */
    char bad_msg[512];
    bool check_open;    /* open each entry through dirfd + name */
    const atomic_bool *no_done_after; /* a dir_done once this is true is a failure */
    bool keep;          /* record entries (off for the big tree) */
    /* Optional behaviour per entry, after recording. */
    enum walk_action (*hook)(struct collect *c, const struct walk_entry *e, unsigned long n);
    void *hook_ctx;
};

static void collect_init(struct collect *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    c->keep = true;
}

static void recs_free(struct recs *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].path);
        free(r->v[i].target);
    }
    free(r->v);
    memset(r, 0, sizeof *r);
}

static void collect_release(struct collect *c)
{
    recs_free(&c->entries);
    recs_free(&c->done);
    for (size_t i = 0; i < c->n_fails; i++) {
        free(c->fails[i].path);
        free(c->fails[i].msg);
    }
    free(c->fails);
    pthread_mutex_destroy(&c->lock);
}

static void collect_reset(struct collect *c)
{
    bool check_open = c->check_open;
    collect_release(c);
    collect_init(c);
    c->check_open = check_open;
}

static void bad(struct collect *c, const char *what, const struct walk_entry *e)
{
    pthread_mutex_lock(&c->lock);
    if (atomic_fetch_add(&c->bad, 1) == 0)
        snprintf(c->bad_msg, sizeof c->bad_msg, "%s (path \"%s\")", what, e->path);
    pthread_mutex_unlock(&c->lock);
}

static void recs_add(struct collect *c, struct recs *r, const struct walk_entry *e,
                     unsigned long seq)
{
    char *p = malloc(e->path_len + 1);
    assert_non_null(p);
    memcpy(p, e->path, e->path_len + 1);
    char *target = e->link_target ? strdup(e->link_target) : NULL;
    pthread_mutex_lock(&c->lock);
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
        assert_non_null(r->v);
    }
    r->v[r->n++] = (struct rec){.root = e->root_index, .type = e->type, .path = p,
                                .len = e->path_len, .seq = seq, .descend = e->descend,
                                .ino = e->st->st_ino, .nlink = e->st->st_nlink,
                                .target = target};
    pthread_mutex_unlock(&c->lock);
}

/* Everything an entry promises, checked on every entry. */
static void entry_check(struct collect *c, const struct walk_entry *e)
{
    if (strlen(e->path) != e->path_len)
        bad(c, "path_len is not strlen(path)", e);
    if (e->path_len == 0) {
        if (strcmp(e->name, ".") || e->depth != 0 || e->type != WALK_DIR)
            bad(c, "root entry: name, depth or type", e);
    } else {
        const char *slash = strrchr(e->path, '/');
        unsigned depth = 1;
        for (const char *p = e->path; *p; p++)
            depth += *p == '/';
        if (e->name != (slash ? slash + 1 : e->path))
            bad(c, "name is not the last component of path", e);
        if (e->depth != depth)
            bad(c, "depth", e);
    }
    mode_t m = e->st->st_mode;
    enum walk_type want = S_ISREG(m) ? WALK_FILE : S_ISDIR(m) ? WALK_DIR
                        : S_ISLNK(m) ? WALK_SYMLINK : WALK_OTHER;
    if (e->type != want)
        bad(c, "type does not match st_mode", e);
    if (e->type == WALK_SYMLINK) {
        if (!e->link_target || strlen(e->link_target) != e->link_len ||
            (off_t)e->link_len != e->st->st_size)
            bad(c, "symlink target", e);
    } else if (e->link_target) {
        bad(c, "link_target on a non-symlink", e);
    }
    if (e->type != WALK_DIR && e->descend)
        bad(c, "descend on a non-directory", e);
    if (c->check_open && e->type != WALK_SYMLINK) {
        /* The caller's way in: openat(dirfd, name), never following. */
        int fd = openat(e->dirfd, e->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0 || st.st_ino != e->st->st_ino ||
            st.st_dev != e->st->st_dev)
            bad(c, "openat(dirfd, name) does not give the entry", e);
        if (fd >= 0)
            close(fd);
    }
}

static enum walk_action on_entry(const struct walk_entry *e, void *ctx)
{
    struct collect *c = ctx;
    unsigned long seq = atomic_fetch_add(&c->seq, 1);
    unsigned long n = atomic_fetch_add(&c->count, 1) + 1;
    entry_check(c, e);
    if (c->keep)
        recs_add(c, &c->entries, e, seq);
    return c->hook ? c->hook(c, e, n) : WALK_CONTINUE;
}

static enum walk_action on_done(const struct walk_entry *e, void *ctx)
{
    struct collect *c = ctx;
    unsigned long seq = atomic_fetch_add(&c->seq, 1);
    if (e->dirfd != -1 || e->type != WALK_DIR || !S_ISDIR(e->st->st_mode))
        bad(c, "dir_done entry", e);
    if (c->no_done_after && atomic_load(c->no_done_after))
        bad(c, "dir_done after the walk was canceled", e);
    if (c->keep)
        recs_add(c, &c->done, e, seq);
    return WALK_CONTINUE;
}

static void on_error(const struct walk_failure *f, void *ctx)
{
    struct collect *c = ctx;
    pthread_mutex_lock(&c->lock);
    if (c->n_fails == c->cap_fails) {
        c->cap_fails = c->cap_fails ? 2 * c->cap_fails : 16;
        c->fails = realloc(c->fails, c->cap_fails * sizeof *c->fails);
        assert_non_null(c->fails);
    }
    struct fail_rec *r = &c->fails[c->n_fails++];
    r->root = f->root_index;
    r->path = strdup(f->path);
    snprintf(r->op, sizeof r->op, "%s", f->op);
    r->errnum = f->errnum;
    r->msg = strdup(f->msg);
    pthread_mutex_unlock(&c->lock);
}

static struct walk_opts opts_for(struct collect *c, unsigned threads)
{
    return (struct walk_opts){.threads = threads, .entry = on_entry, .dir_done = on_done,
                              .error = on_error, .ctx = c};
}

/* Walks and checks what every walk must give: no fd left open, no failed
 * per-entry check, stats that agree with the callbacks. */
static int walk_check(const char *const *roots, size_t n, const struct walk_opts *o,
                      struct collect *c, struct walk_stats *st, haul_error *err)
{
    int fds = fd_count();
    int rc = walk_run(roots, n, o, st, err);
    assert_int_equal(fd_count(), fds);
    if (atomic_load(&c->bad))
        fail_msg("%d entry checks failed, first: %s", atomic_load(&c->bad), c->bad_msg);
    assert_int_equal(st->dirs + st->files + st->symlinks + st->others, atomic_load(&c->count));
    assert_int_equal(st->errors, c->n_fails);
    return rc;
}

static int walk1(const char *root, const struct walk_opts *o, struct collect *c,
                 struct walk_stats *st)
{
    haul_error err = {0};
    int rc = walk_check(&root, 1, o, c, st, &err);
    if (rc)
        print_message("walk: %s\n", err.msg);
    return rc;
}

/* "type path" for comparisons. */
static char *line_of(enum walk_type type, const char *path)
{
    size_t n = strlen(walk_type_name(type)) + strlen(path) + 2;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s %s", walk_type_name(type), path);
    return s;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void print_escaped(const char *tag, const char *s)
{
    char out[1024];
    size_t o = 0;
    for (; *s && o + 5 < sizeof out; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20 || ch >= 0x7f)
            o += (size_t)snprintf(out + o, sizeof out - o, "\\x%02x", ch);
        else
            out[o++] = (char)ch;
    }
    out[o] = '\0';
    print_message("  %s \"%s\"\n", tag, out);
}

/* The entries reported for root, sorted, equal want (any order) exactly:
 * nothing missing, nothing extra, nothing twice. */
static void assert_entries(struct collect *c, size_t root, const char *const *want, size_t n_want)
{
    char **got = calloc(c->entries.n + 1, sizeof *got);
    char **exp = calloc(n_want + 1, sizeof *exp);
    assert_true(got && exp);
    size_t n_got = 0;
    for (size_t i = 0; i < c->entries.n; i++) {
        if (c->entries.v[i].root == root)
            got[n_got++] = line_of(c->entries.v[i].type, c->entries.v[i].path);
    }
    for (size_t i = 0; i < n_want; i++)
        exp[i] = strdup(want[i]);
    qsort(got, n_got, sizeof *got, cmp_str);
    qsort(exp, n_want, sizeof *exp, cmp_str);
    bool same = n_got == n_want;
    for (size_t i = 0; same && i < n_got; i++)
        same = strcmp(got[i], exp[i]) == 0;
    if (!same) {
        print_message("root %zu: got %zu entries, want %zu\n", root, n_got, n_want);
        for (size_t i = 0; i < n_got; i++)
            print_escaped("got ", got[i]);
        for (size_t i = 0; i < n_want; i++)
            print_escaped("want", exp[i]);
    }
    for (size_t i = 0; i < n_got; i++)
        free(got[i]);
    for (size_t i = 0; i < n_want; i++)
        free(exp[i]);
    free(got);
    free(exp);
    assert_true(same);
}

static const struct rec *find_rec(const struct recs *r, size_t root, const char *path)
{
    for (size_t i = 0; i < r->n; i++) {
        if (r->v[i].root == root && strcmp(r->v[i].path, path) == 0)
            return &r->v[i];
    }
    return NULL;
}

static bool is_below(const char *dir, size_t dir_len, const char *path)
{
    if (dir_len == 0)
        return path[0] != '\0';
    return strncmp(path, dir, dir_len) == 0 && path[dir_len] == '/';
}

/* Pre-order: a directory's entry comes before everything below it.
 * Post-order: its dir_done comes after everything below it (entries and
 * dir_done of subdirectories), exactly once per descended directory. */
static void assert_order(struct collect *c)
{
    size_t descended = 0;
    for (size_t i = 0; i < c->entries.n; i++) {
        const struct rec *d = &c->entries.v[i];
        if (d->type != WALK_DIR)
            continue;
        for (size_t j = 0; j < c->entries.n; j++) {
            const struct rec *e = &c->entries.v[j];
            if (e->root == d->root && is_below(d->path, d->len, e->path))
                assert_true(d->seq < e->seq);
        }
        descended += d->descend;
    }
    assert_int_equal(c->done.n, descended);
    for (size_t i = 0; i < c->done.n; i++) {
        const struct rec *d = &c->done.v[i];
        for (size_t j = 0; j < c->done.n; j++)
            assert_true(j == i || d->root != c->done.v[j].root ||
                        strcmp(d->path, c->done.v[j].path) != 0);
        for (size_t j = 0; j < c->entries.n; j++) {
            const struct rec *e = &c->entries.v[j];
            if (e->root == d->root && (is_below(d->path, d->len, e->path) ||
                                       strcmp(d->path, e->path) == 0))
                assert_true(e->seq < d->seq);
        }
        for (size_t j = 0; j < c->done.n; j++) {
            const struct rec *e = &c->done.v[j];
            if (e->root == d->root && is_below(d->path, d->len, e->path))
                assert_true(e->seq < d->seq);
        }
    }
}

/* ---- filters, as a pure function ---- */

static struct stat st_of(mode_t type, off_t size, time_t mtime, long mtime_ns, time_t atime)
{
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_mode = type | 0644;
    st.st_size = size;
    st.st_mtim.tv_sec = mtime;
    st.st_mtim.tv_nsec = mtime_ns;
    st.st_atim.tv_sec = atime;
    return st;
}

static void test_filter_rules(void **state)
{
    (void)state;
    haul_error err = {0};
    struct stat f = st_of(S_IFREG, 5, 100, 0, 100), d = st_of(S_IFDIR, 4096, 100, 0, 100);
    struct stat l = st_of(S_IFLNK, 7, 100, 0, 100);

    assert_true(walk_filter_match(NULL, "anything/at/all", &f));
    struct walk_filter *w = walk_filter_new();
    assert_non_null(w);
    assert_true(walk_filter_match(w, "x", &f)); /* an empty filter keeps everything */

    assert_int_equal(walk_filter_exclude_add(w, "*.tmp", &err), 0);    /* basename, any depth */
    assert_int_equal(walk_filter_exclude_add(w, "/top", &err), 0);     /* anchored */
    assert_int_equal(walk_filter_exclude_add(w, "src/gen?", &err), 0); /* '/' inside: anchored */
    assert_int_equal(walk_filter_exclude_add(w, "cache/", &err), 0);   /* directories only */
    assert_int_equal(walk_filter_exclude_add(w, "lib/*.o", &err), 0);
    assert_false(walk_filter_match(w, "x.tmp", &f));
    assert_false(walk_filter_match(w, "a/b/c/x.tmp", &f));
    assert_false(walk_filter_match(w, "a/.x.tmp", &f)); /* no FNM_PERIOD */
    assert_false(walk_filter_match(w, "a/b.tmp", &d));  /* directories too */
    assert_true(walk_filter_match(w, "x.tmp.keep", &f));
    assert_false(walk_filter_match(w, "top", &d));
    assert_true(walk_filter_match(w, "a/top", &d));
    assert_false(walk_filter_match(w, "src/gen1", &f));
    assert_true(walk_filter_match(w, "x/src/gen1", &f));
    assert_false(walk_filter_match(w, "cache", &d));
    assert_false(walk_filter_match(w, "deep/er/cache", &d));
    assert_true(walk_filter_match(w, "deep/er/cache", &f)); /* a file named cache */
    assert_false(walk_filter_match(w, "lib/a.o", &f));
    assert_true(walk_filter_match(w, "lib/sub/a.o", &f)); /* FNM_PATHNAME: '*' stops at '/' */
    assert_true(walk_filter_match(w, "", &d));            /* the root is always kept */
    walk_filter_free(w);

    /* Includes select files; directories stay (unless excluded); excludes win. */
    w = walk_filter_new();
    assert_int_equal(walk_filter_include_add(w, "*.c", &err), 0);
    assert_int_equal(walk_filter_include_add(w, "/docs/*.md", &err), 0);
    assert_int_equal(walk_filter_exclude_add(w, "skip*", &err), 0);
    assert_true(walk_filter_match(w, "a/b/x.c", &f));
    assert_false(walk_filter_match(w, "a/b/x.h", &f));
    assert_false(walk_filter_match(w, "a/b/x.h", &l)); /* symlinks are entries like files */
    assert_true(walk_filter_match(w, "a/b", &d));
    assert_true(walk_filter_match(w, "docs/r.md", &f));
    assert_false(walk_filter_match(w, "x/docs/r.md", &f));
    assert_false(walk_filter_match(w, "skip.c", &f));
    assert_false(walk_filter_match(w, "skipdir", &d));
    walk_filter_free(w);

    /* Size: regular files only, inclusive. */
    w = walk_filter_new();
    assert_int_equal(walk_filter_size_set(w, 10, 100, &err), 0);
    struct stat s9 = st_of(S_IFREG, 9, 0, 0, 0), s10 = st_of(S_IFREG, 10, 0, 0, 0);
    struct stat s100 = st_of(S_IFREG, 100, 0, 0, 0), s101 = st_of(S_IFREG, 101, 0, 0, 0);
    assert_false(walk_filter_match(w, "f", &s9));
    assert_true(walk_filter_match(w, "f", &s10));
    assert_true(walk_filter_match(w, "f", &s100));
    assert_false(walk_filter_match(w, "f", &s101));
    assert_true(walk_filter_match(w, "l", &l)); /* a 7-byte symlink is kept */
    assert_true(walk_filter_match(w, "d", &d));
    walk_filter_free(w);

    /* Times: strict bounds, nanoseconds count for "newer". */
    w = walk_filter_new();
    walk_filter_mtime_newer_set(w, 1000);
    walk_filter_mtime_older_set(w, 2000);
    struct stat t1000 = st_of(S_IFREG, 0, 1000, 0, 0), t1000n = st_of(S_IFREG, 0, 1000, 1, 0);
    struct stat t1999 = st_of(S_IFREG, 0, 1999, 999999999, 0);
    struct stat t2000 = st_of(S_IFREG, 0, 2000, 0, 0);
    struct stat dold = st_of(S_IFDIR, 0, 5, 0, 0);
    struct stat lnew = st_of(S_IFLNK, 3, 3000, 0, 0);
    assert_false(walk_filter_match(w, "f", &t1000));
    assert_true(walk_filter_match(w, "f", &t1000n));
    assert_true(walk_filter_match(w, "f", &t1999));
    assert_false(walk_filter_match(w, "f", &t2000));
    assert_true(walk_filter_match(w, "d", &dold)); /* directories are not dated out */
    assert_false(walk_filter_match(w, "l", &lnew));
    walk_filter_atime_older_set(w, 500);
    struct stat a499 = st_of(S_IFREG, 0, 1500, 0, 499), a500 = st_of(S_IFREG, 0, 1500, 0, 500);
    assert_true(walk_filter_match(w, "f", &a499));
    assert_false(walk_filter_match(w, "f", &a500));
    walk_filter_free(w);
    walk_filter_free(NULL);
}

static void test_filter_usage_errors(void **state)
{
    (void)state;
    struct walk_filter *w = walk_filter_new();
    haul_error e1 = {0}, e2 = {0}, e3 = {0}, e4 = {0};
    assert_int_equal(walk_filter_exclude_add(w, "", &e1), -HAUL_EUSAGE);
    assert_int_equal(e1.code, HAUL_EUSAGE);
    assert_non_null(strstr(e1.msg, "exclude pattern"));
    assert_int_equal(walk_filter_include_add(w, "/", &e2), -HAUL_EUSAGE);
    assert_non_null(strstr(e2.msg, "include pattern \"/\""));
    assert_int_equal(walk_filter_exclude_add(w, "//", &e3), -HAUL_EUSAGE);
    assert_int_equal(walk_filter_size_set(w, 11, 10, &e4), -HAUL_EUSAGE);
    assert_non_null(strstr(e4.msg, "minimum 11 is above maximum 10"));
    walk_filter_free(w);
}

/* ---- the main tree ---- */

#define UNI "r\xc3\xa9sum\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac" /* résumé 日本 */
#define BAD "\xff\xfe"                                      /* not UTF-8 */

static void make_main_tree(const char *b)
{
    mk_dir(b, "a");
    mk_dir(b, "a/b");
    mk_file(b, "a/b/c.txt", 5);
    mk_dir(b, "a/b/deep");
    mk_file(b, "a/b/deep/d.bin", 3000);
    mk_dir(b, "empty");
    mk_file(b, "file.txt", 10);
    mk_file(b, "hard1", 7);
    char p1[PATH_MAX], p2[PATH_MAX];
    snprintf(p1, sizeof p1, "%s/hard1", b);
    snprintf(p2, sizeof p2, "%s/a/hard2", b);
    assert_int_equal(link(p1, p2), 0);
    mk_link(b, "link_file", "file.txt");
    mk_link(b, "link_dir", "a");
    mk_link(b, "a/link_up", "..");
    mk_link(b, "dangling", "nowhere/x");
    mk_link(b, "loop", "loop");
    mk_link(b, "badlink", BAD "/target");
    mk_dir(b, UNI);
    mk_file(b, UNI "/\xe2\x9c\x93.txt", 1);
    mk_file(b, BAD, 2);
    mk_dir(b, BAD " dir");
    mk_file(b, BAD " dir/x\x01y", 0);
    mk_file(b, "new\nline", 0);
    mk_file(b, ".hidden", 0);
    mk_dir(b, "-dash");
    char f[PATH_MAX];
    snprintf(f, sizeof f, "%s/fifo", b);
    assert_int_equal(mkfifo(f, 0644), 0);
}

static const char *const main_tree[] = {
    "dir ",
    "dir a",
    "dir a/b",
    "file a/b/c.txt",
    "dir a/b/deep",
    "file a/b/deep/d.bin",
    "file a/hard2",
    "symlink a/link_up",
    "dir empty",
    "file file.txt",
    "file hard1",
    "symlink link_file",
    "symlink link_dir",
    "symlink dangling",
    "symlink loop",
    "symlink badlink",
    "dir " UNI,
    "file " UNI "/\xe2\x9c\x93.txt",
    "file " BAD,
    "dir " BAD " dir",
    "file " BAD " dir/x\x01y",
    "file new\nline",
    "file .hidden",
    "dir -dash",
    "other fifo",
};
#define N_MAIN (sizeof main_tree / sizeof *main_tree)

static void test_tree_every_entry_once(void **state)
{
    (void)state;
    char *b = tmp_make();
    make_main_tree(b);
    const unsigned threads[] = {1, 8};
    for (size_t k = 0; k < 2; k++) {
        struct collect c;
        collect_init(&c);
        c.check_open = true;
        struct walk_opts o = opts_for(&c, threads[k]);
        struct walk_stats st;
        assert_int_equal(walk1(b, &o, &c, &st), 0);
        assert_entries(&c, 0, main_tree, N_MAIN);
        assert_order(&c);
        assert_int_equal(st.errors, 0);
        assert_int_equal(st.dirs, 8);
        assert_int_equal(st.files, 10);
        assert_int_equal(st.symlinks, 6);
        assert_int_equal(st.others, 1);
        assert_int_equal(st.bytes, 5 + 3000 + 7 + 10 + 7 + 1 + 2);
        assert_int_equal(st.filtered, 0);
        assert_int_equal(st.reopens, 0);
        assert_true(st.max_pending >= 1);

        /* Hard links are two entries with one inode. */
        const struct rec *h1 = find_rec(&c.entries, 0, "hard1");
        const struct rec *h2 = find_rec(&c.entries, 0, "a/hard2");
        assert_true(h1 && h2);
        assert_int_equal(h1->ino, h2->ino);
        assert_int_equal(h1->nlink, 2);
        /* Symlinks carry their target bytes and are never followed. */
        assert_string_equal(find_rec(&c.entries, 0, "link_file")->target, "file.txt");
        assert_string_equal(find_rec(&c.entries, 0, "link_dir")->target, "a");
        assert_string_equal(find_rec(&c.entries, 0, "a/link_up")->target, "..");
        assert_string_equal(find_rec(&c.entries, 0, "dangling")->target, "nowhere/x");
        assert_string_equal(find_rec(&c.entries, 0, "loop")->target, "loop");
        assert_string_equal(find_rec(&c.entries, 0, "badlink")->target, BAD "/target");
        assert_null(find_rec(&c.entries, 0, "file.txt")->target);
        /* Every directory was read, the empty one too, the root last. */
        assert_int_equal(c.done.n, 8);
        assert_non_null(find_rec(&c.done, 0, "empty"));
        const struct rec *root_done = find_rec(&c.done, 0, "");
        assert_non_null(root_done);
        for (size_t i = 0; i < c.done.n; i++)
            assert_true(c.done.v[i].seq <= root_done->seq);
        collect_release(&c);
    }
    tmp_remove(b);
}

/* stat_dirs_only: the same entries and types, files without their sizes
 * (not stat'ed), directories and symlinks with their full metadata. */
static void test_stat_dirs_only(void **state)
{
    (void)state;
    char *b = tmp_make();
    make_main_tree(b);
    struct collect c;
    collect_init(&c);
    struct walk_opts o = opts_for(&c, 4);
    o.stat_dirs_only = true;
    struct walk_stats st;
    assert_int_equal(walk1(b, &o, &c, &st), 0);
    assert_entries(&c, 0, main_tree, N_MAIN);
    assert_int_equal(st.files, 10);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(find_rec(&c.entries, 0, "hard1")->nlink, 0);
    assert_string_equal(find_rec(&c.entries, 0, "link_file")->target, "file.txt");
    assert_int_equal(c.done.n, 8);
    collect_release(&c);
    tmp_remove(b);
}

/* A tree of 6 x 6 directories of 8 files, with a symlink up in each top
 * directory; the list of entry lines it must give. */
static size_t make_grid(const char *b, char ***lines)
{
    size_t n = 0, cap = 512;
    char **v = calloc(cap, sizeof *v);
    assert_non_null(v);
    v[n++] = strdup("dir ");
    char rel[256], line[300];
    for (int i = 0; i < 6; i++) {
        snprintf(rel, sizeof rel, "d%d", i);
        mk_dir(b, rel);
        snprintf(line, sizeof line, "dir %s", rel);
        v[n++] = strdup(line);
        snprintf(rel, sizeof rel, "d%d/up", i);
        mk_link(b, rel, "..");
        snprintf(line, sizeof line, "symlink %s", rel);
        v[n++] = strdup(line);
        for (int j = 0; j < 6; j++) {
            snprintf(rel, sizeof rel, "d%d/e%d", i, j);
            mk_dir(b, rel);
            snprintf(line, sizeof line, "dir %s", rel);
            v[n++] = strdup(line);
            for (int k = 0; k < 8; k++) {
                snprintf(rel, sizeof rel, "d%d/e%d/f%d", i, j, k);
                mk_file(b, rel, k);
                snprintf(line, sizeof line, "file %s", rel);
                v[n++] = strdup(line);
            }
        }
    }
    *lines = v;
    return n;
}

static void lines_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void test_thread_counts_same_set(void **state)
{
    (void)state;
    char *b = tmp_make();
    char **want;
    size_t n_want = make_grid(b, &want);
    assert_int_equal(n_want, 1 + 6 * 2 + 36 + 288);
    const unsigned threads[] = {1, 2, 3, 8, 0};
    for (size_t k = 0; k < sizeof threads / sizeof *threads; k++) {
        struct collect c;
        collect_init(&c);
        struct walk_opts o = opts_for(&c, threads[k]);
        struct walk_stats st;
        assert_int_equal(walk1(b, &o, &c, &st), 0);
        assert_entries(&c, 0, (const char *const *)want, n_want);
        assert_order(&c);
        assert_int_equal(st.dirs, 43);
        assert_int_equal(st.files, 288);
        assert_int_equal(st.symlinks, 6);
        assert_int_equal(st.bytes, 36 * (0 + 1 + 2 + 3 + 4 + 5 + 6 + 7));
        assert_int_equal(c.done.n, 43);
        collect_release(&c);
    }
    lines_free(want, n_want);
    tmp_remove(b);
}

/* ---- filters in a walk ---- */

static void make_filter_tree(const char *b)
{
    mk_file(b, "keep.c", 1);
    mk_file(b, "skip.tmp", 1);
    mk_dir(b, "sub");
    mk_file(b, "sub/x.tmp", 1);
    mk_file(b, "sub/y.c", 1);
    mk_dir(b, "build");
    mk_file(b, "build/z.c", 1);
    mk_dir(b, "build/deeper");
    mk_file(b, "build/deeper/w.c", 1);
    mk_dir(b, "docs");
    mk_file(b, "docs/readme.md", 1);
    mk_dir(b, "cache");
    mk_file(b, "cache/blob.c", 1);
    mk_dir(b, "notdir");
    mk_file(b, "notdir/cache", 1);
    mk_dir(b, "a");
    mk_dir(b, "a/b");
    mk_file(b, "a/b/anchored.c", 1);
    mk_dir(b, "x");
    mk_dir(b, "x/a");
    mk_dir(b, "x/a/b");
    mk_file(b, "x/a/b/free.c", 1);
}

static void test_filter_exclude_walk(void **state)
{
    (void)state;
    char *b = tmp_make();
    make_filter_tree(b);
    haul_error err = {0};
    struct walk_filter *f = walk_filter_new();
    assert_int_equal(walk_filter_exclude_add(f, "*.tmp", &err), 0);
    assert_int_equal(walk_filter_exclude_add(f, "build", &err), 0);
    assert_int_equal(walk_filter_exclude_add(f, "cache/", &err), 0);
    assert_int_equal(walk_filter_exclude_add(f, "/a/b", &err), 0);
    static const char *const want[] = {
        "dir ", "file keep.c", "dir sub", "file sub/y.c", "dir docs", "file docs/readme.md",
        "dir notdir", "file notdir/cache", "dir a", "dir x", "dir x/a", "dir x/a/b",
        "file x/a/b/free.c",
    };
    for (unsigned threads = 1; threads <= 4; threads += 3) {
        struct collect c;
        collect_init(&c);
        struct walk_opts o = opts_for(&c, threads);
        o.filter = f;
        struct walk_stats st;
        assert_int_equal(walk1(b, &o, &c, &st), 0);
        assert_entries(&c, 0, want, sizeof want / sizeof *want);
        /* skip.tmp, sub/x.tmp, build, cache, a/b: the excluded directories'
         * contents (which no pattern matches) were never seen. */
        assert_int_equal(st.filtered, 5);
        assert_int_equal(st.errors, 0);
        assert_null(find_rec(&c.done, 0, "build"));
        collect_release(&c);
    }
    walk_filter_free(f);
    tmp_remove(b);
}

static void test_filter_include_walk(void **state)
{
    (void)state;
    char *b = tmp_make();
    make_filter_tree(b);
    haul_error err = {0};
    struct walk_filter *f = walk_filter_new();
    assert_int_equal(walk_filter_include_add(f, "*.c", &err), 0);
    assert_int_equal(walk_filter_exclude_add(f, "build/", &err), 0);
    static const char *const want[] = {
        "dir ", "file keep.c", "dir sub", "file sub/y.c", "dir docs", "dir cache",
        "file cache/blob.c", "dir notdir", "dir a", "dir a/b", "file a/b/anchored.c", "dir x",
        "dir x/a", "dir x/a/b", "file x/a/b/free.c",
    };
    struct collect c;
    collect_init(&c);
    struct walk_opts o = opts_for(&c, 3);
    o.filter = f;
    struct walk_stats st;
    assert_int_equal(walk1(b, &o, &c, &st), 0);
    assert_entries(&c, 0, want, sizeof want / sizeof *want);
    /* skip.tmp, sub/x.tmp, build, docs/readme.md, notdir/cache */
    assert_int_equal(st.filtered, 5);
    collect_release(&c);
    walk_filter_free(f);
    tmp_remove(b);
}

static void test_filter_size_walk(void **state)
{
    (void)state;
    char *b = tmp_make();
    mk_file(b, "s0", 0);
    mk_file(b, "s9", 9);
    mk_file(b, "s10", 10);
    mk_file(b, "s100", 100);
    mk_file(b, "s101", 101);
    mk_dir(b, "d");
    mk_file(b, "d/s50", 50);
    mk_file(b, "d/big", 1 << 20);
    mk_link(b, "link", "s0"); /* 2 bytes: symlinks are not sized out */
    haul_error err = {0};
    struct walk_filter *f = walk_filter_new();
    assert_int_equal(walk_filter_size_set(f, 10, 100, &err), 0);
    static const char *const want[] = {
        "dir ", "file s10", "file s100", "dir d", "file d/s50", "symlink link",
    };
    struct collect c;
    collect_init(&c);
    struct walk_opts o = opts_for(&c, 2);
    o.filter = f;
    struct walk_stats st;
    assert_int_equal(walk1(b, &o, &c, &st), 0);
    assert_entries(&c, 0, want, sizeof want / sizeof *want);
    assert_int_equal(st.filtered, 4);
    assert_int_equal(st.bytes, 160);
    collect_release(&c);
    walk_filter_free(f);
    tmp_remove(b);
}

static void test_filter_time_walk(void **state)
{
    (void)state;
    char *b = tmp_make();
    mk_dir(b, "old_dir");
    mk_file(b, "old_dir/new", 0);
    mk_file(b, "old", 0);
    mk_file(b, "mid", 0);
    mk_file(b, "mid_ns", 0);
    mk_file(b, "new", 0);
    set_times(b, "old_dir/new", 1000000000, 1700000000, 0);
    set_times(b, "old", 1000000000, 1000000000, 0);
    set_times(b, "mid", 1700000000, 1500000000, 0);
    set_times(b, "mid_ns", 1000000000, 1500000000, 5);
    set_times(b, "new", 1000000000, 1700000000, 0);
    set_times(b, "old_dir", 1000000000, 1000000000, 0);

    struct {
        bool newer, older, atime;
        time_t t_newer, t_older, t_atime;
        const char *want[8];
        size_t n;
    } cases[] = {
        {true, false, false, 1500000000, 0, 0,
         {"dir ", "dir old_dir", "file old_dir/new", "file mid_ns", "file new"}, 5},
        {false, true, false, 0, 1600000000, 0,
         {"dir ", "dir old_dir", "file old", "file mid", "file mid_ns"}, 5},
        {true, true, false, 1500000000, 1600000000, 0, {"dir ", "dir old_dir", "file mid_ns"}, 3},
        {false, false, true, 0, 0, 1500000000,
         {"dir ", "dir old_dir", "file old_dir/new", "file old", "file mid_ns", "file new"}, 6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct walk_filter *f = walk_filter_new();
        if (cases[i].newer)
            walk_filter_mtime_newer_set(f, cases[i].t_newer);
        if (cases[i].older)
            walk_filter_mtime_older_set(f, cases[i].t_older);
        if (cases[i].atime)
            walk_filter_atime_older_set(f, cases[i].t_atime);
        struct collect c;
        collect_init(&c);
        struct walk_opts o = opts_for(&c, 2);
        o.filter = f;
        struct walk_stats st;
        assert_int_equal(walk1(b, &o, &c, &st), 0);
        assert_entries(&c, 0, cases[i].want, cases[i].n);
        assert_int_equal(st.filtered, 7 - cases[i].n);
        collect_release(&c);
        walk_filter_free(f);
    }
    tmp_remove(b);
}

/* ---- failures the walk goes past ---- */

struct vanish {
    atomic_bool struck;
};

static enum walk_action vanish_hook(struct collect *c, const struct walk_entry *e, unsigned long n)
{
    (void)n;
    struct vanish *v = c->hook_ctx;
    if (strncmp(e->path, "v/", 2) == 0 && !atomic_exchange(&v->struck, true)) {
        /* The rest of v/ is already read into the stream: they vanish
         * between readdir and stat. */
        char name[8];
        for (int i = 1; i <= 5; i++) {
            snprintf(name, sizeof name, "f%d", i);
            if (strcmp(name, e->name) != 0)
                assert_int_equal(unlinkat(e->dirfd, name, 0), 0);
        }
    }
    if (strcmp(e->path, "go\nne") == 0)
        rm_at(e->dirfd, e->name); /* reported, then removed before it is read */
    return WALK_CONTINUE;
}

static void test_vanished_entries(void **state)
{
    (void)state;
    const unsigned threads[] = {1, 4};
    for (size_t k = 0; k < 2; k++) {
        char *b = tmp_make();
        mk_dir(b, "v");
        for (int i = 1; i <= 5; i++) {
            char rel[16];
            snprintf(rel, sizeof rel, "v/f%d", i);
            mk_file(b, rel, 1);
        }
        mk_dir(b, "go\nne");
        mk_file(b, "go\nne/x", 1);
        mk_dir(b, "go\nne/y");
        mk_file(b, "keep", 1);
        struct vanish v = {0};
        struct collect c;
        collect_init(&c);
        c.hook = vanish_hook;
        c.hook_ctx = &v;
        struct walk_opts o = opts_for(&c, threads[k]);
        struct walk_stats st;
        assert_int_equal(walk1(b, &o, &c, &st), 0);
        assert_int_equal(st.errors, 5);
        assert_int_equal(c.entries.n, 5); /* "", v, one v/f*, go\nne, keep */
        assert_non_null(find_rec(&c.entries, 0, "go\nne"));
        assert_non_null(find_rec(&c.entries, 0, "keep"));
        const char *seen = NULL;
        for (size_t i = 0; i < c.entries.n; i++) {
            if (strncmp(c.entries.v[i].path, "v/f", 3) == 0)
                seen = c.entries.v[i].path;
        }
        assert_non_null(seen);
        unsigned mask = 1u << (seen[3] - '0');
        int opened = 0;
        for (size_t i = 0; i < c.n_fails; i++) {
            const struct fail_rec *f = &c.fails[i];
            assert_int_equal(f->errnum, ENOENT);
            assert_int_equal(f->root, 0);
            if (strcmp(f->path, "go\nne") == 0) {
                assert_string_equal(f->op, "open");
                char want[PATH_MAX + 64]; /* one printable line */
                snprintf(want, sizeof want, "%s/go\\x0ane: open: No such file or directory", b);
                assert_string_equal(f->msg, want);
                opened++;
            } else {
                assert_string_equal(f->op, "stat");
                assert_int_equal(strncmp(f->path, "v/f", 3), 0);
                unsigned bit = 1u << (f->path[3] - '0');
                assert_int_equal(mask & bit, 0); /* each once */
                mask |= bit;
            }
        }
        assert_int_equal(opened, 1);
        assert_int_equal(mask, 0x3e); /* f1..f5: one seen, four vanished */
        /* The removed directory was never read: no dir_done for it. */
        assert_null(find_rec(&c.done, 0, "go\nne"));
        assert_int_equal(c.done.n, 2);
        collect_release(&c);
        tmp_remove(b);
    }
}

/* Runs as a uid that permissions apply to; returns 0 or a failure code. */
static int unreadable_check(const char *b)
{
    struct collect c;
    collect_init(&c);
    struct walk_opts o = opts_for(&c, 2);
    struct walk_stats st;
    haul_error err = {0};
    const char *root = b;
    int rc = walk_run(&root, 1, &o, &st, &err), code = 0;
    int open_locked = 0, stat_noexec = 0;
    for (size_t i = 0; i < c.n_fails; i++) {
        const struct fail_rec *f = &c.fails[i];
        if (!strcmp(f->path, "locked") && !strcmp(f->op, "open") && f->errnum == EACCES)
            open_locked++;
        if ((!strcmp(f->path, "noexec/n1") || !strcmp(f->path, "noexec/n2")) &&
            !strcmp(f->op, "stat") && f->errnum == EACCES)
            stat_noexec++;
    }
    if (rc != 0)
        code = 10;
    else if (st.errors != 3 || c.n_fails != 3)
        code = 11;
    else if (open_locked != 1 || stat_noexec != 2)
        code = 12;
    else if (c.entries.n != 4 || !find_rec(&c.entries, 0, "locked") ||
             !find_rec(&c.entries, 0, "noexec") || !find_rec(&c.entries, 0, "ok.txt"))
        code = 13;
    else if (c.done.n != 2 || find_rec(&c.done, 0, "locked")) /* "" and noexec were read */
        code = 14;
    else if (atomic_load(&c.bad))
        code = 15;
    if (code) {
        fprintf(stderr, "unreadable_check: code %d, rc %d, %zu entries\n", code, rc, c.entries.n);
        for (size_t i = 0; i < c.n_fails; i++)
            fprintf(stderr, "  fail %s [%s, errnum %d]\n", c.fails[i].msg, c.fails[i].op,
                    c.fails[i].errnum);
    }
    collect_release(&c);
    return code;
}

static void test_unreadable_directory(void **state)
{
    (void)state;
    char *b = tmp_make();
    mk_file(b, "ok.txt", 1);
    mk_dir(b, "locked");
    mk_file(b, "locked/secret", 1);
    mk_dir(b, "noexec");
    mk_file(b, "noexec/n1", 1);
    mk_file(b, "noexec/n2", 1);
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/locked", b);
    assert_int_equal(chmod(p, 0), 0);
    snprintf(p, sizeof p, "%s/noexec", b);
    assert_int_equal(chmod(p, 0644), 0); /* listable, entries cannot be stat'ed */
    int code;
    if (geteuid() != 0) {
        code = unreadable_check(b);
    } else {
        /* root reads anything: drop to nobody in a child. */
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0)
                _exit(77);
            _exit(unreadable_check(b));
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        code = WEXITSTATUS(status);
    }
    tmp_remove(b);
    if (code == 77) {
        print_message("cannot drop to uid 65534 as root: skipping the permission test\n");
        skip();
    }
    assert_int_equal(code, 0);
}

/* ---- stopping ---- */

static void make_wide(const char *b, int dirs, int files)
{
    char rel[64];
    for (int i = 0; i < dirs; i++) {
        snprintf(rel, sizeof rel, "d%02d", i);
        mk_dir(b, rel);
        for (int j = 0; j < files; j++) {
            snprintf(rel, sizeof rel, "d%02d/f%03d", i, j);
            mk_file(b, rel, 0);
        }
    }
}

struct stopper {
    atomic_bool flag;
    unsigned long at;
    bool by_return;
    /* for the other-thread case */
    pthread_mutex_t lock;
    pthread_cond_t cv;
    bool reached;
    bool block;
};

static enum walk_action stop_hook(struct collect *c, const struct walk_entry *e, unsigned long n)
{
    (void)e;
    struct stopper *s = c->hook_ctx;
    if (s->block && n >= s->at) {
        pthread_mutex_lock(&s->lock);
        s->reached = true;
        pthread_cond_broadcast(&s->cv);
        while (!atomic_load(&s->flag))
            pthread_cond_wait(&s->cv, &s->lock);
        pthread_mutex_unlock(&s->lock);
        return WALK_CONTINUE;
    }
    if (n == s->at) {
        if (s->by_return)
            return WALK_STOP;
        atomic_store(&s->flag, true);
    }
    return WALK_CONTINUE;
}

static void test_cancel_flag_from_callback(void **state)
{
    (void)state;
    char *b = tmp_make();
    make_wide(b, 20, 50);
    const unsigned threads[] = {1, 8};
    for (size_t k = 0; k < 2; k++) {
        struct stopper s = {.at = 100};
        struct collect c;
        collect_init(&c);
        c.hook = stop_hook;
        c.hook_ctx = &s;
        if (threads[k] == 1)
            c.no_done_after = &s.flag;
        struct walk_opts o = opts_for(&c, threads[k]);
        o.cancel = &s.flag;
        struct walk_stats st;
        haul_error err = {0};
        const char *root = b;
        assert_int_equal(walk_check(&root, 1, &o, &c, &st, &err), -HAUL_ECANCELED);
        assert_int_equal(err.code, HAUL_ECANCELED);
        unsigned long n = atomic_load(&c.count);
        if (threads[k] == 1) {
            assert_int_equal(n, 100);
            assert_non_null(strstr(err.msg, ": canceled after 100 entries"));
        } else {
            /* Each other thread may finish the one entry it had started. */
            assert_in_range(n, 100, 100 + threads[k] - 1);
        }
        collect_release(&c);
    }
    tmp_remove(b);
}

static void test_cancel_by_return(void **state)
{
    (void)state;
    char *b = tmp_make();
    make_wide(b, 5, 20);
    struct stopper s = {.at = 10, .by_return = true};
    struct collect c;
    collect_init(&c);
    c.hook = stop_hook;
    c.hook_ctx = &s;
    struct walk_opts o = opts_for(&c, 1);
    struct walk_stats st;
    haul_error err = {0};
    const char *root = b;
    assert_int_equal(walk_check(&root, 1, &o, &c, &st, &err), -HAUL_ECANCELED);
    assert_int_equal(atomic_load(&c.count), 10);
    assert_non_null(strstr(err.msg, "stopped by a callback after 10 entries"));
    collect_release(&c);
    tmp_remove(b);
}

static void *cancel_thread(void *arg)
{
    struct stopper *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->reached)
        pthread_cond_wait(&s->cv, &s->lock);
    atomic_store(&s->flag, true);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void test_cancel_from_other_thread(void **state)
{
    (void)state;
    char *b = tmp_make();
    make_wide(b, 10, 30);
    struct stopper s = {.at = 50, .block = true};
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cv, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_thread, &s), 0);
    struct collect c;
    collect_init(&c);
    c.hook = stop_hook;
    c.hook_ctx = &s;
    struct walk_opts o = opts_for(&c, 4);
    o.cancel = &s.flag;
    struct walk_stats st;
    haul_error err = {0};
    const char *root = b;
    assert_int_equal(walk_check(&root, 1, &o, &c, &st, &err), -HAUL_ECANCELED);
    pthread_join(th, NULL);
    /* Entries from 50 on wait for the flag: at most one per walker thread. */
    assert_in_range(atomic_load(&c.count), 50, 49 + 4);
    collect_release(&c);
    pthread_mutex_destroy(&s.lock);
    pthread_cond_destroy(&s.cv);
    tmp_remove(b);
}

static void test_cancel_before_start(void **state)
{
    (void)state;
    char *b = tmp_make();
    make_wide(b, 3, 3);
    atomic_bool flag = true;
    struct collect c;
    collect_init(&c);
    struct walk_opts o = opts_for(&c, 3);
    o.cancel = &flag;
    struct walk_stats st;
    haul_error err = {0};
    const char *root = b;
    assert_int_equal(walk_check(&root, 1, &o, &c, &st, &err), -HAUL_ECANCELED);
    assert_int_equal(atomic_load(&c.count), 0);
    assert_int_equal(c.done.n, 0);
    collect_release(&c);
    tmp_remove(b);
}

static enum walk_action prune_hook(struct collect *c, const struct walk_entry *e, unsigned long n)
{
    (void)n;
    const char *which = c->hook_ctx;
    return strcmp(e->path, which) == 0 ? WALK_PRUNE : WALK_CONTINUE;
}

static void test_prune_from_callback(void **state)
{
    (void)state;
    char *b = tmp_make();
    mk_dir(b, "a");
    mk_dir(b, "a/b");
    mk_file(b, "a/f", 0);
    mk_file(b, "top", 0);
    struct collect c;
    collect_init(&c);
    c.hook = prune_hook;
    c.hook_ctx = (void *)"a";
    struct walk_opts o = opts_for(&c, 2);
    struct walk_stats st;
    assert_int_equal(walk1(b, &o, &c, &st), 0);
    static const char *const want[] = {"dir ", "dir a", "file top"};
    assert_entries(&c, 0, want, 3);
    assert_int_equal(c.done.n, 1); /* the root; a was not read */
    assert_non_null(find_rec(&c.done, 0, ""));

    /* Pruning the root reports it alone. */
    collect_reset(&c);
    c.hook = prune_hook;
    c.hook_ctx = (void *)"";
    o = opts_for(&c, 2);
    assert_int_equal(walk1(b, &o, &c, &st), 0);
    static const char *const root_only[] = {"dir "};
    assert_entries(&c, 0, root_only, 1);
    assert_int_equal(c.done.n, 0);
    collect_release(&c);
    tmp_remove(b);
}

/* ---- roots ---- */

static void test_several_roots(void **state)
{
    (void)state;
    char *b1 = tmp_make(), *b2 = tmp_make();
    mk_dir(b1, "a");
    mk_file(b1, "a/f1", 1);
    mk_file(b1, "x", 2);
    mk_dir(b2, "b");
    mk_dir(b2, "b/c");
    mk_file(b2, "y", 3);
    char via_link[PATH_MAX];
    snprintf(via_link, sizeof via_link, "%s/to_b2", b1);
    assert_int_equal(symlink(b2, via_link), 0);
    static const char *const want1[] = {"dir ", "dir a", "file a/f1", "file x", "symlink to_b2"};
    static const char *const want2[] = {"dir ", "dir b", "dir b/c", "file y"};
    const char *roots[] = {b1, b2, via_link}; /* a symlink naming a root is followed */
    for (unsigned threads = 1; threads <= 3; threads += 2) {
        struct collect c;
        collect_init(&c);
        c.check_open = true;
        struct walk_opts o = opts_for(&c, threads);
        struct walk_stats st;
        haul_error err = {0};
        assert_int_equal(walk_check(roots, 3, &o, &c, &st, &err), 0);
        assert_entries(&c, 0, want1, 5);
        assert_entries(&c, 1, want2, 4);
        assert_entries(&c, 2, want2, 4);
        assert_int_equal(c.entries.n, 13);
        assert_int_equal(st.dirs, 1 + 1 + 2 * 3);
        assert_int_equal(c.done.n, 8);
        assert_order(&c);
        collect_release(&c);
    }
    tmp_remove(b1);
    tmp_remove(b2);
}

static void test_bad_roots_and_usage(void **state)
{
    (void)state;
    char *b = tmp_make();
    mk_file(b, "file", 0);
    char missing[PATH_MAX], file[PATH_MAX];
    snprintf(missing, sizeof missing, "%s/missing", b);
    snprintf(file, sizeof file, "%s/file", b);
    struct collect c;
    collect_init(&c);
    struct walk_opts o = opts_for(&c, 2);
    struct walk_stats st;

    /* A root that cannot be opened fails the walk before anything is reported. */
    haul_error e1 = {0};
    const char *r1[] = {b, missing};
    assert_int_equal(walk_check(r1, 2, &o, &c, &st, &e1), -HAUL_ENOTFOUND);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "walk %s: No such file or directory", missing);
    assert_string_equal(e1.msg, want);
    haul_error e2 = {0};
    const char *r2[] = {file};
    assert_int_equal(walk_check(r2, 1, &o, &c, &st, &e2), -HAUL_EIO);
    assert_non_null(strstr(e2.msg, "Not a directory"));
    assert_int_equal(atomic_load(&c.count), 0);

    haul_error e3 = {0}, e4 = {0}, e5 = {0};
    assert_int_equal(walk_run(r1, 0, &o, &st, &e3), -HAUL_EUSAGE);
    struct walk_opts none = {0};
    assert_int_equal(walk_run(r1, 1, &none, &st, &e4), -HAUL_EUSAGE);
    o.threads = 5000;
    assert_int_equal(walk_run(r1, 1, &o, NULL, &e5), -HAUL_EUSAGE);
    assert_non_null(strstr(e5.msg, "5000 threads"));
    assert_int_equal(atomic_load(&c.count), 0);
    collect_release(&c);
    tmp_remove(b);
}

/* ---- deep trees and the fd budget ---- */

#define DEEP 300

static void test_deep_tree_fd_budget(void **state)
{
    (void)state;
    char *b = tmp_make();
    /* 300 levels of 26-byte names: relative paths of ~8 KB, over PATH_MAX. */
    int fd = open(b, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(fd >= 0);
    for (int i = 0; i < DEEP; i++) {
        char name[64];
        snprintf(name, sizeof name, "level_%03d_of_a_deep_chain", i);
        assert_int_equal(mkdirat(fd, name, 0755), 0);
        int nfd = openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(nfd >= 0);
        int ffd = openat(nfd, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(ffd >= 0);
        close(ffd);
        close(fd);
        fd = nfd;
    }
    close(fd);
    const size_t budgets[] = {4, 1, 0};
    const unsigned threads[] = {1, 4, 2};
    for (size_t k = 0; k < 3; k++) {
        struct collect c;
        collect_init(&c);
        struct walk_opts o = opts_for(&c, threads[k]);
        o.max_open_dirs = budgets[k];
        struct walk_stats st;
        assert_int_equal(walk1(b, &o, &c, &st), 0);
        assert_int_equal(st.errors, 0);
        assert_int_equal(st.dirs, DEEP + 1);
        assert_int_equal(st.files, DEEP);
        size_t longest = 0;
        for (size_t i = 0; i < c.entries.n; i++)
            longest = c.entries.v[i].len > longest ? c.entries.v[i].len : longest;
        assert_true(longest > PATH_MAX);
        if (budgets[k])
            assert_true(st.reopens > 0); /* beyond the budget, reopened from an ancestor */
        else
            assert_int_equal(st.reopens, 0); /* the default budget holds 300 levels */
        /* dir_done deepest first: a chain finishes bottom-up. */
        assert_int_equal(c.done.n, DEEP + 1);
        for (size_t i = 0; i < c.done.n; i++) {
            for (size_t j = 0; j < c.done.n; j++) {
                if (c.done.v[i].len > c.done.v[j].len)
                    assert_true(c.done.v[i].seq < c.done.v[j].seq);
            }
        }
        collect_release(&c);
    }
    tmp_remove(b);
}

static enum walk_action move_hook(struct collect *c, const struct walk_entry *e, unsigned long n)
{
    (void)n;
    const char *b = c->hook_ctx;
    if (strcmp(e->path, "a/b/c/d") == 0) {
        /* a/b is no longer the directory the walker opened */
        char from[PATH_MAX], to[PATH_MAX];
        snprintf(from, sizeof from, "%s/a/b", b);
        snprintf(to, sizeof to, "%s/a/b2", b);
        assert_int_equal(rename(from, to), 0);
        mk_dir(b, "a/b");
        mk_dir(b, "a/b/c");
        mk_dir(b, "a/b/c/d");
    }
    return WALK_CONTINUE;
}

static void test_moved_during_reopen(void **state)
{
    (void)state;
    char *b = tmp_make();
    mk_dir(b, "a");
    mk_dir(b, "a/b");
    mk_dir(b, "a/b/c");
    mk_dir(b, "a/b/c/d");
    mk_file(b, "a/b/c/d/e", 0);
    struct collect c;
    collect_init(&c);
    c.hook = move_hook;
    c.hook_ctx = b;
    struct walk_opts o = opts_for(&c, 1);
    o.max_open_dirs = 1; /* a keeps its fd, b and c do not: d is reopened through b */
    struct walk_stats st;
    assert_int_equal(walk1(b, &o, &c, &st), 0);
    static const char *const want[] = {"dir ", "dir a", "dir a/b", "dir a/b/c", "dir a/b/c/d"};
    assert_entries(&c, 0, want, 5);
    assert_int_equal(st.errors, 1);
    assert_string_equal(c.fails[0].path, "a/b");
    assert_string_equal(c.fails[0].op, "reopen");
    assert_int_equal(c.fails[0].errnum, 0);
    assert_non_null(strstr(c.fails[0].msg, "/a/b: reopen: directory was moved or replaced"));
    assert_int_equal(c.done.n, 4); /* d was never read */
    assert_null(find_rec(&c.done, 0, "a/b/c/d"));
    collect_release(&c);
    tmp_remove(b);
}

/* ---- filesystems: one_filesystem and a bind-mount loop ---- */

static int mounts_check(const char *b, bool one_fs)
{
    struct collect c;
    collect_init(&c);
    struct walk_opts o = opts_for(&c, 2);
    o.one_filesystem = one_fs;
    struct walk_stats st;
    haul_error err = {0};
    const char *root = b;
    int rc = walk_run(&root, 1, &o, &st, &err), code = 0;
    const struct rec *mnt = find_rec(&c.entries, 0, "mnt");
    const struct rec *loop = find_rec(&c.entries, 0, "a/loop");
    size_t want_n = one_fs ? 5 : 7; /* "", top.txt, a, a/loop, mnt (+ mnt/inner.txt, mnt/sub) */
    if (rc != 0)
        code = 20;
    else if (c.entries.n != want_n || !mnt || !loop || !find_rec(&c.entries, 0, "top.txt"))
        code = 21;
    else if (mnt->descend == one_fs || !loop->descend)
        code = 22;
    else if (one_fs == !!find_rec(&c.entries, 0, "mnt/inner.txt"))
        code = 23;
    /* a/loop shows the root again: refused as its own ancestor. */
    else if (c.n_fails != 1 || strcmp(c.fails[0].path, "a/loop") || c.fails[0].errnum != ELOOP)
        code = 24;
    else if (find_rec(&c.done, 0, "a/loop") || (one_fs && find_rec(&c.done, 0, "mnt")))
        code = 25;
    else if (atomic_load(&c.bad))
        code = 26;
    if (code) {
        fprintf(stderr, "mounts_check(one_fs=%d): code %d, %zu entries, %zu failures\n", one_fs,
                code, c.entries.n, c.n_fails);
        for (size_t i = 0; i < c.entries.n; i++)
            fprintf(stderr, "  %s %s\n", walk_type_name(c.entries.v[i].type), c.entries.v[i].path);
        for (size_t i = 0; i < c.n_fails; i++)
            fprintf(stderr, "  fail %s\n", c.fails[i].msg);
    }
    collect_release(&c);
    return code;
}

static int mounts_child(const char *b)
{
    char mnt[PATH_MAX], loop[PATH_MAX], p[PATH_MAX];
    snprintf(mnt, sizeof mnt, "%s/mnt", b);
    snprintf(loop, sizeof loop, "%s/a/loop", b);
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0 || mount(b, loop, NULL, MS_BIND, NULL) != 0)
        return 77;
    snprintf(p, sizeof p, "%s/inner.txt", mnt);
    int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return 30;
    close(fd);
    snprintf(p, sizeof p, "%s/sub", mnt);
    if (mkdir(p, 0755) != 0)
        return 31;
    int code = mounts_check(b, true);
    return code ? code : mounts_check(b, false);
}

static void test_one_filesystem_and_bind_loop(void **state)
{
    (void)state;
    char *b = tmp_make();
    mk_file(b, "top.txt", 0);
    mk_dir(b, "a");
    mk_dir(b, "a/loop");
    mk_dir(b, "mnt");
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(mounts_child(b)); /* the mounts die with the child's namespace */
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    tmp_remove(b);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) {
        print_message("no private mount namespace here (needs CAP_SYS_ADMIN): skipping\n");
        skip();
    }
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- 200,000 files, bounded state ---- */

/* A "Key:   123 kB" line of /proc/self/status, in KiB. */
static long proc_status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    assert_non_null(f);
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, strlen(key)) == 0)
            v = strtol(line + strlen(key), NULL, 10);
    }
    fclose(f);
    assert_true(v >= 0);
    return v;
}

/* Resets the peak RSS (VmHWM) to the current RSS and returns that. */
static long peak_rss_reset(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "5", 1), 1);
    close(fd);
    return proc_status_kib("VmRSS:");
}

#define BIG_TOP 20
#define BIG_MID 20
#define BIG_FILES 500

static void test_big_tree_bounded(void **state)
{
    (void)state;
    char *b = tmp_make();
    int root = open(b, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(root >= 0);
    char name[32];
    for (int i = 0; i < BIG_TOP; i++) {
        snprintf(name, sizeof name, "t%02d", i);
        assert_int_equal(mkdirat(root, name, 0755), 0);
        int tfd = openat(root, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(tfd >= 0);
        for (int j = 0; j < BIG_MID; j++) {
            snprintf(name, sizeof name, "m%02d", j);
            assert_int_equal(mkdirat(tfd, name, 0755), 0);
            int mfd = openat(tfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            assert_true(mfd >= 0);
            for (int k = 0; k < BIG_FILES; k++) {
                snprintf(name, sizeof name, "file-%04d", k);
                int fd = openat(mfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                assert_true(fd >= 0);
                close(fd);
            }
            close(mfd);
        }
        close(tfd);
    }
    close(root);

    struct collect c;
    collect_init(&c);
    c.keep = false; /* count only: the test itself must not hold the tree */
    struct walk_opts o = opts_for(&c, 8);
    struct walk_stats st;
    long rss_before = peak_rss_reset();
    assert_int_equal(walk1(b, &o, &c, &st), 0);
    long growth = proc_status_kib("VmHWM:") - rss_before;
    assert_int_equal(st.files, BIG_TOP * BIG_MID * BIG_FILES);
    assert_int_equal(st.dirs, 1 + BIG_TOP + BIG_TOP * BIG_MID);
    assert_int_equal(st.errors, 0);
    /* Pending directories: at most the root's children plus, per thread, the
     * children of the one directory it is in (+1 each in flight), never
     * anything like the 200,421 entries. */
    print_message("200,000 files: peak pending directories %llu, peak RSS growth %ld KiB\n",
                  (unsigned long long)st.max_pending, growth);
    assert_true(st.max_pending <= BIG_TOP + 8 * BIG_MID + 8);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    /* The peak may grow by the threads' stacks and buffers, not by the tree
     * (sanitizers' shadow memory and quarantine make this meaningless there). */
    assert_true(growth < 8 * 1024); /* holding 200,000 paths would take more */
#endif
    collect_release(&c);
    tmp_remove(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_filter_rules, tmp_teardown),
        cmocka_unit_test_teardown(test_filter_usage_errors, tmp_teardown),
        cmocka_unit_test_teardown(test_tree_every_entry_once, tmp_teardown),
        cmocka_unit_test_teardown(test_stat_dirs_only, tmp_teardown),
        cmocka_unit_test_teardown(test_thread_counts_same_set, tmp_teardown),
        cmocka_unit_test_teardown(test_filter_exclude_walk, tmp_teardown),
        cmocka_unit_test_teardown(test_filter_include_walk, tmp_teardown),
        cmocka_unit_test_teardown(test_filter_size_walk, tmp_teardown),
        cmocka_unit_test_teardown(test_filter_time_walk, tmp_teardown),
        cmocka_unit_test_teardown(test_vanished_entries, tmp_teardown),
        cmocka_unit_test_teardown(test_unreadable_directory, tmp_teardown),
        cmocka_unit_test_teardown(test_cancel_flag_from_callback, tmp_teardown),
        cmocka_unit_test_teardown(test_cancel_by_return, tmp_teardown),
        cmocka_unit_test_teardown(test_cancel_from_other_thread, tmp_teardown),
        cmocka_unit_test_teardown(test_cancel_before_start, tmp_teardown),
        cmocka_unit_test_teardown(test_prune_from_callback, tmp_teardown),
        cmocka_unit_test_teardown(test_several_roots, tmp_teardown),
        cmocka_unit_test_teardown(test_bad_roots_and_usage, tmp_teardown),
        cmocka_unit_test_teardown(test_deep_tree_fd_budget, tmp_teardown),
        cmocka_unit_test_teardown(test_moved_during_reopen, tmp_teardown),
        cmocka_unit_test_teardown(test_one_filesystem_and_bind_loop, tmp_teardown),
        cmocka_unit_test_teardown(test_big_tree_bounded, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* walk/walk: the parallel directory walker (see walk.h for the design).
 *
 * Lifetime of a directory: the reader of its parent finds it, reports it and
 * pushes a dir_node on its own stack.  A thread pops (or steals) the node,
 * opens it relative to its parent's fd and reads it, reporting each entry
 * and pushing each subdirectory.  Every node holds a reference on its
 * parent until its own subtree is done, so when a node's count reaches zero
 * its whole subtree has been reported: that is where dir_done runs and the
 * kept fd is closed.  The walk ends when the last root's count reaches zero. */
#include "walk/walk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "util/err.h"
#include "util/log.h"

#define DEFAULT_THREADS 8
#define MAX_THREADS 1024
#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

/* What an opened directory needs.  A pending directory is only a name, so
 * a directory with a million subdirectories costs a million names (about
 * 80 bytes each with the node), not a million paths and stats. */
struct dir_seen {
    struct stat st; /* fstat of the open directory */
    size_t path_len;
    char path[]; /* relative to the root, NUL-terminated; "" for a root */
};

/* A directory that is pending, being read, or whose subtree is unfinished. */
struct dir_node {
    atomic_size_t refs;      /* 1 until read (or dropped) + 1 per child node alive */
    struct dir_node *parent; /* NULL for a root; we hold one of its refs */
    struct dir_seen *seen;   /* NULL while pending; set by the thread that opens it */
    int fd;                  /* open while read; stays open until the subtree is done if keep_fd */
    bool keep_fd;            /* set by the reader before the first child is pushed, then fixed:
                              * children may open themselves relative to fd */
    bool fd_decided;         /* the reader already chose keep_fd (reader only) */
    bool read;               /* the listing was read: dir_done is due */
    unsigned depth;
    size_t root_index;
    char name[]; /* its name in the parent directory; "" for a root */
};

/* One thread's stack of pending directories: a ring, the owner pushes and
 * pops at the top (newest), thieves take from the bottom (oldest). */
struct deque {
    pthread_mutex_t lock; /* guards v, head, len, cap */
    struct dir_node **v;  /* cap is 0 or a power of two */
    size_t head, len, cap;
};

struct walk;

struct worker {
    struct walk *w;
    unsigned id;
    struct deque dq;
    /* Scratch owned by this thread alone: */
    char *path; /* relative path of the entry being looked at */
    size_t path_cap;
    char *link; /* symlink target */
    size_t link_cap;
    struct dir_node **chain; /* ancestors without a kept fd, for reopening */
    size_t chain_cap;
    struct walk_stats stats; /* this thread's counts, summed at the end */
};

struct root {
    const char *path; /* as given */
    dev_t dev;
};

struct walk {
    const struct walk_opts *opts;
    struct root *roots;
    struct worker *workers;
    unsigned n_workers;
    size_t max_open;
    atomic_long queued;          /* nodes in the deques; never below the true number */
    atomic_ulong max_pending;    /* peak of queued */
    atomic_uint idle;            /* threads waiting on work_cv */
    atomic_size_t open_fds;      /* kept fds of non-root directories, at most max_open */
    atomic_size_t roots_left;    /* roots whose subtree is not finished */
    atomic_bool stop;            /* canceled or a callback said WALK_STOP */
    atomic_bool stopped_by_callback;
    pthread_mutex_t lock;        /* guards done; idle threads wait on work_cv under it */
    pthread_cond_t work_cv;
    bool done;
};

const char *walk_type_name(enum walk_type type)
{
    switch (type) {
    case WALK_FILE: return "file";
    case WALK_DIR: return "dir";
    case WALK_SYMLINK: return "symlink";
    case WALK_OTHER: return "other";
    }
    return "?";
}

static enum walk_type type_of(mode_t mode)
{
    if (S_ISREG(mode))
        return WALK_FILE;
    if (S_ISDIR(mode))
        return WALK_DIR;
    if (S_ISLNK(mode))
        return WALK_SYMLINK;
    return WALK_OTHER;
}

/* Grows *buf to at least need bytes.  0 or ENOMEM. */
static int reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    char *v = realloc(*buf, c);
    if (!v)
        return ENOMEM;
    *buf = v;
    *cap = c;
    return 0;
}

static bool stopping(struct walk *w)
{
    if (atomic_load_explicit(&w->stop, memory_order_relaxed))
        return true;
    if (w->opts->cancel && atomic_load(w->opts->cancel)) {
        atomic_store(&w->stop, true);
        return true;
    }
    return false;
}

static void stop_by_callback(struct walk *w)
{
    atomic_store(&w->stopped_by_callback, true);
    atomic_store(&w->stop, true);
}

/* Appends s[0..n) to out, control bytes and backslash escaped. */
static size_t escape_into(char *out, size_t pos, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n && pos + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '\\') {
            out[pos++] = '\\';
            out[pos++] = 'x';
            out[pos++] = hex[c >> 4];
            out[pos++] = hex[c & 15];
        } else {
            out[pos++] = (char)c;
        }
    }
    out[pos] = '\0';
    return pos;
}

/* Reports one failure the walk goes past; why replaces strerror(errnum). */
static void fail(struct walk *w, struct worker *t, size_t root, const char *path, size_t path_len,
                 const char *op, int errnum, const char *why)
{
    char msg[2048], ebuf[256];
    const char *rp = w->roots[root].path;
    size_t pos = escape_into(msg, 0, 1024, rp, strlen(rp));
    if (path_len) {
        if (pos == 0 || msg[pos - 1] != '/')
            msg[pos++] = '/';
        pos = escape_into(msg, pos, pos + 1024, path, path_len);
    }
    if (!why)
        why = strerror_r(errnum, ebuf, sizeof ebuf);
    snprintf(msg + pos, sizeof msg - pos, ": %s: %s", op, why);
    t->stats.errors++;
    if (w->opts->error) {
        struct walk_failure f = {.root_index = root, .path = path, .path_len = path_len,
                                 .op = op, .errnum = errnum, .msg = msg};
        w->opts->error(&f, w->opts->ctx);
    } else {
        log_warn("walk: %s", msg);
    }
}

/* ---- pending stacks ---- */

static int deque_push(struct deque *d, struct dir_node *n)
{
    pthread_mutex_lock(&d->lock);
    if (d->len == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 64;
        struct dir_node **v = malloc(cap * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&d->lock);
            return -1;
        }
        for (size_t i = 0; i < d->len; i++)
            v[i] = d->v[(d->head + i) & (d->cap - 1)];
        free(d->v);
        d->v = v;
        d->cap = cap;
        d->head = 0;
    }
    d->v[(d->head + d->len++) & (d->cap - 1)] = n;
    pthread_mutex_unlock(&d->lock);
    return 0;
}

/* The newest node (owner). */
static struct dir_node *deque_pop(struct deque *d)
{
    struct dir_node *n = NULL;
    pthread_mutex_lock(&d->lock);
    if (d->len)
        n = d->v[(d->head + --d->len) & (d->cap - 1)];
    pthread_mutex_unlock(&d->lock);
    return n;
}

/* The oldest node (thieves). */
static struct dir_node *deque_steal(struct deque *d)
{
    struct dir_node *n = NULL;
    pthread_mutex_lock(&d->lock);
    if (d->len) {
        n = d->v[d->head];
        d->head = (d->head + 1) & (d->cap - 1);
        d->len--;
    }
    pthread_mutex_unlock(&d->lock);
    return n;
}

static int work_push(struct walk *w, struct worker *t, struct dir_node *n)
{
    /* Counted before it is visible, uncounted after it is gone: queued never
     * under-counts, so a thread never sleeps while work exists. */
    unsigned long q = (unsigned long)atomic_fetch_add(&w->queued, 1) + 1;
    if (deque_push(&t->dq, n) != 0) {
        atomic_fetch_sub(&w->queued, 1);
        return -1;
    }
    unsigned long peak = atomic_load(&w->max_pending);
    while (q > peak && !atomic_compare_exchange_weak(&w->max_pending, &peak, q))
        ;
    if (atomic_load(&w->idle) > 0) {
        pthread_mutex_lock(&w->lock);
        pthread_cond_signal(&w->work_cv);
        pthread_mutex_unlock(&w->lock);
    }
    return 0;
}

/* The next directory for t: its own newest, else another thread's oldest;
 * waits while there is none.  NULL when the walk is over. */
static struct dir_node *work_get(struct walk *w, struct worker *t)
{
    for (;;) {
        struct dir_node *n = deque_pop(&t->dq);
        for (unsigned i = 1; !n && i < w->n_workers; i++)
            n = deque_steal(&w->workers[(t->id + i) % w->n_workers].dq);
        if (n) {
            atomic_fetch_sub(&w->queued, 1);
            return n;
        }
        pthread_mutex_lock(&w->lock);
        atomic_fetch_add(&w->idle, 1);
        while (!w->done && atomic_load(&w->queued) == 0)
            pthread_cond_wait(&w->work_cv, &w->lock);
        atomic_fetch_sub(&w->idle, 1);
        bool done = w->done;
        pthread_mutex_unlock(&w->lock);
        if (done)
            return NULL;
    }
}

/* ---- directory nodes ---- */

/* A pending directory named name in parent (NULL for a root). */
static struct dir_node *node_new(struct dir_node *parent, size_t root_index, const char *name,
                                 size_t name_len)
{
    struct dir_node *n = malloc(sizeof *n + name_len + 1);
    if (!n)
        return NULL;
    atomic_init(&n->refs, 1);
    n->parent = parent;
    if (parent)
        atomic_fetch_add(&parent->refs, 1);
    n->seen = NULL;
    n->fd = -1;
    n->keep_fd = n->fd_decided = n->read = false;
    n->depth = parent ? parent->depth + 1 : 0;
    n->root_index = root_index;
    memcpy(n->name, name, name_len);
    n->name[name_len] = '\0';
    return n;
}

/* prefix "/" name (just name when prefix is ""), st zeroed. */
static struct dir_seen *seen_new(const char *prefix, size_t prefix_len, const char *name)
{
    size_t name_len = strlen(name), off = prefix_len ? prefix_len + 1 : 0;
    struct dir_seen *s = malloc(sizeof *s + off + name_len + 1);
    if (!s)
        return NULL;
    memset(&s->st, 0, sizeof s->st);
    if (off) {
        memcpy(s->path, prefix, prefix_len);
        s->path[prefix_len] = '/';
    }
    memcpy(s->path + off, name, name_len + 1);
    s->path_len = off + name_len;
    return s;
}

static const char *node_name(const struct dir_node *n)
{
    return n->parent ? n->name : ".";
}

static void root_finished(struct walk *w)
{
    if (atomic_fetch_sub(&w->roots_left, 1) == 1) {
        pthread_mutex_lock(&w->lock);
        w->done = true;
        pthread_cond_broadcast(&w->work_cv);
        pthread_mutex_unlock(&w->lock);
    }
}

/* Drops one reference; a node whose count reaches zero has a finished
 * subtree: dir_done, close, free, and drop its reference on the parent. */
static void node_release(struct walk *w, struct dir_node *n)
{
    while (n && atomic_fetch_sub(&n->refs, 1) == 1) {
        struct dir_node *parent = n->parent;
        if (n->read && w->opts->dir_done && !stopping(w)) {
            struct walk_entry e = {
                .root_index = n->root_index, .path = n->seen->path,
                .path_len = n->seen->path_len, .name = node_name(n), .dirfd = -1,
                .depth = n->depth, .type = WALK_DIR, .st = &n->seen->st, .descend = true,
            };
            if (w->opts->dir_done(&e, w->opts->ctx) == WALK_STOP)
                stop_by_callback(w);
        }
        if (n->fd >= 0) {
            close(n->fd);
            if (parent)
                atomic_fetch_sub(&w->open_fds, 1);
        }
        free(n->seen);
        free(n);
        if (!parent)
            root_finished(w);
        n = parent;
    }
}

/* May this directory keep its fd open for its children? */
static bool fd_budget_take(struct walk *w)
{
    if (atomic_fetch_add(&w->open_fds, 1) < w->max_open)
        return true;
    atomic_fetch_sub(&w->open_fds, 1);
    return false;
}

/* Opens n's parent chain from the nearest ancestor with a kept fd, one
 * component at a time, checking each is still the directory it was.
 * Returns an O_PATH fd of n's parent, or -1 (reported). */
static int parent_reopen(struct walk *w, struct worker *t, struct dir_node *n)
{
    size_t k = 0;
    struct dir_node *a = n->parent;
    for (; !a->keep_fd; a = a->parent) {
        if (k == t->chain_cap) {
            size_t cap = t->chain_cap ? 2 * t->chain_cap : 64;
            struct dir_node **v = realloc(t->chain, cap * sizeof *v);
            if (!v) {
                fail(w, t, n->root_index, n->seen->path, n->seen->path_len, "alloc", ENOMEM,
                     NULL);
                return -1;
            }
            t->chain = v;
            t->chain_cap = cap;
        }
        t->chain[k++] = a;
    }
    t->stats.reopens++;
    int cur = a->fd;
    while (k-- > 0) {
        struct dir_node *c = t->chain[k];
        int fd = openat(cur, node_name(c), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) != 0) {
            e = errno;
            close(fd);
            fd = -1;
        }
        if (cur != a->fd)
            close(cur);
        if (fd < 0) {
            fail(w, t, n->root_index, c->seen->path, c->seen->path_len, "reopen", e, NULL);
            return -1;
        }
        if (st.st_dev != c->seen->st.st_dev || st.st_ino != c->seen->st.st_ino) {
            close(fd);
            fail(w, t, n->root_index, c->seen->path, c->seen->path_len, "reopen", 0,
                 "directory was moved or replaced during the walk");
            return -1;
        }
        cur = fd;
    }
    return cur;
}

/* Opens n relative to its parent.  Returns the fd, or -1 when n is not to
 * be read (failure reported, or a mount point under one_filesystem). */
static int dir_open(struct walk *w, struct worker *t, struct dir_node *n)
{
    const struct dir_seen *ps = n->parent->seen;
    n->seen = seen_new(ps->path, ps->path_len, n->name);
    if (!n->seen) {
        fail(w, t, n->root_index, ps->path, ps->path_len, "alloc", ENOMEM, NULL);
        return -1;
    }
    const char *path = n->seen->path;
    size_t path_len = n->seen->path_len;
    /* A parent without keep_fd may be closing its fd right now: never touch it. */
    bool reopened = !n->parent->keep_fd;
    int pfd = reopened ? parent_reopen(w, t, n) : n->parent->fd;
    if (pfd < 0)
        return -1;
    int fd = openat(pfd, node_name(n), DIR_FLAGS);
    int e = errno;
    if (reopened)
        close(pfd);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) != 0) {
        e = errno;
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        fail(w, t, n->root_index, path, path_len, "open", e, NULL);
        return -1;
    }
    /* Checked again on the open directory: a mount can appear between the
     * parent's fstatat and this open (an automount is triggered by the open). */
    if (w->opts->one_filesystem && st.st_dev != w->roots[n->root_index].dev) {
        close(fd);
        return -1;
    }
    for (const struct dir_node *p = n->parent; p; p = p->parent) {
        if (p->seen->st.st_dev == st.st_dev && p->seen->st.st_ino == st.st_ino) {
            close(fd);
            fail(w, t, n->root_index, path, path_len, "open", ELOOP,
                 "directory is its own ancestor (bind mount loop?)");
            return -1;
        }
    }
    n->seen->st = st;
    return fd;
}

/* Reads the symlink name in fd into t->link.  0 or an errno. */
static int link_read(struct worker *t, int fd, const char *name, const struct stat *st, size_t *len)
{
    size_t want = st->st_size > 0 ? (size_t)st->st_size + 1 : 256;
    for (;;) {
        if (reserve(&t->link, &t->link_cap, want) != 0)
            return ENOMEM;
        ssize_t r = readlinkat(fd, name, t->link, t->link_cap);
        if (r < 0)
            return errno;
        if ((size_t)r < t->link_cap) {
            t->link[r] = '\0';
            *len = (size_t)r;
            return 0;
        }
        want = 2 * t->link_cap;
    }
}

/* One entry of directory n (open as fd); t->path holds n's path and a '/'
 * up to off. */
static void entry_visit(struct walk *w, struct worker *t, struct dir_node *n, int fd,
                        size_t off, const char *name, unsigned char d_type)
{
    const struct walk_opts *o = w->opts;
    size_t name_len = strlen(name), len = off + name_len;
    if (reserve(&t->path, &t->path_cap, len + 1) != 0) {
        fail(w, t, n->root_index, n->seen->path, n->seen->path_len, "alloc", ENOMEM, NULL);
        return;
    }
    memcpy(t->path + off, name, name_len + 1);

    struct stat st;
    if (o->stat_dirs_only && d_type != DT_UNKNOWN && d_type != DT_DIR && d_type != DT_LNK) {
        /* The type from readdir is all this walk needs of a non-directory. */
        memset(&st, 0, sizeof st);
        st.st_mode = DTTOIF(d_type);
    } else if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        fail(w, t, n->root_index, t->path, len, "stat", errno, NULL);
        return;
    }
    enum walk_type type = type_of(st.st_mode);
    size_t link_len = 0;
    if (type == WALK_SYMLINK) {
        int e = link_read(t, fd, name, &st, &link_len);
        if (e) {
            fail(w, t, n->root_index, t->path, len, "readlink", e, NULL);
            return;
        }
    }
    if (!walk_filter_match(o->filter, t->path, &st)) {
        t->stats.filtered++;
        return;
    }
    bool descend = type == WALK_DIR &&
                   !(o->one_filesystem && st.st_dev != w->roots[n->root_index].dev);
    struct walk_entry e = {
        .root_index = n->root_index, .path = t->path, .path_len = len, .name = t->path + off,
        .dirfd = fd, .depth = n->depth + 1, .type = type, .st = &st,
        .link_target = type == WALK_SYMLINK ? t->link : NULL, .link_len = link_len,
        .descend = descend,
    };
    enum walk_action a = o->entry(&e, o->ctx);
    switch (type) {
    case WALK_FILE:
        t->stats.files++;
        t->stats.bytes += (uint64_t)st.st_size;
        break;
    case WALK_DIR: t->stats.dirs++; break;
    case WALK_SYMLINK: t->stats.symlinks++; break;
    case WALK_OTHER: t->stats.others++; break;
    }
    if (a == WALK_STOP) {
        stop_by_callback(w);
        return;
    }
    if (!descend || a == WALK_PRUNE)
        return;

    struct dir_node *c = node_new(n, n->root_index, name, name_len);
    if (!c) {
        fail(w, t, n->root_index, t->path, len, "alloc", ENOMEM, NULL);
        return;
    }
    if (!n->fd_decided) {
        /* Before the first push: children read keep_fd once they pop. */
        n->fd_decided = true;
        n->keep_fd = fd_budget_take(w);
    }
    if (work_push(w, t, c) != 0) {
        fail(w, t, n->root_index, t->path, len, "alloc", ENOMEM, NULL);
        node_release(w, c);
    }
}

/* Reads directory n (open as fd), reporting every entry. */
static void dir_read(struct walk *w, struct worker *t, struct dir_node *n, int fd)
{
    const char *path = n->seen->path;
    size_t path_len = n->seen->path_len;
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        int e = errno;
        if (dfd >= 0)
            close(dfd);
        fail(w, t, n->root_index, path, path_len, "readdir", e, NULL);
        return;
    }
    n->read = true;
    size_t off = path_len ? path_len + 1 : 0;
    if (reserve(&t->path, &t->path_cap, off + 1) != 0) {
        closedir(d);
        fail(w, t, n->root_index, path, path_len, "alloc", ENOMEM, NULL);
        return;
    }
    if (off) {
        memcpy(t->path, path, path_len);
        t->path[path_len] = '/';
    }
    while (!stopping(w)) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno) {
                int e = errno;
                fail(w, t, n->root_index, path, path_len, "readdir", e, NULL);
            }
            break;
        }
        const char *nm = de->d_name;
        if (nm[0] == '.' && (nm[1] == '\0' || (nm[1] == '.' && nm[2] == '\0')))
            continue;
        entry_visit(w, t, n, fd, off, nm, de->d_type);
    }
    closedir(d);
}

/* Reads one popped directory (reporting the root itself first). */
static void dir_walk(struct walk *w, struct worker *t, struct dir_node *n)
{
    int fd;
    if (!n->parent) {
        fd = n->fd;
        struct walk_entry e = {
            .root_index = n->root_index, .path = "", .path_len = 0, .name = ".",
            .dirfd = fd, .depth = 0, .type = WALK_DIR, .st = &n->seen->st, .descend = true,
        };
        enum walk_action a = w->opts->entry(&e, w->opts->ctx);
        t->stats.dirs++;
        if (a == WALK_STOP)
            stop_by_callback(w);
        if (a != WALK_CONTINUE)
            return;
    } else {
        fd = dir_open(w, t, n);
        if (fd < 0)
            return;
        n->fd = fd;
    }
    dir_read(w, t, n, fd);
    if (n->parent && !n->keep_fd) {
        close(fd);
        n->fd = -1;
    }
}

static void *worker_run(void *arg)
{
    struct worker *t = arg;
    struct walk *w = t->w;
    struct dir_node *n;
    while ((n = work_get(w, t))) {
        if (!stopping(w))
            dir_walk(w, t, n);
        node_release(w, n);
    }
    return NULL;
}

static size_t default_max_open(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 4096;
    size_t m = (size_t)(rl.rlim_cur / 4);
    return m < 16 ? 16 : m > 4096 ? 4096 : m;
}

int walk_run(const char *const *roots, size_t n_roots, const struct walk_opts *opts,
             struct walk_stats *stats, haul_error *err)
{
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (!opts || !opts->entry)
        return err_set(err, HAUL_EUSAGE, "walk: no entry callback given");
    if (!roots || n_roots == 0)
        return err_set(err, HAUL_EUSAGE, "walk: no root directory given");
    unsigned nt = opts->threads ? opts->threads : DEFAULT_THREADS;
    if (nt > MAX_THREADS)
        return err_set(err, HAUL_EUSAGE, "walk: %u threads asked, at most %d", nt, MAX_THREADS);

    int rc = 0;
    struct walk w = {.opts = opts, .n_workers = nt};
    w.max_open = opts->max_open_dirs ? opts->max_open_dirs : default_max_open();
    w.roots = calloc(n_roots, sizeof *w.roots);
    w.workers = calloc(nt, sizeof *w.workers);
    struct dir_node **nodes = calloc(n_roots, sizeof *nodes);
    pthread_t *threads = calloc(nt, sizeof *threads);
    if (!w.roots || !w.workers || !nodes || !threads) {
        rc = err_set(err, HAUL_ENOMEM, "walk: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_roots; i++) {
        struct stat st;
        int fd = open(roots[i], DIR_FLAGS & ~O_NOFOLLOW);
        if (fd < 0 || fstat(fd, &st) != 0) {
            rc = err_errno(err, errno, "walk %s", roots[i]);
            if (fd >= 0)
                close(fd);
            goto out;
        }
        w.roots[i] = (struct root){.path = roots[i], .dev = st.st_dev};
        nodes[i] = node_new(NULL, i, "", 0);
        if (nodes[i] && !(nodes[i]->seen = seen_new("", 0, ""))) {
            free(nodes[i]);
            nodes[i] = NULL;
        }
        if (!nodes[i]) {
            close(fd);
            rc = err_set(err, HAUL_ENOMEM, "walk %s: out of memory", roots[i]);
            goto out;
        }
        nodes[i]->seen->st = st;
        nodes[i]->fd = fd;
        nodes[i]->keep_fd = nodes[i]->fd_decided = true;
    }

    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.work_cv, NULL);
    for (unsigned i = 0; i < nt; i++) {
        w.workers[i].w = &w;
        w.workers[i].id = i;
        pthread_mutex_init(&w.workers[i].dq.lock, NULL);
    }
    atomic_init(&w.roots_left, n_roots);
    /* Root i goes to thread i % nt; pushed last first so lower roots start first. */
    for (size_t i = n_roots; i-- > 0;) {
        if (work_push(&w, &w.workers[i % nt], nodes[i]) != 0) {
            fail(&w, &w.workers[0], i, "", 0, "alloc", ENOMEM, NULL);
            node_release(&w, nodes[i]);
        }
        nodes[i] = NULL;
    }
    /* A thread that cannot start leaves its stack to the others (they steal). */
    unsigned started = 1;
    for (; started < nt; started++) {
        if (pthread_create(&threads[started], NULL, worker_run, &w.workers[started]) != 0) {
            log_debug("walk: started %u of %u threads", started, nt);
            break;
        }
    }
    worker_run(&w.workers[0]);
    for (unsigned i = 1; i < started; i++)
        pthread_join(threads[i], NULL);

    struct walk_stats sum = {0};
    for (unsigned i = 0; i < nt; i++) {
        const struct walk_stats *s = &w.workers[i].stats;
        sum.dirs += s->dirs;
        sum.files += s->files;
        sum.symlinks += s->symlinks;
        sum.others += s->others;
        sum.bytes += s->bytes;
        sum.filtered += s->filtered;
        sum.errors += s->errors;
        sum.reopens += s->reopens;
        free(w.workers[i].dq.v);
        free(w.workers[i].path);
        free(w.workers[i].link);
        free(w.workers[i].chain);
        pthread_mutex_destroy(&w.workers[i].dq.lock);
    }
    sum.max_pending = atomic_load(&w.max_pending);
    if (stats)
        *stats = sum;
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.work_cv);
    if (atomic_load(&w.stop)) {
        unsigned long long n = sum.dirs + sum.files + sum.symlinks + sum.others;
        rc = err_set(err, HAUL_ECANCELED, "walk %s%s: %s after %llu entries", roots[0],
                     n_roots > 1 ? " (and more roots)" : "",
                     atomic_load(&w.stopped_by_callback) ? "stopped by a callback" : "canceled",
                     n);
    }
out:
    if (nodes) {
        for (size_t i = 0; i < n_roots; i++) {
            if (nodes[i]) {
                close(nodes[i]->fd);
                free(nodes[i]->seen);
                free(nodes[i]);
            }
        }
    }
    free(nodes);
    free(threads);
    free(w.roots);
    free(w.workers);
    return rc;
}

/* index: the backup catalog in SQLite (see index.h). */
#include "index/index.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"
#include "util/path.h"

#define BATCH_WRITES 2000 /* writes per transaction */
#define BATCH_SECONDS 2   /* ... or at most this old: a crash loses little */

enum stmt_id {
    S_GET, S_PUT, S_TOUCH, S_DELETE, S_UNSEEN, S_UNSEEN_DROP, S_LINK_ADD, S_LINK_POSTPONE, S_LINK_NEXT, S_LINK_NAMES, S_COUNT,
    S_MARKER_GET, S_MARKER_SET, S_N
};

static const char *const stmt_sql[S_N] = {
    [S_GET] = "SELECT size, mtime_ns, mode, uid, gid, etag, storage_class, tree_hash, nlink, link, run FROM objects"
              " WHERE key = ?1",
    [S_PUT] = "INSERT OR REPLACE INTO objects (key, size, mtime_ns, mode, uid, gid, etag, storage_class, tree_hash,"
              " run, nlink, link) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [S_TOUCH] = "UPDATE objects SET run = ?2 WHERE key = ?1",
    [S_DELETE] = "DELETE FROM objects WHERE key = ?1",
    [S_UNSEEN] = "SELECT key FROM objects WHERE run <> ?1 AND key > ?2 ORDER BY key LIMIT 1000",
    [S_UNSEEN_DROP] = "DELETE FROM objects WHERE run <> ?1",
    [S_LINK_ADD] = "INSERT OR REPLACE INTO linknames VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
    [S_LINK_POSTPONE] = "UPDATE linknames SET after = 1 WHERE key = ?1",
    [S_LINK_NEXT] = "SELECT dev, ino FROM linknames WHERE ?3 OR dev > ?1 OR (dev = ?1 AND ino > ?2)"
                    " ORDER BY dev, ino LIMIT 1",
    [S_LINK_NAMES] = "SELECT key, path, root, st, after FROM linknames WHERE dev = ?1 AND ino = ?2 ORDER BY key",
    [S_COUNT] = "SELECT count(*) FROM objects",
    [S_MARKER_GET] = "SELECT value FROM binding WHERE name = 'marker'",
    [S_MARKER_SET] = "INSERT OR REPLACE INTO binding VALUES ('marker', ?1)",
};

/* The ETag of an empty body: what a link object's looks like. */
#define EMPTY_MD5 "d41d8cd98f00b204e9800998ecf8427e"

struct index {
    pthread_mutex_t lock; /* guards the connection and everything below */
    sqlite3 *db;
    sqlite3_stmt *stmt[S_N];
    int64_t run;
    int pending;          /* writes in the open transaction */
    time_t batch_started;
    char path[4096];
};

static int db_fail(struct index *ix, haul_error *err, const char *what)
{
    return err_set(err, HAUL_EIO, "index %s: %s: %s", ix->path, what, sqlite3_errmsg(ix->db));
}

static int exec(struct index *ix, const char *sql, haul_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(ix->db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    int rc = err_set(err, HAUL_EIO, "index %s: %s: %s", ix->path, sql, msg ? msg : "");
    sqlite3_free(msg);
    return rc;
}

/* An index written before link roles: its rows get the two columns, NULL
 * (index_get tells such rows apart). */
static int schema_upgrade(struct index *ix, haul_error *err)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(ix->db, "SELECT link FROM objects LIMIT 0", -1, &s, NULL) == SQLITE_OK) {
        sqlite3_finalize(s);
        return 0;
    }
    sqlite3_finalize(s);
    if (exec(ix, "ALTER TABLE objects ADD COLUMN nlink INTEGER", err) < 0 ||
        exec(ix, "ALTER TABLE objects ADD COLUMN link TEXT", err) < 0)
        return -HAUL_EIO;
    return 0;
}

static int schema_create(struct index *ix, haul_error *err)
{
    static const char *const setup[] = {
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = NORMAL",
        "CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
        " mode INTEGER, uid INTEGER, gid INTEGER, etag TEXT, storage_class TEXT, tree_hash TEXT,"
        " run INTEGER, nlink INTEGER, link TEXT) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value INTEGER)",
        "CREATE TABLE IF NOT EXISTS binding (name TEXT PRIMARY KEY, value TEXT)",
        "CREATE TEMP TABLE linknames (dev INTEGER, ino INTEGER, key TEXT PRIMARY KEY, path TEXT, root INTEGER,"
        " st BLOB, after INTEGER)",
        "CREATE INDEX temp.linknames_inode ON linknames (dev, ino)",
    };
    for (size_t i = 0; i < sizeof setup / sizeof *setup; i++)
        if (exec(ix, setup[i], err) < 0)
            return -HAUL_EIO;
    if (schema_upgrade(ix, err) < 0 || exec(ix, "BEGIN", err) < 0)
        return -HAUL_EIO;
    for (int i = 0; i < S_N; i++)
        if (sqlite3_prepare_v3(ix->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &ix->stmt[i], NULL) != SQLITE_OK)
            return db_fail(ix, err, stmt_sql[i]);
    return 0;
}

struct index *index_open(const char *path, haul_error *err)
{
    struct index *ix = calloc(1, sizeof *ix);
    if (!ix) {
        err_set(err, HAUL_ENOMEM, "index %s: out of memory", path);
        return NULL;
    }
    snprintf(ix->path, sizeof ix->path, "%s", path);
    pthread_mutex_init(&ix->lock, NULL);
    ix->batch_started = time(NULL);
    if (sqlite3_open_v2(path, &ix->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        err_set(err, HAUL_EIO, "index %s: %s", path, ix->db ? sqlite3_errmsg(ix->db) : "cannot open");
        index_close(ix, NULL);
        return NULL;
    }
    sqlite3_busy_timeout(ix->db, 10000);
    if (schema_create(ix, err) < 0) {
        index_close(ix, NULL);
        return NULL;
    }
    return ix;
}

int index_close(struct index *ix, haul_error *err)
{
    if (!ix)
        return 0;
    int rc = 0;
    for (int i = 0; i < S_N; i++)
        sqlite3_finalize(ix->stmt[i]);
    if (ix->db && sqlite3_get_autocommit(ix->db) == 0)
        rc = exec(ix, "COMMIT", err);
    if (ix->db)
        sqlite3_close(ix->db);
    pthread_mutex_destroy(&ix->lock);
    free(ix);
    return rc;
}

int index_path_for(const char *state_dir, const char *endpoint, const char *bucket,
                   const char *prefix, char *out, size_t cap, haul_error *err)
{
    const char *parts[] = {endpoint, bucket, prefix};
    if (path_state_file(state_dir, "index", parts, 3, 16, ".sqlite", out, cap) < 0)
        return err_errno(err, errno, "state directory %s/index", state_dir);
    return 0;
}

/* Commits the open transaction when it is big or old enough. Lock held. */
static int batch_step(struct index *ix, haul_error *err)
{
    time_t now = time(NULL);
    if (++ix->pending < BATCH_WRITES && now - ix->batch_started < BATCH_SECONDS)
        return 0;
    ix->pending = 0;
    ix->batch_started = now;
    return exec(ix, "COMMIT", err) < 0 ? -HAUL_EIO : exec(ix, "BEGIN", err);
}

static void copy_text(sqlite3_stmt *s, int col, char *out, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
}

int index_get(struct index *ix, const char *key, struct index_entry *out, haul_error *err)
{
    pthread_mutex_lock(&ix->lock);
    sqlite3_stmt *s = ix->stmt[S_GET];
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int step = sqlite3_step(s), rc = 0;
    if (step == SQLITE_ROW) {
        snprintf(out->key, sizeof out->key, "%s", key);
        out->size = (uint64_t)sqlite3_column_int64(s, 0);
        out->mtime_ns = sqlite3_column_int64(s, 1);
        out->mode = (uint32_t)sqlite3_column_int64(s, 2);
        out->uid = (uint32_t)sqlite3_column_int64(s, 3);
        out->gid = (uint32_t)sqlite3_column_int64(s, 4);
        copy_text(s, 5, out->etag, sizeof out->etag);
        copy_text(s, 6, out->storage_class, sizeof out->storage_class);
        copy_text(s, 7, out->tree_hash, sizeof out->tree_hash);
        out->nlink = (uint32_t)sqlite3_column_int64(s, 8);
        copy_text(s, 9, out->link, sizeof out->link);
        out->link_unknown = sqlite3_column_type(s, 9) == SQLITE_NULL && S_ISREG(out->mode) && out->size > 0 &&
                            strcmp(out->etag, EMPTY_MD5) == 0;
        out->seen = sqlite3_column_int64(s, 10) == ix->run;
        rc = 1;
    } else if (step != SQLITE_DONE) {
        rc = db_fail(ix, err, "lookup");
    }
    sqlite3_reset(s);
    pthread_mutex_unlock(&ix->lock);
    return rc;
}

int index_put(struct index *ix, const struct index_entry *e, haul_error *err)
{
    pthread_mutex_lock(&ix->lock);
    sqlite3_stmt *s = ix->stmt[S_PUT];
    sqlite3_bind_text(s, 1, e->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (int64_t)e->size);
    sqlite3_bind_int64(s, 3, e->mtime_ns);
    sqlite3_bind_int64(s, 4, e->mode);
    sqlite3_bind_int64(s, 5, e->uid);
    sqlite3_bind_int64(s, 6, e->gid);
    sqlite3_bind_text(s, 7, e->etag, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, e->storage_class, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 9, e->tree_hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 10, ix->run);
    sqlite3_bind_int64(s, 11, e->nlink);
    sqlite3_bind_text(s, 12, e->link, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : db_fail(ix, err, "store");
    sqlite3_reset(s);
    if (rc == 0)
        rc = batch_step(ix, err);
    pthread_mutex_unlock(&ix->lock);
    return rc;
}

static int key_stmt(struct index *ix, enum stmt_id id, const char *key, const char *what, haul_error *err);

int index_link_postpone(struct index *ix, const char *key, haul_error *err)
{
    return key_stmt(ix, S_LINK_POSTPONE, key, "postpone a hard link", err);
}

static int key_stmt(struct index *ix, enum stmt_id id, const char *key, const char *what, haul_error *err)
{
    pthread_mutex_lock(&ix->lock);
    sqlite3_stmt *s = ix->stmt[id];
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    if (id == S_TOUCH)
        sqlite3_bind_int64(s, 2, ix->run);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : db_fail(ix, err, what);
    sqlite3_reset(s);
    if (rc == 0)
        rc = batch_step(ix, err);
    pthread_mutex_unlock(&ix->lock);
    return rc;
}

int index_touch(struct index *ix, const char *key, haul_error *err)
{
    return key_stmt(ix, S_TOUCH, key, "mark", err);
}

int index_delete(struct index *ix, const char *key, haul_error *err)
{
    return key_stmt(ix, S_DELETE, key, "delete", err);
}

int index_run_begin(struct index *ix, haul_error *err)
{
    pthread_mutex_lock(&ix->lock);
    int rc = exec(ix, "INSERT INTO settings VALUES ('run', 1) ON CONFLICT(name) DO UPDATE SET value = value + 1", err);
    sqlite3_stmt *s = NULL;
    if (rc == 0 && sqlite3_prepare_v2(ix->db, "SELECT value FROM settings WHERE name = 'run'", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        ix->run = sqlite3_column_int64(s, 0);
    else if (rc == 0)
        rc = db_fail(ix, err, "start a run");
    sqlite3_finalize(s);
    pthread_mutex_unlock(&ix->lock);
    return rc;
}

/* Pages through unseen keys 1000 at a time (keyset pagination), so memory
 * stays flat even when millions of files are gone. */
int index_unseen_each(struct index *ix, index_key_fn fn, void *ctx, haul_error *err)
{
    char last[1100] = "";
    char (*page)[1100] = malloc(1000 * sizeof *page);
    if (!page)
        return err_set(err, HAUL_ENOMEM, "index: out of memory");
    int rc = 0;
    for (;;) {
        int n = 0, step = SQLITE_DONE;
        pthread_mutex_lock(&ix->lock);
        sqlite3_stmt *s = ix->stmt[S_UNSEEN];
        sqlite3_bind_int64(s, 1, ix->run);
        sqlite3_bind_text(s, 2, last, -1, SQLITE_TRANSIENT);
        while (n < 1000 && (step = sqlite3_step(s)) == SQLITE_ROW)
            copy_text(s, 0, page[n++], sizeof page[0]);
        if (step != SQLITE_ROW && step != SQLITE_DONE) /* not silently "nothing more is gone" */
            rc = db_fail(ix, err, "list the entries of files that are gone");
        sqlite3_reset(s);
        pthread_mutex_unlock(&ix->lock);
        if (n == 0 || rc != 0)
            break;
        snprintf(last, sizeof last, "%s", page[n - 1]);
        for (int i = 0; i < n && rc == 0; i++)
            rc = fn(page[i], ctx);
        if (rc != 0)
            break;
    }
    free(page);
    return rc;
}

int index_link_defer(struct index *ix, const struct index_link_name *name, haul_error *err)
{
    pthread_mutex_lock(&ix->lock);
    sqlite3_stmt *s = ix->stmt[S_LINK_ADD];
    sqlite3_bind_int64(s, 1, (int64_t)name->st.st_dev);
    sqlite3_bind_int64(s, 2, (int64_t)name->st.st_ino);
    sqlite3_bind_text(s, 3, name->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, name->path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, name->root);
    sqlite3_bind_blob(s, 6, &name->st, sizeof name->st, SQLITE_STATIC);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : db_fail(ix, err, "record a hard link");
    sqlite3_reset(s);
    if (rc == 0)
        rc = batch_step(ix, err);
    pthread_mutex_unlock(&ix->lock);
    return rc;
}

/* The names of one inode, copied out of the statement. */
struct link_group {
    struct index_link_name *names;
    size_t n, cap;
};

static void link_group_clear(struct link_group *g)
{
    for (size_t i = 0; i < g->n; i++) {
        free((char *)g->names[i].key);
        free((char *)g->names[i].path);
    }
    g->n = 0;
}

static int link_group_add(struct link_group *g, sqlite3_stmt *s)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 16;
        struct index_link_name *p = realloc(g->names, cap * sizeof *p);
        if (!p)
            return -1;
        g->names = p;
        g->cap = cap;
    }
    struct index_link_name *nm = &g->names[g->n];
    memset(nm, 0, sizeof *nm);
    const unsigned char *k = sqlite3_column_text(s, 0), *p = sqlite3_column_text(s, 1);
    nm->key = strdup(k ? (const char *)k : "");
    nm->path = strdup(p ? (const char *)p : "");
    nm->root = (uint32_t)sqlite3_column_int64(s, 2);
    nm->after = sqlite3_column_int(s, 4) != 0;
    if (sqlite3_column_bytes(s, 3) == (int)sizeof nm->st)
        memcpy(&nm->st, sqlite3_column_blob(s, 3), sizeof nm->st);
    g->n++;
    return nm->key && nm->path ? 0 : -1;
}

/* The next inode after (dev, ino) (the first with first set) and its names
 * into g: 1, 0 when there is none, <0 on error.  Lock held. */
static int link_group_next(struct index *ix, bool first, int64_t *dev, int64_t *ino, struct link_group *g,
                           haul_error *err)
{
    sqlite3_stmt *s = ix->stmt[S_LINK_NEXT];
    sqlite3_bind_int64(s, 1, *dev);
    sqlite3_bind_int64(s, 2, *ino);
    sqlite3_bind_int(s, 3, first);
    int step = sqlite3_step(s), rc = step == SQLITE_ROW ? 1 : 0;
    if (step == SQLITE_ROW) {
        *dev = sqlite3_column_int64(s, 0);
        *ino = sqlite3_column_int64(s, 1);
    } else if (step != SQLITE_DONE) {
        rc = db_fail(ix, err, "list hard links");
    }
    sqlite3_reset(s);
    if (rc <= 0)
        return rc;
    s = ix->stmt[S_LINK_NAMES];
    sqlite3_bind_int64(s, 1, *dev);
    sqlite3_bind_int64(s, 2, *ino);
    while (rc == 1 && (step = sqlite3_step(s)) == SQLITE_ROW)
        if (link_group_add(g, s) < 0)
            rc = err_set(err, HAUL_ENOMEM, "index: out of memory");
    if (rc == 1 && step != SQLITE_DONE)
        rc = db_fail(ix, err, "list the names of a hard link");
    sqlite3_reset(s);
    return rc;
}

int index_links_each(struct index *ix, index_links_fn fn, void *ctx, haul_error *err)
{
    struct link_group g = {0};
    int64_t dev = 0, ino = 0;
    int rc = 0;
    for (bool first = true; rc == 0; first = false) {
        pthread_mutex_lock(&ix->lock);
        int got = link_group_next(ix, first, &dev, &ino, &g, err);
        pthread_mutex_unlock(&ix->lock);
        if (got <= 0) {
            rc = got;
            break;
        }
        rc = fn(g.names, g.n, ctx);
        link_group_clear(&g);
    }
    link_group_clear(&g);
    free(g.names);
    return rc;
}

int64_t index_unseen_drop(struct index *ix, haul_error *err)
{
    pthread_mutex_lock(&ix->lock);
    sqlite3_stmt *s = ix->stmt[S_UNSEEN_DROP];
    sqlite3_bind_int64(s, 1, ix->run);
    int64_t rc = sqlite3_step(s) == SQLITE_DONE ? sqlite3_changes(ix->db) : db_fail(ix, err, "forget entries");
    sqlite3_reset(s);
    if (rc >= 0 && batch_step(ix, err) < 0)
        rc = -HAUL_EIO;
    pthread_mutex_unlock(&ix->lock);
    return rc;
}

int index_marker_get(struct index *ix, char *id, size_t cap, haul_error *err)
{
    pthread_mutex_lock(&ix->lock);
    sqlite3_stmt *s = ix->stmt[S_MARKER_GET];
    int step = sqlite3_step(s), rc = 0;
    if (step == SQLITE_ROW) {
        copy_text(s, 0, id, cap);
        rc = id[0] ? 1 : 0;
    } else if (step != SQLITE_DONE) {
        rc = db_fail(ix, err, "read the marker id");
    }
    sqlite3_reset(s);
    pthread_mutex_unlock(&ix->lock);
    return rc;
}

int index_marker_set(struct index *ix, const char *id, haul_error *err)
{
    pthread_mutex_lock(&ix->lock);
    sqlite3_stmt *s = ix->stmt[S_MARKER_SET];
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : db_fail(ix, err, "record the marker id");
    sqlite3_reset(s);
    if (rc == 0)
        rc = batch_step(ix, err);
    pthread_mutex_unlock(&ix->lock);
    return rc;
}

int64_t index_count(struct index *ix)
{
    pthread_mutex_lock(&ix->lock);
    sqlite3_stmt *s = ix->stmt[S_COUNT];
    int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_reset(s);
    pthread_mutex_unlock(&ix->lock);
    return n;
}

/* ---- properties: small named values about the destination (e.g. the
 * identity of each backed-up root, fs/srcid), in a table of their own
 * created on first use ---- */

static int props_stmt(struct index *ix, const char *sql, sqlite3_stmt **s, haul_error *err)
{
    if (exec(ix, "CREATE TABLE IF NOT EXISTS props (name TEXT PRIMARY KEY, value TEXT)", err) < 0)
        return -HAUL_EIO;
    if (sqlite3_prepare_v2(ix->db, sql, -1, s, NULL) != SQLITE_OK)
        return db_fail(ix, err, "properties");
    return 0;
}

int index_prop_get(struct index *ix, const char *name, char *value, size_t cap, haul_error *err)
{
    pthread_mutex_lock(&ix->lock);
    sqlite3_stmt *s = NULL;
    int rc = props_stmt(ix, "SELECT value FROM props WHERE name = ?1", &s, err);
    if (rc == 0) {
        sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
        int step = sqlite3_step(s);
        if (step == SQLITE_ROW) {
            copy_text(s, 0, value, cap);
            rc = 1;
        } else if (step != SQLITE_DONE) {
            rc = db_fail(ix, err, "read a property");
        }
    }
    sqlite3_finalize(s);
    pthread_mutex_unlock(&ix->lock);
    return rc;
}

int index_prop_set(struct index *ix, const char *name, const char *value, haul_error *err)
{
    pthread_mutex_lock(&ix->lock);
    sqlite3_stmt *s = NULL;
    int rc = props_stmt(ix, "INSERT OR REPLACE INTO props VALUES (?1, ?2)", &s, err);
    if (rc == 0) {
        sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
        rc = sqlite3_step(s) == SQLITE_DONE ? 0 : db_fail(ix, err, "store a property");
    }
    sqlite3_finalize(s);
    if (rc == 0)
        rc = batch_step(ix, err);
    pthread_mutex_unlock(&ix->lock);
    return rc;
}

/* "pid host" of the lock's holder, for the message. */
static void lock_holder(int fd, char *pid, size_t pid_cap, char *host, size_t host_cap)
{
    char buf[320];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    char *sp = strchr(buf, ' '), *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    if (!sp || sp == buf) {
        snprintf(pid, pid_cap, "?");
        snprintf(host, host_cap, "?");
        return;
    }
    *sp = '\0';
    snprintf(pid, pid_cap, "%s", buf);
    snprintf(host, host_cap, "%s", sp + 1);
}

int index_lock_take(const char *index_path, const char *dest, haul_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s.lock", index_path);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        err_errno(err, errno, "lock %s", path);
        return -1;
    }
    /* flock, not a pid check: the kernel drops it when its holder dies
     * (even by SIGKILL), so a lock that can be taken is never live. */
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK) {
            char pid[32], host[256];
            lock_holder(fd, pid, sizeof pid, host, sizeof host);
            err_set(err, HAUL_EIO, "another backup of %s is running (pid %s on %s)", dest, pid, host);
        } else {
            err_errno(err, errno, "lock %s", path);
        }
        close(fd);
        return -1;
    }
    char host[256] = "", line[320];
    if (gethostname(host, sizeof host - 1) < 0)
        snprintf(host, sizeof host, "?");
    int n = snprintf(line, sizeof line, "%ld %s\n", (long)getpid(), host);
    if (ftruncate(fd, 0) < 0 || pwrite(fd, line, (size_t)n, 0) != n) {
        err_errno(err, errno, "lock %s", path);
        close(fd);
        return -1;
    }
    return fd;
}

void index_lock_release(int fd)
{
    if (fd >= 0)
        close(fd);
}

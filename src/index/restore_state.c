/* index/restore_state: a restore run's deferred work in a temporary SQLite
 * file (see restore_state.h). */
#include "index/restore_state.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"

#define BATCH_WRITES 5000 /* writes per transaction */
#define READ_BATCH 256    /* rows copied out per query by the _each functions */

enum stmt_id {
    S_DIR_ADD, S_DIR_FIRST, S_DIR_NEXT, S_LINK_ADD, S_LINK_NEXT, S_PEND_ADD, S_PEND_DEL,
    S_PEND_HAS, S_PEND_NEXT, S_PEND_COUNT, S_N
};

static const char *const stmt_sql[S_N] = {
    [S_DIR_ADD] = "INSERT OR REPLACE INTO dirs VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [S_DIR_FIRST] = "SELECT * FROM dirs ORDER BY depth DESC, path LIMIT ?1",
    /* Keyset paging over (depth DESC, path ASC). */
    [S_DIR_NEXT] = "SELECT * FROM dirs WHERE depth < ?1 OR (depth = ?1 AND path > ?2)"
                   " ORDER BY depth DESC, path LIMIT ?3",
    [S_LINK_ADD] = "INSERT INTO links (path, first) VALUES (?1, ?2)",
    [S_LINK_NEXT] = "SELECT id, path, first FROM links WHERE id > ?1 ORDER BY id LIMIT ?2",
    [S_PEND_ADD] = "INSERT OR IGNORE INTO pending VALUES (?1)",
    [S_PEND_DEL] = "DELETE FROM pending WHERE key = ?1",
    [S_PEND_HAS] = "SELECT 1 FROM pending WHERE key = ?1",
    [S_PEND_NEXT] = "SELECT key FROM pending WHERE key > ?1 ORDER BY key LIMIT ?2",
    [S_PEND_COUNT] = "SELECT count(*) FROM pending",
};

struct restore_state {
    pthread_mutex_t lock; /* guards the connection and pending */
    sqlite3 *db;
    sqlite3_stmt *stmt[S_N];
    int pending;          /* writes in the open transaction */
    char path[4096];
};

static int db_fail(struct restore_state *rs, haul_error *err, const char *what)
{
    return err_set(err, HAUL_EIO, "restore state %s: %s: %s", rs->path, what, sqlite3_errmsg(rs->db));
}

static int exec(struct restore_state *rs, const char *sql, haul_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(rs->db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    int rc = err_set(err, HAUL_EIO, "restore state %s: %s: %s", rs->path, sql, msg ? msg : "");
    sqlite3_free(msg);
    return rc;
}

/* mkdir -p with mode 0700 for the components it creates. */
static int dir_make(const char *path, haul_error *err)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0700) < 0 && errno != EEXIST)
            return err_errno(err, errno, "state directory %s", buf);
        *p = c;
        if (!c)
            return 0;
    }
}

/* This host's name as it goes in file names: no '/' and no '-' (the
 * separator), so "restore-<host>-<pid>-XXXXXX.db" parses back. */
static void host_name(char *out, size_t cap)
{
    if (gethostname(out, cap) < 0 || !out[0])
        snprintf(out, cap, "localhost");
    out[cap - 1] = '\0';
    for (char *p = out; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.'))
            *p = '_';
}

/* Removes "restore-<host>-<pid>-*.db" files of this host whose process is
 * gone.  A state directory shared by several nodes (HOME on NFS) holds
 * other hosts' live files, whose pids mean nothing here: they stay, and so
 * do files of unknown host. */
static void stale_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    char host[256], me[256];
    host_name(me, sizeof me);
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid;
        char tail[64];
        if (sscanf(e->d_name, "restore-%255[^-]-%ld-%63s", host, &pid, tail) != 3 || pid <= 0 ||
            !strstr(tail, ".db") || strcmp(host, me) != 0)
            continue;
        if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
            char p[4400];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    closedir(d);
}

static int schema_create(struct restore_state *rs, haul_error *err)
{
    static const char *const setup[] = {
        /* A scratch file: deleted at the end, nothing to recover after a crash. */
        "PRAGMA journal_mode = OFF",
        "PRAGMA synchronous = OFF",
        "PRAGMA temp_store = FILE",
        "CREATE TABLE dirs (depth INTEGER, path BLOB, has INTEGER, mode INTEGER, uid INTEGER,"
        " gid INTEGER, mtime_sec INTEGER, mtime_nsec INTEGER, atime_sec INTEGER, atime_nsec INTEGER,"
        " PRIMARY KEY (depth, path)) WITHOUT ROWID",
        "CREATE TABLE links (id INTEGER PRIMARY KEY, path BLOB, first BLOB)",
        "CREATE TABLE pending (key TEXT PRIMARY KEY) WITHOUT ROWID",
        "BEGIN",
    };
    for (size_t i = 0; i < sizeof setup / sizeof *setup; i++)
        if (exec(rs, setup[i], err) < 0)
            return -HAUL_EIO;
    for (int i = 0; i < S_N; i++)
        if (sqlite3_prepare_v3(rs->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &rs->stmt[i],
                               NULL) != SQLITE_OK)
            return db_fail(rs, err, stmt_sql[i]);
    return 0;
}

struct restore_state *restore_state_open(const char *state_dir, haul_error *err)
{
    if (dir_make(state_dir, err) < 0)
        return NULL;
    stale_remove(state_dir);
    struct restore_state *rs = calloc(1, sizeof *rs);
    if (!rs) {
        err_set(err, HAUL_ENOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&rs->lock, NULL);
    char host[256];
    host_name(host, sizeof host);
    snprintf(rs->path, sizeof rs->path, "%s/restore-%s-%ld-XXXXXX.db", state_dir, host, (long)getpid());
    int fd = mkstemps(rs->path, 3);
    if (fd < 0) {
        err_errno(err, errno, "restore state %s", rs->path);
        pthread_mutex_destroy(&rs->lock);
        free(rs);
        return NULL;
    }
    close(fd);
    if (sqlite3_open_v2(rs->path, &rs->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        schema_create(rs, err) < 0) {
        if (rs->db && err && !err->code)
            db_fail(rs, err, "open");
        restore_state_close(rs);
        return NULL;
    }
    return rs;
}

void restore_state_close(struct restore_state *rs)
{
    if (!rs)
        return;
    for (int i = 0; i < S_N; i++)
        sqlite3_finalize(rs->stmt[i]);
    sqlite3_close(rs->db);
    unlink(rs->path);
    pthread_mutex_destroy(&rs->lock);
    free(rs);
}

/* Runs a prepared write and commits every BATCH_WRITES writes.  Called with
 * the lock held. */
static int write_step(struct restore_state *rs, sqlite3_stmt *st, const char *what, haul_error *err)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return db_fail(rs, err, what);
    if (++rs->pending >= BATCH_WRITES) {
        rs->pending = 0;
        if (exec(rs, "COMMIT", err) < 0 || exec(rs, "BEGIN", err) < 0)
            return -HAUL_EIO;
    }
    return 0;
}

int restore_state_dir_add(struct restore_state *rs, const struct restore_dir *d, haul_error *err)
{
    pthread_mutex_lock(&rs->lock);
    sqlite3_stmt *st = rs->stmt[S_DIR_ADD];
    sqlite3_bind_int(st, 1, d->depth);
    sqlite3_bind_blob(st, 2, d->path, (int)strlen(d->path), SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, d->has);
    sqlite3_bind_int64(st, 4, d->mode);
    sqlite3_bind_int64(st, 5, d->uid);
    sqlite3_bind_int64(st, 6, d->gid);
    sqlite3_bind_int64(st, 7, d->mtime_sec);
    sqlite3_bind_int64(st, 8, d->mtime_nsec);
    sqlite3_bind_int64(st, 9, d->atime_sec);
    sqlite3_bind_int64(st, 10, d->atime_nsec);
    int rc = write_step(rs, st, "add directory", err);
    pthread_mutex_unlock(&rs->lock);
    return rc;
}

/* A blob column as a NUL-terminated heap string (NULL when out of memory). */
static char *column_string(sqlite3_stmt *st, int col)
{
    const void *p = sqlite3_column_blob(st, col);
    int n = sqlite3_column_bytes(st, col);
    char *s = malloc((size_t)n + 1);
    if (s) {
        if (n)
            memcpy(s, p, (size_t)n);
        s[n] = '\0';
    }
    return s;
}

int restore_state_dirs_each(struct restore_state *rs, restore_dir_fn fn, void *ctx, haul_error *err)
{
    struct restore_dir batch[READ_BATCH];
    int last_depth = 0;
    char *last_path = NULL;
    int rc = 0;
    for (;;) {
        int n = 0;
        pthread_mutex_lock(&rs->lock);
        sqlite3_stmt *st = rs->stmt[last_path ? S_DIR_NEXT : S_DIR_FIRST];
        if (last_path) {
            sqlite3_bind_int(st, 1, last_depth);
            sqlite3_bind_blob(st, 2, last_path, (int)strlen(last_path), SQLITE_TRANSIENT);
            sqlite3_bind_int(st, 3, READ_BATCH);
        } else {
            sqlite3_bind_int(st, 1, READ_BATCH);
        }
        int step;
        while (n < READ_BATCH && (step = sqlite3_step(st)) == SQLITE_ROW) {
            struct restore_dir *d = &batch[n];
            d->depth = sqlite3_column_int(st, 0);
            if (!(d->path = column_string(st, 1))) {
                step = SQLITE_NOMEM;
                break;
            }
            d->has = (unsigned)sqlite3_column_int64(st, 2);
            d->mode = (uint32_t)sqlite3_column_int64(st, 3);
            d->uid = (uint32_t)sqlite3_column_int64(st, 4);
            d->gid = (uint32_t)sqlite3_column_int64(st, 5);
            d->mtime_sec = sqlite3_column_int64(st, 6);
            d->mtime_nsec = (long)sqlite3_column_int64(st, 7);
            d->atime_sec = sqlite3_column_int64(st, 8);
            d->atime_nsec = (long)sqlite3_column_int64(st, 9);
            n++;
        }
        if (step != SQLITE_ROW && step != SQLITE_DONE)
            rc = db_fail(rs, err, "read directories");
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        pthread_mutex_unlock(&rs->lock);
        for (int i = 0; i < n; i++) {
            if (rc == 0)
                rc = fn(&batch[i], ctx);
            if (i == n - 1) {
                free(last_path);
                last_path = (char *)batch[i].path;
                last_depth = batch[i].depth;
            } else {
                free((char *)batch[i].path);
            }
        }
        if (rc != 0 || n < READ_BATCH)
            break;
    }
    free(last_path);
    return rc;
}

int restore_state_link_add(struct restore_state *rs, const char *path, const char *first,
                           haul_error *err)
{
    pthread_mutex_lock(&rs->lock);
    sqlite3_stmt *st = rs->stmt[S_LINK_ADD];
    sqlite3_bind_blob(st, 1, path, (int)strlen(path), SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, first, (int)strlen(first), SQLITE_TRANSIENT);
    int rc = write_step(rs, st, "add hard link", err);
    pthread_mutex_unlock(&rs->lock);
    return rc;
}

int restore_state_links_each(struct restore_state *rs, restore_link_fn fn, void *ctx,
                             haul_error *err)
{
    char *paths[READ_BATCH], *firsts[READ_BATCH];
    int64_t last = 0;
    int rc = 0;
    for (;;) {
        int n = 0, step;
        pthread_mutex_lock(&rs->lock);
        sqlite3_stmt *st = rs->stmt[S_LINK_NEXT];
        sqlite3_bind_int64(st, 1, last);
        sqlite3_bind_int(st, 2, READ_BATCH);
        while (n < READ_BATCH && (step = sqlite3_step(st)) == SQLITE_ROW) {
            last = sqlite3_column_int64(st, 0);
            paths[n] = column_string(st, 1);
            firsts[n] = column_string(st, 2);
            n++;
            if (!paths[n - 1] || !firsts[n - 1]) {
                step = SQLITE_NOMEM;
                break;
            }
        }
        if (step != SQLITE_ROW && step != SQLITE_DONE)
            rc = db_fail(rs, err, "read hard links");
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        pthread_mutex_unlock(&rs->lock);
        for (int i = 0; i < n; i++) {
            if (rc == 0)
                rc = fn(paths[i], firsts[i], ctx);
            free(paths[i]);
            free(firsts[i]);
        }
        if (rc != 0 || n < READ_BATCH)
            return rc;
    }
}

static int key_write(struct restore_state *rs, enum stmt_id id, const char *key, const char *what,
                     haul_error *err)
{
    pthread_mutex_lock(&rs->lock);
    sqlite3_stmt *st = rs->stmt[id];
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    int rc = write_step(rs, st, what, err);
    pthread_mutex_unlock(&rs->lock);
    return rc;
}

int restore_state_pending_add(struct restore_state *rs, const char *key, haul_error *err)
{
    return key_write(rs, S_PEND_ADD, key, "add pending key", err);
}

int restore_state_pending_remove(struct restore_state *rs, const char *key, haul_error *err)
{
    return key_write(rs, S_PEND_DEL, key, "remove pending key", err);
}

int restore_state_pending_has(struct restore_state *rs, const char *key, haul_error *err)
{
    pthread_mutex_lock(&rs->lock);
    sqlite3_stmt *st = rs->stmt[S_PEND_HAS];
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    int step = sqlite3_step(st);
    int rc = step == SQLITE_ROW ? 1 : step == SQLITE_DONE ? 0 : db_fail(rs, err, "find pending key");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&rs->lock);
    return rc;
}

int restore_state_pending_each(struct restore_state *rs, restore_key_fn fn, void *ctx,
                               haul_error *err)
{
    char *keys[READ_BATCH];
    char *last = strdup("");
    int rc = last ? 0 : err_set(err, HAUL_ENOMEM, "out of memory");
    while (rc == 0) {
        int n = 0, step;
        pthread_mutex_lock(&rs->lock);
        sqlite3_stmt *st = rs->stmt[S_PEND_NEXT];
        sqlite3_bind_text(st, 1, last, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 2, READ_BATCH);
        while (n < READ_BATCH && (step = sqlite3_step(st)) == SQLITE_ROW) {
            if (!(keys[n] = strdup((const char *)sqlite3_column_text(st, 0)))) {
                step = SQLITE_NOMEM;
                break;
            }
            n++;
        }
        if (step != SQLITE_ROW && step != SQLITE_DONE)
            rc = db_fail(rs, err, "read pending keys");
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        pthread_mutex_unlock(&rs->lock);
        for (int i = 0; i < n; i++) {
            if (rc == 0)
                rc = fn(keys[i], ctx);
            if (i == n - 1) {
                free(last);
                last = keys[i];
            } else {
                free(keys[i]);
            }
        }
        if (n < READ_BATCH)
            break;
    }
    free(last);
    return rc;
}

int64_t restore_state_pending_count(struct restore_state *rs)
{
    pthread_mutex_lock(&rs->lock);
    sqlite3_stmt *st = rs->stmt[S_PEND_COUNT];
    int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_reset(st);
    pthread_mutex_unlock(&rs->lock);
    return n;
}

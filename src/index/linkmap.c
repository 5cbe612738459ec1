/* index/linkmap: first paths and later paths of hard-linked inodes, in a
 * temporary SQLite database (see linkmap.h). */
#include "index/linkmap.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

struct linkmap {
    sqlite3 *db;
    sqlite3_stmt *first_get, *first_put, *later_put;
    pthread_mutex_t lock; /* guards db and the statements */
};

static int db_fail(struct linkmap *lm, haul_error *err, const char *what)
{
    return err_set(err, HAUL_EIO, "hard-link map: %s: %s", what, sqlite3_errmsg(lm->db));
}

struct linkmap *linkmap_new(haul_error *err)
{
    struct linkmap *lm = calloc(1, sizeof *lm);
    if (!lm) {
        err_set(err, HAUL_ENOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&lm->lock, NULL);
    /* "" = a private temporary database on disk, removed when closed. */
    if (sqlite3_open_v2("", &lm->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK ||
        sqlite3_exec(lm->db,
                     "PRAGMA synchronous = OFF;"
                     "CREATE TABLE firsts (dev INTEGER, ino INTEGER, path BLOB, PRIMARY KEY (dev, ino));"
                     "CREATE TABLE laters (path BLOB PRIMARY KEY, first BLOB)",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(lm->db, "SELECT path FROM firsts WHERE dev = ? AND ino = ?", -1, &lm->first_get, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(lm->db, "INSERT INTO firsts VALUES (?, ?, ?)", -1, &lm->first_put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(lm->db, "INSERT OR REPLACE INTO laters VALUES (?, ?)", -1, &lm->later_put, NULL) != SQLITE_OK) {
        db_fail(lm, err, "create");
        linkmap_free(lm);
        return NULL;
    }
    return lm;
}

void linkmap_free(struct linkmap *lm)
{
    if (!lm)
        return;
    sqlite3_finalize(lm->first_get);
    sqlite3_finalize(lm->first_put);
    sqlite3_finalize(lm->later_put);
    sqlite3_close(lm->db);
    pthread_mutex_destroy(&lm->lock);
    free(lm);
}

int linkmap_add(struct linkmap *lm, uint64_t dev, uint64_t ino, const char *path, haul_error *err)
{
    int rc = 0;
    pthread_mutex_lock(&lm->lock);
    sqlite3_bind_int64(lm->first_get, 1, (sqlite3_int64)dev);
    sqlite3_bind_int64(lm->first_get, 2, (sqlite3_int64)ino);
    int step = sqlite3_step(lm->first_get);
    if (step == SQLITE_ROW) {
        sqlite3_bind_blob(lm->later_put, 1, path, (int)strlen(path), SQLITE_TRANSIENT);
        sqlite3_bind_blob(lm->later_put, 2, sqlite3_column_blob(lm->first_get, 0),
                          sqlite3_column_bytes(lm->first_get, 0), SQLITE_TRANSIENT);
        rc = sqlite3_step(lm->later_put) == SQLITE_DONE ? 1 : db_fail(lm, err, "insert");
        sqlite3_reset(lm->later_put);
    } else if (step == SQLITE_DONE) {
        sqlite3_bind_int64(lm->first_put, 1, (sqlite3_int64)dev);
        sqlite3_bind_int64(lm->first_put, 2, (sqlite3_int64)ino);
        sqlite3_bind_blob(lm->first_put, 3, path, (int)strlen(path), SQLITE_TRANSIENT);
        rc = sqlite3_step(lm->first_put) == SQLITE_DONE ? 0 : db_fail(lm, err, "insert");
        sqlite3_reset(lm->first_put);
    } else {
        rc = db_fail(lm, err, "lookup");
    }
    sqlite3_reset(lm->first_get);
    pthread_mutex_unlock(&lm->lock);
    return rc;
}

/* Copies a BLOB column into a NUL-terminated string (malloc'd). */
static char *column_string(sqlite3_stmt *st, int col)
{
    int n = sqlite3_column_bytes(st, col);
    char *s = malloc((size_t)n + 1);
    if (s) {
        if (n)
            memcpy(s, sqlite3_column_blob(st, col), (size_t)n);
        s[n] = '\0';
    }
    return s;
}

int linkmap_each(struct linkmap *lm, linkmap_fn fn, void *ctx, haul_error *err)
{
    sqlite3_stmt *st;
    pthread_mutex_lock(&lm->lock);
    int rc = sqlite3_prepare_v2(lm->db, "SELECT path, first FROM laters ORDER BY path", -1, &st, NULL) == SQLITE_OK
                 ? 0 : db_fail(lm, err, "list");
    pthread_mutex_unlock(&lm->lock);
    /* The callback runs without the lock: no adds happen at this point. */
    while (rc == 0) {
        int step = sqlite3_step(st);
        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW) {
            rc = db_fail(lm, err, "list");
            break;
        }
        char *path = column_string(st, 0), *first = column_string(st, 1);
        rc = path && first ? fn(path, first, ctx) : err_set(err, HAUL_ENOMEM, "out of memory");
        free(path);
        free(first);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Unit tests for index: the SQLite backup catalog. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index/index.h"

static char dir[] = "/tmp/haul-test-index-XXXXXX";
static char db[256];

static int setup(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/index.sqlite", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static struct index_entry entry(const char *key, uint64_t size, int64_t mtime_ns)
{
    struct index_entry e = {.size = size, .mtime_ns = mtime_ns, .mode = 0100644, .uid = 1000, .gid = 100};
    snprintf(e.key, sizeof e.key, "%s", key);
    snprintf(e.etag, sizeof e.etag, "etag-%s", key);
    snprintf(e.storage_class, sizeof e.storage_class, "STANDARD");
    return e;
}

static void test_put_get_survive_reopen(void **state)
{
    (void)state;
    haul_error err = {0};
    struct index *ix = index_open(db, &err);
    assert_non_null(ix);
    assert_int_equal(index_run_begin(ix, &err), 0);
    struct index_entry a = entry("dir/ünï côdé.txt", 123, 1700000000123456789LL);
    snprintf(a.tree_hash, sizeof a.tree_hash, "%064d", 7);
    assert_int_equal(index_put(ix, &a, &err), 0);
    assert_int_equal(index_close(ix, &err), 0);

    ix = index_open(db, &err);
    struct index_entry got;
    assert_int_equal(index_get(ix, "dir/ünï côdé.txt", &got, &err), 1);
    assert_int_equal(got.size, 123);
    assert_true(got.mtime_ns == 1700000000123456789LL);
    assert_int_equal(got.mode, 0100644);
    assert_int_equal(got.uid, 1000);
    assert_string_equal(got.etag, "etag-dir/ünï côdé.txt");
    assert_string_equal(got.tree_hash, a.tree_hash);
    assert_int_equal(index_get(ix, "missing", &got, &err), 0);
    assert_int_equal(index_count(ix), 1);
    assert_int_equal(index_close(ix, &err), 0);
}

struct seen {
    char keys[8][64];
    int n;
};

static int collect(const char *key, void *ctx)
{
    struct seen *s = ctx;
    snprintf(s->keys[s->n++], sizeof s->keys[0], "%s", key);
    return 0;
}

/* As backup --delete does: the key leaves the index once its object is
 * gone, while the walk over unseen keys goes on. */
static struct index *deleting_ix;
static int collect_and_delete(const char *key, void *ctx)
{
    haul_error err = {0};
    collect(key, ctx);
    return index_delete(deleting_ix, key, &err);
}

static void test_unseen_are_the_gone_files(void **state)
{
    (void)state;
    haul_error err = {0};
    unlink(db);
    struct index *ix = index_open(db, &err);
    assert_int_equal(index_run_begin(ix, &err), 0);
    const char *keys[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        struct index_entry e = entry(keys[i], 1, 1);
        assert_int_equal(index_put(ix, &e, &err), 0);
    }
    /* Next run: a is unchanged, c is re-uploaded, b and d are gone. */
    assert_int_equal(index_run_begin(ix, &err), 0);
    assert_int_equal(index_touch(ix, "a", &err), 0);
    struct index_entry c = entry("c", 2, 2);
    assert_int_equal(index_put(ix, &c, &err), 0);
    struct seen s = {0};
    assert_int_equal(index_unseen_each(ix, collect, &s, &err), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.keys[0], "b");
    assert_string_equal(s.keys[1], "d");
    assert_int_equal(index_count(ix), 4); /* listing removes nothing */
    struct seen del = {0};
    deleting_ix = ix;
    assert_int_equal(index_unseen_each(ix, collect_and_delete, &del, &err), 0);
    assert_int_equal(del.n, 2);
    assert_int_equal(index_count(ix), 2);
    struct seen again = {0};
    assert_int_equal(index_unseen_each(ix, collect, &again, &err), 0);
    assert_int_equal(again.n, 0);
    assert_int_equal(index_close(ix, &err), 0);
}

struct groups {
    int n;
    size_t sizes[4];
    char first[4][64];
    off_t st_size[4];
};

static int collect_group(const struct index_link_name *names, size_t n, void *ctx)
{
    struct groups *g = ctx;
    g->sizes[g->n] = n;
    snprintf(g->first[g->n], sizeof g->first[0], "%s|%s", names[0].key, n > 1 ? names[1].path : "");
    g->st_size[g->n] = names[0].st.st_size;
    g->n++;
    return 0;
}

static void test_hard_link_names_grouped_by_inode(void **state)
{
    (void)state;
    haul_error err = {0};
    unlink(db);
    struct index *ix = index_open(db, &err);
    const char *keys[] = {"p/y/two", "p/x/one", "p/z/other-device", "p/a/three"};
    for (int i = 0; i < 4; i++) {
        struct index_link_name nm = {.key = keys[i], .path = keys[i] + 2};
        nm.st.st_dev = i == 2 ? 6 : 5;
        nm.st.st_ino = 77;
        nm.st.st_size = 1000 + i;
        assert_int_equal(index_link_defer(ix, &nm, &err), 0);
    }
    struct groups g = {0};
    assert_int_equal(index_links_each(ix, collect_group, &g, &err), 0);
    assert_int_equal(g.n, 2); /* (5, 77) with three names, (6, 77) with one */
    assert_int_equal(g.sizes[0], 3);
    assert_string_equal(g.first[0], "p/a/three|x/one"); /* in key order */
    assert_int_equal(g.st_size[0], 1003);               /* the stat as walked */
    assert_int_equal(g.sizes[1], 1);
    assert_int_equal(index_close(ix, &err), 0);
}

static void test_link_role_survives_reopen(void **state)
{
    (void)state;
    haul_error err = {0};
    unlink(db);
    struct index *ix = index_open(db, &err);
    assert_int_equal(index_run_begin(ix, &err), 0);
    struct index_entry e = entry("p/b/y", 9, 1);
    e.nlink = 2;
    snprintf(e.link, sizeof e.link, "a/x");
    assert_int_equal(index_put(ix, &e, &err), 0);
    assert_int_equal(index_close(ix, &err), 0);
    ix = index_open(db, &err);
    static struct index_entry got;
    assert_int_equal(index_get(ix, "p/b/y", &got, &err), 1);
    assert_string_equal(got.link, "a/x");
    assert_int_equal(got.nlink, 2);
    assert_false(got.link_unknown);
    assert_int_equal(index_close(ix, &err), 0);
}

/* An index of a haul before link roles: opened, upgraded; a row that looks
 * like a link object (a non-empty file, an empty body's ETag) says so. */
static void test_old_index_upgraded(void **state)
{
    (void)state;
    unlink(db);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "sqlite3 '%s' \"CREATE TABLE objects (key TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, mode INTEGER,"
             " uid INTEGER, gid INTEGER, etag TEXT, storage_class TEXT, tree_hash TEXT, run INTEGER) WITHOUT ROWID;"
             " INSERT INTO objects VALUES ('p/a/x', 9, 1, 33188, 0, 0, '0123456789abcdef0123456789abcdef', 'STANDARD', '', 1);"
             " INSERT INTO objects VALUES ('p/b/y', 9, 1, 33188, 0, 0, 'd41d8cd98f00b204e9800998ecf8427e', 'STANDARD', '', 1);\"",
             db);
    if (system(cmd) != 0)
        skip(); /* no sqlite3 shell */
    haul_error err = {0};
    struct index *ix = index_open(db, &err);
    assert_non_null(ix);
    static struct index_entry got;
    assert_int_equal(index_get(ix, "p/a/x", &got, &err), 1);
    assert_false(got.link_unknown);
    assert_string_equal(got.link, "");
    assert_int_equal(index_get(ix, "p/b/y", &got, &err), 1);
    assert_true(got.link_unknown);
    assert_int_equal(index_run_begin(ix, &err), 0);
    struct index_entry e = entry("p/c/z", 1, 1);
    assert_int_equal(index_put(ix, &e, &err), 0);
    assert_int_equal(index_close(ix, &err), 0);
}

static void test_unseen_drop_and_marker(void **state)
{
    (void)state;
    haul_error err = {0};
    unlink(db);
    struct index *ix = index_open(db, &err);
    char id[64];
    assert_int_equal(index_marker_get(ix, id, sizeof id, &err), 0);
    assert_int_equal(index_marker_set(ix, "abc123", &err), 0);
    assert_int_equal(index_run_begin(ix, &err), 0);
    const char *keys[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        struct index_entry e = entry(keys[i], 1, 1);
        assert_int_equal(index_put(ix, &e, &err), 0);
    }
    assert_int_equal(index_run_begin(ix, &err), 0);
    assert_int_equal(index_touch(ix, "b", &err), 0);
    assert_int_equal(index_unseen_drop(ix, &err), 2);
    assert_int_equal(index_count(ix), 1);
    assert_int_equal(index_close(ix, &err), 0);
    ix = index_open(db, &err);
    assert_int_equal(index_marker_get(ix, id, sizeof id, &err), 1);
    assert_string_equal(id, "abc123");
    assert_int_equal(index_close(ix, &err), 0);
}

static void test_lock_is_exclusive_and_released(void **state)
{
    (void)state;
    haul_error err = {0};
    int fd = index_lock_take(db, "s3://b/p", &err);
    assert_true(fd >= 0);
    haul_error err2 = {0};
    assert_int_equal(index_lock_take(db, "s3://b/p", &err2), -1);
    char want[128];
    snprintf(want, sizeof want, "another backup of s3://b/p is running (pid %ld on ", (long)getpid());
    assert_non_null(strstr(err2.msg, want));
    index_lock_release(fd);
    fd = index_lock_take(db, "s3://b/p", &err);
    assert_true(fd >= 0);
    index_lock_release(fd);
}

/* L9: a read error while listing what is gone is reported, never taken
 * for "nothing more is gone". */
static int count_key(const char *key, void *ctx)
{
    (void)key;
    (*(int *)ctx)++;
    return 0;
}

static void test_unseen_read_error_reported(void **state)
{
    (void)state;
    haul_error err = {0};
    unlink(db);
    struct index *ix = index_open(db, &err);
    assert_int_equal(index_run_begin(ix, &err), 0);
    for (int i = 0; i < 5000; i++) {
        char k[64];
        snprintf(k, sizeof k, "some/long/directory/name/f-%06d", i);
        struct index_entry e = entry(k, 1, 1);
        assert_int_equal(index_put(ix, &e, &err), 0);
    }
    assert_int_equal(index_close(ix, &err), 0);
    /* Garbage over the table's pages, the schema (page 1) left intact. */
    FILE *f = fopen(db, "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    char junk[4096];
    memset(junk, 0xA5, sizeof junk);
    for (long off = 3 * 4096; off + 4096 <= size; off += 4096) {
        fseek(f, off, SEEK_SET);
        fwrite(junk, 1, sizeof junk, f);
    }
    fclose(f);
    ix = index_open(db, &err);
    assert_non_null(ix); /* run 0: every entry (run 1) is unseen */
    int n = 0;
    memset(&err, 0, sizeof err);
    assert_true(index_unseen_each(ix, count_key, &n, &err) < 0);
    assert_non_null(strstr(err.msg, "files that are gone"));
    index_close(ix, NULL);
}

static void test_many_entries_batched(void **state)
{
    (void)state;
    haul_error err = {0};
    unlink(db);
    struct index *ix = index_open(db, &err);
    assert_int_equal(index_run_begin(ix, &err), 0);
    for (int i = 0; i < 20000; i++) {
        char k[32];
        snprintf(k, sizeof k, "f/%06d", i);
        struct index_entry e = entry(k, (uint64_t)i, i);
        assert_int_equal(index_put(ix, &e, &err), 0);
    }
    assert_int_equal(index_count(ix), 20000);
    struct index_entry got;
    assert_int_equal(index_get(ix, "f/012345", &got, &err), 1);
    assert_int_equal(got.size, 12345);
    assert_int_equal(index_close(ix, &err), 0);
}

static void test_unwritable_path_is_an_error(void **state)
{
    (void)state;
    haul_error err = {0};
    assert_null(index_open("/nonexistent-dir/x.sqlite", &err));
    assert_int_equal(err.code, HAUL_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/x.sqlite"));
}

static void test_props_survive_reopen(void **state)
{
    (void)state;
    haul_error err = {0};
    char v[64];
    struct index *ix = index_open(db, &err);
    assert_non_null(ix);
    assert_int_equal(index_prop_get(ix, "srcid /data", v, sizeof v, &err), 0);
    assert_int_equal(index_prop_set(ix, "srcid /data", "one", &err), 0);
    assert_int_equal(index_prop_set(ix, "srcid /data", "two", &err), 0);
    assert_int_equal(index_prop_set(ix, "srcid /other", "three", &err), 0);
    assert_int_equal(index_close(ix, &err), 0);
    ix = index_open(db, &err);
    assert_int_equal(index_prop_get(ix, "srcid /data", v, sizeof v, &err), 1);
    assert_string_equal(v, "two");
    assert_int_equal(index_prop_get(ix, "srcid /other", v, 4, &err), 1);
    assert_string_equal(v, "thr"); /* cut to the buffer */
    assert_int_equal(index_close(ix, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_survive_reopen),
        cmocka_unit_test(test_unseen_are_the_gone_files),
        cmocka_unit_test(test_hard_link_names_grouped_by_inode),
        cmocka_unit_test(test_link_role_survives_reopen),
        cmocka_unit_test(test_old_index_upgraded),
        cmocka_unit_test(test_unseen_drop_and_marker),
        cmocka_unit_test(test_lock_is_exclusive_and_released),
        cmocka_unit_test(test_unseen_read_error_reported),
        cmocka_unit_test(test_many_entries_batched),
        cmocka_unit_test(test_unwritable_path_is_an_error),
        cmocka_unit_test(test_props_survive_reopen),
    };
    return cmocka_run_group_tests_name("index", tests, setup, teardown);
}

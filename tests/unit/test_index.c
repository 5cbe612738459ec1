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

static void test_hard_links_first_key_wins(void **state)
{
    (void)state;
    haul_error err = {0};
    struct index *ix = index_open(db, &err);
    char first[256];
    assert_int_equal(index_link_first(ix, 5, 77, "x/one", first, sizeof first, &err), 0);
    assert_int_equal(index_link_first(ix, 5, 77, "y/two", first, sizeof first, &err), 1);
    assert_string_equal(first, "x/one");
    assert_int_equal(index_link_first(ix, 6, 77, "z/other-device", first, sizeof first, &err), 0);
    assert_int_equal(index_close(ix, &err), 0);
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
        cmocka_unit_test(test_hard_links_first_key_wins),
        cmocka_unit_test(test_many_entries_batched),
        cmocka_unit_test(test_unwritable_path_is_an_error),
        cmocka_unit_test(test_props_survive_reopen),
    };
    return cmocka_run_group_tests_name("index", tests, setup, teardown);
}

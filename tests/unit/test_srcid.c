/* Unit tests for fs/srcid: a source root's identity, its record, and the
 * decisions on deleting that clone and backup share. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/srcid.h"

static const char BOOT[] = "b19b19cd-1f1d-4b26-b1f4-e85b8c6f4b94";

static struct srcid id(uint64_t dev, uint64_t ino, uint64_t fsid, uint64_t type, bool nonempty, const char *boot)
{
    struct srcid s = {.dev = dev, .ino = ino, .fsid = fsid, .fstype = type, .nonempty = nonempty};
    snprintf(s.boot, sizeof s.boot, "%s", boot);
    return s;
}

static void test_format_parse_roundtrip(void **state)
{
    (void)state;
    struct srcid a = id(65024, 10952870, 0x3128c0444843412aULL, 0xef53, true, BOOT), b;
    char text[SRCID_TEXT_MAX];
    srcid_format(&a, text, sizeof text);
    assert_int_equal(srcid_parse(text, &b), 0);
    assert_memory_equal(&a, &b, sizeof a);
    struct srcid c = id(42, 1, 0, 0x1021994, false, ""), d;
    srcid_format(&c, text, sizeof text);
    assert_non_null(strstr(text, "boot=-"));
    assert_int_equal(srcid_parse(text, &d), 0);
    assert_memory_equal(&c, &d, sizeof c);
    /* one trailing newline, as the record file has */
    char line[SRCID_TEXT_MAX + 1];
    snprintf(line, sizeof line, "%s\n", text);
    assert_int_equal(srcid_parse(line, &d), 0);
}

static void test_parse_strict(void **state)
{
    (void)state;
    struct srcid s;
    assert_int_equal(srcid_parse("", &s), -1);
    assert_int_equal(srcid_parse("srcid1 dev=1 ino=2 fsid=3 type=4 nonempty=1", &s), -1);
    assert_int_equal(srcid_parse("srcid1 dev=1 ino=2 fsid=3 type=4 nonempty=2 boot=-", &s), -1);
    assert_int_equal(srcid_parse("srcid1 dev=1 ino=0 fsid=3 type=4 nonempty=1 boot=-", &s), -1); /* unknown */
    assert_int_equal(srcid_parse("srcid1 dev=1 ino=2 fsid=3 type=4 nonempty=1 boot=- junk", &s), -1);
    assert_int_equal(srcid_parse("srcid1 dev=1 ino=2 fsid=3 type=4 nonempty=1 boot=-\n\n", &s), -1);
    assert_int_equal(srcid_parse("srcid2 dev=1 ino=2 fsid=3 type=4 nonempty=1 boot=-", &s), -1);
    assert_int_equal(srcid_parse("srcid1 dev=1 ino=2 fsid=3 type=4 nonempty=1 boot=-", &s), 0);
    assert_int_equal(s.ino, 2);
    assert_string_equal(s.boot, "");
}

static void test_same_fs(void **state)
{
    (void)state;
    char why[128];
    struct srcid a = id(42, 1, 0xaaaa, 0x1021994, true, BOOT);
    struct srcid b = a;
    assert_true(srcid_same_fs(&a, &b, why, sizeof why));
    /* another tmpfs at the same path: same dev number reused, fsid differs */
    b.fsid = 0xbbbb;
    assert_false(srcid_same_fs(&a, &b, why, sizeof why));
    assert_string_equal(why, "filesystem id aaaa, was bbbb");
    /* the mountpoint below, unmounted: another type */
    b = id(65024, 77, 0xcccc, 0xef53, false, BOOT);
    assert_false(srcid_same_fs(&a, &b, why, sizeof why));
    assert_string_equal(why, "filesystem type 0x1021994, was 0xef53");
    /* another directory of the same filesystem */
    b = a;
    b.ino = 2;
    assert_false(srcid_same_fs(&a, &b, why, sizeof why));
    assert_string_equal(why, "root inode 1, was 2");
    /* devices compared within one boot only */
    b = a;
    b.dev = 43;
    assert_false(srcid_same_fs(&a, &b, why, sizeof why));
    assert_string_equal(why, "device 0:42, was 0:43");
    snprintf(b.boot, sizeof b.boot, "%s", "00000000-1f1d-4b26-b1f4-e85b8c6f4b94");
    assert_true(srcid_same_fs(&a, &b, why, sizeof why));
    /* across boots a zero fsid (a filesystem without one) is not compared */
    b.fsid = 0;
    assert_true(srcid_same_fs(&a, &b, why, sizeof why));
    b.fsid = 0xdddd;
    assert_false(srcid_same_fs(&a, &b, why, sizeof why));
    /* no boot id: devices are not comparable */
    a.boot[0] = b.boot[0] = '\0';
    b.fsid = a.fsid;
    assert_true(srcid_same_fs(&a, &b, why, sizeof why));
}

static void test_delete_check(void **state)
{
    (void)state;
    struct srcid now = id(42, 1, 0xaaaa, 0x1021994, true, BOOT), then = now;
    struct srcid_policy none = {0}, empty_ok = {.allow_empty = true}, new_ok = {.allow_new = true};
    haul_error err = {0};
    assert_int_equal(srcid_delete_check("/s", &now, NULL, &none, &err), 0);
    assert_int_equal(srcid_delete_check("/s", &now, &then, &none, &err), 0);

    now.nonempty = false; /* emptied, or the mountpoint after umount */
    assert_int_equal(srcid_delete_check("/s", &now, NULL, &none, &err), -HAUL_EINTEGRITY);
    assert_non_null(strstr(err.msg, "SRC /s is empty (an unmounted filesystem?)"));
    assert_non_null(strstr(err.msg, "--allow-empty-src"));
    err = (haul_error){0};
    assert_int_equal(srcid_delete_check("/s", &now, &then, &none, &err), -HAUL_EINTEGRITY);
    assert_non_null(strstr(err.msg, "empty but was not at the last run"));
    err = (haul_error){0};
    assert_int_equal(srcid_delete_check("/s", &now, &then, &empty_ok, &err), 0);

    now.nonempty = true;
    now.fsid = 0xbbbb;
    assert_int_equal(srcid_delete_check("/s", &now, &then, &empty_ok, &err), -HAUL_EINTEGRITY);
    assert_non_null(strstr(err.msg, "not the filesystem recorded at the last run (filesystem id bbbb, was aaaa)"));
    assert_non_null(strstr(err.msg, "--allow-new-src"));
    err = (haul_error){0};
    assert_int_equal(srcid_delete_check("/s", &now, &then, &new_ok, &err), 0);

    now.ino = 0; /* could not be taken */
    assert_int_equal(srcid_delete_check("/s", &now, NULL, &new_ok, &err), -HAUL_EINTEGRITY);
    assert_non_null(strstr(err.msg, "could not be confirmed"));
}

static void test_recordable(void **state)
{
    (void)state;
    struct srcid now = id(42, 1, 0xaaaa, 0x1021994, true, BOOT), then = now;
    assert_true(srcid_recordable(&now, NULL, false));
    assert_true(srcid_recordable(&now, &then, false));
    then.fsid = 0xbbbb;
    assert_false(srcid_recordable(&now, &then, false));
    assert_true(srcid_recordable(&now, &then, true));
    now.nonempty = false; /* an empty SRC is never recorded */
    assert_false(srcid_recordable(&now, NULL, true));
}

static void test_match(void **state)
{
    (void)state;
    struct srcid theirs = id(42, 1, 0xaaaa, 0x1021994, true, BOOT), mine = theirs, none = {0};
    haul_error err = {0};
    assert_int_equal(srcid_match("/s", &mine, &theirs, &err), 0);
    mine.nonempty = false;
    assert_int_equal(srcid_match("/s", &mine, &none, &err), 0); /* an older coordinator sent none */
    assert_int_equal(srcid_match("/s", &mine, &theirs, &err), -HAUL_EINTEGRITY);
    assert_non_null(strstr(err.msg, "SRC /s is empty on this node but not on the coordinator's"));
    err = (haul_error){0};
    mine = theirs;
    mine.fstype = 0xef53;
    assert_int_equal(srcid_match("/s", &mine, &theirs, &err), -HAUL_EINTEGRITY);
    assert_non_null(strstr(err.msg, "(here filesystem type 0xef53, there 0x1021994)"));
}

static void test_probe_and_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/haul-test-srcid-XXXXXX";
    assert_non_null(mkdtemp(dir));
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    struct srcid a, b;
    haul_error err = {0};
    assert_int_equal(srcid_probe(fd, &a, &err), 0);
    assert_false(a.nonempty);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(a.ino == (uint64_t)st.st_ino && a.dev == (uint64_t)st.st_dev);
    char path[512];
    snprintf(path, sizeof path, "%s/x", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(srcid_probe(fd, &b, &err), 0);
    assert_true(b.nonempty);
    close(fd);

    char rec[600];
    assert_int_equal(srcid_file_path(dir, "/some/dst", rec, sizeof rec, &err), 0);
    assert_int_equal(srcid_file_read(rec, &a, &err), 0); /* none yet */
    assert_int_equal(srcid_file_write(rec, &b, &err), 0);
    assert_int_equal(srcid_file_read(rec, &a, &err), 1);
    assert_memory_equal(&a, &b, sizeof a);
    FILE *f = fopen(rec, "w");
    assert_non_null(f);
    fputs("garbage\n", f);
    fclose(f);
    assert_true(srcid_file_read(rec, &a, &err) < 0);
    assert_non_null(strstr(err.msg, "damaged"));
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_parse_roundtrip),
        cmocka_unit_test(test_parse_strict),
        cmocka_unit_test(test_same_fs),
        cmocka_unit_test(test_delete_check),
        cmocka_unit_test(test_recordable),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_probe_and_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for clone's building blocks: the local copy engine
 * (xfer/fcopy), confined destination operations (fs: open beneath,
 * remove, publish a temporary, symlinks and nodes, links, mkdir -p) and the
 * hard-link map (index/linkmap).  Real files in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index/linkmap.h"
#include "fs/fs.h"
#include "xfer/fcopy.h"

static char dir[] = "/tmp/haul-unit-clone.XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static int file_open(const char *name, int flags)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, flags | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    return fd;
}

/* A file of size bytes with a pattern that differs at every offset. */
static int pattern_file(const char *name, uint64_t size)
{
    int fd = file_open(name, O_RDWR | O_CREAT | O_TRUNC);
    char buf[65536];
    for (uint64_t off = 0; off < size; off += sizeof buf) {
        size_t n = size - off < sizeof buf ? (size_t)(size - off) : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)((off + i) * 2654435761u >> 13);
        assert_int_equal(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
    }
    return fd;
}

static void assert_same(int a, int b, uint64_t size)
{
    char x[65536], y[65536];
    for (uint64_t off = 0; off < size; off += sizeof x) {
        ssize_t n = pread(a, x, sizeof x, (off_t)off);
        assert_true(n > 0);
        assert_int_equal(pread(b, y, (size_t)n, (off_t)off), n);
        assert_memory_equal(x, y, (size_t)n);
    }
    struct stat sa, sb;
    fstat(a, &sa);
    fstat(b, &sb);
    assert_int_equal(sa.st_size, sb.st_size);
}

static void test_serial_copy(void **state)
{
    (void)state;
    int src = pattern_file("serial", 3 * 1048576 + 17);
    int dst = file_open("serial.copy", O_RDWR | O_CREAT | O_TRUNC);
    haul_error err = {0};
    assert_int_equal(xfer_file_copy(src, dst, 3 * 1048576 + 17, NULL, &err), 0);
    assert_same(src, dst, 3 * 1048576 + 17);
    close(src);
    close(dst);
}

/* Ranges of 1 MiB over 4 threads (plus the caller), with a last short one. */
static void test_parallel_ranges(void **state)
{
    (void)state;
    uint64_t size = 9 * 1048576 + 5;
    int src = pattern_file("ranges", size);
    int dst = file_open("ranges.copy", O_RDWR | O_CREAT | O_TRUNC);
    haul_error err = {0};
    struct xfer_copy_pool *pool = xfer_copy_pool_new(4, &err);
    assert_non_null(pool);
    struct xfer_copy_opts o = {.chunk = 1048576, .parallel_threshold = 2 * 1048576, .pool = pool};
    assert_int_equal(xfer_file_copy(src, dst, size, &o, &err), 0);
    assert_same(src, dst, size);
    xfer_copy_pool_free(pool);
    close(src);
    close(dst);
}

/* Holes stay holes: 64 MiB with 4 KiB of data in the middle. */
static void test_sparse_stays_sparse(void **state)
{
    (void)state;
    int src = file_open("sparse", O_RDWR | O_CREAT | O_TRUNC);
    assert_int_equal(ftruncate(src, 64 << 20), 0);
    char data[4096];
    memset(data, 'd', sizeof data);
    assert_int_equal(pwrite(src, data, sizeof data, 32 << 20), (ssize_t)sizeof data);
    int dst = file_open("sparse.copy", O_RDWR | O_CREAT | O_TRUNC);
    haul_error err = {0};
    assert_int_equal(xfer_file_copy(src, dst, 64 << 20, NULL, &err), 0);
    assert_same(src, dst, 64 << 20);
    struct stat st;
    fstat(dst, &st);
    assert_true(st.st_blocks * 512 < 1 << 20);
    close(src);
    close(dst);
}

/* A source shorter than announced (it shrank) is an error, not a copy
 * padded with zeros. */
static void test_shrunk_source_fails(void **state)
{
    (void)state;
    int src = pattern_file("short", 1000);
    int dst = file_open("short.copy", O_RDWR | O_CREAT | O_TRUNC);
    haul_error err = {0};
    assert_true(xfer_file_copy(src, dst, 5000, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "shrank"));
    close(src);
    close(dst);
}

/* Paths through a symlink are refused; plain ones resolve. */
static void test_open_beneath_refuses_symlinks(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/real", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/real/inner", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/link", dir);
    assert_int_equal(symlink("real", path), 0);
    int root = open(dir, O_RDONLY | O_DIRECTORY);
    haul_error err = {0};
    int fd = fs_open_beneath(root, "real/inner", O_RDONLY | O_DIRECTORY, &err);
    assert_true(fd >= 0);
    close(fd);
    assert_true(fs_open_beneath(root, "link/inner", O_RDONLY | O_DIRECTORY, &err) < 0);
    err = (haul_error){0};
    assert_true(fs_open_beneath(root, "real/../../etc", O_RDONLY | O_DIRECTORY, &err) < 0);
    const char *name;
    fd = fs_parent_open(root, "real/inner/file", &name, &err);
    assert_true(fd >= 0);
    assert_string_equal(name, "file");
    fs_parent_close(root, fd);
    assert_int_equal(fs_parent_open(root, "top", &name, &err), root);
    close(root);
}

static void test_remove_tree(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/tree/a/b", dir);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && touch '%s/f' && chmod 0500 '%s'", path, path, path);
    assert_int_equal(system(cmd), 0);
    int root = open(dir, O_RDONLY | O_DIRECTORY);
    haul_error err = {0};
    assert_int_equal(fs_remove(root, "tree", &err), 0);
    struct stat st;
    assert_true(fstatat(root, "tree", &st, AT_SYMLINK_NOFOLLOW) < 0);
    assert_int_equal(fs_remove(root, "tree", &err), 0); /* already gone: fine */
    close(root);
}

/* The number of entries in dir whose name starts with prefix. */
static int count_prefixed(int root, const char *prefix)
{
    int fd = openat(root, ".", O_RDONLY | O_DIRECTORY);
    DIR *d = fdopendir(fd);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static void test_publish(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/pub", dir);
    mkdir(path, 0700);
    int root = open(path, O_RDONLY | O_DIRECTORY);
    haul_error err = {0};
    struct stat st;
    /* unnamed and named, each: a new name, then over an old file */
    for (int named = 0; named < 2; named++) {
        for (int round = 0; round < 2; round++) {
            struct fs_tmp t;
            assert_int_equal(fs_tmp_create(root, named, &t, &err), 0);
            assert_int_equal(t.name[0] != '\0', named);
            assert_int_equal(write(t.fd, "abc", 3 + round), 3 + round);
            assert_int_equal(fs_publish(&t, "f", round ? FS_SYNC_DATA : 0, &err), 0);
            assert_int_equal(t.fd, -1);
            assert_int_equal(fstatat(root, "f", &st, 0), 0);
            assert_int_equal(st.st_size, 3 + round);
        }
    }
    /* FS_NOREPLACE: the name is taken, nothing published, nothing left */
    for (int named = 0; named < 2; named++) {
        struct fs_tmp t;
        assert_int_equal(fs_tmp_create(root, named, &t, &err), 0);
        assert_int_equal(fs_publish(&t, "f", FS_NOREPLACE, &err), 1);
        assert_int_equal(fstatat(root, "f", &st, 0), 0);
        assert_int_equal(st.st_size, 4);
    }
    /* a directory in the way is never replaced */
    assert_int_equal(mkdirat(root, "d", 0700), 0);
    assert_int_equal(mkdirat(root, "d/x", 0700), 0);
    struct fs_tmp t;
    assert_int_equal(fs_tmp_create(root, true, &t, &err), 0);
    assert_true(fs_publish(&t, "d", 0, &err) < 0);
    assert_non_null(strstr(err.msg, "a directory is in the way"));
    assert_int_equal(count_prefixed(root, ".haul-tmp"), 0);
    close(root);
}

static void test_node_and_link(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/nodes", dir);
    mkdir(path, 0700);
    int root = open(path, O_RDONLY | O_DIRECTORY);
    haul_error err = {0};
    struct fs_meta_opts o = {0};
    struct stat meta = {.st_mode = S_IFLNK | 0777, .st_uid = (uid_t)-1, .st_gid = (gid_t)-1};
    meta.st_atim.tv_nsec = UTIME_OMIT;
    meta.st_mtim.tv_sec = 1000000000;
    assert_int_equal(close(openat(root, "f", O_WRONLY | O_CREAT, 0600)), 0);
    /* a symlink replaces a file, with its own mtime */
    assert_int_equal(fs_node_make(root, "f", S_IFLNK, "target", 0, &meta, &o, &err), 0);
    char buf[64];
    assert_int_equal(readlinkat(root, "f", buf, sizeof buf), 6);
    struct stat st;
    assert_int_equal(fstatat(root, "f", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_int_equal(st.st_mtim.tv_sec, 1000000000);
    /* a FIFO with its mode */
    meta.st_mode = S_IFIFO | 0640;
    assert_int_equal(fs_node_make(root, "p", S_IFIFO, NULL, 0, &meta, &o, &err), 0);
    assert_int_equal(fstatat(root, "p", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0640);
    /* hard links: a new name, over an old entry, and NOREPLACE */
    assert_int_equal(close(openat(root, "a", O_WRONLY | O_CREAT, 0600)), 0);
    assert_int_equal(fs_link(root, "a", root, "b", 0, &err), 0);
    assert_int_equal(fs_link(root, "a", root, "f", 0, &err), 0);
    assert_int_equal(fs_link(root, "a", root, "p", FS_NOREPLACE, &err), 1);
    assert_int_equal(fstatat(root, "f", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_int_equal(st.st_nlink, 3);
    assert_int_equal(count_prefixed(root, ".haul-tmp"), 0);
    close(root);
}

static void test_dirs_open(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/dirs", dir);
    mkdir(path, 0700);
    int root = open(path, O_RDONLY | O_DIRECTORY);
    haul_error err = {0};
    int fd = fs_dirs_open(root, "a/b/c", 5, 0, 0700, &err);
    assert_true(fd < 0);
    assert_int_equal(err.code, HAUL_ENOTFOUND);
    assert_non_null(strstr(err.msg, "a: open"));
    err = (haul_error){0};
    fd = fs_dirs_open(root, "a/b/c", 5, FS_DIRS_CREATE, 0700, &err);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(symlinkat("..", root, "a/l"), 0);
    fd = fs_dirs_open(root, "a/l/x", 5, FS_DIRS_CREATE, 0700, &err);
    assert_true(fd < 0);
    assert_non_null(strstr(err.msg, "a/l: is a symlink"));
    assert_int_equal(fs_mkdir(root, "a", 0700, &err), 1);
    close(root);
}

struct collected {
    char text[256];
};

static int collect(const char *path, const char *first, void *ctx)
{
    struct collected *c = ctx;
    size_t len = strlen(c->text);
    snprintf(c->text + len, sizeof c->text - len, "%s->%s;", path, first);
    return 0;
}

static void test_linkmap(void **state)
{
    (void)state;
    haul_error err = {0};
    struct linkmap *lm = linkmap_new(&err);
    assert_non_null(lm);
    assert_int_equal(linkmap_add(lm, 1, 100, "a/first", &err), 0);
    assert_int_equal(linkmap_add(lm, 1, 100, "z/later", &err), 1);
    assert_int_equal(linkmap_add(lm, 2, 100, "other-dev", &err), 0);
    assert_int_equal(linkmap_add(lm, 1, 100, "b/later", &err), 1);
    struct collected c = {""};
    assert_int_equal(linkmap_each(lm, collect, &c, &err), 0);
    assert_string_equal(c.text, "b/later->a/first;z/later->a/first;");
    linkmap_free(lm);
    linkmap_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serial_copy),
        cmocka_unit_test(test_parallel_ranges),
        cmocka_unit_test(test_sparse_stays_sparse),
        cmocka_unit_test(test_shrunk_source_fails),
        cmocka_unit_test(test_open_beneath_refuses_symlinks),
        cmocka_unit_test(test_remove_tree),
        cmocka_unit_test(test_publish),
        cmocka_unit_test(test_node_and_link),
        cmocka_unit_test(test_dirs_open),
        cmocka_unit_test(test_linkmap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

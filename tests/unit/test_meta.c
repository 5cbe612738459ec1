/* Unit tests for meta: POSIX metadata <-> x-amz-meta-* (round trips, what s3fs
 * and rclone write, malformed values), the Glacier SHA-256 tree hash (botocore's
 * published vectors and python3 hashlib ones), and keys <-> paths (the escape
 * for names that are not UTF-8, and the restore-side refusal of hostile keys),
 * the restore policy (owners, set-ID bits, devices, others' write) and the
 * escape of control characters for terminals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "meta/meta.h"

/* ---- helpers ---------------------------------------------------------------- */

#define M(n, v) {(char *)(n), (char *)(v)}
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The value of name in enc, or NULL. */
static const char *enc_get(const struct meta_encoded *enc, const char *name)
{
    for (size_t i = 0; i < enc->n; i++)
        if (strcmp(enc->items[i].name, name) == 0)
            return enc->items[i].value;
    return NULL;
}

static struct stat make_stat(mode_t mode, uid_t uid, gid_t gid, time_t sec, long nsec)
{
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_mode = mode;
    st.st_uid = uid;
    st.st_gid = gid;
    st.st_mtim = (struct timespec){.tv_sec = sec, .tv_nsec = nsec};
    st.st_atim = (struct timespec){.tv_sec = sec / 2, .tv_nsec = nsec / 3};
    return st;
}

/* Encodes st and decodes the result (dir_key as the key would say). */
static void round_trip(const struct stat *st, const struct meta_extra *extra,
                       struct meta_posix *out)
{
    struct meta_encoded enc;
    haul_error err = {0};
    assert_int_equal(meta_stat_encode(st, extra, &enc, &err), 0);
    assert_int_equal(err.code, HAUL_OK);
    size_t counted = 0;
    for (size_t i = 0; i < enc.n; i++)
        counted += strlen(enc.items[i].name) + strlen(enc.items[i].value);
    assert_true(counted <= META_S3_LIMIT);
    assert_int_equal(meta_stat_decode(enc.items, enc.n, S_ISDIR(st->st_mode), out, &err), 0);
    assert_int_equal(err.code, HAUL_OK);
}

static void assert_same_stat(const struct stat *st, const struct meta_posix *p, bool atime)
{
    assert_int_equal(p->mode, st->st_mode);
    assert_int_equal(p->uid, st->st_uid);
    assert_int_equal(p->gid, st->st_gid);
    assert_int_equal(p->mtime.tv_sec, st->st_mtim.tv_sec);
    assert_int_equal(p->mtime.tv_nsec, st->st_mtim.tv_nsec);
    unsigned want = META_HAS_MODE | META_HAS_UID | META_HAS_GID | META_HAS_MTIME;
    assert_int_equal(p->has & want, want);
    if (atime) {
        assert_true(p->has & META_HAS_ATIME);
        assert_int_equal(p->atime.tv_sec, st->st_atim.tv_sec);
        assert_int_equal(p->atime.tv_nsec, st->st_atim.tv_nsec);
    } else {
        assert_false(p->has & META_HAS_ATIME);
    }
}

static int decode(const struct s3_meta *m, size_t n, bool dir_key, struct meta_posix *out,
                  haul_error *err)
{
    memset(err, 0, sizeof *err);
    return meta_stat_decode(m, n, dir_key, out, err);
}

/* ---- encoding, round trips ---------------------------------------------------- */

/* The exact items, in s3fs's formats. */
static void test_encode_file(void **state)
{
    (void)state;
    struct stat st = make_stat(S_IFREG | 0644, 1000, 100, 1700000000, 42);
    struct meta_encoded enc;
    haul_error err = {0};

    assert_int_equal(meta_stat_encode(&st, NULL, &enc, &err), 0);
    assert_int_equal(enc.n, 4);
    assert_string_equal(enc_get(&enc, "mode"), "33188");
    assert_string_equal(enc_get(&enc, "uid"), "1000");
    assert_string_equal(enc_get(&enc, "gid"), "100");
    assert_string_equal(enc_get(&enc, "mtime"), "1700000000.000000042");
    assert_null(enc_get(&enc, "atime"));

    st.st_mtim.tv_nsec = 0; /* s3fs writes no fraction then */
    struct meta_extra extra = {.atime = true};
    assert_int_equal(meta_stat_encode(&st, &extra, &enc, &err), 0);
    assert_string_equal(enc_get(&enc, "mtime"), "1700000000");
    assert_string_equal(enc_get(&enc, "atime"), "850000000.000000014");
    assert_int_equal(enc.n, 5);
}

static void test_round_trip_types(void **state)
{
    (void)state;
    struct meta_posix p;
    const mode_t modes[] = {S_IFREG | 0640, S_IFDIR | 0755, S_IFIFO | 0600, S_IFSOCK | 0777,
                            S_IFREG | 07777, S_IFDIR | 01777, S_IFREG | 0};
    for (size_t i = 0; i < COUNT(modes); i++) {
        struct stat st = make_stat(modes[i], 1234, 5678, 1600000000 + (time_t)i, 123456789);
        struct meta_extra extra = {.atime = i % 2 == 0};
        round_trip(&st, &extra, &p);
        assert_same_stat(&st, &p, extra.atime);
        assert_false(p.has & (META_HAS_SYMLINK | META_HAS_HARDLINK | META_HAS_RDEV));
        assert_false(p.sparse);
    }
}

static void test_round_trip_symlink(void **state)
{
    (void)state;
    struct stat st = make_stat(S_IFLNK | 0777, 0, 0, 1, 1);
    struct meta_extra extra = {.symlink = "../shared dir/f\xc3\xa9 %x\x01\xff", .atime = true};
    struct meta_encoded enc;
    haul_error err = {0};
    struct meta_posix p;

    assert_int_equal(meta_stat_encode(&st, &extra, &enc, &err), 0);
    assert_string_equal(enc_get(&enc, "mode"), "41471"); /* s3fs: S_IFLNK | 0777 */
    assert_string_equal(enc_get(&enc, "haul-symlink"), "../shared%20dir/f%C3%A9%20%25x%01%FF");
    round_trip(&st, &extra, &p);
    assert_same_stat(&st, &p, true);
    assert_true(p.has & META_HAS_SYMLINK);
    assert_string_equal(p.symlink, extra.symlink);
    /* Symlinks may point anywhere: ".." and absolute targets are data, not paths haul creates. */
    extra.symlink = "/etc/passwd";
    round_trip(&st, &extra, &p);
    assert_string_equal(p.symlink, "/etc/passwd");
}

static void test_round_trip_hardlink(void **state)
{
    (void)state;
    struct stat st = make_stat(S_IFREG | 0600, 42, 43, 1700000001, 999999999);
    struct meta_extra extra = {.hardlink = "data/run 1/first\xff.dat"};
    struct meta_encoded enc;
    haul_error err = {0};
    struct meta_posix p;

    assert_int_equal(meta_stat_encode(&st, &extra, &enc, &err), 0);
    assert_string_equal(enc_get(&enc, "haul-hardlink"), "data/run%201/first%FF.dat");
    round_trip(&st, &extra, &p);
    assert_same_stat(&st, &p, false);
    assert_true(p.has & META_HAS_HARDLINK);
    assert_string_equal(p.hardlink, extra.hardlink);

    /* A hard link to a symlink (linkat without AT_SYMLINK_FOLLOW) carries both. */
    st.st_mode = S_IFLNK | 0777;
    extra.symlink = "target";
    round_trip(&st, &extra, &p);
    assert_string_equal(p.hardlink, extra.hardlink);
    assert_string_equal(p.symlink, "target");
}

static void test_round_trip_devices(void **state)
{
    (void)state;
    struct meta_posix p;
    struct stat st = make_stat(S_IFCHR | 0620, 0, 5, 1, 0);
    st.st_rdev = makedev(136, 3);
    struct meta_encoded enc;
    haul_error err = {0};
    assert_int_equal(meta_stat_encode(&st, NULL, &enc, &err), 0);
    assert_string_equal(enc_get(&enc, "haul-rdev"), "136:3");
    round_trip(&st, NULL, &p);
    assert_same_stat(&st, &p, false);
    assert_true(p.has & META_HAS_RDEV);
    assert_int_equal(p.rdev, st.st_rdev);

    st.st_mode = S_IFBLK | 0660;
    st.st_rdev = makedev(4095, 1048575);
    round_trip(&st, NULL, &p);
    assert_int_equal(major(p.rdev), 4095);
    assert_int_equal(minor(p.rdev), 1048575);
}

/* Extremes of every number, and times before 1970. */
static void test_round_trip_limits(void **state)
{
    (void)state;
    static const struct {
        time_t sec;
        long nsec;
        const char *text;
    } times[] = {
        {0, 0, "0"},
        {0, 1, "0.000000001"},
        {1, 999999999, "1.999999999"},
        {INT64_MAX, 999999999, "9223372036854775807.999999999"},
        {-1, 0, "-1"},
        {-1, 999999999, "-0.000000001"},
        {-2, 500000000, "-1.500000000"},
        {INT64_MIN, 0, "-9223372036854775808"},
        {INT64_MIN, 1, "-9223372036854775807.999999999"},
    };
    for (size_t i = 0; i < COUNT(times); i++) {
        struct stat st = make_stat(S_IFREG | 0644, i % 2 ? 0 : 4294967294u,
                                   i % 2 ? 4294967294u : 0, times[i].sec, times[i].nsec);
        st.st_atim = st.st_mtim;
        struct meta_extra extra = {.atime = true};
        struct meta_encoded enc;
        haul_error err = {0};
        assert_int_equal(meta_stat_encode(&st, &extra, &enc, &err), 0);
        assert_string_equal(enc_get(&enc, "mtime"), times[i].text);
        assert_string_equal(enc_get(&enc, "atime"), times[i].text);
        struct meta_posix p;
        round_trip(&st, &extra, &p);
        assert_same_stat(&st, &p, true);
    }
}

static void test_encode_sparse_and_tree(void **state)
{
    (void)state;
    const char *tree = "9bc1b2a288b26af7257a36277ae3816a7d4f16e89c1e7e77d0a5c48bad62b360";
    struct stat st = make_stat(S_IFREG | 0644, 1, 1, 1, 0);
    st.st_size = 10 << 20;
    st.st_blocks = 8; /* 4 KiB allocated of 10 MiB */
    struct meta_extra extra = {.tree_sha256 = tree};
    struct meta_encoded enc;
    haul_error err = {0};
    struct meta_posix p;

    assert_int_equal(meta_stat_encode(&st, &extra, &enc, &err), 0);
    assert_string_equal(enc_get(&enc, "haul-sparse"), "1");
    assert_string_equal(enc_get(&enc, "haul-sha256-tree"), tree);
    round_trip(&st, &extra, &p);
    assert_true(p.sparse);
    assert_true(p.has & META_HAS_TREE);
    assert_string_equal(p.tree_sha256, tree);

    /* Fully allocated, or less than a block missing (inline data): no hint. */
    st.st_blocks = (10 << 20) / 512;
    assert_int_equal(meta_stat_encode(&st, NULL, &enc, &err), 0);
    assert_null(enc_get(&enc, "haul-sparse"));
    st.st_size = 100;
    st.st_blocks = 0;
    assert_int_equal(meta_stat_encode(&st, NULL, &enc, &err), 0);
    assert_null(enc_get(&enc, "haul-sparse"));
}

/* S3 allows 2 KiB of user metadata: a long symlink target stays in the body
 * only, a hard link that does not fit is refused. */
static void test_encode_size_limit(void **state)
{
    (void)state;
    static char target[META_PATH_MAX];
    memset(target, 'a', sizeof target - 1);
    struct stat st = make_stat(S_IFLNK | 0777, 1, 1, 1, 0);
    struct meta_extra extra = {.symlink = target, .atime = true};
    struct meta_encoded enc;
    haul_error err = {0};
    struct meta_posix p;

    assert_int_equal(meta_stat_encode(&st, &extra, &enc, &err), 0);
    assert_null(enc_get(&enc, "haul-symlink"));
    round_trip(&st, &extra, &p);
    assert_false(p.has & META_HAS_SYMLINK);
    assert_int_equal(p.mode, S_IFLNK | 0777);

    /* 1900 bytes fit next to the fixed fields; 2048 do not. */
    target[1900] = '\0';
    assert_int_equal(meta_stat_encode(&st, &extra, &enc, &err), 0);
    assert_non_null(enc_get(&enc, "haul-symlink"));

    static char path[2100];
    memset(path, 'b', sizeof path - 1);
    for (size_t i = 200; i < sizeof path - 1; i += 201)
        path[i] = '/';
    st = make_stat(S_IFREG | 0644, 1, 1, 1, 0);
    extra = (struct meta_extra){.hardlink = path};
    assert_int_equal(meta_stat_encode(&st, &extra, &enc, &err), -HAUL_EUSAGE);
    assert_int_equal(enc.n, 0);
    assert_non_null(strstr(err.msg, ": 2099 bytes encoded, over S3's 2048 bytes of metadata"));
    assert_memory_equal(err.msg, "cannot encode hard link to \"bbbb", 32);
}

static void test_encode_errors(void **state)
{
    (void)state;
    static const struct {
        mode_t mode;
        long nsec;
        struct meta_extra extra;
        const char *msg;
    } cases[] = {
        {S_IFLNK | 0777, 0, {0}, "cannot encode a symlink without its target"},
        {S_IFREG | 0644, 0, {.symlink = "x"}, "cannot encode symlink target \"x\" for mode 0100644"},
        {S_IFLNK | 0777, 0, {.symlink = ""},
         "cannot encode symlink target \"\": empty or over 4095 bytes"},
        {S_IFDIR | 0755, 0, {.hardlink = "a"},
         "cannot encode hard link to \"a\": a directory cannot be a hard link"},
        {S_IFREG | 0644, 0, {.hardlink = "../x"},
         "cannot encode hard link to \"../x\": \"..\" component"},
        {S_IFREG | 0644, 0, {.hardlink = "/x"},
         "cannot encode hard link to \"/x\": absolute path"},
        {S_IFREG | 0644, 0, {.tree_sha256 = "ABC"},
         "cannot encode tree hash \"ABC\": not 64 lower-case hex digits"},
        {S_IFREG | 0644, 1000000000, {0},
         "cannot encode a time with tv_nsec outside 0..999999999"},
        {0170644, 0, {0}, "cannot encode mode 0170644: unknown file type or bits"},
        {0644, 0, {0}, "cannot encode mode 0644: unknown file type or bits"},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        struct stat st = make_stat(cases[i].mode, 1, 1, 1, cases[i].nsec);
        struct meta_encoded enc;
        haul_error err = {0};
        assert_int_equal(meta_stat_encode(&st, &cases[i].extra, &enc, &err), -HAUL_EUSAGE);
        assert_string_equal(err.msg, cases[i].msg);
    }
    /* (uid_t)-1 would not decode (chown reads it as "leave unchanged"). */
    struct stat st = make_stat(S_IFREG | 0644, (uid_t)-1, 0, 1, 0);
    struct meta_encoded enc;
    haul_error err = {0};
    assert_int_equal(meta_stat_encode(&st, NULL, &enc, &err), -HAUL_EUSAGE);
    assert_string_equal(err.msg, "cannot encode uid 4294967295 or gid 0: (uid_t)-1 is no owner");
}

/* ---- decoding what other tools wrote ------------------------------------------------ */

/* As s3fs-fuse writes them (s3fs.cpp: s3fs_create, create_directory_object, s3fs_symlink). */
static void test_decode_s3fs(void **state)
{
    (void)state;
    struct meta_posix p;
    haul_error err;

    const struct s3_meta file[] = {
        M("atime", "1700000000.123456789"), M("ctime", "1700000001"), M("gid", "1000"),
        M("mode", "33204"), M("mtime", "1700000002.000000500"), M("uid", "1001"),
        M("xattr", "%7B%22user.a%22%3A%22YQ%3D%3D%22%7D"),
    };
    assert_int_equal(decode(file, COUNT(file), false, &p, &err), 0);
    assert_int_equal(p.mode, S_IFREG | 0664);
    assert_int_equal(p.uid, 1001);
    assert_int_equal(p.gid, 1000);
    assert_int_equal(p.mtime.tv_sec, 1700000002);
    assert_int_equal(p.mtime.tv_nsec, 500);
    assert_int_equal(p.atime.tv_sec, 1700000000);
    assert_int_equal(p.atime.tv_nsec, 123456789);

    const struct s3_meta dir[] = {M("mode", "16877"), M("uid", "0"), M("gid", "0"),
                                  M("mtime", "1700000000")};
    assert_int_equal(decode(dir, COUNT(dir), true, &p, &err), 0);
    assert_int_equal(p.mode, S_IFDIR | 0755);

    const struct s3_meta link[] = {M("mode", "41471"), M("uid", "1000"), M("gid", "1000"),
                                   M("mtime", "1700000000.5")}; /* body: the target */
    assert_int_equal(decode(link, COUNT(link), false, &p, &err), 0);
    assert_int_equal(p.mode, S_IFLNK | 0777);
    assert_false(p.has & META_HAS_SYMLINK);
    assert_int_equal(p.mtime.tv_nsec, 500000000);

    /* A mode without type bits takes it from the key, as s3fs does; a leading
     * 0 is octal (s3fs parses with strtoll base 0); names in any case. */
    const struct s3_meta bare[] = {M("Mode", "420")};
    assert_int_equal(decode(bare, COUNT(bare), false, &p, &err), 0);
    assert_int_equal(p.mode, S_IFREG | 0644);
    assert_int_equal(p.has, META_HAS_MODE);
    assert_int_equal(decode(bare, COUNT(bare), true, &p, &err), 0);
    assert_int_equal(p.mode, S_IFDIR | 0644);
    const struct s3_meta octal[] = {M("mode", "0100600")};
    assert_int_equal(decode(octal, COUNT(octal), false, &p, &err), 0);
    assert_int_equal(p.mode, S_IFREG | 0600);

    /* Nothing at all (aws s3 cp): defaults, and no META_HAS_* bits. */
    assert_int_equal(decode(NULL, 0, false, &p, &err), 0);
    assert_int_equal(p.has, 0);
    assert_int_equal(p.mode, S_IFREG | 0644);
    assert_int_equal(decode(NULL, 0, true, &p, &err), 0);
    assert_int_equal(p.mode, S_IFDIR | 0755);
}

/* As rclone writes them: backend/s3 (mtime as float seconds, trailing zeros
 * trimmed) and, with --metadata from a local disk, backend/local's mode
 * (octal), uid/gid (decimal), atime (RFC 3339) and rdev. */
static void test_decode_rclone(void **state)
{
    (void)state;
    struct meta_posix p;
    haul_error err;

    const struct s3_meta plain[] = {M("mtime", "1354040105.5"),
                                    M("md5chksum", "XrY7u+Ae7tCTyyK7j1rNww==")};
    assert_int_equal(decode(plain, COUNT(plain), false, &p, &err), 0);
    assert_int_equal(p.has, META_HAS_MTIME);
    assert_int_equal(p.mtime.tv_sec, 1354040105);
    assert_int_equal(p.mtime.tv_nsec, 500000000);

    const struct s3_meta full[] = {
        M("atime", "2023-11-14T22:13:20.25Z"), M("gid", "500"), M("mode", "100664"),
        M("mtime", "1700000000.123"), M("uid", "500"),
    };
    assert_int_equal(decode(full, COUNT(full), false, &p, &err), 0);
    assert_int_equal(p.mode, S_IFREG | 0664);
    assert_int_equal(p.uid, 500);
    assert_int_equal(p.gid, 500);
    assert_int_equal(p.mtime.tv_sec, 1700000000);
    assert_int_equal(p.mtime.tv_nsec, 123000000);
    assert_int_equal(p.atime.tv_sec, 1700000000);
    assert_int_equal(p.atime.tv_nsec, 250000000);

    const struct s3_meta dir[] = {M("atime", "2006-01-02T15:04:05.999999999+07:00"),
                                  M("mode", "40755"), M("mtime", "1136189045")};
    assert_int_equal(decode(dir, COUNT(dir), true, &p, &err), 0);
    assert_int_equal(p.mode, S_IFDIR | 0755);
    assert_int_equal(p.atime.tv_sec, 1136189045);
    assert_int_equal(p.atime.tv_nsec, 999999999);

    const struct s3_meta dev[] = {M("atime", "2024-02-29T12:00:00-05:30"), M("mode", "20620"),
                                  M("rdev", "8801"), M("mtime", "-0.5")};
    assert_int_equal(decode(dev, COUNT(dev), false, &p, &err), 0);
    assert_int_equal(p.mode, S_IFCHR | 0620);
    assert_false(p.has & META_HAS_RDEV); /* rclone's hex rdev is not read */
    assert_int_equal(p.atime.tv_sec, 1709227800);
    assert_int_equal(p.mtime.tv_sec, -1);
    assert_int_equal(p.mtime.tv_nsec, 500000000);
}

static void test_decode_times(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        time_t sec;
        long nsec;
    } cases[] = {
        {"0", 0, 0},
        {"-0", 0, 0},
        {"1354040105.123456789", 1354040105, 123456789},
        {"1354040105.1", 1354040105, 100000000},
        {"-1.5", -2, 500000000},
        {"-0.000000001", -1, 999999999},
        {"9223372036854775807", INT64_MAX, 0},
        {"-9223372036854775808", INT64_MIN, 0},
        {"2012-11-27T18:15:05Z", 1354040105, 0},
        {"2012-11-27t18:15:05.5z", 1354040105, 500000000},
        {"1969-12-31T23:59:59.000000001Z", -1, 1},
        {"1970-01-01T00:00:00+00:00", 0, 0},
        {"2000-02-29T00:00:00Z", 951782400, 0},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        const struct s3_meta m[] = {M("mtime", cases[i].text)};
        struct meta_posix p;
        haul_error err;
        assert_int_equal(decode(m, 1, false, &p, &err), 0);
        assert_int_equal(p.mtime.tv_sec, cases[i].sec);
        assert_int_equal(p.mtime.tv_nsec, cases[i].nsec);
    }
}

/* Each value next to a valid mode, refused with the field, value and cause. */
static void test_decode_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *mode; /* NULL: "33188" */
        const char *name;
        const char *value;
        const char *msg;
    } cases[] = {
        {0, "uid", "-5", "bad metadata x-amz-meta-uid \"-5\": negative"},
        {0, "uid", "abc", "bad metadata x-amz-meta-uid \"abc\": not a decimal number"},
        {0, "uid", "", "bad metadata x-amz-meta-uid \"\": not a decimal number"},
        {0, "uid", " 5", "bad metadata x-amz-meta-uid \" 5\": not a decimal number"},
        {0, "uid", "5\n", "bad metadata x-amz-meta-uid \"5\\x0a\": not a decimal number"},
        {0, "uid", "+5", "bad metadata x-amz-meta-uid \"+5\": not a decimal number"},
        {0, "uid", "0x10", "bad metadata x-amz-meta-uid \"0x10\": not a decimal number"},
        {0, "uid", "007", "bad metadata x-amz-meta-uid \"007\": leading zero"},
        {0, "uid", "4294967295",
         "bad metadata x-amz-meta-uid \"4294967295\": out of range (0..4294967294)"},
        {0, "gid", "99999999999999999999999",
         "bad metadata x-amz-meta-gid \"99999999999999999999999\": out of range (0..4294967294)"},
        {0, "gid", "1e3", "bad metadata x-amz-meta-gid \"1e3\": not a decimal number"},
        {"61440", 0, 0, "bad metadata x-amz-meta-mode \"61440\": bad file type bits"},
        {"45056", 0, 0, "bad metadata x-amz-meta-mode \"45056\": bad file type bits"},
        {"65536", 0, 0, "bad metadata x-amz-meta-mode \"65536\": over 0177777"},
        {"0200000", 0, 0, "bad metadata x-amz-meta-mode \"0200000\": over 0177777"},
        {"-33188", 0, 0, "bad metadata x-amz-meta-mode \"-33188\": negative"},
        {"0190", 0, 0, "bad metadata x-amz-meta-mode \"0190\": not an octal number"},
        {"0x81a4", 0, 0, "bad metadata x-amz-meta-mode \"0x81a4\": not an octal number"},
        {"rwxr-xr-x", 0, 0, "bad metadata x-amz-meta-mode \"rwxr-xr-x\": not a decimal number"},
        {0, "mtime", "abc", "bad metadata x-amz-meta-mtime \"abc\": not a number of seconds"},
        {0, "mtime", "", "bad metadata x-amz-meta-mtime \"\": not a number of seconds"},
        {0, "mtime", "1.", "bad metadata x-amz-meta-mtime \"1.\": not a number of seconds"},
        {0, "mtime", ".5", "bad metadata x-amz-meta-mtime \".5\": not a number of seconds"},
        {0, "mtime", "1.2.3", "bad metadata x-amz-meta-mtime \"1.2.3\": not a number of seconds"},
        {0, "mtime", "1e9", "bad metadata x-amz-meta-mtime \"1e9\": not a number of seconds"},
        {0, "mtime", "01", "bad metadata x-amz-meta-mtime \"01\": leading zero"},
        {0, "mtime", "1.1234567890",
         "bad metadata x-amz-meta-mtime \"1.1234567890\": more than 9 decimals"},
        {0, "mtime", "9223372036854775808",
         "bad metadata x-amz-meta-mtime \"9223372036854775808\": out of range"},
        {0, "mtime", "-9223372036854775808.5",
         "bad metadata x-amz-meta-mtime \"-9223372036854775808.5\": out of range"},
        {0, "mtime", "99999999999999999999",
         "bad metadata x-amz-meta-mtime \"99999999999999999999\": out of range"},
        {0, "atime", "2023-02-29T00:00:00Z",
         "bad metadata x-amz-meta-atime \"2023-02-29T00:00:00Z\": no such date or time"},
        {0, "atime", "2023-01-01T24:00:00Z",
         "bad metadata x-amz-meta-atime \"2023-01-01T24:00:00Z\": no such date or time"},
        {0, "atime", "2023-01-01T00:00:00",
         "bad metadata x-amz-meta-atime \"2023-01-01T00:00:00\": not RFC 3339"},
        {0, "atime", "2023-01-01T00:00:00+5:00",
         "bad metadata x-amz-meta-atime \"2023-01-01T00:00:00+5:00\": not RFC 3339"},
        {0, "atime", "T", "bad metadata x-amz-meta-atime \"T\": not RFC 3339"},
        {0, "atime", "2023-01-01T00:00:00.Z",
         "bad metadata x-amz-meta-atime \"2023-01-01T00:00:00.Z\": not RFC 3339"},
        {0, "atime", "2023-01-01T00:00:00Z ",
         "bad metadata x-amz-meta-atime \"2023-01-01T00:00:00Z \": not RFC 3339"},
        {0, "atime", "2023-01-01T00:00:00.1234567890Z",
         "bad metadata x-amz-meta-atime \"2023-01-01T00:00:00.1234567890Z\": more than 9 decimals"},
        {"", "atime", "2023-01-01T00:00:00Z", /* rclone's: mode in octal */
         "bad metadata x-amz-meta-mode \"\": not an octal number"},
        {"33188", "atime", "2023-01-01T00:00:00Z",
         "bad metadata x-amz-meta-mode \"33188\": not an octal number"},
        {"", 0, 0, "bad metadata x-amz-meta-mode \"\": not a decimal number"},
        {"41471", "haul-symlink", "", "bad metadata x-amz-meta-haul-symlink \"\": empty"},
        {"41471", "haul-symlink", "a%2", "bad metadata x-amz-meta-haul-symlink \"a%2\": bad %-escape"},
        {"41471", "haul-symlink", "a%zz", "bad metadata x-amz-meta-haul-symlink \"a%zz\": bad %-escape"},
        {"41471", "haul-symlink", "a%00b",
         "bad metadata x-amz-meta-haul-symlink \"a%00b\": escaped NUL byte"},
        {"41471", "haul-symlink", "a b",
         "bad metadata x-amz-meta-haul-symlink \"a b\": byte that should be %-escaped"},
        {0, "haul-symlink", "t", "bad metadata x-amz-meta-haul-symlink \"t\": the mode is not a symlink's"},
        {0, "haul-hardlink", "../etc/passwd",
         "bad metadata x-amz-meta-haul-hardlink \"../etc/passwd\": \"..\" component"},
        {0, "haul-hardlink", "%2Fetc%2Fshadow",
         "bad metadata x-amz-meta-haul-hardlink \"%2Fetc%2Fshadow\": absolute path"},
        {0, "haul-hardlink", "a//b", "bad metadata x-amz-meta-haul-hardlink \"a//b\": empty component"},
        {0, "haul-hardlink", "a/.", "bad metadata x-amz-meta-haul-hardlink \"a/.\": \".\" component"},
        {0, "haul-hardlink", "dir/", "bad metadata x-amz-meta-haul-hardlink \"dir/\": trailing '/'"},
        {"16877", "haul-hardlink", "a",
         "bad metadata x-amz-meta-haul-hardlink \"a\": a directory cannot be a hard link"},
        {0, "haul-sparse", "yes", "bad metadata x-amz-meta-haul-sparse \"yes\": not 0 or 1"},
        {"16877", "haul-sparse", "1",
         "bad metadata x-amz-meta-haul-sparse \"1\": the mode is not a regular file's"},
        {"8592", "haul-rdev", "8", "bad metadata x-amz-meta-haul-rdev \"8\": not <major>:<minor>"},
        {"8592", "haul-rdev", "4096:0",
         "bad metadata x-amz-meta-haul-rdev \"4096:0\": not <major>:<minor> within 4095:1048575"},
        {"8592", "haul-rdev", "-1:3",
         "bad metadata x-amz-meta-haul-rdev \"-1:3\": not <major>:<minor> within 4095:1048575"},
        {0, "haul-rdev", "8:1", "bad metadata x-amz-meta-haul-rdev \"8:1\": the mode is not a device's"},
        {0, "haul-sha256-tree", "ABC",
         "bad metadata x-amz-meta-haul-sha256-tree \"ABC\": not 64 lower-case hex digits"},
        {0, "MODE", "33188", "bad metadata x-amz-meta-mode \"33188\": duplicate name"},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        struct s3_meta m[2] = {M("mode", cases[i].mode ? cases[i].mode : "33188")};
        size_t n = 1;
        if (cases[i].name)
            m[n++] = (struct s3_meta)M(cases[i].name, cases[i].value);
        struct meta_posix p;
        haul_error err;
        assert_int_equal(decode(m, n, false, &p, &err), -HAUL_EPROTO);
        assert_int_equal(err.code, HAUL_EPROTO);
        assert_string_equal(err.msg, cases[i].msg);
    }

    static char long_target[META_PATH_MAX + 1];
    memset(long_target, 'a', META_PATH_MAX);
    const struct s3_meta m[] = {M("mode", "41471"), M("haul-symlink", long_target)};
    struct meta_posix p;
    haul_error err;
    assert_int_equal(decode(m, 2, false, &p, &err), -HAUL_EPROTO);
    assert_non_null(strstr(err.msg, "\"...: over 4095 bytes"));
}

/* ---- tree hash ----------------------------------------------------------------------- */

/* Streams data through a hasher in pieces of the given sizes (cycled). */
static void tree_stream(const uint8_t *data, size_t n, const size_t *chunks, size_t n_chunks,
                        char hex[SHA256_HEX_LEN + 1])
{
    struct meta_treehash *th = meta_treehash_new();
    assert_non_null(th);
    for (size_t off = 0, k = 0; off < n; k++) {
        size_t take = chunks[k % n_chunks];
        if (take > n - off)
            take = n - off;
        meta_treehash_update(th, data + off, take);
        off += take;
    }
    haul_error err = {0};
    assert_int_equal(meta_treehash_final(th, NULL, hex, &err), 0);
    meta_treehash_free(th);
}

static void assert_tree(const uint8_t *data, size_t n, const char *want)
{
    static const size_t whole[] = {SIZE_MAX};
    static const size_t odd[] = {1, 4093, (1 << 20) + 7, 65536, 3};
    static const size_t leaf[] = {1 << 20};
    char hex[SHA256_HEX_LEN + 1];

    meta_treehash_buf(data, n, hex);
    assert_string_equal(hex, want);
    tree_stream(data, n, whole, 1, hex);
    assert_string_equal(hex, want);
    tree_stream(data, n, odd, COUNT(odd), hex);
    assert_string_equal(hex, want);
    tree_stream(data, n, leaf, 1, hex);
    assert_string_equal(hex, want);
}

/* botocore's tests/unit/test_utils.py TestTreeHash ("independently verified
 * ... from other SDK implementations"): b'a' * n. */
static void test_tree_botocore(void **state)
{
    (void)state;
    static const struct {
        size_t n;
        const char *hex;
    } v[] = {
        {0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {1024, "2edc986847e209b4016e141a6dc8716d3207350f416969382d431539bf292e4a"},
        {1 << 20, "9bc1b2a288b26af7257a36277ae3816a7d4f16e89c1e7e77d0a5c48bad62b360"},
        {4 << 20, "9491cb2ed1d4e7cd53215f4017c23ec4ad21d7050a1e6bb636c4f67e8cddb844"},
        {(4 << 20) + 20, "12f3cbd6101b981cde074039f6f728071da8879d6f632de8afc7cdf00661b08f"},
    };
    uint8_t *data = malloc((4 << 20) + 20);
    assert_non_null(data);
    memset(data, 'a', (4 << 20) + 20);
    for (size_t i = 0; i < COUNT(v); i++)
        assert_tree(data, v[i].n, v[i].hex);
    free(data);
}

/* Made with python3 hashlib, independently of this code:
 *   data = bytes(i % 251 for i in range(n))
 *   leaves = [sha256(data[i:i+2**20]).digest() for i in range(0, len(data), 2**20)]
 *   while len(leaves) > 1: pair adjacent ones (sha256(a + b)), an odd last one
 *   carried up as it is; empty data: sha256(b'').hexdigest()
 * The same script reproduces botocore's vectors above. */
static void test_tree_python(void **state)
{
    (void)state;
    static const struct {
        size_t n;
        const char *hex;
    } v[] = {
        {0u, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {1u, "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"},
        {1048575u, "8b55c6a2d3444092a316985030e00c1e6f8608eaf912c896dee7c374d440ed11"},
        {1048576u, "631b84027d6b9e52b539c4e8373622d23032dfadc64d60af87339c9037e4f769"},
        {1048577u, "a9c574ce937d2371daf87cdd0e75396b096d7f74a66c764e4c656bd12b2e7bf9"},
        {3145733u, "c9e0c11a00161b193e0a1b3692ec553d4033a887f2086a7cadd4cd722d87f09f"},
        {7340032u, "8bfce57c6a4076b3e930e725fbaa00beeffff0f0d9a6491a89a53baa73b4810d"},
    };
    uint8_t *data = malloc(7340032);
    assert_non_null(data);
    for (size_t i = 0; i < 7340032; i++)
        data[i] = (uint8_t)(i % 251);
    for (size_t i = 0; i < COUNT(v); i++)
        assert_tree(data, v[i].n, v[i].hex);
    free(data);
}

/* Glacier's procedure written out level by level, over leaf digests. */
static void tree_reference(uint8_t (*level)[SHA256_LEN], size_t n, char hex[SHA256_HEX_LEN + 1])
{
    while (n > 1) {
        size_t m = 0;
        for (size_t i = 0; i + 1 < n; i += 2, m++) {
            uint8_t both[2 * SHA256_LEN];
            memcpy(both, level[i], SHA256_LEN);
            memcpy(both + SHA256_LEN, level[i + 1], SHA256_LEN);
            hash_sha256(both, sizeof both, level[m]);
        }
        if (n % 2)
            memcpy(level[m++], level[n - 1], SHA256_LEN);
        n = m;
    }
    hash_hex(level[0], SHA256_LEN, hex);
}

/* The binary-counter fold gives Glacier's tree for every leaf count up to 40. */
static void test_tree_shapes(void **state)
{
    (void)state;
    enum { MAX_LEAVES = 40 };
    size_t size = (size_t)MAX_LEAVES << 20;
    uint8_t *data = malloc(size);
    uint8_t(*leaves)[SHA256_LEN] = malloc(MAX_LEAVES * SHA256_LEN);
    assert_non_null(data);
    assert_non_null(leaves);
    for (size_t i = 0; i < size; i++)
        data[i] = (uint8_t)(i * 7 + (i >> 20));

    struct meta_treehash *th = meta_treehash_new();
    assert_non_null(th);
    for (size_t k = 1; k <= MAX_LEAVES; k++) {
        size_t n = (k << 20) - (k % 3 ? 3 : 0); /* some with a short last leaf */
        for (size_t i = 0; i < k; i++) {
            size_t len = i + 1 < k ? (1u << 20) : n - (i << 20);
            hash_sha256(data + (i << 20), len, leaves[i]);
        }
        char want[SHA256_HEX_LEN + 1], got[SHA256_HEX_LEN + 1];
        tree_reference(leaves, k, want);
        meta_treehash_update(th, data, n); /* the same hasher, reused after each final */
        haul_error err = {0};
        uint8_t digest[SHA256_LEN];
        assert_int_equal(meta_treehash_final(th, digest, got, &err), 0);
        assert_string_equal(got, want);
        char again[SHA256_HEX_LEN + 1];
        hash_hex(digest, SHA256_LEN, again);
        assert_string_equal(again, want);
    }
    meta_treehash_free(th);
    meta_treehash_free(NULL);
    free(leaves);
    free(data);
}

/* ---- keys <-> paths ---------------------------------------------------------------- */

static void assert_key(const char *prefix, const char *path, size_t n, bool is_dir,
                       const char *want_key)
{
    char key[META_KEY_MAX + 1];
    size_t key_len = 0;
    haul_error err = {0};
    assert_int_equal(meta_key_from_path(prefix, path, n, is_dir, key, &key_len, &err), 0);
    assert_int_equal(key_len, strlen(want_key));
    assert_string_equal(key, want_key);

    char back[META_PATH_MAX];
    assert_int_equal(meta_path_from_key(key, key_len, prefix, is_dir, back, &err), 0);
    if (n == 0)
        assert_string_equal(back, ".");
    else {
        assert_int_equal(strlen(back), n);
        assert_memory_equal(back, path, n);
    }
}

static void test_key_utf8_unchanged(void **state)
{
    (void)state;
    static const char *const paths[] = {
        "a", "a/b.txt", "\xe6\x97\xa5\xe6\x9c\xac/\xe3\x83\x95\xe3\x82\xa1\xe3\x82\xa4\xe3\x83\xab",
        "emoji \xf0\x9f\x98\x80.png", "\xce\xa9/\xf4\x8f\xbf\xbf", "...", "..a", ".hidden/x",
        "with space/and%percent", "\x7f\x01\x1f", "\xef\xbf\xbd", "\xee\x84\x80 U+E100",
        "\xed\x9f\xbf", "a\\b", "_$folder$",
    };
    for (size_t i = 0; i < COUNT(paths); i++) {
        char want[META_KEY_MAX + 1];
        snprintf(want, sizeof want, "backup/%s", paths[i]);
        assert_key("backup/", paths[i], strlen(paths[i]), false, want);
        assert_key("", paths[i], strlen(paths[i]), false, paths[i]);
    }
}

/* Bytes that are not UTF-8 become U+E000 + byte, exactly as s3fs's wtf8. */
static void test_key_escapes(void **state)
{
    (void)state;
    assert_key("p/", "caf\xe9.txt", 8, false, "p/caf\xee\x83\xa9.txt");
    assert_key("p/", "\xff", 1, false, "p/\xee\x83\xbf");
    assert_key("p/", "\x80", 1, false, "p/\xee\x82\x80");
    assert_key("p/", "a\xc3", 2, false, "p/a\xee\x83\x83");            /* truncated sequence */
    assert_key("p/", "\xe6\x97" "A", 3, false, "p/\xee\x83\xa6\xee\x82\x97" "A"); /* broken one */
    assert_key("p/", "\xc0\xae", 2, false, "p/\xee\x83\x80\xee\x82\xae"); /* overlong '.' */
    assert_key("p/", "\xed\xa0\x80", 3, false,
               "p/\xee\x83\xad\xee\x82\xa0\xee\x82\x80"); /* a surrogate */
    assert_key("p/", "\xf4\x90\x80\x80", 4, false,
               "p/\xee\x83\xb4\xee\x82\x90\xee\x82\x80\xee\x82\x80"); /* over U+10FFFF */
    /* A literal U+E000..U+E0FF is escaped byte by byte, so decoding is exact. */
    assert_key("p/", "\xee\x80\x81", 3, false, "p/\xee\x83\xae\xee\x82\x80\xee\x82\x81");
    assert_key("p/", "\xee\x83\xbf/x", 5, true, "p/\xee\x83\xae\xee\x82\x83\xee\x82\xbf/x/");
}

/* Every byte but NUL and '/' in a name, alone and all together. */
static void test_key_all_bytes(void **state)
{
    (void)state;
    char name[256];
    size_t n = 0;
    for (int b = 1; b < 256; b++) {
        if (b == '/')
            continue;
        name[n++] = (char)b;
        char one[3] = {'x', (char)b, 'y'};
        char key[META_KEY_MAX + 1], back[META_PATH_MAX];
        size_t key_len;
        haul_error err = {0};
        assert_int_equal(meta_key_from_path("all/", one, 3, false, key, &key_len, &err), 0);
        assert_int_equal(meta_path_from_key(key, key_len, "all/", false, back, &err), 0);
        assert_int_equal(strlen(back), 3);
        assert_memory_equal(back, one, 3);
        assert_int_equal(key_len, 4 + (b < 0x80 ? 3 : 5)); /* kept, or escaped in 3 bytes */
    }
    assert_int_equal(n, 254);
    char key[META_KEY_MAX + 1], back[META_PATH_MAX];
    size_t key_len;
    haul_error err = {0};
    assert_int_equal(meta_key_from_path("all/", name, n, false, key, &key_len, &err), 0);
    assert_int_equal(key_len, 4 + 126 + 128 * 3);
    assert_int_equal(meta_path_from_key(key, key_len, "all/", false, back, &err), 0);
    assert_int_equal(strlen(back), n);
    assert_memory_equal(back, name, n);
}

static void test_key_dirs(void **state)
{
    (void)state;
    assert_key("p/", "a/b", 3, true, "p/a/b/");
    assert_key("p/", "", 0, true, "p/");
    assert_key("p/", ".", 1, true, "p/");
    assert_key("", "d", 1, true, "d/");

    /* s3fs before 1.63 made "dir" objects without the slash: still a directory. */
    char back[META_PATH_MAX];
    haul_error err = {0};
    assert_int_equal(meta_path_from_key("p/old", 5, "p/", true, back, &err), 0);
    assert_string_equal(back, "old");
}

static void test_key_encode_errors(void **state)
{
    (void)state;
    static char long_comp[257];
    static char long_key[1100];
    memset(long_comp, 'c', 256);
    memset(long_key, 'k', sizeof long_key - 1);
    for (size_t i = 200; i < sizeof long_key; i += 201)
        long_key[i] = '/'; /* components of 200 bytes */
    static const struct {
        const char *prefix;
        const char *path;
        size_t n;
        bool is_dir;
        const char *msg;
    } cases[] = {
        {"p/", "/etc", 4, false, "cannot make a key for path \"/etc\": absolute path"},
        {"p/", "a/../b", 6, false, "cannot make a key for path \"a/../b\": \"..\" component"},
        {"p/", "a/./b", 5, false, "cannot make a key for path \"a/./b\": \".\" component"},
        {"p/", "a//b", 4, false, "cannot make a key for path \"a//b\": empty component"},
        {"p/", "a/", 2, false, "cannot make a key for path \"a/\": trailing '/'"},
        {"p/", "a\0b", 3, false, "cannot make a key for path \"a\\x00b\": NUL byte"},
        {"p/", "", 0, false, "cannot make a key for path \"\": empty path"},
        {"p/", ".", 1, false, "cannot make a key for path \".\": empty path"},
        {"", "", 0, true,
         "cannot make a key for path \"\": the root directory has no key without a prefix"},
        {"p\xff/", "a", 1, false, "prefix \"p\\xff/\" is not valid UTF-8"},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        char key[META_KEY_MAX + 1];
        haul_error err = {0};
        assert_int_equal(meta_key_from_path(cases[i].prefix, cases[i].path, cases[i].n,
                                            cases[i].is_dir, key, NULL, &err),
                         -HAUL_EUSAGE);
        assert_string_equal(err.msg, cases[i].msg);
        assert_string_equal(key, "");
    }

    char key[META_KEY_MAX + 1];
    haul_error err = {0};
    assert_int_equal(meta_key_from_path("p/", long_comp, 256, false, key, NULL, &err), -HAUL_EUSAGE);
    assert_non_null(strstr(err.msg, "...: component over 255 bytes"));
    /* S3 keys are at most 1024 bytes: 1022 fit after "p/", with a '/' for a directory 1021. */
    memset(&err, 0, sizeof err);
    assert_int_equal(meta_key_from_path("p/", long_key, 1022, false, key, NULL, &err), 0);
    assert_int_equal(meta_key_from_path("p/", long_key, 1023, false, key, NULL, &err), -HAUL_EUSAGE);
    assert_non_null(strstr(err.msg, "...: key over S3's 1024 bytes"));
    memset(&err, 0, sizeof err);
    assert_int_equal(meta_key_from_path("p/", long_key, 1022, true, key, NULL, &err), -HAUL_EUSAGE);
    memset(&err, 0, sizeof err);
    assert_int_equal(meta_key_from_path("p/", long_key, 1021, true, key, NULL, &err), 0);
    assert_int_equal(strlen(key), 1024);

    /* Escapes take 3 bytes: 400 bytes that are not UTF-8 are 1200 in a key. */
    static char bytes[401];
    memset(bytes, 0xff, 400);
    bytes[200] = '/';
    assert_int_equal(meta_key_from_path("p/", bytes, 400, false, key, NULL, &err), -HAUL_EUSAGE);
    assert_non_null(strstr(err.msg, "...: key over S3's 1024 bytes"));
    memset(&err, 0, sizeof err);
    static char long_prefix[1031];
    memset(long_prefix, 'x', 1030);
    assert_int_equal(meta_key_from_path(long_prefix, "a", 1, false, key, NULL, &err), -HAUL_EUSAGE);
    assert_non_null(strstr(err.msg, "\"... is over S3's 1024 bytes for a key"));
}

/* The restore-side check: each hostile key refused with the exact message. */
static void test_key_hostile(void **state)
{
    (void)state;
    static char long_comp[7 + 256 + 1] = "backup/";
    static char long_path[7 + 17 * 251 + 1] = "backup/";
    memset(long_comp + 7, 'a', 256);
    for (size_t i = 0; i < 17; i++) {
        memset(long_path + 7 + i * 251, 'b', 250);
        long_path[7 + i * 251 + 250] = '/';
    }
    long_path[sizeof long_path - 2] = '\0'; /* no trailing '/' */

#define K(s) s, sizeof(s) - 1
    static const struct {
        const char *prefix;
        const char *key;
        size_t len;
        bool is_dir;
        const char *msg;
    } cases[] = {
        {"backup/", K("backup/../etc/passwd"), false,
         "unsafe key \"backup/../etc/passwd\": \"..\" component at offset 7"},
        {"backup/", K("backup/a/../../x"), false,
         "unsafe key \"backup/a/../../x\": \"..\" component at offset 9"},
        {"backup/", K("backup/.."), true, "unsafe key \"backup/..\": \"..\" component at offset 7"},
        {"backup/", K("backup/../"), true, "unsafe key \"backup/../\": \"..\" component at offset 7"},
        {"backup/", K("backup/a/.."), true, "unsafe key \"backup/a/..\": \"..\" component at offset 9"},
        {"backup/", K("backup/./a"), false, "unsafe key \"backup/./a\": \".\" component at offset 7"},
        {"backup/", K("backup/a/."), true, "unsafe key \"backup/a/.\": \".\" component at offset 9"},
        {"backup/", K("backup//etc/passwd"), false, "unsafe key \"backup//etc/passwd\": absolute path"},
        {"", K("/etc/passwd"), false, "unsafe key \"/etc/passwd\": absolute path"},
        {"backup", K("backup/etc"), false, "unsafe key \"backup/etc\": absolute path"},
        {"backup/", K("/etc/passwd"), false,
         "unsafe key \"/etc/passwd\": not under the prefix \"backup/\""},
        {"backup/", K("backup"), true, "unsafe key \"backup\": not under the prefix \"backup/\""},
        {"backup/", K("backup/a//b"), false, "unsafe key \"backup/a//b\": empty component at offset 9"},
        {"backup/", K("backup/a//"), true, "unsafe key \"backup/a//\": empty component at offset 9"},
        {"backup/", K("backup/a\0b"), false, "unsafe key \"backup/a\\x00b\": NUL byte at offset 8"},
        {"backup/", K("backup/a\0/../../b"), false,
         "unsafe key \"backup/a\\x00/../../b\": NUL byte at offset 8"},
        {"backup/", K("backup/a/"), false,
         "unsafe key \"backup/a/\": trailing '/' on a non-directory"},
        {"backup/", K("backup/"), false, "unsafe key \"backup/\": empty path (the key is the prefix)"},
        {"backup/", K("backup/\xff"), false, "unsafe key \"backup/\\xff\": not valid UTF-8 at offset 7"},
        {"backup/", K("backup/x/\xc0\xae\xc0\xae"), false,
         "unsafe key \"backup/x/\\xc0\\xae\\xc0\\xae\": not valid UTF-8 at offset 9"},
        {"backup/", K("backup/\xed\xa0\x80"), false,
         "unsafe key \"backup/\\xed\\xa0\\x80\": not valid UTF-8 at offset 7"},
        {"backup/", K("backup/a\xee\x80\xaf" "b"), false,
         "unsafe key \"backup/a\\xee\\x80\\xafb\": escaped '/' at offset 7"},
        {"backup/", K("backup/x/\xee\x80\x80"), false,
         "unsafe key \"backup/x/\\xee\\x80\\x80\": escaped NUL byte at offset 9"},
        {"backup/", K("backup/\xee\x80\xae\xee\x80\xae"), false,
         "unsafe key \"backup/\\xee\\x80\\xae\\xee\\x80\\xae\": non-canonical escape at offset 7"},
        {"backup/", K("backup/\xee\x81\xa1"), false,
         "unsafe key \"backup/\\xee\\x81\\xa1\": non-canonical escape at offset 7"},
        {"backup/", K("backup/\xee\x83\x83\xee\x82\xa9"), false,
         "unsafe key \"backup/\\xee\\x83\\x83\\xee\\x82\\xa9\": non-canonical escape at offset 7"},
        {"backup/", long_comp, 7 + 256, false,
         "unsafe key \"backup/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"...: "
         "component over 255 bytes at offset 7"},
        {"backup/", long_path, sizeof long_path - 2, false,
         "unsafe key \"backup/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"...: "
         "path over 4095 bytes at offset 4023"},
    };
#undef K
    for (size_t i = 0; i < COUNT(cases); i++) {
        char path[META_PATH_MAX];
        haul_error err = {0};
        int rc = meta_path_from_key(cases[i].key, cases[i].len, cases[i].prefix, cases[i].is_dir,
                                    path, &err);
        if (rc != -HAUL_EPROTO)
            fail_msg("case %zu accepted as \"%s\"", i, path);
        assert_int_equal(err.code, HAUL_EPROTO);
        assert_string_equal(err.msg, cases[i].msg);
        assert_string_equal(path, "");
    }
}

/* The limits themselves are allowed: 255-byte components, 4095-byte paths. */
static void test_key_limits_ok(void **state)
{
    (void)state;
    static char key[7 + 4095 + 1] = "backup/";
    memset(key + 7, 'z', 4095);
    for (size_t i = 255; i < 4095; i += 256)
        key[7 + i] = '/';
    char path[META_PATH_MAX];
    haul_error err = {0};
    assert_int_equal(meta_path_from_key(key, 7 + 4095, "backup/", false, path, &err), 0);
    assert_int_equal(strlen(path), 4095);
    assert_memory_equal(path, key + 7, 4095);
}

static void test_path_check(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        size_t n;
        const char *why;
    } cases[] = {
        {"a/b", 3, NULL}, {"...", 3, NULL}, {".a/b.", 5, NULL},
        {"", 0, "empty path"}, {"/", 1, "absolute path"}, {"a/", 2, "trailing '/'"},
        {"..", 2, "\"..\" component"}, {"a/..", 4, "\"..\" component"},
        {".", 1, "\".\" component"}, {"./a", 3, "\".\" component"},
        {"a//b", 4, "empty component"}, {"a\0", 2, "NUL byte"},
    };
    static char long_path[4097];
    memset(long_path, 'l', 4096);
    for (size_t i = 200; i < 4096; i += 201)
        long_path[i] = '/';
    assert_null(meta_path_check(long_path, 4095));
    assert_string_equal(meta_path_check(long_path, 4096), "path over 4095 bytes");
    for (size_t i = 0; i < COUNT(cases); i++) {
        const char *why = meta_path_check(cases[i].path, cases[i].n);
        if (cases[i].why)
            assert_string_equal(why, cases[i].why);
        else
            assert_null(why);
    }
}

/* ---- the restore policy ----------------------------------------------------------- */

/* Decoded metadata of an entry with mode, uid 0 and gid 0. */
static struct meta_posix posix_of(mode_t mode)
{
    struct meta_posix p;
    memset(&p, 0, sizeof p);
    p.has = META_HAS_MODE | META_HAS_UID | META_HAS_GID | META_HAS_MTIME;
    p.mode = mode;
    return p;
}

static struct meta_restore_plan plan_of(mode_t mode, struct meta_restore_rules rules)
{
    struct meta_posix p = posix_of(mode);
    struct meta_restore_plan plan;
    meta_restore_policy(&p, &rules, &plan);
    return plan;
}

static const struct meta_restore_rules USER = {0}, ROOT = {.as_root = true},
                                       ROOT_SETUID = {.as_root = true, .preserve_setuid = true};

static void test_policy_owner(void **state)
{
    (void)state;
    struct meta_restore_plan p = plan_of(S_IFREG | 0644, USER);
    assert_null(p.refused);
    assert_int_equal(p.has, META_HAS_MODE); /* no owner as a user */
    assert_int_equal(p.uid, (uid_t)-1);
    assert_int_equal(p.gid, (gid_t)-1);
    assert_int_equal(p.dropped, META_DROP_OWNER);
    assert_int_equal(p.mode, 0644);

    p = plan_of(S_IFREG | 0644, ROOT);
    assert_int_equal(p.has, META_HAS_MODE | META_HAS_UID | META_HAS_GID);
    assert_int_equal(p.uid, 0);
    assert_int_equal(p.gid, 0);
    assert_int_equal(p.dropped, 0);

    p = plan_of(S_IFREG | 0644, (struct meta_restore_rules){.as_root = true, .no_same_owner = true});
    assert_int_equal(p.has, META_HAS_MODE);
    assert_int_equal(p.uid, (uid_t)-1);
    assert_int_equal(p.dropped, META_DROP_OWNER);

    /* Only what the metadata carries: a uid without a gid, no mode at all. */
    struct meta_posix in = posix_of(S_IFREG | 0644);
    in.has = META_HAS_UID;
    in.uid = 1234;
    struct meta_restore_plan q;
    meta_restore_policy(&in, &ROOT, &q);
    assert_int_equal(q.has, META_HAS_UID);
    assert_int_equal(q.uid, 1234);
    assert_int_equal(q.gid, (gid_t)-1);
}

static void test_policy_setid(void **state)
{
    (void)state;
    /* The audit's 0104755 and 0102755: stripped unless root keeps owners and asks. */
    const mode_t modes[] = {S_IFREG | 04755, S_IFREG | 02755, S_IFREG | 06755, S_IFIFO | 04644};
    for (size_t i = 0; i < COUNT(modes); i++) {
        const struct meta_restore_rules strip[] = {
            USER, ROOT, {.preserve_setuid = true},
            {.as_root = true, .preserve_setuid = true, .no_same_owner = true}};
        for (size_t j = 0; j < COUNT(strip); j++) {
            struct meta_restore_plan p = plan_of(modes[i], strip[j]);
            assert_int_equal(p.mode, modes[i] & 0777);
            assert_true(p.dropped & META_DROP_SETID);
        }
        struct meta_restore_plan p = plan_of(modes[i], ROOT_SETUID);
        assert_int_equal(p.mode, modes[i] & 07777);
        assert_false(p.dropped & META_DROP_SETID);
    }
    /* Each bit needs its own owner applied: no uid in the metadata, no S_ISUID. */
    struct meta_posix in = posix_of(S_IFREG | 06755);
    in.has &= ~(unsigned)META_HAS_UID;
    struct meta_restore_plan p;
    meta_restore_policy(&in, &ROOT_SETUID, &p);
    assert_int_equal(p.mode, 02755);
    assert_true(p.dropped & META_DROP_SETID);
    in.has = (in.has | META_HAS_UID) & ~(unsigned)META_HAS_GID;
    meta_restore_policy(&in, &ROOT_SETUID, &p);
    assert_int_equal(p.mode, 04755);
    /* A directory keeps its set-group-ID bit (group inheritance), not set-user-ID. */
    p = plan_of(S_IFDIR | 02775, USER);
    assert_int_equal(p.mode, 02775);
    assert_false(p.dropped & META_DROP_SETID);
    p = plan_of(S_IFDIR | 06775, ROOT);
    assert_int_equal(p.mode, 02775);
    assert_true(p.dropped & META_DROP_SETID);
    /* The sticky bit is no set-ID bit. */
    p = plan_of(S_IFREG | 01755, USER);
    assert_int_equal(p.mode, 01755);
    assert_int_equal(p.dropped & ~(unsigned)META_DROP_OWNER, 0);
}

static void test_policy_devices(void **state)
{
    (void)state;
    const mode_t devs[] = {S_IFCHR | 0666, S_IFBLK | 0660};
    for (size_t i = 0; i < COUNT(devs); i++) {
        assert_string_equal(plan_of(devs[i], USER).refused,
                            "device files are created only with --devices");
        assert_string_equal(plan_of(devs[i], ROOT).refused,
                            "device files are created only with --devices");
        assert_string_equal(plan_of(devs[i], (struct meta_restore_rules){.devices = true}).refused,
                            "device files are created only by root");
        struct meta_restore_plan p =
            plan_of(devs[i], (struct meta_restore_rules){.as_root = true, .devices = true});
        assert_null(p.refused);
        assert_int_equal(p.mode, devs[i] & 0777); /* opted in: its mode, o+w included */
        assert_int_equal(p.dropped, 0);
    }
    /* FIFOs and the rest are always created. */
    const mode_t others[] = {S_IFIFO | 0644, S_IFREG | 0644, S_IFDIR | 0755, S_IFLNK | 0777,
                             S_IFSOCK | 0755};
    for (size_t i = 0; i < COUNT(others); i++)
        assert_null(plan_of(others[i], USER).refused);
}

static void test_policy_world_writable(void **state)
{
    (void)state;
    struct meta_restore_plan p = plan_of(S_IFDIR | 0777, ROOT);
    assert_int_equal(p.mode, 0775);
    assert_int_equal(p.dropped, META_DROP_WORLD_WRITE);
    p = plan_of(S_IFDIR | 0777, (struct meta_restore_rules){.as_root = true, .keep_world_writable = true});
    assert_int_equal(p.mode, 0777);
    assert_int_equal(p.dropped, 0);
    p = plan_of(S_IFDIR | 01777, USER); /* /tmp-like: others cannot remove what is not theirs */
    assert_int_equal(p.mode, 01777);
    assert_int_equal(p.dropped, META_DROP_OWNER);
    p = plan_of(S_IFREG | 0666, USER);
    assert_int_equal(p.mode, 0664);
    assert_int_equal(p.dropped, META_DROP_OWNER | META_DROP_WORLD_WRITE);
    p = plan_of(S_IFIFO | 0622, ROOT);
    assert_int_equal(p.mode, 0620);
    p = plan_of(S_IFREG | 04777, USER); /* both at once */
    assert_int_equal(p.mode, 0775);
    assert_int_equal(p.dropped, META_DROP_OWNER | META_DROP_SETID | META_DROP_WORLD_WRITE);
    /* A symlink: no mode to apply, nothing dropped but (as a user) its owner. */
    p = plan_of(S_IFLNK | 0777, ROOT);
    assert_int_equal(p.has, META_HAS_UID | META_HAS_GID);
    assert_int_equal(p.dropped, 0);
    /* No mode in the metadata: the creation mode stays. */
    struct meta_posix in = posix_of(S_IFREG | 0666);
    in.has = META_HAS_MTIME;
    meta_restore_policy(&in, &USER, &p);
    assert_int_equal(p.has, 0);
    assert_int_equal(p.dropped, 0);
}

static void test_text_escape(void **state)
{
    (void)state;
    char out[64];
#define L(s) s, sizeof(s) - 1
    static const struct {
        const char *in;
        size_t n;
        const char *want;
    } cases[] = {
        {L("plain/path.txt"), "plain/path.txt"},
        {L("caf\xc3\xa9 \xe2\x98\x83"), "caf\xc3\xa9 \xe2\x98\x83"}, /* UTF-8 as is */
        {L("a\033[31mred"), "a\\x1b[31mred"},                       /* ESC */
        {L("t\ab\tn\nr\r"), "t\\x07b\\x09n\\x0ar\\x0d"},
        {L("del\x7f"), "del\\x7f"},
        {L("c1\xc2\x9b" "2J"), "c1\\xc2\\x9b2J"},       /* U+009B, the 8-bit CSI */
        {L("c1 \xc2\xa0"), "c1 \xc2\xa0"},              /* U+00A0 is no control */
        {L("raw\x9b\xff"), "raw\\x9b\\xff"},            /* not UTF-8 */
        {L("nul\0x"), "nul\\x00x"},
        {L("back\\slash \"q\""), "back\\slash \"q\""}, /* left as they are */
        {L(""), ""},
    };
#undef L
    for (size_t i = 0; i < COUNT(cases); i++)
        assert_string_equal(meta_text_escape(cases[i].in, cases[i].n, out, sizeof out), cases[i].want);
    /* Cut at a whole character, never inside an escape or a UTF-8 sequence. */
    assert_string_equal(meta_text_escape("abcdefghij", 10, out, 8), "abcd...");
    assert_string_equal(meta_text_escape("ab\033cdef", 7, out, 8), "ab...");
    assert_string_equal(meta_text_escape("ab\xe2\x98\x83zz", 7, out, 8), "ab...");
    assert_string_equal(meta_text_escape("ab\xe2\x98\x83", 5, out, 9), "ab\xe2\x98\x83");
    assert_string_equal(meta_text_escape("abc", 3, out, 4), "...");
    assert_string_equal(meta_text_escape("abc", 3, out, 7), "abc");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_file),
        cmocka_unit_test(test_round_trip_types),
        cmocka_unit_test(test_round_trip_symlink),
        cmocka_unit_test(test_round_trip_hardlink),
        cmocka_unit_test(test_round_trip_devices),
        cmocka_unit_test(test_round_trip_limits),
        cmocka_unit_test(test_encode_sparse_and_tree),
        cmocka_unit_test(test_encode_size_limit),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_decode_s3fs),
        cmocka_unit_test(test_decode_rclone),
        cmocka_unit_test(test_decode_times),
        cmocka_unit_test(test_decode_malformed),
        cmocka_unit_test(test_tree_botocore),
        cmocka_unit_test(test_tree_python),
        cmocka_unit_test(test_tree_shapes),
        cmocka_unit_test(test_key_utf8_unchanged),
        cmocka_unit_test(test_key_escapes),
        cmocka_unit_test(test_key_all_bytes),
        cmocka_unit_test(test_key_dirs),
        cmocka_unit_test(test_key_encode_errors),
        cmocka_unit_test(test_key_hostile),
        cmocka_unit_test(test_key_limits_ok),
        cmocka_unit_test(test_path_check),
        cmocka_unit_test(test_policy_owner),
        cmocka_unit_test(test_policy_setid),
        cmocka_unit_test(test_policy_devices),
        cmocka_unit_test(test_policy_world_writable),
        cmocka_unit_test(test_text_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

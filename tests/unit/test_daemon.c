/* Unit tests for daemon/proto and daemon/journal: both wire protocols
 * parsed from hostile bytes, field encoding round trips, journal records
 * with checksums, replay after a torn write, a failed append cut back,
 * compaction through a planted symlink; daemon/files: mode bits in POSIX
 * order, the component walk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/daemon.h"

static int line(const char *s, struct daemon_line *l)
{
    haul_error err = {0};
    int rc = daemon_line_parse(s, strlen(s), l, &err);
    if (rc < 0)
        assert_true(err.msg[0] != '\0'); /* a failure always says why */
    return rc;
}

static void test_tcp_line_good(void **state)
{
    (void)state;
    struct daemon_line l;
    assert_int_equal(line("/data/a.fits alias/bucket-1/dir/sub/a.fits", &l), 0);
    assert_string_equal(l.path, "/data/a.fits");
    assert_string_equal(l.bucket, "bucket-1");
    assert_string_equal(l.key, "dir/sub/a.fits");
    daemon_line_release(&l);
    /* CRLF and trailing blanks are ignored; a file name may hold spaces. */
    assert_int_equal(line("/data/my file.txt s3/bkt/k\r", &l), 0);
    assert_string_equal(l.path, "/data/my file.txt");
    assert_string_equal(l.key, "k");
    daemon_line_release(&l);
    /* The alias may be empty: "/bucket/key". */
    assert_int_equal(line("/f /bkt/k/", &l), 0);
    assert_string_equal(l.key, "k/");
    daemon_line_release(&l);
}

static void test_tcp_line_bad(void **state)
{
    (void)state;
    struct daemon_line l;
    const char *bad[] = {
        "",                          /* empty */
        "/only-a-file",              /* no DEST */
        " alias/bkt/k",              /* no FILENAME */
        "relative alias/bkt/k",      /* not absolute */
        "/f alias/bkt",              /* no key */
        "/f alias/bkt/",             /* empty key */
        "/f bkt",                    /* no slash at all */
        "/f alias/B_ad/k",           /* bucket name */
        "/f alias/ab/k",             /* bucket too short */
        "/f alias/-bkt/k",           /* bucket starts badly */
        "/f\x01x alias/bkt/k",       /* control char in path */
        "/f alias/bkt/k\x7f",        /* control char in key */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(line(bad[i], &l), -HAUL_EUSAGE);
        assert_null(l.path);
        assert_null(l.key);
    }
    /* A NUL inside the line is refused, not taken as an end. */
    haul_error err = {0};
    const char nul[] = "/f\0x alias/bkt/k";
    assert_int_equal(daemon_line_parse(nul, sizeof nul - 1, &l, &err), -HAUL_EUSAGE);
    assert_non_null(strstr(err.msg, "NUL"));
    /* A key over 1024 bytes. */
    char big[1200] = "/f a/bkt/";
    memset(big + 9, 'k', 1100);
    big[1109] = '\0';
    assert_int_equal(line(big, &l), -HAUL_EUSAGE);
    /* Only len bytes are read: a line cut before its key fails. */
    err = (haul_error){0};
    assert_int_equal(daemon_line_parse("/f a/bkt/key", 9, &l, &err), -HAUL_EUSAGE);
}

static void test_field_encoding(void **state)
{
    (void)state;
    const char *in = "dir/a b%c\n\t\x7f\xc3\xa9";
    char enc[128];
    int n = daemon_field_encode(in, strlen(in), enc, sizeof enc);
    assert_true(n > 0);
    assert_null(strchr(enc, ' '));
    assert_null(strchr(enc, '\n'));
    char *dec = daemon_field_decode(enc, (size_t)n);
    assert_string_equal(dec, in);
    free(dec);
    /* Too small an output is an error, never a truncation. */
    assert_int_equal(daemon_field_encode("a b", 3, enc, 4), -1);
    /* Bad escapes, an encoded NUL, raw spaces. */
    const char *bad[] = {"%", "%4", "%zz", "%00", "a b", "%G1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_null(daemon_field_decode(bad[i], strlen(bad[i])));
}

static int msg(const char *s, struct daemon_msg *m)
{
    haul_error err = {0};
    return daemon_msg_parse(s, strlen(s), m, &err);
}

static void test_unix_msg_round_trip(void **state)
{
    (void)state;
    struct daemon_msg m = {.verb = DAEMON_SEND, .wait = true, .bucket = "bkt", .key = "a b/c%d",
                           .path = "/home/u/my file"};
    char buf[DAEMON_UNIX_LINE_MAX];
    int n = daemon_msg_format(&m, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(buf[n - 1], '\n');
    struct daemon_msg back;
    haul_error err = {0};
    assert_int_equal(daemon_msg_parse(buf, (size_t)n - 1, &back, &err), 0);
    assert_int_equal(back.verb, DAEMON_SEND);
    assert_true(back.wait);
    assert_string_equal(back.bucket, "bkt");
    assert_string_equal(back.key, "a b/c%d");
    assert_string_equal(back.path, "/home/u/my file");
    daemon_msg_release(&back);

    m.wait = false;
    n = daemon_msg_format(&m, buf, sizeof buf);
    assert_int_equal(daemon_msg_parse(buf, (size_t)n - 1, &back, &err), 0);
    assert_false(back.wait);
    daemon_msg_release(&back);

    assert_int_equal(msg("HAUL/1 STATUS 7", &back), 0);
    assert_int_equal(back.verb, DAEMON_STATUS);
    assert_int_equal(back.last, 7);
    assert_int_equal(msg("HAUL/1 STATUS 999", &back), 0);
    assert_int_equal(back.last, 100);
    assert_int_equal(msg("HAUL/1 PAUSE", &back), 0);
    assert_int_equal(back.verb, DAEMON_PAUSE);
    assert_int_equal(msg("HAUL/1 RESUME", &back), 0);
    assert_int_equal(back.verb, DAEMON_RESUME);
    /* A key too long to encode does not format. */
    char key[DAEMON_KEY_MAX * 4];
    memset(key, ' ', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    m.key = key;
    assert_int_equal(daemon_msg_format(&m, buf, sizeof buf), -1);
}

static void test_unix_msg_bad(void **state)
{
    (void)state;
    struct daemon_msg m;
    const char *bad[] = {
        "", "HAUL/1", "HAUL/2 STATUS 1", "GET / HTTP/1.0", "HAUL/1 STATUS", "HAUL/1 STATUS x",
        "HAUL/1 STATUS 12345", "HAUL/1 PAUSE now", "HAUL/1  PAUSE", "HAUL/1 PAUSE ",
        "HAUL/1 SEND WAIT bkt key", "HAUL/1 SEND MAYBE bkt key /p",
        "HAUL/1 SEND WAIT B_kt key /p", "HAUL/1 SEND WAIT bkt key relative",
        "HAUL/1 SEND WAIT bkt %0A /p", "HAUL/1 SEND WAIT bkt %00 /p", "HAUL/1 SEND WAIT bkt k /p%",
        "HAUL/1 SEND WAIT bkt k /p extra", "HAUL/1 SEND WAIT bkt  /p",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(msg(bad[i], &m), -HAUL_EUSAGE);
        assert_null(m.key);
        assert_null(m.path);
    }
    haul_error err = {0};
    const char nul[] = "HAUL/1 PAUSE\0";
    assert_int_equal(daemon_msg_parse(nul, sizeof nul - 1, &m, &err), -HAUL_EUSAGE);
}

/* Audit L1: a control character decoded from the path would reach
 * failed.log raw and forge a line there (here one "by uid 0"). */
static void test_unix_msg_control_in_path(void **state)
{
    (void)state;
    struct daemon_msg m;
    const char *bad[] = {
        "HAUL/1 SEND NOWAIT mybucket k /tmp/x%0A2026-01-01T00:00:00Z%20id=9%20uid=0%20/etc/shadow",
        "HAUL/1 SEND WAIT mybucket k /tmp/x%0Dy", "HAUL/1 SEND WAIT mybucket k /tmp/x%1B[2J",
        "HAUL/1 SEND WAIT mybucket k /tmp/x%7F", "HAUL/1 SEND WAIT mybucket k /tmp/x%09y",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        haul_error err = {0};
        assert_int_equal(daemon_msg_parse(bad[i], strlen(bad[i]), &m, &err), -HAUL_EUSAGE);
        assert_non_null(strstr(err.msg, "control character"));
        assert_null(m.path);
    }
    /* Spaces and UTF-8 stay allowed. */
    assert_int_equal(msg("HAUL/1 SEND WAIT mybucket k /tmp/my%20file-\xc3\xa9", &m), 0);
    assert_string_equal(m.path, "/tmp/my file-\xc3\xa9");
    daemon_msg_release(&m);
    /* The TCP line refuses DEL in FILENAME as well. */
    struct daemon_line l;
    assert_int_equal(line("/tmp/x\x7fy a/bkt/k", &l), -HAUL_EUSAGE);
    assert_true(daemon_path_valid("/a b", 4));
    assert_false(daemon_path_valid("/a\nb", 4));
    assert_false(daemon_path_valid("a", 1));
}

static void test_dest_parse(void **state)
{
    (void)state;
    char bucket[64], *key;
    haul_error err = {0};
    assert_int_equal(daemon_dest_parse("x/bkt/a/b", 9, bucket, &key, &err), 0);
    assert_string_equal(bucket, "bkt");
    assert_string_equal(key, "a/b");
    free(key);
    assert_int_equal(daemon_dest_parse("x/bkt", 5, bucket, &key, &err), -HAUL_EUSAGE);
    assert_null(key);
    assert_true(daemon_bucket_valid("a.b-c", 5));
    assert_false(daemon_bucket_valid("a.b-", 4));
    assert_false(daemon_bucket_valid("aBc", 3));
    assert_true(daemon_key_valid("k", 1));
    assert_false(daemon_key_valid("", 0));
}

static struct daemon_req sample(const char *key, const char *path)
{
    struct daemon_req r = {.uid = 1000, .via = 'u', .dev = 64768, .ino = 123456789, .size = 33554432,
                           .mtime_sec = 1764018000, .mtime_nsec = 123456789, .bucket = "bkt"};
    r.key = strdup(key);
    r.path = strdup(path);
    return r;
}

static void test_record_round_trip(void **state)
{
    (void)state;
    struct daemon_req r = sample("dir/a b%c", "/home/u/x\ty"), back;
    r.id = 42;
    char buf[20000];
    int n = daemon_req_format(&r, buf, sizeof buf);
    assert_true(n > 0);
    char kind;
    assert_int_equal(daemon_record_parse(buf, (size_t)n - 1, &kind, &back), 0);
    assert_int_equal(kind, 'R');
    assert_int_equal(back.id, 42);
    assert_int_equal(back.uid, 1000);
    assert_int_equal(back.via, 'u');
    assert_int_equal(back.dev, 64768);
    assert_int_equal(back.ino, 123456789);
    assert_int_equal(back.size, 33554432);
    assert_int_equal(back.mtime_sec, 1764018000);
    assert_int_equal(back.mtime_nsec, 123456789);
    assert_string_equal(back.key, "dir/a b%c");
    assert_string_equal(back.path, "/home/u/x\ty");
    daemon_req_release(&back);
    /* Any flipped byte breaks the checksum; any cut makes it unreadable. */
    for (int i = 0; i < n - 1; i++) {
        char save = buf[i];
        buf[i] = (char)(buf[i] ^ 0x01);
        assert_int_equal(daemon_record_parse(buf, (size_t)n - 1, &kind, &back), -1);
        buf[i] = save;
        assert_int_equal(daemon_record_parse(buf, (size_t)i, &kind, &back), -1);
    }
    daemon_req_release(&r);
}

struct seen {
    uint64_t ids[64];
    int n;
};

static int collect(const struct daemon_req *r, void *ctx)
{
    struct seen *s = ctx;
    assert_non_null(r->key);
    s->ids[s->n++] = r->id;
    return 0;
}

static char *temp_dir(void)
{
    char tmpl[] = "/tmp/haul-test-daemon-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void test_journal_replay_and_torn_tail(void **state)
{
    (void)state;
    char *dir = temp_dir(), path[256];
    snprintf(path, sizeof path, "%s/requests.journal", dir);
    haul_error err = {0};
    struct seen seen = {0};
    struct daemon_journal *j = daemon_journal_open(path, collect, &seen, &err);
    assert_non_null(j);
    assert_int_equal(seen.n, 0);
    uint64_t ids[5];
    for (int i = 0; i < 5; i++) {
        struct daemon_req r = sample("k", "/p");
        assert_int_equal(daemon_journal_add(j, &r, &err), 0);
        ids[i] = r.id;
        daemon_req_release(&r);
    }
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[4], 5);
    assert_int_equal(daemon_journal_finish(j, ids[1], true, &err), 0);
    assert_int_equal(daemon_journal_finish(j, ids[3], false, &err), 0);
    assert_int_equal(daemon_journal_pending(j), 3);
    daemon_journal_free(j);

    /* A corrupt mark in the middle (a flipped byte) is skipped, not fatal:
     * the request it would have finished is simply replayed. */
    FILE *f = fopen(path, "r+");
    char buf[4096];
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    buf[got] = '\0';
    char *mark = strstr(buf, "\nD 2 ");
    assert_non_null(mark);
    fseek(f, (long)(mark - buf) + 3, SEEK_SET);
    fputc('7', f);
    fclose(f);
    /* A kill -9 in the middle of an append: half a record at the end. */
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "R 9 0 u 1 2 3 4 5 bkt k /p 1234", 31), 31);
    close(fd);
    seen.n = 0;
    j = daemon_journal_open(path, collect, &seen, &err);
    assert_non_null(j);
    assert_int_equal(seen.n, 4);
    assert_int_equal(seen.ids[0], 1);
    assert_int_equal(seen.ids[1], 2);
    assert_int_equal(seen.ids[2], 3);
    assert_int_equal(seen.ids[3], 5);
    /* Ids keep growing past everything seen, so marks never collide. */
    struct daemon_req r = sample("k2", "/p2");
    assert_int_equal(daemon_journal_add(j, &r, &err), 0);
    assert_int_equal(r.id, 6);
    daemon_req_release(&r);
    daemon_journal_free(j);

    /* Compacted on open: only pending records are left in the file. */
    f = fopen(path, "r");
    got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = '\0';
    int lines = 0;
    for (char *p = buf; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 5);
    assert_null(strstr(buf, "\nD "));
    unlink(path);
    rmdir(dir);
    free(dir);
}

static void test_journal_compacts_while_running(void **state)
{
    (void)state;
    char *dir = temp_dir(), path[256];
    snprintf(path, sizeof path, "%s/requests.journal", dir);
    haul_error err = {0};
    struct daemon_journal *j = daemon_journal_open(path, NULL, NULL, &err);
    assert_non_null(j);
    struct daemon_req keep = sample("keep", "/p");
    assert_int_equal(daemon_journal_add(j, &keep, &err), 0);
    for (int i = 0; i < 3000; i++) {
        struct daemon_req r = sample("k", "/p");
        assert_int_equal(daemon_journal_add(j, &r, &err), 0);
        assert_int_equal(daemon_journal_finish(j, r.id, true, &err), 0);
        daemon_req_release(&r);
    }
    daemon_journal_free(j);
    FILE *f = fopen(path, "r");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    assert_true(size < 6000 * 40); /* 6,000 records would be far bigger */
    struct seen seen = {0};
    j = daemon_journal_open(path, collect, &seen, &err);
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.ids[0], keep.id);
    daemon_journal_free(j);
    daemon_req_release(&keep);
    unlink(path);
    rmdir(dir);
    free(dir);
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* Audit M2: an append that fails halfway (here a short write, then EFBIG
 * under RLIMIT_FSIZE, as ENOSPC does on a full disk) is cut back, so the
 * next acknowledged request is a whole record and replays. */
static void test_journal_failed_append_cut_back(void **state)
{
    (void)state;
    char *dir = temp_dir(), path[256];
    snprintf(path, sizeof path, "%s/requests.journal", dir);
    haul_error err = {0};
    struct daemon_journal *j = daemon_journal_open(path, NULL, NULL, &err);
    assert_non_null(j);
    for (int i = 0; i < 2; i++) {
        struct daemon_req r = sample("before", "/p");
        assert_int_equal(daemon_journal_add(j, &r, &err), 0);
        daemon_req_release(&r);
    }
    off_t before = file_size(path);
    struct rlimit old, small;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = (rlim_t)before + 20; /* room for 20 bytes of the next record */
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    struct daemon_req r = sample("refused", "/p");
    int rc = daemon_journal_add(j, &r, &err);
    daemon_req_release(&r);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_true(rc < 0);
    assert_non_null(strstr(err.msg, "requests.journal"));
    assert_int_equal(file_size(path), before); /* no fragment left */
    err = (haul_error){0};
    r = sample("after", "/p");
    assert_int_equal(daemon_journal_add(j, &r, &err), 0);
    daemon_req_release(&r);
    daemon_journal_free(j);
    struct seen seen = {0};
    j = daemon_journal_open(path, collect, &seen, &err);
    assert_non_null(j);
    assert_int_equal(seen.n, 3); /* both before and the one after the failure */
    daemon_journal_free(j);
    unlink(path);
    rmdir(dir);
    free(dir);
}

/* Audit L5: compaction's temporary file is created afresh; a symlink at
 * its name is removed, not followed into the file it points to. */
static void test_journal_tmp_symlink_not_followed(void **state)
{
    (void)state;
    char *dir = temp_dir(), path[256], tmp[300], victim[300];
    snprintf(path, sizeof path, "%s/requests.journal", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(victim, sizeof victim, "%s/victim", dir);
    FILE *f = fopen(victim, "w");
    assert_non_null(f);
    fputs("precious\n", f);
    fclose(f);
    assert_int_equal(symlink(victim, tmp), 0);
    haul_error err = {0};
    struct daemon_journal *j = daemon_journal_open(path, NULL, NULL, &err);
    assert_non_null(j);
    struct daemon_req r = sample("k", "/p");
    assert_int_equal(daemon_journal_add(j, &r, &err), 0);
    daemon_req_release(&r);
    daemon_journal_free(j);
    char buf[64] = {0};
    f = fopen(victim, "r");
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    assert_string_equal(buf, "precious\n");
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    unlink(path);
    unlink(victim);
    rmdir(dir);
    free(dir);
}

/* Audit M2: a read error during replay fails the open and leaves the file
 * alone (here the error is EISDIR, read(2) on a directory), where the
 * replay used to stop quietly and compact the file to what it had read. */
static void test_journal_read_error_fatal(void **state)
{
    (void)state;
    char *dir = temp_dir(), path[256], tmp[300];
    snprintf(path, sizeof path, "%s/requests.journal", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(mkdir(path, 0700), 0);
    haul_error err = {0};
    assert_null(daemon_journal_open(path, NULL, NULL, &err));
    assert_non_null(strstr(err.msg, "reading it"));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(lstat(tmp, &st), -1); /* no compaction was attempted */
    rmdir(path);
    rmdir(dir);
    free(dir);
}

/* Audit L2: mode bits in POSIX order, the fallback of a replay's check. */
static void test_perm_posix_order(void **state)
{
    (void)state;
    struct daemon_perm p = {.uid = 1000, .gid = 100, .groups = {100, 200}, .n_groups = 2};
    struct stat st = {.st_uid = 0, .st_gid = 200, .st_mode = S_IFREG | 0604};
    assert_false(daemon_perm_allows(&p, &st, 4)); /* a member of the group: group bits, not other's */
    st.st_gid = 300;
    assert_true(daemon_perm_allows(&p, &st, 4)); /* not a member: other's */
    st.st_uid = 1000;
    st.st_mode = S_IFREG | 0077;
    assert_false(daemon_perm_allows(&p, &st, 4)); /* the owner: owner's bits only */
    st = (struct stat){.st_uid = 0, .st_gid = 100, .st_mode = S_IFDIR | 0750};
    assert_true(daemon_perm_allows(&p, &st, 1)); /* search through the primary group */
    st.st_mode = S_IFDIR | 0705;
    assert_false(daemon_perm_allows(&p, &st, 1));
}

/* The component walk: symlinks refused or followed, the deny list seen
 * through a symlink, not a regular file. */
static void test_file_open_walk(void **state)
{
    (void)state;
    char dir[] = "/tmp/haul-test-files.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char f[128], link[128], secret[128], sneaky[128], sub[128];
    snprintf(f, sizeof f, "%s/f", dir);
    snprintf(link, sizeof link, "%s/link", dir);
    snprintf(sub, sizeof sub, "%s/secret", dir);
    snprintf(secret, sizeof secret, "%s/secret/key", dir);
    snprintf(sneaky, sizeof sneaky, "%s/sneaky", dir);
    FILE *out = fopen(f, "w");
    fputs("data", out);
    fclose(out);
    assert_int_equal(mkdir(sub, 0700), 0);
    out = fopen(secret, "w");
    fclose(out);
    assert_int_equal(symlink("f", link), 0);
    assert_int_equal(symlink("secret/../secret/key", sneaky), 0);
    struct stat st, want;
    haul_error err = {0};
    assert_int_equal(stat(f, &want), 0);
    struct daemon_open_opts strict = {0}, follow = {.follow = true};
    int fd = daemon_file_open(f, &strict, &st, &err);
    assert_true(fd >= 0);
    assert_true(st.st_ino == want.st_ino && st.st_size == 4);
    close(fd);
    assert_true(daemon_file_open(link, &strict, &st, &err) < 0);
    assert_non_null(strstr(err.msg, "is a symlink, refused"));
    err = (haul_error){0};
    fd = daemon_file_open(link, &follow, &st, &err);
    assert_true(fd >= 0 && st.st_ino == want.st_ino);
    close(fd);
    const char *deny[] = {sub};
    struct daemon_open_opts guarded = {.follow = true, .deny = deny, .n_deny = 1};
    assert_true(daemon_file_open(sneaky, &guarded, &st, &err) < 0);
    assert_non_null(strstr(err.msg, "under the daemon's own credentials or state"));
    err = (haul_error){0};
    assert_true(daemon_file_open(dir, &follow, &st, &err) < 0);
    assert_non_null(strstr(err.msg, "not a regular file"));
    unlink(sneaky);
    unlink(link);
    unlink(secret);
    rmdir(sub);
    unlink(f);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_line_good),
        cmocka_unit_test(test_tcp_line_bad),
        cmocka_unit_test(test_field_encoding),
        cmocka_unit_test(test_unix_msg_round_trip),
        cmocka_unit_test(test_unix_msg_bad),
        cmocka_unit_test(test_unix_msg_control_in_path),
        cmocka_unit_test(test_perm_posix_order),
        cmocka_unit_test(test_file_open_walk),
        cmocka_unit_test(test_dest_parse),
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_journal_replay_and_torn_tail),
        cmocka_unit_test(test_journal_compacts_while_running),
        cmocka_unit_test(test_journal_failed_append_cut_back),
        cmocka_unit_test(test_journal_tmp_symlink_not_followed),
        cmocka_unit_test(test_journal_read_error_fatal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for dist: the message codecs (round trips, every malformed case
 * refused) and the in-process queue's semantics (ack, reject to the
 * dead-letter queue, requeue with redelivered, a dead consumer's messages
 * redelivered, control fanout, many threads taking each message once). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "dist/dist.h"
#include "dist/tracker.h"
#include "dist/waiter.h"
#include "util/err.h"
#include "util/wire.h"

/* ---- helpers ---- */

static struct strbuf encode_files(uint64_t id, const char **paths, size_t n)
{
    struct dist_unit u = {.id = id, .pass = DIST_PASS_COPY, .kind = DIST_UNIT_FILES,
                          .npaths = n, .paths = paths};
    strcpy(u.job_id, "job-1");
    struct strbuf sb = STRBUF_INIT;
    haul_error err = {0};
    assert_int_equal(dist_unit_encode(&u, &sb, &err), 0);
    return sb;
}

/* Decoding must fail with HAUL_EPROTO and a message containing want. */
static void assert_unit_bad(const void *buf, size_t len, const char *want)
{
    struct dist_unit u;
    haul_error err = {0};
    assert_int_equal(dist_unit_decode(buf, len, &u, &err), -HAUL_EPROTO);
    assert_int_equal(err.code, HAUL_EPROTO);
    if (!strstr(err.msg, want))
        fail_msg("error '%s' does not mention '%s'", err.msg, want);
    assert_null(u.mem);
}

/* Offset of the first path's length field in a FILES unit of job "job-1". */
enum { OFF_ID = 6, OFF_JOB = 14, OFF_PASS = 21, OFF_KIND = 22, OFF_COUNT = 23, OFF_PATH0 = 27 };

/* ---- unit codec ---- */

static void test_unit_roundtrip_files(void **state)
{
    (void)state;
    const char *paths[] = {"a.txt", "dir/sub/b c", "latin1-\xe9t\xe9", "x/.hidden", "y/..z"};
    struct strbuf sb = encode_files(42, paths, 5);
    struct dist_unit u;
    haul_error err = {0};
    assert_int_equal(dist_unit_decode(sb.s, sb.len, &u, &err), 0);
    assert_int_equal(u.id, 42);
    assert_string_equal(u.job_id, "job-1");
    assert_int_equal(u.pass, DIST_PASS_COPY);
    assert_int_equal(u.kind, DIST_UNIT_FILES);
    assert_int_equal(u.npaths, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(u.paths[i], paths[i]);
    dist_unit_release(&u);
    dist_unit_release(&u); /* twice is harmless */
    strbuf_release(&sb);
}

static void test_unit_roundtrip_range_scan(void **state)
{
    (void)state;
    const char *big[] = {"data/huge.bin"};
    struct dist_unit u = {.id = 7, .pass = DIST_PASS_BACKUP, .kind = DIST_UNIT_RANGE,
                          .offset = 1ULL << 40, .length = 64 << 20, .npaths = 1, .paths = big};
    strcpy(u.job_id, "haul.20261124:x_y");
    struct strbuf sb = STRBUF_INIT;
    haul_error err = {0};
    assert_int_equal(dist_unit_encode(&u, &sb, &err), 0);
    struct dist_unit d;
    assert_int_equal(dist_unit_decode(sb.s, sb.len, &d, &err), 0);
    assert_int_equal(d.kind, DIST_UNIT_RANGE);
    assert_int_equal(d.offset, 1ULL << 40);
    assert_int_equal(d.length, 64 << 20);
    assert_string_equal(d.paths[0], "data/huge.bin");
    assert_string_equal(d.job_id, "haul.20261124:x_y");
    dist_unit_release(&d);

    const char *root[] = {"."};
    struct dist_unit s = {.id = 1, .pass = DIST_PASS_DIRTIMES, .kind = DIST_UNIT_SCAN_DIR,
                          .npaths = 1, .paths = root};
    strcpy(s.job_id, "j");
    strbuf_reset(&sb);
    assert_int_equal(dist_unit_encode(&s, &sb, &err), 0);
    assert_int_equal(dist_unit_decode(sb.s, sb.len, &d, &err), 0);
    assert_int_equal(d.kind, DIST_UNIT_SCAN_DIR);
    assert_string_equal(d.paths[0], ".");
    dist_unit_release(&d);
    strbuf_release(&sb);
}

static void test_unit_max_batch(void **state)
{
    (void)state;
    static char names[DIST_UNIT_MAX_PATHS][16];
    const char *paths[DIST_UNIT_MAX_PATHS];
    for (int i = 0; i < DIST_UNIT_MAX_PATHS; i++) {
        snprintf(names[i], sizeof names[i], "f%05d", i);
        paths[i] = names[i];
    }
    struct strbuf sb = encode_files(9, paths, DIST_UNIT_MAX_PATHS);
    struct dist_unit u;
    haul_error err = {0};
    assert_int_equal(dist_unit_decode(sb.s, sb.len, &u, &err), 0);
    assert_int_equal(u.npaths, DIST_UNIT_MAX_PATHS);
    assert_string_equal(u.paths[DIST_UNIT_MAX_PATHS - 1], "f01023");
    dist_unit_release(&u);
    strbuf_release(&sb);

    /* One more is refused at the producer. */
    const char *more[DIST_UNIT_MAX_PATHS + 1];
    for (int i = 0; i <= DIST_UNIT_MAX_PATHS; i++)
        more[i] = "x";
    struct dist_unit big = {.id = 1, .pass = DIST_PASS_COPY, .kind = DIST_UNIT_FILES,
                            .npaths = DIST_UNIT_MAX_PATHS + 1, .paths = more};
    strcpy(big.job_id, "j");
    assert_int_equal(dist_unit_encode(&big, &sb, &err), -HAUL_EUSAGE);
    strbuf_release(&sb);
}

static void test_unit_truncated_everywhere(void **state)
{
    (void)state;
    const char *paths[] = {"one", "two/three"};
    struct strbuf sb = encode_files(5, paths, 2);
    for (size_t n = 0; n < sb.len; n++)
        assert_unit_bad(sb.s, n, "truncated");
    strbuf_release(&sb);

    const char *big[] = {"r"};
    struct dist_unit u = {.id = 1, .pass = DIST_PASS_COPY, .kind = DIST_UNIT_RANGE, .offset = 1,
                          .length = 2, .npaths = 1, .paths = big};
    strcpy(u.job_id, "j");
    struct strbuf rb = STRBUF_INIT;
    haul_error err = {0};
    assert_int_equal(dist_unit_encode(&u, &rb, &err), 0);
    for (size_t n = 0; n < rb.len; n++) {
        struct dist_unit d;
        haul_error e = {0};
        assert_int_equal(dist_unit_decode(rb.s, n, &d, &e), -HAUL_EPROTO);
    }
    strbuf_release(&rb);
}

static void test_unit_bad_header(void **state)
{
    (void)state;
    const char *paths[] = {"a"};
    struct strbuf sb = encode_files(5, paths, 1);
    char *m = malloc(sb.len + 1);
    assert_non_null(m);

    memcpy(m, sb.s, sb.len);
    m[0] = 'X';
    assert_unit_bad(m, sb.len, "bad magic");

    memcpy(m, sb.s, sb.len);
    m[4] = 2;
    assert_unit_bad(m, sb.len, "unsupported version");

    memcpy(m, sb.s, sb.len);
    m[5] = 3;
    assert_unit_bad(m, sb.len, "a control message");
    m[5] = 99;
    assert_unit_bad(m, sb.len, "unknown message type");

    memcpy(m, sb.s, sb.len);
    m[sb.len] = 0;
    assert_unit_bad(m, sb.len + 1, "trailing bytes");

    memcpy(m, sb.s, sb.len);
    m[OFF_PASS] = 9;
    assert_unit_bad(m, sb.len, "unknown pass");

    memcpy(m, sb.s, sb.len);
    m[OFF_KIND] = 0;
    assert_unit_bad(m, sb.len, "unknown unit kind");

    memcpy(m, sb.s, sb.len);
    m[OFF_JOB + 2] = '/'; /* "job-1" -> "/ob-1" */
    assert_unit_bad(m, sb.len, "bad job id");

    assert_unit_bad("", 0, "truncated");
    assert_unit_bad("HAUL", 4, "truncated");
    free(m);
    strbuf_release(&sb);
}

static void test_unit_counts_that_lie(void **state)
{
    (void)state;
    const char *paths[] = {"a", "b", "c"};
    struct strbuf sb = encode_files(5, paths, 3);
    char *m = malloc(sb.len);
    assert_non_null(m);

    memcpy(m, sb.s, sb.len);
    m[OFF_COUNT + 3] = 4; /* says 4, has 3 */
    assert_unit_bad(m, sb.len, "truncated");

    memcpy(m, sb.s, sb.len);
    m[OFF_COUNT + 3] = 2; /* says 2, has 3 */
    assert_unit_bad(m, sb.len, "trailing bytes");

    memcpy(m, sb.s, sb.len);
    m[OFF_COUNT + 3] = 0;
    assert_unit_bad(m, sb.len, "path count out of range");

    memcpy(m, sb.s, sb.len);
    m[OFF_COUNT] = 0x7f; /* ~2 billion paths: refused before any allocation */
    assert_unit_bad(m, sb.len, "path count out of range");

    memcpy(m, sb.s, sb.len);
    m[OFF_COUNT + 2] = 0x03;
    m[OFF_COUNT + 3] = 0xff; /* 1023: allowed count, message far too short */
    assert_unit_bad(m, sb.len, "larger than the message");

    memcpy(m, sb.s, sb.len);
    m[OFF_PATH0 + 1] = 50; /* first path's length runs past the end */
    assert_unit_bad(m, sb.len, "truncated");

    memcpy(m, sb.s, sb.len);
    m[OFF_PATH0 + 1] = 0; /* empty path */
    assert_unit_bad(m, sb.len, "empty path");

    memcpy(m, sb.s, sb.len);
    m[OFF_JOB + 1] = 100; /* job id length past the end */
    assert_unit_bad(m, sb.len, "truncated");

    /* SCAN_DIR with two paths. */
    memcpy(m, sb.s, sb.len);
    m[OFF_KIND] = DIST_UNIT_SCAN_DIR;
    assert_unit_bad(m, sb.len, "path count out of range");
    free(m);
    strbuf_release(&sb);
}

/* Builds a one-path FILES unit by hand with raw path bytes (the encoder
 * would refuse them). */
static size_t raw_unit(unsigned char *out, unsigned kind, const char *path, size_t plen)
{
    const char *paths[] = {"x"};
    struct strbuf sb = encode_files(1, paths, 1);
    memcpy(out, sb.s, OFF_PATH0);
    strbuf_release(&sb);
    out[OFF_KIND] = (unsigned char)kind;
    out[OFF_PATH0] = (unsigned char)(plen >> 8);
    out[OFF_PATH0 + 1] = (unsigned char)plen;
    memcpy(out + OFF_PATH0 + 2, path, plen);
    return OFF_PATH0 + 2 + plen;
}

static void test_unit_bad_paths(void **state)
{
    (void)state;
    static unsigned char m[OFF_PATH0 + 2 + DIST_PATH_MAX + 8];
    static const struct {
        const char *path;
        size_t len;
        const char *why;
    } cases[] = {
        {"/etc/passwd", 11, "absolute path"},
        {"..", 2, "'..' path component"},
        {"../x", 4, "'..' path component"},
        {"a/../../x", 9, "'..' path component"},
        {"a/..", 4, "'..' path component"},
        {"a/./b", 5, "'.' path component"},
        {"a//b", 4, "empty path component"},
        {"a/", 2, "empty path component"},
        {"a\0b", 3, "NUL in path"},
        {"\0", 1, "NUL in path"},
        {".", 1, "only a directory to scan"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = raw_unit(m, DIST_UNIT_FILES, cases[i].path, cases[i].len);
        assert_unit_bad(m, n, cases[i].why);
    }
    /* Over-long path and over-long component. */
    char *longp = malloc(DIST_PATH_MAX + 2);
    assert_non_null(longp);
    for (int i = 0; i <= DIST_PATH_MAX; i++)
        longp[i] = i % 200 == 199 ? '/' : 'a';
    assert_unit_bad(m, raw_unit(m, DIST_UNIT_FILES, longp, DIST_PATH_MAX + 1), "path too long");
    memset(longp, 'a', 256);
    assert_unit_bad(m, raw_unit(m, DIST_UNIT_FILES, longp, 256), "over 255 bytes");
    /* The longest path allowed decodes. */
    for (int i = 0; i < DIST_PATH_MAX; i++)
        longp[i] = i % 200 == 199 ? '/' : 'a';
    size_t n = raw_unit(m, DIST_UNIT_FILES, longp, DIST_PATH_MAX);
    struct dist_unit u;
    haul_error err = {0};
    assert_int_equal(dist_unit_decode(m, n, &u, &err), 0);
    assert_int_equal(strlen(u.paths[0]), DIST_PATH_MAX);
    dist_unit_release(&u);
    free(longp);

    /* The encoder refuses the same paths. */
    const char *bad[] = {"ok", "../escape"};
    struct dist_unit e = {.id = 1, .pass = DIST_PASS_COPY, .kind = DIST_UNIT_FILES, .npaths = 2,
                          .paths = bad};
    strcpy(e.job_id, "j");
    struct strbuf sb = STRBUF_INIT;
    assert_int_equal(dist_unit_encode(&e, &sb, &err), -HAUL_EUSAGE);
    assert_non_null(strstr(err.msg, "'..'"));
    strbuf_release(&sb);
}

static void test_unit_bad_range(void **state)
{
    (void)state;
    const char *p[] = {"f"};
    struct dist_unit u = {.id = 1, .pass = DIST_PASS_COPY, .kind = DIST_UNIT_RANGE, .offset = 0,
                          .length = 0, .npaths = 1, .paths = p};
    strcpy(u.job_id, "job-1"); /* the OFF_ constants assume this id */
    struct strbuf sb = STRBUF_INIT;
    haul_error err = {0};
    assert_int_equal(dist_unit_encode(&u, &sb, &err), -HAUL_EUSAGE);
    u.offset = UINT64_MAX;
    u.length = 2;
    err = (haul_error){0};
    assert_int_equal(dist_unit_encode(&u, &sb, &err), -HAUL_EUSAGE);
    /* Encode a good one, then make its range overflow in the bytes. */
    u.offset = 1;
    err = (haul_error){0};
    assert_int_equal(dist_unit_encode(&u, &sb, &err), 0);
    memset(sb.s + OFF_COUNT, 0xff, 8); /* offset = 2^64-1 */
    assert_unit_bad(sb.s, sb.len, "bad byte range");
    strbuf_release(&sb);
}

/* Random corruption never crashes the decoder (ASan watches the reads). */
static void test_unit_mutations(void **state)
{
    (void)state;
    const char *paths[] = {"a/b", "c", "dd/ee/ff"};
    struct strbuf sb = encode_files(3, paths, 3);
    unsigned char *m = malloc(sb.len);
    assert_non_null(m);
    srand(12345);
    int ok = 0;
    for (int round = 0; round < 20000; round++) {
        memcpy(m, sb.s, sb.len);
        int flips = 1 + rand() % 3;
        for (int f = 0; f < flips; f++)
            m[rand() % sb.len] = (unsigned char)rand();
        size_t len = rand() % 4 ? sb.len : (size_t)rand() % sb.len;
        struct dist_unit u;
        haul_error err = {0};
        if (dist_unit_decode(m, len, &u, &err) == 0) {
            ok++;
            for (size_t i = 0; i < u.npaths; i++)
                assert_int_equal(dist_path_check(u.paths[i], strlen(u.paths[i]), NULL), 0);
            dist_unit_release(&u);
        } else {
            assert_int_equal(err.code, HAUL_EPROTO);
        }
    }
    assert_true(ok > 0); /* some flips land in ids and path bytes: still valid */
    free(m);
    strbuf_release(&sb);
}

static void test_child_ids(void **state)
{
    (void)state;
    assert_int_equal(dist_unit_child_id(1, 0), dist_unit_child_id(1, 0));
    assert_true(dist_unit_child_id(1, 0) != dist_unit_child_id(1, 1));
    assert_true(dist_unit_child_id(1, 1) != dist_unit_child_id(2, 0));
    assert_true(dist_unit_child_id(0, 0) != 0);
}

/* ---- results and control ---- */

static void test_result_codec(void **state)
{
    (void)state;
    struct dist_result_unit units[] = {{1, 0, 0}, {UINT64_MAX, 7, 0x1234}};
    struct dist_result r = {.files = 10, .bytes = 1ULL << 50, .skipped = 2, .failed = 1,
                            .nunits = 2, .units = units};
    strcpy(r.worker, "node7:1234:3");
    struct strbuf sb = STRBUF_INIT;
    haul_error err = {0};
    assert_int_equal(dist_result_encode(&r, &sb, &err), 0);
    struct dist_result d;
    assert_int_equal(dist_result_decode(sb.s, sb.len, &d, &err), 0);
    assert_string_equal(d.worker, "node7:1234:3");
    assert_int_equal(d.bytes, 1ULL << 50);
    assert_int_equal(d.nunits, 2);
    assert_int_equal(d.units[1].unit_id, UINT64_MAX);
    assert_int_equal(d.units[1].children, 7);
    assert_int_equal(d.units[1].child_base, 0x1234);
    dist_result_release(&d);
    for (size_t n = 0; n < sb.len; n++) {
        haul_error e = {0};
        assert_int_equal(dist_result_decode(sb.s, n, &d, &e), -HAUL_EPROTO);
        assert_null(d.mem);
    }
    /* A result is not a unit and the other way round. */
    struct dist_unit u;
    err = (haul_error){0};
    assert_int_equal(dist_unit_decode(sb.s, sb.len, &u, &err), -HAUL_EPROTO);
    assert_non_null(strstr(err.msg, "a result"));
    /* Unit count that lies. */
    sb.s[sb.len - 40 - 1] = 3; /* 2 units of 20 bytes after the count */
    err = (haul_error){0};
    assert_int_equal(dist_result_decode(sb.s, sb.len, &d, &err), -HAUL_EPROTO);
    strbuf_release(&sb);
    /* Worker names with spaces or control characters are refused. */
    strcpy(r.worker, "bad name");
    assert_int_equal(dist_result_encode(&r, &sb, &err), -HAUL_EUSAGE);
    strbuf_release(&sb);
}

/* What the tracker handed over: the counters' sum and the payloads, in
 * order ("" for none), comma-separated. */
struct handed {
    uint64_t sum;
    char payloads[256];
    int fail_on; /* a payload starting with this byte fails the callback */
};

static int on_done(const struct dist_done *d, void *ctx, haul_error *err)
{
    struct handed *h = ctx;
    for (size_t i = 0; i < d->ncounters; i++)
        h->sum += d->counters[i];
    size_t at = strlen(h->payloads);
    snprintf(h->payloads + at, sizeof h->payloads - at, "%s%.*s", at ? "," : "", (int)d->payload_len,
             d->payload ? (const char *)d->payload : "");
    if (d->payload_len && ((const char *)d->payload)[0] == h->fail_on)
        return err_set(err, HAUL_EIO, "refused %.*s", (int)d->payload_len, (const char *)d->payload);
    return 0;
}

static int done(struct dist_tracker *t, uint64_t id, uint64_t base, uint32_t children, const char *payload)
{
    uint64_t one = 1;
    struct dist_done d = {.id = id, .counters = &one, .ncounters = 1, .payload = payload,
                          .payload_len = payload ? strlen(payload) : 0};
    haul_error err = {0};
    return dist_tracker_done(t, &d, base, children, &err);
}

/* Completion counting: a child's result that overtakes its parent's is
 * kept aside, payload included, and counted when the parent names it;
 * duplicates (redelivered units) count nothing, counters and payloads
 * included; results of unknown ids never complete anything, nor do the
 * orphans a redone unit published under a fresh base; a callback's failure
 * is the caller's. */
static void test_tracker(void **state)
{
    (void)state;
    struct handed h = {.fail_on = '!'};
    struct dist_tracker *t = dist_tracker_new(on_done, &h);
    assert_non_null(t);
    haul_error err = {0};
    assert_int_equal(dist_tracker_expect(t, 100, &err), 0);
    assert_int_equal(dist_tracker_outstanding(t), 1);
    uint64_t c0 = dist_unit_child_id(100, 0), c1 = dist_unit_child_id(100, 1);
    assert_int_equal(done(t, c1, 0, 0, "early"), 0);
    assert_int_equal(done(t, 999, 0, 0, "stale"), 0); /* a stale run's */
    assert_int_equal(h.sum, 0);
    assert_int_equal(dist_tracker_outstanding(t), 1);
    assert_int_equal(done(t, 100, 0, 2, "root"), 0);
    assert_int_equal(dist_tracker_outstanding(t), 1); /* c0 left */
    assert_int_equal(h.sum, 2);                          /* 100 and the early c1 */
    assert_string_equal(h.payloads, "root,early");
    /* 100 redone under a fresh base: its second result is a duplicate, and
     * the children it published (orphans) are never counted. */
    uint64_t fresh = 0x1234567890abcdefULL, orphan = dist_unit_child_id(fresh, 0);
    assert_int_equal(done(t, orphan, 0, 0, "orphan"), 0);
    assert_int_equal(done(t, 100, fresh, 2, "root again"), 0);
    assert_int_equal(done(t, c1, 0, 0, "early again"), 0);
    assert_int_equal(h.sum, 2);
    assert_string_equal(h.payloads, "root,early");
    assert_int_equal(done(t, c0, 0, 0, NULL), 0);
    assert_int_equal(dist_tracker_outstanding(t), 0);
    assert_int_equal(dist_tracker_done_count(t), 3);
    assert_int_equal(h.sum, 3);
    assert_string_equal(h.payloads, "root,early,");
    /* A callback that fails, at once or for a result that came early. */
    assert_int_equal(dist_tracker_expect(t, 200, &err), 0);
    assert_int_equal(done(t, 200, 0, 0, "!now"), -HAUL_EIO);
    uint64_t e0 = dist_unit_child_id(300, 0);
    assert_int_equal(done(t, e0, 0, 0, "!later"), 0);
    assert_int_equal(dist_tracker_expect(t, e0, &err), -HAUL_EIO);
    assert_string_equal(err.msg, "refused !later");
    /* Many ids: the table grows and keeps counting right. */
    for (uint64_t i = 0; i < 20000; i++)
        assert_int_equal(dist_tracker_expect(t, 1000000 + i, &err), 0);
    for (uint64_t i = 0; i < 20000; i++)
        assert_int_equal(done(t, 1000000 + i, 0, 0, NULL), 0);
    assert_int_equal(dist_tracker_outstanding(t), 0);
    dist_tracker_free(t);
}

/* util/wire's C strings: copied with their NUL; one that does not fit, or
 * holds a NUL, marks the message bad and keeps it bad. */
static void test_wire_cstr(void **state)
{
    (void)state;
    struct strbuf sb = STRBUF_INIT;
    wire_put_str(&sb, "abc", 3);
    wire_put_str(&sb, "a\0b", 3);
    wire_put_str(&sb, "ok", 2);
    char out[4];
    struct wire_reader r = {(const unsigned char *)sb.s, sb.len, NULL};
    assert_true(wire_get_cstr(&r, out, sizeof out));
    assert_string_equal(out, "abc");
    assert_false(wire_get_cstr(&r, out, sizeof out));
    assert_string_equal(r.why, "bad string");
    assert_false(wire_get_cstr(&r, out, sizeof out)); /* bad stays bad */
    struct wire_reader tight = {(const unsigned char *)sb.s, sb.len, NULL};
    assert_false(wire_get_cstr(&tight, out, 3)); /* "abc" needs 4 bytes */
    strbuf_release(&sb);
}

/* The optional payload trailers of units and results: round trip (bytes
 * equal, NULs included), absent = none, every cut or extension refused. */
static void test_payloads(void **state)
{
    (void)state;
    static const char blob[] = "job\0bytes\xff";
    const char *path = "a/b";
    struct dist_unit u = {.id = 9, .pass = DIST_PASS_BACKUP, .kind = DIST_UNIT_FILES, .npaths = 1,
                          .paths = &path, .payload = blob, .payload_len = sizeof blob};
    strcpy(u.job_id, "run1");
    struct strbuf sb = STRBUF_INIT;
    haul_error err = {0};
    assert_int_equal(dist_unit_encode(&u, &sb, &err), 0);
    struct dist_unit du;
    assert_int_equal(dist_unit_decode(sb.s, sb.len, &du, &err), 0);
    assert_int_equal(du.payload_len, sizeof blob);
    assert_memory_equal(du.payload, blob, sizeof blob);
    assert_string_equal(du.paths[0], "a/b");
    dist_unit_release(&du);
    for (size_t n = sb.len - sizeof blob - 4 + 1; n < sb.len; n++) {
        haul_error e = {0};
        assert_int_equal(dist_unit_decode(sb.s, n, &du, &e), -HAUL_EPROTO);
    }
    strbuf_add(&sb, "x", 1);
    err = (haul_error){0};
    assert_int_equal(dist_unit_decode(sb.s, sb.len, &du, &err), -HAUL_EPROTO);
    assert_non_null(strstr(err.msg, "trailing bytes"));
    strbuf_release(&sb);

    struct dist_result_unit ru = {9, 0, 0};
    struct dist_result r = {.nunits = 1, .units = &ru, .payload = blob, .payload_len = sizeof blob};
    strcpy(r.worker, "w/1");
    assert_int_equal(dist_result_encode(&r, &sb, &err), 0);
    struct dist_result dr;
    assert_int_equal(dist_result_decode(sb.s, sb.len, &dr, &err), 0);
    assert_int_equal(dr.ncounters, 0);
    assert_int_equal(dr.payload_len, sizeof blob);
    assert_memory_equal(dr.payload, blob, sizeof blob);
    assert_int_equal(dr.units[0].unit_id, 9);
    dist_result_release(&dr);
    for (size_t n = sb.len - sizeof blob - 4 - 2 + 1; n < sb.len; n++) {
        haul_error e = {0};
        assert_int_equal(dist_result_decode(sb.s, n, &dr, &e), -HAUL_EPROTO);
    }
    strbuf_release(&sb);
    /* A payload with no units at all (a result of listings only). */
    r.nunits = 0;
    r.units = NULL;
    assert_int_equal(dist_result_encode(&r, &sb, &err), 0);
    assert_int_equal(dist_result_decode(sb.s, sb.len, &dr, &err), 0);
    assert_int_equal(dr.payload_len, sizeof blob);
    assert_memory_equal(dr.payload, blob, sizeof blob);
    dist_result_release(&dr);
    strbuf_release(&sb);
}

/* The optional counters trailer: round trip, absent means 0 counters,
 * truncated or out-of-range counts refused. */
static void test_result_counters(void **state)
{
    (void)state;
    struct dist_result_unit unit = {42, 3, 0};
    struct dist_result r = {.nunits = 1, .units = &unit, .ncounters = 3, .counters = {7, 0, UINT64_MAX}};
    strcpy(r.worker, "w/1");
    struct strbuf sb = STRBUF_INIT;
    haul_error err = {0};
    assert_int_equal(dist_result_encode(&r, &sb, &err), 0);
    struct dist_result d;
    assert_int_equal(dist_result_decode(sb.s, sb.len, &d, &err), 0);
    assert_int_equal(d.ncounters, 3);
    assert_int_equal(d.counters[0], 7);
    assert_int_equal(d.counters[2], UINT64_MAX);
    assert_int_equal(d.units[0].children, 3);
    dist_result_release(&d);
    /* Cut inside the trailer: refused (cut exactly before it: a result
     * without counters, as older workers send). */
    size_t before = sb.len - 2 - 3 * 8;
    for (size_t n = before + 1; n < sb.len; n++) {
        haul_error e = {0};
        assert_int_equal(dist_result_decode(sb.s, n, &d, &e), -HAUL_EPROTO);
    }
    assert_int_equal(dist_result_decode(sb.s, before, &d, &err), 0);
    assert_int_equal(d.ncounters, 0);
    dist_result_release(&d);
    /* A count of 0 or over the limit is refused. */
    sb.s[before] = 0, sb.s[before + 1] = 0;
    err = (haul_error){0};
    assert_int_equal(dist_result_decode(sb.s, sb.len, &d, &err), -HAUL_EPROTO);
    sb.s[before + 1] = DIST_RESULT_MAX_COUNTERS + 1;
    err = (haul_error){0};
    assert_int_equal(dist_result_decode(sb.s, sb.len, &d, &err), -HAUL_EPROTO);
    strbuf_release(&sb);
    r.ncounters = DIST_RESULT_MAX_COUNTERS + 1;
    assert_int_equal(dist_result_encode(&r, &sb, &err), -HAUL_EUSAGE);
    strbuf_release(&sb);
}

/* The job description store, in process: absent, then the latest put. */
static void test_mem_job(void **state)
{
    (void)state;
    haul_error err = {0};
    struct dist_queue *q = dist_queue_open(NULL, NULL, &err);
    assert_non_null(q);
    struct strbuf sb = STRBUF_INIT;
    assert_int_equal(dist_job_get(q, &sb, NULL, &err), 0);
    assert_int_equal(dist_job_put(q, "one", 3, &err), 0);
    assert_int_equal(dist_job_put(q, "two!", 4, &err), 0);
    assert_int_equal(dist_job_get(q, &sb, NULL, &err), 1);
    assert_int_equal(sb.len, 4);
    assert_memory_equal(sb.s, "two!", 4);
    strbuf_release(&sb);
    dist_queue_free(q);
}

static void test_control_codec(void **state)
{
    (void)state;
    struct dist_control c = {.op = DIST_CTL_GROW, .n = 16};
    strcpy(c.node, "node3");
    struct strbuf sb = STRBUF_INIT;
    haul_error err = {0};
    assert_int_equal(dist_control_encode(&c, &sb, &err), 0);
    struct dist_control d;
    assert_int_equal(dist_control_decode(sb.s, sb.len, &d, &err), 0);
    assert_int_equal(d.op, DIST_CTL_GROW);
    assert_int_equal(d.n, 16);
    assert_string_equal(d.node, "node3");
    for (size_t n = 0; n < sb.len; n++) {
        haul_error e = {0};
        assert_int_equal(dist_control_decode(sb.s, n, &d, &e), -HAUL_EPROTO);
    }
    sb.s[6] = 9; /* op */
    err = (haul_error){0};
    assert_int_equal(dist_control_decode(sb.s, sb.len, &d, &err), -HAUL_EPROTO);
    assert_non_null(strstr(err.msg, "unknown control operation"));
    strbuf_reset(&sb);
    struct dist_control stop = {.op = DIST_CTL_STOP};
    assert_int_equal(dist_control_encode(&stop, &sb, &err), 0);
    assert_int_equal(dist_control_decode(sb.s, sb.len, &d, &err), 0);
    assert_int_equal(d.op, DIST_CTL_STOP);
    assert_string_equal(d.node, "");
    struct dist_control grow0 = {.op = DIST_CTL_GROW, .n = 0};
    assert_int_equal(dist_control_encode(&grow0, &sb, &err), -HAUL_EUSAGE);
    strbuf_release(&sb);
}

static void test_url_helpers(void **state)
{
    (void)state;
    char out[256];
    /* Parsed as librabbitmq does (the userinfo ends at the last '@'), the
     * password never printed whatever it holds. */
    static const char *const cases[][2] = {
        {"amqp://guest:secret@127.0.0.1:5672/", "amqp://guest:***@127.0.0.1:5672/"},
        {"amqp://haul:ab/cd+ef=@broker:5672/haul", "amqp://haul:***@broker:5672/haul"},
        {"amqp://u:p@ss@host/vh", "amqp://u:***@host:5672/vh"},
        {"amqp://u:a:b:c@host:5673/", "amqp://u:***@host:5673/"},
        {"amqp://u:x%2Fy%40z@host/%2F", "amqp://u:***@host:5672/%2F"},
        {"amqp://u:/@:/@host/v", "amqp://u:***@host:5672/v"},
        {"amqp://u:@host/", "amqp://u:***@host:5672/"},
        {"amqp://u@host/", "amqp://u@host:5672/"},
        {"amqp://host:5672/", "amqp://host:5672/"},
        {"amqp://host", "amqp://host:5672"},
        {"amqps://u:s3cr/t@[::1]:5671/v", "amqps://u:***@[::1]:5671/v"},
        {"amqps://u:pw@host/v?cacertfile=/etc/ca.pem", "amqps://u:***@host:5671/v"},
        /* not broker URLs: nothing of the userinfo but the user name */
        {"amqp://u:pw@host:notaport/", "amqp://u:***@host:notaport/"},
        {"amqp://haul:s3cr/t", "amqp://haul:***"},
        {"http://u:pw@host/", "http://u:***@host/"},
        {"u:pw@host", "u:***@host"},
        {"amqp://user/pw@host:x/", "amqp://***@host:x/"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dist_url_redact(cases[i][0], out, sizeof out);
        assert_string_equal(out, cases[i][1]);
    }
    char tiny[12];
    dist_url_redact("amqp://u:secretpassword@h/", tiny, sizeof tiny);
    assert_string_equal(tiny, "amqp://u:**");
    setenv("HAUL_BROKER", "", 1);
    assert_null(dist_broker_url_from_env());
    setenv("HAUL_BROKER", "amqp://x/", 1);
    assert_string_equal(dist_broker_url_from_env(), "amqp://x/");
    unsetenv("HAUL_BROKER");
    assert_null(dist_broker_url_from_env());

    haul_error err = {0};
    struct dist_queue_opts o = {.prefix = "bad prefix"};
    assert_null(dist_queue_open(NULL, &o, &err));
    assert_int_equal(err.code, HAUL_EUSAGE);
}

/* ---- the in-process queue ---- */

static struct dist_queue *mem_open(unsigned consume, size_t capacity)
{
    struct dist_queue_opts o = {.prefix = "haul.test", .consume = consume, .capacity = capacity};
    haul_error err = {0};
    struct dist_queue *q = dist_queue_open(NULL, &o, &err);
    if (!q)
        fail_msg("open: %s", err.msg);
    assert_string_equal(dist_queue_url(q), "in-process");
    return q;
}

static void test_mem_basic(void **state)
{
    (void)state;
    struct dist_queue *q = mem_open(DIST_CONSUME(DIST_WORK) | DIST_CONSUME(DIST_DEAD), 0);
    haul_error err = {0};
    struct dist_msg m;
    assert_int_equal(dist_next(q, &m, 0, &err), 0);
    assert_int_equal(dist_next(q, &m, 20, &err), 0);
    assert_int_equal(dist_publish(q, "one", 3, &err), 0);
    assert_int_equal(dist_publish(q, "two", 3, &err), 0);
    assert_int_equal(dist_flush(q, 1000, &err), 0);
    struct dist_depth d;
    assert_int_equal(dist_queue_depth(q, DIST_WORK, &d, &err), 0);
    assert_int_equal(d.ready, 2);
    assert_int_equal(dist_next(q, &m, -1, &err), 1);
    assert_int_equal(m.kind, DIST_WORK);
    assert_int_equal(m.len, 3);
    assert_memory_equal(m.body, "one", 3);
    assert_false(m.redelivered);
    assert_int_equal(dist_queue_depth(q, DIST_WORK, &d, &err), 0);
    assert_int_equal(d.ready, 1);
    assert_int_equal(d.unacked, 1);
    assert_int_equal(dist_ack(q, &m, &err), 0);
    assert_int_equal(dist_ack(q, &m, &err), -HAUL_EUSAGE); /* twice */

    /* Reject with requeue: comes back first, marked redelivered. */
    err = (haul_error){0};
    assert_int_equal(dist_next(q, &m, 0, &err), 1);
    assert_memory_equal(m.body, "two", 3);
    assert_int_equal(dist_reject(q, &m, true, &err), 0);
    assert_int_equal(dist_next(q, &m, 0, &err), 1);
    assert_memory_equal(m.body, "two", 3);
    assert_true(m.redelivered);
    /* Reject without requeue: dead-lettered. */
    assert_int_equal(dist_reject(q, &m, false, &err), 0);
    assert_int_equal(dist_queue_depth(q, DIST_WORK, &d, &err), 0);
    assert_int_equal(d.ready + (uint64_t)d.unacked, 0);
    assert_int_equal(dist_queue_depth(q, DIST_DEAD, &d, &err), 0);
    assert_int_equal(d.ready, 1);
    assert_int_equal(dist_next(q, &m, 0, &err), 1);
    assert_int_equal(m.kind, DIST_DEAD);
    assert_memory_equal(m.body, "two", 3);
    assert_int_equal(dist_ack(q, &m, &err), 0);

    /* Publishing to the dead queue or consuming nothing is refused. */
    assert_int_equal(dist_publish_to(q, DIST_DEAD, "x", 1, &err), -HAUL_EUSAGE);
    dist_queue_free(q);
    dist_queue_free(NULL);
}

static void test_mem_dead_consumer(void **state)
{
    (void)state;
    struct dist_queue *pub = mem_open(0, 0);
    haul_error err = {0};
    struct dist_queue *c1 = dist_queue_clone(pub, &(struct dist_queue_opts){.consume = DIST_CONSUME(DIST_WORK)}, &err);
    assert_non_null(c1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(dist_publish(pub, &i, sizeof i, &err), 0);
    struct dist_msg m[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(dist_next(c1, &m[i], 0, &err), 1);
    assert_int_equal(dist_ack(c1, &m[1], &err), 0);
    dist_queue_free(c1); /* dies holding units 0 and 2 */

    struct dist_msg n;
    assert_int_equal(dist_next(pub, &n, 0, &err), -HAUL_EUSAGE); /* pub consumes nothing */
    err = (haul_error){0};
    struct dist_queue *c2 = dist_queue_clone(pub, &(struct dist_queue_opts){.consume = DIST_CONSUME(DIST_WORK)}, &err);
    assert_non_null(c2);
    int seen = 0;
    while (dist_next(c2, &n, 0, &err) == 1) {
        int v;
        memcpy(&v, n.body, sizeof v);
        assert_true(v == 0 || v == 2);
        assert_true(n.redelivered);
        seen++;
        dist_ack(c2, &n, &err);
    }
    assert_int_equal(seen, 2);
    dist_queue_free(c2);
    dist_queue_free(pub);
}

static void test_mem_control_results(void **state)
{
    (void)state;
    struct dist_queue *coord = mem_open(DIST_CONSUME(DIST_RESULTS), 0);
    haul_error err = {0};
    struct dist_queue_opts wo = {.consume = DIST_CONSUME(DIST_WORK) | DIST_CONSUME(DIST_CONTROL)};
    struct dist_queue *w1 = dist_queue_clone(coord, &wo, &err);
    struct dist_queue *w2 = dist_queue_clone(coord, &wo, &err);
    assert_non_null(w1);
    assert_non_null(w2);
    assert_int_equal(dist_publish(coord, "unit", 4, &err), 0);
    assert_int_equal(dist_publish_to(coord, DIST_CONTROL, "stop", 4, &err), 0);
    /* Control comes before work, and each worker gets its own copy. */
    struct dist_msg m;
    assert_int_equal(dist_next(w1, &m, 0, &err), 1);
    assert_int_equal(m.kind, DIST_CONTROL);
    assert_int_equal(dist_ack(w1, &m, &err), 0);
    assert_int_equal(dist_next(w2, &m, 0, &err), 1);
    assert_int_equal(m.kind, DIST_CONTROL);
    assert_int_equal(dist_reject(w2, &m, true, &err), 0); /* control is never requeued */
    assert_int_equal(dist_next(w2, &m, 0, &err), 1);
    assert_int_equal(m.kind, DIST_WORK);
    assert_int_equal(dist_publish_to(w2, DIST_RESULTS, "done", 4, &err), 0);
    assert_int_equal(dist_ack(w2, &m, &err), 0);
    assert_int_equal(dist_next(w1, &m, 0, &err), 0);
    struct dist_msg r;
    assert_int_equal(dist_next(coord, &r, 100, &err), 1);
    assert_int_equal(r.kind, DIST_RESULTS);
    assert_memory_equal(r.body, "done", 4);
    assert_int_equal(dist_ack(coord, &r, &err), 0);
    dist_queue_free(w1);
    dist_queue_free(w2);
    /* Only the last handle frees the shared queues; the rest stay usable. */
    assert_int_equal(dist_publish(coord, "x", 1, &err), 0);
    assert_int_equal(dist_queue_delete(coord, &err), 0);
    struct dist_depth d;
    assert_int_equal(dist_queue_depth(coord, DIST_WORK, &d, &err), 0);
    assert_int_equal(d.ready, 0);
    dist_queue_free(coord);
}

static void told_no_worker(void *ctx) { (*(int *)ctx)++; }

/* The coordinators' wait (dist/waiter): a malformed result is dropped and
 * the next good one returned; idle waits with nobody consuming the work
 * queue (in process: never anybody) tell no_worker once, after three in a
 * row; an interrupted run fails the wait with HAUL_ECANCELED. */
static void test_waiter(void **state)
{
    (void)state;
    struct dist_queue *coord = mem_open(DIST_CONSUME(DIST_RESULTS), 0);
    haul_error err = {0};
    int told = 0;
    atomic_bool cancel = false;
    struct dist_waiter w = {.q = coord, .cancel = &cancel, .no_worker = told_no_worker, .ctx = &told};
    struct dist_result r = {.worker = "w1", .nunits = 1,
                            .units = &(struct dist_result_unit){.unit_id = 7}};
    struct strbuf sb = STRBUF_INIT;
    assert_int_equal(dist_result_encode(&r, &sb, &err), 0);
    assert_int_equal(dist_publish_to(coord, DIST_RESULTS, "garbage", 7, &err), 0);
    assert_int_equal(dist_publish_to(coord, DIST_RESULTS, sb.s, sb.len, &err), 0);
    struct dist_msg m;
    struct dist_result got;
    assert_int_equal(dist_wait_result(&w, 10, &m, &got, &err), 1);
    assert_int_equal(got.nunits, 1);
    assert_int_equal(got.units[0].unit_id, 7);
    dist_result_release(&got);
    assert_int_equal(dist_ack(coord, &m, &err), 0);
    struct dist_depth d;
    assert_int_equal(dist_queue_depth(coord, DIST_RESULTS, &d, &err), 0);
    assert_int_equal(d.ready, 0); /* the garbage is gone too */
    assert_int_equal(dist_wait_result(&w, 0, &m, &got, &err), 0); /* no wait: not idle */
    assert_int_equal(dist_wait_result(&w, 0, &m, &got, &err), 0);
    assert_int_equal(dist_wait_result(&w, 0, &m, &got, &err), 0);
    assert_int_equal(told, 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(dist_wait_result(&w, 10, &m, &got, &err), 0);
    assert_int_equal(told, 1);
    cancel = true;
    assert_int_equal(dist_wait_result(&w, 10, &m, &got, &err), -HAUL_ECANCELED);
    assert_string_equal(err.msg, "interrupted (run the same command again to finish)");
    strbuf_release(&sb);
    dist_queue_free(coord);
}

#define NTHREADS 6
#define NMSGS 20000

struct consumer {
    struct dist_queue *q;
    unsigned char *seen; /* shared; each byte written by the one consumer of that id */
    int count;
    int rejects;
};

static void *consume_thread(void *arg)
{
    struct consumer *c = arg;
    haul_error err = {0};
    struct dist_msg m;
    for (;;) {
        int rc = dist_next(c->q, &m, 200, &err);
        if (rc <= 0)
            break;
        uint32_t id;
        memcpy(&id, m.body, sizeof id);
        if (id == UINT32_MAX) { /* end marker: one per thread */
            dist_ack(c->q, &m, &err);
            break;
        }
        /* Every 97th first delivery is handed back once, as a worker that
         * gives up on a unit would: it must still be done exactly once. */
        if (!m.redelivered && id % 97 == 0) {
            c->rejects++;
            dist_reject(c->q, &m, true, &err);
            continue;
        }
        c->seen[id]++;
        c->count++;
        dist_ack(c->q, &m, &err);
    }
    return NULL;
}

static void test_mem_many_threads(void **state)
{
    (void)state;
    struct dist_queue *pub = mem_open(0, 256); /* small bound: publish blocks often */
    unsigned char *seen = calloc(NMSGS, 1);
    assert_non_null(seen);
    struct consumer cs[NTHREADS];
    pthread_t th[NTHREADS];
    haul_error err = {0};
    for (int i = 0; i < NTHREADS; i++) {
        cs[i] = (struct consumer){.seen = seen};
        cs[i].q = dist_queue_clone(pub, &(struct dist_queue_opts){.consume = DIST_CONSUME(DIST_WORK)}, &err);
        assert_non_null(cs[i].q);
        assert_int_equal(pthread_create(&th[i], NULL, consume_thread, &cs[i]), 0);
    }
    for (uint32_t id = 0; id < NMSGS; id++)
        assert_int_equal(dist_publish(pub, &id, sizeof id, &err), 0);
    uint32_t end = UINT32_MAX;
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(dist_publish(pub, &end, sizeof end, &err), 0);
    int total = 0, rejects = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        total += cs[i].count;
        rejects += cs[i].rejects;
        dist_queue_free(cs[i].q);
    }
    assert_int_equal(total, NMSGS);
    assert_int_equal(rejects, (NMSGS + 96) / 97);
    for (int i = 0; i < NMSGS; i++)
        if (seen[i] != 1)
            fail_msg("message %d consumed %d times", i, seen[i]);
    free(seen);
    dist_queue_free(pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unit_roundtrip_files),
        cmocka_unit_test(test_unit_roundtrip_range_scan),
        cmocka_unit_test(test_unit_max_batch),
        cmocka_unit_test(test_unit_truncated_everywhere),
        cmocka_unit_test(test_unit_bad_header),
        cmocka_unit_test(test_unit_counts_that_lie),
        cmocka_unit_test(test_unit_bad_paths),
        cmocka_unit_test(test_unit_bad_range),
        cmocka_unit_test(test_unit_mutations),
        cmocka_unit_test(test_child_ids),
        cmocka_unit_test(test_result_codec),
        cmocka_unit_test(test_result_counters),
        cmocka_unit_test(test_payloads),
        cmocka_unit_test(test_wire_cstr),
        cmocka_unit_test(test_tracker),
        cmocka_unit_test(test_mem_job),
        cmocka_unit_test(test_control_codec),
        cmocka_unit_test(test_url_helpers),
        cmocka_unit_test(test_mem_basic),
        cmocka_unit_test(test_mem_dead_consumer),
        cmocka_unit_test(test_mem_control_results),
        cmocka_unit_test(test_mem_many_threads),
        cmocka_unit_test(test_waiter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for job/dbackup: the job description codec (round trip with
 * awkward bytes, strict refusal), and the worker's side against hostile
 * or broken units: an upload unit whose hard-link target climbs out of the
 * tree, one without its payload, a worker configured for another endpoint,
 * and what a scan publishes (on the in-process queue).  No S3 request is
 * made: every case is refused before one (the client points at a closed
 * loopback port). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dist/dist.h"
#include "job/dbackup.h"
#include "s3/config.h"
#include "util/wire.h"

static void test_spec_round_trip(void **state)
{
    (void)state;
    static struct dbackup_spec s, d;
    strcpy(s.run, "0123456789abcdef");
    strcpy(s.src, "/data/tree with space/%weird\n\xff");
    strcpy(s.endpoint, "http://127.0.0.1:7480");
    strcpy(s.bucket, "archive");
    strcpy(s.prefix, "nightly/ü/");
    s.small_threshold = 128 << 10;
    strcpy(s.storage_class_large, "GLACIER");
    s.one_filesystem = true;
    s.part_size = 8 << 20;
    s.part_workers = 12;
    s.mtime_newer = 1700000000;
    s.nexcludes = 2;
    strcpy(s.excludes[0], "*.tmp");
    strcpy(s.excludes[1], "/a b/");
    s.nincludes = 1;
    strcpy(s.includes[0], "*.fits");
    struct strbuf sb = STRBUF_INIT;
    haul_error err = {0};
    assert_int_equal(dbackup_spec_encode(&s, &sb, &err), 0);
    assert_true(dbackup_spec_is(sb.s, sb.len));
    assert_int_equal(dbackup_spec_decode(sb.s, sb.len, &d, &err), 0);
    assert_string_equal(d.run, s.run);
    assert_string_equal(d.src, s.src);
    assert_string_equal(d.endpoint, s.endpoint);
    assert_string_equal(d.bucket, s.bucket);
    assert_string_equal(d.prefix, s.prefix);
    assert_int_equal(d.small_threshold, 128 << 10);
    assert_string_equal(d.storage_class_large, "GLACIER");
    assert_true(d.one_filesystem);
    assert_int_equal(d.part_size, 8 << 20);
    assert_int_equal(d.part_workers, 12);
    assert_int_equal(d.mtime_newer, 1700000000);
    assert_int_equal(d.mtime_older, 0);
    assert_int_equal(d.nexcludes, 2);
    assert_string_equal(d.excludes[1], "/a b/");
    assert_int_equal(d.nincludes, 1);
    assert_string_equal(d.includes[0], "*.fits");
    strbuf_release(&sb);
}

static int decode_text(const char *text, haul_error *err)
{
    static struct dbackup_spec d;
    return dbackup_spec_decode(text, strlen(text), &d, err);
}

static void test_spec_strict(void **state)
{
    (void)state;
    static const char good[] = "haul-dbackup 1\nrun 0123456789abcdef\nsrc /d\nendpoint http://h\nbucket b\n";
    haul_error err = {0};
    assert_int_equal(decode_text(good, &err), 0);
    /* A clone's description is not a backup's. */
    assert_false(dbackup_spec_is("haul-dclone 1\n", 14));
    const char *bad[] = {
        "haul-dclone 1\nrun 0123456789abcdef\n",
        "haul-dbackup 1\nsrc /d\nendpoint http://h\nbucket b\n",                      /* no run */
        "haul-dbackup 1\nrun 0123\nsrc /d\nendpoint http://h\nbucket b\n",            /* short run */
        "haul-dbackup 1\nrun 0123456789abcdef\nsrc relative\nendpoint http://h\nbucket b\n",
        "haul-dbackup 1\nrun 0123456789abcdef\nsrc /d\nendpoint http://h\nbucket b\npart_workers x\n",
        "haul-dbackup 1\nrun 0123456789abcdef\nsrc /d%00x\nendpoint http://h\nbucket b\n",
        "haul-dbackup 1\nrun 0123456789abcdef\nsrc /d\nendpoint http://h\nbucket b\nno-newline",
        "haul-dbackup 1\nrun 0123456789abcdef\nsrc /d\nendpoint http://h\nbucket b\nsmall_threshold 99999999999\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err = (haul_error){0};
        assert_int_equal(decode_text(bad[i], &err), -HAUL_EPROTO);
        assert_non_null(strstr(err.msg, "job description"));
    }
}

struct fixture {
    char dir[64];
    struct s3_client *c;
    struct dbackup_spec spec;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/haul-test-dbackup.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char p[128];
    snprintf(p, sizeof p, "%s/sub", f->dir);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/f", f->dir);
    FILE *fp = fopen(p, "w");
    fputs("data", fp);
    fclose(fp);
    struct s3_config cfg = {.endpoint = "http://127.0.0.1:9", .region = "us-east-1", .access_key = "AK",
                            .secret_key = "SK", .profile = "default", .max_connections = 1,
                            .max_attempts = 1, .connect_timeout_ms = 1000};
    haul_error err = {0};
    f->c = s3_client_new(&cfg, &err);
    assert_non_null(f->c);
    strcpy(f->spec.run, "0123456789abcdef");
    strcpy(f->spec.src, f->dir);
    strcpy(f->spec.endpoint, "http://127.0.0.1:9");
    strcpy(f->spec.bucket, "b");
    f->spec.small_threshold = 1024;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    s3_client_free(f->c);
    free(f);
    return 0;
}

/* Units run by a worker whose endpoint is not the job's: refused. */
static void test_engine_other_endpoint(void **state)
{
    struct fixture *f = *state;
    struct dbackup_spec s = f->spec;
    strcpy(s.endpoint, "http://127.0.0.1:7480");
    haul_error err = {0};
    assert_null(dbackup_engine_new(&s, f->c, NULL, &err));
    assert_non_null(strstr(err.msg, "the job stores to http://127.0.0.1:7480"));
    assert_null(dbackup_engine_new(&f->spec, NULL, NULL, &err));
}

/* Hostile upload units: the hard-link target "../../etc/passwd" is a
 * failure record naming the path, never an object; a unit without its
 * payload is refused as malformed. */
static void test_upload_hostile(void **state)
{
    struct fixture *f = *state;
    haul_error err = {0};
    struct dbackup_engine *e = dbackup_engine_new(&f->spec, f->c, NULL, &err);
    assert_non_null(e);
    struct strbuf links = STRBUF_INIT, payload = STRBUF_INIT;
    wire_put_u8(&links, 3);
    wire_put_str(&links, "../../etc/passwd", 16);
    const char *path = "f";
    struct dist_unit u = {.id = 7, .pass = DIST_PASS_BACKUP, .kind = DIST_UNIT_FILES, .npaths = 1,
                          .paths = &path, .payload = links.s, .payload_len = links.len};
    strcpy(u.job_id, f->spec.run);
    uint32_t children = 9;
    uint64_t c[DBACKUP_COUNTERS];
    assert_int_equal(dbackup_unit_do(e, NULL, &u, 0, "w/0", &children, c, &payload, &err), 0);
    assert_int_equal(children, 0);
    assert_int_equal(c[DBACKUP_C_UPLOADED], 0);
    assert_int_equal(c[DBACKUP_C_ERRORS], 1);
    /* records: u8 2, run, u32 1, then u8 0 (failed), path "f", message */
    struct wire_reader r = {(const unsigned char *)payload.s, payload.len, NULL};
    const unsigned char *s;
    assert_int_equal(wire_get_u8(&r), 2);
    assert_int_equal(wire_get_str(&r, &s), 16);
    assert_int_equal(wire_get_u32(&r), 1);
    assert_int_equal(wire_get_u8(&r), 0);
    assert_int_equal(wire_get_str(&r, &s), 1);
    size_t n = wire_get_str(&r, &s);
    assert_null(r.why);
    assert_true(n > 0 && memmem(s, n, "hard-link target", 16));

    u.payload = NULL;
    u.payload_len = 0;
    err = (haul_error){0};
    assert_int_equal(dbackup_unit_do(e, NULL, &u, 0, "w/0", &children, c, &payload, &err), -HAUL_EPROTO);
    strbuf_release(&links);
    strbuf_release(&payload);
    dbackup_engine_free(e);
}

/* A scan of the root publishes "sub" as a scan unit and returns the
 * listing (root, f, sub) in its own result's payload. */
static void test_scan_publishes(void **state)
{
    struct fixture *f = *state;
    haul_error err = {0};
    struct dbackup_engine *e = dbackup_engine_new(&f->spec, f->c, NULL, &err);
    assert_non_null(e);
    struct dist_queue_opts qo = {.consume = DIST_CONSUME(DIST_WORK) | DIST_CONSUME(DIST_RESULTS)};
    struct dist_queue *q = dist_queue_open(NULL, &qo, &err);
    assert_non_null(q);
    const char *root = ".";
    struct dist_unit u = {.id = 42, .pass = DIST_PASS_BACKUP, .kind = DIST_UNIT_SCAN_DIR, .npaths = 1,
                          .paths = &root};
    strcpy(u.job_id, f->spec.run);
    uint32_t children = 0;
    uint64_t c[DBACKUP_COUNTERS];
    struct strbuf payload = STRBUF_INIT;
    assert_int_equal(dbackup_unit_do(e, q, &u, 0, "w/0", &children, c, &payload, &err), 0);
    assert_int_equal(children, 1);
    struct dist_msg m;
    assert_int_equal(dist_next(q, &m, 0, &err), 1);
    assert_int_equal(m.kind, DIST_WORK);
    struct dist_unit d;
    assert_int_equal(dist_unit_decode(m.body, m.len, &d, &err), 0);
    assert_string_equal(d.paths[0], "sub");
    assert_int_equal(d.kind, DIST_UNIT_SCAN_DIR);
    assert_int_equal(d.id, dist_unit_child_id(42, 0));
    dist_unit_release(&d);
    dist_ack(q, &m, &err);
    assert_int_equal(dist_next(q, &m, 0, &err), 0); /* no listing of its own */
    struct wire_reader rd = {(const unsigned char *)payload.s, payload.len, NULL};
    const unsigned char *s;
    assert_int_equal(wire_get_u8(&rd), 1);
    assert_int_equal(wire_get_str(&rd, &s), 16);
    assert_int_equal(wire_get_u32(&rd), 3); /* "", "f", "sub" in some order */
    strbuf_release(&payload);
    dist_queue_free(q);
    dbackup_engine_free(e);
}

/* A RANGE unit for the fixture's file "f" ("data": one part), with the
 * ETags an interrupted run left: n_known of them announced, the strings
 * given; runs it and returns the result's ok byte and message or ETag. */
static int range_run(struct fixture *f, uint32_t n_known, const char *const *known, size_t n_given, char *out,
                     size_t cap)
{
    char path[128];
    struct stat st;
    snprintf(path, sizeof path, "%s/f", f->dir);
    assert_int_equal(stat(path, &st), 0);
    struct strbuf t = STRBUF_INIT, payload = STRBUF_INIT;
    wire_put_u8(&t, 4); /* a parts ticket */
    wire_put_u64(&t, 99);
    wire_put_str(&t, "upload-1", 8);
    wire_put_str(&t, "f", 1);
    wire_put_u64(&t, 5u << 20);
    wire_put_u32(&t, 1);
    wire_put_u64(&t, (uint64_t)st.st_size);
    wire_put_u64(&t, (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec);
    wire_put_u64(&t, (uint64_t)st.st_ino);
    wire_put_u32(&t, n_known);
    for (size_t i = 0; i < n_given; i++)
        wire_put_str(&t, known[i], strlen(known[i]));
    haul_error err = {0};
    struct dbackup_engine *e = dbackup_engine_new(&f->spec, f->c, NULL, &err);
    assert_non_null(e);
    const char *p = "f";
    struct dist_unit u = {.id = 8, .pass = DIST_PASS_BACKUP, .kind = DIST_UNIT_RANGE, .offset = 0,
                          .length = (uint64_t)st.st_size, .npaths = 1, .paths = &p, .payload = t.s,
                          .payload_len = t.len};
    strcpy(u.job_id, f->spec.run);
    uint32_t children;
    uint64_t c[DBACKUP_COUNTERS];
    assert_int_equal(dbackup_unit_do(e, NULL, &u, 0, "w/0", &children, c, &payload, &err), 0);
    /* u8 5, run, u32 1, u64 spread, u8 ok, then u32 first, u32 n, n x etag | message */
    struct wire_reader r = {(const unsigned char *)payload.s, payload.len, NULL};
    const unsigned char *s;
    assert_int_equal(wire_get_u8(&r), 5);
    wire_get_str(&r, &s);
    assert_int_equal(wire_get_u32(&r), 1);
    assert_int_equal(wire_get_u64(&r), 99);
    int ok = wire_get_u8(&r);
    if (ok) {
        assert_int_equal(wire_get_u32(&r), 1);
        assert_int_equal(wire_get_u32(&r), 1);
    }
    size_t n = wire_get_str(&r, &s);
    assert_null(r.why);
    snprintf(out, cap, "%.*s", (int)n, (const char *)s);
    assert_int_equal(c[DBACKUP_C_BYTES], 0); /* nothing reached the (unreachable) server */
    strbuf_release(&t);
    strbuf_release(&payload);
    dbackup_engine_free(e);
    return ok;
}

/* Parts an interrupted run left: one whose MD5 is the file's bytes is not
 * sent again (the result carries its ETag; the fixture's endpoint is
 * unreachable, so any upload would fail); one with other bytes is sent
 * again (and here fails, naming the file); a list that announces more
 * ETags than it holds is refused, nothing sent. */
static void test_range_known_parts(void **state)
{
    struct fixture *f = *state;
    char out[1100];
    const char *same[] = {"8d777f385d3dfec8815d20f7496026dc"}; /* MD5 of "data" */
    assert_int_equal(range_run(f, 1, same, 1, out, sizeof out), 1);
    assert_string_equal(out, same[0]);
    const char *other[] = {"00000000000000000000000000000000"};
    assert_int_equal(range_run(f, 1, other, 1, out, sizeof out), 0);
    assert_non_null(strstr(out, "f: UploadPart s3://b/f: "));
    assert_int_equal(range_run(f, 2, same, 0, out, sizeof out), 0);
    assert_non_null(strstr(out, "RANGE unit: bad list of parts"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_round_trip),
        cmocka_unit_test(test_spec_strict),
        cmocka_unit_test_setup_teardown(test_engine_other_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_hostile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_publishes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_known_parts, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

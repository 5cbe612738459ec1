/* Unit tests for dist/auth: key files (mode, owner, kind, length checked),
 * the signed envelope (sign, verify, any byte tampered, wrong key, replay
 * under another run id, job or kind), a keyed in-process queue dropping
 * what does not verify (an unsigned unit goes to the dead-letter queue), and
 * the worker's --allow containment by path components. */
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

#include "dist/auth.h"
#include "dist/dist.h"
#include "job/worker.h"
#include "util/err.h"

static struct dist_key key_of(const char *s)
{
    struct dist_key k = {.len = strlen(s)};
    memcpy(k.bytes, s, k.len);
    return k;
}

static int unseal(const struct dist_key *k, const char *prefix, char kind, const struct strbuf *sb, char *run,
                  const char **why)
{
    const void *body;
    size_t blen;
    return dist_unseal(k, prefix, kind, sb->s, sb->len, run, &body, &blen, why);
}

static void test_seal_roundtrip(void **state)
{
    (void)state;
    struct dist_key k = key_of("0123456789abcdef0123456789abcdef");
    struct strbuf sb = STRBUF_INIT;
    haul_error err = {0};
    assert_int_equal(dist_seal(&k, "haul.j", 'W', "00112233aabbccdd", "HAULbody", 8, &sb, &err), 0);
    assert_true(dist_sealed(sb.s, sb.len));
    char run[DIST_JOB_ID_MAX + 1];
    const void *body;
    size_t blen;
    const char *why = NULL;
    assert_int_equal(dist_unseal(&k, "haul.j", 'W', sb.s, sb.len, run, &body, &blen, &why), 0);
    assert_string_equal(run, "00112233aabbccdd");
    assert_int_equal(blen, 8);
    assert_memory_equal(body, "HAULbody", 8);
    strbuf_release(&sb);
    /* An empty run (control messages) and an empty body sign too. */
    assert_int_equal(dist_seal(&k, "haul.j", 'C', "", "", 0, &sb, &err), 0);
    assert_int_equal(dist_unseal(&k, "haul.j", 'C', sb.s, sb.len, run, &body, &blen, &why), 0);
    assert_string_equal(run, "");
    assert_int_equal(blen, 0);
    strbuf_release(&sb);
}

static void test_seal_tamper(void **state)
{
    (void)state;
    struct dist_key k = key_of("0123456789abcdef0123456789abcdef");
    struct strbuf sb = STRBUF_INIT;
    haul_error err = {0};
    assert_int_equal(dist_seal(&k, "haul.j", 'J', "run-a", "haul-dclone 1\nsrc /data\n", 25, &sb, &err), 0);
    char run[DIST_JOB_ID_MAX + 1];
    const char *why;
    /* Every single byte flipped fails (header, run, MAC or body). */
    for (size_t i = 0; i < sb.len; i++) {
        sb.s[i] ^= 0x01;
        why = NULL;
        if (unseal(&k, "haul.j", 'J', &sb, run, &why) == 0)
            fail_msg("byte %zu flipped still verifies", i);
        assert_non_null(why);
        assert_string_equal(run, "");
        sb.s[i] ^= 0x01;
    }
    assert_int_equal(unseal(&k, "haul.j", 'J', &sb, run, &why), 0);
    /* Truncated or extended. */
    struct strbuf longer = STRBUF_INIT;
    strbuf_add(&longer, sb.s, sb.len);
    strbuf_add(&longer, "x", 1);
    assert_int_equal(unseal(&k, "haul.j", 'J', &longer, run, &why), -1);
    longer.len = sb.len - 1;
    assert_int_equal(unseal(&k, "haul.j", 'J', &longer, run, &why), -1);
    longer.len = 5;
    assert_int_equal(unseal(&k, "haul.j", 'J', &longer, run, &why), -1);
    strbuf_release(&longer);
    strbuf_release(&sb);
}

static void test_seal_wrong_key_and_replay(void **state)
{
    (void)state;
    struct dist_key k = key_of("0123456789abcdef0123456789abcdef");
    struct dist_key other = key_of("0123456789abcdef0123456789abcdeF");
    struct strbuf sb = STRBUF_INIT;
    haul_error err = {0};
    assert_int_equal(dist_seal(&k, "haul.j", 'W', "run-a", "HAULunit", 8, &sb, &err), 0);
    char run[DIST_JOB_ID_MAX + 1];
    const char *why = NULL;
    assert_int_equal(unseal(&other, "haul.j", 'W', &sb, run, &why), -1);
    assert_non_null(strstr(why, "does not verify"));
    /* Another job's queues, or taken as another kind of message. */
    assert_int_equal(unseal(&k, "haul.other", 'W', &sb, run, &why), -1);
    assert_int_equal(unseal(&k, "haul.j", 'R', &sb, run, &why), -1);
    assert_non_null(strstr(why, "another kind"));
    /* Replayed under another run id: the run is in the envelope, rewrite it
     * (same length) and the MAC no longer matches. */
    char *p = memmem(sb.s, sb.len, "run-a", 5);
    assert_non_null(p);
    p[4] = 'b';
    assert_int_equal(unseal(&k, "haul.j", 'W', &sb, run, &why), -1);
    assert_non_null(strstr(why, "does not verify"));
    p[4] = 'a';
    assert_int_equal(unseal(&k, "haul.j", 'W', &sb, run, &why), 0);
    assert_string_equal(run, "run-a"); /* what the receiver compares with the unit's own run */
    /* Unsigned bytes are said to be unsigned. */
    struct strbuf plain = STRBUF_INIT;
    strbuf_add(&plain, "HAUL\x01\x01", 6);
    assert_int_equal(unseal(&k, "haul.j", 'W', &plain, run, &why), -1);
    assert_non_null(strstr(why, "not signed"));
    strbuf_release(&plain);
    strbuf_release(&sb);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    unlink(path);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_key_load(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_dist_auth.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[300], link[300];
    snprintf(path, sizeof path, "%s/key", dir);
    snprintf(link, sizeof link, "%s/link", dir);
    struct dist_key k;
    haul_error err = {0};
    write_file(path, "0123456789abcdef0123456789abcdef\n", 0600);
    assert_int_equal(dist_key_load(path, &k, &err), 0);
    assert_int_equal(k.len, 32); /* the newline is not part of it */
    write_file(path, "0123456789abcdef0123456789abcdef\n", 0400);
    assert_int_equal(dist_key_load(path, &k, &err), 0);
    write_file(path, "0123456789abcdef0123456789abcdef\n", 0644);
    memset(&err, 0, sizeof err);
    assert_int_equal(dist_key_load(path, &k, &err), -HAUL_EUSAGE);
    assert_non_null(strstr(err.msg, "mode 0644"));
    write_file(path, "0123456789abcdef0123456789abcdef\n", 0640);
    memset(&err, 0, sizeof err);
    assert_int_equal(dist_key_load(path, &k, &err), -HAUL_EUSAGE);
    write_file(path, "short\n", 0600);
    memset(&err, 0, sizeof err);
    assert_int_equal(dist_key_load(path, &k, &err), -HAUL_EUSAGE);
    assert_non_null(strstr(err.msg, "bytes of secret"));
    write_file(path, "0123456789abcdef0123456789abcdef\n", 0600);
    assert_int_equal(symlink(path, link), 0);
    memset(&err, 0, sizeof err);
    assert_int_equal(dist_key_load(link, &k, &err), -HAUL_EUSAGE);
    assert_non_null(strstr(err.msg, "symlink"));
    memset(&err, 0, sizeof err);
    assert_int_equal(dist_key_load(dir, &k, &err), -HAUL_EUSAGE);
    assert_non_null(strstr(err.msg, "not a regular file"));
    unlink(link);
    unlink(path);
    rmdir(dir);
}

/* A keyed in-process queue: signed messages pass with their run, an
 * unsigned unit (or one of another key) goes to the dead-letter queue and
 * an unsigned result is dropped, never returned. */
static void test_keyed_queue(void **state)
{
    (void)state;
    struct dist_key k = key_of("0123456789abcdef0123456789abcdef");
    struct dist_key other = key_of("fedcba9876543210fedcba9876543210");
    haul_error err = {0};
    struct dist_queue_opts o = {.prefix = "haul.t", .consume = DIST_CONSUME(DIST_WORK) | DIST_CONSUME(DIST_RESULTS),
                                .key = &k};
    struct dist_queue *q = dist_queue_open(NULL, &o, &err);
    assert_non_null(q);
    struct dist_queue *plain = dist_queue_clone(q, &(struct dist_queue_opts){.prefix = "haul.t"}, &err);
    struct dist_queue *forger = dist_queue_clone(q, &(struct dist_queue_opts){.prefix = "haul.t", .key = &other}, &err);
    assert_non_null(plain);
    assert_non_null(forger);
    assert_int_equal(dist_publish(plain, "HAULplain", 9, &err), 0);
    dist_queue_set_run(forger, "run-1");
    assert_int_equal(dist_publish(forger, "HAULforged", 10, &err), 0);
    assert_int_equal(dist_publish_to(plain, DIST_RESULTS, "HAULres", 7, &err), 0);
    dist_queue_set_run(q, "run-1");
    assert_int_equal(dist_publish(q, "HAULgood", 8, &err), 0);
    struct dist_msg m;
    assert_int_equal(dist_next(q, &m, 100, &err), 1);
    assert_int_equal(m.kind, DIST_WORK);
    assert_int_equal(m.len, 8);
    assert_memory_equal(m.body, "HAULgood", 8);
    assert_string_equal(m.run, "run-1");
    assert_int_equal(dist_ack(q, &m, &err), 0);
    assert_int_equal(dist_next(q, &m, 50, &err), 0);
    struct dist_depth d;
    assert_int_equal(dist_queue_depth(q, DIST_DEAD, &d, &err), 0);
    assert_int_equal(d.ready, 2); /* the unsigned and the forged unit */
    assert_int_equal(dist_queue_depth(q, DIST_RESULTS, &d, &err), 0);
    assert_int_equal(d.ready, 0);
    /* The job description: verified on the way out, refused when forged. */
    struct strbuf sb = STRBUF_INIT;
    struct dist_queue *admin = dist_queue_clone(q, &(struct dist_queue_opts){.prefix = "haul.t", .key = &k}, &err);
    dist_queue_set_run(admin, "run-1");
    assert_int_equal(dist_job_put(admin, "desc", 4, &err), 0);
    char run[DIST_JOB_ID_MAX + 1];
    assert_int_equal(dist_job_get(admin, &sb, run, &err), 1);
    assert_int_equal(sb.len, 4);
    assert_memory_equal(sb.s, "desc", 4);
    assert_string_equal(run, "run-1");
    assert_int_equal(dist_job_put(plain, "evil", 4, &err), 0);
    memset(&err, 0, sizeof err);
    assert_int_equal(dist_job_get(admin, &sb, run, &err), -HAUL_EAUTH);
    assert_non_null(strstr(err.msg, "not signed"));
    memset(&err, 0, sizeof err);
    assert_int_equal(dist_job_get(plain, &sb, NULL, &err), 1); /* keyless readers see the bytes as they are */
    strbuf_release(&sb);
    dist_queue_free(admin);
    dist_queue_free(forger);
    dist_queue_free(plain);
    dist_queue_free(q);
}

/* --allow containment is by components: /data2 is not inside /data. */
static void test_path_inside(void **state)
{
    (void)state;
    assert_true(worker_path_inside("/data", "/data"));
    assert_true(worker_path_inside("/data", "/data/x/y"));
    assert_true(worker_path_inside("/data/", "/data/x"));
    assert_false(worker_path_inside("/data", "/data2"));
    assert_false(worker_path_inside("/data", "/dat"));
    assert_false(worker_path_inside("/data", "/"));
    assert_false(worker_path_inside("/data/x", "/data"));
    assert_true(worker_path_inside("/", "/anything"));
    assert_true(worker_path_inside("/", "/"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_roundtrip),
        cmocka_unit_test(test_seal_tamper),
        cmocka_unit_test(test_seal_wrong_key_and_replay),
        cmocka_unit_test(test_key_load),
        cmocka_unit_test(test_keyed_queue),
        cmocka_unit_test(test_path_inside),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

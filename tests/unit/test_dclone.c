/* Unit tests for job/dclone's job description codec: round trip with
 * awkward bytes in paths and excludes, and refusal of malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "job/dclone.h"

static void test_spec_round_trip(void **state)
{
    (void)state;
    static struct dclone_spec s, d;
    strcpy(s.run, "0123456789abcdef");
    s.pass = DIST_PASS_DELETE;
    strcpy(s.src, "/mnt/old tree/%weird\n\xff");
    strcpy(s.dst, "/mnt/new");
    s.checksum = true;
    s.now = 1700000000;
    s.skip_mtime_newer_secs = 3600;
    s.parallel_threshold = 256ull << 20;
    s.nexcludes = 2;
    strcpy(s.excludes[0], "*.tmp");
    strcpy(s.excludes[1], "/a b/");
    struct strbuf sb = STRBUF_INIT;
    haul_error err = {0};
    assert_int_equal(dclone_spec_encode(&s, &sb, &err), 0);
    assert_int_equal(dclone_spec_decode(sb.s, sb.len, &d, &err), 0);
    assert_string_equal(d.run, s.run);
    assert_int_equal(d.pass, DIST_PASS_DELETE);
    assert_string_equal(d.src, s.src);
    assert_string_equal(d.dst, s.dst);
    assert_true(d.checksum);
    assert_false(d.xattrs);
    assert_int_equal(d.now, 1700000000);
    assert_int_equal(d.skip_mtime_newer_secs, 3600);
    assert_int_equal(d.nexcludes, 2);
    assert_string_equal(d.excludes[1], "/a b/");
    /* Every truncation is refused or decodes to a prefix that still has
     * run, pass, src and dst; none crashes. */
    for (size_t n = 0; n < sb.len; n++) {
        haul_error e = {0};
        int rc = dclone_spec_decode(sb.s, n, &d, &e);
        assert_true(rc == 0 || rc == -HAUL_EPROTO);
    }
    strbuf_release(&sb);
}

static void test_spec_malformed(void **state)
{
    (void)state;
    static struct dclone_spec d;
    const char *bad[] = {
        "",
        "haul-dclone 2\nrun 0123456789abcdef\n",
        "haul-dclone 1\nrun 0123\npass 1\nsrc /a\ndst /b\n",
        "haul-dclone 1\nrun 0123456789abcdef\npass 9\nsrc /a\ndst /b\n",
        "haul-dclone 1\nrun 0123456789abcdef\npass 1\nsrc /a%0\ndst /b\n",
        "haul-dclone 1\nrun 0123456789abcdef\npass 1\nsrc /a%00\ndst /b\n",
        "haul-dclone 1\nrun 0123456789abcdef\npass 1\nsrc /a\n",
        "haul-dclone 1\nrun 0123456789abcdef\npass 1\nsrc /a\ndst /b\nnow 99999999999999999999999\n",
        "haul-dclone 1\nrun 0123456789abcdef\npass 1\nsrc /a\ndst /b\nchecksum 2\n",
        "haul-dclone 1\nrun 0123456789abcdef\npass 1\nsrc /a\ndst /b\nno-newline",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        haul_error err = {0};
        assert_int_equal(dclone_spec_decode(bad[i], strlen(bad[i]), &d, &err), -HAUL_EPROTO);
    }
    const char *good = "haul-dclone 1\nrun 0123456789abcdef\npass 3\nsrc /a\ndst /b\nfuture-option 1\n";
    haul_error err = {0};
    assert_int_equal(dclone_spec_decode(good, strlen(good), &d, &err), 0);
    /* The messages name the field; a list holds at most its capacity. */
    const char *no_dst = "haul-dclone 1\nrun 0123456789abcdef\npass 1\nsrc /a\n";
    assert_int_equal(dclone_spec_decode(no_dst, strlen(no_dst), &d, &err), -HAUL_EPROTO);
    assert_string_equal(err.msg, "job description: 'dst' missing");
    struct strbuf sb = STRBUF_INIT;
    strbuf_adds(&sb, good);
    for (int i = 0; i < DCLONE_EXCLUDES_MAX; i++)
        strbuf_adds(&sb, "exclude *.tmp\n");
    assert_int_equal(dclone_spec_decode(sb.s, sb.len, &d, &err), 0);
    assert_int_equal(d.nexcludes, DCLONE_EXCLUDES_MAX);
    strbuf_adds(&sb, "exclude one-too-many\n");
    err = (haul_error){0};
    assert_int_equal(dclone_spec_decode(sb.s, sb.len, &d, &err), -HAUL_EPROTO);
    assert_string_equal(err.msg, "job description: bad value for 'exclude'");
    strbuf_release(&sb);
}

/* Range tickets: round trip; a count of 0 or ranges past 2^32 refused; the
 * temporary name and the FINISH id are fixed by the ticket alone. */
static void test_ticket(void **state)
{
    (void)state;
    struct dclone_ticket t = {.parent = 0x1122334455667788ULL, .first = 3, .count = 50, .size = 200000000,
                              .ino = 4242, .mtime_ns = 1700000000123456789LL}, d;
    struct strbuf sb = STRBUF_INIT;
    dclone_ticket_put(&sb, &t);
    struct wire_reader r = {(const unsigned char *)sb.s, sb.len, NULL};
    assert_true(dclone_ticket_get(&r, &d));
    assert_int_equal(r.left, 0);
    assert_memory_equal(&t, &d, sizeof t);
    char a[64], b[64];
    dclone_ticket_tmp(&t, a, sizeof a);
    assert_string_equal(a, ".haul-range.1122334455667788.3");
    dclone_ticket_tmp(&d, b, sizeof b);
    assert_string_equal(a, b);
    assert_true(dclone_ticket_finish_id(&t) == dclone_ticket_finish_id(&d));
    for (uint32_t i = 0; i < 60; i++) /* never one of the parent's child ids */
        assert_true(dclone_ticket_finish_id(&t) != dist_unit_child_id(t.parent, i));
    struct stat st;
    dclone_ticket_stat(&t, &st);
    assert_int_equal(st.st_size, 200000000);
    assert_int_equal(st.st_mtim.tv_nsec, 123456789);
    t.count = 0;
    strbuf_reset(&sb);
    dclone_ticket_put(&sb, &t);
    r = (struct wire_reader){(const unsigned char *)sb.s, sb.len, NULL};
    assert_false(dclone_ticket_get(&r, &d));
    t.count = DCLONE_RANGES_MAX + 1; /* more ranges than any file needs */
    strbuf_reset(&sb);
    dclone_ticket_put(&sb, &t);
    r = (struct wire_reader){(const unsigned char *)sb.s, sb.len, NULL};
    assert_false(dclone_ticket_get(&r, &d));
    t.count = 2;
    t.first = UINT32_MAX;
    strbuf_reset(&sb);
    dclone_ticket_put(&sb, &t);
    r = (struct wire_reader){(const unsigned char *)sb.s, sb.len - 1, NULL};
    assert_false(dclone_ticket_get(&r, &d)); /* truncated */
    r = (struct wire_reader){(const unsigned char *)sb.s, sb.len, NULL};
    assert_false(dclone_ticket_get(&r, &d)); /* past 2^32 */
    strbuf_release(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ticket),
        cmocka_unit_test(test_spec_round_trip),
        cmocka_unit_test(test_spec_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

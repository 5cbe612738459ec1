/* Unit tests for util/hash (published digest vectors) and util/uri (SigV4 percent-encoding). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/fdio.h"
#include "util/hash.h"
#include "util/strbuf.h"
#include "util/uri.h"

/* Hex of a digest, in a buffer sized exactly as hash.h asks (ASan checks it). */
static char *hex_of(const uint8_t *in, size_t n)
{
    char *out = malloc(2 * n + 1);
    assert_non_null(out);
    hash_hex(in, n, out);
    return out;
}

static void assert_sha256(const void *data, size_t n, const char *want)
{
    uint8_t d[SHA256_LEN];
    hash_sha256(data, n, d);
    char *hex = hex_of(d, sizeof d);
    assert_string_equal(hex, want);
    free(hex);
}

static void assert_md5(const char *data, const char *want)
{
    uint8_t d[MD5_LEN];
    hash_md5(data, strlen(data), d);
    char *hex = hex_of(d, sizeof d);
    assert_string_equal(hex, want);
    free(hex);
}

static void assert_hmac(const void *key, size_t keylen, const char *data, const char *want)
{
    uint8_t d[SHA256_LEN];
    hash_hmac_sha256(key, keylen, data, strlen(data), d);
    char *hex = hex_of(d, sizeof d);
    assert_string_equal(hex, want);
    free(hex);
}

/* FIPS 180-2 appendix B.1 and B.2, and the empty string. */
static void test_sha256_vectors(void **state)
{
    (void)state;
    assert_sha256("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *b2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_sha256(b2, strlen(b2),
                  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    assert_sha256("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

/* FIPS 180-2 appendix B.3: one million 'a', one-shot and streamed. */
static void test_sha256_million_a(void **state)
{
    (void)state;
    static const char want[] = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    char *a = malloc(1000000);
    assert_non_null(a);
    memset(a, 'a', 1000000);
    assert_sha256(a, 1000000, want);

    struct hash_ctx *ctx = hash_sha256_new();
    assert_non_null(ctx);
    for (size_t off = 0; off < 1000000; off += 999)
        hash_update(ctx, a + off, off + 999 <= 1000000 ? 999 : 1000000 - off);
    uint8_t d[SHA256_LEN];
    hash_final(ctx, d);
    char *hex = hex_of(d, sizeof d);
    assert_string_equal(hex, want);
    free(hex);
    free(a);
}

/* RFC 1321 appendix A.5 test suite. */
static void test_md5_vectors(void **state)
{
    (void)state;
    assert_md5("", "d41d8cd98f00b204e9800998ecf8427e");
    assert_md5("a", "0cc175b9c0f1b6a831c399e269772661");
    assert_md5("abc", "900150983cd24fb0d6963f7d28e17f72");
    assert_md5("message digest", "f96b697d7cb7938d525a2f31aaf161d0");
    assert_md5("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b");
    assert_md5("1234567890123456789012345678901234567890"
               "1234567890123456789012345678901234567890",
               "57edf4a22be3c955ac49da2e2107b67a");
}

/* RFC 4231 test cases 1, 2 and 6 (key longer than the block), HMAC-SHA-256. */
static void test_hmac_sha256_vectors(void **state)
{
    (void)state;
    uint8_t key1[20], key6[131];
    memset(key1, 0x0b, sizeof key1);
    memset(key6, 0xaa, sizeof key6);

    assert_hmac(key1, sizeof key1, "Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    assert_hmac("Jefe", 4, "what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    assert_hmac(key6, sizeof key6, "Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    /* Empty key and message (the widely quoted HMAC-SHA256("", "")). */
    assert_hmac("", 0, "", "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

static void test_hex(void **state)
{
    (void)state;
    const uint8_t in[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char *hex = hex_of(in, sizeof in);
    assert_string_equal(hex, "00017f80abff");
    free(hex);
    hex = hex_of(in, 0);
    assert_string_equal(hex, "");
    free(hex);
}

static void assert_base64(const void *in, size_t n, const char *want)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1); /* exactly what hash.h asks for */
    assert_non_null(out);
    hash_base64(in, n, out);
    assert_string_equal(out, want);
    free(out);
}

/* RFC 4648 section 10 (0 to 6 bytes), and bytes that use '+' and '/'. */
static void test_base64(void **state)
{
    (void)state;
    assert_base64("", 0, "");
    assert_base64("f", 1, "Zg==");
    assert_base64("fo", 2, "Zm8=");
    assert_base64("foo", 3, "Zm9v");
    assert_base64("foob", 4, "Zm9vYg==");
    assert_base64("fooba", 5, "Zm9vYmE=");
    assert_base64("foobar", 6, "Zm9vYmFy");
    const uint8_t bin[] = {0xfb, 0xff, 0xfe, 0xfd, 0xfc};
    assert_base64(bin, sizeof bin, "+//+/fw=");
    /* A Content-MD5 header value: base64 of the MD5 of "" (RFC 1864 form). */
    uint8_t d[MD5_LEN];
    hash_md5("", 0, d);
    assert_base64(d, sizeof d, "1B2M2Y8AsgTpgAmY7PhCfg==");
}

static void stream(struct hash_ctx *ctx, const uint8_t *data, size_t n, size_t chunk,
                   uint8_t *out)
{
    assert_non_null(ctx);
    hash_update(ctx, data, 0);
    for (size_t off = 0; off < n; off += chunk)
        hash_update(ctx, data + off, off + chunk <= n ? chunk : n - off);
    hash_final(ctx, out);
}

/* Any split of the input gives the one-shot digest. */
static void test_streaming_equals_one_shot(void **state)
{
    (void)state;
    static const size_t chunks[] = {1, 7, 55, 56, 63, 64, 65, 1000, 4096, 10007};
    uint8_t data[10007];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 131 + (i >> 8));

    uint8_t sha_one[SHA256_LEN], md5_one[MD5_LEN];
    hash_sha256(data, sizeof data, sha_one);
    hash_md5(data, sizeof data, md5_one);
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        uint8_t sha[SHA256_LEN], md5[MD5_LEN];
        stream(hash_sha256_new(), data, sizeof data, chunks[i], sha);
        stream(hash_md5_new(), data, sizeof data, chunks[i], md5);
        assert_memory_equal(sha, sha_one, sizeof sha);
        assert_memory_equal(md5, md5_one, sizeof md5);
    }
    uint8_t empty[SHA256_LEN];
    stream(hash_sha256_new(), data, 0, 1, empty);
    char *hex = hex_of(empty, sizeof empty);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    free(hex);
}

/* _free releases a context without a digest; NULL is a no-op. */
static void test_hash_free(void **state)
{
    (void)state;
    hash_free(NULL);
    struct hash_ctx *ctx = hash_md5_new();
    assert_non_null(ctx);
    hash_update(ctx, "abc", 3);
    hash_free(ctx);
    hash_free(hash_sha256_new());
}

/* ---- util/uri */

static const char unreserved[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~";

static char *encoded(const char *in, size_t n, bool keep_slash)
{
    struct strbuf sb = STRBUF_INIT;
    assert_int_equal(uri_encode(&sb, in, n, keep_slash), 0);
    return strbuf_detach(&sb);
}

static void assert_encodes(const char *in, bool keep_slash, const char *want)
{
    char *s = encoded(in, strlen(in), keep_slash);
    assert_string_equal(s, want);
    free(s);
}

static void test_uri_encode_examples(void **state)
{
    (void)state;
    /* space, UTF-8 (U+00FC), '+', '%', '?', '#' encoded; '~' kept */
    assert_encodes("a b/\xc3\xbc+%?#~", false, "a%20b%2F%C3%BC%2B%25%3F%23~");
    assert_encodes("a b/\xc3\xbc+%?#~", true, "a%20b/%C3%BC%2B%25%3F%23~");
    assert_encodes(unreserved, false, unreserved);
    assert_encodes("\xe1\x88\xb4", false, "%E1%88%B4"); /* U+1234, as in the SigV4 suite */
    assert_encodes("/test$file.text", true, "/test%24file.text");
    assert_encodes("//a//", true, "//a//");
    assert_encodes("//a//", false, "%2F%2Fa%2F%2F");
    assert_encodes("", false, "");

    /* Appends to what is there. */
    struct strbuf sb = STRBUF_INIT;
    strbuf_adds(&sb, "prefix=");
    assert_int_equal(uri_encode(&sb, "a/b c", 5, false), 0);
    assert_string_equal(strbuf_str(&sb), "prefix=a%2Fb%20c");
    strbuf_release(&sb);
}

/* Each of the 256 byte values alone: kept if unreserved (or '/' with
 * keep_slash), otherwise %XX in upper-case hex. */
static void test_uri_encode_every_byte(void **state)
{
    (void)state;
    for (int keep = 0; keep <= 1; keep++) {
        for (int b = 0; b < 256; b++) {
            char in = (char)b, want[4];
            bool kept = (b != 0 && strchr(unreserved, b)) || (keep && b == '/');
            if (kept)
                snprintf(want, sizeof want, "%c", b);
            else
                snprintf(want, sizeof want, "%%%02X", b);
            char *s = encoded(&in, 1, keep);
            assert_string_equal(s, want);
            free(s);
        }
    }
}

/* All 256 bytes (NUL included) encode and decode back to themselves. */
static void test_uri_round_trip_all_bytes(void **state)
{
    (void)state;
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    for (int keep = 0; keep <= 1; keep++) {
        struct strbuf enc = STRBUF_INIT;
        assert_int_equal(uri_encode(&enc, all, sizeof all, keep), 0);
        /* 66 unreserved bytes kept, the other 190 as three characters each */
        assert_int_equal(enc.len, keep ? 67 + 189 * 3 : 66 + 190 * 3);
        assert_int_equal(strlen(enc.s), enc.len);
        for (int plus = 0; plus <= 1; plus++) {
            struct strbuf dec = STRBUF_INIT;
            assert_int_equal(uri_decode(&dec, enc.s, enc.len, plus), 0);
            assert_int_equal(dec.len, sizeof all);
            assert_memory_equal(dec.s, all, sizeof all);
            strbuf_release(&dec);
        }
        strbuf_release(&enc);
    }
}

/* %XX decodes in either case of hex, for every byte value. */
static void test_uri_decode_every_escape(void **state)
{
    (void)state;
    for (int b = 0; b < 256; b++) {
        char upper[4], lower[4];
        snprintf(upper, sizeof upper, "%%%02X", b);
        snprintf(lower, sizeof lower, "%%%02x", b);
        for (int i = 0; i < 2; i++) {
            struct strbuf sb = STRBUF_INIT;
            assert_int_equal(uri_decode(&sb, i ? lower : upper, 3, false), 0);
            assert_int_equal(sb.len, 1);
            assert_int_equal((unsigned char)sb.s[0], b);
            strbuf_release(&sb);
        }
    }
}

static void test_uri_decode_plus_and_nul(void **state)
{
    (void)state;
    struct strbuf sb = STRBUF_INIT;
    assert_int_equal(uri_decode(&sb, "a+b%20c%2B", 10, true), 0);
    assert_string_equal(strbuf_str(&sb), "a b c+");
    strbuf_reset(&sb);
    assert_int_equal(uri_decode(&sb, "a+b%20c%2B", 10, false), 0);
    assert_string_equal(strbuf_str(&sb), "a+b c+");
    strbuf_reset(&sb);
    assert_int_equal(uri_decode(&sb, "a%00b", 5, false), 0);
    assert_int_equal(sb.len, 3);
    assert_memory_equal(sb.s, "a\0b", 4);
    strbuf_reset(&sb);
    /* Only n bytes are read: the escape cut at n is malformed. */
    assert_int_equal(uri_decode(&sb, "%41%42", 2, false), -1);
    assert_int_equal(uri_decode(&sb, "%41%42", 3, false), 0);
    assert_string_equal(strbuf_str(&sb), "A");
    strbuf_release(&sb);
}

/* A malformed escape fails and leaves out as it was. */
static void test_uri_decode_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "%",   "%4",  "%G0", "%0G", "abc%",    "abc%2",
        "%%41", "% 41", "%-1", "%+1", "ok%zzok", "%\xc3\xbc",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct strbuf sb = STRBUF_INIT;
        strbuf_adds(&sb, "keep");
        assert_int_equal(uri_decode(&sb, bad[i], strlen(bad[i]), true), -1);
        assert_int_equal(sb.len, 4);
        assert_string_equal(strbuf_str(&sb), "keep");
        strbuf_release(&sb);
    }
}

/* util/fdio: whole reads through a pipe's short counts, the end of a file
 * (a short count, not an error), positioned writes in slices. */
static void test_fdio(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    /* Two writes: the first read(2) returns only the first. */
    assert_int_equal(fd_write_all(p[1], "hello ", 6, 0), 0);
    assert_int_equal(fd_write_all(p[1], "world", 5, 2), 0); /* in 2-byte slices */
    close(p[1]);
    char buf[32] = "";
    assert_int_equal(fd_read_full(p[0], buf, sizeof buf), 11);
    assert_string_equal(buf, "hello world");
    assert_int_equal(fd_read_full(p[0], buf, sizeof buf), 0);
    close(p[0]);
    assert_int_equal(fd_write_all(p[1], "x", 1, 0), -1); /* closed: EBADF */

    char path[] = "/tmp/haul-test-fdio-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(fd_pwrite_all(fd, "abcdef", 6, 10), 0); /* a hole of 10 before */
    memset(buf, 'z', sizeof buf);
    assert_int_equal(fd_pread_full(fd, buf, sizeof buf, 8), 8); /* to the end: short */
    assert_memory_equal(buf, "\0\0abcdef", 8);
    assert_int_equal(fd_pread_full(fd, buf, 4, 100), 0);
    close(fd);
    assert_int_equal(fd_pread_full(fd, buf, 4, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_sha256_million_a),
        cmocka_unit_test(test_md5_vectors),
        cmocka_unit_test(test_hmac_sha256_vectors),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_streaming_equals_one_shot),
        cmocka_unit_test(test_hash_free),
        cmocka_unit_test(test_uri_encode_examples),
        cmocka_unit_test(test_uri_encode_every_byte),
        cmocka_unit_test(test_uri_round_trip_all_bytes),
        cmocka_unit_test(test_uri_decode_every_escape),
        cmocka_unit_test(test_uri_decode_plus_and_nul),
        cmocka_unit_test(test_uri_decode_malformed),
        cmocka_unit_test(test_fdio),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

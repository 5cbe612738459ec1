/* Unit tests for xfer/digest: S3's ETags and checksums recomputed from the
 * bytes (CRC check values from the CRC catalogue; the rest computed with
 * Python's hashlib/zlib), and which of them a HEAD answer allows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "xfer/digest.h"
#include "xfer/xfer.h"

/* Feeds data in chunks of chunk bytes; returns xfer_digest_final's result. */
static int run(const struct xfer_digest_spec *spec, const void *data, size_t n, size_t chunk, char *out)
{
    struct xfer_digest *d = xfer_digest_new(spec);
    assert_non_null(d);
    for (size_t off = 0; off < n; off += chunk)
        xfer_digest_update(d, (const char *)data + off, n - off < chunk ? n - off : chunk);
    return xfer_digest_final(d, out, 128);
}

static void whole(enum xfer_digest_algo algo, bool base64, const char *data, const char *want)
{
    struct xfer_digest_spec spec = {.algo = algo, .base64 = base64};
    snprintf(spec.expected, sizeof spec.expected, "%s", want);
    char out[128];
    int same = run(&spec, data, strlen(data), 2, out);
    assert_string_equal(out, want);
    assert_int_equal(same, 1);
}

static void test_whole(void **state)
{
    (void)state;
    whole(XFER_DIGEST_CRC32, true, "123456789", "y/Q5Jg==");
    whole(XFER_DIGEST_CRC32C, true, "123456789", "4waSgw==");
    whole(XFER_DIGEST_CRC64NVME, true, "123456789", "rosUhgp5mIg=");
    whole(XFER_DIGEST_SHA1, true, "123456789", "98O8HYCOBHMq32eZZczDTKeuNEE=");
    whole(XFER_DIGEST_SHA256, true, "123456789", "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU=");
    whole(XFER_DIGEST_MD5, false, "hello", "5d41402abc4b2a76b9719d911017c592");
}

/* 12 MiB of i % 251 in 5 MiB parts: 3 parts. */
static void test_composite(void **state)
{
    (void)state;
    size_t n = 12 * XFER_MIB;
    unsigned char *data = malloc(n);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i % 251);
    char out[128];
    struct xfer_digest_spec md5 = {.algo = XFER_DIGEST_MD5, .part_size = 5 * XFER_MIB,
                                   .expected = "7DF28755D1A6CC911533A3B50170CF7D-3"};
    assert_int_equal(run(&md5, data, n, 3 * XFER_MIB + 7, out), 1); /* chunks across parts */
    assert_string_equal(out, "7df28755d1a6cc911533a3b50170cf7d-3");
    struct xfer_digest_spec sha = {.algo = XFER_DIGEST_SHA256, .base64 = true, .part_size = 5 * XFER_MIB,
                                   .expected = "8F+xQ2RGGod1mj/EcbAezrbFoLxLw+GlUgr6Asy1H8g=-3"};
    assert_int_equal(run(&sha, data, n, XFER_MIB, out), 1);
    struct xfer_digest_spec crc = {.algo = XFER_DIGEST_CRC32, .base64 = true, .part_size = 5 * XFER_MIB,
                                   .expected = "KcTgUw==-3"};
    assert_int_equal(run(&crc, data, n, n, out), 1);
    data[6 * XFER_MIB] ^= 1;
    assert_int_equal(run(&md5, data, n, XFER_MIB, out), 0);
    free(data);
}

static void test_from_etag(void **state)
{
    (void)state;
    struct s3_meta meta[1] = {{"haul-part-size", "5242880"}};
    struct s3_object_info info = {.size = 12 * XFER_MIB, .etag = "7df28755d1a6cc911533a3b50170cf7d-3"};
    struct xfer_digest_spec spec;
    assert_string_equal(xfer_digest_from_etag(&info, &spec), "multipart ETag without a recorded part size");
    info.meta = meta;
    info.n_meta = 1;
    assert_null(xfer_digest_from_etag(&info, &spec));
    assert_int_equal(spec.part_size, 5 * XFER_MIB);
    snprintf(info.etag, sizeof info.etag, "7df28755d1a6cc911533a3b50170cf7d-4"); /* 4 parts of 5 MiB cannot be 12 MiB */
    assert_non_null(xfer_digest_from_etag(&info, &spec));
    snprintf(info.etag, sizeof info.etag, "62109206880d38a4010a98e11243924a-1"); /* one part: any size */
    info.n_meta = 0;
    info.size = 5;
    assert_null(xfer_digest_from_etag(&info, &spec));
    char out[128];
    assert_int_equal(run(&spec, "hello", 5, 5, out), 1);
    snprintf(info.etag, sizeof info.etag, "5d41402abc4b2a76b9719d911017c592");
    assert_null(xfer_digest_from_etag(&info, &spec));
    assert_int_equal(spec.part_size, 0);
    info.etag_not_md5 = true;
    assert_non_null(xfer_digest_from_etag(&info, &spec));
    info.etag_not_md5 = false;
    snprintf(info.etag, sizeof info.etag, "not-an-md5");
    assert_non_null(xfer_digest_from_etag(&info, &spec));
}

static void test_from_checksum(void **state)
{
    (void)state;
    struct s3_object_info info = {.size = 9};
    struct s3_checksum sum = {"", "", ""};
    struct xfer_digest_spec spec;
    assert_string_equal(xfer_digest_from_checksum(&sum, &info, &spec), "the server keeps no checksum");
    sum = (struct s3_checksum){"crc64nvme", "rosUhgp5mIg=", "FULL_OBJECT"};
    assert_null(xfer_digest_from_checksum(&sum, &info, &spec));
    char out[128];
    assert_int_equal(run(&spec, "123456789", 9, 4, out), 1);
    assert_int_equal(run(&spec, "123456780", 9, 4, out), 0);
    sum = (struct s3_checksum){"sha256", "8F+xQ2RGGod1mj/EcbAezrbFoLxLw+GlUgr6Asy1H8g=-3", "COMPOSITE"};
    info.size = 12 * XFER_MIB;
    assert_string_equal(xfer_digest_from_checksum(&sum, &info, &spec), "composite checksum without a recorded part size");
    sum = (struct s3_checksum){"md4", "x", ""};
    assert_non_null(xfer_digest_from_checksum(&sum, &info, &spec));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole),
        cmocka_unit_test(test_composite),
        cmocka_unit_test(test_from_etag),
        cmocka_unit_test(test_from_checksum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

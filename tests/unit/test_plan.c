/* Unit tests for xfer/plan: part sizes always inside S3's multipart limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "xfer/xfer.h"

#define MIB XFER_MIB
#define GIB (1024 * MIB)
#define TIB (1024 * GIB)

static uint64_t plan(uint64_t size, uint64_t wanted)
{
    uint64_t p = 0;
    haul_error err = {0};
    assert_int_equal(xfer_part_size_plan(size, wanted, &p, &err), 0);
    return p;
}

/* Whatever the size, the plan keeps parts within 5 MiB..5 GiB and the
 * object within 10,000 parts. */
static void assert_valid(uint64_t size, uint64_t p)
{
    assert_true(p >= XFER_PART_MIN);
    assert_true(p <= XFER_PART_MAX);
    assert_true((size + p - 1) / p <= XFER_PARTS_MAX);
}

static void test_defaults_and_small_sizes(void **state)
{
    (void)state;
    assert_int_equal(plan(0, 0), 8 * MIB);
    assert_int_equal(plan(1, 0), 8 * MIB);
    assert_int_equal(plan(5 * MIB, 0), 8 * MIB);
    assert_int_equal(plan(5 * MIB + 1, 0), 8 * MIB);
}

static void test_wanted_below_minimum_is_raised(void **state)
{
    (void)state;
    /* The production lesson: files of 32-80 MB with small configured parts. */
    for (uint64_t size = 32 * 1000 * 1000; size <= 80 * 1000 * 1000; size += 7 * 1000 * 1000) {
        uint64_t p = plan(size, 1 * MIB);
        assert_int_equal(p, 5 * MIB);
        assert_valid(size, p);
    }
    assert_int_equal(plan(100 * MIB, 6 * GIB), 5 * GIB);
}

static void test_exactly_ten_thousand_parts(void **state)
{
    (void)state;
    assert_int_equal(plan(10000 * 8 * MIB, 8 * MIB), 8 * MIB);
    uint64_t p = plan(10000 * 8 * MIB + 1, 8 * MIB);
    assert_int_equal(p, 9 * MIB);
    assert_valid(10000 * 8 * MIB + 1, p);
}

static void test_large_objects(void **state)
{
    (void)state;
    uint64_t sizes[] = {1 * TIB, 5 * TIB - 1, 5 * TIB, 123456789012345ull / 30};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        assert_valid(sizes[i], plan(sizes[i], 8 * MIB));
}

static void test_over_five_tib_refused(void **state)
{
    (void)state;
    uint64_t p = 0;
    haul_error err = {0};
    /* 48.8 TiB would fit 10,000 parts of 5 GiB, but S3 caps objects at 5 TiB. */
    assert_int_equal(xfer_part_size_plan(48800ull * GIB, 0, &p, &err), -HAUL_EUSAGE);
    assert_int_equal(err.code, HAUL_EUSAGE);
    assert_non_null(strstr(err.msg, "5 TiB"));
    haul_error err2 = {0};
    assert_int_equal(xfer_part_size_plan(5 * TIB + 1, 0, &p, &err2), -HAUL_EUSAGE);
}

static void test_unknown_length_grows_to_five_tib(void **state)
{
    (void)state;
    uint64_t base = plan(XFER_SIZE_UNKNOWN, 5 * MIB);
    assert_true(base >= 6 * MIB);
    uint64_t total = 0;
    for (int n = 1; n <= XFER_PARTS_MAX; n++) {
        uint64_t p = xfer_stream_part_size(base, n);
        assert_true(p >= XFER_PART_MIN && p <= XFER_PART_MAX);
        if (n > 1)
            assert_true(p >= xfer_stream_part_size(base, n - 1)); /* never shrinks */
        total += p;
    }
    assert_true(total >= 5 * TIB);
    assert_int_equal(xfer_stream_part_size(base, 1), base);
    assert_int_equal(xfer_stream_part_size(base, 1000), base);
    assert_int_equal(xfer_stream_part_size(base, 1001), 2 * base);
    assert_int_equal(xfer_stream_part_size(8 * MIB, 10000), 4 * GIB);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_small_sizes),
        cmocka_unit_test(test_wanted_below_minimum_is_raised),
        cmocka_unit_test(test_exactly_ten_thousand_parts),
        cmocka_unit_test(test_large_objects),
        cmocka_unit_test(test_over_five_tib_refused),
        cmocka_unit_test(test_unknown_length_grows_to_five_tib),
    };
    return cmocka_run_group_tests_name("xfer_plan", tests, NULL, NULL);
}

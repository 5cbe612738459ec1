/* xfer/plan: part sizes that always satisfy S3's multipart limits (a lesson
 * from a production tool whose 32-80 MB files failed with parts under 5 MiB). */
#include "xfer/xfer.h"

#include "util/err.h"

static uint64_t round_up(uint64_t v, uint64_t unit) { return (v + unit - 1) / unit * unit; }

int xfer_part_size_plan(uint64_t size, uint64_t wanted, uint64_t *part_size, haul_error *err)
{
    uint64_t p = wanted ? wanted : 8 * XFER_MIB;
    if (p < XFER_PART_MIN)
        p = XFER_PART_MIN;
    if (p > XFER_PART_MAX)
        p = XFER_PART_MAX;
    if (size == XFER_SIZE_UNKNOWN && p < 6 * XFER_MIB)
        p = 6 * XFER_MIB; /* see xfer_stream_part_size */
    if (size != XFER_SIZE_UNKNOWN) {
        if (size > XFER_OBJECT_MAX)
            return err_set(err, HAUL_EUSAGE,
                           "object of %llu bytes is over S3's limit of 5 TiB per object",
                           (unsigned long long)size);
        uint64_t needed = round_up((size + XFER_PARTS_MAX - 1) / XFER_PARTS_MAX, XFER_MIB);
        if (p < needed)
            p = needed;
    }
    *part_size = p;
    return 0;
}

uint64_t xfer_stream_part_size(uint64_t base, int part_number)
{
    /* 1,000 parts each of base, 2 base, ... 512 base hold 1,023,000 base:
     * at least 6 MiB makes that more than 5 TiB. */
    if (base < 6 * XFER_MIB)
        base = 6 * XFER_MIB;
    int doublings = part_number > 0 ? (part_number - 1) / 1000 : 0;
    uint64_t p = base;
    for (int i = 0; i < doublings && p < XFER_PART_MAX; i++)
        p *= 2;
    return p > XFER_PART_MAX ? XFER_PART_MAX : p;
}

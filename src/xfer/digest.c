/* xfer/digest: S3's ETag and checksum values recomputed from the bytes (see
 * digest.h).  The CRCs are the reflected table-driven kind, one table per
 * polynomial built once. */
#include "xfer/digest.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/hash.h"
#include "xfer/xfer.h"

/* ---- one hash of any of the algorithms -------------------------------------- */

#define DIGEST_MAX SHA256_LEN

static uint64_t crc_table[3][256]; /* CRC32, CRC32C, CRC64NVME (reflected) */
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_tables_build(void)
{
    static const uint64_t poly[3] = {0xEDB88320u, 0x82F63B78u, 0x9A6C9329AC4BC9B5ull};
    for (int t = 0; t < 3; t++)
        for (uint64_t i = 0; i < 256; i++) {
            uint64_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? (c >> 1) ^ poly[t] : c >> 1;
            crc_table[t][i] = c;
        }
}

struct hasher {
    enum xfer_digest_algo algo;
    struct hash_ctx *h; /* MD5, SHA-1, SHA-256 */
    uint64_t crc;       /* the CRCs, inverted */
};

static bool is_crc(enum xfer_digest_algo a) { return a >= XFER_DIGEST_CRC32; }

static size_t digest_len(enum xfer_digest_algo a)
{
    switch (a) {
    case XFER_DIGEST_MD5: return MD5_LEN;
    case XFER_DIGEST_SHA1: return SHA1_LEN;
    case XFER_DIGEST_SHA256: return SHA256_LEN;
    case XFER_DIGEST_CRC64NVME: return 8;
    default: return 4;
    }
}

static bool hasher_start(struct hasher *x, enum xfer_digest_algo a)
{
    x->algo = a;
    x->crc = a == XFER_DIGEST_CRC64NVME ? UINT64_MAX : UINT32_MAX; /* the register's width */
    x->h = a == XFER_DIGEST_MD5 ? hash_md5_new() : a == XFER_DIGEST_SHA1 ? hash_sha1_new()
         : a == XFER_DIGEST_SHA256 ? hash_sha256_new() : NULL;
    return x->h || is_crc(a);
}

static void hasher_update(struct hasher *x, const void *data, size_t n)
{
    if (!is_crc(x->algo)) {
        hash_update(x->h, data, n);
        return;
    }
    const uint64_t *t = crc_table[x->algo - XFER_DIGEST_CRC32];
    const unsigned char *p = data;
    uint64_t c = x->crc;
    for (size_t i = 0; i < n; i++)
        c = t[(c ^ p[i]) & 0xff] ^ (c >> 8);
    x->crc = c;
}

/* The digest (big-endian for the CRCs, as S3 encodes them); its length. */
static size_t hasher_final(struct hasher *x, uint8_t out[DIGEST_MAX])
{
    size_t len = digest_len(x->algo);
    if (!is_crc(x->algo)) {
        hash_final(x->h, out);
        x->h = NULL;
        return len;
    }
    uint64_t c = ~x->crc;
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)(c >> (8 * (len - 1 - i)));
    return len;
}

/* ---- the server's value ------------------------------------------------------ */

struct xfer_digest {
    struct xfer_digest_spec spec;
    struct hasher whole; /* the whole stream, or the digest of the part digests */
    struct hasher part;  /* composite: the current part */
    bool in_part_open;
    uint64_t in_part;
    int parts;
    bool failed;         /* a part's hash state could not be allocated */
};

struct xfer_digest *xfer_digest_new(const struct xfer_digest_spec *spec)
{
    pthread_once(&crc_once, crc_tables_build);
    struct xfer_digest *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->spec = *spec;
    if (!hasher_start(&d->whole, spec->algo)) {
        free(d);
        return NULL;
    }
    return d;
}

static void part_close(struct xfer_digest *d)
{
    uint8_t md[DIGEST_MAX];
    size_t len = hasher_final(&d->part, md);
    hasher_update(&d->whole, md, len);
    d->in_part_open = false;
    d->in_part = 0;
    d->parts++;
}

void xfer_digest_update(struct xfer_digest *d, const void *data, size_t n)
{
    const char *p = data;
    if (!d->spec.part_size) {
        hasher_update(&d->whole, p, n);
        return;
    }
    while (n && !d->failed) {
        if (!d->in_part_open && !(d->in_part_open = hasher_start(&d->part, d->spec.algo))) {
            d->failed = true;
            return;
        }
        uint64_t room = d->spec.part_size - d->in_part;
        size_t take = room < n ? (size_t)room : n;
        hasher_update(&d->part, p, take);
        d->in_part += take;
        p += take;
        n -= take;
        if (d->in_part == d->spec.part_size)
            part_close(d);
    }
}

int xfer_digest_final(struct xfer_digest *d, char *out, size_t cap)
{
    if (d->spec.part_size && !d->in_part_open && !d->parts && !d->failed)
        d->failed = !(d->in_part_open = hasher_start(&d->part, d->spec.algo)); /* one empty part */
    if (d->spec.part_size && d->in_part_open && !d->failed)
        part_close(d);
    if (d->failed) {
        xfer_digest_free(d);
        return -HAUL_ENOMEM;
    }
    uint8_t md[DIGEST_MAX];
    size_t len = hasher_final(&d->whole, md);
    char text[2 * DIGEST_MAX + 1]; /* hex; base64 is shorter */
    if (d->spec.base64)
        hash_base64(md, len, text);
    else
        hash_hex(md, len, text);
    if (d->spec.part_size)
        snprintf(out, cap, "%s-%d", text, d->parts);
    else
        snprintf(out, cap, "%s", text);
    int same = d->spec.base64 ? strcmp(out, d->spec.expected) == 0 : strcasecmp(out, d->spec.expected) == 0;
    free(d);
    return same;
}

void xfer_digest_free(struct xfer_digest *d)
{
    if (!d)
        return;
    hash_free(d->whole.h);
    if (d->in_part_open)
        hash_free(d->part.h);
    free(d);
}

/* ---- which digest the server's answer allows -------------------------------- */

/* The N of "value-N" (1..10000), 0 without a suffix, -1 for a bad one. */
static int parts_suffix(const char *value)
{
    const char *dash = strrchr(value, '-');
    if (!dash)
        return 0;
    char *end;
    long n = strtol(dash + 1, &end, 10);
    return dash[1] && !*end && n >= 1 && n <= XFER_PARTS_MAX ? (int)n : -1;
}

/* The part size that makes size bytes n parts: any for one part, else the
 * recorded one when it fits (other tools' part sizes cannot be told apart:
 * 20 MB in 3 parts fits 7, 8 or 9 MiB).  0: none. */
static uint64_t part_size_for(const struct s3_object_info *info, int n)
{
    if (n == 1)
        return info->size ? info->size : 1;
    const char *v = s3_object_info_meta(info, XFER_META_PART_SIZE);
    uint64_t p = v ? strtoull(v, NULL, 10) : 0;
    if (p < XFER_PART_MIN || p > XFER_PART_MAX)
        return 0;
    return (uint64_t)(n - 1) * p < info->size && info->size <= (uint64_t)n * p ? p : 0;
}

static bool hex32(const char *s)
{
    for (int i = 0; i < 32; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

const char *xfer_digest_from_etag(const struct s3_object_info *info, struct xfer_digest_spec *spec)
{
    memset(spec, 0, sizeof *spec);
    const char *etag = info->etag;
    if (info->etag_not_md5)
        return "SSE-KMS or SSE-C object: its ETag is not an MD5 of the bytes";
    int n = parts_suffix(etag);
    if (strlen(etag) < 32 || !hex32(etag) || (n == 0 && etag[32]) || (n != 0 && etag[32] != '-') || n < 0)
        return "the ETag is not an MD5";
    spec->algo = XFER_DIGEST_MD5;
    snprintf(spec->expected, sizeof spec->expected, "%s", etag);
    if (n == 0)
        return NULL;
    if (!(spec->part_size = part_size_for(info, n)))
        return s3_object_info_meta(info, XFER_META_PART_SIZE)
                   ? "multipart ETag whose part count does not fit the recorded part size"
                   : "multipart ETag without a recorded part size";
    return NULL;
}

const char *xfer_digest_from_checksum(const struct s3_checksum *sum, const struct s3_object_info *info,
                                      struct xfer_digest_spec *spec)
{
    static const struct {
        const char *name;
        enum xfer_digest_algo algo;
    } algos[] = {{"crc32", XFER_DIGEST_CRC32}, {"crc32c", XFER_DIGEST_CRC32C},
                 {"crc64nvme", XFER_DIGEST_CRC64NVME}, {"sha1", XFER_DIGEST_SHA1},
                 {"sha256", XFER_DIGEST_SHA256}};
    memset(spec, 0, sizeof *spec);
    if (!sum->name[0])
        return "the server keeps no checksum";
    size_t i = 0;
    while (i < sizeof algos / sizeof *algos && strcmp(algos[i].name, sum->name) != 0)
        i++;
    if (i == sizeof algos / sizeof *algos)
        return "a checksum of an unknown algorithm";
    spec->algo = algos[i].algo;
    spec->base64 = true;
    snprintf(spec->expected, sizeof spec->expected, "%s", sum->value);
    int n = parts_suffix(sum->value);
    if (n < 0)
        return "a checksum of an unknown form";
    if (n == 0 && strcasecmp(sum->type, "COMPOSITE") != 0)
        return NULL; /* of the whole object, however it was uploaded */
    if (n == 0 || !(spec->part_size = part_size_for(info, n)))
        return "composite checksum without a recorded part size";
    return NULL;
}

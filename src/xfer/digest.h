/* xfer/digest: the digests an S3 server keeps of an object's bytes,
 * recomputed from the bytes in order, so local content can be checked
 * against what the server computed without downloading the object: the
 * ETag when it is the MD5 of the bytes (one PUT) or of the MD5s of its
 * parts (multipart, at the part size haul recorded), and the checksums of
 * x-amz-checksum-* (CRC32, CRC32C, CRC64NVME, SHA-1, SHA-256; whole-object
 * or composite of parts). */
#ifndef XFER_DIGEST_H
#define XFER_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3/s3.h"

enum xfer_digest_algo {
    XFER_DIGEST_MD5,
    XFER_DIGEST_SHA1,
    XFER_DIGEST_SHA256,
    XFER_DIGEST_CRC32,
    XFER_DIGEST_CRC32C,
    XFER_DIGEST_CRC64NVME,
};

/* How the server's value is formed from the bytes. */
struct xfer_digest_spec {
    enum xfer_digest_algo algo;
    bool base64;        /* checksums: base64 of the digest; ETags: lower-case hex */
    uint64_t part_size; /* composite: the digest of each part's digest; 0: of the whole */
    char expected[128]; /* the server's value as it sent it ("hex-N", "base64-N" for composites) */
};

/* From the ETag of info (a HEAD of an object of info->size bytes): NULL with
 * spec filled when the ETag is an MD5 of the bytes (one PUT, or one part) or
 * a multipart ETag whose part count fits the part size haul recorded
 * (XFER_META_PART_SIZE); otherwise why the ETag says nothing of the bytes
 * (a static string). */
const char *xfer_digest_from_etag(const struct s3_object_info *info, struct xfer_digest_spec *spec);

/* The same from the checksum sum (see s3_object_head_checksum): a composite
 * of N parts needs N == 1 or the recorded part size to fit N. */
const char *xfer_digest_from_checksum(const struct s3_checksum *sum, const struct s3_object_info *info,
                                      struct xfer_digest_spec *spec);

/* A running digest of spec (copied).  NULL when out of memory. */
struct xfer_digest;
struct xfer_digest *xfer_digest_new(const struct xfer_digest_spec *spec);
void xfer_digest_update(struct xfer_digest *d, const void *data, size_t n);
/* Writes the value in the server's notation into out (128 bytes suffice)
 * and frees d.  Returns 1 when it equals spec->expected, 0 when not,
 * -HAUL_ENOMEM when a part's hash state could not be allocated. */
int xfer_digest_final(struct xfer_digest *d, char *out, size_t cap);
void xfer_digest_free(struct xfer_digest *d); /* without a value; NULL is a no-op */

#endif

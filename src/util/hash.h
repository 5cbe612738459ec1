/* util/hash: SHA-256, HMAC-SHA256 and MD5 over OpenSSL libcrypto, and the
 * hex/base64 encodings S3 wants. */
#ifndef UTIL_HASH_H
#define UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32
#define SHA256_HEX_LEN 64 /* without the NUL */
#define MD5_LEN 16

/* One-shot digests. */
void hash_sha256(const void *data, size_t n, uint8_t out[SHA256_LEN]);
void hash_md5(const void *data, size_t n, uint8_t out[MD5_LEN]);
void hash_hmac_sha256(const void *key, size_t keylen, const void *data, size_t n,
                      uint8_t out[SHA256_LEN]);

/* Lower-case hex; out must hold 2*n+1 bytes. */
void hash_hex(const uint8_t *in, size_t n, char *out);
/* Standard base64 with padding; out must hold 4*((n+2)/3)+1 bytes. */
void hash_base64(const uint8_t *in, size_t n, char *out);

/* Streaming SHA-256 and MD5 (for bodies read in pieces). _new returns NULL
 * when out of memory; _final writes the digest and frees the context. */
struct hash_ctx;
struct hash_ctx *hash_sha256_new(void);
struct hash_ctx *hash_md5_new(void);
void hash_update(struct hash_ctx *ctx, const void *data, size_t n);
void hash_final(struct hash_ctx *ctx, uint8_t *out);
void hash_free(struct hash_ctx *ctx); /* without a digest; NULL is a no-op */

/* Streaming SHA-1 (20 bytes), for S3's x-amz-checksum-sha1 only. */
#define SHA1_LEN 20
struct hash_ctx *hash_sha1_new(void);

#endif

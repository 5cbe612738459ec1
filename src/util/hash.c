/* util/hash: SHA-256, MD5 and HMAC-SHA256 over OpenSSL 3 EVP, plus hex and base64. */
#include "util/hash.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

struct hash_ctx {
    EVP_MD_CTX *md;
    size_t len;     /* digest length of the algorithm */
    int failed;     /* an EVP call failed: the digest is reported as zeros */
};

/* The one-shot functions cannot report errors (the header makes them void),
 * and libcrypto only fails here when out of memory; zeros then make the
 * request fail server-side (SignatureDoesNotMatch, BadDigest) instead of
 * leaving stack garbage in the output. */
static void digest(const EVP_MD *type, const void *data, size_t n, uint8_t *out, size_t len)
{
    if (!EVP_Digest(data, n, out, NULL, type, NULL))
        memset(out, 0, len);
}

void hash_sha256(const void *data, size_t n, uint8_t out[SHA256_LEN])
{
    digest(EVP_sha256(), data, n, out, SHA256_LEN);
}

void hash_md5(const void *data, size_t n, uint8_t out[MD5_LEN])
{
    digest(EVP_md5(), data, n, out, MD5_LEN);
}

void hash_hmac_sha256(const void *key, size_t keylen, const void *data, size_t n,
                      uint8_t out[SHA256_LEN])
{
    uint8_t short_key[SHA256_LEN];

    /* HMAC() takes an int key length; a longer key is hashed first, as
     * RFC 2104 does for keys longer than the block size anyway. */
    if (keylen > INT_MAX) {
        hash_sha256(key, keylen, short_key);
        key = short_key;
        keylen = sizeof short_key;
    }
    unsigned int outlen = 0;
    if (!HMAC(EVP_sha256(), key, (int)keylen, data, n, out, &outlen) || outlen != SHA256_LEN)
        memset(out, 0, SHA256_LEN);
}

void hash_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

void hash_base64(const uint8_t *in, size_t n, char *out)
{
    static const char table[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = table[v >> 18];
        *out++ = table[(v >> 12) & 0x3f];
        *out++ = table[(v >> 6) & 0x3f];
        *out++ = table[v & 0x3f];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *out++ = table[v >> 18];
        *out++ = table[(v >> 12) & 0x3f];
        *out++ = '=';
        *out++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *out++ = table[v >> 18];
        *out++ = table[(v >> 12) & 0x3f];
        *out++ = table[(v >> 6) & 0x3f];
        *out++ = '=';
    }
    *out = '\0';
}

static struct hash_ctx *ctx_new(const EVP_MD *type, size_t len)
{
    struct hash_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    ctx->md = EVP_MD_CTX_new();
    if (!ctx->md || !EVP_DigestInit_ex(ctx->md, type, NULL)) {
        hash_free(ctx);
        return NULL;
    }
    ctx->len = len;
    return ctx;
}

struct hash_ctx *hash_sha256_new(void) { return ctx_new(EVP_sha256(), SHA256_LEN); }

struct hash_ctx *hash_md5_new(void) { return ctx_new(EVP_md5(), MD5_LEN); }

void hash_update(struct hash_ctx *ctx, const void *data, size_t n)
{
    if (!ctx->failed && !EVP_DigestUpdate(ctx->md, data, n))
        ctx->failed = 1;
}

void hash_final(struct hash_ctx *ctx, uint8_t *out)
{
    if (ctx->failed || !EVP_DigestFinal_ex(ctx->md, out, NULL))
        memset(out, 0, ctx->len);
    hash_free(ctx);
}

void hash_free(struct hash_ctx *ctx)
{
    if (!ctx)
        return;
    EVP_MD_CTX_free(ctx->md);
    free(ctx);
}

struct hash_ctx *hash_sha1_new(void) { return ctx_new(EVP_sha1(), SHA1_LEN); }

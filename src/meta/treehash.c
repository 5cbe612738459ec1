/* meta/treehash: the SHA-256 tree hash Amazon Glacier defines, streaming.
 *
 * Complete leaves are folded like a binary counter: level[i] holds the hash
 * of a full subtree of 2^i leaves and is present exactly when bit i of the
 * leaf count is set.  Adding a leaf carries through the set low bits; at the
 * end the present levels are combined from the lowest up, each as the left
 * child of what was accumulated below it.  That is the tree Glacier's
 * level-by-level procedure builds (an odd last node is carried up unchanged),
 * with memory bounded by one partial leaf's hash state and 64 digests. */
#include "meta/meta.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"

struct meta_treehash {
    struct hash_ctx *leaf;  /* the partial leaf's SHA-256, NULL before its first byte */
    size_t leaf_len;        /* bytes in the partial leaf */
    uint64_t leaves;        /* complete leaves folded into level[] */
    uint8_t level[64][SHA256_LEN];
    bool failed;            /* a leaf's hash state could not be allocated */
};

static void combine(const uint8_t left[SHA256_LEN], const uint8_t right[SHA256_LEN],
                    uint8_t out[SHA256_LEN])
{
    uint8_t both[2 * SHA256_LEN];
    memcpy(both, left, SHA256_LEN);
    memcpy(both + SHA256_LEN, right, SHA256_LEN);
    hash_sha256(both, sizeof both, out);
}

static void leaf_push(struct meta_treehash *th, const uint8_t digest[SHA256_LEN])
{
    uint8_t carry[SHA256_LEN];
    int i = 0;

    memcpy(carry, digest, SHA256_LEN);
    for (; th->leaves >> i & 1; i++)
        combine(th->level[i], carry, carry);
    memcpy(th->level[i], carry, SHA256_LEN);
    th->leaves++;
}

static void root(const struct meta_treehash *th, uint8_t out[SHA256_LEN])
{
    bool any = false;

    for (int i = 0; i < 64; i++) {
        if (!(th->leaves >> i & 1))
            continue;
        if (any)
            combine(th->level[i], out, out);
        else
            memcpy(out, th->level[i], SHA256_LEN);
        any = true;
    }
}

struct meta_treehash *meta_treehash_new(void)
{
    return calloc(1, sizeof(struct meta_treehash));
}

void meta_treehash_free(struct meta_treehash *th)
{
    if (!th)
        return;
    hash_free(th->leaf);
    free(th);
}

void meta_treehash_update(struct meta_treehash *th, const void *data, size_t n)
{
    const uint8_t *p = data;

    while (n > 0 && !th->failed) {
        if (!th->leaf && !(th->leaf = hash_sha256_new())) {
            th->failed = true;
            return;
        }
        size_t take = META_TREE_LEAF - th->leaf_len;
        if (take > n)
            take = n;
        hash_update(th->leaf, p, take);
        th->leaf_len += take;
        p += take;
        n -= take;
        if (th->leaf_len == META_TREE_LEAF) {
            uint8_t digest[SHA256_LEN];
            hash_final(th->leaf, digest);
            th->leaf = NULL;
            th->leaf_len = 0;
            leaf_push(th, digest);
        }
    }
}

int meta_treehash_final(struct meta_treehash *th, uint8_t digest[SHA256_LEN],
                        char hex[SHA256_HEX_LEN + 1], haul_error *err)
{
    uint8_t out[SHA256_LEN];
    bool failed = th->failed;

    if (!failed && (th->leaf_len > 0 || th->leaves == 0)) {
        /* The last, short leaf; or the empty input, whose hash is SHA-256(""). */
        uint8_t last[SHA256_LEN];
        if (th->leaf)
            hash_final(th->leaf, last);
        else
            hash_sha256("", 0, last);
        th->leaf = NULL;
        leaf_push(th, last);
    }
    if (!failed)
        root(th, out);
    hash_free(th->leaf);
    memset(th, 0, sizeof *th);
    if (failed)
        return err_set(err, HAUL_ENOMEM, "tree hash: out of memory for a leaf's SHA-256 state");
    if (digest)
        memcpy(digest, out, SHA256_LEN);
    if (hex)
        hash_hex(out, SHA256_LEN, hex);
    return 0;
}

void meta_treehash_buf(const void *data, size_t n, char hex[SHA256_HEX_LEN + 1])
{
    struct meta_treehash th = {0};
    const uint8_t *p = data;
    uint8_t digest[SHA256_LEN];

    do {
        size_t take = n < META_TREE_LEAF ? n : META_TREE_LEAF;
        hash_sha256(take ? (const void *)p : "", take, digest);
        leaf_push(&th, digest);
        if (take) { /* never offset a NULL pointer, even by 0 */
            p += take;
            n -= take;
        }
    } while (n > 0);
    root(&th, digest);
    hash_hex(digest, SHA256_LEN, hex);
}

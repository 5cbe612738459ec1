/* meta/keys: object keys from relative paths and back (the escape for names
 * that are not UTF-8, see meta.h), and the safety check restore relies on. */
#include "meta/meta.h"

#include <stdio.h>
#include <string.h>

#include "meta/internal.h"
#include "util/err.h"

#define ESC_BASE 0xE000u /* U+E000 + byte stands for a byte (s3fs's wtf8) */

/* Writes c as \xNN at out (4 bytes, no NUL); returns 4. */
static size_t hex_escape(char *out, unsigned char c)
{
    static const char digits[] = "0123456789abcdef";
    out[0] = '\\';
    out[1] = 'x';
    out[2] = digits[c >> 4];
    out[3] = digits[c & 0x0f];
    return 4;
}

const char *meta_quote(const char *s, size_t n, char out[META_QUOTE_SIZE])
{
    size_t o = 0;
    size_t shown = n > 96 ? 96 : n;

    out[o++] = '"';
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[o++] = (char)c;
        else
            o += hex_escape(out + o, c);
    }
    out[o++] = '"';
    if (shown < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

size_t meta_utf8_char(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        *cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        *cp = c & 0x0f;
        if (c == 0xe0)
            lo = 0xa0; /* no overlongs */
        else if (c == 0xed)
            hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        *cp = c & 0x07;
        if (c == 0xf0)
            lo = 0x90; /* no overlongs */
        else if (c == 0xf4)
            hi = 0x8f; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        *cp = *cp << 6 | (s[i] & 0x3f);
    }
    return len;
}

const char *meta_text_escape(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = meta_utf8_char((const unsigned char *)s + i, n - i, &cp);
        /* A control (C0, DEL, C1) or a byte that is not UTF-8 is shown byte by byte. */
        bool shown_as_is = len > 0 && !(cp < 0x20 || (cp >= 0x7f && cp <= 0x9f));
        size_t take = len ? len : 1, need = shown_as_is ? take : 4 * take;
        if (o + need + 4 > cap) { /* room for "..." and the NUL */
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (shown_as_is) {
            memcpy(out + o, s + i, take);
            o += take;
        } else {
            for (size_t k = 0; k < take; k++)
                o += hex_escape(out + o, (unsigned char)s[i + k]);
        }
        i += take;
    }
    out[o] = '\0';
    return out;
}

static bool is_escape(uint32_t cp)
{
    return cp >= ESC_BASE && cp <= ESC_BASE + 0xff;
}

/* Appends the encoding of in (n bytes) to out at *o, keeping within cap
 * bytes.  Returns false when it would not fit. */
static bool encode(const char *in, size_t n, char *out, size_t cap, size_t *o)
{
    const unsigned char *s = (const unsigned char *)in;

    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = meta_utf8_char(s + i, n - i, &cp);
        if (len > 0 && !is_escape(cp)) {
            if (cap - *o < len)
                return false;
            memcpy(out + *o, s + i, len);
            *o += len;
            i += len;
            continue;
        }
        /* An invalid byte, or each byte of a literal U+E000..U+E0FF. */
        size_t count = len > 0 ? len : 1;
        for (size_t k = 0; k < count; k++, i++) {
            if (cap - *o < 3)
                return false;
            out[(*o)++] = (char)0xee;
            out[(*o)++] = (char)(0x80 | s[i] >> 6);
            out[(*o)++] = (char)(0x80 | (s[i] & 0x3f));
        }
    }
    return true;
}

const char *meta_path_check(const char *path, size_t n)
{
    if (n == 0)
        return "empty path";
    if (memchr(path, '\0', n))
        return "NUL byte";
    if (path[0] == '/')
        return "absolute path";
    if (path[n - 1] == '/')
        return "trailing '/'";
    if (n > META_PATH_MAX - 1)
        return "path over 4095 bytes";
    for (size_t start = 0; start <= n;) {
        const char *slash = memchr(path + start, '/', n - start);
        size_t end = slash ? (size_t)(slash - path) : n;
        size_t len = end - start;
        if (len == 0)
            return "empty component";
        if (len == 1 && path[start] == '.')
            return "\".\" component";
        if (len == 2 && path[start] == '.' && path[start + 1] == '.')
            return "\"..\" component";
        if (len > META_NAME_MAX)
            return "component over 255 bytes";
        start = end + 1;
    }
    return NULL;
}

int meta_key_from_path(const char *prefix, const char *path, size_t n, bool is_dir,
                       char key[META_KEY_MAX + 1], size_t *key_len, haul_error *err)
{
    char q[META_QUOTE_SIZE];
    size_t plen = strlen(prefix);
    size_t o = 0;
    bool root = n == 0 || (n == 1 && path[0] == '.');

    key[0] = '\0';
    if (key_len)
        *key_len = 0;
    for (size_t i = 0; i < plen;) {
        uint32_t cp;
        size_t len = meta_utf8_char((const unsigned char *)prefix + i, plen - i, &cp);
        if (len == 0)
            return err_set(err, HAUL_EUSAGE, "prefix %s is not valid UTF-8",
                           meta_quote(prefix, plen, q));
        i += len;
    }
    if (root) {
        if (!is_dir || plen == 0)
            return err_set(err, HAUL_EUSAGE, "cannot make a key for path %s: %s",
                           meta_quote(path, n, q),
                           is_dir ? "the root directory has no key without a prefix"
                                  : "empty path");
    } else {
        const char *why = meta_path_check(path, n);
        if (why)
            return err_set(err, HAUL_EUSAGE, "cannot make a key for path %s: %s",
                           meta_quote(path, n, q), why);
    }
    if (plen > META_KEY_MAX)
        return err_set(err, HAUL_EUSAGE, "prefix %s is over S3's %d bytes for a key",
                       meta_quote(prefix, plen, q), META_KEY_MAX);
    memcpy(key, prefix, plen);
    o = plen;
    if (!root && (!encode(path, n, key, META_KEY_MAX, &o) ||
                  (is_dir && o == META_KEY_MAX))) {
        key[0] = '\0';
        return err_set(err, HAUL_EUSAGE, "cannot make a key for path %s: key over S3's %d bytes",
                       meta_quote(path, n, q), META_KEY_MAX);
    }
    if (!root && is_dir)
        key[o++] = '/';
    key[o] = '\0';
    if (key_len)
        *key_len = o;
    return 0;
}

/* Decodes one component (raw, n bytes, valid UTF-8) into out; returns NULL or
 * why it is refused. */
static const char *decode_component(const char *raw, size_t n, char *out, size_t *len)
{
    const unsigned char *s = (const unsigned char *)raw;
    size_t o = 0;

    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t clen = meta_utf8_char(s + i, n - i, &cp); /* > 0: checked by the caller */
        if (o + (is_escape(cp) ? 1 : clen) > META_NAME_MAX)
            return "component over 255 bytes";
        if (is_escape(cp)) {
            unsigned char b = (unsigned char)(cp - ESC_BASE);
            if (b == '\0')
                return "escaped NUL byte";
            if (b == '/')
                return "escaped '/'";
            out[o++] = (char)b;
        } else {
            memcpy(out + o, s + i, clen);
            o += clen;
        }
        i += clen;
    }
    /* Canonical: the encoder must give the raw component back. */
    char again[3 * META_NAME_MAX];
    size_t alen = 0;
    if (!encode(out, o, again, sizeof again, &alen) || alen != n || memcmp(again, raw, n) != 0)
        return "non-canonical escape";
    if (o == 1 && out[0] == '.')
        return "\".\" component";
    if (o == 2 && out[0] == '.' && out[1] == '.')
        return "\"..\" component";
    *len = o;
    return NULL;
}

/* The reason key (under a prefix of plen bytes) is refused, or NULL with the
 * path written.  *at is set to the key offset of a refused component (else
 * left alone). */
static const char *key_problem(const char *key, size_t key_len, size_t plen, bool is_dir,
                               char *path, size_t *at)
{
    const char *rel = key + plen;
    size_t n = key_len - plen;

    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = meta_utf8_char((const unsigned char *)rel + i, n - i, &cp);
        if (len == 0) {
            *at = plen + i;
            return "not valid UTF-8";
        }
        i += len;
    }
    if (n == 0) {
        if (!is_dir)
            return "empty path (the key is the prefix)";
        memcpy(path, ".", 2);
        return NULL;
    }
    if (rel[0] == '/')
        return "absolute path";
    if (rel[n - 1] == '/') {
        if (!is_dir)
            return "trailing '/' on a non-directory";
        n--;
    }
    size_t o = 0;
    for (size_t start = 0; start <= n;) {
        const char *slash = memchr(rel + start, '/', n - start);
        size_t end = slash ? (size_t)(slash - rel) : n;
        char comp[META_NAME_MAX];
        size_t len = 0;
        *at = plen + start;
        if (end == start)
            return "empty component";
        const char *why = decode_component(rel + start, end - start, comp, &len);
        if (why)
            return why;
        if (o + (o > 0) + len > META_PATH_MAX - 1)
            return "path over 4095 bytes";
        if (o > 0)
            path[o++] = '/';
        memcpy(path + o, comp, len);
        o += len;
        start = end + 1;
    }
    path[o] = '\0';
    return NULL;
}

int meta_path_from_key(const char *key, size_t key_len, const char *prefix, bool is_dir,
                       char path[META_PATH_MAX], haul_error *err)
{
    char q[META_QUOTE_SIZE];
    size_t plen = strlen(prefix);
    size_t at = SIZE_MAX;

    path[0] = '\0';
    const char *nul = memchr(key, '\0', key_len);
    if (nul)
        return err_set(err, HAUL_EPROTO, "unsafe key %s: NUL byte at offset %zu",
                       meta_quote(key, key_len, q), (size_t)(nul - key));
    if (key_len < plen || memcmp(key, prefix, plen) != 0) {
        char qp[META_QUOTE_SIZE];
        return err_set(err, HAUL_EPROTO, "unsafe key %s: not under the prefix %s",
                       meta_quote(key, key_len, q), meta_quote(prefix, plen, qp));
    }
    const char *why = key_problem(key, key_len, plen, is_dir, path, &at);
    if (!why)
        return 0;
    path[0] = '\0';
    if (at != SIZE_MAX)
        return err_set(err, HAUL_EPROTO, "unsafe key %s: %s at offset %zu",
                       meta_quote(key, key_len, q), why, at);
    return err_set(err, HAUL_EPROTO, "unsafe key %s: %s", meta_quote(key, key_len, q), why);
}

bool meta_key_is_internal(const char *prefix, const char *key, size_t key_len)
{
    size_t p = strlen(prefix), d = sizeof META_INTERNAL_DIR - 1;
    return key_len > p + d && memcmp(key, prefix, p) == 0 && memcmp(key + p, META_INTERNAL_DIR, d) == 0 &&
           key[p + d] == '/';
}

bool meta_path_is_internal(const char *path)
{
    size_t d = sizeof META_INTERNAL_DIR - 1;
    return strncmp(path, META_INTERNAL_DIR, d) == 0 && (path[d] == '\0' || path[d] == '/');
}

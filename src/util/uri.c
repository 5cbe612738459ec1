/* util/uri: SigV4 percent-encoding (RFC 3986 unreserved kept, %XX upper-case) and decoding. */
#include "util/uri.h"

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int uri_encode(struct strbuf *out, const char *in, size_t n, bool keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t run = 0; /* start of the pending run of bytes kept as they are */

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (is_unreserved(c) || (keep_slash && c == '/'))
            continue;
        char esc[3] = {'%', digits[c >> 4], digits[c & 0x0f]};
        if (strbuf_add(out, in + run, i - run) < 0 || strbuf_add(out, esc, sizeof esc) < 0)
            return -1;
        run = i + 1;
    }
    /* Always append (even nothing) so out->s is a string afterwards. */
    return strbuf_add(out, in + run, n - run);
}

/* Decodes into out; on a malformed escape returns -1 having appended part. */
static int decode(struct strbuf *out, const char *in, size_t n, bool plus_is_space)
{
    size_t run = 0;

    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c != '%' && !(plus_is_space && c == '+'))
            continue;
        if (strbuf_add(out, in + run, i - run) < 0)
            return -1;
        if (c == '+') {
            c = ' ';
        } else {
            int hi = i + 2 < n ? hex_value((unsigned char)in[i + 1]) : -1;
            int lo = hi >= 0 ? hex_value((unsigned char)in[i + 2]) : -1;
            if (lo < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (strbuf_add(out, &c, 1) < 0)
            return -1;
        run = i + 1;
    }
    return strbuf_add(out, in + run, n - run);
}

int uri_decode(struct strbuf *out, const char *in, size_t n, bool plus_is_space)
{
    size_t start = out->len;

    if (decode(out, in, n, plus_is_space) == 0)
        return 0;
    /* Leave out as it was, so a caller can fall back to the raw text. */
    out->len = start;
    if (out->s)
        out->s[start] = '\0';
    return -1;
}

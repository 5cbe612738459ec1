/* util/kv: see kv.h. */
#include "util/kv.h"

#include <inttypes.h>
#include <string.h>

void kv_put_str(struct strbuf *sb, const char *key, const char *v)
{
    strbuf_adds(sb, key);
    strbuf_add(sb, " ", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p <= ' ' || *p == '%' || *p >= 0x7f)
            strbuf_addf(sb, "%%%02X", *p);
        else
            strbuf_add(sb, p, 1);
    }
    strbuf_add(sb, "\n", 1);
}

void kv_put_num(struct strbuf *sb, const char *key, uint64_t v)
{
    strbuf_addf(sb, "%s %" PRIu64 "\n", key, v);
}

int kv_next(const char **p, const char *end, const char **key, size_t *klen, const char **v, const char **vend)
{
    if (*p >= end)
        return 0;
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    const char *sp = nl ? memchr(*p, ' ', (size_t)(nl - *p)) : NULL;
    if (!nl || !sp)
        return -1;
    *key = *p;
    *klen = (size_t)(sp - *p);
    *v = sp + 1;
    *vend = nl;
    *p = nl + 1;
    return 1;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool kv_get_str(const char *p, const char *end, char *out, size_t cap)
{
    size_t n = 0;
    while (p < end) {
        int c = (unsigned char)*p++;
        if (c == '%') {
            if (end - p < 2 || hexval(p[0]) < 0 || hexval(p[1]) < 0)
                return false;
            c = hexval(p[0]) * 16 + hexval(p[1]);
            p += 2;
            if (c == 0)
                return false;
        }
        if (n + 1 >= cap)
            return false;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return true;
}

bool kv_get_num(const char *p, const char *end, uint64_t *v)
{
    if (p == end || end - p > 20)
        return false;
    uint64_t x = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9' || x > (UINT64_MAX - 9) / 10)
            return false;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    *v = x;
    return true;
}

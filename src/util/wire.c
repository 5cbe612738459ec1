/* util/wire: see wire.h. */
#include "util/wire.h"

#include <string.h>

/* ---- writing ---- */

void wire_put_u8(struct strbuf *sb, unsigned v)
{
    unsigned char b = (unsigned char)v;
    strbuf_add(sb, &b, 1);
}

void wire_put_u16(struct strbuf *sb, unsigned v)
{
    unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    strbuf_add(sb, b, 2);
}

void wire_put_u32(struct strbuf *sb, uint32_t v)
{
    unsigned char b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)(v >> (24 - 8 * i));
    strbuf_add(sb, b, 4);
}

void wire_put_u64(struct strbuf *sb, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (56 - 8 * i));
    strbuf_add(sb, b, 8);
}

void wire_put_str(struct strbuf *sb, const char *s, size_t n)
{
    wire_put_u16(sb, (unsigned)n);
    strbuf_add(sb, s, n);
}

/* ---- reading: every get fails once the message is short, and stays failed ---- */

bool wire_need(struct wire_reader *r, size_t n)
{
    if (r->why)
        return false;
    if (r->left < n) {
        r->why = "truncated";
        return false;
    }
    return true;
}

unsigned wire_get_u8(struct wire_reader *r)
{
    if (!wire_need(r, 1))
        return 0;
    r->left--;
    return *r->p++;
}

unsigned wire_get_u16(struct wire_reader *r)
{
    if (!wire_need(r, 2))
        return 0;
    unsigned v = (unsigned)r->p[0] << 8 | r->p[1];
    r->p += 2;
    r->left -= 2;
    return v;
}

uint32_t wire_get_u32(struct wire_reader *r)
{
    if (!wire_need(r, 4))
        return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | r->p[i];
    r->p += 4;
    r->left -= 4;
    return v;
}

uint64_t wire_get_u64(struct wire_reader *r)
{
    if (!wire_need(r, 8))
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | r->p[i];
    r->p += 8;
    r->left -= 8;
    return v;
}

/* A length-prefixed string: points *s into the message (not terminated). */
size_t wire_get_str(struct wire_reader *r, const unsigned char **s)
{
    size_t n = wire_get_u16(r);
    *s = NULL;
    if (!wire_need(r, n))
        return 0;
    *s = r->p;
    r->p += n;
    r->left -= n;
    return n;
}

bool wire_get_cstr(struct wire_reader *r, char *out, size_t cap)
{
    const unsigned char *p;
    size_t n = wire_get_str(r, &p);
    if (r->why || n >= cap || memchr(p, 0, n)) {
        wire_fail(r, "bad string");
        return false;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

void wire_fail(struct wire_reader *r, const char *why)
{
    if (!r->why)
        r->why = why;
}


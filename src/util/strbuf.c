/* util/strbuf: growable strings (see strbuf.h). */
#include "util/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int grow(struct strbuf *sb, size_t extra)
{
    if (sb->failed)
        return -1;
    if (sb->len + extra + 1 <= sb->cap)
        return 0;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < sb->len + extra + 1)
        cap *= 2;
    char *s = realloc(sb->s, cap);
    if (!s) {
        sb->failed = 1;
        return -1;
    }
    sb->s = s;
    sb->cap = cap;
    return 0;
}

int strbuf_add(struct strbuf *sb, const void *data, size_t n)
{
    if (grow(sb, n) < 0)
        return -1;
    memcpy(sb->s + sb->len, data, n);
    sb->len += n;
    sb->s[sb->len] = '\0';
    return 0;
}

int strbuf_adds(struct strbuf *sb, const char *s) { return strbuf_add(sb, s, strlen(s)); }

int strbuf_addf(struct strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || grow(sb, (size_t)n) < 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(sb->s + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
    return 0;
}

void strbuf_reset(struct strbuf *sb)
{
    sb->len = 0;
    if (sb->s)
        sb->s[0] = '\0';
}

const char *strbuf_str(const struct strbuf *sb) { return sb->s ? sb->s : ""; }

char *strbuf_detach(struct strbuf *sb)
{
    char *s = sb->failed ? NULL : sb->s;
    if (sb->failed)
        free(sb->s);
    else if (!s)
        s = calloc(1, 1);
    memset(sb, 0, sizeof *sb);
    return s;
}

void strbuf_release(struct strbuf *sb)
{
    free(sb->s);
    memset(sb, 0, sizeof *sb);
}

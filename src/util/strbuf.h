/* util/strbuf: a growable NUL-terminated string for building requests. */
#ifndef UTIL_STRBUF_H
#define UTIL_STRBUF_H

#include <stddef.h>

struct strbuf {
    char *s;    /* always NUL-terminated once anything was appended; may be NULL before */
    size_t len; /* bytes before the NUL */
    size_t cap;
    int failed; /* set when an allocation failed; later appends are ignored */
};

#define STRBUF_INIT {0}

/* Appends n bytes. Returns 0, or -1 when memory ran out (then sb->failed). */
int strbuf_add(struct strbuf *sb, const void *data, size_t n);
int strbuf_adds(struct strbuf *sb, const char *s);
int strbuf_addf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empties the string, keeping the memory. */
void strbuf_reset(struct strbuf *sb);
/* The string, "" when empty (never NULL). */
const char *strbuf_str(const struct strbuf *sb);
/* Gives the heap string to the caller (NULL on failure) and empties sb. */
char *strbuf_detach(struct strbuf *sb);
void strbuf_release(struct strbuf *sb);

#endif

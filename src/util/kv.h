/* util/kv: the "key value\n" text of job descriptions (job/dclone.h,
 * job/dbackup.h): one field per line, the key up to the first space, the
 * value %XX-escaped (bytes <= ' ', '%' and >= 0x7f), so any path travels
 * intact and the whole stays readable in the broker's UI. */
#ifndef UTIL_KV_H
#define UTIL_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/strbuf.h"

void kv_put_str(struct strbuf *sb, const char *key, const char *v);
void kv_put_num(struct strbuf *sb, const char *key, uint64_t v);

/* One line of [*p, end): key (klen bytes) and value [*v, *vend); advances
 * *p.  1 for a line, 0 at the end, -1 when malformed (no newline or no
 * space). */
int kv_next(const char **p, const char *end, const char **key, size_t *klen, const char **v, const char **vend);

/* Unescapes [p, end) into out (cap bytes with the NUL); false when bad
 * (bad escape, a %00, too long). */
bool kv_get_str(const char *p, const char *end, char *out, size_t cap);
/* A decimal number without sign; false when bad or over 2^64-1. */
bool kv_get_num(const char *p, const char *end, uint64_t *v);

#endif

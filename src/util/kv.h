/* util/kv: the "key value\n" text of job descriptions (job/dclone.h,
 * job/dbackup.h): one field per line, the key up to the first space, the
 * value %XX-escaped (bytes <= ' ', '%' and >= 0x7f), so any path travels
 * intact and the whole stays readable in the broker's UI. */
#ifndef UTIL_KV_H
#define UTIL_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <haul/error.h>

#include "util/strbuf.h"

/* A description's fields, one table per job type, drives both directions:
 * each row names the key, the kind and where the member lives. */
enum kv_kind {
    KV_STR,  /* a char array; required: present and not empty; its length
              * within [min, max] when max is not 0 */
    KV_NUM,  /* an unsigned integer of size 1 (bool), 4 or 8 (also an enum
              * or an int64_t whose range keeps it non-negative) */
    KV_LIST, /* repeated key: entries of a char[entries][size] array, their
              * number in the size_t at count */
};

struct kv_field {
    const char *key;
    enum kv_kind kind;
    size_t offset, size; /* the member (KV_LIST: one entry's size) */
    uint64_t min, max;   /* KV_NUM: the values allowed; KV_STR: the lengths */
    size_t count, entries; /* KV_LIST: where the count is, how many fit */
    bool required;
};

/* Rows for member m of struct T (the key is the member's name). */
#define KV_FIELD_STR(T, m, req) {#m, KV_STR, offsetof(T, m), sizeof(((T *)0)->m), 0, 0, 0, 0, req}
#define KV_FIELD_STRN(T, m, lo, hi, req) {#m, KV_STR, offsetof(T, m), sizeof(((T *)0)->m), lo, hi, 0, 0, req}
#define KV_FIELD_NUM(T, m, lo, hi, req) {#m, KV_NUM, offsetof(T, m), sizeof(((T *)0)->m), lo, hi, 0, 0, req}
#define KV_FIELD_LIST(T, m, key, n)                                                                                  \
    {key, KV_LIST, offsetof(T, m), sizeof(((T *)0)->m[0]), 0, 0, offsetof(T, n),                                     \
     sizeof(((T *)0)->m) / sizeof(((T *)0)->m[0]), false}

/* Appends the head line (with its newline), then one line per field of
 * in (a list: one per entry).  HAUL_ENOMEM when sb could not grow. */
int kv_encode(struct strbuf *sb, const char *head, const struct kv_field *fields, size_t n, const void *in,
              haul_error *err);

/* Zeroes out (out_size bytes) and fills it from buf: a head line equal to
 * head, then lines.  Keys the table lacks are skipped (a newer
 * coordinator's options, not needed to do the work).  HAUL_EPROTO, the
 * message naming the key, when the head differs, a line is malformed, a
 * value bad (a bad escape, a %00, too long or short, out of range, a list
 * too long) or a required field missing. */
int kv_decode(const void *buf, size_t len, const char *head, const struct kv_field *fields, size_t n, void *out,
              size_t out_size, haul_error *err);

#endif

/* util/wire: big-endian integers and u16-length strings in and out of
 * binary messages (dist's work units, job/dbackup's payloads).  Reading
 * never goes past the end: every get fails once the message is short, and
 * the reader stays failed with the first reason, so a decoder reads all its
 * fields and checks r.why once. */
#ifndef UTIL_WIRE_H
#define UTIL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/strbuf.h"

void wire_put_u8(struct strbuf *sb, unsigned v);
void wire_put_u16(struct strbuf *sb, unsigned v);
void wire_put_u32(struct strbuf *sb, uint32_t v);
void wire_put_u64(struct strbuf *sb, uint64_t v);
/* n < 65536 bytes: a u16 length, then the bytes. */
void wire_put_str(struct strbuf *sb, const char *s, size_t n);

struct wire_reader {
    const unsigned char *p;
    size_t left;
    const char *why; /* first reason the message is bad, NULL while fine */
};

bool wire_need(struct wire_reader *r, size_t n);
unsigned wire_get_u8(struct wire_reader *r);
unsigned wire_get_u16(struct wire_reader *r);
uint32_t wire_get_u32(struct wire_reader *r);
uint64_t wire_get_u64(struct wire_reader *r);
/* A length-prefixed string: points *s into the message (not terminated). */
size_t wire_get_str(struct wire_reader *r, const unsigned char **s);
/* A length-prefixed string copied into out (cap bytes with the NUL); false,
 * the message marked bad, when it does not fit or holds a NUL. */
bool wire_get_cstr(struct wire_reader *r, char *out, size_t cap);
/* Marks the message bad (the first reason stays). */
void wire_fail(struct wire_reader *r, const char *why);

#endif

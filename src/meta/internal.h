/* meta/internal: helpers shared by the files of the meta module (not its interface). */
#ifndef META_INTERNAL_H
#define META_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* Room for meta_quote's output: 96 input bytes at 4 output bytes each, the
 * quotes, "..." and the NUL. */
#define META_QUOTE_SIZE (96 * 4 + 8)

/* Writes s (n bytes) as a double-quoted C-like string for messages: printable
 * ASCII as is, '"' and '\\' and every other byte as \xNN, cut after 96 bytes
 * with "...".  Returns out. */
const char *meta_quote(const char *s, size_t n, char out[META_QUOTE_SIZE]);

/* Length (1..4) of the valid UTF-8 character at s (n > 0 bytes left), with
 * its code point in *cp; 0 when the bytes there are not valid UTF-8. */
size_t meta_utf8_char(const unsigned char *s, size_t n, uint32_t *cp);

#endif

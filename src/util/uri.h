/* util/uri: percent-encoding as AWS SigV4 defines it (RFC 3986 unreserved
 * characters kept, every other byte as %XX upper-case), and decoding. */
#ifndef UTIL_URI_H
#define UTIL_URI_H

#include "util/strbuf.h"
#include <stdbool.h>
#include <stddef.h>

/* Appends the encoding of n bytes of in to out.  With keep_slash, '/' is kept
 * (object key paths); otherwise encoded (query values).  Returns 0 or -1 (ENOMEM). */
int uri_encode(struct strbuf *out, const char *in, size_t n, bool keep_slash);

/* Decodes %XX (and, when plus_is_space, '+' as ' ') into out.  Returns 0, or
 * -1 on a malformed escape.  Decoded bytes may include NUL: out->len counts them. */
int uri_decode(struct strbuf *out, const char *in, size_t n, bool plus_is_space);

#endif

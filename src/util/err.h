/* util/err: filling struct haul_error with messages that name the cause. */
#ifndef UTIL_ERR_H
#define UTIL_ERR_H

#include <haul/error.h>
#include <stdarg.h>

/* Sets code and message unless an error is already recorded (the first,
 * innermost error wins).  Returns -code so callers can `return err_set(...)`.
 * err may be NULL. */
int err_set(haul_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like err_set with ": strerror(errnum)" appended; code HAUL_EIO, or
 * HAUL_ENOTFOUND for ENOENT. */
int err_errno(haul_error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends context ("get s3://b/k: ") to a recorded message. */
void err_prefix(haul_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Copies src (code, status, S3 code, message) into dst unless dst holds an
 * error already.  Returns -src->code. */
int err_copy(haul_error *dst, const haul_error *src);

/* Forgets a recorded error. */
void err_clear(haul_error *err);

#endif

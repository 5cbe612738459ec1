/* util/err: filling struct haul_error (see err.h). */
#include "util/err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *haul_code_name(int code)
{
    switch (code < 0 ? -code : code) {
    case HAUL_OK: return "ok";
    case HAUL_EUSAGE: return "usage error";
    case HAUL_EIO: return "I/O error";
    case HAUL_ENET: return "network error";
    case HAUL_ES3: return "S3 error";
    case HAUL_EAUTH: return "authentication error";
    case HAUL_ENOTFOUND: return "not found";
    case HAUL_ENOMEM: return "out of memory";
    case HAUL_EINTEGRITY: return "integrity error";
    case HAUL_EPROTO: return "protocol error";
    case HAUL_ECANCELED: return "canceled";
    }
    return "unknown error";
}

static int vset(haul_error *err, int code, const char *fmt, va_list ap)
{
    if (err && err->code == HAUL_OK) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return -code;
}

int err_set(haul_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vset(err, code, fmt, ap);
    va_end(ap);
    return rc;
}

int err_errno(haul_error *err, int errnum, const char *fmt, ...)
{
    int code = errnum == ENOENT ? HAUL_ENOTFOUND : errnum == ENOMEM ? HAUL_ENOMEM : HAUL_EIO;
    if (!err || err->code != HAUL_OK)
        return -code;
    va_list ap;
    va_start(ap, fmt);
    vset(err, code, fmt, ap);
    va_end(ap);
    size_t len = strlen(err->msg);
    snprintf(err->msg + len, sizeof err->msg - len, ": %s", strerror(errnum));
    return -code;
}

void err_prefix(haul_error *err, const char *fmt, ...)
{
    if (!err || err->code == HAUL_OK)
        return;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s%s", prefix, old);
}

int err_copy(haul_error *dst, const haul_error *src)
{
    if (dst && dst->code == HAUL_OK)
        *dst = *src;
    return -src->code;
}

void err_clear(haul_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
}

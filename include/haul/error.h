/* haul: the one error type every haul function fills (public). */
#ifndef HAUL_ERROR_H
#define HAUL_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* Error classes.  Functions return 0 on success or the negated class. */
enum haul_code {
    HAUL_OK = 0,
    HAUL_EUSAGE = 1,     /* bad argument or configuration */
    HAUL_EIO = 2,        /* local file or pipe I/O */
    HAUL_ENET = 3,       /* connection, DNS, TLS, timeout */
    HAUL_ES3 = 4,        /* the server answered with an S3 error */
    HAUL_EAUTH = 5,      /* credentials refused or missing */
    HAUL_ENOTFOUND = 6,  /* no such bucket, key or file */
    HAUL_ENOMEM = 7,     /* allocation failed */
    HAUL_EINTEGRITY = 8, /* checksum, length or ETag mismatch */
    HAUL_EPROTO = 9,     /* malformed response from the server */
    HAUL_ECANCELED = 10, /* stopped by the caller or a signal */
};

/* Filled by the innermost failing call (first error wins); outer calls may
 * prefix context ("put s3://b/k: ").  Zero-initialise before use. */
typedef struct haul_error {
    int code;        /* enum haul_code, HAUL_OK when nothing failed */
    int http_status; /* HTTP status when the server answered, else 0 */
    char s3_code[64];  /* S3 error code ("NoSuchKey") when there was one */
    char msg[1024];  /* one line, names the path, key or URL and the cause */
} haul_error;

/* A short fixed name for a code ("network error"). */
const char *haul_code_name(int code);

#ifdef __cplusplus
}
#endif
#endif

/* s3/sigv4: AWS Signature Version 4 for header-signed requests.
 * Pure functions of their inputs (the time is passed in) so tests can pin them
 * to AWS's published vectors and to signatures botocore computes. */
#ifndef S3_SIGV4_H
#define S3_SIGV4_H

#include <stddef.h>
#include <time.h>

#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
/* SHA-256 of the empty string. */
#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct sigv4_header {
    const char *name;  /* any case; lower-cased when signed */
    const char *value; /* leading/trailing spaces trimmed and inner runs folded when signed */
};

struct sigv4_request {
    const char *method;          /* "GET", "PUT", ... */
    const char *canonical_uri;   /* path exactly as sent, already URI-encoded ("/b/a%20b") */
    const char *query;           /* raw query string as sent, already encoded ("list-type=2&prefix=a%2F"), or "" */
    const struct sigv4_header *headers; /* every header to sign; must include host and x-amz-date */
    size_t n_headers;
    const char *payload_hash;    /* hex SHA-256 of the body, or SIGV4_UNSIGNED_PAYLOAD */
};

struct sigv4_key {
    const char *access_key;
    const char *secret_key;
    const char *region;  /* "us-east-1" */
    const char *service; /* "s3" */
};

/* "20150830T123600Z" for t; out must hold 17 bytes. */
void sigv4_amz_date(time_t t, char out[17]);

/* Computes the Authorization header value ("AWS4-HMAC-SHA256 Credential=...,
 * SignedHeaders=...,Signature=...") for req signed at time t.  The canonical
 * query is made by sorting req->query's parameters by name then value (the
 * encoded forms, as AWS does).  Writes at most cap bytes including the NUL.
 * Returns 0, or -1 if cap is too small or memory ran out.  When canonical is
 * not NULL it receives the canonical request (for debugging and tests; caller
 * frees). */
int sigv4_authorization(const struct sigv4_request *req, const struct sigv4_key *key, time_t t,
                        char *out, size_t cap, char **canonical);

#endif

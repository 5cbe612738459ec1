/* s3/sigv4: the SigV4 Authorization header for S3 (canonical request, string to sign, key). */
#include "s3/sigv4.h"

#include "util/hash.h"
#include "util/strbuf.h"
#include "util/uri.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALGORITHM "AWS4-HMAC-SHA256"
#define AMZ_DATE_LEN 16 /* "20150830T123600Z" */
#define SCOPE_DATE_LEN 8

struct param {
    char *name;  /* canonical (SigV4-encoded) */
    char *value; /* canonical, "" when the parameter had no '=' */
};

struct header {
    char *name;        /* lower-cased copy */
    const char *value; /* as given; trimmed when written */
    size_t order;      /* position in the request, to keep duplicates in order */
};

void sigv4_amz_date(time_t t, char out[17])
{
    struct tm tm;

    /* Only years 1000..9999 fit the 16 characters: else "", and signing fails. */
    if (!gmtime_r(&t, &tm) ||
        strftime(out, AMZ_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm) != AMZ_DATE_LEN)
        out[0] = '\0';
}

/* Appends the canonical form of one query name or value.  The query arrives
 * as sent; decoding then encoding gives what S3 computes on its side whether
 * the caller encoded fully ("a%2Fb") or left legal characters ("a/b").  A
 * malformed escape cannot be decoded, so its bytes are encoded as they are. */
static int add_query_part(struct strbuf *out, const char *in, size_t n)
{
    struct strbuf raw = STRBUF_INIT;
    int rc;

    if (uri_decode(&raw, in, n, false) == 0)
        rc = uri_encode(out, strbuf_str(&raw), raw.len, false);
    else
        rc = raw.failed ? -1 : uri_encode(out, in, n, false);
    strbuf_release(&raw);
    return rc;
}

static char *canonical_part(const char *in, size_t n)
{
    struct strbuf sb = STRBUF_INIT;

    if (add_query_part(&sb, in, n) < 0) {
        strbuf_release(&sb);
        return NULL;
    }
    return strbuf_detach(&sb);
}

static int param_cmp(const void *a, const void *b)
{
    const struct param *pa = a, *pb = b;
    int c = strcmp(pa->name, pb->name);
    return c ? c : strcmp(pa->value, pb->value);
}

static void params_free(struct param *params, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(params[i].name);
        free(params[i].value);
    }
    free(params);
}

/* Splits query on '&' into canonical name/value pairs; empty pieces are skipped. */
static int params_parse(const char *query, struct param **out, size_t *n_out)
{
    size_t cap = 1, n = 0;
    for (const char *p = query; *p; p++)
        cap += *p == '&';
    struct param *params = calloc(cap, sizeof *params);
    if (!params)
        return -1;
    for (const char *p = query; *p;) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        if (len > 0) {
            size_t name_len = eq ? (size_t)(eq - p) : len;
            params[n].name = canonical_part(p, name_len);
            params[n].value = eq ? canonical_part(eq + 1, len - name_len - 1) : strdup("");
            if (!params[n].name || !params[n].value) {
                params_free(params, n + 1);
                return -1;
            }
            n++;
        }
        p += len + (p[len] == '&');
    }
    *out = params;
    *n_out = n;
    return 0;
}

/* "a=1&b=" sorted by encoded name then value. */
static int add_canonical_query(struct strbuf *out, const char *query)
{
    struct param *params;
    size_t n;

    if (params_parse(query ? query : "", &params, &n) < 0)
        return -1;
    qsort(params, n, sizeof *params, param_cmp);
    for (size_t i = 0; i < n; i++)
        strbuf_addf(out, "%s%s=%s", i ? "&" : "", params[i].name, params[i].value);
    params_free(params, n);
    return out->failed ? -1 : 0;
}

static int header_cmp(const void *a, const void *b)
{
    const struct header *ha = a, *hb = b;
    int c = strcmp(ha->name, hb->name);
    return c ? c : (ha->order > hb->order) - (ha->order < hb->order);
}

static void headers_free(struct header *headers, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(headers[i].name);
    free(headers);
}

static char *lower_dup(const char *s)
{
    char *d = strdup(s);
    for (char *p = d; p && *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return d;
}

/* Copies the request's headers with lower-cased names, sorted by name and
 * then by position (so duplicate values join in the order they were given). */
static struct header *headers_sort(const struct sigv4_request *req)
{
    struct header *headers = calloc(req->n_headers ? req->n_headers : 1, sizeof *headers);
    if (!headers)
        return NULL;
    for (size_t i = 0; i < req->n_headers; i++) {
        headers[i].name = lower_dup(req->headers[i].name);
        headers[i].value = req->headers[i].value;
        headers[i].order = i;
        if (!headers[i].name) {
            headers_free(headers, i);
            return NULL;
        }
    }
    qsort(headers, req->n_headers, sizeof *headers, header_cmp);
    return headers;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Appends value without leading/trailing whitespace, inner runs as one space. */
static void add_trimmed(struct strbuf *out, const char *value)
{
    bool pending = false;

    if (!value)
        return;
    while (is_space(*value))
        value++;
    while (*value) {
        size_t len = 0;
        while (value[len] && !is_space(value[len]))
            len++;
        if (pending)
            strbuf_add(out, " ", 1);
        strbuf_add(out, value, len);
        value += len;
        while (is_space(*value))
            value++;
        pending = true;
    }
}

/* Appends "name:v1,v2\n" per distinct name to out and "name;name2" to names. */
static int add_canonical_headers(struct strbuf *out, struct strbuf *names,
                                 const struct sigv4_request *req)
{
    struct header *h = headers_sort(req);

    if (!h)
        return -1;
    for (size_t i = 0; i < req->n_headers; i++) {
        bool same = i > 0 && strcmp(h[i].name, h[i - 1].name) == 0;
        if (same) {
            strbuf_add(out, ",", 1);
        } else {
            strbuf_addf(out, "%s%s:", i ? "\n" : "", h[i].name);
            strbuf_addf(names, "%s%s", i ? ";" : "", h[i].name);
        }
        add_trimmed(out, h[i].value);
    }
    if (req->n_headers)
        strbuf_add(out, "\n", 1);
    headers_free(h, req->n_headers);
    return out->failed || names->failed ? -1 : 0;
}

/* method, URI, query, headers, blank line, signed names, payload hash. */
static int canonical_request(struct strbuf *creq, struct strbuf *names,
                             const struct sigv4_request *req)
{
    const char *uri = req->canonical_uri && *req->canonical_uri ? req->canonical_uri : "/";

    strbuf_addf(creq, "%s\n%s\n", req->method, uri);
    if (add_canonical_query(creq, req->query) < 0)
        return -1;
    strbuf_add(creq, "\n", 1);
    if (add_canonical_headers(creq, names, req) < 0)
        return -1;
    strbuf_addf(creq, "\n%s\n%s", strbuf_str(names), req->payload_hash);
    return creq->failed ? -1 : 0;
}

static void hmac_str(const uint8_t key[SHA256_LEN], const char *msg, uint8_t out[SHA256_LEN])
{
    hash_hmac_sha256(key, SHA256_LEN, msg, strlen(msg), out);
}

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request") */
static int signing_key(const struct sigv4_key *key, const char *date, uint8_t out[SHA256_LEN])
{
    struct strbuf secret = STRBUF_INIT;
    uint8_t k[SHA256_LEN];

    if (strbuf_addf(&secret, "AWS4%s", key->secret_key) < 0) {
        strbuf_release(&secret);
        return -1;
    }
    hash_hmac_sha256(secret.s, secret.len, date, strlen(date), k);
    explicit_bzero(secret.s, secret.len);
    strbuf_release(&secret);
    hmac_str(k, key->region, out);
    hmac_str(out, key->service, k);
    hmac_str(k, "aws4_request", out);
    explicit_bzero(k, sizeof k);
    return 0;
}

/* Hex signature over the string to sign built from the canonical request. */
static int signature(const char *creq, const struct sigv4_key *key, const char *amz_date,
                     const char *scope, char hex[SHA256_HEX_LEN + 1])
{
    char date[SCOPE_DATE_LEN + 1];
    uint8_t digest[SHA256_LEN], k[SHA256_LEN], sig[SHA256_LEN];
    char creq_hex[SHA256_HEX_LEN + 1];
    struct strbuf sts = STRBUF_INIT;

    memcpy(date, amz_date, SCOPE_DATE_LEN);
    date[SCOPE_DATE_LEN] = '\0';
    hash_sha256(creq, strlen(creq), digest);
    hash_hex(digest, sizeof digest, creq_hex);
    strbuf_addf(&sts, ALGORITHM "\n%s\n%s\n%s", amz_date, scope, creq_hex);
    int rc = sts.failed || signing_key(key, date, k) < 0 ? -1 : 0;
    if (rc == 0) {
        hash_hmac_sha256(k, sizeof k, sts.s, sts.len, sig);
        hash_hex(sig, sizeof sig, hex);
    }
    explicit_bzero(k, sizeof k);
    strbuf_release(&sts);
    return rc;
}

static int authorization(const char *creq, const char *names, const struct sigv4_key *key,
                         const char *amz_date, char *out, size_t cap)
{
    char scope[256], sig[SHA256_HEX_LEN + 1];

    int n = snprintf(scope, sizeof scope, "%.8s/%s/%s/aws4_request", amz_date, key->region,
                     key->service);
    if (n < 0 || (size_t)n >= sizeof scope || signature(creq, key, amz_date, scope, sig) < 0)
        return -1;
    n = snprintf(out, cap, ALGORITHM " Credential=%s/%s,SignedHeaders=%s,Signature=%s",
                 key->access_key, scope, names, sig);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int sigv4_authorization(const struct sigv4_request *req, const struct sigv4_key *key, time_t t,
                        char *out, size_t cap, char **canonical)
{
    struct strbuf creq = STRBUF_INIT, names = STRBUF_INIT;
    char amz_date[AMZ_DATE_LEN + 1];
    int rc = -1;

    if (canonical)
        *canonical = NULL;
    sigv4_amz_date(t, amz_date);
    if (amz_date[0] && canonical_request(&creq, &names, req) == 0)
        rc = authorization(creq.s, strbuf_str(&names), key, amz_date, out, cap);
    if (rc == 0 && canonical && !(*canonical = strbuf_detach(&creq)))
        rc = -1;
    if (rc < 0 && cap > 0)
        out[0] = '\0';
    strbuf_release(&creq);
    strbuf_release(&names);
    return rc;
}

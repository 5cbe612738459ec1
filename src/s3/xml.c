/* s3/xml: S3 XML responses parsed with libxml2 by local element names, and request bodies built. */
#include "s3/xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlversion.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "util/err.h"
#include "util/uri.h"

/* Never resolve entities (no XML_PARSE_NOENT), load DTDs or touch the network;
 * keep libxml2's limits (no XML_PARSE_HUGE); report errors only to us. */
#define PARSE_OPTIONS \
    (XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)

#define S3_XMLNS "http://s3.amazonaws.com/doc/2006-03-01/"
#define MAX_PART_NUMBER 10000

/* ---- libxml2 set-up, once per process ---------------------------------- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void silent(void *ctx, const char *fmt, ...)
{
    (void)ctx;
    (void)fmt;
}

/* xmlInitParser must run once before threads parse.  The generic error
 * handler is per thread in libxml2 2.9, so set the default for new threads as
 * well (2.12 deprecated that call; the parse options silence the parser). */
static void init(void)
{
    xmlInitParser();
#if LIBXML_VERSION < 21200
    xmlThrDefSetGenericErrorFunc(NULL, silent);
#endif
    xmlSetGenericErrorFunc(NULL, silent);
}

/* S3 never sends a DOCTYPE: stop at one, before any entity is declared. */
static void refuse_doctype(void *ctx, const xmlChar *name, const xmlChar *external_id,
                           const xmlChar *system_id)
{
    (void)name;
    (void)external_id;
    (void)system_id;
    xmlStopParser(ctx);
}

/* ---- one parsed response ------------------------------------------------ */

struct resp {
    const char *what; /* "ListObjectsV2 response", starts every message */
    haul_error *err;
    xmlDoc *doc;
    xmlNode *root;
    struct strbuf text;           /* scratch: a number, date or flag being read */
    struct strbuf key, etag, aux; /* an entry's key and its other strings */
};

/* A value quoted into a message: at most 64 bytes, control bytes as '?'. */
static const char *printable(const char *s, char out[72])
{
    size_t i = 0;
    for (; i < 64 && s[i]; i++)
        out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    strcpy(out + i, s[i] ? "..." : "");
    return out;
}

static int no_memory(struct resp *r)
{
    return err_set(r->err, HAUL_ENOMEM, "%s: out of memory", r->what);
}

static int parse_failed(struct resp *r, xmlParserCtxt *ctxt)
{
    if (ctxt->errNo == XML_ERR_USER_STOP)
        return err_set(r->err, HAUL_EPROTO, "%s: DOCTYPE declarations are not accepted", r->what);
    const char *msg = ctxt->lastError.message ? ctxt->lastError.message : "unknown error";
    size_t n = strcspn(msg, "\r\n");
    return err_set(r->err, HAUL_EPROTO, "%s: not well-formed XML (line %d: %.*s)", r->what,
                   ctxt->lastError.line, (int)(n > 200 ? 200 : n), msg);
}

static int doc_read(struct resp *r, const char *body, size_t len)
{
    if (!body || len == 0)
        return err_set(r->err, HAUL_EPROTO, "%s: empty body", r->what);
    if (len > INT_MAX)
        return err_set(r->err, HAUL_EPROTO, "%s: body of %zu bytes is too large", r->what, len);
    pthread_once(&init_once, init);
    xmlParserCtxt *ctxt = xmlNewParserCtxt();
    if (!ctxt)
        return no_memory(r);
    ctxt->sax->internalSubset = refuse_doctype;
    r->doc = xmlCtxtReadMemory(ctxt, body, (int)len, NULL, NULL, PARSE_OPTIONS);
    int rc = 0;
    if (!r->doc || ctxt->errNo != XML_ERR_OK)
        rc = parse_failed(r, ctxt);
    xmlFreeParserCtxt(ctxt);
    return rc;
}

/* Parses body and checks the root's local name (any root when root is NULL). */
static int doc_open(struct resp *r, const char *body, size_t len, const char *what,
                    const char *root, haul_error *err)
{
    *r = (struct resp){.what = what, .err = err};
    int rc = doc_read(r, body, len);
    if (rc)
        return rc;
    r->root = xmlDocGetRootElement(r->doc);
    if (!r->root)
        return err_set(err, HAUL_EPROTO, "%s: no root element", what);
    if (root && strcmp((const char *)r->root->name, root) != 0) {
        char shown[72];
        return err_set(err, HAUL_EPROTO, "%s: root element <%s>, expected <%s>", what,
                       printable((const char *)r->root->name, shown), root);
    }
    return 0;
}

static void doc_close(struct resp *r)
{
    xmlFreeDoc(r->doc);
    strbuf_release(&r->text);
    strbuf_release(&r->key);
    strbuf_release(&r->etag);
    strbuf_release(&r->aux);
}

/* ---- reading elements ---------------------------------------------------- */

static bool is_element(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

static const xmlNode *child(const xmlNode *parent, const char *name)
{
    for (const xmlNode *n = parent->children; n; n = n->next)
        if (is_element(n, name))
            return n;
    return NULL;
}

/* The element's own text and CDATA, never expanding entity references. */
static int text_of(struct resp *r, const xmlNode *el, struct strbuf *sb)
{
    strbuf_reset(sb);
    strbuf_add(sb, "", 0);
    for (const xmlNode *n = el ? el->children : NULL; n; n = n->next)
        if ((n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) && n->content)
            strbuf_adds(sb, (const char *)n->content);
    return sb->failed ? no_memory(r) : 0;
}

/* Text of parent's first <name> into sb ("" when absent). */
static int field(struct resp *r, const xmlNode *parent, const char *name, struct strbuf *sb)
{
    return text_of(r, child(parent, name), sb);
}

static int missing(struct resp *r, const xmlNode *parent, const char *name)
{
    return err_set(r->err, HAUL_EPROTO, "%s: <%s> without <%s>", r->what,
                   (const char *)parent->name, name);
}

static int bad_value(struct resp *r, const char *name, const char *value)
{
    char shown[72];
    return err_set(r->err, HAUL_EPROTO, "%s: bad <%s> '%s'", r->what, name,
                   printable(value, shown));
}

/* Like field, but the element must be present. */
static int need_field(struct resp *r, const xmlNode *parent, const char *name, struct strbuf *sb)
{
    const xmlNode *el = child(parent, name);
    return el ? text_of(r, el, sb) : missing(r, parent, name);
}

/* A non-negative decimal that fits uint64: digits only, no sign or spaces. */
static bool parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static int need_u64(struct resp *r, const xmlNode *parent, const char *name, uint64_t *v)
{
    int rc = need_field(r, parent, name, &r->text);
    if (rc == 0 && !parse_u64(strbuf_str(&r->text), v))
        rc = bad_value(r, name, strbuf_str(&r->text));
    return rc;
}

static int need_part_number(struct resp *r, const xmlNode *parent, int *part_number)
{
    uint64_t v = 0;
    int rc = need_u64(r, parent, "PartNumber", &v);
    if (rc == 0 && (v < 1 || v > MAX_PART_NUMBER))
        return bad_value(r, "PartNumber", strbuf_str(&r->text));
    if (rc == 0)
        *part_number = (int)v;
    return rc;
}

/* Exactly n decimal digits. */
static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* "Z", "+hh:mm", "-hh:mm" or nothing (S3 times are UTC) ending the string:
 * the offset east of UTC in seconds. */
static bool parse_zone(const char *s, long *offset)
{
    int h, m;
    if (s[0] == '\0' || (s[0] == 'Z' && s[1] == '\0')) {
        *offset = 0;
        return true;
    }
    if ((s[0] != '+' && s[0] != '-') || !digits(s + 1, 2, &h) || s[3] != ':' ||
        !digits(s + 4, 2, &m) || s[6] != '\0' || h > 23 || m > 59)
        return false;
    *offset = (s[0] == '-' ? -1L : 1L) * (h * 3600L + m * 60L);
    return true;
}

/* ISO 8601 as S3 sends it, "2009-10-12T17:50:30.000Z"; the fraction and zone are optional. */
static bool parse_time(const char *s, time_t *out)
{
    struct tm tm = {0};
    long offset;
    if (!digits(s, 4, &tm.tm_year) || s[4] != '-' || !digits(s + 5, 2, &tm.tm_mon) ||
        s[7] != '-' || !digits(s + 8, 2, &tm.tm_mday) || s[10] != 'T' ||
        !digits(s + 11, 2, &tm.tm_hour) || s[13] != ':' || !digits(s + 14, 2, &tm.tm_min) ||
        s[16] != ':' || !digits(s + 17, 2, &tm.tm_sec))
        return false;
    const char *p = s + 19;
    if (*p == '.' && p[1] >= '0' && p[1] <= '9')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    if (!parse_zone(p, &offset) || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
        tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = timegm(&tm) - offset;
    return true;
}

/* An optional date: 0 when absent. */
static int field_time(struct resp *r, const xmlNode *parent, const char *name, time_t *t)
{
    *t = 0;
    const xmlNode *el = child(parent, name);
    int rc = el ? text_of(r, el, &r->text) : 0;
    if (rc == 0 && el && !parse_time(strbuf_str(&r->text), t))
        rc = bad_value(r, name, strbuf_str(&r->text));
    return rc;
}

/* An optional "true" or "false": false when absent. */
static int field_bool(struct resp *r, const xmlNode *parent, const char *name, bool *b)
{
    const xmlNode *el = child(parent, name);
    int rc = el ? text_of(r, el, &r->text) : 0;
    const char *s = strbuf_str(&r->text);
    *b = false;
    if (rc || !el || strcmp(s, "false") == 0)
        return rc;
    if (strcmp(s, "true") != 0)
        return bad_value(r, name, s);
    *b = true;
    return 0;
}

/* An identifier (token, marker, upload id) into dst: cutting one would break
 * the next request, so one that does not fit is an error.  "" when absent. */
static int field_copy(struct resp *r, const xmlNode *parent, const char *name, char *dst,
                      size_t cap)
{
    int rc = field(r, parent, name, &r->text);
    if (rc == 0 && r->text.len >= cap)
        return err_set(r->err, HAUL_EPROTO, "%s: <%s> longer than %zu bytes", r->what, name,
                       cap ? cap - 1 : 0);
    if (rc == 0)
        memcpy(dst, strbuf_str(&r->text), r->text.len + 1);
    return rc;
}

/* Human text into dst, cut at a UTF-8 character boundary when it does not fit. */
static void copy_truncated(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* The ETag without its surrounding quotes (sent as " or &quot;). */
static const char *unquote(struct strbuf *sb)
{
    char *s = sb->s;
    if (sb->len > 0 && s[sb->len - 1] == '"')
        s[--sb->len] = '\0';
    return s[0] == '"' ? s + 1 : s;
}

/* ---- URL-encoded keys (EncodingType=url) --------------------------------- */

/* The text of el, a key, into r->key, decoded when url; key_len may count NULs.
 * AWS and MinIO encode keys as form values (space as '+', '+' itself as %2B),
 * Ceph RGW a space as %20: decoding '+' as a space reads all three. */
static int key_text(struct resp *r, const xmlNode *el, bool url)
{
    int rc = text_of(r, el, url ? &r->aux : &r->key);
    if (rc || !url)
        return rc;
    strbuf_reset(&r->key);
    if (uri_decode(&r->key, strbuf_str(&r->aux), r->aux.len, true) < 0) {
        char shown[72];
        if (r->key.failed)
            return no_memory(r);
        return err_set(r->err, HAUL_EPROTO, "%s: bad url-encoded <%s> '%s'", r->what,
                       (const char *)el->name, printable(strbuf_str(&r->aux), shown));
    }
    return 0;
}

/* Whether the response says keys are URL-encoded; an unknown encoding is an error. */
static int encoding_is_url(struct resp *r, bool *url)
{
    const xmlNode *el = child(r->root, "EncodingType");
    int rc = el ? text_of(r, el, &r->text) : 0;
    *url = false;
    if (rc || !el)
        return rc;
    if (strcmp(strbuf_str(&r->text), "url") != 0)
        return bad_value(r, "EncodingType", strbuf_str(&r->text));
    *url = true;
    return 0;
}

/* ---- <Error> documents ----------------------------------------------------- */

static int error_doc_fill(struct resp *r, struct s3_error_doc *out)
{
    static const struct {
        const char *name;
        size_t offset, cap;
    } fields[] = {
        {"Code", offsetof(struct s3_error_doc, code), sizeof out->code},
        {"Message", offsetof(struct s3_error_doc, message), sizeof out->message},
        {"Key", offsetof(struct s3_error_doc, key), sizeof out->key},
        {"BucketName", offsetof(struct s3_error_doc, bucket), sizeof out->bucket},
        {"RequestId", offsetof(struct s3_error_doc, request_id), sizeof out->request_id},
    };
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        int rc = field(r, r->root, fields[i].name, &r->text);
        if (rc)
            return rc;
        copy_truncated((char *)out + fields[i].offset, fields[i].cap, strbuf_str(&r->text));
    }
    return 0;
}

int s3_xml_error_parse(const char *body, size_t len, struct s3_error_doc *out)
{
    struct resp r;
    memset(out, 0, sizeof *out);
    int rc = doc_open(&r, body, len, "S3 error response", "Error", NULL);
    if (rc == 0)
        rc = error_doc_fill(&r, out);
    doc_close(&r);
    return rc ? -1 : 0;
}

/* ---- ListObjectsV2 ------------------------------------------------------------ */

static int list_contents(struct resp *r, const xmlNode *el, bool url, s3_list_entry_fn fn,
                         void *ctx)
{
    struct s3_list_entry e = {0};
    const xmlNode *key = child(el, "Key");
    int rc = key ? key_text(r, key, url) : missing(r, el, "Key");
    if (rc == 0)
        rc = need_u64(r, el, "Size", &e.size);
    if (rc == 0)
        rc = field_time(r, el, "LastModified", &e.mtime);
    if (rc == 0)
        rc = field(r, el, "ETag", &r->etag);
    if (rc == 0)
        rc = field(r, el, "StorageClass", &r->aux);
    if (rc)
        return rc;
    e.key = strbuf_str(&r->key);
    e.key_len = r->key.len;
    e.etag = unquote(&r->etag);
    e.storage_class = r->aux.len ? strbuf_str(&r->aux) : "STANDARD";
    return fn ? fn(&e, ctx) : 0;
}

/* One call per <Prefix> in a <CommonPrefixes> (AWS sends one per element). */
static int list_prefixes(struct resp *r, const xmlNode *el, bool url, s3_list_entry_fn fn,
                         void *ctx)
{
    int rc = 0;
    for (const xmlNode *n = el->children; n && rc == 0; n = n->next) {
        if (!is_element(n, "Prefix"))
            continue;
        rc = key_text(r, n, url);
        struct s3_list_entry e = {.key = strbuf_str(&r->key), .key_len = r->key.len,
                                  .is_prefix = true, .etag = "", .storage_class = ""};
        if (rc == 0 && fn)
            rc = fn(&e, ctx);
    }
    return rc;
}

static int list_page_fill(struct resp *r, struct s3_list_page *page)
{
    int rc = field_bool(r, r->root, "IsTruncated", &page->truncated);
    if (rc == 0)
        rc = field_copy(r, r->root, "NextContinuationToken", page->next_token,
                        sizeof page->next_token);
    return rc;
}

int s3_xml_list_objects_parse(const char *body, size_t len, s3_list_entry_fn fn, void *ctx,
                              struct s3_list_page *page, haul_error *err)
{
    struct s3_list_page ignored = {0};
    struct resp r;
    bool url = false;
    page = page ? page : &ignored;
    memset(page, 0, sizeof *page);
    int rc = doc_open(&r, body, len, "ListObjectsV2 response", "ListBucketResult", err);
    rc = rc ? rc : encoding_is_url(&r, &url);
    rc = rc ? rc : list_page_fill(&r, page);
    for (const xmlNode *n = rc ? NULL : r.root->children; n && rc == 0; n = n->next) {
        if (is_element(n, "Contents"))
            rc = list_contents(&r, n, url, fn, ctx);
        else if (is_element(n, "CommonPrefixes"))
            rc = list_prefixes(&r, n, url, fn, ctx);
    }
    doc_close(&r);
    return rc;
}

/* ---- ListBuckets ------------------------------------------------------------------ */

static int bucket_entry(struct resp *r, const xmlNode *el, s3_bucket_fn fn, void *ctx)
{
    time_t created;
    int rc = need_field(r, el, "Name", &r->key);
    rc = rc ? rc : field_time(r, el, "CreationDate", &created);
    return rc ? rc : fn ? fn(strbuf_str(&r->key), created, ctx) : 0;
}

int s3_xml_list_buckets_parse(const char *body, size_t len, s3_bucket_fn fn, void *ctx,
                              haul_error *err)
{
    struct resp r;
    int rc = doc_open(&r, body, len, "ListBuckets response", "ListAllMyBucketsResult", err);
    const xmlNode *buckets = rc ? NULL : child(r.root, "Buckets");
    for (const xmlNode *n = buckets ? buckets->children : NULL; n && rc == 0; n = n->next)
        if (is_element(n, "Bucket"))
            rc = bucket_entry(&r, n, fn, ctx);
    doc_close(&r);
    return rc;
}

/* ---- CreateMultipartUpload ---------------------------------------------------------- */

int s3_xml_upload_id_parse(const char *body, size_t len, char *upload_id, size_t cap,
                           haul_error *err)
{
    struct resp r;
    if (cap > 0)
        upload_id[0] = '\0';
    int rc = doc_open(&r, body, len, "CreateMultipartUpload response",
                      "InitiateMultipartUploadResult", err);
    rc = rc ? rc : need_field(&r, r.root, "UploadId", &r.text);
    if (rc == 0 && r.text.len == 0)
        rc = err_set(err, HAUL_EPROTO, "%s: empty <UploadId>", r.what);
    rc = rc ? rc : field_copy(&r, r.root, "UploadId", upload_id, cap);
    doc_close(&r);
    return rc;
}

/* ---- ListParts ---------------------------------------------------------------------- */

static int part_entry(struct resp *r, const xmlNode *el, s3_part_fn fn, void *ctx)
{
    int part_number = 0;
    uint64_t size = 0;
    int rc = need_part_number(r, el, &part_number);
    rc = rc ? rc : need_u64(r, el, "Size", &size);
    rc = rc ? rc : field(r, el, "ETag", &r->etag);
    return rc ? rc : fn ? fn(part_number, size, unquote(&r->etag), ctx) : 0;
}

int s3_xml_list_parts_parse(const char *body, size_t len, s3_part_fn fn, void *ctx,
                            struct s3_list_page *page, haul_error *err)
{
    struct s3_list_page ignored = {0};
    struct resp r;
    page = page ? page : &ignored;
    memset(page, 0, sizeof *page);
    int rc = doc_open(&r, body, len, "ListParts response", "ListPartsResult", err);
    rc = rc ? rc : field_bool(&r, r.root, "IsTruncated", &page->truncated);
    rc = rc ? rc : field_copy(&r, r.root, "NextPartNumberMarker", page->next_token,
                              sizeof page->next_token);
    for (const xmlNode *n = rc ? NULL : r.root->children; n && rc == 0; n = n->next)
        if (is_element(n, "Part"))
            rc = part_entry(&r, n, fn, ctx);
    doc_close(&r);
    return rc;
}

/* ---- ListMultipartUploads ------------------------------------------------------------ */

/* A key for a NUL-terminated callback argument: a decoded NUL cannot pass. */
static int key_no_nul(struct resp *r, const xmlNode *parent, const char *name, bool url)
{
    const xmlNode *el = child(parent, name);
    int rc = el ? key_text(r, el, url) : missing(r, parent, name);
    if (rc == 0 && strlen(strbuf_str(&r->key)) != r->key.len)
        rc = err_set(r->err, HAUL_EPROTO, "%s: <%s> with a NUL byte", r->what, name);
    return rc;
}

static int upload_entry(struct resp *r, const xmlNode *el, bool url, s3_upload_fn fn, void *ctx)
{
    time_t initiated;
    int rc = key_no_nul(r, el, "Key", url);
    rc = rc ? rc : need_field(r, el, "UploadId", &r->etag);
    rc = rc ? rc : field_time(r, el, "Initiated", &initiated);
    return rc ? rc : fn ? fn(strbuf_str(&r->key), strbuf_str(&r->etag), initiated, ctx) : 0;
}

static int uploads_page_fill(struct resp *r, bool url, struct s3_uploads_page *page)
{
    int rc = field_bool(r, r->root, "IsTruncated", &page->truncated);
    rc = rc ? rc : field_copy(r, r->root, "NextUploadIdMarker", page->next_upload_id_marker,
                              sizeof page->next_upload_id_marker);
    if (rc || !child(r->root, "NextKeyMarker"))
        return rc;
    rc = key_no_nul(r, r->root, "NextKeyMarker", url);
    if (rc == 0 && r->key.len >= sizeof page->next_key_marker)
        rc = err_set(r->err, HAUL_EPROTO, "%s: <NextKeyMarker> longer than %zu bytes", r->what,
                     sizeof page->next_key_marker - 1);
    if (rc == 0)
        memcpy(page->next_key_marker, strbuf_str(&r->key), r->key.len + 1);
    return rc;
}

int s3_xml_list_uploads_parse(const char *body, size_t len, s3_upload_fn fn, void *ctx,
                              struct s3_uploads_page *page, haul_error *err)
{
    struct s3_uploads_page ignored = {0};
    struct resp r;
    bool url = false;
    page = page ? page : &ignored;
    memset(page, 0, sizeof *page);
    int rc = doc_open(&r, body, len, "ListMultipartUploads response",
                      "ListMultipartUploadsResult", err);
    rc = rc ? rc : encoding_is_url(&r, &url);
    rc = rc ? rc : uploads_page_fill(&r, url, page);
    for (const xmlNode *n = rc ? NULL : r.root->children; n && rc == 0; n = n->next)
        if (is_element(n, "Upload"))
            rc = upload_entry(&r, n, url, fn, ctx);
    doc_close(&r);
    return rc;
}

/* ---- DeleteObjects -------------------------------------------------------------------- */

static int delete_error(struct resp *r, const xmlNode *el, s3_delete_error_fn fn, void *ctx)
{
    int rc = field(r, el, "Key", &r->key);
    rc = rc ? rc : field(r, el, "Code", &r->etag);
    rc = rc ? rc : field(r, el, "Message", &r->aux);
    if (rc || !fn)
        return rc;
    return fn(strbuf_str(&r->key), strbuf_str(&r->etag), strbuf_str(&r->aux), ctx);
}

int s3_xml_delete_result_parse(const char *body, size_t len, s3_delete_error_fn fn, void *ctx,
                               size_t *deleted, haul_error *err)
{
    struct resp r;
    size_t count = 0;
    int rc = doc_open(&r, body, len, "DeleteObjects response", "DeleteResult", err);
    for (const xmlNode *n = rc ? NULL : r.root->children; n && rc == 0; n = n->next) {
        if (is_element(n, "Deleted"))
            count++;
        else if (is_element(n, "Error"))
            rc = delete_error(&r, n, fn, ctx);
    }
    if (deleted)
        *deleted = count;
    doc_close(&r);
    return rc;
}

/* ---- CompleteMultipartUpload, CopyObject, UploadPartCopy ------------------------------ */

static bool is_etag_result(const xmlNode *root)
{
    return is_element(root, "CompleteMultipartUploadResult") ||
           is_element(root, "CopyObjectResult") || is_element(root, "CopyPartResult");
}

/* The 200-with-<Error> case: reported in *is_error, or as an S3 error without it. */
static int result_error(struct resp *r, bool *is_error, struct s3_error_doc *doc)
{
    struct s3_error_doc local = {0};
    doc = doc ? doc : &local;
    int rc = error_doc_fill(r, doc);
    if (rc || is_error) {
        if (is_error)
            *is_error = rc == 0;
        return rc;
    }
    if (r->err && r->err->code == HAUL_OK)
        copy_truncated(r->err->s3_code, sizeof r->err->s3_code, doc->code);
    return err_set(r->err, HAUL_ES3, "%s: %s: %s", r->what, doc->code, doc->message);
}

static int result_etag(struct resp *r, char *etag, size_t cap)
{
    int rc = field(r, r->root, "ETag", &r->etag);
    const char *value = rc ? "" : unquote(&r->etag);
    if (rc == 0 && strlen(value) >= cap)
        return err_set(r->err, HAUL_EPROTO, "%s: <ETag> longer than %zu bytes", r->what,
                       cap ? cap - 1 : 0);
    if (rc == 0)
        memcpy(etag, value, strlen(value) + 1);
    return rc;
}

int s3_xml_result_etag_parse(const char *body, size_t len, char *etag, size_t cap, bool *is_error,
                             struct s3_error_doc *doc, haul_error *err)
{
    struct resp r;
    char shown[72];
    if (cap > 0)
        etag[0] = '\0';
    if (is_error)
        *is_error = false;
    int rc = doc_open(&r, body, len, "CompleteMultipartUpload/CopyObject response", NULL, err);
    if (rc == 0 && is_element(r.root, "Error"))
        rc = result_error(&r, is_error, doc);
    else if (rc == 0 && is_etag_result(r.root))
        rc = result_etag(&r, etag, cap);
    else if (rc == 0)
        rc = err_set(err, HAUL_EPROTO,
                     "%s: root element <%s>, expected <CompleteMultipartUploadResult>, "
                     "<CopyObjectResult>, <CopyPartResult> or <Error>",
                     r.what, printable((const char *)r.root->name, shown));
    doc_close(&r);
    return rc;
}

/* ---- request bodies ------------------------------------------------------------------- */

/* Length of the UTF-8 sequence at s (at most n bytes) holding a character XML
 * 1.0 allows, or 0: control bytes other than tab, LF and CR, malformed or
 * overlong UTF-8, surrogates, U+FFFE and U+FFFF have no XML spelling. */
static size_t xml_char_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return s[0] >= 0x20 || s[0] == '\t' || s[0] == '\n' || s[0] == '\r' ? 1 : 0;
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (len == 0 || s[0] > 0xf4 || len > n)
        return 0;
    uint32_t c = s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3f);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    bool bad = c < min[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff) || c == 0xfffe ||
               c == 0xffff;
    return bad ? 0 : len;
}

/* Appends s escaped as XML character data.  CR is sent as &#13; because XML
 * parsers turn a literal CR into LF.  -1 when s cannot be written in XML 1.0. */
static int escape(struct strbuf *out, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0, len; i < n; i += len) {
        len = xml_char_len((const unsigned char *)s + i, n - i);
        if (len == 0)
            return -1;
        const char *entity = s[i] == '&'    ? "&amp;"
                             : s[i] == '<'  ? "&lt;"
                             : s[i] == '>'  ? "&gt;"
                             : s[i] == '"'  ? "&quot;"
                             : s[i] == '\'' ? "&apos;"
                             : s[i] == '\r' ? "&#13;"
                                            : NULL;
        if (entity ? strbuf_adds(out, entity) : strbuf_add(out, s + i, len))
            return -1;
    }
    return 0;
}

/* Undoes a failed build, leaving out as the caller passed it. */
static int build_failed(struct strbuf *out, size_t start)
{
    if (out->s && out->len > start) {
        out->len = start;
        out->s[start] = '\0';
    }
    return -1;
}

/* Parts must be numbered 1..10000 and have an ETag; an empty list is
 * malformed for S3, so it is refused too. */
int s3_xml_complete_build(struct strbuf *out, const struct s3_completed_part *parts, size_t n)
{
    size_t start = out->len;
    if (n == 0 || strbuf_adds(out, "<CompleteMultipartUpload xmlns=\"" S3_XMLNS "\">"))
        return build_failed(out, start);
    for (size_t i = 0; i < n; i++) {
        const struct s3_completed_part *p = &parts[i];
        if (p->part_number < 1 || p->part_number > MAX_PART_NUMBER || !p->etag ||
            strbuf_addf(out, "<Part><PartNumber>%d</PartNumber><ETag>\"", p->part_number) ||
            escape(out, p->etag) || strbuf_adds(out, "\"</ETag></Part>"))
            return build_failed(out, start);
    }
    if (strbuf_adds(out, "</CompleteMultipartUpload>"))
        return build_failed(out, start);
    return 0;
}

/* Keys must be valid UTF-8 made of XML 1.0 characters (see xml_char_len): the
 * caller deletes any other key one by one with DeleteObject. */
int s3_xml_delete_build(struct strbuf *out, const char *const *keys, size_t n)
{
    size_t start = out->len;
    if (n == 0 || strbuf_adds(out, "<Delete xmlns=\"" S3_XMLNS "\"><Quiet>true</Quiet>"))
        return build_failed(out, start);
    for (size_t i = 0; i < n; i++)
        if (!keys[i] || strbuf_adds(out, "<Object><Key>") || escape(out, keys[i]) ||
            strbuf_adds(out, "</Key></Object>"))
            return build_failed(out, start);
    if (strbuf_adds(out, "</Delete>"))
        return build_failed(out, start);
    return 0;
}

/* ---- Lifecycle ---------------------------------------------------------------------- */

static int rule_size_filter(struct resp *r, const xmlNode *rule, int64_t *size_gt)
{
    const xmlNode *filter = child(rule, "Filter");
    const xmlNode *and = filter ? child(filter, "And") : NULL;
    const xmlNode *holder = and ? and : filter;
    const xmlNode *el = holder ? child(holder, "ObjectSizeGreaterThan") : NULL;
    *size_gt = -1;
    if (!el)
        return 0;
    uint64_t v = 0;
    int rc = text_of(r, el, &r->aux);
    if (rc == 0 && (!parse_u64(strbuf_str(&r->aux), &v) || v > INT64_MAX))
        rc = bad_value(r, "ObjectSizeGreaterThan", strbuf_str(&r->aux));
    if (rc == 0)
        *size_gt = (int64_t)v;
    return rc;
}

static int rule_entry(struct resp *r, const xmlNode *el, s3_rule_fn fn, void *ctx)
{
    struct s3_lifecycle_rule rule = {.transition_days = -1};
    struct strbuf id = STRBUF_INIT, status = STRBUF_INIT, prefix = STRBUF_INIT, sc = STRBUF_INIT;
    const xmlNode *filter = child(el, "Filter");
    const xmlNode *and = filter ? child(filter, "And") : NULL;
    const xmlNode *transition = child(el, "Transition");
    int rc = field(r, el, "ID", &id);
    rc = rc ? rc : field(r, el, "Status", &status);
    /* The prefix may sit in the rule (old form), the filter, or its And. */
    rc = rc ? rc : field(r, and ? and : filter ? filter : el, "Prefix", &prefix);
    rc = rc ? rc : rule_size_filter(r, el, &rule.size_greater_than);
    if (rc == 0 && transition) {
        rc = field(r, transition, "StorageClass", &sc);
        uint64_t days = 0;
        rc = rc ? rc : field(r, transition, "Days", &r->aux);
        if (rc == 0 && r->aux.len && (!parse_u64(strbuf_str(&r->aux), &days) || days > 100000))
            rc = bad_value(r, "Days", strbuf_str(&r->aux));
        rule.transition_days = (int)days;
    }
    if (rc == 0 && fn) {
        rule.id = strbuf_str(&id);
        rule.enabled = strcmp(strbuf_str(&status), "Enabled") == 0;
        rule.prefix = strbuf_str(&prefix);
        rule.storage_class = strbuf_str(&sc);
        rc = fn(&rule, ctx);
    }
    strbuf_release(&id);
    strbuf_release(&status);
    strbuf_release(&prefix);
    strbuf_release(&sc);
    return rc;
}

int s3_xml_lifecycle_parse(const char *body, size_t len, s3_rule_fn fn, void *ctx, haul_error *err)
{
    struct resp r;
    int rc = doc_open(&r, body, len, "GetBucketLifecycleConfiguration response",
                      "LifecycleConfiguration", err);
    for (const xmlNode *n = rc ? NULL : r.root->children; n && rc == 0; n = n->next)
        if (is_element(n, "Rule"))
            rc = rule_entry(&r, n, fn, ctx);
    doc_close(&r);
    return rc;
}

int s3_xml_lifecycle_build(struct strbuf *out, const struct s3_lifecycle_rule *rule)
{
    size_t start = out->len;
    strbuf_adds(out, "<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule><ID>");
    if (escape(out, rule->id) < 0)
        return build_failed(out, start);
    strbuf_addf(out, "</ID><Filter><ObjectSizeGreaterThan>%lld</ObjectSizeGreaterThan></Filter>"
                     "<Status>%s</Status><Transition><Days>%d</Days><StorageClass>",
                (long long)rule->size_greater_than, rule->enabled ? "Enabled" : "Disabled",
                rule->transition_days);
    if (escape(out, rule->storage_class) < 0)
        return build_failed(out, start);
    strbuf_adds(out, "</StorageClass></Transition></Rule></LifecycleConfiguration>");
    return out->failed ? build_failed(out, start) : 0;
}

/* libFuzzer target for s3/xml: every response parser, and both body builders, on one input.
 * Build and run: see tests/fuzz/README.md.  With -DFUZZ_REPLAY_MAIN it is a plain program
 * that replays the files named on its command line (for CI without clang). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "s3/xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The callbacks read every byte they are given, so ASan sees any bad pointer. */
static size_t sink;

static void touch(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sink += (unsigned char)s[i];
}

static int on_entry(const struct s3_list_entry *e, void *ctx)
{
    (void)ctx;
    touch(e->key, e->key_len + 1); /* key is NUL-terminated after key_len bytes */
    touch(e->etag, strlen(e->etag));
    touch(e->storage_class, strlen(e->storage_class));
    sink += e->size + (size_t)e->mtime + e->is_prefix;
    return 0;
}

static int on_bucket(const char *name, time_t created, void *ctx)
{
    (void)ctx;
    touch(name, strlen(name));
    sink += (size_t)created;
    return 0;
}

static int on_part(int part_number, uint64_t size, const char *etag, void *ctx)
{
    (void)ctx;
    if (part_number < 1 || part_number > 10000)
        abort(); /* the parser promised 1..10000 */
    touch(etag, strlen(etag));
    sink += size;
    return 0;
}

static int on_upload(const char *key, const char *upload_id, time_t initiated, void *ctx)
{
    (void)ctx;
    touch(key, strlen(key));
    touch(upload_id, strlen(upload_id));
    sink += (size_t)initiated;
    return 0;
}

static int on_delete_error(const char *key, const char *code, const char *message, void *ctx)
{
    (void)ctx;
    touch(key, strlen(key));
    touch(code, strlen(code));
    touch(message, strlen(message));
    return 0;
}

/* A filled message or fixed field must be a terminated string within its array. */
static void check_string(const char *s, size_t cap)
{
    if (!memchr(s, '\0', cap))
        abort();
}

static void check_error(const haul_error *err, int rc)
{
    check_string(err->msg, sizeof err->msg);
    if ((rc < 0) != (err->code != HAUL_OK) || (rc < 0 && rc != -err->code))
        abort(); /* a failure must come with its message, a success without one */
}

static void parse_all(const char *body, size_t len)
{
    haul_error err = {0};
    struct s3_error_doc doc;
    if (s3_xml_error_parse(body, len, &doc) == 0)
        check_string(doc.message, sizeof doc.message);

    struct s3_list_page page;
    int rc = s3_xml_list_objects_parse(body, len, on_entry, NULL, &page, &err);
    check_error(&err, rc);
    check_string(page.next_token, sizeof page.next_token);

    err = (haul_error){0};
    check_error(&err, s3_xml_list_buckets_parse(body, len, on_bucket, NULL, &err));

    char id[256];
    err = (haul_error){0};
    check_error(&err, s3_xml_upload_id_parse(body, len, id, sizeof id, &err));
    check_string(id, sizeof id);

    err = (haul_error){0};
    check_error(&err, s3_xml_list_parts_parse(body, len, on_part, NULL, &page, &err));

    struct s3_uploads_page uploads;
    err = (haul_error){0};
    check_error(&err, s3_xml_list_uploads_parse(body, len, on_upload, NULL, &uploads, &err));
    check_string(uploads.next_key_marker, sizeof uploads.next_key_marker);

    size_t deleted;
    err = (haul_error){0};
    check_error(&err, s3_xml_delete_result_parse(body, len, on_delete_error, NULL, &deleted, &err));

    char etag[128];
    bool is_error;
    err = (haul_error){0};
    rc = s3_xml_result_etag_parse(body, len, etag, sizeof etag, &is_error, &doc, &err);
    check_error(&err, rc);
    check_string(etag, sizeof etag);
}

/* A DeleteObjects body the builder accepted must read back, with libxml2, as
 * exactly the keys it was given. */
static void check_delete_body(const struct strbuf *out, const char *const *keys, size_t n)
{
    xmlDoc *doc = xmlReadMemory(out->s, (int)out->len, NULL, NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
    size_t i = 0;
    if (!root)
        abort();
    for (xmlNode *obj = root->children; obj; obj = obj->next) {
        if (obj->type != XML_ELEMENT_NODE || strcmp((const char *)obj->name, "Object") != 0)
            continue;
        xmlChar *key = xmlNodeGetContent(obj->children);
        if (i >= n || !key || strcmp((const char *)key, keys[i++]) != 0)
            abort();
        xmlFree(key);
    }
    if (i != n)
        abort();
    xmlFreeDoc(doc);
}

/* The input split at newlines into keys (and ETags) for the builders. */
static void build_all(const char *body, size_t len)
{
    char *copy = malloc(len + 1);
    const char *keys[16];
    struct s3_completed_part parts[16];
    size_t n = 0;
    if (!copy)
        return;
    memcpy(copy, body, len);
    copy[len] = '\0';
    for (char *p = copy, *end; n < 16 && p; p = end ? end + 1 : NULL, n++) {
        end = strchr(p, '\n');
        if (end)
            *end = '\0';
        keys[n] = p;
        parts[n] = (struct s3_completed_part){.part_number = (int)n + 1, .etag = p};
    }
    struct strbuf out = STRBUF_INIT;
    if (s3_xml_delete_build(&out, keys, n) == 0)
        check_delete_body(&out, keys, n);
    strbuf_reset(&out);
    s3_xml_complete_build(&out, parts, n);
    strbuf_release(&out);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse_all((const char *)data, size);
    build_all((const char *)data, size);
    return 0;
}

#ifdef FUZZ_REPLAY_MAIN
/* Replays each file named on the command line once; exits non-zero if one
 * cannot be read (a crash is the sanitizers' or abort()'s to report). */
static int replay(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    do {
        if (len == cap) {
            char *bigger = realloc(buf, cap = cap ? cap * 2 : 65536);
            if (!bigger) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = bigger;
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
    } while (got > 0);
    int failed = ferror(f);
    fclose(f);
    if (!failed)
        LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
    free(buf);
    return failed ? -1 : 0;
}

int main(int argc, char **argv)
{
    int status = 0;
    for (int i = 1; i < argc; i++) {
        if (replay(argv[i]) < 0)
            status = 1;
        else
            printf("replayed %s\n", argv[i]);
    }
    return status;
}
#endif

/* cmd/objects: haul ls, stat, rm, mb and rb. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/cmd.h"
#include "util/err.h"

static void time_format(time_t t, char *out, size_t cap)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm);
}

struct ls_state {
    const struct global_opts *g;
    const char *bucket;
    uint64_t objects, bytes;
};

static int ls_entry(const struct s3_list_entry *e, void *arg)
{
    struct ls_state *s = arg;
    if (memchr(e->key, '\0', e->key_len)) {
        fprintf(stderr, "haul ls: skipping a key with a NUL byte in s3://%s\n", s->bucket);
        return 0;
    }
    if (s->g->json) {
        printf("{\"key\":");
        json_string(stdout, e->key);
        if (e->is_prefix) {
            printf(",\"prefix\":true}\n");
            return 0;
        }
        char when[32];
        time_format(e->mtime, when, sizeof when);
        printf(",\"size\":%llu,\"mtime\":\"%sZ\",\"etag\":", (unsigned long long)e->size, when);
        json_string(stdout, e->etag);
        printf(",\"storage_class\":");
        json_string(stdout, e->storage_class);
        printf("}\n");
    } else if (e->is_prefix) {
        printf("%19s %12s %-12s %s\n", "", "", "PRE", e->key);
    } else {
        char when[32];
        time_format(e->mtime, when, sizeof when);
        printf("%19s %12llu %-12s %s\n", when, (unsigned long long)e->size, e->storage_class, e->key);
    }
    if (!e->is_prefix) {
        s->objects++;
        s->bytes += e->size;
    }
    return 0;
}

static int ls_bucket(const char *name, time_t created, void *arg)
{
    const struct global_opts *g = arg;
    char when[32];
    time_format(created, when, sizeof when);
    if (g->json) {
        printf("{\"bucket\":");
        json_string(stdout, name);
        printf(",\"created\":\"%sZ\"}\n", when);
    } else {
        printf("%s %s\n", when, name);
    }
    return 0;
}

int cmd_ls(int argc, char **argv)
{
    static const struct command_help help = {
        "ls", "[s3://BUCKET[/PREFIX]]",
        "List buckets, or the objects and common prefixes under a prefix.",
        "Columns: last modified (UTC), size in bytes, storage class, key. Without --recursive,\n"
        "keys are grouped at '/' like directories (PRE lines). --json prints one object per\n"
        "line (JSON Lines). All pages of the listing are fetched."};
    struct global_opts g = {0};
    bool recursive = false, summarize = false;
    const struct opt opts[] = {
        {"recursive", 'r', OPT_FLAG, &recursive, NULL, "list every key under the prefix"},
        {"summarize", 0, OPT_FLAG, &summarize, NULL, "print the object count and total size at the end"},
        {NULL, 0, OPT_END, NULL, NULL, NULL}};
    const char *pos[1];
    int n_pos, rc = opts_parse(&help, opts, &g, argc, argv, pos, 1, &n_pos);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    haul_error err = {0};
    struct s3_client *c = client_open("ls", &g);
    if (!c)
        return EXIT_FAILED;
    int exit_code = EXIT_OK;
    if (n_pos == 0) {
        if (s3_buckets_list(c, ls_bucket, &g, &err) < 0)
            exit_code = fail("ls", &err);
    } else {
        struct s3_url url;
        if (s3_url_parse(pos[0], &url, &err) < 0) {
            s3_client_free(c);
            return fail("ls", &err);
        }
        struct ls_state st = {&g, url.bucket, 0, 0};
        if (s3_objects_list(c, url.bucket, url.key, recursive ? NULL : "/", ls_entry, &st, &err) < 0)
            exit_code = fail("ls", &err);
        else if (summarize && !g.json)
            printf("\nTotal Objects: %llu\n   Total Size: %llu\n", (unsigned long long)st.objects,
                   (unsigned long long)st.bytes);
        s3_url_release(&url);
    }
    s3_client_free(c);
    return exit_code;
}

static void stat_print(const char *bucket, const char *key, const struct s3_object_info *info,
                       const struct global_opts *g)
{
    char when[32];
    time_format(info->mtime, when, sizeof when);
    if (g->json) {
        printf("{\"bucket\":");
        json_string(stdout, bucket);
        printf(",\"key\":");
        json_string(stdout, key);
        printf(",\"size\":%llu,\"mtime\":\"%sZ\",\"etag\":", (unsigned long long)info->size, when);
        json_string(stdout, info->etag);
        printf(",\"storage_class\":");
        json_string(stdout, info->storage_class);
        printf(",\"content_type\":");
        json_string(stdout, info->content_type);
        if (info->restore[0]) {
            printf(",\"restore\":");
            json_string(stdout, info->restore);
        }
        printf(",\"metadata\":{");
        for (size_t i = 0; i < info->n_meta; i++) {
            json_string(stdout, info->meta[i].name);
            putchar(':');
            json_string(stdout, info->meta[i].value);
            if (i + 1 < info->n_meta)
                putchar(',');
        }
        printf("}}\n");
        return;
    }
    printf("Object:        s3://%s/%s\nSize:          %llu\nLast-Modified: %s UTC\nETag:          %s\n"
           "Storage-Class: %s\nContent-Type:  %s\n",
           bucket, key, (unsigned long long)info->size, when, info->etag, info->storage_class,
           info->content_type);
    if (info->restore[0])
        printf("Restore:       %s\n", info->restore);
    for (size_t i = 0; i < info->n_meta; i++)
        printf("Metadata:      %s=%s\n", info->meta[i].name, info->meta[i].value);
}

int cmd_stat(int argc, char **argv)
{
    static const struct command_help help = {
        "stat", "s3://BUCKET/KEY", "Show an object's size, time, ETag, storage class, restore state and metadata.", NULL};
    struct global_opts g = {0};
    const struct opt opts[] = {{NULL, 0, OPT_END, NULL, NULL, NULL}};
    const char *pos[1];
    int n_pos, rc = opts_parse(&help, opts, &g, argc, argv, pos, 1, &n_pos);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    if (n_pos != 1)
        return usage_error("stat", "expected s3://BUCKET/KEY");
    haul_error err = {0};
    struct s3_url url;
    if (s3_url_parse(pos[0], &url, &err) < 0)
        return fail("stat", &err);
    int exit_code = EXIT_FAILED;
    struct s3_client *c = url.key[0] ? client_open("stat", &g) : NULL;
    if (!url.key[0])
        exit_code = usage_error("stat", "'%s': name an object", pos[0]);
    if (c) {
        struct s3_object_info info = {0};
        if (s3_object_head(c, url.bucket, url.key, &info, &err) < 0)
            exit_code = fail("stat", &err);
        else {
            stat_print(url.bucket, url.key, &info, &g);
            exit_code = EXIT_OK;
        }
        s3_object_info_release(&info);
    }
    s3_client_free(c);
    s3_url_release(&url);
    return exit_code;
}

struct rm_ctx {
    struct s3_deleter d;
    bool dry_run, quiet;
};

static int rm_done(const char *key, bool deleted, void *arg)
{
    const struct rm_ctx *r = arg;
    if (deleted && !r->quiet)
        printf("delete: s3://%s/%s\n", r->d.bucket, key);
    return 0;
}

static int rm_entry(const struct s3_list_entry *e, void *arg)
{
    struct rm_ctx *r = arg;
    if (e->is_prefix || memchr(e->key, '\0', e->key_len))
        return 0;
    if (r->dry_run) {
        printf("(dry run) delete: s3://%s/%s\n", r->d.bucket, e->key);
        return 0;
    }
    return s3_deleter_add(&r->d, e->key);
}

/* Deletes every key under prefix (NULL: the whole bucket); the counts in r->d. */
static int rm_all(struct rm_ctx *r, const char *prefix)
{
    r->d.done = rm_done;
    r->d.ctx = r;
    int rc = s3_objects_list(r->d.c, r->d.bucket, prefix, NULL, rm_entry, r, r->d.err);
    if (rc == 0)
        rc = s3_deleter_flush(&r->d);
    s3_deleter_release(&r->d);
    return rc;
}

/* rm --uploads: the unfinished multipart uploads under a prefix. */
struct uploads_ctx {
    struct s3_client *c;
    const char *bucket, *prefix, *state_dir;
    bool dry_run, quiet;
    uint64_t aborted;
    haul_error *err;
};

/* "s3://b/dir" means dir itself and the dir/ level, not dir2/ (as rm -r). */
static bool under_prefix(const char *key, const char *prefix)
{
    size_t n = strlen(prefix);
    return n == 0 || prefix[n - 1] == '/' || strcmp(key, prefix) == 0 ||
           (strncmp(key, prefix, n) == 0 && key[n] == '/');
}

static int upload_rm(const char *key, const char *upload_id, time_t initiated, void *arg)
{
    (void)initiated;
    struct uploads_ctx *u = arg;
    if (!under_prefix(key, u->prefix))
        return 0;
    if (u->dry_run) {
        printf("(dry run) abort upload: s3://%s/%s (%s)\n", u->bucket, key, upload_id);
        return 0;
    }
    haul_error e = {0};
    if (s3_mpu_abort(u->c, u->bucket, key, upload_id, &e) < 0 && e.code != HAUL_ENOTFOUND)
        return err_copy(u->err, &e);
    int journals = xfer_mpu_records_forget(u->state_dir, upload_id);
    u->aborted++;
    if (!u->quiet)
        printf("abort upload: s3://%s/%s (%s)%s\n", u->bucket, key, upload_id,
               journals ? ", its journal removed" : "");
    return 0;
}

static int uploads_rm(struct s3_client *c, const struct s3_url *url, const char *state_dir, bool dry_run,
                      const struct global_opts *g, haul_error *err)
{
    char state[4096];
    state_dir_resolve(state_dir, state, sizeof state);
    struct uploads_ctx u = {.c = c, .bucket = url->bucket, .prefix = url->key, .state_dir = state,
                            .dry_run = dry_run, .quiet = g->quiet || g->json, .err = err};
    int rc = s3_mpu_list(c, url->bucket, url->key, upload_rm, &u, err);
    if (g->json)
        printf("{\"uploads_aborted\":%llu}\n", (unsigned long long)u.aborted);
    return rc;
}

int cmd_rm(int argc, char **argv)
{
    static const struct command_help help = {
        "rm", "s3://BUCKET/KEY | --recursive s3://BUCKET[/PREFIX] | --uploads s3://BUCKET[/PREFIX]",
        "Delete one object, or with --recursive every object under a prefix (DeleteObjects, 1000 a request).",
        "--uploads aborts the unfinished multipart uploads under the prefix instead (those an\n"
        "interrupted put or backup kept for resuming), and removes their journals from the state\n"
        "directory; objects are not touched."};
    struct global_opts g = {0};
    bool recursive = false, dry_run = false, uploads = false;
    const char *state_dir = NULL;
    const struct opt opts[] = {
        {"recursive", 'r', OPT_FLAG, &recursive, NULL, "delete every object under the prefix"},
        {"uploads", 0, OPT_FLAG, &uploads, NULL, "abort the unfinished multipart uploads under the prefix"},
        {"state-dir", 0, OPT_STRING, &state_dir, "DIR", "with --uploads: where the journals are (default ~/.local/state/haul)"},
        {"dry-run", 'n', OPT_FLAG, &dry_run, NULL, "only print what would be deleted"},
        {NULL, 0, OPT_END, NULL, NULL, NULL}};
    const char *pos[1];
    int n_pos, rc = opts_parse(&help, opts, &g, argc, argv, pos, 1, &n_pos);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    if (n_pos != 1)
        return usage_error("rm", "expected s3://BUCKET/KEY");
    haul_error err = {0};
    struct s3_url url;
    if (s3_url_parse(pos[0], &url, &err) < 0)
        return fail("rm", &err);
    if (uploads && recursive) {
        s3_url_release(&url);
        return usage_error("rm", "--uploads and --recursive: run them one after the other");
    }
    if (!recursive && !uploads && !url.key[0]) {
        s3_url_release(&url);
        return usage_error("rm", "'%s': name an object, or use --recursive", pos[0]);
    }
    struct s3_client *c = client_open("rm", &g);
    int exit_code = EXIT_FAILED;
    if (c && uploads) {
        rc = uploads_rm(c, &url, state_dir, dry_run, &g, &err);
        exit_code = rc == 0 ? EXIT_OK : fail("rm", &err);
    } else if (c && !recursive) {
        if (dry_run)
            printf("(dry run) delete: s3://%s/%s\n", url.bucket, url.key);
        rc = dry_run ? 0 : s3_object_delete(c, url.bucket, url.key, &err);
        if (rc == 0 && !dry_run && !g.quiet && !g.json)
            printf("delete: s3://%s/%s\n", url.bucket, url.key);
        exit_code = rc == 0 ? EXIT_OK : fail("rm", &err);
    } else if (c) {
        struct rm_ctx r = {.d = {.c = c, .bucket = url.bucket, .err = &err}, .dry_run = dry_run,
                           .quiet = g.quiet || g.json};
        /* "rm -r s3://b/dir" means the dir/ level, not every key starting
         * with "dir" (dir2/, dir.txt), as aws s3 rm does. */
        size_t klen = strlen(url.key);
        char *prefix = malloc(klen + 2);
        if (prefix)
            snprintf(prefix, klen + 2, "%s%s", url.key, klen && url.key[klen - 1] != '/' ? "/" : "");
        rc = prefix ? rm_all(&r, prefix) : err_set(&err, HAUL_ENOMEM, "out of memory");
        free(prefix);
        if (g.json)
            printf("{\"deleted\":%llu,\"failed\":%llu}\n", (unsigned long long)r.d.deleted,
                   (unsigned long long)r.d.failed);
        exit_code = rc == 0 ? EXIT_OK : fail("rm", &err);
    }
    s3_client_free(c);
    s3_url_release(&url);
    return exit_code;
}

struct abort_ctx {
    struct s3_client *c;
    const char *bucket;
    haul_error *err;
};

static int upload_abort(const char *key, const char *upload_id, time_t initiated, void *arg)
{
    (void)initiated;
    struct abort_ctx *a = arg;
    return s3_mpu_abort(a->c, a->bucket, key, upload_id, a->err);
}

/* rb --force: every object, then every unfinished multipart upload. */
static int bucket_empty(struct s3_client *c, const char *bucket, haul_error *err)
{
    struct rm_ctx r = {.d = {.c = c, .bucket = bucket, .err = err}, .quiet = true};
    int rc = rm_all(&r, NULL);
    struct abort_ctx a = {c, bucket, err};
    if (rc == 0)
        rc = s3_mpu_list(c, bucket, NULL, upload_abort, &a, err);
    return rc;
}

static int bucket_cmd(int argc, char **argv, bool make)
{
    static const struct command_help mb_help = {"mb", "s3://BUCKET", "Make a bucket (in --region).", NULL};
    static const struct command_help rb_help = {
        "rb", "s3://BUCKET", "Remove a bucket; with --force delete every object and abort every unfinished multipart upload in it first.", NULL};
    struct global_opts g = {0};
    bool force = false;
    const struct opt mb_opts[] = {{NULL, 0, OPT_END, NULL, NULL, NULL}};
    const struct opt rb_opts[] = {
        {"force", 0, OPT_FLAG, &force, NULL, "delete every object and unfinished upload first"},
        {NULL, 0, OPT_END, NULL, NULL, NULL}};
    const char *name = make ? "mb" : "rb";
    const char *pos[1];
    int n_pos, rc = opts_parse(make ? &mb_help : &rb_help, make ? mb_opts : rb_opts, &g, argc, argv, pos, 1, &n_pos);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    if (n_pos != 1)
        return usage_error(name, "expected s3://BUCKET");
    haul_error err = {0};
    struct s3_url url;
    if (s3_url_parse(pos[0], &url, &err) < 0)
        return fail(name, &err);
    struct s3_client *c = client_open(name, &g);
    int exit_code = EXIT_FAILED;
    if (c) {
        if (make) {
            rc = s3_bucket_create(c, url.bucket, &err);
        } else {
            rc = force ? bucket_empty(c, url.bucket, &err) : 0;
            if (rc == 0)
                rc = s3_bucket_delete(c, url.bucket, &err);
        }
        if (rc == 0 && !g.quiet && !g.json)
            printf("%s: s3://%s\n", make ? "make_bucket" : "remove_bucket", url.bucket);
        exit_code = rc == 0 ? EXIT_OK : fail(name, &err);
    }
    s3_client_free(c);
    s3_url_release(&url);
    return exit_code;
}

int cmd_mb(int argc, char **argv) { return bucket_cmd(argc, argv, true); }
int cmd_rb(int argc, char **argv) { return bucket_cmd(argc, argv, false); }

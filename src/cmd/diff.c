/* cmd/diff: haul diff DIR s3://BUCKET[/PREFIX]. */
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "job/diff.h"

/* One line per entry: "+" only local, "-" only in the bucket, "M" changed,
 * "!" a dangling link object, "I" in the index but not the bucket, "?" not
 * verified (only with -v). */
static void on_line(const char *kind, const char *key, const char *why, void *ctx)
{
    const struct global_opts *g = ctx;
    if (strcmp(kind, "unverified") == 0 && !g->verbose && !g->json)
        return;
    if (g->json) {
        printf("{\"kind\":\"%s\",\"key\":", kind);
        json_string(stdout, key);
        printf(",\"why\":");
        json_string(stdout, why);
        printf("}\n");
    } else {
        static const char *const marks[][2] = {{"only-local", "+"}, {"only-remote", "-"}, {"dangling-link", "!"},
                                               {"index-only", "I"}, {"unverified", "?"}};
        const char *mark = "M";
        for (size_t i = 0; i < sizeof marks / sizeof *marks; i++)
            if (strcmp(kind, marks[i][0]) == 0)
                mark = marks[i][1];
        printf("%s %s%s%s%s\n", mark, key, *why ? " (" : "", why, *why ? ")" : "");
    }
}

#define U(x) ((unsigned long long)(x))

static void summary(const struct diff_stats *st, const struct global_opts *g, const char *dir, bool content)
{
    if (g->json) {
        printf("{\"kind\":\"summary\",\"identical\":%llu,\"only_local\":%llu,\"only_remote\":%llu,"
               "\"changed\":%llu,\"dangling_links\":%llu,\"links_checked\":%llu,\"index_checked\":%s,"
               "\"index_only\":%llu,\"errors\":%llu,\"checked_by\":{\"md5\":%llu,\"multipart_md5\":%llu,"
               "\"checksum\":%llu,\"download\":%llu},\"unverified\":%llu,\"sha256_metadata_only\":%llu}\n",
               U(st->same), U(st->only_local), U(st->only_remote), U(st->changed), U(st->dangling),
               U(st->links), st->index_checked ? "true" : "false", U(st->index_only), U(st->errors),
               U(st->by_md5), U(st->by_multipart_md5), U(st->by_checksum), U(st->by_download),
               U(st->unverified), U(st->sha256_metadata_only));
        return;
    }
    if (g->quiet)
        return;
    fprintf(stderr, "diff: %llu identical, %llu only in %s, %llu only in the bucket, %llu different%s\n",
            U(st->same), U(st->only_local), dir, U(st->only_remote), U(st->changed),
            st->errors ? ", some entries could not be compared" : "");
    if (st->dangling)
        fprintf(stderr, "diff: %llu hard-link object%s whose target the bucket lacks or is itself a link\n",
                U(st->dangling), st->dangling == 1 ? "" : "s");
    if (st->index_only)
        fprintf(stderr, "diff: index says stored, bucket lacks: %llu; run backup --rescan-remote\n",
                U(st->index_only));
    if (content)
        fprintf(stderr, "diff: bytes checked against the bucket: %llu by MD5 ETag, %llu by multipart MD5 ETag, "
                        "%llu by checksum, %llu by download; %llu not verified (%llu by haul's sha256 metadata only)%s\n",
                U(st->by_md5), U(st->by_multipart_md5), U(st->by_checksum), U(st->by_download),
                U(st->unverified), U(st->sha256_metadata_only),
                st->unverified && !g->verbose ? ": -v lists them" : "");
}

int cmd_diff(int argc, char **argv)
{
    static const struct command_help help = {
        "diff", "DIR s3://BUCKET[/PREFIX]",
        "Compare a directory tree with what a backup stored: '+ key' only in DIR, '- key' only in\n"
        "the bucket, 'M key (why)' different (type, size, mtime, mode, or with --check-sha256 the\n"
        "content), '! key (why)' a hard-link object whose target is missing, 'I key' recorded in\n"
        "the backup index but missing from the bucket.",
        "Sizes come from the listing; mtime, mode and the tree hash from each object's metadata\n"
        "(one HEAD per object, in parallel): without --download nothing is downloaded.\n"
        "--check-sha256 reads every local file once and checks its bytes against what the server\n"
        "computed of the object's: the MD5 ETag of a single-part object ('md5'), the multipart\n"
        "ETag rebuilt from part MD5s at the part size haul recorded ('multipart-md5'), or else the\n"
        "server's x-amz-checksum-* ('checksum-ALGO', one more HEAD; not every server keeps one),\n"
        "and against the SHA-256 tree hash haul backup --check-sha256 recorded ('sha256'). Objects\n"
        "none of these can check (a multipart object of another tool, SSE-KMS) count as not\n"
        "verified: the summary gives the numbers per method, -v and --json list them with the\n"
        "reason ('? key (why)'); they do not change the exit status. --download reads every object\n"
        "back (one GET each, bounded memory, nothing written) and compares it byte for byte with\n"
        "the file ('bytes').\n"
        "Link objects (later paths of a hard-linked file) must name a target in the bucket that is\n"
        "not a link itself. When the state directory holds the backup index of this destination,\n"
        "keys it records that the bucket lacks are listed ('I'; run backup --rescan-remote).\n\n"
        "Exit status: 0 identical, 1 differences found, 2 usage error or the comparison failed."};
    struct global_opts g = {0};
    bool check_sha256 = false, download = false;
    int workers = 0;
    const char *state_dir = NULL;
    struct opt_list exclude = {0};
    const struct opt opts[] = {
        {"check-sha256", 0, OPT_FLAG, &check_sha256, NULL, "check content against the server's MD5/checksum and the tree hash"},
        {"download", 0, OPT_FLAG, &download, NULL, "read every object back and compare it byte for byte"},
        {"num-workers", 'j', OPT_INT, &workers, "N", "parallel HEAD requests (default 16)"},
        {"exclude", 0, OPT_LIST, &exclude, "GLOB", "leave matching paths out (repeatable)"},
        {"state-dir", 0, OPT_STRING, &state_dir, "DIR", "scratch space (default ~/.local/state/haul)"},
        {NULL, 0, OPT_END, NULL, NULL, NULL}};
    const char *pos[2];
    int n_pos, rc = opts_parse(&help, opts, &g, argc, argv, pos, 2, &n_pos);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    if (n_pos != 2)
        return usage_error("diff", "expected DIR and s3://BUCKET[/PREFIX]");
    haul_error err = {0};
    struct s3_url url;
    if (s3_url_parse(pos[1], &url, &err) < 0) {
        fail("diff", &err);
        return EXIT_USAGE;
    }
    size_t n = strlen(url.key);
    char *prefix = malloc(n + 2);
    struct walk_filter *filter = walk_filter_new();
    if (!prefix || !filter) {
        s3_url_release(&url);
        free(prefix);
        walk_filter_free(filter);
        return usage_error("diff", "out of memory");
    }
    snprintf(prefix, n + 2, "%s%s", url.key, n && url.key[n - 1] != '/' ? "/" : "");
    for (int i = 0; i < exclude.n; i++)
        if (walk_filter_exclude_add(filter, exclude.items[i], &err) < 0) {
            s3_url_release(&url);
            free(prefix);
            walk_filter_free(filter);
            return usage_error("diff", "%s", err.msg);
        }
    char state[4096];
    state_dir_resolve(state_dir, state, sizeof state);
    struct s3_client *c = client_open("diff", &g);
    int exit_code = EXIT_USAGE;
    if (c) {
        struct diff_opts o = {.root = pos[0], .bucket = url.bucket, .prefix = prefix,
                              .check_sha256 = check_sha256, .download = download,
                              .workers = workers, .filter = filter,
                              .state_dir = state, .line = on_line, .line_ctx = &g,
                              .cancel = &cmd_interrupted};
        struct diff_stats st;
        rc = diff_run(c, &o, &st, &err);
        uint64_t differ = st.only_local + st.only_remote + st.changed + st.dangling + st.index_only;
        summary(&st, &g, pos[0], check_sha256 || download);
        if (rc < 0) {
            fail("diff", &err);
            exit_code = EXIT_USAGE;
        } else {
            exit_code = differ ? 1 : 0;
        }
    }
    s3_client_free(c);
    walk_filter_free(filter);
    free(prefix);
    s3_url_release(&url);
    return exit_code;
}

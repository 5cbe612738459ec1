/* cmd/diff: haul diff DIR s3://BUCKET[/PREFIX]. */
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "job/diff.h"

static void on_line(const char *kind, const char *key, const char *why, void *ctx)
{
    const struct global_opts *g = ctx;
    if (g->json) {
        printf("{\"kind\":\"%s\",\"key\":", kind);
        json_string(stdout, key);
        printf(",\"why\":");
        json_string(stdout, why);
        printf("}\n");
    } else {
        const char *mark = strcmp(kind, "only-local") == 0 ? "+" : strcmp(kind, "only-remote") == 0 ? "-" : "M";
        printf("%s %s%s%s%s\n", mark, key, *why ? " (" : "", why, *why ? ")" : "");
    }
}

int cmd_diff(int argc, char **argv)
{
    static const struct command_help help = {
        "diff", "DIR s3://BUCKET[/PREFIX]",
        "Compare a directory tree with what a backup stored: '+ key' only in DIR, '- key' only in\n"
        "the bucket, 'M key (why)' different (type, size, mtime, mode, or with --check-sha256 the\n"
        "SHA-256 tree hash).",
        "Sizes come from the listing; mtime, mode and the tree hash from each object's metadata\n"
        "(one HEAD per object, in parallel): nothing is downloaded. --check-sha256 reads every\n"
        "local file and compares its tree hash (1 MiB leaves, as Glacier defines it) with the one\n"
        "haul backup --check-sha256 recorded, so it finds content that differs with the same size\n"
        "and mtime.\n\n"
        "Exit status: 0 identical, 1 differences found, 2 usage error or the comparison failed."};
    struct global_opts g = {0};
    bool check_sha256 = false;
    int workers = 0;
    const char *state_dir = NULL;
    struct opt_list exclude = {0};
    const struct opt opts[] = {
        {"check-sha256", 0, OPT_FLAG, &check_sha256, NULL, "compare content by SHA-256 tree hash"},
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
                              .check_sha256 = check_sha256, .workers = workers, .filter = filter,
                              .state_dir = state, .line = on_line, .line_ctx = &g,
                              .cancel = &cmd_interrupted};
        struct diff_stats st;
        rc = diff_run(c, &o, &st, &err);
        uint64_t differ = st.only_local + st.only_remote + st.changed;
        if (!g.quiet && !g.json)
            fprintf(stderr, "diff: %llu identical, %llu only in %s, %llu only in the bucket, %llu different%s\n",
                    (unsigned long long)st.same, (unsigned long long)st.only_local, pos[0],
                    (unsigned long long)st.only_remote, (unsigned long long)st.changed,
                    st.errors ? ", some entries could not be compared" : "");
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

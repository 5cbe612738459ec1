/* cmd/policy: haul policy show|apply s3://BUCKET. */
#include <string.h>

#include "cmd/cmd.h"
#include "job/policy.h"

int cmd_policy(int argc, char **argv)
{
    static const struct command_help help = {
        "policy", "show|apply s3://BUCKET",
        "Show the bucket's lifecycle rules, or apply the rule that moves objects larger than the\n"
        "small-file threshold to Glacier.",
        "'apply' reads the stored rule back and refuses, removing it again, when the server dropped\n"
        "the ObjectSizeGreaterThan filter (Ceph RGW 16.2 does): such a rule would move every object.\n"
        "Where lifecycle tiering is not possible, back up with --storage-class-large instead. A\n"
        "bucket that already has other rules is left alone unless --replace is given (S3 keeps\n"
        "one lifecycle configuration per bucket)."};
    struct global_opts g = {0};
    struct policy_opts o = {.threshold = 128 * 1024, .storage_class = "GLACIER"};
    const struct opt opts[] = {
        {"small-file-threshold", 0, OPT_SIZE, &o.threshold, "BYTES", "objects larger than this move (default 128K)"},
        {"storage-class-large", 0, OPT_STRING, &o.storage_class, "CLASS", "GLACIER (default), DEEP_ARCHIVE, GLACIER_IR, STANDARD_IA"},
        {"days", 0, OPT_INT, &o.days, "N", "move them N days after upload (default 0)"},
        {"replace", 0, OPT_FLAG, &o.replace, NULL, "replace a lifecycle configuration that has other rules"},
        {NULL, 0, OPT_END, NULL, NULL, NULL}};
    const char *pos[2];
    int n_pos, rc = opts_parse(&help, opts, &g, argc, argv, pos, 2, &n_pos);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    bool show = n_pos == 2 && strcmp(pos[0], "show") == 0;
    bool apply = n_pos == 2 && strcmp(pos[0], "apply") == 0;
    if (!show && !apply)
        return usage_error("policy", "expected 'show' or 'apply' and s3://BUCKET");
    haul_error err = {0};
    struct s3_url url;
    if (s3_url_parse(pos[1], &url, &err) < 0)
        return fail("policy", &err);
    struct s3_client *c = client_open("policy", &g);
    int exit_code = EXIT_FAILED;
    if (c && show) {
        if (!g.json) {
            struct s3_lifecycle_rule r;
            policy_rule(&o, &r);
            printf("haul would apply: objects larger than %lld bytes -> %s after %d days (rule %s)\n",
                   (long long)r.size_greater_than, r.storage_class, r.transition_days, r.id);
        }
        exit_code = policy_show(c, url.bucket, g.json, stdout, &err) == 0 ? EXIT_OK : fail("policy", &err);
    } else if (c) {
        rc = policy_apply(c, url.bucket, &o, &err);
        if (rc == 0 && !g.quiet)
            printf("applied: objects in s3://%s larger than %llu bytes -> %s after %d days\n", url.bucket,
                   (unsigned long long)o.threshold, o.storage_class, o.days);
        exit_code = rc == 0 ? EXIT_OK : fail("policy", &err);
    }
    s3_client_free(c);
    s3_url_release(&url);
    return exit_code;
}

/* cmd/trust: the options that decide whom a distributed run trusts
 * (cmd.h, DIST_TRUST_CLI_OPTS and friends). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "dist/auth.h"
#include "util/err.h"

int dist_trust_cli_key(const char *cmd, struct dist_trust_cli *t)
{
    const char *file = t->key_file;
    if (!file) {
        const char *env = getenv("HAUL_KEY_FILE");
        file = env && *env ? env : NULL;
    }
    if (file && t->insecure_no_key)
        return usage_error(cmd, "--key-file (or HAUL_KEY_FILE) and --insecure-no-key exclude each other");
    if (!file && !t->insecure_no_key)
        return usage_error(cmd, "a distributed run needs --key-file FILE (or HAUL_KEY_FILE): the shared secret "
                           "that signs the job and its units (`openssl rand -hex 32 > FILE; chmod 600 FILE`, "
                           "the same file on every node); --insecure-no-key runs unsigned, for test set-ups");
    if (!file)
        return 0;
    haul_error err = {0};
    if (dist_key_load(file, &t->key_storage, &err) < 0)
        return fail(cmd, &err);
    t->key = &t->key_storage;
    return 0;
}

/* "s3://BUCKET[/PREFIX]" with a bucket name S3 could have. */
static bool s3_allow_ok(const char *a)
{
    if (strncmp(a, "s3://", 5) != 0)
        return false;
    size_t bn = strcspn(a + 5, "/");
    return bn >= 1 && bn <= 255;
}

int dist_trust_cli_allow(const char *cmd, struct dist_trust_cli *t)
{
    if (!t->allow.n && !t->allow_any)
        return usage_error(cmd, "say what this worker may serve: --allow PATH or --allow s3://BUCKET[/PREFIX] "
                           "(repeatable); --allow-any serves every path and bucket a job names");
    for (int i = 0; i < t->allow.n; i++) {
        const char *a = t->allow.items[i];
        char real[PATH_MAX];
        if (strncmp(a, "s3://", 5) == 0) {
            if (!s3_allow_ok(a))
                return usage_error(cmd, "--allow %s: want s3://BUCKET or s3://BUCKET/PREFIX", a);
            snprintf(real, sizeof real, "%s", a);
        } else if (a[0] != '/') {
            return usage_error(cmd, "--allow %s: an absolute path or s3://BUCKET[/PREFIX]", a);
        } else if (!realpath(a, real)) {
            return usage_error(cmd, "--allow %s: %s", a, strerror(errno));
        }
        if (!(t->resolved[t->nresolved] = strdup(real))) {
            fprintf(stderr, "haul %s: out of memory\n", cmd);
            return EXIT_FAILED;
        }
        t->nresolved++;
    }
    return 0;
}

int dist_trust_cli_refuse(const char *cmd, const struct dist_trust_cli *t)
{
    if (t->refuse_timeout < 1 || t->refuse_timeout > 86400)
        return usage_error(cmd, "--refuse-timeout takes 1 to 86400 seconds");
    return 0;
}

void dist_trust_cli_release(struct dist_trust_cli *t)
{
    for (size_t i = 0; i < t->nresolved; i++)
        free(t->resolved[i]);
    t->nresolved = 0;
    explicit_bzero(&t->key_storage, sizeof t->key_storage);
    t->key = NULL;
}

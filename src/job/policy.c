/* job/policy: the lifecycle rule that tiers large objects (see policy.h). */
#include "job/policy.h"

#include <string.h>

#include "util/err.h"

void policy_rule(const struct policy_opts *o, struct s3_lifecycle_rule *rule)
{
    *rule = (struct s3_lifecycle_rule){
        .id = POLICY_RULE_ID,
        .enabled = true,
        .prefix = "",
        .size_greater_than = (int64_t)o->threshold,
        .transition_days = o->days,
        .storage_class = o->storage_class,
    };
}

struct show_ctx {
    FILE *out;
    bool json;
    int n;
};

static int rule_print(const struct s3_lifecycle_rule *r, void *arg)
{
    struct show_ctx *s = arg;
    if (s->json)
        fprintf(s->out, "{\"id\":\"%s\",\"enabled\":%s,\"prefix\":\"%s\",\"object_size_greater_than\":%lld,"
                        "\"transition_days\":%d,\"storage_class\":\"%s\"}\n",
                r->id, r->enabled ? "true" : "false", r->prefix, (long long)r->size_greater_than,
                r->transition_days, r->storage_class);
    else
        fprintf(s->out, "rule %s (%s): objects%s%s%s larger than %s%lld bytes -> %s after %d days\n",
                r->id, r->enabled ? "enabled" : "disabled", r->prefix[0] ? " under '" : "", r->prefix,
                r->prefix[0] ? "'" : "", r->size_greater_than < 0 ? "(no size filter: ALL) " : "",
                (long long)(r->size_greater_than < 0 ? 0 : r->size_greater_than), r->storage_class,
                r->transition_days);
    s->n++;
    return 0;
}

int policy_show(struct s3_client *c, const char *bucket, bool json, FILE *out, haul_error *err)
{
    struct show_ctx s = {out, json, 0};
    haul_error local = {0};
    int rc = s3_bucket_lifecycle_get(c, bucket, rule_print, &s, &local);
    if (rc < 0 && strcmp(local.s3_code, "NoSuchLifecycleConfiguration") == 0) {
        if (!json)
            fprintf(out, "s3://%s has no lifecycle rules\n", bucket);
        return 0;
    }
    if (rc < 0 && err && err->code == HAUL_OK)
        *err = local;
    return rc;
}

struct check_ctx {
    int64_t threshold;
    int ours, others;
    bool filter_kept;
};

static int rule_check(const struct s3_lifecycle_rule *r, void *arg)
{
    struct check_ctx *k = arg;
    if (strcmp(r->id, POLICY_RULE_ID) != 0) {
        k->others++;
        return 0;
    }
    k->ours++;
    k->filter_kept = r->size_greater_than == k->threshold;
    return 0;
}

int policy_apply(struct s3_client *c, const char *bucket, const struct policy_opts *o,
                 haul_error *err)
{
    struct check_ctx before = {.threshold = (int64_t)o->threshold};
    haul_error local = {0};
    int rc = s3_bucket_lifecycle_get(c, bucket, rule_check, &before, &local);
    if (rc < 0 && strcmp(local.s3_code, "NoSuchLifecycleConfiguration") != 0) {
        *err = local;
        return rc;
    }
    if (before.others && !o->replace)
        return err_set(err, HAUL_EUSAGE,
                       "s3://%s already has %d other lifecycle rule(s); applying would replace them "
                       "(use --replace to do it anyway)",
                       bucket, before.others);
    struct s3_lifecycle_rule rule;
    policy_rule(o, &rule);
    if ((rc = s3_bucket_lifecycle_put(c, bucket, &rule, err)) < 0)
        return rc;
    struct check_ctx after = {.threshold = (int64_t)o->threshold};
    if ((rc = s3_bucket_lifecycle_get(c, bucket, rule_check, &after, err)) < 0)
        return rc;
    if (after.ours == 1 && after.filter_kept)
        return 0;
    /* The server accepted the rule but dropped ObjectSizeGreaterThan (Ceph
     * RGW 16.2 and moto do): left in place it would move every object. */
    haul_error undo = {0};
    bool undone = s3_bucket_lifecycle_delete(c, bucket, &undo) == 0;
    return err_set(err, HAUL_ES3,
                   "s3://%s: the server stored the lifecycle rule without its ObjectSizeGreaterThan "
                   "filter, so it would move EVERY object to %s; %s. Use --storage-class-large at "
                   "backup instead",
                   bucket, o->storage_class,
                   undone ? "the rule was removed again" : "REMOVING IT FAILED, delete it by hand");
}

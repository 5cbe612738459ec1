/* job/policy: tiering large objects to Glacier by a bucket lifecycle rule
 * (ObjectSizeGreaterThan), applied only when the server keeps the size
 * filter: a rule stored without it would move every object. */
#ifndef JOB_POLICY_H
#define JOB_POLICY_H

#include <haul/error.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "s3/s3.h"

#define POLICY_RULE_ID "haul-tier-large"

struct policy_opts {
    uint64_t threshold;        /* objects larger than this move (default 128 KiB) */
    const char *storage_class; /* GLACIER, DEEP_ARCHIVE, GLACIER_IR, ... */
    int days;                  /* after this many days (default 0) */
    bool replace;              /* replace a configuration that has other rules */
};

/* The rule haul would apply. */
void policy_rule(const struct policy_opts *o, struct s3_lifecycle_rule *rule);

/* Prints the bucket's current rules (a bucket without any says so). */
int policy_show(struct s3_client *c, const char *bucket, bool json, FILE *out, haul_error *err);

/* Applies the rule and reads it back; when the server dropped the size
 * filter, removes the configuration again and fails with HAUL_ES3. */
int policy_apply(struct s3_client *c, const char *bucket, const struct policy_opts *o,
                 haul_error *err);

#endif

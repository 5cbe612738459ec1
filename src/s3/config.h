/* s3/config: where to connect and with which credentials, resolved the way
 * AWS tools do (flags, then environment, then ~/.aws/credentials and
 * ~/.aws/config, then defaults). */
#ifndef S3_CONFIG_H
#define S3_CONFIG_H

#include <haul/error.h>
#include <stdbool.h>

enum s3_addressing {
    S3_ADDRESSING_AUTO,    /* virtual-host on AWS endpoints for DNS-safe buckets, else path */
    S3_ADDRESSING_PATH,    /* http://host/bucket/key */
    S3_ADDRESSING_VIRTUAL, /* http://bucket.host/key */
};

struct s3_config {
    char *endpoint;      /* scheme://host[:port], no trailing slash */
    char *region;
    char *access_key;
    char *secret_key;
    char *session_token; /* NULL when none */
    char *profile;
    char *ca_bundle;     /* used for https only; NULL for the system store */
    enum s3_addressing addressing;
    int max_connections;       /* connection pool size */
    int max_attempts;          /* tries per request, >= 1 */
    long connect_timeout_ms;
    long stall_timeout_s;      /* abort a transfer that moves no byte for this long */
    bool unsigned_payload;     /* send UNSIGNED-PAYLOAD: over https, or when asked */
    bool verify_tls;
};

/* What the command line said; NULL or 0 means "not given". */
struct s3_config_overrides {
    const char *endpoint;
    const char *region;
    const char *profile;
    const char *addressing; /* "auto", "path", "virtual" */
    int max_connections;
    int max_attempts;
    long connect_timeout_ms;
    long stall_timeout_s;
    bool unsigned_payload;
    bool no_verify_tls;
};

/* Resolves the configuration.  Missing credentials are an error
 * (HAUL_EAUTH) naming every place that was looked at. */
int s3_config_load(struct s3_config *cfg, const struct s3_config_overrides *ov, haul_error *err);

/* Frees the strings held by cfg. */
void s3_config_release(struct s3_config *cfg);

/* Looks up key in [section] of an AWS-style INI file ("s3.addressing_style"
 * finds a nested "addressing_style" under "s3 ="). Returns a heap copy, or
 * NULL when the file, section or key is absent. */
char *s3_ini_get(const char *path, const char *section, const char *key);

#endif

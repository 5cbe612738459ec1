/* s3/config: resolving endpoint, region and credentials as AWS tools do. */
#include "s3/config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

static char *dup_or_null(const char *s) { return s && *s ? strdup(s) : NULL; }

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

/* Matches "[name]" lines; for config files "[profile name]" too. */
static bool section_matches(const char *line, const char *section)
{
    char buf[512];
    size_t n = strlen(line);
    if (n < 2 || line[0] != '[' || line[n - 1] != ']' || n - 2 >= sizeof buf)
        return false;
    memcpy(buf, line + 1, n - 2);
    buf[n - 2] = '\0';
    char *name = trim(buf);
    if (strncmp(name, "profile", 7) == 0 && isspace((unsigned char)name[7]))
        name = trim(name + 8);
    return strcmp(name, section) == 0;
}

char *s3_ini_get(const char *path, const char *section, const char *key)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    const char *dot = strchr(key, '.');
    char parent[128] = "";
    if (dot && (size_t)(dot - key) < sizeof parent) {
        memcpy(parent, key, (size_t)(dot - key));
        parent[dot - key] = '\0';
        key = dot + 1;
    }
    char line[4096], nested_under[128] = "";
    char *result = NULL;
    bool in_section = false;
    while (!result && fgets(line, sizeof line, f)) {
        bool indented = line[0] == ' ' || line[0] == '\t';
        char *s = trim(line);
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            in_section = section_matches(s, section);
            nested_under[0] = '\0';
            continue;
        }
        char *eq = strchr(s, '=');
        if (!in_section || !eq)
            continue;
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1);
        if (!indented) {
            /* "s3 =" with no value opens a nested block of indented lines. */
            snprintf(nested_under, sizeof nested_under, "%s", *v ? "" : k);
            if (!parent[0] && strcmp(k, key) == 0)
                result = strdup(v);
        } else if (parent[0] && strcmp(nested_under, parent) == 0 && strcmp(k, key) == 0) {
            result = strdup(v);
        }
    }
    fclose(f);
    return result;
}

struct aws_files {
    char credentials[1024];
    char config[1024];
};

static void aws_files_locate(struct aws_files *files)
{
    const char *home = env("HOME") ? env("HOME") : "/";
    const char *c = env("AWS_SHARED_CREDENTIALS_FILE");
    const char *k = env("AWS_CONFIG_FILE");
    if (c)
        snprintf(files->credentials, sizeof files->credentials, "%s", c);
    else
        snprintf(files->credentials, sizeof files->credentials, "%s/.aws/credentials", home);
    if (k)
        snprintf(files->config, sizeof files->config, "%s", k);
    else
        snprintf(files->config, sizeof files->config, "%s/.aws/config", home);
}

/* A profile value from the credentials file first, then the config file. */
static char *profile_get(const struct aws_files *files, const char *profile, const char *key)
{
    char *v = s3_ini_get(files->credentials, profile, key);
    return v ? v : s3_ini_get(files->config, profile, key);
}

static int credentials_load(struct s3_config *cfg, const struct aws_files *files, bool profile_given,
                            haul_error *err)
{
    /* Environment keys win unless a profile was named on the command line. */
    if (!profile_given && env("AWS_ACCESS_KEY_ID") && env("AWS_SECRET_ACCESS_KEY")) {
        cfg->access_key = strdup(env("AWS_ACCESS_KEY_ID"));
        cfg->secret_key = strdup(env("AWS_SECRET_ACCESS_KEY"));
        cfg->session_token = dup_or_null(env("AWS_SESSION_TOKEN"));
        return 0;
    }
    cfg->access_key = profile_get(files, cfg->profile, "aws_access_key_id");
    cfg->secret_key = profile_get(files, cfg->profile, "aws_secret_access_key");
    cfg->session_token = profile_get(files, cfg->profile, "aws_session_token");
    if (cfg->access_key && cfg->secret_key)
        return 0;
    return err_set(err, HAUL_EAUTH,
                   "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                   "aws_access_key_id/aws_secret_access_key for profile '%s' in %s or %s",
                   cfg->profile, files->credentials, files->config);
}

static char *endpoint_resolve(const struct s3_config_overrides *ov, const struct aws_files *files,
                              const char *profile, const char *region)
{
    const char *candidates[] = {ov->endpoint, env("AWS_ENDPOINT_URL_S3"), env("AWS_ENDPOINT_URL"),
                                env("S3_ENDPOINT_URL")};
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++)
        if (candidates[i] && *candidates[i])
            return strdup(candidates[i]);
    char *v = s3_ini_get(files->config, profile, "s3.endpoint_url");
    if (!v)
        v = s3_ini_get(files->config, profile, "endpoint_url");
    if (v)
        return v;
    char aws[256];
    snprintf(aws, sizeof aws, "https://s3.%s.amazonaws.com", region);
    return strdup(aws);
}

static int addressing_parse(const char *s, enum s3_addressing *out, haul_error *err)
{
    if (!s || !*s || strcmp(s, "auto") == 0)
        *out = S3_ADDRESSING_AUTO;
    else if (strcmp(s, "path") == 0)
        *out = S3_ADDRESSING_PATH;
    else if (strcmp(s, "virtual") == 0)
        *out = S3_ADDRESSING_VIRTUAL;
    else
        return err_set(err, HAUL_EUSAGE, "addressing style '%s': expected auto, path or virtual", s);
    return 0;
}

static int endpoint_check(struct s3_config *cfg, haul_error *err)
{
    size_t n = strlen(cfg->endpoint);
    while (n > 0 && cfg->endpoint[n - 1] == '/')
        cfg->endpoint[--n] = '\0';
    bool https = strncmp(cfg->endpoint, "https://", 8) == 0;
    if (!https && strncmp(cfg->endpoint, "http://", 7) != 0)
        return err_set(err, HAUL_EUSAGE, "endpoint '%s': must start with http:// or https://",
                       cfg->endpoint);
    /* Over TLS the transport already protects the body and Content-MD5 covers
     * storage, so hashing the payload twice is skipped (as aws cli does). Over
     * plain http the payload hash is signed unless the user asked otherwise. */
    if (https)
        cfg->unsigned_payload = true;
    return 0;
}

int s3_config_load(struct s3_config *cfg, const struct s3_config_overrides *ov, haul_error *err)
{
    static const struct s3_config_overrides none;
    if (!ov)
        ov = &none;
    memset(cfg, 0, sizeof *cfg);
    struct aws_files files;
    aws_files_locate(&files);

    const char *profile = ov->profile ? ov->profile
                          : env("AWS_PROFILE")   ? env("AWS_PROFILE")
                          : env("AWS_DEFAULT_PROFILE") ? env("AWS_DEFAULT_PROFILE")
                                                 : "default";
    cfg->profile = strdup(profile);
    const char *region = ov->region ? ov->region : env("AWS_REGION") ? env("AWS_REGION") : env("AWS_DEFAULT_REGION");
    cfg->region = region ? strdup(region) : s3_ini_get(files.config, profile, "region");
    if (!cfg->region)
        cfg->region = strdup("us-east-1");
    cfg->endpoint = endpoint_resolve(ov, &files, profile, cfg->region);
    cfg->ca_bundle = dup_or_null(env("AWS_CA_BUNDLE"));
    if (!cfg->ca_bundle)
        cfg->ca_bundle = s3_ini_get(files.config, profile, "ca_bundle");

    char *style = ov->addressing ? strdup(ov->addressing)
                                 : env("HAUL_ADDRESSING_STYLE") ? strdup(env("HAUL_ADDRESSING_STYLE"))
                                 : s3_ini_get(files.config, profile, "s3.addressing_style");
    int rc = addressing_parse(style, &cfg->addressing, err);
    free(style);

    cfg->max_connections = ov->max_connections > 0 ? ov->max_connections : 16;
    cfg->max_attempts = ov->max_attempts > 0 ? ov->max_attempts : 5;
    if (!ov->max_attempts && env("AWS_MAX_ATTEMPTS") && atoi(env("AWS_MAX_ATTEMPTS")) > 0)
        cfg->max_attempts = atoi(env("AWS_MAX_ATTEMPTS"));
    cfg->connect_timeout_ms = ov->connect_timeout_ms > 0 ? ov->connect_timeout_ms : 10000;
    cfg->stall_timeout_s = ov->stall_timeout_s > 0 ? ov->stall_timeout_s : 120;
    cfg->unsigned_payload = ov->unsigned_payload;
    cfg->verify_tls = !ov->no_verify_tls;

    if (rc == 0 && (!cfg->profile || !cfg->region || !cfg->endpoint))
        rc = err_set(err, HAUL_ENOMEM, "configuration: out of memory");
    if (rc == 0)
        rc = endpoint_check(cfg, err);
    if (rc == 0)
        rc = credentials_load(cfg, &files, ov->profile != NULL, err);
    if (rc < 0)
        s3_config_release(cfg);
    return rc;
}

void s3_config_release(struct s3_config *cfg)
{
    free(cfg->endpoint);
    free(cfg->region);
    free(cfg->access_key);
    free(cfg->secret_key);
    free(cfg->session_token);
    free(cfg->profile);
    free(cfg->ca_bundle);
    memset(cfg, 0, sizeof *cfg);
}

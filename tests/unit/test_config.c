/* Unit tests for s3/config: AWS-style precedence of flags, environment and
 * the ~/.aws files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "s3/config.h"

static char dir[] = "/tmp/haul-test-config-XXXXXX";
static char cred_path[256], conf_path[256];

static const char *const vars[] = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3", "S3_ENDPOINT_URL", "AWS_CA_BUNDLE", "HAUL_ADDRESSING_STYLE",
    "AWS_MAX_ATTEMPTS"};

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        unsetenv(vars[i]);
    assert_non_null(mkdtemp(dir));
    snprintf(cred_path, sizeof cred_path, "%s/credentials", dir);
    snprintf(conf_path, sizeof conf_path, "%s/config", dir);
    write_file(cred_path, "[default]\naws_access_key_id = DEFAULTKEY\naws_secret_access_key = defaultsecret\n\n"
                          "[lab]\naws_access_key_id=LABKEY\naws_secret_access_key=labsecret\n"
                          "aws_session_token = labtoken\n");
    write_file(conf_path, "[default]\nregion = eu-west-1\n\n[profile lab]\nregion = ca-central-1\n"
                          "endpoint_url = http://127.0.0.1:9000/\ns3 =\n  addressing_style = virtual\n"
                          "# comment\n[profile other]\nregion = ap-south-1\n");
    setenv("AWS_SHARED_CREDENTIALS_FILE", cred_path, 1);
    setenv("AWS_CONFIG_FILE", conf_path, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(cred_path);
    unlink(conf_path);
    rmdir(dir);
    return 0;
}

static void test_default_profile_from_files(void **state)
{
    (void)state;
    struct s3_config cfg;
    haul_error err = {0};
    assert_int_equal(s3_config_load(&cfg, NULL, &err), 0);
    assert_string_equal(cfg.access_key, "DEFAULTKEY");
    assert_string_equal(cfg.secret_key, "defaultsecret");
    assert_null(cfg.session_token);
    assert_string_equal(cfg.region, "eu-west-1");
    assert_string_equal(cfg.endpoint, "https://s3.eu-west-1.amazonaws.com");
    assert_int_equal(cfg.addressing, S3_ADDRESSING_AUTO);
    assert_true(cfg.unsigned_payload); /* https: TLS protects the body */
    s3_config_release(&cfg);
}

static void test_named_profile_with_nested_s3_section(void **state)
{
    (void)state;
    setenv("AWS_PROFILE", "lab", 1);
    struct s3_config cfg;
    haul_error err = {0};
    assert_int_equal(s3_config_load(&cfg, NULL, &err), 0);
    assert_string_equal(cfg.access_key, "LABKEY");
    assert_string_equal(cfg.session_token, "labtoken");
    assert_string_equal(cfg.region, "ca-central-1");
    assert_string_equal(cfg.endpoint, "http://127.0.0.1:9000"); /* trailing slash dropped */
    assert_int_equal(cfg.addressing, S3_ADDRESSING_VIRTUAL);
    assert_false(cfg.unsigned_payload); /* plain http: payload hash signed */
    s3_config_release(&cfg);
    unsetenv("AWS_PROFILE");
}

static void test_environment_beats_files_and_flags_beat_environment(void **state)
{
    (void)state;
    setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    setenv("AWS_REGION", "us-west-2", 1);
    setenv("S3_ENDPOINT_URL", "http://127.0.0.1:1", 1);
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:2", 1);
    struct s3_config cfg;
    haul_error err = {0};
    assert_int_equal(s3_config_load(&cfg, NULL, &err), 0);
    assert_string_equal(cfg.access_key, "ENVKEY");
    assert_string_equal(cfg.region, "us-west-2");
    assert_string_equal(cfg.endpoint, "http://127.0.0.1:2"); /* AWS_ENDPOINT_URL over S3_ENDPOINT_URL */
    s3_config_release(&cfg);

    struct s3_config_overrides ov = {.endpoint = "http://127.0.0.1:3", .region = "eu-north-1",
                                     .profile = "lab", .addressing = "path"};
    assert_int_equal(s3_config_load(&cfg, &ov, &err), 0);
    assert_string_equal(cfg.endpoint, "http://127.0.0.1:3");
    assert_string_equal(cfg.region, "eu-north-1");
    assert_string_equal(cfg.access_key, "LABKEY"); /* --profile names the keys to use */
    assert_int_equal(cfg.addressing, S3_ADDRESSING_PATH);
    s3_config_release(&cfg);
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        unsetenv(vars[i]);
}

static void test_missing_credentials_name_the_places_looked(void **state)
{
    (void)state;
    setenv("AWS_PROFILE", "other", 1);
    struct s3_config cfg;
    haul_error err = {0};
    assert_int_equal(s3_config_load(&cfg, NULL, &err), -HAUL_EAUTH);
    assert_non_null(strstr(err.msg, "AWS_ACCESS_KEY_ID"));
    assert_non_null(strstr(err.msg, "'other'"));
    assert_non_null(strstr(err.msg, cred_path));
    unsetenv("AWS_PROFILE");
}

static void test_bad_endpoint_and_style_are_usage_errors(void **state)
{
    (void)state;
    struct s3_config cfg;
    haul_error err = {0};
    struct s3_config_overrides ov = {.endpoint = "ftp://x"};
    assert_int_equal(s3_config_load(&cfg, &ov, &err), -HAUL_EUSAGE);
    assert_non_null(strstr(err.msg, "ftp://x"));
    haul_error err2 = {0};
    struct s3_config_overrides ov2 = {.addressing = "sideways"};
    assert_int_equal(s3_config_load(&cfg, &ov2, &err2), -HAUL_EUSAGE);
    assert_non_null(strstr(err2.msg, "sideways"));
}

static void test_ini_lookup(void **state)
{
    (void)state;
    char *v = s3_ini_get(conf_path, "lab", "s3.addressing_style");
    assert_string_equal(v, "virtual");
    free(v);
    assert_null(s3_ini_get(conf_path, "lab", "addressing_style")); /* only nested */
    assert_null(s3_ini_get(conf_path, "nosuch", "region"));
    assert_null(s3_ini_get("/nonexistent/file", "default", "region"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_profile_from_files),
        cmocka_unit_test(test_named_profile_with_nested_s3_section),
        cmocka_unit_test(test_environment_beats_files_and_flags_beat_environment),
        cmocka_unit_test(test_missing_credentials_name_the_places_looked),
        cmocka_unit_test(test_bad_endpoint_and_style_are_usage_errors),
        cmocka_unit_test(test_ini_lookup),
    };
    return cmocka_run_group_tests_name("s3_config", tests, setup, teardown);
}

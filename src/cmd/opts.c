/* cmd/opts: option tables -> parser and --help, shared S3 options, client
 * set-up and error printing for every subcommand. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "cmd/cmd.h"
#include "util/graphite.h"
#include "util/err.h"
#include "util/log.h"

#define S3_OPTS(g)                                                                                        \
    {"endpoint-url", 0, OPT_STRING, &(g)->endpoint, "URL", "S3 endpoint (default: AWS_ENDPOINT_URL, S3_ENDPOINT_URL, ~/.aws/config, AWS)"}, \
    {"region", 0, OPT_STRING, &(g)->region, "REGION", "signing region (default: AWS_REGION, ~/.aws/config, us-east-1)"}, \
    {"profile", 0, OPT_STRING, &(g)->profile, "NAME", "profile in ~/.aws/credentials and ~/.aws/config"}, \
    {"addressing-style", 0, OPT_STRING, &(g)->addressing, "STYLE", "auto, path or virtual (default auto: virtual on AWS, path elsewhere)"}, \
    {"max-connections", 0, OPT_INT, &(g)->max_connections, "N", "connection pool size (default 16)"}, \
    {"max-attempts", 0, OPT_INT, &(g)->max_attempts, "N", "tries per request, retries back off with jitter (default 5, or AWS_MAX_ATTEMPTS)"}, \
    {"connect-timeout", 0, OPT_INT, &(g)->connect_timeout_s, "SECONDS", "connection timeout (default 10)"}, \
    {"stall-timeout", 0, OPT_INT, &(g)->stall_timeout_s, "SECONDS", "a request that moves no byte this long is retried; 8 requests in a row failing so (or on refused connections) after their retries stop the run (default 120)"}, \
    {"unsigned-payload", 0, OPT_FLAG, &(g)->unsigned_payload, NULL, "send UNSIGNED-PAYLOAD with Content-MD5 instead of the signed SHA-256 over plain http (for servers that need it; MD5 costs more CPU)"}, \
    {"no-verify-ssl", 0, OPT_FLAG, &(g)->no_verify_ssl, NULL, "do not verify the server's TLS certificate"}
#define OUTPUT_OPTS(g)                                                                                    \
    {"json", 0, OPT_FLAG, &(g)->json, NULL, "machine-readable output on stdout"}, \
    {"quiet", 'q', OPT_FLAG, &(g)->quiet, NULL, "no progress, no summary"}, \
    {"verbose", 'v', OPT_FLAG, &(g)->verbose, NULL, "log retries and decisions"}, \
    {"debug", 0, OPT_FLAG, &(g)->debug, NULL, "log every request"}, \
    {"help", 'h', OPT_FLAG, &(g)->help, NULL, "show this help"}

static void help_print(const struct command_help *h, const struct opt *opts, const struct opt *globals, bool local)
{
    printf("usage: haul %s [OPTIONS] %s\n\n%s\n", h->name, h->usage, h->summary);
    if (h->details)
        printf("\n%s\n", h->details);
    const struct opt *tables[2] = {opts, globals};
    const char *titles[2] = {"Options", local ? "Output options" : "Connection and output options"};
    for (int t = 0; t < 2; t++) {
        if (!tables[t] || tables[t][0].kind == OPT_END)
            continue;
        printf("\n%s:\n", titles[t]);
        for (const struct opt *o = tables[t]; o->kind != OPT_END; o++) {
            char left[64];
            int n = o->short_name ? snprintf(left, sizeof left, "  -%c, --%s", o->short_name, o->name)
                                  : snprintf(left, sizeof left, "      --%s", o->name);
            if (o->arg_name && n > 0 && (size_t)n < sizeof left)
                snprintf(left + n, sizeof left - (size_t)n, " %s", o->arg_name);
            printf("%-36s %s\n", left, o->help);
        }
    }
    printf("\nExit status: 0 success, 1 the operation failed, 2 usage error, 130/143 interrupted (SIGINT/SIGTERM).\n");
}

int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "haul %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'haul %s --help'.\n", cmd);
    va_end(ap);
    return EXIT_USAGE;
}

static int size_parse(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -1;
    uint64_t unit = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': unit = 1ull << 10; end++; break;
    case 'M': unit = 1ull << 20; end++; break;
    case 'G': unit = 1ull << 30; end++; break;
    case 'T': unit = 1ull << 40; end++; break;
    default: break;
    }
    if (toupper((unsigned char)*end) == 'I')
        end++;
    if (toupper((unsigned char)*end) == 'B')
        end++;
    if (*end)
        return -1;
    *out = (uint64_t)(v * (double)unit);
    return 0;
}

/* By short_name when it is not 0, else by the first len bytes of name. */
static const struct opt *opt_find(const struct opt *opts, const struct opt *globals, const char *name,
                                  size_t len, char short_name)
{
    const struct opt *tables[2] = {opts, globals};
    for (int t = 0; t < 2; t++)
        for (const struct opt *o = tables[t]; o && o->kind != OPT_END; o++)
            if (short_name ? o->short_name == short_name
                           : strlen(o->name) == len && strncmp(o->name, name, len) == 0)
                return o;
    return NULL;
}

static int opt_set(const char *cmd, const struct opt *o, const char *value)
{
    switch (o->kind) {
    case OPT_FLAG: *(bool *)o->target = true; return 0;
    case OPT_STRING: *(const char **)o->target = value; return 0;
    case OPT_INT: {
        char *end;
        long v = strtol(value, &end, 10);
        if (*end || end == value || v < 0 || v > 1000000)
            return usage_error(cmd, "--%s: '%s' is not a count", o->name, value);
        *(int *)o->target = (int)v;
        return 0;
    }
    case OPT_SIZE:
        if (size_parse(value, (uint64_t *)o->target) < 0)
            return usage_error(cmd, "--%s: '%s' is not a size (e.g. 8M, 1G)", o->name, value);
        return 0;
    case OPT_LIST: {
        struct opt_list *l = o->target;
        if (l->n >= (int)(sizeof l->items / sizeof *l->items))
            return usage_error(cmd, "--%s: too many", o->name);
        l->items[l->n++] = value;
        return 0;
    }
    case OPT_END: break;
    }
    return 0;
}

static int parse(const struct command_help *help, const struct opt *opts, struct global_opts *g, bool local,
                 int argc, char **argv, const char **pos, int max_pos, int *n_pos)
{
    const struct opt s3_globals[] = {S3_OPTS(g), OUTPUT_OPTS(g), {NULL, 0, OPT_END, NULL, NULL, NULL}};
    const struct opt local_globals[] = {OUTPUT_OPTS(g), {NULL, 0, OPT_END, NULL, NULL, NULL}};
    const struct opt *globals = local ? local_globals : s3_globals;
    *n_pos = 0;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || strcmp(a, "-") == 0) {
            if (*n_pos >= max_pos)
                return usage_error(help->name, "unexpected argument '%s'", a), -1;
            pos[(*n_pos)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            options_done = true;
            continue;
        }
        const struct opt *o;
        const char *value = NULL;
        if (a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            o = opt_find(opts, globals, a + 2, len, 0);
            value = eq ? eq + 1 : NULL;
        } else {
            o = a[2] ? NULL : opt_find(opts, globals, "", 0, a[1]);
        }
        if (!o)
            return usage_error(help->name, "unknown option '%s'", a), -1;
        if (o->kind != OPT_FLAG && !value) {
            if (i + 1 >= argc)
                return usage_error(help->name, "option '--%s' needs a value", o->name), -1;
            value = argv[++i];
        }
        if (opt_set(help->name, o, value) != 0)
            return -1;
    }
    if (g->help) {
        help_print(help, opts, globals, local);
        return 1;
    }
    if (g->debug)
        log_level_set(LOG_DEBUG);
    else if (g->verbose)
        log_level_set(LOG_INFO);
    else if (g->quiet)
        log_level_set(LOG_ERROR);
    return 0;
}

int opts_parse(const struct command_help *help, const struct opt *opts, struct global_opts *g,
               int argc, char **argv, const char **pos, int max_pos, int *n_pos)
{
    return parse(help, opts, g, false, argc, argv, pos, max_pos, n_pos);
}

int opts_parse_local(const struct command_help *help, const struct opt *opts, struct global_opts *g,
                     int argc, char **argv, const char **pos, int max_pos, int *n_pos)
{
    return parse(help, opts, g, true, argc, argv, pos, max_pos, n_pos);
}

struct s3_client *client_open(const char *cmd, const struct global_opts *g)
{
    struct s3_config_overrides ov = {
        .endpoint = g->endpoint,
        .region = g->region,
        .profile = g->profile,
        .addressing = g->addressing,
        .max_connections = g->max_connections,
        .max_attempts = g->max_attempts,
        .connect_timeout_ms = g->connect_timeout_s * 1000L,
        .stall_timeout_s = g->stall_timeout_s,
        .unsigned_payload = g->unsigned_payload,
        .no_verify_tls = g->no_verify_ssl,
    };
    struct s3_config cfg;
    haul_error err = {0};
    if (s3_config_load(&cfg, &ov, &err) < 0) {
        fail(cmd, &err);
        return NULL;
    }
    log_debug("endpoint %s, region %s, profile %s", cfg.endpoint, cfg.region, cfg.profile);
    struct s3_client *c = s3_client_new(&cfg, &err);
    s3_config_release(&cfg);
    if (c)
        s3_client_cancel_set(c, &cmd_interrupted);
    /* A one-shot command stops at the first bucket-level failure; the
     * daemon and workers serve many buckets and jobs, and go on. */
    if (c && strcmp(cmd, "daemon") != 0 && strcmp(cmd, "worker") != 0)
        s3_client_fail_fast_set(c, true);
    if (!c)
        fail(cmd, &err);
    return c;
}

int fail(const char *cmd, const haul_error *err)
{
    fprintf(stderr, "haul %s: %s\n", cmd, err->msg[0] ? err->msg : haul_code_name(err->code));
    return err->code == HAUL_EUSAGE ? EXIT_USAGE : EXIT_FAILED;
}

int xfer_cli_apply(const char *cmd, const struct xfer_cli *x, struct xfer_opts *xo,
                   struct s3_put_opts *put, struct s3_meta *meta, int meta_cap)
{
    memset(xo, 0, sizeof *xo);
    memset(put, 0, sizeof *put);
    if (x->part_size && x->part_size < XFER_PART_MIN)
        return usage_error(cmd, "--part-size must be at least 5M (S3's minimum part size)");
    if (x->part_size > XFER_PART_MAX)
        return usage_error(cmd, "--part-size must be at most 5G (S3's maximum part size)");
    if (x->multipart_threshold > XFER_PART_MAX)
        return usage_error(cmd, "--multipart-threshold must be at most 5G (the largest single PUT)");
    xo->part_size = x->part_size;
    xo->cancel = &cmd_interrupted;
    xo->multipart_threshold = x->multipart_threshold;
    xo->workers = x->workers;
    xo->buffers = x->buffers;
    xo->no_verify = x->no_verify;
    xo->direct = x->direct;
    if (x->buffers && x->workers && x->buffers < x->workers)
        return usage_error(cmd, "--num-largefile-buffers must be at least --num-largefile-workers");
    if (x->metadata.n > meta_cap)
        return usage_error(cmd, "too many --metadata entries");
    for (int i = 0; i < x->metadata.n; i++) {
        const char *kv = x->metadata.items[i], *eq = strchr(kv, '=');
        if (!eq || eq == kv)
            return usage_error(cmd, "--metadata '%s': expected NAME=VALUE", kv);
        meta[i].name = strndup(kv, (size_t)(eq - kv));
        meta[i].value = (char *)(eq + 1);
        for (char *p = meta[i].name; p && *p; p++)
            *p = (char)tolower((unsigned char)*p);
    }
    put->meta = meta;
    put->n_meta = (size_t)x->metadata.n;
    put->storage_class = x->storage_class;
    put->content_type = x->content_type;
    xo->put = put;
    return 0;
}

void format_size(uint64_t bytes, char *out, size_t cap)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, cap, "%llu B", (unsigned long long)bytes);
    else
        snprintf(out, cap, "%.1f %s", v, units[u]);
}

/* Length of the valid UTF-8 sequence at p, 0 when invalid. */
static int utf8_len(const unsigned char *p)
{
    int n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 2 && *p < 0xc2)
        return 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int n = utf8_len(p);
        if (n == 0) {
            fputs("\\ufffd", f);
        } else if (n > 1) {
            fwrite(p, 1, (size_t)n, f);
            p += n - 1;
        } else if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p == '\r')
            fputs("\\r", f);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

void state_dir_resolve(const char *given, char *out, size_t cap)
{
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    if (given)
        snprintf(out, cap, "%s", given);
    else if (xdg && *xdg)
        snprintf(out, cap, "%s/haul", xdg);
    else if (home && *home)
        snprintf(out, cap, "%s/.local/state/haul", home);
    else
        snprintf(out, cap, ".haul-state"); /* never a shared /tmp path another user could plant */
}

int graphite_cli_start(const char *cmd, const struct graphite_cli *gc,
                       size_t (*sample)(struct graphite_metric *, size_t, void *), void *ctx,
                       struct graphite_reporter **out)
{
    *out = NULL;
    if (gc->interval < 1)
        return usage_error(cmd, "--report-interval takes a number of seconds, at least 1");
    if (!gc->address)
        return 0;
    char prefix[128], host[64] = "localhost";
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    host[strcspn(host, ".")] = '\0';
    snprintf(prefix, sizeof prefix, "haul.%s.%s", cmd, host);
    haul_error err = {0};
    *out = graphite_reporter_start(gc->address, gc->prefix ? gc->prefix : prefix,
                                   (unsigned)gc->interval, sample, ctx, &err);
    return *out ? 0 : fail(cmd, &err);
}

void graphite_cli_stop(const char *cmd, const struct graphite_cli *gc, struct graphite_reporter *r)
{
    unsigned undelivered = graphite_reporter_stop(r);
    if (undelivered)
        fprintf(stderr, "haul %s: %u statistics report%s could not be delivered to %s\n", cmd, undelivered,
                undelivered == 1 ? "" : "s", gc->address);
}

/* cmd/transfer: haul put and haul get, single objects between a file (or a
 * pipe) and S3, through the streaming engine. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "util/err.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct summary {
    const char *op, *local, *bucket, *key;
    const struct xfer_result *res;
    double seconds;
    struct s3_client_stats stats;
};

static void summary_print(const struct summary *s, const struct global_opts *g, FILE *f)
{
    double mbps = s->seconds > 0 ? (double)s->res->bytes / 1e6 / s->seconds : 0;
    if (g->json) {
        fprintf(f, "{\"op\":\"%s\",\"local\":", s->op);
        json_string(f, s->local);
        fprintf(f, ",\"bucket\":");
        json_string(f, s->bucket);
        fprintf(f, ",\"key\":");
        json_string(f, s->key);
        fprintf(f, ",\"bytes\":%llu,\"parts\":%d,\"parts_resumed\":%d,\"etag\":", (unsigned long long)s->res->bytes,
                s->res->parts, s->res->parts_resumed);
        json_string(f, s->res->etag);
        fprintf(f, ",\"verified\":%s,\"seconds\":%.3f,\"mb_per_s\":%.1f,\"requests\":%llu,\"retries\":%llu}\n",
                s->res->verified ? "true" : "false", s->seconds, mbps,
                (unsigned long long)s->stats.requests, (unsigned long long)s->stats.retries);
    } else if (!g->quiet) {
        char size[32];
        format_size(s->res->bytes, size, sizeof size);
        bool up = strcmp(s->op, "put") == 0;
        fprintf(f, "%s: %s %s s3://%s/%s (%s in %.2f s, %.1f MB/s%s)\n", up ? "upload" : "download",
                s->local, up ? "->" : "<-", s->bucket, s->key, size, s->seconds, mbps,
                s->stats.retries ? ", with retries" : "");
    }
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* "s3://b/dir/" + "file.txt" -> key "dir/file.txt", as aws s3 cp does. */
static char *key_for(const char *key, const char *local)
{
    size_t n = strlen(key);
    if (n && key[n - 1] != '/')
        return strdup(key);
    if (strcmp(local, "-") == 0)
        return NULL;
    char *k = malloc(n + strlen(base_name(local)) + 1);
    if (k)
        sprintf(k, "%s%s", key, base_name(local));
    return k;
}

int cmd_put(int argc, char **argv)
{
    static const struct command_help help = {
        "put", "FILE|- s3://BUCKET/KEY", "Upload a file, or standard input with '-', to one object.",
        "Files at least --multipart-threshold bytes big are read sequentially into a bounded pool\n"
        "of buffers and sent as parallel multipart parts; every part carries Content-MD5 and the\n"
        "final ETag is checked against the parts sent. A failed upload is aborted, never left\n"
        "behind. An upload interrupted by a crash, a kill or Ctrl-C (exit 130; SIGTERM 143) is\n"
        "journaled in the state directory: running the same command again resumes it, sending\n"
        "only the parts the server lacks (a source whose size or mtime changed starts over);\n"
        "'haul rm --uploads s3://BUCKET/KEY' aborts one not to be resumed. A KEY ending in '/'\n"
        "gets the file's name appended."};
    const char *state_dir = NULL;
    bool no_resume = false;
    struct global_opts g = {0};
    struct xfer_cli x = {0};
    const struct opt opts[] = {
        XFER_CLI_OPTS(x),
        {"storage-class", 0, OPT_STRING, &x.storage_class, "CLASS", "STANDARD, GLACIER, DEEP_ARCHIVE, GLACIER_IR, STANDARD_IA, ..."},
        {"content-type", 0, OPT_STRING, &x.content_type, "TYPE", "Content-Type of the object (default binary/octet-stream)"},
        {"metadata", 'm', OPT_LIST, &x.metadata, "NAME=VALUE", "user metadata (x-amz-meta-NAME), repeatable"},
        {"state-dir", 0, OPT_STRING, &state_dir, "DIR", "where interrupted uploads are journaled (default ~/.local/state/haul)"},
        {"no-resume", 0, OPT_FLAG, &no_resume, NULL, "do not journal or resume multipart uploads"},
        {"direct", 0, OPT_FLAG, &x.direct, NULL, "read with O_DIRECT, bypassing the page cache (falls back when refused)"},
        {NULL, 0, OPT_END, NULL, NULL, NULL}};
    const char *pos[2];
    int n_pos, rc = opts_parse(&help, opts, &g, argc, argv, pos, 2, &n_pos);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    if (n_pos != 2)
        return usage_error("put", "expected FILE|- and s3://BUCKET/KEY");
    char state[4096], source_id[4096];
    struct xfer_opts xo;
    struct s3_put_opts put;
    struct s3_meta meta[64];
    if ((rc = xfer_cli_apply("put", &x, &xo, &put, meta, 64)) != 0)
        return rc;
    haul_error err = {0};
    struct s3_url url;
    if (s3_url_parse(pos[1], &url, &err) < 0)
        return fail("put", &err);
    char *key = key_for(url.key, pos[0]);
    int exit_code = EXIT_FAILED;
    int fd = -1;
    struct s3_client *c = NULL;
    if (!key || !*key) {
        exit_code = usage_error("put", "'%s': an object key is needed when reading stdin", pos[1]);
        goto out;
    }
    fd = strcmp(pos[0], "-") == 0 ? STDIN_FILENO : open(pos[0], O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        err_errno(&err, errno, "%s", pos[0]);
        exit_code = fail("put", &err);
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        exit_code = usage_error("put", "'%s' is a directory (use haul backup for trees)", pos[0]);
        goto out;
    }
    if (!(c = client_open("put", &g)))
        goto out;
    if (S_ISREG(st.st_mode) && !no_resume && realpath(pos[0], source_id)) {
        state_dir_resolve(state_dir, state, sizeof state);
        xo.state_dir = state;
        xo.source_id = source_id;
    }
    struct progress *p = progress_start(key, S_ISREG(st.st_mode) ? (uint64_t)st.st_size : UINT64_MAX,
                                        !g.quiet && !g.json);
    xo.progress = progress_update;
    xo.progress_ctx = p;
    struct xfer_result res;
    double t0 = now_s();
    rc = xfer_upload_fd(c, fd, url.bucket, key, &xo, &res, &err);
    progress_stop(p);
    if (rc < 0) {
        exit_code = fail("put", &err);
        goto out;
    }
    struct summary s = {"put", pos[0], url.bucket, key, &res, now_s() - t0, {0}};
    s3_client_stats_get(c, &s.stats);
    summary_print(&s, &g, stdout);
    exit_code = EXIT_OK;
out:
    if (fd > STDIN_FILENO)
        close(fd);
    s3_client_free(c);
    for (int i = 0; i < x.metadata.n; i++)
        free(meta[i].name);
    free(key);
    s3_url_release(&url);
    return exit_code;
}

/* Creates a temporary file next to path, to be renamed over it when the
 * download is complete: an interrupted get never leaves a truncated file
 * under the real name. */
static int temp_open(const char *path, char *tmp, size_t cap)
{
    char dir_buf[4096];
    snprintf(dir_buf, sizeof dir_buf, "%s", path);
    snprintf(tmp, cap, "%s/.%s.haul-XXXXXX", dirname(dir_buf), base_name(path));
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd >= 0) {
        mode_t mask = umask(0);
        umask(mask);
        fchmod(fd, 0666 & ~mask);
    }
    return fd;
}

static char *local_path_for(const char *local, const char *key)
{
    struct stat st;
    size_t n = strlen(local);
    bool dir = (n && local[n - 1] == '/') || (stat(local, &st) == 0 && S_ISDIR(st.st_mode));
    if (!dir)
        return strdup(local);
    const char *name = base_name(key);
    char *p = malloc(n + strlen(name) + 2);
    if (p)
        sprintf(p, "%s%s%s", local, local[n - 1] == '/' ? "" : "/", name);
    return p;
}

static int get_run(struct s3_client *c, const struct s3_url *url, const char *local,
                   const struct global_opts *g, struct xfer_opts *xo, haul_error *err)
{
    bool to_stdout = strcmp(local, "-") == 0;
    char tmp[4200] = "";
    int fd = to_stdout ? STDOUT_FILENO : temp_open(local, tmp, sizeof tmp);
    if (fd < 0)
        return err_errno(err, errno, "%s: cannot create a file next to it", local);
    struct progress *p = progress_start(url->key, UINT64_MAX, !g->quiet && !g->json && !to_stdout);
    xo->progress = progress_update;
    xo->progress_ctx = p;
    struct xfer_result res;
    double t0 = now_s();
    int rc = xfer_download_fd(c, url->bucket, url->key, fd, xo, &res, err);
    progress_stop(p);
    if (!to_stdout) {
        if (rc == 0 && fsync(fd) < 0)
            rc = err_errno(err, errno, "%s", local);
        if (close(fd) < 0 && rc == 0)
            rc = err_errno(err, errno, "%s", local);
        if (rc == 0 && rename(tmp, local) < 0)
            rc = err_errno(err, errno, "rename %s to %s", tmp, local);
        if (rc < 0)
            unlink(tmp);
    }
    /* Data on stdout: the summary goes to stderr, and only when asked for. */
    if (rc == 0 && (!to_stdout || g->json || g->verbose)) {
        struct summary s = {"get", local, url->bucket, url->key, &res, now_s() - t0, {0}};
        s3_client_stats_get(c, &s.stats);
        summary_print(&s, g, to_stdout ? stderr : stdout);
    }
    return rc;
}

int cmd_get(int argc, char **argv)
{
    static const struct command_help help = {
        "get", "s3://BUCKET/KEY FILE|-", "Download one object to a file, or to standard output with '-'.",
        "Large objects are fetched as parallel ranged GETs into a bounded pool of buffers and\n"
        "written in order. The bytes are checked against the object's ETag when it is an MD5\n"
        "(single PUT), or multipart with the part size haul recorded at upload. A file is written\n"
        "under a temporary name and renamed into place only when complete. A FILE that is a\n"
        "directory gets the key's last component appended."};
    struct global_opts g = {0};
    struct xfer_cli x = {0};
    const struct opt opts[] = {
        XFER_CLI_OPTS(x),
        {"no-verify", 0, OPT_FLAG, &x.no_verify, NULL, "skip the ETag check of the bytes received"},
        {NULL, 0, OPT_END, NULL, NULL, NULL}};
    const char *pos[2];
    int n_pos, rc = opts_parse(&help, opts, &g, argc, argv, pos, 2, &n_pos);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    if (n_pos != 2)
        return usage_error("get", "expected s3://BUCKET/KEY and FILE|-");
    struct xfer_opts xo;
    struct s3_put_opts put;
    struct s3_meta meta[1];
    if ((rc = xfer_cli_apply("get", &x, &xo, &put, meta, 0)) != 0)
        return rc;
    haul_error err = {0};
    struct s3_url url;
    if (s3_url_parse(pos[0], &url, &err) < 0)
        return fail("get", &err);
    if (!url.key[0] || url.key[strlen(url.key) - 1] == '/') {
        s3_url_release(&url);
        return usage_error("get", "'%s': name one object (for many, use haul restore)", pos[0]);
    }
    char *local = local_path_for(pos[1], url.key);
    struct s3_client *c = client_open("get", &g);
    int exit_code = EXIT_FAILED;
    if (c && local) {
        rc = get_run(c, &url, local, &g, &xo, &err);
        exit_code = rc == 0 ? EXIT_OK : fail("get", &err);
    }
    s3_client_free(c);
    free(local);
    s3_url_release(&url);
    return exit_code;
}

/* cmd/backup: haul backup DIR... s3://BUCKET[/PREFIX]. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "dist/dist.h"
#include "dist/waiter.h"
#include "job/backup.h"
#include "job/dbackup.h"
#include "job/policy.h"
#include "util/err.h"
#include "util/graphite.h"

/* "7d", "12h", "90m", "30s", "2w" ago, or a date "2024-01-31[THH:MM:SS]" (UTC). */
static int when_parse(const char *s, time_t *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end != s && v >= 0 && end[0] && !end[1] && strchr("smhdw", end[0])) {
        long unit = end[0] == 's' ? 1 : end[0] == 'm' ? 60 : end[0] == 'h' ? 3600 : end[0] == 'd' ? 86400 : 604800;
        *out = time(NULL) - v * unit;
        return 0;
    }
    struct tm tm = {0};
    const char *rest = strptime(s, "%Y-%m-%d", &tm);
    if (rest && *rest == 'T')
        rest = strptime(rest + 1, "%H:%M:%S", &tm);
    if (!rest || *rest)
        return -1;
    *out = timegm(&tm);
    return 0;
}

struct live {
    struct backup_stats *stats;
    time_t start;
};

static void live_draw(void *arg)
{
    struct live *l = arg;
    struct backup_stats *s = l->stats;
    char bytes[32], seen[32];
    format_size(atomic_load(&s->bytes_uploaded), bytes, sizeof bytes);
    format_size(atomic_load(&s->bytes_seen), seen, sizeof seen);
    fprintf(stderr, "scanned %llu files (%s), uploaded %llu (%s), unchanged %llu, errors %llu, %.0f s",
            (unsigned long long)atomic_load(&s->files), seen,
            (unsigned long long)atomic_load(&s->uploaded), bytes,
            (unsigned long long)atomic_load(&s->unchanged), (unsigned long long)atomic_load(&s->errors),
            difftime(time(NULL), l->start));
}

/* The counters Graphite receives (cumulative; Graphite's derivative()
 * gives the rates). */
static size_t graphite_sample(struct graphite_metric *m, size_t cap, void *arg)
{
    const struct backup_stats *s = ((struct live *)arg)->stats;
    const struct graphite_metric all[] = {
        {"files_seen", atomic_load(&s->files)},       {"dirs_seen", atomic_load(&s->dirs)},
        {"bytes_seen", atomic_load(&s->bytes_seen)},  {"uploaded", atomic_load(&s->uploaded)},
        {"bytes_uploaded", atomic_load(&s->bytes_uploaded)}, {"unchanged", atomic_load(&s->unchanged)},
        {"hardlinks", atomic_load(&s->hardlinks)},    {"deleted", atomic_load(&s->deleted)},
        {"errors", atomic_load(&s->errors)},
    };
    size_t n = sizeof all / sizeof *all < cap ? sizeof all / sizeof *all : cap;
    memcpy(m, all, n * sizeof *m);
    return n;
}

static void on_line(const char *what, const char *key, void *ctx)
{
    const struct global_opts *g = ctx;
    if (strcmp(what, "error") != 0 && (g->verbose || strstr(what, "dry run")))
        printf("%s: %s\n", what, key);
}

static void on_waiting(void *ctx)
{
    const struct global_opts *g = ctx;
    if (!g->quiet)
        fprintf(stderr, "haul backup: no worker is attached to the job's queue yet (start `haul worker --broker ...`)\n");
}

static void summary(const struct backup_stats *s, const struct global_opts *g, double secs)
{
    if (g->json) {
        printf("{\"files\":%llu,\"dirs\":%llu,\"symlinks\":%llu,\"bytes_seen\":%llu,\"uploaded\":%llu,"
               "\"bytes_uploaded\":%llu,\"unchanged\":%llu,\"hardlinks\":%llu,\"deleted\":%llu,"
               "\"skipped_special\":%llu,\"errors\":%llu,\"rescanned\":%llu,\"seconds\":%.3f,\"files_per_s\":%.1f}\n",
               (unsigned long long)s->files, (unsigned long long)s->dirs, (unsigned long long)s->symlinks,
               (unsigned long long)s->bytes_seen, (unsigned long long)s->uploaded,
               (unsigned long long)s->bytes_uploaded, (unsigned long long)s->unchanged,
               (unsigned long long)s->hardlinks, (unsigned long long)s->deleted,
               (unsigned long long)s->others, (unsigned long long)s->errors,
               (unsigned long long)s->rescanned, secs,
               secs > 0 ? (double)s->files / secs : 0);
    } else if (!g->quiet) {
        char up[32];
        format_size(s->bytes_uploaded, up, sizeof up);
        printf("backup: %llu files, %llu dirs, %llu symlinks seen; %llu objects uploaded (%s), "
               "%llu unchanged, %llu deleted, %llu errors in %.1f s\n",
               (unsigned long long)s->files, (unsigned long long)s->dirs,
               (unsigned long long)s->symlinks, (unsigned long long)s->uploaded, up,
               (unsigned long long)s->unchanged, (unsigned long long)s->deleted,
               (unsigned long long)s->errors, secs);
    }
}

struct backup_cli {
    struct dist_trust_cli trust;
    const char *bucketname, *storage_class_large, *state_dir, *newer, *older, *broker, *job;
    uint64_t small_threshold, range_size;
    int small_workers, walk_threads, max_delete;
    bool check_sha256, dry_run, delete_missing, one_fs, backup_flag, restore_flag, show_policy, rescan;
    bool allow_empty_src, allow_new_src;
    struct opt_list exclude, include;
    struct broker_cli bc;
    struct xfer_cli x;
    struct graphite_cli graphite;
};

static int filter_build(const struct backup_cli *cli, struct walk_filter **out)
{
    haul_error err = {0};
    struct walk_filter *f = walk_filter_new();
    if (!f)
        return usage_error("backup", "out of memory");
    for (int i = 0; i < cli->exclude.n; i++)
        if (walk_filter_exclude_add(f, cli->exclude.items[i], &err) < 0)
            goto bad;
    for (int i = 0; i < cli->include.n; i++)
        if (walk_filter_include_add(f, cli->include.items[i], &err) < 0)
            goto bad;
    time_t t;
    if (cli->newer && when_parse(cli->newer, &t) < 0) {
        walk_filter_free(f);
        return usage_error("backup", "--newer-than '%s': expected 7d, 12h, 30m, 2w or YYYY-MM-DD", cli->newer);
    }
    if (cli->newer)
        walk_filter_mtime_newer_set(f, t);
    if (cli->older && when_parse(cli->older, &t) < 0) {
        walk_filter_free(f);
        return usage_error("backup", "--older-than '%s': expected 7d, 12h, 30m, 2w or YYYY-MM-DD", cli->older);
    }
    if (cli->older)
        walk_filter_mtime_older_set(f, t);
    *out = f;
    return 0;
bad:
    walk_filter_free(f);
    return usage_error("backup", "%s", err.msg);
}

/* DIR... s3://BUCKET[/PREFIX], or DIR... with --bucketname B. */
static int destination(const struct backup_cli *cli, const char **pos, int *n_pos, struct s3_url *url)
{
    haul_error err = {0};
    char buf[128];
    const char *dest;
    if (cli->bucketname) {
        snprintf(buf, sizeof buf, "s3://%s", cli->bucketname);
        dest = buf;
    } else if (*n_pos >= 2) {
        dest = pos[--*n_pos];
    } else {
        return usage_error("backup", "expected DIR... and s3://BUCKET[/PREFIX] (or --bucketname)");
    }
    if (*n_pos < 1)
        return usage_error("backup", "expected at least one DIR");
    if (s3_url_parse(dest, url, &err) < 0)
        return fail("backup", &err);
    size_t n = strlen(url->key);
    if (n && url->key[n - 1] != '/') {
        /* A prefix names a directory-like level: "s3://b/x" stores "x/...". */
        char *k = realloc(url->key, n + 2);
        if (!k)
            return usage_error("backup", "out of memory");
        k[n] = '/';
        k[n + 1] = '\0';
        url->key = k;
    }
    return 0;
}

int cmd_backup(int argc, char **argv)
{
    static const struct command_help help = {
        "backup", "DIR... s3://BUCKET[/PREFIX]",
        "Back up directory trees to a bucket, incrementally: only files that are new or whose size,\n"
        "mtime, mode or owner changed since the last run are uploaded.",
        "Keys are PREFIX + the path relative to DIR (with several DIRs, PREFIX + DIR's name + path).\n"
        "POSIX metadata goes in x-amz-meta-* as s3fs-fuse writes it (mode, uid, gid, mtime with\n"
        "nanoseconds), directories are 'path/' objects, symlinks are objects holding their target,\n"
        "hard links are stored once. Files up to --small-file-threshold stay in STANDARD; larger\n"
        "ones get --storage-class-large (e.g. GLACIER) and go through the streaming engine. What\n"
        "was stored is recorded in an index under the state directory, so a run that changes\n"
        "nothing lists no bucket and uploads nothing. A run killed midway loses nothing: run it\n"
        "again. --delete removes objects whose files are gone (refused with --include/--exclude\n"
        "unless --delete-excluded, and skipped when any entry could not be read). It refuses to\n"
        "delete anything (exit 1) when a DIR is empty (an unmounted filesystem?: --allow-empty-src),\n"
        "another filesystem than at the last run (root inode, statfs fsid and type, device; kept\n"
        "in the index: --allow-new-src) or changed during the run, and with --max-delete N when\n"
        "more than N objects would go. With --dry-run it lists what it would delete. The index is\n"
        "bound to the bucket by the marker PREFIX/.haul/index-id (one HEAD a run): when it is\n"
        "missing or another index's, the index is stale and the bucket is rescanned; --delete is\n"
        "then skipped for that run, and while the marker named another index until a run with\n"
        "--rescan-remote (which takes the prefix over: its objects DIR lacks go). PREFIX/.haul/\n"
        "is haul's: a top-level .haul in DIR is refused. One run per destination: a second one\n"
        "exits 1 at once.\n"
        "Distributed (--broker-file FILE, --broker URL, or --job with HAUL_BROKER; amqps:// for\n"
        "TLS): this process becomes the coordinator of `haul worker`s on other nodes: they read\n"
        "the tree and upload, this process decides what changed against the same index as a\n"
        "local run and records what they stored.\n"
        "Aliases of the older tool: --bucketname, --backup, --num-smallfile-workers,\n"
        "--num-largefile-workers, --num-largefile-buffers, --check-sha256, --show-bucket-policy."};
    struct global_opts g = {0};
    struct backup_cli cli = {.trust = {.refuse_timeout = DIST_REFUSE_TIMEOUT_S}, .small_threshold = 128 * 1024, .range_size = 1ull << 30, .graphite = {.interval = 30},
                             .max_delete = -1};
    bool delete_excluded = false;
    const struct opt opts[] = {
        XFER_CLI_OPTS(cli.x),
        {"bucketname", 0, OPT_STRING, &cli.bucketname, "BUCKET", "the destination bucket (instead of the s3:// argument)"},
        {"backup", 0, OPT_FLAG, &cli.backup_flag, NULL, "accepted for compatibility (this is the backup command)"},
        {"restore", 0, OPT_FLAG, &cli.restore_flag, NULL, "refused here: use haul restore"},
        {"small-file-threshold", 0, OPT_SIZE, &cli.small_threshold, "BYTES", "files up to this size stay in STANDARD (default 128K)"},
        {"storage-class-large", 0, OPT_STRING, &cli.storage_class_large, "CLASS", "storage class of larger files (GLACIER, DEEP_ARCHIVE, GLACIER_IR, STANDARD)"},
        {"num-smallfile-workers", 0, OPT_INT, &cli.small_workers, "N", "parallel small-file uploads (default 16)"},
        {"walk-threads", 0, OPT_INT, &cli.walk_threads, "N", "directory-walking threads (default 4)"},
        {"check-sha256", 0, OPT_FLAG, &cli.check_sha256, NULL, "compare and record the SHA-256 tree hash (reads every file)"},
        {"exclude", 0, OPT_LIST, &cli.exclude, "GLOB", "skip matching paths (repeatable; 'dir/' for directories)"},
        {"include", 0, OPT_LIST, &cli.include, "GLOB", "only matching files (repeatable)"},
        {"newer-than", 0, OPT_STRING, &cli.newer, "WHEN", "only files modified after WHEN (7d, 12h, 2024-01-31)"},
        {"older-than", 0, OPT_STRING, &cli.older, "WHEN", "only files modified before WHEN"},
        {"dry-run", 'n', OPT_FLAG, &cli.dry_run, NULL, "print what would be uploaded, change nothing"},
        {"delete", 0, OPT_FLAG, &cli.delete_missing, NULL, "remove objects whose files are gone"},
        {"delete-excluded", 0, OPT_FLAG, &delete_excluded, NULL, "allow --delete with filters (objects of unselected files go too)"},
        {"max-delete", 0, OPT_INT, &cli.max_delete, "N", "--delete: when more than N objects would go, delete nothing and exit 1"},
        {"allow-empty-src", 0, OPT_FLAG, &cli.allow_empty_src, NULL, "--delete: an empty DIR may make every object of it go"},
        {"allow-new-src", 0, OPT_FLAG, &cli.allow_new_src, NULL, "--delete: DIR may be another filesystem than at the last run (then recorded)"},
        {"one-file-system", 'x', OPT_FLAG, &cli.one_fs, NULL, "do not cross into other filesystems"},
        {"state-dir", 0, OPT_STRING, &cli.state_dir, "DIR", "index and journals (default ~/.local/state/haul)"},
        {"rescan-remote", 0, OPT_FLAG, &cli.rescan, NULL, "rebuild the index from the bucket first, dropping entries whose objects are gone (done by itself when PREFIX/.haul/index-id is missing or another index's)"},
        {"show-bucket-policy", 0, OPT_FLAG, &cli.show_policy, NULL, "print the bucket's lifecycle rules and exit"},
        BROKER_CLI_OPTS(cli.bc),
        {"job", 0, OPT_STRING, &cli.job, "NAME", "with --broker: the job's queues haul.NAME.* (default haul)"},
        {"range-size", 0, OPT_SIZE, &cli.range_size, "BYTES", "with --broker: larger files are uploaded as parts spread over the workers, this many bytes per unit (default 1G; 0 = off)"},
        DIST_TRUST_CLI_OPTS(cli.trust),
        DIST_REFUSE_CLI_OPTS(cli.trust),
        GRAPHITE_CLI_OPTS("backup", cli.graphite),
        {NULL, 0, OPT_END, NULL, NULL, NULL}};
    const char *pos[64];
    int n_pos, rc = opts_parse(&help, opts, &g, argc, argv, pos, 64, &n_pos);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    if (cli.restore_flag)
        return usage_error("backup", "--restore: use 'haul restore s3://BUCKET[/PREFIX] DIR'");
    /* --job says "distributed": HAUL_BROKER may name the broker */
    if ((rc = broker_cli_resolve("backup", &cli.bc, cli.job != NULL, &cli.broker)) != 0)
        return rc;
    if (cli.job && !cli.broker)
        return usage_error("backup", "--job needs --broker-file, --broker or HAUL_BROKER");
    rc = cli.broker ? dist_trust_cli_refuse("backup", &cli.trust) : 0;
    if (rc == 0 && cli.broker)
        rc = dist_trust_cli_key("backup", &cli.trust);
    if (rc != 0)
        return rc;
    if (cli.max_delete < -1)
        return usage_error("backup", "--max-delete takes 0 or more");
    if (cli.range_size && cli.range_size < 5 * 1024 * 1024)
        return usage_error("backup", "--range-size must be 0 (off) or at least 5M (one part)");
    struct s3_url url = {0};
    if ((rc = destination(&cli, pos, &n_pos, &url)) != 0)
        return rc;
    if (cli.delete_missing && (cli.exclude.n || cli.include.n || cli.newer || cli.older) && !delete_excluded) {
        s3_url_release(&url);
        return usage_error("backup", "--delete with filters would remove the objects of unselected files; add --delete-excluded if that is meant");
    }
    struct walk_filter *filter = NULL;
    struct xfer_opts xo;
    struct s3_put_opts unused_put;
    struct s3_meta unused_meta[1];
    if ((rc = xfer_cli_apply("backup", &cli.x, &xo, &unused_put, unused_meta, 0)) != 0 ||
        (rc = filter_build(&cli, &filter)) != 0) {
        s3_url_release(&url);
        return rc;
    }
    xo.put = NULL;
    struct s3_client *c = client_open("backup", &g);
    int exit_code = EXIT_FAILED;
    haul_error err = {0};
    if (c && cli.show_policy) {
        exit_code = policy_show(c, url.bucket, g.json, stdout, &err) == 0 ? EXIT_OK : fail("backup", &err);
    } else if (c) {
        char state[4096];
        state_dir_resolve(cli.state_dir, state, sizeof state);
        struct backup_opts o = {
            .roots = pos, .n_roots = (size_t)n_pos, .bucket = url.bucket, .prefix = url.key,
            .small_threshold = cli.small_threshold, .storage_class_large = cli.storage_class_large,
            .small_workers = cli.small_workers, .large_workers = 1, .walk_threads = cli.walk_threads,
            .xfer = xo, .filter = filter, .check_sha256 = cli.check_sha256, .dry_run = cli.dry_run,
            .delete_missing = cli.delete_missing, .one_filesystem = cli.one_fs, .state_dir = state,
            .rescan_remote = cli.rescan,
            .allow_empty_src = cli.allow_empty_src, .allow_new_src = cli.allow_new_src,
            .max_delete_set = cli.max_delete >= 0, .max_delete = cli.max_delete >= 0 ? (uint64_t)cli.max_delete : 0,
            .line = on_line, .line_ctx = &g, .cancel = &cmd_interrupted,
        };
        struct backup_stats stats;
        memset(&stats, 0, sizeof stats);
        struct live live = {.stats = &stats, .start = time(NULL)};
        struct graphite_reporter *reporter = NULL;
        if ((exit_code = graphite_cli_start("backup", &cli.graphite, graphite_sample, &live, &reporter)) != 0)
            goto out;
        struct ticker *ticker = ticker_start(live_draw, &live, !g.quiet && !g.json);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (cli.broker) {
            time_t newer = 0, older = 0;
            if (cli.newer)
                when_parse(cli.newer, &newer);
            if (cli.older)
                when_parse(cli.older, &older);
            struct dbackup_opts d = {
                .broker_url = cli.broker, .job = cli.job ? cli.job : "haul", .backup = &o,
                .excludes = (const char *const *)cli.exclude.items, .nexcludes = (size_t)cli.exclude.n,
                .includes = (const char *const *)cli.include.items, .nincludes = (size_t)cli.include.n,
                .mtime_newer = newer, .mtime_older = older, .range_size = cli.range_size,
                .waiting = on_waiting, .ctx = &g, .key = cli.trust.key,
                .refuse_timeout_s = cli.trust.refuse_timeout,
            };
            rc = dbackup_run(c, &d, &stats, &err);
        } else {
            rc = backup_run(c, &o, &stats, &err);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ticker_stop(ticker, false);
        graphite_cli_stop("backup", &cli.graphite, reporter);
        summary(&stats, &g, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
        exit_code = rc == 0 ? EXIT_OK : fail("backup", &err);
    }
out:
    s3_client_free(c);
    walk_filter_free(filter);
    s3_url_release(&url);
    return exit_code;
}

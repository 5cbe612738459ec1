/* cmd/clone: haul clone SRC DST [--pass copy|delete|dirtimes|all]. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "job/clone.h"
#include "dist/dist.h"
#include "dist/waiter.h"
#include "job/dclone.h"
#include "util/err.h"
#include "util/graphite.h"

struct clone_cli {
    const char *pass, *broker, *job, *state_dir;
    struct broker_cli bc;
    struct graphite_cli graphite;
    int threads, range_threads, skip_atime_older, skip_mtime_newer, mdt_count, max_delete;
    uint64_t parallel_threshold, chunk, range_size;
    bool checksum, xattrs, fsync, dry_run, one_fs, stripes, allow_empty_src, allow_new_src;
    struct opt_list exclude;
    struct dist_trust_cli trust;
};

/* "copy", "delete,dirtimes", "all" -> CLONE_PASS_* bits; 0 when unknown. */
static unsigned passes_parse(const char *s)
{
    unsigned bits = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (strcmp(p, "copy") == 0)
            bits |= CLONE_PASS_COPY;
        else if (strcmp(p, "delete") == 0)
            bits |= CLONE_PASS_DELETE;
        else if (strcmp(p, "dirtimes") == 0)
            bits |= CLONE_PASS_DIRTIMES;
        else if (strcmp(p, "all") == 0)
            bits |= CLONE_PASS_ALL;
        else
            return 0;
    }
    return bits;
}

struct live {
    struct clone_stats *stats;
    struct timespec start;
};

#define LOAD(field) ((unsigned long long)atomic_load(&s->field))

static void live_draw(void *arg)
{
    struct live *l = arg;
    struct clone_stats *s = l->stats;
    double secs = seconds_since(&l->start);
    char bytes[32], rate[32];
    format_size(LOAD(bytes_copied), bytes, sizeof bytes);
    format_size(secs > 0 ? (uint64_t)((double)LOAD(bytes_copied) / secs) : 0, rate, sizeof rate);
    fprintf(stderr, "scanned %llu, copied %llu (%s, %s/s), up to date %llu, skipped %llu, deleted %llu, failed %llu, %.0f files/s",
            LOAD(files) + LOAD(dirs) + LOAD(symlinks) + LOAD(others), LOAD(copied), bytes, rate, LOAD(up_to_date),
            LOAD(skipped_atime) + LOAD(skipped_mtime), LOAD(deleted), LOAD(failed),
            secs > 0 ? (double)LOAD(files) / secs : 0);
}

/* The counters Graphite receives (cumulative; Graphite's derivative()
 * gives the rates). */
static size_t graphite_sample(struct graphite_metric *m, size_t cap, void *arg)
{
    const struct clone_stats *s = ((struct live *)arg)->stats;
    const struct graphite_metric all[] = {
        {"files_seen", LOAD(files)}, {"dirs_seen", LOAD(dirs)}, {"bytes_seen", LOAD(bytes_seen)},
        {"copied", LOAD(copied)}, {"bytes_copied", LOAD(bytes_copied)}, {"up_to_date", LOAD(up_to_date)},
        {"meta_updated", LOAD(meta_updated)}, {"hardlinks", LOAD(hardlinks)},
        {"skipped_atime", LOAD(skipped_atime)}, {"skipped_mtime", LOAD(skipped_mtime)},
        {"deleted", LOAD(deleted)}, {"dirtimes", LOAD(dirtimes)}, {"failed", LOAD(failed)},
    };
    size_t n = sizeof all / sizeof *all < cap ? sizeof all / sizeof *all : cap;
    memcpy(m, all, n * sizeof *m);
    return n;
}

static void summary(const struct clone_stats *s, const struct global_opts *g, double secs)
{
    if (g->json) {
        printf("{\"files\":%llu,\"dirs\":%llu,\"symlinks\":%llu,\"others\":%llu,\"bytes_seen\":%llu,"
               "\"copied\":%llu,\"bytes_copied\":%llu,\"up_to_date\":%llu,\"meta_updated\":%llu,"
               "\"hardlinks\":%llu,\"skipped_atime\":%llu,\"skipped_mtime\":%llu,\"deleted\":%llu,"
               "\"dirtimes\":%llu,\"failed\":%llu,\"seconds\":%.3f,\"files_per_s\":%.1f,\"bytes_per_s\":%.0f}\n",
               LOAD(files), LOAD(dirs), LOAD(symlinks), LOAD(others), LOAD(bytes_seen), LOAD(copied),
               LOAD(bytes_copied), LOAD(up_to_date), LOAD(meta_updated), LOAD(hardlinks), LOAD(skipped_atime),
               LOAD(skipped_mtime), LOAD(deleted), LOAD(dirtimes), LOAD(failed), secs,
               secs > 0 ? (double)LOAD(files) / secs : 0, secs > 0 ? (double)LOAD(bytes_copied) / secs : 0);
    } else if (!g->quiet) {
        char bytes[32], rate[32];
        format_size(LOAD(bytes_copied), bytes, sizeof bytes);
        format_size(secs > 0 ? (uint64_t)((double)LOAD(bytes_copied) / secs) : 0, rate, sizeof rate);
        printf("clone: %llu files, %llu dirs, %llu symlinks, %llu others seen; %llu copied (%s, %s/s), "
               "%llu up to date, %llu metadata fixed, %llu hard links, %llu skipped by age, %llu deleted, "
               "%llu directory times set, %llu failed in %.1f s (%.0f files/s)\n",
               LOAD(files), LOAD(dirs), LOAD(symlinks), LOAD(others), LOAD(copied), bytes, rate, LOAD(up_to_date),
               LOAD(meta_updated), LOAD(hardlinks), LOAD(skipped_atime) + LOAD(skipped_mtime), LOAD(deleted),
               LOAD(dirtimes), LOAD(failed), secs, secs > 0 ? (double)LOAD(files) / secs : 0);
    }
}

static void on_line(const char *what, const char *path, const char *msg, void *ctx)
{
    const struct global_opts *g = ctx;
    if (strcmp(what, "error") == 0)
        fprintf(stderr, "haul clone: %s: %s\n", path[0] ? path : ".", msg);
    else if (g->verbose)
        printf("%s %s\n", what, path);
}

static void on_dry_line(const char *what, const char *path, const char *msg, void *ctx)
{
    if (strcmp(what, "error") == 0)
        on_line(what, path, msg, ctx);
    else
        printf("would %s %s\n", what, path);
}

static void on_waiting(void *ctx)
{
    const struct global_opts *g = ctx;
    if (!g->quiet)
        fprintf(stderr, "haul clone: no worker is attached to the job's queue yet (start `haul worker --broker ...`)\n");
}

static const struct command_help help = {
    .name = "clone",
    .usage = "SRC DST",
    .summary = "Make directory DST an identical copy of directory SRC, in passes.",
    .details =
        "Passes (--pass, comma-separated, run in this order):\n"
        "  copy      copy what is missing on DST or differs (size or mtime; content with --checksum);\n"
        "            create directories; symlinks, hard links, FIFOs and devices as such; keep mode,\n"
        "            owner (as root), atime/mtime, holes of sparse files, and with --xattrs extended\n"
        "            attributes and ACLs.  Files appear under their name only once complete.\n"
        "  delete    remove from DST what SRC no longer has (never anything outside DST).\n"
        "  dirtimes  set every directory's times on DST to SRC's, deepest first.\n"
        "  all       copy, delete, dirtimes (the default is copy).\n"
        "A live migration runs copy passes while users work, then `--pass all` in the downtime.\n"
        "The delete pass refuses to run (exit 1, nothing deleted) when SRC is empty while DST is\n"
        "not (an unmounted filesystem?: --allow-empty-src), or is another filesystem than at the\n"
        "last run on this DST (root inode, statfs fsid and type, device; recorded in the state\n"
        "directory: --allow-new-src), and with --max-delete N when more than N entries would go\n"
        "(counted first, everything below a directory that goes included).\n"
        "Like rsync -aH SRC/ DST/: the contents of SRC go into DST (created when missing).\n"
        "\n"
        "Distributed (--broker-file FILE, --broker URL, or --job with HAUL_BROKER; amqps:// for\n"
        "TLS): this process becomes the coordinator of `haul worker`s on\n"
        "any number of nodes (each mounting SRC and DST at the same paths), through the RabbitMQ\n"
        "queues haul.JOB.* (--job, default haul).  Passes run one after another, each to the\n"
        "end; directory metadata (mode, owner, times) is set only in the dirtimes pass, so a\n"
        "copy pass is always followed by one.  Hard links go through DST/.haul-links during the\n"
        "copy pass.  A worker that dies loses nothing; a coordinator that dies is restarted with\n"
        "the same command (and --job): it redoes the passes, finding what is done up to date.\n"
        "Progress, summary and exit status are those of a local clone; file errors are in the\n"
        "workers' logs.  --dry-run is local only.",
};

int cmd_clone(int argc, char **argv)
{
    struct clone_cli cli = {.pass = "copy", .graphite = {.interval = 30}, .range_size = 1ull << 30, .max_delete = -1,
                          .trust = {.refuse_timeout = DIST_REFUSE_TIMEOUT_S}};
    struct global_opts g = {0};
    const struct opt opts[] = {
        {"pass", 0, OPT_STRING, &cli.pass, "PASSES", "copy, delete, dirtimes or all, comma-separated (default copy)"},
        {"threads", 'j', OPT_INT, &cli.threads, "N", "walker threads reading, comparing and copying (default 8)"},
        {"range-threads", 0, OPT_INT, &cli.range_threads, "N", "threads copying ranges of large files (default: --threads)"},
        {"parallel-threshold", 0, OPT_SIZE, &cli.parallel_threshold, "BYTES", "files at least this big are copied in parallel ranges (default 256M)"},
        {"chunk-size", 0, OPT_SIZE, &cli.chunk, "BYTES", "size of those ranges (default 64M)"},
        {"range-size", 0, OPT_SIZE, &cli.range_size, "BYTES", "with --broker: larger files are copied in units of this many bytes spread over the workers (default 1G; 0 = off)"},
        {"checksum", 'c', OPT_FLAG, &cli.checksum, NULL, "compare the bytes of files whose size and mtime match"},
        {"xattrs", 'X', OPT_FLAG, &cli.xattrs, NULL, "copy extended attributes and ACLs"},
        {"fsync", 0, OPT_FLAG, &cli.fsync, NULL, "flush every file to disk before it gets its name"},
        {"dry-run", 'n', OPT_FLAG, &cli.dry_run, NULL, "print what would change (\"would copy PATH\"), change nothing"},
        {"one-file-system", 'x', OPT_FLAG, &cli.one_fs, NULL, "do not cross mount points below SRC"},
        {"exclude", 0, OPT_LIST, &cli.exclude, "GLOB", "leave out matching paths (repeatable; see README)"},
        {"max-delete", 0, OPT_INT, &cli.max_delete, "N", "delete pass: when more than N entries would go, delete nothing and exit 1"},
        {"allow-empty-src", 0, OPT_FLAG, &cli.allow_empty_src, NULL, "delete pass: an empty SRC may empty DST"},
        {"allow-new-src", 0, OPT_FLAG, &cli.allow_new_src, NULL, "delete pass: SRC may be another filesystem than at the last run (then recorded)"},
        {"state-dir", 0, OPT_STRING, &cli.state_dir, "DIR", "where SRC's identity per DST is recorded (default ~/.local/state/haul)"},
        {"skip-atime-older", 0, OPT_INT, &cli.skip_atime_older, "DAYS", "do not copy files not read for DAYS days (0: off)"},
        {"skip-mtime-newer", 0, OPT_INT, &cli.skip_mtime_newer, "SECONDS", "leave files modified in the last SECONDS to the final pass (0: off)"},
        GRAPHITE_CLI_OPTS("clone", cli.graphite),
        {"mdt-count", 0, OPT_INT, &cli.mdt_count, "N", "Lustre: spread top-level directories over N MDTs (lfs mkdir -i)"},
        {"lustre-stripes", 0, OPT_FLAG, &cli.stripes, NULL, "Lustre: large files keep their stripe count and size"},
        BROKER_CLI_OPTS(cli.bc),
        {"job", 0, OPT_STRING, &cli.job, "NAME", "distributed: the job name, queues haul.NAME.* (default haul)"},
        DIST_TRUST_CLI_OPTS(cli.trust),
        DIST_REFUSE_CLI_OPTS(cli.trust),
        {NULL, 0, OPT_END, NULL, NULL, NULL},
    };
    const char *pos[2];
    int n_pos;
    int prc = opts_parse_local(&help, opts, &g, argc, argv, pos, 2, &n_pos);
    if (prc != 0)
        return prc > 0 ? EXIT_OK : EXIT_USAGE;
    if (n_pos != 2)
        return usage_error("clone", "expected SRC and DST");
    unsigned passes = passes_parse(cli.pass);
    if (!passes)
        return usage_error("clone", "--pass: '%s' is not copy, delete, dirtimes or all", cli.pass);
    if (cli.threads < 0 || cli.threads > 1024 || cli.range_threads < 0 || cli.range_threads > 1024)
        return usage_error("clone", "--threads and --range-threads take 1 to 1024");
    if (cli.skip_atime_older < 0 || cli.skip_mtime_newer < 0 || cli.mdt_count < 0)
        return usage_error("clone", "--skip-atime-older, --skip-mtime-newer and --mdt-count take 0 or more");
    /* --job says "distributed": HAUL_BROKER may name the broker */
    if ((prc = broker_cli_resolve("clone", &cli.bc, cli.job != NULL, &cli.broker)) != 0)
        return prc;
    if (cli.job && !cli.broker)
        return usage_error("clone", "--job needs --broker-file, --broker or HAUL_BROKER");
    if (cli.broker && (cli.dry_run || cli.mdt_count || cli.stripes))
        return usage_error("clone", "--dry-run, --mdt-count and --lustre-stripes are not available with --broker");
    int trc = cli.broker ? dist_trust_cli_refuse("clone", &cli.trust) : 0;
    if (trc == 0 && cli.broker)
        trc = dist_trust_cli_key("clone", &cli.trust);
    if (trc != 0)
        return trc;
    if (cli.max_delete < -1)
        return usage_error("clone", "--max-delete takes 0 or more");
    if (cli.chunk && cli.chunk < 1024 * 1024)
        return usage_error("clone", "--chunk-size must be at least 1M");
    if (cli.range_size && cli.range_size < 1024 * 1024)
        return usage_error("clone", "--range-size must be 0 (off) or at least 1M");

    haul_error err = {0};
    struct walk_filter *filter = walk_filter_new();
    if (!filter)
        return fail("clone", &(haul_error){.code = HAUL_ENOMEM, .msg = "out of memory"});
    for (int i = 0; i < cli.exclude.n; i++)
        if (walk_filter_exclude_add(filter, cli.exclude.items[i], &err) < 0) {
            walk_filter_free(filter);
            return fail("clone", &err);
        }

    char state[4096];
    state_dir_resolve(cli.state_dir, state, sizeof state);
    struct clone_stats stats = {0};
    struct live live = {.stats = &stats};
    clock_gettime(CLOCK_MONOTONIC, &live.start);
    struct clone_opts o = {
        .src = pos[0], .dst = pos[1], .passes = passes,
        .threads = (unsigned)cli.threads, .range_threads = (unsigned)cli.range_threads,
        .parallel_threshold = cli.parallel_threshold, .chunk = cli.chunk,
        .checksum = cli.checksum, .xattrs = cli.xattrs, .fsync = cli.fsync, .dry_run = cli.dry_run,
        .one_filesystem = cli.one_fs,
        .skip_atime_older_days = (unsigned)cli.skip_atime_older,
        .skip_mtime_newer_secs = (unsigned)cli.skip_mtime_newer,
        .filter = filter,
        .layout = {.mdt_count = (unsigned)cli.mdt_count, .stripes = cli.stripes},
        .state_dir = state, .allow_empty_src = cli.allow_empty_src, .allow_new_src = cli.allow_new_src,
        .max_delete_set = cli.max_delete >= 0, .max_delete = cli.max_delete >= 0 ? (uint64_t)cli.max_delete : 0,
        .cancel = &cmd_interrupted,
        .line = cli.dry_run ? on_dry_line : on_line,
        .line_ctx = &g,
    };
    struct graphite_reporter *reporter;
    int rc = graphite_cli_start("clone", &cli.graphite, graphite_sample, &live, &reporter);
    if (rc != 0) {
        walk_filter_free(filter);
        return rc;
    }
    struct ticker *ticker = ticker_start(live_draw, &live, !g.quiet && !g.json && !cli.dry_run);
    if (cli.broker) {
        struct dclone_opts d = {.broker_url = cli.broker, .job = cli.job ? cli.job : "haul", .clone = &o,
                                .range_size = cli.range_size,
                                .excludes = cli.exclude.items, .nexcludes = (size_t)cli.exclude.n,
                                .waiting = on_waiting, .ctx = &g, .key = cli.trust.key,
                                .refuse_timeout_s = cli.trust.refuse_timeout};
        rc = dclone_run(&d, &stats, &err);
        dist_trust_cli_release(&cli.trust);
    } else {
        rc = clone_run(&o, &stats, &err);
    }
    ticker_stop(ticker, false);
    graphite_cli_stop("clone", &cli.graphite, reporter);
    walk_filter_free(filter);
    summary(&stats, &g, seconds_since(&live.start));
    if (rc < 0)
        return fail("clone", &err);
    return EXIT_OK;
}

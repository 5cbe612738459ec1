/* cmd/restore: haul restore s3://BUCKET[/PREFIX] DIR (or --into PATH). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "job/restore.h"
#include "util/err.h"

/* Exit status 3: the run restored everything it could, but archived objects
 * are still being restored by the server (documented in --help). */
#define EXIT_PENDING 3

struct live {
    struct restore_stats *stats;
    struct timespec start;
};

static void live_draw(void *arg)
{
    struct live *l = arg;
    struct restore_stats *s = l->stats;
    char bytes[32];
    format_size(atomic_load(&s->bytes), bytes, sizeof bytes);
    fprintf(stderr, "restore: %llu objects listed, %llu files (%s), %llu dirs, %llu skipped, "
            "%llu pending, %llu errors, %.0f s",
            (unsigned long long)atomic_load(&s->objects), (unsigned long long)atomic_load(&s->files),
            bytes, (unsigned long long)atomic_load(&s->dirs), (unsigned long long)atomic_load(&s->skipped),
            (unsigned long long)atomic_load(&s->pending), (unsigned long long)atomic_load(&s->errors),
            seconds_since(&l->start));
}

struct line_ctx {
    const struct global_opts *g;
    bool dry_run, tty;
};

static void on_line(const char *what, const char *detail, void *arg)
{
    const struct line_ctx *x = arg;
    const char *clear = x->tty ? "\r\033[K" : "";
    if (strcmp(what, "error") == 0) {
        fprintf(stderr, "%shaul restore: %s\n", clear, detail);
    } else if (strcmp(what, "note") == 0 || strcmp(what, "waiting") == 0) {
        if (!x->g->quiet)
            fprintf(stderr, "%shaul restore: %s\n", clear, detail);
    } else if (!x->g->json && (x->dry_run || x->g->verbose)) {
        printf("%s%s: %s\n", x->dry_run ? "(dry run) " : "", what, detail);
    }
}

/* One line, when the safety policy left something out (each entry has a
 * "strip" or "note" line too, the strip lines with --verbose). */
static void safety_summary(const struct restore_stats *s)
{
    char line[512] = "";
    size_t n = 0;
    const char *sep = "";
    if (s->setid_removed) {
        n += (size_t)snprintf(line + n, sizeof line - n,
                              "set-user/group-ID bits of %llu entr%s (as root, --preserve-setuid "
                              "keeps them)",
                              (unsigned long long)s->setid_removed, s->setid_removed == 1 ? "y" : "ies");
        sep = "; ";
    }
    if (s->world_write_removed) {
        n += (size_t)snprintf(line + n, sizeof line - n,
                              "%sothers' write permission of %llu entr%s (--keep-world-writable "
                              "keeps it)",
                              sep, (unsigned long long)s->world_write_removed,
                              s->world_write_removed == 1 ? "y" : "ies");
        sep = "; ";
    }
    if (s->devices_refused)
        snprintf(line + n, sizeof line - n, "%s%llu device file%s (as root, --devices creates them)",
                 sep, (unsigned long long)s->devices_refused, s->devices_refused == 1 ? "" : "s");
    if (line[0])
        printf("restore: not restored from the bucket's metadata: %s\n", line);
}

static void summary(const struct restore_stats *s, const struct global_opts *g, const char *target,
                    double secs)
{
    if (g->json) {
        printf("{\"target\":");
        json_string(stdout, target);
        printf(",\"objects\":%llu,\"files\":%llu,\"dirs\":%llu,\"symlinks\":%llu,\"hardlinks\":%llu,"
               "\"specials\":%llu,\"bytes\":%llu,\"skipped\":%llu,\"restore_requests\":%llu,"
               "\"pending\":%llu,\"errors\":%llu,\"setid_removed\":%llu,"
               "\"world_write_removed\":%llu,\"devices_not_created\":%llu,\"seconds\":%.3f,"
               "\"complete\":%s}\n",
               (unsigned long long)s->objects, (unsigned long long)s->files,
               (unsigned long long)s->dirs, (unsigned long long)s->symlinks,
               (unsigned long long)s->hardlinks, (unsigned long long)s->specials,
               (unsigned long long)s->bytes, (unsigned long long)s->skipped,
               (unsigned long long)s->requested, (unsigned long long)s->pending,
               (unsigned long long)s->errors, (unsigned long long)s->setid_removed,
               (unsigned long long)s->world_write_removed, (unsigned long long)s->devices_refused,
               secs, s->pending == 0 && s->errors == 0 ? "true" : "false");
    } else if (!g->quiet) {
        char bytes[32];
        format_size(s->bytes, bytes, sizeof bytes);
        char specials[48] = "";
        if (s->specials)
            snprintf(specials, sizeof specials, ", %llu FIFOs/devices", (unsigned long long)s->specials);
        printf("restore: %llu files (%s), %llu dirs, %llu symlinks, %llu hard links%s; "
               "%llu already restored; %llu pending; %llu errors in %.1f s -> %s\n",
               (unsigned long long)s->files, bytes, (unsigned long long)s->dirs,
               (unsigned long long)s->symlinks, (unsigned long long)s->hardlinks, specials,
               (unsigned long long)s->skipped, (unsigned long long)s->pending,
               (unsigned long long)s->errors, secs, target);
        safety_summary(s);
    }
}

static const char *tier_parse(const char *s)
{
    if (strcasecmp(s, "bulk") == 0)
        return "Bulk";
    if (strcasecmp(s, "standard") == 0)
        return "Standard";
    if (strcasecmp(s, "expedited") == 0)
        return "Expedited";
    return NULL;
}

struct restore_cli {
    const char *into, *tier, *state_dir, *bucketname;
    int days, poll, workers, large_workers, large_buffers;
    uint64_t part_size;
    bool wait, dry_run, restore_flag, backup_flag, no_verify;
    bool no_same_owner, preserve_setuid, devices, keep_world_writable;
};

int cmd_restore(int argc, char **argv)
{
    static const struct command_help help = {
        "restore", "s3://BUCKET[/PREFIX] DIR  |  --into PATH s3://BUCKET[/PREFIX]",
        "Recreate the tree stored under a prefix: files, directories (empty ones too), symlinks,\n"
        "hard links, sparse files, modes, mtimes and atimes, and owners when run as root.",
        "Where: by default into DIR/glacierrestore (as the older tool did); with --into PATH,\n"
        "into PATH itself (created when missing). The prefix's own directory object, when there\n"
        "is one, gives that root directory its mode and mtime.\n"
        "Safety: keys that could escape the target ('..', absolute, empty components, NUL) are\n"
        "refused with a message and nothing is written for them; no symlink already in the\n"
        "target is ever followed. Each file is written under a temporary name in its directory\n"
        "and renamed into place once complete and checked against its ETag.\n"
        "What the bucket's metadata may do is limited, since its writers need not be trusted as\n"
        "much as whoever restores: owners are applied only as root (not with --no-same-owner);\n"
        "set-user-ID and set-group-ID bits are removed unless root restores the owner and gives\n"
        "--preserve-setuid (a directory keeps its set-group-ID bit); device files are created\n"
        "only as root with --devices, else skipped with a line each (not an error: the exit\n"
        "status stays 0); files, FIFOs and directories without the sticky bit lose others'\n"
        "write permission unless --keep-world-writable. The summary says how many entries lost\n"
        "what (--verbose: each). Control characters in keys, paths and link targets are shown\n"
        "as \\xNN.\n"
        "Glacier: objects in GLACIER or DEEP_ARCHIVE that are not readable yet get a\n"
        "RestoreObject request (--restore-tier, --restore-days) and are reported as pending;\n"
        "with --wait haul polls them every --poll-interval seconds and downloads them as they\n"
        "arrive. Without --wait, run the same command again later: files already restored (same\n"
        "size and mtime) are skipped and only what is missing is fetched. A server without\n"
        "RestoreObject (Ceph RGW) serves such objects directly, and haul reads them so.\n"
        "Aliases of the older tool: --bucketname BUCKET (then only DIR is given), --restore."};
    struct global_opts g = {0};
    struct restore_cli cli = {.tier = "bulk", .days = 7, .poll = 300, .workers = 16};
    const struct opt opts[] = {
        {"into", 0, OPT_STRING, &cli.into, "PATH", "restore into PATH itself instead of DIR/glacierrestore"},
        {"restore-tier", 0, OPT_STRING, &cli.tier, "TIER", "Glacier retrieval tier: bulk (default), standard, expedited"},
        {"restore-days", 0, OPT_INT, &cli.days, "N", "days restored copies stay readable (default 7)"},
        {"wait", 0, OPT_FLAG, &cli.wait, NULL, "poll archived objects until all are restored, then download them"},
        {"poll-interval", 0, OPT_INT, &cli.poll, "SECONDS", "time between polls with --wait (default 300)"},
        {"num-workers", 'j', OPT_INT, &cli.workers, "N", "objects restored in parallel (default 16)"},
        {"num-largefile-workers", 0, OPT_INT, &cli.large_workers, "N", "ranged GETs in flight per large object (default 8)"},
        {"num-largefile-buffers", 0, OPT_INT, &cli.large_buffers, "N", "buffers per large object (default workers + 2); at most 2 large objects at once"},
        {"part-size", 0, OPT_SIZE, &cli.part_size, "BYTES", "range size for large objects (default 8M)"},
        {"no-verify", 0, OPT_FLAG, &cli.no_verify, NULL, "skip the ETag check of large objects' bytes"},
        {"dry-run", 'n', OPT_FLAG, &cli.dry_run, NULL, "print what would be restored or requested; change nothing"},
        {"no-same-owner", 0, OPT_FLAG, &cli.no_same_owner, NULL, "as root too, leave files owned by the user running the restore"},
        {"preserve-setuid", 0, OPT_FLAG, &cli.preserve_setuid, NULL, "as root restoring owners: keep set-user-ID and set-group-ID bits"},
        {"devices", 0, OPT_FLAG, &cli.devices, NULL, "as root: create block and character device files"},
        {"keep-world-writable", 0, OPT_FLAG, &cli.keep_world_writable, NULL, "keep others' write permission on files and non-sticky directories"},
        {"state-dir", 0, OPT_STRING, &cli.state_dir, "DIR", "where the run keeps its temporary table (default ~/.local/state/haul)"},
        {"bucketname", 0, OPT_STRING, &cli.bucketname, "BUCKET", "the bucket (instead of the s3:// argument)"},
        {"restore", 0, OPT_FLAG, &cli.restore_flag, NULL, "accepted for compatibility (this is the restore command)"},
        {"backup", 0, OPT_FLAG, &cli.backup_flag, NULL, "refused here: use haul backup"},
        {NULL, 0, OPT_END, NULL, NULL, NULL}};
    const char *pos[2];
    int n_pos, rc = opts_parse(&help, opts, &g, argc, argv, pos, 2, &n_pos);
    if (rc > 0) {
        printf("Exit status for restore: 3 when everything else was restored but archived objects are\n"
               "still being restored by the server (run the command again later, or use --wait).\n");
        return EXIT_OK;
    }
    if (rc < 0)
        return EXIT_USAGE;
    if (cli.backup_flag)
        return usage_error("restore", "--backup: use 'haul backup DIR... s3://BUCKET[/PREFIX]'");
    const char *source = NULL, *dir = NULL;
    char source_buf[128];
    if (cli.bucketname) {
        snprintf(source_buf, sizeof source_buf, "s3://%s", cli.bucketname);
        source = source_buf;
        dir = n_pos >= 1 ? pos[0] : NULL;
        if (n_pos > 1)
            return usage_error("restore", "with --bucketname give only DIR");
    } else {
        source = n_pos >= 1 ? pos[0] : NULL;
        dir = n_pos >= 2 ? pos[1] : NULL;
    }
    if (!source)
        return usage_error("restore", "expected s3://BUCKET[/PREFIX] and DIR (or --into PATH)");
    if (cli.into && dir)
        return usage_error("restore", "give either DIR (restores into DIR/%s) or --into PATH, not both",
                           RESTORE_SUBDIR);
    if (!cli.into && !dir)
        return usage_error("restore", "expected a DIR to restore into (or --into PATH)");
    const char *tier = tier_parse(cli.tier);
    if (!tier)
        return usage_error("restore", "--restore-tier '%s': expected bulk, standard or expedited", cli.tier);
    if (cli.days < 1)
        return usage_error("restore", "--restore-days must be at least 1");
    if (cli.poll < 1)
        return usage_error("restore", "--poll-interval must be at least 1 second");
    if (cli.workers < 1)
        return usage_error("restore", "--num-workers must be at least 1");
    if (cli.part_size && (cli.part_size < XFER_PART_MIN || cli.part_size > XFER_PART_MAX))
        return usage_error("restore", "--part-size must be between 5M and 5G");
    if ((cli.devices || cli.preserve_setuid) && geteuid() != 0)
        return usage_error("restore", "%s needs root (%s)", cli.devices ? "--devices" : "--preserve-setuid",
                           cli.devices ? "mknod of a device does" : "set-ID bits are kept only with their owner");
    if (cli.preserve_setuid && cli.no_same_owner)
        return usage_error("restore", "--preserve-setuid keeps set-ID bits only with their owner: not with --no-same-owner");

    haul_error err = {0};
    struct s3_url url;
    if (s3_url_parse(source, &url, &err) < 0)
        return fail("restore", &err);
    size_t n = strlen(url.key);
    if (n && url.key[n - 1] != '/') {
        /* A prefix names a directory-like level, as in backup: "s3://b/x" is "x/...". */
        char *k = realloc(url.key, n + 2);
        if (!k) {
            s3_url_release(&url);
            return usage_error("restore", "out of memory");
        }
        k[n] = '/';
        k[n + 1] = '\0';
        url.key = k;
    }
    struct s3_client *c = client_open("restore", &g);
    if (!c) {
        s3_url_release(&url);
        return EXIT_FAILED;
    }
    char state[4096], target_shown[4200];
    state_dir_resolve(cli.state_dir, state, sizeof state);
    snprintf(target_shown, sizeof target_shown, "%s%s%s", cli.into ? cli.into : dir,
             cli.into ? "" : "/", cli.into ? "" : RESTORE_SUBDIR);
    struct line_ctx lc = {.g = &g, .dry_run = cli.dry_run,
                          .tty = isatty(STDERR_FILENO) && !g.quiet && !g.json};
    struct restore_opts o = {
        .bucket = url.bucket, .prefix = url.key,
        .target = cli.into ? cli.into : dir, .subdir = cli.into ? NULL : RESTORE_SUBDIR,
        .tier = tier, .days = cli.days, .wait = cli.wait, .poll_interval_s = cli.poll,
        .workers = cli.workers, .large_downloads = 2,
        .xfer = {.part_size = cli.part_size, .workers = cli.large_workers,
                 .buffers = cli.large_buffers, .no_verify = cli.no_verify},
        .dry_run = cli.dry_run, .state_dir = state, .cancel = &cmd_interrupted,
        .no_same_owner = cli.no_same_owner, .preserve_setuid = cli.preserve_setuid,
        .devices = cli.devices, .keep_world_writable = cli.keep_world_writable,
        .line = on_line, .line_ctx = &lc,
    };
    struct restore_stats stats;
    memset(&stats, 0, sizeof stats);
    struct live live = {.stats = &stats};
    clock_gettime(CLOCK_MONOTONIC, &live.start);
    struct ticker *ticker = ticker_start(live_draw, &live, lc.tty);
    rc = restore_run(c, &o, &stats, &err);
    ticker_stop(ticker, false);
    summary(&stats, &g, target_shown, seconds_since(&live.start));
    int exit_code = EXIT_OK;
    if (rc < 0)
        exit_code = fail("restore", &err);
    if (stats.pending && !cli.dry_run) {
        if (!g.quiet)
            fprintf(stderr,
                    "haul restore: %llu object%s being restored from Glacier; run the same command "
                    "again later (or use --wait)\n",
                    (unsigned long long)stats.pending, stats.pending == 1 ? " is" : "s are");
        if (exit_code == EXIT_OK)
            exit_code = EXIT_PENDING;
    }
    s3_client_free(c);
    s3_url_release(&url);
    return exit_code;
}

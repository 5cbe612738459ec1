/* cmd/worker: haul worker --broker-file FILE|--broker URL [--job NAME] [--threads N] [--name NODE]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "dist/dist.h"
#include "job/worker.h"

static const struct command_help help = {
    .name = "worker",
    .usage = "--broker-file FILE | --broker URL",
    .summary = "Do the units of distributed clones and backups (haul clone|backup --broker) queued on a RabbitMQ broker.",
    .details =
        "Run one on each node that mounts SRC (and a clone's DST) at the same paths as the\n"
        "coordinator.  Backup units upload with this node's own AWS configuration (environment,\n"
        "~/.aws, --endpoint-url ...; no credentials travel through the broker); a worker whose\n"
        "endpoint differs from the coordinator's refuses the job, as does one without S3 settings.\n"
        "A worker serves one job name (--job, default \"haul\": queues haul.JOB.*) and learns SRC,\n"
        "DST and the options from the broker when the coordinator starts a pass.  Each thread takes\n"
        "units (a directory to scan, a batch of files to copy), does them and acks them only once\n"
        "its result is confirmed: a worker that dies (even by SIGKILL) leaves its units to the\n"
        "others.  Malformed units go to the dead-letter queue haul.JOB.dead with a log line.\n"
        "Stop it with `haul ctl stop` (exit 0 after the current units), SIGINT or SIGTERM;\n"
        "`haul ctl grow N` changes its thread count.\n"
        "The broker URL (amqp://user:pass@host:port/vhost, amqps:// for TLS) comes from\n"
        "--broker-file (mode 0600), HAUL_BROKER or --broker; a password given with --broker is\n"
        "scrubbed from the command line at start, but was visible to every local user until then.\n"
        "Trust: a worker serves only jobs signed with its --key-file (the coordinator's secret;\n"
        "--insecure-no-key for test set-ups) whose SRC and DST (clone), or SRC and bucket/prefix\n"
        "(backup), lie inside an --allow root (by path components, after resolving symlinks);\n"
        "it refuses others (the coordinator is told) and leaves their units to other workers.\n"
        "Without --allow it does not start, unless --allow-any.",
};

static void on_serving(const char *line, void *ctx)
{
    if (!*(const bool *)ctx)
        fprintf(stderr, "%s\n", line);
}

int cmd_worker(int argc, char **argv)
{
    const char *broker = NULL, *job = "haul", *name = NULL;
    struct broker_cli bc = {0};
    int threads = 4;
    struct global_opts g = {0};
    struct dist_trust_cli trust = {0};
    const struct opt opts[] = {
        BROKER_CLI_OPTS(bc),
        {"job", 0, OPT_STRING, &job, "NAME", "the job served: queues haul.NAME.* (default haul)"},
        {"threads", 'j', OPT_INT, &threads, "N", "units done at once (default 4)"},
        {"name", 0, OPT_STRING, &name, "NODE", "this worker's name in status and logs (default HOST:PID)"},
        DIST_TRUST_CLI_OPTS(trust),
        DIST_ALLOW_CLI_OPTS(trust),
        {NULL, 0, OPT_END, NULL, NULL, NULL},
    };
    const char *pos[1];
    int n_pos;
    int prc = opts_parse(&help, opts, &g, argc, argv, pos, 1, &n_pos);
    if (prc != 0)
        return prc > 0 ? EXIT_OK : EXIT_USAGE;
    if ((prc = broker_cli_resolve("worker", &bc, true, &broker)) != 0)
        return prc;
    if (n_pos)
        return usage_error("worker", "no positional arguments expected");
    if (!broker)
        return usage_error("worker", "--broker-file FILE, HAUL_BROKER or --broker URL is required");
    if (threads < 1 || threads > WORKER_THREADS_MAX)
        return usage_error("worker", "--threads takes 1 to %d", WORKER_THREADS_MAX);
    if (name && (!*name || strlen(name) > 100 || strpbrk(name, " /")))
        return usage_error("worker", "--name: 1 to 100 printable characters, no space or '/'");
    int trc = dist_trust_cli_allow("worker", &trust);
    if (trc == 0)
        trc = dist_trust_cli_key("worker", &trust);
    if (trc != 0) {
        dist_trust_cli_release(&trust);
        return trc;
    }
    struct s3_client *c = client_open("worker", &g);
    if (!c)
        fprintf(stderr, "haul worker: without S3 settings this worker does clone units only\n");
    struct worker_opts o = {.broker_url = broker, .job = job, .name = name, .threads = (unsigned)threads,
                            .cancel = &cmd_interrupted, .s3 = c, .key = trust.key,
                            .allow = (const char *const *)trust.resolved, .nallow = trust.nresolved,
                            .allow_any = trust.allow_any, .serving = on_serving, .serving_ctx = &g.quiet};
    haul_error err = {0};
    int rc = worker_run(&o, &err) < 0 ? fail("worker", &err) : EXIT_OK;
    s3_client_free(c);
    dist_trust_cli_release(&trust);
    return rc;
}

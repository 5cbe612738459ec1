/* cmd/ctl: haul ctl --broker-file FILE|--broker URL [--job NAME] status|stop|grow N [--node NODE]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "dist/dist.h"
#include "job/dclone.h"
#include "job/worker.h"

static const struct command_help help = {
    .name = "ctl",
    .usage = "[--broker-file FILE | --broker URL] [--job NAME] status|stop|grow N",
    .summary = "Show, stop or resize the workers of a distributed job.",
    .details =
        "  status   one line per worker that answers within --wait-ms (name, threads, units done,\n"
        "           its counters since it started), then the depths of the job's queues\n"
        "  stop     workers finish their current units and exit 0\n"
        "  grow N   workers run N threads each (more or fewer)\n"
        "--node NODE sends stop and grow to that worker only (the name it shows in status).\n"
        "Control messages reach the workers alive at the time; they are advisory, never work.",
};

struct status_out {
    const struct global_opts *g;
    const char *node;
    int n;
};

static void on_status(const struct worker_status *s, void *ctx)
{
    struct status_out *so = ctx;
    if (so->node && strcmp(so->node, s->name) != 0)
        return;
    so->n++;
    const uint64_t *c = s->counters;
#define C(i) (unsigned long long)(s->ncounters > (i) ? c[i] : 0)
    if (so->g->json) {
        printf("{\"worker\":");
        json_string(stdout, s->name);
        printf(",\"threads\":%u,\"units\":%llu,\"files\":%llu,\"copied\":%llu,\"bytes_copied\":%llu,"
               "\"up_to_date\":%llu,\"deleted\":%llu,\"failed\":%llu}\n",
               s->threads, (unsigned long long)s->units, C(0), C(5), C(6), C(7), C(12), C(14));
    } else {
        char bytes[32];
        format_size(C(6), bytes, sizeof bytes);
        printf("worker %s threads %u units %llu files %llu copied %llu (%s) up-to-date %llu deleted %llu failed %llu\n",
               s->name, s->threads, (unsigned long long)s->units, C(0), C(5), bytes, C(7), C(12), C(14));
    }
#undef C
}

/* The subcommand, once options and key are in hand. */
static int ctl_do(const struct global_opts *g, const struct dist_trust_cli *trust, const char *broker, const char *job,
                  const char *node, int wait_ms, const char **pos, int n_pos)
{
    haul_error err = {0};
    struct dist_control c = {0};
    if (node)
        snprintf(c.node, sizeof c.node, "%s", node);
    if (strcmp(pos[0], "status") == 0 && n_pos == 1) {
        if (wait_ms < 100 || wait_ms > 60000)
            return usage_error("ctl", "--wait-ms takes 100 to 60000");
        struct status_out so = {.g = g, .node = node};
        struct dist_depth d[3];
        if (worker_ctl_status(broker, trust->key, job, wait_ms, on_status, &so, d, &err) < 0)
            return fail("ctl", &err);
        char prefix[DIST_PREFIX_MAX + 1];
        dclone_prefix(job, prefix, sizeof prefix, &err);
        static const char *const names[3] = {"work", "dead", "results"};
        for (int k = 0; k < 3; k++) {
            if (g->json)
                printf("{\"queue\":\"%s.%s\",\"ready\":%llu,\"consumers\":%u}\n", prefix, names[k],
                       (unsigned long long)d[k].ready, d[k].consumers);
            else
                printf("queue %s.%s ready %llu consumers %u\n", prefix, names[k], (unsigned long long)d[k].ready,
                       d[k].consumers);
        }
        if (!g->json)
            printf("%d worker%s answered\n", so.n, so.n == 1 ? "" : "s");
        return EXIT_OK;
    }
    if (strcmp(pos[0], "stop") == 0 && n_pos == 1) {
        c.op = DIST_CTL_STOP;
    } else if (strcmp(pos[0], "grow") == 0 && n_pos == 2) {
        char *end;
        long n = strtol(pos[1], &end, 10);
        if (*end || n < 1 || n > WORKER_THREADS_MAX)
            return usage_error("ctl", "grow takes 1 to %d threads", WORKER_THREADS_MAX);
        c.op = DIST_CTL_GROW;
        c.n = (uint32_t)n;
    } else {
        return usage_error("ctl", "expected status, stop or grow N");
    }
    if (worker_ctl_send(broker, trust->key, job, &c, &err) < 0)
        return fail("ctl", &err);
    if (!g->quiet)
        printf("%s sent to %s\n", pos[0], node ? node : "every worker");
    return EXIT_OK;
}

int cmd_ctl(int argc, char **argv)
{
    const char *broker = NULL, *job = "haul", *node = NULL;
    struct broker_cli bc = {0};
    int wait_ms = 1500;
    struct global_opts g = {0};
    struct dist_trust_cli trust = {0};
    const struct opt opts[] = {
        BROKER_CLI_OPTS(bc),
        {"job", 0, OPT_STRING, &job, "NAME", "the job: queues haul.NAME.* (default haul)"},
        {"node", 0, OPT_STRING, &node, "NODE", "only this worker"},
        {"wait-ms", 0, OPT_INT, &wait_ms, "MS", "status: how long to collect answers (default 1500)"},
        DIST_TRUST_CLI_OPTS(trust),
        {NULL, 0, OPT_END, NULL, NULL, NULL},
    };
    const char *pos[2];
    int n_pos;
    int prc = opts_parse_local(&help, opts, &g, argc, argv, pos, 2, &n_pos);
    if (prc != 0)
        return prc > 0 ? EXIT_OK : EXIT_USAGE;
    if ((prc = broker_cli_resolve("ctl", &bc, true, &broker)) != 0)
        return prc;
    if (!broker)
        return usage_error("ctl", "--broker-file FILE, HAUL_BROKER or --broker URL is required");
    if (n_pos < 1)
        return usage_error("ctl", "expected status, stop or grow N");
    if (node && (!*node || strlen(node) > DIST_NODE_MAX))
        return usage_error("ctl", "--node: a worker name");
    int trc = dist_trust_cli_key("ctl", &trust);
    if (trc != 0)
        return trc;
    int rc = ctl_do(&g, &trust, broker, job, node, wait_ms, pos, n_pos);
    dist_trust_cli_release(&trust);
    return rc;
}

/* dist_probe: a small driver of the dist work queue for the integration test
 * (tests/integration/t_dist.sh) and the broker benchmark (bench/broker.sh).
 * It plays coordinator or worker against a real broker (or in process).
 *
 *   dist_probe [--url URL] [--prefix P] [--heartbeat S] COMMAND [options]
 *     publish N [--start ID] [--batch B] [--flush-every K]
 *         N FILES units with ids ID.., B paths each (64: ~1 KiB), confirmed
 *     publish-raw TEXT | --hex HEX   raw bytes as one work message, confirmed
 *     consume [--die-after K] [--results [--results-every K]] [--quiet] [--idle-ms T]
 *             [--work-ms W [--poll-ms P]] [--prefetch N]
 *         take units until the work queue stays empty for T ms (2000);
 *         prints "acked ID redelivered=0|1" per unit after its ack; bad
 *         units are rejected to the dead-letter queue with a log line;
 *         --die-after K: after K acks take one more unit and SIGKILL itself
 *         (and what is prefetched) without acking; --results: publish a
 *         result and flush it before the ack, as workers must, one per
 *         unit or one per K units with --results-every K (<= prefetch);
 *         a control "stop" ends it; --work-ms: spend W ms on each unit
 *         (a slow copy), calling dist_poll every P ms when P > 0
 *     collect N [--timeout-ms T]  consume results until N distinct unit ids
 *     control stop|grow N|status  publish a control message to every worker
 *     depth [work|dead|results]   "ready=R consumers=C"
 *     dead                        print and remove dead-lettered messages
 *     delete                      delete the job's queues
 *     lost-queue                  the job's queues deleted under an open
 *                                 handle: depth says NOT_FOUND (twice: the
 *                                 handle survives it), a publish to the gone
 *                                 queue fails at dist_flush (NO_ROUTE)
 * --key-file F signs what it publishes (and checks what it takes) with F,
 * for run --run R (default ""): without it messages travel unsigned, as a
 * forger without the key would send them.
 * URL defaults to $HAUL_BROKER; "-" means in process.  Exit 0 on success,
 * 1 with "dist_probe: <error>" on stderr otherwise. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dist/auth.h"
#include "dist/dist.h"
#include "util/log.h"

static const char *url;
static const char *prefix = "haul.probe";
static int heartbeat_s;
static struct dist_key key;
static bool keyed;
static const char *run = "";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int die(const haul_error *err)
{
    fprintf(stderr, "dist_probe: %s\n", err->msg);
    return 1;
}

static struct dist_queue *open_q(unsigned consume, unsigned prefetch, haul_error *err)
{
    struct dist_queue_opts o = {.prefix = prefix, .consume = consume, .prefetch = prefetch,
                                .heartbeat_s = heartbeat_s, .key = keyed ? &key : NULL};
    struct dist_queue *q = dist_queue_open(url, &o, err);
    if (q)
        dist_queue_set_run(q, run);
    return q;
}

static int opt_int(int argc, char **argv, const char *name, long dflt)
{
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return (int)strtol(argv[i + 1], NULL, 10);
    return (int)dflt;
}

static bool opt_flag(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

static int cmd_publish(int argc, char **argv)
{
    if (argc < 1)
        return fprintf(stderr, "dist_probe: publish N\n"), 2;
    long n = strtol(argv[0], NULL, 10);
    uint64_t start = (uint64_t)opt_int(argc, argv, "--start", 0);
    int batch = opt_int(argc, argv, "--batch", 64);
    int flush_every = opt_int(argc, argv, "--flush-every", 1000);
    if (batch < 1 || batch > DIST_UNIT_MAX_PATHS)
        return fprintf(stderr, "dist_probe: --batch 1..%d\n", DIST_UNIT_MAX_PATHS), 2;
    haul_error err = {0};
    struct dist_queue *q = open_q(0, 0, &err);
    if (!q)
        return die(&err);
    /* Paths like "dir0042/file-000123.dat": 23 bytes, ~1.6 KiB per 64. */
    char(*names)[32] = calloc((size_t)batch, sizeof *names);
    const char **paths = calloc((size_t)batch, sizeof *paths);
    struct strbuf sb = STRBUF_INIT;
    double t0 = now_s();
    int rc = 0;
    size_t bytes = 0;
    for (long i = 0; i < n && rc == 0; i++) {
        struct dist_unit u = {.id = start + (uint64_t)i, .pass = DIST_PASS_COPY,
                              .kind = DIST_UNIT_FILES, .npaths = (size_t)batch, .paths = paths};
        snprintf(u.job_id, sizeof u.job_id, "probe");
        for (int j = 0; j < batch; j++) {
            snprintf(names[j], sizeof names[j], "d%04ld/f-%06ld.dat", (long)(u.id % 10000),
                     (long)j);
            paths[j] = names[j];
        }
        strbuf_reset(&sb);
        rc = dist_unit_encode(&u, &sb, &err);
        if (rc == 0)
            rc = dist_publish(q, sb.s, sb.len, &err);
        bytes += sb.len;
        if (rc == 0 && flush_every > 0 && (i + 1) % flush_every == 0)
            rc = dist_flush(q, 60000, &err);
    }
    if (rc == 0)
        rc = dist_flush(q, 60000, &err);
    double dt = now_s() - t0;
    strbuf_release(&sb);
    free(names);
    free(paths);
    dist_queue_free(q);
    if (rc < 0)
        return die(&err);
    printf("published %ld units (%zu bytes, %d paths each) confirmed in %.3f s: %.0f msgs/s\n", n,
           bytes, batch, dt, dt > 0 ? n / dt : 0.0);
    return 0;
}

static int cmd_publish_raw(int argc, char **argv)
{
    if (argc < 1)
        return fprintf(stderr, "dist_probe: publish-raw TEXT | --hex HEX\n"), 2;
    /* --hex: bytes a shell cannot pass in an argument (NUL, binary lengths). */
    const char *text = argv[0];
    size_t len = strlen(text);
    unsigned char *buf = malloc((argc >= 2 ? strlen(argv[1]) : len) / 2 + 1);
    if (!buf)
        return 1;
    if (strcmp(argv[0], "--hex") == 0 && argc >= 2) {
        const char *hex = argv[1];
        len = 0;
        for (unsigned v; hex[0] && hex[1] && sscanf(hex, "%2x", &v) == 1; hex += 2)
            buf[len++] = (unsigned char)v;
        text = (const char *)buf;
    }
    haul_error err = {0};
    struct dist_queue *q = open_q(0, 0, &err);
    int rc = q ? dist_publish(q, text, len, &err) : -1;
    if (rc == 0)
        rc = dist_flush(q, 30000, &err);
    dist_queue_free(q);
    free(buf);
    if (rc < 0)
        return die(&err);
    printf("published %zu raw bytes\n", len);
    return 0;
}

/* Units done but not yet acked: a worker reports them in one result,
 * waits for its confirm, then acks them (dist.h: ack only after the result
 * is published). */
struct batch {
    size_t n, cap;
    struct dist_msg *msgs;
    struct dist_result_unit *units;
    bool *redelivered;
    long files;
};

static int batch_settle(struct dist_queue *q, struct batch *b, bool results, bool quiet,
                        long *acked, haul_error *err)
{
    int rc = 0;
    if (b->n && results) {
        struct dist_result r = {.files = (uint64_t)b->files, .nunits = b->n, .units = b->units};
        snprintf(r.worker, sizeof r.worker, "probe:%ld", (long)getpid());
        struct strbuf sb = STRBUF_INIT;
        rc = dist_result_encode(&r, &sb, err);
        if (rc == 0)
            rc = dist_publish_to(q, DIST_RESULTS, sb.s, sb.len, err);
        if (rc == 0)
            rc = dist_flush(q, 30000, err);
        strbuf_release(&sb);
    }
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        if ((rc = dist_ack(q, &b->msgs[i], err)) < 0)
            break;
        (*acked)++;
        if (!quiet)
            printf("acked %" PRIu64 " redelivered=%d\n", b->units[i].unit_id, b->redelivered[i]);
    }
    b->n = 0;
    b->files = 0;
    return rc;
}

static int cmd_consume(int argc, char **argv)
{
    int die_after = opt_int(argc, argv, "--die-after", -1);
    int idle_ms = opt_int(argc, argv, "--idle-ms", 2000);
    int prefetch = opt_int(argc, argv, "--prefetch", 64);
    bool results = opt_flag(argc, argv, "--results");
    int every = opt_int(argc, argv, "--results-every", 1);
    bool quiet = opt_flag(argc, argv, "--quiet");
    int work_ms = opt_int(argc, argv, "--work-ms", 0);
    int poll_ms = opt_int(argc, argv, "--poll-ms", 0);
    if (every < 1 || every > DIST_RESULT_MAX_UNITS || every > prefetch)
        return fprintf(stderr, "dist_probe: --results-every 1..min(prefetch, %d)\n",
                       DIST_RESULT_MAX_UNITS), 2;
    if (!results)
        every = 1;
    haul_error err = {0};
    struct dist_queue *q =
        open_q(DIST_CONSUME(DIST_WORK) | DIST_CONSUME(DIST_CONTROL), (unsigned)prefetch, &err);
    if (!q)
        return die(&err);
    struct batch b = {.cap = (size_t)every};
    b.msgs = calloc(b.cap, sizeof *b.msgs);
    b.units = calloc(b.cap, sizeof *b.units);
    b.redelivered = calloc(b.cap, sizeof *b.redelivered);
    if (!b.msgs || !b.units || !b.redelivered)
        return fprintf(stderr, "dist_probe: out of memory\n"), 1;
    /* Line-buffered so a test reading stdout sees each ack as it happens. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    long acked = 0, bad = 0, redelivered = 0, files = 0;
    int rc = 0;
    double t0 = now_s(), last = t0;
    for (;;) {
        struct dist_msg m;
        /* Holding done units: settle them as soon as nothing else is ready. */
        rc = dist_next(q, &m, b.n ? 0 : idle_ms, &err);
        if (rc == 0 && b.n) {
            if ((rc = batch_settle(q, &b, results, quiet, &acked, &err)) < 0)
                break;
            last = now_s();
            continue;
        }
        if (rc < 0)
            break;
        if (rc == 0)
            break; /* idle: the queue stayed empty for idle_ms */
        if (m.kind == DIST_CONTROL) {
            struct dist_control c;
            haul_error cerr = {0};
            bool stop = dist_control_decode(m.body, m.len, &c, &cerr) == 0 &&
                        c.op == DIST_CTL_STOP;
            if (cerr.code)
                log_warn("%s: ignoring control message: %s", dist_queue_url(q), cerr.msg);
            dist_ack(q, &m, &err);
            if (stop) {
                rc = batch_settle(q, &b, results, quiet, &acked, &err);
                printf("stopped by control message\n");
                break;
            }
            continue;
        }
        struct dist_unit u;
        haul_error uerr = {0};
        if (dist_unit_decode(m.body, m.len, &u, &uerr) < 0) {
            /* Untrusted input: never crash, say so, keep it for people. */
            log_warn("%s: rejecting a malformed work unit (%zu bytes) to the dead-letter queue: %s",
                     dist_queue_url(q), m.len, uerr.msg);
            bad++;
            if ((rc = dist_reject(q, &m, false, &err)) < 0)
                break;
            continue;
        }
        if (die_after >= 0 && acked >= die_after) {
            fprintf(stderr, "dist_probe: killing myself holding unit %" PRIu64 " unacked\n", u.id);
            fflush(stderr);
            kill(getpid(), SIGKILL);
        }
        /* A slow unit: the worker keeps its connection alive (or not). */
        for (double end = now_s() + work_ms / 1e3; rc >= 0 && now_s() < end;) {
            int step = poll_ms > 0 ? poll_ms : work_ms;
            struct timespec ts = {step / 1000, (long)(step % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            if (poll_ms > 0)
                rc = dist_poll(q, &err);
        }
        if (rc < 0) {
            dist_unit_release(&u);
            break;
        }
        files += (long)u.npaths;
        redelivered += m.redelivered;
        b.msgs[b.n] = m;
        b.units[b.n] = (struct dist_result_unit){.unit_id = u.id};
        b.redelivered[b.n] = m.redelivered;
        b.files += (long)u.npaths;
        b.n++;
        dist_unit_release(&u);
        if (b.n == b.cap) {
            if ((rc = batch_settle(q, &b, results, quiet, &acked, &err)) < 0)
                break;
            last = now_s();
        }
    }
    free(b.msgs);
    free(b.units);
    free(b.redelivered);
    dist_queue_free(q);
    if (rc < 0)
        return die(&err);
    double dt = last - t0;
    printf("consumed %ld units (%ld files, %ld redelivered, %ld malformed) in %.3f s: %.0f msgs/s\n",
           acked, files, redelivered, bad, dt, dt > 0 ? acked / dt : 0.0);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The coordinator's side of completion (dist.h): distinct unit ids done. */
static int cmd_collect(int argc, char **argv)
{
    if (argc < 1)
        return fprintf(stderr, "dist_probe: collect N\n"), 2;
    long want = strtol(argv[0], NULL, 10);
    int timeout_ms = opt_int(argc, argv, "--timeout-ms", 30000);
    haul_error err = {0};
    struct dist_queue *q = open_q(DIST_CONSUME(DIST_RESULTS), 0, &err);
    if (!q)
        return die(&err);
    size_t n = 0, cap = 1024;
    uint64_t *ids = malloc(cap * sizeof *ids);
    if (!ids)
        return 1;
    long results = 0;
    int rc = 0;
    double deadline = now_s() + timeout_ms / 1e3;
    size_t distinct = 0;
    while (distinct < (size_t)want && now_s() < deadline) {
        struct dist_msg m;
        rc = dist_next(q, &m, 200, &err);
        if (rc < 0)
            break;
        if (rc == 0)
            continue;
        struct dist_result r;
        haul_error rerr = {0};
        if (dist_result_decode(m.body, m.len, &r, &rerr) < 0) {
            log_warn("%s: dropping a malformed result: %s", dist_queue_url(q), rerr.msg);
            dist_reject(q, &m, false, &err);
            continue;
        }
        for (size_t i = 0; i < r.nunits; i++) {
            if (n == cap) {
                uint64_t *more = realloc(ids, (cap *= 2) * sizeof *ids);
                if (!more) {
                    fprintf(stderr, "dist_probe: out of memory\n");
                    exit(1);
                }
                ids = more;
            }
            ids[n++] = r.units[i].unit_id;
        }
        results++;
        dist_result_release(&r);
        rc = dist_ack(q, &m, &err);
        if (rc < 0)
            break;
        qsort(ids, n, sizeof *ids, cmp_u64);
        distinct = n ? 1 : 0;
        for (size_t i = 1; i < n; i++)
            distinct += ids[i] != ids[i - 1];
    }
    free(ids);
    dist_queue_free(q);
    if (rc < 0)
        return die(&err);
    printf("collected %ld results: %zu distinct units of %ld\n", results, distinct, want);
    return distinct == (size_t)want ? 0 : 1;
}

static int cmd_control(int argc, char **argv)
{
    struct dist_control c = {0};
    if (argc >= 1 && strcmp(argv[0], "stop") == 0)
        c.op = DIST_CTL_STOP;
    else if (argc >= 2 && strcmp(argv[0], "grow") == 0) {
        c.op = DIST_CTL_GROW;
        c.n = (uint32_t)strtoul(argv[1], NULL, 10);
    } else if (argc >= 1 && strcmp(argv[0], "status") == 0)
        c.op = DIST_CTL_STATUS;
    else
        return fprintf(stderr, "dist_probe: control stop|grow N|status\n"), 2;
    haul_error err = {0};
    struct strbuf sb = STRBUF_INIT;
    struct dist_queue *q = NULL;
    int rc = dist_control_encode(&c, &sb, &err);
    if (rc == 0 && !(q = open_q(0, 0, &err)))
        rc = -1;
    if (rc == 0)
        rc = dist_publish_to(q, DIST_CONTROL, sb.s, sb.len, &err);
    if (rc == 0)
        rc = dist_flush(q, 30000, &err);
    dist_queue_free(q);
    strbuf_release(&sb);
    if (rc < 0)
        return die(&err);
    printf("control message sent\n");
    return 0;
}

static int cmd_depth(int argc, char **argv)
{
    enum dist_kind kind = DIST_WORK;
    if (argc >= 1 && strcmp(argv[0], "dead") == 0)
        kind = DIST_DEAD;
    else if (argc >= 1 && strcmp(argv[0], "results") == 0)
        kind = DIST_RESULTS;
    haul_error err = {0};
    struct dist_queue *q = open_q(0, 0, &err);
    if (!q)
        return die(&err);
    struct dist_depth d;
    int rc = dist_queue_depth(q, kind, &d, &err);
    dist_queue_free(q);
    if (rc < 0)
        return die(&err);
    printf("ready=%" PRIu64 " consumers=%u\n", d.ready, d.consumers);
    return 0;
}

static int cmd_dead(void)
{
    haul_error err = {0};
    struct dist_queue *q = open_q(DIST_CONSUME(DIST_DEAD), 0, &err);
    if (!q)
        return die(&err);
    int rc, n = 0;
    struct dist_msg m;
    while ((rc = dist_next(q, &m, 500, &err)) == 1) {
        printf("dead %zu bytes: %.*s\n", m.len, (int)(m.len > 60 ? 60 : m.len),
               (const char *)m.body);
        n++;
        if ((rc = dist_ack(q, &m, &err)) < 0)
            break;
    }
    dist_queue_free(q);
    if (rc < 0)
        return die(&err);
    printf("%d dead messages\n", n);
    return 0;
}

static int cmd_delete(void)
{
    haul_error err = {0};
    struct dist_queue *q = open_q(0, 0, &err);
    if (!q)
        return die(&err);
    int rc = dist_queue_delete(q, &err);
    dist_queue_free(q);
    if (rc < 0)
        return die(&err);
    printf("deleted %s.*\n", prefix);
    return 0;
}

static int cmd_lost_queue(void)
{
    haul_error err = {0};
    struct dist_queue *a = open_q(0, 0, &err);
    struct dist_queue *b = a ? open_q(0, 0, &err) : NULL;
    if (!b) {
        dist_queue_free(a);
        return die(&err);
    }
    int rc = dist_queue_delete(b, &err);
    dist_queue_free(b);
    if (rc < 0) {
        dist_queue_free(a);
        return die(&err);
    }
    struct dist_depth d;
    for (int i = 0; i < 2; i++) {
        err = (haul_error){0};
        rc = dist_queue_depth(a, DIST_WORK, &d, &err);
        printf("depth: rc=%d %s\n", rc, err.msg);
    }
    err = (haul_error){0};
    rc = dist_publish(a, "x", 1, &err);
    if (rc == 0)
        rc = dist_flush(a, 10000, &err);
    printf("publish: rc=%d %s\n", rc, err.msg);
    dist_queue_free(a);
    return 0;
}

int main(int argc, char **argv)
{
    url = dist_broker_url_from_env();
    int i = 1;
    for (; i + 1 < argc && argv[i][0] == '-' && argv[i][1] == '-'; i += 2) {
        if (strcmp(argv[i], "--url") == 0)
            url = argv[i + 1];
        else if (strcmp(argv[i], "--prefix") == 0)
            prefix = argv[i + 1];
        else if (strcmp(argv[i], "--heartbeat") == 0)
            heartbeat_s = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--run") == 0)
            run = argv[i + 1];
        else if (strcmp(argv[i], "--key-file") == 0) {
            haul_error kerr = {0};
            if (dist_key_load(argv[i + 1], &key, &kerr) < 0)
                return die(&kerr);
            keyed = true;
        } else
            break;
    }
    if (url && strcmp(url, "-") == 0)
        url = NULL;
    if (i >= argc) {
        fprintf(stderr, "usage: dist_probe [--url URL] [--prefix P] "
                        "publish|publish-raw|consume|collect|control|depth|dead|delete|lost-queue ...\n");
        return 2;
    }
    const char *cmd = argv[i];
    int ac = argc - i - 1;
    char **av = argv + i + 1;
    if (strcmp(cmd, "publish") == 0)
        return cmd_publish(ac, av);
    if (strcmp(cmd, "publish-raw") == 0)
        return cmd_publish_raw(ac, av);
    if (strcmp(cmd, "consume") == 0)
        return cmd_consume(ac, av);
    if (strcmp(cmd, "collect") == 0)
        return cmd_collect(ac, av);
    if (strcmp(cmd, "control") == 0)
        return cmd_control(ac, av);
    if (strcmp(cmd, "depth") == 0)
        return cmd_depth(ac, av);
    if (strcmp(cmd, "dead") == 0)
        return cmd_dead();
    if (strcmp(cmd, "delete") == 0)
        return cmd_delete();
    if (strcmp(cmd, "lost-queue") == 0)
        return cmd_lost_queue();
    fprintf(stderr, "dist_probe: unknown command %s\n", cmd);
    return 2;
}

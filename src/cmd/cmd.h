/* cmd: the command-line front end.  Each subcommand is one file with an
 * option table that yields both its parser and its --help text. */
#ifndef CMD_CMD_H
#define CMD_CMD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "dist/auth.h"
#include "s3/s3.h"
#include "xfer/xfer.h"

/* Set by the first SIGINT or SIGTERM: transfers stop cleanly (journaled
 * multipart uploads are kept for a rerun to resume, others aborted,
 * temporary files removed) and the command exits 128 + the signal's number;
 * a second signal kills at once. */
extern atomic_bool cmd_interrupted;

/* Exit codes, documented in README.md. */
enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

enum opt_kind {
    OPT_FLAG,   /* bool, no argument */
    OPT_STRING, /* const char * */
    OPT_INT,    /* int */
    OPT_SIZE,   /* uint64_t, accepts K, M, G, T suffixes (powers of 1024) */
    OPT_LIST,   /* struct opt_list, repeatable */
    OPT_END,
};

struct opt_list {
    const char *items[64];
    int n;
};

struct opt {
    const char *name;     /* long name without "--" */
    char short_name;      /* 0 for none */
    enum opt_kind kind;
    void *target;
    const char *arg_name; /* shown in --help ("BYTES") */
    const char *help;
};

struct command_help {
    const char *name;     /* "put" */
    const char *usage;    /* "FILE|- s3://BUCKET/KEY" */
    const char *summary;  /* one line */
    const char *details;  /* paragraphs after the usage, may be NULL */
};

/* Options every S3 command takes, filled by the parser. */
struct global_opts {
    const char *endpoint, *region, *profile, *addressing;
    int max_connections, max_attempts;
    int connect_timeout_s, stall_timeout_s;
    bool unsigned_payload, no_verify_ssl;
    bool json, quiet, verbose, debug, help;
};

/* Parses argv[1..] against opts followed by the global options.  Leaves
 * positional arguments in pos (at most max_pos). On --help prints the help
 * and returns 1; on a usage error prints it and returns -1; else 0. */
int opts_parse(const struct command_help *help, const struct opt *opts, struct global_opts *g,
               int argc, char **argv, const char **pos, int max_pos, int *n_pos);
/* The same for a command that does not talk to S3: only the output options
 * (--json, -q, -v, --debug, --help) are added. */
int opts_parse_local(const struct command_help *help, const struct opt *opts, struct global_opts *g,
                     int argc, char **argv, const char **pos, int max_pos, int *n_pos);
/* Prints a usage error ("haul put: ...") and a pointer to --help; returns EXIT_USAGE. */
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Makes the S3 client from the global options and the environment; prints
 * the error and returns NULL on failure. */
struct s3_client *client_open(const char *cmd, const struct global_opts *g);
/* Prints "haul CMD: message" for err and returns EXIT_FAILED or EXIT_USAGE. */
int fail(const char *cmd, const haul_error *err);

/* Transfer options shared by put and get. */
struct xfer_cli {
    uint64_t part_size, multipart_threshold;
    int workers, buffers;
    const char *storage_class, *content_type;
    struct opt_list metadata;
    bool no_verify;
    bool direct;
};
#define XFER_CLI_OPTS(x)                                                                           \
    {"part-size", 0, OPT_SIZE, &(x).part_size, "BYTES", "multipart part size (default 8M; raised to fit 10,000 parts)"}, \
    {"multipart-threshold", 0, OPT_SIZE, &(x).multipart_threshold, "BYTES", "files at least this big go multipart (default: the part size)"}, \
    {"num-largefile-workers", 'j', OPT_INT, &(x).workers, "N", "parts or ranges in flight at once (default 8)"}, \
    {"num-largefile-buffers", 0, OPT_INT, &(x).buffers, "N", "buffers in the memory pool (default workers + 2); memory = buffers x part size"}
/* Fills xo from the CLI values; put_opts and meta storage live in the caller. */
int xfer_cli_apply(const char *cmd, const struct xfer_cli *x, struct xfer_opts *xo,
                   struct s3_put_opts *put, struct s3_meta *meta, int meta_cap);

/* --stats-graphite HOST:PORT, --graphite-prefix, --report-interval: the
 * counters of a long run (clone, backup) to a Graphite receiver. */
struct graphite_cli {
    const char *address, *prefix;
    int interval; /* seconds (callers start it at 30) */
};
#define GRAPHITE_CLI_OPTS(cmd, gc)                                                                 \
    {"stats-graphite", 0, OPT_STRING, &(gc).address, "HOST:PORT", "send counters to a Graphite receiver (plaintext protocol)"}, \
    {"graphite-prefix", 0, OPT_STRING, &(gc).prefix, "PREFIX", "metric prefix (default haul." cmd ".HOSTNAME)"}, \
    {"report-interval", 0, OPT_INT, &(gc).interval, "SECONDS", "how often counters go to Graphite (default 30)"}
struct graphite_reporter;
struct graphite_metric;
/* Starts the reporter when --stats-graphite was given (else *out = NULL);
 * 0, or an exit code after the message (a bad address or interval). */
int graphite_cli_start(const char *cmd, const struct graphite_cli *gc,
                       size_t (*sample)(struct graphite_metric *, size_t, void *), void *ctx,
                       struct graphite_reporter **out);
/* Sends the last sample, stops, and says on stderr how many reports could
 * not be delivered. */
void graphite_cli_stop(const char *cmd, const struct graphite_cli *gc, struct graphite_reporter *r);

/* --broker URL, --broker-file FILE, --broker-ca FILE, --broker-no-verify:
 * the RabbitMQ of a distributed run (worker, clone, backup, ctl). */
struct broker_cli {
    const char *url, *file, *ca;
    bool no_verify;
    char resolved[8192]; /* the URL to use */
};
#define BROKER_CLI_OPTS(b)                                                                         \
    {"broker", 0, OPT_STRING, &(b).url, "URL", "RabbitMQ: amqp[s]://user:pass@host:port/vhost (default $HAUL_BROKER); a password here is scrubbed from argv, prefer --broker-file"}, \
    {"broker-file", 0, OPT_STRING, &(b).file, "FILE", "read the broker URL from FILE (yours or root's, mode 0600 or stricter)"}, \
    {"broker-ca", 0, OPT_STRING, &(b).ca, "FILE", "amqps: CA bundle (PEM) that signed the broker's certificate (default: the system store)"}, \
    {"broker-no-verify", 0, OPT_FLAG, &(b).no_verify, NULL, "amqps: do not verify the broker's certificate and host name (insecure)"}
/* The broker URL into *url (NULL: none given): --broker-file, else --broker
 * (whose password is then overwritten in argv, with a warning), else
 * HAUL_BROKER when use_env; --broker-ca and --broker-no-verify added as
 * its query.  Returns 0, or an exit code after the message. */
int broker_cli_resolve(const char *cmd, struct broker_cli *b, bool use_env, const char **url);
/* Reads a file holding a secret into out (NUL-terminated, < cap bytes): it
 * must be a regular file, not a symbolic link, owned by the user or root,
 * with no permission for group or others.  Returns 0, or EXIT_USAGE after a
 * message naming --opt and path. */
int cmd_secret_file_read(const char *cmd, const char *opt, const char *path, char *out, size_t cap);
/* Trust of distributed runs (README "Distributed runs"): --key-file and
 * --insecure-no-key on every command that talks to a job's queues,
 * --allow / --allow-any on the worker, --refuse-timeout on coordinators. */
struct dist_trust_cli {
    const char *key_file;   /* default $HAUL_KEY_FILE */
    bool insecure_no_key;
    struct opt_list allow;
    bool allow_any;
    int refuse_timeout;     /* seconds; callers start it at DIST_REFUSE_TIMEOUT_S */
    const struct dist_key *key; /* loaded by dist_trust_cli_key (into key_storage); NULL with
                                   --insecure-no-key */
    struct dist_key key_storage;
    char *resolved[64];     /* --allow, resolved by dist_trust_cli_allow */
    size_t nresolved;
};
#define DIST_TRUST_CLI_OPTS(t)                                                                     \
    {"key-file", 0, OPT_STRING, &(t).key_file, "FILE", "distributed: the job's shared secret (mode 0600, yours): signs and checks the job, units and results (default $HAUL_KEY_FILE)"}, \
    {"insecure-no-key", 0, OPT_FLAG, &(t).insecure_no_key, NULL, "distributed: run unsigned (whoever can publish on the broker steers the workers: test set-ups only)"}
#define DIST_ALLOW_CLI_OPTS(t)                                                                     \
    {"allow", 0, OPT_LIST, &(t).allow, "ROOT", "serve only jobs whose SRC and DST (clone), or SRC and bucket/prefix (backup), are inside a ROOT: a directory or s3://BUCKET[/PREFIX] (repeatable; required)"}, \
    {"allow-any", 0, OPT_FLAG, &(t).allow_any, NULL, "serve jobs naming any path or bucket (see README: anyone with the key steers root here)"}
#define DIST_REFUSE_CLI_OPTS(t)                                                                    \
    {"refuse-timeout", 0, OPT_INT, &(t).refuse_timeout, "SECONDS", "with --broker: exit 1 when workers refuse the job and none takes a unit for this long (default 60)"}
/* Loads the key file (--key-file or $HAUL_KEY_FILE) into t->key, or
 * accepts --insecure-no-key (t->key NULL).  0, or an exit code after the
 * message (no key and no --insecure-no-key, a file not 0600 or not ours). */
int dist_trust_cli_key(const char *cmd, struct dist_trust_cli *t);
/* Worker: resolves --allow (realpath; s3://BUCKET[/PREFIX] checked) into
 * t->resolved, refusing none at all without --allow-any.  0 or an exit code. */
int dist_trust_cli_allow(const char *cmd, struct dist_trust_cli *t);
/* Checks --refuse-timeout: 0 or an exit code. */
int dist_trust_cli_refuse(const char *cmd, const struct dist_trust_cli *t);
void dist_trust_cli_release(struct dist_trust_cli *t);

/* A line redrawn on stderr a few times a second while it is a terminal:
 * draw prints it (no newline).  NULL (nothing drawn) when not enabled or
 * not a terminal; ticker_stop(NULL) is a no-op.  keep_line: draw it once
 * more and end it with a newline. */
typedef void (*ticker_draw_fn)(void *ctx);
struct ticker;
struct ticker *ticker_start(ticker_draw_fn draw, void *ctx, bool enabled);
void ticker_stop(struct ticker *ticker, bool keep_line);

/* The state directory: given, else $XDG_STATE_HOME/haul, else
 * ~/.local/state/haul. */
void state_dir_resolve(const char *given, char *out, size_t cap);

/* A live progress line on stderr when it is a terminal (and not quiet/json). */
struct progress;
struct progress *progress_start(const char *label, uint64_t total, bool enabled);
void progress_update(uint64_t done, void *progress); /* xfer_progress_fn */
void progress_stop(struct progress *p);

/* Seconds elapsed since start (CLOCK_MONOTONIC). */
double seconds_since(const struct timespec *start);

/* JSON output helpers (strings escaped, invalid UTF-8 as \ufffd). */
void json_string(FILE *f, const char *s);

/* Human sizes ("1.5 GiB"). */
void format_size(uint64_t bytes, char *out, size_t cap);

/* Subcommands. */
int cmd_put(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_mb(int argc, char **argv);
int cmd_rb(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_clone(int argc, char **argv);
int cmd_daemon(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_ctl(int argc, char **argv);

#endif

/* cmd/main: dispatch "haul COMMAND ..." to the subcommand. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"

#ifndef HAUL_VERSION
#define HAUL_VERSION "0.1.0"
#endif

struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct subcommand subcommands[] = {
    {"backup", cmd_backup, "back up directory trees to s3://BUCKET[/PREFIX], incrementally"},
    {"restore", cmd_restore, "restore a tree from s3://BUCKET[/PREFIX] (Glacier restores included)"},
    {"diff", cmd_diff, "compare a directory tree with a backup in s3://BUCKET[/PREFIX]"},
    {"clone", cmd_clone, "make a directory tree identical to another, in passes (copy, delete, dirtimes)"},
    {"worker", cmd_worker, "do the units of distributed clones queued on a RabbitMQ broker"},
    {"ctl", cmd_ctl, "show, stop or resize the workers of a distributed job"},
    {"put", cmd_put, "upload a file or stdin to s3://BUCKET/KEY"},
    {"get", cmd_get, "download s3://BUCKET/KEY to a file or stdout"},
    {"ls", cmd_ls, "list buckets, or objects under s3://BUCKET[/PREFIX]"},
    {"stat", cmd_stat, "show an object's size, ETag, storage class and metadata"},
    {"rm", cmd_rm, "delete an object, or everything under a prefix with --recursive"},
    {"mb", cmd_mb, "make a bucket"},
    {"rb", cmd_rb, "remove a bucket (with --force: and everything in it)"},
    {"policy", cmd_policy, "show or apply the lifecycle rule that tiers large objects to Glacier"},
    {"daemon", cmd_daemon, "serve upload requests (haul send, s3daemon clients) over warm connections"},
    {"send", cmd_send, "hand a file to a running haul daemon for upload to s3://BUCKET/KEY"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: haul COMMAND [OPTIONS] ARGS...\n\n"
               "haul moves data between POSIX filesystems and S3-compatible object storage.\n\n"
               "Commands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof *subcommands; i++)
        fprintf(f, "  %-8s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(f, "\nRun 'haul COMMAND --help' for a command's options.\n"
               "Configuration: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE,\n"
               "AWS_REGION, AWS_ENDPOINT_URL or S3_ENDPOINT_URL, ~/.aws/credentials and ~/.aws/config.\n"
               "Exit status: 0 success, 1 the operation failed, 2 usage error, 130/143 interrupted (SIGINT/SIGTERM).\n");
}

atomic_bool cmd_interrupted;
static volatile sig_atomic_t interrupt_signal; /* the first one, for the exit status */

static void on_interrupt(int sig)
{
    if (!interrupt_signal)
        interrupt_signal = sig;
    atomic_store(&cmd_interrupted, true);
    signal(sig, SIG_DFL); /* a second one ends the process at once */
}

int main(int argc, char **argv)
{
    /* A closed pipe (haul get ... - | head) is an error on write, not a kill. */
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("haul %s\n", HAUL_VERSION);
        return EXIT_OK;
    }
    /* The older tool's mode flags: "haul --backup ..." and "haul --restore ...". */
    if (strcmp(name, "--backup") == 0 || strcmp(name, "--restore") == 0)
        name += 2;
    for (size_t i = 0; i < sizeof subcommands / sizeof *subcommands; i++) {
        if (strcmp(name, subcommands[i].name) != 0)
            continue;
        int rc = subcommands[i].run(argc - 1, argv + 1);
        /* Stopped by the signal: say so as a shell does (130 SIGINT, 143 SIGTERM). */
        return rc != EXIT_OK && interrupt_signal ? 128 + interrupt_signal : rc;
    }
    fprintf(stderr, "haul: unknown command '%s'\n", name);
    usage(stderr);
    return EXIT_USAGE;
}

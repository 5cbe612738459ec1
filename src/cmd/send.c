/* cmd/send: haul send FILE DEST, a client of haul daemon.  The file is
 * opened here, with this user's rights, and its descriptor is passed to the
 * daemon: the daemon uploads only what the sender could read. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "daemon/daemon.h"
#include "util/err.h"

int cmd_send(int argc, char **argv)
{
    static const struct command_help help = {
        "send", "FILE s3://BUCKET/KEY|ALIAS/BUCKET/KEY", "Hand a file to a running haul daemon for upload.",
        "The file is opened here and its descriptor passed over the daemon's Unix socket, with its\n"
        "absolute path (used only if the daemon restarts before the upload). By default waits for\n"
        "the upload and exits 0 without output, or prints the daemon's error and exits 1; with\n"
        "--no-wait returns once the daemon has journaled the request. A KEY ending in '/' gets\n"
        "the file's name appended. The descriptor goes only to a daemon running as the socket's\n"
        "owner (or --daemon-user), and not through a socket in a directory others may write."};
    const char *socket_path = NULL, *state_dir = NULL, *daemon_user = NULL;
    bool wait = false, no_wait = false;
    int timeout = DAEMON_CLIENT_TIMEOUT_MS / 1000;
    struct global_opts g = {0};
    const struct opt opts[] = {
        {"wait", 0, OPT_FLAG, &wait, NULL, "wait for the upload's result (the default)"},
        {"no-wait", 0, OPT_FLAG, &no_wait, NULL, "return once the daemon journaled the request"},
        {"socket", 0, OPT_STRING, &socket_path, "PATH", "the daemon's socket (default HAUL_DAEMON_SOCKET, $XDG_RUNTIME_DIR/haul/daemon.sock, STATE_DIR/daemon/daemon.sock)"},
        {"state-dir", 0, OPT_STRING, &state_dir, "DIR", "to find the default socket (default ~/.local/state/haul)"},
        {"timeout", 0, OPT_INT, &timeout, "SECONDS", "give up when the daemon does not accept the connection or answer within this (default 30, 0: never); not a limit on the upload"},
        {"daemon-user", 0, OPT_STRING, &daemon_user, "NAME|UID", "the user the daemon must run as (default: the socket's owner)"},
        {NULL, 0, OPT_END, NULL, NULL, NULL}};
    const char *pos[2];
    int n_pos, rc = opts_parse_local(&help, opts, &g, argc, argv, pos, 2, &n_pos);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    if (n_pos != 2)
        return usage_error("send", "expected FILE and s3://BUCKET/KEY");
    if (wait && no_wait)
        return usage_error("send", "--wait and --no-wait exclude each other");
    if (timeout < 0 || timeout > 86400)
        return usage_error("send", "--timeout must be 0..86400 seconds");
    struct daemon_client_opts copts = {.timeout_ms = timeout * 1000};
    if (daemon_user && daemon_user_parse(daemon_user, &copts.daemon_uid) < 0)
        return usage_error("send", "--daemon-user '%s': no such user", daemon_user);
    copts.daemon_uid_set = daemon_user != NULL;
    haul_error err = {0};
    char bucket[64], *key = NULL;
    if (strncmp(pos[1], "s3://", 5) == 0) {
        struct s3_url url;
        if (s3_url_parse(pos[1], &url, &err) < 0)
            return fail("send", &err);
        snprintf(bucket, sizeof bucket, "%s", url.bucket);
        key = url.key; /* taken over */
    } else if (daemon_dest_parse(pos[1], strlen(pos[1]), bucket, &key, &err) < 0) {
        return usage_error("send", "'%s': expected s3://BUCKET/KEY or ALIAS/BUCKET/KEY", pos[1]);
    }
    size_t klen = strlen(key);
    if (klen && key[klen - 1] == '/') {
        const char *slash = strrchr(pos[0], '/'), *name = slash ? slash + 1 : pos[0];
        char *k = malloc(klen + strlen(name) + 1);
        if (k)
            sprintf(k, "%s%s", key, name);
        free(key);
        key = k;
    }
    int exit_code = EXIT_FAILED, fd = -1;
    char abs_path[4096], state[4096], sock[4096];
    if (!key || !daemon_key_valid(key, strlen(key)) || !daemon_bucket_valid(bucket, strlen(bucket))) {
        exit_code = usage_error("send", "'%s': not a valid bucket and key", pos[1]);
        goto out;
    }
    fd = open(pos[0], O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        err_errno(&err, errno, "%s", pos[0]);
        exit_code = fail("send", &err);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        exit_code = usage_error("send", "'%s' is not a regular file", pos[0]);
        goto out;
    }
    if (!realpath(pos[0], abs_path)) {
        err_errno(&err, errno, "%s", pos[0]);
        exit_code = fail("send", &err);
        goto out;
    }
    if (!socket_path)
        socket_path = getenv("HAUL_DAEMON_SOCKET");
    if (!socket_path || !*socket_path) {
        state_dir_resolve(state_dir, state, sizeof state);
        daemon_socket_default(state, sock, sizeof sock);
        socket_path = sock;
    }
    if (daemon_client_send(socket_path, &copts, fd, abs_path, bucket, key, !no_wait, NULL, &err) < 0)
        exit_code = fail("send", &err);
    else
        exit_code = EXIT_OK;
out:
    if (fd >= 0)
        close(fd);
    free(key);
    return exit_code;
}

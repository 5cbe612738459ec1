/* cmd/daemon: haul daemon [run|status|pause|resume], the front end of
 * src/daemon/: options and s3daemon's environment variables in, a running
 * server (or one question to it) out. */
#include <grp.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "daemon/daemon.h"
#include "util/err.h"

/* An int option: the flag when given (>= 0), else the environment variable,
 * else the default.  -1 when the variable is not a count. */
static int int_setting(int flag, const char *env, int def)
{
    if (flag >= 0)
        return flag;
    const char *v = getenv(env);
    if (!v || !*v)
        return def;
    char *end;
    double d = strtod(v, &end);
    if (*end || d < 0 || d > 1e6)
        return -1;
    return (int)ceil(d);
}

/* What a TCP client may never have uploaded: where the daemon's own
 * credentials come from (the S3 client's lookup: $HOME/.aws, the passwd
 * home's too, and the AWS_ variables moving its files), its state
 * directory, its log (every user's paths and keys), and /proc.  Returns
 * the count put in out. */
static int own_files(const char *state_dir, const char *log_path, const char *out[8], char buf[3][4200])
{
    int n = 0;
    const char *home = getenv("HOME");
    const struct passwd *pw = getpwuid(geteuid());
    if (home && *home) {
        snprintf(buf[0], sizeof buf[0], "%s/.aws", home);
        out[n++] = buf[0];
    }
    if (pw && pw->pw_dir && *pw->pw_dir) {
        snprintf(buf[1], sizeof buf[1], "%s/.aws", pw->pw_dir);
        out[n++] = buf[1];
    }
    const char *vars[] = {"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"};
    for (size_t i = 0; i < 2; i++)
        if (getenv(vars[i]) && *getenv(vars[i]))
            out[n++] = getenv(vars[i]);
    snprintf(buf[2], sizeof buf[2], "%s", state_dir);
    out[n++] = buf[2];
    if (log_path)
        out[n++] = log_path;
    out[n++] = "/proc";
    return n;
}

static void status_line(const char *line, void *ctx)
{
    (void)ctx;
    if (strncmp(line, "STATUS ", 7) == 0) {
        /* "queued=1 in_flight=0 ..." -> one "name: value" per line */
        char buf[512];
        snprintf(buf, sizeof buf, "%s", line + 7);
        for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
            char *eq = strchr(t, '=');
            if (eq) {
                *eq = '\0';
                printf("%-10s %s\n", t, eq + 1);
            }
        }
    } else if (strncmp(line, "FAILURE ", 8) == 0) {
        printf("failed:    %s\n", line + 8);
    } else {
        printf("%s\n", line);
    }
}

int cmd_daemon(int argc, char **argv)
{
    static const struct command_help help = {
        "daemon", "[run|status|pause|resume]",
        "Serve upload requests from haul send (and s3daemon clients with --tcp) over warm connections.",
        "run (the default) starts the server; status, pause and resume ask a running one over its\n"
        "socket. Requests are journaled (fsync) in STATE_DIR/daemon before they are acknowledged and\n"
        "finished after a crash or restart. The Unix socket takes open descriptors from haul send and\n"
        "checks the peer's uid against --allow-user; pause, resume and everyone's status are for the\n"
        "daemon's own user and --admin-user. --tcp adds s3daemon's line protocol on loopback: any\n"
        "local user can then make the daemon upload any file the daemon can read, except its own\n"
        "credentials (~/.aws, AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE), its state directory, its\n"
        "--log and /proc. Files are opened off the event loop within --read-timeout; FUSE is refused unless\n"
        "--allow-fuse.\n"
        "Environment: S3DAEMON_HOST, S3DAEMON_PORT, S3DAEMON_MAX_CONNECTIONS, S3DAEMON_MAX_CLIENTS,\n"
        "S3DAEMON_MAX_RETRIES, S3DAEMON_CONNECT_TIMEOUT, S3DAEMON_LOG, HAUL_DAEMON_SOCKET (flags win)."};
    const char *state_dir = NULL, *socket_path = NULL, *socket_group = NULL, *tcp_host = NULL;
    const char *log_path = NULL;
    struct opt_list allow = {0}, admin = {0};
    bool tcp = false, log_json = false, paused = false, allow_fuse = false;
    int tcp_port = -1, max_clients = -1, max_tcp_clients = -1, workers = -1, max_retries = -1, max_queue = -1;
    int read_timeout = -1, last = 10;
    struct global_opts g = {0};
    struct xfer_cli x = {0};
    g.max_connections = -1;
    g.connect_timeout_s = -1;
    const struct opt opts[] = {
        {"socket", 0, OPT_STRING, &socket_path, "PATH", "Unix socket (default $XDG_RUNTIME_DIR/haul/daemon.sock, else STATE_DIR/daemon/daemon.sock)"},
        {"socket-group", 0, OPT_STRING, &socket_group, "GROUP", "make the socket 0660 and owned by GROUP (default 0600)"},
        {"allow-user", 0, OPT_LIST, &allow, "NAME|UID", "peer allowed on the socket, repeatable (default: the daemon's own user)"},
        {"admin-user", 0, OPT_LIST, &admin, "NAME|UID", "peer who may also pause, resume and see every user's status, repeatable"},
        {"tcp", 0, OPT_FLAG, &tcp, NULL, "also serve s3daemon's TCP line protocol (loopback only; see the README's risk note)"},
        {"tcp-host", 0, OPT_STRING, &tcp_host, "HOST", "TCP address, loopback only (default S3DAEMON_HOST, localhost)"},
        {"tcp-port", 0, OPT_INT, &tcp_port, "PORT", "TCP port (default S3DAEMON_PORT, 15555)"},
        {"max-clients", 0, OPT_INT, &max_clients, "N", "Unix-socket connections at once; more are answered with an error (default S3DAEMON_MAX_CLIENTS, 256)"},
        {"max-tcp-clients", 0, OPT_INT, &max_tcp_clients, "N", "TCP connections at once, a budget of their own (default 256)"},
        {"allow-fuse", 0, OPT_FLAG, &allow_fuse, NULL, "serve files on FUSE filesystems (refused by default: a FUSE server can hang the daemon)"},
        {"workers", 0, OPT_INT, &workers, "N", "uploads at once (default 16)"},
        {"max-retries", 0, OPT_INT, &max_retries, "N", "retries of a failed upload, with backoff (default S3DAEMON_MAX_RETRIES, 3)"},
        {"max-queue", 0, OPT_INT, &max_queue, "N", "queued requests; more are refused (default 100000)"},
        {"read-timeout", 0, OPT_INT, &read_timeout, "SECONDS", "a client must send its request line within this, and its file be opened within this again (default 10)"},
        {"log", 0, OPT_STRING, &log_path, "FILE", "one line per object here (default S3DAEMON_LOG, else stderr); SIGHUP reopens it"},
        {"log-json", 0, OPT_FLAG, &log_json, NULL, "log lines as JSON objects"},
        {"paused", 0, OPT_FLAG, &paused, NULL, "accept and journal requests but upload nothing until 'haul daemon resume'"},
        {"state-dir", 0, OPT_STRING, &state_dir, "DIR", "journal, failed-requests log and lock; must be this user's (or root's) and not writable by others (default ~/.local/state/haul)"},
        {"last", 0, OPT_INT, &last, "N", "status: show the last N failures (default 10, at most 100)"},
        XFER_CLI_OPTS(x),
        {"storage-class", 0, OPT_STRING, &x.storage_class, "CLASS", "storage class of every object uploaded"},
        {NULL, 0, OPT_END, NULL, NULL, NULL}};
    const char *pos[1];
    int n_pos, rc = opts_parse(&help, opts, &g, argc, argv, pos, 1, &n_pos);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    const char *action = n_pos ? pos[0] : "run";
    char state[4096], sock[4096];
    state_dir_resolve(state_dir, state, sizeof state);
    if (!socket_path)
        socket_path = getenv("HAUL_DAEMON_SOCKET");
    if (!socket_path || !*socket_path) {
        daemon_socket_default(state, sock, sizeof sock);
        socket_path = sock;
    }
    haul_error err = {0};
    if (strcmp(action, "status") == 0 || strcmp(action, "pause") == 0 || strcmp(action, "resume") == 0) {
        struct daemon_msg m = {.verb = action[0] == 's' ? DAEMON_STATUS : action[0] == 'p' ? DAEMON_PAUSE : DAEMON_RESUME,
                               .last = last > 100 ? 100 : last};
        if (daemon_client_command(socket_path, NULL, &m, status_line, NULL, &err) < 0)
            return fail("daemon", &err);
        return EXIT_OK;
    }
    if (strcmp(action, "run") != 0)
        return usage_error("daemon", "unknown action '%s' (run, status, pause or resume)", action);

    struct daemon_config cfg = {.state_dir = state, .socket_path = socket_path, .socket_gid = (gid_t)-1,
                                .tcp = tcp, .log_json = log_json, .paused = paused};
    uid_t allowed[128];
    for (int i = 0; i < allow.n; i++)
        if (daemon_user_parse(allow.items[i], &allowed[i]) < 0)
            return usage_error("daemon", "--allow-user '%s': no such user", allow.items[i]);
    cfg.n_allow = allow.n;
    if (allow.n == 0) {
        allowed[0] = geteuid(); /* root only when the daemon itself runs as root */
        cfg.n_allow = 1;
    }
    cfg.allow = allowed;
    uid_t admins[64];
    for (int i = 0; i < admin.n; i++)
        if (daemon_user_parse(admin.items[i], &admins[i]) < 0)
            return usage_error("daemon", "--admin-user '%s': no such user", admin.items[i]);
    cfg.admins = admins;
    cfg.n_admins = admin.n;
    for (int i = 0; i < admin.n; i++) /* an admin may connect, of course */
        allowed[cfg.n_allow++] = admins[i];
    cfg.allow_fuse = allow_fuse;
    if (socket_group) {
        char *end;
        unsigned long v = strtoul(socket_group, &end, 10);
        const struct group *gr = *end ? getgrnam(socket_group) : NULL;
        if (*end && !gr)
            return usage_error("daemon", "--socket-group '%s': no such group", socket_group);
        cfg.socket_gid = gr ? gr->gr_gid : (gid_t)v;
    }
    cfg.tcp_host = tcp_host ? tcp_host : getenv("S3DAEMON_HOST") && *getenv("S3DAEMON_HOST") ? getenv("S3DAEMON_HOST") : "localhost";
    cfg.tcp_port = int_setting(tcp_port, "S3DAEMON_PORT", 15555);
    cfg.max_clients = int_setting(max_clients, "S3DAEMON_MAX_CLIENTS", 256);
    cfg.max_tcp_clients = max_tcp_clients >= 0 ? max_tcp_clients : 256;
    cfg.max_retries = int_setting(max_retries, "S3DAEMON_MAX_RETRIES", 3);
    cfg.workers = workers >= 0 ? workers : 16;
    cfg.max_queue = max_queue >= 0 ? max_queue : 100000;
    cfg.read_timeout_ms = (read_timeout >= 0 ? read_timeout : 10) * 1000;
    cfg.log_path = log_path ? log_path : getenv("S3DAEMON_LOG") && *getenv("S3DAEMON_LOG") ? getenv("S3DAEMON_LOG") : NULL;
    char deny_buf[3][4200];
    const char *deny[8];
    cfg.deny = deny;
    cfg.n_deny = own_files(state, cfg.log_path, deny, deny_buf);
    g.max_connections = int_setting(g.max_connections, "S3DAEMON_MAX_CONNECTIONS", 25);
    g.connect_timeout_s = int_setting(g.connect_timeout_s, "S3DAEMON_CONNECT_TIMEOUT", 0);
    cfg.s3_connections = g.max_connections;
    if (cfg.tcp_port <= 0 || cfg.tcp_port > 65535)
        return usage_error("daemon", "the TCP port must be 1..65535 (--tcp-port, S3DAEMON_PORT)");
    if (cfg.max_clients < 1 || cfg.max_tcp_clients < 1 || cfg.max_retries < 0 || g.max_connections < 1 || g.connect_timeout_s < 0)
        return usage_error("daemon", "--max-clients, --max-tcp-clients, --max-connections (or their S3DAEMON_ variables) must be at least 1, "
                                     "--max-retries and --connect-timeout counts");
    if (cfg.workers < 1 || cfg.max_queue < 1 || cfg.read_timeout_ms < 1000)
        return usage_error("daemon", "--workers, --max-queue and --read-timeout must be at least 1 (use --paused to hold uploads)");
    /* Each upload is bounded by its own pool: --num-largefile-workers parts
     * in flight, memory workers x buffers x part size at most. */
    if (!x.workers)
        x.workers = 4;
    struct s3_put_opts put;
    struct s3_meta meta[1];
    if ((rc = xfer_cli_apply("daemon", &x, &cfg.xfer, &put, meta, 0)) != 0)
        return rc;
    if (daemon_signals_block(&err) < 0)
        return fail("daemon", &err);
    struct s3_client *c = client_open("daemon", &g);
    if (!c)
        return EXIT_FAILED;
    rc = daemon_run(c, &cfg, &err);
    s3_client_free(c);
    return rc < 0 ? fail("daemon", &err) : EXIT_OK;
}

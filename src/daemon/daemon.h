/* daemon: haul daemon and the client side of haul send.  This module owns
 * the wire protocols (untrusted input: s3daemon's TCP line protocol and the
 * Unix-socket protocol shared with haul send), peer credentials, descriptor
 * passing (SCM_RIGHTS) and the on-disk request journal.  How a file gets
 * uploaded is xfer's business (xfer_upload_fd). */
#ifndef DAEMON_DAEMON_H
#define DAEMON_DAEMON_H

#include <haul/error.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "s3/s3.h"
#include "xfer/xfer.h"

/* Longest request line: s3daemon's TCP protocol, and the Unix-socket
 * protocol (which carries a percent-encoded path and key). */
#define DAEMON_TCP_LINE_MAX 8192
#define DAEMON_UNIX_LINE_MAX 20480
#define DAEMON_KEY_MAX 1024   /* S3's limit on a key, in bytes */
#define DAEMON_PATH_MAX 4096

/* ---- proto.c: parsing and formatting, pure functions ---- */

/* One s3daemon request "FILENAME DEST" (the line without its newline; a
 * trailing "\r" and blanks are ignored).  DEST is ALIAS/BUCKET/KEY; the
 * alias is ignored and the key may hold slashes.  The line is split at its
 * last space, so a file name may hold spaces but a key may not.  FILENAME
 * must be absolute. */
struct daemon_line {
    char *path;       /* heap */
    char bucket[64];
    char *key;        /* heap */
};
int daemon_line_parse(const char *line, size_t len, struct daemon_line *out, haul_error *err);
void daemon_line_release(struct daemon_line *l);

/* "ALIAS/BUCKET/KEY" -> bucket and key (heap).  Also what haul send accepts
 * besides s3://BUCKET/KEY. */
int daemon_dest_parse(const char *dest, size_t len, char bucket[64], char **key, haul_error *err);

/* A bucket name S3 accepts: 3-63 of [a-z0-9.-], starting and ending with a
 * letter or digit.  A key: 1..1024 bytes, no control characters. */
bool daemon_bucket_valid(const char *bucket, size_t len);
bool daemon_key_valid(const char *key, size_t len);
/* A path a request may name: absolute, at most DAEMON_PATH_MAX bytes, no
 * NUL and no control characters (bytes < 0x20 and 0x7f), so that logging
 * it can never start a forged line. */
bool daemon_path_valid(const char *path, size_t len);

/* The Unix-socket protocol: one line per request, fields separated by one
 * space, text fields percent-encoded (daemon_field_encode):
 *   HAUL/1 SEND WAIT|NOWAIT BUCKET KEY PATH   (one descriptor attached)
 *   HAUL/1 STATUS N                           (N last failures, 0..100)
 *   HAUL/1 PAUSE | HAUL/1 RESUME
 * Replies are lines: "QUEUED ID" then "OK" or "FAILED REASON" for SEND
 * (NOWAIT: only "QUEUED ID"), "ERROR REASON" when refused; STATUS answers
 * "STATUS queued=.. in_flight=.. done=.. failed=.. paused=0|1", one
 * "FAILURE ..." line per recent failure, then "END"; PAUSE and RESUME "OK". */
enum daemon_verb { DAEMON_SEND, DAEMON_STATUS, DAEMON_PAUSE, DAEMON_RESUME };
struct daemon_msg {
    enum daemon_verb verb;
    bool wait;
    char bucket[64];
    char *key;  /* heap, SEND only */
    char *path; /* heap, SEND only: the client's absolute path of the file */
    int last;   /* STATUS only */
};
int daemon_msg_parse(const char *line, size_t len, struct daemon_msg *out, haul_error *err);
void daemon_msg_release(struct daemon_msg *m);
/* Formats m as a request line with its newline; returns its length, or -1
 * when it does not fit in cap. */
int daemon_msg_format(const struct daemon_msg *m, char *out, size_t cap);

/* Percent-encodes bytes <= 0x20, '%' and 0x7f (so a field holds no space or
 * newline).  Returns the length, or -1 when it does not fit (with its NUL). */
int daemon_field_encode(const char *in, size_t len, char *out, size_t cap);
/* Decodes a field; refuses a bad escape or an encoded NUL.  Returns a heap
 * string, or NULL. */
char *daemon_field_decode(const char *in, size_t len);

/* ---- journal.c: the request journal ---- */

/* An accepted request, as journaled. */
struct daemon_req {
    uint64_t id;
    uint32_t uid;       /* who submitted it (TCP: the daemon's own uid) */
    char via;           /* 'u' Unix socket (fd passed), 't' TCP (opened by path) */
    uint64_t dev, ino;  /* the file that was accepted */
    uint64_t size;
    int64_t mtime_sec;
    long mtime_nsec;
    char bucket[64];
    char *key;  /* heap */
    char *path; /* heap, absolute */
};
void daemon_req_release(struct daemon_req *r);

/* A record line (with its newline) for r, or a "done"/"failed" mark for an
 * id: each ends with a CRC-32 of what precedes it, so a torn or corrupt line
 * is recognised.  Return the length, or -1 when cap is too small. */
int daemon_req_format(const struct daemon_req *r, char *out, size_t cap);
/* Parses one record line (without its newline).  *kind is 'R' (a request,
 * filled into r, to release), 'D' (done) or 'F' (failed: only r->id set).
 * Returns 0, or -1 for a line that is not a whole valid record. */
int daemon_record_parse(const char *line, size_t len, char *kind, struct daemon_req *r);

/* An append-only file of records.  Opening replays it: every request with
 * no done/failed mark is passed to fn (in order of acceptance), then the
 * file is rewritten with only those (a torn last record is dropped; a read
 * error fails the open and leaves the file as it is).  A failed append
 * leaves no fragment behind (the file is cut back to its last whole
 * record), so the next record is whole.  Appends of requests are fsync'd
 * before returning; marks are not (a lost mark means one more upload after
 * a crash, never a lost request). */
struct daemon_journal;
typedef int (*daemon_pending_fn)(const struct daemon_req *r, void *ctx);
struct daemon_journal *daemon_journal_open(const char *path, daemon_pending_fn fn, void *ctx,
                                           haul_error *err);
void daemon_journal_free(struct daemon_journal *j);
/* Assigns r->id and appends r durably.  Thread-safe. */
int daemon_journal_add(struct daemon_journal *j, struct daemon_req *r, haul_error *err);
/* The same in two steps, so that one fsync covers many appends (group
 * commit): an appended request is durable only once a later
 * daemon_journal_sync returned 0. */
int daemon_journal_append(struct daemon_journal *j, struct daemon_req *r, haul_error *err);
int daemon_journal_sync(struct daemon_journal *j, haul_error *err);
/* Marks a request done or failed; compacts the file when it has grown and
 * most of it is finished.  Thread-safe. */
int daemon_journal_finish(struct daemon_journal *j, uint64_t id, bool ok, haul_error *err);
/* Requests without a mark. */
size_t daemon_journal_pending(struct daemon_journal *j);

/* ---- task.c: blocking file operations off the event loop ---- */

/* Each task runs on a thread of its own; whoever started it may wait for
 * it or give up on it (abandon) after a deadline.  An abandoned task is
 * counted as stuck until its thread returns, then drop frees it there.
 * Embed struct daemon_task first in a struct holding the inputs and
 * outputs. */
struct daemon_hub;
struct daemon_task {
    void (*run)(struct daemon_task *t);  /* on the task's thread */
    void (*drop)(struct daemon_task *t); /* frees an abandoned task (on its thread) */
    struct daemon_hub *hub;              /* private */
    int state;                           /* private, under the hub's lock */
};
/* wake_fd (dup'd; -1: none) gets a byte whenever a task finishes.  Once
 * max_stuck tasks are stuck, daemon_task_start refuses new ones. */
struct daemon_hub *daemon_hub_new(int wake_fd, int max_stuck);
/* Releases the owner's reference: stuck tasks keep the hub until they end. */
void daemon_hub_free(struct daemon_hub *h);
void daemon_hub_counts(struct daemon_hub *h, int *running, int *stuck);
int daemon_task_start(struct daemon_hub *h, struct daemon_task *t, haul_error *err);
/* Whether t finished (its outputs may be read, then the caller frees it). */
bool daemon_task_done(struct daemon_task *t);
/* Gives up on t: true when it was still running (it frees itself when it
 * returns), false when it finished meanwhile (the caller still owns it). */
bool daemon_task_abandon(struct daemon_task *t);
/* Waits at most timeout_ms: true when t finished, else it is abandoned. */
bool daemon_task_wait(struct daemon_task *t, int timeout_ms);

/* ---- files.c: opening what a client names (blocking: on a task) ---- */

#define DAEMON_GROUPS_MAX 256
#define DAEMON_DENY_MAX 16
/* A user's file identity: uid, primary group and supplementary groups. */
struct daemon_perm {
    uid_t uid;
    gid_t gid;
    gid_t groups[DAEMON_GROUPS_MAX];
    int n_groups;
};
int daemon_perm_load(uid_t uid, struct daemon_perm *p, haul_error *err);
/* Whether p may read (want 4) or search (want 1) a file of st's owner and
 * mode, by its mode bits in POSIX order (no ACLs: a fallback). */
bool daemon_perm_allows(const struct daemon_perm *p, const struct stat *st, unsigned want);
/* Makes the calling thread's file accesses those of p (fsuid, fsgid,
 * groups; root's capabilities over files go with it).  Only on a thread
 * that ends afterwards: nothing gives the identity back. */
int daemon_perm_assume(const struct daemon_perm *p, haul_error *err);

struct daemon_open_opts {
    bool follow;        /* follow symlinks (as open would); else any symlink in the path is refused */
    bool allow_fuse;    /* else a FUSE filesystem is refused before anything on it is looked up */
    bool path_only;     /* an O_PATH descriptor: which file the path names, nothing read */
    bool deny_proc;     /* refuse anything in procfs */
    const char *const *deny; /* files and directories never opened nor passed through */
    int n_deny;
    const struct daemon_perm *perm; /* mode bits checked as this user on each component; NULL: none */
};
/* Opens the regular file at the absolute path for reading (or O_PATH),
 * resolving one component at a time from "/" as o says; st receives its
 * status.  Returns the descriptor, or <0 with err naming the path and
 * errno that of the lookup that failed (EACCES: a directory that may not
 * be searched), 0 for a refusal (a symlink, FUSE, a denied file...). */
int daemon_file_open(const char *path, const struct daemon_open_opts *o, struct stat *st, haul_error *err);
/* Checks a descriptor passed by a client: open for reading, not on FUSE
 * (unless allow_fuse), a regular file (st). */
int daemon_fd_check(int fd, bool allow_fuse, struct stat *st, haul_error *err);

/* ---- server.c: haul daemon ---- */

struct daemon_config {
    const char *state_dir;       /* journal, failed log, lock: STATE_DIR/daemon/ */
    const char *socket_path;     /* the Unix socket (mode 0600, 0660 with a group) */
    gid_t socket_gid;            /* (gid_t)-1: none */
    const uid_t *allow;          /* peers allowed on the Unix socket */
    int n_allow;
    bool tcp;                    /* also listen for the s3daemon protocol */
    const char *tcp_host;        /* must be a loopback address */
    int tcp_port;
    const uid_t *admins;         /* peers who may pause, resume and see everyone's status, */
    int n_admins;                /* besides the daemon's own uid */
    int max_clients;             /* Unix-socket connections at once; more are answered with an error */
    int max_tcp_clients;         /* the same for TCP connections, a budget of their own */
    bool allow_fuse;             /* serve files on FUSE (else refused: a FUSE server can hang us) */
    const char *const *deny;     /* TCP: files and directories never served (the daemon's */
    int n_deny;                  /* credentials and state), by device and inode; procfs too */
    int workers;                 /* upload threads */
    int s3_connections;          /* the S3 client's pool (--max-connections): part of the descriptor reserve */
    int max_retries;             /* after the first attempt, with backoff */
    int max_queue;               /* queued requests; more are refused */
    int read_timeout_ms;         /* a request line must arrive within this, and its file be
                                  * opened and checked (off the event loop) within this again */
    const char *log_path;        /* NULL: stderr */
    bool log_json;
    bool paused;                 /* accept and journal, upload nothing until resumed */
    struct xfer_opts xfer;       /* per upload (part size, workers, buffers, put options) */
};

/* Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and every thread
 * it creates later: call it first, before any thread exists, so that
 * daemon_run receives them on a signalfd. */
int daemon_signals_block(haul_error *err);

/* Runs the daemon until SIGTERM or SIGINT: finishes the journal left by a
 * previous run, listens, uploads.  The first signal stops accepting and lets
 * uploads in flight finish (queued ones stay in the journal); a second one
 * cancels those too.  SIGHUP reopens the log file.  Returns 0 after a clean
 * shutdown. */
int daemon_run(struct s3_client *c, const struct daemon_config *cfg, haul_error *err);

/* The default socket: $XDG_RUNTIME_DIR/haul/daemon.sock, else
 * STATE_DIR/daemon/daemon.sock. */
void daemon_socket_default(const char *state_dir, char *out, size_t cap);

/* ---- client.c: haul send and haul daemon status ---- */

#define DAEMON_CLIENT_TIMEOUT_MS 30000

struct daemon_client_opts {
    int timeout_ms;      /* for connecting and the daemon's first answer (not an upload's result); 0: none */
    bool daemon_uid_set; /* send: the daemon must run as daemon_uid, else as the socket file's owner */
    uid_t daemon_uid;
};

/* A user name or numeric uid -> uid; -1 when there is no such user. */
int daemon_user_parse(const char *s, uid_t *out);

/* Sends the open file fd (its absolute path alongside) to the daemon for
 * bucket/key, once the process listening on the socket proved to run as
 * the expected user (see struct daemon_client_opts; the socket's directory
 * must not let others plant a socket).  wait: returns when the upload
 * finished (its failure in err); else once the daemon journaled the
 * request.  *id (may be NULL) receives the request id.  o NULL: defaults. */
int daemon_client_send(const char *socket_path, const struct daemon_client_opts *o, int fd, const char *abs_path,
                       const char *bucket, const char *key, bool wait, uint64_t *id, haul_error *err);

/* Sends STATUS, PAUSE or RESUME; each line of the answer but "END" goes to
 * fn.  The whole answer must come within o's timeout. */
typedef void (*daemon_line_fn)(const char *line, void *ctx);
int daemon_client_command(const char *socket_path, const struct daemon_client_opts *o, const struct daemon_msg *m,
                          daemon_line_fn fn, void *ctx, haul_error *err);

#endif

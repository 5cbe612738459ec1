/* dist/auth: the shared secret of a distributed job and the signed envelope
 * every message on its queues travels in when one is given (--key-file).
 *
 * Envelope: "HSIG", a version byte, a kind byte ('W' work unit, 'R' result,
 * 'C' control, 'J' job description), u8 run id length, the run id, the
 * 32-byte HMAC-SHA256, then the message itself.  The MAC covers a domain
 * string, the queue prefix (so a message of job A is no message of job B),
 * the kind (a result is never taken for a unit), the run id and the
 * message: changing any byte, replaying a message under another run id,
 * another job or as another kind makes it fail.  Whoever opens an envelope
 * compares the run id it names with the run the message claims (a unit's
 * job_id, a description's run) or expects (the coordinator's run).
 *
 * Not covered: replay of a whole signed message within its own run and job
 * (units are idempotent; a run's results are counted once per unit id), nor
 * an older run's signed description put back while no coordinator runs. */
#ifndef DIST_AUTH_H
#define DIST_AUTH_H

#include <haul/error.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/strbuf.h"

#define DIST_KEY_MIN 16   /* bytes of secret: `openssl rand -hex 32 > FILE` gives 64 */
#define DIST_KEY_MAX 1024
#define DIST_MAC_LEN 32

struct dist_key {
    unsigned char bytes[DIST_KEY_MAX];
    size_t len;
};

/* Reads the secret at path: a regular file (not followed if a symlink)
 * owned by this user, not readable or writable by group or others, of
 * DIST_KEY_MIN to DIST_KEY_MAX bytes once trailing whitespace is cut.
 * HAUL_EUSAGE naming the file and what is wrong otherwise. */
int dist_key_load(const char *path, struct dist_key *out, haul_error *err);

/* Appends the envelope of body (kind 'W', 'R', 'C' or 'J', run "" or a
 * job id) to out. */
int dist_seal(const struct dist_key *k, const char *prefix, char kind, const char *run, const void *body,
              size_t len, struct strbuf *out, haul_error *err);

/* Opens an envelope made by dist_seal with the same key, prefix and kind:
 * 0 with *body and *blen pointing into buf and run (DIST_JOB_ID_MAX + 1 bytes)
 * filled, or -1 with *why (a static string) when it is not one, or does
 * not verify. */
int dist_unseal(const struct dist_key *k, const char *prefix, char kind, const void *buf, size_t len, char *run,
                const void **body, size_t *blen, const char **why);

/* True when buf starts like an envelope (to tell a signed message that
 * reaches a side without a key from a malformed one). */
bool dist_sealed(const void *buf, size_t len);

#endif

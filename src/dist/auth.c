/* dist/auth: key files and signed envelopes (see auth.h). */
#include "dist/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dist/dist.h"
#include "util/err.h"
#include "util/fdio.h"
#include "util/hash.h"
#include "util/wire.h"

static const char magic[4] = {'H', 'S', 'I', 'G'};
enum { ENVELOPE_VERSION = 1 };
static const char domain[] = "haul-dist-envelope-1";

int dist_key_load(const char *path, struct dist_key *out, haul_error *err)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return err_set(err, HAUL_EUSAGE, "--key-file %s: %s%s", path, strerror(errno),
                       errno == ELOOP ? " (a symlink: give the file itself)" : "");
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0)
        rc = err_set(err, HAUL_EUSAGE, "--key-file %s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = err_set(err, HAUL_EUSAGE, "--key-file %s: not a regular file", path);
    else if (st.st_uid != geteuid())
        rc = err_set(err, HAUL_EUSAGE, "--key-file %s: owned by uid %u, not by this user (uid %u)", path,
                     (unsigned)st.st_uid, (unsigned)geteuid());
    else if (st.st_mode & 077)
        rc = err_set(err, HAUL_EUSAGE, "--key-file %s: mode %04o lets others read or change the secret: "
                     "chmod 600 it", path, (unsigned)(st.st_mode & 07777));
    else if (st.st_size > DIST_KEY_MAX + 64)
        rc = err_set(err, HAUL_EUSAGE, "--key-file %s: %lld bytes, a key has at most %d", path,
                     (long long)st.st_size, DIST_KEY_MAX);
    ssize_t n = 0;
    unsigned char buf[DIST_KEY_MAX + 64];
    if (rc == 0 && (n = fd_read_full(fd, buf, sizeof buf)) < 0)
        rc = err_set(err, HAUL_EUSAGE, "--key-file %s: %s", path, strerror(errno));
    close(fd);
    if (rc < 0)
        return rc;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    if (n < DIST_KEY_MIN || n > DIST_KEY_MAX)
        rc = err_set(err, HAUL_EUSAGE, "--key-file %s: %zd bytes of secret, want %d to %d "
                     "(e.g. `openssl rand -hex 32 > FILE`)", path, n, DIST_KEY_MIN, DIST_KEY_MAX);
    else
        memcpy(out->bytes, buf, (size_t)n), out->len = (size_t)n;
    OPENSSL_cleanse(buf, sizeof buf);
    return rc;
}

/* The MAC of (domain, prefix, kind, run, body). */
static int mac_of(const struct dist_key *k, const char *prefix, char kind, const char *run, const void *body,
                  size_t len, unsigned char out[DIST_MAC_LEN])
{
    struct strbuf sb = STRBUF_INIT;
    size_t pn = strlen(prefix), rn = strlen(run);
    strbuf_add(&sb, domain, sizeof domain); /* with its NUL */
    wire_put_u8(&sb, (unsigned)pn);
    strbuf_add(&sb, prefix, pn);
    wire_put_u8(&sb, (unsigned char)kind);
    wire_put_u8(&sb, (unsigned)rn);
    strbuf_add(&sb, run, rn);
    strbuf_add(&sb, body, len);
    int rc = sb.failed ? -1 : 0;
    if (rc == 0)
        hash_hmac_sha256(k->bytes, k->len, sb.s, sb.len, out);
    strbuf_release(&sb);
    return rc;
}

int dist_seal(const struct dist_key *k, const char *prefix, char kind, const char *run, const void *body,
              size_t len, struct strbuf *out, haul_error *err)
{
    size_t rn = strlen(run);
    if (rn > DIST_JOB_ID_MAX || strlen(prefix) > 255)
        return err_set(err, HAUL_EUSAGE, "signing: run id or queue prefix too long");
    unsigned char mac[DIST_MAC_LEN];
    if (mac_of(k, prefix, kind, run, body, len, mac) < 0)
        return err_set(err, HAUL_ENOMEM, "signing: out of memory");
    strbuf_add(out, magic, sizeof magic);
    wire_put_u8(out, ENVELOPE_VERSION);
    wire_put_u8(out, (unsigned char)kind);
    wire_put_u8(out, (unsigned)rn);
    strbuf_add(out, run, rn);
    strbuf_add(out, mac, sizeof mac);
    strbuf_add(out, body, len);
    return out->failed ? err_set(err, HAUL_ENOMEM, "signing: out of memory") : 0;
}

bool dist_sealed(const void *buf, size_t len)
{
    return len >= sizeof magic && memcmp(buf, magic, sizeof magic) == 0;
}

int dist_unseal(const struct dist_key *k, const char *prefix, char kind, const void *buf, size_t len, char *run,
                const void **body, size_t *blen, const char **why)
{
    const unsigned char *p = buf;
    run[0] = '\0';
    if (!dist_sealed(buf, len)) {
        *why = "is not signed (a coordinator or worker without --key-file, or forged)";
        return -1;
    }
    if (len < sizeof magic + 3 || p[4] != ENVELOPE_VERSION) {
        *why = "has a malformed or unknown signature envelope";
        return -1;
    }
    size_t rn = p[6], head = sizeof magic + 3 + rn + DIST_MAC_LEN;
    if (rn > DIST_JOB_ID_MAX || len < head) {
        *why = "has a malformed signature envelope";
        return -1;
    }
    if ((char)p[5] != kind) {
        *why = "is signed as another kind of message";
        return -1;
    }
    char r[DIST_JOB_ID_MAX + 1];
    memcpy(r, p + 7, rn);
    r[rn] = '\0';
    if (memchr(r, '\0', rn)) {
        *why = "has a malformed signature envelope";
        return -1;
    }
    unsigned char mac[DIST_MAC_LEN];
    if (mac_of(k, prefix, kind, r, p + head, len - head, mac) < 0) {
        *why = "could not be checked (out of memory)";
        return -1;
    }
    if (CRYPTO_memcmp(mac, p + 7 + rn, DIST_MAC_LEN) != 0) {
        *why = "does not verify with this --key-file (forged, or signed with another key)";
        return -1;
    }
    memcpy(run, r, rn + 1);
    *body = p + head;
    *blen = len - head;
    return 0;
}

/* libFuzzer target for daemon/proto and the journal record parser: what
 * haul daemon reads from any local client (and from its own journal after
 * a crash).  One input is read four ways:
 *   1. as an s3daemon TCP line: daemon_line_parse must refuse it with a
 *      message, or give an absolute path, a valid bucket and key that a
 *      line built from them parses to again;
 *   2. as a Unix-socket request: daemon_msg_parse likewise, and an accepted
 *      SEND formats and parses back to the same fields;
 *   3. as a journal record: daemon_record_parse accepts only whole records
 *      with a good CRC, and an accepted request formats and parses back to
 *      the same fields;
 *   4. as a percent-encoded field: a decoded field re-encodes and decodes to
 *      itself.
 * Build and run: tests/fuzz/README.md (fuzz_daemon). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(const haul_error *err, int rc)
{
    if (!memchr(err->msg, '\0', sizeof err->msg))
        abort();
    if (rc == 0 ? err->code != HAUL_OK : (err->code == HAUL_OK || !err->msg[0] || rc != -err->code))
        abort();
}

static void tcp_line(const char *in, size_t len)
{
    struct daemon_line l;
    haul_error err = {0};
    int rc = daemon_line_parse(in, len, &l, &err);
    check_error(&err, rc);
    if (rc < 0) {
        if (l.path || l.key)
            abort();
        return;
    }
    if (!daemon_path_valid(l.path, strlen(l.path)) || !daemon_bucket_valid(l.bucket, strlen(l.bucket)) ||
        !daemon_key_valid(l.key, strlen(l.key)) || strchr(l.key, ' '))
        abort();
    char again[DAEMON_TCP_LINE_MAX * 2];
    int n = snprintf(again, sizeof again, "%s a/%s/%s", l.path, l.bucket, l.key);
    struct daemon_line l2;
    err = (haul_error){0};
    if (n < 0 || daemon_line_parse(again, (size_t)n, &l2, &err) != 0)
        abort();
    if (strcmp(l.path, l2.path) || strcmp(l.bucket, l2.bucket) || strcmp(l.key, l2.key))
        abort();
    daemon_line_release(&l2);
    daemon_line_release(&l);
}

static void unix_msg(const char *in, size_t len)
{
    struct daemon_msg m;
    haul_error err = {0};
    int rc = daemon_msg_parse(in, len, &m, &err);
    check_error(&err, rc);
    if (rc < 0) {
        if (m.key || m.path)
            abort();
        return;
    }
    if (m.verb == DAEMON_STATUS && (m.last < 0 || m.last > 100))
        abort();
    if (m.verb != DAEMON_SEND)
        return;
    if (!daemon_path_valid(m.path, strlen(m.path))) /* no control character reaches a log (L1) */
        abort();
    static char buf[DAEMON_UNIX_LINE_MAX * 2];
    int n = daemon_msg_format(&m, buf, sizeof buf);
    struct daemon_msg m2;
    err = (haul_error){0};
    if (n <= 0 || buf[n - 1] != '\n' || daemon_msg_parse(buf, (size_t)n - 1, &m2, &err) != 0)
        abort();
    if (m2.wait != m.wait || strcmp(m.bucket, m2.bucket) || strcmp(m.key, m2.key) || strcmp(m.path, m2.path))
        abort();
    daemon_msg_release(&m2);
    daemon_msg_release(&m);
}

static void record(const char *in, size_t len)
{
    char kind;
    struct daemon_req r;
    if (daemon_record_parse(in, len, &kind, &r) < 0) {
        if (r.key || r.path)
            abort();
        return;
    }
    if (kind != 'R') {
        if (kind != 'D' && kind != 'F')
            abort();
        return;
    }
    static char buf[4 * DAEMON_UNIX_LINE_MAX];
    int n = daemon_req_format(&r, buf, sizeof buf);
    struct daemon_req r2;
    if (n <= 0 || daemon_record_parse(buf, (size_t)n - 1, &kind, &r2) != 0 || kind != 'R')
        abort();
    if (r2.id != r.id || r2.uid != r.uid || r2.via != r.via || r2.dev != r.dev || r2.ino != r.ino ||
        r2.size != r.size || r2.mtime_sec != r.mtime_sec || r2.mtime_nsec != r.mtime_nsec ||
        strcmp(r2.bucket, r.bucket) || strcmp(r2.key, r.key) || strcmp(r2.path, r.path))
        abort();
    daemon_req_release(&r2);
    daemon_req_release(&r);
}

static void field(const char *in, size_t len)
{
    char *dec = daemon_field_decode(in, len);
    if (!dec)
        return;
    size_t dlen = strlen(dec);
    char *enc = malloc(3 * dlen + 1);
    if (!enc || daemon_field_encode(dec, dlen, enc, 3 * dlen + 1) < 0)
        abort();
    char *again = daemon_field_decode(enc, strlen(enc));
    if (!again || strcmp(again, dec) != 0)
        abort();
    free(again);
    free(enc);
    free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so ASan sees any read past the end. */
    char *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    memcpy(in, data, size);
    tcp_line(in, size);
    unix_msg(in, size);
    record(in, size);
    field(in, size);
    free(in);
    return 0;
}

#ifdef FUZZ_REPLAY_MAIN
int main(int argc, char **argv)
{
    static uint8_t buf[1 << 20];
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
        printf("replayed %s\n", argv[i]);
    }
    return 0;
}
#endif

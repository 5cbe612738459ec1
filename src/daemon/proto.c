/* daemon/proto: parsing and formatting the daemon's two wire protocols.
 * Everything here reads untrusted bytes: lengths are explicit (a NUL inside
 * a line is an error, not an end), nothing is read past len, and every
 * failure leaves the output released. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "util/err.h"

bool daemon_bucket_valid(const char *bucket, size_t len)
{
    if (len < 3 || len > 63)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = bucket[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && c != '.' && c != '-')
            return false;
        if ((i == 0 || i == len - 1) && !alnum)
            return false;
    }
    return true;
}

static bool has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return true;
    return false;
}

bool daemon_key_valid(const char *key, size_t len)
{
    return len > 0 && len <= DAEMON_KEY_MAX && !has_control(key, len);
}

bool daemon_path_valid(const char *path, size_t len)
{
    return len > 0 && len <= DAEMON_PATH_MAX && path[0] == '/' && !memchr(path, '\0', len) &&
           !has_control(path, len);
}

/* A printable excerpt of untrusted bytes for an error message. */
static void excerpt(const char *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c < 0x20 || c >= 0x7f)
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
        if (i == 60) {
            o += (size_t)snprintf(out + o, cap - o, "...");
            break;
        }
    }
    out[o < cap ? o : cap - 1] = '\0';
}

int daemon_dest_parse(const char *dest, size_t len, char bucket[64], char **key, haul_error *err)
{
    char shown[300];
    excerpt(dest, len, shown, sizeof shown);
    *key = NULL;
    const char *s1 = memchr(dest, '/', len);
    const char *s2 = s1 ? memchr(s1 + 1, '/', len - (size_t)(s1 + 1 - dest)) : NULL;
    if (!s2)
        return err_set(err, HAUL_EUSAGE, "destination '%s' is not ALIAS/BUCKET/KEY", shown);
    size_t blen = (size_t)(s2 - s1 - 1), klen = len - (size_t)(s2 + 1 - dest);
    if (!daemon_bucket_valid(s1 + 1, blen))
        return err_set(err, HAUL_EUSAGE, "destination '%s': not a valid bucket name", shown);
    if (!daemon_key_valid(s2 + 1, klen))
        return err_set(err, HAUL_EUSAGE,
                       "destination '%s': the key must be 1 to 1024 bytes without control characters",
                       shown);
    memcpy(bucket, s1 + 1, blen);
    bucket[blen] = '\0';
    if (!(*key = strndup(s2 + 1, klen)))
        return err_set(err, HAUL_ENOMEM, "out of memory");
    return 0;
}

void daemon_line_release(struct daemon_line *l)
{
    free(l->path);
    free(l->key);
    l->path = l->key = NULL;
}

int daemon_line_parse(const char *line, size_t len, struct daemon_line *out, haul_error *err)
{
    memset(out, 0, sizeof *out);
    if (memchr(line, '\0', len))
        return err_set(err, HAUL_EUSAGE, "request holds a NUL byte");
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    const char *sp = NULL;
    for (size_t i = len; i > 0; i--)
        if (line[i - 1] == ' ') {
            sp = line + i - 1;
            break;
        }
    char shown[300];
    excerpt(line, len, shown, sizeof shown);
    if (!sp || sp == line)
        return err_set(err, HAUL_EUSAGE, "request '%s' is not 'FILENAME ALIAS/BUCKET/KEY'", shown);
    size_t plen = (size_t)(sp - line);
    if (line[0] != '/')
        return err_set(err, HAUL_EUSAGE, "request '%s': FILENAME must be an absolute path", shown);
    if (plen > DAEMON_PATH_MAX)
        return err_set(err, HAUL_EUSAGE, "request '%s': FILENAME is too long", shown);
    if (has_control(line, plen))
        return err_set(err, HAUL_EUSAGE, "request '%s': control character in FILENAME", shown);
    int rc = daemon_dest_parse(sp + 1, len - plen - 1, out->bucket, &out->key, err);
    if (rc < 0)
        return rc;
    if (!(out->path = strndup(line, plen))) {
        daemon_line_release(out);
        return err_set(err, HAUL_ENOMEM, "out of memory");
    }
    return 0;
}

int daemon_field_encode(const char *in, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c <= 0x20 || c == '%' || c == 0x7f) {
            if (o + 3 >= cap)
                return -1;
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            if (o + 1 >= cap)
                return -1;
            out[o++] = (char)c;
        }
    }
    if (o >= cap)
        return -1;
    out[o] = '\0';
    return (int)o;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *daemon_field_decode(const char *in, size_t len)
{
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '\0' || c == ' ' || c == '\n')
            goto bad;
        if (c == '%') {
            if (len - i < 3)
                goto bad;
            int h = hex_value(in[i + 1]), l = hex_value(in[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0))
                goto bad;
            c = (char)(h * 16 + l);
            i += 2;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

void daemon_msg_release(struct daemon_msg *m)
{
    free(m->key);
    free(m->path);
    m->key = m->path = NULL;
}

/* Splits line into at most max space-separated fields. */
static int fields_split(const char *line, size_t len, const char **f, size_t *flen, int max)
{
    int n = 0;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && line[j] != ' ')
            j++;
        if (j == i || n == max)
            return -1; /* empty field (two spaces) or too many */
        f[n] = line + i;
        flen[n++] = j - i;
        i = j + 1;
        if (j < len && i == len)
            return -1; /* trailing space */
    }
    return n;
}

static bool field_is(const char *f, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(f, word, len) == 0;
}

int daemon_msg_parse(const char *line, size_t len, struct daemon_msg *out, haul_error *err)
{
    memset(out, 0, sizeof *out);
    if (memchr(line, '\0', len))
        return err_set(err, HAUL_EUSAGE, "request holds a NUL byte");
    const char *f[6];
    size_t fl[6];
    int n = fields_split(line, len, f, fl, 6);
    if (n < 2 || !field_is(f[0], fl[0], "HAUL/1"))
        return err_set(err, HAUL_EUSAGE, "not a haul/1 request (haul send and the daemon differ in version?)");
    if (field_is(f[1], fl[1], "PAUSE") && n == 2) {
        out->verb = DAEMON_PAUSE;
        return 0;
    }
    if (field_is(f[1], fl[1], "RESUME") && n == 2) {
        out->verb = DAEMON_RESUME;
        return 0;
    }
    if (field_is(f[1], fl[1], "STATUS") && n == 3) {
        out->verb = DAEMON_STATUS;
        int v = 0;
        for (size_t i = 0; i < fl[2]; i++) {
            if (f[2][i] < '0' || f[2][i] > '9' || i > 2)
                return err_set(err, HAUL_EUSAGE, "STATUS: bad count");
            v = v * 10 + (f[2][i] - '0');
        }
        out->last = v > 100 ? 100 : v;
        return 0;
    }
    if (!field_is(f[1], fl[1], "SEND") || n != 6)
        return err_set(err, HAUL_EUSAGE, "unknown request");
    out->verb = DAEMON_SEND;
    if (field_is(f[2], fl[2], "WAIT"))
        out->wait = true;
    else if (!field_is(f[2], fl[2], "NOWAIT"))
        return err_set(err, HAUL_EUSAGE, "SEND: expected WAIT or NOWAIT");
    if (!daemon_bucket_valid(f[3], fl[3]))
        return err_set(err, HAUL_EUSAGE, "SEND: not a valid bucket name");
    memcpy(out->bucket, f[3], fl[3]);
    out->bucket[fl[3]] = '\0';
    out->key = daemon_field_decode(f[4], fl[4]);
    out->path = daemon_field_decode(f[5], fl[5]);
    const char *why = NULL;
    if (!out->key || !daemon_key_valid(out->key, strlen(out->key)))
        why = "SEND: the key must be 1 to 1024 bytes without control characters";
    else if (!out->path || out->path[0] != '/' || strlen(out->path) > DAEMON_PATH_MAX)
        why = "SEND: the path must be absolute";
    else if (!daemon_path_valid(out->path, strlen(out->path)))
        why = "SEND: control character in the path"; /* it goes into failed.log: no forged lines */
    if (why) {
        daemon_msg_release(out);
        return err_set(err, HAUL_EUSAGE, "%s", why);
    }
    return 0;
}

int daemon_msg_format(const struct daemon_msg *m, char *out, size_t cap)
{
    int n;
    switch (m->verb) {
    case DAEMON_PAUSE: n = snprintf(out, cap, "HAUL/1 PAUSE\n"); break;
    case DAEMON_RESUME: n = snprintf(out, cap, "HAUL/1 RESUME\n"); break;
    case DAEMON_STATUS: n = snprintf(out, cap, "HAUL/1 STATUS %d\n", m->last); break;
    case DAEMON_SEND: {
        char key[3 * DAEMON_KEY_MAX + 1], path[3 * DAEMON_PATH_MAX + 1];
        if (daemon_field_encode(m->key, strlen(m->key), key, sizeof key) < 0 ||
            daemon_field_encode(m->path, strlen(m->path), path, sizeof path) < 0)
            return -1;
        n = snprintf(out, cap, "HAUL/1 SEND %s %s %s %s\n", m->wait ? "WAIT" : "NOWAIT", m->bucket,
                     key, path);
        break;
    }
    default: return -1;
    }
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

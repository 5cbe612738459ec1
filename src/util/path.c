/* util/path: small filesystem path helpers (see path.h). */
#include "util/path.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "util/hash.h"
#include "util/strbuf.h"

int path_mkdirs(const char *path, mode_t mode)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, mode) < 0 && errno != EEXIST ? -1 : 0;
}

int path_state_file(const char *state_dir, const char *subdir, const char *const *parts, size_t n,
                    size_t hex_bytes, const char *suffix, char *out, size_t cap)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", state_dir, subdir);
    if (path_mkdirs(dir, 0700) < 0)
        return -1;
    struct strbuf id = STRBUF_INIT;
    for (size_t i = 0; i < n; i++)
        strbuf_add(&id, parts[i], strlen(parts[i]) + 1);
    if (id.failed) {
        strbuf_release(&id);
        errno = ENOMEM;
        return -1;
    }
    uint8_t digest[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];
    hash_sha256(strbuf_str(&id), id.len, digest);
    strbuf_release(&id);
    hash_hex(digest, sizeof digest, hex);
    if (2 * hex_bytes < SHA256_HEX_LEN)
        hex[2 * hex_bytes] = '\0';
    if (snprintf(out, cap, "%s/%s%s", dir, hex, suffix) >= (int)cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* libFuzzer target for meta/keys and meta/posix: what restore trusts from a bucket.
 * One input is read three ways:
 *   1. as an object key under a prefix: meta_path_from_key must refuse it or give a
 *      safe path whose key (meta_key_from_path) is the input again;
 *   2. as a file path: a key made from it must decode back to it;
 *   3. as user metadata ("name=value" lines): meta_stat_decode must refuse it or
 *      give values that encode and decode to themselves.
 * Layout: byte 0 = flags (bit 0: a directory), byte 1 = prefix length (mod 16),
 * the prefix (cut at a NUL), then the rest.  Build and run: tests/fuzz/README.md.
 * With -DFUZZ_REPLAY_MAIN it is a plain program that replays the files named on
 * its command line, and writes its built-in seeds and dictionary with
 * --write-seeds DIR and --write-dict FILE. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meta/meta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A failure must come with its message and a success without one. */
static void check_error(const haul_error *err, int rc, int code)
{
    if (!memchr(err->msg, '\0', sizeof err->msg))
        abort();
    if (rc == 0 ? err->code != HAUL_OK : (rc != -code || err->code != code || !err->msg[0]))
        abort();
}

static void check_key(const char *prefix, const char *key, size_t len, bool is_dir)
{
    char path[META_PATH_MAX];
    haul_error err = {0};
    int rc = meta_path_from_key(key, len, prefix, is_dir, path, &err);
    check_error(&err, rc, HAUL_EPROTO);
    if (!memchr(path, '\0', sizeof path))
        abort();
    if (rc < 0) {
        if (path[0])
            abort(); /* no path from a refused key */
        return;
    }
    size_t n = strlen(path);
    if (strcmp(path, ".") == 0) {
        if (!is_dir || len != strlen(prefix))
            abort();
        return;
    }
    if (meta_path_check(path, n))
        abort(); /* an accepted key gave an unsafe path */

    /* Canonical: the path's key is the input (plus the '/' an old s3fs
     * directory key lacks). */
    char again[META_KEY_MAX + 1];
    size_t again_len;
    err = (haul_error){0};
    rc = meta_key_from_path(prefix, path, n, is_dir, again, &again_len, &err);
    check_error(&err, rc, HAUL_EUSAGE);
    if (rc < 0) {
        /* Only what decoding does not check: S3's key length, the prefix's UTF-8. */
        if (!strstr(err.msg, "over S3's 1024 bytes") && !strstr(err.msg, "is not valid UTF-8"))
            abort();
        return;
    }
    bool same = again_len == len && memcmp(again, key, len) == 0;
    bool plus_slash = is_dir && again_len == len + 1 && memcmp(again, key, len) == 0 &&
                      again[len] == '/';
    if (!same && !plus_slash)
        abort();
}

static void check_path(const char *prefix, const char *path, size_t n, bool is_dir)
{
    char key[META_KEY_MAX + 1];
    size_t key_len = 0;
    haul_error err = {0};
    int rc = meta_key_from_path(prefix, path, n, is_dir, key, &key_len, &err);
    check_error(&err, rc, HAUL_EUSAGE);
    if (rc < 0)
        return;
    if (key_len != strlen(key) || key_len > META_KEY_MAX)
        abort();
    char back[META_PATH_MAX];
    err = (haul_error){0};
    rc = meta_path_from_key(key, key_len, prefix, is_dir, back, &err);
    check_error(&err, rc, HAUL_EPROTO);
    bool root = n == 0 || (n == 1 && path[0] == '.');
    if (rc < 0 || (root ? strcmp(back, ".") != 0 : strlen(back) != n || memcmp(back, path, n)))
        abort(); /* every key made must restore to its path */
}

static void check_times(const struct timespec *ts)
{
    if (ts->tv_nsec < 0 || ts->tv_nsec > 999999999)
        abort();
}

/* Decoded values encode, and decode again to the same. */
static void check_reencode(const struct meta_posix *p, bool dir_key)
{
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_mode = p->mode;
    st.st_uid = p->uid;
    st.st_gid = p->gid;
    st.st_mtim = p->mtime;
    st.st_atim = p->atime;
    st.st_rdev = p->rdev;
    struct meta_extra extra = {
        .symlink = S_ISLNK(p->mode) ? (p->has & META_HAS_SYMLINK ? p->symlink : "x") : NULL,
        .hardlink = p->has & META_HAS_HARDLINK ? p->hardlink : NULL,
        .tree_sha256 = p->has & META_HAS_TREE ? p->tree_sha256 : NULL,
        .atime = true,
    };
    struct meta_encoded enc;
    haul_error err = {0};
    int rc = meta_stat_encode(&st, &extra, &enc, &err);
    check_error(&err, rc, HAUL_EUSAGE);
    if (rc < 0) {
        if (!extra.hardlink || !strstr(err.msg, "bytes of metadata"))
            abort(); /* only a hard-link path re-escaped past 2 KiB may fail */
        return;
    }
    static struct meta_posix q; /* 8 KiB: off the stack */
    err = (haul_error){0};
    rc = meta_stat_decode(enc.items, enc.n, dir_key, &q, &err);
    check_error(&err, rc, HAUL_EPROTO);
    if (rc < 0 || q.mode != p->mode || q.uid != p->uid || q.gid != p->gid ||
        q.mtime.tv_sec != p->mtime.tv_sec || q.mtime.tv_nsec != p->mtime.tv_nsec ||
        q.atime.tv_sec != p->atime.tv_sec || q.atime.tv_nsec != p->atime.tv_nsec ||
        ((p->has & META_HAS_RDEV) && q.rdev != p->rdev) ||
        strcmp(q.hardlink, p->hardlink) != 0 || strcmp(q.tree_sha256, p->tree_sha256) != 0 ||
        ((q.has & META_HAS_SYMLINK) && strcmp(q.symlink, extra.symlink) != 0))
        abort();
}

/* The input as "name=value" lines, at most 16. */
static void check_meta(const char *body, size_t len, bool dir_key)
{
    char *copy = malloc(len + 1);
    struct s3_meta items[16];
    size_t n = 0;
    if (!copy)
        return;
    memcpy(copy, body, len);
    copy[len] = '\0';
    for (char *p = copy, *end; p && n < 16; p = end ? end + 1 : NULL) {
        end = strchr(p, '\n');
        if (end)
            *end = '\0';
        char *eq = strchr(p, '=');
        if (!eq)
            continue;
        *eq = '\0';
        items[n++] = (struct s3_meta){.name = p, .value = eq + 1};
    }
    static struct meta_posix p;
    haul_error err = {0};
    int rc = meta_stat_decode(items, n, dir_key, &p, &err);
    check_error(&err, rc, HAUL_EPROTO);
    if (rc == 0) {
        mode_t type = p.mode & S_IFMT;
        if (type != S_IFREG && type != S_IFDIR && type != S_IFLNK && type != S_IFIFO &&
            type != S_IFSOCK && type != S_IFCHR && type != S_IFBLK)
            abort();
        check_times(&p.mtime);
        check_times(&p.atime);
        if (p.uid == (uid_t)-1 || p.gid == (gid_t)-1)
            abort();
        if (!memchr(p.symlink, '\0', sizeof p.symlink) ||
            !memchr(p.hardlink, '\0', sizeof p.hardlink))
            abort();
        if ((p.has & META_HAS_HARDLINK) && meta_path_check(p.hardlink, strlen(p.hardlink)))
            abort(); /* a hard link may only point inside the restore root */
        check_reencode(&p, dir_key);
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    bool is_dir = data[0] & 1;
    size_t plen = data[1] % 16;
    if (plen > size - 2)
        plen = size - 2;
    char prefix[16];
    memcpy(prefix, data + 2, plen);
    prefix[plen] = '\0'; /* a C string: cut at a NUL */
    const char *rest = (const char *)data + 2 + plen;
    size_t n = size - 2 - plen;

    /* The key is the prefix (as the input spells it) then the rest. */
    char *key = malloc(plen + n + 1);
    if (!key)
        return 0;
    memcpy(key, data + 2, plen);
    memcpy(key + plen, rest, n);
    check_key(prefix, key, plen + n, is_dir);
    free(key);
    check_path(prefix, rest, n, is_dir);
    check_meta(rest, n, is_dir);
    return 0;
}

#ifdef FUZZ_REPLAY_MAIN
/* Built-in seeds (flags, prefix length, prefix, rest) and dictionary, so the
 * target needs nothing but this file. */
#define SEED(flags, prefix, rest) {flags "\x07" prefix rest, sizeof(flags prefix rest) - 1 + 1}
static const struct {
    const char *data;
    size_t len;
} seeds[] = {
    SEED("\x00", "backup/", "a/b.txt"),
    SEED("\x00", "backup/", "../etc/passwd"),
    SEED("\x01", "backup/", "dir/sub/"),
    SEED("\x01", "backup/", ""),
    SEED("\x00", "backup/", "caf\xee\x83\xa9/\xee\x83\xbf\xee\x82\x80"),
    SEED("\x00", "backup/", "\xee\x83\xae\xee\x82\x80\xee\x82\x81 literal U+E001"),
    SEED("\x00", "backup/", "a\xee\x80\xaf" "b/\xee\x80\x80/\xee\x80\xae\xee\x80\xae"),
    SEED("\x00", "backup/", "\xe6\x97\xa5\xe6\x9c\xac/\xf0\x9f\x98\x80/\xc0\xae/\xed\xa0\x80"),
    SEED("\x00", "backup/", "mode=33188\nuid=1000\ngid=100\nmtime=1700000000.000000042\n"
                            "atime=1700000000"),
    SEED("\x00", "backup/", "mode=41471\nuid=0\ngid=0\nmtime=-1.5\nhaul-symlink=..%2Fa%20b"),
    SEED("\x00", "backup/", "mode=33152\nhaul-hardlink=data/first%FF\nhaul-sparse=1\n"
                            "haul-sha256-tree=9bc1b2a288b26af7257a36277ae3816a7d4f16e89c1e7e77d0a5c48bad62b360"),
    SEED("\x00", "backup/", "mode=100664\nuid=500\ngid=500\natime=2023-11-14T22:13:20.25Z\n"
                            "mtime=1354040105.5"),
    SEED("\x00", "backup/", "mode=8592\nhaul-rdev=136:3\nmtime=0"),
    SEED("\x01", "backup/", "mode=16877\nuid=4294967294\ngid=007\nmtime=9223372036854775807.999999999"),
};
#undef SEED

static const char dict[] =
    "# libFuzzer dictionary for tests/fuzz/fuzz_keys.c: path syntax, escapes, metadata.\n"
    "\"/\"\n\"//\"\n\".\"\n\"..\"\n\"/../\"\n\"./\"\n\"\\x00\"\n\"\\x0a\"\n"
    "\"\\xee\\x80\\x80\"\n\"\\xee\\x80\\xaf\"\n\"\\xee\\x80\\xae\"\n\"\\xee\\x83\\xbf\"\n"
    "\"\\xee\\x82\\x80\"\n\"\\xee\\x83\\xae\"\n\"\\xc3\\xa9\"\n\"\\xed\\xa0\\x80\"\n"
    "\"\\xf0\\x9f\\x98\\x80\"\n\"\\xf4\\x90\\x80\\x80\"\n\"\\xc0\\xae\"\n\"\\xff\"\n"
    "\"mode=\"\n\"uid=\"\n\"gid=\"\n\"mtime=\"\n\"atime=\"\n\"haul-symlink=\"\n"
    "\"haul-hardlink=\"\n\"haul-sparse=\"\n\"haul-rdev=\"\n\"haul-sha256-tree=\"\n"
    "\"33188\"\n\"16877\"\n\"41471\"\n\"0100644\"\n\"4294967294\"\n\"-1.5\"\n"
    "\".000000001\"\n\"T00:00:00Z\"\n\"2023-11-14T22:13:20.25+07:00\"\n\"%2F\"\n\"%00\"\n";

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

/* Replays each file named on the command line once; exits non-zero if one
 * cannot be read (a crash is the sanitizers' or abort()'s to report). */
static int replay(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    do {
        if (len == cap) {
            char *bigger = realloc(buf, cap = cap ? cap * 2 : 65536);
            if (!bigger) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = bigger;
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
    } while (got > 0);
    int failed = ferror(f);
    fclose(f);
    if (!failed)
        LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
    free(buf);
    return failed ? -1 : 0;
}

int main(int argc, char **argv)
{
    int status = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--write-seeds") == 0 && i + 1 < argc) {
            char name[4096];
            i++;
            for (size_t k = 0; k < sizeof seeds / sizeof seeds[0]; k++) {
                snprintf(name, sizeof name, "%s/seed%02zu", argv[i], k);
                if (write_file(name, seeds[k].data, seeds[k].len) < 0)
                    status = 1;
            }
        } else if (strcmp(argv[i], "--write-dict") == 0 && i + 1 < argc) {
            if (write_file(argv[++i], dict, sizeof dict - 1) < 0)
                status = 1;
        } else if (replay(argv[i]) < 0) {
            status = 1;
        } else {
            printf("replayed %s\n", argv[i]);
        }
    }
    if (argc == 1) { /* no arguments: the built-in seeds */
        for (size_t k = 0; k < sizeof seeds / sizeof seeds[0]; k++)
            LLVMFuzzerTestOneInput((const uint8_t *)seeds[k].data, seeds[k].len);
        printf("replayed %zu built-in seeds\n", sizeof seeds / sizeof seeds[0]);
    }
    return status;
}
#endif

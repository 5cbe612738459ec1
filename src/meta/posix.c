/* meta/posix: struct stat <-> x-amz-meta-* in s3fs-fuse's convention, with
 * what rclone writes also read (the convention and its evidence: meta.h). */
#include "meta/meta.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/sysmacros.h>

#include "meta/internal.h"
#include "util/err.h"

_Static_assert(sizeof(time_t) == 8, "haul needs a 64-bit time_t");

#define NS_PER_S 1000000000L
#define ID_MAX 4294967294u   /* (uid_t)-1 means "unchanged" to chown */
#define MODE_MAX 0177777u    /* type bits and the 12 permission bits */
#define SPARSE_SLACK 4096    /* holes smaller than a block are not worth a hint */
#define DEV_MAJOR_MAX 4095u  /* Linux: 12-bit major, 20-bit minor */
#define DEV_MINOR_MAX 1048575u

/* The names this file reads and writes, without "x-amz-meta-". */
enum field { F_MODE, F_UID, F_GID, F_MTIME, F_ATIME, F_HARDLINK, F_SYMLINK, F_SPARSE, F_RDEV,
             F_TREE, F_COUNT };
static const char *const field_names[F_COUNT] = {
    "mode", "uid", "gid", "mtime", "atime", "haul-hardlink", "haul-symlink", "haul-sparse",
    "haul-rdev", "haul-sha256-tree",
};

static bool valid_type(mode_t type)
{
    switch (type) {
    case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFIFO: case S_IFSOCK: case S_IFCHR:
    case S_IFBLK:
        return true;
    }
    return false;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_tree_hex(const char *s)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (!is_digit(s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
            return false;
    return i == SHA256_HEX_LEN;
}

/* ---- encoding ------------------------------------------------------------- */

/* "<sec>[.<9 digits>]", as a decimal number of seconds (negative ones too). */
static void time_format(struct timespec ts, char out[32])
{
    int64_t sec = ts.tv_sec;
    if (ts.tv_nsec == 0)
        snprintf(out, 32, "%" PRId64, sec);
    else if (sec >= 0)
        snprintf(out, 32, "%" PRId64 ".%09ld", sec, ts.tv_nsec);
    else /* {-2, 500000000} is -1.5 */
        snprintf(out, 32, "-%" PRIu64 ".%09ld", (uint64_t)(-(sec + 1)), NS_PER_S - ts.tv_nsec);
}

/* Percent-encodes in: RFC 3986 unreserved characters and '/' as they are,
 * other bytes as %XX.  Returns the length, or SIZE_MAX if over cap - 1. */
static size_t pct_encode(const char *in, char *out, size_t cap)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *s = (const unsigned char *)in; *s; s++) {
        bool keep = (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || is_digit((char)*s) ||
                    *s == '-' || *s == '_' || *s == '.' || *s == '~' || *s == '/';
        if (cap - o < (keep ? 1u : 3u) + 1)
            return SIZE_MAX;
        if (keep) {
            out[o++] = (char)*s;
        } else {
            out[o++] = '%';
            out[o++] = digits[*s >> 4];
            out[o++] = digits[*s & 0x0f];
        }
    }
    out[o] = '\0';
    return o;
}

struct builder {
    struct meta_encoded *out;
    size_t pos;     /* bytes of out->buf used */
    size_t counted; /* names + values, as S3 counts them */
};

/* Adds name=value when it fits S3's limit; false when it does not. */
static bool add(struct builder *b, const char *name, const char *value)
{
    size_t nlen = strlen(name), vlen = strlen(value);
    if (b->out->n == META_ITEMS_MAX || b->counted + nlen + vlen > META_S3_LIMIT)
        return false;
    struct s3_meta *item = &b->out->items[b->out->n++];
    item->name = memcpy(b->out->buf + b->pos, name, nlen + 1);
    b->pos += nlen + 1;
    item->value = memcpy(b->out->buf + b->pos, value, vlen + 1);
    b->pos += vlen + 1;
    b->counted += nlen + vlen;
    return true;
}

static int check_stat(const struct stat *st, const struct meta_extra *extra, haul_error *err)
{
    char q[META_QUOTE_SIZE];
    mode_t type = st->st_mode & S_IFMT;

    if (!valid_type(type) || (st->st_mode & ~(mode_t)MODE_MAX))
        return err_set(err, HAUL_EUSAGE, "cannot encode mode 0%o: unknown file type or bits",
                       (unsigned)st->st_mode);
    if (st->st_uid > ID_MAX || st->st_gid > ID_MAX)
        return err_set(err, HAUL_EUSAGE, "cannot encode uid %u or gid %u: (uid_t)-1 is no owner",
                       (unsigned)st->st_uid, (unsigned)st->st_gid);
    if (st->st_mtim.tv_nsec < 0 || st->st_mtim.tv_nsec >= NS_PER_S ||
        (extra->atime && (st->st_atim.tv_nsec < 0 || st->st_atim.tv_nsec >= NS_PER_S)))
        return err_set(err, HAUL_EUSAGE, "cannot encode a time with tv_nsec outside 0..999999999");
    if (S_ISLNK(st->st_mode) && !extra->symlink)
        return err_set(err, HAUL_EUSAGE, "cannot encode a symlink without its target");
    if (extra->symlink && !S_ISLNK(st->st_mode))
        return err_set(err, HAUL_EUSAGE, "cannot encode symlink target %s for mode 0%o",
                       meta_quote(extra->symlink, strlen(extra->symlink), q),
                       (unsigned)st->st_mode);
    if (extra->symlink && (extra->symlink[0] == '\0' || strlen(extra->symlink) >= META_PATH_MAX))
        return err_set(err, HAUL_EUSAGE, "cannot encode symlink target %s: empty or over 4095 bytes",
                       meta_quote(extra->symlink, strlen(extra->symlink), q));
    if (extra->hardlink) {
        size_t n = strlen(extra->hardlink);
        const char *why = S_ISDIR(st->st_mode) ? "a directory cannot be a hard link"
                                                : meta_path_check(extra->hardlink, n);
        if (why)
            return err_set(err, HAUL_EUSAGE, "cannot encode hard link to %s: %s",
                           meta_quote(extra->hardlink, n, q), why);
    }
    if (extra->tree_sha256 && !is_tree_hex(extra->tree_sha256))
        return err_set(err, HAUL_EUSAGE, "cannot encode tree hash %s: not 64 lower-case hex digits",
                       meta_quote(extra->tree_sha256, strlen(extra->tree_sha256), q));
    return 0;
}

int meta_stat_encode(const struct stat *st, const struct meta_extra *extra,
                     struct meta_encoded *out, haul_error *err)
{
    static const struct meta_extra none = {0};
    struct builder b = {.out = out};
    char num[32];
    char link[3 * META_PATH_MAX];
    int rc;

    out->n = 0;
    if (!extra)
        extra = &none;
    if ((rc = check_stat(st, extra, err)) < 0)
        return rc;

    /* The fixed fields take at most ~200 of the 2048 bytes: they always fit. */
    snprintf(num, sizeof num, "%u", (unsigned)st->st_mode);
    add(&b, field_names[F_MODE], num);
    snprintf(num, sizeof num, "%u", (unsigned)st->st_uid);
    add(&b, field_names[F_UID], num);
    snprintf(num, sizeof num, "%u", (unsigned)st->st_gid);
    add(&b, field_names[F_GID], num);
    time_format(st->st_mtim, num);
    add(&b, field_names[F_MTIME], num);
    if (extra->atime) {
        time_format(st->st_atim, num);
        add(&b, field_names[F_ATIME], num);
    }
    if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
        snprintf(num, sizeof num, "%u:%u", major(st->st_rdev), minor(st->st_rdev));
        add(&b, field_names[F_RDEV], num);
    }
    if (S_ISREG(st->st_mode) && st->st_size > 0 && st->st_blocks >= 0 &&
        (uint64_t)st->st_blocks * 512 + SPARSE_SLACK <= (uint64_t)st->st_size)
        add(&b, field_names[F_SPARSE], "1");
    if (extra->tree_sha256)
        add(&b, field_names[F_TREE], extra->tree_sha256);
    if (extra->hardlink) {
        size_t n = pct_encode(extra->hardlink, link, sizeof link);
        if (!add(&b, field_names[F_HARDLINK], link)) {
            char q[META_QUOTE_SIZE];
            out->n = 0;
            return err_set(err, HAUL_EUSAGE,
                           "cannot encode hard link to %s: %zu bytes encoded, over S3's "
                           "%d bytes of metadata",
                           meta_quote(extra->hardlink, strlen(extra->hardlink), q), n,
                           META_S3_LIMIT);
        }
    }
    /* Left out when too long: the object's body is the target anyway. */
    if (extra->symlink && pct_encode(extra->symlink, link, sizeof link) != SIZE_MAX)
        add(&b, field_names[F_SYMLINK], link);
    return 0;
}

/* ---- decoding --------------------------------------------------------------- */

static int bad(haul_error *err, enum field f, const char *value, const char *why)
{
    char q[META_QUOTE_SIZE];
    return err_set(err, HAUL_EPROTO, "bad metadata x-amz-meta-%s %s: %s", field_names[f],
                   meta_quote(value, strlen(value), q), why);
}

/* Digits only (no sign, no leading zero), then the value up to max; range_why
 * is the complaint when it is over. */
static const char *parse_decimal(const char *s, uint64_t max, const char *range_why,
                                 uint64_t *out)
{
    size_t i = 0;
    if (s[0] == '-' && is_digit(s[1]))
        return "negative";
    for (; s[i]; i++)
        if (!is_digit(s[i]))
            return "not a decimal number";
    if (i == 0)
        return "not a decimal number";
    if (s[0] == '0' && i > 1)
        return "leading zero";
    uint64_t v = 0;
    for (i = 0; s[i]; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return range_why;
        v = v * 10 + d;
    }
    *out = v;
    return NULL;
}

/* mode: decimal (s3fs), or octal with a leading 0 (s3fs reads base 0) or when
 * rclone wrote it. */
static const char *parse_mode(const char *s, bool octal, mode_t *mode)
{
    uint64_t v = 0;
    if (s[0] == '-' && is_digit(s[1]))
        return "negative";
    if (s[0] == '0' && s[1] != '\0')
        octal = true;
    if (octal) {
        size_t i = 0;
        for (; s[i]; i++) {
            if (s[i] < '0' || s[i] > '7')
                return "not an octal number";
            v = v * 8 + (unsigned)(s[i] - '0');
            if (v > MODE_MAX)
                return "over 0177777";
        }
        if (i == 0)
            return "not an octal number";
    } else {
        const char *why = parse_decimal(s, MODE_MAX, "over 0177777", &v);
        if (why)
            return why;
    }
    *mode = (mode_t)v;
    if ((v & S_IFMT) && !valid_type((mode_t)(v & S_IFMT)))
        return "bad file type bits";
    return NULL;
}

/* "<sec>[.<1..9 digits>]", a decimal number of seconds (s3fs, rclone, haul). */
static const char *parse_seconds(const char *s, struct timespec *ts)
{
    bool neg = s[0] == '-';
    const char *p = s + neg;
    uint64_t whole = 0;
    long frac = 0;
    const uint64_t limit = (uint64_t)INT64_MAX + 1; /* 2^63 */

    if (!is_digit(*p))
        return "not a number of seconds";
    if (p[0] == '0' && is_digit(p[1]))
        return "leading zero";
    for (; is_digit(*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (whole > (limit - d) / 10)
            return "out of range";
        whole = whole * 10 + d;
    }
    if (*p == '.') {
        int digits = 0;
        for (p++; is_digit(*p); p++, digits++) {
            if (digits == 9)
                return "more than 9 decimals";
            frac = frac * 10 + (*p - '0');
        }
        if (digits == 0)
            return "not a number of seconds";
        for (; digits < 9; digits++)
            frac *= 10;
    }
    if (*p != '\0')
        return "not a number of seconds";
    if (!neg) {
        if (whole > (uint64_t)INT64_MAX)
            return "out of range";
        *ts = (struct timespec){.tv_sec = (time_t)whole, .tv_nsec = frac};
    } else if (frac == 0) {
        *ts = (struct timespec){.tv_sec = whole == limit ? INT64_MIN : -(int64_t)whole};
    } else {
        if (whole > (uint64_t)INT64_MAX)
            return "out of range";
        *ts = (struct timespec){.tv_sec = -(int64_t)whole - 1, .tv_nsec = NS_PER_S - frac};
    }
    return NULL;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* n digits at s as a number, or -1. */
static int digits_at(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* RFC 3339 ("2006-01-02T15:04:05.999999999Z07:00"), as rclone writes atime. */
static const char *parse_rfc3339(const char *s, struct timespec *ts)
{
    static const char *const bad_form = "not RFC 3339";
    static const unsigned char mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y = digits_at(s, 4), mo = -1, d = -1, h = -1, mi = -1, sec = -1;

    if (y >= 0 && s[4] == '-' && (mo = digits_at(s + 5, 2)) >= 0 && s[7] == '-' &&
        (d = digits_at(s + 8, 2)) >= 0 && (s[10] == 'T' || s[10] == 't') &&
        (h = digits_at(s + 11, 2)) >= 0 && s[13] == ':' && (mi = digits_at(s + 14, 2)) >= 0 &&
        s[16] == ':')
        sec = digits_at(s + 17, 2);
    if (sec < 0)
        return bad_form;
    const char *p = s + 19;
    long frac = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; is_digit(*p); p++, digits++) {
            if (digits == 9)
                return "more than 9 decimals";
            frac = frac * 10 + (*p - '0');
        }
        if (digits == 0)
            return bad_form;
        for (; digits < 9; digits++)
            frac *= 10;
    }
    int offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh = digits_at(p + 1, 2), om = oh >= 0 && p[3] == ':' ? digits_at(p + 4, 2) : -1;
        if (om < 0 || oh > 23 || om > 59)
            return bad_form;
        offset = (*p == '-' ? -1 : 1) * (oh * 3600 + om * 60);
        p += 6;
    } else {
        return bad_form;
    }
    if (*p != '\0')
        return bad_form;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 ||
        mi > 59 || sec > 59)
        return "no such date or time";
    int64_t t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec;
    *ts = (struct timespec){.tv_sec = t - offset, .tv_nsec = frac};
    return NULL;
}

static bool looks_rfc3339(const char *s)
{
    return strchr(s, 'T') || strchr(s, 't');
}

static const char *parse_time(const char *s, struct timespec *ts)
{
    return looks_rfc3339(s) ? parse_rfc3339(s, ts) : parse_seconds(s, ts);
}

/* Percent-decodes a haul-symlink/haul-hardlink value into out. */
static const char *parse_link(const char *s, char out[META_PATH_MAX])
{
    size_t o = 0;
    for (size_t i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o == META_PATH_MAX - 1)
            return "over 4095 bytes";
        if (c == '%') {
            int v = 0;
            for (int k = 1; k <= 2; k++) {
                char h = s[i + k];
                int x = is_digit(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                                              : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
                if (x < 0)
                    return "bad %-escape";
                v = v * 16 + x;
            }
            if (v == 0)
                return "escaped NUL byte";
            out[o++] = (char)v;
            i += 2;
        } else if (c > 0x20 && c < 0x7f) {
            out[o++] = (char)c;
        } else {
            return "byte that should be %-escaped";
        }
    }
    if (o == 0)
        return "empty";
    out[o] = '\0';
    return NULL;
}

static const char *parse_rdev(const char *s, dev_t *rdev)
{
    const char *colon = strchr(s, ':');
    char major_s[16];
    uint64_t ma, mi;
    if (!colon || (size_t)(colon - s) >= sizeof major_s)
        return "not <major>:<minor>";
    memcpy(major_s, s, (size_t)(colon - s));
    major_s[colon - s] = '\0';
    if (parse_decimal(major_s, DEV_MAJOR_MAX, "", &ma) ||
        parse_decimal(colon + 1, DEV_MINOR_MAX, "", &mi))
        return "not <major>:<minor> within 4095:1048575";
    *rdev = makedev((unsigned)ma, (unsigned)mi);
    return NULL;
}

/* Checks that the fields agree with the file type. */
static int check_type(const struct meta_posix *out, const char *const *v, haul_error *err)
{
    mode_t type = out->mode & S_IFMT;
    if (v[F_SYMLINK] && type != S_IFLNK)
        return bad(err, F_SYMLINK, v[F_SYMLINK], "the mode is not a symlink's");
    if (v[F_HARDLINK] && type == S_IFDIR)
        return bad(err, F_HARDLINK, v[F_HARDLINK], "a directory cannot be a hard link");
    if (v[F_RDEV] && type != S_IFCHR && type != S_IFBLK)
        return bad(err, F_RDEV, v[F_RDEV], "the mode is not a device's");
    if (out->sparse && type != S_IFREG)
        return bad(err, F_SPARSE, v[F_SPARSE], "the mode is not a regular file's");
    return 0;
}

int meta_stat_decode(const struct s3_meta *meta, size_t n, bool dir_key, struct meta_posix *out,
                     haul_error *err)
{
    const char *v[F_COUNT] = {0};
    const char *why;
    uint64_t num;

    memset(out, 0, sizeof *out);
    out->mode = dir_key ? (S_IFDIR | 0755) : (S_IFREG | 0644);
    for (size_t i = 0; i < n; i++) {
        for (int f = 0; f < F_COUNT; f++) {
            if (strcasecmp(meta[i].name, field_names[f]) != 0)
                continue;
            if (v[f])
                return bad(err, (enum field)f, meta[i].value, "duplicate name");
            v[f] = meta[i].value;
        }
    }

    if (v[F_MTIME]) {
        if ((why = parse_time(v[F_MTIME], &out->mtime)))
            return bad(err, F_MTIME, v[F_MTIME], why);
        out->has |= META_HAS_MTIME;
    }
    if (v[F_ATIME]) {
        if ((why = parse_time(v[F_ATIME], &out->atime)))
            return bad(err, F_ATIME, v[F_ATIME], why);
        out->has |= META_HAS_ATIME;
    }
    /* rclone --metadata writes atime in RFC 3339 and mode in octal. */
    bool rclone = (out->has & META_HAS_ATIME) && looks_rfc3339(v[F_ATIME]);
    if (v[F_MODE]) {
        mode_t mode = 0;
        if ((why = parse_mode(v[F_MODE], rclone, &mode)))
            return bad(err, F_MODE, v[F_MODE], why);
        if (!(mode & S_IFMT)) /* as s3fs: the type from the key */
            mode |= dir_key ? S_IFDIR : S_IFREG;
        out->mode = mode;
        out->has |= META_HAS_MODE;
    }
    if (v[F_UID]) {
        if ((why = parse_decimal(v[F_UID], ID_MAX, "out of range (0..4294967294)", &num)))
            return bad(err, F_UID, v[F_UID], why);
        out->uid = (uid_t)num;
        out->has |= META_HAS_UID;
    }
    if (v[F_GID]) {
        if ((why = parse_decimal(v[F_GID], ID_MAX, "out of range (0..4294967294)", &num)))
            return bad(err, F_GID, v[F_GID], why);
        out->gid = (gid_t)num;
        out->has |= META_HAS_GID;
    }
    if (v[F_SYMLINK]) {
        if ((why = parse_link(v[F_SYMLINK], out->symlink)))
            return bad(err, F_SYMLINK, v[F_SYMLINK], why);
        out->has |= META_HAS_SYMLINK;
    }
    if (v[F_HARDLINK]) {
        if ((why = parse_link(v[F_HARDLINK], out->hardlink)) ||
            (why = meta_path_check(out->hardlink, strlen(out->hardlink)))) {
            out->hardlink[0] = '\0';
            return bad(err, F_HARDLINK, v[F_HARDLINK], why);
        }
        out->has |= META_HAS_HARDLINK;
    }
    if (v[F_SPARSE]) {
        if (strcmp(v[F_SPARSE], "0") != 0 && strcmp(v[F_SPARSE], "1") != 0)
            return bad(err, F_SPARSE, v[F_SPARSE], "not 0 or 1");
        out->sparse = v[F_SPARSE][0] == '1';
    }
    if (v[F_RDEV]) {
        if ((why = parse_rdev(v[F_RDEV], &out->rdev)))
            return bad(err, F_RDEV, v[F_RDEV], why);
        out->has |= META_HAS_RDEV;
    }
    if (v[F_TREE]) {
        if (!is_tree_hex(v[F_TREE]))
            return bad(err, F_TREE, v[F_TREE], "not 64 lower-case hex digits");
        memcpy(out->tree_sha256, v[F_TREE], SHA256_HEX_LEN + 1);
        out->has |= META_HAS_TREE;
    }
    return check_type(out, v, err);
}

/* job/dbackup: distributed backup; the coordinator, the worker's side and
 * the payloads between them (see dbackup.h). */
#include "job/dbackup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dist/tracker.h"
#include "dist/waiter.h"
#include "index/index.h"
#include "job/dclone.h"
#include "fs/fs.h"
#include "meta/meta.h"
#include "util/err.h"
#include "util/fdio.h"
#include "util/hash.h"
#include "util/kv.h"
#include "util/log.h"
#include "util/wire.h"
#include "walk/filter.h"
#include "xfer/xfer.h"

/* ---- job description ---- */

static const char spec_head[] = "haul-dbackup 1\n";

bool dbackup_spec_is(const void *buf, size_t len)
{
    return len >= sizeof spec_head - 1 && memcmp(buf, spec_head, sizeof spec_head - 1) == 0;
}

#define F(kind, m, ...) KV_FIELD_##kind(struct dbackup_spec, m, __VA_ARGS__)
static const struct kv_field spec_fields[] = {
    F(STRN, run, 16, 16, true), /* 16 hex digits */
    F(STR, src, true),
    F(STR, endpoint, true),
    F(STR, bucket, true),
    F(STR, prefix, false),
    F(NUM, small_threshold, 0, 64u << 20, false),
    F(STR, storage_class_large, false),
    F(NUM, one_filesystem, 0, 0, false),
    F(NUM, part_size, 0, 0, false),
    F(NUM, part_workers, 0, 1024, false),
    F(NUM, mtime_newer, 0, INT64_MAX, false),
    F(NUM, mtime_older, 0, INT64_MAX, false),
    F(LIST, excludes, "exclude", nexcludes),
    F(LIST, includes, "include", nincludes),
    DIST_SRCID_FIELDS,
};
#undef F

int dbackup_spec_encode(const struct dbackup_spec *s, struct strbuf *out, haul_error *err)
{
    return kv_encode(out, spec_head, spec_fields, sizeof spec_fields / sizeof *spec_fields, s, err);
}

/* Empty values (prefix, storage class) decode as "". */
int dbackup_spec_decode(const void *buf, size_t len, struct dbackup_spec *out, haul_error *err)
{
    int rc = kv_decode(buf, len, spec_head, spec_fields, sizeof spec_fields / sizeof *spec_fields, out, sizeof *out,
                       err);
    if (rc == 0 && out->src[0] != '/')
        rc = err_set(err, HAUL_EPROTO, "job description: 'src' is not an absolute path");
    return rc;
}

/* ---- payloads ----
 * listing (worker -> coordinator, a scan's child):
 *   u8 1, str run, u32 n, n x {str path ("" = the root), u32 mode, u64 size,
 *   u64 mtime_ns, u32 uid, u32 gid, u32 nlink, u64 ino, u64 dev, u64 blocks}
 *   dev is 0 for the root's filesystem (st_dev may differ between nodes
 *   mounting the same filesystem, inode numbers do not).
 * records (worker -> coordinator, an upload unit's result):
 *   u8 2, str run, u32 n, n x {u8 ok, ok: str key, u64 size, u64 mtime_ns,
 *   u32 mode, u32 uid, u32 gid, str etag, str storage_class, str hard-link
 *   target ("" = holds its bytes), u32 nlink; not ok: str path, str message}
 * upload (coordinator -> worker, a FILES unit's payload):
 *   u8 3, then per path of the unit: str hard-link target ("" = none) */

enum { PAYLOAD_LISTING = 1, PAYLOAD_RECORDS = 2, PAYLOAD_UPLOAD = 3, PAYLOAD_PARTS = 4, PAYLOAD_PARTS_DONE = 5 };

/* A RANGE unit's payload (coordinator -> worker), after the type byte:
 *   u64 spread id, str upload id, str key, u64 part size, u32 first part
 *   number, u64 size, u64 mtime_ns, u64 ino (the file as listed), u32 n,
 *   n x str: the ETag the server holds for each of the range's parts from
 *   an interrupted run ("" = none; n = 0: none at all)
 * and its result's (worker -> coordinator), after the type byte:
 *   str run, u32 1, u64 spread id, u8 ok, ok: u32 first part, u32 n, n x
 *   str etag; not ok: str message */
struct parts_ticket {
    uint64_t spread;
    char upload_id[512];
    char key[META_KEY_MAX + 1];
    uint64_t part_size, size, ino;
    uint32_t first;
    int64_t mtime_ns;
};

static void parts_ticket_put(struct strbuf *sb, const struct parts_ticket *t)
{
    wire_put_u8(sb, PAYLOAD_PARTS);
    wire_put_u64(sb, t->spread);
    wire_put_str(sb, t->upload_id, strlen(t->upload_id));
    wire_put_str(sb, t->key, strlen(t->key));
    wire_put_u64(sb, t->part_size);
    wire_put_u32(sb, t->first);
    wire_put_u64(sb, t->size);
    wire_put_u64(sb, (uint64_t)t->mtime_ns);
    wire_put_u64(sb, t->ino);
}

static bool parts_ticket_get(struct wire_reader *r, struct parts_ticket *t)
{
    if (wire_get_u8(r) != PAYLOAD_PARTS)
        wire_fail(r, "not a parts ticket");
    t->spread = wire_get_u64(r);
    wire_get_cstr(r, t->upload_id, sizeof t->upload_id);
    wire_get_cstr(r, t->key, sizeof t->key);
    t->part_size = wire_get_u64(r);
    t->first = wire_get_u32(r);
    t->size = wire_get_u64(r);
    t->mtime_ns = (int64_t)wire_get_u64(r);
    t->ino = wire_get_u64(r);
    if (!r->why && (t->part_size < (5u << 20) || t->part_size > (5ull << 30) || t->first < 1 || t->first > 10000 ||
                    !t->upload_id[0] || !t->key[0]))
        wire_fail(r, "bad parts ticket");
    return !r->why;
}

struct listing_entry {
    const unsigned char *path;
    size_t path_len;
    uint32_t mode, uid, gid, nlink;
    uint64_t size, ino, dev, blocks;
    int64_t mtime_ns;
};

static void listing_head(struct strbuf *sb, const char *run)
{
    strbuf_reset(sb);
    wire_put_u8(sb, PAYLOAD_LISTING);
    wire_put_str(sb, run, strlen(run));
    wire_put_u32(sb, 0); /* the count, patched when sent */
}

static void listing_add(struct strbuf *sb, const char *path, const struct stat *st, dev_t root_dev)
{
    wire_put_str(sb, path, strlen(path));
    wire_put_u32(sb, st->st_mode);
    wire_put_u64(sb, S_ISREG(st->st_mode) ? (uint64_t)st->st_size : 0);
    wire_put_u64(sb, (uint64_t)((int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec));
    wire_put_u32(sb, st->st_uid);
    wire_put_u32(sb, st->st_gid);
    wire_put_u32(sb, (uint32_t)st->st_nlink);
    wire_put_u64(sb, st->st_ino);
    wire_put_u64(sb, st->st_dev == root_dev ? 0 : (uint64_t)st->st_dev);
    wire_put_u64(sb, (uint64_t)st->st_blocks);
}

static void listing_get(struct wire_reader *r, struct listing_entry *e)
{
    e->path_len = wire_get_str(r, &e->path);
    e->mode = wire_get_u32(r);
    e->size = wire_get_u64(r);
    e->mtime_ns = (int64_t)wire_get_u64(r);
    e->uid = wire_get_u32(r);
    e->gid = wire_get_u32(r);
    e->nlink = wire_get_u32(r);
    e->ino = wire_get_u64(r);
    e->dev = wire_get_u64(r);
    e->blocks = wire_get_u64(r);
}

/* Reads a payload's type and run; false when it is not of this run. */
static bool payload_open(struct wire_reader *r, unsigned type, const char *run, uint32_t *n)
{
    unsigned t = wire_get_u8(r);
    const unsigned char *rs;
    size_t rn = wire_get_str(r, &rs);
    *n = wire_get_u32(r);
    return !r->why && t == type && rn == strlen(run) && memcmp(rs, run, rn) == 0;
}

static void stat_from_entry(const struct listing_entry *e, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_mode = e->mode;
    st->st_size = (off_t)e->size;
    st->st_mtim.tv_sec = e->mtime_ns / 1000000000LL;
    st->st_mtim.tv_nsec = e->mtime_ns % 1000000000LL;
    st->st_uid = e->uid;
    st->st_gid = e->gid;
    st->st_nlink = e->nlink;
    st->st_ino = e->ino;
    st->st_dev = e->dev;
    st->st_blocks = (blkcnt_t)e->blocks; /* the object's metadata says whether it is sparse */
}

/* ---- the worker's side ---- */

struct dbackup_engine {
    struct dbackup_spec spec;
    struct s3_client *c;
    struct walk_filter *filter;
    struct backup_opts bo;
    int root;
    dev_t root_dev;
    char *buf; /* a small file's body */
    struct strbuf sb; /* messages being encoded */
};

static int filter_build(const struct dbackup_spec *s, struct walk_filter **out, haul_error *err)
{
    struct walk_filter *f = walk_filter_new();
    if (!f)
        return err_set(err, HAUL_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < s->nexcludes; i++)
        rc = walk_filter_exclude_add(f, s->excludes[i], err);
    for (size_t i = 0; rc == 0 && i < s->nincludes; i++)
        rc = walk_filter_include_add(f, s->includes[i], err);
    if (s->mtime_newer)
        walk_filter_mtime_newer_set(f, (time_t)s->mtime_newer);
    if (s->mtime_older)
        walk_filter_mtime_older_set(f, (time_t)s->mtime_older);
    if (rc < 0) {
        walk_filter_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

struct dbackup_engine *dbackup_engine_new(const struct dbackup_spec *spec, struct s3_client *c,
                                          const atomic_bool *cancel, haul_error *err)
{
    if (!c) {
        err_set(err, HAUL_EUSAGE, "this worker has no S3 configuration (start it with the AWS settings of the job)");
        return NULL;
    }
    if (strcmp(s3_client_config(c)->endpoint, spec->endpoint) != 0) {
        err_set(err, HAUL_EUSAGE, "the job stores to %s, this worker is configured for %s", spec->endpoint,
                s3_client_config(c)->endpoint);
        return NULL;
    }
    struct dbackup_engine *e = calloc(1, sizeof *e);
    if (!e) {
        err_set(err, HAUL_ENOMEM, "out of memory");
        return NULL;
    }
    e->spec = *spec;
    e->c = c;
    e->root = -1;
    e->sb = (struct strbuf)STRBUF_INIT;
    struct stat st;
    int rc = filter_build(spec, &e->filter, err);
    if (rc == 0 && (e->root = open(spec->src, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        rc = err_errno(err, errno, "%s", spec->src);
    if (rc == 0 && fstat(e->root, &st) < 0)
        rc = err_errno(err, errno, "%s", spec->src);
    struct srcid mine;
    if (rc == 0 && srcid_probe(e->root, &mine, err) < 0)
        err_prefix(err, "%s: ", spec->src), rc = -HAUL_EIO;
    if (rc == 0)
        rc = srcid_match(spec->src, &mine, &spec->src_id, err);
    if (rc == 0 && !(e->buf = malloc(spec->small_threshold ? spec->small_threshold : 1)))
        rc = err_set(err, HAUL_ENOMEM, "out of memory");
    if (rc < 0) {
        dbackup_engine_free(e);
        return NULL;
    }
    e->root_dev = st.st_dev;
    struct backup_opts *o = &e->bo;
    o->bucket = e->spec.bucket;
    o->prefix = e->spec.prefix;
    o->small_threshold = spec->small_threshold;
    o->storage_class_large = e->spec.storage_class_large[0] ? e->spec.storage_class_large : NULL;
    o->xfer.part_size = spec->part_size;
    o->xfer.workers = (int)spec->part_workers;
    o->cancel = cancel;
    return e;
}

void dbackup_engine_free(struct dbackup_engine *e)
{
    if (!e)
        return;
    if (e->root >= 0)
        close(e->root);
    walk_filter_free(e->filter);
    free(e->buf);
    strbuf_release(&e->sb);
    free(e);
}

/* A scan in progress: its children (subdirectory units, listings). */
struct scan {
    struct dbackup_engine *e;
    struct dist_queue *q;
    const struct dist_unit *u;
    uint64_t base; /* children's ids: dist_unit_child_id(base, i) */
    const char *worker;
    uint32_t children;
    struct strbuf list;
    uint32_t listed;
    uint64_t *counters;
};

static int scan_publish_dir(struct scan *s, const char *path, haul_error *err)
{
    struct dist_unit child = {.id = dist_unit_child_id(s->base, s->children), .pass = DIST_PASS_BACKUP,
                              .kind = DIST_UNIT_SCAN_DIR, .npaths = 1, .paths = &path};
    memcpy(child.job_id, s->u->job_id, sizeof child.job_id);
    strbuf_reset(&s->e->sb);
    int rc = dist_unit_encode(&child, &s->e->sb, err);
    if (rc == 0)
        rc = dist_publish(s->q, s->e->sb.s, s->e->sb.len, err);
    if (rc == 0)
        s->children++;
    return rc;
}

/* Writes the entry count into the listing's header. */
static void scan_count_patch(struct scan *s)
{
    if (s->list.failed)
        return;
    unsigned char *count = (unsigned char *)s->list.s + 1 + 2 + strlen(s->u->job_id);
    for (int i = 0; i < 4; i++)
        count[i] = (unsigned char)(s->listed >> (24 - 8 * i));
}

/* A full listing of a big directory: a result of its own, naming a child
 * id of the scan. */
static int scan_flush(struct scan *s, haul_error *err)
{
    if (!s->listed)
        return 0;
    scan_count_patch(s);
    struct dist_result_unit ru = {.unit_id = dist_unit_child_id(s->base, s->children)};
    struct dist_result r = {.nunits = 1, .units = &ru, .payload = s->list.s, .payload_len = s->list.len};
    snprintf(r.worker, sizeof r.worker, "%s", s->worker);
    strbuf_reset(&s->e->sb);
    int rc = s->list.failed ? err_set(err, HAUL_ENOMEM, "out of memory") : dist_result_encode(&r, &s->e->sb, err);
    if (rc == 0)
        rc = dist_publish_to(s->q, DIST_RESULTS, s->e->sb.s, s->e->sb.len, err);
    if (rc == 0) {
        s->children++;
        s->listed = 0;
        listing_head(&s->list, s->u->job_id);
    }
    return rc;
}

static int scan_list(struct scan *s, const char *path, const struct stat *st, haul_error *err)
{
    listing_add(&s->list, path, st, s->e->root_dev);
    if (++s->listed < DBACKUP_LIST_MAX && s->list.len < DBACKUP_LIST_BYTES)
        return 0;
    return scan_flush(s, err);
}

static void scan_error(struct scan *s, const char *path, int errnum)
{
    log_error("haul worker: %s/%s: %s", s->e->spec.src, path, strerror(errnum));
    s->counters[DBACKUP_C_ERRORS]++;
}

/* One entry of the directory being scanned. */
static int scan_entry(struct scan *s, int dirfd, const char *name, const char *path, haul_error *err)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno != ENOENT) /* gone since readdir: nothing to store */
            scan_error(s, path, errno);
        return 0;
    }
    if (!walk_filter_match(s->e->filter, path, &st))
        return 0;
    const char *why;
    if (dist_path_check(path, strlen(path), &why) < 0) {
        log_error("haul worker: %s/%s: cannot be sent in a unit (%s): not stored", s->e->spec.src, path, why);
        s->counters[DBACKUP_C_ERRORS]++;
        return 0;
    }
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
        log_info("%s: skipped (not a file, directory or symlink)", path);
        s->counters[DBACKUP_C_OTHERS]++;
        return 0;
    }
    int rc = scan_list(s, path, &st, err);
    bool descend = S_ISDIR(st.st_mode) && !(s->e->spec.one_filesystem && st.st_dev != s->e->root_dev);
    if (rc == 0 && descend)
        rc = scan_publish_dir(s, path, err);
    return rc;
}

static int scan_do(struct scan *s, haul_error *err)
{
    const char *dir = s->u->paths[0];
    bool is_root = strcmp(dir, ".") == 0;
    haul_error oerr = {0};
    int fd = is_root ? dup(s->e->root) : fs_open_beneath(s->e->root, dir, O_RDONLY | O_DIRECTORY, &oerr);
    if (fd < 0) {
        if (errno != ENOENT) /* gone since its parent was read */
            scan_error(s, dir, errno);
        return 0;
    }
    int rc = 0;
    struct stat st;
    if (is_root && fstat(fd, &st) == 0)
        rc = scan_list(s, "", &st, err);
    DIR *d = fdopendir(fd);
    if (!d) {
        scan_error(s, dir, errno);
        close(fd);
        return rc;
    }
    char path[PATH_MAX + NAME_MAX + 2];
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                scan_error(s, dir, errno);
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (snprintf(path, sizeof path, "%s%s%s", is_root ? "" : dir, is_root ? "" : "/", de->d_name) >=
            (int)sizeof path) {
            scan_error(s, de->d_name, ENAMETOOLONG);
            continue;
        }
        if (rc == 0)
            rc = scan_entry(s, dirfd(d), de->d_name, path, err);
        if (rc < 0)
            break;
    }
    closedir(d);
    return rc; /* the last listing goes in the scan's own result */
}

/* The item for path, as it is now; 0 with *out NULL when it is gone. */
static int item_make(struct dbackup_engine *e, const char *path, const char *link, struct backup_item **out,
                     haul_error *err)
{
    *out = NULL;
    const char *name;
    int pfd = fs_parent_open(e->root, path, &name, err);
    if (pfd < 0)
        return errno == ENOENT ? 0 : -HAUL_EIO;
    struct backup_item *it = calloc(1, sizeof *it);
    int rc = it ? 0 : err_set(err, HAUL_ENOMEM, "out of memory");
    if (it)
        it->fd = -1;
    if (rc == 0 && fstatat(pfd, name, &it->st, AT_SYMLINK_NOFOLLOW) < 0)
        rc = errno == ENOENT ? 1 : err_errno(err, errno, "stat");
    if (rc == 0 && S_ISREG(it->st.st_mode) && link[0]) {
        it->kind = BACKUP_HARDLINK;
        rc = meta_path_check(link, strlen(link)) ? err_set(err, HAUL_EPROTO, "hard-link target '%.200s' is not a path inside the tree", link)
             : (it->link = strdup(link)) ? 0 : err_set(err, HAUL_ENOMEM, "out of memory");
    } else if (rc == 0 && S_ISREG(it->st.st_mode)) {
        it->kind = BACKUP_FILE;
        /* Never blocks on a FIFO swapped in, and only the file just stat'ed. */
        it->fd = fs_source_open(pfd, name, &it->st, err);
        if (it->fd < 0)
            rc = errno == ENOENT ? 1 : -HAUL_EIO;
        else if (fstat(it->fd, &it->st) < 0)
            rc = err_errno(err, errno, "stat");
    } else if (rc == 0 && S_ISDIR(it->st.st_mode)) {
        it->kind = BACKUP_DIR;
    } else if (rc == 0 && S_ISLNK(it->st.st_mode)) {
        it->kind = BACKUP_SYMLINK;
        char target[PATH_MAX];
        ssize_t n = readlinkat(pfd, name, target, sizeof target - 1);
        if (n < 0)
            rc = errno == ENOENT ? 1 : err_errno(err, errno, "readlink");
        else if (target[n] = '\0', !(it->link = strdup(target)))
            rc = err_set(err, HAUL_ENOMEM, "out of memory");
    } else if (rc == 0) {
        rc = 1; /* became something else: not stored, as a scan would skip it */
    }
    fs_parent_close(e->root, pfd);
    char key[META_KEY_MAX + 1];
    if (rc == 0)
        rc = meta_key_from_path(e->spec.prefix, path, strlen(path), it->kind == BACKUP_DIR, key, NULL, err);
    if (rc == 0 && (!(it->key = strdup(key)) || !(it->path = strdup(path))))
        rc = err_set(err, HAUL_ENOMEM, "out of memory");
    if (rc != 0) {
        backup_item_free(it);
        return rc > 0 ? 0 : rc;
    }
    *out = it;
    return 0;
}

static void record_ok(struct strbuf *sb, const struct index_entry *r)
{
    wire_put_u8(sb, 1);
    wire_put_str(sb, r->key, strlen(r->key));
    wire_put_u64(sb, r->size);
    wire_put_u64(sb, (uint64_t)r->mtime_ns);
    wire_put_u32(sb, r->mode);
    wire_put_u32(sb, r->uid);
    wire_put_u32(sb, r->gid);
    wire_put_str(sb, r->etag, strlen(r->etag));
    wire_put_str(sb, r->storage_class, strlen(r->storage_class));
    wire_put_str(sb, r->link, strlen(r->link));
    wire_put_u32(sb, r->nlink);
}

static void record_failed(struct strbuf *sb, const char *path, const char *msg)
{
    wire_put_u8(sb, 0);
    wire_put_str(sb, path, strlen(path));
    wire_put_str(sb, msg, strnlen(msg, 1024));
}

/* Uploads the items of a FILES unit, one record each into payload. */
static int upload_do(struct dbackup_engine *e, struct dist_queue *q, const struct dist_unit *u,
                     uint64_t *counters, struct strbuf *payload, haul_error *err)
{
    struct wire_reader links = {u->payload, u->payload_len, NULL};
    /* The whole payload is checked first: a bad one uploads nothing. */
    struct wire_reader check = links;
    bool good = wire_get_u8(&check) == PAYLOAD_UPLOAD;
    for (size_t i = 0; good && i < u->npaths; i++) {
        const unsigned char *lp;
        good = wire_get_str(&check, &lp) < 4097 && !check.why;
    }
    if (!good || check.why || check.left)
        return err_set(err, HAUL_EPROTO, "upload unit without a valid payload");
    wire_get_u8(&links);
    wire_put_u8(payload, PAYLOAD_RECORDS);
    wire_put_str(payload, u->job_id, strlen(u->job_id));
    size_t count_at = payload->len;
    wire_put_u32(payload, 0);
    uint32_t n = 0;
    for (size_t i = 0; i < u->npaths; i++) {
        char link[4097];
        if (!wire_get_cstr(&links, link, sizeof link))
            return err_set(err, HAUL_EPROTO, "upload unit: bad payload");
        haul_error ierr = {0};
        struct backup_item *it = NULL;
        struct index_entry rec;
        uint64_t bytes = 0;
        int rc = item_make(e, u->paths[i], link, &it, &ierr);
        if (rc == 0 && it)
            rc = backup_item_upload(e->c, &e->bo, it, e->buf, &rec, &bytes, &ierr);
        if (rc == 0 && it) {
            record_ok(payload, &rec);
            counters[DBACKUP_C_UPLOADED]++;
            counters[DBACKUP_C_BYTES] += bytes;
            counters[DBACKUP_C_HARDLINKS] += it->kind == BACKUP_HARDLINK;
            n++;
        } else if (rc < 0) {
            if (!strstr(ierr.msg, u->paths[i]))
                err_prefix(&ierr, "%s: ", u->paths[i]);
            log_error("haul worker: %s", ierr.msg);
            record_failed(payload, u->paths[i], ierr.msg);
            counters[DBACKUP_C_ERRORS]++;
            n++;
        }
        backup_item_free(it);
        if (e->bo.cancel && atomic_load(e->bo.cancel))
            break;
        if (q && (rc = dist_poll(q, err)) < 0) /* keeps the connection alive through big files */
            return rc;
    }
    unsigned char *cp = (unsigned char *)payload->s + count_at;
    for (int k = 0; k < 4; k++)
        cp[k] = (unsigned char)(n >> (24 - 8 * k));
    return payload->failed ? err_set(err, HAUL_ENOMEM, "out of memory") : 0;
}

static bool same_as_ticket(const struct stat *st, const struct parts_ticket *t)
{
    return (uint64_t)st->st_size == t->size && (uint64_t)st->st_ino == t->ino &&
           (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec == t->mtime_ns;
}

static int pread_whole(int fd, char *buf, size_t len, uint64_t off, haul_error *err)
{
    ssize_t n = fd_pread_full(fd, buf, len, off);
    if (n < 0)
        return err_errno(err, errno, "read");
    return (size_t)n < len ? err_set(err, HAUL_EIO, "shrank while being read") : 0;
}

/* True when buf holds the very bytes of the part the server has as etag
 * (a plain MD5 ETag; other forms, such as SSE-KMS ones, never match). */
static bool part_already_there(const char *etag, const char *buf, size_t len)
{
    if (!etag[0])
        return false;
    uint8_t md5[MD5_LEN];
    char hex[2 * MD5_LEN + 1];
    hash_md5(buf, len, md5);
    hash_hex(md5, MD5_LEN, hex);
    return strcasecmp(etag, hex) == 0;
}

/* Uploads the parts of a RANGE unit, but for those an interrupted run
 * left on the server (listed in known, read as the loop goes): their
 * ETags, or why not, in payload. */
static int parts_upload(struct dbackup_engine *e, const struct dist_unit *u, const struct parts_ticket *t,
                        struct wire_reader *known, uint64_t *counters, struct strbuf *etags, uint32_t *n,
                        haul_error *err)
{
    const char *name;
    int pfd = fs_parent_open(e->root, u->paths[0], &name, err);
    if (pfd < 0)
        return -HAUL_EIO;
    int fd = fs_source_open(pfd, name, NULL, err); /* a regular file, never blocking */
    fs_parent_close(e->root, pfd);
    if (fd < 0)
        return -HAUL_EIO;
    struct stat st;
    char *buf = NULL;
    int rc = 0;
    if (fstat(fd, &st) < 0 || !same_as_ticket(&st, t))
        rc = err_set(err, HAUL_EIO, "changed since it was listed; the next run takes it");
    else if (!(buf = malloc(t->part_size)))
        rc = err_set(err, HAUL_ENOMEM, "out of memory");
    uint32_t nknown = wire_get_u32(known);
    for (uint64_t off = u->offset; rc == 0 && off < u->offset + u->length; off += t->part_size) {
        size_t len = (size_t)(t->size - off < t->part_size ? t->size - off : t->part_size);
        char etag[128] = "";
        if (*n < nknown)
            wire_get_cstr(known, etag, sizeof etag);
        if (known->why)
            rc = err_set(err, HAUL_EPROTO, "RANGE unit: bad list of parts (%s)", known->why);
        if (rc == 0)
            rc = pread_whole(fd, buf, len, off, err);
        bool there = rc == 0 && part_already_there(etag, buf, len);
        if (rc == 0 && !there)
            rc = s3_mpu_part_put(e->c, e->spec.bucket, t->key, t->upload_id, (int)(t->first + *n), buf, len, NULL,
                                 etag, sizeof etag, err);
        if (rc == 0) {
            wire_put_str(etags, etag, strlen(etag));
            counters[DBACKUP_C_BYTES] += there ? 0 : len;
            (*n)++;
        }
        if (rc == 0 && e->bo.cancel && atomic_load(e->bo.cancel))
            rc = err_set(err, HAUL_ECANCELED, "canceled");
    }
    if (rc == 0 && (fstat(fd, &st) < 0 || !same_as_ticket(&st, t)))
        rc = err_set(err, HAUL_EIO, "changed while being read; the next run takes it");
    free(buf);
    close(fd);
    return rc;
}

static int parts_do(struct dbackup_engine *e, const struct dist_unit *u, uint64_t *counters, struct strbuf *payload,
                    haul_error *err)
{
    struct wire_reader r = {u->payload, u->payload_len, NULL};
    struct parts_ticket t;
    size_t plen = strlen(e->spec.prefix);
    if (!parts_ticket_get(&r, &t) || u->offset % t.part_size || u->offset / t.part_size + 1 != t.first ||
        u->offset + u->length > t.size || strncmp(t.key, e->spec.prefix, plen) != 0)
        return err_set(err, HAUL_EPROTO, "RANGE unit without a valid parts ticket");
    wire_put_u8(payload, PAYLOAD_PARTS_DONE);
    wire_put_str(payload, u->job_id, strlen(u->job_id));
    wire_put_u32(payload, 1);
    wire_put_u64(payload, t.spread);
    struct strbuf etags = STRBUF_INIT;
    uint32_t n = 0;
    haul_error perr = {0};
    int rc = parts_upload(e, u, &t, &r, counters, &etags, &n, &perr);
    if (rc == 0) {
        wire_put_u8(payload, 1);
        wire_put_u32(payload, t.first);
        wire_put_u32(payload, n);
        strbuf_add(payload, etags.s, etags.len);
    } else if (rc == -HAUL_ECANCELED) {
        strbuf_release(&etags);
        return err_set(err, HAUL_ECANCELED, "canceled");
    } else {
        err_prefix(&perr, "%s: ", u->paths[0]);
        log_error("haul worker: %s", perr.msg);
        wire_put_u8(payload, 0);
        wire_put_str(payload, perr.msg, strnlen(perr.msg, 1024));
    }
    strbuf_release(&etags);
    return payload->failed ? err_set(err, HAUL_ENOMEM, "out of memory") : 0;
}

int dbackup_unit_do(struct dbackup_engine *e, struct dist_queue *q, const struct dist_unit *u, uint64_t child_base,
                    const char *worker,
                    uint32_t *children, uint64_t counters[DBACKUP_COUNTERS], struct strbuf *payload,
                    haul_error *err)
{
    *children = 0;
    memset(counters, 0, DBACKUP_COUNTERS * sizeof *counters);
    strbuf_reset(payload);
    if (u->kind == DIST_UNIT_FILES)
        return upload_do(e, q, u, counters, payload, err);
    if (u->kind == DIST_UNIT_RANGE)
        return parts_do(e, u, counters, payload, err);
    if (u->kind != DIST_UNIT_SCAN_DIR || !q)
        return err_set(err, HAUL_EPROTO, "FINISH units are not part of a backup");
    struct scan s = {.e = e, .q = q, .u = u, .base = child_base ? child_base : u->id, .worker = worker,
                     .list = STRBUF_INIT, .counters = counters};
    listing_head(&s.list, u->job_id);
    int rc = scan_do(&s, err);
    if (rc == 0 && s.listed) { /* the last (often only) listing: in the scan's own result */
        scan_count_patch(&s);
        strbuf_add(payload, s.list.s, s.list.len);
        if (s.list.failed)
            rc = err_set(err, HAUL_ENOMEM, "out of memory");
    }
    strbuf_release(&s.list);
    *children = s.children;
    return rc;
}

/* ---- the coordinator ---- */

struct coord {
    struct s3_client *c;
    const struct dbackup_opts *o;
    const struct backup_opts *bo;
    struct backup_stats *stats;
    struct index *ix;
    struct index_entry *rec; /* a record being read (too big for the stack) */
    struct dist_queue *q;
    struct dist_tracker *t;
    const char *run;
    struct strbuf sb;
    /* the upload unit being filled */
    const char *paths[DBACKUP_BATCH_PATHS];
    char *owned[DBACKUP_BATCH_PATHS];
    struct strbuf links;
    size_t n;
    uint64_t bytes;
    struct spread *spreads; /* large files being uploaded in RANGE units */
    uint64_t spread_files, spread_units; /* for the log */
    uint64_t base;      /* upload unit ids: dist_unit_child_id(base, i) */
    unsigned unflushed; /* units published since the last dist_flush */
    uint64_t published; /* upload units so far */
    atomic_bool probed; /* the bucket was checked after the first failure */
};

/* A large file uploaded as parts by RANGE units on many workers. */
struct spread {
    uint64_t id;
    char *path;
    char key[META_KEY_MAX + 1];
    struct xfer_mpu mpu; /* recorded in the state dir: a rerun after a crash takes it up */
    struct stat st;
    uint64_t part_size;
    uint32_t nparts, units_left;
    char (*etags)[128]; /* per part, "" until reported */
    char error[512];    /* the first range's failure, "" while none */
    struct spread *next;
};

static void spread_free(struct spread *sp)
{
    free(sp->path);
    free(sp->etags);
    free(sp);
}

/* Aborts sp's upload; its record goes once the upload is surely gone (else a
 * rerun aborts or takes it up). */
static void spread_abort(struct coord *k, struct spread *sp)
{
    haul_error aerr = {0};
    if (s3_mpu_abort(k->c, k->bo->bucket, sp->key, sp->mpu.upload_id, &aerr) == 0 || aerr.code == HAUL_ENOTFOUND)
        xfer_mpu_forget(&sp->mpu);
    else
        log_warn("%s (upload id %s left behind; a rerun aborts or takes it up)", aerr.msg, sp->mpu.upload_id);
}

static void report(struct coord *k, const char *what, const char *key)
{
    if (k->bo->line)
        k->bo->line(what, key, k->bo->line_ctx);
}

/* Unless the client stopped (a bucket-level failure, said once by the run).
 * The workers' failures reach here as text: after the first, one request
 * tells whether the bucket itself is missing or refuses the credentials,
 * and then results_loop stops the run. */
static void entry_failed(struct coord *k, const char *msg)
{
    if (!atomic_exchange(&k->probed, true))
        s3_bucket_check(k->c, k->bo->bucket, k->bo->prefix, NULL);
    if (s3_client_failed(k->c, NULL))
        return;
    atomic_fetch_add(&k->stats->errors, 1);
    log_error("%s", msg);
    report(k, "error", msg);
}

/* A payload of this run that cannot be read: its entries or records are
 * lost for this run, so it counts as an error (and --delete is skipped). */
static void payload_bad(struct coord *k, const char *why)
{
    char msg[256];
    snprintf(msg, sizeof msg, "%s: a worker's result could not be read (%s); run again", dist_queue_url(k->q), why);
    entry_failed(k, msg);
}

static void counters_add(struct backup_stats *s, const uint64_t *c, size_t n)
{
    atomic_uint_fast64_t *to[DBACKUP_COUNTERS] = {&s->uploaded, &s->bytes_uploaded, &s->hardlinks, &s->errors,
                                                  &s->others};
    for (size_t i = 0; i < n && i < DBACKUP_COUNTERS; i++)
        atomic_fetch_add(to[i], c[i]);
}

/* Publishes a unit of the coordinator's own (an id it expects). */
static int coord_publish(struct coord *k, struct dist_unit *u, haul_error *err)
{
    u->id = dist_unit_child_id(k->base, k->published);
    snprintf(u->job_id, sizeof u->job_id, "%s", k->run);
    strbuf_reset(&k->sb);
    int rc = dist_unit_encode(u, &k->sb, err);
    if (rc == 0)
        rc = dist_publish(k->q, k->sb.s, k->sb.len, err);
    if (rc == 0)
        rc = dist_tracker_expect(k->t, u->id, err);
    if (rc == 0) {
        k->published++;
        k->unflushed++;
    }
    return rc;
}

static int batch_flush(struct coord *k, haul_error *err)
{
    if (!k->n)
        return 0;
    struct dist_unit u = {.pass = DIST_PASS_BACKUP, .kind = DIST_UNIT_FILES, .npaths = k->n, .paths = k->paths,
                          .payload = k->links.s, .payload_len = k->links.len};
    int rc = k->links.failed ? err_set(err, HAUL_ENOMEM, "out of memory") : coord_publish(k, &u, err);
    for (size_t i = 0; i < k->n; i++)
        free(k->owned[i]);
    k->n = 0;
    k->bytes = 0;
    strbuf_reset(&k->links);
    wire_put_u8(&k->links, PAYLOAD_UPLOAD);
    return rc;
}

static int batch_add(struct coord *k, const char *path, const char *link, uint64_t size, haul_error *err)
{
    bool large = size > k->bo->small_threshold;
    if (k->n && (large || k->bytes + size > DBACKUP_BATCH_BYTES)) {
        int rc = batch_flush(k, err);
        if (rc < 0)
            return rc;
    }
    if (!(k->owned[k->n] = strdup(path)))
        return err_set(err, HAUL_ENOMEM, "out of memory");
    k->paths[k->n] = k->owned[k->n];
    k->n++;
    wire_put_str(&k->links, link, strlen(link));
    k->bytes += size;
    return large || k->n == DBACKUP_BATCH_PATHS ? batch_flush(k, err) : 0;
}

static void count_entry(struct coord *k, const struct stat *st)
{
    if (S_ISREG(st->st_mode)) {
        atomic_fetch_add(&k->stats->files, 1);
        atomic_fetch_add(&k->stats->bytes_seen, (uint64_t)st->st_size);
    } else if (S_ISDIR(st->st_mode)) {
        atomic_fetch_add(&k->stats->dirs, 1);
    } else {
        atomic_fetch_add(&k->stats->symlinks, 1);
    }
}

/* The root's directory object: its stat came in the listing, no file is
 * read, so the coordinator stores it. */
static int root_store(struct coord *k, const char *key, const struct stat *st, haul_error *err)
{
    struct backup_item it = {.kind = BACKUP_DIR, .fd = -1, .st = *st, .key = (char *)key, .path = ""};
    struct index_entry rec;
    uint64_t bytes;
    char buf[1];
    struct backup_opts bo = *k->bo;
    bo.small_threshold = 0;
    int rc = backup_item_upload(k->c, &bo, &it, buf, &rec, &bytes, err);
    if (rc == 0)
        rc = index_put(k->ix, &rec, err);
    if (rc == 0) {
        atomic_fetch_add(&k->stats->uploaded, 1);
        report(k, "upload", key);
    }
    return rc;
}

/* A part an interrupted run left on the server (ListParts): its ETag goes
 * to the worker of its range, which compares it with the file's bytes. */
static int spread_part_found(int number, uint64_t size, const char *etag, void *ctx)
{
    struct spread *sp = ctx;
    uint64_t off = (uint64_t)(number - 1) * sp->part_size, whole = (uint64_t)sp->st.st_size;
    if (number >= 1 && (uint32_t)number <= sp->nparts && size == (whole - off < sp->part_size ? whole - off : sp->part_size))
        snprintf(sp->etags[number - 1], sizeof sp->etags[0], "%s", etag);
    return 0;
}

/* Opens the multipart upload of a large file (taking up the one a killed
 * coordinator recorded in the state dir) and publishes its RANGE units.
 * Failures to open it are the entry's (counted, reported). */
static int spread_start(struct coord *k, const char *path, const char *key, const struct stat *st, haul_error *err)
{
    uint64_t size = (uint64_t)st->st_size, part = 0;
    haul_error serr = {0};
    if (xfer_part_size_plan(size, k->bo->xfer.part_size ? k->bo->xfer.part_size : 8u << 20, &part, &serr) < 0) {
        err_prefix(&serr, "%s: ", path);
        entry_failed(k, serr.msg);
        return 0;
    }
    uint64_t per_unit = k->o->range_size / part ? k->o->range_size / part : 1;
    struct spread *sp = calloc(1, sizeof *sp);
    if (!sp || !(sp->path = strdup(path)))
        return free(sp), err_set(err, HAUL_ENOMEM, "out of memory");
    sp->nparts = (uint32_t)((size + part - 1) / part);
    sp->units_left = (uint32_t)((sp->nparts + per_unit - 1) / per_unit);
    sp->st = *st;
    sp->part_size = part;
    snprintf(sp->key, sizeof sp->key, "%s", key);
    if (!(sp->etags = calloc(sp->nparts, sizeof *sp->etags))) {
        spread_free(sp);
        return err_set(err, HAUL_ENOMEM, "out of memory");
    }
    /* The object's metadata as a local backup writes it, the part size too. */
    struct meta_encoded m;
    int rc = meta_stat_encode(st, NULL, &m, &serr);
    if (rc == 0) {
        struct s3_put_opts put = {.meta = m.items, .n_meta = m.n, .storage_class = k->bo->storage_class_large};
        /* The source id a local backup journals under: either kind of run takes up the other's upload. */
        rc = xfer_mpu_open(k->c, k->bo->state_dir, path, k->bo->bucket, key, &put, st, part, spread_part_found, sp,
                           &sp->mpu, &serr);
    }
    if (rc < 0) {
        err_prefix(&serr, "%s: ", path);
        entry_failed(k, serr.msg);
        spread_free(sp);
        return 0;
    }
    sp->id = dist_unit_child_id(k->base ^ 0x7370726561640000ULL, k->published);
    sp->next = k->spreads;
    k->spreads = sp;
    k->spread_files++;
    k->spread_units += sp->units_left;
    struct parts_ticket t = {.spread = sp->id, .part_size = part, .size = size, .ino = (uint64_t)st->st_ino,
                             .mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec};
    snprintf(t.upload_id, sizeof t.upload_id, "%s", sp->mpu.upload_id);
    snprintf(t.key, sizeof t.key, "%s", key);
    struct strbuf pl = STRBUF_INIT;
    for (uint32_t j = 0; rc == 0 && j < sp->units_left; j++) {
        uint64_t off = (uint64_t)j * per_unit * part, len = per_unit * part < size - off ? per_unit * part : size - off;
        t.first = (uint32_t)(off / part) + 1;
        strbuf_reset(&pl);
        parts_ticket_put(&pl, &t);
        uint32_t nparts = sp->mpu.resumed ? (uint32_t)((len + part - 1) / part) : 0;
        wire_put_u32(&pl, nparts);
        for (uint32_t i = 0; i < nparts; i++)
            wire_put_str(&pl, sp->etags[t.first - 1 + i], strlen(sp->etags[t.first - 1 + i]));
        const char *p = path;
        struct dist_unit u = {.pass = DIST_PASS_BACKUP, .kind = DIST_UNIT_RANGE, .offset = off, .length = len,
                              .npaths = 1, .paths = &p, .payload = pl.s, .payload_len = pl.len};
        rc = pl.failed ? err_set(err, HAUL_ENOMEM, "out of memory") : coord_publish(k, &u, err);
    }
    strbuf_release(&pl);
    memset(sp->etags, 0, sp->nparts * sizeof *sp->etags); /* from now on: what the workers report */
    return rc;
}

/* All ranges of sp reported: complete the upload and record the object, or
 * abort it (an entry failed). */
static int spread_finish(struct coord *k, struct spread *sp, haul_error *err)
{
    for (struct spread **pp = &k->spreads; *pp; pp = &(*pp)->next)
        if (*pp == sp) {
            *pp = sp->next;
            break;
        }
    haul_error serr = {0};
    struct s3_object_info info = {0};
    struct s3_completed_part *parts = sp->error[0] ? NULL : calloc(sp->nparts, sizeof *parts);
    if (!sp->error[0] && !parts)
        snprintf(sp->error, sizeof sp->error, "out of memory");
    for (uint32_t i = 0; parts && i < sp->nparts && !sp->error[0]; i++) {
        parts[i].part_number = (int)i + 1;
        parts[i].etag = sp->etags[i];
        if (!sp->etags[i][0])
            snprintf(sp->error, sizeof sp->error, "part %u was never reported", i + 1);
    }
    if (!sp->error[0] &&
        s3_mpu_complete(k->c, k->bo->bucket, sp->key, sp->mpu.upload_id, parts, sp->nparts, &info, NULL, &serr) < 0)
        snprintf(sp->error, sizeof sp->error, "%s", serr.msg);
    int rc = 0;
    if (sp->error[0]) {
        spread_abort(k, sp);
        char msg[sizeof serr.msg];
        snprintf(msg, sizeof msg, "%s%s%s", strstr(sp->error, sp->path) ? "" : sp->path,
                 strstr(sp->error, sp->path) ? "" : ": ", sp->error);
        entry_failed(k, msg);
    } else {
        xfer_mpu_forget(&sp->mpu);
        struct index_entry rec = {.size = (uint64_t)sp->st.st_size, .mode = sp->st.st_mode, .uid = sp->st.st_uid,
                                  .gid = sp->st.st_gid,
                                  .mtime_ns = (int64_t)sp->st.st_mtim.tv_sec * 1000000000LL + sp->st.st_mtim.tv_nsec};
        snprintf(rec.key, sizeof rec.key, "%s", sp->key);
        snprintf(rec.etag, sizeof rec.etag, "%s", info.etag);
        snprintf(rec.storage_class, sizeof rec.storage_class, "%s",
                 k->bo->storage_class_large ? k->bo->storage_class_large : "STANDARD");
        rc = index_put(k->ix, &rec, err);
        if (rc == 0) {
            atomic_fetch_add(&k->stats->uploaded, 1);
            report(k, "upload", sp->key);
        }
    }
    s3_object_info_release(&info);
    free(parts);
    spread_free(sp);
    return rc;
}

/* A RANGE unit's result: its parts' ETags, or its failure. */
static int parts_done(struct coord *k, struct wire_reader *r, haul_error *err)
{
    uint64_t id = wire_get_u64(r);
    struct spread *sp = k->spreads;
    while (sp && sp->id != id)
        sp = sp->next;
    unsigned ok = wire_get_u8(r);
    if (r->why || !sp) {
        if (r->why)
            payload_bad(k, r->why);
        else
            log_warn("%s: a RANGE result for no upload in progress: ignored", dist_queue_url(k->q));
        return 0;
    }
    if (ok) {
        uint32_t first = wire_get_u32(r), n = wire_get_u32(r);
        if (!r->why && (first < 1 || first > sp->nparts || n > sp->nparts - first + 1))
            wire_fail(r, "part numbers out of range");
        for (uint32_t i = 0; i < n && !r->why; i++)
            wire_get_cstr(r, sp->etags[first - 1 + i], sizeof sp->etags[0]);
    } else {
        char msg[1025] = "";
        wire_get_cstr(r, msg, sizeof msg);
        if (!sp->error[0])
            snprintf(sp->error, sizeof sp->error, "%s", msg[0] ? msg : "a range failed");
    }
    if (r->why && !sp->error[0])
        snprintf(sp->error, sizeof sp->error, "a RANGE result could not be read (%s)", r->why);
    return --sp->units_left == 0 ? spread_finish(k, sp, err) : 0;
}

/* A decided entry that must be stored: reported (dry run), the root's
 * directory object stored here, a large file spread over RANGE units, the
 * rest into the upload batch (a hard link: holder names the path it links
 * to, NULL when it holds the bytes). */
static int coord_store(struct coord *k, const char *path, const char *key, const struct stat *st,
                       const char *holder, haul_error *err)
{
    if (k->bo->dry_run) {
        report(k, "upload (dry run)", key);
        return 0;
    }
    if (!path[0]) {
        haul_error rerr = {0};
        if (root_store(k, key, st, &rerr) < 0)
            entry_failed(k, rerr.msg);
        return 0;
    }
    uint64_t size = S_ISREG(st->st_mode) ? (uint64_t)st->st_size : 0;
    if (!holder && S_ISREG(st->st_mode) && k->o->range_size && size > k->o->range_size &&
        size > k->bo->small_threshold)
        return spread_start(k, path, key, st, err);
    return batch_add(k, path, holder ? holder : "", holder ? 0 : size, err);
}

/* One name of a hard-linked inode, decided (backup_links_decide). */
static int link_chosen(const struct backup_link_choice *c, void *ctx, haul_error *err)
{
    struct coord *k = ctx;
    if (c->holder_missing) {
        haul_error herr = {0};
        backup_holder_missing_error(c, &herr);
        entry_failed(k, herr.msg);
        return 0;
    }
    if (c->unchanged) {
        atomic_fetch_add(&k->stats->unchanged, 1);
        return index_touch(k->ix, c->name->key, err); /* a dry run too: --delete lists what was not seen */
    }
    if (k->bo->dry_run && c->indexed) {
        int rc = index_touch(k->ix, c->name->key, err);
        if (rc < 0)
            return rc;
    }
    return coord_store(k, c->name->path, c->name->key, &c->name->st, c->holder, err);
}

/* One listed entry, decided as backup_run decides.  < 0: the index failed. */
static int decide(struct coord *k, const struct listing_entry *e, haul_error *err)
{
    char path[4097], key[META_KEY_MAX + 1];
    if (e->path_len >= sizeof path) {
        entry_failed(k, "a listed path is too long");
        return 0;
    }
    memcpy(path, e->path, e->path_len);
    path[e->path_len] = '\0';
    if (meta_path_is_internal(path)) { /* reserved for haul's objects: see backup.c's entry_reserved */
        if (strcmp(path, META_INTERNAL_DIR) == 0) {
            haul_error rerr = {0};
            backup_reserved_error(k->bo, k->bo->roots[0], path, &rerr);
            entry_failed(k, rerr.msg);
        }
        return 0;
    }
    struct stat st;
    stat_from_entry(e, &st);
    bool is_root = e->path_len == 0;
    count_entry(k, &st);
    if (is_root && !k->bo->prefix[0])
        return 0; /* no object can stand for the bucket's root */
    haul_error kerr = {0};
    if (meta_key_from_path(k->bo->prefix, path, e->path_len, S_ISDIR(st.st_mode), key, NULL, &kerr) < 0) {
        char msg[sizeof((haul_error *)0)->msg];
        snprintf(msg, sizeof msg, "%s: %s", path, kerr.msg);
        entry_failed(k, msg);
        return 0;
    }
    if (S_ISREG(st.st_mode) && st.st_nlink > 1 && !is_root) { /* decided once every name is known */
        struct index_link_name nm = {.st = st, .key = key, .path = path};
        return index_link_defer(k->ix, &nm, err);
    }
    int indexed = index_get(k->ix, key, k->rec, err);
    if (indexed < 0)
        return indexed;
    if (indexed && backup_unchanged(k->rec, &st, NULL)) {
        atomic_fetch_add(&k->stats->unchanged, 1);
        return index_touch(k->ix, key, err); /* a dry run too: --delete lists what was not seen */
    }
    if (k->bo->dry_run && indexed) { /* seen: --delete's dry-run listing must not name it */
        int rc = index_touch(k->ix, key, err);
        if (rc < 0)
            return rc;
    }
    return coord_store(k, path, key, &st, NULL, err);
}

/* A listing (its unit id not seen before): decide every entry; what must be
 * stored joins the upload batch (published when full, or when no result
 * is waiting: see results_loop). */
static int listing_do(struct coord *k, struct wire_reader *r, uint32_t n, haul_error *err)
{
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        struct listing_entry e;
        listing_get(r, &e);
        if (r->why)
            break;
        rc = decide(k, &e, err);
    }
    if (rc == 0 && (r->why || r->left))
        payload_bad(k, r->why ? r->why : "trailing bytes after a listing");
    return rc;
}

static int records_do(struct coord *k, struct wire_reader *r, uint32_t n, haul_error *err)
{
    for (uint32_t i = 0; i < n; i++) {
        unsigned ok = wire_get_u8(r);
        if (!ok) {
            const unsigned char *b;
            wire_get_str(r, &b); /* the path: the message names it */
            size_t bn = wire_get_str(r, &b);
            if (r->why)
                break;
            char msg[sizeof((haul_error *)0)->msg];
            snprintf(msg, sizeof msg, "%.*s", (int)bn, (const char *)b);
            report(k, "error", msg); /* counted by the worker's counters */
            log_error("%s", msg);
            continue;
        }
        struct index_entry *rec = k->rec;
        memset(rec, 0, sizeof *rec);
        wire_get_cstr(r, rec->key, sizeof rec->key);
        rec->size = wire_get_u64(r);
        rec->mtime_ns = (int64_t)wire_get_u64(r);
        rec->mode = wire_get_u32(r);
        rec->uid = wire_get_u32(r);
        rec->gid = wire_get_u32(r);
        wire_get_cstr(r, rec->etag, sizeof rec->etag);
        wire_get_cstr(r, rec->storage_class, sizeof rec->storage_class);
        wire_get_cstr(r, rec->link, sizeof rec->link);
        rec->nlink = wire_get_u32(r);
        if (r->why)
            break;
        int rc = index_put(k->ix, rec, err);
        if (rc < 0)
            return rc;
        report(k, "upload", rec->key);
    }
    if (r->why)
        payload_bad(k, r->why);
    return 0;
}

/* A unit counted done (the tracker calls it once per unit of this run,
 * never for a duplicate or an orphan): its counters, then its payload. */
static int unit_done(const struct dist_done *d, void *ctx, haul_error *err)
{
    struct coord *k = ctx;
    counters_add(k->stats, d->counters, d->ncounters);
    if (!d->payload_len)
        return 0;
    struct wire_reader r = {d->payload, d->payload_len, NULL};
    uint32_t n;
    unsigned type = ((const unsigned char *)d->payload)[0];
    if (!payload_open(&r, type, k->run, &n)) { /* what it carried is lost */
        payload_bad(k, r.why ? r.why : "another run's");
        return 0;
    }
    return type == PAYLOAD_LISTING      ? listing_do(k, &r, n, err)
           : type == PAYLOAD_RECORDS    ? records_do(k, &r, n, err)
           : type == PAYLOAD_PARTS_DONE ? parts_done(k, &r, err)
                                        : 0;
}

static int result_take(struct coord *k, const struct dist_result *res, haul_error *err)
{
    if (res->nunits != 1) {
        log_warn("%s: dropping a result of %zu units (backup results name one)", dist_queue_url(k->q),
                 res->nunits);
        return 0;
    }
    struct dist_done d = {.id = res->units[0].unit_id, .counters = res->counters, .ncounters = res->ncounters,
                          .payload = res->payload, .payload_len = res->payload_len};
    return dist_tracker_done(k->t, &d, res->units[0].child_base, res->units[0].children, err);
}

static int seed(struct coord *k, const struct dbackup_spec *spec, uint64_t root_id, haul_error *err)
{
    dist_queue_set_run(k->q, spec->run); /* what the description and every unit are signed for */
    int rc = dbackup_spec_encode(spec, &k->sb, err);
    if (rc == 0)
        rc = dist_job_put(k->q, k->sb.s, k->sb.len, err);
    const char *root = ".";
    struct dist_unit u = {.id = root_id, .pass = DIST_PASS_BACKUP, .kind = DIST_UNIT_SCAN_DIR, .npaths = 1,
                          .paths = &root};
    snprintf(u.job_id, sizeof u.job_id, "%s", spec->run);
    strbuf_reset(&k->sb);
    if (rc == 0)
        rc = dist_unit_encode(&u, &k->sb, err);
    if (rc == 0)
        rc = dist_publish(k->q, k->sb.s, k->sb.len, err);
    if (rc == 0)
        rc = dist_flush(k->q, 60000, err);
    if (rc == 0)
        rc = dist_tracker_expect(k->t, root_id, err);
    return rc;
}

/* Upload units collect items across listings (few files per directory
 * would otherwise mean one small unit per directory); the batch goes out
 * when full, or as soon as no result is waiting, so no item waits while
 * the workers are idle.  A listing may thus be acked before its items
 * are published: a coordinator killed in between loses them, and the run
 * started again redoes everything from the root. */
static int results_loop(struct coord *k, haul_error *err)
{
    struct dist_waiter w = {.q = k->q, .cancel = k->bo->cancel, .no_worker = k->o->waiting, .ctx = k->o->ctx,
                            .run = k->run, .refuse_timeout_s = k->o->refuse_timeout_s};
    int rc = 0;
    while (rc == 0 && (dist_tracker_outstanding(k->t) > 0 || k->n)) {
        struct dist_msg m;
        struct dist_result res;
        int got = dist_wait_result(&w, k->n ? 0 : 1000, &m, &res, err);
        if (got == 0 && k->n) { /* nothing more came at once: the batch goes out */
            rc = batch_flush(k, err);
            if (rc == 0)
                rc = dist_flush(k->q, 120000, err);
            k->unflushed = 0;
            continue;
        }
        if (got <= 0) {
            rc = got;
            continue;
        }
        rc = result_take(k, &res, err);
        dist_result_release(&res);
        if (rc == 0 && s3_client_failed(k->c, err)) /* the bucket's failure: stop, as if killed */
            rc = -err->code;
        /* Units published for it are confirmed (a refused one is an error,
         * never a unit waited for forever) before the result is acked. */
        if (rc == 0 && k->unflushed) {
            rc = dist_flush(k->q, 120000, err);
            k->unflushed = 0;
        }
        if (rc == 0)
            rc = dist_ack(k->q, &m, err);
        else
            dist_reject(k->q, &m, true, &(haul_error){0});
    }
    return rc;
}

/* A pass over the hard links (backup_links_decide), its uploads waited for. */
static int links_pass(struct coord *k, enum backup_links_pass pass, size_t *postponed, haul_error *err)
{
    int rc = backup_links_decide(k->ix, pass, link_chosen, k, postponed, err);
    if (rc == 0 && k->unflushed) {
        rc = dist_flush(k->q, 120000, err);
        k->unflushed = 0;
    }
    if (rc == 0)
        rc = results_loop(k, err);
    if (rc == 0 && k->bo->cancel && atomic_load(k->bo->cancel))
        rc = err_set(err, HAUL_ECANCELED, "backup: canceled");
    return rc;
}

/* Uploads nobody will complete (interrupted, or a RANGE result was
 * unreadable): aborted; after a run that completed, each is an error. */
static void spreads_abort(struct coord *k, bool report_errors)
{
    while (k->spreads) {
        struct spread *sp = k->spreads;
        k->spreads = sp->next;
        spread_abort(k, sp);
        if (report_errors) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s: not all its parts were reported; the upload was aborted", sp->path);
            entry_failed(k, msg);
        }
        spread_free(sp);
    }
}

static int spec_fill(struct s3_client *c, const struct dbackup_opts *o, struct dbackup_spec *s, haul_error *err)
{
    const struct backup_opts *bo = o->backup;
    if (!realpath(bo->roots[0], s->src))
        return err_errno(err, errno, "%s", bo->roots[0]);
    snprintf(s->run, sizeof s->run, "%016" PRIx64, dist_random_id());
    snprintf(s->endpoint, sizeof s->endpoint, "%s", s3_client_config(c)->endpoint);
    snprintf(s->bucket, sizeof s->bucket, "%s", bo->bucket);
    snprintf(s->prefix, sizeof s->prefix, "%s", bo->prefix);
    s->small_threshold = bo->small_threshold;
    snprintf(s->storage_class_large, sizeof s->storage_class_large, "%s",
             bo->storage_class_large ? bo->storage_class_large : "");
    s->one_filesystem = bo->one_filesystem;
    s->part_size = bo->xfer.part_size;
    s->part_workers = bo->xfer.workers > 0 ? (uint32_t)bo->xfer.workers : 0;
    s->mtime_newer = o->mtime_newer;
    s->mtime_older = o->mtime_older;
    for (size_t i = 0; i < o->nexcludes; i++)
        snprintf(s->excludes[s->nexcludes++], sizeof s->excludes[0], "%s", o->excludes[i]);
    for (size_t i = 0; i < o->nincludes; i++)
        snprintf(s->includes[s->nincludes++], sizeof s->includes[0], "%s", o->includes[i]);
    return 0;
}

static int options_check(const struct dbackup_opts *o, haul_error *err)
{
    const struct backup_opts *bo = o->backup;
    if (bo->n_roots != 1)
        return err_set(err, HAUL_EUSAGE, "--broker backs up one DIR per run");
    if (bo->check_sha256)
        return err_set(err, HAUL_EUSAGE, "--check-sha256 is not available with --broker");
    if (o->mtime_newer < 0 || o->mtime_older < 0)
        return err_set(err, HAUL_EUSAGE, "--newer-than and --older-than before 1970 are not available with --broker");
    if (o->nexcludes > DBACKUP_FILTERS_MAX || o->nincludes > DBACKUP_FILTERS_MAX)
        return err_set(err, HAUL_EUSAGE, "at most %d --exclude and %d --include with --broker",
                       DBACKUP_FILTERS_MAX, DBACKUP_FILTERS_MAX);
    return 0;
}

int dbackup_run(struct s3_client *c, const struct dbackup_opts *o, struct backup_stats *stats, haul_error *err)
{
    memset(stats, 0, sizeof *stats);
    const struct backup_opts *bo = o->backup;
    char prefix[DIST_PREFIX_MAX + 1];
    struct dbackup_spec *spec = calloc(1, sizeof *spec);
    struct coord k = {.c = c, .o = o, .bo = bo, .stats = stats, .sb = STRBUF_INIT, .links = STRBUF_INIT};
    wire_put_u8(&k.links, PAYLOAD_UPLOAD);
    int rc = spec ? options_check(o, err) : err_set(err, HAUL_ENOMEM, "out of memory");
    if (rc == 0)
        rc = dclone_prefix(o->job, prefix, sizeof prefix, err);
    if (rc == 0)
        rc = spec_fill(c, o, spec, err);
    int lock = -1;
    if (rc == 0 && !(k.rec = malloc(sizeof *k.rec)))
        rc = err_set(err, HAUL_ENOMEM, "out of memory");
    if (rc == 0)
        backup_src_probe(bo, &spec->src_id); /* the workers compare theirs */
    if (rc == 0)
        rc = backup_index_open(c, bo, &k.ix, &lock, err);
    if (rc == 0)
        rc = backup_index_bind(c, bo, k.ix, stats, err);
    if (rc == 0)
        rc = index_run_begin(k.ix, err);
    struct dist_queue_opts qo = {.prefix = prefix, .consume = DIST_CONSUME(DIST_RESULTS), .prefetch = 256,
                                 .key = o->key};
    if (rc == 0 && !(k.q = dist_queue_open(o->broker_url, &qo, err)))
        rc = -HAUL_ENET;
    if (rc == 0 && !(k.t = dist_tracker_new(unit_done, &k)))
        rc = err_set(err, HAUL_ENOMEM, "out of memory");
    uint64_t root_id = dist_random_id();
    k.base = dist_random_id();
    if (rc == 0) {
        k.run = spec->run;
        rc = seed(&k, spec, root_id, err);
    }
    if (rc == 0) {
        log_info("dbackup: run %s, root unit %016" PRIx64 ", %s -> s3://%s/%s", spec->run, root_id, spec->src,
                 spec->bucket, spec->prefix);
        rc = results_loop(&k, err);
        /* Every name is known: the hard links, then their uploads. */
        if (rc == 0 && bo->cancel && atomic_load(bo->cancel)) /* undecided names must not reach --delete */
            rc = err_set(err, HAUL_ECANCELED, "backup: canceled");
        size_t postponed = 0;
        if (rc == 0)
            rc = links_pass(&k, bo->dry_run ? BACKUP_LINKS_ALL : BACKUP_LINKS_FIRST, &postponed, err);
        if (rc == 0 && postponed) /* the links whose holder the first pass stored */
            rc = links_pass(&k, BACKUP_LINKS_AFTER, NULL, err);
        log_info("dbackup: %" PRIu64 " units done", dist_tracker_done_count(k.t));
        if (k.spread_files)
            log_info("dbackup: %" PRIu64 " large files uploaded in %" PRIu64 " RANGE units", k.spread_files,
                     k.spread_units);
    }
    spreads_abort(&k, rc == 0); /* before --delete: an error there skips it */
    if (rc == 0 && bo->delete_missing)
        rc = backup_delete_gone(c, bo, k.ix, &spec->src_id, stats, err);
    if ((rc == 0 || rc == -HAUL_EINTEGRITY) && !bo->dry_run && k.ix) {
        haul_error rerr = {0};
        if (backup_src_record(bo, k.ix, &spec->src_id, &rerr) < 0)
            rc = rc ? rc : err_set(err, rerr.code, "%s", rerr.msg);
    }
    if (k.ix) {
        int crc = index_close(k.ix, err);
        rc = rc ? rc : crc;
    }
    index_lock_release(lock);
    free(k.rec);
    for (size_t i = 0; i < k.n; i++)
        free(k.owned[i]);
    spreads_abort(&k, false);
    dist_tracker_free(k.t);
    dist_queue_free(k.q);
    strbuf_release(&k.sb);
    strbuf_release(&k.links);
    free(spec);
    uint64_t failed = atomic_load(&stats->errors);
    if (rc == 0 && s3_client_failed(c, err))
        rc = -err->code;
    if (rc == 0 && failed)
        rc = err_set(err, HAUL_EIO, "%llu entr%s could not be backed up (see the messages above)",
                     (unsigned long long)failed, failed == 1 ? "y" : "ies");
    return rc;
}

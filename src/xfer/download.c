/* xfer/download: parallel ranged GETs into pool buffers; the calling thread
 * writes them in order (sequential writes suit parallel filesystems and pipes
 * alike) and checks the bytes against the object's ETag where it is an MD5.
 * Every range carries If-Match with the ETag seen first, so the ranges of a
 * replaced object are never mixed. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/bufpool.h"
#include "util/err.h"
#include "util/fdio.h"
#include "util/hash.h"
#include "xfer/xfer.h"

#define RANGE_MIN XFER_MIB

struct range {
    struct buf *buf;
    int64_t index; /* -1: empty slot */
};

struct download {
    struct s3_client *client;
    const char *bucket, *key;
    char etag[128];
    uint64_t size, range_size;
    int64_t n_ranges;
    const atomic_bool *cancel;
    struct bufpool *pool;
    int n_slots;
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t changed;
    struct range *slots;  /* fetched ranges by index % n_slots */
    int64_t next_index;
    bool failed;
    haul_error err;
};

static bool canceled(const struct download *d) { return d->cancel && atomic_load(d->cancel); }

/* "hex-N" -> N, else 0. */
static int etag_parts(const char *etag)
{
    const char *dash = strchr(etag, '-');
    if (!dash || dash - etag != 32)
        return 0;
    int n = atoi(dash + 1);
    return n > 0 && n <= XFER_PARTS_MAX ? n : 0;
}

static bool etag_is_md5(const char *etag)
{
    if (strlen(etag) != 32)
        return false;
    for (int i = 0; i < 32; i++)
        if (!isxdigit((unsigned char)etag[i]))
            return false;
    return true;
}

/* The part size haul recorded at upload (x-amz-meta-haul-part-size) when it
 * fits the ETag's part count, else 0: other tools' part sizes cannot be
 * told apart (20 MB in 3 parts fits 7, 8 or 9 MiB), so those multipart
 * objects are not re-checked. */
static uint64_t part_size_recorded(const struct s3_object_info *info, uint64_t size, int n)
{
    const char *v = s3_object_info_meta(info, XFER_META_PART_SIZE);
    uint64_t p = v ? strtoull(v, NULL, 10) : 0;
    if (n <= 1 || p < XFER_PART_MIN || p > XFER_PART_MAX)
        return 0;
    return (uint64_t)(n - 1) * p < size && size <= (uint64_t)n * p ? p : 0;
}

struct mem_sink {
    struct buf *buf;
};

static int mem_sink_write(const void *data, size_t n, void *arg)
{
    struct mem_sink *s = arg;
    if (s->buf->len + n > s->buf->cap)
        return -1; /* the server sent more than the range asked */
    memcpy(s->buf->data + s->buf->len, data, n);
    s->buf->len += n;
    return 0;
}

static void fail(struct download *d, const haul_error *err)
{
    pthread_mutex_lock(&d->lock);
    if (!d->failed) {
        d->failed = true;
        d->err = *err;
    }
    pthread_cond_broadcast(&d->changed);
    pthread_mutex_unlock(&d->lock);
}

static void fail_code(struct download *d, int code, const char *what)
{
    haul_error err = {0};
    err_set(&err, code, "download s3://%s/%s: %s", d->bucket, d->key, what);
    fail(d, &err);
}

static int range_fetch(struct download *d, int64_t index, struct buf *b, haul_error *err)
{
    uint64_t off = (uint64_t)index * d->range_size;
    uint64_t len = d->size - off < d->range_size ? d->size - off : d->range_size;
    struct mem_sink sink = {b};
    int rc = s3_object_get_match(d->client, d->bucket, d->key, d->etag, off, len, mem_sink_write,
                                 &sink, NULL, err);
    if (rc == 0 && b->len != len)
        rc = err_set(err, HAUL_EPROTO, "download s3://%s/%s: range at %llu: %zu bytes arrived, %llu expected",
                     d->bucket, d->key, (unsigned long long)off, b->len, (unsigned long long)len);
    return rc;
}

/* Workers: take a buffer, claim the next range, fetch it, leave it in its
 * slot.  Every early exit marks the download failed, so the writer never
 * waits for a range nobody will fetch. */
static void *worker_main(void *arg)
{
    struct download *d = arg;
    for (;;) {
        struct buf *b = bufpool_take(d->pool, d->range_size);
        if (!b) {
            fail_code(d, HAUL_ENOMEM, "out of memory");
            return NULL;
        }
        pthread_mutex_lock(&d->lock);
        int64_t index = d->next_index;
        bool stop = d->failed || index >= d->n_ranges;
        if (!stop)
            d->next_index++;
        pthread_mutex_unlock(&d->lock);
        if (!stop && canceled(d)) {
            fail_code(d, HAUL_ECANCELED, "canceled");
            stop = true;
        }
        if (stop) {
            bufpool_give(d->pool, b);
            return NULL;
        }
        haul_error err = {0};
        if (range_fetch(d, index, b, &err) < 0) {
            bufpool_give(d->pool, b);
            fail(d, &err);
            return NULL;
        }
        pthread_mutex_lock(&d->lock);
        if (d->failed) {
            bufpool_give(d->pool, b);
        } else {
            d->slots[index % d->n_slots] = (struct range){b, index};
            pthread_cond_broadcast(&d->changed);
        }
        pthread_mutex_unlock(&d->lock);
    }
}

/* Waits for range index; false when the download failed. */
static bool range_wait(struct download *d, int64_t index, struct range *out)
{
    struct range *slot = &d->slots[index % d->n_slots];
    pthread_mutex_lock(&d->lock);
    while (!d->failed && slot->index != index)
        pthread_cond_wait(&d->changed, &d->lock);
    bool ok = !d->failed;
    if (ok) {
        *out = *slot;
        *slot = (struct range){NULL, -1};
    }
    pthread_mutex_unlock(&d->lock);
    return ok;
}

/* After a failure: hands back every fetched buffer nobody will write. */
static void slots_drain(struct download *d)
{
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < d->n_slots; i++)
        if (d->slots[i].buf) {
            bufpool_give(d->pool, d->slots[i].buf);
            d->slots[i] = (struct range){NULL, -1};
        }
    pthread_mutex_unlock(&d->lock);
}

/* The check of the bytes against the ETag, fed in order by the writer: the
 * MD5 of everything (single PUT), or per recorded part, then the MD5 of the
 * parts' MD5s (multipart). */
struct verify {
    struct hash_ctx *whole;     /* single-part ETag */
    struct hash_ctx *part;      /* the current part (multipart) */
    struct hash_ctx *composite; /* MD5 of the part MD5s */
    uint64_t part_size, in_part;
    int parts;
};

static void verify_feed(struct verify *v, const char *p, size_t n)
{
    if (v->whole)
        hash_update(v->whole, p, n);
    while (v->composite && n) {
        if (!v->part && !(v->part = hash_md5_new()))
            return;
        size_t take = v->part_size - v->in_part < n ? (size_t)(v->part_size - v->in_part) : n;
        hash_update(v->part, p, take);
        v->in_part += take;
        p += take;
        n -= take;
        if (v->in_part == v->part_size) {
            uint8_t md5[MD5_LEN];
            hash_final(v->part, md5);
            hash_update(v->composite, md5, MD5_LEN);
            v->part = NULL;
            v->in_part = 0;
            v->parts++;
        }
    }
}

static int verify_finish(struct download *d, struct verify *v, struct xfer_result *res, haul_error *err)
{
    uint8_t digest[MD5_LEN];
    char hex[2 * MD5_LEN + 1], expected[160];
    if (v->composite && v->part) {
        hash_final(v->part, digest);
        v->part = NULL;
        hash_update(v->composite, digest, MD5_LEN);
        v->parts++;
    }
    struct hash_ctx *h = v->whole ? v->whole : v->composite;
    v->whole = v->composite = NULL;
    if (!h)
        return 0;
    hash_final(h, digest);
    hash_hex(digest, MD5_LEN, hex);
    if (etag_parts(d->etag))
        snprintf(expected, sizeof expected, "%s-%d", hex, v->parts);
    else
        snprintf(expected, sizeof expected, "%s", hex);
    if (strcmp(expected, d->etag) != 0)
        return err_set(err, HAUL_EINTEGRITY,
                       "download s3://%s/%s: the bytes received hash to %s, the object's ETag is %s",
                       d->bucket, d->key, expected, d->etag);
    res->verified = true;
    return 0;
}

static int ranges_write(struct download *d, int fd, struct verify *v, const struct xfer_opts *o,
                        haul_error *err)
{
    for (int64_t i = 0; i < d->n_ranges; i++) {
        if (canceled(d))
            fail_code(d, HAUL_ECANCELED, "canceled");
        struct range r;
        if (!range_wait(d, i, &r))
            break;
        /* Slices of 1 MiB: on the machines measured, one 8 MiB write into
         * the page cache cost several times what eight 1 MiB writes do. */
        int rc = fd_write_all(fd, r.buf->data, r.buf->len, XFER_MIB);
        int write_errno = errno;
        verify_feed(v, r.buf->data, r.buf->len);
        uint64_t done = (uint64_t)i * d->range_size + r.buf->len;
        bufpool_give(d->pool, r.buf);
        if (rc < 0) {
            haul_error werr = {0};
            err_errno(&werr, write_errno, "download s3://%s/%s: writing the data", d->bucket, d->key);
            fail(d, &werr);
            break;
        }
        if (o->progress)
            o->progress(done, o->progress_ctx);
    }
    pthread_mutex_lock(&d->lock);
    int rc = d->failed ? err_set(err, d->err.code, "%s", d->err.msg) : 0;
    pthread_mutex_unlock(&d->lock);
    return rc;
}

static int ranged_run(struct download *d, int fd, struct verify *v, const struct xfer_opts *o,
                      struct xfer_result *res, haul_error *err)
{
    d->n_slots = o->buffers;
    d->slots = calloc((size_t)d->n_slots, sizeof *d->slots);
    uint64_t buf_size = d->size < d->range_size ? (d->size ? d->size : 1) : d->range_size;
    d->range_size = d->size < d->range_size ? buf_size : d->range_size;
    d->pool = bufpool_new((size_t)d->n_slots, buf_size);
    int workers = (int64_t)o->workers < d->n_ranges ? o->workers : (int)(d->n_ranges ? d->n_ranges : 1);
    pthread_t *threads = calloc((size_t)workers, sizeof *threads);
    int started = 0, rc = 0;
    if (!d->slots || !d->pool || !threads) {
        rc = err_set(err, HAUL_ENOMEM, "download s3://%s/%s: out of memory", d->bucket, d->key);
        goto out;
    }
    for (int i = 0; i < d->n_slots; i++)
        d->slots[i].index = -1;
    while (started < workers && pthread_create(&threads[started], NULL, worker_main, d) == 0)
        started++;
    if (started == 0)
        rc = err_set(err, HAUL_ENOMEM, "download s3://%s/%s: cannot start threads", d->bucket, d->key);
    else
        rc = ranges_write(d, fd, v, o, err);
    if (rc < 0)
        fail_code(d, -rc, "stopped");
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    slots_drain(d);
    res->parts = (int)d->n_ranges;
    res->peak_buffer_bytes = bufpool_bytes(d->pool);
out:
    free(threads);
    free(d->slots);
    bufpool_free(d->pool);
    return rc;
}

static void verify_plan(struct verify *v, const struct s3_object_info *info, const char *etag,
                        uint64_t size, bool no_verify)
{
    memset(v, 0, sizeof *v);
    if (no_verify || info->etag_not_md5)
        return; /* SSE-KMS / SSE-C: the ETag is not an MD5 of the data */
    if (etag_is_md5(etag)) {
        v->whole = hash_md5_new();
    } else if ((v->part_size = part_size_recorded(info, size, etag_parts(etag)))) {
        v->composite = hash_md5_new();
    }
}

int xfer_download_fd(struct s3_client *c, const char *bucket, const char *key, int fd,
                     const struct xfer_opts *given, struct xfer_result *res, haul_error *err)
{
    struct xfer_opts o = given ? *given : (struct xfer_opts){0};
    if (!o.part_size)
        o.part_size = 8 * XFER_MIB;
    if (o.part_size < RANGE_MIN)
        o.part_size = RANGE_MIN;
    if (o.workers <= 0)
        o.workers = 8;
    if (o.buffers <= o.workers)
        o.buffers = o.workers + 1; /* one more than in flight: the writer's */
    memset(res, 0, sizeof *res);
    struct s3_object_info info = {0};
    int rc = s3_object_head(c, bucket, key, &info, err);
    if (rc < 0)
        return rc;
    struct download d = {.client = c, .bucket = bucket, .key = key, .size = info.size,
                         .cancel = o.cancel, .range_size = o.part_size};
    snprintf(d.etag, sizeof d.etag, "%s", info.etag);
    struct verify v;
    verify_plan(&v, &info, d.etag, d.size, o.no_verify);
    s3_object_info_release(&info);
    pthread_mutex_init(&d.lock, NULL);
    pthread_cond_init(&d.changed, NULL);
    d.n_ranges = (int64_t)((d.size + d.range_size - 1) / d.range_size);
    rc = ranged_run(&d, fd, &v, &o, res, err);
    if (rc == 0)
        rc = verify_finish(&d, &v, res, err);
    hash_free(v.whole);
    hash_free(v.part);
    hash_free(v.composite);
    res->bytes = rc == 0 ? d.size : 0;
    snprintf(res->etag, sizeof res->etag, "%s", d.etag);
    pthread_mutex_destroy(&d.lock);
    pthread_cond_destroy(&d.changed);
    return rc;
}

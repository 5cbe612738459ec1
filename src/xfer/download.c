/* xfer/download: parallel ranged GETs into pool buffers, written in order by
 * the calling thread (sequential writes suit parallel filesystems and pipes
 * alike), checked against the object's ETag where it is an MD5. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/bufpool.h"
#include "util/err.h"
#include "util/hash.h"
#include "xfer/xfer.h"

#define VERIFY_PART_MAX (1024 * XFER_MIB) /* larger guessed parts are not re-checked */

struct range {
    struct buf *buf;
    int index;
    uint8_t md5[MD5_LEN];
};

struct download {
    struct s3_client *client;
    const char *bucket, *key;
    char etag[128];
    uint64_t size, range_size;
    int n_ranges;
    bool part_md5; /* workers hash each range (composite ETag check) */
    const atomic_bool *cancel;
    struct bufpool *pool;
    int n_slots;
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t changed;
    struct range *slots; /* fetched ranges by index % n_slots, buf NULL when empty */
    int next_index;
    bool failed;
    haul_error err;
};

static int write_all(int fd, const char *p, size_t n, uint64_t off, bool positioned)
{
    while (n) {
        ssize_t w = positioned ? pwrite(fd, p, n, (off_t)off) : write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

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
    if (n <= 1 || p < XFER_PART_MIN || p > VERIFY_PART_MAX)
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

static int range_fetch(struct download *d, struct range *r, haul_error *err)
{
    uint64_t off = (uint64_t)r->index * d->range_size;
    uint64_t len = d->size - off < d->range_size ? d->size - off : d->range_size;
    struct mem_sink sink = {r->buf};
    int rc = s3_object_get(d->client, d->bucket, d->key, off, len, mem_sink_write, &sink, NULL, err);
    if (rc == 0 && r->buf->len != len)
        rc = err_set(err, HAUL_EPROTO, "download s3://%s/%s: range at %llu: %zu bytes arrived, %llu expected",
                     d->bucket, d->key, (unsigned long long)off, r->buf->len, (unsigned long long)len);
    if (rc == 0 && d->part_md5)
        hash_md5(r->buf->data, r->buf->len, r->md5);
    return rc;
}

static void *worker_main(void *arg)
{
    struct download *d = arg;
    for (;;) {
        struct buf *b = bufpool_take(d->pool, d->range_size);
        pthread_mutex_lock(&d->lock);
        int index = d->next_index;
        bool stop = d->failed || index >= d->n_ranges || !b || (d->cancel && atomic_load(d->cancel));
        if (!stop)
            d->next_index++;
        pthread_mutex_unlock(&d->lock);
        if (stop) {
            if (b)
                bufpool_give(d->pool, b);
            return NULL;
        }
        struct range r = {.buf = b, .index = index};
        haul_error err = {0};
        if (range_fetch(d, &r, &err) < 0) {
            bufpool_give(d->pool, b);
            fail(d, &err);
            return NULL;
        }
        pthread_mutex_lock(&d->lock);
        if (d->failed) {
            bufpool_give(d->pool, b);
        } else {
            d->slots[index % d->n_slots] = r;
            pthread_cond_broadcast(&d->changed);
        }
        pthread_mutex_unlock(&d->lock);
    }
}

/* Waits for range index; returns it, or NULL when the download failed. */
static struct range *range_wait(struct download *d, int index, struct range *out)
{
    struct range *slot = &d->slots[index % d->n_slots];
    pthread_mutex_lock(&d->lock);
    while (!d->failed && !(slot->buf && slot->index == index))
        pthread_cond_wait(&d->changed, &d->lock);
    bool ok = !d->failed;
    if (ok) {
        *out = *slot;
        slot->buf = NULL;
    }
    pthread_mutex_unlock(&d->lock);
    return ok ? out : NULL;
}

/* After a failure: hands back every fetched buffer nobody will write. */
static void slots_drain(struct download *d)
{
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < d->n_slots; i++)
        if (d->slots[i].buf) {
            bufpool_give(d->pool, d->slots[i].buf);
            d->slots[i].buf = NULL;
        }
    pthread_mutex_unlock(&d->lock);
}

struct verify {
    struct hash_ctx *whole;     /* MD5 of all bytes, single-part ETag */
    struct hash_ctx *composite; /* MD5 of part MD5s, multipart ETag */
};

static int verify_finish(struct download *d, struct verify *v, const struct xfer_opts *o,
                         struct xfer_result *res, haul_error *err)
{
    uint8_t digest[MD5_LEN];
    char hex[2 * MD5_LEN + 1], expected[160];
    struct hash_ctx *h = v->whole ? v->whole : v->composite;
    v->whole = v->composite = NULL;
    if (!h || o->no_verify) {
        hash_free(h);
        return 0;
    }
    hash_final(h, digest);
    hash_hex(digest, MD5_LEN, hex);
    if (etag_parts(d->etag))
        snprintf(expected, sizeof expected, "%s-%d", hex, d->n_ranges);
    else
        snprintf(expected, sizeof expected, "%s", hex);
    if (strcmp(expected, d->etag) != 0)
        return err_set(err, HAUL_EINTEGRITY,
                       "download s3://%s/%s: the bytes received hash to %s, the object's ETag is %s",
                       d->bucket, d->key, expected, d->etag);
    res->verified = true;
    return 0;
}

static int ranges_write(struct download *d, int fd, bool positioned, struct verify *v,
                        const struct xfer_opts *o, haul_error *err)
{
    for (int i = 0; i < d->n_ranges; i++) {
        if (o->cancel && atomic_load(o->cancel)) {
            haul_error cerr = {0};
            err_set(&cerr, HAUL_ECANCELED, "download s3://%s/%s: canceled", d->bucket, d->key);
            fail(d, &cerr);
        }
        struct range r;
        if (!range_wait(d, i, &r))
            return err_set(err, d->err.code, "%s", d->err.msg);
        uint64_t off = (uint64_t)i * d->range_size;
        int rc = write_all(fd, r.buf->data, r.buf->len, off, positioned);
        if (v->whole)
            hash_update(v->whole, r.buf->data, r.buf->len);
        if (v->composite)
            hash_update(v->composite, r.md5, MD5_LEN);
        size_t len = r.buf->len;
        bufpool_give(d->pool, r.buf);
        if (rc < 0) {
            int e = errno;
            haul_error werr = {0};
            err_errno(&werr, e, "download s3://%s/%s: writing the data", d->bucket, d->key);
            fail(d, &werr);
            return err_set(err, werr.code, "%s", werr.msg);
        }
        if (o->progress)
            o->progress(off + len, o->progress_ctx);
    }
    return 0;
}

static int ranged_run(struct download *d, int fd, bool positioned, struct verify *v,
                      const struct xfer_opts *o, struct xfer_result *res, haul_error *err)
{
    d->n_slots = o->buffers;
    d->slots = calloc((size_t)d->n_slots, sizeof *d->slots);
    d->pool = bufpool_new((size_t)d->n_slots, d->range_size);
    pthread_t *threads = calloc((size_t)o->workers, sizeof *threads);
    int started = 0, rc = 0;
    if (!d->slots || !d->pool || !threads) {
        rc = err_set(err, HAUL_ENOMEM, "download s3://%s/%s: out of memory", d->bucket, d->key);
        goto out;
    }
    while (started < o->workers && pthread_create(&threads[started], NULL, worker_main, d) == 0)
        started++;
    if (started == 0)
        rc = err_set(err, HAUL_ENOMEM, "download s3://%s/%s: cannot start threads", d->bucket, d->key);
    else
        rc = ranges_write(d, fd, positioned, v, o, err);
    if (rc < 0) {
        haul_error stop = {.code = -rc};
        fail(d, &stop);
    }
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    slots_drain(d);
    res->parts = d->n_ranges;
    res->peak_buffer_bytes = bufpool_bytes(d->pool);
out:
    free(threads);
    free(d->slots);
    bufpool_free(d->pool);
    return rc;
}

struct fd_sink {
    int fd;
    struct hash_ctx *md5;
    uint64_t written;
    const struct xfer_opts *opts;
    int write_errno; /* why the last write failed */
};

static int fd_sink_write(const void *data, size_t n, void *arg)
{
    struct fd_sink *s = arg;
    if (write_all(s->fd, data, n, 0, false) < 0) {
        s->write_errno = errno;
        return -1;
    }
    if (s->md5)
        hash_update(s->md5, data, n);
    s->written += n;
    if (s->opts->progress)
        s->opts->progress(s->written, s->opts->progress_ctx);
    return 0;
}

static int single_run(struct download *d, int fd, struct verify *v, const struct xfer_opts *o,
                      struct xfer_result *res, haul_error *err)
{
    struct fd_sink sink = {fd, v->whole, 0, o, 0};
    int rc = s3_object_get(d->client, d->bucket, d->key, 0, 0, fd_sink_write, &sink, NULL, err);
    if (rc < 0 && sink.write_errno) {
        err_clear(err);
        rc = err_errno(err, sink.write_errno, "download s3://%s/%s: writing the data", d->bucket, d->key);
    }
    if (rc == 0 && sink.written != d->size)
        rc = err_set(err, HAUL_EPROTO, "download s3://%s/%s: %llu bytes arrived, %llu expected",
                     d->bucket, d->key, (unsigned long long)sink.written, (unsigned long long)d->size);
    res->parts = 0;
    return rc;
}

int xfer_download_fd(struct s3_client *c, const char *bucket, const char *key, int fd,
                     const struct xfer_opts *given, struct xfer_result *res, haul_error *err)
{
    struct xfer_opts o = given ? *given : (struct xfer_opts){0};
    if (!o.part_size)
        o.part_size = 8 * XFER_MIB;
    if (o.workers <= 0)
        o.workers = 8;
    if (o.buffers <= o.workers)
        o.buffers = o.workers + 2;
    memset(res, 0, sizeof *res);
    struct s3_object_info info = {0};
    int rc = s3_object_head(c, bucket, key, &info, err);
    if (rc < 0)
        return rc;
    struct download d = {.client = c, .bucket = bucket, .key = key, .size = info.size, .cancel = o.cancel};
    snprintf(d.etag, sizeof d.etag, "%s", info.etag);
    uint64_t recorded = part_size_recorded(&info, d.size, etag_parts(d.etag));
    s3_object_info_release(&info);
    pthread_mutex_init(&d.lock, NULL);
    pthread_cond_init(&d.changed, NULL);

    struct verify v = {0};
    d.range_size = recorded ? recorded : o.part_size;
    if (!o.no_verify && etag_is_md5(d.etag))
        v.whole = hash_md5_new();
    else if (!o.no_verify && recorded) {
        v.composite = hash_md5_new();
        d.part_md5 = true;
    }
    struct stat st;
    bool positioned = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    d.n_ranges = (int)((d.size + d.range_size - 1) / d.range_size);
    if (d.n_ranges <= 1 && !d.part_md5)
        rc = single_run(&d, fd, &v, &o, res, err);
    else
        rc = ranged_run(&d, fd, positioned, &v, &o, res, err);
    if (rc == 0)
        rc = verify_finish(&d, &v, &o, res, err);
    hash_free(v.whole);
    hash_free(v.composite);
    res->bytes = rc == 0 ? d.size : 0;
    snprintf(res->etag, sizeof res->etag, "%s", d.etag);
    pthread_mutex_destroy(&d.lock);
    pthread_cond_destroy(&d.changed);
    return rc;
}

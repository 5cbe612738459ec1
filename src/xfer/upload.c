/* xfer/upload: one sequential reader fills pool buffers, N senders upload
 * them as multipart parts; small sources go as one PUT. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/bufpool.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/queue.h"
#include "xfer/xfer.h"

struct part_job {
    struct buf *buf;
    int number;
};

struct part_done {
    uint8_t md5[MD5_LEN];
    char etag[128];
};

struct upload {
    struct s3_client *client;
    const char *bucket, *key;
    const struct xfer_opts *opts;
    struct bufpool *pool;
    struct queue *jobs;
    char upload_id[512];
    atomic_uint_fast64_t bytes_sent;
    pthread_mutex_t lock; /* guards parts, n_parts, failed, err */
    struct part_done *parts; /* index number-1 */
    int n_parts;
    bool failed;
    haul_error err;
};

/* Reads until n bytes or end of input.  Returns bytes read, -1 on error. */
static ssize_t read_full(int fd, char *dst, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, dst + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static bool canceled(const struct upload *u)
{
    return u->opts->cancel && atomic_load(u->opts->cancel);
}

static void fail(struct upload *u, const haul_error *err)
{
    pthread_mutex_lock(&u->lock);
    if (!u->failed) {
        u->failed = true;
        u->err = *err;
    }
    pthread_mutex_unlock(&u->lock);
}

static bool failed(struct upload *u)
{
    pthread_mutex_lock(&u->lock);
    bool f = u->failed;
    pthread_mutex_unlock(&u->lock);
    return f;
}

static int part_record(struct upload *u, int number, const uint8_t *md5, const char *etag)
{
    pthread_mutex_lock(&u->lock);
    if (number > u->n_parts) {
        struct part_done *p = realloc(u->parts, (size_t)number * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&u->lock);
            return -1;
        }
        memset(p + u->n_parts, 0, (size_t)(number - u->n_parts) * sizeof *p);
        u->parts = p;
        u->n_parts = number;
    }
    memcpy(u->parts[number - 1].md5, md5, MD5_LEN);
    snprintf(u->parts[number - 1].etag, sizeof u->parts[number - 1].etag, "%s", etag);
    pthread_mutex_unlock(&u->lock);
    return 0;
}

static void part_send(struct upload *u, struct part_job *job)
{
    uint8_t md5[MD5_LEN];
    char etag[128];
    haul_error err = {0};
    hash_md5(job->buf->data, job->buf->len, md5);
    int rc = s3_mpu_part_put(u->client, u->bucket, u->key, u->upload_id, job->number,
                             job->buf->data, job->buf->len, md5, etag, sizeof etag, &err);
    if (rc == 0 && part_record(u, job->number, md5, etag) < 0)
        rc = err_set(&err, HAUL_ENOMEM, "upload s3://%s/%s: out of memory", u->bucket, u->key);
    if (rc < 0) {
        fail(u, &err);
        return;
    }
    uint64_t done = atomic_fetch_add(&u->bytes_sent, job->buf->len) + job->buf->len;
    if (u->opts->progress)
        u->opts->progress(done, u->opts->progress_ctx);
}

static void *sender_main(void *arg)
{
    struct upload *u = arg;
    struct part_job *job;
    while ((job = queue_pop(u->jobs))) {
        if (!failed(u))
            part_send(u, job);
        bufpool_give(u->pool, job->buf);
        free(job);
    }
    return NULL;
}

/* The multipart ETag S3 computes: MD5 of the parts' MD5s, "-N". */
static void composite_etag(const struct upload *u, char *out, size_t cap)
{
    struct hash_ctx *h = hash_md5_new();
    uint8_t d[MD5_LEN];
    char hex[2 * MD5_LEN + 1];
    if (!h) {
        out[0] = '\0';
        return;
    }
    for (int i = 0; i < u->n_parts; i++)
        hash_update(h, u->parts[i].md5, MD5_LEN);
    hash_final(h, d);
    hash_hex(d, MD5_LEN, hex);
    snprintf(out, cap, "%s-%d", hex, u->n_parts);
}

static int upload_complete(struct upload *u, struct xfer_result *res, haul_error *err)
{
    struct s3_completed_part *list = calloc((size_t)u->n_parts, sizeof *list);
    if (!list)
        return err_set(err, HAUL_ENOMEM, "upload s3://%s/%s: out of memory", u->bucket, u->key);
    for (int i = 0; i < u->n_parts; i++) {
        list[i].part_number = i + 1;
        list[i].etag = u->parts[i].etag;
    }
    struct s3_object_info info = {0};
    int rc = s3_mpu_complete(u->client, u->bucket, u->key, u->upload_id, list, (size_t)u->n_parts,
                             &info, err);
    free(list);
    if (rc < 0)
        return rc;
    char expected[128];
    composite_etag(u, expected, sizeof expected);
    snprintf(res->etag, sizeof res->etag, "%s", info.etag);
    s3_object_info_release(&info);
    /* Servers that encrypt with KMS report other ETags; only a well-formed
     * composite that differs is a corruption. */
    if (strchr(res->etag, '-') && strcmp(res->etag, expected) != 0)
        return err_set(err, HAUL_EINTEGRITY,
                       "upload s3://%s/%s: the server's ETag %s is not the %s computed from the "
                       "parts sent",
                       u->bucket, u->key, res->etag, expected);
    return 0;
}

/* Reads the source part by part and queues each full buffer for the
 * senders.  first holds the first part already read. */
static int parts_feed(struct upload *u, int fd, uint64_t size, uint64_t part_size, struct buf *first,
                      haul_error *err)
{
    struct buf *b = first;
    uint64_t total = 0;
    for (int number = 1;; number++) {
        if (!b) {
            uint64_t want = size == XFER_SIZE_UNKNOWN ? xfer_stream_part_size(part_size, number) : part_size;
            if (!(b = bufpool_take(u->pool, want)))
                return err_set(err, HAUL_ENOMEM, "upload s3://%s/%s: out of memory", u->bucket, u->key);
            ssize_t n = read_full(fd, b->data, want);
            if (n < 0) {
                bufpool_give(u->pool, b);
                return err_errno(err, errno, "upload s3://%s/%s: reading the source", u->bucket, u->key);
            }
            b->len = (size_t)n;
        }
        if (b->len == 0 && number > 1) {
            bufpool_give(u->pool, b);
            break;
        }
        if (number > XFER_PARTS_MAX) {
            bufpool_give(u->pool, b);
            return err_set(err, HAUL_EUSAGE, "upload s3://%s/%s: source is over 10,000 parts",
                           u->bucket, u->key);
        }
        total += b->len;
        size_t len = b->len;
        struct part_job *job = malloc(sizeof *job);
        if (!job) {
            bufpool_give(u->pool, b);
            return err_set(err, HAUL_ENOMEM, "upload s3://%s/%s: out of memory", u->bucket, u->key);
        }
        *job = (struct part_job){b, number};
        if (queue_push(u->jobs, job) < 0) {
            bufpool_give(u->pool, b);
            free(job);
            break;
        }
        b = NULL;
        if (failed(u) || canceled(u) || (size != XFER_SIZE_UNKNOWN && total >= size) || len == 0)
            break;
    }
    if (canceled(u))
        return err_set(err, HAUL_ECANCELED, "upload s3://%s/%s: canceled", u->bucket, u->key);
    if (size != XFER_SIZE_UNKNOWN && total != size && !failed(u))
        return err_set(err, HAUL_EIO,
                       "upload s3://%s/%s: the source changed while being read (%llu bytes "
                       "expected, %llu read)",
                       u->bucket, u->key, (unsigned long long)size, (unsigned long long)total);
    return 0;
}

static void senders_stop(struct upload *u, pthread_t *threads, int n)
{
    queue_close(u->jobs);
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
}

/* The caller's put options plus the part size (see XFER_META_PART_SIZE);
 * streams have growing parts, so they record nothing. */
static int mpu_create(struct upload *u, uint64_t size, uint64_t part_size, haul_error *err)
{
    struct s3_put_opts put = u->opts->put ? *u->opts->put : (struct s3_put_opts){0};
    struct s3_meta meta[65];
    char value[32];
    if (size != XFER_SIZE_UNKNOWN && put.n_meta < 64) {
        memcpy(meta, put.meta, put.n_meta * sizeof *meta);
        snprintf(value, sizeof value, "%llu", (unsigned long long)part_size);
        meta[put.n_meta++] = (struct s3_meta){(char *)XFER_META_PART_SIZE, value};
        put.meta = meta;
    }
    return s3_mpu_create(u->client, u->bucket, u->key, &put, u->upload_id, sizeof u->upload_id, err);
}

static int multipart_run(struct upload *u, int fd, uint64_t size, uint64_t part_size,
                         struct buf *first, struct xfer_result *res, haul_error *err)
{
    int rc = mpu_create(u, size, part_size, err);
    if (rc < 0) {
        bufpool_give(u->pool, first);
        return rc;
    }
    int workers = u->opts->workers;
    pthread_t *threads = calloc((size_t)workers, sizeof *threads);
    int started = 0;
    while (threads && started < workers && pthread_create(&threads[started], NULL, sender_main, u) == 0)
        started++;
    if (started == 0) {
        bufpool_give(u->pool, first);
        rc = err_set(err, HAUL_ENOMEM, "upload s3://%s/%s: cannot start sender threads", u->bucket, u->key);
    } else {
        rc = parts_feed(u, fd, size, part_size, first, err);
        senders_stop(u, threads, started);
    }
    free(threads);
    if (rc == 0 && u->failed)
        rc = err_set(err, u->err.code, "%s", u->err.msg);
    if (rc == 0) {
        res->parts = u->n_parts;
        rc = upload_complete(u, res, err);
    }
    if (rc < 0) {
        /* Never leave a dangling upload: its parts would be billed forever. */
        haul_error abort_err = {0};
        if (s3_mpu_abort(u->client, u->bucket, u->key, u->upload_id, &abort_err) < 0)
            log_warn("%s (upload id %s left behind)", abort_err.msg, u->upload_id);
    }
    return rc;
}

static void opts_default(struct xfer_opts *o, const struct xfer_opts *given)
{
    if (given)
        *o = *given;
    else
        memset(o, 0, sizeof *o);
    if (!o->part_size)
        o->part_size = 8 * XFER_MIB;
    if (o->workers <= 0)
        o->workers = 8;
    if (o->buffers <= 0)
        o->buffers = o->workers + 2;
}

int xfer_upload_fd(struct s3_client *c, int fd, const char *bucket, const char *key,
                   const struct xfer_opts *given, struct xfer_result *res, haul_error *err)
{
    struct xfer_opts o;
    opts_default(&o, given);
    memset(res, 0, sizeof *res);
    struct stat st;
    uint64_t size = XFER_SIZE_UNKNOWN;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        size = (uint64_t)st.st_size;
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    uint64_t part_size;
    int rc = xfer_part_size_plan(size, o.part_size, &part_size, err);
    if (rc < 0)
        return rc;
    uint64_t threshold = o.multipart_threshold ? o.multipart_threshold : part_size;
    struct upload u = {.client = c, .bucket = bucket, .key = key, .opts = &o};
    pthread_mutex_init(&u.lock, NULL);
    u.pool = bufpool_new((size_t)o.buffers, part_size);
    u.jobs = queue_new((size_t)o.buffers);
    struct buf *first = NULL;
    if (!u.pool || !u.jobs) {
        rc = err_set(err, HAUL_ENOMEM, "upload s3://%s/%s: out of memory", bucket, key);
        goto out;
    }
    /* The first read decides: a source that ends within it goes as one PUT. */
    uint64_t first_len = size != XFER_SIZE_UNKNOWN && size < threshold ? size : part_size;
    first = bufpool_take(u.pool, first_len ? first_len : 1);
    ssize_t n = first ? read_full(fd, first->data, first_len) : 0;
    if (!first || n < 0) {
        rc = first ? err_errno(err, errno, "upload s3://%s/%s: reading the source", bucket, key)
                   : err_set(err, HAUL_ENOMEM, "upload s3://%s/%s: out of memory", bucket, key);
        goto out;
    }
    first->len = (size_t)n;
    bool single = size != XFER_SIZE_UNKNOWN ? size < threshold : (uint64_t)n < first_len;
    if (single && canceled(&u)) {
        rc = err_set(err, HAUL_ECANCELED, "upload s3://%s/%s: canceled", bucket, key);
    } else if (single) {
        if (size != XFER_SIZE_UNKNOWN && (uint64_t)n != size) {
            rc = err_set(err, HAUL_EIO, "upload s3://%s/%s: the source changed while being read",
                         bucket, key);
            goto out;
        }
        struct s3_object_info info = {0};
        rc = s3_object_put(c, bucket, key, first->data, first->len, o.put, &info, err);
        snprintf(res->etag, sizeof res->etag, "%s", info.etag);
        s3_object_info_release(&info);
        if (rc == 0 && o.progress)
            o.progress(first->len, o.progress_ctx);
        res->bytes = first->len;
    } else {
        struct buf *f = first;
        first = NULL; /* multipart_run owns it now */
        rc = multipart_run(&u, fd, size, part_size, f, res, err);
        res->bytes = atomic_load(&u.bytes_sent);
    }
out:
    if (first)
        bufpool_give(u.pool, first);
    if (u.pool)
        res->peak_buffer_bytes = bufpool_bytes(u.pool);
    queue_free(u.jobs);
    bufpool_free(u.pool);
    free(u.parts);
    pthread_mutex_destroy(&u.lock);
    if (rc < 0 && err && !strstr(err->msg, "s3://"))
        err_prefix(err, "upload s3://%s/%s: ", bucket, key);
    return rc;
}

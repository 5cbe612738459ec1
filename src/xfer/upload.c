/* xfer/upload: one sequential reader fills pool buffers, N senders upload
 * them as multipart parts; small sources go as one PUT. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/bufpool.h"
#include "util/err.h"
#include "util/fdio.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/queue.h"
#include "xfer/journal.h"
#include "xfer/xfer.h"

struct part_job {
    struct buf *buf;
    int number;
    const char *server_etag; /* resuming: the part the server already has, to compare */
};

/* Parts an interrupted upload left on the server (ListParts), by number. */
struct server_part {
    uint64_t size;
    char etag[72];
};

struct part_done {
    char etag[128]; /* as the server answered UploadPart */
};

struct upload {
    struct s3_client *client;
    const char *bucket, *key;
    const struct xfer_opts *opts;
    struct bufpool *pool;
    struct queue *jobs;
    struct xfer_mpu mpu;
    atomic_uint_fast64_t bytes_sent;
    pthread_mutex_t lock; /* guards parts, n_parts, failed, err */
    struct part_done *parts; /* index number-1 */
    int n_parts;
    int n_resumed;
    bool failed;
    haul_error err;
    struct stat st;              /* the source when we started reading */
    struct server_part *server;  /* XFER_PARTS_MAX entries when resuming, else NULL */
    bool direct;                 /* reading with O_DIRECT: aligned sizes */
};

#define DIRECT_ALIGN 4096

static uint64_t align_up(uint64_t v) { return (v + DIRECT_ALIGN - 1) / DIRECT_ALIGN * DIRECT_ALIGN; }

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

static int part_record(struct upload *u, int number, const char *etag)
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
    snprintf(u->parts[number - 1].etag, sizeof u->parts[number - 1].etag, "%s", etag);
    pthread_mutex_unlock(&u->lock);
    return 0;
}

static void part_send(struct upload *u, struct part_job *job)
{
    uint8_t md5[MD5_LEN];
    char etag[128], hex[2 * MD5_LEN + 1] = "";
    haul_error err = {0};
    /* MD5 costs as much CPU as the rest of the upload: compute it only for
     * Content-MD5 (unsigned payloads) or to compare with a resumed part. */
    bool need_md5 = job->server_etag || s3_client_config(u->client)->unsigned_payload;
    if (need_md5) {
        hash_md5(job->buf->data, job->buf->len, md5);
        hash_hex(md5, MD5_LEN, hex);
    }
    int rc = 0;
    if (job->server_etag && strcasecmp(job->server_etag, hex) == 0) {
        /* The interrupted run sent these very bytes already. */
        snprintf(etag, sizeof etag, "%s", job->server_etag);
        pthread_mutex_lock(&u->lock);
        u->n_resumed++;
        pthread_mutex_unlock(&u->lock);
    } else {
        rc = s3_mpu_part_put(u->client, u->bucket, u->key, u->mpu.upload_id, job->number,
                             job->buf->data, job->buf->len, need_md5 ? md5 : NULL, etag, sizeof etag,
                             &err);
    }
    if (rc == 0 && part_record(u, job->number, etag) < 0)
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
        if (!failed(u) && !canceled(u))
            part_send(u, job);
        bufpool_give(u->pool, job->buf);
        free(job);
    }
    return NULL;
}

/* Completes the upload; *completed tells whether the object now exists
 * (after that, nothing may be aborted). */
static int upload_complete(struct upload *u, struct xfer_result *res, bool *completed, haul_error *err)
{
    struct s3_completed_part *list = calloc((size_t)u->n_parts, sizeof *list);
    if (!list)
        return err_set(err, HAUL_ENOMEM, "upload s3://%s/%s: out of memory", u->bucket, u->key);
    for (int i = 0; i < u->n_parts; i++) {
        list[i].part_number = i + 1;
        list[i].etag = u->parts[i].etag;
    }
    /* The ETag the parts the server acknowledged make (each checked against
     * the bytes sent, by the signed SHA-256 or Content-MD5); "" when a part
     * ETag is not an MD5 (SSE-KMS): then nothing can be compared. */
    char expected[128];
    s3_mpu_etag(list, (size_t)u->n_parts, expected, sizeof expected);
    struct s3_object_info info = {0};
    int rc = s3_mpu_complete(u->client, u->bucket, u->key, u->mpu.upload_id, list, (size_t)u->n_parts,
                             &info, completed, err);
    free(list);
    if (rc < 0)
        return rc;
    snprintf(res->etag, sizeof res->etag, "%s", info.etag);
    s3_object_info_release(&info);
    /* With SSE-KMS or SSE-C the ETag is not an MD5; otherwise a composite
     * that differs means the server assembled other bytes than were sent. */
    if (!info.etag_not_md5 && expected[0] && strchr(res->etag, '-') && strcmp(res->etag, expected) != 0)
        return err_set(err, HAUL_EINTEGRITY,
                       "upload s3://%s/%s: stored, but the server's ETag %s is not the %s of the "
                       "parts it acknowledged: do not trust this object",
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
            if (u->direct)
                want = align_up(want);
            if (!(b = bufpool_take(u->pool, want)))
                return err_set(err, HAUL_ENOMEM, "upload s3://%s/%s: out of memory", u->bucket, u->key);
            /* With O_DIRECT, want and the buffer are multiples of DIRECT_ALIGN
             * (the pool's buffers are page-aligned): every read stays aligned. */
            ssize_t n = fd_read_full(fd, b->data, want);
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
        *job = (struct part_job){b, number, NULL};
        if (u->server && u->server[number - 1].size == len && u->server[number - 1].etag[0])
            job->server_etag = u->server[number - 1].etag;
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
int xfer_mpu_create(struct s3_client *c, const char *bucket, const char *key, const struct s3_put_opts *opts,
                    uint64_t part_size, char *upload_id, size_t cap, haul_error *err)
{
    struct s3_put_opts put = opts ? *opts : (struct s3_put_opts){0};
    struct s3_meta meta[65];
    char value[32];
    if (part_size && put.n_meta < 64) {
        memcpy(meta, put.meta, put.n_meta * sizeof *meta);
        snprintf(value, sizeof value, "%llu", (unsigned long long)part_size);
        meta[put.n_meta++] = (struct s3_meta){(char *)XFER_META_PART_SIZE, value};
        put.meta = meta;
    }
    return s3_mpu_create(c, bucket, key, &put, upload_id, cap, err);
}

/* A server part of an interrupted upload (ListParts), kept for comparing
 * with ours; the table is allocated at the first. */
static int server_part_note(int number, uint64_t size, const char *etag, void *ctx)
{
    struct upload *u = ctx;
    if (!u->server && !(u->server = calloc(XFER_PARTS_MAX, sizeof *u->server)))
        return -1;
    if (number >= 1 && number <= XFER_PARTS_MAX) {
        u->server[number - 1].size = size;
        snprintf(u->server[number - 1].etag, sizeof u->server[number - 1].etag, "%s", etag);
    }
    return 0;
}

static bool same_source(const struct journal *j, const struct stat *st, uint64_t part_size)
{
    return j->size == (uint64_t)st->st_size && j->mtime.tv_sec == st->st_mtim.tv_sec &&
           j->mtime.tv_nsec == st->st_mtim.tv_nsec && j->part_size == part_size;
}

/* Takes up the upload an interrupted run recorded in j, when the source is
 * unchanged and the server still has it.  Returns true when resuming. */
static bool mpu_resume(struct s3_client *c, const char *bucket, const char *key, struct journal *j,
                       const struct stat *st, uint64_t part_size, s3_part_fn found, void *ctx)
{
    if (journal_load(j) < 0)
        return false;
    haul_error err = {0};
    if (!same_source(j, st, part_size)) {
        log_info("upload s3://%s/%s: the source changed since the interrupted upload; starting over", bucket, key);
        s3_mpu_abort(c, bucket, key, j->upload_id, &err);
        journal_remove(j);
        return false;
    }
    if (s3_mpu_parts_list(c, bucket, key, j->upload_id, found, ctx, &err) < 0) {
        log_info("upload s3://%s/%s: cannot resume upload %s (%s); starting over", bucket, key, j->upload_id,
                 err.msg);
        /* Forget the record only when that upload is surely gone. */
        haul_error abort_err = {0};
        if (err.code == HAUL_ENOTFOUND || s3_mpu_abort(c, bucket, key, j->upload_id, &abort_err) == 0)
            journal_remove(j);
        return false;
    }
    log_info("upload s3://%s/%s: resuming upload %s", bucket, key, j->upload_id);
    return true;
}

int xfer_mpu_open(struct s3_client *c, const char *state_dir, const char *source_id, const char *bucket,
                  const char *key, const struct s3_put_opts *opts, const struct stat *st, uint64_t part_size,
                  s3_part_fn found, void *ctx, struct xfer_mpu *out, haul_error *err)
{
    memset(out, 0, sizeof *out);
    struct journal j = {0};
    bool recorded = state_dir && source_id;
    if (recorded) {
        haul_error jerr = {0};
        if (journal_locate(&j, state_dir, s3_client_config(c)->endpoint, bucket, key, source_id, &jerr) < 0) {
            log_warn("%s: the upload will not be resumable", jerr.msg);
            recorded = false;
        } else if (mpu_resume(c, bucket, key, &j, st, part_size, found, ctx)) {
            snprintf(out->upload_id, sizeof out->upload_id, "%s", j.upload_id);
            snprintf(out->record, sizeof out->record, "%s", j.path);
            out->resumed = true;
            return 0;
        }
    }
    int rc = xfer_mpu_create(c, bucket, key, opts, part_size, out->upload_id, sizeof out->upload_id, err);
    if (rc == 0 && recorded) {
        snprintf(j.upload_id, sizeof j.upload_id, "%s", out->upload_id);
        j.size = (uint64_t)st->st_size;
        j.mtime = st->st_mtim;
        j.part_size = part_size;
        haul_error jerr = {0};
        if (journal_save(&j, &jerr) < 0)
            log_warn("%s: the upload will not be resumable", jerr.msg);
        else
            snprintf(out->record, sizeof out->record, "%s", j.path);
    }
    return rc;
}

void xfer_mpu_forget(struct xfer_mpu *m)
{
    if (m->record[0])
        unlink(m->record);
    m->record[0] = '\0';
}

static int upload_begin(struct upload *u, uint64_t size, uint64_t part_size, haul_error *err)
{
    const struct xfer_opts *o = u->opts;
    if (size == XFER_SIZE_UNKNOWN) /* a stream: nothing to resume, parts of growing size */
        return xfer_mpu_create(u->client, u->bucket, u->key, o->put, 0, u->mpu.upload_id,
                               sizeof u->mpu.upload_id, err);
    int rc = xfer_mpu_open(u->client, o->state_dir, o->source_id, u->bucket, u->key, o->put, &u->st, part_size,
                           server_part_note, u, &u->mpu, err);
    if (!u->mpu.resumed) { /* parts listed before a failed ListParts belong to no upload of ours */
        free(u->server);
        u->server = NULL;
    }
    return rc;
}

/* A source that changed while it was read must not be stored as if whole. */
static int source_unchanged(const struct upload *u, int fd, haul_error *err)
{
    struct stat now;
    if (!S_ISREG(u->st.st_mode) || fstat(fd, &now) < 0)
        return 0;
    if (now.st_size != u->st.st_size || now.st_mtim.tv_sec != u->st.st_mtim.tv_sec ||
        now.st_mtim.tv_nsec != u->st.st_mtim.tv_nsec)
        return err_set(err, HAUL_EIO,
                       "upload s3://%s/%s: the source changed while being read (size or mtime); "
                       "nothing was stored",
                       u->bucket, u->key);
    return 0;
}

static int multipart_run(struct upload *u, int fd, uint64_t size, uint64_t part_size,
                         struct buf *first, struct xfer_result *res, haul_error *err)
{
    int rc = upload_begin(u, size, part_size, err);
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
    if (rc == 0)
        rc = source_unchanged(u, fd, err);
    bool completed = false;
    if (rc == 0) {
        res->parts = u->n_parts;
        res->parts_resumed = u->n_resumed;
        rc = upload_complete(u, res, &completed, err);
    }
    bool gone = completed;
    /* Interrupted (a signal) or stopped by a bucket-level failure: the
     * journal and the parts stay, so the same command resumes. */
    bool keep = rc < 0 && !completed && u->mpu.record[0] &&
                (canceled(u) || s3_client_failed(u->client, NULL));
    if (keep && canceled(u)) {
        err_clear(err);
        rc = err_set(err, HAUL_ECANCELED,
                     "upload s3://%s/%s: interrupted; the parts sent are kept, run the same command again to resume",
                     u->bucket, u->key);
    }
    if (rc < 0 && !completed && !keep) {
        /* Never leave a dangling upload: its parts would be billed forever. */
        haul_error abort_err = {0};
        gone = s3_mpu_abort(u->client, u->bucket, u->key, u->mpu.upload_id, &abort_err) == 0 ||
               abort_err.code == HAUL_ENOTFOUND;
        if (!gone && u->mpu.record[0])
            log_warn("%s (upload id %s left behind; its journal is kept so a rerun resumes or aborts it)",
                     abort_err.msg, u->mpu.upload_id);
        else if (!gone)
            log_warn("upload s3://%s/%s: upload id %s left behind (%s); haul rm --uploads s3://%s/%s aborts it",
                     u->bucket, u->key, u->mpu.upload_id, abort_err.msg, u->bucket, u->key);
    }
    if (gone)
        xfer_mpu_forget(&u->mpu);
    return rc;
}

/* A second descriptor on the same file with O_DIRECT (the page cache is
 * bypassed, as parallel filesystems prefer for TiB files), or -1 when the
 * filesystem refuses it: then buffered reads are used. */
static int direct_open(int fd, const char *bucket, const char *key)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    int dfd = open(proc, O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (dfd < 0)
        log_info("upload s3://%s/%s: O_DIRECT refused (%s); reading through the page cache",
                 bucket, key, strerror(errno));
    return dfd;
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
    struct upload u = {.client = c, .bucket = bucket, .key = key, .opts = &o};
    uint64_t size = XFER_SIZE_UNKNOWN;
    int direct_fd = -1;
    if (fstat(fd, &u.st) == 0 && S_ISREG(u.st.st_mode)) {
        size = (uint64_t)u.st.st_size;
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        if (o.direct)
            direct_fd = direct_open(fd, bucket, key);
    }
    uint64_t part_size;
    int rc = xfer_part_size_plan(size, o.part_size, &part_size, err);
    if (rc < 0) {
        if (direct_fd >= 0)
            close(direct_fd);
        return rc;
    }
    if (direct_fd >= 0) {
        u.direct = true;
        part_size = align_up(part_size);
        fd = direct_fd;
    }
    uint64_t threshold = o.multipart_threshold ? o.multipart_threshold : part_size;
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
    uint64_t first_read = u.direct ? align_up(first_len ? first_len : 1) : first_len;
    first = bufpool_take(u.pool, first_read ? first_read : 1);
    ssize_t n = first ? fd_read_full(fd, first->data, first_read) : 0;
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
        if ((size != XFER_SIZE_UNKNOWN && (uint64_t)n != size) || source_unchanged(&u, fd, err) < 0) {
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
    free(u.server);
    if (direct_fd >= 0)
        close(direct_fd);
    pthread_mutex_destroy(&u.lock);
    if (rc < 0 && err && !strstr(err->msg, "s3://"))
        err_prefix(err, "upload s3://%s/%s: ", bucket, key);
    return rc;
}

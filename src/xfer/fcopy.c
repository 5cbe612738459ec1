/* xfer/fcopy: local file to local file, sparse-aware, optionally in
 * parallel ranges (see fcopy.h). */
#include "xfer/fcopy.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/fdio.h"
#include "util/queue.h"

#define DEFAULT_CHUNK (64ull << 20)
#define DEFAULT_PARALLEL_THRESHOLD (256ull << 20)
#define BOUNCE_SIZE (1u << 20)
/* copy_file_range moves at most this much per call (the kernel caps it
 * near 2 GiB anyway). */
#define CFR_MAX (1ull << 30)

/* One file being copied in ranges.  Claimed by the calling thread and by
 * every pool thread that popped it; freed by the caller once refs is 0. */
struct copy_job {
    int src, dst;
    uint64_t size, chunk, n_ranges;
    bool sparse;
    const atomic_bool *cancel;
    atomic_uint_fast64_t next_range;
    pthread_mutex_t lock; /* guards refs, err, failed */
    pthread_cond_t idle;
    unsigned refs;        /* pool threads that hold the job (queued or running) */
    bool failed;
    haul_error err;
};

struct xfer_copy_pool {
    struct queue *jobs;
    pthread_t *threads;
    unsigned n_threads;
};

/* Copies [off, end) of plain data: in the kernel when it can, else through
 * a buffer.  *no_cfr remembers (per copy) that copy_file_range is not
 * supported between these two files. */
static int copy_data(int src, int dst, uint64_t off, uint64_t end, bool *no_cfr, haul_error *err)
{
    while (off < end && !*no_cfr) {
        loff_t in = (loff_t)off, out = (loff_t)off;
        size_t want = end - off > CFR_MAX ? CFR_MAX : (size_t)(end - off);
        ssize_t n = copy_file_range(src, &in, dst, &out, want, 0);
        if (n > 0) {
            off += (uint64_t)n;
            continue;
        }
        if (n == 0)
            return err_set(err, HAUL_EIO, "shrank while being copied (%llu of %llu bytes)",
                           (unsigned long long)off, (unsigned long long)end);
        if (errno == EINTR)
            continue;
        /* Not supported between these files (other filesystem type, old
         * kernel, special file): fall back to read/write. */
        if (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS || errno == EBADF)
            *no_cfr = true;
        else
            return err_errno(err, errno, "copy at offset %llu", (unsigned long long)off);
    }
    if (off >= end)
        return 0;
    char *buf = malloc(BOUNCE_SIZE);
    if (!buf)
        return err_set(err, HAUL_ENOMEM, "out of memory");
    int rc = 0;
    while (off < end && rc == 0) {
        size_t want = end - off > BOUNCE_SIZE ? BOUNCE_SIZE : (size_t)(end - off);
        ssize_t n = pread(src, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = err_errno(err, errno, "read at offset %llu", (unsigned long long)off);
        } else if (n == 0) {
            rc = err_set(err, HAUL_EIO, "shrank while being copied (%llu of %llu bytes)",
                         (unsigned long long)off, (unsigned long long)end);
        } else {
            if (fd_pwrite_all(dst, buf, (size_t)n, off) < 0)
                rc = err_errno(err, errno, "write at offset %llu", (unsigned long long)off);
            off += (uint64_t)n;
        }
    }
    free(buf);
    return rc;
}

/* Copies [off, end): only the data segments when the file is sparse. */
static int copy_range(int src, int dst, uint64_t off, uint64_t end, bool sparse, haul_error *err)
{
    bool no_cfr = false;
    if (!sparse)
        return copy_data(src, dst, off, end, &no_cfr, err);
    while (off < end) {
        off_t data = lseek(src, (off_t)off, SEEK_DATA);
        if (data < 0 && errno == ENXIO) {
            /* No data from off on: a hole to the end, or the file shrank. */
            struct stat st;
            if (fstat(src, &st) == 0 && (uint64_t)st.st_size < end)
                return err_set(err, HAUL_EIO, "shrank while being copied (%llu of %llu bytes)",
                               (unsigned long long)st.st_size, (unsigned long long)end);
            return 0;
        }
        if (data < 0)
            return copy_data(src, dst, off, end, &no_cfr, err); /* no SEEK_DATA: copy it all */
        if ((uint64_t)data >= end)
            return 0;
        off_t hole = lseek(src, data, SEEK_HOLE);
        uint64_t seg_end = hole < 0 || (uint64_t)hole > end ? end : (uint64_t)hole;
        int rc = copy_data(src, dst, (uint64_t)data, seg_end, &no_cfr, err);
        if (rc < 0)
            return rc;
        off = seg_end;
    }
    return 0;
}

/* Claims and copies ranges of job until none is left or one failed. */
static void job_work(struct copy_job *job)
{
    for (;;) {
        uint64_t r = atomic_fetch_add(&job->next_range, 1);
        if (r >= job->n_ranges)
            return;
        if (job->cancel && atomic_load(job->cancel)) {
            pthread_mutex_lock(&job->lock);
            err_set(&job->err, HAUL_ECANCELED, "canceled");
            job->failed = true;
            pthread_mutex_unlock(&job->lock);
            return;
        }
        uint64_t off = r * job->chunk;
        uint64_t end = off + job->chunk > job->size ? job->size : off + job->chunk;
        haul_error e = {0};
        if (copy_range(job->src, job->dst, off, end, job->sparse, &e) < 0) {
            pthread_mutex_lock(&job->lock);
            err_set(&job->err, e.code, "%s", e.msg);
            job->failed = true;
            pthread_mutex_unlock(&job->lock);
            /* Nobody else should start new ranges of a failed copy. */
            atomic_store(&job->next_range, job->n_ranges);
            return;
        }
    }
}

static void *pool_thread(void *arg)
{
    struct xfer_copy_pool *pool = arg;
    struct copy_job *job;
    while ((job = queue_pop(pool->jobs)) != NULL) {
        job_work(job);
        pthread_mutex_lock(&job->lock);
        if (--job->refs == 0)
            pthread_cond_signal(&job->idle);
        pthread_mutex_unlock(&job->lock);
    }
    return NULL;
}

struct xfer_copy_pool *xfer_copy_pool_new(unsigned threads, haul_error *err)
{
    struct xfer_copy_pool *pool = calloc(1, sizeof *pool);
    if (!pool || !(pool->jobs = queue_new(threads ? threads * 2 : 1)) ||
        !(pool->threads = calloc(threads ? threads : 1, sizeof *pool->threads))) {
        xfer_copy_pool_free(pool);
        err_set(err, HAUL_ENOMEM, "out of memory");
        return NULL;
    }
    for (; pool->n_threads < threads; pool->n_threads++) {
        int rc = pthread_create(&pool->threads[pool->n_threads], NULL, pool_thread, pool);
        if (rc != 0) {
            xfer_copy_pool_free(pool);
            err_errno(err, rc, "starting copy threads");
            return NULL;
        }
    }
    return pool;
}

void xfer_copy_pool_free(struct xfer_copy_pool *pool)
{
    if (!pool)
        return;
    if (pool->jobs)
        queue_close(pool->jobs);
    for (unsigned i = 0; i < pool->n_threads; i++)
        pthread_join(pool->threads[i], NULL);
    queue_free(pool->jobs);
    free(pool->threads);
    free(pool);
}

/* A file "looks sparse" when its allocated blocks cover less than its size. */
static bool looks_sparse(int fd, uint64_t size)
{
    struct stat st;
    return fstat(fd, &st) == 0 && (uint64_t)st.st_blocks * 512 < size;
}

static int copy_parallel(int src, int dst, uint64_t size, bool sparse, const struct xfer_copy_opts *o,
                         uint64_t chunk, haul_error *err)
{
    struct copy_job job = {.src = src, .dst = dst, .size = size, .chunk = chunk,
                           .n_ranges = (size + chunk - 1) / chunk, .sparse = sparse, .cancel = o->cancel};
    pthread_mutex_init(&job.lock, NULL);
    pthread_cond_init(&job.idle, NULL);
    /* Hand the job to at most one pool thread per remaining range. */
    uint64_t helpers = job.n_ranges - 1 < o->pool->n_threads ? job.n_ranges - 1 : o->pool->n_threads;
    for (uint64_t i = 0; i < helpers; i++) {
        pthread_mutex_lock(&job.lock);
        job.refs++;
        pthread_mutex_unlock(&job.lock);
        if (queue_push(o->pool->jobs, &job) < 0) {
            pthread_mutex_lock(&job.lock);
            job.refs--;
            pthread_mutex_unlock(&job.lock);
            break;
        }
    }
    job_work(&job);
    pthread_mutex_lock(&job.lock);
    while (job.refs > 0)
        pthread_cond_wait(&job.idle, &job.lock);
    pthread_mutex_unlock(&job.lock);
    int rc = 0;
    if (job.failed)
        rc = err_set(err, job.err.code, "%s", job.err.msg);
    pthread_cond_destroy(&job.idle);
    pthread_mutex_destroy(&job.lock);
    return rc;
}

int xfer_range_copy(int src, int dst, uint64_t off, uint64_t len, haul_error *err)
{
    struct stat st;
    if (fstat(src, &st) < 0)
        return err_errno(err, errno, "read: stat");
    if ((uint64_t)st.st_size < off + len)
        return err_set(err, HAUL_EIO, "shrank while being copied (%llu bytes, the range ends at %llu)",
                       (unsigned long long)st.st_size, (unsigned long long)(off + len));
    return copy_range(src, dst, off, off + len, looks_sparse(src, (uint64_t)st.st_size), err);
}

int xfer_file_copy(int src, int dst, uint64_t size, const struct xfer_copy_opts *o, haul_error *err)
{
    if (ftruncate(dst, (off_t)size) < 0)
        return err_errno(err, errno, "write: setting the size");
    if (size == 0)
        return 0;
    bool sparse = looks_sparse(src, size);
    uint64_t chunk = o && o->chunk ? o->chunk : DEFAULT_CHUNK;
    uint64_t threshold = o && o->parallel_threshold ? o->parallel_threshold : DEFAULT_PARALLEL_THRESHOLD;
    if (o && o->pool && o->pool->n_threads > 0 && size >= threshold && size > chunk)
        return copy_parallel(src, dst, size, sparse, o, chunk, err);
    if (o && o->cancel && atomic_load(o->cancel))
        return err_set(err, HAUL_ECANCELED, "canceled");
    return copy_range(src, dst, 0, size, sparse, err);
}

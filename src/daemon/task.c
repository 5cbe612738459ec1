/* daemon/task: blocking file operations (open, fstat, statfs of what a
 * client names) each on a thread of its own, so that a hung filesystem
 * (FUSE, autofs, a hard NFS mount) holds that thread and nothing else.
 * Whoever started a task may give up on it after its deadline: the task is
 * then abandoned, counted as stuck until it returns, and frees itself.
 * Not a pool: a thread stuck in the kernel can never be taken back, so each
 * task gets a fresh one (tens of microseconds, next to a request's fsync). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "util/err.h"

enum { TASK_RUNNING, TASK_DONE, TASK_ABANDONED };

struct daemon_hub {
    pthread_mutex_t lock; /* guards every task's state, the counts and refs */
    pthread_cond_t cond;  /* a task finished */
    int wake_fd;          /* a byte written here when a task finishes (ours, a dup) */
    int running, stuck, max_stuck;
    int refs; /* the owner's, plus one per task still running */
};

struct daemon_hub *daemon_hub_new(int wake_fd, int max_stuck)
{
    struct daemon_hub *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->wake_fd = wake_fd >= 0 ? fcntl(wake_fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (wake_fd >= 0 && h->wake_fd < 0) {
        free(h);
        return NULL;
    }
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    h->max_stuck = max_stuck;
    h->refs = 1;
    return h;
}

/* Drops one reference; the last one frees the hub. */
static void hub_unref_locked(struct daemon_hub *h)
{
    bool last = --h->refs == 0;
    pthread_mutex_unlock(&h->lock);
    if (!last)
        return;
    if (h->wake_fd >= 0)
        close(h->wake_fd);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
    free(h);
}

void daemon_hub_free(struct daemon_hub *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    hub_unref_locked(h); /* tasks still stuck keep it until they return */
}

void daemon_hub_counts(struct daemon_hub *h, int *running, int *stuck)
{
    pthread_mutex_lock(&h->lock);
    *running = h->running;
    *stuck = h->stuck;
    pthread_mutex_unlock(&h->lock);
}

static void *task_main(void *arg)
{
    struct daemon_task *t = arg;
    struct daemon_hub *h = t->hub;
    t->run(t);
    pthread_mutex_lock(&h->lock);
    h->running--;
    if (t->state == TASK_ABANDONED) {
        h->stuck--;
        t->drop(t); /* nobody looks at it any more */
    } else {
        t->state = TASK_DONE;
    }
    pthread_cond_broadcast(&h->cond);
    if (h->wake_fd >= 0) {
        char b = 1;
        ssize_t w = write(h->wake_fd, &b, 1);
        (void)w; /* a full pipe already means "wake up" */
    }
    hub_unref_locked(h);
    return NULL;
}

int daemon_task_start(struct daemon_hub *h, struct daemon_task *t, haul_error *err)
{
    pthread_mutex_lock(&h->lock);
    if (h->stuck >= h->max_stuck) {
        int n = h->stuck;
        pthread_mutex_unlock(&h->lock);
        return err_set(err, HAUL_EIO, "%d file checks are stuck past their deadline (a hung filesystem?): "
                                      "refusing new requests until they return", n);
    }
    t->hub = h;
    t->state = TASK_RUNNING;
    h->running++;
    h->refs++;
    pthread_mutex_unlock(&h->lock);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t tid;
    int rc = pthread_create(&tid, &attr, task_main, t);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        return 0;
    pthread_mutex_lock(&h->lock);
    h->running--;
    h->refs--; /* the owner still holds one */
    pthread_mutex_unlock(&h->lock);
    return err_errno(err, rc, "starting a file check");
}

bool daemon_task_done(struct daemon_task *t)
{
    pthread_mutex_lock(&t->hub->lock);
    bool done = t->state == TASK_DONE;
    pthread_mutex_unlock(&t->hub->lock);
    return done;
}

bool daemon_task_abandon(struct daemon_task *t)
{
    struct daemon_hub *h = t->hub;
    pthread_mutex_lock(&h->lock);
    bool running = t->state == TASK_RUNNING;
    if (running) {
        t->state = TASK_ABANDONED;
        h->stuck++;
    }
    pthread_mutex_unlock(&h->lock);
    return running;
}

bool daemon_task_wait(struct daemon_task *t, int timeout_ms)
{
    struct daemon_hub *h = t->hub;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&h->lock);
    while (t->state == TASK_RUNNING && pthread_cond_timedwait(&h->cond, &h->lock, &until) != ETIMEDOUT) {
    }
    bool done = t->state == TASK_DONE;
    if (!done) {
        t->state = TASK_ABANDONED;
        h->stuck++;
    }
    pthread_mutex_unlock(&h->lock);
    return done;
}

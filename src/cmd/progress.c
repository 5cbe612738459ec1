/* cmd/progress: a live "bytes, rate, ETA" line on a terminal, redrawn by its
 * own thread a few times a second; silent when stderr is not a terminal. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cmd.h"

struct progress {
    char label[128];
    uint64_t total; /* UINT64_MAX when unknown */
    atomic_uint_fast64_t done;
    struct timespec start;
    pthread_t thread;
    pthread_mutex_t lock; /* guards stopping */
    pthread_cond_t wake;
    bool stopping;
};

static double elapsed(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void draw(struct progress *p)
{
    char done[32], total[32] = "?", rate[32];
    uint64_t d = atomic_load(&p->done);
    double secs = elapsed(&p->start);
    format_size(d, done, sizeof done);
    if (p->total != UINT64_MAX)
        format_size(p->total, total, sizeof total);
    format_size(secs > 0 ? (uint64_t)((double)d / secs) : 0, rate, sizeof rate);
    char eta[32] = "";
    if (p->total != UINT64_MAX && d > 0 && d < p->total) {
        long left = (long)((double)(p->total - d) * secs / (double)d);
        snprintf(eta, sizeof eta, " ETA %ld:%02ld", left / 60, left % 60);
    }
    fprintf(stderr, "\r\033[K%s  %s / %s  %s/s%s", p->label, done, total, rate, eta);
    fflush(stderr);
}

static void *progress_main(void *arg)
{
    struct progress *p = arg;
    pthread_mutex_lock(&p->lock);
    while (!p->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 250000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->wake, &p->lock, &until);
        if (!p->stopping)
            draw(p);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

struct progress *progress_start(const char *label, uint64_t total, bool enabled)
{
    if (!enabled || !isatty(STDERR_FILENO))
        return NULL;
    struct progress *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    clock_gettime(CLOCK_MONOTONIC, &p->start);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    if (pthread_create(&p->thread, NULL, progress_main, p) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

void progress_update(uint64_t done, void *arg)
{
    struct progress *p = arg;
    if (!p)
        return;
    /* Parts finish out of order: keep the largest total seen. */
    uint64_t old = atomic_load(&p->done);
    while (done > old && !atomic_compare_exchange_weak(&p->done, &old, done))
        ;
}

void progress_stop(struct progress *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    draw(p);
    fputc('\n', stderr);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p);
}

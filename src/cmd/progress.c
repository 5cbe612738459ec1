/* cmd/progress: live lines on a terminal.  A ticker redraws a caller's line
 * a few times a second from its own thread; the transfer progress line
 * (bytes, rate, ETA) is one such line.  Nothing is drawn when stderr is not
 * a terminal. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cmd.h"

struct ticker {
    ticker_draw_fn draw;
    void *ctx;
    pthread_t thread;
    pthread_mutex_t lock; /* guards stopping */
    pthread_cond_t wake;
    bool stopping;
};

static void *ticker_main(void *arg)
{
    struct ticker *t = arg;
    pthread_mutex_lock(&t->lock);
    while (!t->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 250000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&t->wake, &t->lock, &until);
        if (!t->stopping) {
            fputs("\r\033[K", stderr);
            t->draw(t->ctx);
            fflush(stderr);
        }
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

struct ticker *ticker_start(ticker_draw_fn draw, void *ctx, bool enabled)
{
    if (!enabled || !isatty(STDERR_FILENO))
        return NULL;
    struct ticker *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    *t = (struct ticker){.draw = draw, .ctx = ctx};
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->wake, NULL);
    if (pthread_create(&t->thread, NULL, ticker_main, t) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

void ticker_stop(struct ticker *t, bool keep_line)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stopping = true;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    fputs("\r\033[K", stderr);
    if (keep_line) {
        t->draw(t->ctx);
        fputc('\n', stderr);
    }
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->wake);
    free(t);
}

struct progress {
    char label[128];
    uint64_t total; /* UINT64_MAX when unknown */
    atomic_uint_fast64_t done;
    struct timespec start;
    struct ticker *ticker;
};

double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void progress_draw(void *arg)
{
    struct progress *p = arg;
    char done[32], total[32] = "?", rate[32];
    uint64_t d = atomic_load(&p->done);
    double secs = seconds_since(&p->start);
    format_size(d, done, sizeof done);
    if (p->total != UINT64_MAX)
        format_size(p->total, total, sizeof total);
    format_size(secs > 0 ? (uint64_t)((double)d / secs) : 0, rate, sizeof rate);
    char eta[32] = "";
    if (p->total != UINT64_MAX && d > 0 && d < p->total) {
        long left = (long)((double)(p->total - d) * secs / (double)d);
        snprintf(eta, sizeof eta, " ETA %ld:%02ld", left / 60, left % 60);
    }
    fprintf(stderr, "%s  %s / %s  %s/s%s", p->label, done, total, rate, eta);
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
    if (!(p->ticker = ticker_start(progress_draw, p, true))) {
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
    ticker_stop(p->ticker, true);
    free(p);
}

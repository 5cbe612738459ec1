/* dist/mem: the in-process transport of dist.h.  One shared "broker" (work,
 * dead, results FIFOs and the control subscribers) guarded by one mutex,
 * with handles on it that behave like AMQP consumers: a message taken is
 * the handle's until acked or rejected, and goes back to its queue with
 * redelivered set when the handle is freed first. */
#include "dist/internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/err.h"

struct mem_msg {
    struct mem_msg *prev, *next;
    enum dist_kind kind;
    bool redelivered;
    uint64_t tag;
    size_t len;
    unsigned char body[];
};

/* A doubly linked FIFO; prev/next of its messages belong to it. */
struct fifo {
    struct mem_msg *head, *tail;
    size_t n;
};

struct mem_handle;

struct mem_broker {
    pthread_mutex_t lock;    /* guards everything below and every handle's ctl/taken */
    pthread_cond_t changed;  /* broadcast whenever a FIFO gains or loses a message */
    unsigned refs;           /* handles open on it */
    size_t capacity;         /* ready work messages before publish waits */
    struct fifo q[DIST_CONTROL]; /* work, dead, results */
    size_t unacked[DIST_CONTROL];
    struct mem_handle *subs; /* handles consuming control, each with its own FIFO */
    struct mem_msg *job;     /* the job description (dist_job_put), NULL when none */
};

struct mem_handle {
    struct dist_queue base;
    struct mem_broker *b;
    struct fifo ctl;   /* control messages for this handle (fanout copy) */
    struct fifo taken; /* delivered, not yet settled */
    struct mem_handle *next_sub;
    uint64_t next_tag;
};

static const struct dist_ops mem_ops;

static void fifo_push_tail(struct fifo *f, struct mem_msg *m)
{
    m->next = NULL;
    m->prev = f->tail;
    if (f->tail)
        f->tail->next = m;
    else
        f->head = m;
    f->tail = m;
    f->n++;
}

/* Requeued messages go to the front, as RabbitMQ puts them back in their
 * original place as far as it can. */
static void fifo_push_head(struct fifo *f, struct mem_msg *m)
{
    m->prev = NULL;
    m->next = f->head;
    if (f->head)
        f->head->prev = m;
    else
        f->tail = m;
    f->head = m;
    f->n++;
}

static void fifo_unlink(struct fifo *f, struct mem_msg *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else
        f->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        f->tail = m->prev;
    m->prev = m->next = NULL;
    f->n--;
}

static void fifo_free_all(struct fifo *f)
{
    struct mem_msg *m = f->head;
    while (m) {
        struct mem_msg *next = m->next;
        free(m);
        m = next;
    }
    f->head = f->tail = NULL;
    f->n = 0;
}

static struct mem_msg *msg_new(enum dist_kind kind, const void *body, size_t len)
{
    struct mem_msg *m = calloc(1, sizeof *m + len);
    if (!m)
        return NULL;
    m->kind = kind;
    m->len = len;
    if (len)
        memcpy(m->body, body, len);
    return m;
}

static struct mem_handle *handle_new(struct mem_broker *b, const struct dist_queue_opts *o,
                                     const char *prefix, haul_error *err)
{
    struct mem_handle *h = calloc(1, sizeof *h);
    if (!h) {
        err_set(err, HAUL_ENOMEM, "in-process queue: out of memory");
        return NULL;
    }
    h->base.ops = &mem_ops;
    if (dist_opts_fill(&h->base, o, prefix, err) < 0) {
        free(h);
        return NULL;
    }
    snprintf(h->base.url, sizeof h->base.url, "in-process");
    h->b = b;
    pthread_mutex_lock(&b->lock);
    b->refs++;
    if (h->base.opts.consume & DIST_CONSUME(DIST_CONTROL)) {
        h->next_sub = b->subs;
        b->subs = h;
    }
    pthread_mutex_unlock(&b->lock);
    return h;
}

struct dist_queue *dist_mem_open(const struct dist_queue_opts *o, haul_error *err)
{
    struct mem_broker *b = calloc(1, sizeof *b);
    if (!b) {
        err_set(err, HAUL_ENOMEM, "in-process queue: out of memory");
        return NULL;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->changed, &ca);
    pthread_condattr_destroy(&ca);
    b->capacity = o && o->capacity ? o->capacity : 4096;
    struct mem_handle *h = handle_new(b, o, NULL, err);
    if (!h) {
        pthread_cond_destroy(&b->changed);
        pthread_mutex_destroy(&b->lock);
        free(b);
        return NULL;
    }
    return &h->base;
}

static struct dist_queue *mem_clone(struct dist_queue *q, const struct dist_queue_opts *o,
                                    haul_error *err)
{
    struct mem_handle *h = (struct mem_handle *)q;
    struct mem_handle *c = handle_new(h->b, o, q->prefix, err);
    return c ? &c->base : NULL;
}

static void mem_free(struct dist_queue *q)
{
    struct mem_handle *h = (struct mem_handle *)q;
    struct mem_broker *b = h->b;
    pthread_mutex_lock(&b->lock);
    /* What the handle holds goes back, as when a consumer's connection ends. */
    while (h->taken.tail) {
        struct mem_msg *m = h->taken.tail;
        fifo_unlink(&h->taken, m);
        m->redelivered = true;
        b->unacked[m->kind]--;
        fifo_push_head(&b->q[m->kind], m);
    }
    for (struct mem_handle **p = &b->subs; *p; p = &(*p)->next_sub)
        if (*p == h) {
            *p = h->next_sub;
            break;
        }
    fifo_free_all(&h->ctl);
    bool last = --b->refs == 0;
    pthread_cond_broadcast(&b->changed);
    pthread_mutex_unlock(&b->lock);
    free(h);
    if (last) {
        for (int k = 0; k < DIST_CONTROL; k++)
            fifo_free_all(&b->q[k]);
        free(b->job);
        pthread_cond_destroy(&b->changed);
        pthread_mutex_destroy(&b->lock);
        free(b);
    }
}

static void deadline_after(struct timespec *ts, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int mem_publish(struct dist_queue *q, enum dist_kind kind, const void *body, size_t len,
                       haul_error *err)
{
    struct mem_handle *h = (struct mem_handle *)q;
    struct mem_broker *b = h->b;
    pthread_mutex_lock(&b->lock);
    if (kind == DIST_CONTROL) {
        /* Fanout: one copy per subscribed handle; none subscribed, none sent. */
        for (struct mem_handle *s = b->subs; s; s = s->next_sub) {
            struct mem_msg *m = msg_new(kind, body, len);
            if (!m) {
                pthread_mutex_unlock(&b->lock);
                return err_set(err, HAUL_ENOMEM, "in-process queue: out of memory");
            }
            fifo_push_tail(&s->ctl, m);
        }
    } else {
        while (kind == DIST_WORK && b->q[DIST_WORK].n >= b->capacity)
            pthread_cond_wait(&b->changed, &b->lock);
        struct mem_msg *m = msg_new(kind, body, len);
        if (!m) {
            pthread_mutex_unlock(&b->lock);
            return err_set(err, HAUL_ENOMEM, "in-process queue: out of memory");
        }
        fifo_push_tail(&b->q[kind], m);
    }
    pthread_cond_broadcast(&b->changed);
    pthread_mutex_unlock(&b->lock);
    return 0;
}

static int mem_flush(struct dist_queue *q, int timeout_ms, haul_error *err)
{
    (void)q;
    (void)timeout_ms;
    (void)err;
    return 0; /* a publish is complete when it returns */
}

static int mem_poll(struct dist_queue *q, haul_error *err)
{
    (void)q;
    (void)err;
    return 0; /* nothing to keep alive */
}

/* The FIFO dist_next takes from next, in priority order, or NULL. */
static struct fifo *ready_fifo(struct mem_handle *h)
{
    static const enum dist_kind order[] = {DIST_RESULTS, DIST_WORK, DIST_DEAD};
    unsigned consume = h->base.opts.consume;
    if ((consume & DIST_CONSUME(DIST_CONTROL)) && h->ctl.n)
        return &h->ctl;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if ((consume & DIST_CONSUME(order[i])) && h->b->q[order[i]].n)
            return &h->b->q[order[i]];
    return NULL;
}

static int mem_next(struct dist_queue *q, struct dist_msg *out, int timeout_ms, haul_error *err)
{
    (void)err;
    struct mem_handle *h = (struct mem_handle *)q;
    struct mem_broker *b = h->b;
    struct timespec deadline;
    if (timeout_ms > 0)
        deadline_after(&deadline, timeout_ms);
    pthread_mutex_lock(&b->lock);
    struct fifo *f;
    while (!(f = ready_fifo(h))) {
        if (timeout_ms == 0 ||
            (timeout_ms > 0 && pthread_cond_timedwait(&b->changed, &b->lock, &deadline) == ETIMEDOUT)) {
            pthread_mutex_unlock(&b->lock);
            return 0;
        }
        if (timeout_ms < 0)
            pthread_cond_wait(&b->changed, &b->lock);
    }
    struct mem_msg *m = f->head;
    fifo_unlink(f, m);
    m->tag = ++h->next_tag;
    fifo_push_tail(&h->taken, m);
    if (m->kind != DIST_CONTROL)
        b->unacked[m->kind]++;
    pthread_cond_broadcast(&b->changed); /* a full work queue has room */
    pthread_mutex_unlock(&b->lock);
    out->kind = m->kind;
    out->body = m->body;
    out->len = m->len;
    out->redelivered = m->redelivered;
    out->tag = m->tag;
    out->impl = m;
    return 1;
}

static int mem_settle(struct dist_queue *q, struct dist_msg *msg, bool ack, bool requeue,
                      haul_error *err)
{
    struct mem_handle *h = (struct mem_handle *)q;
    struct mem_broker *b = h->b;
    struct mem_msg *m = msg->impl;
    if (!m)
        return err_set(err, HAUL_EUSAGE, "in-process queue: message settled twice");
    msg->impl = NULL;
    msg->body = NULL;
    pthread_mutex_lock(&b->lock);
    fifo_unlink(&h->taken, m);
    if (m->kind != DIST_CONTROL)
        b->unacked[m->kind]--;
    if (ack || m->kind == DIST_CONTROL || (!requeue && m->kind != DIST_WORK)) {
        free(m);
    } else if (requeue) {
        m->redelivered = true;
        fifo_push_head(&b->q[m->kind], m);
    } else {
        /* Dead-lettered like RabbitMQ does: a fresh message, not redelivered. */
        m->kind = DIST_DEAD;
        m->redelivered = false;
        fifo_push_tail(&b->q[DIST_DEAD], m);
    }
    pthread_cond_broadcast(&b->changed);
    pthread_mutex_unlock(&b->lock);
    return 0;
}

static int mem_depth(struct dist_queue *q, enum dist_kind kind, struct dist_depth *out,
                     haul_error *err)
{
    (void)err;
    struct mem_handle *h = (struct mem_handle *)q;
    struct mem_broker *b = h->b;
    pthread_mutex_lock(&b->lock);
    out->ready = b->q[kind].n;
    out->unacked = (int64_t)b->unacked[kind];
    out->consumers = 0; /* in process, consumers are not attached to queues */
    pthread_mutex_unlock(&b->lock);
    return 0;
}

static int mem_destroy(struct dist_queue *q, haul_error *err)
{
    (void)err;
    struct mem_handle *h = (struct mem_handle *)q;
    struct mem_broker *b = h->b;
    pthread_mutex_lock(&b->lock);
    for (int k = 0; k < DIST_CONTROL; k++)
        fifo_free_all(&b->q[k]);
    pthread_cond_broadcast(&b->changed);
    pthread_mutex_unlock(&b->lock);
    return 0;
}

static int mem_job_put(struct dist_queue *q, const void *body, size_t len, haul_error *err)
{
    struct mem_handle *h = (struct mem_handle *)q;
    struct mem_msg *m = msg_new(DIST_WORK, body, len);
    if (!m)
        return err_set(err, HAUL_ENOMEM, "in-process queue: out of memory");
    pthread_mutex_lock(&h->b->lock);
    free(h->b->job);
    h->b->job = m;
    pthread_mutex_unlock(&h->b->lock);
    return 0;
}

static int mem_job_get(struct dist_queue *q, struct strbuf *out, haul_error *err)
{
    struct mem_handle *h = (struct mem_handle *)q;
    int rc = 0;
    strbuf_reset(out);
    pthread_mutex_lock(&h->b->lock);
    if (h->b->job)
        rc = strbuf_add(out, h->b->job->body, h->b->job->len) < 0
                 ? err_set(err, HAUL_ENOMEM, "in-process queue: out of memory") : 1;
    pthread_mutex_unlock(&h->b->lock);
    return rc;
}

static const struct dist_ops mem_ops = {
    .job_put = mem_job_put,
    .job_get = mem_job_get,
    .clone = mem_clone,
    .free = mem_free,
    .publish = mem_publish,
    .flush = mem_flush,
    .poll = mem_poll,
    .next = mem_next,
    .settle = mem_settle,
    .depth = mem_depth,
    .destroy = mem_destroy,
};

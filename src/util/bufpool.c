/* util/bufpool: a blocking pool of large buffers (see bufpool.h). */
#include "util/bufpool.h"

#include <pthread.h>
#include <stdlib.h>

struct bufpool {
    pthread_mutex_t lock; /* guards free_list, n_free, bytes */
    pthread_cond_t available;
    struct buf *bufs;
    struct buf **free_list;
    size_t count, n_free, bytes;
};

struct bufpool *bufpool_new(size_t count, size_t size)
{
    (void)size; /* buffers are sized on first take */
    struct bufpool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->bufs = calloc(count, sizeof *p->bufs);
    p->free_list = calloc(count, sizeof *p->free_list);
    if (!p->bufs || !p->free_list) {
        free(p->bufs);
        free(p->free_list);
        free(p);
        return NULL;
    }
    for (size_t i = 0; i < count; i++)
        p->free_list[i] = &p->bufs[i];
    p->count = p->n_free = count;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->available, NULL);
    return p;
}

void bufpool_free(struct bufpool *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->count; i++)
        free(p->bufs[i].data);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->available);
    free(p->bufs);
    free(p->free_list);
    free(p);
}

struct buf *bufpool_take(struct bufpool *p, size_t size)
{
    pthread_mutex_lock(&p->lock);
    while (p->n_free == 0)
        pthread_cond_wait(&p->available, &p->lock);
    struct buf *b = p->free_list[--p->n_free];
    pthread_mutex_unlock(&p->lock);
    if (b->cap < size) {
        /* Page-aligned so O_DIRECT reads can fill it. */
        void *data = NULL;
        if (posix_memalign(&data, 4096, size) != 0) {
            bufpool_give(p, b);
            return NULL;
        }
        pthread_mutex_lock(&p->lock);
        p->bytes += size - b->cap;
        pthread_mutex_unlock(&p->lock);
        free(b->data);
        b->data = data;
        b->cap = size;
    }
    b->len = 0;
    return b;
}

void bufpool_give(struct bufpool *p, struct buf *b)
{
    pthread_mutex_lock(&p->lock);
    p->free_list[p->n_free++] = b;
    pthread_cond_signal(&p->available);
    pthread_mutex_unlock(&p->lock);
}

size_t bufpool_bytes(struct bufpool *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->bytes;
    pthread_mutex_unlock(&p->lock);
    return n;
}

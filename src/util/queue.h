/* util/queue: a bounded blocking FIFO of pointers between threads.  Push
 * blocks while full, pop while empty; after close, pop drains what is left
 * and then returns NULL, push fails. */
#ifndef UTIL_QUEUE_H
#define UTIL_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

struct queue;

struct queue *queue_new(size_t capacity);
void queue_free(struct queue *q); /* NULL is a no-op */
/* Returns 0, or -1 when the queue was closed. */
int queue_push(struct queue *q, void *item);
/* Returns the oldest item, or NULL once closed and empty. */
void *queue_pop(struct queue *q);
void queue_close(struct queue *q);

#endif

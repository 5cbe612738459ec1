/* dist/tracker: expected and done unit ids in one open-addressing hash
 * table (see tracker.h). */
#include "dist/tracker.h"

#include <stdlib.h>
#include <string.h>

enum { ID_EXPECTED = 1, ID_DONE = 2, ID_EARLY = 3 };

struct early {
    uint64_t base;
    uint32_t children;
    size_t ncounters;
    uint64_t counters[DIST_RESULT_MAX_COUNTERS];
};

struct id_slot {
    uint64_t id;
    unsigned char state; /* 0: free */
    struct early *early; /* ID_EARLY: the result that came before it was expected */
};

struct dist_tracker {
    struct id_slot *slots;
    size_t cap, used;
    uint64_t outstanding, done;
    dist_tracker_fn on_done;
    void *ctx;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static struct id_slot *slot_find(struct dist_tracker *t, uint64_t id)
{
    size_t i = (size_t)mix(id) & (t->cap - 1);
    while (t->slots[i].state && t->slots[i].id != id)
        i = (i + 1) & (t->cap - 1);
    return &t->slots[i];
}

static int grow(struct dist_tracker *t)
{
    if (t->cap && (t->used + 1) * 4 < t->cap * 3)
        return 0;
    size_t old_cap = t->cap;
    struct id_slot *old = t->slots;
    t->cap = old_cap ? old_cap * 2 : 4096;
    t->slots = calloc(t->cap, sizeof *t->slots);
    if (!t->slots) {
        t->slots = old;
        t->cap = old_cap;
        return -1;
    }
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].state)
            *slot_find(t, old[i].id) = old[i];
    free(old);
    return 0;
}

struct dist_tracker *dist_tracker_new(dist_tracker_fn on_done, void *ctx)
{
    struct dist_tracker *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->on_done = on_done;
    t->ctx = ctx;
    if (grow(t) < 0) {
        free(t);
        return NULL;
    }
    return t;
}

void dist_tracker_free(struct dist_tracker *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->cap; i++)
        free(t->slots[i].early);
    free(t->slots);
    free(t);
}

int dist_tracker_done(struct dist_tracker *t, uint64_t id, uint64_t base, uint32_t children,
                      const uint64_t *counters, size_t ncounters)
{
    if (grow(t) < 0)
        return -1;
    if (ncounters > DIST_RESULT_MAX_COUNTERS)
        ncounters = DIST_RESULT_MAX_COUNTERS;
    struct id_slot *s = slot_find(t, id);
    if (s->state == ID_DONE || s->state == ID_EARLY)
        return 0; /* a duplicate (redelivered unit) */
    if (s->state == 0) { /* not expected (yet): keep it aside */
        struct early *e = calloc(1, sizeof *e);
        if (!e)
            return -1;
        e->base = base;
        e->children = children;
        e->ncounters = ncounters;
        if (ncounters)
            memcpy(e->counters, counters, ncounters * sizeof *counters);
        s->id = id;
        s->state = ID_EARLY;
        s->early = e;
        t->used++;
        return 0;
    }
    s->state = ID_DONE;
    t->outstanding--;
    t->done++;
    if (t->on_done)
        t->on_done(counters, ncounters, t->ctx);
    for (uint32_t i = 0; i < children; i++)
        if (dist_tracker_expect(t, dist_unit_child_id(base ? base : id, i)) < 0)
            return -1;
    return 0;
}

int dist_tracker_expect(struct dist_tracker *t, uint64_t id)
{
    if (grow(t) < 0)
        return -1;
    struct id_slot *s = slot_find(t, id);
    if (s->state == ID_EXPECTED || s->state == ID_DONE)
        return 0;
    t->outstanding++;
    if (s->state == ID_EARLY) {
        struct early *e = s->early;
        s->early = NULL;
        s->state = ID_EXPECTED;
        int rc = dist_tracker_done(t, id, e->base, e->children, e->counters, e->ncounters);
        free(e);
        return rc;
    }
    s->id = id;
    s->state = ID_EXPECTED;
    t->used++;
    return 0;
}

bool dist_tracker_seen(struct dist_tracker *t, uint64_t id)
{
    const struct id_slot *s = slot_find(t, id);
    return s->state == ID_DONE || s->state == ID_EARLY;
}

uint64_t dist_tracker_outstanding(const struct dist_tracker *t)
{
    return t->outstanding;
}

uint64_t dist_tracker_done_count(const struct dist_tracker *t)
{
    return t->done;
}

/* dist/tracker: expected and done unit ids in one open-addressing hash
 * table (see tracker.h). */
#include "dist/tracker.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"

enum { ID_EXPECTED = 1, ID_DONE = 2, ID_EARLY = 3 };

struct early {
    uint64_t base;
    uint32_t children;
    size_t ncounters;
    uint64_t counters[DIST_RESULT_MAX_COUNTERS];
    size_t payload_len;
    unsigned char payload[]; /* a copy */
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

static int no_memory(haul_error *err)
{
    return err_set(err, HAUL_ENOMEM, "out of memory (counting units)");
}

/* Keeps a result that came before its id was expected. */
static int early_keep(struct dist_tracker *t, struct id_slot *s, const struct dist_done *d, uint64_t base,
                      uint32_t children, haul_error *err)
{
    struct early *e = calloc(1, sizeof *e + d->payload_len);
    if (!e)
        return no_memory(err);
    e->base = base;
    e->children = children;
    e->ncounters = d->ncounters < DIST_RESULT_MAX_COUNTERS ? d->ncounters : DIST_RESULT_MAX_COUNTERS;
    if (e->ncounters)
        memcpy(e->counters, d->counters, e->ncounters * sizeof *e->counters);
    e->payload_len = d->payload_len;
    if (d->payload_len)
        memcpy(e->payload, d->payload, d->payload_len);
    s->id = d->id;
    s->state = ID_EARLY;
    s->early = e;
    t->used++;
    return 0;
}

int dist_tracker_done(struct dist_tracker *t, const struct dist_done *d, uint64_t base, uint32_t children,
                      haul_error *err)
{
    if (grow(t) < 0)
        return no_memory(err);
    struct id_slot *s = slot_find(t, d->id);
    if (s->state == ID_DONE || s->state == ID_EARLY)
        return 0; /* a duplicate (redelivered unit) */
    if (s->state == 0) /* not expected (yet) */
        return early_keep(t, s, d, base, children, err);
    s->state = ID_DONE; /* s is not used below: the callback may grow the table */
    t->outstanding--;
    t->done++;
    if (t->on_done) {
        int rc = t->on_done(d, t->ctx, err);
        if (rc < 0)
            return rc;
    }
    for (uint32_t i = 0; i < children; i++) {
        int rc = dist_tracker_expect(t, dist_unit_child_id(base ? base : d->id, i), err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int dist_tracker_expect(struct dist_tracker *t, uint64_t id, haul_error *err)
{
    if (grow(t) < 0)
        return no_memory(err);
    struct id_slot *s = slot_find(t, id);
    if (s->state == ID_EXPECTED || s->state == ID_DONE)
        return 0;
    t->outstanding++;
    if (s->state == ID_EARLY) {
        struct early *e = s->early;
        s->early = NULL;
        s->state = ID_EXPECTED;
        struct dist_done d = {.id = id, .counters = e->counters, .ncounters = e->ncounters,
                              .payload = e->payload_len ? e->payload : NULL, .payload_len = e->payload_len};
        int rc = dist_tracker_done(t, &d, e->base, e->children, err);
        free(e);
        return rc;
    }
    s->id = id;
    s->state = ID_EXPECTED;
    t->used++;
    return 0;
}

uint64_t dist_tracker_outstanding(const struct dist_tracker *t)
{
    return t->outstanding;
}

uint64_t dist_tracker_done_count(const struct dist_tracker *t)
{
    return t->done;
}

/* dist/tracker: a coordinator's count of outstanding units (dist.h,
 * "Completion").  It holds the ids it expects (the seeds, then the children
 * of every unit reported done, derived with dist_unit_child_id) and those
 * done; outstanding = expected - done, the pass is over at 0.
 *
 * A result for an id already done is a redelivery's duplicate: ignored,
 * counters and payload included, so each unit counts exactly once.  A
 * result for an id not expected (yet) is kept aside (counters and payload
 * copied): it may be a child whose result overtook its parent's, and is
 * counted when the parent's result names it.  Results of an older run never
 * are (random seed ids), nor those of the children a redelivered unit
 * published under its fresh id base when its first result was taken
 * already (orphans: their work is done twice, their payloads never used).
 *
 * Memory: one 24-byte slot per unit id seen, plus one record per result
 * that came early (with its payload). */
#ifndef DIST_TRACKER_H
#define DIST_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <haul/error.h>

#include "dist/dist.h"

/* What a unit's result carried, handed over once the unit counts as done. */
struct dist_done {
    uint64_t id;
    const uint64_t *counters;
    size_t ncounters;
    const void *payload; /* NULL/0: none */
    size_t payload_len;
};

/* Called once per unit counted done, and only then.  < 0 (err filled)
 * fails the dist_tracker_done or dist_tracker_expect that counted it. */
typedef int (*dist_tracker_fn)(const struct dist_done *d, void *ctx, haul_error *err);

struct dist_tracker;

struct dist_tracker *dist_tracker_new(dist_tracker_fn on_done, void *ctx);
void dist_tracker_free(struct dist_tracker *t);

/* A unit published by the coordinator itself (a seed).  < 0: out of
 * memory, or the callback failed for a result that had come early. */
int dist_tracker_expect(struct dist_tracker *t, uint64_t id, haul_error *err);

/* Unit d->id reported done, having published `children` units with ids
 * dist_unit_child_id(base, i) (base 0: the id).  < 0: out of memory, or
 * the callback failed. */
int dist_tracker_done(struct dist_tracker *t, const struct dist_done *d, uint64_t base, uint32_t children,
                      haul_error *err);


uint64_t dist_tracker_outstanding(const struct dist_tracker *t);
uint64_t dist_tracker_done_count(const struct dist_tracker *t);

#endif

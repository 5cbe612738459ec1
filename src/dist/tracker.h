/* dist/tracker: a coordinator's count of outstanding units (dist.h,
 * "Completion").  It holds the ids it expects (the seeds, then the children
 * of every unit reported done, derived with dist_unit_child_id) and those
 * done; outstanding = expected - done, the pass is over at 0.
 *
 * A result for an id already done is a redelivery's duplicate: ignored,
 * counters included, so counters are exactly once per unit.  A result for
 * an id not expected (yet) is kept aside (with its counters): it may be a
 * child whose result overtook its parent's, and is counted when the
 * parent's result names it; results of an older run never are (random
 * seed ids), so they are harmless.
 *
 * Memory: one 24-byte slot per unit id seen, plus one record per result
 * that came early. */
#ifndef DIST_TRACKER_H
#define DIST_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dist/dist.h"

/* Called once per unit counted done, with its result's counters. */
typedef void (*dist_tracker_fn)(const uint64_t *counters, size_t n, void *ctx);

struct dist_tracker;

struct dist_tracker *dist_tracker_new(dist_tracker_fn on_done, void *ctx);
void dist_tracker_free(struct dist_tracker *t);

/* A unit published by the coordinator itself (a seed).  -1: out of memory. */
int dist_tracker_expect(struct dist_tracker *t, uint64_t id);

/* Unit id reported done, having published `children` units with ids
 * dist_unit_child_id(base, i) (base 0: id).  -1: out of memory. */
int dist_tracker_done(struct dist_tracker *t, uint64_t id, uint64_t base, uint32_t children,
                      const uint64_t *counters, size_t ncounters);

/* True when a result for id was taken already (done, or kept aside). */
bool dist_tracker_seen(struct dist_tracker *t, uint64_t id);

uint64_t dist_tracker_outstanding(const struct dist_tracker *t);
uint64_t dist_tracker_done_count(const struct dist_tracker *t);

#endif

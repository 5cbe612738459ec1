/* util/graphite: counters to a Graphite (carbon) receiver in its plaintext
 * protocol, one "PREFIX.NAME VALUE TIMESTAMP\n" line per counter, over TCP.
 * A reporter thread samples the counters every interval and once more when
 * stopped.  The receiver being down never stops the job: a failed send is
 * logged once per outage and the next interval reconnects. */
#ifndef UTIL_GRAPHITE_H
#define UTIL_GRAPHITE_H

#include <haul/error.h>
#include <stddef.h>
#include <stdint.h>

struct graphite_metric {
    const char *name; /* dotted path below the prefix, [A-Za-z0-9_.-] */
    uint64_t value;
};

/* Fills up to cap metrics, returns how many.  Runs on the reporter thread. */
typedef size_t (*graphite_sample_fn)(struct graphite_metric *out, size_t cap, void *ctx);

struct graphite_reporter;

/* Starts reporting to host_port ("HOST:PORT", "[V6]:PORT") under prefix
 * every interval_s seconds.  Fails (HAUL_EUSAGE) on a malformed address or
 * prefix; the first connection is made by the first report. */
struct graphite_reporter *graphite_reporter_start(const char *host_port, const char *prefix, unsigned interval_s,
                                                  graphite_sample_fn sample, void *ctx, haul_error *err);

/* Sends a final sample, stops the thread, frees.  Returns the number of
 * reports that could not be delivered.  NULL is a no-op. */
unsigned graphite_reporter_stop(struct graphite_reporter *r);

#endif

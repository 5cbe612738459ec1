/* dist/internal: the transport vtable behind dist.h, shared by dist.c and the
 * two transports (mem.c in process, amqp.c over RabbitMQ).  Not for other
 * modules. */
#ifndef DIST_INTERNAL_H
#define DIST_INTERNAL_H

#include <amqp.h>

#include "dist/dist.h"

struct dist_ops {
    struct dist_queue *(*clone)(struct dist_queue *q, const struct dist_queue_opts *o,
                                haul_error *err);
    void (*free)(struct dist_queue *q);
    int (*publish)(struct dist_queue *q, enum dist_kind kind, const void *body, size_t len,
                   haul_error *err);
    int (*flush)(struct dist_queue *q, int timeout_ms, haul_error *err);
    int (*poll)(struct dist_queue *q, haul_error *err);
    int (*next)(struct dist_queue *q, struct dist_msg *out, int timeout_ms, haul_error *err);
    int (*settle)(struct dist_queue *q, struct dist_msg *msg, bool ack, bool requeue,
                  haul_error *err);
    int (*depth)(struct dist_queue *q, enum dist_kind kind, struct dist_depth *out,
                 haul_error *err);
    int (*destroy)(struct dist_queue *q, haul_error *err);
    int (*job_put)(struct dist_queue *q, const void *body, size_t len, haul_error *err);
    int (*job_get)(struct dist_queue *q, struct strbuf *out, haul_error *err);
};

/* The part every transport's handle starts with. */
struct dist_queue {
    const struct dist_ops *ops;
    struct dist_queue_opts opts; /* defaults filled in; prefix points at .prefix */
    char prefix[DIST_PREFIX_MAX + 1];
    char url[512]; /* without password */
    char run[DIST_JOB_ID_MAX + 1]; /* signatures' run id (dist_queue_set_run) */
};

/* Fills q->opts and q->prefix from o with defaults.  Returns 0 or an error
 * for a bad prefix. */
int dist_opts_fill(struct dist_queue *q, const struct dist_queue_opts *o, const char *prefix,
                   haul_error *err);

/* "<prefix>.<suffix>" of a kind into out (size n). */
void dist_queue_name(const struct dist_queue *q, enum dist_kind kind, char *out, size_t n);

/* The length of url before its query ("?name=value&..."). */
size_t dist_url_base_len(const char *url);
/* Parses url (without its query) into *ci as librabbitmq's amqp_parse_url
 * does, except that the userinfo ends at the last '@' so a password may hold
 * '/', '@' and ':' unencoded.  Returns the buffer ci's strings point into
 * (free it), or NULL when url is not a broker URL. */
char *dist_url_parse(const char *url, struct amqp_connection_info *ci);

struct dist_queue *dist_mem_open(const struct dist_queue_opts *o, haul_error *err);
struct dist_queue *dist_amqp_open(const char *url, const struct dist_queue_opts *o,
                                  haul_error *err);

#endif

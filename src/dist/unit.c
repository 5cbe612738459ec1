/* dist/unit: the codecs of the messages on haul's work queue (dist.h): work
 * units, results and control.  Queue contents are untrusted (anyone with
 * broker credentials can publish, and a buggy or older peer can too), so
 * decoding checks every length against what is left before reading it and
 * every value against its limit, and says what was wrong. */
#include "dist/dist.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/wire.h"

enum { TYPE_UNIT = 1, TYPE_RESULT = 2, TYPE_CONTROL = 3 };
static const char magic[4] = {'H', 'A', 'U', 'L'};

static void put_header(struct strbuf *sb, unsigned type)
{
    strbuf_add(sb, magic, sizeof magic);
    wire_put_u8(sb, DIST_MSG_VERSION);
    wire_put_u8(sb, type);
}

/* The optional payload trailer, when bytes are left: a u32 length (not 0)
 * and exactly that many bytes, copied to dst.  Returns the length. */
static size_t read_payload(struct wire_reader *r, void *dst)
{
    if (r->why || !r->left)
        return 0;
    if (r->left < 4) {
        wire_fail(r, "trailing bytes after the last field");
        return 0;
    }
    uint32_t n = wire_get_u32(r);
    if (!r->why && (n == 0 || n != r->left))
        wire_fail(r, n == 0 ? "empty payload" : n > r->left ? "truncated payload" : "trailing bytes after the last field");
    if (r->why)
        return 0;
    memcpy(dst, r->p, n);
    r->p += n;
    r->left = 0;
    return n;
}

static void check_header(struct wire_reader *r, unsigned type)
{
    if (!wire_need(r, sizeof magic))
        return;
    if (memcmp(r->p, magic, sizeof magic) != 0) {
        wire_fail(r, "bad magic (not a haul message)");
        return;
    }
    r->p += sizeof magic;
    r->left -= sizeof magic;
    unsigned version = wire_get_u8(r);
    if (!r->why && version != DIST_MSG_VERSION)
        wire_fail(r, "unsupported version");
    unsigned t = wire_get_u8(r);
    if (!r->why && t != type)
        wire_fail(r, t == TYPE_UNIT      ? "a work unit, not the expected message type"
                : t == TYPE_RESULT  ? "a result, not the expected message type"
                : t == TYPE_CONTROL ? "a control message, not the expected message type"
                                    : "unknown message type");
}

static int finish(struct wire_reader *r, const char *what, haul_error *err)
{
    if (!r->why && r->left)
        r->why = "trailing bytes after the last field";
    if (r->why)
        return err_set(err, HAUL_EPROTO, "malformed %s message: %s", what, r->why);
    return 0;
}

/* ---- validation ---- */

static bool job_id_ok(const char *s, size_t n)
{
    if (n == 0 || n > DIST_JOB_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == ':'))
            return false;
    }
    return true;
}

static bool node_ok(const char *s, size_t n)
{
    if (n > DIST_NODE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

int dist_path_check(const char *path, size_t len, const char **why)
{
    const char *w = NULL;
    if (len == 0)
        w = "empty path";
    else if (len > DIST_PATH_MAX)
        w = "path too long";
    else if (memchr(path, '\0', len))
        w = "NUL in path";
    else if (path[0] == '/')
        w = "absolute path";
    else if (len == 1 && path[0] == '.')
        w = NULL; /* the root: callers allow it where it makes sense */
    else {
        size_t start = 0;
        for (size_t i = 0; i <= len && !w; i++) {
            if (i < len && path[i] != '/')
                continue;
            size_t n = i - start;
            if (n == 0)
                w = "empty path component";
            else if (n > 255)
                w = "path component over 255 bytes";
            else if (n == 1 && path[start] == '.')
                w = "'.' path component";
            else if (n == 2 && path[start] == '.' && path[start + 1] == '.')
                w = "'..' path component";
            start = i + 1;
        }
    }
    if (why)
        *why = w;
    return w ? -1 : 0;
}

/* The unit's own checks, beyond its paths; NULL if fine. */
static const char *unit_shape_why(unsigned pass, unsigned kind, uint64_t offset, uint64_t length,
                                  size_t npaths)
{
    if (pass < DIST_PASS_COPY || pass > DIST_PASS_BACKUP)
        return "unknown pass";
    if (kind < DIST_UNIT_SCAN_DIR || kind > DIST_UNIT_FINISH)
        return "unknown unit kind";
    if (kind == DIST_UNIT_FILES ? npaths == 0 || npaths > DIST_UNIT_MAX_PATHS : npaths != 1)
        return "path count out of range for the unit kind";
    if (kind == DIST_UNIT_RANGE && (length == 0 || offset > UINT64_MAX - length))
        return "bad byte range";
    if (kind != DIST_UNIT_RANGE && (offset || length))
        return "byte range on a unit that is not RANGE";
    return NULL;
}

static const char *unit_path_why(unsigned kind, const char *p, size_t n)
{
    const char *why;
    if (dist_path_check(p, n, &why) < 0)
        return why;
    if (n == 1 && p[0] == '.' && kind != DIST_UNIT_SCAN_DIR)
        return "'.' (the root) is only a directory to scan";
    return NULL;
}

/* ---- units ---- */

int dist_unit_encode(const struct dist_unit *u, struct strbuf *out, haul_error *err)
{
    size_t jn = strnlen(u->job_id, sizeof u->job_id);
    if (!job_id_ok(u->job_id, jn))
        return err_set(err, HAUL_EUSAGE, "work unit %llu: bad job id '%.64s'",
                       (unsigned long long)u->id, u->job_id);
    const char *why = unit_shape_why(u->pass, u->kind, u->offset, u->length, u->npaths);
    if (!why && !u->paths)
        why = "no paths";
    for (size_t i = 0; !why && i < u->npaths; i++)
        if (!u->paths[i])
            why = "NULL path";
        else
            why = unit_path_why(u->kind, u->paths[i], strlen(u->paths[i]));
    if (why)
        return err_set(err, HAUL_EUSAGE, "work unit %llu of job %s: %s",
                       (unsigned long long)u->id, u->job_id, why);
    size_t start = out->len;
    put_header(out, TYPE_UNIT);
    wire_put_u64(out, u->id);
    wire_put_str(out, u->job_id, jn);
    wire_put_u8(out, u->pass);
    wire_put_u8(out, u->kind);
    if (u->kind == DIST_UNIT_RANGE) {
        wire_put_u64(out, u->offset);
        wire_put_u64(out, u->length);
    }
    wire_put_u32(out, (uint32_t)u->npaths);
    for (size_t i = 0; i < u->npaths; i++)
        wire_put_str(out, u->paths[i], strlen(u->paths[i]));
    if (u->payload_len) { /* the optional payload trailer */
        wire_put_u32(out, (uint32_t)u->payload_len);
        strbuf_add(out, u->payload, u->payload_len);
    }
    if (out->failed)
        return err_set(err, HAUL_ENOMEM, "work unit: out of memory");
    if (out->len - start > DIST_MSG_MAX)
        return err_set(err, HAUL_EUSAGE, "work unit %llu: %zu bytes encoded, over %u",
                       (unsigned long long)u->id, out->len - start, DIST_MSG_MAX);
    return 0;
}

int dist_unit_decode(const void *buf, size_t len, struct dist_unit *out, haul_error *err)
{
    memset(out, 0, sizeof *out);
    struct wire_reader r = {buf, len, NULL};
    if (len > DIST_MSG_MAX)
        wire_fail(&r, "over the message size limit");
    check_header(&r, TYPE_UNIT);
    out->id = wire_get_u64(&r);
    const unsigned char *job;
    size_t jn = wire_get_str(&r, &job);
    if (!r.why && !job_id_ok((const char *)job, jn))
        wire_fail(&r, "bad job id");
    unsigned pass = wire_get_u8(&r), kind = wire_get_u8(&r);
    uint64_t offset = 0, length = 0;
    if (kind == DIST_UNIT_RANGE) {
        offset = wire_get_u64(&r);
        length = wire_get_u64(&r);
    }
    uint32_t npaths = wire_get_u32(&r);
    if (!r.why)
        r.why = unit_shape_why(pass, kind, offset, length, npaths);
    /* Each path takes at least 2 bytes: a count that lies fails here, before
     * anything is allocated for it. */
    if (!r.why && r.left < (size_t)npaths * 2)
        wire_fail(&r, "truncated (path count larger than the message)");
    if (r.why)
        return finish(&r, "work unit", err);

    /* One block: the pointer array, then each path with its NUL; the paths
     * fit in what is left of the message plus one NUL each. */
    size_t ptrs = (size_t)npaths * sizeof(char *);
    char *mem = malloc(ptrs + r.left + npaths);
    if (!mem)
        return err_set(err, HAUL_ENOMEM, "work unit: out of memory");
    const char **paths = (const char **)(void *)mem;
    char *dst = mem + ptrs;
    for (uint32_t i = 0; i < npaths && !r.why; i++) {
        const unsigned char *p;
        size_t n = wire_get_str(&r, &p);
        if (r.why)
            break;
        r.why = unit_path_why(kind, (const char *)p, n);
        if (r.why)
            break;
        memcpy(dst, p, n);
        dst[n] = '\0';
        paths[i] = dst;
        dst += n + 1;
    }
    /* The payload fits in the block: each path used at most its bytes + 1
     * of the 2 + bytes it took in the message. */
    size_t plen = read_payload(&r, dst);
    int rc = finish(&r, "work unit", err);
    if (rc < 0) {
        free(mem);
        return rc;
    }
    memcpy(out->job_id, job, jn);
    out->job_id[jn] = '\0';
    out->pass = pass;
    out->kind = kind;
    out->offset = offset;
    out->length = length;
    out->npaths = npaths;
    out->paths = paths;
    out->payload = plen ? dst : NULL;
    out->payload_len = plen;
    out->mem = mem;
    return 0;
}

void dist_unit_release(struct dist_unit *u)
{
    if (!u)
        return;
    free(u->mem);
    u->mem = NULL;
    u->paths = NULL;
    u->npaths = 0;
    u->payload = NULL;
    u->payload_len = 0;
}

uint64_t dist_unit_child_id(uint64_t parent_id, uint64_t index)
{
    /* splitmix64's finalizer over both: well mixed, so children of different
     * parents do not collide in practice (64-bit ids, birthday bound). */
    uint64_t z = parent_id * 0x9e3779b97f4a7c15ULL + index + 0x632be59bd9b4e019ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ---- results ---- */

int dist_result_encode(const struct dist_result *r, struct strbuf *out, haul_error *err)
{
    size_t wn = strnlen(r->worker, sizeof r->worker);
    if (wn == 0 || !node_ok(r->worker, wn))
        return err_set(err, HAUL_EUSAGE, "result: bad worker name '%.64s'", r->worker);
    if (r->nunits > DIST_RESULT_MAX_UNITS)
        return err_set(err, HAUL_EUSAGE, "result: %zu units, at most %d", r->nunits,
                       DIST_RESULT_MAX_UNITS);
    size_t start = out->len;
    put_header(out, TYPE_RESULT);
    wire_put_str(out, r->worker, wn);
    wire_put_u64(out, r->files);
    wire_put_u64(out, r->bytes);
    wire_put_u64(out, r->skipped);
    wire_put_u64(out, r->failed);
    wire_put_u32(out, (uint32_t)r->nunits);
    for (size_t i = 0; i < r->nunits; i++) {
        wire_put_u64(out, r->units[i].unit_id);
        wire_put_u32(out, r->units[i].children);
        wire_put_u64(out, r->units[i].child_base);
    }
    if (r->ncounters > DIST_RESULT_MAX_COUNTERS)
        return err_set(err, HAUL_EUSAGE, "result: %zu counters, at most %d", r->ncounters,
                       DIST_RESULT_MAX_COUNTERS);
    if (r->ncounters || r->payload_len) {
        wire_put_u16(out, (unsigned)r->ncounters);
        for (size_t i = 0; i < r->ncounters; i++)
            wire_put_u64(out, r->counters[i]);
    }
    if (r->payload_len) {
        wire_put_u32(out, (uint32_t)r->payload_len);
        strbuf_add(out, r->payload, r->payload_len);
    }
    if (!out->failed && out->len - start > DIST_MSG_MAX)
        return err_set(err, HAUL_EUSAGE, "result: %zu bytes encoded, over %u", out->len - start, DIST_MSG_MAX);
    return out->failed ? err_set(err, HAUL_ENOMEM, "result: out of memory") : 0;
}

int dist_result_decode(const void *buf, size_t len, struct dist_result *out, haul_error *err)
{
    memset(out, 0, sizeof *out);
    struct wire_reader r = {buf, len, NULL};
    if (len > DIST_MSG_MAX)
        wire_fail(&r, "over the message size limit");
    check_header(&r, TYPE_RESULT);
    const unsigned char *w;
    size_t wn = wire_get_str(&r, &w);
    if (!r.why && (wn == 0 || !node_ok((const char *)w, wn)))
        wire_fail(&r, "bad worker name");
    uint64_t files = wire_get_u64(&r), bytes = wire_get_u64(&r), skipped = wire_get_u64(&r),
             failed = wire_get_u64(&r);
    uint32_t n = wire_get_u32(&r);
    if (!r.why && n > DIST_RESULT_MAX_UNITS)
        wire_fail(&r, "unit count over the limit");
    if (!r.why && r.left < (size_t)n * 20)
        wire_fail(&r, "truncated");
    if (r.why)
        return finish(&r, "result", err);
    /* One block: the units, then room for a payload (at most what is left). */
    struct dist_result_unit *units = NULL;
    size_t units_size = (size_t)n * sizeof *units;
    if (n || r.left) {
        units = calloc(1, units_size + r.left + 1);
        if (!units)
            return err_set(err, HAUL_ENOMEM, "result: out of memory");
    }
    for (uint32_t i = 0; i < n; i++) {
        units[i].unit_id = wire_get_u64(&r);
        units[i].children = wire_get_u32(&r);
        units[i].child_base = wire_get_u64(&r);
    }
    size_t nc = 0;
    if (!r.why && r.left) { /* the optional counters trailer */
        nc = wire_get_u16(&r);
        if (!r.why && nc > DIST_RESULT_MAX_COUNTERS)
            wire_fail(&r, "counter count out of range");
        if (!r.why && r.left < nc * 8)
            wire_fail(&r, "truncated");
        for (size_t i = 0; i < nc && !r.why; i++)
            out->counters[i] = wire_get_u64(&r);
        if (!r.why && nc == 0 && !r.left)
            wire_fail(&r, "empty counters trailer");
    }
    char *payload = units ? (char *)units + units_size : NULL;
    size_t plen = read_payload(&r, payload);
    int rc = finish(&r, "result", err);
    if (rc < 0) {
        free(units);
        return rc;
    }
    memcpy(out->worker, w, wn);
    out->worker[wn] = '\0';
    out->files = files;
    out->bytes = bytes;
    out->skipped = skipped;
    out->failed = failed;
    out->nunits = n;
    out->ncounters = nc;
    out->units = n ? units : NULL;
    out->payload = plen ? payload : NULL;
    out->payload_len = plen;
    out->mem = units;
    return 0;
}

void dist_result_release(struct dist_result *r)
{
    if (!r)
        return;
    free(r->mem);
    r->mem = NULL;
    r->units = NULL;
    r->nunits = 0;
    r->payload = NULL;
    r->payload_len = 0;
}

/* ---- control ---- */

static const char *control_why(unsigned op, uint32_t n)
{
    if (op < DIST_CTL_STOP || op > DIST_CTL_STATUS)
        return "unknown control operation";
    if (op == DIST_CTL_GROW ? n == 0 || n > 4096 : n != 0)
        return "thread count out of range for the operation";
    return NULL;
}

int dist_control_encode(const struct dist_control *c, struct strbuf *out, haul_error *err)
{
    size_t nn = strnlen(c->node, sizeof c->node);
    const char *why = control_why(c->op, c->n);
    if (!why && !node_ok(c->node, nn))
        why = "bad node name";
    if (why)
        return err_set(err, HAUL_EUSAGE, "control message: %s", why);
    put_header(out, TYPE_CONTROL);
    wire_put_u8(out, c->op);
    wire_put_u32(out, c->n);
    wire_put_str(out, c->node, nn);
    return out->failed ? err_set(err, HAUL_ENOMEM, "control message: out of memory") : 0;
}

int dist_control_decode(const void *buf, size_t len, struct dist_control *out, haul_error *err)
{
    memset(out, 0, sizeof *out);
    struct wire_reader r = {buf, len, NULL};
    if (len > DIST_MSG_MAX)
        wire_fail(&r, "over the message size limit");
    check_header(&r, TYPE_CONTROL);
    unsigned op = wire_get_u8(&r);
    uint32_t n = wire_get_u32(&r);
    const unsigned char *node;
    size_t nn = wire_get_str(&r, &node);
    if (!r.why)
        r.why = control_why(op, n);
    if (!r.why && !node_ok((const char *)node, nn))
        wire_fail(&r, "bad node name");
    int rc = finish(&r, "control", err);
    if (rc < 0)
        return rc;
    out->op = op;
    out->n = n;
    if (nn)
        memcpy(out->node, node, nn);
    out->node[nn] = '\0';
    return 0;
}

/* util/kv: see kv.h. */
#include "util/kv.h"

#include <inttypes.h>
#include <string.h>

#include "util/err.h"

static void kv_put_str(struct strbuf *sb, const char *key, const char *v)
{
    strbuf_adds(sb, key);
    strbuf_add(sb, " ", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p <= ' ' || *p == '%' || *p >= 0x7f)
            strbuf_addf(sb, "%%%02X", *p);
        else
            strbuf_add(sb, p, 1);
    }
    strbuf_add(sb, "\n", 1);
}

static void kv_put_num(struct strbuf *sb, const char *key, uint64_t v)
{
    strbuf_addf(sb, "%s %" PRIu64 "\n", key, v);
}

static int kv_next(const char **p, const char *end, const char **key, size_t *klen, const char **v, const char **vend)
{
    if (*p >= end)
        return 0;
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    const char *sp = nl ? memchr(*p, ' ', (size_t)(nl - *p)) : NULL;
    if (!nl || !sp)
        return -1;
    *key = *p;
    *klen = (size_t)(sp - *p);
    *v = sp + 1;
    *vend = nl;
    *p = nl + 1;
    return 1;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool kv_get_str(const char *p, const char *end, char *out, size_t cap)
{
    size_t n = 0;
    while (p < end) {
        int c = (unsigned char)*p++;
        if (c == '%') {
            if (end - p < 2 || hexval(p[0]) < 0 || hexval(p[1]) < 0)
                return false;
            c = hexval(p[0]) * 16 + hexval(p[1]);
            p += 2;
            if (c == 0)
                return false;
        }
        if (n + 1 >= cap)
            return false;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return true;
}

static bool kv_get_num(const char *p, const char *end, uint64_t *v)
{
    if (p == end || end - p > 20)
        return false;
    uint64_t x = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9' || x > (UINT64_MAX - 9) / 10)
            return false;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    *v = x;
    return true;
}

static uint64_t num_load(const void *at, size_t size)
{
    uint8_t u8;
    uint32_t u32;
    uint64_t u64 = 0;
    if (size == 1)
        return memcpy(&u8, at, 1), u8;
    if (size == 4)
        return memcpy(&u32, at, 4), u32;
    return memcpy(&u64, at, 8), u64;
}

static void num_store(void *at, size_t size, uint64_t v)
{
    uint8_t u8 = (uint8_t)v;
    uint32_t u32 = (uint32_t)v;
    if (size == 1)
        memcpy(at, &u8, 1);
    else if (size == 4)
        memcpy(at, &u32, 4);
    else
        memcpy(at, &v, 8);
}

int kv_encode(struct strbuf *sb, const char *head, const struct kv_field *fields, size_t n, const void *in,
              haul_error *err)
{
    strbuf_adds(sb, head);
    const char *base = in;
    for (const struct kv_field *f = fields; f < fields + n; f++) {
        if (f->kind == KV_STR) {
            kv_put_str(sb, f->key, base + f->offset);
        } else if (f->kind == KV_NUM) {
            kv_put_num(sb, f->key, num_load(base + f->offset, f->size));
        } else {
            size_t count;
            memcpy(&count, base + f->count, sizeof count);
            for (size_t i = 0; i < count && i < f->entries; i++)
                kv_put_str(sb, f->key, base + f->offset + i * f->size);
        }
    }
    return sb->failed ? err_set(err, HAUL_ENOMEM, "job description: out of memory") : 0;
}

/* One value into its member; false when bad. */
static bool field_take(const struct kv_field *f, const char *v, const char *vend, char *base)
{
    if (f->kind == KV_STR) {
        if (!kv_get_str(v, vend, base + f->offset, f->size))
            return false;
        size_t len = strlen(base + f->offset);
        return (!f->required || len) && (!f->max || (len >= f->min && len <= f->max));
    }
    if (f->kind == KV_NUM) {
        uint64_t x;
        uint64_t max = f->max ? f->max : f->size == 1 ? 1 : f->size == 4 ? UINT32_MAX : UINT64_MAX;
        if (!kv_get_num(v, vend, &x) || x < f->min || x > max)
            return false;
        num_store(base + f->offset, f->size, x);
        return true;
    }
    size_t count;
    memcpy(&count, base + f->count, sizeof count);
    if (count >= f->entries || !kv_get_str(v, vend, base + f->offset + count * f->size, f->size))
        return false;
    count++;
    memcpy(base + f->count, &count, sizeof count);
    return true;
}

int kv_decode(const void *buf, size_t len, const char *head, const struct kv_field *fields, size_t n, void *out,
              size_t out_size, haul_error *err)
{
    memset(out, 0, out_size);
    size_t hl = strlen(head);
    if (len < hl || memcmp(buf, head, hl) != 0)
        return err_set(err, HAUL_EPROTO, "job description: not a '%.*s' description",
                       (int)(hl && head[hl - 1] == '\n' ? hl - 1 : hl), head);
    const char *p = (const char *)buf + hl, *end = (const char *)buf + len;
    char *base = out;
    uint64_t seen = 0; /* a bit per row (tables are short) */
    const char *k, *v, *vend;
    size_t kn;
    int more;
    while ((more = kv_next(&p, end, &k, &kn, &v, &vend)) > 0) {
        for (size_t i = 0; i < n && i < 64; i++) {
            const struct kv_field *f = &fields[i];
            if (strlen(f->key) != kn || memcmp(f->key, k, kn) != 0)
                continue;
            if (!field_take(f, v, vend, base))
                return err_set(err, HAUL_EPROTO, "job description: bad value for '%s'", f->key);
            seen |= 1ull << i;
            break;
        }
    }
    if (more < 0)
        return err_set(err, HAUL_EPROTO, "job description: malformed line");
    for (size_t i = 0; i < n && i < 64; i++)
        if (fields[i].required && !(seen & (1ull << i)))
            return err_set(err, HAUL_EPROTO, "job description: '%s' missing", fields[i].key);
    return 0;
}

/*
 * Consistent hashing: XXH64, the ketama ring of an upstream and the hash key of a request.
 * The ring is built once per snapshot on the main thread; workers only read it.
 */
#include "upstream/hash_key.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* XXH64 (written from the published specification)                                           */

#define P64_1 0x9E3779B185EBCA87ull
#define P64_2 0xC2B2AE3D27D4EB4Full
#define P64_3 0x165667B19E3779F9ull
#define P64_4 0x85EBCA77C2B2AE63ull
#define P64_5 0x27D4EB2F165667C5ull

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* Little-endian loads, whatever the host's byte order (the algorithm is defined on them). */
static inline uint64_t load64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline uint32_t load32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t xxh_round(uint64_t acc, uint64_t input)
{
    acc += input * P64_2;
    acc = rotl64(acc, 31);
    return acc * P64_1;
}

static inline uint64_t xxh_merge(uint64_t acc, uint64_t v)
{
    acc ^= xxh_round(0, v);
    return acc * P64_1 + P64_4;
}

/* The 32-byte stripes of inputs of 32 bytes or more. */
static uint64_t xxh_stripes(const unsigned char **pp, const unsigned char *end, uint64_t seed)
{
    const unsigned char *p = *pp;
    uint64_t v1 = seed + P64_1 + P64_2, v2 = seed + P64_2, v3 = seed, v4 = seed - P64_1;
    do {
        v1 = xxh_round(v1, load64(p));
        v2 = xxh_round(v2, load64(p + 8));
        v3 = xxh_round(v3, load64(p + 16));
        v4 = xxh_round(v4, load64(p + 24));
        p += 32;
    } while (end - p >= 32);
    uint64_t h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
    h = xxh_merge(h, v1);
    h = xxh_merge(h, v2);
    h = xxh_merge(h, v3);
    h = xxh_merge(h, v4);
    *pp = p;
    return h;
}

uint64_t tp_hash64(const void *data, size_t len, uint64_t seed)
{
    static const unsigned char none[1];
    const unsigned char *p = data ? data : none, *end = p + len; /* NULL + 0 is UB in C */
    uint64_t h = len >= 32 ? xxh_stripes(&p, end, seed) : seed + P64_5;

    h += (uint64_t)len;
    for (; end - p >= 8; p += 8) {
        h ^= xxh_round(0, load64(p));
        h = rotl64(h, 27) * P64_1 + P64_4;
    }
    if (end - p >= 4) {
        h ^= (uint64_t)load32(p) * P64_1;
        h = rotl64(h, 23) * P64_2 + P64_3;
        p += 4;
    }
    for (; p < end; p++) {
        h ^= *p * P64_5;
        h = rotl64(h, 11) * P64_1;
    }
    h ^= h >> 33;
    h *= P64_2;
    h ^= h >> 29;
    h *= P64_3;
    h ^= h >> 32;
    return h;
}

/* ------------------------------------------------------------------------------------------ */
/* The ring                                                                                   */

static uint64_t gcd64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int point_cmp(const void *a, const void *b)
{
    const struct tp_ring_point *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->target < y->target ? -1 : x->target > y->target;
}

/* Points of target i: 160 per weight unit (the gcd), scaled down to fit the ring's cap. */
static uint64_t target_points(const struct tp_upstream *u, size_t i, uint64_t unit, uint64_t units,
                              uint64_t sum_w)
{
    uint64_t w = u->targets[i].weight;
    if (w == 0)
        return 0;
    if (units * TP_RING_POINTS_PER_UNIT <= TP_RING_MAX_POINTS)
        return w / unit * TP_RING_POINTS_PER_UNIT;
    uint64_t n = w * TP_RING_MAX_POINTS / sum_w;
    return n ? n : 1;
}

int tp_upstream_ring_build(struct tp_upstream *u)
{
    uint64_t unit = 0, units = 0, sum_w = 0, total = 0;

    tp_upstream_ring_free(u);
    for (size_t i = 0; i < u->num_targets; i++)
        unit = gcd64(unit, u->targets[i].weight);
    for (size_t i = 0; unit && i < u->num_targets; i++) {
        units += u->targets[i].weight / unit;
        sum_w += u->targets[i].weight;
    }
    for (size_t i = 0; unit && i < u->num_targets; i++)
        total += target_points(u, i, unit, units, sum_w);
    if (total == 0)
        return 0;
    struct tp_ring_point *ring = malloc(total * sizeof(*ring));
    if (!ring)
        return TP_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < u->num_targets; i++) {
        uint64_t n = target_points(u, i, unit, units, sum_w);
        for (uint64_t j = 0; j < n; j++) {
            char buf[400];
            int len =
                snprintf(buf, sizeof(buf), "%s#%llu", u->targets[i].name, (unsigned long long)j);
            size_t blen = len < 0 ? 0 : TP_MIN((size_t)len, sizeof(buf) - 1);
            ring[k].hash = tp_hash64(buf, blen, 0);
            ring[k].target = (uint32_t)i;
            k++;
        }
    }
    qsort(ring, k, sizeof(*ring), point_cmp);
    u->ring = ring;
    u->ring_len = k;
    return 0;
}

void tp_upstream_ring_free(struct tp_upstream *u)
{
    free(u->ring);
    u->ring = NULL;
    u->ring_len = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The key of a request                                                                       */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static struct tp_slice trim_ows(const char *p, const char *end)
{
    while (p < end && is_ows(*p))
        p++;
    while (end > p && is_ows(end[-1]))
        end--;
    return (struct tp_slice){p, (size_t)(end - p)};
}

static bool slice_eq(struct tp_slice a, struct tp_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/*
 * Every non-empty element of header `name`, chained through the seed as one sequence. Fields
 * are split on commas (OWS trimmed), so repeated fields and one comma-joined field give the
 * same key (RFC 9110 §5.3).
 */
static bool key_header(const struct tp_http_message *msg, struct tp_slice name, uint64_t *out)
{
    uint64_t h = 0;
    bool found = false;

    for (size_t i = 0; i < msg->num_headers; i++) {
        const struct tp_http_header *f = &msg->headers[i];
        if (f->value.len == 0 || !tp_slice_eq_nocase(f->name, name.ptr, name.len))
            continue;
        const char *p = f->value.ptr, *end = p + f->value.len;
        while (p < end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            struct tp_slice item = trim_ows(p, comma ? comma : end);
            if (item.len) {
                h = tp_hash64(item.ptr, item.len, h);
                found = true;
            }
            p = comma ? comma + 1 : end;
        }
    }
    if (found)
        *out = h;
    return found;
}

/* Value of cookie `name` in one Cookie field value (RFC 6265 §4.2.1), or {NULL, 0}. */
static struct tp_slice cookie_in(struct tp_slice v, struct tp_slice name)
{
    if (!v.ptr)
        return (struct tp_slice){NULL, 0};
    const char *p = v.ptr, *end = v.ptr + v.len;

    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *stop = semi ? semi : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        if (eq && slice_eq(trim_ows(p, eq), name))
            return trim_ows(eq + 1, stop);
        p = semi ? semi + 1 : end;
    }
    return (struct tp_slice){NULL, 0};
}

static bool key_cookie(const struct tp_http_message *msg, struct tp_slice name, uint64_t *out)
{
    for (size_t i = 0; i < msg->num_headers; i++) {
        const struct tp_http_header *f = &msg->headers[i];
        if (!TP_SLICE_IEQ(f->name, "cookie"))
            continue;
        struct tp_slice v = cookie_in(f->value, name);
        if (v.ptr) { /* the first cookie of that name decides, even when empty */
            if (v.len == 0)
                return false;
            *out = tp_hash64(v.ptr, v.len, 0);
            return true;
        }
    }
    return false;
}

static bool key_query_arg(struct tp_slice q, struct tp_slice name, uint64_t *out)
{
    if (!q.ptr) /* no query: the parser leaves {NULL, 0} */
        return false;
    const char *p = q.ptr, *end = q.ptr + q.len;

    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *name_end = eq ? eq : stop;
        if (slice_eq((struct tp_slice){p, (size_t)(name_end - p)}, name)) {
            if (!eq || stop == eq + 1)
                return false;
            *out = tp_hash64(eq + 1, (size_t)(stop - eq - 1), 0);
            return true;
        }
        p = amp ? amp + 1 : end;
    }
    return false;
}

static bool key_of(enum tp_hash_on on, struct tp_slice name, const struct tp_http_message *msg,
                   const char *client_ip, const char *norm_path, uint64_t *out)
{
    switch (on) {
    case TP_HASH_IP:
        if (!client_ip || !*client_ip)
            return false;
        *out = tp_hash64(client_ip, strlen(client_ip), 0);
        return true;
    case TP_HASH_PATH:
        if (!norm_path || !*norm_path)
            return false;
        *out = tp_hash64(norm_path, strlen(norm_path), 0);
        return true;
    case TP_HASH_HEADER:
        return msg && name.len && key_header(msg, name, out);
    case TP_HASH_COOKIE:
        return msg && name.len && key_cookie(msg, name, out);
    case TP_HASH_QUERY_ARG:
        return msg && name.len && key_query_arg(msg->query, name, out);
    case TP_HASH_NONE:
    default:
        return false;
    }
}

bool tp_request_key(enum tp_hash_on on, struct tp_slice name, const struct tp_http_message *msg,
                    const char *client_ip, const char *norm_path, uint64_t *out)
{
    return key_of(on, name, msg, client_ip, norm_path, out);
}

bool tp_upstream_hash_key(const struct tp_upstream *u, const struct tp_http_message *msg,
                          const char *client_ip, const char *norm_path, uint64_t *out)
{
    return key_of(u->hash_on, u->hash_on_name, msg, client_ip, norm_path, out) ||
           key_of(u->hash_fallback, u->hash_fallback_name, msg, client_ip, norm_path, out);
}

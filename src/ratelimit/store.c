/*
 * turnpike — the local rate-limit store (store.h): sharded hash table, per-shard locks, LRU
 * eviction and expiry of idle keys, and the process-wide registry of stores by namespace.
 */
#include "ratelimit/store.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SHARDS 64
#define MIN_SHARD_KEYS 16     /* > TP_RL_MAX_LIMITS: a request's own keys are never evicted */
#define SWEEP_PER_TAKE 2      /* idle keys freed per shard visit */

struct entry {
    struct entry *next;            /* hash chain */
    struct entry *older, *newer;   /* LRU order: shard->oldest ... shard->newest */
    uint64_t hash;
    struct tp_rl_limit limit;      /* a copy: the instance that made the key may be gone */
    struct tp_rl_state state;
    int64_t expires;               /* tp_rl_expiry after the last change */
    uint64_t pin;                  /* the take that uses it now (never evicted by that take) */
    uint16_t key_len;
    char key[];
};

struct shard {
    pthread_mutex_t lock;
    struct entry **buckets;
    size_t num_buckets;            /* power of two */
    size_t count;
    struct entry *oldest, *newest;
    uint64_t pin_seq;
} __attribute__((aligned(64)));

struct tp_rl_store {
    struct shard *shards;
    size_t num_shards;             /* power of two */
    size_t shard_cap;
    uint64_t seed;
    /* registry */
    char *ns;
    size_t refs;
    struct tp_rl_store *next;
};

/* ---- hashing -------------------------------------------------------------------------------- */

/* FNV-1a over the key, seeded per store and finished with a 64-bit avalanche (splitmix), so
 * that clients cannot aim their keys at one chain without knowing the seed. */
static uint64_t hash_key(uint64_t seed, const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

struct tp_slice tp_rl_key_fit(struct tp_slice key, char *buf)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[32];
    unsigned int mdlen = 0;

    if (key.len <= TP_RL_MAX_KEY)
        return key;
    memcpy(buf, "sha256:", 7);
    if (EVP_Digest(key.ptr, key.len, md, &mdlen, EVP_sha256(), NULL) != 1)
        memset(md, 0, sizeof(md)); /* never happens with the default provider */
    for (size_t i = 0; i < 32; i++) {
        buf[7 + 2 * i] = hex[md[i] >> 4];
        buf[8 + 2 * i] = hex[md[i] & 15];
    }
    return (struct tp_slice){buf, 7 + 64};
}

/* ---- store ---------------------------------------------------------------------------------- */

struct tp_rl_store *tp_rl_store_new(size_t max_keys)
{
    struct tp_rl_store *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (max_keys < 1)
        max_keys = 1;
    /* as many shards as keep MIN_SHARD_KEYS keys each, up to MAX_SHARDS */
    s->num_shards = 1;
    while (s->num_shards < MAX_SHARDS && max_keys / (s->num_shards * 2) >= MIN_SHARD_KEYS)
        s->num_shards *= 2;
    s->shard_cap = (max_keys + s->num_shards - 1) / s->num_shards;
    if (s->shard_cap < MIN_SHARD_KEYS)
        s->shard_cap = MIN_SHARD_KEYS;
    if (RAND_bytes((unsigned char *)&s->seed, sizeof(s->seed)) != 1)
        s->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)s;
    s->shards = aligned_alloc(64, s->num_shards * sizeof(struct shard));
    if (!s->shards) {
        free(s);
        return NULL;
    }
    memset(s->shards, 0, s->num_shards * sizeof(struct shard));
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    for (size_t i = 0; i < s->num_shards; i++)
        pthread_mutex_init(&s->shards[i].lock, &attr);
    pthread_mutexattr_destroy(&attr);
    return s;
}

static void entry_free(struct entry *e)
{
    tp_rl_state_free(&e->state);
    free(e);
}

void tp_rl_store_free(struct tp_rl_store *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->num_shards; i++) {
        struct shard *sh = &s->shards[i];
        for (struct entry *e = sh->oldest, *n; e; e = n) {
            n = e->newer;
            entry_free(e);
        }
        free(sh->buckets);
        pthread_mutex_destroy(&sh->lock);
    }
    free(s->shards);
    free(s->ns);
    free(s);
}

static struct shard *shard_of(struct tp_rl_store *s, uint64_t h)
{
    return &s->shards[(h >> 58) & (s->num_shards - 1)];
}

static void lru_unlink(struct shard *sh, struct entry *e)
{
    if (e->older)
        e->older->newer = e->newer;
    else
        sh->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        sh->newest = e->older;
    e->older = e->newer = NULL;
}

static void lru_push(struct shard *sh, struct entry *e)
{
    e->older = sh->newest;
    e->newer = NULL;
    if (sh->newest)
        sh->newest->newer = e;
    else
        sh->oldest = e;
    sh->newest = e;
}

static void entry_remove(struct shard *sh, struct entry *e)
{
    struct entry **pp = &sh->buckets[e->hash & (sh->num_buckets - 1)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    lru_unlink(sh, e);
    sh->count--;
    entry_free(e);
}

/* Free up to `max` idle keys from the old end of the shard. */
static void sweep(struct shard *sh, int64_t now, size_t max)
{
    for (size_t i = 0; i < max && sh->oldest; i++) {
        struct entry *e = sh->oldest;
        if (e->expires > now || e->pin == sh->pin_seq)
            break;
        entry_remove(sh, e);
    }
}

/* Forget the least recently used key that the running take does not use. */
static bool evict_one(struct shard *sh)
{
    for (struct entry *e = sh->oldest; e; e = e->newer)
        if (e->pin != sh->pin_seq) {
            entry_remove(sh, e);
            return true;
        }
    return false;
}

static int grow(struct shard *sh)
{
    size_t n = sh->num_buckets ? sh->num_buckets * 2 : 16;
    struct entry **b = calloc(n, sizeof(*b));
    if (!b)
        return TP_ENOMEM;
    for (size_t i = 0; i < sh->num_buckets; i++)
        for (struct entry *e = sh->buckets[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    free(sh->buckets);
    sh->buckets = b;
    sh->num_buckets = n;
    return 0;
}

/* The entry of key for limit l, created when absent; NULL when out of memory. */
static struct entry *lookup(struct tp_rl_store *s, struct shard *sh, uint64_t h,
                            const struct tp_rl_limit *l, struct tp_slice key, bool create)
{
    struct entry *e = NULL;
    if (sh->num_buckets)
        for (e = sh->buckets[h & (sh->num_buckets - 1)]; e; e = e->next)
            if (e->hash == h && e->key_len == key.len && memcmp(e->key, key.ptr, key.len) == 0)
                break;
    if (e) {
        if (e->limit.algo != l->algo || (l->algo == TP_RL_SLIDING_LOG &&
                                         e->limit.count != l->count)) {
            /* the configuration changed under the same key: start this key afresh */
            tp_rl_state_free(&e->state);
            if (tp_rl_state_init(l, &e->state) != 0) {
                entry_remove(sh, e);
                return NULL;
            }
        }
        e->limit = *l;
        lru_unlink(sh, e);
        lru_push(sh, e);
        return e;
    }
    if (!create)
        return NULL;
    if (sh->count >= s->shard_cap && !evict_one(sh))
        return NULL;
    if ((sh->count + 1 > sh->num_buckets) && grow(sh) != 0 && !sh->num_buckets)
        return NULL;
    e = calloc(1, sizeof(*e) + key.len);
    if (!e)
        return NULL;
    if (tp_rl_state_init(l, &e->state) != 0) {
        free(e);
        return NULL;
    }
    e->hash = h;
    e->limit = *l;
    e->key_len = (uint16_t)key.len;
    memcpy(e->key, key.ptr, key.len);
    e->next = sh->buckets[h & (sh->num_buckets - 1)];
    sh->buckets[h & (sh->num_buckets - 1)] = e;
    lru_push(sh, e);
    sh->count++;
    return e;
}

/* Lock the distinct shards of a take in ascending order (no deadlock between takes). */
static size_t lock_shards(struct shard **sorted, struct shard *const *of, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = k;
        bool seen = false;
        for (size_t m = 0; m < k; m++)
            seen |= sorted[m] == of[i];
        if (seen)
            continue;
        while (j > 0 && sorted[j - 1] > of[i]) {
            sorted[j] = sorted[j - 1];
            j--;
        }
        sorted[j] = of[i];
        k++;
    }
    for (size_t i = 0; i < k; i++)
        pthread_mutex_lock(&sorted[i]->lock);
    return k;
}

bool tp_rl_store_take(struct tp_rl_store *s, struct tp_rl_item *items, size_t n, int64_t now)
{
    struct shard *of[TP_RL_MAX_LIMITS], *locked[TP_RL_MAX_LIMITS];
    struct entry *e[TP_RL_MAX_LIMITS];
    uint64_t h[TP_RL_MAX_LIMITS];
    bool all = true;

    if (n > TP_RL_MAX_LIMITS)
        n = TP_RL_MAX_LIMITS;
    for (size_t i = 0; i < n; i++) {
        h[i] = hash_key(s->seed, items[i].key.ptr, items[i].key.len);
        of[i] = shard_of(s, h[i]);
    }
    size_t k = lock_shards(locked, of, n);
    for (size_t i = 0; i < k; i++) {
        locked[i]->pin_seq++;
        sweep(locked[i], now, SWEEP_PER_TAKE);
    }
    for (size_t i = 0; i < n; i++) {
        e[i] = lookup(s, of[i], h[i], items[i].limit, items[i].key, true);
        if (e[i])
            e[i]->pin = of[i]->pin_seq;
    }
    for (size_t i = 0; i < n; i++) {
        if (e[i]) {
            tp_rl_check(items[i].limit, &e[i]->state, now, &items[i].d);
        } else {
            /* no room for the key: admitted uncounted rather than refused */
            memset(&items[i].d, 0, sizeof(items[i].d));
            items[i].d.allowed = true;
            items[i].d.limit = items[i].limit->count;
            items[i].d.remaining = items[i].limit->count - 1;
        }
        all &= items[i].d.allowed;
    }
    for (size_t i = 0; i < n; i++) {
        if (all && e[i]) {
            tp_rl_commit(items[i].limit, &e[i]->state, now, &items[i].d);
            e[i]->expires = tp_rl_expiry(items[i].limit, &e[i]->state, now);
        } else if (!all && items[i].d.allowed) {
            items[i].d.remaining++; /* this request was not counted after all */
        }
    }
    for (size_t i = k; i-- > 0;)
        pthread_mutex_unlock(&locked[i]->lock);
    return all;
}

void tp_rl_store_release_one(struct tp_rl_store *s, const struct tp_rl_limit *limit,
                             struct tp_slice key)
{
    uint64_t h = hash_key(s->seed, key.ptr, key.len);
    struct shard *sh = shard_of(s, h);
    pthread_mutex_lock(&sh->lock);
    struct entry *e = lookup(s, sh, h, limit, key, false);
    if (e) {
        tp_rl_release(limit, &e->state);
        e->expires = tp_rl_expiry(limit, &e->state, 0);
    }
    pthread_mutex_unlock(&sh->lock);
}

size_t tp_rl_store_count(struct tp_rl_store *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->num_shards; i++) {
        pthread_mutex_lock(&s->shards[i].lock);
        n += s->shards[i].count;
        pthread_mutex_unlock(&s->shards[i].lock);
    }
    return n;
}

/* ---- registry ------------------------------------------------------------------------------- */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tp_rl_store *registry;

struct tp_rl_store *tp_rl_store_acquire(const char *ns, size_t max_keys)
{
    struct tp_rl_store *s;
    pthread_mutex_lock(&registry_lock);
    for (s = registry; s; s = s->next)
        if (strcmp(s->ns, ns) == 0)
            break;
    if (!s) {
        s = tp_rl_store_new(max_keys);
        if (s && !(s->ns = strdup(ns))) {
            tp_rl_store_free(s);
            s = NULL;
        }
        if (s) {
            s->next = registry;
            registry = s;
        }
    }
    if (s)
        s->refs++;
    pthread_mutex_unlock(&registry_lock);
    return s;
}

void tp_rl_store_release(struct tp_rl_store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&registry_lock);
    bool last = --s->refs == 0;
    if (last) {
        struct tp_rl_store **pp = &registry;
        while (*pp && *pp != s)
            pp = &(*pp)->next;
        if (*pp)
            *pp = s->next;
    }
    pthread_mutex_unlock(&registry_lock);
    if (last)
        tp_rl_store_free(s);
}

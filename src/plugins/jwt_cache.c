/*
 * turnpike — per-worker cache of successful JWS signature verifications (see jwt_cache.h).
 */
#include "plugins/jwt_cache.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

int tp_jwt_cache_new(size_t size, struct tp_jwt_cache **out)
{
    *out = NULL;
    if (size == 0 || size > TP_JWT_CACHE_MAX)
        return TP_EINVAL;
    size_t slots = 1;
    while (slots < size)
        slots <<= 1;
    struct tp_jwt_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return TP_ENOMEM;
    c->ways = (unsigned)TP_MIN(slots, (size_t)TP_JWT_CACHE_WAYS);
    c->num_sets = slots / c->ways;
    c->slots = calloc(slots, sizeof(*c->slots));
    c->hands = calloc(c->num_sets, sizeof(*c->hands));
    c->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    c->md = EVP_MD_CTX_new();
    int rc = TP_ENOMEM;
    if (!c->slots || !c->hands || !c->sha256 || !c->md)
        goto fail;
    rc = TP_EIO;
    if (RAND_bytes(c->salt, (int)sizeof(c->salt)) != 1)
        goto fail;
    *out = c;
    return 0;
fail:
    ERR_clear_error();
    tp_jwt_cache_free(c);
    return rc;
}

void tp_jwt_cache_free(void *vc)
{
    struct tp_jwt_cache *c = vc;
    if (!c)
        return;
    EVP_MD_CTX_free(c->md);
    EVP_MD_free(c->sha256);
    free(c->slots);
    free(c->hands);
    OPENSSL_cleanse(c->salt, sizeof(c->salt));
    free(c);
}

size_t tp_jwt_cache_capacity(const struct tp_jwt_cache *c)
{
    return c->num_sets * c->ways;
}

static void put_len(unsigned char b[8], size_t n)
{
    for (int i = 7; i >= 0; i--, n >>= 8)
        b[i] = (unsigned char)(n & 0xff);
}

int tp_jwt_cache_digest(struct tp_jwt_cache *c, const struct tp_jwt *t, const struct tp_jwt_key *k,
                        unsigned char out[TP_JWT_DIGEST_LEN])
{
    unsigned char in_len[8], sig_len[8];
    unsigned int n = 0;
    if (!k->has_id)
        return TP_EINVAL;
    put_len(in_len, t->signing_input.len);
    put_len(sig_len, t->sig_len);
    /* lengths first, so no two (input, signature) pairs feed the same bytes to the hash */
    int ok = EVP_DigestInit_ex2(c->md, c->sha256, NULL) == 1 &&
             EVP_DigestUpdate(c->md, c->salt, sizeof(c->salt)) == 1 &&
             EVP_DigestUpdate(c->md, k->id, sizeof(k->id)) == 1 &&
             EVP_DigestUpdate(c->md, in_len, sizeof(in_len)) == 1 &&
             EVP_DigestUpdate(c->md, t->signing_input.ptr, t->signing_input.len) == 1 &&
             EVP_DigestUpdate(c->md, sig_len, sizeof(sig_len)) == 1 &&
             EVP_DigestUpdate(c->md, t->sig, t->sig_len) == 1 &&
             EVP_DigestFinal_ex(c->md, out, &n) == 1 && n == TP_JWT_DIGEST_LEN;
    if (!ok) {
        ERR_clear_error();
        return TP_ENOMEM;
    }
    return 0;
}

/* The first slot of digest's set. The digest is a salted hash: its bytes are already
 * uniformly spread and unknown to clients. */
static struct tp_jwt_cache_entry *set_of(const struct tp_jwt_cache *c,
                                         const unsigned char d[TP_JWT_DIGEST_LEN], size_t *set)
{
    uint64_t h;
    memcpy(&h, d, sizeof(h));
    *set = (size_t)h & (c->num_sets - 1);
    return &c->slots[*set * c->ways];
}

static bool live(const struct tp_jwt_cache_entry *e, double now)
{
    return e->expires != 0 && (double)e->expires > now;
}

bool tp_jwt_cache_lookup(struct tp_jwt_cache *c, const unsigned char d[TP_JWT_DIGEST_LEN],
                         double now)
{
    size_t set;
    struct tp_jwt_cache_entry *e = set_of(c, d, &set);
    for (unsigned i = 0; i < c->ways; i++) {
        if (e[i].expires == 0 || CRYPTO_memcmp(e[i].digest, d, TP_JWT_DIGEST_LEN) != 0)
            continue;
        if (!live(&e[i], now)) {
            memset(&e[i], 0, sizeof(e[i]));
            break;
        }
        e[i].referenced = 1;
        c->stats.hits++;
        return true;
    }
    c->stats.misses++;
    return false;
}

/* CLOCK over one set: the first slot from the hand on that was not hit since the hand last
 * passed; the slots passed over lose their bit. Ends within two turns. */
static struct tp_jwt_cache_entry *clock_victim(struct tp_jwt_cache *c, struct tp_jwt_cache_entry *e,
                                               size_t set)
{
    for (;;) {
        unsigned h = c->hands[set];
        c->hands[set] = (uint8_t)((h + 1) % c->ways);
        if (!e[h].referenced)
            return &e[h];
        e[h].referenced = 0;
    }
}

void tp_jwt_cache_insert(struct tp_jwt_cache *c, const unsigned char d[TP_JWT_DIGEST_LEN],
                         double expires, double now)
{
    if (!(expires > now))
        return;
    /* rounded down: the entry never outlives the token's exp */
    uint32_t at = expires >= (double)UINT32_MAX ? UINT32_MAX : (uint32_t)expires;
    if ((double)at <= now)
        return;
    size_t set;
    struct tp_jwt_cache_entry *e = set_of(c, d, &set), *slot = NULL;
    for (unsigned i = 0; i < c->ways; i++) {
        if (e[i].expires != 0 && CRYPTO_memcmp(e[i].digest, d, TP_JWT_DIGEST_LEN) == 0) {
            e[i].expires = at;
            return;
        }
        if (!slot && !live(&e[i], now))
            slot = &e[i];
    }
    if (!slot) {
        slot = clock_victim(c, e, set);
        c->stats.evictions++;
    }
    memcpy(slot->digest, d, TP_JWT_DIGEST_LEN);
    slot->expires = at;
    slot->referenced = 0;
    c->stats.inserts++;
}

double tp_jwt_cache_expiry(const json_t *claims, double now)
{
    const json_t *exp = json_object_get(claims, "exp");
    double until = now + TP_JWT_CACHE_TTL;
    if (!exp)
        return until;
    if (!json_is_number(exp))
        return 0;
    return TP_MIN(json_number_value(exp), until);
}

int tp_jwt_verify_cached(struct tp_jwt_cache *c, const struct tp_jwt *t, const struct tp_jwt_key *k,
                         double now)
{
    unsigned char d[TP_JWT_DIGEST_LEN];
    if (!c || !k->has_id || !tp_jwt_key_allows(k, t->alg) || tp_jwt_cache_digest(c, t, k, d) != 0)
        return tp_jwt_verify(t, k);
    if (tp_jwt_cache_lookup(c, d, now))
        return 0;
    int rc = tp_jwt_verify(t, k);
    if (rc == 0)
        tp_jwt_cache_insert(c, d, tp_jwt_cache_expiry(t->claims, now), now);
    return rc;
}

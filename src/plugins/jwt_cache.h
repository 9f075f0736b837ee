/*
 * turnpike — a bounded cache of successful JWS signature verifications, one per worker.
 *
 * Clients send the same token for minutes, and an RSA signature check costs more than the
 * rest of a proxied request. The jwt plugin therefore remembers, per worker, which
 * (key, signing input, signature) triples it has already verified and skips the public-key
 * operation — and only that — when one comes again: parsing, key selection, the algorithm
 * checks and every claim check still run on every request, so an expired token is refused
 * even when its signature is cached.
 *
 * An entry is 32 bytes of SHA-256 over a random per-cache salt, the key's identity
 * (tp_jwt_key.id: the hash of its DER SubjectPublicKeyInfo, never a pointer, since pointers
 * are reused across reloads and JWK Set rotations), the signing input and the signature, plus
 * an expiry: the token's `exp`, at most TP_JWT_CACHE_TTL seconds after the verification. No
 * copy of the token is kept. Only successes are stored: caching failures would let anyone fill
 * the cache for free. The salt makes the slot of an entry unpredictable, so a flood of crafted
 * tokens cannot aim at one set to push out somebody else's entry.
 *
 * Layout: set-associative, TP_JWT_CACHE_WAYS slots per set, one set probed per lookup (a fixed
 * amount of work whatever the load); a full set evicts by CLOCK (a slot hit since the hand last
 * passed gets a second chance). New entries start without that bit, so one-shot tokens replace
 * each other before they replace tokens in use. HMAC keys have no identity and are never
 * cached: an HMAC costs about what the cache's own hash does.
 *
 * A cache belongs to one worker thread: no locks.
 */
#ifndef TURNPIKE_PLUGINS_JWT_CACHE_H
#define TURNPIKE_PLUGINS_JWT_CACHE_H

#include "plugins/jwt_verify.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TP_JWT_CACHE_DEFAULT 4096   /* verify_cache_size's default, entries */
#define TP_JWT_CACHE_MAX (1u << 20) /* largest verify_cache_size (40 MiB per worker) */
#define TP_JWT_CACHE_TTL 300.0      /* seconds an entry lives at most */
#define TP_JWT_CACHE_WAYS 8         /* slots per set */
#define TP_JWT_DIGEST_LEN 32

/** One remembered verification: 40 bytes. */
struct tp_jwt_cache_entry {
    unsigned char digest[TP_JWT_DIGEST_LEN];
    uint32_t expires;    /* wall-clock seconds since the epoch; 0 = empty slot */
    uint32_t referenced; /* CLOCK bit: hit since the hand last passed */
};

/** Counters, for tests and diagnostics. */
struct tp_jwt_cache_stats {
    uint64_t hits, misses, inserts, evictions;
};

/** A worker's cache. Opaque to the plugin except for stats. */
struct tp_jwt_cache {
    struct tp_jwt_cache_entry *slots; /* num_sets * ways */
    uint8_t *hands;                   /* CLOCK hand of each set */
    size_t num_sets;                  /* a power of two */
    unsigned ways;
    unsigned char salt[32];
    EVP_MD *sha256; /* fetched once */
    EVP_MD_CTX *md; /* reused for every digest */
    struct tp_jwt_cache_stats stats;
};

/**
 * A cache of at least size entries (rounded up to a power of two, at most TP_JWT_CACHE_MAX),
 * salted from the OpenSSL CSPRNG.
 * @return 0, TP_EINVAL (size 0 or too large), TP_ENOMEM or TP_EIO (no randomness).
 *         Free with tp_jwt_cache_free.
 */
int tp_jwt_cache_new(size_t size, struct tp_jwt_cache **out);

/** Release c (NULL is fine). Matches tp_plugin_worker_put's destructor type. */
void tp_jwt_cache_free(void *c);

/** Number of entries c holds room for. */
size_t tp_jwt_cache_capacity(const struct tp_jwt_cache *c);

/**
 * The entry digest of t verified with k: SHA-256(salt, k->id, signing input, signature), each
 * variable part preceded by its length.
 * @return 0, TP_EINVAL (k has no identity: not cacheable) or TP_ENOMEM.
 */
int tp_jwt_cache_digest(struct tp_jwt_cache *c, const struct tp_jwt *t, const struct tp_jwt_key *k,
                        unsigned char out[TP_JWT_DIGEST_LEN]);

/** True when digest is cached and its entry has not expired at now (seconds since the
 *  epoch). An expired entry found here is dropped. */
bool tp_jwt_cache_lookup(struct tp_jwt_cache *c, const unsigned char digest[TP_JWT_DIGEST_LEN],
                         double now);

/**
 * Remember digest until expires (seconds since the epoch, rounded down to a second). Nothing
 * is stored when expires <= now. A digest already present gets the new expiry; otherwise an
 * empty or expired slot of its set is used, else CLOCK evicts one.
 */
void tp_jwt_cache_insert(struct tp_jwt_cache *c, const unsigned char digest[TP_JWT_DIGEST_LEN],
                         double expires, double now);

/**
 * How long a verification of a token with these claims may be remembered: min(exp, now +
 * TP_JWT_CACHE_TTL); now + TP_JWT_CACHE_TTL without `exp`; 0 (do not cache) when `exp` is not
 * a number (the claim check refuses such a token anyway).
 */
double tp_jwt_cache_expiry(const json_t *claims, double now);

/**
 * tp_jwt_verify through the cache: a cached (t, k) returns 0 without the public-key operation;
 * otherwise the signature is verified and a success remembered (tp_jwt_cache_expiry). c may be
 * NULL (no cache), and keys without an identity are always verified. The key must allow t->alg
 * in both cases (tp_jwt_key_allows).
 * @return as tp_jwt_verify: 0 when valid, TP_EINVAL when not, TP_ENOMEM.
 */
int tp_jwt_verify_cached(struct tp_jwt_cache *c, const struct tp_jwt *t, const struct tp_jwt_key *k,
                         double now);

#endif

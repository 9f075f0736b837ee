/*
 * Consistent hashing for upstreams: the 64-bit hash, the ketama ring of an upstream (built with
 * the snapshot), and the hash key of a request (Kong's hash_on / hash_fallback).
 */
#ifndef TURNPIKE_UPSTREAM_HASH_KEY_H
#define TURNPIKE_UPSTREAM_HASH_KEY_H

#include "turnpike/http.h"
#include "turnpike/snapshot.h"

#include <stdbool.h>
#include <stdint.h>

#define TP_RING_POINTS_PER_UNIT 160   /* ring points per unit of weight (ketama's 160) */
#define TP_RING_MAX_POINTS (1u << 18) /* per upstream; above it weights are scaled down */

/**
 * XXH64 of data[0..len) with `seed` (the published xxHash64 algorithm, written here; no
 * dependency). Not a cryptographic hash: keys choose a target, they protect nothing.
 *
 * @param data  bytes to hash (may be NULL when len is 0); not retained
 * @return the 64-bit hash; XXH64("", 0, 0) is 0xEF46DB3751D8E999.
 */
uint64_t tp_hash64(const void *data, size_t len, uint64_t seed);

/**
 * Build u->ring, the ketama ring of u's targets: a target of weight w gets
 * TP_RING_POINTS_PER_UNIT * w / g points, g being the greatest common divisor of the non-zero
 * weights (so weights 1,1,1 and 100,100,100 give the same ring), point i of target "host:port"
 * being tp_hash64("host:port#i"). A target's points depend only on its own name and weight, so
 * adding, removing or disabling a target moves only the keys that it gains or loses, as long
 * as g stays the same (always so with equal weights) and the ring stays within
 * TP_RING_MAX_POINTS (bigger rings are scaled down proportionally). Weight-0 targets get no
 * points. Replaces (and frees) any ring u already has.
 *
 * @param u  an upstream whose targets (name, weight) are set; u->ring and u->ring_len are
 *           written (NULL / 0 when no target has a weight); owned by u, freed with
 *           tp_upstream_ring_free
 * @return 0 or TP_ENOMEM (then u has no ring).
 */
int tp_upstream_ring_build(struct tp_upstream *u);

/** Free u->ring and clear ring/ring_len. Safe on an upstream without a ring. */
void tp_upstream_ring_free(struct tp_upstream *u);

/**
 * The 64-bit key of one request property (`on`: ip, header, cookie, path or query_arg; `name`
 * names the header, cookie or argument). Used by consistent-hashing and sticky traffic splits.
 * @return true and *out, or false when the request lacks that property.
 */
bool tp_request_key(enum tp_hash_on on, struct tp_slice name, const struct tp_http_message *msg,
                    const char *client_ip, const char *norm_path, uint64_t *out);

/**
 * The consistent-hashing key of a request for upstream u, from u->hash_on (and its name):
 *   ip         the client_ip text;
 *   header     every value of the named header (name compared case-insensitively), in field
 *              order, hashed as one joined sequence; empty values are skipped;
 *   cookie     the value of the first cookie of that name in the Cookie fields (RFC 6265
 *              §4.2.1: "name=value" pairs separated by ';', optional spaces around them;
 *              names compared case-sensitively);
 *   path       norm_path (the normalised path, no query);
 *   query_arg  the raw (not percent-decoded) value of the first argument of that name in
 *              msg->query ("a=1&b=2"; names compared byte for byte).
 * An absent or empty value is "no key"; then u->hash_fallback is tried the same way.
 *
 * @param u          the upstream (not modified)
 * @param msg        the parsed request head (slices read, not retained); may be NULL when
 *                   neither setting needs it
 * @param client_ip  NUL-terminated client address as decided through trusted_proxies (e.g.
 *                   "10.0.0.7" or "::1"); may be NULL or "" (no ip key)
 * @param norm_path  NUL-terminated normalised request path; may be NULL (no path key)
 * @param out        receives the 64-bit key when true is returned
 * @return true with *out set, or false when neither hash_on nor hash_fallback yields a key
 *         (the caller then passes has_hash = false: round-robin among usable targets).
 */
bool tp_upstream_hash_key(const struct tp_upstream *u, const struct tp_http_message *msg,
                          const char *client_ip, const char *norm_path, uint64_t *out);

#endif

/*
 * turnpike — consumers and their credentials as the snapshot holds them (DESIGN.md §1).
 *
 * Built on the main thread with the snapshot (src/config/consumers.c) and read-only afterwards:
 * every lookup is a hash-table probe (constant time in the number of consumers) and safe from
 * any worker thread. Returned pointers live as long as the snapshot.
 */
#ifndef TURNPIKE_CONSUMER_H
#define TURNPIKE_CONSUMER_H

#include "turnpike/common.h"
#include "turnpike/plugin.h"

struct tp_snapshot;

/** The consumer whose `id` or `username` is name (id first), or NULL. */
const struct tp_consumer *tp_consumer_find(const struct tp_snapshot *s, struct tp_slice name);

/** The key-auth credential with this exact key, or NULL. The comparison of the candidate key
 *  is constant-time in the key's bytes. */
const struct tp_credential *tp_consumer_find_key(const struct tp_snapshot *s, struct tp_slice key);

/** The basic-auth credential of this username (exact, case-sensitive), or NULL. Its conf's
 *  `password` is a crypt(3) hash. */
const struct tp_credential *tp_consumer_find_basic(const struct tp_snapshot *s,
                                                   struct tp_slice username);

/** The jwt secret whose `key` is key (the value of the token's key_claim_name), or NULL. */
const struct tp_credential *tp_consumer_find_jwt(const struct tp_snapshot *s, struct tp_slice key);

/** Number of jwt secrets, and the i-th one (for plugins that pre-compile keys). */
size_t tp_consumer_jwt_count(const struct tp_snapshot *s);
const struct tp_credential *tp_consumer_jwt_at(const struct tp_snapshot *s, size_t i);

/** True when consumer c is in group (exact match). */
bool tp_consumer_in_group(const struct tp_consumer *c, struct tp_slice group);

#endif

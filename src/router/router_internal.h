/*
 * turnpike — router internals shared by the router's own sources (not part of the API).
 *
 * tp__strmap is an open-addressing hash table keyed by (owner pointer, byte string). The router
 * uses three of them: exact hosts, wildcard host suffixes, and the edges of every segment trie
 * (owner = parent node, key = literal segment), so that no node carries its own child table.
 * Keys are borrowed: they must outlive the map. Values must not be NULL (NULL marks a free
 * slot). Read-only use (tp__strmap_get) is thread-safe.
 */
#ifndef TURNPIKE_ROUTER_INTERNAL_H
#define TURNPIKE_ROUTER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

struct tp__strmap_slot {
    uint64_t hash;
    const void *owner;
    const char *key; /* borrowed */
    size_t len;
    void *value; /* NULL: free slot */
};

struct tp__strmap {
    struct tp__strmap_slot *slots;
    size_t cap; /* power of two, or 0 */
    size_t n;
};

/** Value stored under (owner, key), or NULL. */
void *tp__strmap_get(const struct tp__strmap *m, const void *owner, const char *key, size_t len);

/** Store value under (owner, key), replacing any previous value. Returns 0 or TP_ENOMEM. */
int tp__strmap_put(struct tp__strmap *m, const void *owner, const char *key, size_t len,
                   void *value);

/** Free the slots (not the keys or values). */
void tp__strmap_free(struct tp__strmap *m);

#endif

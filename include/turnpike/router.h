/*
 * turnpike — path normalisation and route matching.
 *
 * Routes are compiled once per config snapshot into an immutable matcher; matching never
 * allocates and its cost does not grow with the number of routes (hash table on host, segment
 * trie on path; only regex routes of the matched host bucket are scanned, in order).
 */
#ifndef TURNPIKE_ROUTER_H
#define TURNPIKE_ROUTER_H

#include "turnpike/common.h"

#include <stdbool.h>

/* Options for tp_path_normalize (bitmask). */
enum {
    TP_PATH_ALLOW_ENCODED_SLASH = 1u << 0, /* keep %2F / %5C encoded instead of refusing */
};

/**
 * Normalise an origin-form path for routing and forwarding (RFC 3986 §6.2.2, §5.2.4).
 *
 * Steps: percent-encoded unreserved characters (ALPHA DIGIT - . _ ~) are decoded; other
 * escapes are kept with upper-case hex digits; "%2F"/"%2f" (encoded '/'), "%5C" and raw '\'
 * (backslash), "%00" are refused unless allowed by flags (then %2F/%5C stay encoded; %00 and
 * raw '\' are always refused); invalid escapes ("%G1", "%4") are refused; bytes outside
 * RFC 3986 pchar/"/" (controls, space, '#', '"', '<', '>', '^', '`', '{', '|', '}', bytes >= 0x80)
 * are refused; repeated '/' are merged; "." and ".." segments are removed, ".." never climbs
 * above the root ("/../x" → "/x"). A trailing '/' is kept. The result always starts with '/'.
 *
 * @param in, in_len   the path as received (without query), must start with '/'
 * @param out          caller buffer of at least in_len bytes (output never grows)
 * @param out_len      receives the output length
 * @param flags        TP_PATH_* options
 * @return 0, or TP_EINVAL (answer 400).
 */
int tp_path_normalize(const char *in, size_t in_len, char *out, size_t *out_len,
                      unsigned flags);

/**
 * Canonicalise a Host value for matching (RFC 9110 §4.2.3, RFC 3986 §6.2.2.1): lower-case,
 * port removed, one trailing dot removed. IPv6 literals keep their brackets.
 *
 * @param in, in_len  Host header value (already validated by the HTTP parser)
 * @param out         buffer of at least in_len bytes
 * @param out_len     receives the length (may be 0 if the host was empty)
 * @return 0, or TP_EINVAL for an empty label ("a..b", "a.b..") (answer 400).
 */
int tp_host_canonicalize(const char *in, size_t in_len, char *out, size_t *out_len);

/** One name → accepted values condition (headers or query). Config-owned strings. */
struct tp_route_cond {
    const char *name;
    const char *const *values;
    size_t num_values;
};

/** A route as given to the router. All strings are NUL-terminated and owned by the caller;
 *  the router copies what it keeps. */
struct tp_route_spec {
    const char *name;
    const char *const *hosts; /* "api.example.com", "*.example.com"; none = any host */
    size_t num_hosts;
    const char *const *paths; /* "/api" prefix, "=/api" exact, "~regex" PCRE2, "/users/{id}" */
    size_t num_paths;         /* none = "/" prefix */
    const char *const *methods; /* upper-case tokens; none = any */
    size_t num_methods;
    const struct tp_route_cond *headers; /* names case-insensitive, values exact */
    size_t num_headers;
    const struct tp_route_cond *query;   /* names and values exact (after %-decoding) */
    size_t num_query;
    int priority; /* higher wins as the last tie-breaker */
    void *udata;  /* returned on match */
};

#define TP_ROUTER_MAX_CAPTURES 16

/** What a request offers to the router. */
struct tp_router_request {
    struct tp_slice host;   /* canonical host (tp_host_canonicalize), may be empty */
    struct tp_slice path;   /* normalised path (tp_path_normalize) */
    struct tp_slice method;
    struct tp_slice query;  /* raw query string without '?' */
    /* header lookup: returns 1 if the request has header `name` with a value equal to one of
     * the candidates; provided as a callback so the router stays independent of the parser. */
    int (*header_has)(void *ctx, const char *name, const char *const *values, size_t n);
    void *header_ctx;
};

struct tp_router_match {
    void *udata;           /* the matched route's tp_route_spec.udata */
    const char *route_name;
    size_t prefix_len;     /* what strip_path removes: for prefix routes the matched prefix
                              (without a trailing '/'); for exact and template routes the whole
                              path; for regex routes the end of the match when it starts at 0,
                              else 0 */
    size_t num_captures;   /* template captures ({id}) and PCRE2 named groups */
    struct {
        const char *name;     /* owned by the router */
        struct tp_slice value; /* points into request path */
    } captures[TP_ROUTER_MAX_CAPTURES];
};

struct tp_router;

/** Create an empty router. Returns NULL on allocation failure. */
struct tp_router *tp_router_new(void);

/**
 * Add a route. Call before tp_router_compile.
 * @param err, errlen  receives a message naming the bad host/path/regex on failure
 * @return 0, TP_EINVAL (bad pattern, e.g. invalid regex or template), TP_ENOMEM.
 */
int tp_router_add(struct tp_router *r, const struct tp_route_spec *spec, char *err,
                  size_t errlen);

/** Freeze the router (JIT-compile regexes, sort candidate lists). Returns 0 or TP_ENOMEM. */
int tp_router_compile(struct tp_router *r);

/**
 * Find the best route (precedence: most specific host — exact, then the longest wildcard
 * suffix, then host-less routes —; then most specific path — exact, then template or the
 * longest prefix (on a segment boundary), then regex in declaration order —; then the number
 * of other conditions (methods, headers, query); then the higher `priority`; then declaration
 * order).
 *
 * Thread-safe on a compiled router (read-only). Does not allocate except for PCRE2 match data,
 * which is per-thread and cached.
 *
 * @return 0 and fills *m; TP_EMETHOD when some route matched host and path but no route
 *         accepted the method (answer 405); TP_ENOTFOUND otherwise (answer 404).
 */
int tp_router_match(const struct tp_router *r, const struct tp_router_request *req,
                    struct tp_router_match *m);

/**
 * Check one route path pattern on its own (the same parser tp_router_add uses), so the config
 * loader can report a bad regex or template at the position of the path itself.
 * @param err, errlen  receives the reason on failure
 * @return 0, TP_EINVAL or TP_ENOMEM.
 */
int tp_router_check_path(const char *path, char *err, size_t errlen);

/** Free a router and everything it owns. NULL is ignored. */
void tp_router_free(struct tp_router *r);

#endif

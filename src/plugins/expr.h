/*
 * turnpike — the ABAC expression language (src/plugins/expr.c), used by the abac plugin and
 * for attribute lookups by resource-acl. docs/plugins/abac.md is the user's reference.
 *
 *   "admin" in consumer.groups || jwt.claims.sub == route.params.user_id
 *
 * An expression is parsed and type-checked once, at config load (tp_expr_compile): syntax
 * errors, unknown attributes and type errors come back with the byte offset of the offending
 * token. The result is a small tree evaluated per request without allocating: values are
 * borrowed slices of the request (tp_slice), JWT claims are walked in place, and the evaluator
 * only uses the C stack (depth bounded by TP_EXPR_MAX_DEPTH).
 *
 * Null: an attribute that is absent (no consumer, no such claim, header or parameter) is null.
 * Every comparison, `in` and function call with a null operand is false — `!=` included — so
 * `x != "a"` means "present and different". `x == null` / `x != null` test presence. Where a
 * condition is expected (operands of && || !, the whole expression) only true is true: null,
 * and a claim that is not the JSON value true, count as false.
 */
#ifndef TURNPIKE_PLUGINS_EXPR_H
#define TURNPIKE_PLUGINS_EXPR_H

#include "turnpike/common.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <yaml.h>

#define TP_EXPR_MAX_LEN 8192   /* bytes of one expression */
#define TP_EXPR_MAX_DEPTH 32   /* nesting of parentheses, `!`, calls and lists */
#define TP_EXPR_MAX_NODES 2048 /* tree size of one expression */

/* ------------------------------------------------------------------------------------------ */
/* Addresses and networks (shared with ip-restriction)                                        */

/** An IPv4 or IPv6 network; host bits are always clear. */
struct tp_cidr {
    int family;       /* AF_INET or AF_INET6 */
    int prefix;       /* 0..32 or 0..128 */
    uint8_t addr[16]; /* network address in network byte order (4 bytes used for IPv4) */
};

/**
 * Parse "10.0.0.0/8", "192.0.2.7" (a /32), "2001:db8::/32" or "::1" (a /128) from s[0..len).
 * An IPv4-mapped IPv6 network (::ffff:a.b.c.d/96 and longer) becomes the IPv4 network, so
 * that it matches IPv4 peers. With mask_host_bits, "10.1.2.3/8" is taken as 10.0.0.0/8 (Kong
 * accepts it); without, it is an error.
 * @return NULL, or a static message saying what is wrong (then *out is unspecified).
 */
const char *tp_cidr_parse(const char *s, size_t len, bool mask_host_bits, struct tp_cidr *out);

/** Turn an IPv4-mapped IPv6 address (::ffff:a.b.c.d) into the IPv4 one, in place. */
void tp_ip_unmap(int *family, uint8_t addr[16]);

/** True when addr (family AF_INET: 4 bytes, AF_INET6: 16) is inside c. IPv4-mapped IPv6
 *  addresses match IPv4 networks. */
bool tp_cidr_match(const struct tp_cidr *c, int family, const uint8_t addr[16]);

/* ------------------------------------------------------------------------------------------ */
/* Attributes and values                                                                      */

/** What an attribute reads; the request-facing provider maps each to a tp_plugin_* call. */
enum tp_expr_attr {
    TP_EXPR_CONSUMER_ID = 0,    /* string */
    TP_EXPR_CONSUMER_USERNAME,  /* string */
    TP_EXPR_CONSUMER_CUSTOM_ID, /* string */
    TP_EXPR_CONSUMER_GROUPS,    /* list of strings (empty when the consumer has none) */
    TP_EXPR_CONSUMER_ANONYMOUS, /* boolean, never null */
    TP_EXPR_JWT_CLAIMS,         /* the provider gives the claims object; `path` is walked */
    TP_EXPR_REQUEST_METHOD,     /* string */
    TP_EXPR_REQUEST_PATH,       /* string: normalised path as routed, without the query */
    TP_EXPR_REQUEST_HEADER,     /* string: first value of header `name` */
    TP_EXPR_REQUEST_QUERY,      /* string: first raw value of query argument `name` */
    TP_EXPR_ROUTE_NAME,         /* string */
    TP_EXPR_ROUTE_PARAM,        /* string: template capture or named regex group `name` */
    TP_EXPR_SERVICE_NAME,       /* string */
    TP_EXPR_CLIENT_IP,          /* address (after trusted_proxies) */
    TP_EXPR_TIME_HOUR,          /* number 0..23, UTC */
    TP_EXPR_TIME_MINUTE,        /* number 0..59, UTC */
    TP_EXPR_TIME_WEEKDAY,       /* number 0..6, 0 = Sunday, UTC */
};

/** A parsed attribute such as `request.headers.x-user` or `jwt.claims.realm.roles`. */
struct tp_expr_attr_ref {
    enum tp_expr_attr attr;
    char *name;  /* header (lower case), query argument or parameter name; else NULL */
    char **path; /* JWT claim names, outermost first (TP_EXPR_JWT_CLAIMS only) */
    size_t path_len;
};

enum tp_expr_kind {
    TP_EXPR_V_NULL = 0,
    TP_EXPR_V_BOOL,
    TP_EXPR_V_NUMBER,  /* a JSON real, or a number literal with a fraction: u.num */
    TP_EXPR_V_INTEGER, /* a JSON integer or integer literal: u.i, exact (never via a double) */
    TP_EXPR_V_STRING,
    TP_EXPR_V_STRINGS, /* borrowed array of C strings (consumer groups) */
    TP_EXPR_V_JSON,    /* a JSON array or object (claims), borrowed */
    TP_EXPR_V_IP,
    TP_EXPR_V_LIST,  /* a list literal of the expression (internal) */
    TP_EXPR_V_CIDRS, /* networks of the expression (internal) */
};

/** A value during evaluation; everything it points to is borrowed. */
struct tp_expr_value {
    enum tp_expr_kind kind;
    union {
        bool b;
        double num;
        int64_t i;
        struct tp_slice str;
        struct {
            const char *const *items;
            size_t n;
        } strs;
        const json_t *json;
        struct {
            int family;
            uint8_t addr[16];
        } ip;
        const void *internal;
    } u;
};

/**
 * Fill *out with the value of attribute ref->attr for the current request; leave it null
 * (the caller zeroes it) when absent. For TP_EXPR_JWT_CLAIMS give the whole claims object
 * as TP_EXPR_V_JSON: the evaluator walks ref->path. Must not allocate.
 */
typedef void (*tp_expr_lookup_fn)(void *env, const struct tp_expr_attr_ref *ref,
                                  struct tp_expr_value *out);

/** A compile error: where (byte offset into the expression) and what. */
struct tp_expr_error {
    size_t offset;
    char message[200];
};

/**
 * Parse one attribute name (the whole of s[0..len), e.g. "jwt.claims.sub") into *out.
 * @return 0, TP_EINVAL (err filled) or TP_ENOMEM. Free with tp_expr_attr_free.
 */
int tp_expr_attr_parse(const char *s, size_t len, struct tp_expr_attr_ref *out,
                       struct tp_expr_error *err);

/** Free what tp_expr_attr_parse allocated inside ref (not ref itself). */
void tp_expr_attr_free(struct tp_expr_attr_ref *ref);

/**
 * Read an attribute through lookup, walking JWT claim paths, and convert JSON scalars:
 * strings, booleans become their kinds, JSON integers TP_EXPR_V_INTEGER (exact int64), JSON
 * reals TP_EXPR_V_NUMBER; JSON null and absent claims become null.
 */
void tp_expr_attr_fetch(const struct tp_expr_attr_ref *ref, tp_expr_lookup_fn lookup, void *env,
                        struct tp_expr_value *out);

/**
 * The tp_expr_lookup_fn of a real request (src/plugins/abac.c): env is the request's
 * struct tp_plugin_ctx. Absent consumer, claims, headers, query arguments and parameters are
 * null; time.* is read from tp_plugin_time in UTC. Does not allocate.
 */
void tp_expr_request_lookup(void *env, const struct tp_expr_attr_ref *ref,
                            struct tp_expr_value *out);

/**
 * Order two numeric values (TP_EXPR_V_INTEGER or TP_EXPR_V_NUMBER, in any mix) exactly: two
 * integers compare as int64 (9007199254740993 != 9007199254740992, which a double cannot
 * tell apart), an integer and a real compare by their mathematical values.
 * @return -1, 0 or 1 (a < b, a == b, a > b); 2 when unordered (a NaN, or a non-numeric kind).
 */
int tp_expr_num_cmp(const struct tp_expr_value *a, const struct tp_expr_value *b);

/* ------------------------------------------------------------------------------------------ */
/* Expressions                                                                                */

struct tp_expr; /* a compiled expression (opaque, immutable, shareable between threads) */

/**
 * Parse and type-check the expression src[0..len) (need not be NUL-terminated).
 * @param out  receives a new expression (free with tp_expr_free)
 * @param err  on TP_EINVAL: the byte offset of the offending token and a message
 * @return 0, TP_EINVAL or TP_ENOMEM (err->message says so).
 */
int tp_expr_compile(const char *src, size_t len, struct tp_expr **out, struct tp_expr_error *err);

/** Free an expression; NULL is ignored. */
void tp_expr_free(struct tp_expr *e);

/**
 * Evaluate e for one request: true only when the expression is the boolean true.
 * Does not allocate; lookup is called once per attribute occurrence that evaluation reaches
 * (&& and || short-circuit).
 */
bool tp_expr_eval(const struct tp_expr *e, tp_expr_lookup_fn lookup, void *env);

/* ------------------------------------------------------------------------------------------ */
/* Positions inside YAML scalars                                                              */

/**
 * The 1-based line and column (in characters, as libyaml counts them) in the config text of
 * byte `offset` of scalar node's value, accounting for quotes, escapes, line folding and
 * block scalars (| and >). text[0..len) is the whole input the node was parsed from. When the
 * source cannot be followed (it should always be), the node's start is returned.
 */
void tp_expr_yaml_position(const char *text, size_t len, const yaml_node_t *node, size_t offset,
                           int *line, int *column);

#endif

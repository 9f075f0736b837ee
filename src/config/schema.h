/*
 * turnpike — config loader internals: the schema walker shared by the files of src/config/.
 *
 * Every section of the declarative file (top level, limits, service, route, upstream, target)
 * is described by one table of directives, as Redis declares its options: key name, value kind,
 * field offset, bounds and default. tp__cfg_object() walks a YAML mapping against such a table,
 * applies the defaults, reports unknown, duplicate and missing keys, and calls a custom parser
 * for the keys that are not simple scalars. Errors are counted in the context and printed as
 * "FILE:LINE:COLUMN: message"; walking goes on after an error so that one pass reports them all.
 *
 * Memory: every value is attached to the output tree as soon as it is allocated, so that
 * tp_config_free() releases it whatever happened; the walker never frees on its own.
 */
#ifndef TURNPIKE_CONFIG_SCHEMA_H
#define TURNPIKE_CONFIG_SCHEMA_H

#include "turnpike/config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <yaml.h>

#define TP__CFG_MAX_MS 86400000    /* 24 h: upper bound of every duration */
#define TP__CFG_MAX_KEYS 64        /* directives per table (bit mask of seen keys) */
#define TP__CFG_TABLE_CHECK(table) \
    _Static_assert(TP_ARRAY_LEN(table) <= TP__CFG_MAX_KEYS, #table " has too many keys")

/** State of one load. */
struct tp__cfg_ctx {
    const char *name;         /* file name for messages */
    const char *text;         /* the whole input, for reader-error positions */
    size_t len;
    yaml_document_t *doc;
    FILE *errors;             /* may be NULL */
    int num_errors;
    unsigned char *visited;   /* per node id - 1: collection already walked (aliases) */
    size_t num_nodes;
    const char *path;         /* field path prefixed to messages ("plugins[0](jwt).config"),
                                 or NULL */
    bool null_is_unset;       /* a YAML null value leaves a key unset (consumers, as in Kong's
                                 exports); always so inside a plugin's config */
};

enum tp__cfg_kind {
    TP__CFG_STRING, /* char *, non-empty */
    TP__CFG_UINT,   /* unsigned integer field of `size` bytes */
    TP__CFG_INT,    /* int */
    TP__CFG_BOOL,   /* bool */
    TP__CFG_CUSTOM, /* parsed by `parse` */
    TP__CFG_SECRET, /* char *: a string, or {env: NAME} / {file: PATH} read at load */
    TP__CFG_STRLIST, /* char ** at offset, its size_t count at count_offset */
};

/** Parser of one custom key; `obj` is the struct being filled, `key` the key's name. */
typedef void (*tp__cfg_parse_fn)(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                 void *obj);

/** Cross-key checks once a mapping has been walked; `node` is the mapping. */
typedef void (*tp__cfg_finish_fn)(struct tp__cfg_ctx *ctx, yaml_node_t *node, void *obj);

/** One row of a schema table. */
struct tp__cfg_directive {
    const char *name;
    enum tp__cfg_kind kind;
    size_t offset;        /* of the field in the struct (not for CUSTOM) */
    size_t size;          /* of the field, bytes */
    int64_t min, max;     /* inclusive bounds of UINT and INT */
    int64_t def;          /* default of UINT, INT, BOOL */
    const char *def_str;  /* default of STRING, or NULL */
    bool required;
    tp__cfg_parse_fn parse;
    size_t count_offset;  /* STRLIST: offset of the size_t count */
};

#define TP__CFG_FIELD(type, field) .offset = offsetof(type, field), \
    .size = sizeof(((type *)0)->field)
#define TP__CFG_UINT_KEY(key, type, field, lo, hi, dflt) \
    { .name = (key), .kind = TP__CFG_UINT, TP__CFG_FIELD(type, field), .min = (lo), \
      .max = (hi), .def = (dflt) }
#define TP__CFG_INT_KEY(key, type, field, lo, hi, dflt) \
    { .name = (key), .kind = TP__CFG_INT, TP__CFG_FIELD(type, field), .min = (lo), \
      .max = (hi), .def = (dflt) }
#define TP__CFG_BOOL_KEY(key, type, field, dflt) \
    { .name = (key), .kind = TP__CFG_BOOL, TP__CFG_FIELD(type, field), .def = (dflt) }
#define TP__CFG_STRING_KEY(key, type, field, dflt) \
    { .name = (key), .kind = TP__CFG_STRING, TP__CFG_FIELD(type, field), .def_str = (dflt) }
#define TP__CFG_SECRET_KEY(key, type, field, req) \
    { .name = (key), .kind = TP__CFG_SECRET, TP__CFG_FIELD(type, field), .required = (req) }
#define TP__CFG_STRLIST_KEY(key, type, field, count) \
    { .name = (key), .kind = TP__CFG_STRLIST, TP__CFG_FIELD(type, field), \
      .count_offset = offsetof(type, count) }
#define TP__CFG_CUSTOM_KEY(key, fn, req) \
    { .name = (key), .kind = TP__CFG_CUSTOM, .required = (req), .parse = (fn) }

/** A section: its name in messages, its directives, and how to finish it. */
struct tp__cfg_schema {
    const char *what;                        /* "service", "route", ... */
    const struct tp__cfg_directive *keys;
    size_t num_keys;
    size_t size;                             /* sizeof the struct (for lists) */
    ptrdiff_t mark_offset;                   /* of a struct tp_conf_mark, or -1 */
    tp__cfg_finish_fn finish;                /* or NULL */
};

/** Custom parser of upstreams[].healthchecks into a tp_conf_upstream (healthchecks.c). */
void tp__cfg_parse_healthchecks(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                void *obj);

/** Custom parsers of `circuit_breaker` into a tp_conf_upstream / a tp_conf_service (circuit.c). */
void tp__cfg_parse_upstream_circuit(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                    void *obj);
void tp__cfg_parse_service_circuit(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                   void *obj);

/* Schemas of the sections (entities.c). */
extern const struct tp__cfg_schema tp__cfg_service_schema;
extern const struct tp__cfg_schema tp__cfg_upstream_schema;

/* --- errors (schema.c) --- */

/** Print "NAME:LINE:COLUMN: message" (1-based) and count the error. */
void tp__cfg_error_at(struct tp__cfg_ctx *ctx, int line, int column, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** Same, at the start of `node`. */
void tp__cfg_error(struct tp__cfg_ctx *ctx, const yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** 1-based position of a node. */
struct tp_conf_mark tp__cfg_mark(const yaml_node_t *node);

/* --- node access (schema.c) --- */

/**
 * The node `id` for walking. A list or mapping walked a second time (a YAML alias, possibly a
 * cycle) is reported and NULL is returned, which bounds the work to the size of the input.
 */
yaml_node_t *tp__cfg_node(struct tp__cfg_ctx *ctx, int id);

/** Value of `key` in mapping `map` without walking it; NULL when absent or not a mapping. */
yaml_node_t *tp__cfg_lookup(struct tp__cfg_ctx *ctx, const yaml_node_t *map, const char *key);

/** Item `i` of sequence `seq` without walking it; NULL when out of range or not a list. */
yaml_node_t *tp__cfg_item(struct tp__cfg_ctx *ctx, const yaml_node_t *seq, size_t i);

/** Number of items of a sequence node (0 for other nodes). */
size_t tp__cfg_count(const yaml_node_t *seq);

/**
 * Check the key of pair `i` of `map` is a scalar (repeats are the caller's to find).
 * @return the key node, or NULL after reporting an error.
 */
yaml_node_t *tp__cfg_pair_key(struct tp__cfg_ctx *ctx, yaml_node_t *map, size_t i,
                              const char *what);

/* --- scalars (schema.c); each returns 0, or -1 after reporting an error --- */

/** A scalar's text as a new string in *out (an old *out is freed); YAML null is an error. */
int tp__cfg_string(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node,
                   char **out);

/** A plain decimal integer within [min, max]. */
int tp__cfg_int(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node, int64_t min,
                int64_t max, int64_t *out);

/** A plain `true` or `false`. */
int tp__cfg_bool(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node, bool *out);

/** One of `names` (any scalar style); *out receives its index. */
int tp__cfg_enum(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node,
                 const char *const *names, size_t num_names, int *out);

/** YAML's null: an empty plain scalar, "~" or "null" (YAML 1.1 spellings). */
bool tp__cfg_is_null(const yaml_node_t *node);

/** Checks (and may rewrite in place) one string of a list; 0 or -1 after reporting. */
typedef int (*tp__cfg_check_fn)(struct tp__cfg_ctx *ctx, const char *key,
                                const yaml_node_t *node, char *s);

/**
 * A sequence of strings, each passed through `check` (may be NULL).
 * @return a new array of *num strings (NULL when empty or on error; items that failed are NULL).
 */
char **tp__cfg_string_list(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node,
                           tp__cfg_check_fn check, size_t *num);

/**
 * A secret value: a non-empty string, or a mapping {env: NAME} (the environment variable, which
 * must be set and non-empty) or {file: PATH} (the file's bytes, one final newline removed;
 * at most 1 MiB). *out receives a new string (an old *out is freed). 0 or -1 after reporting.
 */
int tp__cfg_secret(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *node, char **out);

/** Free the STRING, SECRET and STRLIST fields of obj described by schema (plugin configs). */
void tp__cfg_free_fields(const struct tp__cfg_schema *schema, void *obj);

/** Report an allocation failure at `node`; returns -1. */
int tp__cfg_oom(struct tp__cfg_ctx *ctx, const yaml_node_t *node);

/* --- sections (schema.c) --- */

/** Store the defaults of `schema` into `obj`. */
void tp__cfg_defaults(struct tp__cfg_ctx *ctx, const struct tp__cfg_schema *schema, void *obj);

/** Walk mapping `node` into `obj` (defaults first; NULL node: defaults only). */
void tp__cfg_object(struct tp__cfg_ctx *ctx, const struct tp__cfg_schema *schema,
                    yaml_node_t *node, void *obj);

/**
 * Walk a sequence of mappings.
 * @return a new array of *num elements of `schema->size` bytes (NULL when empty or on error).
 */
void *tp__cfg_list(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *node,
                   const struct tp__cfg_schema *schema, size_t *num);

/* --- value syntax (schema.c) --- */

/** [A-Za-z0-9._~-]+ : names of services, routes and upstreams. */
bool tp__cfg_valid_name(const char *s);

/** A DNS host name (RFC 1123 labels) or a dotted IPv4 address. */
bool tp__cfg_valid_hostname(const char *s, size_t len);

/** A decimal port 1..65535 in s[0..len); 0 or -1. */
int tp__cfg_port(const char *s, size_t len, uint16_t *port);

/** An IPv6 address literal (no brackets) in s[0..len). */
bool tp__cfg_valid_ipv6(const char *s, size_t len);

/**
 * Split "host[:port]" or "[v6]:port". The host (brackets removed) must be an IP literal or
 * a valid host name; *host receives a new string.
 * @return NULL, or a static message saying what is wrong (then *host is NULL).
 */
const char *tp__cfg_hostport(const char *s, bool port_required, char **host, uint16_t *port);

/* --- names that must be unique (schema.c) --- */

struct tp__cfg_name {
    const char *name;         /* borrowed */
    struct tp_conf_mark mark;
};

struct tp__cfg_names {
    struct tp__cfg_name *slots;
    size_t cap;               /* power of two */
    size_t used;
};

/** Make room for `n` names; 0 or -1 (out of memory). */
int tp__cfg_names_init(struct tp__cfg_names *set, size_t n);

/** Add a name; NULL when new, else the entry already there (nothing is added). */
const struct tp__cfg_name *tp__cfg_names_add(struct tp__cfg_names *set, const char *name,
                                             struct tp_conf_mark mark);

/** The entry for `name`, or NULL. */
const struct tp__cfg_name *tp__cfg_names_find(const struct tp__cfg_names *set, const char *name);

void tp__cfg_names_free(struct tp__cfg_names *set);

#endif

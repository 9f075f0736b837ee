/*
 * turnpike — helpers shared by the shaping plugins (cors, request-size-limiting,
 * request-transformer, response-transformer, request-termination); key-auth reads its query
 * argument with the form-encoding helpers.
 *
 *  - config: error positions inside a plugin's config. (Kong writes unset optional fields as
 *    YAML null in its declarative exports; the schema walker already reads them as "not set".)
 *  - field checks: header names are RFC 9110 §5.6.2 tokens, values have no CTL (§5.5).
 *  - "name:value" entries split as Kong does, and the transformers' operations (remove,
 *    rename, replace, add, append) on headers, parameter lists and JSON members.
 *  - application/x-www-form-urlencoded parameter lists (query strings and form bodies) edited
 *    in place: untouched parameters keep their original bytes, new ones are %-encoded.
 *  - top-level JSON object members edited without re-serialising the document: untouched
 *    values (numbers, nested objects) are copied byte for byte, so a transformer never changes
 *    a number's spelling (jansson would print 1.1 as 1.1000000000000001).
 *
 * Memory: the parameter and member lists are malloc'd by the functions below and released with
 * their *_free(); slices in them point into the parsed input or into config strings, which
 * must outlive the list. Output goes to a struct tp_strbuf (caller-owned, capped).
 */
#ifndef TURNPIKE_PLUGINS_TRANSFORM_UTIL_H
#define TURNPIKE_PLUGINS_TRANSFORM_UTIL_H

#include "config/schema.h"
#include "turnpike/common.h"
#include "turnpike/log.h"
#include "turnpike/plugin.h"

#include <stdbool.h>
#include <stddef.h>

/* ------------------------------------------------------------------------------------------ */
/* Config                                                                                      */

/** Free a list of strings such as tp__cfg_string_list makes (NULL items allowed). */
void tp__xf_list_free(char **list, size_t num);

/** Item i of the list `key` of the plugin's config mapping, for error positions; may be NULL. */
const void *tp__xf_cfg_item(struct tp__cfg_ctx *ctx, const void *config, const char *section,
                            const char *key, size_t i);

/* ------------------------------------------------------------------------------------------ */
/* Field checks                                                                                */

/** An HTTP token (RFC 9110 §5.6.2): a header name or a method. */
bool tp__xf_is_token(const char *s, size_t len);

/** A header field value (RFC 9110 §5.5): no control byte other than HTAB, no DEL. */
bool tp__xf_is_field_value(const char *s, size_t len);

/** True for header names a plugin must never edit: message framing and hop-by-hop fields
 *  (Content-Length, Transfer-Encoding, Connection, Keep-Alive, TE, Trailer, Upgrade,
 *  Proxy-Connection) — the proxy owns them (request smuggling, RFC 9112 §6.3). */
bool tp__xf_is_framing_header(const char *name, size_t len);

/** True when s holds a Kong template "$(...)" (not supported: values are literal). */
bool tp__xf_is_template(const char *s);

/**
 * Split a Kong "name:value" entry: name runs to the first ':', every ':' after it is skipped,
 * the value is the rest (Lua pattern "^([^:]+):*(.-)$"). *has_colon tells whether a ':' was
 * present at all.
 */
void tp__xf_split_pair(const char *entry, struct tp_slice *name, struct tp_slice *value,
                       bool *has_colon);

/* ------------------------------------------------------------------------------------------ */
/* The transformers' operations                                                               */

/** Kong's operations, in the order they run; also the config keys (tp__xf_op_names). */
enum tp__xf_op {
    TP_XF_OP_REMOVE,
    TP_XF_OP_RENAME,
    TP_XF_OP_REPLACE,
    TP_XF_OP_ADD,
    TP_XF_OP_APPEND,
    TP_XF_OP_COUNT
};

/** "remove", "rename", "replace", "add", "append", indexed by enum tp__xf_op. */
extern const char *const tp__xf_op_names[TP_XF_OP_COUNT];

/** The operation whose config key is `key`, or -1. */
int tp__xf_op_find(const char *key);

/**
 * Check the header part of one "name:value" entry of operation `op` at validate: the name
 * (and a rename's new name) must be a token, a value of replace/add/append a field value, and
 * no framing or hop-by-hop header may be edited.
 * @return NULL when fine, else a static complaint to print after the entry ("is not a valid
 *         header name"...).
 */
const char *tp__xf_check_header_entry(enum tp__xf_op op, struct tp_slice name,
                                      struct tp_slice value);

/** How the value of an entry is written into JSON (response-transformer's json_types). */
enum tp__xf_type {
    TP_XF_TYPE_STRING,  /* a JSON string */
    TP_XF_TYPE_BOOLEAN, /* Kong's toboolean: true for "true", false for anything else */
    TP_XF_TYPE_NUMBER,  /* the value as it is (checked to be a JSON number at validate) */
};

/** One configured entry, split once at compile: name and value NUL-terminated, json the value
 *  as JSON text of its type. All three live in `mem` (malloc'd). */
struct tp__xf_entry {
    struct tp_slice name, value, json;
    char *mem;
};

/** The entries of one operation on one target (headers, query, body...). */
struct tp__xf_entries {
    struct tp__xf_entry *v;
    size_t n;
};

/** Split a "name:value" entry (tp__xf_split_pair) into e. 0 or TP_ENOMEM. */
int tp__xf_entry_make(const char *entry, enum tp__xf_type type, struct tp__xf_entry *e);

/** Free the entries of l and its array (l itself is the caller's). */
void tp__xf_entries_free(struct tp__xf_entries *l);

/** The header functions of one side of the exchange (tp__xf_request_headers for the request
 *  sent upstream, tp__xf_response_headers for the response sent to the client). */
struct tp__xf_header_api {
    bool (*get)(const struct tp_plugin_ctx *ctx, const char *name, size_t idx,
                struct tp_slice *value);
    int (*set)(struct tp_plugin_ctx *ctx, const char *name, struct tp_slice value);
    int (*add)(struct tp_plugin_ctx *ctx, const char *name, struct tp_slice value);
    int (*remove)(struct tp_plugin_ctx *ctx, const char *name);
    bool replace_host; /* replace sets Host even when absent (the request always has one) */
};

extern const struct tp__xf_header_api tp__xf_request_headers;
extern const struct tp__xf_header_api tp__xf_response_headers;

/**
 * Run Kong's operations on headers, in order: remove every value; rename (if present, the new
 * name takes every value of the old one, replacing its own); replace (only if present); add
 * (only if absent); append (one more value).
 * @param ops  the entries of each operation, indexed by enum tp__xf_op
 * @return 0 or TP_ENOMEM.
 */
int tp__xf_headers_apply(struct tp_plugin_ctx *ctx, const struct tp__xf_header_api *api,
                         const struct tp__xf_entries ops[TP_XF_OP_COUNT]);

/* ------------------------------------------------------------------------------------------ */
/* application/x-www-form-urlencoded                                                          */

/** One parameter. Raw parts are as received (still %-encoded); others are plain text. */
struct tp__xf_param {
    struct tp_slice name;
    struct tp_slice value;
    bool name_raw, value_raw;
    bool has_value;           /* "a=" has an (empty) value, "a" has none */
    bool deleted;
};

struct tp__xf_params {
    struct tp__xf_param *v;
    size_t n, cap;
};

/** Parse s[0..len) ("a=1&b=2"; empty parts skipped) into p (zero-initialised). 0 or TP_ENOMEM. */
int tp__xf_params_parse(struct tp__xf_params *p, const char *s, size_t len);

/** Does the raw (still %-encoded) form text equal plain once decoded ('+' is a space, %XX a
 *  byte, a '%' not followed by two hex digits stands for itself)? Decodes on the fly, no
 *  allocation. */
bool tp__xf_form_eq(struct tp_slice raw, struct tp_slice plain);

/** Decode raw[0..len) as tp__xf_form_eq reads it into out (at least len bytes: the decoded
 *  form is never longer); returns the decoded length. */
size_t tp__xf_form_decode(const char *raw, size_t len, char *out);

/** True when p is live and named `name` (compared after %-decoding, '+' = ' '). */
bool tp__xf_param_named(const struct tp__xf_param *p, struct tp_slice name);

/** True when a live parameter is named `name` (names compared after %-decoding, '+' = ' '). */
bool tp__xf_params_has(const struct tp__xf_params *p, struct tp_slice name);

/**
 * Kong's operations, each on every parameter of that name. All return 0 or TP_ENOMEM; *changed
 * is set to true when the list changed.
 *  remove: drop them. rename: if `from` is present, drop the `to` ones and rename `from` to `to`.
 *  replace: if present, one `name=value` in place of them. add: if absent, append one.
 *  append: append one more.
 */
int tp__xf_params_remove(struct tp__xf_params *p, struct tp_slice name, bool *changed);
int tp__xf_params_rename(struct tp__xf_params *p, struct tp_slice from, struct tp_slice to,
                         bool *changed);
int tp__xf_params_replace(struct tp__xf_params *p, struct tp_slice name, struct tp_slice value,
                          bool *changed);
int tp__xf_params_add(struct tp__xf_params *p, struct tp_slice name, struct tp_slice value,
                      bool *changed);
int tp__xf_params_append(struct tp__xf_params *p, struct tp_slice name, struct tp_slice value,
                         bool *changed);

/** Serialise the live parameters ("a=1&b=2"): raw parts copied, plain parts %-encoded
 *  (RFC 3986 unreserved bytes kept). 0, TP_ENOMEM or TP_ETOOBIG. */
int tp__xf_params_encode(const struct tp__xf_params *p, struct tp_strbuf *out);

void tp__xf_params_free(struct tp__xf_params *p);

/**
 * Run Kong's operations (entries' name and value; see the functions above) on a parameter
 * list. `with_old` false (an empty form body) skips remove, rename and replace, as Kong does.
 * 0 or TP_ENOMEM; *changed set to true when the list changed.
 */
int tp__xf_params_apply(struct tp__xf_params *p, const struct tp__xf_entries ops[TP_XF_OP_COUNT],
                        bool with_old, bool *changed);

/** %-decode s (and '+' as space when plus_space) into out; invalid escapes are kept as is.
 *  0 or a tp_strbuf error. */
int tp__xf_url_decode(const char *s, size_t len, bool plus_space, struct tp_strbuf *out);

/* ------------------------------------------------------------------------------------------ */
/* Top-level members of a JSON object                                                          */

/** One member. key/value are JSON text (the key with its quotes); key_text is the decoded key
 *  for comparisons. A value the list made itself lives in `owned` (malloc'd). */
struct tp__xf_member {
    struct tp_slice key;      /* JSON text, e.g. "\"name\"" */
    struct tp_slice key_text; /* decoded */
    struct tp_slice value;    /* JSON text */
    char *owned;              /* backing store of value (or of key_text), or NULL */
    char *owned_key;
    bool deleted;
};

struct tp__xf_json {
    struct tp__xf_member *v;
    size_t n, cap;
};

/**
 * Split a JSON document that must be one object into its top-level members (zero-initialised
 * j). The document is validated with jansson first. Returns 0, TP_EINVAL (not valid JSON or
 * not an object: the caller passes the body through untouched) or TP_ENOMEM.
 */
int tp__xf_json_parse(struct tp__xf_json *j, const char *doc, size_t len);

/** Kong's operations on members named `name` (decoded key). `json` arguments are JSON text
 *  (tp__xf_json_string makes one from plain text). Same contract as the params functions.
 *  append: a string value becomes [old, new], an array gets new at its end, anything else
 *  (absent, number, object...) becomes [new] (Kong's append_value). */
int tp__xf_json_remove(struct tp__xf_json *j, struct tp_slice name, bool *changed);
int tp__xf_json_rename(struct tp__xf_json *j, struct tp_slice from, struct tp_slice to,
                       bool *changed);
int tp__xf_json_replace(struct tp__xf_json *j, struct tp_slice name, struct tp_slice json,
                        bool *changed);
int tp__xf_json_add(struct tp__xf_json *j, struct tp_slice name, struct tp_slice json,
                    bool *changed);
int tp__xf_json_append(struct tp__xf_json *j, struct tp_slice name, struct tp_slice json,
                       bool *changed);

/**
 * Run Kong's operations (entries' name, and json as the value) on the members. `with_old`
 * false (an empty body) skips remove, rename and replace. 0 or TP_ENOMEM; *changed set to
 * true when the members changed.
 */
int tp__xf_json_apply(struct tp__xf_json *j, const struct tp__xf_entries ops[TP_XF_OP_COUNT],
                      bool with_old, bool *changed);

/** Serialise the live members as one compact object. 0, TP_ENOMEM or TP_ETOOBIG. */
int tp__xf_json_encode(const struct tp__xf_json *j, struct tp_strbuf *out);

void tp__xf_json_free(struct tp__xf_json *j);

/** Append the JSON string literal of s[0..len) (with quotes). tp_strbuf errors. */
int tp__xf_json_string(struct tp_strbuf *out, const char *s, size_t len);

/** True when s[0..len) is a JSON number (RFC 8259 §6). */
bool tp__xf_is_json_number(const char *s, size_t len);

/* ------------------------------------------------------------------------------------------ */
/* Media types                                                                                 */

/** Body kinds the transformers understand, from a Content-Type value. */
enum tp__xf_media {
    TP_XF_MEDIA_OTHER = 0,
    TP_XF_MEDIA_JSON, /* application/json, or a +json suffix (RFC 6839 §3.1) */
    TP_XF_MEDIA_FORM, /* application/x-www-form-urlencoded */
};

/** Classify a Content-Type value by its media type (parameters ignored, case-insensitive). */
enum tp__xf_media tp__xf_media_type(struct tp_slice content_type);

/** A body hook's result: body takes out's buffer (the old one is freed; out is left empty). */
void tp__xf_body_take(struct tp_plugin_body *body, struct tp_strbuf *out);

#endif

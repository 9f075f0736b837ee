/*
 * turnpike — route matching.
 *
 * Structure. Routes are grouped in host buckets: one per exact host (hash table), one per
 * wildcard suffix ("*.example.com" is stored as ".example.com" in a second hash table) and one
 * for host-less routes. Each bucket has a segment trie: a node's literal children live in one
 * router-wide hash table keyed by (parent node, segment), its "{param}" child is a pointer.
 * Every node keeps three candidate lists: exact routes ("=/a/b"), template routes ("/a/{id}")
 * and prefix routes ("/a/b", "/a/b/") ending there. Regex routes sit in a per-bucket array in
 * declaration order. A route is entered once per host × path of its spec.
 *
 * Precedence (what tp_router_match returns) — the first candidate, in this order, whose
 * methods, headers and query conditions all hold:
 *   1. host bucket: the exact host, then wildcard suffixes from the longest to the shortest,
 *      then the host-less bucket. A later bucket is consulted only if no candidate of the
 *      earlier ones passed (e.g. exact host has no route for the path → wildcard → any host).
 *   2. within a bucket, by path:
 *      a. exact routes equal to the whole path;
 *      b. templates matching the whole path (templates are always whole-path matches, so they
 *         have the most matched segments possible). Among templates, the trie is walked
 *         literal-first, so at the leftmost segment where two templates differ the one with a
 *         literal segment wins over the one with {param};
 *      c. prefix routes, the one with the most matched segments first (a template beats a
 *         prefix of the same depth); at the same depth "/a/" (longer) beats "/a";
 *      d. regex routes in declaration order (like NGINX regex locations: first match wins);
 *   3. among candidates of one trie node and kind: more conditions first (methods count 1 if
 *      any, plus one per header and one per query condition), then higher priority, then
 *      declaration order (tp_router_add order, then the order of the spec's paths).
 * TP_EMETHOD is returned when no candidate passed but at least one failed on its method alone.
 *
 * Path patterns are normalised with tp_path_normalize at add time (so "/caf%c3%a9" matches
 * the normalised request path "/caf%C3%A9"); regexes are matched against the normalised path.
 * A path with a brace is a template whether or not it starts with '=' (templates are exact).
 * Template parameters are whole segments "{name}", name = [A-Za-z0-9_]+, at most
 * TP_ROUTER_MAX_CAPTURES; "{*rest}" catch-alls are not supported. Regex routes are strictly in
 * declaration order: conditions and priority only decide whether a regex candidate passes.
 *
 * Matching allocates nothing except the PCRE2 match data, which is cached per thread: one
 * block per thread (a __thread pointer), grown to the largest capture count it has seen and
 * freed by a pthread key destructor when the thread exits.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "router/router_internal.h"
#include "turnpike/router.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#define ROUTE_HOST_MAX 253       /* longest DNS name (RFC 1035 §2.3.4) */
#define REGEX_MATCH_LIMIT 100000 /* PCRE2 match limit: bounds backtracking on hostile paths */

enum pat_kind { PAT_PREFIX, PAT_EXACT, PAT_TEMPLATE, PAT_REGEX };

/* One path of a route spec, shared by all the host buckets the route is entered in. */
struct pattern {
    enum pat_kind kind;
    /* prefix: the request must go on after the prefix ("/a/"); exact and template: the
     * request path must end with '/'. Never set for "/" itself. */
    bool slash;
    char *text; /* normalised path (prefix, exact, template); trie labels point into it */
    size_t num_names;
    char *names[TP_ROUTER_MAX_CAPTURES];     /* template params or regex named groups */
    uint32_t groups[TP_ROUTER_MAX_CAPTURES]; /* regex: group number of names[i] */
    pcre2_code *re;
    uint32_t ovec_pairs; /* regex: capture count + 1 */
};

struct cond {
    char *name;
    char **values;
    size_t num_values;
};

struct route {
    char *name;
    void *udata;
    char **methods;
    size_t num_methods;
    struct cond *headers;
    size_t num_headers;
    struct cond *query;
    size_t num_query;
    int priority;
    unsigned num_conds;
    size_t seq; /* declaration order */
    struct pattern *pats;
    size_t num_pats;
};

struct entry {
    const struct route *route;
    const struct pattern *pat;
};

struct entry_list {
    struct entry *v;
    size_t n, cap;
};

struct node {
    struct node *parent;
    struct node *param;    /* the "{param}" child */
    struct node *all_next; /* every node of the router, for compile and free */
    const char *seg;       /* literal label, points into a pattern's text; NULL for params */
    size_t seg_len;
    bool is_param;
    struct entry_list exact, tmpl, prefix;
};

struct bucket {
    struct node *root;
    struct entry_list regex; /* declaration order */
    struct bucket *all_next;
    char *host; /* hash key; NULL for the host-less bucket */
};

struct tp_router {
    struct tp__strmap hosts;     /* exact host → bucket */
    struct tp__strmap wildcards; /* ".example.com" → bucket */
    struct tp__strmap edges;     /* (node, literal segment) → child node */
    struct bucket *any;          /* host-less routes */
    struct bucket *buckets;
    struct node *nodes;
    struct route **routes;
    size_t num_routes, cap_routes;
    uint32_t max_pairs;
    pcre2_match_context *mctx;
    bool compiled;
};

/* ---- hash table ------------------------------------------------------------------------ */

/* FNV-1a over the key, seeded with the owner pointer so that trie edges of different nodes
 * spread over the table. */
static uint64_t strmap_hash(const void *owner, const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ull ^ ((uint64_t)(uintptr_t)owner * 0x9e3779b97f4a7c15ull);
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Slot holding (owner, key), or the free slot where it would go. */
static struct tp__strmap_slot *strmap_find(const struct tp__strmap *m, uint64_t h,
                                           const void *owner, const char *key, size_t len)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct tp__strmap_slot *s = &m->slots[i];
        if (!s->value)
            return s;
        if (s->hash == h && s->owner == owner && s->len == len && memcmp(s->key, key, len) == 0)
            return s;
    }
}

void *tp__strmap_get(const struct tp__strmap *m, const void *owner, const char *key, size_t len)
{
    if (m->n == 0)
        return NULL;
    return strmap_find(m, strmap_hash(owner, key, len), owner, key, len)->value;
}

/* Double the table (load factor stays <= 1/2 so probe chains stay short). */
static int strmap_grow(struct tp__strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    struct tp__strmap_slot *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return TP_ENOMEM;
    struct tp__strmap old = *m;
    m->slots = slots;
    m->cap = cap;
    for (size_t i = 0; i < old.cap; i++) {
        struct tp__strmap_slot *s = &old.slots[i];
        if (s->value)
            *strmap_find(m, s->hash, s->owner, s->key, s->len) = *s;
    }
    free(old.slots);
    return 0;
}

int tp__strmap_put(struct tp__strmap *m, const void *owner, const char *key, size_t len,
                   void *value)
{
    if ((m->n + 1) * 2 > m->cap && strmap_grow(m) != 0)
        return TP_ENOMEM;
    uint64_t h = strmap_hash(owner, key, len);
    struct tp__strmap_slot *s = strmap_find(m, h, owner, key, len);
    if (!s->value)
        m->n++;
    *s = (struct tp__strmap_slot){h, owner, key, len, value};
    return 0;
}

void tp__strmap_free(struct tp__strmap *m)
{
    free(m->slots);
    *m = (struct tp__strmap){0};
}

/* ---- small helpers --------------------------------------------------------------------- */

/* snprintf into an optional caller buffer: err may be NULL. */
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* strdup is not C11; the router copies every config string it keeps. */
static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* Append to a growable entry list. */
static int entry_list_push(struct entry_list *l, const struct route *route,
                           const struct pattern *pat)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 2;
        struct entry *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return TP_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (struct entry){route, pat};
    return 0;
}

/* ---- route copies ---------------------------------------------------------------------- */

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* Deep copy of a string vector; NULL entries are refused (they would be config bugs). */
static int copy_strv(char ***dst, const char *const *src, size_t n)
{
    *dst = NULL;
    if (n == 0)
        return 0;
    if (!src)
        return TP_EINVAL;
    char **v = calloc(n, sizeof(*v));
    if (!v)
        return TP_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!src[i]) {
            free_strv(v, n);
            return TP_EINVAL;
        }
        v[i] = dup_str(src[i]);
        if (!v[i]) {
            free_strv(v, n);
            return TP_ENOMEM;
        }
    }
    *dst = v;
    return 0;
}

static void free_conds(struct cond *c, size_t n)
{
    for (size_t i = 0; c && i < n; i++) {
        free(c[i].name);
        free_strv(c[i].values, c[i].num_values);
    }
    free(c);
}

/* Deep copy of header or query conditions. */
static int copy_conds(struct cond **dst, const struct tp_route_cond *src, size_t n)
{
    *dst = NULL;
    if (n == 0)
        return 0;
    if (!src)
        return TP_EINVAL;
    struct cond *c = calloc(n, sizeof(*c));
    if (!c)
        return TP_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!src[i].name || src[i].name[0] == '\0' || src[i].num_values == 0) {
            rc = TP_EINVAL;
            break;
        }
        c[i].name = dup_str(src[i].name);
        rc = c[i].name ? copy_strv(&c[i].values, src[i].values, src[i].num_values) : TP_ENOMEM;
        if (rc == 0)
            c[i].num_values = src[i].num_values;
    }
    if (rc != 0) {
        free_conds(c, n);
        return rc;
    }
    *dst = c;
    return 0;
}

static void free_pattern(struct pattern *p)
{
    free(p->text);
    for (size_t i = 0; i < p->num_names; i++)
        free(p->names[i]);
    pcre2_code_free(p->re);
}

static void free_route(struct route *rt)
{
    if (!rt)
        return;
    free(rt->name);
    free_strv(rt->methods, rt->num_methods);
    free_conds(rt->headers, rt->num_headers);
    free_conds(rt->query, rt->num_query);
    for (size_t i = 0; rt->pats && i < rt->num_pats; i++)
        free_pattern(&rt->pats[i]);
    free(rt->pats);
    free(rt);
}

/* Copy everything of the spec but its paths and hosts. */
static int copy_route(struct route **out, const struct tp_route_spec *spec, size_t seq)
{
    struct route *rt = calloc(1, sizeof(*rt));
    if (!rt)
        return TP_ENOMEM;
    rt->name = dup_str(spec->name ? spec->name : "");
    int rc = rt->name ? 0 : TP_ENOMEM;
    if (rc == 0 && (rc = copy_strv(&rt->methods, spec->methods, spec->num_methods)) == 0)
        rt->num_methods = spec->num_methods;
    if (rc == 0 && (rc = copy_conds(&rt->headers, spec->headers, spec->num_headers)) == 0)
        rt->num_headers = spec->num_headers;
    if (rc == 0 && (rc = copy_conds(&rt->query, spec->query, spec->num_query)) == 0)
        rt->num_query = spec->num_query;
    if (rc != 0) {
        free_route(rt);
        return rc;
    }
    rt->udata = spec->udata;
    rt->priority = spec->priority;
    rt->seq = seq;
    rt->num_conds = (unsigned)((rt->num_methods > 0) + rt->num_headers + rt->num_query);
    *out = rt;
    return 0;
}

/* ---- path patterns --------------------------------------------------------------------- */

/* "{name}" with name = [A-Za-z0-9_]+; anything else with a brace in it is malformed. */
static bool is_param_segment(const char *s, size_t len)
{
    if (len < 3 || s[0] != '{' || s[len - 1] != '}')
        return false;
    for (size_t i = 1; i + 1 < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

/* Prefix or exact pattern: normalised like a request path so that both compare bytewise. */
static int parse_literal_path(struct pattern *p, const char *path, char *why, size_t whylen)
{
    size_t len = strlen(path), out_len = 0;
    p->text = malloc(len + 1);
    if (!p->text)
        return TP_ENOMEM;
    if (tp_path_normalize(path, len, p->text, &out_len, TP_PATH_ALLOW_ENCODED_SLASH) != 0) {
        set_err(why, whylen, "not a valid path");
        return TP_EINVAL;
    }
    p->text[out_len] = '\0';
    p->slash = out_len > 1 && p->text[out_len - 1] == '/';
    return 0;
}

/* One template segment: a "{param}" (recorded in p->names) or a literal, normalised. */
static int add_template_segment(struct pattern *p, const char *seg, size_t len, char *buf,
                                size_t *o, char *why, size_t whylen)
{
    if (is_param_segment(seg, len)) {
        for (size_t i = 0; i < p->num_names; i++)
            if (strlen(p->names[i]) == len - 2 && memcmp(p->names[i], seg + 1, len - 2) == 0) {
                set_err(why, whylen, "parameter %.*s used twice", (int)len, seg);
                return TP_EINVAL;
            }
        if (p->num_names == TP_ROUTER_MAX_CAPTURES) {
            set_err(why, whylen, "more than %d parameters", TP_ROUTER_MAX_CAPTURES);
            return TP_EINVAL;
        }
        char *name = malloc(len - 1);
        if (!name)
            return TP_ENOMEM;
        memcpy(name, seg + 1, len - 2);
        name[len - 2] = '\0';
        p->names[p->num_names++] = name;
        memcpy(buf + *o, seg, len);
        *o += len;
        return 0;
    }
    if (memchr(seg, '{', len) || memchr(seg, '}', len)) {
        set_err(why, whylen, "malformed parameter '%.*s' (want a whole segment {name})", (int)len,
                seg);
        return TP_EINVAL;
    }
    /* Normalise "/seg" in place: it must stay one real segment (no dot segment). */
    size_t start = *o - 1, n = 0;
    memcpy(buf + *o, seg, len);
    if (tp_path_normalize(buf + start, len + 1, buf + start, &n, TP_PATH_ALLOW_ENCODED_SLASH) !=
            0 ||
        n < 2 || memchr(buf + start + 1, '/', n - 1)) {
        set_err(why, whylen, "bad segment '%.*s'", (int)len, seg);
        return TP_EINVAL;
    }
    *o = start + n;
    return 0;
}

/* "/users/{id}/posts": whole-path template; literal segments normalised, no empty segment. */
static int parse_template(struct pattern *p, const char *path, char *why, size_t whylen)
{
    size_t len = strlen(path), o = 0, i = 1;
    if (path[0] != '/') {
        set_err(why, whylen, "must start with '/'");
        return TP_EINVAL;
    }
    p->text = malloc(len + 1);
    if (!p->text)
        return TP_ENOMEM;
    while (i < len) {
        const char *slash = memchr(path + i, '/', len - i);
        size_t end = slash ? (size_t)(slash - path) : len;
        if (end == i) {
            set_err(why, whylen, "empty segment");
            return TP_EINVAL;
        }
        p->text[o++] = '/';
        int rc = add_template_segment(p, path + i, end - i, p->text, &o, why, whylen);
        if (rc != 0)
            return rc;
        i = end + 1;
    }
    p->slash = path[len - 1] == '/' && len > 1;
    if (p->slash)
        p->text[o++] = '/';
    p->text[o] = '\0';
    return 0;
}

/* Keep the names of the named groups: they become captures. */
static int collect_group_names(struct pattern *p, char *why, size_t whylen)
{
    uint32_t count = 0, entry_size = 0, captures = 0;
    PCRE2_SPTR table = NULL;
    pcre2_pattern_info(p->re, PCRE2_INFO_NAMECOUNT, &count);
    pcre2_pattern_info(p->re, PCRE2_INFO_NAMEENTRYSIZE, &entry_size);
    pcre2_pattern_info(p->re, PCRE2_INFO_NAMETABLE, &table);
    pcre2_pattern_info(p->re, PCRE2_INFO_CAPTURECOUNT, &captures);
    p->ovec_pairs = captures + 1;
    if (count > TP_ROUTER_MAX_CAPTURES) {
        set_err(why, whylen, "more than %d named groups", TP_ROUTER_MAX_CAPTURES);
        return TP_EINVAL;
    }
    /* The name table is sorted by name; captures are reported in group order. */
    for (uint32_t i = 0; i < count; i++) {
        PCRE2_SPTR e = table + (size_t)i * entry_size;
        uint32_t group = (uint32_t)e[0] << 8 | e[1];
        char *name = dup_str((const char *)e + 2);
        if (!name)
            return TP_ENOMEM;
        size_t k = p->num_names++;
        for (; k > 0 && p->groups[k - 1] > group; k--) {
            p->names[k] = p->names[k - 1];
            p->groups[k] = p->groups[k - 1];
        }
        p->names[k] = name;
        p->groups[k] = group;
    }
    return 0;
}

/* "~regex": PCRE2, never UTF (the normalised path is ASCII), JIT-compiled in compile. */
static int parse_regex(struct pattern *p, const char *re, char *why, size_t whylen)
{
    int code = 0;
    PCRE2_SIZE off = 0;
    p->re =
        pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_NEVER_UTF, &code, &off, NULL);
    if (!p->re) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(code, msg, sizeof(msg));
        set_err(why, whylen, "regex error at offset %zu: %s", (size_t)off, (const char *)msg);
        return code == PCRE2_ERROR_NOMEMORY ? TP_ENOMEM : TP_EINVAL;
    }
    return collect_group_names(p, why, whylen);
}

/* Classify one spec path: "~" regex, "=" exact, braces template, otherwise prefix. */
static int parse_pattern(struct pattern *p, const char *path, char *why, size_t whylen)
{
    if (path[0] == '~') {
        p->kind = PAT_REGEX;
        return parse_regex(p, path + 1, why, whylen);
    }
    bool exact = path[0] == '=';
    if (exact)
        path++;
    if (strchr(path, '{') || strchr(path, '}')) {
        p->kind = PAT_TEMPLATE; /* templates always match the whole path */
        return parse_template(p, path, why, whylen);
    }
    p->kind = exact ? PAT_EXACT : PAT_PREFIX;
    return parse_literal_path(p, path, why, whylen);
}

int tp_router_check_path(const char *path, char *err, size_t errlen)
{
    struct pattern p;
    memset(&p, 0, sizeof(p));
    if (errlen)
        err[0] = '\0';
    int rc = parse_pattern(&p, path, err, errlen);
    free_pattern(&p);
    return rc;
}

/* Parse every path of the spec into rt->pats (none = the "/" prefix). */
static int parse_paths(struct route *rt, const struct tp_route_spec *spec, char *err, size_t errlen)
{
    static const char *const root[] = {"/"};
    const char *const *paths = spec->num_paths ? spec->paths : root;
    size_t n = spec->num_paths ? spec->num_paths : 1;
    if (!paths)
        return TP_EINVAL;
    rt->pats = calloc(n, sizeof(*rt->pats));
    if (!rt->pats)
        return TP_ENOMEM;
    rt->num_pats = n;
    for (size_t i = 0; i < n; i++) {
        char why[160] = "";
        int rc = paths[i] ? parse_pattern(&rt->pats[i], paths[i], why, sizeof(why)) : TP_EINVAL;
        if (rc != 0) {
            set_err(err, errlen, "route '%s': bad path '%s': %s", rt->name,
                    paths[i] ? paths[i] : "(null)", rc == TP_ENOMEM ? "out of memory" : why);
            return rc;
        }
    }
    return 0;
}

/* ---- hosts ----------------------------------------------------------------------------- */

/*
 * Canonical hash key of a route host: "api.example.com" as is (lower case, no trailing dot);
 * "*.example.com" becomes ".example.com" with *wild set. key must hold ROUTE_HOST_MAX + 2.
 * Ports and other wildcard forms are refused: route hosts are names only (B19).
 */
static int host_key(const char *host, char *key, size_t *len, bool *wild)
{
    size_t n = strlen(host), off = 0;
    *wild = n > 2 && host[0] == '*' && host[1] == '.';
    if (*wild) {
        host += 2;
        n -= 2;
        key[off++] = '.';
    }
    if (n == 0 || n > ROUTE_HOST_MAX || memchr(host, '*', n))
        return TP_EINVAL;
    bool literal = host[0] == '[';
    if ((!literal && memchr(host, ':', n)) || (literal && host[n - 1] != ']') || (literal && *wild))
        return TP_EINVAL;
    size_t out = 0;
    if (tp_host_canonicalize(host, n, key + off, &out) != 0 || out == 0)
        return TP_EINVAL;
    *len = off + out;
    key[*len] = '\0';
    return 0;
}

/* Create an empty bucket (root node included) and link it for free. */
static struct bucket *bucket_new(struct tp_router *r, const char *host, size_t len)
{
    struct bucket *b = calloc(1, sizeof(*b));
    struct node *root = calloc(1, sizeof(*root));
    char *key = host ? malloc(len + 1) : NULL;
    if (!b || !root || (host && !key)) {
        free(b);
        free(root);
        free(key);
        return NULL;
    }
    if (host) {
        memcpy(key, host, len);
        key[len] = '\0';
    }
    b->host = key;
    b->root = root;
    root->all_next = r->nodes;
    r->nodes = root;
    b->all_next = r->buckets;
    r->buckets = b;
    return b;
}

/* The bucket of a route host, created on first use. */
static int bucket_for_host(struct tp_router *r, const char *host, struct bucket **out)
{
    char key[ROUTE_HOST_MAX + 2];
    size_t len = 0;
    bool wild = false;
    if (host_key(host, key, &len, &wild) != 0)
        return TP_EINVAL;
    struct tp__strmap *map = wild ? &r->wildcards : &r->hosts;
    struct bucket *b = tp__strmap_get(map, NULL, key, len);
    if (!b) {
        b = bucket_new(r, key, len);
        if (!b || tp__strmap_put(map, NULL, b->host, len, b) != 0)
            return TP_ENOMEM; /* a bucket not in the map is still freed with the router */
    }
    *out = b;
    return 0;
}

/* ---- trie insertion -------------------------------------------------------------------- */

/* Child of n for one pattern segment (literal or "{param}"), created on first use. */
static int trie_child(struct tp_router *r, struct node *n, const char *seg, size_t len,
                      struct node **out)
{
    bool param = seg[0] == '{';
    struct node *c = param ? n->param : tp__strmap_get(&r->edges, n, seg, len);
    if (!c) {
        c = calloc(1, sizeof(*c));
        if (!c)
            return TP_ENOMEM;
        c->parent = n;
        c->is_param = param;
        c->seg = param ? NULL : seg;
        c->seg_len = param ? 0 : len;
        c->all_next = r->nodes;
        r->nodes = c;
        if (param)
            n->param = c;
        else if (tp__strmap_put(&r->edges, n, seg, len, c) != 0)
            return TP_ENOMEM;
    }
    *out = c;
    return 0;
}

/* Enter one (route, pattern) into a bucket: regex array or the trie node the path ends at. */
static int bucket_add(struct tp_router *r, struct bucket *b, const struct route *rt,
                      const struct pattern *p)
{
    if (p->kind == PAT_REGEX)
        return entry_list_push(&b->regex, rt, p);
    struct node *n = b->root;
    const char *s = p->text;
    size_t len = strlen(s), i = 1;
    while (i < len) {
        const char *slash = memchr(s + i, '/', len - i);
        size_t end = slash ? (size_t)(slash - s) : len;
        int rc = trie_child(r, n, s + i, end - i, &n);
        if (rc != 0)
            return rc;
        i = end + 1;
    }
    struct entry_list *l = p->kind == PAT_EXACT      ? &n->exact
                           : p->kind == PAT_TEMPLATE ? &n->tmpl
                                                     : &n->prefix;
    return entry_list_push(l, rt, p);
}

/* ---- public: build --------------------------------------------------------------------- */

struct tp_router *tp_router_new(void)
{
    struct tp_router *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->any = bucket_new(r, NULL, 0);
    r->mctx = pcre2_match_context_create(NULL);
    if (!r->any || !r->mctx) {
        tp_router_free(r);
        return NULL;
    }
    pcre2_set_match_limit(r->mctx, REGEX_MATCH_LIMIT);
    return r;
}

/* Keep the route so that it is freed with the router whatever happens next. */
static int keep_route(struct tp_router *r, struct route *rt)
{
    if (r->num_routes == r->cap_routes) {
        size_t cap = r->cap_routes ? r->cap_routes * 2 : 16;
        struct route **v = realloc(r->routes, cap * sizeof(*v));
        if (!v)
            return TP_ENOMEM;
        r->routes = v;
        r->cap_routes = cap;
    }
    r->routes[r->num_routes++] = rt;
    return 0;
}

/* Refuse a bad host before anything of the route is entered. */
static int check_hosts(const struct tp_route_spec *spec, char *err, size_t errlen)
{
    if (spec->num_hosts && !spec->hosts)
        return TP_EINVAL;
    for (size_t i = 0; i < spec->num_hosts; i++) {
        char key[ROUTE_HOST_MAX + 2];
        size_t len = 0;
        bool wild = false;
        if (!spec->hosts[i] || host_key(spec->hosts[i], key, &len, &wild) != 0) {
            set_err(err, errlen, "route '%s': bad host '%s'", spec->name ? spec->name : "",
                    spec->hosts[i] ? spec->hosts[i] : "(null)");
            return TP_EINVAL;
        }
    }
    return 0;
}

/* Refuse methods that are not upper-case tokens: they could never match. */
static int check_methods(const struct tp_route_spec *spec, char *err, size_t errlen)
{
    if (spec->num_methods && !spec->methods)
        return TP_EINVAL;
    for (size_t i = 0; i < spec->num_methods; i++) {
        const char *m = spec->methods[i];
        bool ok = m && m[0];
        for (size_t j = 0; ok && m[j]; j++)
            ok = (m[j] >= 'A' && m[j] <= 'Z') || (m[j] >= '0' && m[j] <= '9') || m[j] == '-' ||
                 m[j] == '_';
        if (!ok) {
            set_err(err, errlen, "route '%s': bad method '%s' (upper-case token expected)",
                    spec->name ? spec->name : "", m ? m : "(null)");
            return TP_EINVAL;
        }
    }
    return 0;
}

/* Enter the route under every host × path of its spec. */
static int enter_route(struct tp_router *r, const struct route *rt,
                       const struct tp_route_spec *spec)
{
    size_t nh = spec->num_hosts ? spec->num_hosts : 1;
    for (size_t h = 0; h < nh; h++) {
        struct bucket *b = r->any;
        int rc = spec->num_hosts ? bucket_for_host(r, spec->hosts[h], &b) : 0;
        for (size_t i = 0; rc == 0 && i < rt->num_pats; i++)
            rc = bucket_add(r, b, rt, &rt->pats[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int tp_router_add(struct tp_router *r, const struct tp_route_spec *spec, char *err, size_t errlen)
{
    if (!r || !spec || r->compiled) {
        set_err(err, errlen, "router: add after compile or without a spec");
        return TP_EINVAL;
    }
    int rc = check_hosts(spec, err, errlen);
    if (rc == 0)
        rc = check_methods(spec, err, errlen);
    if (rc != 0)
        return rc;
    struct route *rt = NULL;
    rc = copy_route(&rt, spec, r->num_routes);
    if (rc != 0) {
        set_err(err, errlen, "route '%s': %s", spec->name ? spec->name : "",
                rc == TP_ENOMEM ? "out of memory" : "bad header or query condition");
        return rc;
    }
    rc = parse_paths(rt, spec, err, errlen);
    if (rc == 0)
        rc = keep_route(r, rt);
    if (rc != 0) {
        free_route(rt);
        return rc;
    }
    /* From here a failure (only TP_ENOMEM) may leave the route partly entered: the caller
     * discards the router on any error. */
    rc = enter_route(r, rt, spec);
    if (rc != 0)
        set_err(err, errlen, "route '%s': out of memory", rt->name);
    return rc;
}

/* Candidate order inside one list; see the precedence rule at the top of the file. */
static int entry_cmp(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->pat->slash != y->pat->slash)
        return x->pat->slash ? -1 : 1;
    if (x->route->num_conds != y->route->num_conds)
        return x->route->num_conds > y->route->num_conds ? -1 : 1;
    if (x->route->priority != y->route->priority)
        return x->route->priority > y->route->priority ? -1 : 1;
    if (x->route->seq != y->route->seq)
        return x->route->seq < y->route->seq ? -1 : 1;
    return x->pat < y->pat ? -1 : (x->pat > y->pat);
}

static void sort_list(struct entry_list *l)
{
    if (l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), entry_cmp);
}

int tp_router_compile(struct tp_router *r)
{
    if (!r)
        return TP_EINVAL;
    if (r->compiled)
        return 0;
    for (struct node *n = r->nodes; n; n = n->all_next) {
        sort_list(&n->exact);
        sort_list(&n->tmpl);
        sort_list(&n->prefix);
    }
    r->max_pairs = 1;
    for (size_t i = 0; i < r->num_routes; i++) {
        const struct route *rt = r->routes[i];
        for (size_t j = 0; j < rt->num_pats; j++) {
            const struct pattern *p = &rt->pats[j];
            if (p->kind != PAT_REGEX)
                continue;
            (void)pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE); /* interpreter if JIT fails */
            r->max_pairs = TP_MAX(r->max_pairs, p->ovec_pairs);
        }
    }
    r->compiled = true;
    return 0;
}

void tp_router_free(struct tp_router *r)
{
    if (!r)
        return;
    for (struct node *n = r->nodes, *next; n; n = next) {
        next = n->all_next;
        free(n->exact.v);
        free(n->tmpl.v);
        free(n->prefix.v);
        free(n);
    }
    for (struct bucket *b = r->buckets, *next; b; b = next) {
        next = b->all_next;
        free(b->regex.v);
        free(b->host);
        free(b);
    }
    for (size_t i = 0; i < r->num_routes; i++)
        free_route(r->routes[i]);
    free(r->routes);
    tp__strmap_free(&r->hosts);
    tp__strmap_free(&r->wildcards);
    tp__strmap_free(&r->edges);
    pcre2_match_context_free(r->mctx);
    free(r);
}

/* ---- matching: conditions -------------------------------------------------------------- */

/* Value of one hex digit, or -1. */
static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tp_lower(c);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* Does the percent-decoded form of raw equal lit? Invalid escapes compare literally;
 * '+' stays '+' (RFC 3986 has no space-as-plus). */
static bool pct_equal(const char *raw, size_t rawlen, const char *lit, size_t litlen)
{
    size_t i = 0, j = 0;
    while (i < rawlen && j < litlen) {
        unsigned char c = (unsigned char)raw[i];
        size_t step = 1;
        if (c == '%' && rawlen - i >= 3) {
            int hi = hex_digit(raw[i + 1]), lo = hex_digit(raw[i + 2]);
            if (hi >= 0 && lo >= 0) {
                c = (unsigned char)(hi << 4 | lo);
                step = 3;
            }
        }
        if (c != (unsigned char)lit[j])
            return false;
        i += step;
        j++;
    }
    return i == rawlen && j == litlen;
}

/* Does the query string have name=value for this condition's name and one of its values? */
static bool query_has(struct tp_slice q, const struct cond *c)
{
    size_t nlen = strlen(c->name);
    for (size_t i = 0; i < q.len;) {
        const char *amp = memchr(q.ptr + i, '&', q.len - i);
        size_t end = amp ? (size_t)(amp - q.ptr) : q.len;
        const char *eq = memchr(q.ptr + i, '=', end - i);
        size_t name_end = eq ? (size_t)(eq - q.ptr) : end;
        size_t val = eq ? name_end + 1 : end;
        if (pct_equal(q.ptr + i, name_end - i, c->name, nlen))
            for (size_t k = 0; k < c->num_values; k++)
                if (pct_equal(q.ptr + val, end - val, c->values[k], strlen(c->values[k])))
                    return true;
        i = end + 1;
    }
    return false;
}

struct match_state {
    const struct tp_router *r;
    const struct tp_router_request *req;
    struct tp_router_match *m;
    const char *path;
    size_t len;
    size_t body_end; /* path without its trailing '/' */
    size_t num_segs;
    bool slash;       /* path ends with '/' (and is not "/") */
    bool method_only; /* some candidate failed on its method alone */
    int error;
};

/* Methods, headers, query of one route; remembers a failure on the method alone (405). */
static bool route_accepts(struct match_state *st, const struct route *rt)
{
    const struct tp_router_request *req = st->req;
    for (size_t i = 0; i < rt->num_headers; i++) {
        const struct cond *c = &rt->headers[i];
        if (!req->header_has || !req->header_has(req->header_ctx, c->name,
                                                 (const char *const *)c->values, c->num_values))
            return false;
    }
    for (size_t i = 0; i < rt->num_query; i++)
        if (!query_has(req->query, &rt->query[i]))
            return false;
    if (rt->num_methods == 0)
        return true;
    for (size_t i = 0; i < rt->num_methods; i++)
        if (strlen(rt->methods[i]) == req->method.len &&
            memcmp(rt->methods[i], req->method.ptr, req->method.len) == 0)
            return true;
    st->method_only = true;
    return false;
}

/* ---- matching: trie -------------------------------------------------------------------- */

static void set_result(struct match_state *st, const struct route *rt, size_t prefix_len)
{
    st->m->udata = rt->udata;
    st->m->route_name = rt->name;
    st->m->prefix_len = prefix_len;
    st->m->num_captures = 0;
}

/* Start of the segment that ends at `end` (segments never contain '/'). */
static size_t seg_start_before(const char *p, size_t end)
{
    while (end > 0 && p[end - 1] != '/')
        end--;
    return end;
}

/* End of the segment that starts at `pos`. */
static size_t seg_end(const struct match_state *st, size_t pos)
{
    const char *s = memchr(st->path + pos, '/', st->body_end - pos);
    return s ? (size_t)(s - st->path) : st->body_end;
}

/* Captures of a template that matched the whole path at node n: walk up, right to left. */
static void template_captures(struct match_state *st, const struct node *n, const struct pattern *p)
{
    size_t k = p->num_names, end = st->body_end;
    for (; n->parent; n = n->parent) {
        size_t start = seg_start_before(st->path, end);
        if (n->is_param && k > 0) {
            k--;
            st->m->captures[k].name = p->names[k];
            st->m->captures[k].value = (struct tp_slice){st->path + start, end - start};
        }
        end = start - 1;
    }
    st->m->num_captures = p->num_names;
}

/* First accepting candidate of an exact or template list at node n (whole-path matches). */
static bool try_whole(struct match_state *st, const struct node *n, const struct entry_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        const struct entry *e = &l->v[i];
        if (e->pat->slash != st->slash || !route_accepts(st, e->route))
            continue;
        set_result(st, e->route, st->len);
        if (e->pat->kind == PAT_TEMPLATE)
            template_captures(st, n, e->pat);
        return true;
    }
    return false;
}

/* Deepest node reachable through literal children only; *depth and *end (byte offset of the
 * end of its last segment) describe it. */
static const struct node *literal_walk(const struct match_state *st, const struct node *n,
                                       size_t *depth, size_t *end)
{
    size_t d = 0, pos = 1;
    *end = 0;
    while (d < st->num_segs) {
        size_t e = seg_end(st, pos);
        const struct node *c = tp__strmap_get(&st->r->edges, n, st->path + pos, e - pos);
        if (!c)
            break;
        n = c;
        d++;
        *end = e;
        pos = e + 1;
    }
    *depth = d;
    return n;
}

/* Prefix candidates from the deepest literal node up to the root. */
static bool try_prefixes(struct match_state *st, const struct node *n, size_t depth, size_t end)
{
    for (;; depth--) {
        for (size_t i = 0; i < n->prefix.n; i++) {
            const struct entry *e = &n->prefix.v[i];
            /* "/a/" needs something after "/a": a deeper segment or a trailing '/'. */
            if (e->pat->slash && depth == st->num_segs && !st->slash)
                continue;
            if (route_accepts(st, e->route)) {
                set_result(st, e->route, end);
                return true;
            }
        }
        if (!n->parent)
            return false;
        end = end - n->seg_len - 1;
        n = n->parent;
    }
}

/*
 * Templates: depth-first over the trie along the request's segments, literal child before
 * the {param} child, backtracking through parent pointers (no recursion, no allocation).
 * Every node is visited at most once and only nodes whose literals equal the request's
 * segments are entered, so the cost does not grow with the number of routes.
 */
static bool try_templates(struct match_state *st, const struct node *n)
{
    size_t d = 0, pos = 1;
    for (;;) {
        while (d < st->num_segs) {
            size_t e = seg_end(st, pos);
            const struct node *c = tp__strmap_get(&st->r->edges, n, st->path + pos, e - pos);
            if (!c && e > pos)
                c = n->param;
            if (!c)
                break;
            n = c;
            d++;
            pos = e + 1;
        }
        if (d == st->num_segs && try_whole(st, n, &n->tmpl))
            return true;
        for (;;) {
            if (!n->parent)
                return false;
            size_t start = seg_start_before(st->path, pos - 1);
            if (!n->is_param && n->parent->param && pos - 1 > start) {
                n = n->parent->param; /* same depth, same segment: try the {param} branch */
                break;
            }
            n = n->parent;
            d--;
            pos = start;
        }
    }
}

/* ---- matching: regex ------------------------------------------------------------------- */

static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static pthread_key_t md_key;
static bool md_key_ok;
static __thread pcre2_match_data *md_tls;
static __thread uint32_t md_tls_pairs;

/* Thread exit: the cached match data dies with its thread. */
static void md_destroy(void *md)
{
    pcre2_match_data_free(md);
}

static void md_key_init(void)
{
    md_key_ok = pthread_key_create(&md_key, md_destroy) == 0;
}

/* This thread's match data with room for `pairs` offsets; allocates only to grow it. */
static pcre2_match_data *md_get(uint32_t pairs)
{
    if (TP_LIKELY(md_tls && md_tls_pairs >= pairs))
        return md_tls;
    pthread_once(&md_once, md_key_init);
    pcre2_match_data *md = pcre2_match_data_create(pairs, NULL);
    if (!md)
        return NULL;
    pcre2_match_data_free(md_tls);
    md_tls = md;
    md_tls_pairs = pairs;
    if (md_key_ok)
        pthread_setspecific(md_key, md);
    return md;
}

/* Named groups that took part in the match become captures. */
static void regex_captures(struct match_state *st, const struct pattern *p, pcre2_match_data *md,
                           int rc)
{
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    uint32_t have = rc > 0 ? (uint32_t)rc : pcre2_get_ovector_count(md);
    size_t k = 0;
    for (size_t i = 0; i < p->num_names; i++) {
        uint32_t g = p->groups[i];
        if (g >= have || ov[2 * g] == PCRE2_UNSET || ov[2 * g + 1] < ov[2 * g])
            continue;
        st->m->captures[k].name = p->names[i];
        size_t start = ov[2 * g];
        st->m->captures[k].value = (struct tp_slice){st->path + start, ov[2 * g + 1] - start};
        k++;
    }
    st->m->num_captures = k;
}

static bool try_regexes(struct match_state *st, const struct bucket *b)
{
    if (b->regex.n == 0)
        return false;
    pcre2_match_data *md = md_get(st->r->max_pairs);
    if (!md) {
        st->error = TP_ENOMEM;
        return false;
    }
    for (size_t i = 0; i < b->regex.n; i++) {
        const struct entry *e = &b->regex.v[i];
        int rc = pcre2_match(e->pat->re, (PCRE2_SPTR)st->path, st->len, 0, 0, md, st->r->mctx);
        if (rc < 0 || !route_accepts(st, e->route))
            continue; /* no match, or a limit hit: treated as no match */
        /* strip_path removes what the regex matched, as Kong does, when it matched from the
         * start of the path; otherwise nothing is stripped */
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        set_result(st, e->route, ov[0] == 0 ? (size_t)ov[1] : 0);
        regex_captures(st, e->pat, md, rc);
        return true;
    }
    return false;
}

/* ---- matching: driver ------------------------------------------------------------------ */

static bool match_bucket(struct match_state *st, const struct bucket *b)
{
    if (st->error != 0)
        return false; /* a bucket that could not be searched must not let a later one win */
    size_t depth = 0, end = 0;
    const struct node *n = literal_walk(st, b->root, &depth, &end);
    if (depth == st->num_segs && try_whole(st, n, &n->exact))
        return true;
    if (try_templates(st, b->root))
        return true;
    if (try_prefixes(st, n, depth, end))
        return true;
    return st->error == 0 && try_regexes(st, b);
}

/* Wildcard buckets, longest suffix first: ".b.example.com" before ".example.com". */
static bool match_wildcards(struct match_state *st, struct tp_slice host)
{
    if (st->r->wildcards.n == 0)
        return false;
    for (size_t i = 1; i + 1 < host.len; i++) {
        if (host.ptr[i] != '.')
            continue;
        const struct bucket *b =
            tp__strmap_get(&st->r->wildcards, NULL, host.ptr + i, host.len - i);
        if (b && match_bucket(st, b))
            return true;
    }
    return false;
}

/* Split the request path once: segments between "/" and the optional trailing '/'. */
static void init_state(struct match_state *st, const struct tp_router *r,
                       const struct tp_router_request *req, struct tp_router_match *m)
{
    *st = (struct match_state){.r = r, .req = req, .m = m};
    st->path = req->path.ptr;
    st->len = req->path.len;
    st->slash = st->len > 1 && st->path[st->len - 1] == '/';
    st->body_end = st->len - st->slash;
    if (st->body_end > 1) {
        st->num_segs = 1;
        for (size_t i = 1; i < st->body_end; i++)
            st->num_segs += st->path[i] == '/';
    }
}

int tp_router_match(const struct tp_router *r, const struct tp_router_request *req,
                    struct tp_router_match *m)
{
    if (!r || !req || !m || !r->compiled || !req->path.ptr || req->path.len == 0 ||
        req->path.ptr[0] != '/')
        return TP_ENOTFOUND;
    struct match_state st;
    init_state(&st, r, req, m);
    struct tp_slice host = req->host.ptr ? req->host : (struct tp_slice){"", 0};
    const struct bucket *b = host.len ? tp__strmap_get(&r->hosts, NULL, host.ptr, host.len) : NULL;
    if ((b && match_bucket(&st, b)) || match_wildcards(&st, host) || match_bucket(&st, r->any))
        return 0;
    if (st.error != 0)
        return st.error;
    return st.method_only ? TP_EMETHOD : TP_ENOTFOUND;
}

/*
 * The audit log (include/turnpike/audit.h): configuration changes as JSON lines.
 *
 * Both configuration texts are loaded with libyaml and reduced to entities per kind, each a
 * name and a 64-bit digest of its settings. The digest of a mapping combines its pairs in an
 * order-independent way (key order is not a change); nested routes and plugins are left out of
 * their parent's digest because they are entities of their own. Sorting by name and merging
 * the two lists gives added / removed / changed. Only names are written, never values.
 */
#include "turnpike/audit.h"
#include "turnpike/log.h"
#include "turnpike/logsink.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 64  /* deeper nesting is hashed as one opaque value */
#define MAX_NAMES 256 /* names written per list; more set "truncated" */
#define MAX_ERROR_LINES 20

enum kind { K_SERVICES, K_ROUTES, K_UPSTREAMS, K_CONSUMERS, K_PLUGINS, K_SETTINGS, K_COUNT };

static const char *const kind_names[K_COUNT] = {"services",  "routes",  "upstreams",
                                                "consumers", "plugins", "settings"};

struct entity {
    char *name;
    uint64_t digest;
};

struct entity_set {
    struct entity *v;
    size_t n, cap;
};

struct model {
    yaml_document_t *doc;
    struct entity_set k[K_COUNT];
    bool oom;
};

/* ------------------------------------------------------------------------------------------ */
/* digests                                                                                    */

static uint64_t mix64(uint64_t x)
{
    /* splitmix64 finaliser: spreads every input bit over the output */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static bool scalar_is(const yaml_node_t *n, const char *s)
{
    size_t len = strlen(s);
    return n && n->type == YAML_SCALAR_NODE && n->data.scalar.length == len &&
           memcmp(n->data.scalar.value, s, len) == 0;
}

static bool skipped(const yaml_node_t *key, const char *const *skip)
{
    for (; skip && *skip; skip++)
        if (scalar_is(key, *skip))
            return true;
    return false;
}

static uint64_t digest(yaml_document_t *d, yaml_node_t *n, const char *const *skip, int depth)
{
    if (!n)
        return 0x9e3779b97f4a7c15ULL;
    if (depth > MAX_DEPTH)
        return 0x5bd1e995ULL;
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return mix64(fnv(0xcbf29ce484222325ULL ^ 'S', n->data.scalar.value, n->data.scalar.length));
    case YAML_SEQUENCE_NODE: {
        uint64_t h = 0xcbf29ce484222325ULL ^ 'L';
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++) {
            uint64_t c = digest(d, yaml_document_get_node(d, *it), NULL, depth + 1);
            h = mix64(h ^ c) + 0x632be59bd9b4e019ULL;
        }
        return h;
    }
    case YAML_MAPPING_NODE: {
        /* sum and xor of the pairs' digests: the same whatever the key order */
        uint64_t sum = 0, x = 0, count = 0;
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(d, p->key);
            if (skipped(k, skip))
                continue;
            uint64_t kh = digest(d, k, NULL, depth + 1);
            uint64_t vh = digest(d, yaml_document_get_node(d, p->value), NULL, depth + 1);
            uint64_t ph = mix64(kh * 31 + vh);
            sum += ph;
            x ^= mix64(ph + 0x12345);
            count++;
        }
        return mix64(sum ^ mix64(x) ^ (count << 1) ^ 'M');
    }
    default:
        return 0;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* entities                                                                                   */

static yaml_node_t *lookup(yaml_document_t *d, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++)
        if (scalar_is(yaml_document_get_node(d, p->key), key))
            return yaml_document_get_node(d, p->value);
    return NULL;
}

/* The scalar value of key in map as a new string, or NULL. */
static char *scalar_dup(yaml_document_t *d, yaml_node_t *map, const char *key)
{
    yaml_node_t *v = lookup(d, map, key);
    if (!v || v->type != YAML_SCALAR_NODE || v->data.scalar.length == 0)
        return NULL;
    return strndup((const char *)v->data.scalar.value, v->data.scalar.length);
}

static void add(struct model *m, enum kind k, char *name, uint64_t dg)
{
    struct entity_set *s = &m->k[k];
    if (!name) {
        m->oom = true;
        return;
    }
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        struct entity *nv = realloc(s->v, ncap * sizeof(*nv));
        if (!nv) {
            free(name);
            m->oom = true;
            return;
        }
        s->v = nv;
        s->cap = ncap;
    }
    s->v[s->n].name = name;
    s->v[s->n].digest = dg;
    s->n++;
}

static char *fmt_name(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", a, b, c);
    return s;
}

static size_t seq_len(const yaml_node_t *n)
{
    return n && n->type == YAML_SEQUENCE_NODE
               ? (size_t)(n->data.sequence.items.top - n->data.sequence.items.start)
               : 0;
}

static yaml_node_t *seq_item(yaml_document_t *d, yaml_node_t *n, size_t i)
{
    return yaml_document_get_node(d, n->data.sequence.items.start[i]);
}

/* Plugins of one scope: "name@scope" ("name@global", "name@route:r1", ...). A top-level entry
 * narrowed with service:/route:/consumer: names those in its scope. */
static void add_plugins(struct model *m, yaml_node_t *seq, const char *scope)
{
    yaml_document_t *d = m->doc;
    for (size_t i = 0; i < seq_len(seq); i++) {
        yaml_node_t *p = seq_item(d, seq, i);
        char *name = scalar_dup(d, p, "name");
        char *sc = NULL;
        if (!scope) {
            char *svc = scalar_dup(d, p, "service"), *rt = scalar_dup(d, p, "route");
            char *cons = scalar_dup(d, p, "consumer");
            char buf[512];
            int off = 0;
            if (svc)
                off += snprintf(buf + off, sizeof(buf) - (size_t)off, "service:%.120s", svc);
            if (rt)
                off += snprintf(buf + off, sizeof(buf) - (size_t)off, "%sroute:%.120s",
                                off ? "," : "", rt);
            if (cons)
                off += snprintf(buf + off, sizeof(buf) - (size_t)off, "%sconsumer:%.120s",
                                off ? "," : "", cons);
            sc = strdup(off ? buf : "global");
            free(svc);
            free(rt);
            free(cons);
        }
        char idx[32];
        snprintf(idx, sizeof(idx), "plugins[%zu]", i);
        add(m, K_PLUGINS,
            fmt_name(name ? name : idx, "@",
                     scope ? scope
                     : sc  ? sc
                           : "?"),
            digest(d, p, NULL, 1));
        free(name);
        free(sc);
    }
}

static void model_build(struct model *m, yaml_document_t *d)
{
    static const char *const skip_service[] = {"routes", "plugins", NULL};
    static const char *const skip_plugins[] = {"plugins", NULL};
    static const char *const top_entities[] = {"services", "upstreams",       "consumers",
                                               "plugins",  "_format_version", NULL};
    m->doc = d;
    yaml_node_t *root = yaml_document_get_root_node(d);
    if (!root || root->type != YAML_MAPPING_NODE)
        return;
    yaml_node_t *svcs = lookup(d, root, "services");
    for (size_t i = 0; i < seq_len(svcs); i++) {
        yaml_node_t *s = seq_item(d, svcs, i);
        char idx[32];
        snprintf(idx, sizeof(idx), "services[%zu]", i);
        char *sname = scalar_dup(d, s, "name");
        if (!sname)
            sname = strdup(idx);
        add(m, K_SERVICES, sname ? strdup(sname) : NULL, digest(d, s, skip_service, 1));
        char *scope = sname ? fmt_name("service:", sname, "") : NULL;
        if (scope)
            add_plugins(m, lookup(d, s, "plugins"), scope);
        free(scope);
        yaml_node_t *routes = lookup(d, s, "routes");
        for (size_t j = 0; j < seq_len(routes); j++) {
            yaml_node_t *r = seq_item(d, routes, j);
            char *rname = scalar_dup(d, r, "name");
            if (!rname) { /* the loader's default name (config/loader.c) */
                snprintf(idx, sizeof(idx), ".%zu", j);
                rname = fmt_name(sname ? sname : "?", idx, "");
            }
            add(m, K_ROUTES, rname ? strdup(rname) : NULL, digest(d, r, skip_plugins, 1));
            scope = rname ? fmt_name("route:", rname, "") : NULL;
            if (scope)
                add_plugins(m, lookup(d, r, "plugins"), scope);
            free(scope);
            free(rname);
        }
        free(sname);
    }
    yaml_node_t *ups = lookup(d, root, "upstreams");
    for (size_t i = 0; i < seq_len(ups); i++) {
        yaml_node_t *u = seq_item(d, ups, i);
        char idx[32];
        snprintf(idx, sizeof(idx), "upstreams[%zu]", i);
        char *name = scalar_dup(d, u, "name");
        add(m, K_UPSTREAMS, name ? name : strdup(idx), digest(d, u, NULL, 1));
    }
    yaml_node_t *cons = lookup(d, root, "consumers");
    for (size_t i = 0; i < seq_len(cons); i++) {
        yaml_node_t *c = seq_item(d, cons, i);
        char idx[32];
        snprintf(idx, sizeof(idx), "consumers[%zu]", i);
        char *name = scalar_dup(d, c, "username");
        if (!name)
            name = scalar_dup(d, c, "custom_id");
        if (!name)
            name = scalar_dup(d, c, "id");
        if (!name)
            name = strdup(idx);
        add(m, K_CONSUMERS, name ? strdup(name) : NULL, digest(d, c, skip_plugins, 1));
        char *scope = name ? fmt_name("consumer:", name, "") : NULL;
        if (scope)
            add_plugins(m, lookup(d, c, "plugins"), scope);
        free(scope);
        free(name);
    }
    add_plugins(m, lookup(d, root, "plugins"), NULL);
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(d, p->key);
        if (!k || k->type != YAML_SCALAR_NODE || skipped(k, top_entities))
            continue;
        add(m, K_SETTINGS, strndup((const char *)k->data.scalar.value, k->data.scalar.length),
            digest(d, yaml_document_get_node(d, p->value), NULL, 1));
    }
}

static void model_free(struct model *m)
{
    for (int k = 0; k < K_COUNT; k++) {
        for (size_t i = 0; i < m->k[k].n; i++)
            free(m->k[k].v[i].name);
        free(m->k[k].v);
    }
}

/* Load text into doc; false when it is not one YAML document (then the model is empty). */
static bool load(const char *text, size_t len, yaml_document_t *doc)
{
    yaml_parser_t parser;
    if (!text || !yaml_parser_initialize(&parser))
        return false;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    bool ok = yaml_parser_load(&parser, doc) != 0;
    yaml_parser_delete(&parser);
    return ok;
}

static int cmp_entity(const void *a, const void *b)
{
    return strcmp(((const struct entity *)a)->name, ((const struct entity *)b)->name);
}

/* ------------------------------------------------------------------------------------------ */
/* JSON                                                                                       */

static void put_str(struct tp_strbuf *b, const char *s)
{
    tp_strbuf_append(b, "\"", 1);
    tp_strbuf_json_str(b, s, strlen(s));
    tp_strbuf_append(b, "\"", 1);
}

struct list {
    const char *names[MAX_NAMES];
    size_t n, total;
};

static void list_add(struct list *l, const char *name)
{
    if (l->n < MAX_NAMES)
        l->names[l->n++] = name;
    l->total++;
}

static void put_list(struct tp_strbuf *b, const char *key, const struct list *l, bool comma)
{
    if (comma)
        tp_strbuf_append(b, ",", 1);
    tp_strbuf_append(b, "\"", 1);
    tp_strbuf_puts(b, key);
    tp_strbuf_puts(b, "\":[");
    for (size_t i = 0; i < l->n; i++) {
        if (i)
            tp_strbuf_append(b, ",", 1);
        put_str(b, l->names[i]);
    }
    tp_strbuf_append(b, "]", 1);
}

/* The diff of one kind; returns whether anything changed. */
static bool diff_kind(struct tp_strbuf *b, const char *kind, struct entity_set *o,
                      struct entity_set *n, bool comma)
{
    static struct list added, removed, changed; /* main thread only; too big for the stack */
    added.n = added.total = removed.n = removed.total = changed.n = changed.total = 0;
    if (o->n > 1)
        qsort(o->v, o->n, sizeof(*o->v), cmp_entity);
    if (n->n > 1)
        qsort(n->v, n->n, sizeof(*n->v), cmp_entity);
    size_t i = 0, j = 0;
    while (i < o->n || j < n->n) {
        int c = i == o->n ? 1 : j == n->n ? -1 : strcmp(o->v[i].name, n->v[j].name);
        if (c < 0) {
            list_add(&removed, o->v[i++].name);
        } else if (c > 0) {
            list_add(&added, n->v[j++].name);
        } else {
            if (o->v[i].digest != n->v[j].digest)
                list_add(&changed, n->v[j].name);
            i++, j++;
        }
    }
    if (!added.total && !removed.total && !changed.total)
        return false;
    if (comma)
        tp_strbuf_append(b, ",", 1);
    tp_strbuf_append(b, "\"", 1);
    tp_strbuf_puts(b, kind);
    tp_strbuf_puts(b, "\":{");
    put_list(b, "added", &added, false);
    put_list(b, "removed", &removed, true);
    put_list(b, "changed", &changed, true);
    if (added.total > added.n || removed.total > removed.n || changed.total > changed.n) {
        tp_strbuf_puts(b, ",\"truncated\":true,\"counts\":{\"added\":");
        tp_strbuf_putu(b, added.total);
        tp_strbuf_puts(b, ",\"removed\":");
        tp_strbuf_putu(b, removed.total);
        tp_strbuf_puts(b, ",\"changed\":");
        tp_strbuf_putu(b, changed.total);
        tp_strbuf_append(b, "}", 1);
    }
    tp_strbuf_append(b, "}", 1);
    return true;
}

int tp_audit_diff_json(const char *old_text, size_t old_len, const char *new_text, size_t new_len,
                       struct tp_strbuf *b)
{
    yaml_document_t od, nd;
    bool have_o = load(old_text, old_len, &od), have_n = load(new_text, new_len, &nd);
    struct model mo = {0}, mn = {0};
    if (have_o)
        model_build(&mo, &od);
    if (have_n)
        model_build(&mn, &nd);
    tp_strbuf_append(b, "{", 1);
    bool comma = false;
    for (int k = 0; k < K_COUNT; k++)
        comma |= diff_kind(b, kind_names[k], &mo.k[k], &mn.k[k], comma);
    int rc = tp_strbuf_append(b, "}", 1);
    if (mo.oom || mn.oom)
        rc = TP_ENOMEM;
    model_free(&mo);
    model_free(&mn);
    if (have_o)
        yaml_document_delete(&od);
    if (have_n)
        yaml_document_delete(&nd);
    return rc;
}

/* Entity counts of a configuration (the start-up line). */
static int counts_json(const char *text, size_t len, struct tp_strbuf *b)
{
    yaml_document_t d;
    struct model m = {0};
    bool have = load(text, len, &d);
    if (have)
        model_build(&m, &d);
    tp_strbuf_append(b, "{", 1);
    for (int k = 0; k < K_PLUGINS + 1; k++) {
        if (k)
            tp_strbuf_append(b, ",", 1);
        tp_strbuf_append(b, "\"", 1);
        tp_strbuf_puts(b, kind_names[k]);
        tp_strbuf_puts(b, "\":");
        tp_strbuf_putu(b, m.k[k].n);
    }
    int rc = tp_strbuf_append(b, "}", 1);
    if (m.oom)
        rc = TP_ENOMEM;
    model_free(&m);
    if (have)
        yaml_document_delete(&d);
    return rc;
}

static void put_sha256(struct tp_strbuf *b, const char *key, const char *text, size_t len)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    char hex[65];
    tp_strbuf_puts(b, ",\"");
    tp_strbuf_puts(b, key);
    tp_strbuf_puts(b, "\":");
    if (!text || EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        tp_strbuf_puts(b, "null");
        return;
    }
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = "0123456789abcdef"[md[i] >> 4];
        hex[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
    }
    hex[64] = '"';
    tp_strbuf_append(b, "\"", 1);
    tp_strbuf_append(b, hex, 65);
}

static void put_errors(struct tp_strbuf *b, const char *errors)
{
    tp_strbuf_puts(b, ",\"errors\":[");
    int n = 0;
    for (const char *p = errors; p && *p && n < MAX_ERROR_LINES;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len) {
            tp_strbuf_puts(b, n ? ",\"" : "\"");
            tp_strbuf_json_str(b, p, TP_MIN(len, 1024));
            tp_strbuf_append(b, "\"", 1);
            n++;
        }
        p += len + (nl ? 1 : 0);
    }
    tp_strbuf_append(b, "]", 1);
}

int tp_audit_config(const struct tp_audit_event *ev)
{
    if (!tp_logsink_enabled(TP_LOGSINK_AUDIT))
        return TP_ENOTFOUND;
    char now[40];
    tp_log_time_rfc3339(now, sizeof(now));
    struct tp_strbuf b = {.max = 1u << 20};
    tp_strbuf_puts(&b, "{\"time\":\"");
    tp_strbuf_puts(&b, now);
    tp_strbuf_puts(&b, "\",\"event\":");
    put_str(&b, ev->event);
    tp_strbuf_puts(&b, ",\"who\":");
    put_str(&b, ev->who ? ev->who : "unknown");
    tp_strbuf_puts(&b, ",\"sender_pid\":");
    if (ev->sender_pid >= 0)
        tp_strbuf_putu(&b, (unsigned long long)ev->sender_pid);
    else
        tp_strbuf_puts(&b, "null");
    tp_strbuf_puts(&b, ",\"sender_uid\":");
    if (ev->sender_uid >= 0)
        tp_strbuf_putu(&b, (unsigned long long)ev->sender_uid);
    else
        tp_strbuf_puts(&b, "null");
    tp_strbuf_puts(&b, ",\"config\":");
    if (ev->config_path)
        put_str(&b, ev->config_path);
    else
        tp_strbuf_puts(&b, "null");
    tp_strbuf_puts(&b, ",\"result\":");
    put_str(&b, ev->new_text ? "ok" : "failed");
    if (ev->detail) {
        tp_strbuf_puts(&b, ",\"detail\":");
        put_str(&b, ev->detail);
    }
    if (ev->new_text) {
        tp_strbuf_puts(&b, ",\"generation\":");
        tp_strbuf_putu(&b, ev->generation);
        put_sha256(&b, "sha256", ev->new_text, ev->new_len);
    }
    if (ev->old_text)
        put_sha256(&b, "previous_sha256", ev->old_text, ev->old_len);
    int rc = 0;
    if (ev->new_text && ev->old_text) {
        tp_strbuf_puts(&b, ",\"changes\":");
        rc = tp_audit_diff_json(ev->old_text, ev->old_len, ev->new_text, ev->new_len, &b);
    } else if (ev->new_text) {
        tp_strbuf_puts(&b, ",\"counts\":");
        rc = counts_json(ev->new_text, ev->new_len, &b);
    }
    if (ev->errors)
        put_errors(&b, ev->errors);
    if (rc == 0)
        rc = tp_strbuf_puts(&b, "}\n");
    if (rc == 0)
        rc = tp_logsink_write(TP_LOGSINK_AUDIT, b.ptr, b.len);
    else
        tp_log(TP_LOG_ERROR, "audit: cannot build the %s line (%d)", ev->event, rc);
    tp_strbuf_free(&b);
    return rc;
}

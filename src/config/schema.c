/*
 * turnpike — config loader: the schema walker (see schema.h).
 */
#include "config/schema.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                     */

static void emit(struct tp__cfg_ctx *ctx, int line, int column, const char *fmt, va_list ap)
{
    char msg[1024];

    ctx->num_errors++;
    if (!ctx->errors)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    /* Values come from the file: keep one error per line whatever they hold. */
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    if (ctx->path)
        fprintf(ctx->errors, "%s:%d:%d: %s: %s\n", ctx->name, line, column, ctx->path, msg);
    else
        fprintf(ctx->errors, "%s:%d:%d: %s\n", ctx->name, line, column, msg);
}

void tp__cfg_error_at(struct tp__cfg_ctx *ctx, int line, int column, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    emit(ctx, line, column, fmt, ap);
    va_end(ap);
}

struct tp_conf_mark tp__cfg_mark(const yaml_node_t *node)
{
    struct tp_conf_mark m = {1, 1};

    if (node) {
        m.line = node->start_mark.line < INT_MAX ? (int)node->start_mark.line + 1 : INT_MAX;
        m.column = node->start_mark.column < INT_MAX ? (int)node->start_mark.column + 1 : INT_MAX;
    }
    return m;
}

void tp__cfg_error(struct tp__cfg_ctx *ctx, const yaml_node_t *node, const char *fmt, ...)
{
    struct tp_conf_mark m = tp__cfg_mark(node);
    va_list ap;

    va_start(ap, fmt);
    emit(ctx, m.line, m.column, fmt, ap);
    va_end(ap);
}

int tp__cfg_oom(struct tp__cfg_ctx *ctx, const yaml_node_t *node)
{
    tp__cfg_error(ctx, node, "out of memory");
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Node access                                                                                */

yaml_node_t *tp__cfg_node(struct tp__cfg_ctx *ctx, int id)
{
    yaml_node_t *node = yaml_document_get_node(ctx->doc, id);

    if (!node || node->type == YAML_SCALAR_NODE)
        return node;
    /* An alias makes the document a graph: walking a collection twice could loop forever or
     * blow up exponentially ("billion laughs"), so each one is walked once. */
    if (ctx->visited[id - 1]) {
        tp__cfg_error(ctx, node, "YAML aliases of lists and mappings are not supported");
        return NULL;
    }
    ctx->visited[id - 1] = 1;
    return node;
}

static bool scalar_eq(const yaml_node_t *node, const char *s, size_t len)
{
    return node && node->type == YAML_SCALAR_NODE && node->data.scalar.length == len &&
           memcmp(node->data.scalar.value, s, len) == 0;
}

yaml_node_t *tp__cfg_lookup(struct tp__cfg_ctx *ctx, const yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        if (scalar_eq(yaml_document_get_node(ctx->doc, p->key), key, strlen(key)))
            return yaml_document_get_node(ctx->doc, p->value);
    }
    return NULL;
}

size_t tp__cfg_count(const yaml_node_t *seq)
{
    if (!seq || seq->type != YAML_SEQUENCE_NODE)
        return 0;
    return (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}

yaml_node_t *tp__cfg_item(struct tp__cfg_ctx *ctx, const yaml_node_t *seq, size_t i)
{
    if (i >= tp__cfg_count(seq))
        return NULL;
    return yaml_document_get_node(ctx->doc, seq->data.sequence.items.start[i]);
}

yaml_node_t *tp__cfg_pair_key(struct tp__cfg_ctx *ctx, yaml_node_t *map, size_t i,
                              const char *what)
{
    yaml_node_t *key = yaml_document_get_node(ctx->doc, map->data.mapping.pairs.start[i].key);

    if (!key || key->type != YAML_SCALAR_NODE) {
        tp__cfg_error(ctx, key ? key : map, "expected a string key in %s", what);
        return NULL;
    }
    return key;
}

/* Report pair i's key as a repeat of the first earlier key with the same text. */
static void duplicate_key(struct tp__cfg_ctx *ctx, yaml_node_t *map, size_t i, yaml_node_t *key)
{
    yaml_node_pair_t *pairs = map->data.mapping.pairs.start;
    struct tp_conf_mark first = {0, 0};

    for (size_t j = 0; j < i; j++) {
        yaml_node_t *other = yaml_document_get_node(ctx->doc, pairs[j].key);
        if (scalar_eq(other, (const char *)key->data.scalar.value, key->data.scalar.length)) {
            first = tp__cfg_mark(other);
            break;
        }
    }
    tp__cfg_error(ctx, key, "duplicate key \"%s\" (first defined at %d:%d)",
                  (const char *)key->data.scalar.value, first.line, first.column);
}

/* ------------------------------------------------------------------------------------------ */
/* Scalars                                                                                    */

static bool is_plain(const yaml_node_t *node)
{
    return node->type == YAML_SCALAR_NODE && node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

bool tp__cfg_is_null(const yaml_node_t *node)
{
    if (!is_plain(node))
        return false;
    return node->data.scalar.length == 0 || scalar_eq(node, "~", 1) ||
           scalar_eq(node, "null", 4) || scalar_eq(node, "Null", 4) || scalar_eq(node, "NULL", 4);
}

int tp__cfg_string(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node,
                   char **out)
{
    if (node->type != YAML_SCALAR_NODE || tp__cfg_is_null(node)) {
        tp__cfg_error(ctx, node, "expected a string for \"%s\"", key);
        return -1;
    }
    const char *v = (const char *)node->data.scalar.value;
    size_t len = node->data.scalar.length;
    if (memchr(v, '\0', len)) {
        tp__cfg_error(ctx, node, "\"%s\" must not contain a NUL byte", key);
        return -1;
    }
    char *s = strndup(v, len);
    if (!s)
        return tp__cfg_oom(ctx, node);
    free(*out);
    *out = s;
    return 0;
}

/* Magnitude of a decimal numeral (no sign, no leading zero); false when not one. */
static bool parse_decimal(const char *v, size_t len, uint64_t *mag, bool *overflow)
{
    if (len == 0 || (v[0] == '0' && len > 1))
        return false;
    *mag = 0;
    *overflow = false;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        unsigned d = (unsigned)(v[i] - '0');
        if (*mag > (UINT64_MAX - d) / 10)
            *overflow = true;
        else
            *mag = *mag * 10 + d;
    }
    return true;
}

int tp__cfg_int(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node, int64_t min,
                int64_t max, int64_t *out)
{
    uint64_t mag;
    bool overflow;

    /* A quoted "10" is a string in YAML: only plain scalars are numbers. */
    if (!is_plain(node)) {
        tp__cfg_error(ctx, node, "expected an integer for \"%s\"", key);
        return -1;
    }
    const char *v = (const char *)node->data.scalar.value;
    size_t len = node->data.scalar.length;
    bool neg = len > 0 && v[0] == '-';
    if (!parse_decimal(v + neg, len - neg, &mag, &overflow)) {
        tp__cfg_error(ctx, node, "expected an integer for \"%s\"", key);
        return -1;
    }
    int64_t val = 0;
    bool in_range = !overflow && mag <= (uint64_t)INT64_MAX;
    if (in_range)
        val = neg ? -(int64_t)mag : (int64_t)mag;
    if (!in_range || val < min || val > max) {
        tp__cfg_error(ctx, node, "\"%s\" must be between %lld and %lld", key, (long long)min,
                      (long long)max);
        return -1;
    }
    *out = val;
    return 0;
}

int tp__cfg_bool(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node, bool *out)
{
    /* Only true/false: YAML 1.1's yes/no/on/off surprise people ("NO" is Norway). */
    if (is_plain(node) && scalar_eq(node, "true", 4)) {
        *out = true;
        return 0;
    }
    if (is_plain(node) && scalar_eq(node, "false", 5)) {
        *out = false;
        return 0;
    }
    tp__cfg_error(ctx, node, "expected true or false for \"%s\"", key);
    return -1;
}

int tp__cfg_enum(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node,
                 const char *const *names, size_t num_names, int *out)
{
    char list[256] = "";
    size_t used = 0;

    for (size_t i = 0; i < num_names; i++) {
        if (!tp__cfg_is_null(node) && scalar_eq(node, names[i], strlen(names[i]))) {
            *out = (int)i;
            return 0;
        }
    }
    for (size_t i = 0; i < num_names && used < sizeof(list); i++) {
        int n = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", names[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    tp__cfg_error(ctx, node, "\"%s\" must be one of: %s", key, list);
    return -1;
}

char **tp__cfg_string_list(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node,
                           tp__cfg_check_fn check, size_t *num)
{
    size_t n = tp__cfg_count(node);

    *num = 0;
    if (node->type != YAML_SEQUENCE_NODE) {
        tp__cfg_error(ctx, node, "expected a list of strings for \"%s\"", key);
        return NULL;
    }
    if (n == 0)
        return NULL;
    char **v = calloc(n, sizeof(*v));
    if (!v) {
        tp__cfg_oom(ctx, node);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = tp__cfg_node(ctx, node->data.sequence.items.start[i]);
        if (!item)
            continue;
        if (item->type != YAML_SCALAR_NODE || tp__cfg_is_null(item)) {
            tp__cfg_error(ctx, item, "expected a list of strings for \"%s\"", key);
            continue;
        }
        if (tp__cfg_string(ctx, key, item, &v[i]) == 0 && check)
            check(ctx, key, item, v[i]);
    }
    *num = n;
    return v;
}

/* ------------------------------------------------------------------------------------------ */
/* Sections                                                                                   */

static void store_uint(void *field, size_t size, uint64_t v)
{
    uint8_t u8 = (uint8_t)v;
    uint16_t u16 = (uint16_t)v;
    uint32_t u32 = (uint32_t)v;

    switch (size) {
    case 1:
        memcpy(field, &u8, 1);
        break;
    case 2:
        memcpy(field, &u16, 2);
        break;
    case 4:
        memcpy(field, &u32, 4);
        break;
    default:
        memcpy(field, &v, sizeof(v));
        break;
    }
}

void tp__cfg_defaults(struct tp__cfg_ctx *ctx, const struct tp__cfg_schema *schema, void *obj)
{
    for (size_t i = 0; i < schema->num_keys; i++) {
        const struct tp__cfg_directive *d = &schema->keys[i];
        char *field = (char *)obj + d->offset;
        int ival = (int)d->def;
        bool bval = d->def != 0;

        if (d->kind == TP__CFG_UINT) {
            store_uint(field, d->size, (uint64_t)d->def);
        } else if (d->kind == TP__CFG_INT) {
            memcpy(field, &ival, sizeof(ival));
        } else if (d->kind == TP__CFG_BOOL) {
            memcpy(field, &bval, sizeof(bval));
        } else if (d->kind == TP__CFG_STRING && d->def_str) {
            char *s = strdup(d->def_str), *old;
            if (!s)
                tp__cfg_oom(ctx, NULL);
            memcpy(&old, field, sizeof(old));
            free(old);
            memcpy(field, &s, sizeof(s));
        }
    }
}

static void apply_string(struct tp__cfg_ctx *ctx, const struct tp__cfg_directive *d,
                         yaml_node_t *value, char *field)
{
    char *s;

    memcpy(&s, field, sizeof(s));
    if (tp__cfg_string(ctx, d->name, value, &s) == 0 && s[0] == '\0')
        tp__cfg_error(ctx, value, "\"%s\" must not be empty", d->name);
    memcpy(field, &s, sizeof(s));
}

static void apply(struct tp__cfg_ctx *ctx, const struct tp__cfg_directive *d, yaml_node_t *value,
                  void *obj)
{
    char *field = (char *)obj + d->offset;
    int64_t v;
    bool b;

    switch (d->kind) {
    case TP__CFG_STRING:
        apply_string(ctx, d, value, field);
        break;
    case TP__CFG_UINT:
        if (tp__cfg_int(ctx, d->name, value, d->min, d->max, &v) == 0)
            store_uint(field, d->size, (uint64_t)v);
        break;
    case TP__CFG_INT:
        if (tp__cfg_int(ctx, d->name, value, d->min, d->max, &v) == 0) {
            int i = (int)v;
            memcpy(field, &i, sizeof(i));
        }
        break;
    case TP__CFG_BOOL:
        if (tp__cfg_bool(ctx, d->name, value, &b) == 0)
            memcpy(field, &b, sizeof(b));
        break;
    case TP__CFG_CUSTOM:
        d->parse(ctx, d->name, value, obj);
        break;
    case TP__CFG_SECRET: {
        char *sec;
        memcpy(&sec, field, sizeof(sec));
        tp__cfg_secret(ctx, d->name, value, &sec);
        memcpy(field, &sec, sizeof(sec));
        break;
    }
    case TP__CFG_STRLIST: {
        size_t n = 0;
        char **list = tp__cfg_string_list(ctx, d->name, value, NULL, &n);
        char **old;
        memcpy(&old, field, sizeof(old));
        size_t oldn;
        memcpy(&oldn, (char *)obj + d->count_offset, sizeof(oldn));
        for (size_t i = 0; i < oldn; i++)
            free(old[i]);
        free(old);
        memcpy(field, &list, sizeof(list));
        memcpy((char *)obj + d->count_offset, &n, sizeof(n));
        break;
    }
    }
}

#define MAX_SECRET_FILE (1u << 20)

static char *read_secret_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(MAX_SECRET_FILE + 1);
    size_t n = buf ? fread(buf, 1, MAX_SECRET_FILE + 1, f) : 0;
    bool bad = ferror(f) || n > MAX_SECRET_FILE;
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return NULL;
    }
    if (n && buf[n - 1] == '\n')
        n--;
    if (n && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    *len = n;
    return buf;
}

int tp__cfg_secret(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *node, char **out)
{
    if (node->type != YAML_MAPPING_NODE) {
        if (tp__cfg_string(ctx, key, node, out) != 0)
            return -1;
        if ((*out)[0] == '\0') {
            tp__cfg_error(ctx, node, "\"%s\" must not be empty", key);
            return -1;
        }
        return 0;
    }
    size_t n = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    yaml_node_t *k = n == 1 ? tp__cfg_pair_key(ctx, node, 0, key) : NULL;
    yaml_node_t *v = k ? tp__cfg_node(ctx, node->data.mapping.pairs.start[0].value) : NULL;
    bool is_env = k && scalar_eq(k, "env", 3), is_file = k && scalar_eq(k, "file", 4);
    char *name = NULL;
    if (!v || (!is_env && !is_file) || tp__cfg_string(ctx, key, v, &name) != 0) {
        if (!name)
            tp__cfg_error(ctx, node, "\"%s\" must be a string, {env: NAME} or {file: PATH}", key);
        free(name);
        return -1;
    }
    char *val = NULL;
    size_t len = 0;
    if (is_env) {
        const char *e = getenv(name);
        if (!e || !e[0])
            tp__cfg_error(ctx, v, "environment variable \"%s\" for \"%s\" is not set or empty",
                          name, key);
        else if (!(val = strdup(e)))
            tp__cfg_oom(ctx, v);
        len = val ? strlen(val) : 0;
    } else {
        val = read_secret_file(name, &len);
        if (!val)
            tp__cfg_error(ctx, v, "cannot read \"%s\" for \"%s\" (missing, unreadable or over "
                          "1 MiB)", name, key);
        else if (len == 0 || memchr(val, '\0', len)) {
            tp__cfg_error(ctx, v, "file \"%s\" for \"%s\" is empty or holds a NUL byte", name,
                          key);
            free(val);
            val = NULL;
        }
    }
    free(name);
    if (!val)
        return -1;
    free(*out);
    *out = val;
    return 0;
}

void tp__cfg_free_fields(const struct tp__cfg_schema *schema, void *obj)
{
    if (!obj)
        return;
    for (size_t i = 0; i < schema->num_keys; i++) {
        const struct tp__cfg_directive *d = &schema->keys[i];
        char *field = (char *)obj + d->offset;
        if (d->kind == TP__CFG_STRING || d->kind == TP__CFG_SECRET) {
            char *s;
            memcpy(&s, field, sizeof(s));
            free(s);
        } else if (d->kind == TP__CFG_STRLIST) {
            char **list;
            size_t n;
            memcpy(&list, field, sizeof(list));
            memcpy(&n, (char *)obj + d->count_offset, sizeof(n));
            for (size_t j = 0; j < n; j++)
                free(list[j]);
            free(list);
        }
    }
}

static int find_directive(const struct tp__cfg_schema *schema, const yaml_node_t *key)
{
    for (size_t i = 0; i < schema->num_keys; i++)
        if (scalar_eq(key, schema->keys[i].name, strlen(schema->keys[i].name)))
            return (int)i;
    return -1;
}

/* Walk the pairs of a mapping; returns the set of directives seen (bit i = keys[i]). */
static uint64_t walk_pairs(struct tp__cfg_ctx *ctx, const struct tp__cfg_schema *schema,
                           yaml_node_t *node, void *obj)
{
    size_t n = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    uint64_t seen = 0;

    for (size_t i = 0; i < n; i++) {
        yaml_node_t *key = tp__cfg_pair_key(ctx, node, i, schema->what);
        if (!key)
            continue;
        int k = find_directive(schema, key);
        if (k < 0) {
            tp__cfg_error(ctx, key, "unknown key \"%s\" in %s",
                          (const char *)key->data.scalar.value, schema->what);
            continue;
        }
        /* Repeats of known keys show in the mask: linear, whatever the mapping's size. */
        if (seen & (UINT64_C(1) << k)) {
            duplicate_key(ctx, node, i, key);
            continue;
        }
        seen |= UINT64_C(1) << k;
        yaml_node_t *value = tp__cfg_node(ctx, node->data.mapping.pairs.start[i].value);
        /* in a plugin's config, null means "not set" (Kong's exports write unset fields so) */
        if (value && (ctx->path || ctx->null_is_unset) && tp__cfg_is_null(value))
            continue;
        if (value)
            apply(ctx, &schema->keys[k], value, obj);
    }
    return seen;
}

void tp__cfg_object(struct tp__cfg_ctx *ctx, const struct tp__cfg_schema *schema,
                    yaml_node_t *node, void *obj)
{
    tp__cfg_defaults(ctx, schema, obj);
    if (!node)
        return;
    if (schema->mark_offset >= 0) {
        struct tp_conf_mark m = tp__cfg_mark(node);
        memcpy((char *)obj + schema->mark_offset, &m, sizeof(m));
    }
    if (node->type != YAML_MAPPING_NODE) {
        tp__cfg_error(ctx, node, "expected a mapping for %s", schema->what);
        return;
    }
    uint64_t seen = walk_pairs(ctx, schema, node, obj);
    for (size_t i = 0; i < schema->num_keys; i++)
        if (schema->keys[i].required && !(seen & (UINT64_C(1) << i)))
            tp__cfg_error(ctx, node, "missing required key \"%s\" in %s", schema->keys[i].name,
                          schema->what);
    if (schema->finish)
        schema->finish(ctx, node, obj);
}

void *tp__cfg_list(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *node,
                   const struct tp__cfg_schema *schema, size_t *num)
{
    size_t n = tp__cfg_count(node);

    *num = 0;
    if (node->type != YAML_SEQUENCE_NODE) {
        tp__cfg_error(ctx, node, "expected a list for \"%s\"", key);
        return NULL;
    }
    if (n == 0)
        return NULL;
    char *arr = calloc(n, schema->size);
    if (!arr) {
        tp__cfg_oom(ctx, node);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = tp__cfg_node(ctx, node->data.sequence.items.start[i]);
        tp__cfg_object(ctx, schema, item, arr + i * schema->size);
    }
    *num = n;
    return arr;
}

/* ------------------------------------------------------------------------------------------ */
/* Value syntax                                                                               */

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool tp__cfg_valid_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (!is_alnum(*s) && !strchr("._~-", *s))
            return false;
    return true;
}

static bool valid_ip(int family, const char *s, size_t len)
{
    char buf[INET6_ADDRSTRLEN];
    unsigned char addr[16];

    if (len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(family, buf, addr) == 1;
}

bool tp__cfg_valid_hostname(const char *s, size_t len)
{
    size_t label = 0;
    bool numeric = true;

    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!is_alnum(c) && c != '-')
            return false;
        if ((label == 0 && c == '-') || ++label > 63)
            return false;
        if (c < '0' || c > '9')
            numeric = false;
    }
    if (label == 0 || s[len - 1] == '-')
        return false;
    /* All digits and dots: it must then be a real IPv4 address, not "999.1" or "10". */
    return !numeric || valid_ip(AF_INET, s, len);
}

int tp__cfg_port(const char *s, size_t len, uint16_t *port)
{
    uint64_t v;
    bool overflow;

    if (!parse_decimal(s, len, &v, &overflow) || overflow || v < 1 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

bool tp__cfg_valid_ipv6(const char *s, size_t len)
{
    return valid_ip(AF_INET6, s, len);
}

const char *tp__cfg_hostport(const char *s, bool port_required, char **host, uint16_t *port)
{
    const char *h = s, *rest;
    size_t hlen;

    *host = NULL;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end)
            return "missing ']' after an IPv6 address";
        h = s + 1;
        hlen = (size_t)(end - h);
        rest = end + 1;
        if (!valid_ip(AF_INET6, h, hlen))
            return "invalid IPv6 address";
    } else {
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':'))
            return "IPv6 addresses must be written in brackets, as in [::1]:8000";
        hlen = colon ? (size_t)(colon - s) : strlen(s);
        rest = s + hlen;
        if (!tp__cfg_valid_hostname(h, hlen))
            return "invalid host name";
    }
    if (*rest == '\0') {
        if (port_required)
            return "missing port";
        *port = 80;
    } else if (*rest != ':') {
        return "unexpected text after the address";
    } else if (tp__cfg_port(rest + 1, strlen(rest + 1), port) != 0) {
        return "port must be between 1 and 65535";
    }
    *host = strndup(h, hlen);
    return *host ? NULL : "out of memory";
}

/* ------------------------------------------------------------------------------------------ */
/* Unique names: a small open-addressing hash set (routes can number tens of thousands).      */

int tp__cfg_names_init(struct tp__cfg_names *set, size_t n)
{
    size_t cap = 16;

    while (cap < n * 2 + 1 && cap < SIZE_MAX / 4)
        cap *= 2;
    set->slots = calloc(cap, sizeof(*set->slots));
    set->cap = set->slots ? cap : 0;
    set->used = 0;
    return set->slots ? 0 : -1;
}

static size_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}

static struct tp__cfg_name *names_slot(const struct tp__cfg_names *set, const char *name)
{
    size_t mask = set->cap - 1;

    for (size_t i = name_hash(name) & mask;; i = (i + 1) & mask)
        if (!set->slots[i].name || strcmp(set->slots[i].name, name) == 0)
            return &set->slots[i];
}

const struct tp__cfg_name *tp__cfg_names_add(struct tp__cfg_names *set, const char *name,
                                             struct tp_conf_mark mark)
{
    /* Sized by the caller for every name; the check only keeps the probe loop finite. */
    if (!set->slots || (set->used + 1) * 2 > set->cap)
        return NULL;
    struct tp__cfg_name *slot = names_slot(set, name);
    if (slot->name)
        return slot;
    slot->name = name;
    slot->mark = mark;
    set->used++;
    return NULL;
}

const struct tp__cfg_name *tp__cfg_names_find(const struct tp__cfg_names *set, const char *name)
{
    if (!set->slots)
        return NULL;
    struct tp__cfg_name *slot = names_slot(set, name);
    return slot->name ? slot : NULL;
}

void tp__cfg_names_free(struct tp__cfg_names *set)
{
    free(set->slots);
    set->slots = NULL;
    set->cap = 0;
}

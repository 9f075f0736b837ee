/*
 * Helpers shared by the shaping plugins: config positions, field checks, the transformers'
 * operations, form-encoded parameter lists and top-level JSON members (transform_util.h).
 */
#include "plugins/transform_util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Config                                                                                      */

void tp__xf_list_free(char **list, size_t num)
{
    for (size_t i = 0; list && i < num; i++)
        free(list[i]);
    free(list);
}

const void *tp__xf_cfg_item(struct tp__cfg_ctx *ctx, const void *config, const char *section,
                            const char *key, size_t i)
{
    const yaml_node_t *node = config;
    if (!ctx || !node)
        return NULL;
    if (section && !(node = tp__cfg_lookup(ctx, node, section)))
        return config;
    const yaml_node_t *list = tp__cfg_lookup(ctx, node, key);
    if (!list)
        return node;
    const yaml_node_t *item = tp__cfg_item(ctx, list, i);
    return item ? item : list;
}

/* ------------------------------------------------------------------------------------------ */
/* Field checks                                                                                */

bool tp__xf_is_token(const char *s, size_t len)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && (c == '\0' || !memchr(extra, c, sizeof(extra) - 1)))
            return false;
    }
    return true;
}

bool tp__xf_is_field_value(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

bool tp__xf_is_framing_header(const char *name, size_t len)
{
    static const char *const names[] = {"content-length", "transfer-encoding", "connection",
                                         "keep-alive",     "te",                "trailer",
                                         "upgrade",        "proxy-connection"};
    struct tp_slice s = {name, len};
    for (size_t i = 0; i < TP_ARRAY_LEN(names); i++)
        if (tp_slice_eq_nocase(s, names[i], strlen(names[i])))
            return true;
    return false;
}

bool tp__xf_is_template(const char *s)
{
    /* Kong's check: the Lua pattern "%$%(.*%)" */
    const char *open = s ? strstr(s, "$(") : NULL;
    return open && strchr(open + 2, ')');
}

void tp__xf_split_pair(const char *entry, struct tp_slice *name, struct tp_slice *value,
                       bool *has_colon)
{
    const char *colon = strchr(entry, ':');
    if (!colon) {
        *name = tp_slice_cstr(entry);
        *value = (struct tp_slice){entry + name->len, 0};
        *has_colon = false;
        return;
    }
    *name = (struct tp_slice){entry, (size_t)(colon - entry)};
    while (*colon == ':')
        colon++;
    *value = tp_slice_cstr(colon);
    *has_colon = true;
}

/* ------------------------------------------------------------------------------------------ */
/* The transformers' operations                                                               */

const char *const tp__xf_op_names[TP_XF_OP_COUNT] = {"remove", "rename", "replace", "add",
                                                     "append"};

int tp__xf_op_find(const char *key)
{
    for (int op = 0; op < TP_XF_OP_COUNT; op++)
        if (strcmp(key, tp__xf_op_names[op]) == 0)
            return op;
    return -1;
}

const char *tp__xf_check_header_entry(enum tp__xf_op op, struct tp_slice name,
                                      struct tp_slice value)
{
    bool pair = op != TP_XF_OP_REMOVE;

    if (!tp__xf_is_token(name.ptr, name.len))
        return "is not a valid header name";
    if (op == TP_XF_OP_RENAME && !tp__xf_is_token(value.ptr, value.len))
        return "does not rename to a valid header name";
    if (pair && op != TP_XF_OP_RENAME && !tp__xf_is_field_value(value.ptr, value.len))
        return "has a control character in its value";
    if (tp__xf_is_framing_header(name.ptr, name.len) ||
        (op == TP_XF_OP_RENAME && tp__xf_is_framing_header(value.ptr, value.len)))
        return "edits a framing header (the gateway owns Content-Length, Transfer-Encoding, "
               "Connection and hop-by-hop fields)";
    return NULL;
}

/* The JSON text of a value: a string, Kong's toboolean ("true" or false), or the number. */
static int json_text(struct tp_strbuf *b, struct tp_slice v, enum tp__xf_type type)
{
    if (type == TP_XF_TYPE_BOOLEAN)
        return tp_strbuf_puts(b, v.len == 4 && memcmp(v.ptr, "true", 4) == 0 ? "true" : "false");
    if (type == TP_XF_TYPE_NUMBER)
        return tp_strbuf_append(b, v.ptr, v.len);
    return tp__xf_json_string(b, v.ptr, v.len);
}

/* Split entry into e: "name\0value\0json\0" in one block. */
int tp__xf_entry_make(const char *entry, enum tp__xf_type type, struct tp__xf_entry *e)
{
    struct tp_slice name, value;
    bool colon;
    tp__xf_split_pair(entry, &name, &value, &colon);
    struct tp_strbuf js = {.max = value.len * 6 + 16};
    if (json_text(&js, value, type) != 0) {
        tp_strbuf_free(&js);
        return TP_ENOMEM;
    }
    e->mem = malloc(name.len + value.len + js.len + 3);
    if (!e->mem) {
        tp_strbuf_free(&js);
        return TP_ENOMEM;
    }
    char *p = e->mem;
    memcpy(p, name.ptr, name.len);
    p[name.len] = '\0';
    e->name = (struct tp_slice){p, name.len};
    p += name.len + 1;
    memcpy(p, value.ptr, value.len);
    p[value.len] = '\0';
    e->value = (struct tp_slice){p, value.len};
    p += value.len + 1;
    memcpy(p, js.ptr, js.len);
    p[js.len] = '\0';
    e->json = (struct tp_slice){p, js.len};
    tp_strbuf_free(&js);
    return 0;
}

void tp__xf_entries_free(struct tp__xf_entries *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].mem);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

const struct tp__xf_header_api tp__xf_request_headers = {
    .get = tp_plugin_header,
    .set = tp_plugin_set_header,
    .add = tp_plugin_add_header,
    .remove = tp_plugin_remove_header,
    .replace_host = true,
};

const struct tp__xf_header_api tp__xf_response_headers = {
    .get = tp_plugin_resp_header,
    .set = tp_plugin_resp_set_header,
    .add = tp_plugin_resp_add_header,
    .remove = tp_plugin_resp_remove_header,
};

static bool header_present(struct tp_plugin_ctx *ctx, const struct tp__xf_header_api *api,
                           const char *name)
{
    struct tp_slice v;
    return api->get(ctx, name, 0, &v);
}

/* rename: the new name takes every value of the old one (edits keep their own copies). */
static int rename_header(struct tp_plugin_ctx *ctx, const struct tp__xf_header_api *api,
                         const struct tp__xf_entry *e)
{
    struct tp_slice v;
    int rc = 0;
    if (!header_present(ctx, api, e->name.ptr) ||
        tp_slice_eq_nocase(e->name, e->value.ptr, e->value.len))
        return 0;
    rc |= api->remove(ctx, e->value.ptr);
    for (size_t i = 0; rc == 0 && api->get(ctx, e->name.ptr, i, &v); i++)
        rc |= api->add(ctx, e->value.ptr, v);
    return rc ? rc : api->remove(ctx, e->name.ptr);
}

int tp__xf_headers_apply(struct tp_plugin_ctx *ctx, const struct tp__xf_header_api *api,
                         const struct tp__xf_entries ops[TP_XF_OP_COUNT])
{
    int rc = 0;
    const struct tp__xf_entries *l;

    l = &ops[TP_XF_OP_REMOVE];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = api->remove(ctx, l->v[i].name.ptr);
    l = &ops[TP_XF_OP_RENAME];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = rename_header(ctx, api, &l->v[i]);
    l = &ops[TP_XF_OP_REPLACE];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        if (header_present(ctx, api, l->v[i].name.ptr) ||
            (api->replace_host && TP_SLICE_IEQ(l->v[i].name, "host")))
            rc = api->set(ctx, l->v[i].name.ptr, l->v[i].value);
    l = &ops[TP_XF_OP_ADD];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        if (!header_present(ctx, api, l->v[i].name.ptr))
            rc = api->set(ctx, l->v[i].name.ptr, l->v[i].value);
    l = &ops[TP_XF_OP_APPEND];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = api->add(ctx, l->v[i].name.ptr, l->v[i].value);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Form-encoded parameters                                                                     */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tp_lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int tp__xf_url_decode(const char *s, size_t len, bool plus_space, struct tp_strbuf *out)
{
    size_t run = 0;
    int rc;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        char d;
        size_t skip;
        if (c == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            d = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            skip = 3;
        } else if (c == '+' && plus_space) {
            d = ' ';
            skip = 1;
        } else {
            continue;
        }
        if ((rc = tp_strbuf_append(out, s + run, i - run)) != 0 ||
            (rc = tp_strbuf_append(out, &d, 1)) != 0)
            return rc;
        i += skip - 1;
        run = i + 1;
    }
    return tp_strbuf_append(out, s + run, len - run);
}

/* The byte that starts at s[*i] once decoded ('+' is a space, %XX a byte; a '%' that is not
 * followed by two hex digits stands for itself); advances *i past it. */
static char form_byte(const char *s, size_t len, size_t *i)
{
    char c = s[*i];
    if (c == '%' && *i + 2 < len && hexval(s[*i + 1]) >= 0 && hexval(s[*i + 2]) >= 0) {
        c = (char)(hexval(s[*i + 1]) * 16 + hexval(s[*i + 2]));
        *i += 3;
        return c;
    }
    (*i)++;
    return c == '+' ? ' ' : c;
}

bool tp__xf_form_eq(struct tp_slice raw, struct tp_slice plain)
{
    size_t i = 0, j = 0;
    while (i < raw.len && j < plain.len)
        if (form_byte(raw.ptr, raw.len, &i) != plain.ptr[j++])
            return false;
    return i == raw.len && j == plain.len;
}

size_t tp__xf_form_decode(const char *raw, size_t len, char *out)
{
    size_t i = 0, n = 0;
    while (i < len)
        out[n++] = form_byte(raw, len, &i);
    return n;
}

bool tp__xf_param_named(const struct tp__xf_param *p, struct tp_slice name)
{
    if (p->deleted)
        return false;
    if (!p->name_raw)
        return p->name.len == name.len && memcmp(p->name.ptr, name.ptr, name.len) == 0;
    return tp__xf_form_eq(p->name, name);
}

static struct tp__xf_param *params_push(struct tp__xf_params *p)
{
    if (p->n == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 8;
        struct tp__xf_param *nv = realloc(p->v, ncap * sizeof(*nv));
        if (!nv)
            return NULL;
        p->v = nv;
        p->cap = ncap;
    }
    struct tp__xf_param *q = &p->v[p->n++];
    memset(q, 0, sizeof(*q));
    return q;
}

int tp__xf_params_parse(struct tp__xf_params *p, const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        const char *amp = memchr(s + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - s) : len;
        if (end > i) {
            struct tp__xf_param *q = params_push(p);
            if (!q)
                return TP_ENOMEM;
            const char *eq = memchr(s + i, '=', end - i);
            q->name_raw = q->value_raw = true;
            if (eq) {
                q->name = (struct tp_slice){s + i, (size_t)(eq - (s + i))};
                q->value = (struct tp_slice){eq + 1, (size_t)(s + end - eq - 1)};
                q->has_value = true;
            } else {
                q->name = (struct tp_slice){s + i, end - i};
            }
        }
        i = end + 1;
    }
    return 0;
}

bool tp__xf_params_has(const struct tp__xf_params *p, struct tp_slice name)
{
    for (size_t i = 0; i < p->n; i++)
        if (tp__xf_param_named(&p->v[i], name))
            return true;
    return false;
}

int tp__xf_params_remove(struct tp__xf_params *p, struct tp_slice name, bool *changed)
{
    for (size_t i = 0; i < p->n; i++) {
        if (tp__xf_param_named(&p->v[i], name)) {
            p->v[i].deleted = true;
            *changed = true;
        }
    }
    return 0;
}

int tp__xf_params_rename(struct tp__xf_params *p, struct tp_slice from, struct tp_slice to,
                         bool *changed)
{
    if (!tp__xf_params_has(p, from) ||
        (from.len == to.len && memcmp(from.ptr, to.ptr, to.len) == 0))
        return 0;
    tp__xf_params_remove(p, to, changed);
    for (size_t i = 0; i < p->n; i++) {
        if (tp__xf_param_named(&p->v[i], from)) {
            p->v[i].name = to;
            p->v[i].name_raw = false;
        }
    }
    *changed = true;
    return 0;
}

int tp__xf_params_replace(struct tp__xf_params *p, struct tp_slice name, struct tp_slice value,
                          bool *changed)
{
    bool first = true;
    for (size_t i = 0; i < p->n; i++) {
        struct tp__xf_param *q = &p->v[i];
        if (!tp__xf_param_named(q, name))
            continue;
        if (first) {
            q->value = value;
            q->value_raw = false;
            q->has_value = true;
            first = false;
        } else {
            q->deleted = true;
        }
        *changed = true;
    }
    return 0;
}

static int params_new(struct tp__xf_params *p, struct tp_slice name, struct tp_slice value)
{
    struct tp__xf_param *q = params_push(p);
    if (!q)
        return TP_ENOMEM;
    q->name = name;
    q->value = value;
    q->has_value = true;
    return 0;
}

int tp__xf_params_add(struct tp__xf_params *p, struct tp_slice name, struct tp_slice value,
                      bool *changed)
{
    if (tp__xf_params_has(p, name))
        return 0;
    *changed = true;
    return params_new(p, name, value);
}

int tp__xf_params_append(struct tp__xf_params *p, struct tp_slice name, struct tp_slice value,
                         bool *changed)
{
    *changed = true;
    return params_new(p, name, value);
}

/* %-encode everything but RFC 3986 unreserved bytes (ngx.encode_args does the same). */
static int url_encode(struct tp_strbuf *out, struct tp_slice s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t run = 0;
    int rc;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        bool keep = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    c == '-' || c == '.' || c == '_' || c == '~';
        if (keep)
            continue;
        char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
        if ((rc = tp_strbuf_append(out, s.ptr + run, i - run)) != 0 ||
            (rc = tp_strbuf_append(out, esc, 3)) != 0)
            return rc;
        run = i + 1;
    }
    return tp_strbuf_append(out, s.ptr + run, s.len - run);
}

static int put_part(struct tp_strbuf *out, struct tp_slice s, bool raw)
{
    return raw ? tp_strbuf_append(out, s.ptr, s.len) : url_encode(out, s);
}

int tp__xf_params_encode(const struct tp__xf_params *p, struct tp_strbuf *out)
{
    bool first = true;
    int rc;
    for (size_t i = 0; i < p->n; i++) {
        const struct tp__xf_param *q = &p->v[i];
        if (q->deleted)
            continue;
        if ((!first && (rc = tp_strbuf_append(out, "&", 1)) != 0) ||
            (rc = put_part(out, q->name, q->name_raw)) != 0)
            return rc;
        if (q->has_value && ((rc = tp_strbuf_append(out, "=", 1)) != 0 ||
                             (rc = put_part(out, q->value, q->value_raw)) != 0))
            return rc;
        first = false;
    }
    return 0;
}

void tp__xf_params_free(struct tp__xf_params *p)
{
    free(p->v);
    memset(p, 0, sizeof(*p));
}

int tp__xf_params_apply(struct tp__xf_params *p, const struct tp__xf_entries ops[TP_XF_OP_COUNT],
                        bool with_old, bool *changed)
{
    int rc = 0;
    const struct tp__xf_entries *l;

    l = &ops[TP_XF_OP_REMOVE];
    for (size_t i = 0; with_old && rc == 0 && i < l->n; i++)
        rc = tp__xf_params_remove(p, l->v[i].name, changed);
    l = &ops[TP_XF_OP_RENAME];
    for (size_t i = 0; with_old && rc == 0 && i < l->n; i++)
        rc = tp__xf_params_rename(p, l->v[i].name, l->v[i].value, changed);
    l = &ops[TP_XF_OP_REPLACE];
    for (size_t i = 0; with_old && rc == 0 && i < l->n; i++)
        rc = tp__xf_params_replace(p, l->v[i].name, l->v[i].value, changed);
    l = &ops[TP_XF_OP_ADD];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp__xf_params_add(p, l->v[i].name, l->v[i].value, changed);
    l = &ops[TP_XF_OP_APPEND];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp__xf_params_append(p, l->v[i].name, l->v[i].value, changed);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* JSON members                                                                                */

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* End (one past the closing quote) of the string starting at s[i] == '"'. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return len;
}

/* End of the value starting at s[i] (already validated by jansson). */
static size_t skip_value(const char *s, size_t len, size_t i)
{
    if (s[i] == '"')
        return skip_string(s, len, i);
    if (s[i] == '{' || s[i] == '[') {
        size_t depth = 0;
        while (i < len) {
            char c = s[i];
            if (c == '"') {
                i = skip_string(s, len, i);
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if ((c == '}' || c == ']') && --depth == 0)
                return i + 1;
            i++;
        }
        return len;
    }
    while (i < len && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' &&
           s[i] != '\n' && s[i] != '\r')
        i++;
    return i;
}

static struct tp__xf_member *json_push(struct tp__xf_json *j)
{
    if (j->n == j->cap) {
        size_t ncap = j->cap ? j->cap * 2 : 8;
        struct tp__xf_member *nv = realloc(j->v, ncap * sizeof(*nv));
        if (!nv)
            return NULL;
        j->v = nv;
        j->cap = ncap;
    }
    struct tp__xf_member *m = &j->v[j->n++];
    memset(m, 0, sizeof(*m));
    return m;
}

/* The decoded text of key token k (with quotes). Escapes are rare: decode those via jansson. */
static int decode_key(struct tp__xf_member *m)
{
    struct tp_slice k = m->key;
    if (!memchr(k.ptr, '\\', k.len)) {
        m->key_text = (struct tp_slice){k.ptr + 1, k.len - 2};
        return 0;
    }
    json_t *s = json_loadb(k.ptr, k.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!s || !json_is_string(s)) {
        json_decref(s);
        return TP_EINVAL;
    }
    size_t n = json_string_length(s);
    m->owned_key = malloc(n + 1);
    if (m->owned_key)
        memcpy(m->owned_key, json_string_value(s), n + 1);
    json_decref(s);
    if (!m->owned_key)
        return TP_ENOMEM;
    m->key_text = (struct tp_slice){m->owned_key, n};
    return 0;
}

int tp__xf_json_parse(struct tp__xf_json *j, const char *doc, size_t len)
{
    json_t *root = json_loadb(doc, len, 0, NULL);
    bool object = root && json_is_object(root);
    json_decref(root);
    if (!object)
        return TP_EINVAL;
    size_t i = skip_ws(doc, len, 0) + 1; /* past '{' */
    for (;;) {
        i = skip_ws(doc, len, i);
        if (i >= len || doc[i] == '}')
            return 0;
        if (doc[i] == ',') {
            i++;
            continue;
        }
        struct tp__xf_member *m = json_push(j);
        if (!m)
            return TP_ENOMEM;
        size_t kend = skip_string(doc, len, i);
        m->key = (struct tp_slice){doc + i, kend - i};
        int rc = decode_key(m);
        if (rc)
            return rc;
        i = skip_ws(doc, len, kend) + 1; /* past ':' */
        i = skip_ws(doc, len, i);
        size_t vend = skip_value(doc, len, i);
        m->value = (struct tp_slice){doc + i, vend - i};
        i = vend;
    }
}

static bool member_is(const struct tp__xf_member *m, struct tp_slice name)
{
    return !m->deleted && m->key_text.len == name.len &&
           memcmp(m->key_text.ptr, name.ptr, name.len) == 0;
}

static bool json_has(const struct tp__xf_json *j, struct tp_slice name)
{
    for (size_t i = 0; i < j->n; i++)
        if (member_is(&j->v[i], name))
            return true;
    return false;
}

int tp__xf_json_remove(struct tp__xf_json *j, struct tp_slice name, bool *changed)
{
    for (size_t i = 0; i < j->n; i++) {
        if (member_is(&j->v[i], name)) {
            j->v[i].deleted = true;
            *changed = true;
        }
    }
    return 0;
}

/* Key text and its JSON form for a member made from config text. */
static int member_set_key(struct tp__xf_member *m, struct tp_slice name)
{
    struct tp_strbuf b = {.max = name.len * 6 + 16};
    int rc = tp__xf_json_string(&b, name.ptr, name.len);
    if (rc) {
        tp_strbuf_free(&b);
        return rc;
    }
    free(m->owned_key);
    m->owned_key = b.ptr;
    m->key = (struct tp_slice){b.ptr, b.len};
    m->key_text = name;
    return 0;
}

int tp__xf_json_rename(struct tp__xf_json *j, struct tp_slice from, struct tp_slice to,
                       bool *changed)
{
    if (!json_has(j, from) || (from.len == to.len && memcmp(from.ptr, to.ptr, to.len) == 0))
        return 0;
    tp__xf_json_remove(j, to, changed);
    for (size_t i = 0; i < j->n; i++) {
        if (member_is(&j->v[i], from)) {
            int rc = member_set_key(&j->v[i], to);
            if (rc)
                return rc;
        }
    }
    *changed = true;
    return 0;
}

int tp__xf_json_replace(struct tp__xf_json *j, struct tp_slice name, struct tp_slice json,
                        bool *changed)
{
    for (size_t i = 0; i < j->n; i++) {
        if (member_is(&j->v[i], name)) {
            j->v[i].value = json;
            *changed = true;
        }
    }
    return 0;
}

static int json_new(struct tp__xf_json *j, struct tp_slice name, struct tp_slice json)
{
    struct tp__xf_member *m = json_push(j);
    if (!m)
        return TP_ENOMEM;
    m->value = json;
    return member_set_key(m, name);
}

int tp__xf_json_add(struct tp__xf_json *j, struct tp_slice name, struct tp_slice json,
                    bool *changed)
{
    if (json_has(j, name))
        return 0;
    *changed = true;
    return json_new(j, name, json);
}

/* The value of m with `item` appended as Kong's append_value does, into m->owned. */
static int append_to_member(struct tp__xf_member *m, struct tp_slice item)
{
    struct tp_slice v = m->value;
    struct tp_strbuf b = {.max = v.len + item.len + 16};
    int rc;
    if (v.len && v.ptr[0] == '[') {
        /* an array: insert before its closing bracket */
        size_t close = v.len - 1;
        size_t inner = skip_ws(v.ptr, close, 1);
        rc = tp_strbuf_append(&b, v.ptr, close);
        if (!rc && inner < close)
            rc = tp_strbuf_append(&b, ",", 1);
    } else if (v.len && v.ptr[0] == '"') {
        rc = tp_strbuf_append(&b, "[", 1);
        if (!rc)
            rc = tp_strbuf_append(&b, v.ptr, v.len);
        if (!rc)
            rc = tp_strbuf_append(&b, ",", 1);
    } else {
        rc = tp_strbuf_append(&b, "[", 1);
    }
    if (!rc)
        rc = tp_strbuf_append(&b, item.ptr, item.len);
    if (!rc)
        rc = tp_strbuf_append(&b, "]", 1);
    if (rc) {
        tp_strbuf_free(&b);
        return rc;
    }
    free(m->owned);
    m->owned = b.ptr;
    m->value = (struct tp_slice){b.ptr, b.len};
    return 0;
}

int tp__xf_json_append(struct tp__xf_json *j, struct tp_slice name, struct tp_slice json,
                       bool *changed)
{
    bool found = false;
    *changed = true;
    for (size_t i = 0; i < j->n; i++) {
        if (member_is(&j->v[i], name)) {
            int rc = append_to_member(&j->v[i], json);
            if (rc)
                return rc;
            found = true;
        }
    }
    if (found)
        return 0;
    struct tp__xf_member *m = json_push(j);
    if (!m)
        return TP_ENOMEM;
    int rc = member_set_key(m, name);
    if (rc)
        return rc;
    m->value = (struct tp_slice){"null", 4}; /* "anything else": becomes [json] */
    return append_to_member(m, json);
}

int tp__xf_json_encode(const struct tp__xf_json *j, struct tp_strbuf *out)
{
    bool first = true;
    int rc = tp_strbuf_append(out, "{", 1);
    for (size_t i = 0; !rc && i < j->n; i++) {
        const struct tp__xf_member *m = &j->v[i];
        if (m->deleted)
            continue;
        if (!first)
            rc = tp_strbuf_append(out, ",", 1);
        if (!rc)
            rc = tp_strbuf_append(out, m->key.ptr, m->key.len);
        if (!rc)
            rc = tp_strbuf_append(out, ":", 1);
        if (!rc)
            rc = tp_strbuf_append(out, m->value.ptr, m->value.len);
        first = false;
    }
    return rc ? rc : tp_strbuf_append(out, "}", 1);
}

int tp__xf_json_apply(struct tp__xf_json *j, const struct tp__xf_entries ops[TP_XF_OP_COUNT],
                      bool with_old, bool *changed)
{
    int rc = 0;
    const struct tp__xf_entries *l;

    l = &ops[TP_XF_OP_REMOVE];
    for (size_t i = 0; with_old && rc == 0 && i < l->n; i++)
        rc = tp__xf_json_remove(j, l->v[i].name, changed);
    l = &ops[TP_XF_OP_RENAME];
    for (size_t i = 0; with_old && rc == 0 && i < l->n; i++)
        rc = tp__xf_json_rename(j, l->v[i].name, l->v[i].value, changed);
    l = &ops[TP_XF_OP_REPLACE];
    for (size_t i = 0; with_old && rc == 0 && i < l->n; i++)
        rc = tp__xf_json_replace(j, l->v[i].name, l->v[i].json, changed);
    l = &ops[TP_XF_OP_ADD];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp__xf_json_add(j, l->v[i].name, l->v[i].json, changed);
    l = &ops[TP_XF_OP_APPEND];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp__xf_json_append(j, l->v[i].name, l->v[i].json, changed);
    return rc;
}

void tp__xf_json_free(struct tp__xf_json *j)
{
    for (size_t i = 0; i < j->n; i++) {
        free(j->v[i].owned);
        free(j->v[i].owned_key);
    }
    free(j->v);
    memset(j, 0, sizeof(*j));
}

int tp__xf_json_string(struct tp_strbuf *out, const char *s, size_t len)
{
    int rc = tp_strbuf_append(out, "\"", 1);
    if (!rc)
        rc = tp_strbuf_json_str(out, s, len);
    return rc ? rc : tp_strbuf_append(out, "\"", 1);
}

bool tp__xf_is_json_number(const char *s, size_t len)
{
    size_t i = 0;
    if (i < len && s[i] == '-')
        i++;
    if (i >= len)
        return false;
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    } else {
        return false;
    }
    if (i < len && s[i] == '.') {
        size_t start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return false;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return false;
    }
    return i == len;
}

/* ------------------------------------------------------------------------------------------ */
/* Media types                                                                                 */

enum tp__xf_media tp__xf_media_type(struct tp_slice ct)
{
    size_t end = 0;
    while (end < ct.len && ct.ptr[end] != ';')
        end++;
    size_t start = 0;
    while (start < end && (ct.ptr[start] == ' ' || ct.ptr[start] == '\t'))
        start++;
    while (end > start && (ct.ptr[end - 1] == ' ' || ct.ptr[end - 1] == '\t'))
        end--;
    struct tp_slice mt = {ct.ptr + start, end - start};
    if (TP_SLICE_IEQ(mt, "application/json"))
        return TP_XF_MEDIA_JSON;
    if (TP_SLICE_IEQ(mt, "application/x-www-form-urlencoded"))
        return TP_XF_MEDIA_FORM;
    const char *slash = memchr(mt.ptr, '/', mt.len);
    if (slash && mt.len >= 5 && slash < mt.ptr + mt.len - 5 &&
        tp_slice_eq_nocase((struct tp_slice){mt.ptr + mt.len - 5, 5}, "+json", 5))
        return TP_XF_MEDIA_JSON;
    return TP_XF_MEDIA_OTHER;
}

void tp__xf_body_take(struct tp_plugin_body *body, struct tp_strbuf *out)
{
    free(body->ptr);
    body->ptr = out->ptr;
    body->len = out->len;
    body->cap = out->cap;
    out->ptr = NULL;
    out->len = out->cap = 0;
}

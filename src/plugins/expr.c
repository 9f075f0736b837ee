/*
 * turnpike — the ABAC expression language: lexer, parser + type checker, evaluator, and the
 * mapping of error offsets to positions inside YAML scalars (see expr.h, docs/plugins/abac.md).
 *
 * Grammar (lowest precedence first; `!` binds looser than comparisons, as Python's `not`, so
 * that `!"admin" in consumer.groups` means "not an admin"):
 *
 *   or       = and { "||" and }
 *   and      = unary { "&&" unary }
 *   unary    = "!" unary | compare
 *   compare  = primary [ ( "==" | "!=" | "<" | "<=" | ">" | ">=" | "in" ) primary ]
 *   primary  = string | number | "true" | "false" | "null" | list | "(" or ")"
 *            | name "(" [ or { "," or } ] ")" | attribute { "[" string "]" }
 *   list     = "[" [ literal { "," literal } ] "]"     (strings only, or numbers only)
 *
 * Comparisons do not chain (`a == b == c` is an error). && and || are n-ary nodes, so a long
 * chain does not deepen the tree: evaluation recursion is bounded by TP_EXPR_MAX_DEPTH.
 */
#include "plugins/expr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_SEGMENTS 32 /* of one attribute name */

/* ------------------------------------------------------------------------------------------ */
/* Addresses and networks                                                                     */

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

void tp_ip_unmap(int *family, uint8_t addr[16])
{
    if (*family == AF_INET6 && memcmp(addr, v4_mapped_prefix, 12) == 0) {
        memmove(addr, addr + 12, 4);
        memset(addr + 4, 0, 12);
        *family = AF_INET;
    }
}

/* Prefix length: decimal, no sign, no leading zero, 0..max. */
static bool parse_prefix(const char *s, size_t len, int max, int *out)
{
    int v = 0;

    if (len == 0 || len > 3 || (s[0] == '0' && len > 1))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return v <= max;
}

const char *tp_cidr_parse(const char *s, size_t len, bool mask_host_bits, struct tp_cidr *out)
{
    char buf[INET6_ADDRSTRLEN];
    const char *slash = memchr(s, '/', len);
    size_t alen = slash ? (size_t)(slash - s) : len;

    memset(out, 0, sizeof(*out));
    if (alen == 0 || alen >= sizeof(buf) || memchr(s, '\0', len))
        return "invalid IP address";
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    out->family = memchr(buf, ':', alen) ? AF_INET6 : AF_INET;
    int bits = out->family == AF_INET6 ? 128 : 32;
    if (inet_pton(out->family, buf, out->addr) != 1)
        return "invalid IP address";
    out->prefix = bits;
    if (slash && !parse_prefix(slash + 1, len - alen - 1, bits, &out->prefix))
        return bits == 128 ? "prefix length must be between 0 and 128"
                           : "prefix length must be between 0 and 32";
    for (int b = out->prefix; b < bits; b++) {
        if (!(out->addr[b / 8] & (0x80 >> (b % 8))))
            continue;
        if (!mask_host_bits)
            return "host bits are set (write the network address)";
        out->addr[b / 8] &= (uint8_t) ~(0x80 >> (b % 8));
    }
    /* ::ffff:10.0.0.0/104 is 10.0.0.0/8: IPv4 peers are compared as IPv4. */
    if (out->family == AF_INET6 && out->prefix >= 96 &&
        memcmp(out->addr, v4_mapped_prefix, 12) == 0) {
        tp_ip_unmap(&out->family, out->addr);
        out->prefix -= 96;
    }
    return NULL;
}

bool tp_cidr_match(const struct tp_cidr *c, int family, const uint8_t addr_in[16])
{
    uint8_t addr[16] = {0};

    if (family == AF_INET)
        memcpy(addr, addr_in, 4);
    else if (family == AF_INET6)
        memcpy(addr, addr_in, 16);
    else
        return false;
    tp_ip_unmap(&family, addr);
    if (family != c->family)
        return false;
    int full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(addr, c->addr, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (addr[full] & mask) == c->addr[full];
}

/* ------------------------------------------------------------------------------------------ */
/* The compiled form                                                                          */

/* Static types, checked at compile time. ANY is a JWT claim: its JSON type is known only per
 * request, so it is accepted wherever a scalar is and compared by its runtime kind. */
enum type {
    TY_NULL = 0,
    TY_BOOL,
    TY_NUM,
    TY_STR,
    TY_STRLIST,
    TY_NUMLIST,
    TY_EMPTYLIST,
    TY_IP,
    TY_CIDR,
    TY_ANY,
};

static const char *const type_names[] = {
    [TY_NULL] = "null",
    [TY_BOOL] = "a boolean",
    [TY_NUM] = "a number",
    [TY_STR] = "a string",
    [TY_STRLIST] = "a list of strings",
    [TY_NUMLIST] = "a list of numbers",
    [TY_EMPTYLIST] = "an empty list",
    [TY_IP] = "an IP address",
    [TY_CIDR] = "a network",
    [TY_ANY] = "a JWT claim",
};

enum op {
    OP_CONST = 0, /* u.v */
    OP_LIST,      /* u.list */
    OP_CIDRS,     /* u.cidrs */
    OP_ATTR,      /* u.attr */
    OP_NOT,       /* a */
    OP_AND,       /* args[first .. first + n) */
    OP_OR,
    OP_EQ, /* a, b */
    OP_NE,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_IN,
    OP_IS_NULL, /* a */
    OP_NOT_NULL,
    OP_STARTS_WITH, /* a, b */
    OP_ENDS_WITH,
    OP_CONTAINS,
};

struct list_item {
    struct tp_expr_value v; /* a string or a number */
    size_t pos;             /* offset of the literal */
};

struct node {
    uint8_t op;    /* enum op */
    uint8_t type;  /* enum type */
    bool literal;  /* a string literal (may become an address or a network) */
    size_t pos;    /* offset of the token that starts it, for messages */
    uint32_t a, b; /* operands */
    uint32_t first, n;
    union {
        struct tp_expr_value v;
        struct {
            struct list_item *items;
            size_t n;
        } list;
        struct {
            struct tp_cidr *items;
            size_t n;
        } cidrs;
        struct tp_expr_attr_ref attr;
    } u;
};

struct tp_expr {
    struct node *nodes;
    size_t num_nodes, cap_nodes;
    uint32_t *args;
    size_t num_args, cap_args;
    char **strings; /* decoded string literals, owned */
    size_t num_strings, cap_strings;
    uint32_t root;
};

static void free_node(struct node *n)
{
    if (n->op == OP_LIST)
        free(n->u.list.items);
    else if (n->op == OP_CIDRS)
        free(n->u.cidrs.items);
    else if (n->op == OP_ATTR)
        tp_expr_attr_free(&n->u.attr);
}

void tp_expr_free(struct tp_expr *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->num_nodes; i++)
        free_node(&e->nodes[i]);
    for (size_t i = 0; i < e->num_strings; i++)
        free(e->strings[i]);
    free(e->strings);
    free(e->nodes);
    free(e->args);
    free(e);
}

/* ------------------------------------------------------------------------------------------ */
/* Attributes                                                                                 */

void tp_expr_attr_free(struct tp_expr_attr_ref *ref)
{
    free(ref->name);
    for (size_t i = 0; i < ref->path_len; i++)
        free(ref->path[i]);
    free(ref->path);
    memset(ref, 0, sizeof(*ref));
}

static bool slice_is(struct tp_slice s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

/* RFC 9110 §5.6.2 token characters (header names). */
static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_word(struct tp_slice s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

struct attr_def {
    const char *a, *b;
    enum tp_expr_attr attr;
    enum type type;
};

/* Attributes of exactly two segments. */
static const struct attr_def fixed_attrs[] = {
    {"consumer", "id", TP_EXPR_CONSUMER_ID, TY_STR},
    {"consumer", "username", TP_EXPR_CONSUMER_USERNAME, TY_STR},
    {"consumer", "custom_id", TP_EXPR_CONSUMER_CUSTOM_ID, TY_STR},
    {"consumer", "groups", TP_EXPR_CONSUMER_GROUPS, TY_STRLIST},
    {"consumer", "anonymous", TP_EXPR_CONSUMER_ANONYMOUS, TY_BOOL},
    {"request", "method", TP_EXPR_REQUEST_METHOD, TY_STR},
    {"request", "path", TP_EXPR_REQUEST_PATH, TY_STR},
    {"route", "name", TP_EXPR_ROUTE_NAME, TY_STR},
    {"service", "name", TP_EXPR_SERVICE_NAME, TY_STR},
    {"client", "ip", TP_EXPR_CLIENT_IP, TY_IP},
    {"time", "hour", TP_EXPR_TIME_HOUR, TY_NUM},
    {"time", "minute", TP_EXPR_TIME_MINUTE, TY_NUM},
    {"time", "weekday", TP_EXPR_TIME_WEEKDAY, TY_NUM},
};

/* Attributes named `<a>.<b>.<name>`: one name segment after the prefix. */
static const struct attr_def named_attrs[] = {
    {"request", "headers", TP_EXPR_REQUEST_HEADER, TY_STR},
    {"request", "query", TP_EXPR_REQUEST_QUERY, TY_STR},
    {"route", "params", TP_EXPR_ROUTE_PARAM, TY_STR},
};

static void set_error(struct tp_expr_error *err, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(struct tp_expr_error *err, size_t offset, const char *fmt, ...)
{
    va_list ap;

    err->offset = offset;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

static int copy_name(struct tp_slice s, bool lower, char **out)
{
    char *p = strndup(s.ptr, s.len);
    if (!p)
        return TP_ENOMEM;
    if (lower)
        for (char *q = p; *q; q++)
            *q = tp_lower(*q);
    *out = p;
    return 0;
}

/* The name segment of request.headers.X / request.query.X / route.params.X. */
static int resolve_named(const struct attr_def *d, struct tp_slice name, size_t pos,
                         struct tp_expr_attr_ref *out, struct tp_expr_error *err)
{
    bool ok = name.len > 0 && !memchr(name.ptr, '\0', name.len);

    for (size_t i = 0; ok && i < name.len && d->attr == TP_EXPR_REQUEST_HEADER; i++)
        ok = is_tchar(name.ptr[i]);
    if (!ok) {
        set_error(err, pos, "invalid %s name in %s.%s",
                  d->attr == TP_EXPR_REQUEST_HEADER ? "header" : "argument", d->a, d->b);
        return TP_EINVAL;
    }
    out->attr = d->attr;
    if (copy_name(name, d->attr == TP_EXPR_REQUEST_HEADER, &out->name) != 0) {
        set_error(err, pos, "out of memory");
        return TP_ENOMEM;
    }
    return 0;
}

static int resolve_claims(const struct tp_slice *segs, size_t n, size_t pos,
                          struct tp_expr_attr_ref *out, struct tp_expr_error *err)
{
    out->attr = TP_EXPR_JWT_CLAIMS;
    out->path = calloc(n, sizeof(*out->path));
    if (!out->path)
        goto out_oom;
    for (size_t i = 0; i < n; i++) {
        if (memchr(segs[i].ptr, '\0', segs[i].len)) {
            set_error(err, pos, "a claim name must not contain a NUL byte");
            return TP_EINVAL;
        }
        if (copy_name(segs[i], false, &out->path[i]) != 0)
            goto out_oom;
        out->path_len = i + 1;
    }
    return 0;
out_oom:
    set_error(err, pos, "out of memory");
    return TP_ENOMEM;
}

/*
 * Resolve the segments of an attribute name (at offset pos, text[0..text_len) for messages)
 * into *out and its static type. Unknown names are errors: a typo must not silently read null.
 */
static int resolve_attr(const struct tp_slice *segs, size_t n, const char *text, size_t text_len,
                        size_t pos, struct tp_expr_attr_ref *out, enum type *type,
                        struct tp_expr_error *err)
{
    int shown = (int)TP_MIN(text_len, 80);
    int rc;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; n == 2 && i < TP_ARRAY_LEN(fixed_attrs); i++) {
        if (slice_is(segs[0], fixed_attrs[i].a) && slice_is(segs[1], fixed_attrs[i].b)) {
            out->attr = fixed_attrs[i].attr;
            *type = fixed_attrs[i].type;
            return 0;
        }
    }
    for (size_t i = 0; n >= 2 && i < TP_ARRAY_LEN(named_attrs); i++) {
        const struct attr_def *d = &named_attrs[i];
        if (!slice_is(segs[0], d->a) || !slice_is(segs[1], d->b))
            continue;
        if (n != 3) {
            set_error(err, pos, "%s.%s needs exactly one name after it, as in %s.%s.%s", d->a, d->b,
                      d->a, d->b, d->attr == TP_EXPR_REQUEST_HEADER ? "x-user" : "id");
            return TP_EINVAL;
        }
        *type = d->type;
        return resolve_named(d, segs[2], pos, out, err);
    }
    if (n >= 2 && slice_is(segs[0], "jwt") && slice_is(segs[1], "claims")) {
        if (n == 2) {
            set_error(err, pos, "jwt.claims needs a claim name, as in jwt.claims.sub");
            return TP_EINVAL;
        }
        *type = TY_ANY;
        rc = resolve_claims(segs + 2, n - 2, pos, out, err);
        if (rc != 0)
            tp_expr_attr_free(out);
        return rc;
    }
    set_error(err, pos, "unknown attribute \"%.*s\"", shown, text);
    return TP_EINVAL;
}

int tp_expr_attr_parse(const char *s, size_t len, struct tp_expr_attr_ref *out,
                       struct tp_expr_error *err)
{
    struct tp_slice segs[MAX_SEGMENTS];
    size_t n = 0, start = 0;
    enum type type;

    memset(out, 0, sizeof(*out));
    memset(err, 0, sizeof(*err));
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.')
            continue;
        struct tp_slice seg = {s + start, i - start};
        if (!is_word(seg)) {
            set_error(err, start, "expected an attribute name such as consumer.username");
            return TP_EINVAL;
        }
        if (n == MAX_SEGMENTS) {
            set_error(err, start, "attribute name has more than %d parts", MAX_SEGMENTS);
            return TP_EINVAL;
        }
        segs[n++] = seg;
        start = i + 1;
    }
    return resolve_attr(segs, n, s, len, 0, out, &type, err);
}

static void json_to_value(const json_t *j, struct tp_expr_value *out)
{
    memset(out, 0, sizeof(*out));
    if (!j)
        return;
    switch (json_typeof(j)) {
    case JSON_STRING:
        out->kind = TP_EXPR_V_STRING;
        out->u.str = (struct tp_slice){json_string_value(j), json_string_length(j)};
        break;
    case JSON_INTEGER:
        out->kind = TP_EXPR_V_INTEGER; /* json_int_t is long long: exact */
        out->u.i = (int64_t)json_integer_value(j);
        break;
    case JSON_REAL:
        out->kind = TP_EXPR_V_NUMBER;
        out->u.num = json_real_value(j);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        out->kind = TP_EXPR_V_BOOL;
        out->u.b = json_is_true(j);
        break;
    case JSON_ARRAY:
    case JSON_OBJECT:
        out->kind = TP_EXPR_V_JSON;
        out->u.json = j;
        break;
    case JSON_NULL:
        break;
    }
}

void tp_expr_attr_fetch(const struct tp_expr_attr_ref *ref, tp_expr_lookup_fn lookup, void *env,
                        struct tp_expr_value *out)
{
    memset(out, 0, sizeof(*out));
    lookup(env, ref, out);
    if (ref->attr != TP_EXPR_JWT_CLAIMS)
        return;
    if (out->kind != TP_EXPR_V_JSON) {
        memset(out, 0, sizeof(*out));
        return;
    }
    const json_t *j = out->u.json;
    for (size_t i = 0; i < ref->path_len && j; i++)
        j = json_is_object(j) ? json_object_get(j, ref->path[i]) : NULL;
    json_to_value(j, out);
}

/* ------------------------------------------------------------------------------------------ */
/* Lexer                                                                                      */

enum tok {
    T_END = 0,
    T_ERROR,
    T_IDENT,
    T_STRING,
    T_NUMBER,
    T_LPAREN,
    T_RPAREN,
    T_LBRACK,
    T_RBRACK,
    T_COMMA,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
    T_AND,
    T_OR,
    T_NOT,
    T_IN,
    T_TRUE,
    T_FALSE,
    T_NULL,
};

struct token {
    enum tok t;
    size_t pos, len;
};

struct parser {
    const char *src;
    size_t len;
    size_t at; /* next unread byte */
    struct token tok;
    struct tp_expr *e;
    struct tp_expr_error *err;
    int depth;
    int rc; /* first error: TP_EINVAL or TP_ENOMEM */
};

static int fail(struct parser *p, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record the first error; always -1 (the node-index error value). */
static int fail(struct parser *p, size_t pos, const char *fmt, ...)
{
    va_list ap;

    if (p->rc != 0)
        return -1;
    p->rc = TP_EINVAL;
    p->err->offset = pos;
    va_start(ap, fmt);
    vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
    va_end(ap);
    return -1;
}

static int oom(struct parser *p)
{
    if (p->rc == 0) {
        p->rc = TP_ENOMEM;
        p->err->offset = p->tok.pos;
        snprintf(p->err->message, sizeof(p->err->message), "out of memory");
    }
    return -1;
}

static bool is_ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident_char(char c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9') || c == '-';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static void lex_string(struct parser *p, size_t start)
{
    char quote = p->src[start];
    size_t i = start + 1;

    for (; i < p->len && p->src[i] != quote; i++) {
        if ((unsigned char)p->src[i] < 0x20 || p->src[i] == 0x7f) {
            fail(p, i, "control character in a string literal");
            p->tok.t = T_ERROR;
            return;
        }
        if (p->src[i] == '\\')
            i++;
    }
    if (i >= p->len) {
        fail(p, start, "unterminated string");
        p->tok.t = T_ERROR;
        return;
    }
    p->tok = (struct token){T_STRING, start, i + 1 - start};
    p->at = i + 1;
}

static void lex_number(struct parser *p, size_t start)
{
    size_t i = start + (p->src[start] == '-');

    while (i < p->len && is_digit(p->src[i]))
        i++;
    if (i < p->len && p->src[i] == '.') {
        if (i + 1 >= p->len || !is_digit(p->src[i + 1])) {
            fail(p, i, "expected a digit after '.'");
            p->tok.t = T_ERROR;
            return;
        }
        for (i++; i < p->len && is_digit(p->src[i]); i++)
            ;
    }
    p->tok = (struct token){T_NUMBER, start, i - start};
    p->at = i;
}

static const struct {
    const char *word;
    enum tok t;
} keywords[] = {{"in", T_IN}, {"true", T_TRUE}, {"false", T_FALSE}, {"null", T_NULL}};

static void lex_ident(struct parser *p, size_t start)
{
    size_t i = start;

    for (;;) {
        size_t seg = i;
        while (i < p->len && is_ident_char(p->src[i]))
            i++;
        if (i == seg) {
            fail(p, i, "expected a name after '.'");
            p->tok.t = T_ERROR;
            return;
        }
        if (i >= p->len || p->src[i] != '.')
            break;
        i++;
    }
    p->tok = (struct token){T_IDENT, start, i - start};
    p->at = i;
    struct tp_slice word = {p->src + start, i - start};
    for (size_t k = 0; k < TP_ARRAY_LEN(keywords); k++)
        if (slice_is(word, keywords[k].word))
            p->tok.t = keywords[k].t;
    /* Common spellings from other languages get a pointed message. */
    if (slice_is(word, "and") || slice_is(word, "or") || slice_is(word, "not")) {
        fail(p, start, "use %s instead of '%.*s'",
             word.ptr[0] == 'a'   ? "'&&'"
             : word.ptr[0] == 'o' ? "'||'"
                                  : "'!'",
             (int)word.len, word.ptr);
        p->tok.t = T_ERROR;
    }
}

/* One- or two-character operators: `second` completes `two`, else `one` (T_ERROR: invalid). */
static void lex_op(struct parser *p, size_t start, char second, enum tok two, enum tok one,
                   const char *hint)
{
    if (start + 1 < p->len && p->src[start + 1] == second) {
        p->tok = (struct token){two, start, 2};
        p->at = start + 2;
    } else if (one != T_ERROR) {
        p->tok = (struct token){one, start, 1};
        p->at = start + 1;
    } else {
        fail(p, start, "%s", hint);
        p->tok = (struct token){T_ERROR, start, 1};
    }
}

static void next(struct parser *p)
{
    size_t i = p->at;

    if (p->rc != 0) {
        p->tok = (struct token){T_ERROR, p->at, 0};
        return;
    }
    while (i < p->len &&
           (p->src[i] == ' ' || p->src[i] == '\t' || p->src[i] == '\n' || p->src[i] == '\r'))
        i++;
    p->at = i;
    if (i >= p->len) {
        p->tok = (struct token){T_END, p->len, 0};
        return;
    }
    char c = p->src[i];
    static const char singles[] = "()[],";
    static const enum tok single_toks[] = {T_LPAREN, T_RPAREN, T_LBRACK, T_RBRACK, T_COMMA};
    const char *s = strchr(singles, c);
    if (s && c) {
        p->tok = (struct token){single_toks[s - singles], i, 1};
        p->at = i + 1;
    } else if (c == '=') {
        lex_op(p, i, '=', T_EQ, T_ERROR, "use '==' to compare");
    } else if (c == '!') {
        lex_op(p, i, '=', T_NE, T_NOT, NULL);
    } else if (c == '<') {
        lex_op(p, i, '=', T_LE, T_LT, NULL);
    } else if (c == '>') {
        lex_op(p, i, '=', T_GE, T_GT, NULL);
    } else if (c == '&') {
        lex_op(p, i, '&', T_AND, T_ERROR, "use '&&' for \"and\"");
    } else if (c == '|') {
        lex_op(p, i, '|', T_OR, T_ERROR, "use '||' for \"or\"");
    } else if (c == '"' || c == '\'') {
        lex_string(p, i);
    } else if (is_digit(c) || (c == '-' && i + 1 < p->len && is_digit(p->src[i + 1]))) {
        lex_number(p, i);
    } else if (is_ident_start(c)) {
        lex_ident(p, i);
    } else {
        if ((unsigned char)c > 0x20 && (unsigned char)c < 0x7f)
            fail(p, i, "unexpected character '%c'", c);
        else
            fail(p, i, "unexpected byte 0x%02x", (unsigned char)c);
        p->tok = (struct token){T_ERROR, i, 1};
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Parser and type checker                                                                    */

static int unexpected(struct parser *p)
{
    if (p->tok.t == T_ERROR)
        return -1;
    if (p->tok.t == T_END)
        return fail(p, p->tok.pos, "unexpected end of expression");
    return fail(p, p->tok.pos, "unexpected '%.*s'", (int)TP_MIN(p->tok.len, 40),
                p->src + p->tok.pos);
}

static int expect(struct parser *p, enum tok t, const char *what)
{
    if (p->tok.t == t) {
        next(p);
        return 0;
    }
    if (p->tok.t == T_ERROR)
        return -1;
    if (p->tok.t == T_END)
        return fail(p, p->tok.pos, "expected %s before the end of the expression", what);
    return fail(p, p->tok.pos, "expected %s, found '%.*s'", what, (int)TP_MIN(p->tok.len, 40),
                p->src + p->tok.pos);
}

static int new_node(struct parser *p, enum op op, enum type type, size_t pos)
{
    struct tp_expr *e = p->e;

    if (e->num_nodes >= TP_EXPR_MAX_NODES)
        return fail(p, pos, "expression has more than %d parts", TP_EXPR_MAX_NODES);
    if (e->num_nodes == e->cap_nodes) {
        size_t cap = e->cap_nodes ? e->cap_nodes * 2 : 16;
        struct node *nn = realloc(e->nodes, cap * sizeof(*nn));
        if (!nn)
            return oom(p);
        e->nodes = nn;
        e->cap_nodes = cap;
    }
    struct node *n = &e->nodes[e->num_nodes];
    memset(n, 0, sizeof(*n));
    n->op = (uint8_t)op;
    n->type = (uint8_t)type;
    n->pos = pos;
    return (int)e->num_nodes++;
}

static struct node *node_at(struct parser *p, int i)
{
    return &p->e->nodes[i];
}

static int enter(struct parser *p)
{
    if (++p->depth > TP_EXPR_MAX_DEPTH)
        return fail(p, p->tok.pos, "expression is nested more than %d levels deep",
                    TP_EXPR_MAX_DEPTH);
    return 0;
}

/* Decode the current string token into memory owned by the expression. */
static int decode_string(struct parser *p, struct tp_slice *out)
{
    const char *s = p->src + p->tok.pos + 1;
    size_t n = p->tok.len - 2, len = 0;
    struct tp_expr *e = p->e;

    if (e->num_strings == e->cap_strings) {
        size_t cap = e->cap_strings ? e->cap_strings * 2 : 8;
        char **ns = realloc(e->strings, cap * sizeof(*ns));
        if (!ns)
            return oom(p);
        e->strings = ns;
        e->cap_strings = cap;
    }
    char *buf = malloc(n + 1);
    if (!buf)
        return oom(p);
    e->strings[e->num_strings++] = buf;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\') {
            c = s[++i];
            if (c == 'n')
                c = '\n';
            else if (c == 't')
                c = '\t';
            else if (c != '\\' && c != '"' && c != '\'')
                return fail(p, p->tok.pos + 1 + i - 1,
                            "unknown escape '\\%c' (use \\\\, \\\", \\', \\n or \\t)", c);
        }
        buf[len++] = c;
    }
    buf[len] = '\0';
    *out = (struct tp_slice){buf, len};
    return 0;
}

static int parse_or(struct parser *p);

static bool is_scalar(enum type t)
{
    return t == TY_STR || t == TY_NUM || t == TY_BOOL || t == TY_ANY;
}

static bool is_list(enum type t)
{
    return t == TY_STRLIST || t == TY_NUMLIST || t == TY_EMPTYLIST;
}

/* A condition is expected here: a boolean, or a claim (true only when it is JSON true). */
static int check_cond(struct parser *p, int i)
{
    struct node *n = node_at(p, i);

    if (n->type == TY_BOOL || n->type == TY_ANY)
        return 0;
    return fail(p, n->pos, "expected a condition (a boolean), found %s", type_names[n->type]);
}

/* A string literal node becomes a network (or, with single, an address for ==). */
static int literal_to_cidrs(struct parser *p, int i, bool single)
{
    struct node *n = node_at(p, i);
    struct tp_cidr *c = malloc(sizeof(*c));
    struct tp_slice s = n->u.v.u.str;

    if (!c)
        return oom(p);
    const char *why = tp_cidr_parse(s.ptr, s.len, false, c);
    if (!why && single && memchr(s.ptr, '/', s.len))
        why = "a network cannot be compared with '==' (use 'in')";
    if (why) {
        free(c);
        return fail(p, n->pos, "invalid %s \"%.*s\": %s", single ? "IP address" : "network",
                    (int)TP_MIN(s.len, 60), s.ptr, why);
    }
    n->op = OP_CIDRS;
    n->type = TY_CIDR;
    n->u.cidrs.items = c;
    n->u.cidrs.n = 1;
    return 0;
}

/* A list literal of strings becomes a list of networks (`client.ip in ["10.0.0.0/8", ...]`). */
static int list_to_cidrs(struct parser *p, int i)
{
    struct node *n = node_at(p, i);
    size_t count = n->u.list.n;
    struct list_item *items = n->u.list.items;
    struct tp_cidr *c = calloc(count ? count : 1, sizeof(*c));

    if (!c)
        return oom(p);
    for (size_t k = 0; k < count; k++) {
        struct tp_slice s = items[k].v.u.str;
        const char *why = tp_cidr_parse(s.ptr, s.len, false, &c[k]);
        if (why) {
            free(c);
            return fail(p, items[k].pos, "invalid network \"%.*s\": %s", (int)TP_MIN(s.len, 60),
                        s.ptr, why);
        }
    }
    free(items);
    n->op = OP_CIDRS;
    n->type = TY_CIDR;
    n->u.cidrs.items = c;
    n->u.cidrs.n = count;
    return 0;
}

static int check_equality(struct parser *p, int l, int r, size_t oppos)
{
    enum type lt = node_at(p, l)->type, rt = node_at(p, r)->type;

    if (lt == TY_IP || rt == TY_IP) {
        int other = lt == TY_IP ? r : l;
        enum type ot = lt == TY_IP ? rt : lt;
        if (ot == TY_IP)
            return 0;
        if (ot == TY_STR && node_at(p, other)->literal)
            return literal_to_cidrs(p, other, true);
        return fail(p, oppos,
                    "cannot compare an IP address with %s (write an address as a "
                    "string, or use 'in' with a network)",
                    type_names[ot]);
    }
    if ((lt == rt && is_scalar(lt)) || (lt == TY_ANY && is_scalar(rt)) ||
        (rt == TY_ANY && is_scalar(lt)))
        return 0;
    return fail(p, oppos, "cannot compare %s with %s%s", type_names[lt], type_names[rt],
                (is_list(lt) || is_list(rt)) ? " (use 'in' to test membership)" : "");
}

static int check_in(struct parser *p, int l, int r, size_t oppos)
{
    struct node *ln = node_at(p, l), *rn = node_at(p, r);
    enum type lt = ln->type, rt = rn->type;

    if (lt == TY_IP) {
        if (rt == TY_CIDR || rt == TY_EMPTYLIST)
            return 0;
        if (rt == TY_STR && rn->literal)
            return literal_to_cidrs(p, r, false);
        if (rt == TY_STRLIST && rn->op == OP_LIST)
            return list_to_cidrs(p, r);
        return fail(p, rn->pos,
                    "an IP address is looked up in a network (\"10.0.0.0/8\", "
                    "cidr(\"...\") or a list of them), not in %s",
                    type_names[rt]);
    }
    if (!is_scalar(lt))
        return fail(p, ln->pos, "cannot look for %s with 'in'", type_names[lt]);
    if (rt == TY_EMPTYLIST || rt == TY_ANY ||
        (rt == TY_STRLIST && (lt == TY_STR || lt == TY_ANY)) ||
        (rt == TY_NUMLIST && (lt == TY_NUM || lt == TY_ANY)))
        return 0;
    if (is_list(rt))
        return fail(p, oppos, "cannot look for %s in %s", type_names[lt], type_names[rt]);
    return fail(p, rn->pos, "'in' needs a list%s on its right, found %s",
                lt == TY_STR || lt == TY_ANY ? " or a JWT claim" : "", type_names[rt]);
}

static int check_order(struct parser *p, int l, int r, size_t oppos, size_t oplen)
{
    enum type lt = node_at(p, l)->type, rt = node_at(p, r)->type;

    if ((lt == TY_NUM || lt == TY_ANY) && (rt == TY_NUM || rt == TY_ANY))
        return 0;
    return fail(p, oppos, "'%.*s' compares numbers, not %s", (int)oplen, p->src + oppos,
                type_names[lt == TY_NUM || lt == TY_ANY ? rt : lt]);
}

static int make_binary(struct parser *p, enum op op, int l, int r, size_t pos)
{
    int i = new_node(p, op, TY_BOOL, pos);
    if (i < 0)
        return -1;
    node_at(p, i)->a = (uint32_t)l;
    node_at(p, i)->b = (uint32_t)r;
    return i;
}

static enum op compare_op(enum tok t)
{
    switch (t) {
    case T_EQ:
        return OP_EQ;
    case T_NE:
        return OP_NE;
    case T_LT:
        return OP_LT;
    case T_LE:
        return OP_LE;
    case T_GT:
        return OP_GT;
    case T_GE:
        return OP_GE;
    case T_IN:
        return OP_IN;
    default:
        return OP_CONST;
    }
}

static int parse_primary(struct parser *p);

static int parse_compare(struct parser *p)
{
    int l = parse_primary(p);
    enum op op = compare_op(p->tok.t);

    if (l < 0 || op == OP_CONST)
        return l;
    size_t oppos = p->tok.pos, oplen = p->tok.len;
    next(p);
    int r = parse_primary(p);
    if (r < 0)
        return -1;
    if (compare_op(p->tok.t) != OP_CONST)
        return fail(p, p->tok.pos,
                    "comparisons cannot be chained; use parentheses and && "
                    "or ||");
    enum type lt = node_at(p, l)->type, rt = node_at(p, r)->type;
    if ((op == OP_EQ || op == OP_NE) && (lt == TY_NULL || rt == TY_NULL)) {
        int i =
            make_binary(p, op == OP_EQ ? OP_IS_NULL : OP_NOT_NULL, lt == TY_NULL ? r : l, 0, oppos);
        return i;
    }
    int rc;
    if (op == OP_EQ || op == OP_NE)
        rc = check_equality(p, l, r, oppos);
    else if (op == OP_IN)
        rc = check_in(p, l, r, oppos);
    else
        rc = check_order(p, l, r, oppos, oplen);
    return rc < 0 ? -1 : make_binary(p, op, l, r, oppos);
}

static int parse_unary(struct parser *p)
{
    if (p->tok.t != T_NOT)
        return parse_compare(p);
    size_t pos = p->tok.pos;
    next(p);
    if (enter(p) < 0)
        return -1;
    int a = parse_unary(p);
    p->depth--;
    if (a < 0 || check_cond(p, a) < 0)
        return -1;
    int i = new_node(p, OP_NOT, TY_BOOL, pos);
    if (i >= 0)
        node_at(p, i)->a = (uint32_t)a;
    return i;
}

static int push_arg(struct parser *p, uint32_t **kids, size_t *n, size_t *cap, int k)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        uint32_t *nk = realloc(*kids, c * sizeof(*nk));
        if (!nk)
            return oom(p);
        *kids = nk;
        *cap = c;
    }
    (*kids)[(*n)++] = (uint32_t)k;
    return 0;
}

/* Store kids[0..n) in the expression's argument array; returns the first index or -1. */
static int store_args(struct parser *p, const uint32_t *kids, size_t n)
{
    struct tp_expr *e = p->e;

    if (e->num_args + n > e->cap_args) {
        size_t cap = e->cap_args ? e->cap_args : 16;
        while (cap < e->num_args + n)
            cap *= 2;
        uint32_t *na = realloc(e->args, cap * sizeof(*na));
        if (!na)
            return oom(p);
        e->args = na;
        e->cap_args = cap;
    }
    memcpy(e->args + e->num_args, kids, n * sizeof(*kids));
    e->num_args += n;
    return (int)(e->num_args - n);
}

/* a && b && c (or ||): one n-ary node, every operand a condition. */
static int parse_chain(struct parser *p, enum tok optok, enum op op, int (*sub)(struct parser *))
{
    size_t pos = p->tok.pos;
    int first = sub(p);
    uint32_t *kids = NULL;
    size_t n = 0, cap = 0;
    int i = -1;

    if (first < 0 || p->tok.t != optok)
        return first;
    if (push_arg(p, &kids, &n, &cap, first) < 0)
        goto out;
    while (p->tok.t == optok) {
        next(p);
        int k = sub(p);
        if (k < 0 || push_arg(p, &kids, &n, &cap, k) < 0)
            goto out;
    }
    for (size_t k = 0; k < n; k++)
        if (check_cond(p, (int)kids[k]) < 0)
            goto out;
    int at = store_args(p, kids, n);
    if (at < 0 || (i = new_node(p, op, TY_BOOL, pos)) < 0)
        goto out;
    node_at(p, i)->first = (uint32_t)at;
    node_at(p, i)->n = (uint32_t)n;
out:
    free(kids);
    return p->rc ? -1 : i;
}

static int parse_and(struct parser *p)
{
    return parse_chain(p, T_AND, OP_AND, parse_unary);
}

static int parse_or(struct parser *p)
{
    return parse_chain(p, T_OR, OP_OR, parse_and);
}

/*
 * The value of the number token at p->tok: an integer literal stays an exact int64 (a JSON
 * integer claim is compared with it exactly), a literal with a fraction is a double. An
 * integer outside the int64 range is refused rather than silently rounded.
 */
static int number_value(struct parser *p, struct tp_expr_value *v)
{
    char buf[64];

    if (p->tok.len >= sizeof(buf))
        return fail(p, p->tok.pos, "number is too long");
    memcpy(buf, p->src + p->tok.pos, p->tok.len);
    buf[p->tok.len] = '\0';
    if (!memchr(buf, '.', p->tok.len)) {
        errno = 0;
        long long n = strtoll(buf, NULL, 10);
        if (errno == ERANGE)
            return fail(p, p->tok.pos,
                        "integer out of range (-9223372036854775808..9223372036854775807)");
        v->kind = TP_EXPR_V_INTEGER;
        v->u.i = (int64_t)n;
        return 0;
    }
    v->kind = TP_EXPR_V_NUMBER;
    v->u.num = strtod(buf, NULL);
    return 0;
}

static int parse_number(struct parser *p)
{
    struct tp_expr_value v = {0};

    if (number_value(p, &v) < 0)
        return -1;
    int i = new_node(p, OP_CONST, TY_NUM, p->tok.pos);
    if (i < 0)
        return -1;
    node_at(p, i)->u.v = v;
    next(p);
    return i;
}

static int parse_string(struct parser *p)
{
    struct tp_slice s;

    if (decode_string(p, &s) < 0)
        return -1;
    int i = new_node(p, OP_CONST, TY_STR, p->tok.pos);
    if (i < 0)
        return -1;
    node_at(p, i)->literal = true;
    node_at(p, i)->u.v.kind = TP_EXPR_V_STRING;
    node_at(p, i)->u.v.u.str = s;
    next(p);
    return i;
}

static int parse_list_item(struct parser *p, struct list_item *item, enum type *type)
{
    enum type t = p->tok.t == T_STRING ? TY_STRLIST : TY_NUMLIST;

    if (p->tok.t != T_STRING && p->tok.t != T_NUMBER)
        return p->tok.t == T_ERROR || p->tok.t == T_END
                   ? unexpected(p)
                   : fail(p, p->tok.pos, "a list holds only string or number literals");
    if (*type != TY_EMPTYLIST && *type != t)
        return fail(p, p->tok.pos, "a list holds only strings or only numbers, not both");
    *type = t;
    item->pos = p->tok.pos;
    if (t == TY_STRLIST) {
        item->v.kind = TP_EXPR_V_STRING;
        if (decode_string(p, &item->v.u.str) < 0)
            return -1;
    } else if (number_value(p, &item->v) < 0) {
        return -1;
    }
    next(p);
    return 0;
}

static int parse_list(struct parser *p)
{
    size_t pos = p->tok.pos, n = 0, cap = 0;
    struct list_item *items = NULL;
    enum type type = TY_EMPTYLIST;
    int i = -1;

    next(p);
    while (p->tok.t != T_RBRACK) {
        if (n > 0 && expect(p, T_COMMA, "',' or ']'") < 0)
            goto out;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            struct list_item *ni = realloc(items, cap * sizeof(*ni));
            if (!ni) {
                oom(p);
                goto out;
            }
            items = ni;
        }
        memset(&items[n], 0, sizeof(items[n]));
        if (parse_list_item(p, &items[n], &type) < 0)
            goto out;
        n++;
    }
    next(p);
    if ((i = new_node(p, OP_LIST, type, pos)) < 0)
        goto out;
    node_at(p, i)->u.list.items = items;
    node_at(p, i)->u.list.n = n;
    return i;
out:
    free(items);
    return -1;
}

/* Collect the segments of an attribute: the dotted token, then ["..."] suffixes. */
static int parse_attribute(struct parser *p)
{
    struct tp_slice segs[MAX_SEGMENTS];
    size_t n = 0, pos = p->tok.pos, start = pos, end = pos + p->tok.len;

    for (size_t k = pos; k <= end; k++) {
        if (k < end && p->src[k] != '.')
            continue;
        if (n == MAX_SEGMENTS)
            return fail(p, pos, "attribute name has more than %d parts", MAX_SEGMENTS);
        segs[n++] = (struct tp_slice){p->src + start, k - start};
        start = k + 1;
    }
    next(p);
    while (p->tok.t == T_LBRACK) {
        next(p);
        if (p->tok.t != T_STRING)
            return expect(p, T_STRING, "a quoted name after '['");
        if (n == MAX_SEGMENTS)
            return fail(p, pos, "attribute name has more than %d parts", MAX_SEGMENTS);
        if (decode_string(p, &segs[n]) < 0)
            return -1;
        n++;
        end = p->tok.pos + p->tok.len + 1;
        next(p);
        if (expect(p, T_RBRACK, "']'") < 0)
            return -1;
    }
    int i = new_node(p, OP_ATTR, TY_NULL, pos);
    if (i < 0)
        return -1;
    enum type type = TY_NULL;
    struct tp_expr_error err;
    int rc =
        resolve_attr(segs, n, p->src + pos, end - pos, pos, &node_at(p, i)->u.attr, &type, &err);
    if (rc != 0) {
        node_at(p, i)->op = OP_CONST; /* nothing to free */
        if (rc == TP_ENOMEM)
            return oom(p);
        return fail(p, err.offset, "%s", err.message);
    }
    node_at(p, i)->type = (uint8_t)type;
    return i;
}

static const struct {
    const char *name;
    enum op op;
} string_functions[] = {
    {"starts_with", OP_STARTS_WITH},
    {"ends_with", OP_ENDS_WITH},
    {"contains", OP_CONTAINS},
};

static int finish_call(struct parser *p, struct tp_slice name, size_t pos, const int *args,
                       size_t n)
{
    if (slice_is(name, "cidr")) {
        if (n != 1)
            return fail(p, pos, "cidr() takes one argument");
        if (!node_at(p, args[0])->literal)
            return fail(p, node_at(p, args[0])->pos, "cidr() takes a string literal");
        if (literal_to_cidrs(p, args[0], false) < 0)
            return -1;
        node_at(p, args[0])->pos = pos; /* messages point at the call */
        return args[0];
    }
    for (size_t k = 0; k < TP_ARRAY_LEN(string_functions); k++) {
        if (!slice_is(name, string_functions[k].name))
            continue;
        if (n != 2)
            return fail(p, pos, "%s() takes two arguments", string_functions[k].name);
        for (size_t a = 0; a < 2; a++) {
            struct node *arg = node_at(p, args[a]);
            if (arg->type != TY_STR && arg->type != TY_ANY)
                return fail(p, arg->pos, "%s() works on strings, not %s", string_functions[k].name,
                            type_names[arg->type]);
        }
        return make_binary(p, string_functions[k].op, args[0], args[1], pos);
    }
    return fail(p, pos,
                "unknown function \"%.*s\" (functions: starts_with, ends_with, "
                "contains, cidr)",
                (int)TP_MIN(name.len, 40), name.ptr);
}

static int parse_call(struct parser *p)
{
    struct tp_slice name = {p->src + p->tok.pos, p->tok.len};
    size_t pos = p->tok.pos, n = 0;
    int args[2];

    if (memchr(name.ptr, '.', name.len))
        return fail(p, pos, "unknown function \"%.*s\"", (int)TP_MIN(name.len, 40), name.ptr);
    next(p); /* name */
    next(p); /* ( */
    if (enter(p) < 0)
        return -1;
    while (p->tok.t != T_RPAREN) {
        if (n > 0 && expect(p, T_COMMA, "',' or ')'") < 0)
            return -1;
        if (n == TP_ARRAY_LEN(args))
            return fail(p, p->tok.pos, "too many arguments");
        if ((args[n] = parse_or(p)) < 0)
            return -1;
        n++;
    }
    next(p);
    p->depth--;
    return finish_call(p, name, pos, args, n);
}

/* Is the next non-blank character after the current token '('? */
static bool followed_by_paren(const struct parser *p)
{
    size_t i = p->at;

    while (i < p->len &&
           (p->src[i] == ' ' || p->src[i] == '\t' || p->src[i] == '\n' || p->src[i] == '\r'))
        i++;
    return i < p->len && p->src[i] == '(';
}

static int parse_primary(struct parser *p)
{
    int i;

    switch (p->tok.t) {
    case T_LPAREN:
        if (enter(p) < 0)
            return -1;
        next(p);
        i = parse_or(p);
        if (i < 0 || expect(p, T_RPAREN, "')'") < 0)
            return -1;
        p->depth--;
        return i;
    case T_STRING:
        return parse_string(p);
    case T_NUMBER:
        return parse_number(p);
    case T_TRUE:
    case T_FALSE:
        i = new_node(p, OP_CONST, TY_BOOL, p->tok.pos);
        if (i >= 0) {
            node_at(p, i)->u.v.kind = TP_EXPR_V_BOOL;
            node_at(p, i)->u.v.u.b = p->tok.t == T_TRUE;
            next(p);
        }
        return i;
    case T_NULL:
        i = new_node(p, OP_CONST, TY_NULL, p->tok.pos);
        if (i >= 0)
            next(p);
        return i;
    case T_LBRACK:
        if (enter(p) < 0)
            return -1;
        i = parse_list(p);
        p->depth--;
        return i;
    case T_IDENT:
        return followed_by_paren(p) ? parse_call(p) : parse_attribute(p);
    default:
        return unexpected(p);
    }
}

int tp_expr_compile(const char *src, size_t len, struct tp_expr **out, struct tp_expr_error *err)
{
    struct parser p = {.src = src, .len = len, .err = err};
    const char *nul;

    *out = NULL;
    memset(err, 0, sizeof(*err));
    if (len > TP_EXPR_MAX_LEN) {
        set_error(err, 0, "expression is longer than %d bytes", TP_EXPR_MAX_LEN);
        return TP_EINVAL;
    }
    if ((nul = memchr(src, '\0', len)) != NULL) {
        set_error(err, (size_t)(nul - src), "expression holds a NUL byte");
        return TP_EINVAL;
    }
    p.e = calloc(1, sizeof(*p.e));
    if (!p.e) {
        set_error(err, 0, "out of memory");
        return TP_ENOMEM;
    }
    next(&p);
    if (p.tok.t == T_END)
        fail(&p, 0, "empty expression");
    int root = p.rc ? -1 : parse_or(&p);
    if (root >= 0 && p.tok.t != T_END && p.tok.t != T_ERROR)
        fail(&p, p.tok.pos, "unexpected '%.*s' after a complete expression (missing && or ||?)",
             (int)TP_MIN(p.tok.len, 40), src + p.tok.pos);
    if (root >= 0 && p.rc == 0)
        check_cond(&p, root);
    if (p.rc != 0) {
        tp_expr_free(p.e);
        return p.rc;
    }
    p.e->root = (uint32_t)root;
    *out = p.e;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Evaluation                                                                                 */

struct eval_env {
    const struct tp_expr *e;
    tp_expr_lookup_fn lookup;
    void *env;
};

static bool eval_cond(const struct eval_env *x, uint32_t i);

static struct tp_expr_value eval_value(const struct eval_env *x, uint32_t i)
{
    const struct node *n = &x->e->nodes[i];
    struct tp_expr_value v = {0};

    switch (n->op) {
    case OP_CONST:
        return n->u.v;
    case OP_LIST:
        v.kind = TP_EXPR_V_LIST;
        v.u.internal = n;
        return v;
    case OP_CIDRS:
        v.kind = TP_EXPR_V_CIDRS;
        v.u.internal = n;
        return v;
    case OP_ATTR:
        tp_expr_attr_fetch(&n->u.attr, x->lookup, x->env, &v);
        return v;
    default:
        v.kind = TP_EXPR_V_BOOL;
        v.u.b = eval_cond(x, i);
        return v;
    }
}

static bool ip_in_cidrs(const struct tp_expr_value *ip, const struct node *cidrs)
{
    for (size_t k = 0; k < cidrs->u.cidrs.n; k++)
        if (tp_cidr_match(&cidrs->u.cidrs.items[k], ip->u.ip.family, ip->u.ip.addr))
            return true;
    return false;
}

/* Order an int64 and a finite-or-NaN double exactly: -1, 0, 1, or 2 when d is NaN. */
static int int_real_cmp(int64_t i, double d)
{
    if (d != d)
        return 2;
    if (d >= 9223372036854775808.0) /* 2^63: above every int64 */
        return -1;
    if (d < -9223372036854775808.0)
        return 1;
    int64_t t = (int64_t)d; /* truncation: exact, |d| < 2^63 */
    if (i != t)
        return i < t ? -1 : 1;
    double frac = d - (double)t; /* exact: the fraction bits of d */
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

int tp_expr_num_cmp(const struct tp_expr_value *a, const struct tp_expr_value *b)
{
    bool ai = a->kind == TP_EXPR_V_INTEGER, bi = b->kind == TP_EXPR_V_INTEGER;

    if ((!ai && a->kind != TP_EXPR_V_NUMBER) || (!bi && b->kind != TP_EXPR_V_NUMBER))
        return 2;
    if (ai && bi)
        return a->u.i < b->u.i ? -1 : a->u.i > b->u.i;
    if (ai)
        return int_real_cmp(a->u.i, b->u.num);
    if (bi) {
        int c = int_real_cmp(b->u.i, a->u.num);
        return c == 2 ? 2 : -c;
    }
    if (a->u.num < b->u.num)
        return -1;
    if (a->u.num > b->u.num)
        return 1;
    return a->u.num == b->u.num ? 0 : 2;
}

static bool is_numeric(const struct tp_expr_value *v)
{
    return v->kind == TP_EXPR_V_INTEGER || v->kind == TP_EXPR_V_NUMBER;
}

/* Equality of two non-null values; different runtime kinds are unequal, except numbers. */
static bool value_eq(const struct tp_expr_value *a, const struct tp_expr_value *b)
{
    if (a->kind == TP_EXPR_V_IP && b->kind == TP_EXPR_V_CIDRS)
        return ip_in_cidrs(a, b->u.internal);
    if (b->kind == TP_EXPR_V_IP && a->kind == TP_EXPR_V_CIDRS)
        return ip_in_cidrs(b, a->u.internal);
    if (is_numeric(a) && is_numeric(b))
        return tp_expr_num_cmp(a, b) == 0;
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case TP_EXPR_V_BOOL:
        return a->u.b == b->u.b;
    case TP_EXPR_V_STRING:
        return a->u.str.len == b->u.str.len &&
               (a->u.str.len == 0 || memcmp(a->u.str.ptr, b->u.str.ptr, a->u.str.len) == 0);
    case TP_EXPR_V_IP:
        return a->u.ip.family == b->u.ip.family &&
               memcmp(a->u.ip.addr, b->u.ip.addr, a->u.ip.family == AF_INET6 ? 16 : 4) == 0;
    default:
        return false;
    }
}

static bool value_in(const struct tp_expr_value *a, const struct tp_expr_value *b)
{
    struct tp_expr_value item;

    switch (b->kind) {
    case TP_EXPR_V_LIST: {
        const struct node *n = b->u.internal;
        for (size_t k = 0; k < n->u.list.n; k++)
            if (value_eq(a, &n->u.list.items[k].v))
                return true;
        return false;
    }
    case TP_EXPR_V_STRINGS:
        if (a->kind != TP_EXPR_V_STRING)
            return false;
        for (size_t k = 0; k < b->u.strs.n; k++) {
            const char *s = b->u.strs.items[k];
            if (s && strlen(s) == a->u.str.len && memcmp(s, a->u.str.ptr, a->u.str.len) == 0)
                return true;
        }
        return false;
    case TP_EXPR_V_JSON:
        if (!json_is_array(b->u.json))
            return false;
        for (size_t k = 0; k < json_array_size(b->u.json); k++) {
            json_to_value(json_array_get(b->u.json, k), &item);
            if (item.kind != TP_EXPR_V_NULL && value_eq(a, &item))
                return true;
        }
        return false;
    case TP_EXPR_V_CIDRS:
        return a->kind == TP_EXPR_V_IP && ip_in_cidrs(a, b->u.internal);
    default:
        return false;
    }
}

static bool string_test(enum op op, const struct tp_expr_value *s, const struct tp_expr_value *t)
{
    if (s->kind != TP_EXPR_V_STRING || t->kind != TP_EXPR_V_STRING)
        return false;
    struct tp_slice a = s->u.str, b = t->u.str;
    if (b.len > a.len)
        return false;
    if (b.len == 0)
        return true;
    switch (op) {
    case OP_STARTS_WITH:
        return memcmp(a.ptr, b.ptr, b.len) == 0;
    case OP_ENDS_WITH:
        return memcmp(a.ptr + a.len - b.len, b.ptr, b.len) == 0;
    default:
        return memmem(a.ptr, a.len, b.ptr, b.len) != NULL;
    }
}

static bool eval_binary(const struct eval_env *x, const struct node *n)
{
    struct tp_expr_value a = eval_value(x, n->a);

    if (n->op == OP_IS_NULL)
        return a.kind == TP_EXPR_V_NULL;
    if (n->op == OP_NOT_NULL)
        return a.kind != TP_EXPR_V_NULL;
    if (a.kind == TP_EXPR_V_NULL)
        return false;
    struct tp_expr_value b = eval_value(x, n->b);
    if (b.kind == TP_EXPR_V_NULL)
        return false;
    switch (n->op) {
    case OP_EQ:
        return value_eq(&a, &b);
    case OP_NE:
        return !value_eq(&a, &b);
    case OP_IN:
        return value_in(&a, &b);
    case OP_STARTS_WITH:
    case OP_ENDS_WITH:
    case OP_CONTAINS:
        return string_test((enum op)n->op, &a, &b);
    default:
        break;
    }
    int c = tp_expr_num_cmp(&a, &b);
    if (c == 2)
        return false; /* not two numbers */
    switch (n->op) {
    case OP_LT:
        return c < 0;
    case OP_LE:
        return c <= 0;
    case OP_GT:
        return c > 0;
    default:
        return c >= 0;
    }
}

static bool eval_cond(const struct eval_env *x, uint32_t i)
{
    const struct node *n = &x->e->nodes[i];
    struct tp_expr_value v;

    switch (n->op) {
    case OP_AND:
        for (uint32_t k = 0; k < n->n; k++)
            if (!eval_cond(x, x->e->args[n->first + k]))
                return false;
        return true;
    case OP_OR:
        for (uint32_t k = 0; k < n->n; k++)
            if (eval_cond(x, x->e->args[n->first + k]))
                return true;
        return false;
    case OP_NOT:
        return !eval_cond(x, n->a);
    case OP_CONST:
    case OP_ATTR:
        v = eval_value(x, i);
        return v.kind == TP_EXPR_V_BOOL && v.u.b;
    case OP_LIST:
    case OP_CIDRS:
        return false; /* rejected by the type checker */
    default:
        return eval_binary(x, n);
    }
}

bool tp_expr_eval(const struct tp_expr *e, tp_expr_lookup_fn lookup, void *env)
{
    struct eval_env x = {e, lookup, env};

    return e && eval_cond(&x, e->root);
}

/* ------------------------------------------------------------------------------------------ */
/* Positions inside YAML scalars                                                              */

/* A cursor over the config text that counts lines and columns as libyaml does: columns in
 * characters, CR LF as one line break. */
struct cursor {
    const char *t;
    size_t len, end; /* end: byte just past the scalar (bound of every walk) */
    size_t i;
    int line, col;
};

static size_t utf8_width(unsigned char c)
{
    return c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

static bool at_break(const struct cursor *c)
{
    return c->i < c->end && (c->t[c->i] == '\n' || c->t[c->i] == '\r');
}

static bool at_blank(const struct cursor *c)
{
    return c->i < c->end && (c->t[c->i] == ' ' || c->t[c->i] == '\t');
}

/* Move over one character (or one line break); returns its width in bytes. */
static size_t advance(struct cursor *c)
{
    size_t w;

    if (c->i >= c->end)
        return 0;
    if (c->t[c->i] == '\r' && c->i + 1 < c->end && c->t[c->i + 1] == '\n') {
        c->i += 2;
        c->line++;
        c->col = 1;
        return 2;
    }
    if (c->t[c->i] == '\n' || c->t[c->i] == '\r') {
        c->i++;
        c->line++;
        c->col = 1;
        return 1;
    }
    w = TP_MIN(utf8_width((unsigned char)c->t[c->i]), c->end - c->i);
    c->i += w;
    c->col++;
    return w;
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Bytes of the UTF-8 encoding of the code point written as `digits` hex digits at t. */
static size_t escaped_width(const struct cursor *c, size_t digits)
{
    unsigned long cp = 0;

    for (size_t k = 0; k < digits; k++) {
        size_t at = c->i + 2 + k;
        int h = at < c->end ? hex_value(c->t[at]) : -1;
        if (h < 0)
            return 1;
        cp = cp * 16 + (unsigned long)h;
    }
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

/* A double-quoted escape at the cursor: value bytes it produces; moves past it. */
static size_t skip_escape(struct cursor *c)
{
    char e = c->i + 1 < c->end ? c->t[c->i + 1] : '\0';
    size_t produced = 1, span = 2;

    if (e == '\n' || e == '\r') {
        /* an escaped line break: nothing, and the next line's indentation is dropped */
        advance(c);
        advance(c);
        while (at_blank(c))
            advance(c);
        return 0;
    }
    if (e == 'x' || e == 'u' || e == 'U') {
        span = e == 'x' ? 4 : e == 'u' ? 6 : 10;
        produced = escaped_width(c, span - 2);
    } else if (e == 'N' || e == '_') {
        produced = 2;
    } else if (e == 'L' || e == 'P') {
        produced = 3;
    }
    for (size_t k = 0; k < span && c->i < c->end; k++)
        advance(c);
    return produced;
}

/* Whitespace that ends a line inside a flow scalar folds: one break gives a space, n breaks
 * give n - 1 newlines; trailing and leading blanks vanish. Returns false when not at one. */
static bool fold_flow(struct cursor *c, size_t *produced)
{
    struct cursor probe = *c;
    size_t breaks = 0;

    while (at_blank(&probe))
        advance(&probe);
    if (!at_break(&probe))
        return false;
    while (at_break(&probe)) {
        advance(&probe);
        breaks++;
        while (at_blank(&probe))
            advance(&probe);
    }
    *c = probe;
    *produced = breaks == 1 ? 1 : breaks - 1;
    return true;
}

/* `target` at the very end of the value ("unexpected end of expression") is reported just
 * after its last character: the closing quote, or the end of a plain scalar. */
static bool walk_flow(struct cursor *c, yaml_scalar_style_t style, size_t target)
{
    size_t vi = 0;

    if (style != YAML_PLAIN_SCALAR_STYLE)
        advance(c); /* the opening quote */
    while (c->i < c->end) {
        struct cursor here = *c;
        size_t produced;
        char ch = c->t[c->i];
        if (fold_flow(c, &produced)) {
            /* the folded space is never where a token starts; report its start anyway */
        } else if (style == YAML_SINGLE_QUOTED_SCALAR_STYLE && ch == '\'') {
            if (c->i + 1 >= c->end || c->t[c->i + 1] != '\'')
                return target == vi;
            advance(c);
            advance(c);
            produced = 1;
        } else if (style == YAML_DOUBLE_QUOTED_SCALAR_STYLE && ch == '"') {
            return target == vi;
        } else if (style == YAML_DOUBLE_QUOTED_SCALAR_STYLE && ch == '\\') {
            produced = skip_escape(c);
        } else {
            produced = advance(c);
        }
        if (produced > 0 && target < vi + produced) {
            *c = here;
            return true;
        }
        vi += produced;
    }
    return style == YAML_PLAIN_SCALAR_STYLE && target == vi;
}

/* Indentation (in spaces) for an explicit indicator: that of the key owning the scalar. */
static size_t owner_indent(const struct cursor *c, size_t header)
{
    size_t line_start = header, k;

    while (line_start > 0 && c->t[line_start - 1] != '\n' && c->t[line_start - 1] != '\r')
        line_start--;
    k = line_start;
    while (k < header && c->t[k] == ' ')
        k++;
    while (k + 1 < header && c->t[k] == '-' && c->t[k + 1] == ' ') {
        k += 2;
        while (k < header && c->t[k] == ' ')
            k++;
    }
    return k - line_start;
}

/* Spaces at the start of the line at the cursor (not moving it). */
static size_t line_spaces(const struct cursor *c)
{
    size_t k = c->i;

    while (k < c->end && c->t[k] == ' ')
        k++;
    return k - c->i;
}

/* Skip the header (`|`, `>-`, `|2` ... and a comment) and its line break; returns the
 * content indentation. */
static size_t block_header(struct cursor *c)
{
    size_t header = c->i, explicit = 0;

    advance(c); /* | or > */
    while (c->i < c->end && !at_break(c)) {
        char ch = c->t[c->i];
        if (ch >= '1' && ch <= '9' && explicit == 0)
            explicit = (size_t)(ch - '0');
        if (ch == '#')
            break;
        advance(c);
    }
    while (c->i < c->end && !at_break(c))
        advance(c);
    advance(c);
    if (explicit)
        return owner_indent(c, header) + explicit;
    /* auto-detected: the indentation of the first non-empty line */
    struct cursor probe = *c;
    while (probe.i < probe.end) {
        size_t sp = line_spaces(&probe);
        probe.i += sp;
        if (!at_break(&probe))
            return sp ? sp : 1;
        advance(&probe);
    }
    return 1;
}

/*
 * Follow libyaml's block scalar scan: each content line is copied after `indent` spaces;
 * lines are joined by their break (|) or folded (>): a single break between two lines that do
 * not start with a blank becomes a space, and empty lines become newlines.
 */
static bool walk_block(struct cursor *c, bool literal, size_t target)
{
    size_t indent = block_header(c), vi = 0, trailing_breaks = 0;
    bool first = true, leading_blank = false;
    struct cursor last = *c; /* just after the last content character */

    while (c->i < c->end) {
        size_t sp = TP_MIN(line_spaces(c), indent);
        for (size_t k = 0; k < sp; k++)
            advance(c);
        if (c->i >= c->end || at_break(c)) {
            trailing_breaks++;
            advance(c);
            continue;
        }
        if (sp < indent)
            break; /* less indented: the scalar has ended */
        bool trailing_blank = at_blank(c);
        if (first)
            vi += trailing_breaks;
        else if (!literal && !leading_blank && !trailing_blank)
            vi += trailing_breaks ? trailing_breaks : 1;
        else
            vi += 1 + trailing_breaks;
        trailing_breaks = 0;
        leading_blank = trailing_blank;
        first = false;
        while (c->i < c->end && !at_break(c)) {
            struct cursor here = *c;
            size_t w = advance(c);
            if (target < vi + w) {
                *c = here;
                return true;
            }
            vi += w;
            last = *c;
        }
        advance(c);
    }
    /* the end of the value: line breaks kept by chomping are never a token */
    *c = last;
    return target >= vi;
}

/* Byte offset of libyaml's character index (a BOM is not counted by libyaml). */
static size_t char_to_byte(const char *t, size_t len, size_t index)
{
    size_t i = len >= 3 && memcmp(t, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;

    for (size_t n = 0; n < index && i < len; n++)
        i += TP_MIN(utf8_width((unsigned char)t[i]), len - i);
    return i;
}

void tp_expr_yaml_position(const char *text, size_t len, const yaml_node_t *node, size_t offset,
                           int *line, int *column)
{
    *line = (int)TP_MIN(node->start_mark.line + 1, (size_t)INT32_MAX);
    *column = (int)TP_MIN(node->start_mark.column + 1, (size_t)INT32_MAX);
    if (!text || node->type != YAML_SCALAR_NODE)
        return;
    /* UTF-16 input (libyaml decodes it after a BOM): character indexes are not UTF-8 ones */
    if (len >= 2 && ((unsigned char)text[0] == 0xfe || (unsigned char)text[0] == 0xff) &&
        ((unsigned char)text[1] == 0xfe || (unsigned char)text[1] == 0xff))
        return;
    struct cursor c = {.t = text, .len = len, .line = *line, .col = *column};
    c.i = char_to_byte(text, len, node->start_mark.index);
    c.end = char_to_byte(text, len, node->end_mark.index);
    if (c.i >= c.end || c.end > len)
        return;
    yaml_scalar_style_t style = node->data.scalar.style;
    char first = text[c.i];
    bool ok;
    /* Check the cursor sits where the node says before trusting the walk. */
    if (style == YAML_LITERAL_SCALAR_STYLE || style == YAML_FOLDED_SCALAR_STYLE)
        ok = (first == '|' || first == '>') &&
             walk_block(&c, style == YAML_LITERAL_SCALAR_STYLE, offset);
    else if (style == YAML_SINGLE_QUOTED_SCALAR_STYLE)
        ok = first == '\'' && walk_flow(&c, style, offset);
    else if (style == YAML_DOUBLE_QUOTED_SCALAR_STYLE)
        ok = first == '"' && walk_flow(&c, style, offset);
    else /* a tag or an anchor before the value: keep the node's start */
        ok = first != '!' && first != '&' && walk_flow(&c, YAML_PLAIN_SCALAR_STYLE, offset);
    if (ok) {
        *line = c.line;
        *column = c.col;
    }
}

/*
 * Unit tests for the ABAC expression language (src/plugins/expr.c): lexing and parse errors
 * with offsets, type errors, evaluation against a fake attribute provider (null semantics,
 * JWT claims, CIDR membership, short-circuit), CIDR parsing, and the mapping of offsets to
 * line:column inside YAML scalars of every style.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "plugins/expr.h"

/* ------------------------------------------------------------------------------------------ */
/* A fake request                                                                             */

struct kv {
    const char *name, *value;
};

struct fake {
    bool has_consumer;
    const char *id, *username, *custom_id;
    const char *const *groups;
    size_t num_groups;
    bool anonymous;
    json_t *claims;
    const char *method, *path, *route, *service;
    struct kv headers[4], query[4], params[4];
    int family;
    uint8_t addr[16];
    int hour, minute, weekday;
    int lookups; /* calls to the provider */
};

static void put_str(struct tp_expr_value *out, const char *s)
{
    if (!s)
        return;
    out->kind = TP_EXPR_V_STRING;
    out->u.str = (struct tp_slice){s, strlen(s)};
}

static const char *find_kv(const struct kv *kv, const char *name)
{
    for (size_t i = 0; i < 4 && kv[i].name; i++)
        if (strcasecmp(kv[i].name, name) == 0)
            return kv[i].value;
    return NULL;
}

static void put_num(struct tp_expr_value *out, int v)
{
    out->kind = TP_EXPR_V_NUMBER;
    out->u.num = v;
}

static void fake_lookup(void *env, const struct tp_expr_attr_ref *ref, struct tp_expr_value *out)
{
    struct fake *f = env;

    f->lookups++;
    switch (ref->attr) {
    case TP_EXPR_CONSUMER_ID:
        put_str(out, f->has_consumer ? f->id : NULL);
        break;
    case TP_EXPR_CONSUMER_USERNAME:
        put_str(out, f->has_consumer ? f->username : NULL);
        break;
    case TP_EXPR_CONSUMER_CUSTOM_ID:
        put_str(out, f->has_consumer ? f->custom_id : NULL);
        break;
    case TP_EXPR_CONSUMER_GROUPS:
        if (f->has_consumer) {
            out->kind = TP_EXPR_V_STRINGS;
            out->u.strs.items = f->groups;
            out->u.strs.n = f->num_groups;
        }
        break;
    case TP_EXPR_CONSUMER_ANONYMOUS:
        out->kind = TP_EXPR_V_BOOL;
        out->u.b = f->anonymous;
        break;
    case TP_EXPR_JWT_CLAIMS:
        if (f->claims) {
            out->kind = TP_EXPR_V_JSON;
            out->u.json = f->claims;
        }
        break;
    case TP_EXPR_REQUEST_METHOD:
        put_str(out, f->method);
        break;
    case TP_EXPR_REQUEST_PATH:
        put_str(out, f->path);
        break;
    case TP_EXPR_REQUEST_HEADER:
        put_str(out, find_kv(f->headers, ref->name));
        break;
    case TP_EXPR_REQUEST_QUERY:
        put_str(out, find_kv(f->query, ref->name));
        break;
    case TP_EXPR_ROUTE_NAME:
        put_str(out, f->route);
        break;
    case TP_EXPR_ROUTE_PARAM:
        put_str(out, find_kv(f->params, ref->name));
        break;
    case TP_EXPR_SERVICE_NAME:
        put_str(out, f->service);
        break;
    case TP_EXPR_CLIENT_IP:
        out->kind = TP_EXPR_V_IP;
        out->u.ip.family = f->family;
        memcpy(out->u.ip.addr, f->addr, 16);
        break;
    case TP_EXPR_TIME_HOUR:
        put_num(out, f->hour);
        break;
    case TP_EXPR_TIME_MINUTE:
        put_num(out, f->minute);
        break;
    case TP_EXPR_TIME_WEEKDAY:
        put_num(out, f->weekday);
        break;
    }
}

static const char *const alice_groups[] = {"users", "admin"};

/* alice, an admin, GET /users/alice from 10.1.2.3 on Monday 09:30 UTC */
static struct fake alice(void)
{
    struct fake f = {
        .has_consumer = true,
        .id = "c-1",
        .username = "alice",
        .custom_id = "A1",
        .groups = alice_groups,
        .num_groups = 2,
        .method = "GET",
        .path = "/users/alice",
        .route = "users",
        .service = "api",
        .headers = {{"x-tenant", "acme"}, {"x-level", "5"}},
        .query = {{"view", "full"}},
        .params = {{"user_id", "alice"}},
        .family = AF_INET,
        .hour = 9,
        .minute = 30,
        .weekday = 1,
    };
    inet_pton(AF_INET, "10.1.2.3", f.addr);
    f.claims = json_pack("{s:s, s:[s,s], s:{s:{s:[s]}}, s:i, s:b, s:n, s:s, s:b}", "sub", "alice",
                         "roles", "editor", "viewer", "realm", "access", "roles", "ops", "level", 7,
                         "verified", 1, "nothing", "https://x/tenant", "acme", "disabled", 0);
    assert_non_null(f.claims);
    return f;
}

static bool eval_with(const char *src, struct fake *f)
{
    struct tp_expr *e = NULL;
    struct tp_expr_error err;

    int rc = tp_expr_compile(src, strlen(src), &e, &err);
    if (rc != 0)
        fail_msg("'%s' did not compile: %zu: %s", src, err.offset, err.message);
    bool r = tp_expr_eval(e, fake_lookup, f);
    tp_expr_free(e);
    return r;
}

/* Every expression of `cases` must evaluate to `expect` for alice's request. */
static void expect_all(const char *const *cases, size_t n, bool expect)
{
    struct fake f = alice();

    for (size_t i = 0; i < n; i++)
        if (eval_with(cases[i], &f) != expect)
            fail_msg("'%s' should be %s", cases[i], expect ? "true" : "false");
    json_decref(f.claims);
}

/* ------------------------------------------------------------------------------------------ */
/* Evaluation                                                                                 */

static void test_the_example(void **state)
{
    (void)state;
    const char *ex = "\"admin\" in consumer.groups || jwt.claims.sub == route.params.user_id";
    struct fake f = alice();

    assert_true(eval_with(ex, &f));
    f.groups = alice_groups; /* users only: the owner branch decides */
    f.num_groups = 1;
    assert_true(eval_with(ex, &f));
    f.params[0].value = "bob";
    assert_false(eval_with(ex, &f));
    f.num_groups = 2;
    assert_true(eval_with(ex, &f));
    json_decref(f.claims);
}

static void test_operators_true(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "consumer.username == \"alice\"",
        "consumer.username != 'bob'",
        "consumer.id == \"c-1\" && consumer.custom_id == \"A1\"",
        "request.method == \"GET\"",
        "request.path == \"/users/alice\"",
        "request.headers.x-tenant == \"acme\"",
        "request.headers.X-Tenant == \"acme\"",
        "request.headers[\"x-tenant\"] == \"acme\"",
        "request.query.view == \"full\"",
        "route.name == \"users\" && service.name == \"api\"",
        "time.hour >= 9 && time.hour < 17",
        "time.minute > 29 && time.minute <= 30",
        "time.weekday != 0 && time.weekday != 6",
        "time.weekday in [1, 2, 3, 4, 5]",
        "jwt.claims.level > 5",
        "jwt.claims.level == 7",
        "jwt.claims.level >= 7.0",
        "jwt.claims.verified",
        "jwt.claims.verified == true",
        "!jwt.claims.disabled",
        "\"editor\" in jwt.claims.roles",
        "\"ops\" in jwt.claims.realm.access.roles",
        "jwt.claims[\"https://x/tenant\"] == request.headers.x-tenant",
        "jwt.claims.sub in [\"alice\", \"bob\"]",
        "request.method in [\"GET\", \"HEAD\"]",
        "client.ip in \"10.0.0.0/8\"",
        "client.ip in cidr(\"10.1.0.0/16\")",
        "client.ip in [\"192.168.0.0/16\", \"10.1.2.0/24\"]",
        "client.ip == \"10.1.2.3\"",
        "client.ip != \"10.1.2.4\"",
        "client.ip in \"::ffff:10.0.0.0/104\"",
        "starts_with(request.path, \"/users/\")",
        "ends_with(request.path, \"/alice\")",
        "contains(request.path, \"ers/al\")",
        "starts_with(jwt.claims.sub, \"al\")",
        "starts_with(request.path, \"\")",
        "!(consumer.username == \"bob\")",
        "!\"root\" in consumer.groups",
        "! ! true",
        "true || false && false",
        "(true || false) && true",
        "consumer.anonymous == false",
        "consumer.groups != null && jwt.claims.missing == null",
        "jwt.claims.nothing == null",
        "null == null",
        "\"x\" in [] || true",
        "\"a\" == \"a\"",
        "1 < 2 && -1 < 0 && 0.5 > 0.25",
        "'it\\'s' == \"it's\"",
        "\"\\\\\" != \"\\n\"",
        "consumer.username==\"alice\"&&time.hour==9",
        "\n  consumer.username == \"alice\"\n",
    };
    expect_all(cases, TP_ARRAY_LEN(cases), true);
}

static void test_operators_false(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "consumer.username == \"Alice\"",
        "consumer.username != \"alice\"",
        "request.method == \"get\"",
        "\"root\" in consumer.groups",
        "\"adm\" in consumer.groups",
        "time.hour < 9",
        "time.hour > 9",
        "jwt.claims.level < 7",
        "jwt.claims.sub > 1",  /* a string is not ordered: false, not an error */
        "jwt.claims.sub == 5", /* different JSON kind */
        "jwt.claims.roles == \"editor\"",
        "\"editor\" in jwt.claims.sub", /* not an array */
        "\"x\" in jwt.claims.roles",
        "jwt.claims.disabled",
        "jwt.claims.sub", /* a claim as a condition: only JSON true is true */
        "client.ip in \"192.168.0.0/16\"",
        "client.ip in \"10.1.2.3/32\" && client.ip in \"::/0\"",
        "client.ip == \"10.1.2.4\"",
        "client.ip in []",
        "starts_with(request.path, \"/admin\")",
        "ends_with(request.path, \"/users/alice/x\")",
        "contains(request.path, \"bob\")",
        "false && true",
        "!true",
        "1 > 2",
        "\"a\" != \"a\"",
    };
    expect_all(cases, TP_ARRAY_LEN(cases), false);
}

/* Absent attributes are null; every comparison with null is false, != included. */
static void test_null_semantics(void **state)
{
    (void)state;
    struct fake f = alice();
    static const char *const all_false[] = {
        "consumer.username == \"alice\"",
        "consumer.username != \"alice\"",
        "consumer.username != \"bob\"",
        "\"admin\" in consumer.groups",
        "jwt.claims.sub == route.params.user_id",
        "jwt.claims.sub != route.params.user_id",
        "jwt.claims.level > 0",
        "jwt.claims.level <= 0",
        "starts_with(consumer.username, \"\")",
        "request.headers.x-missing == request.headers.x-other",
        "consumer.id != null",
        "jwt.claims.sub != null",
        "jwt.claims.verified",
        "\"x\" in jwt.claims.roles",
    };
    static const char *const all_true[] = {
        "consumer.username == null",
        "null == consumer.id",
        "consumer.groups == null",
        "jwt.claims.sub == null",
        "!jwt.claims.verified",
        "!(consumer.username == \"alice\")",
        "!(consumer.username != \"alice\")",
        "consumer.anonymous == false",
    };
    f.has_consumer = false;
    json_decref(f.claims);
    f.claims = NULL;
    for (size_t i = 0; i < TP_ARRAY_LEN(all_false); i++)
        if (eval_with(all_false[i], &f))
            fail_msg("'%s' should be false without consumer and claims", all_false[i]);
    for (size_t i = 0; i < TP_ARRAY_LEN(all_true); i++)
        if (!eval_with(all_true[i], &f))
            fail_msg("'%s' should be true without consumer and claims", all_true[i]);
    /* a consumer without groups has an empty list, not null */
    f.has_consumer = true;
    f.num_groups = 0;
    assert_false(eval_with("\"admin\" in consumer.groups", &f));
    assert_true(eval_with("consumer.groups != null", &f));
}

static void test_ipv6_client(void **state)
{
    (void)state;
    struct fake f = alice();

    f.family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::7", f.addr);
    assert_true(eval_with("client.ip in \"2001:db8::/32\"", &f));
    assert_true(eval_with("client.ip == \"2001:db8::7\"", &f));
    assert_false(eval_with("client.ip in \"10.0.0.0/8\"", &f));
    assert_false(eval_with("client.ip in \"2001:db9::/32\"", &f));
    /* an IPv4-mapped peer matches IPv4 networks */
    inet_pton(AF_INET6, "::ffff:10.9.8.7", f.addr);
    assert_true(eval_with("client.ip in \"10.0.0.0/8\"", &f));
    assert_true(eval_with("client.ip == \"10.9.8.7\"", &f));
    json_decref(f.claims);
}

/* && and || stop at the first deciding operand: later attributes are not even looked up. */
static void test_short_circuit(void **state)
{
    (void)state;
    struct fake f = alice();

    f.lookups = 0;
    assert_true(eval_with("consumer.username == \"alice\" || request.method == \"X\"", &f));
    assert_int_equal(f.lookups, 1);
    f.lookups = 0;
    assert_false(eval_with("consumer.username == \"bob\" && request.method == \"GET\"", &f));
    assert_int_equal(f.lookups, 1);
    /* a long chain stays flat: no recursion per operand */
    char big[6000];
    size_t n = 0;
    for (int i = 0; i < 500; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%sfalse", i ? "||" : "");
    snprintf(big + n, sizeof(big) - n, "||true");
    assert_true(eval_with(big, &f));
    json_decref(f.claims);
}

/* ------------------------------------------------------------------------------------------ */
/* Compile errors                                                                             */

struct bad {
    const char *src;
    size_t offset;
    const char *message; /* a substring of the message */
};

static void expect_errors(const struct bad *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct tp_expr *e = (struct tp_expr *)1;
        struct tp_expr_error err;
        int rc = tp_expr_compile(cases[i].src, strlen(cases[i].src), &e, &err);
        if (rc != TP_EINVAL)
            fail_msg("'%s' should not compile (rc %d)", cases[i].src, rc);
        assert_null(e);
        if (err.offset != cases[i].offset || !strstr(err.message, cases[i].message))
            fail_msg("'%s': expected '%s' at %zu, got '%s' at %zu", cases[i].src, cases[i].message,
                     cases[i].offset, err.message, err.offset);
    }
}

static void test_syntax_errors(void **state)
{
    (void)state;
    static const struct bad cases[] = {
        {"", 0, "empty expression"},
        {"   ", 0, "empty expression"},
        {"consumer.username == ", 21, "unexpected end"},
        {"consumer.username = \"a\"", 18, "use '=='"},
        {"true & false", 5, "use '&&'"},
        {"true | false", 5, "use '||'"},
        {"true and false", 5, "use '&&'"},
        {"not true", 0, "use '!'"},
        {"(true", 5, "expected ')'"},
        {"true)", 4, "unexpected ')'"},
        {"true true", 5, "missing && or ||"},
        {"\"abc", 0, "unterminated string"},
        {"\"a\" == 'b", 7, "unterminated string"},
        {"\"a\\qb\" == \"x\"", 2, "unknown escape"},
        {"\"a\tb\" == \"x\"", 2, "control character"},
        {"1. == 1", 1, "expected a digit"},
        {"consumer. == 1", 9, "expected a name after '.'"},
        {"consumer.username == $x", 21, "unexpected character '$'"},
        {"[\"a\", 1] == null", 6, "only strings or only numbers"},
        {"\"a\" in [\"a\" \"b\"]", 12, "expected ',' or ']'"},
        {"\"a\" in [consumer.id]", 8, "only string or number literals"},
        {"1 == 1 == 1", 7, "cannot be chained"},
        {"request.headers[1] == \"x\"", 16, "quoted name"},
        {"frobnicate(request.path)", 0, "unknown function"},
        {"starts_with(request.path)", 0, "takes two arguments"},
        {"cidr(\"10.0.0.0/8\", \"x\")", 0, "takes one argument"},
        {"true ||", 7, "unexpected end"},
        {"((((((((((((((((((((((((((((((((((true))))))))))))))))))))))))))))))))))", 32,
         "nested more than"},
    };
    expect_errors(cases, TP_ARRAY_LEN(cases));
}

static void test_unknown_attributes(void **state)
{
    (void)state;
    static const struct bad cases[] = {
        {"consumer.name == \"a\"", 0, "unknown attribute \"consumer.name\""},
        {"true && request.verb == \"GET\"", 8, "unknown attribute \"request.verb\""},
        {"jwt.sub == \"a\"", 0, "unknown attribute"},
        {"jwt.claims == \"a\"", 0, "needs a claim name"},
        {"request.headers == \"a\"", 0, "needs exactly one name"},
        {"request.headers.a.b == \"a\"", 0, "needs exactly one name"},
        {"route.params == \"a\"", 0, "needs exactly one name"},
        {"request.headers[\"a b\"] == \"a\"", 0, "invalid header name"},
        {"admin in consumer.groups", 0, "unknown attribute \"admin\""},
        {"client.address in \"10.0.0.0/8\"", 0, "unknown attribute"},
    };
    expect_errors(cases, TP_ARRAY_LEN(cases));
}

static void test_type_errors(void **state)
{
    (void)state;
    static const struct bad cases[] = {
        {"consumer.groups == 5", 16, "cannot compare a list of strings with a number"},
        {"consumer.groups == \"admin\"", 16, "use 'in'"},
        {"request.method == 1", 15, "cannot compare a string with a number"},
        {"time.hour == \"9\"", 10, "cannot compare a number with a string"},
        {"request.path < \"/b\"", 13, "'<' compares numbers, not a string"},
        {"time.hour >= \"9\"", 10, "'>=' compares numbers"},
        {"\"a\" in \"abc\"", 7, "'in' needs a list"},
        {"1 in [\"a\"]", 2, "cannot look for a number in a list of strings"},
        {"consumer.groups in [\"a\"]", 0, "cannot look for a list of strings"},
        {"client.ip in \"10.0.0.0/33\"", 13, "prefix length"},
        {"client.ip in \"10.0.0.1/8\"", 13, "host bits"},
        {"client.ip in \"banana\"", 13, "invalid network"},
        {"client.ip in [\"10.0.0.0/8\", \"x\"]", 28, "invalid network \"x\""},
        {"client.ip in consumer.groups", 13, "looked up in a network"},
        {"client.ip == \"10.0.0.0/8\"", 13, "use 'in'"},
        {"client.ip == 5", 10, "cannot compare an IP address with a number"},
        {"client.ip in cidr(\"nope\")", 18, "invalid network"},
        {"client.ip in cidr(request.path)", 18, "string literal"},
        {"\"x\" in cidr(\"10.0.0.0/8\")", 7, "'in' needs a list"},
        {"request.method", 0, "expected a condition (a boolean), found a string"},
        {"time.hour && true", 0, "found a number"},
        {"true || consumer.groups", 8, "found a list of strings"},
        {"!request.path", 1, "found a string"},
        {"starts_with(time.hour, \"1\")", 12, "works on strings, not a number"},
        {"contains(request.path, consumer.groups)", 23, "not a list of strings"},
        {"(consumer.username)", 1, "found a string"},
        {"null", 0, "found null"},
    };
    expect_errors(cases, TP_ARRAY_LEN(cases));
}

static void test_limits(void **state)
{
    (void)state;
    struct tp_expr *e;
    struct tp_expr_error err;
    size_t len = TP_EXPR_MAX_LEN + 1;
    char *big = malloc(len);

    assert_non_null(big);
    memset(big, ' ', len);
    assert_int_equal(tp_expr_compile(big, len, &e, &err), TP_EINVAL);
    assert_non_null(strstr(err.message, "longer than"));
    free(big);
    assert_int_equal(tp_expr_compile("true\0x", 6, &e, &err), TP_EINVAL);
    assert_int_equal(err.offset, 4);
    /* too many parts */
    char many[TP_EXPR_MAX_LEN];
    size_t n = 0;
    n += (size_t)snprintf(many, sizeof(many), "1 in [");
    for (int i = 0; i < 2100 && n + 4 < sizeof(many); i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "%s1", i ? "," : "");
    snprintf(many + n, sizeof(many) - n, "]");
    assert_int_equal(tp_expr_compile(many, strlen(many), &e, &err), 0); /* a list is one part */
    tp_expr_free(e);
    n = 0;
    for (int i = 0; i < 2100 && n + 8 < sizeof(many); i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "%s1==1", i ? "||" : "");
    assert_int_equal(tp_expr_compile(many, strlen(many), &e, &err), TP_EINVAL);
    assert_non_null(strstr(err.message, "more than"));
}

static void test_attr_parse(void **state)
{
    (void)state;
    struct tp_expr_attr_ref ref;
    struct tp_expr_error err;
    struct fake f = alice();
    struct tp_expr_value v;

    assert_int_equal(tp_expr_attr_parse("consumer.username", 17, &ref, &err), 0);
    assert_int_equal(ref.attr, TP_EXPR_CONSUMER_USERNAME);
    tp_expr_attr_fetch(&ref, fake_lookup, &f, &v);
    assert_int_equal(v.kind, TP_EXPR_V_STRING);
    assert_memory_equal(v.u.str.ptr, "alice", 5);
    tp_expr_attr_free(&ref);

    assert_int_equal(tp_expr_attr_parse("jwt.claims.realm.access", 23, &ref, &err), 0);
    assert_int_equal(ref.attr, TP_EXPR_JWT_CLAIMS);
    assert_int_equal(ref.path_len, 2);
    assert_string_equal(ref.path[1], "access");
    tp_expr_attr_fetch(&ref, fake_lookup, &f, &v);
    assert_int_equal(v.kind, TP_EXPR_V_JSON);
    tp_expr_attr_free(&ref);

    assert_int_equal(tp_expr_attr_parse("jwt.claims.level", 16, &ref, &err), 0);
    tp_expr_attr_fetch(&ref, fake_lookup, &f, &v);
    assert_int_equal(v.kind, TP_EXPR_V_INTEGER);
    assert_true(v.u.i == 7);
    tp_expr_attr_free(&ref);

    assert_int_equal(tp_expr_attr_parse("request.headers.X-A", 19, &ref, &err), 0);
    assert_string_equal(ref.name, "x-a");
    tp_expr_attr_free(&ref);

    assert_int_equal(tp_expr_attr_parse("consumer..id", 12, &ref, &err), TP_EINVAL);
    assert_int_equal(err.offset, 9);
    assert_int_equal(tp_expr_attr_parse("consumer.nope", 13, &ref, &err), TP_EINVAL);
    assert_int_equal(tp_expr_attr_parse("", 0, &ref, &err), TP_EINVAL);
    json_decref(f.claims);
}

/* Integers above 2^53 (user ids, snowflakes) compare exactly, as int64, never as doubles. */
static void test_big_integers(void **state)
{
    (void)state;
    struct fake f = alice();
    static const char *const yes[] = {
        "jwt.claims.uid == 9007199254740993",
        "jwt.claims.uid != 9007199254740992",
        "jwt.claims.uid > 9007199254740992",
        "jwt.claims.uid in [1, 9007199254740993]",
        "jwt.claims.max == 9223372036854775807",
        "jwt.claims.max > 9223372036854775806",
        "jwt.claims.min == -9223372036854775808",
        "jwt.claims.min < -9223372036854775807",
        "jwt.claims.uid < 9007199254740993.5",
        "jwt.claims.uid > 9007199254740992.5",
        "jwt.claims.half > 2 && jwt.claims.half < 3",
        "jwt.claims.two == 2.0 && jwt.claims.two == 2",
        "2 in jwt.claims.list",
        "jwt.claims.level == 7.0",
    };
    static const char *const no[] = {
        "jwt.claims.uid == 9007199254740992",
        "jwt.claims.uid in [9007199254740992, 9007199254740994]",
        "jwt.claims.uid <= 9007199254740992",
        "jwt.claims.max == 9223372036854775806",
        "jwt.claims.half == 2",
        "jwt.claims.uid == 9007199254740993.5",
        "3 in jwt.claims.list",
    };

    json_object_set_new(f.claims, "uid", json_integer(9007199254740993LL));
    json_object_set_new(f.claims, "max", json_integer(INT64_MAX));
    json_object_set_new(f.claims, "min", json_integer(INT64_MIN));
    json_object_set_new(f.claims, "half", json_real(2.5));
    json_object_set_new(f.claims, "two", json_real(2.0));
    json_object_set_new(f.claims, "list", json_pack("[i,f]", 1, 2.0));
    for (size_t i = 0; i < TP_ARRAY_LEN(yes); i++)
        if (!eval_with(yes[i], &f))
            fail_msg("'%s' should be true", yes[i]);
    for (size_t i = 0; i < TP_ARRAY_LEN(no); i++)
        if (eval_with(no[i], &f))
            fail_msg("'%s' should be false", no[i]);
    json_decref(f.claims);

    /* an integer literal beyond int64 is refused, not rounded */
    struct tp_expr *e = NULL;
    struct tp_expr_error err;
    const char *big = "jwt.claims.uid == 9223372036854775808";
    assert_int_equal(tp_expr_compile(big, strlen(big), &e, &err), TP_EINVAL);
    assert_int_equal(err.offset, 18);
    big = "jwt.claims.uid in [1, -9223372036854775809]";
    assert_int_equal(tp_expr_compile(big, strlen(big), &e, &err), TP_EINVAL);
    assert_int_equal(err.offset, 22);
}

/* ------------------------------------------------------------------------------------------ */
/* CIDR                                                                                       */

static bool matches(const char *cidr, const char *ip)
{
    struct tp_cidr c;
    uint8_t addr[16] = {0};
    int family = strchr(ip, ':') ? AF_INET6 : AF_INET;

    assert_null(tp_cidr_parse(cidr, strlen(cidr), false, &c));
    assert_int_equal(inet_pton(family, ip, addr), 1);
    return tp_cidr_match(&c, family, addr);
}

static void test_cidr(void **state)
{
    (void)state;
    struct tp_cidr c;

    assert_true(matches("10.0.0.0/8", "10.255.0.1"));
    assert_false(matches("10.0.0.0/8", "11.0.0.1"));
    assert_true(matches("192.0.2.7", "192.0.2.7"));
    assert_false(matches("192.0.2.7", "192.0.2.8"));
    assert_true(matches("0.0.0.0/0", "203.0.113.9"));
    assert_false(matches("0.0.0.0/0", "::1"));
    assert_true(matches("172.16.0.0/12", "172.31.255.255"));
    assert_false(matches("172.16.0.0/12", "172.32.0.0"));
    assert_true(matches("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(matches("2001:db8::/32", "2001:db9::1"));
    assert_true(matches("::1", "::1"));
    assert_true(matches("::/0", "2001:db8::1"));
    assert_true(matches("10.0.0.0/8", "::ffff:10.1.1.1"));   /* mapped peer */
    assert_true(matches("::ffff:10.0.0.0/104", "10.1.1.1")); /* mapped rule */
    assert_false(matches("::ffff:10.0.0.0/104", "11.1.1.1"));
    assert_true(matches("2001:db8::/127", "2001:db8::1"));
    assert_false(matches("2001:db8::/127", "2001:db8::2"));

    assert_null(tp_cidr_parse("10.1.2.3/8", 10, true, &c)); /* Kong accepts host bits */
    assert_int_equal(c.addr[1], 0);
    assert_int_equal(c.prefix, 8);
    static const char *const bad[] = {
        "",       "/8",           "10.0.0.0/",     "10.0.0.0/33", "10.0.0.0/08",  "10.0.0.0/-1",
        "10.0.0", "10.0.0.256",   "010.0.0.1",     "::1/129",     "fe80::1%eth0", "1.2.3.4/8",
        "x",      "10.0.0.0/8/8", "2001:db8::1/32"};
    for (size_t i = 0; i < TP_ARRAY_LEN(bad); i++)
        if (!tp_cidr_parse(bad[i], strlen(bad[i]), false, &c))
            fail_msg("'%s' should be refused", bad[i]);
    assert_non_null(tp_cidr_parse("1.2.3.4\0", 8, true, &c));
}

/* ------------------------------------------------------------------------------------------ */
/* Positions inside YAML scalars                                                              */

/* Parse doc, find the scalar value of `key` in the root mapping, and map offset. */
static void yaml_pos(const char *doc, const char *key, size_t offset, int line, int column)
{
    yaml_parser_t parser;
    yaml_document_t d;

    assert_true(yaml_parser_initialize(&parser));
    yaml_parser_set_input_string(&parser, (const unsigned char *)doc, strlen(doc));
    assert_true(yaml_parser_load(&parser, &d));
    yaml_node_t *root = yaml_document_get_root_node(&d);
    yaml_node_t *value = NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(&d, p->key);
        if (strcmp((const char *)k->data.scalar.value, key) == 0)
            value = yaml_document_get_node(&d, p->value);
    }
    assert_non_null(value);
    int l = 0, c = 0;
    tp_expr_yaml_position(doc, strlen(doc), value, offset, &l, &c);
    if (l != line || c != column)
        fail_msg("%s: offset %zu: expected %d:%d, got %d:%d (value '%s')", key, offset, line,
                 column, l, c, (const char *)value->data.scalar.value);
    yaml_document_delete(&d);
    yaml_parser_delete(&parser);
}

static void test_yaml_positions(void **state)
{
    (void)state;
    const char *doc = "first: 1\n"
                      "plain: consumer.nope == 1\n"              /* line 2 */
                      "single: 'it''s consumer.nope'\n"          /* line 3 */
                      "double: \"\\\"a\\\" in consumer.nope\"\n" /* line 4 */
                      "folded_plain: true &&\n"                  /* line 5 */
                      "   consumer.nope\n"                       /* line 6 */
                      "literal: |\n"                             /* line 7 */
                      "  true &&\n"                              /* line 8 */
                      "    consumer.nope\n"                      /* line 9 */
                      "folded: >-\n"                             /* line 10 */
                      "  true\n"                                 /* line 11 */
                      "  &&\n"                                   /* line 12 */
                      "\n"                                       /* line 13 */
                      "  consumer.nope\n"                        /* line 14 */
                      "utf8: \"é == x\"\n"                       /* line 15 */
                      "escaped: \"\\u00e9\\x41 \\\n"             /* line 16 */
                      "    consumer.nope\"\n"                    /* line 17 */
                      "explicit: |2\n"                           /* line 18 */
                      "    true\n"                               /* line 19 */
                      "  && x\n";                                /* line 20 */
    yaml_pos(doc, "plain", 0, 2, 8);
    yaml_pos(doc, "plain", 9, 2, 17);
    yaml_pos(doc, "single", 5, 3, 16); /* '' counts one byte of the value */
    yaml_pos(doc, "double", 0, 4, 10); /* \" is one byte */
    yaml_pos(doc, "double", 4, 4, 16);
    yaml_pos(doc, "double", 7, 4, 19);
    yaml_pos(doc, "folded_plain", 8, 6, 4);
    yaml_pos(doc, "literal", 0, 8, 3);
    yaml_pos(doc, "literal", 8, 9, 3); /* "true &&\n  consumer" */
    yaml_pos(doc, "literal", 10, 9, 5);
    yaml_pos(doc, "folded", 5, 12, 3); /* "true &&\nconsumer.nope" */
    yaml_pos(doc, "folded", 8, 14, 3);
    yaml_pos(doc, "utf8", 3, 15, 10);    /* é is two bytes, one column */
    yaml_pos(doc, "escaped", 3, 16, 21); /* \u00e9 is 2 bytes, \x41 one, then a space */
    yaml_pos(doc, "escaped", 4, 17, 5);  /* after the escaped line break */
    yaml_pos(doc, "explicit", 0, 19, 3); /* indentation 2: "  true\n&& x" */
    yaml_pos(doc, "explicit", 7, 20, 3);
    /* the end of the value ("unexpected end of expression") */
    yaml_pos(doc, "plain", 18, 2, 26);
    yaml_pos(doc, "single", 18, 3, 29); /* the closing quote */
    yaml_pos(doc, "double", 20, 4, 32);
    yaml_pos(doc, "folded_plain", 21, 6, 17);
    yaml_pos(doc, "literal", 24, 9, 18); /* after "consumer.nope", before the kept break */
    yaml_pos(doc, "folded", 21, 14, 16);
    /* CR LF line ends count as one break; a BOM is not a column */
    const char *crlf = "\xef\xbb\xbf"
                       "a: 1\r\nb: x &&\r\n  consumer.nope\r\nc: |\r\n  1 ==\r\n   x\r\n";
    yaml_pos(crlf, "b", 5, 3, 3);
    yaml_pos(crlf, "b", 0, 2, 4);
    yaml_pos(crlf, "c", 6, 6, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_example),     cmocka_unit_test(test_operators_true),
        cmocka_unit_test(test_operators_false), cmocka_unit_test(test_null_semantics),
        cmocka_unit_test(test_ipv6_client),     cmocka_unit_test(test_short_circuit),
        cmocka_unit_test(test_syntax_errors),   cmocka_unit_test(test_unknown_attributes),
        cmocka_unit_test(test_type_errors),     cmocka_unit_test(test_limits),
        cmocka_unit_test(test_attr_parse),      cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_big_integers),
        cmocka_unit_test(test_yaml_positions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

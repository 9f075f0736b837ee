/*
 * Unit tests for the router (src/router/router.c): hosts, path kinds, precedence, conditions,
 * captures, 405 vs 404, malformed patterns, and 10,000 routes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "turnpike/router.h"

#define V(...) ((const char *const[]){__VA_ARGS__})
#define N(...) (sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

/* Tests identify routes by name: udata is the name too. */
static int add(struct tp_router *r, const char *name, const char *const *hosts, size_t nh,
               const char *const *paths, size_t np, const char *const *methods, size_t nm,
               int priority)
{
    struct tp_route_spec s = {
        .name = name,
        .hosts = hosts,
        .num_hosts = nh,
        .paths = paths,
        .num_paths = np,
        .methods = methods,
        .num_methods = nm,
        .priority = priority,
        .udata = (void *)name,
    };
    char err[256] = "";
    int rc = tp_router_add(r, &s, err, sizeof(err));
    if (rc == 0)
        assert_string_equal(err, "");
    else
        assert_true(err[0] != '\0');
    return rc;
}

#define ADD_P(r, name, ...)                                                                        \
    assert_int_equal(add(r, name, NULL, 0, V(__VA_ARGS__), N(__VA_ARGS__), NULL, 0, 0), 0)

/* Request headers for header_has: "name: value" pairs, name case-insensitive. */
struct hdrs {
    const char *const *kv;
    size_t n;
};

static int header_has(void *ctx, const char *name, const char *const *values, size_t n)
{
    const struct hdrs *h = ctx;
    for (size_t i = 0; h && i + 1 < h->n; i += 2) {
        if (strcasecmp(h->kv[i], name) != 0)
            continue;
        for (size_t k = 0; k < n; k++)
            if (strcmp(h->kv[i + 1], values[k]) == 0)
                return 1;
    }
    return 0;
}

/* Match and return the route name, or "404" / "405". */
static const char *match_full(const struct tp_router *r, const char *host, const char *method,
                              const char *path, const char *query, const struct hdrs *h,
                              struct tp_router_match *m)
{
    struct tp_router_request req = {
        .host = tp_slice_cstr(host),
        .path = tp_slice_cstr(path),
        .method = tp_slice_cstr(method),
        .query = tp_slice_cstr(query ? query : ""),
        .header_has = header_has,
        .header_ctx = (void *)h,
    };
    memset(m, 0xa5, sizeof(*m));
    int rc = tp_router_match(r, &req, m);
    if (rc == TP_ENOTFOUND)
        return "404";
    if (rc == TP_EMETHOD)
        return "405";
    assert_int_equal(rc, 0);
    assert_string_equal(m->route_name, (const char *)m->udata);
    return m->route_name;
}

static const char *match(const struct tp_router *r, const char *host, const char *method,
                         const char *path)
{
    struct tp_router_match m;
    return match_full(r, host, method, path, NULL, NULL, &m);
}

static const char *match_path(const struct tp_router *r, const char *path)
{
    return match(r, "example.com", "GET", path);
}

static struct tp_router *new_router(void)
{
    struct tp_router *r = tp_router_new();
    assert_non_null(r);
    return r;
}

static void compile(struct tp_router *r)
{
    assert_int_equal(tp_router_compile(r), 0);
}

/* Prefixes match on a segment boundary only. */
static void test_prefix_boundary(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    ADD_P(r, "api", "/api");
    ADD_P(r, "docs-slash", "/docs/");
    compile(r);
    assert_string_equal(match_path(r, "/api"), "api");
    assert_string_equal(match_path(r, "/api/"), "api");
    assert_string_equal(match_path(r, "/api/x/y"), "api");
    assert_string_equal(match_path(r, "/apix"), "404");
    assert_string_equal(match_path(r, "/docs"), "404");
    assert_string_equal(match_path(r, "/docs/"), "docs-slash");
    assert_string_equal(match_path(r, "/docs/a"), "docs-slash");
    assert_string_equal(match_path(r, "/"), "404");
    tp_router_free(r);
}

/* prefix_len: strip_path turns "/api/x" into "/x" and "/api" into "/". */
static void test_prefix_len(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    ADD_P(r, "api", "/api/v1");
    ADD_P(r, "docs", "/docs/");
    ADD_P(r, "root", "/");
    ADD_P(r, "exact", "=/e/x");
    compile(r);
    struct tp_router_match m;
    assert_string_equal(match_full(r, "h", "GET", "/api/v1/x/y", NULL, NULL, &m), "api");
    assert_int_equal(m.prefix_len, 7);
    assert_int_equal(m.num_captures, 0);
    assert_string_equal(match_full(r, "h", "GET", "/api/v1", NULL, NULL, &m), "api");
    assert_int_equal(m.prefix_len, 7);
    assert_string_equal(match_full(r, "h", "GET", "/api/v1/", NULL, NULL, &m), "api");
    assert_int_equal(m.prefix_len, 7);
    assert_string_equal(match_full(r, "h", "GET", "/docs/a", NULL, NULL, &m), "docs");
    assert_int_equal(m.prefix_len, 5);
    assert_string_equal(match_full(r, "h", "GET", "/docs/", NULL, NULL, &m), "docs");
    assert_int_equal(m.prefix_len, 5);
    assert_string_equal(match_full(r, "h", "GET", "/other/x", NULL, NULL, &m), "root");
    assert_int_equal(m.prefix_len, 0);
    assert_string_equal(match_full(r, "h", "GET", "/e/x", NULL, NULL, &m), "exact");
    assert_int_equal(m.prefix_len, 4);
    tp_router_free(r);
}

/* Longest prefix wins; "/" matches everything; "/a/" beats "/a" at the same depth. */
static void test_longest_prefix(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    ADD_P(r, "root", "/");
    ADD_P(r, "a", "/a");
    ADD_P(r, "ab", "/a/b");
    ADD_P(r, "abc-slash", "/a/b/c/");
    ADD_P(r, "abc", "/a/b/c");
    compile(r);
    assert_string_equal(match_path(r, "/"), "root");
    assert_string_equal(match_path(r, "/x"), "root");
    assert_string_equal(match_path(r, "/a"), "a");
    assert_string_equal(match_path(r, "/a/x"), "a");
    assert_string_equal(match_path(r, "/a/b"), "ab");
    assert_string_equal(match_path(r, "/a/bc"), "a");
    assert_string_equal(match_path(r, "/a/b/c"), "abc");
    assert_string_equal(match_path(r, "/a/b/c/"), "abc-slash");
    assert_string_equal(match_path(r, "/a/b/c/d"), "abc-slash");
    tp_router_free(r);
}

/* "=/api" is exact; trailing slash significant; exact beats prefix and template. */
static void test_exact(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    ADD_P(r, "exact", "=/api");
    ADD_P(r, "exact-slash", "=/api/");
    ADD_P(r, "exact-root", "=/");
    ADD_P(r, "prefix", "/api");
    ADD_P(r, "tmpl", "/{x}");
    compile(r);
    assert_string_equal(match_path(r, "/api"), "exact");
    assert_string_equal(match_path(r, "/api/"), "exact-slash");
    assert_string_equal(match_path(r, "/api/x"), "prefix");
    assert_string_equal(match_path(r, "/"), "exact-root");
    assert_string_equal(match_path(r, "/zzz"), "tmpl");
    tp_router_free(r);
}

/* Templates: one non-empty segment per {param}, whole path, named captures into the path. */
static void test_template_captures(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    ADD_P(r, "user", "/users/{id}");
    ADD_P(r, "post", "/users/{uid}/posts/{pid}");
    ADD_P(r, "slash", "/t/{a}/");
    compile(r);
    struct tp_router_match m;
    const char *path = "/users/42/posts/7";
    assert_string_equal(match_full(r, "h", "GET", path, NULL, NULL, &m), "post");
    assert_int_equal(m.num_captures, 2);
    assert_string_equal(m.captures[0].name, "uid");
    assert_ptr_equal(m.captures[0].value.ptr, path + 7);
    assert_int_equal(m.captures[0].value.len, 2);
    assert_string_equal(m.captures[1].name, "pid");
    assert_ptr_equal(m.captures[1].value.ptr, path + 16);
    assert_int_equal(m.captures[1].value.len, 1);
    assert_int_equal(m.prefix_len, strlen(path));
    assert_string_equal(match_full(r, "h", "GET", "/users/abc", NULL, NULL, &m), "user");
    assert_int_equal(m.num_captures, 1);
    assert_string_equal(m.captures[0].name, "id");
    assert_int_equal(m.captures[0].value.len, 3);
    assert_memory_equal(m.captures[0].value.ptr, "abc", 3);
    assert_string_equal(match_path(r, "/users"), "404");
    assert_string_equal(match_path(r, "/users/"), "404");
    assert_string_equal(match_path(r, "/users/1/"), "404");
    assert_string_equal(match_path(r, "/users/1/x"), "404");
    assert_string_equal(match_path(r, "/users/1/posts/2/3"), "404");
    assert_string_equal(match_path(r, "/t/x"), "404");
    assert_string_equal(match_full(r, "h", "GET", "/t/x/", NULL, NULL, &m), "slash");
    assert_int_equal(m.captures[0].value.len, 1);
    tp_router_free(r);
}

/* Literal segments beat {param} at the same depth, with backtracking when the literal fails. */
static void test_template_literal_first(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    ADD_P(r, "me", "/users/me");
    ADD_P(r, "me-x", "=/users/me/x");
    ADD_P(r, "id", "/users/{id}");
    ADD_P(r, "id-posts", "/users/{id}/posts");
    ADD_P(r, "any-me", "/{kind}/me/settings");
    compile(r);
    assert_string_equal(match_path(r, "/users/me"), "id");             /* template beats prefix */
    assert_string_equal(match_path(r, "/users/me/x"), "me-x");         /* exact */
    assert_string_equal(match_path(r, "/users/me/posts"), "id-posts"); /* backtracked */
    assert_string_equal(match_path(r, "/users/me/other"), "me");       /* prefix fallback */
    assert_string_equal(match_path(r, "/users/me/settings"), "any-me");
    assert_string_equal(match_path(r, "/users/5"), "id");
    tp_router_free(r);
}

/* Template with a method condition falls through to a less specific one. */
static void test_template_conditions_backtrack(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    assert_int_equal(add(r, "lit-post", NULL, 0, V("/a/x/{p}"), 1, V("POST"), 1, 0), 0);
    ADD_P(r, "param", "/a/{q}/{p}");
    compile(r);
    assert_string_equal(match(r, "h", "POST", "/a/x/1"), "lit-post");
    assert_string_equal(match(r, "h", "GET", "/a/x/1"), "param");
    tp_router_free(r);
}

/* Regexes: PCRE2, named groups as captures, declaration order, after everything else. */
static void test_regex(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    ADD_P(r, "items", "~^/v(?<ver>[0-9]+)/items$");
    ADD_P(r, "any-v", "~^/v[0-9]+/");
    ADD_P(r, "v2-prefix", "/v2/items/special");
    compile(r);
    struct tp_router_match m;
    const char *path = "/v12/items";
    assert_string_equal(match_full(r, "h", "GET", path, NULL, NULL, &m), "items");
    assert_int_equal(m.num_captures, 1);
    assert_string_equal(m.captures[0].name, "ver");
    assert_ptr_equal(m.captures[0].value.ptr, path + 2);
    assert_int_equal(m.captures[0].value.len, 2);
    assert_int_equal(m.prefix_len, strlen(path));
    assert_string_equal(match_path(r, "/v12/other"), "any-v");
    assert_string_equal(match_path(r, "/v2/items/special/x"), "v2-prefix");
    assert_string_equal(match_path(r, "/vx/items"), "404");
    tp_router_free(r);
}

/* Regex: declaration order among regexes; unset named groups are not reported. */
static void test_regex_order_and_unset(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    ADD_P(r, "first", "~^/(?<a>x)|^/(?<b>y)");
    ADD_P(r, "second", "~^/y");
    compile(r);
    struct tp_router_match m;
    assert_string_equal(match_full(r, "h", "GET", "/y", NULL, NULL, &m), "first");
    assert_int_equal(m.num_captures, 1);
    assert_string_equal(m.captures[0].name, "b");
    tp_router_free(r);
}

/* Exact host > longest wildcard > host-less; falls back when a bucket has no such path. */
static void test_hosts(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    assert_int_equal(add(r, "admin", V("Admin.Example.COM."), 1, V("/"), 1, NULL, 0, 0), 0);
    assert_int_equal(add(r, "wild", V("*.example.com"), 1, V("/"), 1, NULL, 0, 0), 0);
    assert_int_equal(add(r, "wild-b", V("*.b.example.com"), 1, V("/only"), 1, NULL, 0, 0), 0);
    assert_int_equal(add(r, "any", NULL, 0, V("/"), 1, NULL, 0, 0), 0);
    assert_int_equal(add(r, "any-deep", NULL, 0, V("/deep/path"), 1, NULL, 0, 0), 0);
    assert_int_equal(add(r, "v6", V("[::1]"), 1, V("/"), 1, NULL, 0, 0), 0);
    compile(r);
    assert_string_equal(match(r, "admin.example.com", "GET", "/x"), "admin");
    /* a host-specific "/" beats a host-less deeper path */
    assert_string_equal(match(r, "admin.example.com", "GET", "/deep/path"), "admin");
    assert_string_equal(match(r, "www.example.com", "GET", "/x"), "wild");
    assert_string_equal(match(r, "a.b.example.com", "GET", "/x"), "wild");
    assert_string_equal(match(r, "a.b.example.com", "GET", "/only"), "wild-b");
    assert_string_equal(match(r, "x.y.b.example.com", "GET", "/only"), "wild-b");
    assert_string_equal(match(r, "b.example.com", "GET", "/only"), "wild");
    assert_string_equal(match(r, "example.com", "GET", "/x"), "any");
    assert_string_equal(match(r, "other.org", "GET", "/x"), "any");
    assert_string_equal(match(r, "", "GET", "/x"), "any");
    assert_string_equal(match(r, "[::1]", "GET", "/x"), "v6");
    assert_string_equal(match(r, ".example.com", "GET", "/x"), "any");
    tp_router_free(r);
}

/* Routes with hosts only: no fallback for other hosts. Host × path combinations. */
static void test_host_path_combinations(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    assert_int_equal(
        add(r, "multi", V("a.com", "*.b.com"), 2, V("/x", "=/y", "/z/{id}"), 3, NULL, 0, 0), 0);
    compile(r);
    const char *hosts[] = {"a.com", "w.b.com"};
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(match(r, hosts[i], "GET", "/x/1"), "multi");
        assert_string_equal(match(r, hosts[i], "GET", "/y"), "multi");
        assert_string_equal(match(r, hosts[i], "GET", "/y/1"), "404");
        assert_string_equal(match(r, hosts[i], "GET", "/z/9"), "multi");
    }
    assert_string_equal(match(r, "b.com", "GET", "/x"), "404");
    assert_string_equal(match(r, "c.com", "GET", "/x"), "404");
    tp_router_free(r);
}

/* 405 only when host and path matched but every such route refused the method. */
static void test_method_405(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    assert_int_equal(add(r, "get", NULL, 0, V("/api"), 1, V("GET", "HEAD"), 2, 0), 0);
    assert_int_equal(add(r, "post", NULL, 0, V("=/api/items"), 1, V("POST"), 1, 0), 0);
    compile(r);
    assert_string_equal(match(r, "h", "GET", "/api/items"), "get");
    assert_string_equal(match(r, "h", "POST", "/api/items"), "post");
    assert_string_equal(match(r, "h", "POST", "/api/x"), "405");
    assert_string_equal(match(r, "h", "get", "/api"), "405"); /* methods are case-sensitive */
    assert_string_equal(match(r, "h", "GET", "/other"), "404");
    tp_router_free(r);

    r = new_router();
    assert_int_equal(add(r, "get", NULL, 0, V("/api"), 1, V("GET"), 1, 0), 0);
    ADD_P(r, "root", "/");
    compile(r);
    assert_string_equal(match(r, "h", "DELETE", "/api"), "root");
    tp_router_free(r);
}

/* At the same path: more conditions first, then priority, then declaration order. */
static void test_tie_breakers(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    ADD_P(r, "plain", "/p");
    assert_int_equal(add(r, "plain-prio", NULL, 0, V("/p"), 1, NULL, 0, 5), 0);
    assert_int_equal(add(r, "get", NULL, 0, V("/p"), 1, V("GET"), 1, 0), 0);
    ADD_P(r, "dup", "/q");
    ADD_P(r, "dup2", "/q");
    assert_int_equal(add(r, "deep", NULL, 0, V("/p/deeper"), 1, NULL, 0, -5), 0);
    compile(r);
    assert_string_equal(match_path(r, "/p"), "get");
    assert_string_equal(match(r, "h", "PUT", "/p"), "plain-prio");
    assert_string_equal(match_path(r, "/q"), "dup");
    assert_string_equal(match_path(r, "/p/deeper"), "deep"); /* path before conditions */
    tp_router_free(r);
}

/* Header conditions go through the callback; query values are %-decoded, '+' is not space. */
static void test_header_and_query(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    struct tp_route_cond hc = {"X-Version", V("2", "3"), 2};
    struct tp_route_cond qc[] = {{"mode", V("a b", "c+d"), 2}, {"k", V(""), 1}};
    struct tp_route_spec s = {.name = "cond",
                              .paths = V("/c"),
                              .num_paths = 1,
                              .headers = &hc,
                              .num_headers = 1,
                              .query = qc,
                              .num_query = 2,
                              .udata = "cond"};
    assert_int_equal(tp_router_add(r, &s, NULL, 0), 0);
    ADD_P(r, "fallback", "/");
    compile(r);
    struct hdrs h = {V("x-version", "3"), 2};
    struct hdrs h_bad = {V("x-version", "4"), 2};
    struct tp_router_match m;
    assert_string_equal(match_full(r, "h", "GET", "/c", "mode=a%20b&k", &h, &m), "cond");
    assert_string_equal(match_full(r, "h", "GET", "/c", "k=&x=1&mode=c+d", &h, &m), "cond");
    assert_string_equal(match_full(r, "h", "GET", "/c", "%6bk=&mode=c%2bd", &h, &m), "fallback");
    assert_string_equal(match_full(r, "h", "GET", "/c", "%6B=&mode=c%2Bd", &h, &m), "cond");
    assert_string_equal(match_full(r, "h", "GET", "/c", "mode=a+b&k", &h, &m), "fallback");
    assert_string_equal(match_full(r, "h", "GET", "/c", "mode=a%20b&k=1", &h, &m), "fallback");
    assert_string_equal(match_full(r, "h", "GET", "/c", "mode=a%20b&k", &h_bad, &m), "fallback");
    assert_string_equal(match_full(r, "h", "GET", "/c", "mode=a%20b&k", NULL, &m), "fallback");
    assert_string_equal(match_full(r, "h", "GET", "/c", "", &h, &m), "fallback");
    tp_router_free(r);
}

/* Malformed patterns are refused with a message; nothing of the route is entered. */
static void test_bad_patterns(void **state)
{
    (void)state;
    static const char *const bad_paths[] = {
        "{",  "/{",   "/{}", "/{a", "/a}", "/a{b}c", "/{a}b",   "/{a-b}",   "/{*rest}", "/{a}/{a}",
        "~(", "~[a-", "api", "",    "=",   "/a b",   "/a//{b}", "/{a}/./x", "/a\\b",    "~(*UTF)x",
    };
    struct tp_router *r = new_router();
    for (size_t i = 0; i < TP_ARRAY_LEN(bad_paths); i++) {
        if (add(r, "bad", NULL, 0, &bad_paths[i], 1, NULL, 0, 0) != TP_EINVAL)
            fail_msg("path '%s' accepted", bad_paths[i]);
    }
    static const char *const bad_hosts[] = {
        "",          "a..b",     "*",        "*.",      "a.*.com", "*example.com",
        "example.*", "a.com:80", "[::1]:80", "*.[::1]", "a b",
    };
    for (size_t i = 0; i < TP_ARRAY_LEN(bad_hosts); i++) {
        if (add(r, "bad", &bad_hosts[i], 1, V("/"), 1, NULL, 0, 0) != TP_EINVAL)
            fail_msg("host '%s' accepted", bad_hosts[i]);
    }
    assert_int_equal(add(r, "bad", NULL, 0, V("/"), 1, V("get"), 1, 0), TP_EINVAL);
    char err[128] = "";
    struct tp_route_spec s = {.name = "r1", .paths = V("/a{b}c"), .num_paths = 1};
    assert_int_equal(tp_router_add(r, &s, err, sizeof(err)), TP_EINVAL);
    assert_non_null(strstr(err, "/a{b}c"));
    compile(r);
    assert_string_equal(match_path(r, "/"), "404");
    tp_router_free(r);
}

/* Templates with 16 params (the maximum) capture them all; 17 are refused. */
static void test_many_params(void **state)
{
    (void)state;
    char tmpl[256], path[128];
    size_t o = 0, p = 0;
    for (int i = 0; i < TP_ROUTER_MAX_CAPTURES; i++) {
        o += (size_t)snprintf(tmpl + o, sizeof(tmpl) - o, "/{p%d}", i);
        p += (size_t)snprintf(path + p, sizeof(path) - p, "/%d", i);
    }
    struct tp_router *r = new_router();
    const char *paths[] = {tmpl};
    assert_int_equal(add(r, "many", NULL, 0, paths, 1, NULL, 0, 0), 0);
    snprintf(tmpl + o, sizeof(tmpl) - o, "/{extra}");
    assert_int_equal(add(r, "too-many", NULL, 0, paths, 1, NULL, 0, 0), TP_EINVAL);
    compile(r);
    struct tp_router_match m;
    assert_string_equal(match_full(r, "h", "GET", path, NULL, NULL, &m), "many");
    assert_int_equal(m.num_captures, TP_ROUTER_MAX_CAPTURES);
    assert_string_equal(m.captures[15].name, "p15");
    assert_memory_equal(m.captures[15].value.ptr, "15", 2);
    tp_router_free(r);
}

/* Patterns are normalised like request paths. */
static void test_pattern_normalised(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    ADD_P(r, "cafe", "/caf%c3%a9");
    ADD_P(r, "tilde", "/%7euser/{x}");
    compile(r);
    assert_string_equal(match_path(r, "/caf%C3%A9/x"), "cafe");
    assert_string_equal(match_path(r, "/~user/1"), "tilde");
    tp_router_free(r);
}

/* Before compile nothing matches; add after compile is refused; NULL free is fine. */
static void test_lifecycle(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    ADD_P(r, "a", "/");
    assert_string_equal(match_path(r, "/"), "404");
    compile(r);
    compile(r);
    assert_string_equal(match_path(r, "/"), "a");
    assert_int_equal(add(r, "late", NULL, 0, V("/"), 1, NULL, 0, 0), TP_EINVAL);
    tp_router_free(r);
    tp_router_free(NULL);
    r = new_router();
    compile(r);
    assert_string_equal(match_path(r, "/"), "404");
    tp_router_free(r);
}

/* Worker for test_threads: regex captures must be right in every thread. */
static void *match_worker(void *arg)
{
    const struct tp_router *r = arg;
    for (int i = 0; i < 2000; i++) {
        char path[64];
        int n = snprintf(path, sizeof(path), "/v%d/items/%d", i, i * 7);
        struct tp_router_request req = {
            .host = TP_SLICE_LIT("h"), .path = {path, (size_t)n}, .method = TP_SLICE_LIT("GET")};
        struct tp_router_match m;
        if (tp_router_match(r, &req, &m) != 0 || m.num_captures != 2 ||
            strcmp(m.captures[0].name, "ver") != 0 || m.captures[0].value.ptr != path + 2 ||
            strcmp(m.captures[1].name, "id") != 0 || m.captures[1].value.ptr[-1] != '/')
            return (void *)1;
    }
    return NULL;
}

/* A compiled router is shared read-only by threads; PCRE2 match data is per thread. */
static void test_threads(void **state)
{
    (void)state;
    struct tp_router *r = new_router();
    ADD_P(r, "re", "~^/v(?<ver>[0-9]+)/items/(?<id>[0-9]+)$");
    compile(r);
    pthread_t t[4];
    for (size_t i = 0; i < TP_ARRAY_LEN(t); i++)
        assert_int_equal(pthread_create(&t[i], NULL, match_worker, r), 0);
    for (size_t i = 0; i < TP_ARRAY_LEN(t); i++) {
        void *res = (void *)1;
        assert_int_equal(pthread_join(t[i], &res), 0);
        assert_null(res);
    }
    tp_router_free(r);
}

/* 10,000 routes over 1,000 hosts (plus wildcards and regexes) load and match correctly. */
static void test_ten_thousand_routes(void **state)
{
    (void)state;
    static char names[10000][16];
    struct tp_router *r = new_router();
    for (int i = 0; i < 10000; i++) {
        char host[32], path[32];
        const char *hosts[] = {host};
        const char *paths[] = {path};
        snprintf(names[i], sizeof(names[i]), "r%d", i);
        if (i % 10 == 9)
            snprintf(host, sizeof(host), "*.w%d.example.com", i % 1000);
        else
            snprintf(host, sizeof(host), "h%d.example.com", i % 1000);
        if (i % 100 == 0)
            snprintf(path, sizeof(path), "~^/re%d/", i);
        else
            snprintf(path, sizeof(path), "/svc%d/items", i);
        assert_int_equal(add(r, names[i], hosts, 1, paths, 1, NULL, 0, 0), 0);
    }
    compile(r);
    assert_string_equal(match(r, "h1.example.com", "GET", "/svc1001/items/x"), "r1001");
    assert_string_equal(match(r, "h1.example.com", "GET", "/svc1/items"), "r1");
    assert_string_equal(match(r, "h2.example.com", "GET", "/svc1001/items"), "404");
    assert_string_equal(match(r, "h1.example.com", "GET", "/svc1001"), "404");
    assert_string_equal(match(r, "a.w9.example.com", "GET", "/svc1009/items"), "r1009");
    assert_string_equal(match(r, "x.y.w9.example.com", "GET", "/svc9/items"), "r9");
    assert_string_equal(match(r, "w9.example.com", "GET", "/svc9/items"), "404");
    assert_string_equal(match(r, "q.w999.example.com", "GET", "/svc9999/items"), "r9999");
    assert_string_equal(match(r, "h0.example.com", "GET", "/re2000/x"), "r2000");
    assert_string_equal(match(r, "h0.example.com", "GET", "/re0/"), "r0");
    assert_string_equal(match(r, "h0.example.com", "GET", "/re0"), "404");
    assert_string_equal(match(r, "h998.example.com", "GET", "/svc9998/items"), "r9998");
    tp_router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_boundary),
        cmocka_unit_test(test_prefix_len),
        cmocka_unit_test(test_longest_prefix),
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_template_captures),
        cmocka_unit_test(test_template_literal_first),
        cmocka_unit_test(test_template_conditions_backtrack),
        cmocka_unit_test(test_regex),
        cmocka_unit_test(test_regex_order_and_unset),
        cmocka_unit_test(test_hosts),
        cmocka_unit_test(test_host_path_combinations),
        cmocka_unit_test(test_method_405),
        cmocka_unit_test(test_tie_breakers),
        cmocka_unit_test(test_header_and_query),
        cmocka_unit_test(test_bad_patterns),
        cmocka_unit_test(test_many_params),
        cmocka_unit_test(test_pattern_normalised),
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_ten_thousand_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

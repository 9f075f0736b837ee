/*
 * Unit tests for tp_path_normalize and tp_host_canonicalize (src/router/path.c).
 * Cases from ../shared/cases/CASES.md B13, B14, B16, B17, B19, B20.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "turnpike/router.h"

struct norm_case {
    const char *in;
    const char *out; /* NULL: TP_EINVAL expected */
    unsigned flags;
};

/* Normalise, compare, and check that normalising the output again changes nothing. */
static void check_norm(const struct norm_case *c)
{
    size_t in_len = strlen(c->in);
    char out[512], again[512];
    size_t out_len = 0, again_len = 0;
    int rc = tp_path_normalize(c->in, in_len, out, &out_len, c->flags);
    if (!c->out) {
        if (rc != TP_EINVAL)
            fail_msg("'%s': expected TP_EINVAL, got %d ('%.*s')", c->in, rc, (int)out_len, out);
        return;
    }
    if (rc != 0)
        fail_msg("'%s': expected '%s', got error %d", c->in, c->out, rc);
    if (out_len != strlen(c->out) || memcmp(out, c->out, out_len) != 0)
        fail_msg("'%s': expected '%s', got '%.*s'", c->in, c->out, (int)out_len, out);
    assert_true(out_len <= in_len);
    assert_int_equal(tp_path_normalize(out, out_len, again, &again_len, c->flags), 0);
    assert_int_equal(again_len, out_len);
    assert_memory_equal(again, out, out_len);
}

static void run_cases(const struct norm_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_norm(&cases[i]);
}

/* B13: dot segments are removed before matching; ".." never climbs above the root. */
static void test_dot_segments(void **state)
{
    (void)state;
    static const struct norm_case cases[] = {
        {"/public/../admin/users", "/admin/users", 0},
        {"/public/./../admin/users", "/admin/users", 0},
        {"/public/x/../../admin/users", "/admin/users", 0},
        {"/admin/./users", "/admin/users", 0},
        {"/../x", "/x", 0},
        {"/../../../x", "/x", 0},
        {"/.", "/", 0},
        {"/..", "/", 0},
        {"/a/..", "/", 0},
        {"/a/.", "/a/", 0},
        {"/a/b/..", "/a/", 0},
        {"/a/b/../", "/a/", 0},
        {"/a/./b", "/a/b", 0},
        {"/a/.../b", "/a/.../b", 0},
        {"/a/.b/..c", "/a/.b/..c", 0},
        {"/", "/", 0},
    };
    run_cases(cases, TP_ARRAY_LEN(cases));
}

/* B14: %2e is an encoded unreserved '.', decoded before dot-segment removal. */
static void test_encoded_dots(void **state)
{
    (void)state;
    static const struct norm_case cases[] = {
        {"/public/%2e%2e/internal/config", "/internal/config", 0},
        {"/public/%2E%2E/internal/config", "/internal/config", 0},
        {"/public/.%2e/internal/config", "/internal/config", 0},
        {"/public/%2e./internal/config", "/internal/config", 0},
        {"/public/%2e/internal", "/public/internal", 0},
        {"/public%2e%2e/internal/config", "/public../internal/config", 0},
        {"/public/..%2finternal/config", NULL, 0},
        {"/public/..%2Finternal/config", NULL, 0},
        {"/public/..%2finternal/config", "/public/..%2Finternal/config",
         TP_PATH_ALLOW_ENCODED_SLASH},
        {"/public/%2e%2e%2finternal", "/public/..%2Finternal", TP_PATH_ALLOW_ENCODED_SLASH},
        {"/a%5cb", "/a%5Cb", TP_PATH_ALLOW_ENCODED_SLASH},
    };
    run_cases(cases, TP_ARRAY_LEN(cases));
}

/* B16: repeated slashes are merged; a trailing slash is kept. */
static void test_slashes(void **state)
{
    (void)state;
    static const struct norm_case cases[] = {
        {"//admin", "/admin", 0},
        {"/internal//config", "/internal/config", 0},
        {"///internal/config", "/internal/config", 0},
        {"/a/b/", "/a/b/", 0},
        {"/a/b//", "/a/b/", 0},
        {"//", "/", 0},
        {"//..//x", "/x", 0},
    };
    run_cases(cases, TP_ARRAY_LEN(cases));
}

/* RFC 3986 §6.2.2.1-2: unreserved escapes decoded, others kept with upper-case digits. */
static void test_escapes(void **state)
{
    (void)state;
    static const struct norm_case cases[] = {
        {"/%41%7e", "/A~", 0},
        {"/%7E%5f%2D", "/~_-", 0},
        {"/a%20b", "/a%20b", 0},
        {"/a%c3%a9", "/a%C3%A9", 0},
        {"/%25", "/%25", 0},
        {"/%252e", "/%252e", 0},
        {"/a:b@c!$&'()*+,;=", "/a:b@c!$&'()*+,;=", 0},
        {"/%3f", "/%3F", 0},
    };
    run_cases(cases, TP_ARRAY_LEN(cases));
}

/* Anything that is not pchar or a valid escape is refused (B17 '#', controls, backslash). */
static void test_refused(void **state)
{
    (void)state;
    static const struct norm_case cases[] = {
        {"/a\\b", NULL, 0},
        {"/a\\b", NULL, TP_PATH_ALLOW_ENCODED_SLASH},
        {"/%00", NULL, 0},
        {"/%00", NULL, TP_PATH_ALLOW_ENCODED_SLASH},
        {"/%5c", NULL, 0},
        {"/%5C", NULL, 0},
        {"/a%zz", NULL, 0},
        {"/a%4", NULL, 0},
        {"/a%", NULL, 0},
        {"/a%G1", NULL, 0},
        {"/a b", NULL, 0},
        {"/a#b", NULL, 0},
        {"/admin/users#.css", NULL, 0},
        {"/a?b", NULL, 0},
        {"/a\"b", NULL, 0},
        {"/a<b>", NULL, 0},
        {"/a^b", NULL, 0},
        {"/a`b", NULL, 0},
        {"/a{b}", NULL, 0},
        {"/a|b", NULL, 0},
        {"/a\x7f", NULL, 0},
        {"/a\tb", NULL, 0},
        {"/caf\xc3\xa9", NULL, 0},
        {"a/b", NULL, 0},
        {"*", NULL, 0},
    };
    run_cases(cases, TP_ARRAY_LEN(cases));
}

static void test_empty_and_nul(void **state)
{
    (void)state;
    char out[8];
    size_t n = 0;
    assert_int_equal(tp_path_normalize("", 0, out, &n, 0), TP_EINVAL);
    assert_int_equal(tp_path_normalize("/a\0b", 4, out, &n, 0), TP_EINVAL);
}

struct host_case {
    const char *in;
    const char *out; /* NULL: TP_EINVAL expected */
};

static void check_hosts(const struct host_case *cases, size_t num)
{
    for (size_t i = 0; i < num; i++) {
        const struct host_case *c = &cases[i];
        char out[256];
        size_t n = 0;
        int rc = tp_host_canonicalize(c->in, strlen(c->in), out, &n);
        if (!c->out) {
            if (rc != TP_EINVAL)
                fail_msg("host '%s': expected TP_EINVAL, got %d", c->in, rc);
            continue;
        }
        if (rc != 0 || n != strlen(c->out) || memcmp(out, c->out, n) != 0)
            fail_msg("host '%s': expected '%s', got %d '%.*s'", c->in, c->out, rc, (int)n, out);
    }
}

/* B19, B20: lower case, port removed, one trailing dot removed; empty labels refused. */
static void test_host(void **state)
{
    (void)state;
    static const struct host_case cases[] = {
        {"API.Example.COM", "api.example.com"},
        {"admin.example.com.", "admin.example.com"},
        {"admin.example.com.:443", "admin.example.com"},
        {"ADMIN.Example.COM", "admin.example.com"},
        {"api.example.com:80", "api.example.com"},
        {"a.b:80", "a.b"},
        {"a.b:", "a.b"},
        {"[::1]:8080", "[::1]"},
        {"[::1]", "[::1]"},
        {"[FE80::1]", "[fe80::1]"},
        {"127.0.0.1:9000", "127.0.0.1"},
        {"localhost", "localhost"},
        {"", ""},
        {"a..b", NULL},
        {"a.b..", NULL},
        {".", NULL},
        {"..", NULL},
        {".a.b", NULL},
        {".:80", NULL},
        {"a.b:8o", NULL},
        {"a.b:80:80", NULL},
        {"example.com/admin", NULL},
        {"user1@example.com", NULL},
        {"exa mple.com", NULL},
        {"[::1", NULL},
        {"[]", NULL},
        {"[::1]x", NULL},
        {"a%2eb", NULL},
    };
    check_hosts(cases, TP_ARRAY_LEN(cases));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dot_segments), cmocka_unit_test(test_encoded_dots),
        cmocka_unit_test(test_slashes),      cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_refused),      cmocka_unit_test(test_empty_and_nul),
        cmocka_unit_test(test_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Fuzz target: path normalisation, Host canonicalisation and route matching on their output.
 *
 * The input is normalised as a path (as given, and with a leading '/' added, with and without
 * TP_PATH_ALLOW_ENCODED_SLASH) and every invariant of tp_path_normalize is checked: the output
 * starts with '/', has no "//", no "." or ".." segment, no "%2e", is no longer than the input,
 * and normalising it again gives it back. The input is also canonicalised as a Host (lower
 * case, no port, no trailing dot, idempotent), and accepted paths are matched against a small
 * router holding every kind of pattern. Any violated invariant aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "turnpike/router.h"

#define MAX_INPUT 4096

/* abort() with a message: libFuzzer records the input that got here. */
static void check(int ok, const char *what, const char *s, size_t len)
{
    if (ok)
        return;
    fprintf(stderr, "invariant failed: %s on '%.*s'\n", what, (int)len, s);
    abort();
}

/* Is the segment s[0..len) "." or ".."? */
static int is_dot_segment(const char *s, size_t len)
{
    return (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.');
}

/* Output shape: leading '/', no empty or dot segment (a trailing '/' is allowed), no %2e. */
static void check_shape(const char *out, size_t n)
{
    check(n >= 1 && out[0] == '/', "leading slash", out, n);
    size_t start = 1;
    for (size_t i = 1; i <= n; i++) {
        if (i < n && out[i] != '/')
            continue;
        size_t len = i - start;
        check(len > 0 || i == n, "no empty segment", out, n);
        check(!is_dot_segment(out + start, len), "no dot segment", out, n);
        start = i + 1;
    }
    for (size_t i = 0; i + 2 < n; i++)
        check(!(out[i] == '%' && out[i + 1] == '2' && (out[i + 2] == 'e' || out[i + 2] == 'E')),
              "no %2e", out, n);
}

/* Match an accepted path against a router with every kind of pattern (built once). */
static void match_path(const char *path, size_t len)
{
    static struct tp_router *r;
    if (!r) {
        static const char *const hosts[] = {"api.example.com", "*.example.com"};
        static const char *const paths[] = {"/",
                                            "/api",
                                            "/api/",
                                            "=/api/x",
                                            "/users/{id}",
                                            "/users/me",
                                            "/users/{id}/posts/{p}",
                                            "/{a}/{b}/{c}",
                                            "~^/v(?<ver>[0-9]+)/(?<rest>.*)$"};
        static const char *const methods[] = {"GET"};
        struct tp_route_spec s = {.name = "all", .paths = paths, .num_paths = 9};
        r = tp_router_new();
        if (!r || tp_router_add(r, &s, NULL, 0) != 0)
            abort();
        s = (struct tp_route_spec){.name = "hosted",
                                   .hosts = hosts,
                                   .num_hosts = 2,
                                   .paths = paths,
                                   .num_paths = 9,
                                   .methods = methods,
                                   .num_methods = 1};
        if (tp_router_add(r, &s, NULL, 0) != 0 || tp_router_compile(r) != 0)
            abort();
    }
    struct tp_router_request req = {.host = TP_SLICE_LIT("a.example.com"),
                                    .path = {path, len},
                                    .method = TP_SLICE_LIT("GET"),
                                    .query = {path, len}};
    struct tp_router_match m;
    int rc = tp_router_match(r, &req, &m);
    check(rc == 0, "'/' prefix always matches", path, len);
    check(m.prefix_len <= len, "prefix_len within path", path, len);
    for (size_t i = 0; i < m.num_captures; i++)
        check(m.captures[i].value.ptr >= path &&
                  m.captures[i].value.ptr + m.captures[i].value.len <= path + len,
              "capture within path", path, len);
}

static void fuzz_normalize(const char *in, size_t len, unsigned flags)
{
    char out[MAX_INPUT + 1], again[MAX_INPUT + 1];
    size_t n = 0, n2 = 0;
    if (tp_path_normalize(in, len, out, &n, flags) != 0)
        return;
    check(n <= len, "output not longer than input", in, len);
    check_shape(out, n);
    if (!(flags & TP_PATH_ALLOW_ENCODED_SLASH))
        check(!memmem(out, n, "%2F", 3) && !memmem(out, n, "%5C", 3), "no %2F", out, n);
    check(tp_path_normalize(out, n, again, &n2, flags) == 0, "output accepted again", out, n);
    check(n2 == n && memcmp(again, out, n) == 0, "idempotent", out, n);
    match_path(out, n);
}

static void fuzz_host(const char *in, size_t len)
{
    char out[MAX_INPUT + 1], again[MAX_INPUT + 1];
    size_t n = 0, n2 = 0;
    if (tp_host_canonicalize(in, len, out, &n) != 0)
        return;
    check(n <= len, "host not longer", in, len);
    for (size_t i = 0; i < n; i++)
        check(out[i] < 'A' || out[i] > 'Z', "host lower case", out, n);
    check(n == 0 || out[0] == '[' || !memchr(out, ':', n), "host without port", out, n);
    check(n == 0 || out[0] == '[' || out[n - 1] != '.', "host without trailing dot", out, n);
    check(tp_host_canonicalize(out, n, again, &n2) == 0, "host accepted again", out, n);
    check(n2 == n && memcmp(again, out, n) == 0, "host idempotent", out, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char in[MAX_INPUT + 1];
    if (size > MAX_INPUT)
        return 0;
    memcpy(in, data, size);
    fuzz_normalize(in, size, 0);
    fuzz_normalize(in, size, TP_PATH_ALLOW_ENCODED_SLASH);
    fuzz_host(in, size);
    if (size < MAX_INPUT) {
        char slashed[MAX_INPUT + 1];
        slashed[0] = '/';
        memcpy(slashed + 1, data, size);
        fuzz_normalize(slashed, size + 1, 0);
    }
    return 0;
}

/*
 * Unit tests for src/http/parser.c and src/http/chunked.c: every CASES.md input of B01–B10,
 * B17, B22 and B48, plus the positive cases a proxy relies on.
 *
 * Every input is copied into a heap buffer of exactly its length, so that AddressSanitizer
 * catches a parser reading one byte too far.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "turnpike/http.h"

#define LIT(s) (s), (sizeof(s) - 1)

/* The B48 configuration: 8 KiB head, 100 fields, 4 KiB per field; URI limit 8 KiB. */
static const struct tp_http_limits g_lim = {
    .max_header_bytes = 8192,
    .max_headers = 100,
    .max_uri_bytes = 8192,
    .max_field_bytes = 4096,
};

/* Large enough for the 65 536-byte names and values of B09. */
static const struct tp_http_limits g_big_lim = {
    .max_header_bytes = 1u << 20,
    .max_headers = 100,
    .max_uri_bytes = 1u << 20,
    .max_field_bytes = 1u << 20,
};

static struct tp_http_header g_hdrs[256];
static struct tp_http_message g_msg;
static char *g_buf; /* exact-size copy of the last input; slices of g_msg point into it */
static int g_status;

static const char *copy_input(const char *s, size_t len)
{
    free(g_buf);
    g_buf = malloc(len ? len : 1);
    assert_non_null(g_buf);
    memcpy(g_buf, s, len);
    return g_buf;
}

static int req_lim(const char *s, size_t len, const struct tp_http_limits *lim)
{
    const char *b = copy_input(s, len);

    memset(&g_msg, 0x5a, sizeof(g_msg));
    g_msg.headers = g_hdrs;
    g_status = -1;
    return tp_http_parse_request(b, len, &g_msg, lim, &g_status);
}

static int req(const char *s, size_t len)
{
    return req_lim(s, len, &g_lim);
}

static int resp_m(const char *s, size_t len, const char *method)
{
    const char *b = copy_input(s, len);

    memset(&g_msg, 0x5a, sizeof(g_msg));
    g_msg.headers = g_hdrs;
    return tp_http_parse_response(b, len, tp_slice_cstr(method), &g_msg, &g_lim);
}

static int resp(const char *s, size_t len)
{
    return resp_m(s, len, "GET");
}

static int slice_is(struct tp_slice s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

#define assert_slice(s, want) assert_true(slice_is((s), (want)))

/* Expect a complete, accepted request that uses the whole input. */
#define assert_req_ok(lit)                                                                         \
    do {                                                                                           \
        assert_int_equal(req(LIT(lit)), (int)(sizeof(lit) - 1));                                   \
        assert_int_equal(g_status, 0);                                                             \
    } while (0)

#define assert_req_status(lit, st)                                                                 \
    do {                                                                                           \
        int rc_ = req(LIT(lit));                                                                   \
        assert_true(rc_ == TP_EINVAL || rc_ == TP_ETOOBIG);                                        \
        assert_int_equal(g_status, (st));                                                          \
    } while (0)

#define assert_req_400(lit) assert_req_status(lit, 400)

/* A growable test buffer for the large inputs (no sprintf/strcat in this project). */
static char g_sb[1u << 19];
static size_t g_sb_len;

static void sb_reset(void)
{
    g_sb_len = 0;
}

static void sb_add(const char *s)
{
    size_t n = strlen(s);
    assert_true(g_sb_len + n <= sizeof(g_sb));
    memcpy(g_sb + g_sb_len, s, n);
    g_sb_len += n;
}

static void sb_fill(char c, size_t n)
{
    assert_true(g_sb_len + n <= sizeof(g_sb));
    memset(g_sb + g_sb_len, c, n);
    g_sb_len += n;
}

static void sb_num(size_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    tmp[--i] = '\0';
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sb_add(tmp + i);
}

/* ---- positive request cases ---------------------------------------------------------------- */

static void test_get_keepalive(void **state)
{
    (void)state;
    assert_req_ok("GET /public/x?a=1&b HTTP/1.1\r\nHost: example.com\r\n"
                  "Connection: keep-alive\r\n\r\n");
    assert_slice(g_msg.method, "GET");
    assert_slice(g_msg.target, "/public/x?a=1&b");
    assert_slice(g_msg.path, "/public/x");
    assert_slice(g_msg.query, "a=1&b");
    assert_int_equal(g_msg.target_authority.len, 0);
    assert_slice(g_msg.host, "example.com");
    assert_int_equal(g_msg.minor_version, 1);
    assert_int_equal(g_msg.num_headers, 2);
    assert_slice(g_msg.headers[1].name, "Connection");
    assert_slice(g_msg.headers[1].value, "keep-alive");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_NONE);
    assert_int_equal(g_msg.flags, TP_HTTP_F_CONN_KEEPALIVE);
}

static void test_pipelined(void **state)
{
    (void)state;
    static const char in[] = "POST /public/a HTTP/1.1\r\nHost: example.com\r\n"
                             "Content-Length: 5\r\n\r\nhello"
                             "GET /public/b?z HTTP/1.1\r\nHost: example.com\r\n\r\n"
                             "GET /c HTTP/1.1\r\nHost: example.com\r\n\r\n";
    const char *b = copy_input(LIT(in));
    size_t len = sizeof(in) - 1;
    struct tp_http_message m = {.headers = g_hdrs};
    int st;

    int n = tp_http_parse_request(b, len, &m, &g_lim, &st);
    assert_true(n > 0);
    assert_int_equal((size_t)n, m.head_len);
    assert_int_equal(m.framing, TP_HTTP_BODY_LENGTH);
    assert_int_equal(m.content_length, 5);
    assert_slice(m.path, "/public/a");
    size_t off = (size_t)n + 5;

    n = tp_http_parse_request(b + off, len - off, &m, &g_lim, &st);
    assert_true(n > 0);
    assert_slice(m.method, "GET");
    assert_slice(m.path, "/public/b");
    assert_slice(m.query, "z");
    assert_int_equal(m.framing, TP_HTTP_BODY_NONE);
    off += (size_t)n;

    n = tp_http_parse_request(b + off, len - off, &m, &g_lim, &st);
    assert_int_equal((size_t)n, len - off);
    assert_slice(m.path, "/c");
    assert_int_equal(m.query.len, 0);
}

static void test_http10_without_host(void **state)
{
    (void)state;
    assert_req_ok("GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(g_msg.minor_version, 0);
    assert_int_equal(g_msg.host.len, 0);
    assert_req_ok("GET / HTTP/1.0\r\nHost: example.com\r\n\r\n");
    assert_slice(g_msg.host, "example.com");
    /* HTTP/1.0 may omit Host but may not send it twice or empty. */
    assert_req_400("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n");
    assert_req_400("GET / HTTP/1.0\r\nHost: \r\n\r\n");
}

static void test_absolute_form(void **state)
{
    (void)state;
    assert_req_ok("GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_slice(g_msg.target, "http://example.com/x?y");
    assert_slice(g_msg.path, "/x");
    assert_slice(g_msg.query, "y");
    assert_slice(g_msg.target_authority, "example.com");
    assert_slice(g_msg.host, "example.com");

    assert_req_ok("GET HTTPS://Example.COM:8443 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_slice(g_msg.target_authority, "Example.COM:8443");
    assert_slice(g_msg.path, "/");
    assert_int_equal(g_msg.query.len, 0);

    assert_req_ok("GET http://example.com?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_slice(g_msg.path, "/");
    assert_slice(g_msg.query, "q=1");

    /* Host is still required for HTTP/1.1. */
    assert_req_400("GET http://example.com/x HTTP/1.1\r\n\r\n");
    assert_req_400("GET ftp://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_req_400("GET http://user1@example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_req_400("GET http:///x HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_req_400("GET http:// HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_req_400("GET http://example.com:99999/ HTTP/1.1\r\nHost: example.com\r\n\r\n");
}

static void test_options_asterisk(void **state)
{
    (void)state;
    assert_req_ok("OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_slice(g_msg.target, "*");
    assert_slice(g_msg.path, "*");
    assert_req_400("GET * HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_req_400("OPTIONS *x HTTP/1.1\r\nHost: example.com\r\n\r\n");
}

static void test_expect_continue(void **state)
{
    (void)state;
    assert_req_ok("PUT /public/upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\n"
                  "Expect: 100-continue\r\n\r\n");
    assert_int_equal(g_msg.flags, TP_HTTP_F_EXPECT_CONTINUE | TP_HTTP_F_HAS_CL);
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_LENGTH);
    assert_int_equal(g_msg.content_length, 4);
    assert_req_ok("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-Continue\r\n\r\n");
    assert_true(g_msg.flags & TP_HTTP_F_EXPECT_CONTINUE);
    assert_req_ok("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n");
    assert_false(g_msg.flags & TP_HTTP_F_EXPECT_CONTINUE);
}

static void test_connection_tokens(void **state)
{
    (void)state;
    assert_req_ok("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
                  "Upgrade: websocket\r\n\r\n");
    assert_int_equal(g_msg.flags,
                     TP_HTTP_F_CONN_KEEPALIVE | TP_HTTP_F_CONN_UPGRADE | TP_HTTP_F_HAS_UPGRADE);
    assert_req_ok("GET / HTTP/1.1\r\nHost: a\r\nconnection: X-Forwarded-For ,CLOSE\r\n"
                  "CONNECTION: ,,upgrade\r\n\r\n");
    assert_int_equal(g_msg.flags, TP_HTTP_F_CONN_CLOSE | TP_HTTP_F_CONN_UPGRADE);
    assert_req_ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alivex, closed\r\n\r\n");
    assert_int_equal(g_msg.flags, 0);
}

static void test_te_trailers(void **state)
{
    (void)state;
    assert_req_ok("GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n");
    assert_int_equal(g_msg.flags, TP_HTTP_F_TE_TRAILERS);
    assert_req_ok("GET / HTTP/1.1\r\nHost: a\r\nte: gzip;q=0.5, Trailers\r\n\r\n");
    assert_int_equal(g_msg.flags, TP_HTTP_F_TE_TRAILERS);
    assert_req_ok("GET / HTTP/1.1\r\nHost: a\r\nTE: gzip\r\n\r\n");
    assert_int_equal(g_msg.flags, 0);
}

static void test_chunked_request(void **state)
{
    (void)state;
    assert_req_ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_CHUNKED);
    assert_int_equal(g_msg.flags, TP_HTTP_F_HAS_TE);
    /* Coding names are case-insensitive and OWS is not part of the value (B04). */
    assert_req_ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \t\r\n\r\n");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_CHUNKED);
    assert_req_ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_CHUNKED);
    assert_req_ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_CHUNKED);
}

static void test_content_length(void **state)
{
    (void)state;
    assert_req_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_LENGTH);
    assert_int_equal(g_msg.content_length, 42);
    assert_int_equal(g_msg.flags, TP_HTTP_F_HAS_CL);
    /* CL: 0 is documented as framing NONE with content_length 0. */
    assert_req_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_NONE);
    assert_int_equal(g_msg.content_length, 0);
    assert_int_equal(g_msg.flags, TP_HTTP_F_HAS_CL);
    assert_req_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n");
    assert_int_equal(g_msg.content_length, 7);
    assert_req_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n");
    assert_int_equal(g_msg.content_length, INT64_MAX);
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n");
    assert_req_ok("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_NONE);
}

static void test_leading_crlf_and_values(void **state)
{
    (void)state;
    assert_req_ok("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_slice(g_msg.method, "GET");
    assert_req_400("\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_req_400("\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_req_400(" GET / HTTP/1.1\r\nHost: a\r\n\r\n");

    assert_req_ok("GET / HTTP/1.1\r\nHost: a\r\nX-A: \t v \t v\t \r\nX-B:\r\nX-C:   \r\n"
                  "X-U: caf\xc3\xa9\r\n\r\n");
    assert_slice(g_msg.headers[1].value, "v \t v");
    assert_int_equal(g_msg.headers[2].value.len, 0);
    assert_int_equal(g_msg.headers[3].value.len, 0);
    assert_slice(g_msg.headers[4].value, "caf\xc3\xa9");
}

static void test_header_find(void **state)
{
    (void)state;
    assert_req_ok("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\nX-B: 3\r\n\r\n");
    assert_int_equal(tp_http_header_find(&g_msg, LIT("x-A"), 0), 1);
    assert_int_equal(tp_http_header_find(&g_msg, LIT("x-A"), 2), 2);
    assert_int_equal(tp_http_header_find(&g_msg, LIT("x-A"), 3), -1);
    assert_int_equal(tp_http_header_find(&g_msg, LIT("HOST"), 0), 0);
    assert_int_equal(tp_http_header_find(&g_msg, LIT("X-"), 0), -1);
    assert_int_equal(tp_http_header_find(&g_msg, LIT("X-C"), 0), -1);
}

static void test_incomplete_request_prefixes(void **state)
{
    (void)state;
    static const char in[] = "\r\nPOST /public/x?q=1 HTTP/1.1\r\nHost: example.com:8080\r\n"
                             "Transfer-Encoding: gzip, chunked\r\nX-Empty:\r\n"
                             "Connection: keep-alive\r\n\r\n";
    size_t len = sizeof(in) - 1;

    for (size_t i = 0; i < len; i++) {
        assert_int_equal(req(in, i), TP_EAGAIN);
        assert_int_equal(g_status, 0);
    }
    assert_int_equal(req(in, len), (int)len);
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_CHUNKED);
    /* Bytes after the head do not change the result. */
    assert_int_equal(req(LIT("GET / HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\n\r")), 27);
}

static void test_status_out_optional(void **state)
{
    (void)state;
    const char *b = copy_input(LIT("GET / HTTP/1.1\r\n\r\n"));
    struct tp_http_message m = {.headers = g_hdrs};
    assert_int_equal(tp_http_parse_request(b, 18, &m, &g_lim, NULL), TP_EINVAL);
}

/* ---- request line and version -------------------------------------------------------------- */

static void test_request_line_errors(void **state)
{
    (void)state;
    assert_req_400("GET  / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_req_400("GET / HTTP/1.1 \r\nHost: a\r\n\r\n");
    assert_req_400("GET /\tx HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_req_400("GET /\x7fx HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_req_400("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_req_400("GET /0123456789abcdef\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_req_400("GET /0123456789abcdef\x7f HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_req_400("GET /0123456789abcdef\t HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_req_400("G@T / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_req_400("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_req_400("GET x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_req_400("GET /\r\nHost: a\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\nHost: a\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\rHost: a\r\n\r\n");
    assert_req_400("GET / http/1.1\r\nHost: a\r\n\r\n");
    assert_req_400("GET / HTTP/1.10\r\nHost: a\r\n\r\n");
    assert_req_400("GET / HTTP/11.1\r\nHost: a\r\n\r\n");
    assert_req_400("GET / HTTP/1\r\nHost: a\r\n\r\n");
    /* Garbage is refused before the line is complete. */
    assert_req_400("GET / HTTX");
    assert_req_400("GET / HTTP/x");
}

static void test_version_505(void **state)
{
    (void)state;
    assert_req_status("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    assert_req_status("GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505);
    assert_req_status("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505);
    assert_req_status("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505);
    assert_int_equal(req(LIT("GET / HTTP/2.0\r\nHost: a\r\n\r\n")), TP_EINVAL);
}

/* ---- B01–B09 ------------------------------------------------------------------------------- */

static void test_b01_cl_and_te(void **state)
{
    (void)state;
    assert_req_400("POST /public/x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n"
                   "2a\r\nGET /admin HTTP/1.1\r\nHost: example.com\r\n\r\n\r\n0\r\n\r\n");
    assert_req_400("POST /public/x HTTP/1.1\r\nHost: example.com\r\n"
                   "Transfer-Encoding: chunked\r\nContent-Length: 42\r\n\r\n");
}

static void test_b02_duplicate_cl(void **state)
{
    (void)state;
    assert_req_400(
        "POST /public/x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n"
        "Content-Length: 47\r\n\r\nhelloGET /admin HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_req_400("POST /public/x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n"
                   "Content-Length: 5\r\n\r\nhello");
    assert_req_400("POST /public/x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5, 5\r\n\r\n"
                   "hello");
}

static void test_b03_invalid_cl(void **state)
{
    (void)state;
    assert_req_400("POST /public/x HTTP/1.1\r\nHost: example.com\r\nContent-Length: \r\n"
                   "Content-Length: 42\r\n\r\nGET /admin HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42,\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ,42\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +42\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4 2\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x2a\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\xc2\xb2\r\n\r\n");
}

static void test_b04_te_obfuscation(void **state)
{
    (void)state;
    assert_req_400(
        "POST /public/x HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\t\r\n"
        "Content-Length: 47\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n"
                   "Content-Length: 47\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  chunked \r\n"
                   "Content-Length: 47\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n"
                   "Content-Length: 47\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n"
                   "Content-Length: 47\r\n\r\n");
    /* Without the Content-Length: a non-chunked final coding is still refused. */
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n");
}

static void test_b05_te_lists(void **state)
{
    (void)state;
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n"
                   "Content-Length: 47\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n");
    assert_req_400(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip, chunked\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n");
    assert_req_400("POST /public/x HTTP/1.0\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"
                   "\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: example.com\r\n\r\n");
}

static void test_b06_space_before_colon(void **state)
{
    (void)state;
    assert_req_400(
        "POST /public/x HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding : chunked\r\n"
        "Content-Length: 47\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost : a\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost\t: a\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nX-A\x01: 1\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nX A: 1\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nX-A(: 1\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n");
}

static void test_b07_obs_fold(void **state)
{
    (void)state;
    assert_req_400("POST /public/x HTTP/1.1\r\nHost: example.com\r\nX-Note: a\r\n"
                   " Content-Length: 42\r\n\r\nGET /admin HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 42\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\nHost: a\r\nX-Note: a\r\n\tb\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\n Host: a\r\n\r\n");
    assert_req_400("POST / HTTP/1.1\r\n\tHost: a\r\n\r\n");
}

static void test_b08_bare_lf_cr_nul(void **state)
{
    (void)state;
    assert_req_400(
        "GET /public/x HTTP/1.1\r\nHost: example.com\r\nX-Note: a\nContent-Length: 42\r\n"
        "\r\nGET /admin HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: example.com\rX\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: a\r\nX-Note: a\x00"
                   "b\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: a\r\nX-Note: a\x01\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: a\r\nX-Note: a\x7f\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: a\r\nX-Note: a\x1b[0m\r\n\r\n");
    /* the same bytes past the first eight of a value (the word-at-a-time scan) */
    assert_req_400("GET / HTTP/1.1\r\nHost: a\r\nX-Note: 0123456789abcdef\x01\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: a\r\nX-Note: 0123456789abcdef\x7f\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: a\r\nX-Note: 0123456789abcdef\nX: 1\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: a\r\nX-Note: 0123456789abcdef\x00\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: a\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: a\r\n\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: a\r\n\rX");
    assert_req_400("GET / HTTP/1.1\r\nHost: a\r\nX-Note: a\r\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: a\r\nX-Note\n: a\r\n\r\n");
}

/* Name and value lengths from B09, each parsed without truncation. */
static void check_b09_length(size_t n, int name)
{
    sb_reset();
    sb_add("POST /public/x HTTP/1.1\r\nHost: example.com\r\n");
    if (name) {
        sb_add("Content-Length0");
        sb_fill('a', n - 15);
        sb_add(":\r\n");
    } else {
        sb_add("X-Long: ");
        sb_fill('0', n);
        sb_add("\r\n");
    }
    sb_add("Content-Length: 42\r\n\r\nGET /admin HTTP/1.1\r\nHost: example.com\r\n\r\n");
    int rc = req_lim(g_sb, g_sb_len, &g_big_lim);
    assert_int_equal(rc, (int)(g_sb_len - 42));
    assert_int_equal(g_msg.num_headers, 3);
    if (name) {
        assert_int_equal(g_msg.headers[1].name.len, n);
        assert_int_equal(g_msg.headers[1].value.len, 0);
    } else {
        assert_int_equal(g_msg.headers[1].value.len, n);
    }
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_LENGTH);
    assert_int_equal(g_msg.content_length, 42);
    assert_int_equal(tp_http_header_find(&g_msg, LIT("content-length"), 0), 2);
    assert_int_equal(tp_http_header_find(&g_msg, LIT("content-length"), 3), -1);
}

static void test_b09_long_names(void **state)
{
    (void)state;
    static const size_t lens[] = {255, 256, 257, 270, 511, 512, 65536};

    for (size_t i = 0; i < TP_ARRAY_LEN(lens); i++) {
        check_b09_length(lens[i], 1);
        check_b09_length(lens[i], 0);
    }
    /* With the 4 KiB per-field limit the 65 536-byte name is refused with 431. */
    sb_reset();
    sb_add("POST / HTTP/1.1\r\nHost: a\r\n");
    sb_fill('a', 65536);
    sb_add(":\r\nContent-Length: 42\r\n\r\n");
    struct tp_http_limits lim = g_big_lim;
    lim.max_field_bytes = 4096;
    assert_int_equal(req_lim(g_sb, g_sb_len, &lim), TP_ETOOBIG);
    assert_int_equal(g_status, 431);
}

/* ---- B17, B22 ------------------------------------------------------------------------------ */

static void test_b17_fragment(void **state)
{
    (void)state;
    assert_req_400("GET /admin/users#.css HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_req_400("GET /public/a#/../../admin/users HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_req_400("GET /public/a?x#y HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_req_400("GET http://example.com/#x HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_req_400("GET /public/a#");
}

static void test_b22_host(void **state)
{
    (void)state;
    assert_req_400("GET /public/x HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: a.example.com\r\nhost: a.example.com\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: example.com/admin\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: user1@example.com\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: example.com:8o\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: example.com:99999\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: example.com:65536\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: example.com:000080\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: example.com:\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: example.com:80:80\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: :80\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: \r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: example.com?x\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: example.com#x\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: example%2ecom\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: admin..example.com\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: example.com..\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: .example.com\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: []\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n");
    assert_req_400("GET / HTTP/1.1\r\nHost: [v1.x]\r\n\r\n");
    /* Input D: authority-form outside CONNECT, and CONNECT itself (not proxied). */
    assert_req_400("GET example.com:80 HTTP/1.1\r\nHost: example.com:80\r\n\r\n");
    assert_req_400("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");

    assert_req_ok("GET / HTTP/1.1\r\nHost: example.com:65535\r\n\r\n");
    assert_slice(g_msg.host, "example.com:65535");
    assert_req_ok("GET / HTTP/1.1\r\nHost: ADMIN.Example.COM.\r\n\r\n");
    assert_req_ok("GET / HTTP/1.1\r\nHost: admin.example.com.:443\r\n\r\n");
    assert_req_ok("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    assert_req_ok("GET / HTTP/1.1\r\nHost: [2001:db8::192.0.2.1]\r\n\r\n");
    assert_req_ok("GET / HTTP/1.1\r\nHost: 192.168.0.1:80\r\n\r\n");
    assert_req_ok("GET / HTTP/1.1\r\nHost:\texample.com \r\n\r\n");
    assert_slice(g_msg.host, "example.com");
}

/* ---- B48 and the other limits -------------------------------------------------------------- */

static void test_b48_limits(void **state)
{
    (void)state;
    /* (a) one 20 KiB Cookie */
    sb_reset();
    sb_add("GET /public/x HTTP/1.1\r\nHost: example.com\r\nCookie: ");
    sb_fill('c', 20 * 1024);
    sb_add("\r\n\r\n");
    assert_int_equal(req(g_sb, g_sb_len), TP_ETOOBIG);
    assert_int_equal(g_status, 431);

    /* (b) 150 headers */
    sb_reset();
    sb_add("GET /public/x HTTP/1.1\r\nHost: example.com\r\n");
    for (size_t i = 0; i < 150; i++) {
        sb_add("X-H");
        sb_num(i);
        sb_add(": v\r\n");
    }
    sb_add("\r\n");
    assert_int_equal(req(g_sb, g_sb_len), TP_ETOOBIG);
    assert_int_equal(g_status, 431);

    /* (c) a 16 KiB request line */
    sb_reset();
    sb_add("GET /");
    sb_fill('a', 16 * 1024);
    sb_add(" HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_int_equal(req(g_sb, g_sb_len), TP_ETOOBIG);
    assert_int_equal(g_status, 414);
}

static void test_limits_incomplete(void **state)
{
    (void)state;
    /* 431 while the head is still incomplete but already larger than the budget */
    sb_reset();
    sb_add("GET / HTTP/1.1\r\nHost: example.com\r\n");
    for (size_t i = 0; g_sb_len <= g_lim.max_header_bytes; i++) {
        sb_add("X-H");
        sb_num(i);
        sb_add(": ");
        sb_fill('v', 1000);
        sb_add("\r\n");
    }
    assert_int_equal(req(g_sb, g_sb_len), TP_ETOOBIG);
    assert_int_equal(g_status, 431);
    /* ... and EAGAIN at exactly the budget, since the head could still end there */
    assert_int_equal(req(g_sb, g_lim.max_header_bytes), TP_EAGAIN);

    /* 414 while the request line is incomplete but the target is already too long */
    sb_reset();
    sb_add("GET /");
    sb_fill('a', g_lim.max_uri_bytes);
    assert_int_equal(req(g_sb, g_sb_len), TP_ETOOBIG);
    assert_int_equal(g_status, 414);

    /* 414 also when the URI limit is far below the head limit */
    struct tp_http_limits lim = g_lim;
    lim.max_uri_bytes = 16;
    assert_int_equal(req_lim(LIT("GET /0123456789abcde"), &lim), TP_EAGAIN);
    assert_int_equal(req_lim(LIT("GET /0123456789abcdef"), &lim), TP_ETOOBIG);
    assert_int_equal(g_status, 414);
    assert_int_equal(req_lim(LIT("GET /0123456789abcde HTTP/1.1\r\nHost: a\r\n\r\n"), &lim), 42);

    /* a single incomplete field line already over max_field_bytes */
    sb_reset();
    sb_add("GET / HTTP/1.1\r\nHost: a\r\nCookie: ");
    sb_fill('c', g_lim.max_field_bytes);
    assert_int_equal(req(g_sb, g_sb_len), TP_ETOOBIG);
    assert_int_equal(g_status, 431);
}

static void test_limits_boundaries(void **state)
{
    (void)state;
    struct tp_http_limits lim = {
        .max_header_bytes = 64, .max_headers = 2, .max_uri_bytes = 8, .max_field_bytes = 10};

    /* field line of exactly max_field_bytes (name + ':' + value), then one more */
    assert_true(req_lim(LIT("GET / HTTP/1.1\r\nHost: a\r\nX: 1234567\r\n\r\n"), &lim) > 0);
    assert_int_equal(req_lim(LIT("GET / HTTP/1.1\r\nHost: a\r\nX: 12345678\r\n\r\n"), &lim),
                     TP_ETOOBIG);
    assert_int_equal(g_status, 431);
    /* the CR of a line at the limit whose LF has not arrived yet does not count */
    assert_int_equal(req_lim(LIT("GET / HTTP/1.1\r\nHost: a\r\nX: 1234567\r"), &lim), TP_EAGAIN);
    assert_int_equal(req_lim(LIT("GET / HTTP/1.1\r\nHost: a\r\nX: 12345678"), &lim), TP_ETOOBIG);
    /* exactly max_headers fields, then one more */
    assert_true(req_lim(LIT("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n"), &lim) > 0);
    assert_int_equal(req_lim(LIT("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n"), &lim),
                     TP_ETOOBIG);
    assert_int_equal(g_status, 431);
    /* target of exactly max_uri_bytes, then one more */
    assert_true(req_lim(LIT("GET /1234567 HTTP/1.1\r\nHost: a\r\n\r\n"), &lim) > 0);
    assert_int_equal(req_lim(LIT("GET /12345678 HTTP/1.1\r\nHost: a\r\n\r\n"), &lim), TP_ETOOBIG);
    assert_int_equal(g_status, 414);
    /* head of exactly max_header_bytes (64), then one more byte */
    assert_int_equal(req_lim(LIT("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n"
                                 "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n"),
                             &lim),
                     33);
    assert_int_equal(req_lim(LIT("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n"
                                 "\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
                             &lim),
                     TP_ETOOBIG);
    assert_int_equal(req_lim(LIT("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n"
                                 "\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost:a\r\n\r\n"),
                             &lim),
                     64);
}

/* ---- responses ----------------------------------------------------------------------------- */

#define assert_resp_ok(lit) assert_int_equal(resp(LIT(lit)), (int)(sizeof(lit) - 1))
#define assert_resp_err(lit) assert_int_equal(resp(LIT(lit)), TP_EINVAL)

static void test_response_status_line(void **state)
{
    (void)state;
    assert_resp_ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
    assert_int_equal(g_msg.status, 200);
    assert_slice(g_msg.reason, "OK");
    assert_int_equal(g_msg.minor_version, 1);
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_LENGTH);
    assert_int_equal(g_msg.content_length, 5);
    assert_int_equal(g_msg.host.len, 0);
    assert_int_equal(g_msg.method.len, 0);
    assert_resp_ok("HTTP/1.0 404 Not \t Found \xc3\xa9\r\n\r\n");
    assert_slice(g_msg.reason, "Not \t Found \xc3\xa9");
    assert_int_equal(g_msg.minor_version, 0);
    assert_resp_ok("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(g_msg.reason.len, 0);
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_NONE);
    assert_resp_ok("HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n");
    assert_int_equal(g_msg.reason.len, 0);
    assert_int_equal(g_msg.status, 200);
    assert_resp_ok("HTTP/1.1 599 X\r\nContent-Length: 1\r\n\r\n");

    assert_resp_err("HTTP/1.1 20 OK\r\n\r\n");
    assert_resp_err("HTTP/1.1 2000 OK\r\n\r\n");
    assert_resp_err("HTTP/1.1 600 OK\r\n\r\n");
    assert_resp_err("HTTP/1.1 099 OK\r\n\r\n");
    assert_resp_err("HTTP/1.1  200 OK\r\n\r\n");
    assert_resp_err("HTTP/2 200 OK\r\n\r\n");
    assert_resp_err("HTTP/2.0 200 OK\r\n\r\n");
    assert_resp_err("HTTP/1.1 200 OK\n\r\n");
    assert_resp_err("HTTP/1.1 200 O\rK\r\n\r\n");
    assert_resp_err("HTTP/1.1 200 O\x01K\r\n\r\n");
    assert_resp_err("\r\nHTTP/1.1 200 OK\r\n\r\n");
    assert_resp_err("ICY 200 OK\r\n\r\n");
}

static void test_response_framing(void **state)
{
    (void)state;
    /* B46: HEAD responses end at the blank line whatever the headers say */
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n"
                               "Content-Type: application/octet-stream\r\n\r\n";
    assert_int_equal(resp_m(LIT(head), "HEAD"), (int)(sizeof(head) - 1));
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_NONE);
    assert_int_equal(g_msg.content_length, 1234);
    assert_true(resp_m(LIT("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), "HEAD") > 0);
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_NONE);

    static const char *const no_body[] = {
        "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    };
    for (size_t i = 0; i < TP_ARRAY_LEN(no_body); i++) {
        assert_int_equal(resp(no_body[i], strlen(no_body[i])), (int)strlen(no_body[i]));
        assert_int_equal(g_msg.framing, TP_HTTP_BODY_NONE);
    }
    assert_int_equal(g_msg.flags, TP_HTTP_F_CONN_UPGRADE | TP_HTTP_F_HAS_UPGRADE);

    assert_resp_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_CHUNKED);
    assert_resp_ok("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_CHUNKED);
    assert_int_equal(g_msg.flags, TP_HTTP_F_HAS_CL | TP_HTTP_F_HAS_TE);
    assert_resp_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_CHUNKED);
    assert_resp_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_UNTIL_CLOSE);
    assert_resp_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\nContent-Length: 3\r\n\r\n");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_UNTIL_CLOSE);
    assert_resp_ok("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_UNTIL_CLOSE);
    assert_resp_ok("HTTP/1.0 200 OK\r\n\r\n");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_UNTIL_CLOSE);

    assert_resp_ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_LENGTH);
    assert_int_equal(g_msg.content_length, 5);
    assert_resp_ok("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n");
    assert_int_equal(g_msg.content_length, 5);
    assert_resp_ok("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(g_msg.framing, TP_HTTP_BODY_NONE);

    assert_resp_err("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
    assert_resp_err("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n");
    assert_resp_err("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n");
    assert_resp_err("HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n");
    assert_resp_err("HTTP/1.1 200 OK\r\nContent-Length: 0x2a\r\n\r\n");
    assert_resp_err("HTTP/1.1 200 OK\r\nContent-Length: 1,\r\n\r\n");
    assert_resp_err("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n");
    /* an invalid CL is an error even where it does not frame the body */
    assert_int_equal(resp_m(LIT("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"), "HEAD"),
                     TP_EINVAL);
    assert_resp_err("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n");
    assert_resp_err("HTTP/1.1 200 OK\r\nTransfer-Encoding: \"chunked\"\r\n\r\n");
    assert_resp_err("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
}

static void test_response_syntax(void **state)
{
    (void)state;
    assert_resp_err("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n");
    assert_resp_err("HTTP/1.1 200 OK\r\nTransfer-Encoding\t: chunked\r\n\r\n");
    assert_resp_err("HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 5\r\n\r\n");
    assert_resp_err("HTTP/1.1 200 OK\r\nX-A: 1\r\n\n");
    assert_resp_err("HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n");
    assert_resp_err("HTTP/1.1 200 OK\r\nX-A: 1\x00\r\n\r\n");
    assert_resp_err("HTTP/1.1 200 OK\r\nX-A: 1\rX\r\n\r\n");

    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\n";
    for (size_t i = 0; i < sizeof(in) - 1; i++)
        assert_int_equal(resp(in, i), TP_EAGAIN);
    assert_int_equal(resp(LIT(in)), (int)(sizeof(in) - 1));

    /* response limits reuse the request limits */
    sb_reset();
    sb_add("HTTP/1.1 200 OK\r\nSet-Cookie: ");
    sb_fill('c', 10000);
    assert_int_equal(resp(g_sb, g_sb_len), TP_ETOOBIG);
}

static void test_misc_api(void **state)
{
    (void)state;
    assert_string_equal(tp_http_reason(200), "OK");
    assert_string_equal(tp_http_reason(400), "Bad Request");
    assert_string_equal(tp_http_reason(414), "URI Too Long");
    assert_string_equal(tp_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(tp_http_reason(502), "Bad Gateway");
    assert_string_equal(tp_http_reason(505), "HTTP Version Not Supported");
    assert_string_equal(tp_http_reason(299), "Unknown");
    assert_string_equal(tp_http_reason(-1), "Unknown");
    assert_true(tp_http_is_tchar('a'));
    assert_true(tp_http_is_tchar('~'));
    assert_true(tp_http_is_tchar('!'));
    assert_false(tp_http_is_tchar(':'));
    assert_false(tp_http_is_tchar(' '));
    assert_false(tp_http_is_tchar('"'));
    assert_false(tp_http_is_tchar(0x80));
    assert_false(tp_http_is_tchar(0));
}

/* ---- chunked decoder ----------------------------------------------------------------------- */

static char g_out[1u << 16];
static size_t g_out_len;
static size_t g_used; /* input bytes consumed in total */

/*
 * Feed s to a fresh decoder, making step more bytes available each time the decoder asks for
 * more. Each call gets an exact-size heap copy of the unconsumed bytes.
 */
static int chunked_feed(const char *s, size_t len, size_t step, size_t max_trailer,
                        struct tp_http_chunked *c)
{
    size_t have = TP_MIN(step, len);

    tp_http_chunked_init(c);
    c->max_trailer_bytes = max_trailer;
    g_out_len = 0;
    g_used = 0;
    for (;;) {
        size_t n = have - g_used;
        char *b = malloc(n ? n : 1);
        assert_non_null(b);
        memcpy(b, s + g_used, n);
        size_t consumed = 99, off = 99, dlen = 99;
        int rc = tp_http_chunked_decode(c, b, n, &consumed, &off, &dlen);
        assert_true(consumed <= n);
        if (dlen > 0) {
            assert_int_equal(off + dlen, consumed);
            assert_true(g_out_len + dlen <= sizeof(g_out));
            memcpy(g_out + g_out_len, b + off, dlen);
            g_out_len += dlen;
        }
        free(b);
        g_used += consumed;
        if (rc != 0)
            return rc;
        if (consumed == 0 && dlen == 0) {
            if (have == len)
                return 0;
            have = TP_MIN(have + step, len);
        }
    }
}

/* Run both ways (byte by byte and all at once) and require the same outcome. */
static int chunked(const char *s, size_t len)
{
    struct tp_http_chunked c;
    int rc1 = chunked_feed(s, len, 1, 0, &c);
    size_t out1 = g_out_len, used1 = g_used;
    char first[256];
    memcpy(first, g_out, TP_MIN(out1, sizeof(first)));

    int rc2 = chunked_feed(s, len, len ? len : 1, 0, &c);
    assert_int_equal(rc1, rc2);
    assert_int_equal(out1, g_out_len);
    assert_int_equal(used1, g_used);
    assert_memory_equal(first, g_out, TP_MIN(out1, sizeof(first)));
    return rc2;
}

#define assert_chunked_ok(lit, body)                                                               \
    do {                                                                                           \
        assert_int_equal(chunked(LIT(lit)), 1);                                                    \
        assert_int_equal(g_out_len, sizeof(body) - 1);                                             \
        assert_memory_equal(g_out, body, sizeof(body) - 1);                                        \
    } while (0)

#define assert_chunked_err(lit) assert_int_equal(chunked(LIT(lit)), TP_EINVAL)

static void test_chunked_basic(void **state)
{
    (void)state;
    assert_chunked_ok("5\r\nhello\r\n0\r\n\r\n", "hello");
    assert_int_equal(g_used, 15);
    assert_chunked_ok("0\r\n\r\n", "");
    assert_chunked_ok("A\r\n0123456789\r\na\r\nabcdefghij\r\n000\r\n\r\n", "0123456789abcdefghij");
    /* B47: the trailer section is validated and skipped, the body is never cut */
    assert_chunked_ok("5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n", "hello world");
    assert_chunked_ok("1\r\nx\r\n0\r\nA: b\r\nC:\r\nD: \xc3\xa9 \t\r\n\r\n", "x");
    /* bytes after the body are not consumed */
    assert_int_equal(chunked(LIT("1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n")), 1);
    assert_int_equal(g_used, 11);
    /* incomplete bodies ask for more at every boundary */
    static const char in[] = "5;a=b\r\nhello\r\n0\r\nT: v\r\n\r\n";
    for (size_t i = 0; i < sizeof(in) - 1; i++) {
        assert_int_equal(chunked(in, i), 0);
        assert_int_equal(g_used, i);
    }
}

static void test_chunked_b10(void **state)
{
    (void)state;
    /* A */
    assert_chunked_err("1zz\r\nA\r\n0\r\n\r\n");
    /* B */
    assert_chunked_err("0x2a\r\nGET /admin HTTP/1.1\r\nHost: example.com\r\n\r\n\r\n0\r\n\r\n");
    /* D: more data than declared, no CRLF after it */
    assert_chunked_err("5\r\nhelloXX\r\n0\r\n\r\n");
    /* E */
    assert_chunked_err("ffffffffffffffffff\r\n");
    assert_chunked_err("10000000000000000\r\n");
    assert_chunked_err("00000000000000005\r\n");
    assert_chunked_err("-1\r\n");
    assert_chunked_err(" 5\r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5 \r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5\t\r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("+5\r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("\r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5\r\nhello\n0\r\n\r\n");
    assert_chunked_err("5\r\nhello\r0\r\n\r\n");
    assert_chunked_err("5\r\nhello\r\n0\r\n\n");
    assert_chunked_err("5\r\nhello\r\n0\n\r\n");

    /* C: a 33-bit size is kept whole, never truncated to 5 */
    static const char c_in[] = "100000005\r\nhelloGET /admin HTTP/1.1\r\nHost: example.com\r\n\r\n";
    struct tp_http_chunked c;
    assert_int_equal(chunked_feed(LIT("100000005\r\n"), 11, 0, &c), 0);
    assert_true(c.remaining == UINT64_C(0x100000005));
    assert_int_equal(chunked_feed(LIT(c_in), 1, 0, &c), 0);
    assert_int_equal(g_out_len, sizeof(c_in) - 1 - 11);
    assert_true(c.remaining == UINT64_C(0x100000005) - (sizeof(c_in) - 1 - 11));
    assert_int_equal(chunked_feed(LIT("ffffffffffffffff\r\n"), 5, 0, &c), 0);
    assert_true(c.remaining == UINT64_MAX);
    assert_int_equal(chunked_feed(LIT("0000000000000005\r\nhello\r\n0\r\n\r\n"), 3, 0, &c), 1);
}

static void test_chunked_extensions(void **state)
{
    (void)state;
    assert_chunked_ok("5;name=value\r\nhello\r\n0\r\n\r\n", "hello");
    assert_chunked_ok("5;name=\"quoted\"\r\nhello\r\n0;last\r\n\r\n", "hello");
    assert_chunked_ok("5;n=\"a \\\" b;c=d\\\\\"\r\nhello\r\n0\r\n\r\n", "hello");
    assert_chunked_ok("5 ; a = b ;c\t;d=\"\"\r\nhello\r\n0\r\n\r\n", "hello");
    assert_chunked_ok("5;a;b;c\r\nhello\r\n0\r\n\r\n", "hello");
    assert_chunked_ok("5;a=\"\xc3\xa9\"\r\nhello\r\n0\r\n\r\n", "hello");

    assert_chunked_err("5;\r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5;=v\r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5;a=\r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5;a \r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5;a=b \r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5;a=b\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5;a\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5;a=\"unterminated\r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5;a=\"x\"y\r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5;a=b\rX\r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5;a=b=c\r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5;a@b\r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n");
    assert_chunked_err("5,6\r\nhello\r\n0\r\n\r\n");
}

static void test_chunked_trailers(void **state)
{
    (void)state;
    assert_chunked_err("0\r\n folded: x\r\n\r\n");
    assert_chunked_err("0\r\nA : b\r\n\r\n");
    assert_chunked_err("0\r\n: b\r\n\r\n");
    assert_chunked_err("0\r\nA: b\nC: d\r\n\r\n");
    assert_chunked_err("0\r\nA: b\rC: d\r\n\r\n");
    assert_chunked_err("0\r\nA: \x00\r\n\r\n");
    assert_chunked_err("0\r\nNoColon\r\n\r\n");

    struct tp_http_chunked c;
    static const char small[] = "0\r\nX-A: 0123456789\r\nX-B: 0123456789\r\n\r\n";
    assert_int_equal(chunked_feed(LIT(small), 1, 16, &c), TP_ETOOBIG);
    assert_int_equal(chunked_feed(LIT(small), 1, 64, &c), 1);

    /* the default limit (8192) */
    sb_reset();
    sb_add("0\r\nX-Big: ");
    sb_fill('t', 9000);
    sb_add("\r\n\r\n");
    assert_int_equal(chunked_feed(g_sb, g_sb_len, g_sb_len, 0, &c), TP_ETOOBIG);
    /* errors are sticky */
    size_t consumed, off, dlen;
    assert_int_equal(tp_http_chunked_decode(&c, LIT("0\r\n\r\n"), &consumed, &off, &dlen),
                     TP_ETOOBIG);

    /* an endless extension is capped too */
    sb_reset();
    sb_add("5;x=");
    sb_fill('e', 9000);
    sb_add("\r\nhello\r\n0\r\n\r\n");
    assert_int_equal(chunked_feed(g_sb, g_sb_len, 1000, 0, &c), TP_ETOOBIG);
}

static void test_chunked_api(void **state)
{
    (void)state;
    struct tp_http_chunked c;
    size_t consumed, off, dlen;

    tp_http_chunked_init(&c);
    /* data is returned in runs at the end of the consumed range */
    assert_int_equal(
        tp_http_chunked_decode(&c, LIT("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), &consumed, &off, &dlen),
        0);
    assert_int_equal(off, 3);
    assert_int_equal(dlen, 3);
    assert_int_equal(consumed, 6);
    assert_int_equal(
        tp_http_chunked_decode(&c, LIT("\r\n2\r\nde\r\n0\r\n\r\n"), &consumed, &off, &dlen), 0);
    assert_int_equal(off, 5);
    assert_int_equal(dlen, 2);
    assert_int_equal(consumed, 7);
    assert_int_equal(tp_http_chunked_decode(&c, LIT("\r\n0\r\n\r\nX"), &consumed, &off, &dlen), 1);
    assert_int_equal(consumed, 7);
    assert_int_equal(dlen, 0);
    /* finished: further calls consume nothing */
    assert_int_equal(tp_http_chunked_decode(&c, LIT("X"), &consumed, &off, &dlen), 1);
    assert_int_equal(consumed, 0);
    /* errors are sticky and report where they happened */
    tp_http_chunked_init(&c);
    assert_int_equal(
        tp_http_chunked_decode(&c, LIT("0\r\nA:b\r\nbad line\r\n"), &consumed, &off, &dlen),
        TP_EINVAL);
    assert_int_equal(consumed, 11);
    assert_int_equal(tp_http_chunked_decode(&c, LIT("0\r\n\r\n"), &consumed, &off, &dlen),
                     TP_EINVAL);
    assert_int_equal(consumed, 0);
    /* empty input */
    tp_http_chunked_init(&c);
    assert_int_equal(tp_http_chunked_decode(&c, "", 0, &consumed, &off, &dlen), 0);
    assert_int_equal(consumed, 0);
}

static int teardown(void **state)
{
    (void)state;
    free(g_buf);
    g_buf = NULL;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_keepalive),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_http10_without_host),
        cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_options_asterisk),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_connection_tokens),
        cmocka_unit_test(test_te_trailers),
        cmocka_unit_test(test_chunked_request),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_leading_crlf_and_values),
        cmocka_unit_test(test_header_find),
        cmocka_unit_test(test_incomplete_request_prefixes),
        cmocka_unit_test(test_status_out_optional),
        cmocka_unit_test(test_request_line_errors),
        cmocka_unit_test(test_version_505),
        cmocka_unit_test(test_b01_cl_and_te),
        cmocka_unit_test(test_b02_duplicate_cl),
        cmocka_unit_test(test_b03_invalid_cl),
        cmocka_unit_test(test_b04_te_obfuscation),
        cmocka_unit_test(test_b05_te_lists),
        cmocka_unit_test(test_b06_space_before_colon),
        cmocka_unit_test(test_b07_obs_fold),
        cmocka_unit_test(test_b08_bare_lf_cr_nul),
        cmocka_unit_test(test_b09_long_names),
        cmocka_unit_test(test_b17_fragment),
        cmocka_unit_test(test_b22_host),
        cmocka_unit_test(test_b48_limits),
        cmocka_unit_test(test_limits_incomplete),
        cmocka_unit_test(test_limits_boundaries),
        cmocka_unit_test(test_response_status_line),
        cmocka_unit_test(test_response_framing),
        cmocka_unit_test(test_response_syntax),
        cmocka_unit_test(test_misc_api),
        cmocka_unit_test(test_chunked_basic),
        cmocka_unit_test(test_chunked_b10),
        cmocka_unit_test(test_chunked_extensions),
        cmocka_unit_test(test_chunked_trailers),
        cmocka_unit_test(test_chunked_api),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}

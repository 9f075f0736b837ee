/*
 * libFuzzer target for src/http: the request parser, the response parser and the chunked
 * decoder run on every input, whole and cut into prefixes or pieces, under two sets of limits.
 *
 * Invariants (abort() on failure): a head length never exceeds the input or the head limit;
 * every slice lies inside the head; stored fields are syntactically clean; a request is never
 * close-delimited; a prefix of an accepted head is TP_EAGAIN and a prefix that fails implies
 * the whole input fails; the chunked decoder consumes only what it was given, returns data at
 * the end of the consumed range, and gives the same result fed at once or piece by piece.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "turnpike/http.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

#define FZ_MAX_HEADERS 64

static const struct tp_http_limits fz_limits[2] = {
    {.max_header_bytes = 65536,
     .max_headers = FZ_MAX_HEADERS,
     .max_uri_bytes = 65536,
     .max_field_bytes = 65536},
    {.max_header_bytes = 256, .max_headers = 8, .max_uri_bytes = 64, .max_field_bytes = 96},
};

static struct tp_http_header fz_headers[FZ_MAX_HEADERS];

static int fz_inside(struct tp_slice s, const char *buf, size_t len)
{
    if (s.len == 0)
        return 1;
    return s.ptr >= buf && s.len <= len && (size_t)(s.ptr - buf) <= len - s.len;
}

static int fz_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Invariants of a head that was accepted. */
static void fz_check_head(const struct tp_http_message *m, int rc, const char *buf, size_t len,
                          const struct tp_http_limits *lim, int is_request)
{
    size_t n = (size_t)rc;

    CHECK(n == m->head_len);
    CHECK(n <= len && n <= lim->max_header_bytes);
    CHECK(n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
    CHECK(m->num_headers <= lim->max_headers);
    CHECK(m->minor_version == 0 || m->minor_version == 1);
    CHECK(m->framing <= TP_HTTP_BODY_UNTIL_CLOSE);
    CHECK(fz_inside(m->method, buf, n) && fz_inside(m->target, buf, n));
    CHECK(fz_inside(m->query, buf, n) && fz_inside(m->target_authority, buf, n));
    CHECK(fz_inside(m->reason, buf, n) && fz_inside(m->host, buf, n));
    /* the one slice allowed outside the buffer: the "/" of an absolute-form without a path */
    CHECK(fz_inside(m->path, buf, n) || (m->path.len == 1 && m->path.ptr[0] == '/'));
    for (size_t i = 0; i < m->num_headers; i++) {
        struct tp_slice k = m->headers[i].name;
        struct tp_slice v = m->headers[i].value;
        CHECK(k.len > 0 && fz_inside(k, buf, n) && fz_inside(v, buf, n));
        for (size_t j = 0; j < k.len; j++)
            CHECK(tp_http_is_tchar((unsigned char)k.ptr[j]));
        for (size_t j = 0; j < v.len; j++) {
            unsigned char c = (unsigned char)v.ptr[j];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        CHECK(v.len == 0 || (!fz_ows(v.ptr[0]) && !fz_ows(v.ptr[v.len - 1])));
    }
    if (m->framing == TP_HTTP_BODY_LENGTH)
        CHECK(m->content_length > 0 && m->content_length <= INT64_MAX &&
              (m->flags & TP_HTTP_F_HAS_CL));
    if (m->framing == TP_HTTP_BODY_CHUNKED)
        CHECK(m->flags & TP_HTTP_F_HAS_TE);
    if (is_request) {
        CHECK(m->framing != TP_HTTP_BODY_UNTIL_CLOSE);
        CHECK(m->method.len > 0 && m->target.len > 0 && m->path.len > 0);
        CHECK(m->minor_version == 0 || m->host.len > 0);
        CHECK(!((m->flags & TP_HTTP_F_HAS_CL) && (m->flags & TP_HTTP_F_HAS_TE)));
        for (size_t j = 0; j < m->target.len; j++) {
            unsigned char c = (unsigned char)m->target.ptr[j];
            CHECK(c > 0x20 && c < 0x7f && c != '#');
        }
    } else {
        CHECK(m->status >= 100 && m->status <= 599);
    }
}

static int fz_request(const uint8_t *data, size_t len, const struct tp_http_limits *lim,
                      struct tp_http_message *m)
{
    /* an exact-size copy, so that a read past len is caught */
    char *buf = malloc(len ? len : 1);
    int status = -1;

    CHECK(buf != NULL);
    if (len)
        memcpy(buf, data, len);
    m->headers = fz_headers;
    int rc = tp_http_parse_request(buf, len, m, lim, &status);
    if (rc > 0) {
        CHECK(status == 0);
        fz_check_head(m, rc, buf, len, lim, 1);
    } else if (rc == TP_EAGAIN) {
        CHECK(status == 0);
    } else if (rc == TP_EINVAL) {
        CHECK(status == 400 || status == 505);
    } else {
        CHECK(rc == TP_ETOOBIG && (status == 414 || status == 431));
    }
    free(buf);
    return rc;
}

static int fz_response(const uint8_t *data, size_t len, const struct tp_http_limits *lim,
                       struct tp_slice method, struct tp_http_message *m)
{
    char *buf = malloc(len ? len : 1);

    CHECK(buf != NULL);
    if (len)
        memcpy(buf, data, len);
    m->headers = fz_headers;
    int rc = tp_http_parse_response(buf, len, method, m, lim);
    if (rc > 0)
        fz_check_head(m, rc, buf, len, lim, 0);
    else
        CHECK(rc == TP_EAGAIN || rc == TP_EINVAL || rc == TP_ETOOBIG);
    free(buf);
    return rc;
}

/* Prefix lengths to try: all of them for small inputs, a sample otherwise. */
static size_t fz_next_prefix(size_t p, size_t len)
{
    if (len <= 256)
        return p + 1;
    return p + 1 + len / 32;
}

/* A cut input must be TP_EAGAIN before the head ends, and can only fail if the whole fails. */
static void fz_prefix_consistency(int full, size_t p, int rc)
{
    if (full > 0) {
        if (p < (size_t)full)
            CHECK(rc == TP_EAGAIN);
        else
            CHECK(rc == full);
    } else if (rc != TP_EAGAIN) {
        CHECK(full < 0 && full != TP_EAGAIN);
    }
}

static void fz_heads(const uint8_t *data, size_t size, const struct tp_http_limits *lim)
{
    struct tp_http_message m;
    static const struct tp_slice methods[2] = {{"GET", 3}, {"HEAD", 4}};

    int full = fz_request(data, size, lim, &m);
    for (size_t p = 0; p < size; p = fz_next_prefix(p, size))
        fz_prefix_consistency(full, p, fz_request(data, p, lim, &m));

    for (int k = 0; k < 2; k++) {
        full = fz_response(data, size, lim, methods[k], &m);
        for (size_t p = 0; p < size && k == 0; p = fz_next_prefix(p, size))
            fz_prefix_consistency(full, p, fz_response(data, p, lim, methods[k], &m));
    }
}

struct fz_run {
    int rc;
    size_t used;
    size_t out_len;
    uint8_t *out;
};

/*
 * Feed buf to a fresh decoder, offering at most step new bytes each time it needs more; the
 * decoder sees exact-size copies of what it has not consumed yet.
 */
static void fz_chunked_run(const uint8_t *data, size_t len, size_t step, size_t max_trailer,
                           struct fz_run *r)
{
    struct tp_http_chunked c;
    size_t have = step < len ? step : len;

    tp_http_chunked_init(&c);
    c.max_trailer_bytes = max_trailer;
    r->rc = 0;
    r->used = 0;
    r->out_len = 0;
    for (;;) {
        size_t n = have - r->used;
        char *b = malloc(n ? n : 1);
        CHECK(b != NULL);
        if (n)
            memcpy(b, data + r->used, n);
        size_t consumed, off, dlen;
        int rc = tp_http_chunked_decode(&c, b, n, &consumed, &off, &dlen);
        CHECK(consumed <= n);
        CHECK(rc == 0 || rc == 1 || rc == TP_EINVAL || rc == TP_ETOOBIG);
        if (dlen > 0) {
            CHECK(rc == 0 && off + dlen == consumed);
            memcpy(r->out + r->out_len, b + off, dlen);
            r->out_len += dlen;
        }
        free(b);
        r->used += consumed;
        if (rc != 0) {
            r->rc = rc;
            return;
        }
        if (consumed == 0 && dlen == 0) {
            if (have == len)
                return;
            have = have + step < len ? have + step : len;
        }
    }
}

static void fz_chunked(const uint8_t *data, size_t len, size_t max_trailer)
{
    static const size_t steps[] = {1, 3, 64};
    struct fz_run whole, piece;

    whole.out = malloc(len ? len : 1);
    piece.out = malloc(len ? len : 1);
    CHECK(whole.out != NULL && piece.out != NULL);
    fz_chunked_run(data, len, len ? len : 1, max_trailer, &whole);
    CHECK(whole.out_len <= whole.used && whole.used <= len);
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        fz_chunked_run(data, len, steps[i], max_trailer, &piece);
        CHECK(piece.rc == whole.rc && piece.used == whole.used);
        CHECK(piece.out_len == whole.out_len);
        CHECK(memcmp(piece.out, whole.out, whole.out_len) == 0);
    }
    free(whole.out);
    free(piece.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tp_http_message m;

    for (size_t i = 0; i < 2; i++)
        fz_heads(data, size, &fz_limits[i]);

    fz_chunked(data, size, 0);
    fz_chunked(data, size, 16);

    /* the body of a chunked request, where the corpus puts one */
    int rc = fz_request(data, size, &fz_limits[0], &m);
    if (rc > 0 && m.framing == TP_HTTP_BODY_CHUNKED)
        fz_chunked(data + rc, size - (size_t)rc, 0);
    return 0;
}

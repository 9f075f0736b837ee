/*
 * turnpike — strict, non-allocating HTTP/1.1 message head parser (RFC 9112, RFC 9110).
 *
 * One pass over the bytes: the start line and every field line are checked for syntax as they
 * are scanned; the meaning of the framing headers (Host, Content-Length, Transfer-Encoding,
 * Connection, ...) is derived afterwards from the stored field array, only once the whole head
 * has arrived, so repeated calls on a growing buffer do no semantic work.
 *
 * Anything two implementations could frame differently is an error (CASES.md B01–B10, B22).
 */
#include "turnpike/http.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

/* Character classes, one bit each, looked up in tp__char_class. */
enum {
    TP__C_TCHAR = 1,  /* token character, RFC 9110 §5.6.2 */
    TP__C_VALUE = 2,  /* field-vchar / SP / HTAB / obs-text, RFC 9110 §5.5 */
    TP__C_TARGET = 4, /* visible ASCII except '#': what a request-target may hold */
    TP__C_HOST = 8,   /* reg-name: unreserved / sub-delims, RFC 3986 §3.2.2 ('%' left out) */
    TP__C_HEX = 16,   /* HEXDIG */
};

/* clang-format off */
static const uint8_t tp__char_class[256] = {
    /* 00 */  0,  0,  0,  0,  0,  0,  0,  0,  0,  2,  0,  0,  0,  0,  0,  0,
    /* 10 */  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    /* 20 */  2, 15,  6,  3, 15,  7, 15, 15, 14, 14, 15, 15, 14, 15, 15,  6,
    /* 30 */ 31, 31, 31, 31, 31, 31, 31, 31, 31, 31,  6, 14,  6, 14,  6,  6,
    /* 40 */  6, 31, 31, 31, 31, 31, 31, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    /* 50 */ 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,  6,  6,  6,  7, 15,
    /* 60 */  7, 31, 31, 31, 31, 31, 31, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    /* 70 */ 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,  6,  7,  6, 15,  0,
    /* 80 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
    /* 90 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
    /* a0 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
    /* b0 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
    /* c0 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
    /* d0 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
    /* e0 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
    /* f0 */  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,
};
/* clang-format on */

#define TP__IS(c, cls) (tp__char_class[(unsigned char)(c)] & (cls))

/* Largest Content-Length accepted: it must fit an off_t on every platform we care about. */
#define TP__CL_MAX ((uint64_t)INT64_MAX)

/* Parse state shared by the request and response parsers. */
struct tp__head {
    const char *end;                  /* 1 + last byte we may look at: min(len, head limit) */
    int truncated;                    /* more bytes were received than the head limit */
    const struct tp_http_limits *lim; /* caller's limits */
    int status;                       /* HTTP status to answer with when an error is returned */
};

/* Framing-relevant facts collected from the field lines. */
struct tp__facts {
    size_t host_count;
    size_t cl_count; /* Content-Length field lines */
    int cl_bad;      /* a value (or list element) is not 1*DIGIT, or values differ */
    uint64_t cl;
    size_t te_lines;
    size_t te_chunked;   /* "chunked" elements over all Transfer-Encoding lines */
    int te_last_chunked; /* the final coding of the last line is "chunked" */
    int te_bad;          /* an empty, quoted or otherwise non-token coding */
};

static int tp__fail(struct tp__head *h, int status)
{
    h->status = status;
    return (status == 414 || status == 431) ? TP_ETOOBIG : TP_EINVAL;
}

/* An incomplete head that already fills the header budget can never succeed: say so now. */
static int tp__need_more(struct tp__head *h)
{
    if (h->truncated)
        return tp__fail(h, 431);
    return TP_EAGAIN;
}

/*
 * Same, but a field line that is already too long is refused before its end arrives. pos is
 * where the scan stopped (the end, or a CR whose LF has not arrived) so the CR does not count.
 */
static int tp__line_need_more(struct tp__head *h, const char *line, const char *pos)
{
    if ((size_t)(pos - line) > h->lim->max_field_bytes)
        return tp__fail(h, 431);
    return tp__need_more(h);
}

static int tp__is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static struct tp_slice tp__trim(const char *s, const char *e)
{
    while (s < e && tp__is_ows(*s))
        s++;
    while (e > s && tp__is_ows(e[-1]))
        e--;
    return (struct tp_slice){s, (size_t)(e - s)};
}

static int tp__is_token(struct tp_slice s)
{
    if (s.len == 0)
        return 0;
    for (size_t i = 0; i < s.len; i++)
        if (!TP__IS(s.ptr[i], TP__C_TCHAR))
            return 0;
    return 1;
}

/*
 * Next element of a comma-separated list (RFC 9110 §5.6.1) with OWS trimmed. Empty elements are
 * returned too, so each caller decides whether an empty element is harmless or an error.
 * rest->ptr == NULL marks the end of the list.
 */
static int tp__list_next(struct tp_slice *rest, struct tp_slice *item)
{
    if (rest->ptr == NULL)
        return 0;
    const char *s = rest->ptr;
    const char *e = s + rest->len;
    const char *comma = memchr(s, ',', rest->len);
    if (comma) {
        *item = tp__trim(s, comma);
        rest->ptr = comma + 1;
        rest->len = (size_t)(e - comma - 1);
    } else {
        *item = tp__trim(s, e);
        rest->ptr = NULL;
        rest->len = 0;
    }
    return 1;
}

/* 1*DIGIT only: no sign, no spaces, no base prefix, no list (CASES B03). */
static int tp__parse_cl(struct tp_slice s, uint64_t *out)
{
    uint64_t v = 0;

    if (s.len == 0)
        return -1;
    for (size_t i = 0; i < s.len; i++) {
        unsigned d = (unsigned char)s.ptr[i] - (unsigned)'0';
        if (d > 9)
            return -1;
        if (v > (TP__CL_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/*
 * uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2), stricter than the ABNF: no '%', no
 * empty label (".a", "a..b"; one trailing dot is allowed), port 1*5DIGIT <= 65535 (CASES B22).
 */
static int tp__host_valid(struct tp_slice v)
{
    const char *p = v.ptr;
    const char *end = p + v.len;

    if (p == end)
        return 0;
    if (*p == '[') {
        const char *lit = ++p;
        while (p < end && (TP__IS(*p, TP__C_HEX) || *p == ':' || *p == '.'))
            p++;
        if (p == end || *p != ']' || p == lit)
            return 0;
        p++;
    } else {
        const char *label = p;
        for (; p < end && TP__IS(*p, TP__C_HOST); p++) {
            if (*p == '.') {
                if (p == label)
                    return 0;
                label = p + 1;
            }
        }
        if (p == v.ptr)
            return 0;
    }
    if (p == end)
        return 1;
    if (*p++ != ':' || p == end || end - p > 5)
        return 0;
    unsigned port = 0;
    for (; p < end; p++) {
        unsigned d = (unsigned char)*p - (unsigned)'0';
        if (d > 9)
            return 0;
        port = port * 10 + d;
    }
    return port <= 65535;
}

/*
 * Match "HTTP/" DIGIT "." DIGIT against however many bytes have arrived, so that garbage is
 * refused at once instead of waiting for the header budget to fill up.
 */
static int tp__parse_version(struct tp__head *h, const char *p, int *major, int *minor)
{
    static const char tmpl[] = "HTTP/0.0";
    size_t avail = (size_t)(h->end - p);
    size_t n = TP_MIN(avail, (size_t)8);

    for (size_t i = 0; i < n; i++) {
        int ok = (i == 5 || i == 7) ? (p[i] >= '0' && p[i] <= '9') : p[i] == tmpl[i];
        if (!ok)
            return tp__fail(h, 400);
    }
    if (avail < 8)
        return tp__need_more(h);
    *major = p[5] - '0';
    *minor = p[7] - '0';
    return 0;
}

#define TP__ONES UINT64_C(0x0101010101010101)
#define TP__HIGH UINT64_C(0x8080808080808080)
/* Some byte of x is below n (n <= 0x80), or equal to c: the classic SWAR tests. */
#define TP__HAS_LESS(x, n) (((x)-TP__ONES * (n)) & ~(x)&TP__HIGH)
#define TP__HAS_BYTE(x, c) TP__HAS_LESS((x) ^ (TP__ONES * (c)), 1)

/*
 * Skip field-value bytes, eight at a time while a word holds no CTL and no DEL: values (cookies,
 * tokens, user agents) are most of a head, so this loop is where the parser spends its time.
 */
static const char *tp__skip_value(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        if (TP__HAS_LESS(x, 0x20) | TP__HAS_BYTE(x, 0x7f))
            break;
        p += 8;
    }
    while (p < end && TP__IS(*p, TP__C_VALUE))
        p++;
    return p;
}

/* Same for a request-target: visible ASCII except '#'. */
static const char *tp__skip_target(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        if (TP__HAS_LESS(x, 0x21) | (x & TP__HIGH) | TP__HAS_BYTE(x, 0x7f) | TP__HAS_BYTE(x, '#'))
            break;
        p += 8;
    }
    while (p < end && TP__IS(*p, TP__C_TARGET))
        p++;
    return p;
}

/* CRLF at p, with a bare CR refused (RFC 9112 §2.2). */
static int tp__expect_crlf(struct tp__head *h, const char *p)
{
    if (p == h->end)
        return tp__need_more(h);
    if (*p != '\r')
        return tp__fail(h, 400);
    if (p + 1 == h->end)
        return tp__need_more(h);
    if (p[1] != '\n')
        return tp__fail(h, 400);
    return 0;
}

/*
 * Field lines up to and including the empty line (RFC 9112 §5). Syntax only: values are
 * interpreted once the whole head is known.
 */
static int tp__parse_fields(struct tp__head *h, const char **pp, struct tp_http_message *msg)
{
    const char *p = *pp;
    const char *end = h->end;
    const struct tp_http_limits *lim = h->lim;

    for (;;) {
        if (p == end)
            return tp__need_more(h);
        if (*p == '\r') {
            int rc = tp__expect_crlf(h, p);
            if (rc != 0)
                return rc;
            *pp = p + 2;
            return 0;
        }
        const char *line = p;
        while (p < end && TP__IS(*p, TP__C_TCHAR))
            p++;
        if (p == end)
            return tp__line_need_more(h, line, p);
        /* Empty name covers obs-fold, bare LF and ": v"; otherwise SP/CTL before ':' (B06). */
        if (p == line || *p != ':')
            return tp__fail(h, 400);
        if (msg->num_headers >= lim->max_headers)
            return tp__fail(h, 431);
        const char *name_end = p++;
        while (p < end && tp__is_ows(*p))
            p++;
        const char *value = p;
        p = tp__skip_value(p, end);
        if (p == end || (*p == '\r' && p + 1 == end))
            return tp__line_need_more(h, line, p);
        /* NUL, LF or another CTL inside the value, or a bare CR (B08). */
        if (*p != '\r' || p[1] != '\n')
            return tp__fail(h, 400);
        if ((size_t)(p - line) > lim->max_field_bytes)
            return tp__fail(h, 431);
        struct tp_http_header *hdr = &msg->headers[msg->num_headers++];
        hdr->name = (struct tp_slice){line, (size_t)(name_end - line)};
        hdr->value = tp__trim(value, p);
        p += 2;
    }
}

/* Collect the transfer codings of one Transfer-Encoding line (RFC 9112 §6.1, §7). */
static void tp__scan_te(struct tp_slice v, struct tp__facts *f)
{
    struct tp_slice item;

    f->te_lines++;
    while (tp__list_next(&v, &item)) {
        f->te_last_chunked = TP_SLICE_IEQ(item, "chunked");
        if (f->te_last_chunked)
            f->te_chunked++;
        else if (!tp__is_token(item))
            f->te_bad = 1;
    }
}

/* Content-Length, possibly a list of equal values when a response allows it (RFC 9110 §8.6). */
static void tp__scan_cl(struct tp_slice v, int allow_list, struct tp__facts *f)
{
    struct tp_slice item;
    uint64_t n;

    if (!allow_list) {
        f->cl_count++;
        if (tp__parse_cl(v, &n) != 0)
            f->cl_bad = 1;
        else
            f->cl = n;
        return;
    }
    while (tp__list_next(&v, &item)) {
        if (tp__parse_cl(item, &n) != 0 || (f->cl_count > 0 && n != f->cl))
            f->cl_bad = 1;
        else
            f->cl = n;
        f->cl_count++;
    }
}

static unsigned tp__scan_connection(struct tp_slice v)
{
    struct tp_slice item;
    unsigned flags = 0;

    while (tp__list_next(&v, &item)) {
        if (TP_SLICE_IEQ(item, "close"))
            flags |= TP_HTTP_F_CONN_CLOSE;
        else if (TP_SLICE_IEQ(item, "keep-alive"))
            flags |= TP_HTTP_F_CONN_KEEPALIVE;
        else if (TP_SLICE_IEQ(item, "upgrade"))
            flags |= TP_HTTP_F_CONN_UPGRADE;
    }
    return flags;
}

/* The flag is set when any list element, up to its first ';', equals want. */
static int tp__list_has(struct tp_slice v, const char *want, size_t want_len)
{
    struct tp_slice item;

    while (tp__list_next(&v, &item)) {
        const char *semi = memchr(item.ptr, ';', item.len);
        if (semi)
            item = tp__trim(item.ptr, semi);
        if (tp_slice_eq_nocase(item, want, want_len))
            return 1;
    }
    return 0;
}

/*
 * Interpret the stored field lines once. Dispatch on the name length first: almost every
 * field is rejected by a single comparison.
 */
static void tp__scan_fields(struct tp_http_message *msg, int is_request, struct tp__facts *f)
{
    for (size_t i = 0; i < msg->num_headers; i++) {
        struct tp_slice n = msg->headers[i].name;
        struct tp_slice v = msg->headers[i].value;

        switch (n.len) {
        case 2:
            if (TP_SLICE_IEQ(n, "te") && tp__list_has(v, "trailers", 8))
                msg->flags |= TP_HTTP_F_TE_TRAILERS;
            break;
        case 4:
            if (TP_SLICE_IEQ(n, "host")) {
                f->host_count++;
                msg->host = v;
            }
            break;
        case 6:
            if (TP_SLICE_IEQ(n, "expect") && tp__list_has(v, "100-continue", 12))
                msg->flags |= TP_HTTP_F_EXPECT_CONTINUE;
            break;
        case 7:
            if (TP_SLICE_IEQ(n, "upgrade"))
                msg->flags |= TP_HTTP_F_HAS_UPGRADE;
            break;
        case 10:
            if (TP_SLICE_IEQ(n, "connection"))
                msg->flags |= tp__scan_connection(v);
            break;
        case 14:
            if (TP_SLICE_IEQ(n, "content-length")) {
                msg->flags |= TP_HTTP_F_HAS_CL;
                tp__scan_cl(v, !is_request, f);
            }
            break;
        case 17:
            if (TP_SLICE_IEQ(n, "transfer-encoding")) {
                msg->flags |= TP_HTTP_F_HAS_TE;
                tp__scan_te(v, f);
            }
            break;
        default: break;
        }
    }
}

static void tp__msg_reset(struct tp_http_message *msg)
{
    struct tp_http_header *headers = msg->headers;

    memset(msg, 0, sizeof(*msg));
    msg->headers = headers;
}

static void tp__head_init(struct tp__head *h, const char *buf, size_t len,
                          const struct tp_http_limits *lim)
{
    /* The head length is returned as an int. */
    size_t max = lim->max_header_bytes < (size_t)INT_MAX ? lim->max_header_bytes : (size_t)INT_MAX;

    h->truncated = len > max;
    h->end = buf + (h->truncated ? max : len);
    h->lim = lim;
    h->status = 0;
}

/* Split path and query; the path is what routing sees, so it never includes the query. */
static void tp__split_path(struct tp_http_message *msg, const char *s, const char *e)
{
    const char *q = memchr(s, '?', (size_t)(e - s));

    if (q) {
        msg->query = (struct tp_slice){q + 1, (size_t)(e - q - 1)};
        e = q;
    }
    if (e == s)
        msg->path = TP_SLICE_LIT("/");
    else
        msg->path = (struct tp_slice){s, (size_t)(e - s)};
}

/*
 * Request-target forms (RFC 9112 §3.2). authority-form is only for CONNECT, which we do not
 * proxy, and a bare "*" only for OPTIONS; both are refused otherwise (CASES B22 D).
 */
static int tp__parse_target(struct tp_http_message *msg)
{
    const char *t = msg->target.ptr;
    const char *e = t + msg->target.len;
    size_t skip;

    if (*t == '/') {
        tp__split_path(msg, t, e);
        return 0;
    }
    if (msg->target.len == 1 && *t == '*') {
        if (!(msg->method.len == 7 && memcmp(msg->method.ptr, "OPTIONS", 7) == 0))
            return -1;
        msg->path = msg->target;
        return 0;
    }
    if (msg->target.len > 7 && tp_slice_eq_nocase((struct tp_slice){t, 7}, "http://", 7))
        skip = 7;
    else if (msg->target.len > 8 && tp_slice_eq_nocase((struct tp_slice){t, 8}, "https://", 8))
        skip = 8;
    else
        return -1;
    const char *a = t + skip;
    const char *ae = a;
    while (ae < e && *ae != '/' && *ae != '?')
        ae++;
    msg->target_authority = (struct tp_slice){a, (size_t)(ae - a)};
    /* userinfo ('@') and a bad port fail here, as they would in a Host header. */
    if (!tp__host_valid(msg->target_authority))
        return -1;
    tp__split_path(msg, ae, e);
    return 0;
}

/*
 * method SP request-target SP HTTP-version CRLF (RFC 9112 §3). The target is scanned past the
 * header budget so that an over-long request line is answered 414, not 431 (CASES B48).
 */
static int tp__parse_request_line(struct tp__head *h, const char **pp, const char *full_end,
                                  struct tp_http_message *msg)
{
    const char *p = *pp;
    const char *end = h->end;
    size_t max_uri = h->lim->max_uri_bytes;
    int major, minor, rc;

    while (p < end && TP__IS(*p, TP__C_TCHAR))
        p++;
    if (p == end)
        return tp__need_more(h);
    if (*p != ' ' || p == *pp)
        return tp__fail(h, 400);
    msg->method = (struct tp_slice){*pp, (size_t)(p - *pp)};

    const char *t = ++p;
    size_t scan = (size_t)(full_end - t);
    if (scan > max_uri)
        scan = max_uri + 1;
    p = tp__skip_target(p, t + scan);
    if ((size_t)(p - t) > max_uri)
        return tp__fail(h, 414);
    if (p >= end)
        return tp__need_more(h);
    /* '#' (B17), CTL, SP twice, non-ASCII, or the end of the line: no HTTP/0.9. */
    if (*p != ' ' || p == t)
        return tp__fail(h, 400);
    msg->target = (struct tp_slice){t, (size_t)(p - t)};

    p++;
    rc = tp__parse_version(h, p, &major, &minor);
    if (rc != 0)
        return rc;
    rc = tp__expect_crlf(h, p + 8);
    if (rc != 0)
        return rc;
    if (major != 1 || minor > 1)
        return tp__fail(h, 505);
    msg->minor_version = minor;
    if (tp__parse_target(msg) != 0)
        return tp__fail(h, 400);
    *pp = p + 10;
    return 0;
}

/* Request framing, RFC 9112 §6.1–§6.3: a request body is never close-delimited. */
static int tp__request_semantics(struct tp_http_message *msg)
{
    struct tp__facts f = {0};

    tp__scan_fields(msg, 1, &f);

    if (f.host_count > 1 || (f.host_count == 0 && msg->minor_version == 1))
        return -1;
    if (f.host_count == 1 && !tp__host_valid(msg->host))
        return -1;
    if (f.cl_count > 1 || f.cl_bad)
        return -1;
    if (f.te_lines > 0) {
        if (msg->minor_version == 0 || f.cl_count > 0)
            return -1;
        if (f.te_bad || f.te_chunked != 1 || !f.te_last_chunked)
            return -1;
        msg->framing = TP_HTTP_BODY_CHUNKED;
    } else if (f.cl_count == 1 && f.cl > 0) {
        msg->framing = TP_HTTP_BODY_LENGTH;
        msg->content_length = f.cl;
    } else {
        msg->framing = TP_HTTP_BODY_NONE;
    }
    return 0;
}

int tp_http_parse_request(const char *buf, size_t len, struct tp_http_message *msg,
                          const struct tp_http_limits *lim, int *status_out)
{
    struct tp__head h;
    const char *p = buf;
    int rc;

    tp__msg_reset(msg);
    tp__head_init(&h, buf, len, lim);

    /* RFC 9112 §2.2: empty lines before the request-line are ignored (they count in head_len). */
    while (p < h.end && *p == '\r') {
        rc = tp__expect_crlf(&h, p);
        if (rc != 0)
            goto out;
        p += 2;
    }
    rc = tp__parse_request_line(&h, &p, buf + len, msg);
    if (rc != 0)
        goto out;
    rc = tp__parse_fields(&h, &p, msg);
    if (rc != 0)
        goto out;
    if (tp__request_semantics(msg) != 0) {
        rc = tp__fail(&h, 400);
        goto out;
    }
    msg->head_len = (size_t)(p - buf);
    rc = (int)msg->head_len;
out:
    if (status_out)
        *status_out = h.status;
    return rc;
}

/*
 * HTTP-version SP 3DIGIT SP [ reason-phrase ] CRLF (RFC 9112 §4). A missing SP before an empty
 * reason is tolerated: real servers send "HTTP/1.1 200\r\n" and nothing can be misread there.
 */
static int tp__parse_status_line(struct tp__head *h, const char **pp, struct tp_http_message *msg)
{
    const char *p = *pp;
    const char *end = h->end;
    int major, minor, rc;

    rc = tp__parse_version(h, p, &major, &minor);
    if (rc != 0)
        return rc;
    p += 8;
    for (int i = 0; i < 4; i++) {
        if (p + i == end)
            return tp__need_more(h);
        int ok = i == 0 ? p[i] == ' ' : (p[i] >= '0' && p[i] <= '9');
        if (!ok)
            return tp__fail(h, 400);
    }
    if (major != 1 || minor > 1)
        return tp__fail(h, 505);
    msg->minor_version = minor;
    msg->status = (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
    if (msg->status < 100 || msg->status > 599)
        return tp__fail(h, 400);
    p += 4;
    if (p == end)
        return tp__need_more(h);
    if (*p == ' ') {
        const char *r = ++p;
        p = tp__skip_value(p, end);
        msg->reason = (struct tp_slice){r, (size_t)(p - r)};
    }
    rc = tp__expect_crlf(h, p);
    if (rc != 0)
        return rc;
    *pp = p + 2;
    return 0;
}

/* Response framing, RFC 9112 §6.3 items 1–7 in order. */
static int tp__response_semantics(struct tp_http_message *msg, struct tp_slice req_method)
{
    struct tp__facts f = {0};

    tp__scan_fields(msg, 0, &f);

    msg->host = (struct tp_slice){NULL, 0};
    if (f.cl_bad)
        return -1;
    if (f.cl_count > 0)
        msg->content_length = f.cl;
    if (f.te_lines > 0 && (msg->minor_version == 0 || f.te_bad || f.te_chunked > 1))
        return -1;

    int no_body = (msg->status >= 100 && msg->status < 200) || msg->status == 204 ||
                  msg->status == 304 ||
                  (req_method.len == 4 && memcmp(req_method.ptr, "HEAD", 4) == 0);
    if (no_body)
        msg->framing = TP_HTTP_BODY_NONE;
    else if (f.te_lines > 0)
        msg->framing = f.te_last_chunked ? TP_HTTP_BODY_CHUNKED : TP_HTTP_BODY_UNTIL_CLOSE;
    else if (f.cl_count > 0)
        msg->framing = f.cl > 0 ? TP_HTTP_BODY_LENGTH : TP_HTTP_BODY_NONE;
    else
        msg->framing = TP_HTTP_BODY_UNTIL_CLOSE;
    return 0;
}

int tp_http_parse_response(const char *buf, size_t len, struct tp_slice req_method,
                           struct tp_http_message *msg, const struct tp_http_limits *lim)
{
    struct tp__head h;
    const char *p = buf;
    int rc;

    tp__msg_reset(msg);
    tp__head_init(&h, buf, len, lim);

    rc = tp__parse_status_line(&h, &p, msg);
    if (rc != 0)
        return rc;
    rc = tp__parse_fields(&h, &p, msg);
    if (rc != 0)
        return rc;
    if (tp__response_semantics(msg, req_method) != 0)
        return TP_EINVAL;
    msg->head_len = (size_t)(p - buf);
    return (int)msg->head_len;
}

int tp_http_header_find(const struct tp_http_message *msg, const char *name, size_t name_len,
                        size_t from)
{
    for (size_t i = from; i < msg->num_headers; i++)
        if (tp_slice_eq_nocase(msg->headers[i].name, name, name_len))
            return (int)i;
    return -1;
}

int tp_http_is_tchar(unsigned char c)
{
    return TP__IS(c, TP__C_TCHAR) != 0;
}

const char *tp_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

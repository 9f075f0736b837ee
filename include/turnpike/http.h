/*
 * turnpike — strict, non-allocating HTTP/1.1 message parser (RFC 9112, RFC 9110).
 *
 * The parser reads one message head (start line + header section) from a caller-owned buffer
 * and fills a caller-owned struct whose slices point into that buffer. It never allocates and
 * never writes to the input. It is incremental in the simple way: call it again with the
 * grown buffer until it returns something other than TP_EAGAIN (picohttpparser style).
 *
 * Framing is decided here, once, so that the proxy and the upstream can never frame a message
 * differently: anything ambiguous is an error (see ../shared/cases/CASES.md B01–B10, B22).
 */
#ifndef TURNPIKE_HTTP_H
#define TURNPIKE_HTTP_H

#include "turnpike/common.h"

#include <stdbool.h>

/** Limits applied while parsing a request head. Sizes in bytes. */
struct tp_http_limits {
    size_t max_header_bytes; /* whole head incl. request line; exceeded → 431 */
    size_t max_headers;      /* number of header fields; exceeded → 431 */
    size_t max_uri_bytes;    /* request-target length; exceeded → 414 */
    size_t max_field_bytes;  /* one header line (name + value); exceeded → 431 */
};

struct tp_http_header {
    struct tp_slice name;  /* as received, token chars only */
    struct tp_slice value; /* leading/trailing OWS removed */
};

enum tp_http_framing {
    TP_HTTP_BODY_NONE = 0,   /* no body (no CL/TE in a request, CL: 0, HEAD/204/304/1xx response) */
    TP_HTTP_BODY_LENGTH,     /* Content-Length bytes follow */
    TP_HTTP_BODY_CHUNKED,    /* chunked coding (final coding) */
    TP_HTTP_BODY_UNTIL_CLOSE /* responses only: read until the upstream closes */
};

/* Flags describing semantics found in the header section (bitmask in .flags). */
enum {
    TP_HTTP_F_CONN_CLOSE = 1u << 0,      /* Connection has the token "close" */
    TP_HTTP_F_CONN_KEEPALIVE = 1u << 1,  /* Connection has the token "keep-alive" */
    TP_HTTP_F_CONN_UPGRADE = 1u << 2,    /* Connection has the token "upgrade" */
    TP_HTTP_F_HAS_UPGRADE = 1u << 3,     /* an Upgrade header is present */
    TP_HTTP_F_EXPECT_CONTINUE = 1u << 4, /* Expect: 100-continue (case-insensitive) */
    TP_HTTP_F_HAS_TE = 1u << 5,          /* a Transfer-Encoding header is present */
    TP_HTTP_F_HAS_CL = 1u << 6,          /* a Content-Length header is present */
    TP_HTTP_F_TE_TRAILERS = 1u << 7,     /* request TE header lists "trailers" */
};

/** A parsed message head. All slices point into the caller's input buffer. */
struct tp_http_message {
    /* request line (requests only) */
    struct tp_slice method;
    struct tp_slice target; /* request-target as received (origin-form or absolute-form) */
    struct tp_slice path;   /* path part of target, without query; for absolute-form the path
                               after the authority ("/" if empty) */
    struct tp_slice query;  /* after '?', without the '?'; len 0 if none */
    struct tp_slice target_authority; /* absolute-form only: the authority, else len 0 */
    /* status line (responses only) */
    int status;             /* 100..599 */
    struct tp_slice reason;

    int minor_version;      /* 0 or 1 (HTTP/1.x); the parser rejects other major versions */

    struct tp_http_header *headers; /* caller-provided array, capacity max_headers */
    size_t num_headers;

    /* derived semantics */
    struct tp_slice host;   /* the single Host value (requests), validated; len 0 if absent */
    enum tp_http_framing framing;
    uint64_t content_length; /* valid when framing == TP_HTTP_BODY_LENGTH */
    unsigned flags;          /* TP_HTTP_F_* */
    size_t head_len;         /* bytes consumed by the head, including the final CRLF CRLF */
};

/*
 * Return values of the parse functions: > 0 is the head length (also stored in head_len);
 * TP_EAGAIN means the head is incomplete (and within limits); any other negative value is an
 * error and *status_out (if non-NULL) receives the HTTP status to answer with:
 * 400 malformed/ambiguous, 414 URI too long, 431 header limits, 501 unknown transfer coding,
 * 505 unsupported HTTP version.
 */

/**
 * Parse a request head (RFC 9112 §2–§7, RFC 9110 §5).
 *
 * @param buf, len     bytes received so far on the connection (not modified, not retained
 *                     beyond the life of the returned slices)
 * @param msg          output; msg->headers must point to an array of at least lim->max_headers
 *                     entries before the call
 * @param lim          limits (required)
 * @param status_out   receives 400/414/431/501/505 on error; may be NULL
 * @return head length (> 0), TP_EAGAIN, or TP_EINVAL / TP_ETOOBIG on error.
 *
 * Rules enforced (each is a CASES.md case): CRLF line ends only (bare LF/CR → 400); no obs-fold;
 * no whitespace before ':' ; field names are tokens; values have no NUL/CR/LF and other CTLs
 * except HTAB are rejected; Content-Length = 1*DIGIT, duplicates (even equal, even as a list)
 * → 400; CL together with TE → 400; TE must end with "chunked" exactly once, case-insensitive,
 * OWS trimmed, else 400 (unknown coding → 501 is not used: a non-chunked final coding is 400);
 * TE in an HTTP/1.0 request → 400; Host: exactly one for HTTP/1.1, valid uri-host[:port]
 * with port <= 65535, else 400; a fragment '#' in the target → 400; authority-form and
 * asterisk-form (except OPTIONS *) → 400; method = token; version exactly HTTP/1.0 or HTTP/1.1
 * (HTTP/2+ → 505). A request without CL and TE has no body.
 */
int tp_http_parse_request(const char *buf, size_t len, struct tp_http_message *msg,
                          const struct tp_http_limits *lim, int *status_out);

/**
 * Parse a response head received from an upstream, with the same strictness (RFC 9112 §4, §6.3).
 *
 * @param req_method   the method of the request this answers (HEAD → no body), as a slice
 * @param msg          output; msg->headers must hold lim->max_headers entries
 * @return head length (> 0), TP_EAGAIN, or a negative error (the proxy answers 502).
 *
 * Framing: 1xx/204/304 and responses to HEAD have no body whatever the headers say;
 * chunked if TE ends in chunked (CL ignored and removed by the proxy then: RFC 9112 §6.3 item 3
 * — for responses, CL+TE is accepted and TE wins); a TE whose final coding is not chunked →
 * until close; valid single Content-Length (duplicates with equal values allowed, RFC 9110
 * §8.6) → length; otherwise until close. Invalid Content-Length → error.
 * Whitespace before ':' → error.
 */
int tp_http_parse_response(const char *buf, size_t len, struct tp_slice req_method,
                           struct tp_http_message *msg, const struct tp_http_limits *lim);

/** Incremental, strict decoder for the chunked transfer coding (RFC 9112 §7.1). */
struct tp_http_chunked {
    int state;          /* private */
    uint64_t remaining; /* bytes of chunk data still expected in the current chunk */
    size_t line_bytes;  /* private: bytes of the current size/trailer line (limit checks) */
    size_t trailer_bytes;
    size_t max_trailer_bytes; /* set by caller before use; 0 means 8192 */
};

/** Reset a decoder to the start of a chunked body. */
void tp_http_chunked_init(struct tp_http_chunked *c);

/**
 * Feed bytes to the decoder.
 *
 * Scans buf[0..len). Stops at the first of: end of input, a run of chunk data, or the end of
 * the body. On return *consumed is the number of input bytes used, and if *data_len > 0 then
 * buf[*data_off .. *data_off + *data_len) is chunk data the caller should forward (always
 * inside the consumed range, always at its end). Call again with the rest.
 *
 * @return 1 when the whole body including the trailer section has been consumed (the trailer
 *         lines are validated and skipped: they are not forwarded), 0 when more input is
 *         needed or data was produced, TP_EINVAL on any syntax error (chunk-size = 1*HEXDIG
 *         only, at most 16 hex digits with no overflow, no leading/trailing spaces, extensions
 *         parsed by the RFC 9112 §7.1.1 grammar, CRLF required after data), TP_ETOOBIG when
 *         the trailer section exceeds max_trailer_bytes.
 */
int tp_http_chunked_decode(struct tp_http_chunked *c, const char *buf, size_t len,
                           size_t *consumed, size_t *data_off, size_t *data_len);

/** Find a header by name (case-insensitive). Returns index or -1. Starting at index from. */
int tp_http_header_find(const struct tp_http_message *msg, const char *name, size_t name_len,
                        size_t from);

/** RFC 9110 §5.6.2 token character test. */
int tp_http_is_tchar(unsigned char c);

/** Reason phrase for a status code ("Unknown" if none). Static storage. */
const char *tp_http_reason(int status);

#endif

/*
 * turnpike — incremental, strict decoder for the chunked transfer coding (RFC 9112 §7.1).
 *
 * A byte-at-a-time state machine for the framing (size lines, extensions, CRLFs, trailer
 * section) and a bulk copy-free path for chunk data, which is handed back to the caller as a
 * range of its own buffer. Any deviation from the grammar is an error: a lenient chunk parser
 * is the other half of most smuggling bugs (CASES.md B10).
 */
#include "turnpike/http.h"

#include <string.h>

/* Default trailer section and chunk-size line limit when max_trailer_bytes is 0. */
#define TP__CHUNK_LIMIT_DEFAULT 8192

/* A 64-bit size: more digits than this is refused even with leading zeros (B10 E). */
#define TP__CHUNK_MAX_DIGITS 16

enum tp__chunk_state {
    TP__CK_SIZE_START = 0, /* first HEXDIG of a chunk-size */
    TP__CK_SIZE,           /* further HEXDIGs */
    TP__CK_SIZE_WS,        /* BWS after the size or an ext value: only ';' may follow */
    TP__CK_EXT_NAME_START, /* after ';': BWS, then a token */
    TP__CK_EXT_NAME,
    TP__CK_EXT_NAME_WS,   /* BWS after an ext name: '=' or ';' must follow */
    TP__CK_EXT_VAL_START, /* after '=': BWS, then a token or a quoted-string */
    TP__CK_EXT_VAL_TOKEN,
    TP__CK_EXT_VAL_QUOTED,
    TP__CK_EXT_VAL_QPAIR, /* after a backslash inside the quoted-string */
    TP__CK_EXT_VAL_END,   /* after the closing quote */
    TP__CK_SIZE_LF,
    TP__CK_DATA,
    TP__CK_DATA_CR,
    TP__CK_DATA_LF,
    TP__CK_TRAILER_START, /* start of a trailer field line or of the final CRLF */
    TP__CK_TRAILER_NAME,
    TP__CK_TRAILER_VALUE,
    TP__CK_TRAILER_LF,
    TP__CK_END_LF,
    TP__CK_DONE,
    TP__CK_ERR_INVAL, /* errors stick: the connection must be closed anyway */
    TP__CK_ERR_TOOBIG,
};

static int tp__ck_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int tp__ck_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* field-vchar / SP / HTAB / obs-text: the same bytes a header value may carry. */
static int tp__ck_vchar(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Transitions shared by every state that may end an extension (or the size itself). */
static int tp__ck_ext_end(struct tp_http_chunked *c, unsigned char ch)
{
    if (ch == ';')
        c->state = TP__CK_EXT_NAME_START;
    else if (tp__ck_ows(ch))
        c->state = TP__CK_SIZE_WS;
    else if (ch == '\r')
        c->state = TP__CK_SIZE_LF;
    else
        return TP_EINVAL;
    return 0;
}

/* The chunk-size line: chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1, §7.1.1). */
static int tp__ck_size_line(struct tp_http_chunked *c, unsigned char ch)
{
    int d;

    switch (c->state) {
    case TP__CK_SIZE_START:
        if ((d = tp__ck_hex(ch)) < 0)
            return TP_EINVAL;
        c->remaining = (uint64_t)d;
        c->state = TP__CK_SIZE;
        return 0;
    case TP__CK_SIZE:
        if ((d = tp__ck_hex(ch)) >= 0) {
            /* line_bytes already counts this byte, and so far the line is all digits. */
            if (c->line_bytes > TP__CHUNK_MAX_DIGITS)
                return TP_EINVAL;
            c->remaining = (c->remaining << 4) | (uint64_t)d;
            return 0;
        }
        return tp__ck_ext_end(c, ch);
    case TP__CK_SIZE_WS:
        if (ch == ';')
            c->state = TP__CK_EXT_NAME_START;
        else if (!tp__ck_ows(ch))
            return TP_EINVAL;
        return 0;
    case TP__CK_EXT_NAME_START:
        if (tp_http_is_tchar(ch))
            c->state = TP__CK_EXT_NAME;
        else if (!tp__ck_ows(ch))
            return TP_EINVAL;
        return 0;
    case TP__CK_EXT_NAME:
        if (tp_http_is_tchar(ch))
            return 0;
        if (ch == '=') {
            c->state = TP__CK_EXT_VAL_START;
            return 0;
        }
        if (tp__ck_ows(ch)) {
            c->state = TP__CK_EXT_NAME_WS;
            return 0;
        }
        return tp__ck_ext_end(c, ch);
    case TP__CK_EXT_NAME_WS:
        if (ch == '=')
            c->state = TP__CK_EXT_VAL_START;
        else if (ch == ';')
            c->state = TP__CK_EXT_NAME_START;
        else if (!tp__ck_ows(ch))
            return TP_EINVAL;
        return 0;
    case TP__CK_EXT_VAL_START:
        if (ch == '"')
            c->state = TP__CK_EXT_VAL_QUOTED;
        else if (tp_http_is_tchar(ch))
            c->state = TP__CK_EXT_VAL_TOKEN;
        else if (!tp__ck_ows(ch))
            return TP_EINVAL;
        return 0;
    case TP__CK_EXT_VAL_TOKEN:
        if (tp_http_is_tchar(ch))
            return 0;
        return tp__ck_ext_end(c, ch);
    case TP__CK_EXT_VAL_QUOTED:
        if (ch == '"')
            c->state = TP__CK_EXT_VAL_END;
        else if (ch == '\\')
            c->state = TP__CK_EXT_VAL_QPAIR;
        else if (!tp__ck_vchar(ch))
            return TP_EINVAL;
        return 0;
    case TP__CK_EXT_VAL_QPAIR:
        if (!tp__ck_vchar(ch))
            return TP_EINVAL;
        c->state = TP__CK_EXT_VAL_QUOTED;
        return 0;
    case TP__CK_EXT_VAL_END: return tp__ck_ext_end(c, ch);
    default: return TP_EINVAL;
    }
}

/* The trailer section: field lines like the header section's, then CRLF (RFC 9112 §7.1.2). */
static int tp__ck_trailer(struct tp_http_chunked *c, unsigned char ch)
{
    switch (c->state) {
    case TP__CK_TRAILER_START:
        /* A leading SP/HTAB would be obs-fold, a leading ':' an empty name. */
        if (!tp_http_is_tchar(ch))
            return TP_EINVAL;
        c->state = TP__CK_TRAILER_NAME;
        return 0;
    case TP__CK_TRAILER_NAME:
        if (ch == ':')
            c->state = TP__CK_TRAILER_VALUE;
        else if (!tp_http_is_tchar(ch))
            return TP_EINVAL;
        return 0;
    case TP__CK_TRAILER_VALUE:
        if (ch == '\r')
            c->state = TP__CK_TRAILER_LF;
        else if (!tp__ck_vchar(ch))
            return TP_EINVAL;
        return 0;
    case TP__CK_TRAILER_LF:
        if (ch != '\n')
            return TP_EINVAL;
        c->state = TP__CK_TRAILER_START;
        return 0;
    default: return TP_EINVAL;
    }
}

/* One framing byte. Returns 1 when it ended the body, 0 to go on, or an error. */
static int tp__ck_byte(struct tp_http_chunked *c, unsigned char ch, size_t limit)
{
    switch (c->state) {
    case TP__CK_SIZE_LF:
        if (ch != '\n')
            return TP_EINVAL;
        c->line_bytes = 0;
        c->state = c->remaining ? TP__CK_DATA : TP__CK_TRAILER_START;
        return 0;
    case TP__CK_DATA_CR:
        if (ch != '\r')
            return TP_EINVAL; /* more data than the size said (B10 D) */
        c->state = TP__CK_DATA_LF;
        return 0;
    case TP__CK_DATA_LF:
        if (ch != '\n')
            return TP_EINVAL;
        c->state = TP__CK_SIZE_START;
        return 0;
    case TP__CK_END_LF:
        if (ch != '\n')
            return TP_EINVAL;
        c->state = TP__CK_DONE;
        return 1;
    case TP__CK_TRAILER_START:
        if (ch == '\r') {
            c->state = TP__CK_END_LF;
            return 0;
        }
        /* fall through */
    case TP__CK_TRAILER_NAME:
    case TP__CK_TRAILER_VALUE:
    case TP__CK_TRAILER_LF:
        if (++c->trailer_bytes > limit)
            return TP_ETOOBIG;
        return tp__ck_trailer(c, ch);
    default:
        /* Extensions make a size line unbounded: cap it like a trailer section. */
        if (++c->line_bytes > limit)
            return TP_ETOOBIG;
        return tp__ck_size_line(c, ch);
    }
}

void tp_http_chunked_init(struct tp_http_chunked *c)
{
    memset(c, 0, sizeof(*c));
    c->state = TP__CK_SIZE_START;
}

int tp_http_chunked_decode(struct tp_http_chunked *c, const char *buf, size_t len, size_t *consumed,
                           size_t *data_off, size_t *data_len)
{
    size_t limit = c->max_trailer_bytes ? c->max_trailer_bytes : TP__CHUNK_LIMIT_DEFAULT;
    size_t i = 0;
    int rc = 0;

    *consumed = 0;
    *data_off = 0;
    *data_len = 0;
    if (c->state == TP__CK_ERR_INVAL)
        return TP_EINVAL;
    if (c->state == TP__CK_ERR_TOOBIG)
        return TP_ETOOBIG;

    while (i < len && c->state != TP__CK_DONE) {
        if (c->state == TP__CK_DATA) {
            size_t n = len - i;
            if ((uint64_t)n > c->remaining)
                n = (size_t)c->remaining;
            c->remaining -= n;
            if (c->remaining == 0)
                c->state = TP__CK_DATA_CR;
            *data_off = i;
            *data_len = n;
            *consumed = i + n;
            return 0;
        }
        rc = tp__ck_byte(c, (unsigned char)buf[i], limit);
        if (rc < 0) {
            c->state = rc == TP_ETOOBIG ? TP__CK_ERR_TOOBIG : TP__CK_ERR_INVAL;
            *consumed = i;
            return rc;
        }
        i++;
    }
    *consumed = i;
    return c->state == TP__CK_DONE ? 1 : 0;
}

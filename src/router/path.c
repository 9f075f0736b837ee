/*
 * turnpike — path normalisation and Host canonicalisation.
 *
 * Both functions run on every request before routing, so that route selection, every
 * path- or host-based policy and the request forwarded upstream all see one canonical form
 * (../shared/cases/CASES.md B13, B14, B16, B17, B19, B20). Neither allocates; the output is
 * never longer than the input.
 */
#include "turnpike/router.h"

#include <stdbool.h>

static const char hex_upper[] = "0123456789ABCDEF";

/* RFC 3986 §2.3: the only characters whose escapes may be decoded without changing meaning. */
static bool is_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 3986 §2.2 sub-delims: legal in a path segment and in a reg-name. */
static bool is_sub_delim(unsigned char c)
{
    return c != 0 && strchr("!$&'()*+,;=", c) != NULL;
}

/* RFC 3986 §3.3 pchar without its pct-encoded part (escapes are handled separately). */
static bool is_pchar_raw(unsigned char c)
{
    return is_unreserved(c) || is_sub_delim(c) || c == ':' || c == '@';
}

/* Value of one hex digit, or -1: escapes are validated, never guessed. */
static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (unsigned char)tp_lower((char)c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/*
 * Copy one escape "%XY" starting at in[i] to out[*o]: decode it when it stands for an
 * unreserved character, otherwise keep it with upper-case digits (RFC 3986 §6.2.2.1-2).
 * Encoded '/' and '\' would let a segment turn into two after an upstream decodes it
 * (CASES.md B14, B16), so they are refused unless the caller allows them; NUL never passes.
 */
static int copy_escape(const char *in, size_t in_len, size_t i, char *out, size_t *o,
                       unsigned flags)
{
    if (in_len - i < 3)
        return TP_EINVAL;
    int hi = hex_value((unsigned char)in[i + 1]);
    int lo = hex_value((unsigned char)in[i + 2]);
    if (hi < 0 || lo < 0)
        return TP_EINVAL;
    unsigned char v = (unsigned char)(hi << 4 | lo);
    if (v == 0)
        return TP_EINVAL;
    if (is_unreserved(v)) {
        out[(*o)++] = (char)v;
        return 0;
    }
    if ((v == '/' || v == '\\') && !(flags & TP_PATH_ALLOW_ENCODED_SLASH))
        return TP_EINVAL;
    out[(*o)++] = '%';
    out[(*o)++] = hex_upper[hi];
    out[(*o)++] = hex_upper[lo];
    return 0;
}

/* Copy the segment starting at in[*i] up to the next '/' (or the end), normalising escapes. */
static int copy_segment(const char *in, size_t in_len, size_t *i, char *out, size_t *o,
                        unsigned flags)
{
    while (*i < in_len && in[*i] != '/') {
        unsigned char c = (unsigned char)in[*i];
        if (c == '%') {
            int rc = copy_escape(in, in_len, *i, out, o, flags);
            if (rc != 0)
                return rc;
            *i += 3;
            continue;
        }
        if (!is_pchar_raw(c))
            return TP_EINVAL;
        out[(*o)++] = (char)c;
        (*i)++;
    }
    return 0;
}

/*
 * The segment out[seg..o) has just been written after a '/'. Remove it when it is "." and,
 * for "..", the segment before it as well (RFC 3986 §5.2.4); ".." at the root stays at the
 * root. Returns the new output length; the output then still ends with '/'.
 */
static size_t drop_dot_segment(const char *out, size_t seg, size_t o)
{
    size_t n = o - seg;
    if (n == 1 && out[seg] == '.')
        return seg;
    if (n != 2 || out[seg] != '.' || out[seg + 1] != '.')
        return o;
    if (seg <= 1)
        return seg;
    o = seg - 1; /* the '/' before the ".." segment */
    while (o > 0 && out[o - 1] != '/')
        o--;
    return o;
}

int tp_path_normalize(const char *in, size_t in_len, char *out, size_t *out_len, unsigned flags)
{
    if (!in || !out || !out_len || in_len == 0 || in[0] != '/')
        return TP_EINVAL;
    size_t i = 0, o = 0;
    out[o++] = '/';
    /* Invariant: out[o - 1] == '/' whenever a new segment starts. */
    while (i < in_len) {
        while (i < in_len && in[i] == '/')
            i++;
        if (i == in_len)
            break;
        size_t seg = o;
        int rc = copy_segment(in, in_len, &i, out, &o, flags);
        if (rc != 0)
            return rc;
        size_t kept = drop_dot_segment(out, seg, o);
        if (kept != o) {
            o = kept;
            continue;
        }
        if (i < in_len)
            out[o++] = '/';
    }
    *out_len = o;
    return 0;
}

/* Length of an IP-literal "[...]" at the start of in (RFC 3986 §3.2.2), or TP_EINVAL. */
static int ip_literal_len(const char *in, size_t in_len, size_t *len)
{
    size_t i = 1;
    while (i < in_len && in[i] != ']') {
        unsigned char c = (unsigned char)in[i];
        if (!is_unreserved(c) && !is_sub_delim(c) && c != ':')
            return TP_EINVAL;
        i++;
    }
    if (i == in_len || i == 1)
        return TP_EINVAL;
    *len = i + 1;
    return 0;
}

/* Length of a reg-name or IPv4 address at the start of in; stops at ':' (the port). */
static int reg_name_len(const char *in, size_t in_len, size_t *len)
{
    size_t i = 0;
    while (i < in_len && in[i] != ':') {
        unsigned char c = (unsigned char)in[i];
        /* Escapes are refused: a second spelling of a name is what host policies trip on. */
        if (!is_unreserved(c) && !is_sub_delim(c))
            return TP_EINVAL;
        i++;
    }
    *len = i;
    return 0;
}

/* RFC 3986 §3.2.3: port = *DIGIT after a ':'; nothing else may follow the host. */
static int check_port(const char *p, size_t len)
{
    if (len == 0)
        return 0;
    if (p[0] != ':')
        return TP_EINVAL;
    for (size_t i = 1; i < len; i++)
        if (p[i] < '0' || p[i] > '9')
            return TP_EINVAL;
    return 0;
}

/* A DNS name must not have an empty label once the one optional trailing dot is gone. */
static int check_labels(const char *s, size_t len)
{
    if (len == 0 || s[0] == '.' || s[len - 1] == '.')
        return TP_EINVAL;
    for (size_t i = 1; i < len; i++)
        if (s[i] == '.' && s[i - 1] == '.')
            return TP_EINVAL;
    return 0;
}

int tp_host_canonicalize(const char *in, size_t in_len, char *out, size_t *out_len)
{
    if (!out_len || (in_len > 0 && (!in || !out)))
        return TP_EINVAL;
    *out_len = 0;
    if (in_len == 0)
        return 0;
    bool literal = in[0] == '[';
    size_t hlen = 0;
    int rc = literal ? ip_literal_len(in, in_len, &hlen) : reg_name_len(in, in_len, &hlen);
    if (rc == 0)
        rc = check_port(in + hlen, in_len - hlen);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < hlen; i++)
        out[i] = tp_lower(in[i]);
    if (!literal && hlen > 0) {
        if (out[hlen - 1] == '.')
            hlen--;
        rc = check_labels(out, hlen);
        if (rc != 0)
            return rc;
    }
    *out_len = hlen;
    return 0;
}

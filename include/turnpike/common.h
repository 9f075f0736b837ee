/*
 * turnpike — common types shared by every subsystem.
 *
 * Bytes travel as a {ptr, len} slice, never as NUL-terminated strings on the data path.
 * Functions return 0 on success or a negative error code (TP_E*), as libuv does.
 */
#ifndef TURNPIKE_COMMON_H
#define TURNPIKE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TP_VERSION "0.1.0"

/* Error codes: always negative. Kept small and closed so callers can switch on them. */
enum {
    TP_OK = 0,
    TP_EAGAIN = -1,   /* need more input */
    TP_EINVAL = -2,   /* malformed input */
    TP_ENOMEM = -3,   /* allocation failed */
    TP_ETOOBIG = -4,  /* a configured limit was exceeded */
    TP_ENOTFOUND = -5,
    TP_EIO = -6,
    TP_EMETHOD = -7,  /* router: a route matched everything but the method */
};

/** A borrowed byte range. Never owns memory; never assumed NUL-terminated. */
struct tp_slice {
    const char *ptr;
    size_t len;
};

#define TP_SLICE_LIT(s) ((struct tp_slice){(s), sizeof(s) - 1})
#define TP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define TP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TP_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TP_UNUSED(x) ((void)(x))
#if defined(__GNUC__)
#define TP_LIKELY(x) __builtin_expect(!!(x), 1)
#define TP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define TP_LIKELY(x) (x)
#define TP_UNLIKELY(x) (x)
#endif

/** Slice of a NUL-terminated C string (config-time helper). */
static inline struct tp_slice tp_slice_cstr(const char *s)
{
    return (struct tp_slice){s, s ? strlen(s) : 0};
}

/** ASCII lower-case of one byte (locale independent, RFC 9110 §5.1 compares names this way). */
static inline char tp_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c | 0x20) : c;
}

/** Case-insensitive (ASCII) equality of two byte ranges. */
static inline int tp_slice_eq_nocase(struct tp_slice a, const char *b, size_t blen)
{
    if (a.len != blen)
        return 0;
    for (size_t i = 0; i < blen; i++)
        if (tp_lower(a.ptr[i]) != tp_lower(b[i]))
            return 0;
    return 1;
}

#define TP_SLICE_IEQ(s, lit) tp_slice_eq_nocase((s), (lit), sizeof(lit) - 1)

/** Write v in decimal into buf (at least 20 bytes, not NUL-terminated); returns the length.
 *  printf-free: heads are built on every request. */
static inline size_t tp_fmt_u64(char *buf, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

/** Write v in lower-case hex into buf (at least 16 bytes); width 0 = no leading zeros, else
 *  exactly width digits (<= 16). Returns the length. */
static inline size_t tp_fmt_hex(char *buf, uint64_t v, size_t width)
{
    static const char digits[] = "0123456789abcdef";
    size_t n = width;
    if (!n)
        for (uint64_t t = v; n == 0 || t; t >>= 4)
            n++;
    for (size_t i = n; i-- > 0; v >>= 4)
        buf[i] = digits[v & 15];
    return n;
}

#endif

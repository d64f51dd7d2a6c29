/*
 * Streaming JSON writer: escaping and UTF-8 repair.
 */

#include <vaquero/vaquero.h>
#include "json.h"

static const char  hex[] = "0123456789abcdef";

/* 1: the byte is copied as it is (printable ASCII other than " and \) */
static const unsigned char  plain[256] = {
    ['\x20'] = 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,     /* 20-2f */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,                 /* 30-3f */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,                 /* 40-4f */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,                 /* 50-5f */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,                 /* 60-6f */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,                 /* 70-7f */
};

/*
 * Whether any of the 8 bytes at s needs more than a copy: below 0x20,
 * 0x80 or above, '"' or '\\'.  The zero-byte tests ("v - 0x01.. & ~v &
 * 0x80..") can report a byte that is fine, never miss one that is not; the
 * byte loop sorts it out.
 */
static inline int
special8(const unsigned char *s)
{
    uint64_t  x, quote, bslash, ctrl;

    memcpy(&x, s, 8);

    ctrl = (x - 0x2020202020202020ULL) & ~x;
    quote = x ^ 0x2222222222222222ULL;
    quote = (quote - 0x0101010101010101ULL) & ~quote;
    bslash = x ^ 0x5c5c5c5c5c5c5c5cULL;
    bslash = (bslash - 0x0101010101010101ULL) & ~bslash;

    return ((x | ctrl | quote | bslash) & 0x8080808080808080ULL) != 0;
}


/*
 * Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0 if there is none.
 */
static size_t
utf8_seq_len(const unsigned char *s, size_t len)
{
    unsigned char  c = s[0];

    if (c >= 0xc2 && c <= 0xdf) {
        return (len >= 2 && (s[1] & 0xc0) == 0x80) ? 2 : 0;
    }

    if (c >= 0xe0 && c <= 0xef) {
        if (len < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) {
            return 0;
        }
        if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f)) {
            return 0;
        }
        return 3;
    }

    if (c >= 0xf0 && c <= 0xf4) {
        if (len < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80
            || (s[3] & 0xc0) != 0x80)
        {
            return 0;
        }
        if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f)) {
            return 0;
        }
        return 4;
    }

    return 0;
}

void
vq_json_string(vq_buf_t *b, const char *s, size_t len)
{
    vq_json_lit(b, "\"");
    vq_json_escape(b, s, len);
    vq_json_lit(b, "\"");
}

void
vq_json_escape(vq_buf_t *b, const char *str, size_t len)
{
    const unsigned char  *s = (const unsigned char *) str;
    const unsigned char  *end = s + len;
    const unsigned char  *run;
    char                 *p;
    size_t                n;
    unsigned char         c;

    /* worst case: every byte becomes \u00XX (6) or U+FFFD (3) */
    if (vq_buf_reserve(b, len * 6) != VQ_OK) {
        return;
    }

    p = b->data + b->len;

    while (s < end) {
        run = s;

        while (end - s >= 8 && !special8(s)) {
            s += 8;
        }

        while (s < end && plain[*s]) {
            s++;
        }

        memcpy(p, run, s - run);
        p += s - run;

        if (s == end) {
            break;
        }

        c = *s;

        if (c >= 0x80 || c == 0) {
            /* NUL too: \u0000 is JSON, but PostgreSQL jsonb and others refuse it */
            n = c ? utf8_seq_len(s, end - s) : 0;

            if (n == 0) {
                *p++ = (char) 0xef; *p++ = (char) 0xbf; *p++ = (char) 0xbd;
                s++;

            } else {
                memcpy(p, s, n);
                p += n;
                s += n;
            }

            continue;
        }

        *p++ = '\\';

        switch (c) {
        case '"':  *p++ = '"';  break;
        case '\\': *p++ = '\\'; break;
        case '\n': *p++ = 'n';  break;
        case '\r': *p++ = 'r';  break;
        case '\t': *p++ = 't';  break;
        case '\b': *p++ = 'b';  break;
        case '\f': *p++ = 'f';  break;
        default:
            *p++ = 'u'; *p++ = '0'; *p++ = '0';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];
        }

        s++;
    }

    b->len = p - b->data;
}

/* snprintf() is several times slower, and this runs for every number */
static size_t
format_uint(uint64_t v, char *end)
{
    char  *p = end;

    do {
        *--p = (char) ('0' + v % 10);
        v /= 10;
    } while (v);

    return end - p;
}

void
vq_json_int(vq_buf_t *b, int64_t v)
{
    char      tmp[24];
    size_t    n;
    uint64_t  u;

    u = v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v;
    n = format_uint(u, tmp + sizeof(tmp));

    if (v < 0) {
        tmp[sizeof(tmp) - ++n] = '-';
    }

    vq_buf_append(b, tmp + sizeof(tmp) - n, n);
}

void
vq_json_milli(vq_buf_t *b, int64_t v)
{
    char  frac[4];

    if (v < 0) {
        v = 0;
    }

    vq_json_int(b, v / 1000);

    frac[0] = '.';
    frac[1] = (char) ('0' + (v / 100) % 10);
    frac[2] = (char) ('0' + (v / 10) % 10);
    frac[3] = (char) ('0' + v % 10);
    vq_buf_append(b, frac, 4);
}


/* Whether any of the 8 bytes at s is NUL or 0x80 and above. */
static inline int
odd8(const unsigned char *s)
{
    uint64_t  x;

    memcpy(&x, s, 8);

    return vq_utf8_odd8(x) != 0;
}

size_t
vq_utf8_repaired_len(const char *str, size_t len)
{
    const unsigned char  *s = (const unsigned char *) str;
    const unsigned char  *end = s + len;
    size_t                grown, n;

    grown = 0;

    while (s < end) {
        while (end - s >= 8 && !odd8(s)) {
            s += 8;
        }

        if (s == end) {
            break;
        }

        if (*s != 0 && *s < 0x80) {
            s++;
            continue;
        }

        n = *s ? utf8_seq_len(s, end - s) : 0;

        if (n == 0) {
            grown += 2;         /* one byte becomes the 3 of U+FFFD */
            s++;

        } else {
            s += n;
        }
    }

    return len + grown;
}

size_t
vq_utf8_repair(char *dst, const char *str, size_t len)
{
    const unsigned char  *s = (const unsigned char *) str;
    const unsigned char  *end = s + len;
    const unsigned char  *run;
    char                 *p = dst;
    size_t                n;

    while (s < end) {
        run = s;

        while (end - s >= 8 && !odd8(s)) {
            s += 8;
        }

        while (s < end && *s != 0 && *s < 0x80) {
            s++;
        }

        memcpy(p, run, s - run);
        p += s - run;

        if (s == end) {
            break;
        }

        n = *s ? utf8_seq_len(s, end - s) : 0;

        if (n == 0) {
            *p++ = (char) 0xef; *p++ = (char) 0xbf; *p++ = (char) 0xbd;
            s++;

        } else {
            memcpy(p, s, n);
            p += n;
            s += n;
        }
    }

    return p - dst;
}
